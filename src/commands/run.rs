use std::path::{Path, PathBuf};

use anyhow::Context;
use ternc_frontend::atomic::write_atomic;
use ternc_ir::{Graph, InputError, Op};
use ternc_runtime::{npy, Tensor};

use super::{Backend, Engine, WeightsArgs};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Darknet model .cfg
    pub cfg: PathBuf,
    #[command(flatten)]
    pub weights: WeightsArgs,
    /// Network input: an image (JPEG/PNG, resized as Darknet does) or a float32
    /// .npy array [1,c,h,w] used as is.
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// Write every layer's output as DIR/NNN.npy (NNN = Darknet layer index).
    #[arg(long, value_name = "DIR")]
    pub dump: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Backend::Reference)]
    pub backend: Backend,
    /// Letterbox images (keep the aspect ratio) even if the cfg does not say letter_box=1.
    #[arg(long)]
    pub letterbox: bool,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub act: super::act::ActArgs,
}

/// The network input from an image or a .npy file.
pub fn load_input(path: &Path, graph: &Graph, letterbox: bool) -> Result<Tensor, InputError> {
    let want = graph.input_shape();
    let t = if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy")) {
        npy::read_tensor(path)?
    } else {
        let im = ternc_runtime::image::load(path)?;
        let im =
            ternc_runtime::image::to_network_input(&im, want.w, want.h, letterbox || graph.net.letter_box);
        Tensor::from_vec(1, ternc_ir::Shape::new(im.c, im.h, im.w), im.data)
    };
    if t.shape != want {
        return Err(InputError::whole(
            path,
            format!(
                "input has shape [{},{},{},{}]: the network takes [1,{},{},{}]",
                t.n, t.shape.c, t.shape.h, t.shape.w, want.c, want.h, want.w
            ),
        ));
    }
    Ok(t)
}

fn summary(layer: usize, graph: &Graph, t: &Tensor) -> String {
    let (min, max) =
        t.data.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let mean = t.data.iter().map(|&v| v as f64).sum::<f64>() / t.data.len().max(1) as f64;
    let node = graph.layer(layer);
    let mut s = format!(
        "layer {layer:3} {:<8} {}: min {min:.4} max {max:.4} mean {mean:.4}",
        node.op.type_name(),
        node.shape
    );
    let plane = node.shape.plane();
    let objectness: Option<(usize, usize)> = match &node.op {
        Op::Yolo(y) => Some((y.n(), y.classes + 5)),
        Op::Region(r) => Some((r.num, r.classes + r.coords + 1)),
        _ => None,
    };
    if let Some((anchors, entries)) = objectness {
        let obj = if let Op::Region(r) = &node.op { r.coords } else { 4 };
        let strong = (0..anchors)
            .map(|a| {
                t.image(0)[(a * entries + obj) * plane..(a * entries + obj + 1) * plane]
                    .iter()
                    .filter(|&&v| v > 0.5)
                    .count()
            })
            .sum::<usize>();
        s += &format!(", {strong} boxes with objectness > 0.5");
    }
    s
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let graph = super::load_model_or_random(&a.cfg, &a.weights)?;
    let input = load_input(&a.input, &graph, a.letterbox)?;
    let threads = super::threads(a.threads);
    let letterbox = a.letterbox || graph.net.letter_box;
    let scales = a.act.scales(&graph, letterbox, threads)?;
    let engine = Engine::new(&graph, a.backend, threads, scales.as_ref())?;
    if let Some(dir) = &a.dump {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut write_err: Option<anyhow::Error> = None;
    let heads = engine.run(&input, |done| {
        if let (Some(dir), None) = (&a.dump, &write_err) {
            let path = dir.join(format!("{:03}.npy", done.layer));
            let res = npy::tensor_bytes(done.output).and_then(|b| write_atomic(&path, &b));
            if let Err(e) = res {
                write_err = Some(anyhow::Error::new(e).context(format!("cannot write {}", path.display())));
            }
        }
    })?;
    if let Some(e) = write_err {
        return Err(e);
    }
    for (layer, t) in &heads {
        println!("{}", summary(*layer, &graph, t));
    }
    if scales.is_some() {
        let float = Engine::new(&graph, super::Backend::Reference, threads, None)?.run(&input, |_| {})?;
        for (layer, e) in super::act::head_agreement(&heads, &float) {
            println!(
                "layer {layer:3} W2A8 vs float32: max difference {:.2}% of the head's largest value",
                100.0 * e
            );
        }
    }
    if let Some(dir) = &a.dump {
        eprintln!("wrote {} layer outputs to {}", graph.num_layers(), dir.display());
    }
    Ok(())
}
