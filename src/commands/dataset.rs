//! `ternc dataset`: synthetic data sets and checks of Darknet-layout data.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use ternc_dataset::labels::read_labels;
use ternc_dataset::synth::{self, Shape, SynthOptions};
use ternc_dataset::Dataset;
use ternc_ir::InputError;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: DatasetCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum DatasetCommand {
    /// Write a synthetic detection data set (shapes on varied backgrounds) in Darknet layout.
    Synth(SynthArgs),
    /// Read every image and label file of a .data file's lists; report the bad ones.
    Check(CheckArgs),
}

/// `--classes`: a count or a comma list of shape names.
#[derive(Debug, Clone)]
pub struct Classes(pub Vec<Shape>);

fn parse_classes(s: &str) -> Result<Classes, String> {
    synth::parse_classes(s).map(Classes)
}

#[derive(clap::Args, Debug)]
pub struct SynthArgs {
    /// Output folder (created; existing files of the same names are replaced).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Number of images.
    #[arg(long, default_value_t = 1000)]
    pub images: usize,
    /// Image width and height in pixels (at least 16).
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(16..=4096))]
    pub size: u32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Classes: a count (the first N of circle,square,triangle,cross,ring,diamond)
    /// or a comma list of those names. Default: circle,square,triangle,cross,ring.
    #[arg(long, value_parser = parse_classes)]
    pub classes: Option<Classes>,
    /// Every N-th image goes to valid.txt, the others to train.txt (10: a 90/10 split).
    #[arg(long, default_value_t = 10)]
    pub valid_every: usize,
}

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// Darknet .data file.
    pub data: PathBuf,
    /// Do not decode the images, only check that they exist (fast).
    #[arg(long)]
    pub no_decode: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    match a.command {
        DatasetCommand::Synth(s) => synth_cmd(s),
        DatasetCommand::Check(c) => check(c),
    }
}

fn synth_cmd(a: SynthArgs) -> anyhow::Result<()> {
    if a.images == 0 {
        anyhow::bail!("--images 0: expected at least one image");
    }
    let opts = SynthOptions {
        images: a.images,
        size: a.size,
        seed: a.seed,
        classes: a.classes.map_or_else(|| Shape::DEFAULT.to_vec(), |c| c.0),
        valid_every: a.valid_every,
    };
    let start = Instant::now();
    let s = synth::write(&a.out, &opts)
        .with_context(|| format!("cannot write the data set to {}", a.out.display()))?;
    println!(
        "{}: {} images ({} train, {} valid), {} objects, {} classes, {}x{} px, in {:.1} s",
        s.data_file.display(),
        a.images,
        s.train,
        s.valid,
        s.objects,
        opts.classes.len(),
        a.size,
        a.size,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn check(a: CheckArgs) -> anyhow::Result<()> {
    let ds = Dataset::open(&a.data)?;
    let mut first: Option<InputError> = None;
    let (mut bad, mut missing_labels, mut objects, mut total) = (0usize, 0usize, 0usize, 0usize);
    for (split, samples) in [("train", &ds.train), ("valid", &ds.valid)] {
        for s in samples {
            total += 1;
            let mut problem = None;
            match read_labels(&s.label, Some(ds.classes)) {
                Ok(Some(l)) => objects += l.len(),
                Ok(None) => missing_labels += 1,
                Err(e) => problem = Some(e),
            }
            if problem.is_none() {
                let img = if a.no_decode {
                    std::fs::metadata(&s.image)
                        .map(|_| ())
                        .map_err(|e| InputError::whole(&s.image, format!("cannot read the image: {e}")))
                } else {
                    ternc_runtime::image::load(&s.image).map(|_| ())
                };
                problem = img.err();
            }
            if let Some(e) = problem {
                eprintln!("{split}: {e}");
                bad += 1;
                first.get_or_insert(e);
            }
        }
    }
    println!(
        "{}: {} classes, {} train + {} valid images, {objects} objects, {missing_labels} without a label file, {bad} bad of {total}",
        a.data.display(),
        ds.classes,
        ds.train.len(),
        ds.valid.len()
    );
    match first {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}
