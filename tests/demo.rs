//! `ternc demo`, the README's first command: the bundled fully ternary model compiled
//! with the JIT finds the shapes in the bundled images, agrees with the reference
//! interpreter, and writes the annotated PNGs.

use assert_cmd::Command;

#[test]
fn demo_detects_the_bundled_shapes_with_a_fully_ternary_jit_model() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo-out");
    let o = Command::cargo_bin("ternc")
        .unwrap()
        .args(["demo", "--runs", "2", "--threads", "2", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("7 of 7 convolutions ternary"), "{stdout}");
    assert!(!stdout.contains("differs from the reference"), "{stdout}");
    let names = ["circle", "square", "triangle", "cross", "ring"];
    for i in 1..=4 {
        let name = format!("shapes-{i}.png");
        let line =
            stdout.lines().find(|l| l.starts_with(&name)).unwrap_or_else(|| panic!("{name}: {stdout}"));
        let n: usize = line.split(": ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
        assert!(n >= 1, "{line}");
        let png = image::open(out.join(&name)).unwrap().to_rgb8();
        let src = image::load_from_memory(
            &std::fs::read(format!("{}/models/synth-demo/images/{name}", env!("CARGO_MANIFEST_DIR")))
                .unwrap(),
        )
        .unwrap()
        .to_rgb8();
        assert_eq!(png.dimensions(), src.dimensions());
        assert_ne!(png.as_raw(), src.as_raw(), "{name}: boxes drawn");
    }
    // Every box line names a class of the synthetic set with a score.
    let boxes: Vec<&str> = stdout.lines().filter(|l| l.contains("box (")).collect();
    assert!(boxes.len() >= 4);
    for l in boxes {
        assert!(names.iter().any(|n| l.trim_start().starts_with(n)), "{l}");
    }
}
