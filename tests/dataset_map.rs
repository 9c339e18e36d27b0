//! `ternc dataset synth` and `ternc map` end to end: a synthetic set, a tiny model
//! with random weights (a finite mAP in 0..1 and valid JSON), a model that finds
//! nothing (mAP 0), and bad input (exit 2 with FILE:LINE).

use std::path::Path;

use assert_cmd::Command;

/// 5 classes, 64×64 input, one [yolo] head on an 8×8 grid.
const CFG: &str = "[net]\nwidth=64\nheight=64\nchannels=3\n\n\
[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\nstride=2\npad=1\nactivation=leaky\n\n\
[maxpool]\nsize=2\nstride=2\n\n\
[maxpool]\nsize=2\nstride=2\n\n\
[convolutional]\nfilters=30\nsize=1\nactivation=linear\n\n\
[yolo]\nmask=0,1,2\nanchors=10,10,20,20,40,40\nnum=3\nclasses=5\n";

fn ternc() -> Command {
    Command::cargo_bin("ternc").unwrap()
}

fn synth(out: &Path, images: usize, seed: u64) {
    let o = ternc()
        .args([
            "dataset",
            "synth",
            "--images",
            &images.to_string(),
            "--size",
            "64",
            "--seed",
            &seed.to_string(),
        ])
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains(&format!("{images} images")), "{stdout}");
}

fn tree_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for sub in ["", "images", "labels"] {
        let d = dir.join(sub);
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                out.push((
                    format!("{sub}/{}", p.file_name().unwrap().to_string_lossy()),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn synth_then_map_with_random_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    synth(&a, 20, 3);
    synth(&b, 20, 3);
    let (ta, tb) = (tree_bytes(&a), tree_bytes(&b));
    assert_eq!(ta.len(), 20 * 2 + 4);
    assert!(ta == tb, "same seed, different bytes");

    let cfg = tmp.path().join("tiny.cfg");
    let weights = tmp.path().join("tiny.weights");
    std::fs::write(&cfg, CFG).unwrap();
    let o = ternc().arg("init").arg(&cfg).arg("-o").arg(&weights).args(["--seed", "1"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // Run from another directory: the set's relative paths resolve beside its files.
    let o = ternc()
        .current_dir(tmp.path())
        .args([
            "map", "tiny.cfg", "--weights", "tiny.weights", "--data", "a/synth.data", "--json", "--threads",
            "2",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for key in ["map50", "map50_11pt", "avg_iou"] {
        let x = v[key].as_f64().unwrap_or_else(|| panic!("{key} in {v}"));
        assert!((0.0..=1.0).contains(&x), "{key} = {x}");
    }
    assert_eq!(v["images"], 2);
    let per_class = v["per_class"].as_object().unwrap();
    assert_eq!(per_class.len(), 5);
    assert!(per_class.contains_key("circle") && per_class.contains_key("ring"));

    // From inside the set's folder, as Darknet would be run; the table form.
    let o = ternc()
        .current_dir(&a)
        .arg("map")
        .arg(&cfg)
        .arg("--weights")
        .arg(&weights)
        .args(["--data", "synth.data"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.starts_with("class"), "{table}");
    assert!(table.contains("triangle") && table.contains("mAP@0.50 = "), "{table}");
}

#[test]
fn a_model_that_sees_nothing_scores_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let set = tmp.path().join("s");
    synth(&set, 10, 1);
    let cfg = tmp.path().join("blind.cfg");
    std::fs::write(&cfg, CFG).unwrap();
    // Objectness logits of −30 everywhere: no detection passes the threshold.
    let mut g = ternc_frontend::parse_cfg_text(&cfg, CFG).unwrap().graph;
    g.params = ternc_frontend::init::init(&g, 0);
    let last = g.params.layers.keys().copied().max().unwrap();
    let p = g.params.layer_mut(last);
    p.weights.iter_mut().for_each(|w| *w = 0.0);
    p.biases = (0..30).map(|i| if i % 10 == 4 { -30.0 } else { 0.0 }).collect();
    let weights = tmp.path().join("blind.weights");
    ternc_frontend::weights::write(&weights, &g).unwrap();
    let o = ternc()
        .arg("map")
        .arg(&cfg)
        .arg("--weights")
        .arg(&weights)
        .arg("--data")
        .arg(set.join("synth.data"))
        .arg("--json")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["map50"].as_f64(), Some(0.0), "{v}");
    assert_eq!(v["avg_iou"].as_f64(), Some(0.0), "{v}");
}

#[test]
fn bad_input_exits_2_with_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("tiny.cfg");
    std::fs::write(&cfg, CFG).unwrap();
    let data = tmp.path().join("bad.data");
    std::fs::write(&data, "classes=5\nvalid = v.txt\nthis line has no equals sign\n").unwrap();
    let o = ternc().arg("map").arg(&cfg).arg("--data").arg(&data).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("{}:3: ", data.display())), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    // Classes that do not match the model.
    let set = tmp.path().join("s");
    let o = ternc()
        .args(["dataset", "synth", "--images", "3", "--size", "32", "--classes", "circle,ring"])
        .arg("--out")
        .arg(&set)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = ternc().arg("map").arg(&cfg).arg("--data").arg(set.join("synth.data")).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("classes=2 but") && err.contains("detects 5 classes"), "{err}");

    // A bad label line in the valid set: skipped with FILE:LINE, the rest evaluated.
    let label = set.join("labels/000002.txt");
    std::fs::write(&label, "0 0.5 0.5 0.2\n").unwrap();
    let o = ternc().args(["dataset", "check"]).arg(set.join("synth.data")).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("{}:1: expected 5 numbers", label.display())), "{err}");

    // Unknown synthetic class.
    let o = ternc().args(["dataset", "synth", "--classes", "blob"]).arg("--out").arg(&set).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
}
