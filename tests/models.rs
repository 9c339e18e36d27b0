//! Every bundled Darknet cfg loads, and `ternc inspect --json` reports the shapes,
//! parameter counts and BFLOPs that an independent derivation
//! (`tests/tools/darknet_shapes.py`, written from Darknet's source, not from ternc)
//! computed into `tests/data/expected_shapes.json`.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn inspect_json(cfg: &Path) -> Value {
    let out = Command::cargo_bin("ternc").unwrap().arg("inspect").arg("--json").arg(cfg).output().unwrap();
    assert!(out.status.success(), "{}: {}", cfg.display(), String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "{}: warnings: {}", cfg.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn every_bundled_cfg_matches_the_independent_derivation() {
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/data/expected_shapes.json")).unwrap(),
    )
    .unwrap();
    let expected = expected.as_object().unwrap();
    let mut checked = 0;
    for dir in ["darknet", "darknet-twn"] {
        for entry in std::fs::read_dir(root().join("models").join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "cfg") {
                continue;
            }
            let key = format!("{dir}/{}", path.file_name().unwrap().to_string_lossy());
            let want =
                expected.get(&key).unwrap_or_else(|| panic!("{key} missing from expected_shapes.json"));
            let got = inspect_json(&path);
            assert_eq!(got["total_params"], want["total_params"], "{key}");
            let (gb, wb) = (got["total_bflops"].as_f64().unwrap(), want["total_bflops"].as_f64().unwrap());
            assert!((gb - wb).abs() < 1e-6, "{key}: bflops {gb} vs {wb}");
            let (gl, wl) = (got["layers"].as_array().unwrap(), want["layers"].as_array().unwrap());
            assert_eq!(gl.len(), wl.len(), "{key}: layer count");
            for (g, w) in gl.iter().zip(wl) {
                for field in ["index", "type", "input", "output", "params"] {
                    assert_eq!(g[field], w[field], "{key} layer {}: {field}", w["index"]);
                }
                assert!((g["bflops"].as_f64().unwrap() - w["bflops"].as_f64().unwrap()).abs() < 1e-9);
                assert!(g["ternary"].is_boolean());
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 37, "all bundled cfgs");
}

#[test]
fn known_darknet_totals() {
    // The sizes of the published .weights files: 20-byte header + 4 bytes a float.
    for (cfg, params, bflops) in [
        ("darknet/yolov3-tiny.cfg", 8_858_734u64, 5.571),
        ("darknet/yolov3.cfg", 62_001_757, 65.879),
        ("darknet/yolov4.cfg", 64_429_405, 128.459),
        ("darknet/yolov4-tiny.cfg", 6_062_814, 6.910),
    ] {
        let v = inspect_json(&root().join("models").join(cfg));
        assert_eq!(v["total_params"].as_u64().unwrap(), params, "{cfg}");
        assert!((v["total_bflops"].as_f64().unwrap() - bflops).abs() < 5e-4, "{cfg}: {}", v["total_bflops"]);
    }
}

#[test]
fn twn_stage_cfgs_flag_ternary_layers() {
    let v = inspect_json(&root().join("models/darknet-twn/yolov3-tiny-voc_M1.cfg"));
    let flags: Vec<bool> =
        v["layers"].as_array().unwrap().iter().map(|l| l["ternary"].as_bool().unwrap()).collect();
    let text = std::fs::read_to_string(root().join("models/darknet-twn/yolov3-tiny-voc_M1.cfg")).unwrap();
    let in_cfg = text.lines().filter(|l| l.replace(' ', "") == "ternary=1").count();
    assert!(in_cfg > 0);
    assert_eq!(flags.iter().filter(|&&t| t).count(), in_cfg);
    // only convolutional layers carry the flag
    for l in v["layers"].as_array().unwrap() {
        if l["ternary"].as_bool().unwrap() {
            assert_eq!(l["type"], "convolutional");
        }
    }
}

#[test]
fn table_and_ir_views() {
    let cfg = root().join("models/darknet/yolov3-tiny.cfg");
    let out = Command::cargo_bin("ternc").unwrap().arg("inspect").arg(&cfg).output().unwrap();
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("total: 8858734 params"), "{table}");
    assert!(table.contains("5.571 BFLOPs"), "{table}");
    assert_eq!(table.lines().filter(|l| l.contains(" yolo ")).count(), 2);

    let out = Command::cargo_bin("ternc").unwrap().args(["inspect", "--ir"]).arg(&cfg).output().unwrap();
    let ir = String::from_utf8(out.stdout).unwrap();
    let lowered = ternc_frontend::load_cfg(&cfg).unwrap();
    assert_eq!(ir, lowered.graph.dump());

    let out = Command::cargo_bin("ternc").unwrap().args(["inspect", "--memory"]).arg(&cfg).output().unwrap();
    let plan = String::from_utf8(out.stdout).unwrap();
    let want = ternc_passes::memory::run(&lowered.graph, 4);
    assert!(plan.contains(&format!("arena {} bytes", want.arena_bytes)), "{plan}");
    assert!(plan.contains("2 of 2 routes copy nothing"), "{plan}");
}

#[test]
fn inspect_with_weights_checks_and_summarises() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = root().join("models/darknet/yolov3-tiny.cfg");
    let w = dir.path().join("t.weights");
    Command::cargo_bin("ternc")
        .unwrap()
        .arg("init")
        .arg(&cfg)
        .arg("-o")
        .arg(&w)
        .args(["--seed", "3"])
        .assert()
        .success();
    assert_eq!(std::fs::metadata(&w).unwrap().len(), 20 + 4 * 8_858_734);
    let out = Command::cargo_bin("ternc")
        .unwrap()
        .arg("inspect")
        .arg(&cfg)
        .arg("--weights")
        .arg(&w)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("weights: 8858734 floats, seen 0 images"), "{text}");
    // one statistics row per convolutional layer (13), with 0.0% zeros for random weights
    let rows: Vec<&str> = text.lines().filter(|l| l.contains("convolutional") && l.ends_with('%')).collect();
    assert_eq!(rows.len(), 13, "{text}");
    assert!(rows.iter().all(|r| r.ends_with(" 0.0%")));
}
