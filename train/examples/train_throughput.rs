//! Training throughput of a Darknet cfg: images per second of `Trainer::step` (forward,
//! losses, backward and the SGD update), random weights, on a synthetic data set (the
//! one `ternc dataset synth` writes) read through the threaded loader as `ternc train`
//! reads it, with the next batch prefetched while the current one trains.
//!
//! ```text
//! cargo run --release -p ternc-train --example train_throughput -- CFG SIZE \
//!     [--threads 2] [--batch 16] [--subdivisions 2] [--iters 5] [--warmup 1] [--seed 1]
//! ```
//!
//! `SIZE` sets `[net]` width and height; `--batch`/`--subdivisions` override the cfg's
//! (default: 16 and 2, i.e. mini-batches of 8 images). Two figures are printed: the
//! pipeline (loader + trainer, what the progress bar of `ternc train` shows) and the
//! trainer alone on a batch already in memory.

use std::path::PathBuf;
use std::time::Instant;

use ternc_dataset::synth::{self, SynthOptions};
use ternc_dataset::{Augment, Batch, Dataset, Loader, LoaderOptions};
use ternc_ir::Op;
use ternc_train::{Trainer, Truth};

struct Args {
    cfg: PathBuf,
    size: usize,
    threads: usize,
    batch: usize,
    subdivisions: usize,
    iters: usize,
    warmup: usize,
    seed: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut pos = Vec::new();
    let mut a = Args {
        cfg: PathBuf::new(),
        size: 0,
        threads: 2,
        batch: 16,
        subdivisions: 2,
        iters: 5,
        warmup: 1,
        seed: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = |name: &str| -> Result<u64, String> {
            it.next().and_then(|v| v.parse().ok()).ok_or(format!("{name} needs a number"))
        };
        match arg.as_str() {
            "--threads" => a.threads = val("--threads")? as usize,
            "--batch" => a.batch = val("--batch")? as usize,
            "--subdivisions" => a.subdivisions = val("--subdivisions")? as usize,
            "--iters" => a.iters = val("--iters")? as usize,
            "--warmup" => a.warmup = val("--warmup")? as usize,
            "--seed" => a.seed = val("--seed")?,
            _ => pos.push(arg),
        }
    }
    let usage = "usage: train_throughput CFG SIZE [--threads N] [--batch B] [--subdivisions S] [--iters N] [--warmup N] [--seed K]";
    match pos.as_slice() {
        [cfg, size] => {
            a.cfg = cfg.into();
            a.size = size.parse().map_err(|_| usage.to_string())?;
        }
        _ => return Err(usage.into()),
    }
    if a.iters == 0 || a.batch == 0 || a.subdivisions == 0 || !a.batch.is_multiple_of(a.subdivisions) {
        return Err("--iters and --batch must be positive, --batch a multiple of --subdivisions".into());
    }
    Ok(a)
}

/// CPU seconds this process has used (user + system; Linux `/proc`, else `None`):
/// CPU seconds over wall seconds shows how much of the threads other processes took.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // fields 14 and 15 of stat(5), in clock ticks (100 a second on Linux)
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

fn truths(b: &Batch) -> Vec<Vec<Truth>> {
    b.truths.iter().map(|ts| ts.iter().map(|t| Truth::new(t.class, t.cx, t.cy, t.w, t.h)).collect()).collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = parse_args()?;
    let text = std::fs::read_to_string(&a.cfg).map_err(|e| format!("{}: {e}", a.cfg.display()))?;
    let text = ternc_frontend::with_input_size(&text, a.size, a.size);
    let mut g = ternc_frontend::parse_cfg_text(&a.cfg, &text)?.graph;
    (g.net.batch, g.net.subdivisions) = (a.batch, a.subdivisions);
    g.net.max_batches = g.net.max_batches.max(a.warmup + a.iters + 1);
    g.params = ternc_frontend::init::init(&g, a.seed);
    let classes = match g.heads().last().map(|&h| &g.layer(h).op) {
        Some(Op::Yolo(y)) => y.classes,
        Some(Op::Region(r)) => r.classes,
        _ => return Err("the model has no [yolo] or [region] head".into()),
    };

    // the synthetic data set, written as `ternc dataset synth --size SIZE` writes it
    let dir = tempfile::tempdir()?;
    let images = (2 * a.batch).max(32);
    let summary = synth::write(
        dir.path(),
        &SynthOptions { images, size: a.size as u32, seed: a.seed, ..SynthOptions::default() },
    )?;
    let ds = Dataset::open(&summary.data_file)?;
    let loader = Loader::new(
        ds.train.clone(),
        LoaderOptions {
            seed: a.seed,
            threads: a.threads,
            classes: classes.max(ds.classes),
            augment: Augment::default(),
            shuffle: true,
        },
    )?;

    let mut trainer = Trainer::new(&g, a.threads)?;
    let size = (a.size, a.size);
    println!(
        "{}: {}x{}, {} layers, {:.2} BFLOPs/image (forward), batch {} = {} x {}, {} threads",
        a.cfg.display(),
        a.size,
        a.size,
        g.num_layers(),
        g.total_bflops(),
        a.batch,
        a.subdivisions,
        a.batch / a.subdivisions,
        a.threads
    );

    // pipeline: prefetch the next batch while this one trains (as `ternc train` does)
    let total = a.warmup + a.iters;
    let mut pending = Some(loader.prefetch(0, size, a.batch));
    let mut timed = 0.0f64;
    let mut cpu = 0.0f64;
    let mut last: Option<Batch> = None;
    for i in 0..total {
        let (t0, c0) = (Instant::now(), cpu_seconds());
        let b = pending.take().expect("a batch is loading").wait()?;
        if i + 1 < total {
            pending = Some(loader.prefetch(i as u64 + 1, size, a.batch));
        }
        let st = trainer.step(&b.images, &truths(&b))?;
        let dt = t0.elapsed().as_secs_f64();
        println!(
            "  iteration {:>3}{}: {dt:.3} s, {:.2} images/s, loss {:.3}",
            i + 1,
            if i < a.warmup { " (warm-up)" } else { "" },
            a.batch as f64 / dt,
            st.loss
        );
        if i >= a.warmup {
            timed += dt;
            cpu += cpu_seconds().zip(c0).map_or(0.0, |(c1, c0)| c1 - c0);
        }
        last = Some(b);
    }
    let pipeline = (a.iters * a.batch) as f64 / timed;

    // the trainer alone, on a batch in memory
    let b = last.expect("at least one batch");
    let t = truths(&b);
    let (t0, c0) = (Instant::now(), cpu_seconds());
    for _ in 0..a.iters {
        trainer.step(&b.images, &t)?;
    }
    let wall = t0.elapsed().as_secs_f64();
    let alone = (a.iters * a.batch) as f64 / wall;
    let alone_cpu = cpu_seconds().zip(c0).map_or(0.0, |(c1, c0)| c1 - c0);
    println!(
        "cores busy: {:.2} (loader + trainer), {:.2} (trainer alone), of {} threads; fewer means other processes took CPU time",
        cpu / timed,
        alone_cpu / wall,
        a.threads
    );
    println!(
        "training images/s at {}x{}: {pipeline:.2} (loader + trainer), {alone:.2} (trainer alone), {} threads",
        a.size, a.size, a.threads
    );
    Ok(())
}
