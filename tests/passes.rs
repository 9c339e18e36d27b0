//! The passes end to end: stage plans against the original stage cfgs, `ternarize`
//! output that Darknet semantics reproduce, batchnorm folding that changes nothing,
//! and IR snapshots before and after each pass.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use ternc_frontend::{init::init, load_cfg, parse_cfg_text, weights};
use ternc_ir::Graph;
use ternc_passes::{fold, plan, ternarize, ternarize::Scope};
use ternc_runtime::{Reference, Tensor};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn ternary_flags(g: &Graph) -> BTreeSet<usize> {
    (0..g.num_layers()).filter(|&i| g.layer(i).op.is_ternary()).collect()
}

#[test]
fn example_plans_reproduce_the_original_stage_cfgs() {
    for (plan_file, twn) in [
        ("yolov2-voc.toml", "yolov2-voc_%.cfg"),
        ("yolov3-voc.toml", "yolov3-voc_%.cfg"),
        ("yolov3-tiny-voc.toml", "yolov3-tiny-voc_%.cfg"),
    ] {
        let p = plan::read(&root().join("examples/plans").join(plan_file)).unwrap();
        let base = load_cfg(&p.cfg).unwrap().graph;
        assert_eq!(p.stages.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["M0", "M1", "M2", "M3"]);
        for stage in &p.stages {
            let selected = stage.layers.select(&base).unwrap();
            let cfg = root().join("models/darknet-twn").join(twn.replace('%', &stage.name));
            let want = if cfg.exists() {
                let g = load_cfg(&cfg).unwrap().graph;
                assert_eq!(
                    Some(stage.train.max_batches.unwrap()),
                    Some(g.net.max_batches),
                    "{plan_file} {}",
                    stage.name
                );
                ternary_flags(&g)
            } else {
                (0..base.num_layers()).filter(|&i| base.layer(i).op.has_weights()).collect()
            };
            assert_eq!(selected, want, "{plan_file} {}", stage.name);
        }
    }
}

/// yolov3-tiny at 96x96 with random weights and a fixed input.
fn small_tiny() -> (Graph, Tensor) {
    let text = std::fs::read_to_string(root().join("models/darknet/yolov3-tiny.cfg")).unwrap();
    let text = text.replace("width=416", "width=96").replace("height=416", "height=96");
    let mut g = parse_cfg_text(Path::new("yolov3-tiny.cfg"), &text).unwrap().graph;
    g.params = init(&g, 4);
    let s = g.input_shape();
    let x = Tensor::from_vec(1, s, (0..s.numel()).map(|i| ((i * 37) % 101) as f32 / 101.0).collect());
    (g, x)
}

fn heads(g: &Graph, x: &Tensor) -> Vec<Vec<f32>> {
    Reference::new(g, 2).unwrap().run(x, |_| {}).unwrap().into_iter().map(|(_, t)| t.data).collect()
}

fn max_rel(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| x.iter().zip(y))
        .map(|(p, q)| (p - q).abs() / q.abs().max(1.0))
        .fold(0.0, f32::max)
}

#[test]
fn folding_batchnorm_changes_no_output() {
    for scope in [None, Some(Scope::Layer), Some(Scope::Channel)] {
        let (mut g, x) = small_tiny();
        if let Some(scope) = scope {
            let half: BTreeSet<usize> = [2, 4, 8, 13, 21].into();
            ternarize::run(&mut g, &half, scope, 0.7).unwrap();
        }
        let before = heads(&g, &x);
        let report = fold::run(&mut g).unwrap();
        assert_eq!(report.folded.len(), 11, "every conv with batch_normalize=1");
        assert!(g.params.layers.values().all(|p| p.bn.is_none()));
        let after = heads(&g, &x);
        let err = max_rel(&after, &before);
        assert!(err <= 1e-5, "{scope:?}: {err}");
    }
}

#[test]
fn ternarize_writes_a_model_darknet_runs_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = root().join("models/darknet/yolov2-tiny-voc.cfg");
    let w = dir.path().join("m.weights");
    let mut g = load_cfg(&cfg).unwrap().graph;
    g.params = init(&g, 2);
    weights::write(&w, &g).unwrap();
    let prefix = dir.path().join("t");
    let out = Command::cargo_bin("ternc")
        .unwrap()
        .arg("ternarize")
        .arg(&cfg)
        .arg("--weights")
        .arg(&w)
        .args(["--layers", "2-8,-1"])
        .arg("-o")
        .arg(&prefix)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("ternarized 5 layers"), "{report}");

    // the cfg differs only by ternary=1 lines, one per chosen layer
    let (orig, new) =
        (std::fs::read_to_string(&cfg).unwrap(), std::fs::read_to_string(dir.path().join("t.cfg")).unwrap());
    let kept: Vec<&str> = new.lines().filter(|l| *l != "ternary=1").collect();
    assert_eq!(kept, orig.lines().collect::<Vec<_>>());
    let t = load_cfg(&dir.path().join("t.cfg")).unwrap().graph;
    assert_eq!(ternary_flags(&t), [2, 4, 6, 8, 14].into());

    // the weights hold α·t: at most three values per ternary layer, biases untouched
    let tw = weights::read(&dir.path().join("t.weights"), &t, None).unwrap();
    for i in ternary_flags(&t) {
        let mut distinct: Vec<f32> = tw.layer(i).unwrap().weights.clone();
        distinct.sort_by(f32::total_cmp);
        distinct.dedup();
        assert!(distinct.len() <= 3, "layer {i}: {} values", distinct.len());
        assert_eq!(tw.layer(i).unwrap().biases, g.params.layer(i).unwrap().biases);
    }

    // Darknet-TWN semantics: t.cfg with t.weights == t.cfg with the float weights,
    // both == the original graph after the ternarization pass
    let s = t.input_shape();
    let x = Tensor::from_vec(1, s, (0..s.numel()).map(|i| ((i * 13) % 97) as f32 / 97.0).collect());
    let mut with_ternary = t.clone();
    with_ternary.params = tw;
    let mut with_float = t.clone();
    with_float.params = g.params.clone();
    let mut passed = g.clone();
    ternarize::run(&mut passed, &[2, 4, 6, 8, 14].into(), Scope::Layer, 0.7).unwrap();
    let (a, b, c) = (heads(&with_ternary, &x), heads(&with_float, &x), heads(&passed, &x));
    assert!(max_rel(&a, &b) <= 1e-5, "{}", max_rel(&a, &b));
    assert!(max_rel(&a, &c) <= 1e-5, "{}", max_rel(&a, &c));
}

#[test]
fn ternarize_input_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = root().join("models/darknet/yolov3-tiny.cfg");
    let w = dir.path().join("m.weights");
    Command::cargo_bin("ternc").unwrap().arg("init").arg(&cfg).arg("-o").arg(&w).assert().success();
    let bad_plan = dir.path().join("bad.toml");
    std::fs::write(
        &bad_plan,
        "cfg = \"x.cfg\"\nout = \"o\"\n\n[[stage]]\nname = \"M0\"\nlayers = \"0\"\nlearning_rat = 0.1\n",
    )
    .unwrap();
    for (args, needle) in [
        (vec!["--layers", "0,x"], "--layers: 'x' in layer spec"),
        (vec!["--layers", "99"], "layer 99 in layer spec '99' is out of range"),
        (
            vec!["--plan", bad_plan.to_str().unwrap(), "--stage", "M0"],
            "bad.toml:7: unknown field `learning_rat`",
        ),
    ] {
        let out = Command::cargo_bin("ternc")
            .unwrap()
            .arg("ternarize")
            .arg(&cfg)
            .arg("--weights")
            .arg(&w)
            .args(&args)
            .arg("-o")
            .arg(dir.path().join("o"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!dir.path().join("o.cfg").exists() && !dir.path().join("o.weights").exists());
    }
}

#[test]
fn pass_snapshots() {
    for name in ["yolov3-tiny", "yolov2-voc"] {
        let mut g = load_cfg(&root().join(format!("models/darknet/{name}.cfg"))).unwrap().graph;
        g.params = init(&g, 0);
        insta::assert_snapshot!(format!("{name}-loaded"), g.dump());
        let chosen = ternc_passes::spec::Spec::parse("all-but-first-and-last").unwrap().select(&g).unwrap();
        ternarize::run(&mut g, &chosen, Scope::Channel, 0.7).unwrap();
        insta::assert_snapshot!(format!("{name}-ternarized"), g.dump());
        fold::run(&mut g).unwrap();
        insta::assert_snapshot!(format!("{name}-folded"), g.dump());
    }
}
