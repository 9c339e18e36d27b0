//! `ternc map`: VOC mAP of a model on a data set's valid list.

use std::io::IsTerminal;
use std::path::PathBuf;

use serde_json::json;
use ternc_dataset::labels::read_labels;
use ternc_dataset::map::{evaluate, Detection, GroundTruth, MapReport};
use ternc_dataset::Dataset;
use ternc_ir::InputError;
use ternc_runtime::image;

use super::{detect::detect_image, Backend, Engine, WeightsArgs};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Darknet model .cfg
    pub cfg: PathBuf,
    #[command(flatten)]
    pub weights: WeightsArgs,
    /// Darknet .data file (classes, valid, names).
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,
    /// IoU a detection needs with a ground-truth box to count as a hit.
    #[arg(long, default_value_t = 0.5)]
    pub iou: f32,
    /// Keep detections whose score exceeds this (Darknet's map uses 0.005).
    #[arg(long, default_value_t = 0.005)]
    pub thresh: f32,
    /// NMS IoU threshold.
    #[arg(long, default_value_t = 0.45)]
    pub nms: f32,
    /// Letterbox images even if the cfg does not say letter_box=1.
    #[arg(long)]
    pub letterbox: bool,
    /// Evaluate only the first N images of the valid list.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    #[arg(long, value_enum, default_value_t = Backend::Reference)]
    pub backend: Backend,
    #[command(flatten)]
    pub act: super::act::ActArgs,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    if !(a.iou > 0.0 && a.iou <= 1.0) {
        anyhow::bail!("--iou {}: expected a value in (0, 1]", a.iou);
    }
    let ds = Dataset::open(&a.data)?;
    if ds.config.valid.is_none() {
        return Err(
            InputError::whole(&a.data, "no valid= line: expected the list of images to evaluate").into()
        );
    }
    let graph = super::load_model_or_random(&a.cfg, &a.weights)?;
    if graph.heads().is_empty() {
        return Err(InputError::whole(
            &a.cfg,
            "the model has no [yolo] or [region] layer: expected a detector",
        )
        .into());
    }
    let classes = super::model_classes(&graph);
    if classes != ds.classes {
        return Err(InputError::whole(
            &a.data,
            format!(
                "classes={} but {} detects {classes} classes: expected the same",
                ds.classes,
                a.cfg.display()
            ),
        )
        .into());
    }
    let mut samples = ds.valid.clone();
    if let Some(n) = a.limit {
        samples.truncate(n);
    }
    if samples.is_empty() {
        return Err(InputError::whole(&a.data, "the valid list is empty: expected images to evaluate").into());
    }
    let letterbox = a.letterbox || graph.net.letter_box;
    let threads = super::threads(a.threads);
    let scales = a.act.scales(&graph, letterbox, threads)?;
    let engine = Engine::new(&graph, a.backend, threads, scales.as_ref())?;
    let progress = std::io::stderr().is_terminal();
    let (mut all_dets, mut all_truths) = (Vec::new(), Vec::new());
    let (mut skipped, mut missing_labels) = (0usize, 0usize);
    for (i, s) in samples.iter().enumerate() {
        if progress {
            eprint!("\rmap: {}/{} images", i + 1, samples.len());
        }
        let labels = match read_labels(&s.label, Some(ds.classes)) {
            Ok(Some(l)) => l,
            Ok(None) => {
                missing_labels += 1;
                Vec::new()
            }
            Err(e) => {
                eprintln!("{}warning: skipped: {e}", if progress { "\n" } else { "" });
                skipped += 1;
                continue;
            }
        };
        let im = match image::load(&s.image) {
            Ok(im) => im,
            Err(e) => {
                eprintln!("{}warning: skipped: {e}", if progress { "\n" } else { "" });
                skipped += 1;
                continue;
            }
        };
        let dets = detect_image(&engine, &graph, &im, letterbox, a.thresh, a.nms)?;
        all_dets
            .push(dets.iter().map(|d| Detection { class: d.class, score: d.score, bbox: d.bbox }).collect());
        all_truths.push(
            labels
                .iter()
                .map(|l| GroundTruth {
                    class: l.class,
                    bbox: l.to_pixels(im.w, im.h),
                    difficult: l.difficult,
                })
                .collect(),
        );
    }
    if progress {
        eprintln!();
    }
    let evaluated = all_dets.len();
    eprintln!("map: {evaluated} images evaluated, {skipped} skipped, {missing_labels} without a label file");
    if evaluated == 0 {
        return Err(InputError::whole(&a.data, "no image of the valid list could be evaluated").into());
    }
    let report = evaluate(&all_dets, &all_truths, &ds.names[..ds.classes], a.iou);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&to_json(&report, evaluated, skipped))?);
    } else {
        print_table(&report);
    }
    Ok(())
}

fn to_json(r: &MapReport, images: usize, skipped: usize) -> serde_json::Value {
    let mut per_class = serde_json::Map::new();
    let mut detail = Vec::new();
    for c in &r.per_class {
        per_class.insert(c.name.clone(), json!(c.ap));
        detail.push(
            json!({"name": c.name, "ap": c.ap, "ap11": c.ap11, "tp": c.tp, "fp": c.fp, "n_gt": c.n_gt}),
        );
    }
    json!({
        "map50": r.map50,
        "map50_11pt": r.map50_11pt,
        "avg_iou": r.avg_iou,
        "iou": r.iou,
        "images": images,
        "skipped": skipped,
        "per_class": per_class,
        "classes": detail,
    })
}

fn print_table(r: &MapReport) {
    let width = r.per_class.iter().map(|c| c.name.len()).max().unwrap_or(5).max(5);
    println!("{:<width$}  {:>8}  {:>8}  {:>7}  {:>7}  {:>7}", "class", "AP", "AP11", "TP", "FP", "GT");
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.2}%", 100.0 * v));
    for c in &r.per_class {
        println!(
            "{:<width$}  {:>8}  {:>8}  {:>7}  {:>7}  {:>7}",
            c.name,
            pct(c.ap),
            pct(c.ap11),
            c.tp,
            c.fp,
            c.n_gt
        );
    }
    println!(
        "mAP@{:.2} = {:.4} (all points, VOC2010+), {:.4} (11 points, VOC2007); average IoU of hits = {:.4}",
        r.iou, r.map50, r.map50_11pt, r.avg_iou
    );
}
