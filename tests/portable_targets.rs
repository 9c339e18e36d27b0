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
//!
//! The `_int8` tests do the same with `--act i8` (W2A8: every ternary layer's input
//! quantized to int8, integer sums): the reference runs the same quantization
//! (`Reference::with_act_scales`) with the steps the CLI computes, calibrated as it
//! calibrates without `--calibrate` (`quant::random_inputs(g, 4, 1)` on the same
//! ternarized graph).
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
use ternc_runtime::quant;
use ternc_runtime::{Reference, Tensor};

mod common;

use common::*;

const STRICT: [&str; 6] = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off"];

/// Activation precision and weights form of a compiled case.
#[derive(Clone, Copy, PartialEq)]
enum Act {
    /// Float activations (the default).
    F32,
    /// `--act i8`, packed weights (the portable targets' default form).
    I8,
    /// `--act i8 --weights-form table`: the i16x8/i32x4 vector kernels, lane by lane.
    I8Table,
}

impl Act {
    fn args(self) -> &'static [&'static str] {
        match self {
            Act::F32 => &[],
            Act::I8 => &["--act", "i8"],
            Act::I8Table => &["--act", "i8", "--weights-form", "table"],
        }
    }
}

/// A model compiled by `ternc compile --target T`, with the reference's outputs.
struct Case {
    what: String,
    dir: tempfile::TempDir,
    prefix: PathBuf,
    g: Graph,
    x: Tensor,
    heads: Vec<(usize, Tensor)>,
    /// What `ternc compile` printed (the HLS report).
    stdout: String,
}

/// Compiles `model` at `size` (fully ternary, random weights of seed 0) for `target`
/// and runs the reference on the same model.
fn compile(model: &str, size: usize, target: &str, act: Act) -> Case {
    compile_with(model, size, target, act, &[])
}

/// [`compile`] with more `ternc compile` arguments.
fn compile_with(model: &str, size: usize, target: &str, act: Act, extra: &[&str]) -> Case {
    let what = match act {
        Act::F32 => format!("{model} ({target})"),
        _ => format!("{model} ({target} {})", act.args().join(" ")),
    };
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
        .args(["--layers", "all", "--target", target])
        .args(act.args())
        .args(extra)
        .arg("-o")
        .arg(&prefix)
        .output()
        .unwrap();
    assert!(out.status.success(), "{what}: compile failed: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{what}: {}", stdout.trim());

    let mut g = parse_cfg_text(Path::new(model), &text).unwrap().graph;
    g.params = init(&g, 0);
    let sel = Spec::parse("all").unwrap().select(&g).unwrap();
    ternarize::run(&mut g, &sel, Scope::Layer, DEFAULT_THRESHOLD).unwrap();
    let x = input(&g);
    let mut reference = Reference::new(&g, 1).unwrap();
    if act != Act::F32 {
        // the steps `ternc compile --act i8` uses without --calibrate (src/commands/act.rs)
        let scales = quant::calibrate(&g, &quant::random_inputs(&g, 4, 1), 1).unwrap();
        let n = scales.quantized().count();
        assert!(n > 0, "{what}: nothing quantized");
        let printed = format!("--act i8: {n} ternary layers take int8 inputs");
        assert!(String::from_utf8_lossy(&out.stderr).contains(&printed), "{what}: not {printed:?}");
        reference = reference.with_act_scales(scales);
    }
    let heads = reference.run(&x, |_| {}).unwrap();
    let bin = dir.path().join("input.bin");
    std::fs::write(&bin, x.data.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
    Case { what, dir, prefix, g, x, heads, stdout }
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

fn c_target(model: &str, size: usize, thresh: f32, act: Act) {
    let case = compile(model, size, "c", act);
    let src = case.prefix.with_extension("c");
    let text = std::fs::read_to_string(&src).unwrap();
    check_int8_kernels(&case.what, &text, act);
    if act == Act::I8Table {
        // i16x8 sums as eight int16_t lanes
        assert!(text.contains("int16_t l"), "{}: no i16x8 locals", case.what);
    }
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

/// Under `--act i8`: the source holds int8 kernels (every ternary convolution's),
/// and none without.
fn check_int8_kernels(what: &str, text: &str, act: Act) {
    let form = if act == Act::I8Table { "ternary table int8" } else { "ternary packed int8" };
    let int8 = text.matches(form).count();
    let quantize = text.lines().filter(|l| l.starts_with("/* k") && l.contains(": quantize ")).count();
    match act {
        Act::F32 => assert_eq!(int8 + quantize, 0, "{what}: int8 kernels in a float build"),
        _ => assert!(
            int8 > 0 && quantize > 0,
            "{what}: no int8 kernels ({form}: {int8}, quantize: {quantize})"
        ),
    }
}

#[test]
fn c_yolov3_tiny() {
    c_target("yolov3-tiny.cfg", 64, 0.3, Act::F32);
}

#[test]
fn c_yolov2_tiny_voc() {
    c_target("yolov2-tiny-voc.cfg", 96, 0.02, Act::F32);
}

#[test]
fn c_yolov3_tiny_int8() {
    c_target("yolov3-tiny.cfg", 64, 0.3, Act::I8);
}

#[test]
fn c_yolov2_tiny_voc_int8() {
    c_target("yolov2-tiny-voc.cfg", 96, 0.02, Act::I8);
}

/// The table form over int8 (`i16x8` sums, widened to `i32x4`, converted to `f32x4`)
/// printed lane by lane.
#[test]
fn c_yolov3_tiny_int8_table_form() {
    c_target("yolov3-tiny.cfg", 64, 0.3, Act::I8Table);
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

fn opencl_target(model: &str, size: usize, thresh: f32, act: Act) {
    if !opencl_present(&format!("{model} (opencl)")) {
        return;
    }
    let case = compile(model, size, "opencl", act);
    let kernels = std::fs::read_to_string(case.prefix.with_extension("cl")).unwrap();
    assert!(kernels.contains("__kernel void k0("), "{}", case.what);
    check_int8_kernels(&case.what, &kernels, act);
    if act != Act::F32 {
        // int8 activations live in device memory, summed in integers
        assert!(kernels.contains("__global char *restrict q8"), "{}: no q8 buffer", case.what);
        assert!(kernels.contains("(char)l"), "{}: no int8 stores", case.what);
    }
    let host = case.prefix.with_extension("c");
    let flags = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror"];
    case.run_client("gcc", &flags, &[host], &["-lOpenCL"], thresh);
}

#[test]
fn opencl_yolov3_tiny() {
    opencl_target("yolov3-tiny.cfg", 64, 0.3, Act::F32);
}

#[test]
fn opencl_yolov2_tiny_voc() {
    opencl_target("yolov2-tiny-voc.cfg", 96, 0.02, Act::F32);
}

#[test]
fn opencl_yolov3_tiny_int8() {
    opencl_target("yolov3-tiny.cfg", 64, 0.3, Act::I8);
}

#[test]
fn opencl_yolov2_tiny_voc_int8() {
    opencl_target("yolov2-tiny-voc.cfg", 96, 0.02, Act::I8);
}

fn hls_target(model: &str, size: usize, act: Act) {
    hls_target_arch(model, size, act, false);
}

fn hls_target_arch(model: &str, size: usize, act: Act, stream: bool) {
    if !have("g++") {
        skip(&format!("{model} (hls)"), "g++ is not installed");
        return;
    }
    let extra: &[&str] = if stream { &["--hls-arch", "stream"] } else { &[] };
    let case = compile_with(model, size, "hls", act, extra);
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
    // the structure: int8 layers sum on an on-chip int8 array through integer trees
    let src = std::fs::read_to_string(gen.join("net.cpp")).unwrap();
    check_int8_kernels(&case.what, &src, act);
    let q8 = if stream { "static int8_t q8[" } else { "static int8_t q8[NET_Q8_LEN];" };
    let int8_parts = [q8, "static inline net_tap_t net_terni(", "net_itree16("];
    for want in int8_parts {
        assert_eq!(src.contains(want), act != Act::F32, "{}: {want:?}", case.what);
    }
    if stream {
        check_stream(&case.what, &src, &case.stdout);
    }
    // the report: every ternary convolution's act, adders and code ROM
    let convs = conv_rows(&case.stdout);
    assert!(!convs.is_empty(), "{}: no convolutions in the report:\n{}", case.what, case.stdout);
    for r in convs {
        assert!(r.codes > 0, "{}: {r:?}", case.what);
        match act {
            Act::F32 => assert!(r.act == "f32" && r.adders > 0 && r.int_adders == 0 && r.mults == 0, "{r:?}"),
            // one float multiply: the quantize loop's x·(1/step)
            _ => assert!(r.act == "i8" && r.adders == 0 && r.int_adders > 0 && r.mults == 1, "{r:?}"),
        }
    }
}

/// A convolution's row of the HLS report.
#[derive(Debug)]
#[allow(dead_code)]
struct Row {
    act: String,
    adders: usize,
    int_adders: usize,
    mults: usize,
    codes: u64,
    cycles: u64,
}

/// The convolutional rows of the report `ternc compile --target hls` prints.
fn conv_rows(report: &str) -> Vec<Row> {
    let header = report.lines().find(|l| l.starts_with("layer  type")).expect("the report's header");
    let head: Vec<&str> = header.split("  ").map(str::trim).filter(|c| !c.is_empty()).collect();
    assert_eq!(
        head,
        [
            "layer", "type", "act", "kernels", "adders", "int adders", "mults", "parallel", "ROM bits",
            "2-bit codes", "est. cycles"
        ],
        "{header}"
    );
    report
        .lines()
        .take_while(|l| !l.starts_with("on-chip memory")) // the streaming form's memory table
        .filter(|l| l.contains("convolutional"))
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(cols.len(), head.len(), "{l}");
            let n = |k: usize| cols[k].parse::<u64>().unwrap_or_else(|e| panic!("{l}: column {k}: {e}"));
            Row {
                act: cols[2].to_string(),
                adders: n(4) as usize,
                int_adders: n(5) as usize,
                mults: n(6) as usize,
                codes: n(9),
                cycles: n(10),
            }
        })
        .collect()
}

#[test]
fn hls_yolov3_tiny() {
    hls_target("yolov3-tiny.cfg", 64, Act::F32);
}

#[test]
fn hls_yolov2_tiny_voc() {
    hls_target("yolov2-tiny-voc.cfg", 96, Act::F32);
}

#[test]
fn hls_yolov3_tiny_int8() {
    hls_target("yolov3-tiny.cfg", 64, Act::I8);
}

#[test]
fn hls_yolov2_tiny_voc_int8() {
    hls_target("yolov2-tiny-voc.cfg", 96, Act::I8);
}

/// The streaming form's structure: a DATAFLOW top function over on-chip buffers, AXI
/// only in the top function and its copy processes, line buffers in the convolutions
/// with row loops, and the memory report.
fn check_stream(what: &str, src: &str, report: &str) {
    let top = &src[src.find("void net_top(").expect("the top function")..];
    assert!(top.contains("#pragma HLS DATAFLOW"), "{what}: no DATAFLOW region");
    assert!(top.contains("#pragma HLS BIND_STORAGE variable=v0 type=ram_2p"), "{what}: no on-chip input");
    assert!(!top.contains("arena"), "{what}: an arena in the streaming top");
    assert_eq!(src.matches("m_axi").count(), 1 + report_heads(top), "{what}: AXI beyond in and the heads");
    // every kernel: no AXI port, no arena beyond its own destination parameter
    let mut line_buffers = 0;
    for k in src.split("\nstatic void net_k").skip(1) {
        let body = &k[..k.find("\n}\n").unwrap()];
        assert!(!body.contains("m_axi") && !body.contains("INTERFACE"), "{what}: AXI in a kernel");
        // a packed convolution with a row loop reads its window from the line buffer
        if body.contains("/* oy */") && body.contains("/* code bytes */") {
            assert!(
                body.contains(" lb[") && body.contains("ARRAY_PARTITION variable=lb"),
                "{what}: {body:.300}"
            );
            assert!(!body.contains("= in[") && !body.contains("= q8["), "{what}: window not from lb");
            line_buffers += 1;
        }
    }
    assert!(line_buffers >= 3, "{what}: {line_buffers} line buffers");
    assert!(src.contains("static void net_lb"), "{what}: no line-buffer slide function");
    // the report: per-layer bits and the total
    assert!(report.contains("line-buffer bits") && report.contains("stream total:"), "{what}: {report}");
    let rows: Vec<Vec<u64>> = report
        .lines()
        .skip_while(|l| !l.contains("line-buffer bits"))
        .skip(1)
        .take_while(|l| !l.starts_with("stream total"))
        .map(|l| l.split_whitespace().filter_map(|c| c.parse().ok()).collect())
        .collect();
    assert!(rows.iter().all(|r| r.len() == 4), "{what}: {rows:?}");
    assert!(rows.iter().filter(|r| r[3] > 0).count() >= 3, "{what}: line-buffer bits {rows:?}");
}

/// Heads (`out<i>` ports) of a top function.
fn report_heads(top: &str) -> usize {
    top.lines().next().unwrap().matches("float out").count()
}

#[test]
fn hls_stream_yolov3_tiny() {
    hls_target_arch("yolov3-tiny.cfg", 64, Act::F32, true);
}

#[test]
fn hls_stream_yolov2_tiny_voc() {
    hls_target_arch("yolov2-tiny-voc.cfg", 96, Act::F32, true);
}

#[test]
fn hls_stream_yolov3_tiny_int8() {
    hls_target_arch("yolov3-tiny.cfg", 64, Act::I8, true);
}

#[test]
fn hls_stream_yolov2_tiny_voc_int8() {
    hls_target_arch("yolov2-tiny-voc.cfg", 96, Act::I8, true);
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
    let convs = conv_rows(&report);
    assert_eq!(convs.len(), 13, "{report}");
    for r in convs {
        assert!(r.act == "f32" && r.adders > 0 && r.codes > 0 && r.mults == 0, "{r:?}");
    }
}
