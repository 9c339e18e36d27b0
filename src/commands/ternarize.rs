use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::Context;
use ternc_frontend::atomic::write_atomic;
use ternc_frontend::weights;
use ternc_ir::{Graph, InputError};
use ternc_passes::spec::{describe, Spec};
use ternc_passes::ternarize::{self, packed2_bytes, Scope};
use ternc_passes::{plan, ternary::DEFAULT_THRESHOLD};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Darknet model .cfg
    pub cfg: PathBuf,
    /// Darknet .weights file with the float weights.
    #[arg(long, value_name = "FILE")]
    pub weights: PathBuf,
    /// Layers to ternarize: N, A-B, -N, all, none, all-but-last, all-but-first,
    /// all-but-first-and-last, comma-separated.
    #[arg(long, value_name = "SPEC", conflicts_with = "plan", required_unless_present = "plan")]
    pub layers: Option<String>,
    /// A stage plan (plan.toml); use with --stage.
    #[arg(long, value_name = "FILE", requires = "stage")]
    pub plan: Option<PathBuf>,
    /// The plan's stage whose layers to ternarize.
    #[arg(long, value_name = "NAME", requires = "plan")]
    pub stage: Option<String>,
    /// One scale per layer or per output channel (default: the plan's, else layer).
    #[arg(long, value_name = "layer|channel")]
    pub scope: Option<String>,
    /// TWN threshold factor: Δ = T·mean|W| (default: the plan's, else 0.7).
    #[arg(long, value_name = "T")]
    pub threshold: Option<f32>,
    /// Output prefix: writes PREFIX.cfg and PREFIX.weights.
    #[arg(short, long, value_name = "PREFIX")]
    pub output: PathBuf,
}

/// The cfg text with `ternary=1` in the sections of `layers`: an existing `ternary=`
/// line is rewritten, otherwise one is inserted after the header; every other byte
/// stays as it was.
pub fn flag_layers(text: &str, graph: &Graph, layers: &BTreeSet<usize>) -> String {
    let headers: BTreeSet<usize> = layers.iter().map(|&i| graph.layer(i).line).collect();
    let mut out = String::with_capacity(text.len() + 16 * layers.len());
    let mut in_selected = false;
    let mut flagged = false;
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    for (i, line) in lines.iter().enumerate() {
        let stripped: String = line.chars().filter(|c| !c.is_whitespace()).collect();
        let eol = if line.ends_with("\r\n") { "\r\n" } else { "\n" };
        if stripped.starts_with('[') {
            in_selected = headers.contains(&(i + 1));
            flagged = false;
            out.push_str(line);
            if in_selected && !section_has_ternary(&lines[i + 1..]) {
                if !line.ends_with('\n') {
                    out.push_str(eol);
                }
                out.push_str("ternary=1");
                out.push_str(eol);
                flagged = true;
            }
            continue;
        }
        if in_selected && !flagged && stripped.split('=').next() == Some("ternary") {
            out.push_str("ternary=1");
            out.push_str(if line.ends_with('\n') { eol } else { "" });
            flagged = true;
            continue;
        }
        out.push_str(line);
    }
    out
}

fn section_has_ternary(rest: &[&str]) -> bool {
    rest.iter()
        .map(|l| l.chars().filter(|c| !c.is_whitespace()).collect::<String>())
        .take_while(|s| !s.starts_with('['))
        .any(|s| !s.starts_with('#') && !s.starts_with(';') && s.split('=').next() == Some("ternary"))
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let mut graph = super::load_model(
        &a.cfg,
        &super::WeightsArgs { weights: Some(a.weights.clone()), weights_prefix: None },
    )?;
    let (spec, plan_scope, plan_threshold) = match (&a.layers, &a.plan, &a.stage) {
        (Some(s), _, _) => (Spec::parse(s).map_err(|m| InputError::whole("--layers", m))?, None, None),
        (None, Some(p), Some(name)) => {
            let plan = plan::read(p)?;
            let stage = plan.stage(name)?;
            (stage.layers.clone(), Some(plan.scope), Some(plan.threshold))
        }
        _ => unreachable!("clap requires --layers or --plan with --stage"),
    };
    let scope = match &a.scope {
        Some(s) => Scope::parse(s).map_err(|m| InputError::whole("--scope", m))?,
        None => plan_scope.unwrap_or_default(),
    };
    let threshold = a.threshold.or(plan_threshold).unwrap_or(DEFAULT_THRESHOLD);
    let where_ = a.plan.clone().unwrap_or_else(|| "--layers".into());
    let selected = spec.select(&graph).map_err(|m| InputError::whole(&where_, m))?;
    let report = ternarize::run(&mut graph, &selected, scope, threshold)
        .map_err(|m| InputError::whole(&a.weights, m))?;
    let ternary: BTreeSet<usize> = report.layers.iter().map(|l| l.layer).collect();

    // PREFIX.weights: the ternarized values α·t as floats; biases and batchnorm as they were.
    let mut out = graph.clone();
    for l in &ternary {
        let rows = out.layer(*l).op.weight_rows().unwrap_or(1);
        let p = out.params.layer_mut(*l);
        if let Some(t) = p.ternary.take() {
            p.weights = t.dequantize(rows);
        }
    }
    let text = std::fs::read_to_string(&a.cfg)
        .map_err(|e| InputError::whole(&a.cfg, format!("cannot read cfg: {e}")))?;
    let with_ext = |ext: &str| {
        let mut p = a.output.clone().into_os_string();
        p.push(ext);
        PathBuf::from(p)
    };
    let (cfg_out, weights_out) = (with_ext(".cfg"), with_ext(".weights"));
    let bytes = weights::to_bytes(&out)?;
    write_atomic(&cfg_out, flag_layers(&text, &graph, &ternary).as_bytes())
        .with_context(|| format!("cannot write {}", cfg_out.display()))?;
    write_atomic(&weights_out, &bytes).with_context(|| format!("cannot write {}", weights_out.display()))?;

    println!("{report}");
    let all_weights: usize =
        (0..graph.num_layers()).filter_map(|i| graph.params.layer(i)).map(|p| p.weights.len()).sum();
    let packed: usize = (0..graph.num_layers())
        .filter_map(|i| graph.params.layer(i).map(|p| (i, p)))
        .map(|(i, p)| match &p.ternary {
            Some(t) => {
                let rows = graph.layer(i).op.weight_rows().unwrap_or(1);
                packed2_bytes(rows, t.codes.len() / rows, t.scales.len())
            }
            None => 4 * p.weights.len(),
        })
        .sum();
    println!(
        "model weights: {:.2} MiB as fp32, {:.2} MiB with the ternary layers packed (2 bits a weight); ternary layers: {}",
        (4 * all_weights) as f64 / (1 << 20) as f64,
        packed as f64 / (1 << 20) as f64,
        describe(&graph, &ternary)
    );
    if scope == Scope::Channel {
        eprintln!("note: Darknet-TWN re-ternarizes ternary=1 layers per layer; plain Darknet and OpenCV run the per-channel values of {} exactly", weights_out.display());
    }
    eprintln!("wrote {} and {}", cfg_out.display(), weights_out.display());
    Ok(())
}
