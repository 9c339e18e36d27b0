//! `--act i8` (W2A8) from the command line, on the bundled fully ternary model: the
//! accuracy int8 activations cost on a trained detector (mAP on the synthetic set,
//! JIT and reference, random and image calibration), the agreement `run` and `bench`
//! report, and calibration errors.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

fn ternc() -> Command {
    Command::cargo_bin("ternc").unwrap()
}

/// The bundled model's cfg and weights.
fn model() -> [String; 3] {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/synth-demo");
    let s = |f: &str| dir.join(f).to_string_lossy().into_owned();
    [s("synth-demo.cfg"), "--weights".into(), s("synth-demo.weights")]
}

/// The validation mAP@0.5 of the first 150 valid images.
fn map(data: &Path, extra: &[&str]) -> f64 {
    let o = ternc()
        .arg("map")
        .args(model())
        .arg("--data")
        .arg(data)
        .args(["--limit", "150", "--threads", "2", "--json"])
        .args(extra)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["map50"].as_f64().unwrap_or_else(|| panic!("{v}"))
}

#[test]
fn int8_activations_keep_the_accuracy_of_the_ternary_detector() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data");
    let o = ternc()
        .args([
            "dataset", "synth", "--images", "750", "--size", "64", "--seed", "1", "--valid-every", "5",
            "--out",
        ])
        .arg(&d)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let data = d.join("synth.data");
    let images = d.join("images").to_string_lossy().into_owned();
    let f32 = map(&data, &["--backend", "jit"]);
    assert!(f32 > 0.8, "the bundled model detects: {f32}");
    let runs = [
        ("jit, random calibration", map(&data, &["--backend", "jit", "--act", "i8"])),
        ("reference, random calibration", map(&data, &["--backend", "reference", "--act", "i8"])),
        ("jit, 64 images", map(&data, &["--backend", "jit", "--act", "i8", "--calibrate", &images])),
    ];
    for (what, m) in runs {
        assert!((m - f32).abs() <= 0.02, "W2A8 ({what}) mAP {m} vs W2A32 {f32}");
        assert_ne!(m, f32, "{what}: the int8 path ran");
    }
}

#[test]
fn run_and_bench_report_int8_layers_and_agreement() {
    let image = format!("{}/models/synth-demo/images/shapes-1.png", env!("CARGO_MANIFEST_DIR"));
    let o = ternc()
        .arg("run")
        .args(model())
        .args(["--input", &image, "--backend", "jit", "--act", "i8", "--calibrate", &image])
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("7 ternary layers take int8 inputs"), "{stderr}");
    // "layer  N W2A8 vs float32: max difference X% of the head's largest value"
    let diffs: Vec<f64> = stdout
        .lines()
        .filter(|l| l.contains("W2A8 vs float32"))
        .map(|l| l.split("difference ").nth(1).unwrap().split('%').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(diffs.len(), 1, "one line per head: {stdout}");
    assert!(diffs.iter().all(|&d| d > 0.0 && d < 10.0), "{diffs:?}");

    let o = ternc()
        .arg("bench")
        .args(model())
        .args(["--backend", "jit", "--act", "i8", "--iters", "2", "--warmup", "0", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["act"], "i8");
    assert_eq!(v["int8_layers"], 7);
    let errs = v["head_rel_err_vs_f32"].as_array().unwrap();
    assert_eq!(errs.len(), 1);
    assert!(errs.iter().all(|e| (0.0..0.1).contains(&e["rel_err"].as_f64().unwrap())), "{errs:?}");
}

#[test]
fn calibration_errors_name_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().to_string_lossy().into_owned();
    let missing = dir.path().join("nope.png").to_string_lossy().into_owned();
    for (args, want) in [
        (vec!["--act", "f32", "--calibrate", &missing], "--calibrate applies to --act i8 only"),
        (vec!["--act", "i8", "--calibrate", &empty], "no images"),
        (vec!["--act", "i8", "--calibrate", &missing], "nope.png"),
    ] {
        let o = ternc().arg("bench").args(model()).args(["--iters", "1"]).args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
}
