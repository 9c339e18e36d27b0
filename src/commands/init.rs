use std::path::PathBuf;

use anyhow::Context;
use ternc_frontend::{init::init, weights};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Darknet model .cfg
    pub cfg: PathBuf,
    /// Output .weights file
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Random seed: the same seed gives the same file.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let mut graph = super::load_graph(&a.cfg)?;
    graph.params = init(&graph, a.seed);
    weights::write(&a.output, &graph).with_context(|| format!("cannot write {}", a.output.display()))?;
    eprintln!(
        "wrote {} ({} floats in {} layers, seed {})",
        a.output.display(),
        graph.total_params(),
        graph.params.layers.len(),
        a.seed
    );
    Ok(())
}
