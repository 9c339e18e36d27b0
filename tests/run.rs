//! `ternc run` and `ternc bench` end to end: dumps match the interpreter called
//! in-process, inputs are checked, bench reports what it promises.

use std::path::PathBuf;

use assert_cmd::Command;
use ternc_frontend::{init::init, load_cfg, weights};
use ternc_runtime::{npy, Reference, Tensor};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn dump_writes_every_layer_as_npy() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = root().join("models/darknet/yolov2-tiny-voc.cfg");
    let w = dir.path().join("m.weights");
    let mut g = load_cfg(&cfg).unwrap().graph;
    g.params = init(&g, 9);
    weights::write(&w, &g).unwrap();
    let s = g.input_shape();
    let input = Tensor::from_vec(1, s, (0..s.numel()).map(|i| ((i * 7919) % 1000) as f32 / 1000.0).collect());
    let x = dir.path().join("x.npy");
    std::fs::write(&x, npy::tensor_bytes(&input).unwrap()).unwrap();

    let dump = dir.path().join("dump");
    let out = Command::cargo_bin("ternc")
        .unwrap()
        .arg("run")
        .arg(&cfg)
        .arg("--weights")
        .arg(&w)
        .arg("--input")
        .arg(&x)
        .arg("--dump")
        .arg(&dump)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("layer  15 region"), "{stdout}");

    let mut expected = vec![None; g.num_layers()];
    Reference::new(&g, 1).unwrap().run(&input, |d| expected[d.layer] = Some(d.output.clone())).unwrap();
    for (i, want) in expected.into_iter().enumerate() {
        let got = npy::read_tensor(&dump.join(format!("{i:03}.npy"))).unwrap();
        assert_eq!(got, want.unwrap(), "layer {i}");
    }
    assert_eq!(
        std::fs::read_dir(&dump).unwrap().count(),
        g.num_layers(),
        "one file per layer, no temporaries"
    );
}

#[test]
fn run_rejects_wrong_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = root().join("models/darknet/yolov3-tiny.cfg");
    let wrong = dir.path().join("wrong.npy");
    std::fs::write(&wrong, npy::tensor_bytes(&Tensor::zeros(1, ternc_ir::Shape::new(3, 32, 32))).unwrap())
        .unwrap();
    let garbage = dir.path().join("garbage.npy");
    std::fs::write(&garbage, b"\x93NUMPY garbage").unwrap();
    for (input, needle) in [(&wrong, "the network takes [1,3,416,416]"), (&garbage, "not a .npy file")] {
        let out = Command::cargo_bin("ternc")
            .unwrap()
            .arg("run")
            .arg(&cfg)
            .arg("--input")
            .arg(input)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle) && err.contains(input.file_name().unwrap().to_str().unwrap()), "{err}");
    }
}

#[test]
fn run_takes_images_and_bench_reports_json() {
    let cfg = root().join("models/darknet/yolov3-tiny.cfg");
    let out = Command::cargo_bin("ternc")
        .unwrap()
        .arg("run")
        .arg(&cfg)
        .arg("--input")
        .arg(root().join("images/dog.jpg"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains(" yolo ")).count(), 2);

    let out = Command::cargo_bin("ternc")
        .unwrap()
        .arg("bench")
        .arg(root().join("models/darknet/yolov2-tiny.cfg"))
        .args(["--iters", "2", "--warmup", "0", "--threads", "1", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (med, min, max) =
        (v["median_ms"].as_f64().unwrap(), v["min_ms"].as_f64().unwrap(), v["max_ms"].as_f64().unwrap());
    assert!(min > 0.0 && min <= med && med <= max, "{v}");
    assert_eq!(v["layers"].as_array().unwrap().len(), 16);
    assert_eq!(v["threads"], 1);
}

#[test]
fn jit_backend_dumps_match_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(root().join("models/darknet/yolov2-tiny-voc.cfg")).unwrap();
    let cfg = dir.path().join("small.cfg");
    std::fs::write(&cfg, text.replace("width=416", "width=96").replace("height=416", "height=96")).unwrap();
    let w = dir.path().join("m.weights");
    Command::cargo_bin("ternc").unwrap().arg("init").arg(&cfg).arg("-o").arg(&w).assert().success();
    let g = load_cfg(&cfg).unwrap().graph;
    let s = g.input_shape();
    let x = dir.path().join("x.npy");
    let input = Tensor::from_vec(1, s, (0..s.numel()).map(|i| ((i * 31) % 257) as f32 / 257.0).collect());
    std::fs::write(&x, npy::tensor_bytes(&input).unwrap()).unwrap();
    for backend in ["reference", "jit"] {
        let out = Command::cargo_bin("ternc")
            .unwrap()
            .arg("run")
            .arg(&cfg)
            .arg("--weights")
            .arg(&w)
            .arg("--input")
            .arg(&x)
            .args(["--backend", backend, "--dump"])
            .arg(dir.path().join(backend))
            .output()
            .unwrap();
        assert!(out.status.success(), "{backend}: {}", String::from_utf8_lossy(&out.stderr));
    }
    for i in 0..g.num_layers() {
        let name = format!("{i:03}.npy");
        let (r, j) = (
            npy::read_tensor(&dir.path().join("reference").join(&name)).unwrap(),
            npy::read_tensor(&dir.path().join("jit").join(&name)).unwrap(),
        );
        assert_eq!(r.shape, j.shape, "layer {i}");
        let scale = r.data.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
        let err = r.data.iter().zip(&j.data).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max) / scale;
        assert!(err < 1e-4, "layer {i}: normalised error {err}");
    }
}
