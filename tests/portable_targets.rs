//! `ternc compile --target c|opencl|hls` end to end: yolov3-tiny and yolov2-tiny-voc,
//! fully ternarized (2-bit packed codes), at a small input size, with random weights.
//!
//! - C: `PREFIX.c` compiled with `-std=c99 -O2 -Wall -Wextra -Werror` by gcc and by
//!   clang, linked with the LLVM tests' C client (`tests/data/llvm_client.c`), run;
//! - OpenCL: `PREFIX.c` (host code embedding `PREFIX.cl`) linked with `-lOpenCL` and
//!   the same client, run on the first OpenCL device (PoCL in CI);
//! - HLS: the C-simulation test bench built with `g++ -std=c++14 -O2 DIR/*.cpp`
//!   against the bundled `ap_int` stand-in, run on a raw input.
//!
//! Every output is compared with the reference interpreter (relative 1e-4), and the
//! C API's `NAME_detect` boxes with `ternc_runtime::detect` on the reference outputs.
//! A missing tool (clang, the OpenCL ICD loader and headers, a device) makes the test
//! skip with a message; under `TERNC_REQUIRE_CROSS=1` (set by `.ci/run`) it fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use assert_cmd::cargo::CommandCargoExt;
use ternc_frontend::{init::init, parse_cfg_text};
use ternc_ir::Graph;
use ternc_passes::spec::Spec;
use ternc_passes::ternarize::{self, Scope};
use ternc_passes::ternary::DEFAULT_THRESHOLD;
use ternc_runtime::{Reference, Tensor};

mod common;

use common::*;

const STRICT: [&str; 6] = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off"];

/// A model compiled by `ternc compile --target T`, with the reference's outputs.
struct Case {
    what: String,
    dir: tempfile::TempDir,
    prefix: PathBuf,
    g: Graph,
    x: Tensor,
    heads: Vec<(usize, Tensor)>,
}

/// Compiles `model` at `size` (fully ternary, random weights of seed 0) for `target`
/// and runs the reference on the same model.
fn compile(model: &str, size: usize, target: &str) -> Case {
    let what = format!("{model} ({target})");
    let dir = tempfile::tempdir().unwrap();
    let text = ternc_frontend::with_input_size(
        &std::fs::read_to_string(root().join("models/darknet").join(model)).unwrap(),
        size,
        size,
    );
    let cfg = dir.path().join("model.cfg");
    std::fs::write(&cfg, &text).unwrap();
    let out_dir = dir.path().join("gen");
    std::fs::create_dir(&out_dir).unwrap();
    let prefix = out_dir.join("net");
    let out = Command::cargo_bin("ternc")
        .unwrap()
        .args(["compile"])
        .arg(&cfg)
        .args(["--layers", "all", "--target", target, "-o"])
        .arg(&prefix)
        .output()
        .unwrap();
    assert!(out.status.success(), "{what}: compile failed: {}", String::from_utf8_lossy(&out.stderr));
    eprintln!("{what}: {}", String::from_utf8_lossy(&out.stdout).trim());

    let mut g = parse_cfg_text(Path::new(model), &text).unwrap().graph;
    g.params = init(&g, 0);
    let sel = Spec::parse("all").unwrap().select(&g).unwrap();
    ternarize::run(&mut g, &sel, Scope::Layer, DEFAULT_THRESHOLD).unwrap();
    let x = input(&g);
    let heads = Reference::new(&g, 1).unwrap().run(&x, |_| {}).unwrap();
    let bin = dir.path().join("input.bin");
    std::fs::write(&bin, x.data.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
    Case { what, dir, prefix, g, x, heads }
}

fn read_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

impl Case {
    fn input_bin(&self) -> PathBuf {
        self.dir.path().join("input.bin")
    }

    /// Compares output files `path(i)` with the reference's heads.
    fn check_outputs(&self, what: &str, path: &dyn Fn(usize) -> PathBuf) {
        for (i, (l, want)) in self.heads.iter().enumerate() {
            let got = read_f32(&path(i));
            let e = rel_err(&got, &want.data);
            eprintln!("{what}: output {i} (layer {l}): {} floats, rel err {e:.2e}", got.len());
            assert!(e <= TOL, "{what}: output {i} (layer {l}) differs by {e:.3e} relative");
        }
        assert!(!path(self.heads.len()).exists(), "{what}: more outputs than the reference's heads");
    }

    /// Links the C client with `sources` (and `libs`) using `cc`, runs it, and checks
    /// its outputs and boxes.
    fn run_client(&self, cc: &str, flags: &[&str], sources: &[PathBuf], libs: &[&str], thresh: f32) {
        let what = format!("{} [{cc}]", self.what);
        let client = self.dir.path().join(format!("client-{cc}"));
        let out = Command::new(cc)
            .args(flags)
            .arg("-DMODEL=net")
            .arg("-include")
            .arg(self.prefix.with_extension("h"))
            .arg(root().join("tests/data/llvm_client.c"))
            .args(sources)
            .arg("-lm")
            .args(libs)
            .arg("-o")
            .arg(&client)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{what}: building the C client failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out_prefix = self.dir.path().join(format!("out-{cc}"));
        let run = Command::new(&client)
            .arg(self.input_bin())
            .arg(&out_prefix)
            .args([thresh.to_string(), NMS.to_string()])
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{what}: the client failed ({}): {}",
            run.status,
            String::from_utf8_lossy(&run.stderr)
        );
        self.check_outputs(&what, &|i| PathBuf::from(format!("{}.{i}.bin", out_prefix.display())));
        let want = reference_boxes(&self.g, &self.heads, thresh);
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
    }
}

fn c_target(model: &str, size: usize, thresh: f32) {
    let case = compile(model, size, "c");
    let src = case.prefix.with_extension("c");
    let text = std::fs::read_to_string(&src).unwrap();
    for inc in text.lines().filter(|l| l.starts_with("#include")) {
        assert!(
            ["<math.h>", "<string.h>", "<stdint.h>", "<stddef.h>"].iter().any(|h| inc.ends_with(h)),
            "{}: unexpected {inc}",
            case.what
        );
    }
    let mut compilers = vec!["gcc"];
    if have("clang") {
        compilers.push("clang");
    } else {
        skip(&case.what, "clang is not installed (apt-get install clang); checked with gcc only");
    }
    for cc in compilers {
        case.run_client(cc, &STRICT, std::slice::from_ref(&src), &[], thresh);
    }
}

#[test]
fn c_yolov3_tiny() {
    c_target("yolov3-tiny.cfg", 64, 0.3);
}

#[test]
fn c_yolov2_tiny_voc() {
    c_target("yolov2-tiny-voc.cfg", 96, 0.02);
}

#[test]
fn c_target_input_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = root().join("models/darknet/yolov3-tiny.cfg");
    let out = Command::cargo_bin("ternc")
        .unwrap()
        .arg("compile")
        .arg(&cfg)
        .args(["--target", "c", "--cpu", "cortex-a72", "-o"])
        .arg(dir.path().join("x"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "no partial output");
}

/// Whether an OpenCL ICD loader, its headers and a platform are installed.
fn opencl_present(what: &str) -> bool {
    if !Path::new("/usr/include/CL/cl.h").exists() {
        return skip(
            what,
            "no OpenCL headers (apt-get install opencl-headers ocl-icd-opencl-dev pocl-opencl-icd)",
        );
    }
    let icds = std::fs::read_dir("/etc/OpenCL/vendors")
        .map(|d| {
            d.filter_map(Result::ok).filter(|e| e.path().extension().is_some_and(|x| x == "icd")).count()
        })
        .unwrap_or(0);
    if icds == 0 {
        return skip(what, "no OpenCL platform in /etc/OpenCL/vendors (apt-get install pocl-opencl-icd)");
    }
    true
}

fn opencl_target(model: &str, size: usize, thresh: f32) {
    if !opencl_present(&format!("{model} (opencl)")) {
        return;
    }
    let case = compile(model, size, "opencl");
    let kernels = std::fs::read_to_string(case.prefix.with_extension("cl")).unwrap();
    assert!(kernels.contains("__kernel void k0("), "{}", case.what);
    let host = case.prefix.with_extension("c");
    let flags = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror"];
    case.run_client("gcc", &flags, &[host], &["-lOpenCL"], thresh);
}

#[test]
fn opencl_yolov3_tiny() {
    opencl_target("yolov3-tiny.cfg", 64, 0.3);
}

#[test]
fn opencl_yolov2_tiny_voc() {
    opencl_target("yolov2-tiny-voc.cfg", 96, 0.02);
}

fn hls_target(model: &str, size: usize) {
    if !have("g++") {
        skip(&format!("{model} (hls)"), "g++ is not installed");
        return;
    }
    let case = compile(model, size, "hls");
    let gen = case.prefix.parent().unwrap().to_path_buf();
    let tb = case.dir.path().join("tb");
    let cpps: Vec<PathBuf> = std::fs::read_dir(&gen)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cpp"))
        .collect();
    assert_eq!(cpps.len(), 2, "{}: net.cpp and net_tb.cpp", case.what);
    for f in ["net.h", "net_ap_int.h", "net.tcl"] {
        assert!(gen.join(f).exists(), "{}: {f}", case.what);
    }
    // the generated C++ uses the ap_int stand-in here (no Vitis headers)
    let out =
        Command::new("g++").args(["-std=c++14", "-O2"]).args(&cpps).arg("-o").arg(&tb).output().unwrap();
    assert!(out.status.success(), "{}: g++ failed:\n{}", case.what, String::from_utf8_lossy(&out.stderr));
    let outdir = case.dir.path().join("hls-out");
    std::fs::create_dir(&outdir).unwrap();
    let run = Command::new(&tb).arg(case.input_bin()).arg(&outdir).output().unwrap();
    assert!(run.status.success(), "{}: tb failed: {}", case.what, String::from_utf8_lossy(&run.stderr));
    case.check_outputs(&case.what, &|i| outdir.join(format!("out_{i}.raw")));
    // a wrong input size is refused
    let short = case.dir.path().join("short.raw");
    std::fs::write(&short, [0u8; 8]).unwrap();
    let run = Command::new(&tb).arg(&short).arg(&outdir).output().unwrap();
    assert!(!run.status.success(), "{}: tb accepted a short input", case.what);
    let _ = &case.x;
}

#[test]
fn hls_yolov3_tiny() {
    hls_target("yolov3-tiny.cfg", 64);
}

#[test]
fn hls_yolov2_tiny_voc() {
    hls_target("yolov2-tiny-voc.cfg", 96);
}

#[test]
fn hls_report_is_printed() {
    let dir = tempfile::tempdir().unwrap();
    let text = ternc_frontend::with_input_size(
        &std::fs::read_to_string(root().join("models/darknet/yolov3-tiny.cfg")).unwrap(),
        64,
        64,
    );
    let cfg = dir.path().join("m.cfg");
    std::fs::write(&cfg, text).unwrap();
    let out = Command::cargo_bin("ternc")
        .unwrap()
        .arg("compile")
        .arg(&cfg)
        .args(["--layers", "all", "--target", "hls", "-o"])
        .arg(dir.path().join("net"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("est. cycles") && report.contains("ms at 200 MHz"), "{report}");
    // every ternary convolution: adders, 2-bit code ROM, no multiplier in its loops
    let convs: Vec<&str> = report.lines().filter(|l| l.contains("convolutional")).collect();
    assert_eq!(convs.len(), 13, "{report}");
    for l in convs {
        let cols: Vec<&str> = l.split_whitespace().collect();
        let (adders, mults, codes): (usize, usize, u64) =
            (cols[3].parse().unwrap(), cols[4].parse().unwrap(), cols[7].parse().unwrap());
        assert!(adders > 0 && codes > 0 && mults == 0, "{l}");
    }
}
