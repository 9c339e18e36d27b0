//! `ternc train` end to end on a tiny YOLO (tests/data/train-tiny.cfg, 32×32) and a
//! synthetic data set: every output file with sane content, the loss falling, stage
//! chaining byte for byte, resume after an abrupt stop equal to an uninterrupted run,
//! and bad plans rejected with FILE:LINE and exit 2.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

fn ternc() -> Command {
    Command::cargo_bin("ternc").unwrap()
}

fn cfg() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/train-tiny.cfg")
}

/// 24 images of 32×32 (every 4th a validation image: 18 train, 6 valid).
fn synth(dir: &Path) -> PathBuf {
    let out = dir.join("synth");
    let o = ternc()
        .args(["dataset", "synth", "--images", "24", "--size", "32", "--seed", "3", "--valid-every", "4"])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out.join("synth.data")
}

fn write_plan(dir: &Path, data: &Path, body: &str) -> PathBuf {
    let p = dir.join("plan.toml");
    let text = format!(
        "cfg = \"{}\"\ndata = \"{}\"\nout = \"{}\"\n{body}",
        cfg().display(),
        data.display(),
        dir.join("out").display()
    );
    std::fs::write(&p, text).unwrap();
    p
}

fn train(plan: &Path, extra: &[&str]) -> std::process::Output {
    ternc()
        .arg("train")
        .arg("--stages")
        .arg(plan)
        .args(["--threads", "2", "--seed", "5"])
        .args(extra)
        .output()
        .unwrap()
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap()
}

/// `loss.csv` rows as (iteration, loss, avg_loss, lr).
fn csv_rows(path: &Path) -> Vec<(usize, f64, f64, f64)> {
    csv_full(path).into_iter().map(|r| (r.0, r.1, r.2, r.3)).collect()
}

/// `loss.csv` rows as (iteration, loss, avg_loss, lr, flip_fraction).
fn csv_full(path: &Path) -> Vec<(usize, f64, f64, f64, f64)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("iteration,loss,avg_loss,lr,images_per_s,seconds,flip_fraction"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 7, "{l}");
            let p = |i: usize| f[i].parse::<f64>().unwrap();
            (f[0].parse().unwrap(), p(1), p(2), p(3), p(6))
        })
        .collect()
}

#[test]
fn two_stages_write_every_file_learn_and_chain() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth(dir.path());
    let plan = write_plan(
        dir.path(),
        &data,
        "checkpoint_every = 20\n\n[[stage]]\nname = \"fp32\"\nlayers = \"none\"\niterations = 40\n\n\
         [[stage]]\nname = \"M1\"\nlayers = \"all-but-first-and-last\"\niterations = 6\nlearning_rate = 0.002\n",
    );
    let o = train(&plan, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let out = dir.path().join("out");
    let (s1, s2) = (out.join("fp32"), out.join("M1"));
    for d in [&s1, &s2] {
        for f in ["best.weights", "last.weights", "loss.csv", "loss.png", "metrics.json", "stage.json"] {
            assert!(d.join(f).is_file(), "{} missing; {stderr}", d.join(f).display());
        }
    }

    // loss.csv: one row per iteration, avg_loss as Darknet smooths it, the loss falling.
    let rows = csv_rows(&s1.join("loss.csv"));
    assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), (1..=40).collect::<Vec<_>>());
    assert!(rows.iter().all(|r| r.1.is_finite() && r.1 > 0.0 && (r.3 - 0.005).abs() < 1e-9), "{rows:?}");
    assert!((rows[0].2 - rows[0].1).abs() < 1e-3 * rows[0].1);
    let smoothed = 0.9 * rows[0].2 + 0.1 * rows[1].1;
    assert!((rows[1].2 - smoothed).abs() < 1e-3 * smoothed, "{:?}", &rows[..2]);
    let mean = |r: &[(usize, f64, f64, f64)]| r.iter().map(|r| r.1).sum::<f64>() / r.len() as f64;
    let (first, last) = (mean(&rows[..5]), mean(&rows[35..]));
    assert!(last < 0.7 * first, "the loss did not fall: first 5 {first}, last 5 {last}");
    assert_eq!(csv_rows(&s2.join("loss.csv")).len(), 6);

    // loss.png decodes and is a chart, not a blank.
    let png = image::open(s1.join("loss.png")).unwrap().to_rgb8();
    assert_eq!(png.dimensions(), (720, 420));
    let coloured = png.pixels().filter(|p| p.0 == [210, 40, 40]).count();
    assert!(coloured > 200, "the avg loss line has {coloured} pixels");

    // metrics.json: fractions.
    for d in [&s1, &s2] {
        let m = json(&d.join("metrics.json"));
        for k in ["map50", "map50_11pt", "avg_iou"] {
            let v = m[k].as_f64().unwrap_or_else(|| panic!("{k} in {m}"));
            assert!((0.0..=1.0).contains(&v), "{k} = {v}");
        }
        assert_eq!(m["images"], 6);
    }

    // Stage cfgs: ternary=1 on exactly the stage's layers (conv 2 and 4 in M1).
    let c1 = std::fs::read_to_string(s1.join("fp32.cfg")).unwrap();
    assert!(!c1.contains("ternary=1"));
    assert_eq!(c1, std::fs::read_to_string(cfg()).unwrap());
    let c2 = std::fs::read_to_string(s2.join("M1.cfg")).unwrap();
    assert_eq!(c2.matches("ternary=1").count(), 2, "{c2}");

    // Chaining: M1 started from fp32's best.weights, byte for byte.
    let best1 = std::fs::read(s1.join("best.weights")).unwrap();
    let start = json(&s2.join("start.json"));
    assert_eq!(start["path"].as_str().unwrap(), s1.join("best.weights").display().to_string());
    assert_eq!(start["bytes"], best1.len());
    assert_eq!(start["fnv1a64"].as_str().unwrap(), format!("{:016x}", fnv1a64(&best1)));
    assert!(
        stderr.contains(&format!("stage M1: starting from {}", s1.join("best.weights").display())),
        "{stderr}"
    );
    assert!(stderr.contains("stage fp32: starting from random weights (seed 5)"), "{stderr}");
    // ... and continued from trained weights: its first loss is far below fp32's first.
    let m1_rows = csv_rows(&s2.join("loss.csv"));
    assert!(m1_rows[0].1 < 0.8 * rows[0].1, "M1 starts at {} vs fp32 at {}", m1_rows[0].1, rows[0].1);
    // best.weights of fp32 is its lowest avg loss
    let st = json(&s1.join("stage.json"));
    let best_it = st["best_iteration"].as_u64().unwrap() as usize;
    let min_avg = rows.iter().map(|r| r.2).fold(f64::INFINITY, f64::min);
    assert!((rows[best_it - 1].2 - min_avg).abs() < 1e-6 * min_avg.abs().max(1.0), "{best_it} {min_avg}");

    // Summary: one row per stage; M1 is smaller packed.
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(md.contains("| fp32 | 0 of 4 | `none` | 40 |"), "{md}");
    // no ternary layer: no flips reported; M1's are a fraction
    assert!(csv_full(&s1.join("loss.csv")).iter().all(|r| r.4 == 0.0));
    assert!(csv_full(&s2.join("loss.csv")).iter().all(|r| (0.0..=1.0).contains(&r.4)));
    assert!(md.contains("| M1 | 2 of 4 | `all-but-first-and-last` | 6 |"), "{md}");
    let sj = json(&out.join("summary.json"));
    let stages = sj["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 2);
    let bytes = |i: usize| stages[i]["packed_bytes"].as_u64().unwrap();
    assert_eq!(bytes(0), stages[0]["fp32_bytes"].as_u64().unwrap());
    assert!(bytes(1) < bytes(0) / 2, "{} vs {}", bytes(1), bytes(0));
}

/// `--abort-after` ends the process as a kill would; `--resume` continues from the last
/// checkpoint and ends with the same files as an uninterrupted run, byte for byte.
#[test]
fn resume_after_an_abrupt_stop_equals_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth(dir.path());
    // with an EMA and a short flip window, whose state the checkpoint must carry too
    let body = "checkpoint_every = 4\n\n[[stage]]\nname = \"s\"\nlayers = \"2\"\niterations = 12\nema = 0.9\nflip_window = 3\n";
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let (pa, pb) = (write_plan(&a, &data, body), write_plan(&b, &data, body));
    let o = train(&pa, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let o = train(&pb, &["--abort-after", "7"]);
    assert_eq!(o.status.code(), Some(137), "{}", String::from_utf8_lossy(&o.stderr));
    let sb = b.join("out/s");
    let state = json(&sb.join("checkpoint.json"));
    assert_eq!(state["iteration"], 4);
    assert!(sb.join("checkpoint-4.weights").is_file() && !sb.join("metrics.json").exists());
    assert_eq!(csv_rows(&sb.join("loss.csv")).len(), 7, "rows past the checkpoint are on disk");

    let o = train(&pb, &["--resume"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("stage s: resuming at iteration 4/12"), "{stderr}");
    let sa = a.join("out/s");
    for f in ["last.weights", "best.weights", "ema.weights"] {
        let (x, y) = (std::fs::read(sa.join(f)).unwrap(), std::fs::read(sb.join(f)).unwrap());
        assert!(x == y, "{f} differs after resume");
    }
    let (ra, rb) = (csv_full(&sa.join("loss.csv")), csv_full(&sb.join("loss.csv")));
    assert_eq!(ra, rb);
    assert_eq!(rb.len(), 12);
    assert!(rb.iter().any(|r| r.4 > 0.0), "some codes flip in 12 iterations at lr 0.005: {rb:?}");
    assert_eq!(json(&sa.join("metrics.json"))["map50"], json(&sb.join("metrics.json"))["map50"]);
    // Only the newest checkpoint is kept, and the finished stage is marked done.
    assert!(!sb.join("checkpoint-4.weights").exists() && sb.join("checkpoint-12.weights").is_file());
    assert_eq!(json(&sb.join("checkpoint.json"))["done"], true);

    // Resuming a finished plan keeps it.
    let o = train(&pb, &["--resume"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && stderr.contains("stage s: finished before"), "{stderr}");
}

#[test]
fn one_stage_from_a_cfg() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth(dir.path());
    let out = dir.path().join("run");
    let o = ternc()
        .arg("train")
        .arg(cfg())
        .arg("--data")
        .arg(&data)
        .args(["--iterations", "3", "--threads", "1"])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(csv_rows(&out.join("train/loss.csv")).len(), 3);
    let w = std::fs::read(out.join("train/last.weights")).unwrap();
    // header: 0.2.0 and seen = 3 iterations of 8 images
    assert_eq!(&w[..12], &[0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(u64::from_le_bytes(w[12..20].try_into().unwrap()), 24);
    assert!(out.join("summary.md").is_file());
}

#[test]
fn bad_plans_are_exit_2_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("none.data");
    std::fs::write(&data, "classes=5\ntrain=missing.txt\n").unwrap();
    let cases = [
        ("\n[[stage]]\nname = \"a\"\nlayers = \"none\"\niterationz = 3\n", ":8: unknown field `iterationz`"),
        ("\n[[stage]]\nname = \"a\"\nlayers = \"0,x\"\n", ":7: 'x' in layer spec"),
        ("checkpoint_every = 0\n[[stage]]\nname = \"a\"\nlayers = \"none\"\n", ":4: checkpoint_every = 0"),
        ("\n[[stage]]\nname = \"a\"\nlayers = \"none\"\n", "missing.txt: cannot read the image list"),
    ];
    for (body, needle) in cases {
        let plan = write_plan(dir.path(), &data, body);
        let o = train(&plan, &[]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("error: ") && stderr.contains(needle), "{needle}: {stderr}");
        if needle.starts_with(':') {
            assert!(stderr.contains(&format!("{}{needle}", plan.display())), "{stderr}");
        }
    }
    // a stage name --from-stage does not know
    let plan = write_plan(dir.path(), &data, "\n[[stage]]\nname = \"a\"\nlayers = \"none\"\n");
    let o = ternc().arg("train").arg("--stages").arg(&plan).args(["--from-stage", "zz"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no stage named 'zz'"));
    assert!(!dir.path().join("out/a").exists(), "no stage output on bad input");
}

/// The QAT remedies of seed 003 on a ternary stage: the EMA is what `best.weights`
/// holds, QC writes `corrected.weights` with the same weights (so the same ternary
/// codes) and other biases, and the summary reports both and the flips.
#[test]
fn ema_and_correction_on_a_ternary_stage() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth(dir.path());
    let plan = write_plan(
        dir.path(),
        &data,
        "[[stage]]\nname = \"fp32\"\nlayers = \"none\"\niterations = 10\n\n\
         [[stage]]\nname = \"M3\"\nlayers = \"all\"\niterations = 8\nema = 0.99\ncorrection = true\nflip_window = 4\n",
    );
    let o = train(&plan, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let m3 = dir.path().join("out/M3");
    for f in ["best.weights", "last.weights", "ema.weights", "corrected.weights", "loss.png", "stage.json"] {
        assert!(m3.join(f).is_file(), "{f} missing; {stderr}");
    }
    // 18 training images at batch 8: QC is one epoch of 3 iterations.
    assert!(stderr.contains("stage M3: QC: 3 iterations (one epoch)"), "{stderr}");

    let g = ternc_frontend::load_cfg(&m3.join("M3.cfg")).unwrap().graph;
    let read = |f: &str| ternc_frontend::weights::read(&m3.join(f), &g, None).unwrap();
    let (best, last, ema, corrected) =
        (read("best.weights"), read("last.weights"), read("ema.weights"), read("corrected.weights"));
    let convs: Vec<usize> = (0..g.num_layers()).filter(|&i| g.layer(i).op.has_weights()).collect();
    assert_eq!(convs.len(), 4);
    for &l in &convs {
        assert!(g.layer(l).op.is_ternary(), "layer {l} is ternary=1 in M3.cfg");
        let (b, c) = (best.layer(l).unwrap(), corrected.layer(l).unwrap());
        assert_eq!(b.weights, c.weights, "QC froze layer {l}'s weights, so its ternary codes");
        assert_ne!(
            last.layer(l).unwrap().weights,
            ema.layer(l).unwrap().weights,
            "the EMA lags the live weights"
        );
    }
    let head = convs[3];
    assert_ne!(
        best.layer(head).unwrap().biases,
        corrected.layer(head).unwrap().biases,
        "QC trains the biases"
    );
    let bn = |p: &ternc_ir::ParamStore| p.layer(convs[1]).unwrap().bn.clone().unwrap();
    assert_ne!(bn(&best).mean, bn(&corrected).mean, "QC re-estimates batchnorm statistics");

    let st = json(&m3.join("stage.json"));
    assert_eq!(st["ema"].as_f64().unwrap() as f32, 0.99);
    assert_eq!(st["corrected"]["iterations"], 3);
    let map = st["corrected"]["map50"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&map), "{map}");
    let flips = st["flip_fraction"].as_f64().unwrap();
    let rows = csv_full(&m3.join("loss.csv"));
    let want = rows[4..].iter().map(|r| r.4).sum::<f64>() / 4.0;
    assert!((flips - want).abs() < 1e-6, "{flips} vs {want}");
    let png = image::open(m3.join("loss.png")).unwrap().to_rgb8();
    assert_eq!(png.dimensions(), (720, 620), "loss.png has the flips panel");
    let md = std::fs::read_to_string(dir.path().join("out/summary.md")).unwrap();
    assert!(md.contains("| M3 | 4 of 4 | `all` | 8 (EMA 0.99) |"), "{md}");
    assert!(md.contains(&format!("{map:.4}")), "{md}");
}

/// `random=1`: Darknet's multi-scale training, a new input size every 10 iterations
/// (multiples of `resize_step`), announced up front; the model trains at each.
#[test]
fn random_1_trains_at_several_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth(dir.path());
    let text = std::fs::read_to_string(cfg()).unwrap();
    let text = text.replace("random=0", "random=1").replacen("[net]", "[net]\nresize_step=8", 1);
    assert!(text.contains("random=1"));
    let cfg = dir.path().join("multiscale.cfg");
    std::fs::write(&cfg, text).unwrap();
    let out = dir.path().join("run");
    let o = ternc()
        .arg("train")
        .arg(&cfg)
        .arg("--data")
        .arg(&data)
        .args(["--iterations", "140", "--threads", "2", "--seed", "2"])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let line =
        stderr.lines().find(|l| l.contains("multi-scale training at")).unwrap_or_else(|| panic!("{stderr}"));
    let sizes: Vec<(usize, usize)> = line
        .rsplit(" at ")
        .next()
        .unwrap()
        .split(", ")
        .map(|s| {
            let (w, h) = s.split_once('x').unwrap();
            (w.parse().unwrap(), h.parse().unwrap())
        })
        .collect();
    assert!(sizes.len() >= 3, "{line}");
    assert!(sizes.iter().all(|&(w, h)| w % 8 == 0 && h % 8 == 0 && (16..=56).contains(&w)), "{sizes:?}");
    let rows = csv_rows(&out.join("train/loss.csv"));
    assert_eq!(rows.len(), 140);
    assert!(rows.iter().all(|r| r.1.is_finite()));
    // The iterations per size: the last 100 at the largest size, the blocks before at
    // sizes drawn from the list.
    let st = json(&out.join("train/stage.json"));
    let used = st["sizes"].as_object().unwrap();
    assert_eq!(used.values().map(|v| v.as_u64().unwrap()).sum::<u64>(), 140);
    let (w, h) = *sizes.last().unwrap();
    assert!(used[&format!("{w}x{h}")].as_u64().unwrap() >= 100, "{used:?}");
    assert!(used.len() >= 2, "{used:?}");
    for k in used.keys() {
        let (w, h) = k.split_once('x').unwrap();
        assert!(sizes.contains(&(w.parse().unwrap(), h.parse().unwrap())), "{k} not announced");
    }
}
