use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;
use ternc_runtime::Tensor;

use super::{Backend, Engine, WeightsArgs};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Darknet model .cfg
    pub cfg: PathBuf,
    #[command(flatten)]
    pub weights: WeightsArgs,
    #[arg(long, value_enum, default_value_t = Backend::Reference)]
    pub backend: Backend,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Timed inferences (after warm-up runs).
    #[arg(long, default_value_t = 10)]
    pub iters: usize,
    /// Untimed runs before timing.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Print JSON: {"median_ms","min_ms","max_ms","layers":[...],...}.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub act: super::act::ActArgs,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Peak resident memory of this process so far, from /proc (Linux only).
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let graph = super::load_model_or_random(&a.cfg, &a.weights)?;
    let threads = super::threads(a.threads);
    let scales = a.act.scales(&graph, graph.net.letter_box, threads)?;
    let engine = Engine::new(&graph, a.backend, threads, scales.as_ref())?;
    // A fixed pseudo-random input in 0..1, like a normalised image.
    let shape = graph.input_shape();
    let data = (0..shape.numel()).map(|i| ((i as u64 * 2654435761) % 1000) as f32 / 1000.0).collect();
    let input = Tensor::from_vec(1, shape, data);
    // W2A8: how far the heads are from the float path's, on the bench input
    let agreement = match &scales {
        Some(_) => {
            let float = Engine::new(&graph, Backend::Reference, threads, None)?.run(&input, |_| {})?;
            super::act::head_agreement(&engine.run(&input, |_| {})?, &float)
        }
        None => Vec::new(),
    };

    let n = graph.num_layers();
    let iters = a.iters.max(1);
    let mut totals = Vec::with_capacity(iters);
    let mut per_layer = vec![Vec::with_capacity(iters); n];
    for it in 0..a.warmup + iters {
        let start = Instant::now();
        let (_, layer_times) = engine.run_timed(&input)?;
        let total = start.elapsed();
        if it >= a.warmup {
            totals.push(ms(total));
            for (l, t) in layer_times.into_iter().enumerate() {
                per_layer[l].push(ms(t));
            }
        }
        if !a.json {
            eprint!(
                "\r{} run {}/{}",
                if it < a.warmup { "warm-up" } else { "timed" },
                it + 1,
                a.warmup + iters
            );
        }
    }
    if !a.json {
        eprintln!();
    }
    let (min, max) = totals.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &t| (lo.min(t), hi.max(t)));
    let med = median(&mut totals.clone());
    let layers: Vec<_> = per_layer
        .iter_mut()
        .enumerate()
        .map(|(i, t)| json!({"index": i, "type": graph.layer(i).op.type_name(), "median_ms": median(t), "bflops": graph.bflops(i)}))
        .collect();
    let backend = format!("{:?}", a.backend).to_lowercase();
    if a.json {
        let v = json!({
            "model": graph.name, "backend": backend, "threads": threads, "iters": iters,
            "act": format!("{:?}", a.act.act).to_lowercase(),
            "int8_layers": scales.as_ref().map_or(0, |s| s.quantized().count()),
            "head_rel_err_vs_f32": agreement.iter().map(|&(l, e)| json!({"layer": l, "rel_err": e})).collect::<Vec<_>>(),
            "median_ms": med, "min_ms": min, "max_ms": max,
            "gflops_per_s": graph.total_bflops() / (med / 1e3),
            "peak_rss_bytes": peak_rss_bytes(),
            "compile_ms": engine.compile_time().map(ms),
            "activation_bytes": engine.activation_bytes(),
            "layers": layers,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let act = match &scales {
            Some(s) => format!(", W2A8 ({} int8 layers)", s.quantized().count()),
            None => String::new(),
        };
        println!("{}: {} backend{act}, {threads} threads, {iters} runs", graph.name, backend);
        println!("{:>5}  {:<14} {:>10} {:>8}", "layer", "type", "median ms", "GFLOP/s");
        for l in &layers {
            let (t, bf) = (l["median_ms"].as_f64().unwrap_or(0.0), l["bflops"].as_f64().unwrap_or(0.0));
            let rate = if bf > 0.0 && t > 0.0 { format!("{:.1}", bf / (t / 1e3)) } else { String::new() };
            println!("{:>5}  {:<14} {:>10.3} {:>8}", l["index"], l["type"].as_str().unwrap_or(""), t, rate);
        }
        println!(
            "median {med:.2} ms, min {min:.2} ms, max {max:.2} ms ({:.1} GFLOP/s)",
            graph.total_bflops() / (med / 1e3),
        );
        for (l, e) in &agreement {
            println!("head {l}: W2A8 vs float32 max difference {:.2}% of its largest value", 100.0 * e);
        }
        if let Some(t) = engine.compile_time() {
            println!("compile {:.0} ms", ms(t));
        }
        println!(
            "memory: activations {:.1} MiB, peak RSS {} MiB",
            engine.activation_bytes() as f64 / (1 << 20) as f64,
            peak_rss_bytes().map_or("?".into(), |b| (b >> 20).to_string())
        );
    }
    Ok(())
}
