//! QC (seed 003's QAT correction) after a stage with `correction = true`: starting from
//! the stage's `best.weights`, the convolution weights (and so the ternary codes) are
//! frozen and one epoch trains only the per-channel scales and biases at a tenth of
//! the stage's learning rate, with no burn-in; the batchnorm rolling statistics are
//! replaced by the average batch statistics of that epoch. The result is
//! `corrected.weights`, evaluated on the valid list like `best.weights`.

use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use ternc_dataset::{Loader, LoaderOptions};
use ternc_frontend::weights;
use ternc_ir::{Graph, InputError, Policy};
use ternc_passes::plan::Stage;
use ternc_train::BatchStatsAverage;

use super::{augment_of, evaluate_valid, new_trainer, truths_of, write_file, Ctx};

/// What QC did and what it reached (in `stage.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub iterations: usize,
    pub learning_rate: f32,
    pub map50: Option<f64>,
    pub map50_11pt: Option<f64>,
    pub avg_iou: Option<f64>,
    pub seconds: f64,
}

/// Runs QC on `best` (the stage's graph with its ternary flags and best parameters) and
/// writes `dir/corrected.weights`.
pub fn run(ctx: &Ctx, stage: &Stage, best: &Graph, dir: &Path) -> anyhow::Result<Report> {
    let t0 = Instant::now();
    let mut graph = best.clone();
    let net = &mut graph.net;
    let iterations = ctx.ds.train.len().div_ceil(net.batch.max(1)).max(1);
    net.learning_rate *= 0.1;
    net.burn_in = 0;
    net.policy = Policy::Constant;
    net.max_batches = iterations;
    let lr = net.learning_rate;
    graph.params.seen = 0;
    let mut trainer = new_trainer(ctx, &graph)?;
    trainer.set_weights_frozen(true);
    let augment = augment_of(&graph);
    let loader = Loader::new(
        ctx.ds.train.clone(),
        LoaderOptions {
            // another order than the stage's first epoch
            seed: ctx.seed ^ 0x5143_5143,
            threads: ctx.threads,
            classes: ctx.ds.classes,
            augment,
            shuffle: true,
        },
    )
    .map_err(|m| InputError::whole(&ctx.data, m))?;
    eprintln!(
        "stage {}: QC: {iterations} iterations (one epoch) training scales and biases only at lr {lr}",
        stage.name
    );
    let size = (graph.net.width, graph.net.height);
    let batch = graph.net.batch;
    let mut stats = BatchStatsAverage::new();
    let mut pending = Some(loader.prefetch(0, size, batch));
    for it in 0..iterations {
        let b = pending.take().expect("a batch is loading").wait()?;
        if it + 1 < iterations {
            pending = Some(loader.prefetch(it as u64 + 1, size, batch));
        }
        let truths = truths_of(&b);
        let st = trainer
            .step_observed(&b.images, &truths, |n| stats.observe(n))
            .map_err(|e| anyhow::anyhow!("stage {}: QC: {e}", stage.name))?;
        if !st.loss.is_finite() {
            anyhow::bail!("stage {}: QC: the loss became {} at iteration {}", stage.name, st.loss, it + 1);
        }
        if (it + 1) % 25 == 0 || it + 1 == iterations {
            eprintln!("{}: QC {}/{iterations} loss {:.4}", stage.name, it + 1, st.loss);
        }
    }
    stats.write(&mut trainer.net);
    trainer.write_params(&mut graph);
    let path = dir.join("corrected.weights");
    write_file(&path, &weights::to_bytes(&graph)?)?;
    let metrics = evaluate_valid(&graph, &ctx.ds, ctx.threads)?;
    let report = Report {
        iterations,
        learning_rate: lr,
        map50: metrics.as_ref().map(|m| m.0.map50),
        map50_11pt: metrics.as_ref().map(|m| m.0.map50_11pt),
        avg_iou: metrics.as_ref().map(|m| m.0.avg_iou),
        seconds: t0.elapsed().as_secs_f64(),
    };
    let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.4}"));
    eprintln!(
        "stage {}: QC done: mAP@0.5 {}, avg IoU {}; wrote {}",
        stage.name,
        f(report.map50),
        f(report.avg_iou),
        path.display()
    );
    Ok(report)
}
