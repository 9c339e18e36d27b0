//! `ternc compile` end to end: yolov3-tiny and yolov2-tiny-voc, fully ternarized, at a
//! small input size, compiled for the host and for aarch64, linked with a C test
//! client (`tests/data/llvm_client.c`), run (aarch64 under qemu-user), and every
//! output compared with the reference interpreter; `NAME_detect`'s boxes against
//! `ternc_runtime::detect` on the reference outputs.
//!
//! The W2A8 variants (`--act i8`) run the reference with the act scales the CLI
//! computes (the same ternarized graph calibrated on `quant::random_inputs(g, 4, 1)`),
//! so both sides compute the same integer sums.
//!
//! Cross tools missing locally make the aarch64 tests skip with a message; with
//! `TERNC_REQUIRE_CROSS=1` (set by `.ci/run`) they fail instead.

use std::path::Path;
use std::process::Command;

use assert_cmd::cargo::CommandCargoExt;
use ternc_frontend::{init::init, parse_cfg_text};
use ternc_passes::spec::Spec;
use ternc_passes::ternarize::{self, Scope};
use ternc_passes::ternary::DEFAULT_THRESHOLD;
use ternc_runtime::quant;
use ternc_runtime::Reference;

mod common;

use common::*;

/// Whether the tools are there; when not, skips (prints why) or, under
/// `TERNC_REQUIRE_CROSS=1`, fails.
fn tools_present(what: &str, tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !have(t)).collect();
    if missing.is_empty() {
        return true;
    }
    skip(what, &format!("missing {} (apt-get install gcc-aarch64-linux-gnu qemu-user)", missing.join(", ")))
}

#[derive(Clone, Copy)]
enum Target {
    Host,
    Aarch64,
}

/// Compiles `model` at `size` (fully ternary, random weights of seed 0) for `target`,
/// links and runs the C client, compares with the reference (boxes above `thresh`).
fn cross_run(model: &str, size: usize, target: Target, thresh: f32) {
    cross_run_with(model, size, target, thresh, &[]);
}

/// [`cross_run`] with extra `ternc compile` arguments; returns the object's size in
/// bytes (`None` when the tools are missing and the run was skipped).
fn cross_run_with(model: &str, size: usize, target: Target, thresh: f32, extra: &[&str]) -> Option<u64> {
    cross_run_opts(model, size, target, thresh, extra, false)
}

/// [`cross_run_with`]; `no_threads`: the client runs with a `pthread_create` that
/// always fails (`LD_PRELOAD`, host only), so every part runs on the calling thread.
fn cross_run_opts(
    model: &str,
    size: usize,
    target: Target,
    thresh: f32,
    extra: &[&str],
    no_threads: bool,
) -> Option<u64> {
    let (cc, runner): (&str, Vec<String>) = match target {
        Target::Host => ("cc", vec![]),
        Target::Aarch64 => (
            "aarch64-linux-gnu-gcc",
            vec!["qemu-aarch64".into(), "-L".into(), "/usr/aarch64-linux-gnu".into()],
        ),
    };
    let what = format!("{model} ({})", if matches!(target, Target::Host) { "host" } else { "aarch64" });
    let mut tools = vec![cc];
    if let Some(r) = runner.first() {
        tools.push(r);
    }
    if !tools_present(&what, &tools) {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let text = ternc_frontend::with_input_size(
        &std::fs::read_to_string(root().join("models/darknet").join(model)).unwrap(),
        size,
        size,
    );
    let cfg = dir.path().join("model.cfg");
    std::fs::write(&cfg, &text).unwrap();
    let prefix = dir.path().join("net");
    let t = if matches!(target, Target::Host) { "host" } else { "aarch64" };
    let out = Command::cargo_bin("ternc")
        .unwrap()
        .args(["compile"])
        .arg(&cfg)
        .args(["--layers", "all", "--target", t])
        .args(extra)
        .arg("-o")
        .arg(&prefix)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what}: compile failed: {stderr}");
    eprintln!("{what}: {}", String::from_utf8_lossy(&out.stdout).trim());
    let int8 = extra.windows(2).any(|w| w == ["--act", "i8"]);
    if int8 {
        assert!(stderr.contains("take int8 inputs"), "{what}: no int8 layers: {stderr}");
    }
    let threads = extra.windows(2).find(|w| w[0] == "--threads").map(|w| w[1]);
    let header = std::fs::read_to_string(prefix.with_extension("h")).unwrap();
    match threads {
        Some(n) if n != "1" => {
            assert!(header.contains("-lpthread"), "{what}: {header}");
            assert!(header.contains(&format!("#define NET_THREADS {n}\n")), "{what}: {header}");
            if have("nm") {
                let nm = Command::new("nm").arg("-u").arg(prefix.with_extension("o")).output().unwrap();
                let undefined = String::from_utf8_lossy(&nm.stdout);
                assert!(undefined.contains("pthread_create"), "{what}: undefined symbols {undefined}");
            }
        }
        _ => assert!(header.contains("needs only libc and libm"), "{what}: {header}"),
    }

    // the reference on the same model
    let mut g = parse_cfg_text(Path::new(model), &text).unwrap().graph;
    g.params = init(&g, 0);
    let sel = Spec::parse("all").unwrap().select(&g).unwrap();
    ternarize::run(&mut g, &sel, Scope::Layer, DEFAULT_THRESHOLD).unwrap();
    let x = input(&g);
    let mut reference = Reference::new(&g, 1).unwrap();
    if int8 {
        // as `ternc compile --act i8` without --calibrate (src/commands/act.rs)
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let scales = quant::calibrate(&g, &quant::random_inputs(&g, 4, 1), threads).unwrap();
        assert!(scales.quantized().count() > 0, "{what}: nothing quantized");
        reference = reference.with_act_scales(scales);
    }
    let heads = reference.run(&x, |_| {}).unwrap();

    let bin = dir.path().join("input.bin");
    std::fs::write(&bin, x.data.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
    let client = dir.path().join("client");
    let status = Command::new(cc)
        .args(["-O2", "-std=c99", "-Wall", "-Werror", "-DMODEL=net", "-include"])
        .arg(prefix.with_extension("h"))
        .arg(root().join("tests/data/llvm_client.c"))
        .arg(prefix.with_extension("o"))
        .args(if threads.is_some() { &["-lm", "-lpthread", "-o"][..] } else { &["-lm", "-o"][..] })
        .arg(&client)
        .status()
        .unwrap();
    assert!(status.success(), "{what}: linking the C client failed");
    let out_prefix = dir.path().join("out");
    let mut cmd = match runner.split_first() {
        Some((r, args)) => {
            let mut c = Command::new(r);
            c.args(args).arg(&client);
            c
        }
        None => Command::new(&client),
    };
    if no_threads {
        assert!(matches!(target, Target::Host), "LD_PRELOAD runs on the host only");
        let shim = dir.path().join("no_threads.c");
        std::fs::write(
            &shim,
            "#include <stdio.h>\n\
             int pthread_create(void *t, const void *a, void *(*f)(void *), void *x) {\n\
             \x20   static int said;\n\
             \x20   (void)t; (void)a; (void)f; (void)x;\n\
             \x20   if (!said++) fputs(\"pthread_create refused\\n\", stderr);\n\
             \x20   return 11; /* EAGAIN */\n\
             }\n",
        )
        .unwrap();
        let lib = dir.path().join("libno_threads.so");
        let status = Command::new(cc).args(["-shared", "-fPIC", "-o"]).arg(&lib).arg(&shim).status().unwrap();
        assert!(status.success(), "{what}: building the pthread_create shim failed");
        cmd.env("LD_PRELOAD", &lib);
    }
    let run = cmd.arg(&bin).arg(&out_prefix).args([thresh.to_string(), NMS.to_string()]).output().unwrap();
    assert!(
        run.status.success(),
        "{what}: the client failed ({}): {}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    if no_threads {
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(stderr.contains("pthread_create refused"), "{what}: the stub was not called: {stderr}");
    }
    for (i, (l, want)) in heads.iter().enumerate() {
        let bytes = std::fs::read(format!("{}.{i}.bin", out_prefix.display())).unwrap();
        let got: Vec<f32> = bytes.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        let e = rel_err(&got, &want.data);
        eprintln!("{what}: output {i} (layer {l}): {} floats, rel err {e:.2e}", got.len());
        assert!(e <= TOL, "{what}: output {i} (layer {l}) differs by {e:.3e} relative");
    }
    assert!(
        !Path::new(&format!("{}.{}.bin", out_prefix.display(), heads.len())).exists(),
        "{what}: more outputs than the reference's heads"
    );

    let want = reference_boxes(&g, &heads, thresh);
    let text = std::fs::read_to_string(format!("{}.boxes.txt", out_prefix.display())).unwrap();
    let got: Vec<Vec<f32>> =
        text.lines().map(|l| l.split_whitespace().map(|v| v.parse().unwrap()).collect()).collect();
    eprintln!("{what}: {} boxes (reference {})", got.len(), want.len());
    assert!(!want.is_empty(), "{what}: the test needs some boxes; lower the threshold");
    assert_eq!(got.len(), want.len().min(1000), "{what}: box count");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g[0] as usize, w.class, "{what}: {g:?} vs {w:?}");
        assert!((g[1] - w.score).abs() < 1e-4, "{what}: {g:?} vs {w:?}");
        for k in 0..4 {
            assert!((g[2 + k] - w.bbox[k]).abs() < 1e-3, "{what}: {g:?} vs {w:?}");
        }
    }
    Some(std::fs::metadata(format!("{}.o", prefix.display())).unwrap().len())
}

/// `--weights-form packed`: the 2-bit codes in the object, decoded while summing;
/// the same outputs, and an object far smaller than the float weights.
#[test]
fn yolov3_tiny_aarch64_packed_weights() {
    let Some(bytes) =
        cross_run_with("yolov3-tiny.cfg", 64, Target::Aarch64, 0.3, &["--weights-form", "packed"])
    else {
        return;
    };
    let fp32 = 4 * 8_858_734u64; // yolov3-tiny's parameters as float32
    assert!(bytes < fp32 / 8, "packed object {bytes} bytes vs {fp32} bytes of float32 weights");
}

#[test]
fn yolov3_tiny_host() {
    cross_run("yolov3-tiny.cfg", 64, Target::Host, 0.3);
}

#[test]
fn yolov2_tiny_voc_host() {
    cross_run("yolov2-tiny-voc.cfg", 96, Target::Host, 0.02);
}

#[test]
fn yolov3_tiny_aarch64() {
    cross_run("yolov3-tiny.cfg", 64, Target::Aarch64, 0.3);
}

#[test]
fn yolov2_tiny_voc_aarch64() {
    cross_run("yolov2-tiny-voc.cfg", 96, Target::Aarch64, 0.02);
}

/// W2A8: int8 activations into every ternary layer, summed as i16/i32 vectors.
const INT8: &[&str] = &["--act", "i8"];

#[test]
fn yolov3_tiny_host_int8() {
    cross_run_with("yolov3-tiny.cfg", 64, Target::Host, 0.3, INT8);
}

#[test]
fn yolov2_tiny_voc_host_int8() {
    cross_run_with("yolov2-tiny-voc.cfg", 96, Target::Host, 0.02, INT8);
}

#[test]
fn yolov3_tiny_aarch64_int8() {
    cross_run_with("yolov3-tiny.cfg", 64, Target::Aarch64, 0.3, INT8);
}

#[test]
fn yolov2_tiny_voc_aarch64_int8() {
    cross_run_with("yolov2-tiny-voc.cfg", 96, Target::Aarch64, 0.02, INT8);
}

/// W2A8 with the 2-bit codes decoded while summing int8 activations.
#[test]
fn yolov3_tiny_host_int8_packed_weights() {
    cross_run_with("yolov3-tiny.cfg", 64, Target::Host, 0.3, &["--act", "i8", "--weights-form", "packed"]);
}

/// `--threads 3`: each parallel kernel split in 3 parts, two on new threads; the
/// outputs are the reference's (the parts write disjoint elements).
#[test]
fn yolov3_tiny_host_threads() {
    cross_run_with("yolov3-tiny.cfg", 64, Target::Host, 0.3, &["--threads", "3"]);
}

#[test]
fn yolov3_tiny_aarch64_threads() {
    cross_run_with("yolov3-tiny.cfg", 64, Target::Aarch64, 0.3, &["--threads", "3"]);
}

#[test]
fn yolov2_tiny_voc_host_int8_threads() {
    cross_run_with("yolov2-tiny-voc.cfg", 96, Target::Host, 0.02, &["--act", "i8", "--threads", "2"]);
}

/// `pthread_create` failing (a preloaded stub): every part runs on the calling thread,
/// with the same outputs.
#[test]
fn yolov3_tiny_host_threads_without_pthread_create() {
    cross_run_opts("yolov3-tiny.cfg", 64, Target::Host, 0.3, &["--threads", "4"], true);
}

#[test]
fn bad_threads_are_input_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = root().join("models/darknet/yolov3-tiny.cfg");
    for args in [&["--threads", "0"][..], &["--threads", "100000"], &["--threads", "2", "--target", "c"]] {
        let out = Command::cargo_bin("ternc")
            .unwrap()
            .arg("compile")
            .arg(&cfg)
            .args(args)
            .arg("-o")
            .arg(dir.path().join("x"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains("--threads"), "{args:?}: {stderr}");
    }
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "no output");
}

#[test]
fn bad_target_and_cpu_are_input_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = root().join("models/darknet/yolov3-tiny.cfg");
    let out = Command::cargo_bin("ternc")
        .unwrap()
        .arg("compile")
        .arg(&cfg)
        .args(["--target", "mips", "-o"])
        .arg(dir.path().join("x"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::cargo_bin("ternc")
        .unwrap()
        .arg("compile")
        .arg(&cfg)
        .args(["--target", "aarch64", "--cpu", "bogus", "-o"])
        .arg(dir.path().join("x"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown CPU 'bogus'"));
    let out = Command::cargo_bin("ternc")
        .unwrap()
        .arg("compile")
        .arg(dir.path().join("missing.cfg"))
        .args(["-o"])
        .arg(dir.path().join("x"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "no partial output");
}
