//! `ternc train`: the stages of a plan (or one stage from a cfg), each under
//! `out/<stage>/`, with checkpoints, resume, a loss plot, mAP, and a summary.
//!
//! Files of a stage directory:
//! - `<stage>.cfg`: the model cfg with `ternary=1` on the stage's ternary layers;
//! - `best.weights`, `last.weights`;
//! - `loss.csv` (`iteration,loss,avg_loss,lr,images_per_s,seconds,flip_fraction`) and
//!   `loss.png`; `flip_fraction` is the share of ternary weights whose code changed in
//!   the last `flip_window` iterations (the oscillation seed 003 is about);
//! - with `ema`: `best.weights` holds the moving average, `ema.weights` its final value;
//! - with `correction`: `corrected.weights` (QC, see [`correction`]);
//! - `metrics.json` (`map50`, `map50_11pt`, `avg_iou` of `best.weights` on the valid list);
//! - `stage.json`: what the stage started from (path, size, FNV-1a hash), its layers,
//!   iterations, metrics and packed size: what `summary.md`/`summary.json` are made of;
//! - `checkpoint.json` + `checkpoint-N.weights` + `checkpoint-N.momentum` (+ `.ema`,
//!   `.flips`): the resume point (see [`State`]); `checkpoint.json` is written last,
//!   atomically, and names the others, so a kill at any moment leaves a consistent
//!   checkpoint.

mod correction;
mod plot;

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::json;
use ternc_dataset::labels::read_labels;
use ternc_dataset::map::{evaluate, Detection, GroundTruth, MapReport};
use ternc_dataset::{Augment, Dataset, Loader, LoaderOptions};
use ternc_frontend::atomic::write_atomic;
use ternc_frontend::weights;
use ternc_ir::{Graph, InputError, Op, Policy};
use ternc_passes::plan::{self, Plan, Stage, TrainOverrides, DEFAULT_CHECKPOINT_EVERY};
use ternc_passes::spec::{describe, Spec};
use ternc_passes::ternarize::{packed2_bytes, Scope};
use ternc_passes::ternary::DEFAULT_THRESHOLD;
use ternc_runtime::image;
use ternc_train::multiscale::MultiScale;
use ternc_train::{Ema, FlipTracker, Trainer, Truth, Twn};

use super::detect::detect_image;
use super::ternarize::flag_layers;
use super::{Backend, Engine};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Darknet model .cfg: train it as one stage (use --data); or give --stages.
    #[arg(conflicts_with = "stages", required_unless_present = "stages")]
    pub cfg: Option<PathBuf>,
    /// A stage plan (plan.toml): the stages run in order, each from the previous one's
    /// best.weights.
    #[arg(long, value_name = "PLAN")]
    pub stages: Option<PathBuf>,
    /// Darknet .data file (required with MODEL.cfg; overrides a plan's `data`).
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,
    /// Start weights of the first stage (overrides a plan's `weights`; default: random
    /// initialisation with --seed).
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,
    /// Layers trained ternary (with MODEL.cfg; a layer SPEC, default none).
    #[arg(long, value_name = "SPEC", requires = "cfg")]
    pub layers: Option<String>,
    /// Iterations per stage (overrides the plan's iterations and max_batches).
    #[arg(long, value_name = "N")]
    pub iterations: Option<usize>,
    /// Iterations between checkpoints (overrides the plan's; default 100).
    #[arg(long, value_name = "N")]
    pub checkpoint_every: Option<usize>,
    /// Output directory (default: the plan's out; with MODEL.cfg, runs/<model>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Training threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Seed of the random initialisation, the data order and the augmentation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Continue from the checkpoints under the output directory (finished stages are
    /// kept, an interrupted one continues from its last checkpoint).
    #[arg(long)]
    pub resume: bool,
    /// Start the plan at this stage (from the previous stage's best.weights).
    #[arg(long, value_name = "NAME")]
    pub from_stage: Option<String>,
    /// Testing aid: end the process abruptly after this iteration of a stage, as a
    /// kill would (no final files, nothing flushed beyond the last checkpoint).
    #[arg(long, value_name = "N", hide = true)]
    pub abort_after: Option<usize>,
}

/// The resume point of a stage (`checkpoint.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct State {
    pub stage: String,
    /// Iterations done (batch `iteration` is the next one the loader yields).
    pub iteration: usize,
    pub seen: u64,
    pub seed: u64,
    /// Darknet's smoothed loss (`0.9·avg + 0.1·loss`), negative before the first step.
    pub avg_loss: f64,
    /// `avg_loss` or `map50`: what `best.weights` is the best of.
    pub best_by: String,
    /// The best value so far (lowest avg loss, or highest mAP); none before the first.
    pub best: Option<f64>,
    pub best_iteration: Option<usize>,
    /// Seconds spent training before this checkpoint (all sessions).
    pub seconds: f64,
    /// Files, relative to the stage directory.
    pub weights: String,
    pub momentum: String,
    /// The EMA values (with `ema`) and how many updates they have seen.
    #[serde(default)]
    pub ema: Option<String>,
    #[serde(default)]
    pub ema_updates: u64,
    /// The flip tracker's history.
    #[serde(default)]
    pub flips: Option<String>,
    /// The stage finished: `best.weights` and `last.weights` are final.
    pub done: bool,
}

/// One row of `loss.csv`.
#[derive(Debug, Clone, Copy)]
struct Row {
    iteration: usize,
    loss: f32,
    avg_loss: f32,
    lr: f32,
    images_per_s: f32,
    seconds: f64,
    flips: f64,
}

const CSV_HEADER: &str = "iteration,loss,avg_loss,lr,images_per_s,seconds,flip_fraction\n";

impl Row {
    fn csv(&self) -> String {
        format!(
            "{},{},{},{},{:.3},{:.3},{:.6}\n",
            self.iteration, self.loss, self.avg_loss, self.lr, self.images_per_s, self.seconds, self.flips
        )
    }
}

/// FNV-1a (64 bit): a dependency-free fingerprint of a file, for the logs and stage.json.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

struct Ctx {
    plan: Plan,
    out: PathBuf,
    data: PathBuf,
    ds: Dataset,
    cfg_text: String,
    base: Graph,
    threads: usize,
    seed: u64,
    resume: bool,
    iterations: Option<usize>,
    checkpoint_every: Option<usize>,
    abort_after: Option<usize>,
    interactive: bool,
}

/// What a finished stage reports (also `stage.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StageReport {
    name: String,
    ternary_layers: usize,
    weight_layers: usize,
    layers: String,
    ternary: Vec<usize>,
    iterations: usize,
    map50: Option<f64>,
    map50_11pt: Option<f64>,
    avg_iou: Option<f64>,
    packed_bytes: usize,
    fp32_bytes: usize,
    best_by: String,
    best: Option<f64>,
    best_iteration: Option<usize>,
    start: serde_json::Value,
    #[serde(default)]
    ema: Option<f32>,
    /// Mean `flip_fraction` of the stage's last `flip_window` iterations.
    #[serde(default)]
    flip_fraction: Option<f64>,
    #[serde(default)]
    flip_window: usize,
    /// mAP of `corrected.weights` (with `correction`).
    #[serde(default)]
    corrected: Option<correction::Report>,
    /// Iterations trained at each input size (`WxH`): one size unless `random=1`.
    #[serde(default)]
    sizes: std::collections::BTreeMap<String, usize>,
    skipped_images: usize,
    missing_labels: usize,
    seconds: f64,
}

fn one_stage_plan(a: &Args, cfg: &Path) -> anyhow::Result<Plan> {
    let data = a.data.clone().ok_or_else(|| {
        InputError::whole(
            cfg,
            "no --data: expected the .data file to train on (ternc train MODEL.cfg --data D)",
        )
    })?;
    let layers =
        Spec::parse(a.layers.as_deref().unwrap_or("none")).map_err(|m| InputError::whole("--layers", m))?;
    let stem = cfg.file_stem().map_or("model".into(), |s| s.to_string_lossy().into_owned());
    Ok(Plan {
        path: cfg.to_path_buf(),
        cfg: cfg.to_path_buf(),
        data: Some(data),
        weights: a.weights.clone(),
        out: Path::new("runs").join(&stem),
        scope: Scope::Layer,
        threshold: DEFAULT_THRESHOLD,
        stages: vec![Stage {
            name: "train".into(),
            layers,
            train: TrainOverrides::default(),
            iterations: None,
            checkpoint_every: DEFAULT_CHECKPOINT_EVERY,
            eval_every: None,
            ema: None,
            correction: false,
            flip_window: plan::DEFAULT_FLIP_WINDOW,
        }],
    })
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let plan = match (&a.stages, &a.cfg) {
        (Some(p), _) => {
            let mut plan = plan::read(p)?;
            plan.data = a.data.clone().or(plan.data);
            plan.weights = a.weights.clone().or(plan.weights);
            plan
        }
        (None, Some(cfg)) => one_stage_plan(&a, cfg)?,
        (None, None) => unreachable!("clap requires MODEL.cfg or --stages"),
    };
    for (v, what) in [(a.iterations, "--iterations"), (a.checkpoint_every, "--checkpoint-every")] {
        if v == Some(0) {
            return Err(InputError::whole(what, "0: expected a positive number of iterations").into());
        }
    }
    let first = match &a.from_stage {
        Some(name) => {
            plan.stage(name)?;
            plan.stages.iter().position(|s| &s.name == name).unwrap()
        }
        None => 0,
    };
    let data = plan.data.clone().ok_or_else(|| {
        InputError::at_line(&plan.path, 1, "no data = \"FILE.data\": expected the data set to train on")
    })?;
    let ds = Dataset::open(&data)?;
    if ds.train.is_empty() {
        return Err(
            InputError::whole(&data, "no train= list (or it is empty): expected images to train on").into()
        );
    }
    let base = super::load_graph(&plan.cfg)?;
    if base.heads().is_empty() {
        return Err(InputError::whole(
            &plan.cfg,
            "the model has no [yolo] or [region] layer: expected a detector",
        )
        .into());
    }
    let classes = super::model_classes(&base);
    if classes != ds.classes {
        return Err(InputError::whole(
            &data,
            format!(
                "classes={} but {} detects {classes} classes: expected the same",
                ds.classes,
                plan.cfg.display()
            ),
        )
        .into());
    }
    let cfg_text = std::fs::read_to_string(&plan.cfg)
        .map_err(|e| InputError::whole(&plan.cfg, format!("cannot read cfg: {e}")))?;
    let out = a.out.clone().unwrap_or_else(|| plan.out.clone());
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    if plan.scope == Scope::Channel {
        eprintln!(
            "warning: {}: scope = \"channel\" is not used by training yet: ternary layers train with one α per layer, as ternary=1 layers run",
            plan.path.display()
        );
    }
    let ctx = Ctx {
        out,
        data,
        ds,
        cfg_text,
        base,
        threads: super::threads(a.threads),
        seed: a.seed,
        resume: a.resume,
        iterations: a.iterations,
        checkpoint_every: a.checkpoint_every,
        abort_after: a.abort_after,
        interactive: std::io::stderr().is_terminal(),
        plan,
    };
    let mut start: Option<PathBuf> = if first == 0 {
        ctx.plan.weights.clone()
    } else {
        let prev = ctx.out.join(&ctx.plan.stages[first - 1].name).join("best.weights");
        if !prev.exists() {
            return Err(InputError::whole(
                &prev,
                format!(
                    "--from-stage {}: the previous stage's best.weights does not exist: expected a finished stage {}",
                    ctx.plan.stages[first].name,
                    ctx.plan.stages[first - 1].name
                ),
            )
            .into());
        }
        Some(prev)
    };
    for stage in &ctx.plan.stages[first..] {
        run_stage(&ctx, stage, start.as_deref())?;
        start = Some(ctx.out.join(&stage.name).join("best.weights"));
    }
    write_summary(&ctx)?;
    Ok(())
}

/// Applies a stage's `[net]` overrides; an impossible policy is an error naming the plan.
fn apply_overrides(
    net: &mut ternc_ir::NetConfig,
    o: &TrainOverrides,
    plan: &Path,
    stage: &str,
) -> anyhow::Result<()> {
    fn set<T>(dst: &mut T, v: Option<T>) {
        if let Some(v) = v {
            *dst = v;
        }
    }
    set(&mut net.max_batches, o.max_batches);
    set(&mut net.learning_rate, o.learning_rate);
    set(&mut net.batch, o.batch);
    set(&mut net.subdivisions, o.subdivisions);
    set(&mut net.burn_in, o.burn_in);
    set(&mut net.momentum, o.momentum);
    set(&mut net.decay, o.decay);
    let name = o.policy.clone().unwrap_or_else(|| net.policy.name().to_string());
    let bad =
        |why: String| -> anyhow::Error { InputError::whole(plan, format!("stage {stage}: {why}")).into() };
    net.policy = match name.as_str() {
        "steps" => {
            let (s0, k0) = match &net.policy {
                Policy::Steps { steps, scales } => (Some(steps.clone()), Some(scales.clone())),
                _ => (None, None),
            };
            match (o.steps.clone().or(s0), o.scales.clone().or(k0)) {
                (Some(steps), Some(scales)) if steps.len() == scales.len() => Policy::Steps { steps, scales },
                (Some(s), Some(k)) => {
                    return Err(bad(format!("{} scales for {} steps: expected one scale per step", k.len(), s.len())))
                }
                _ => return Err(bad("policy = \"steps\" needs steps and scales (in the stage or the cfg)".into())),
            }
        }
        "constant" => Policy::Constant,
        "poly" => Policy::Poly,
        n if n == net.policy.name() => net.policy.clone(),
        n => {
            return Err(bad(format!(
                "policy = \"{n}\" needs parameters a plan cannot give: set it in the cfg's [net] (or use constant, steps, poly)"
            )))
        }
    };
    if o.policy.is_none()
        && (o.steps.is_some() || o.scales.is_some())
        && !matches!(net.policy, Policy::Steps { .. })
    {
        return Err(bad("steps/scales given but the policy is not steps: add policy = \"steps\"".into()));
    }
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_atomic(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// A trainer for `graph` (its ternary layers flagged) on the context's threads, with
/// the plan's TWN threshold on the ternary layers (the network installs the default).
fn new_trainer(ctx: &Ctx, graph: &Graph) -> anyhow::Result<Trainer> {
    let mut trainer =
        Trainer::new(graph, ctx.threads).map_err(|e| InputError::whole(&ctx.plan.cfg, e.to_string()))?;
    if ctx.plan.threshold != DEFAULT_THRESHOLD {
        for l in (0..graph.num_layers()).filter(|&l| graph.layer(l).op.is_ternary()) {
            trainer.net.set_weight_transform(l, Some(Box::new(Twn { threshold: ctx.plan.threshold })))?;
        }
    }
    Ok(trainer)
}

/// A loaded batch's boxes as the trainer takes them.
fn truths_of(b: &ternc_dataset::Batch) -> Vec<Vec<Truth>> {
    b.truths.iter().map(|ts| ts.iter().map(|t| Truth::new(t.class, t.cx, t.cy, t.w, t.h)).collect()).collect()
}

/// The model a stage evaluates and keeps as `best.weights`: the moving average when the
/// stage has one, else the live weights.
fn snapshot(trainer: &Trainer, ema: Option<&Ema>, graph: &mut Graph) {
    trainer.write_params(graph);
    if let Some(e) = ema {
        e.write_params(&trainer.net, &mut graph.params);
    }
}

fn weights_bytes(trainer: &Trainer, graph: &mut Graph) -> anyhow::Result<Vec<u8>> {
    trainer.write_params(graph);
    Ok(weights::to_bytes(graph)?)
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn read_momentum(path: &Path) -> anyhow::Result<Vec<f32>> {
    let b =
        std::fs::read(path).map_err(|e| InputError::whole(path, format!("cannot read checkpoint: {e}")))?;
    if b.len() % 4 != 0 {
        return Err(InputError::whole(path, "truncated momentum file: expected float32 values").into());
    }
    Ok(b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

/// The packed model size: ternary weight layers at 2 bits a weight plus one scale,
/// float ones at 4 bytes a weight (weights only; biases and batchnorm are the same
/// either way).
fn model_bytes(graph: &Graph, ternary: &BTreeSet<usize>) -> (usize, usize) {
    let (mut packed, mut fp32) = (0, 0);
    for i in 0..graph.num_layers() {
        let op = &graph.layer(i).op;
        if !op.has_weights() {
            continue;
        }
        let n: usize = graph
            .param_layout(i)
            .iter()
            .filter(|(k, _)| *k == ternc_ir::ParamKind::Weights)
            .map(|(_, c)| *c)
            .sum();
        fp32 += 4 * n;
        let rows = op.weight_rows().unwrap_or(1).max(1);
        packed += if ternary.contains(&i) { packed2_bytes(rows, n / rows, 1) } else { 4 * n };
    }
    (packed, fp32)
}

/// `[net] resize_step` (Darknet reads a float and truncates it; default 32), which the
/// IR does not keep: read from the cfg text, an unusable value is an error at its line.
fn resize_step(cfg_path: &Path, cfg: &str) -> Result<usize, InputError> {
    let mut in_net = false;
    for (i, line) in cfg.lines().enumerate() {
        let t = line.split(['#', ';']).next().unwrap_or("").trim();
        if t.starts_with('[') {
            in_net = t == "[net]" || t == "[network]";
        } else if let (true, Some((k, v))) = (in_net, t.split_once('=')) {
            if k.trim() == "resize_step" {
                return match v.trim().parse::<f32>() {
                    Ok(f) if f >= 1.0 && f.is_finite() => Ok(f as usize),
                    _ => Err(InputError::at_line(
                        cfg_path,
                        i + 1,
                        format!("resize_step={}: expected a number of pixels >= 1", v.trim()),
                    )),
                };
            }
        }
    }
    Ok(32)
}

/// Darknet's augmentation settings from the cfg (`[net]` and the first head).
fn augment_of(graph: &Graph) -> Augment {
    let net = &graph.net;
    let mut a = Augment {
        hue: net.hue,
        saturation: net.saturation,
        exposure: net.exposure,
        flip: net.flip,
        letterbox: net.letter_box,
        ..Augment::default()
    };
    if let Some(&h) = graph.heads().first() {
        match &graph.layer(h).op {
            Op::Yolo(y) => (a.jitter, a.resize, a.max_boxes) = (y.jitter, y.resize, y.max_boxes),
            Op::Region(r) => (a.jitter, a.max_boxes) = (r.jitter, r.max_boxes),
            _ => {}
        }
    }
    a
}

/// mAP of `graph` (parameters loaded, ternary flags set) on the valid list, with the
/// reference interpreter; `None` when the data set has no valid list.
fn evaluate_valid(
    graph: &Graph,
    ds: &Dataset,
    threads: usize,
) -> anyhow::Result<Option<(MapReport, usize, usize)>> {
    if ds.valid.is_empty() {
        return Ok(None);
    }
    let engine = Engine::new(graph, Backend::Reference, threads, None)?;
    let letterbox = graph.net.letter_box;
    let (mut dets, mut truths, mut skipped) = (Vec::new(), Vec::new(), 0usize);
    for s in &ds.valid {
        let labels = match read_labels(&s.label, Some(ds.classes)) {
            Ok(l) => l.unwrap_or_default(),
            Err(_) => {
                skipped += 1;
                continue;
            }
        };
        let Ok(im) = image::load(&s.image) else {
            skipped += 1;
            continue;
        };
        let d = detect_image(&engine, graph, &im, letterbox, 0.005, 0.45)?;
        dets.push(
            d.iter().map(|d| Detection { class: d.class, score: d.score, bbox: d.bbox }).collect::<Vec<_>>(),
        );
        truths.push(
            labels
                .iter()
                .map(|l| GroundTruth {
                    class: l.class,
                    bbox: l.to_pixels(im.w, im.h),
                    difficult: l.difficult,
                })
                .collect::<Vec<_>>(),
        );
    }
    if dets.is_empty() {
        return Ok(None);
    }
    let n = dets.len();
    Ok(Some((evaluate(&dets, &truths, &ds.names[..ds.classes], 0.5), n, skipped)))
}

fn progress_bar(stage: &str, total: usize, at: usize) -> ProgressBar {
    let pb = ProgressBar::new(total as u64);
    pb.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    pb.set_prefix(stage.to_string());
    pb.set_position(at as u64);
    pb
}

fn run_stage(ctx: &Ctx, stage: &Stage, start: Option<&Path>) -> anyhow::Result<()> {
    let dir = ctx.out.join(&stage.name);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let ckpt_path = dir.join("checkpoint.json");
    let state: Option<State> = if ctx.resume && ckpt_path.exists() {
        let text = std::fs::read_to_string(&ckpt_path)
            .map_err(|e| InputError::whole(&ckpt_path, format!("cannot read checkpoint: {e}")))?;
        let s: State = serde_json::from_str(&text)
            .map_err(|e| InputError::at_line(&ckpt_path, e.line().max(1), format!("bad checkpoint: {e}")))?;
        if s.done && dir.join("stage.json").exists() && dir.join("best.weights").exists() {
            eprintln!("stage {}: finished before (--resume): keeping {}", stage.name, dir.display());
            return Ok(());
        }
        Some(s)
    } else {
        // A fresh start: nothing of an earlier run in this directory may pass for ours.
        for f in ["best.weights", "last.weights", "checkpoint.json", "stage.json", "metrics.json", "loss.png"]
        {
            let _ = std::fs::remove_file(dir.join(f));
        }
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with("checkpoint-") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        None
    };

    // The stage's graph: [net] overrides, its ternary layers flagged.
    let mut graph = ctx.base.clone();
    apply_overrides(&mut graph.net, &stage.train, &ctx.plan.path, &stage.name)?;
    let selected = stage
        .layers
        .select(&graph)
        .map_err(|m| InputError::whole(&ctx.plan.path, format!("stage {}: {m}", stage.name)))?;
    let ternary: BTreeSet<usize> = selected
        .iter()
        .copied()
        .chain((0..graph.num_layers()).filter(|&i| graph.layer(i).op.is_ternary()))
        .collect();
    for &l in &ternary {
        let n = graph.layers[l];
        graph.g[n].op.set_ternary(true);
    }
    let stage_cfg = dir.join(format!("{}.cfg", stage.name));
    write_file(&stage_cfg, flag_layers(&ctx.cfg_text, &graph, &ternary).as_bytes())?;

    let iterations = ctx.iterations.or(stage.iterations).unwrap_or(graph.net.max_batches);
    if iterations == 0 {
        return Err(InputError::whole(
            &ctx.plan.path,
            format!(
                "stage {}: no iterations: set max_batches in the cfg or iterations in the plan",
                stage.name
            ),
        )
        .into());
    }
    let checkpoint_every = ctx.checkpoint_every.unwrap_or(stage.checkpoint_every);
    let eval_every = stage.eval_every.filter(|_| !ctx.ds.valid.is_empty());
    let best_by = if eval_every.is_some() { "map50" } else { "avg_loss" };

    // Parameters: the checkpoint's, the start file's, or random.
    let start_info;
    let mut momentum = None;
    if let Some(s) = &state {
        let w = dir.join(&s.weights);
        graph.params = weights::read(&w, &graph, None)?;
        momentum = Some(read_momentum(&dir.join(&s.momentum))?);
        let prev: serde_json::Value = std::fs::read_to_string(dir.join("start.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(serde_json::Value::Null);
        start_info = prev;
        eprintln!(
            "stage {}: resuming at iteration {}/{iterations} from {}",
            stage.name,
            s.iteration,
            w.display()
        );
    } else {
        match start {
            Some(p) => {
                let bytes = std::fs::read(p)
                    .map_err(|e| InputError::whole(p, format!("cannot read weights: {e}")))?;
                graph.params = weights::read_bytes(p, &bytes, &graph, None)?;
                let hash = format!("{:016x}", fnv1a64(&bytes));
                eprintln!(
                    "stage {}: starting from {} ({} bytes, fnv1a64 {hash})",
                    stage.name,
                    p.display(),
                    bytes.len()
                );
                start_info = json!({"path": p.display().to_string(), "bytes": bytes.len(), "fnv1a64": hash});
            }
            None => {
                graph.params = ternc_frontend::init::init(&graph, ctx.seed);
                eprintln!("stage {}: starting from random weights (seed {})", stage.name, ctx.seed);
                start_info = json!({"random_seed": ctx.seed});
            }
        }
        // Each stage counts its iterations from 0 (Darknet's -clear).
        graph.params.seen = 0;
        write_file(&dir.join("start.json"), serde_json::to_string_pretty(&start_info)?.as_bytes())?;
    }

    let mut trainer = new_trainer(ctx, &graph)?;
    if let Some(m) = &momentum {
        trainer.set_momentum(m).map_err(|e| InputError::whole(dir.join("checkpoint.json"), e.to_string()))?;
    }
    let ternary_list: Vec<usize> = ternary.iter().copied().collect();
    let mut tracker = FlipTracker::new(&trainer.net, &ternary_list, stage.flip_window);
    let mut ema = stage.ema.map(|d| Ema::new(&trainer.net, d));
    if let Some(s) = &state {
        let bad = |what: &str| -> anyhow::Error {
            InputError::whole(
                dir.join("checkpoint.json"),
                format!("the checkpoint's {what} does not fit the model"),
            )
            .into()
        };
        if let (Some(e), Some(f)) = (&mut ema, &s.ema) {
            let values = read_momentum(&dir.join(f))?;
            *e = Ema::restore(&trainer.net, e.decay(), s.ema_updates, values).ok_or_else(|| bad("EMA"))?;
        }
        if let Some(f) = &s.flips {
            let bytes = std::fs::read(dir.join(f))
                .map_err(|e| InputError::whole(dir.join(f), format!("cannot read checkpoint: {e}")))?;
            if !tracker.restore(&trainer.net, &bytes) {
                return Err(bad("flip history"));
            }
        }
    }
    let augment = augment_of(&graph);
    // random=1 (on the last head, as Darknet reads it): multi-scale training, a new
    // input size every 10 iterations.
    let step = resize_step(&ctx.plan.cfg, &ctx.cfg_text)?;
    let multiscale = MultiScale::for_graph(&graph, step, iterations, ctx.seed)
        .map_err(|e| InputError::whole(&ctx.plan.cfg, e.to_string()))?;
    if let Some(ms) = &multiscale {
        // Every size the rule can pick must fit the model: find out now, not mid-stage.
        let sizes = ms.sizes();
        for &(w, h) in &sizes {
            trainer.resize(w, h).map_err(|e| {
                InputError::whole(
                    &ctx.plan.cfg,
                    format!("random=1 picks {w}x{h}, which the model cannot take: {e}"),
                )
            })?;
        }
        let list: Vec<String> = sizes.iter().map(|(w, h)| format!("{w}x{h}")).collect();
        eprintln!("stage {}: random=1: multi-scale training at {}", stage.name, list.join(", "));
    }
    let size_at =
        |it: usize| multiscale.as_ref().map_or((graph.net.width, graph.net.height), |m| m.size_at(it));
    let loader = Loader::new(
        ctx.ds.train.clone(),
        LoaderOptions {
            seed: ctx.seed,
            threads: ctx.threads,
            classes: ctx.ds.classes,
            augment,
            shuffle: true,
        },
    )
    .map_err(|m| InputError::whole(&ctx.data, m))?;
    let batch = graph.net.batch;
    let size = (graph.net.width, graph.net.height);
    eprintln!(
        "stage {}: {} ternary layers ({}), {iterations} iterations of {batch} images at {}x{}, {} training images, best by {best_by}",
        stage.name,
        ternary.len(),
        describe(&graph, &ternary),
        size.0,
        size.1,
        loader.len()
    );

    // loss.csv: the rows up to the checkpoint, then appended.
    let csv_path = dir.join("loss.csv");
    let mut rows: Vec<Row> = Vec::new();
    if let Some(s) = &state {
        if let Ok(text) = std::fs::read_to_string(&csv_path) {
            for line in text.lines().skip(1) {
                let f: Vec<&str> = line.split(',').collect();
                let p = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
                if let (Some(it), Some(l), Some(av), Some(lr), Some(ips), Some(sec)) =
                    (p(0), p(1), p(2), p(3), p(4), p(5))
                {
                    if (it as usize) <= s.iteration {
                        rows.push(Row {
                            iteration: it as usize,
                            loss: l as f32,
                            avg_loss: av as f32,
                            lr: lr as f32,
                            images_per_s: ips as f32,
                            seconds: sec,
                            flips: p(6).unwrap_or(0.0),
                        });
                    }
                }
            }
        }
    }
    {
        let mut text = String::from(CSV_HEADER);
        rows.iter().for_each(|r| text.push_str(&r.csv()));
        write_file(&csv_path, text.as_bytes())?;
    }
    let mut csv = std::fs::OpenOptions::new()
        .append(true)
        .open(&csv_path)
        .with_context(|| format!("cannot open {}", csv_path.display()))?;

    let mut avg_loss = state.as_ref().map_or(-1.0, |s| s.avg_loss);
    let mut best = state.as_ref().and_then(|s| s.best);
    let mut best_iteration = state.as_ref().and_then(|s| s.best_iteration);
    let base_seconds = state.as_ref().map_or(0.0, |s| s.seconds);
    let mut best_graph = graph.clone();
    let mut best_dirty = false;
    let mut scratch = graph.clone();
    let mut old_ckpt: Option<Vec<String>> = state.as_ref().map(|s| {
        [Some(s.weights.clone()), Some(s.momentum.clone()), s.ema.clone(), s.flips.clone()]
            .into_iter()
            .flatten()
            .collect()
    });
    let t0 = Instant::now();
    let seconds = |t0: Instant| base_seconds + t0.elapsed().as_secs_f64();

    let session_start = trainer.iteration();
    let pb = ctx.interactive.then(|| progress_bar(&stage.name, iterations, trainer.iteration()));
    let mut pending = (trainer.iteration() < iterations)
        .then(|| loader.prefetch(trainer.iteration() as u64, size_at(trainer.iteration()), batch));
    while trainer.iteration() < iterations {
        let step_start = Instant::now();
        let b = pending.take().expect("a batch is loading").wait()?;
        let next = trainer.iteration() + 1;
        if next < iterations {
            pending = Some(loader.prefetch(next as u64, size_at(next), batch));
        }
        let want = size_at(trainer.iteration());
        if trainer.input_size() != want {
            trainer.resize(want.0, want.1).map_err(|e| anyhow::anyhow!("stage {}: {e}", stage.name))?;
        }
        let truths = truths_of(&b);
        let st =
            trainer.step(&b.images, &truths).map_err(|e| anyhow::anyhow!("stage {}: {e}", stage.name))?;
        let it = st.iteration;
        if !st.loss.is_finite() {
            anyhow::bail!(
                "stage {}: the loss became {} at iteration {it}: lower the learning rate (last good checkpoint in {})",
                stage.name,
                st.loss,
                dir.display()
            );
        }
        avg_loss = if avg_loss < 0.0 { st.loss as f64 } else { 0.9 * avg_loss + 0.1 * st.loss as f64 };
        if let Some(e) = &mut ema {
            e.update(&trainer.net);
        }
        let flips = tracker.observe(&trainer.net, it as u64);
        let dt = step_start.elapsed().as_secs_f64().max(1e-9);
        let row = Row {
            iteration: it,
            loss: st.loss,
            avg_loss: avg_loss as f32,
            lr: st.lr,
            images_per_s: (batch as f64 / dt) as f32,
            seconds: seconds(t0),
            flips,
        };
        csv.write_all(row.csv().as_bytes())?;
        rows.push(row);
        let mut msg =
            format!("loss {:.4} avg {:.4} lr {:.6} {:.1} img/s", st.loss, avg_loss, st.lr, row.images_per_s);
        if !tracker.is_empty() {
            msg.push_str(&format!(" flips {:.2}%", 100.0 * flips));
        }
        match &pb {
            Some(pb) => {
                pb.set_position(it as u64);
                pb.set_message(msg);
            }
            None if it == 1 || it % 10 == 0 || it == iterations => {
                let rate = (it - session_start) as f64 / t0.elapsed().as_secs_f64().max(1e-9);
                let eta = Duration::from_secs_f64((iterations - it) as f64 / rate.max(1e-9));
                eprintln!("{}: {it}/{iterations} {msg} eta {}s", stage.name, eta.as_secs());
            }
            None => {}
        }
        if best_by == "avg_loss" && best.is_none_or(|b| avg_loss < b) {
            best = Some(avg_loss);
            best_iteration = Some(it);
            snapshot(&trainer, ema.as_ref(), &mut best_graph);
            best_dirty = true;
        }
        if let Some(e) = eval_every {
            if it % e == 0 || it == iterations {
                snapshot(&trainer, ema.as_ref(), &mut scratch);
                if let Some((r, _, _)) = evaluate_valid(&scratch, &ctx.ds, ctx.threads)? {
                    let line = format!(
                        "{}: iteration {it}: valid mAP@0.5 {:.4}, avg IoU {:.4}",
                        stage.name, r.map50, r.avg_iou
                    );
                    match &pb {
                        Some(pb) => pb.println(line),
                        None => eprintln!("{line}"),
                    }
                    if best.is_none_or(|b| r.map50 > b) {
                        best = Some(r.map50);
                        best_iteration = Some(it);
                        best_graph.params.clone_from(&scratch.params);
                        best_dirty = true;
                    }
                }
            }
        }
        let done = it >= iterations;
        if it % checkpoint_every == 0 || done {
            csv.flush()?;
            if best_dirty {
                write_file(&dir.join("best.weights"), &weights::to_bytes(&best_graph)?)?;
                best_dirty = false;
            }
            let wname = format!("checkpoint-{it}.weights");
            let mname = format!("checkpoint-{it}.momentum");
            let wbytes = weights_bytes(&trainer, &mut scratch)?;
            write_file(&dir.join(&wname), &wbytes)?;
            write_file(&dir.join(&mname), &f32_bytes(&trainer.momentum()))?;
            let ename = ema.as_ref().map(|_| format!("checkpoint-{it}.ema"));
            if let (Some(e), Some(n)) = (&ema, &ename) {
                write_file(&dir.join(n), &f32_bytes(e.values()))?;
            }
            let fname = format!("checkpoint-{it}.flips");
            write_file(&dir.join(&fname), &tracker.to_bytes())?;
            write_file(&dir.join("last.weights"), &wbytes)?;
            let s = State {
                stage: stage.name.clone(),
                iteration: it,
                seen: trainer.seen,
                seed: ctx.seed,
                avg_loss,
                best_by: best_by.into(),
                best,
                best_iteration,
                seconds: seconds(t0),
                weights: wname.clone(),
                momentum: mname.clone(),
                ema: ename.clone(),
                ema_updates: ema.as_ref().map_or(0, |e| e.updates()),
                flips: Some(fname.clone()),
                // set once the final files are written below
                done: false,
            };
            write_file(&ckpt_path, serde_json::to_string_pretty(&s)?.as_bytes())?;
            let files: Vec<String> =
                [Some(wname), Some(mname), ename, Some(fname)].into_iter().flatten().collect();
            for old in old_ckpt.replace(files.clone()).unwrap_or_default() {
                if !files.contains(&old) {
                    let _ = std::fs::remove_file(dir.join(old));
                }
            }
        }
        if ctx.abort_after == Some(it) {
            // As a kill -9 would: no final files, no buffers flushed by us.
            std::process::exit(137);
        }
    }
    if let Some(pb) = &pb {
        pb.finish();
    }
    drop(csv);

    // Final files. The last checkpoint holds the last weights.
    if !dir.join("best.weights").exists() {
        // a resumed stage that had finished training but not its final files
        snapshot(&trainer, ema.as_ref(), &mut best_graph);
        write_file(&dir.join("best.weights"), &weights::to_bytes(&best_graph)?)?;
    }
    write_file(&dir.join("last.weights"), &weights_bytes(&trainer, &mut scratch)?)?;
    if let Some(e) = &ema {
        snapshot(&trainer, Some(e), &mut scratch);
        write_file(&dir.join("ema.weights"), &weights::to_bytes(&scratch)?)?;
    }
    let plot_rows: Vec<plot::Point> = rows
        .iter()
        .map(|r| plot::Point { iteration: r.iteration, loss: r.loss, avg_loss: r.avg_loss, flips: r.flips })
        .collect();
    write_file(
        &dir.join("loss.png"),
        &plot::loss_png(&format!("{}: loss per iteration", stage.name), &plot_rows, !tracker.is_empty())?,
    )?;
    let window = stage.flip_window.min(rows.len()).max(1);
    let flip_fraction = (!tracker.is_empty() && !rows.is_empty())
        .then(|| rows[rows.len() - window..].iter().map(|r| r.flips).sum::<f64>() / window as f64);
    let stats = loader.stats();
    if stats.skipped > 0 || stats.missing_labels > 0 {
        eprintln!(
            "stage {}: {} images skipped (unreadable image or label file), {} without a label file",
            stage.name, stats.skipped, stats.missing_labels
        );
        for e in stats.errors.iter().take(20) {
            eprintln!("  {e}");
        }
    }

    // metrics.json: best.weights on the valid list.
    let best_bytes = std::fs::read(dir.join("best.weights"))?;
    let mut eval_graph = graph.clone();
    eval_graph.params = weights::read_bytes(&dir.join("best.weights"), &best_bytes, &graph, None)?;
    let metrics = evaluate_valid(&eval_graph, &ctx.ds, ctx.threads)?;
    let metrics_json = match &metrics {
        Some((r, n, skipped)) => json!({
            "map50": r.map50,
            "map50_11pt": r.map50_11pt,
            "avg_iou": r.avg_iou,
            "images": n,
            "skipped": skipped,
            "weights": "best.weights",
        }),
        None => json!({
            "map50": null, "map50_11pt": null, "avg_iou": null, "images": 0,
            "note": "the data set has no valid list", "weights": "best.weights",
        }),
    };
    write_file(&dir.join("metrics.json"), serde_json::to_string_pretty(&metrics_json)?.as_bytes())?;
    let corrected = if stage.correction {
        Some(correction::run(ctx, stage, &eval_graph, &dir)?)
    } else {
        let _ = std::fs::remove_file(dir.join("corrected.weights"));
        None
    };
    let (packed, fp32) = model_bytes(&graph, &ternary);
    let weight_layers = (0..graph.num_layers()).filter(|&i| graph.layer(i).op.has_weights()).count();
    let report = StageReport {
        name: stage.name.clone(),
        ternary_layers: ternary.len(),
        weight_layers,
        layers: stage.layers.as_str().to_string(),
        ternary: ternary.iter().copied().collect(),
        iterations,
        map50: metrics.as_ref().map(|m| m.0.map50),
        map50_11pt: metrics.as_ref().map(|m| m.0.map50_11pt),
        avg_iou: metrics.as_ref().map(|m| m.0.avg_iou),
        packed_bytes: packed,
        fp32_bytes: fp32,
        best_by: best_by.into(),
        best,
        best_iteration,
        start: start_info,
        ema: stage.ema,
        flip_fraction,
        flip_window: stage.flip_window,
        corrected,
        sizes: (0..iterations).fold(Default::default(), |mut m, it| {
            let (w, h) = size_at(it);
            *m.entry(format!("{w}x{h}")).or_insert(0) += 1;
            m
        }),
        skipped_images: stats.skipped,
        missing_labels: stats.missing_labels,
        seconds: seconds(t0),
    };
    write_file(&dir.join("stage.json"), serde_json::to_string_pretty(&report)?.as_bytes())?;
    // The stage is finished: mark its checkpoint so --resume skips it.
    if let Ok(text) = std::fs::read_to_string(&ckpt_path) {
        if let Ok(mut s) = serde_json::from_str::<State>(&text) {
            s.done = true;
            write_file(&ckpt_path, serde_json::to_string_pretty(&s)?.as_bytes())?;
        }
    }
    let pct = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.4}", v));
    eprintln!(
        "stage {}: done: best {best_by} {} at iteration {}, mAP@0.5 {}, avg IoU {}; wrote {}",
        stage.name,
        pct(best),
        best_iteration.map_or("-".into(), |i| i.to_string()),
        pct(report.map50),
        pct(report.avg_iou),
        dir.display()
    );
    Ok(())
}

/// `out/summary.md` and `out/summary.json`: one row per stage that has a `stage.json`.
fn write_summary(ctx: &Ctx) -> anyhow::Result<()> {
    let mut reports = Vec::new();
    for s in &ctx.plan.stages {
        let p = ctx.out.join(&s.name).join("stage.json");
        if let Ok(text) = std::fs::read_to_string(&p) {
            if let Ok(r) = serde_json::from_str::<StageReport>(&text) {
                reports.push(r);
            }
        }
    }
    let mib = |b: usize| b as f64 / (1 << 20) as f64;
    let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
    let mut md = format!(
        "# Training summary\n\nplan: `{}`, model: `{}`, data: `{}`\n\n\
         | stage | ternary layers | SPEC | iterations | mAP@0.5 | avg IoU | mAP@0.5 after QC | flips | packed size |\n\
         |---|---|---|---|---|---|---|---|---|\n",
        ctx.plan.path.display(),
        ctx.plan.cfg.display(),
        ctx.data.display()
    );
    for r in &reports {
        md.push_str(&format!(
            "| {} | {} of {} | `{}` | {}{} | {} | {} | {} | {} | {:.3} MiB ({:.1}x smaller than fp32) |\n",
            r.name,
            r.ternary_layers,
            r.weight_layers,
            r.layers,
            r.iterations,
            r.ema.map_or(String::new(), |d| format!(" (EMA {d})")),
            f(r.map50),
            f(r.avg_iou),
            f(r.corrected.as_ref().and_then(|c| c.map50)),
            r.flip_fraction.map_or("-".into(), |v| format!("{:.2}%", 100.0 * v)),
            mib(r.packed_bytes),
            r.fp32_bytes as f64 / r.packed_bytes.max(1) as f64
        ));
    }
    md.push_str("\nmAP on the valid list with each stage's best.weights (the moving average with EMA), and with corrected.weights after QC; flips: the share of ternary weights whose code changed in the last flip_window iterations, averaged over the stage's last window; packed size: ternary layers at 2 bits a weight plus one scale, float layers at 4 bytes a weight (weights only).\n");
    let js = json!({
        "plan": ctx.plan.path.display().to_string(),
        "cfg": ctx.plan.cfg.display().to_string(),
        "data": ctx.data.display().to_string(),
        "stages": reports.iter().map(|r| json!({
            "name": r.name,
            "ternary_layers": r.ternary_layers,
            "weight_layers": r.weight_layers,
            "layers": r.layers,
            "iterations": r.iterations,
            "map50": r.map50,
            "map50_11pt": r.map50_11pt,
            "avg_iou": r.avg_iou,
            "ema": r.ema,
            "flip_fraction": r.flip_fraction,
            "flip_window": r.flip_window,
            "corrected": r.corrected,
            "packed_bytes": r.packed_bytes,
            "fp32_bytes": r.fp32_bytes,
        })).collect::<Vec<_>>(),
    });
    write_file(&ctx.out.join("summary.md"), md.as_bytes())?;
    write_file(&ctx.out.join("summary.json"), serde_json::to_string_pretty(&js)?.as_bytes())?;
    println!("{md}");
    eprintln!("wrote {} and summary.json", ctx.out.join("summary.md").display());
    Ok(())
}
