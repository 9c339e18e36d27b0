//! `ternc demo`: the bundled fully ternary detector (models/synth-demo, trained by
//! `ternc train` on the synthetic shapes set, every convolution ternary) compiled with
//! the JIT and run on the bundled images. Everything is embedded in the binary, so it
//! works on a fresh clone without downloads and from any directory.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use ternc_frontend::weights;
use ternc_ir::Graph;
use ternc_passes::ternarize::packed2_bytes;
use ternc_runtime::{draw, image};

use super::detect::detect_image;
use super::{Backend, Engine};

const CFG: &str = include_str!("../../models/synth-demo/synth-demo.cfg");
const WEIGHTS: &[u8] = include_bytes!("../../models/synth-demo/synth-demo.weights");
const NAMES: &str = include_str!("../../models/synth-demo/synth.names");
const IMAGES: [(&str, &[u8]); 4] = [
    ("shapes-1.png", include_bytes!("../../models/synth-demo/images/shapes-1.png")),
    ("shapes-2.png", include_bytes!("../../models/synth-demo/images/shapes-2.png")),
    ("shapes-3.png", include_bytes!("../../models/synth-demo/images/shapes-3.png")),
    ("shapes-4.png", include_bytes!("../../models/synth-demo/images/shapes-4.png")),
];

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Directory for the annotated PNGs.
    #[arg(long, value_name = "DIR", default_value = "demo-out")]
    pub out: PathBuf,
    /// Inference threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Keep boxes whose objectness × class probability exceeds this.
    #[arg(long, default_value_t = 0.25)]
    pub thresh: f32,
    /// Timed runs per image (the median is printed).
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
}

/// The bundled model: its graph with the weights loaded.
pub fn model() -> anyhow::Result<Graph> {
    let path = Path::new("models/synth-demo/synth-demo.cfg");
    let mut graph = ternc_frontend::parse_cfg_text(path, CFG)?.graph;
    graph.params =
        weights::read_bytes(Path::new("models/synth-demo/synth-demo.weights"), WEIGHTS, &graph, None)?;
    Ok(graph)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let graph = model()?;
    let names: Vec<String> =
        NAMES.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    let threads = super::threads(a.threads);
    let runs = a.runs.max(1);

    let weight_layers: Vec<usize> =
        (0..graph.num_layers()).filter(|&i| graph.layer(i).op.has_weights()).collect();
    let ternary = weight_layers.iter().filter(|&&i| graph.layer(i).op.is_ternary()).count();
    let (mut packed, mut fp32) = (0usize, 0usize);
    for &i in &weight_layers {
        let n = graph.params.layer(i).map_or(0, |p| p.weights.len());
        let rows = graph.layer(i).op.weight_rows().unwrap_or(1).max(1);
        fp32 += 4 * n;
        packed += if graph.layer(i).op.is_ternary() { packed2_bytes(rows, n / rows, 1) } else { 4 * n };
    }
    let s = graph.input_shape();
    println!(
        "ternc demo: a YOLO trained by `ternc train` on synthetic shapes, {ternary} of {} convolutions ternary \
         ({:.0} KiB of 2-bit weights, {:.0} KiB in float32), input {}x{}",
        weight_layers.len(),
        packed as f64 / 1024.0,
        fp32 as f64 / 1024.0,
        s.w,
        s.h
    );

    let t = Instant::now();
    let jit = Engine::new(&graph, Backend::Jit, threads, None)?;
    println!(
        "JIT: compiled to multiply-free native kernels in {:.1} ms ({threads} threads)",
        ms(jit.compile_time().unwrap_or(t.elapsed()))
    );
    let reference = Engine::new(&graph, Backend::Reference, threads, None)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;

    let (mut jit_times, mut ref_times) = (Vec::new(), Vec::new());
    for (name, bytes) in IMAGES {
        let im = image::decode(Path::new(name), bytes)?;
        let letterbox = graph.net.letter_box;
        let dets = detect_image(&jit, &graph, &im, letterbox, a.thresh, 0.45)?;
        // Same boxes from the reference interpreter: the JIT computes the same network.
        let want = detect_image(&reference, &graph, &im, letterbox, a.thresh, 0.45)?;
        let agree = dets.len() == want.len()
            && dets.iter().zip(&want).all(|(d, w)| {
                d.class == w.class && d.bbox.iter().zip(&w.bbox).all(|(a, b)| (a - b).abs() < 0.5)
            });
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t = Instant::now();
            detect_image(&jit, &graph, &im, letterbox, a.thresh, 0.45)?;
            times.push(t.elapsed());
        }
        let per = median(times);
        jit_times.push(per);
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t = Instant::now();
            detect_image(&reference, &graph, &im, letterbox, a.thresh, 0.45)?;
            times.push(t.elapsed());
        }
        ref_times.push(median(times));
        println!(
            "{name} ({}x{}): {} objects in {:.2} ms (median of {runs}){}",
            im.w,
            im.h,
            dets.len(),
            ms(per),
            if agree { "" } else { "  [differs from the reference interpreter]" }
        );
        for d in &dets {
            let [x0, y0, x1, y1] = d.bbox;
            let class = names.get(d.class).map_or("?", String::as_str);
            println!("  {class:<9} {:>3.0}%  box ({x0:.0}, {y0:.0}) - ({x1:.0}, {y1:.0})", 100.0 * d.score);
        }
        let out = a.out.join(name);
        draw::save_png(&draw::annotate(&im, &dets, &names), &out)
            .with_context(|| format!("cannot write {}", out.display()))?;
    }
    let total = |v: &[Duration]| v.iter().map(|d| ms(*d)).sum::<f64>() / v.len() as f64;
    println!(
        "mean of the medians per image (decoding, resizing, network, boxes): JIT {:.2} ms, reference interpreter {:.2} ms; annotated images in {}",
        total(&jit_times),
        total(&ref_times),
        a.out.display()
    );
    Ok(())
}
