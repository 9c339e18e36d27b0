//! `ternc detect` end to end on a model whose output is known: a 1x1 convolution
//! turns red pixels into objectness, so a red square on black gives one box at a
//! place computed by hand.

use std::path::Path;

use assert_cmd::Command;
use ternc_frontend::{parse_cfg_text, weights};

const CFG: &str = "[net]\nwidth=8\nheight=8\nchannels=3\n\n[convolutional]\nfilters=6\nsize=1\nactivation=linear\n\n[yolo]\nmask=0\nnum=1\nanchors=4,4\nclasses=1\n";

/// A 64x64 black PNG with a red square covering pixels x 40..48, y 16..24.
fn red_square(path: &Path) {
    let img = image::RgbImage::from_fn(64, 64, |x, y| {
        if (40..48).contains(&x) && (16..24).contains(&y) {
            image::Rgb([255, 0, 0])
        } else {
            image::Rgb([0, 0, 0])
        }
    });
    img.save(path).unwrap();
}

#[test]
fn one_red_square_gives_one_box() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, w, names, png) = (
        dir.path().join("m.cfg"),
        dir.path().join("m.weights"),
        dir.path().join("m.names"),
        dir.path().join("square.png"),
    );
    std::fs::write(&cfg, CFG).unwrap();
    std::fs::write(&names, "redthing\n").unwrap();
    red_square(&png);
    // channels x, y, w, h, objectness, class: objectness = 40·R − 20, class logit 10
    let mut g = parse_cfg_text(&cfg, CFG).unwrap().graph;
    let p = g.params.layer_mut(0);
    p.biases = vec![0.0, 0.0, 0.0, 0.0, -20.0, 10.0];
    p.weights = vec![0.0; 18];
    p.weights[4 * 3] = 40.0;
    weights::write(&w, &g).unwrap();

    let out_dir = dir.path().join("out");
    let out = Command::cargo_bin("ternc")
        .unwrap()
        .arg("detect")
        .arg(&cfg)
        .arg("--weights")
        .arg(&w)
        .arg("--names")
        .arg(&names)
        .arg(&png)
        .arg("--json")
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let dets = v[0]["detections"].as_array().unwrap();
    assert_eq!(v[0]["image"], png.to_str().unwrap());
    assert_eq!(dets.len(), 1, "{v}");
    // Darknet's resize samples source x = 9·i, y = 9·j: only cell (5, 2) is red.
    // Box centre ((5 + 0.5)/8, (2 + 0.5)/8)·64 = (44, 20); size exp(0)·4/8·64 = 32.
    let b: Vec<f64> = dets[0]["box"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    for (got, want) in b.iter().zip([28.0, 4.0, 60.0, 36.0]) {
        assert!((got - want).abs() < 1e-3, "{b:?}");
    }
    assert_eq!(dets[0]["name"], "redthing");
    assert_eq!(dets[0]["class"], 0);
    assert!(dets[0]["score"].as_f64().unwrap() > 0.999);

    // the annotated image has the input's size and the box drawn on its left edge
    let annotated = image::open(out_dir.join("square.png")).unwrap().to_rgb8();
    assert_eq!(annotated.dimensions(), (64, 64));
    let edge = annotated.get_pixel(28, 30);
    assert_ne!(edge, &image::Rgb([0, 0, 0]), "box edge drawn");
    assert_eq!(annotated.get_pixel(10, 50), &image::Rgb([0, 0, 0]), "background untouched");
}

#[test]
fn detect_errors_are_input_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("m.cfg");
    std::fs::write(&cfg, CFG).unwrap();
    let names = dir.path().join("empty.names");
    std::fs::write(&names, "\n").unwrap();
    let bad = dir.path().join("bad.jpg");
    std::fs::write(&bad, "not a jpeg").unwrap();
    for (names_arg, image_arg, needle) in [
        (names.clone(), bad.clone(), "empty.names"),
        (dir.path().join("missing.names"), bad.clone(), "missing.names"),
    ] {
        let out = Command::cargo_bin("ternc")
            .unwrap()
            .arg("detect")
            .arg(&cfg)
            .arg("--names")
            .arg(&names_arg)
            .arg(&image_arg)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{err}");
    }
    std::fs::write(&names, "a\n").unwrap();
    let out = Command::cargo_bin("ternc")
        .unwrap()
        .arg("detect")
        .arg(&cfg)
        .arg("--names")
        .arg(&names)
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.jpg"));
}
