use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use serde_json::json;
use ternc_frontend::data::read_names;
use ternc_ir::{Graph, InputError, Op};
use ternc_runtime::detect::{clip_to_image, decode_region, decode_yolo, nms, Detection};
use ternc_runtime::{draw, image, Tensor};

use super::{Backend, Engine, WeightsArgs};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Darknet model .cfg
    pub cfg: PathBuf,
    #[command(flatten)]
    pub weights: WeightsArgs,
    /// Class names, one per line (Darknet's .names file).
    #[arg(long, value_name = "FILE")]
    pub names: PathBuf,
    /// Images (JPEG/PNG).
    pub images: Vec<PathBuf>,
    /// A file listing image paths, one per line (Darknet's valid list).
    #[arg(long, value_name = "FILE")]
    pub list: Option<PathBuf>,
    /// Keep boxes whose objectness × class probability exceeds this.
    #[arg(long, default_value_t = 0.25)]
    pub thresh: f32,
    /// IoU above which a weaker box of the same class is suppressed.
    #[arg(long, default_value_t = 0.45)]
    pub nms: f32,
    /// Letterbox images even if the cfg does not say letter_box=1.
    #[arg(long)]
    pub letterbox: bool,
    /// Print one JSON array instead of text.
    #[arg(long)]
    pub json: bool,
    /// Write annotated PNGs (boxes and labels) into DIR.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    #[arg(long, value_enum, default_value_t = Backend::Reference)]
    pub backend: Backend,
    #[command(flatten)]
    pub act: super::act::ActArgs,
}

fn read_list(path: &Path) -> Result<Vec<PathBuf>, InputError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| InputError::whole(path, format!("cannot read image list: {e}")))?;
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(PathBuf::from).collect())
}

/// Boxes for one image, after NMS, strongest first.
pub fn detect_image(
    engine: &Engine,
    graph: &Graph,
    im: &image::Image,
    letterbox: bool,
    thresh: f32,
    nms_thresh: f32,
) -> anyhow::Result<Vec<Detection>> {
    let s = graph.input_shape();
    let x = image::to_network_input(im, s.w, s.h, letterbox);
    let input = Tensor::from_vec(1, s, x.data);
    let mut dets = Vec::new();
    for (layer, t) in engine.run(&input, |_| {})? {
        let sh = t.shape;
        let args = (t.image(0), sh.c, sh.h, sh.w);
        match &graph.layer(layer).op {
            Op::Yolo(y) => dets.extend(decode_yolo(
                args.0, args.1, args.2, args.3, y, s.w, s.h, im.w, im.h, letterbox, thresh,
            )),
            Op::Region(r) => dets.extend(decode_region(
                args.0, args.1, args.2, args.3, r, s.w, s.h, im.w, im.h, letterbox, thresh,
            )),
            _ => {}
        }
    }
    nms(&mut dets, nms_thresh);
    clip_to_image(&mut dets, im.w, im.h);
    Ok(dets)
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let graph = super::load_model_or_random(&a.cfg, &a.weights)?;
    if graph.heads().is_empty() {
        return Err(InputError::whole(
            &a.cfg,
            "the model has no [yolo] or [region] layer: expected a detector",
        )
        .into());
    }
    let classes = graph
        .heads()
        .into_iter()
        .map(|h| match &graph.layer(h).op {
            Op::Yolo(y) => y.classes,
            Op::Region(r) => r.classes,
            _ => 0,
        })
        .max()
        .unwrap_or(0);
    let names = read_names(&a.names)?;
    if names.len() < classes {
        return Err(InputError::whole(
            &a.names,
            format!("{} names for a model with {classes} classes: expected one name per class", names.len()),
        )
        .into());
    }
    let mut images = a.images.clone();
    if let Some(list) = &a.list {
        images.extend(read_list(list)?);
    }
    if images.is_empty() {
        anyhow::bail!("no images: give image paths or --list FILE");
    }
    if let Some(dir) = &a.out {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let letterbox = a.letterbox || graph.net.letter_box;
    let threads = super::threads(a.threads);
    let scales = a.act.scales(&graph, letterbox, threads)?;
    let engine = Engine::new(&graph, a.backend, threads, scales.as_ref())?;
    let mut results = Vec::new();
    for path in &images {
        let im = image::load(path)?;
        let start = Instant::now();
        let dets = detect_image(&engine, &graph, &im, letterbox, a.thresh, a.nms)?;
        let ms = start.elapsed().as_secs_f64() * 1e3;
        if !a.json {
            println!("{}: {} objects in {ms:.0} ms", path.display(), dets.len());
            for d in &dets {
                let [x0, y0, x1, y1] = d.bbox;
                println!(
                    "  {}: {:.0}%  box ({x0:.0}, {y0:.0}) - ({x1:.0}, {y1:.0})",
                    names[d.class],
                    100.0 * d.score
                );
            }
        }
        if let Some(dir) = &a.out {
            let stem = path.file_stem().map_or("image".into(), |s| s.to_string_lossy().into_owned());
            let out = dir.join(format!("{stem}.png"));
            draw::save_png(&draw::annotate(&im, &dets, &names), &out)
                .with_context(|| format!("cannot write {}", out.display()))?;
        }
        let list: Vec<_> = dets
            .iter()
            .map(|d| json!({"class": d.class, "name": names[d.class], "score": d.score, "box": d.bbox}))
            .collect();
        results.push(json!({"image": path, "detections": list}));
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    }
    Ok(())
}
