//! One module per subcommand, plus what they share: loading a model with its
//! weights and reporting warnings.

pub mod act;
pub mod bench;
pub mod compile;
pub mod dataset;
pub mod demo;
pub mod detect;
pub mod init;
pub mod inspect;
pub mod map;
pub mod run;
pub mod ternarize;
pub mod train;

use std::path::{Path, PathBuf};

use ternc_frontend::{load_cfg, weights};
use ternc_ir::Graph;

/// Where a model's parameters come from.
#[derive(clap::Args, Debug, Clone)]
pub struct WeightsArgs {
    /// Darknet .weights file (omit for random weights where a command allows it).
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,
    /// Load only the first N layers from --weights (a backbone such as darknet53.conv.74).
    #[arg(long, value_name = "N", requires = "weights")]
    pub weights_prefix: Option<usize>,
}

/// Loads a cfg, printing its warnings to stderr.
pub fn load_graph(cfg: &Path) -> anyhow::Result<Graph> {
    let lowered = load_cfg(cfg)?;
    for w in &lowered.warnings {
        eprintln!("{w}");
    }
    Ok(lowered.graph)
}

/// Loads a cfg and its weights; with a prefix, the layers not in the file get
/// random weights (seed 0), as training from a backbone expects.
pub fn load_model(cfg: &Path, w: &WeightsArgs) -> anyhow::Result<Graph> {
    let mut graph = load_graph(cfg)?;
    if let Some(path) = &w.weights {
        let loaded = weights::read(path, &graph, w.weights_prefix)?;
        if w.weights_prefix.is_some() {
            graph.params = ternc_frontend::init::init(&graph, 0);
            graph.params.seen = loaded.seen;
        }
        for (i, p) in loaded.layers {
            graph.params.layers.insert(i, p);
        }
    }
    Ok(graph)
}

/// Which engine executes the model.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The reference interpreter (float32, Darknet's exact semantics).
    Reference,
    /// Kernels specialised to the model, compiled in this process with Cranelift.
    Jit,
}

/// A model ready to run on the chosen backend.
pub enum Engine<'g> {
    Reference(ternc_runtime::Reference<'g>),
    Jit(Box<ternc_runtime::jit::JitModel>),
}

impl<'g> Engine<'g> {
    /// `act`: int8 steps for W2A8 (the reference then runs the same quantization).
    pub fn new(
        graph: &'g Graph,
        backend: Backend,
        threads: usize,
        act: Option<&ternc_runtime::quant::ActScales>,
    ) -> anyhow::Result<Self> {
        Ok(match backend {
            Backend::Reference => {
                let r = ternc_runtime::Reference::new(graph, threads)?;
                Engine::Reference(match act {
                    Some(a) => r.with_act_scales(a.clone()),
                    None => r,
                })
            }
            Backend::Jit => {
                let opts = ternc_codegen::LowerOptions {
                    act_steps: act.map(|a| a.steps.clone()).unwrap_or_default(),
                    ..Default::default()
                };
                let model = ternc_runtime::jit::JitModel::compile_with(graph, &opts)
                    .and_then(|m| m.with_threads(threads))
                    .map_err(|e| anyhow::anyhow!("the jit backend cannot compile {}: {e}", graph.name))?;
                Engine::Jit(Box::new(model))
            }
        })
    }

    /// Runs a batch; `on_layer` sees each layer's output. Returns the heads.
    pub fn run(
        &self,
        input: &ternc_runtime::Tensor,
        on_layer: impl FnMut(ternc_runtime::LayerDone),
    ) -> Result<Vec<(usize, ternc_runtime::Tensor)>, ternc_runtime::RunError> {
        match self {
            Engine::Reference(r) => r.run(input, on_layer),
            Engine::Jit(j) => j.run_with(input, on_layer),
        }
    }

    /// Runs one batch for timing: the heads and each layer's wall time.
    pub fn run_timed(
        &self,
        input: &ternc_runtime::Tensor,
    ) -> Result<(ternc_runtime::jit::Heads, Vec<std::time::Duration>), ternc_runtime::RunError> {
        match self {
            Engine::Reference(r) => {
                let mut times = vec![std::time::Duration::ZERO; r.graph().num_layers()];
                let heads = r.run(input, |d| times[d.layer] = d.elapsed)?;
                Ok((heads, times))
            }
            Engine::Jit(j) => j.run_timed(input),
        }
    }

    /// Activation memory: the reference's peak of live tensors, the JIT's arena.
    pub fn activation_bytes(&self) -> usize {
        match self {
            Engine::Reference(r) => r.peak_live_bytes(),
            Engine::Jit(j) => j.program().workspace_bytes(),
        }
    }

    /// Time spent compiling, for backends that compile.
    pub fn compile_time(&self) -> Option<std::time::Duration> {
        match self {
            Engine::Reference(_) => None,
            Engine::Jit(j) => Some(j.compile_time()),
        }
    }
}

/// Classes the model's detection heads predict (0 without heads).
pub fn model_classes(graph: &Graph) -> usize {
    graph
        .heads()
        .into_iter()
        .map(|h| match &graph.layer(h).op {
            ternc_ir::Op::Yolo(y) => y.classes,
            ternc_ir::Op::Region(r) => r.classes,
            _ => 0,
        })
        .max()
        .unwrap_or(0)
}

/// `--threads`, defaulting to every core.
pub fn threads(requested: Option<usize>) -> usize {
    requested.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1)
}

/// Like [`load_model`], but random weights (seed 0) when no file is given.
pub fn load_model_or_random(cfg: &Path, w: &WeightsArgs) -> anyhow::Result<Graph> {
    let mut graph = load_model(cfg, w)?;
    if w.weights.is_none() {
        eprintln!("no --weights: using random weights (seed 0)");
        graph.params = ternc_frontend::init::init(&graph, 0);
    }
    Ok(graph)
}
