use std::fmt::Write;
use std::path::PathBuf;

use serde_json::json;
use ternc_ir::{Graph, Op, Shape};

use super::WeightsArgs;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Darknet model .cfg
    pub cfg: PathBuf,
    #[command(flatten)]
    pub weights: WeightsArgs,
    /// Print JSON instead of the table.
    #[arg(long, conflicts_with = "ir")]
    pub json: bool,
    /// Print the graph IR's textual dump instead of the table.
    #[arg(long, conflicts_with = "memory")]
    pub ir: bool,
    /// Print the activation memory plan (liveness arena, concat elision) instead.
    #[arg(long, conflicts_with = "json")]
    pub memory: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let graph = super::load_model(&a.cfg, &a.weights)?;
    let out = if a.ir {
        graph.dump()
    } else if a.memory {
        let plan = ternc_passes::memory::run(&graph, 4);
        let mib = |b: usize| b as f64 / (1 << 20) as f64;
        format!(
            "{}\nactivations (float32, batch 1): arena {:.2} MiB, all outputs {:.2} MiB ({:.1}x), peak live {:.2} MiB; {} of {} routes copy nothing\n",
            plan.dump(&graph).trim_end(),
            mib(plan.arena_bytes),
            mib(plan.naive_bytes),
            plan.naive_bytes as f64 / plan.arena_bytes.max(1) as f64,
            mib(plan.peak_live_bytes),
            plan.elided_routes.len(),
            (0..graph.num_layers()).filter(|&i| matches!(graph.layer(i).op, Op::Route(_))).count(),
        )
    } else if a.json {
        serde_json::to_string_pretty(&to_json(&graph))? + "\n"
    } else {
        let mut s = table(&graph);
        if a.weights.weights.is_some() {
            s += &weight_stats(&graph);
        }
        s
    };
    print!("{out}");
    Ok(())
}

fn arr(s: Shape) -> serde_json::Value {
    json!([s.c, s.h, s.w])
}

/// The contract of DESIGN.md: one object per Darknet layer, plus totals.
pub fn to_json(g: &Graph) -> serde_json::Value {
    let layers: Vec<_> = (0..g.num_layers())
        .map(|i| {
            let node = g.layer(i);
            json!({
                "index": i,
                "type": node.op.type_name(),
                "input": arr(g.input_shapes(g.layers[i])[0]),
                "output": arr(node.shape),
                "params": g.param_count(i),
                "bflops": g.bflops(i),
                "ternary": node.op.is_ternary(),
            })
        })
        .collect();
    json!({ "layers": layers, "total_params": g.total_params(), "total_bflops": g.total_bflops() })
}

fn whc(s: Shape) -> String {
    format!("{:4} x{:4} x{:5}", s.w, s.h, s.c)
}

/// `filters` and `size/stride(dilation)` columns, as Darknet prints them.
fn geometry(op: &Op, g: &Graph, i: usize) -> (String, String) {
    match op {
        Op::Conv(c) => {
            let dil = if c.dilation > 1 { format!("({})", c.dilation) } else { String::new() };
            let groups =
                if c.groups > 1 { format!("{}/{}", c.filters, c.groups) } else { c.filters.to_string() };
            (groups, format!("{:2} x{:2}/{:2}{dil}", c.size, c.size, c.stride_x))
        }
        Op::MaxPool(p) => (String::new(), format!("{:2} x{:2}/{:2}", p.size, p.size, p.stride_x)),
        Op::Connected(c) => (c.output.to_string(), String::new()),
        Op::Route(_) | Op::Shortcut(_) | Op::ScaleChannels(_) | Op::Sam(_) => {
            let n = g.layers[i];
            let from: Vec<String> =
                g.inputs(n).iter().filter_map(|&s| g.node(s).layer).map(|l| l.to_string()).collect();
            (String::new(), from.join(","))
        }
        Op::Upsample(u) => (String::new(), format!("{:2}x", u.stride)),
        Op::Reorg(r) => (String::new(), format!("/{:2}", r.stride)),
        _ => (String::new(), String::new()),
    }
}

/// The Darknet-style layer table.
pub fn table(g: &Graph) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{}: {} layers, input {}", g.name, g.num_layers(), whc(g.input_shape()).trim());
    let _ = writeln!(
        s,
        "{:>5}  {:<14} {:>7}  {:<14} {:>18}    {:>18} {:>9} {:>10}  ternary",
        "layer", "type", "filters", "size/strd(dil)", "input", "output", "BFLOPs", "params"
    );
    let mut convs = 0;
    let mut ternary = 0;
    for i in 0..g.num_layers() {
        let node = g.layer(i);
        let (filters, geo) = geometry(&node.op, g, i);
        if node.op.has_weights() {
            convs += 1;
        }
        if node.op.is_ternary() {
            ternary += 1;
        }
        let bf = g.bflops(i);
        let _ = writeln!(
            s,
            "{:>5}  {:<14} {:>7}  {:<14} {} -> {} {:>9} {:>10}  {}",
            i,
            node.op.type_name(),
            filters,
            geo,
            whc(g.input_shapes(g.layers[i])[0]),
            whc(node.shape),
            if bf > 0.0 { format!("{bf:.3}") } else { String::new() },
            g.param_count(i),
            if node.op.is_ternary() { "T" } else { "" },
        );
    }
    let params = g.total_params();
    let _ = writeln!(
        s,
        "total: {params} params ({:.1} MiB as float32), {:.3} BFLOPs, {ternary} of {convs} weight layers ternary",
        params as f64 * 4.0 / (1 << 20) as f64,
        g.total_bflops()
    );
    s
}

/// Per-layer statistics of the loaded weight arrays.
fn weight_stats(g: &Graph) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "\nweights: {} floats, seen {} images", g.params.total(), g.params.seen);
    let _ = writeln!(
        s,
        "{:>5}  {:<14} {:>10} {:>10} {:>10} {:>10} {:>7}",
        "layer", "type", "count", "min", "max", "mean|W|", "zeros"
    );
    for (&i, p) in &g.params.layers {
        let w = &p.weights;
        if w.is_empty() {
            continue;
        }
        let min = w.iter().copied().fold(f32::INFINITY, f32::min);
        let max = w.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mean_abs = w.iter().map(|v| v.abs() as f64).sum::<f64>() / w.len() as f64;
        let zeros = w.iter().filter(|&&v| v == 0.0).count() as f64 / w.len() as f64;
        let _ = writeln!(
            s,
            "{:>5}  {:<14} {:>10} {:>10.4} {:>10.4} {:>10.4} {:>6.1}%",
            i,
            g.layer(i).op.type_name(),
            w.len(),
            min,
            max,
            mean_abs,
            100.0 * zeros
        );
    }
    s
}
