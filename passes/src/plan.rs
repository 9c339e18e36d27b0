//! Stage plans (`plan.toml`), shared by `ternc ternarize --plan` and `ternc train`:
//!
//! ```toml
//! cfg = "../../models/darknet/yolov2-voc.cfg"   # paths are relative to the plan
//! data = "voc.data"
//! weights = "yolov2-voc.weights"                # optional start point
//! out = "runs/yolov2-voc"
//! scope = "layer"                               # or "channel"
//! threshold = 0.7
//! checkpoint_every = 100                        # training: iterations between checkpoints
//! eval_every = 1000                             # training: valid mAP every N iterations
//!
//! [[stage]]
//! name = "M0"
//! layers = "23,24,26,29"                        # a layer SPEC
//! max_batches = 41000                           # optional [net] overrides
//! learning_rate = 0.0005
//! steps = [32000, 36900]
//! scales = [0.1, 0.1]
//! iterations = 41000                            # optional: iterations to run (default max_batches)
//! checkpoint_every = 500                        # optional: overrides the plan's
//! eval_every = 2000                             # optional: overrides the plan's
//! ema = 0.9998                                  # optional: evaluate/save an EMA of the weights
//! correction = true                             # optional: QC (one epoch of scale/bias correction)
//! flip_window = 100                             # optional: oscillation window (also top level)
//! ```
//!
//! Every key but `cfg`, `out` and the stages' `name` and `layers` is optional; an
//! unknown key is an error naming its line.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use ternc_ir::InputError;

use crate::spec::Spec;
use crate::ternarize::Scope;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    cfg: PathBuf,
    data: Option<PathBuf>,
    weights: Option<PathBuf>,
    out: PathBuf,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    threshold: Option<f32>,
    #[serde(default)]
    checkpoint_every: Option<usize>,
    #[serde(default)]
    eval_every: Option<usize>,
    #[serde(default)]
    flip_window: Option<usize>,
    #[serde(default)]
    stage: Vec<RawStage>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    name: String,
    layers: String,
    max_batches: Option<usize>,
    learning_rate: Option<f32>,
    batch: Option<usize>,
    subdivisions: Option<usize>,
    burn_in: Option<usize>,
    momentum: Option<f32>,
    decay: Option<f32>,
    steps: Option<Vec<i64>>,
    scales: Option<Vec<f32>>,
    policy: Option<String>,
    #[serde(default)]
    iterations: Option<usize>,
    #[serde(default)]
    checkpoint_every: Option<usize>,
    #[serde(default)]
    eval_every: Option<usize>,
    #[serde(default)]
    ema: Option<f32>,
    #[serde(default)]
    correction: Option<bool>,
    #[serde(default)]
    flip_window: Option<usize>,
}

/// Checkpoint interval of a plan that gives none.
pub const DEFAULT_CHECKPOINT_EVERY: usize = 100;

/// Iterations over which ternary code flips are counted when a plan gives no `flip_window`.
pub const DEFAULT_FLIP_WINDOW: usize = 100;

/// Darknet `[net]` training keys a stage may override.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TrainOverrides {
    pub max_batches: Option<usize>,
    pub learning_rate: Option<f32>,
    pub batch: Option<usize>,
    pub subdivisions: Option<usize>,
    pub burn_in: Option<usize>,
    pub momentum: Option<f32>,
    pub decay: Option<f32>,
    pub steps: Option<Vec<i64>>,
    pub scales: Option<Vec<f32>>,
    pub policy: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub name: String,
    pub layers: Spec,
    pub train: TrainOverrides,
    /// Iterations the stage runs (default: `max_batches`, the stage's or the cfg's).
    pub iterations: Option<usize>,
    /// Iterations between checkpoints (the stage's, else the plan's, else 100).
    pub checkpoint_every: usize,
    /// Iterations between validation mAP runs (the stage's, else the plan's; none:
    /// `best.weights` is the lowest smoothed training loss).
    pub eval_every: Option<usize>,
    /// Decay of an exponential moving average of the weights (e.g. 0.9998): the
    /// average, not the live weights, is evaluated and saved as `best.weights`.
    pub ema: Option<f32>,
    /// Run the correction (QC) after the stage: one epoch training only per-channel
    /// scales and biases with the weights frozen, saved as `corrected.weights`.
    pub correction: bool,
    /// Oscillation is reported as the fraction of ternary weights whose code changed
    /// in the last `flip_window` iterations (the stage's, else the plan's, else 100).
    pub flip_window: usize,
}

/// A validated plan with paths resolved against the plan file's directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub path: PathBuf,
    pub cfg: PathBuf,
    pub data: Option<PathBuf>,
    pub weights: Option<PathBuf>,
    pub out: PathBuf,
    pub scope: Scope,
    pub threshold: f32,
    pub stages: Vec<Stage>,
}

impl Plan {
    pub fn stage(&self, name: &str) -> Result<&Stage, InputError> {
        self.stages.iter().find(|s| s.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.stages.iter().map(|s| s.name.as_str()).collect();
            InputError::whole(
                &self.path,
                format!("no stage named '{name}': the plan has {}", names.join(", ")),
            )
        })
    }
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    1 + text[..offset.min(text.len())].bytes().filter(|&b| b == b'\n').count()
}

/// The line on which `key = ...` appears in the `n`-th `[[stage]]` table (or at top
/// level), for errors found after deserialising.
fn key_line(text: &str, stage: Option<usize>, key: &str) -> usize {
    let mut current: Option<usize> = None;
    let mut seen = 0;
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.starts_with("[[stage]]") {
            current = Some(seen);
            seen += 1;
        } else if t.split('=').next().map(str::trim) == Some(key) && current == stage {
            return i + 1;
        }
    }
    1
}

pub fn parse(path: &Path, text: &str) -> Result<Plan, InputError> {
    let raw: RawPlan = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(1, |s| line_of(text, s.start));
        InputError::at_line(path, line, e.message().trim().replace('\n', " "))
    })?;
    let dir = path.parent().unwrap_or(Path::new(""));
    let resolve = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            dir.join(p)
        }
    };
    let scope = match &raw.scope {
        Some(s) => {
            Scope::parse(s).map_err(|m| InputError::at_line(path, key_line(text, None, "scope"), m))?
        }
        None => Scope::Layer,
    };
    let threshold = raw.threshold.unwrap_or(crate::ternary::DEFAULT_THRESHOLD);
    if !(threshold > 0.0 && threshold < 10.0) {
        return Err(InputError::at_line(
            path,
            key_line(text, None, "threshold"),
            format!("threshold = {threshold}: expected a factor in (0, 10), usually 0.7"),
        ));
    }
    let mut stages = Vec::new();
    for (n, s) in raw.stage.into_iter().enumerate() {
        let layers = Spec::parse(&s.layers)
            .map_err(|m| InputError::at_line(path, key_line(text, Some(n), "layers"), m))?;
        if stages.iter().any(|t: &Stage| t.name == s.name) {
            return Err(InputError::at_line(
                path,
                key_line(text, Some(n), "name"),
                format!("stage name '{}' is used twice", s.name),
            ));
        }
        if let (Some(st), Some(sc)) = (&s.steps, &s.scales) {
            if st.len() != sc.len() {
                return Err(InputError::at_line(
                    path,
                    key_line(text, Some(n), "scales"),
                    format!("{} scales for {} steps: expected one scale per step", sc.len(), st.len()),
                ));
            }
        }
        if let Some(p) = &s.policy {
            const POLICIES: [&str; 8] =
                ["constant", "step", "steps", "exp", "poly", "sigmoid", "random", "sgdr"];
            if !POLICIES.contains(&p.as_str()) {
                return Err(InputError::at_line(
                    path,
                    key_line(text, Some(n), "policy"),
                    format!("policy = \"{p}\": expected one of {}", POLICIES.join(", ")),
                ));
            }
        }
        let positive = |v: Option<usize>, key: &str| match v {
            Some(0) => Err(InputError::at_line(
                path,
                key_line(text, Some(n), key),
                format!("{key} = 0: expected a positive number of iterations"),
            )),
            _ => Ok(v),
        };
        let iterations = positive(s.iterations, "iterations")?;
        let checkpoint_every = positive(s.checkpoint_every, "checkpoint_every")?
            .or(raw.checkpoint_every)
            .unwrap_or(DEFAULT_CHECKPOINT_EVERY);
        let eval_every = positive(s.eval_every, "eval_every")?.or(raw.eval_every);
        let flip_window =
            positive(s.flip_window, "flip_window")?.or(raw.flip_window).unwrap_or(DEFAULT_FLIP_WINDOW);
        if let Some(e) = s.ema {
            if !(e > 0.0 && e < 1.0) {
                return Err(InputError::at_line(
                    path,
                    key_line(text, Some(n), "ema"),
                    format!("ema = {e}: expected a decay in (0, 1), e.g. 0.9998"),
                ));
            }
        }
        let train = TrainOverrides {
            max_batches: s.max_batches,
            learning_rate: s.learning_rate,
            batch: s.batch,
            subdivisions: s.subdivisions,
            burn_in: s.burn_in,
            momentum: s.momentum,
            decay: s.decay,
            steps: s.steps,
            scales: s.scales,
            policy: s.policy,
        };
        stages.push(Stage {
            name: s.name,
            layers,
            train,
            iterations,
            checkpoint_every,
            eval_every,
            ema: s.ema,
            correction: s.correction.unwrap_or(false),
            flip_window,
        });
    }
    for (key, v) in [
        ("checkpoint_every", raw.checkpoint_every),
        ("eval_every", raw.eval_every),
        ("flip_window", raw.flip_window),
    ] {
        if v == Some(0) {
            return Err(InputError::at_line(
                path,
                key_line(text, None, key),
                format!("{key} = 0: expected a positive number of iterations"),
            ));
        }
    }
    if stages.is_empty() {
        return Err(InputError::whole(path, "no [[stage]] tables: expected at least one stage"));
    }
    Ok(Plan {
        path: path.to_path_buf(),
        cfg: resolve(&raw.cfg),
        data: raw.data.as_deref().map(resolve),
        weights: raw.weights.as_deref().map(resolve),
        out: resolve(&raw.out),
        scope,
        threshold,
        stages,
    })
}

pub fn read(path: &Path) -> Result<Plan, InputError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| InputError::whole(path, format!("cannot read plan: {e}")))?;
    parse(path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "cfg = \"m.cfg\"\nout = \"runs\"\nscope = \"channel\"\n\n[[stage]]\nname = \"M0\"\nlayers = \"0,2-4\"\nmax_batches = 100\nsteps = [80, 90]\nscales = [0.1, 0.1]\n\n[[stage]]\nname = \"M1\"\nlayers = \"all\"\n";

    #[test]
    fn parses_and_resolves_paths() {
        let p = parse(Path::new("plans/p.toml"), GOOD).unwrap();
        assert_eq!(p.cfg, PathBuf::from("plans/m.cfg"));
        assert_eq!(p.out, PathBuf::from("plans/runs"));
        assert_eq!((p.scope, p.threshold), (Scope::Channel, 0.7));
        assert_eq!(p.stages.len(), 2);
        assert_eq!(p.stages[0].train.max_batches, Some(100));
        assert_eq!(p.stage("M1").unwrap().layers.as_str(), "all");
        assert!(p.stage("M9").unwrap_err().to_string().contains("no stage named 'M9'"));
    }

    #[test]
    fn training_keys_have_defaults_and_overrides() {
        let p = parse(Path::new("p.toml"), GOOD).unwrap();
        let s = &p.stages[0];
        assert_eq!((s.iterations, s.checkpoint_every, s.eval_every), (None, DEFAULT_CHECKPOINT_EVERY, None));
        assert_eq!((s.ema, s.correction), (None, false));
        let text = GOOD
            .replace("scope = \"channel\"\n", "scope = \"channel\"\ncheckpoint_every = 7\neval_every = 9\n")
            .replace(
                "max_batches = 100\n",
                "max_batches = 100\niterations = 40\ncheckpoint_every = 5\nema = 0.9998\ncorrection = true\n",
            );
        let p = parse(Path::new("p.toml"), &text).unwrap();
        let (a, b) = (&p.stages[0], &p.stages[1]);
        assert_eq!((a.iterations, a.checkpoint_every, a.eval_every), (Some(40), 5, Some(9)));
        assert_eq!((a.ema, a.correction), (Some(0.9998), true));
        assert_eq!((b.iterations, b.checkpoint_every, b.eval_every, b.ema), (None, 7, Some(9), None));
        for (text, line, needle) in [
            (text.replace("iterations = 40", "iterations = 0"), 11, "iterations = 0: expected a positive"),
            (text.replace("ema = 0.9998", "ema = 1.5"), 13, "ema = 1.5: expected a decay in (0, 1)"),
            (text.replace("eval_every = 9", "eval_every = 0"), 5, "eval_every = 0"),
        ] {
            let e = parse(Path::new("p.toml"), &text).unwrap_err().to_string();
            assert!(e.starts_with(&format!("p.toml:{line}: ")) && e.contains(needle), "{e}");
        }
    }

    #[test]
    fn errors_name_the_line() {
        for (text, line, needle) in [
            (GOOD.replace("max_batches", "max_batchez"), 8, "unknown field `max_batchez`"),
            (GOOD.replace("scope = \"channel\"", "scope = \"row\""), 3, "expected layer or channel"),
            (GOOD.replace("\"0,2-4\"", "\"0,x\""), 7, "'x' in layer spec"),
            (GOOD.replace("[0.1, 0.1]", "[0.1]"), 10, "1 scales for 2 steps"),
            (GOOD.replace("\"M1\"", "\"M0\""), 13, "used twice"),
            (GOOD.replace("out = \"runs\"\n", ""), 1, "missing field `out`"),
            (GOOD.replace("max_batches = 100", "max_batches = \"many\""), 8, "invalid type"),
            (GOOD.replace("cfg =", "cfg"), 1, ""),
        ] {
            let e = parse(Path::new("p.toml"), &text).unwrap_err();
            assert_eq!(e.loc, ternc_ir::Loc::Line(line), "{e}");
            assert!(
                e.to_string().starts_with(&format!("p.toml:{line}: ")) && e.to_string().contains(needle),
                "{e}"
            );
        }
    }
}
