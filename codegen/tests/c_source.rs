//! The emitted C (and HLS C++): a snapshot for a tiny network (float and int8
//! activations), so changes in generated code are reviewed like code, and the check
//! that the ternary convolution loops hold no `*` between weights and activations,
//! float or int8 (while the float convolutions' loops do, so the check can fail).

use std::path::{Path, PathBuf};

use ternc_codegen::{c, hls, llvm, lower, prepare, LowerOptions, TernaryKernel};
use ternc_frontend::{init::init, parse_cfg_text};
use ternc_ir::Graph;
use ternc_passes::spec::Spec;
use ternc_passes::ternarize::{self, Scope};

/// A ternary 3x3 convolution, a float 1x1 convolution, maxpool, upsample, a concat
/// route and a yolo head over a 6x6x2 input (as `tests/dump.rs`).
const TINY: &str = "[net]
width=6
height=6
channels=2

[convolutional]
batch_normalize=1
filters=3
size=3
stride=1
pad=1
activation=leaky
ternary=1

[maxpool]
size=2
stride=2

[upsample]
stride=2

[route]
layers=-1,0

[convolutional]
filters=6
size=1
stride=1
activation=linear

[yolo]
mask=0
anchors=2,3,4,5
classes=1
num=2
";

fn packed() -> LowerOptions {
    LowerOptions { tile: 4, ternary: TernaryKernel::Packed, ..Default::default() }
}

#[test]
fn tiny_c_source() {
    let mut g = parse_cfg_text(Path::new("tiny.cfg"), TINY).unwrap().graph;
    g.params = init(&g, 1);
    let p = lower(&prepare(&g).unwrap(), &packed()).unwrap();
    let heads = llvm::detect_heads(&g).unwrap();
    let src = c::compile(&p, &heads, "tiny").unwrap();
    assert!(src.source.starts_with(&src.header), "the header heads the C file");
    insta::assert_snapshot!(src.source);
}

/// The same network with int8 activations into its ternary layer (`--act i8`): a
/// quantize kernel into `q8`, the packed kernel's integer sums, a float epilogue.
#[test]
fn tiny_c_source_int8() {
    let mut g = parse_cfg_text(Path::new("tiny.cfg"), TINY).unwrap().graph;
    g.params = init(&g, 1);
    let opts = LowerOptions { act_steps: vec![Some(0.03125)], ..packed() };
    let p = lower(&prepare(&g).unwrap(), &opts).unwrap();
    assert!(p.has_int8());
    let heads = llvm::detect_heads(&g).unwrap();
    let src = c::compile(&p, &heads, "tiny").unwrap();
    assert!(src.workspace_bytes >= p.workspace_bytes() as u64, "the workspace holds q8");
    insta::assert_snapshot!(src.source);
}

/// Steps for every convolution of `g` (the ternary ones take int8 inputs).
fn int8_steps(g: &Graph) -> Vec<Option<f32>> {
    (0..g.num_layers()).map(|i| (g.layer(i).op.type_name() == "convolutional").then_some(0.05)).collect()
}

fn model(file: &str, size: usize, ternary: bool) -> Graph {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/darknet").join(file);
    let text = ternc_frontend::with_input_size(&std::fs::read_to_string(&path).unwrap(), size, size);
    let mut g = parse_cfg_text(Path::new(file), &text).unwrap().graph;
    g.params = init(&g, 3);
    if ternary {
        let sel = Spec::parse("all").unwrap().select(&g).unwrap();
        ternarize::run(&mut g, &sel, Scope::Layer, 0.7).unwrap();
    }
    g
}

/// The bodies of the loops whose `for` line carries the comment `/* note */`.
fn loop_bodies(src: &str, note: &str) -> Vec<String> {
    let lines: Vec<&str> = src.lines().collect();
    let mut out = Vec::new();
    for (k, l) in lines.iter().enumerate() {
        if !(l.trim_start().starts_with("for (") && l.ends_with(&format!("/* {note} */"))) {
            continue;
        }
        let mut depth = 1;
        let mut body = String::new();
        for l in &lines[k + 1..] {
            depth += l.matches('{').count() as i32 - l.matches('}').count() as i32;
            if depth <= 0 {
                break;
            }
            body.push_str(l);
            body.push('\n');
        }
        out.push(body);
    }
    out
}

/// `s` without what lies inside `[...]` (index arithmetic), address lines and comments.
fn values_only(s: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    for ch in s.chars() {
        match ch {
            '[' => depth += 1,
            ']' => depth -= 1,
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        // HLS: integer address arithmetic (`const int a1 = 288*i0 + i1;`), not values
        .filter(|l| !l.trim_start().starts_with("const int "))
        .map(|l| l.split("/*").next().unwrap_or(""))
        .collect()
}

#[test]
fn ternary_loops_have_no_multiply() {
    for ((file, size), int8) in [("yolov3-tiny.cfg", 64), ("yolov2-tiny-voc.cfg", 96)]
        .into_iter()
        .flat_map(|m| [(m, false), (m, true)])
    {
        let g = model(file, size, true);
        let act_steps = if int8 { int8_steps(&g) } else { Vec::new() };
        let p = lower(
            &prepare(&g).unwrap(),
            &LowerOptions { ternary: TernaryKernel::Packed, act_steps, ..Default::default() },
        )
        .unwrap();
        assert_eq!(p.has_int8(), int8);
        let heads = llvm::detect_heads(&g).unwrap();
        let c_src = c::compile(&p, &heads, "net").unwrap().source;
        let hls_src =
            hls::compile(&p, "net", "net").unwrap().files.into_iter().find(|f| f.0 == "net.cpp").unwrap().1;
        let convs = (0..g.num_layers()).filter(|&i| g.layer(i).op.type_name() == "convolutional").count();
        let file = if int8 { format!("{file} (int8)") } else { file.to_string() };
        // int8: the sums read int8 activations and add them as integers
        let (tern, tree) = if int8 { ("net_terni(", " + net_itree") } else { ("net_tern(", " + net_tree") };
        for (what, src) in [("C", &c_src), ("HLS", &hls_src)] {
            let bodies = loop_bodies(src, "code bytes");
            assert!(
                bodies.len() >= convs,
                "{file} {what}: {} ternary loops for {convs} convolutions",
                bodies.len()
            );
            for b in &bodies {
                let v = values_only(b);
                assert!(!v.contains('*'), "{file} {what}: a multiply in a ternary loop:\n{b}");
                if what == "C" {
                    assert!(
                        v.contains(" + ") && v.contains(" - "),
                        "{file} {what}: adds and subtracts:\n{b}"
                    );
                    assert_eq!(b.contains("q8["), int8, "{file} {what}: int8 reads:\n{b}");
                } else {
                    // each tap a code-selected +-x, summed by an adder tree, accumulated
                    assert!(
                        v.contains(tern) && v.contains(" = l") && v.contains(tree),
                        "{file} {what}: ternary taps, an adder tree and an accumulate:\n{b}"
                    );
                    assert_eq!(b.contains("const int8_t x"), int8, "{file} {what}: int8 reads:\n{b}");
                }
            }
        }
        // the HLS helpers the ternary loops call multiply nothing either
        for f in ["net_tern(", "net_tree", "net_terni(", "net_itree", "net_code(", "net_byte("] {
            let helpers = hls_src.split("static inline ").filter(|d| d.contains(&format!(" {f}")));
            for d in helpers {
                let body = &d[..d.find("\n}").expect("a helper's body")];
                assert!(!values_only(body).contains('*'), "{file}: a multiply in an HLS helper:\n{body}");
            }
        }
        if int8 {
            continue;
        }
        // the same network in float: its convolution loops multiply
        let g = model(&file, size, false);
        let p = lower(&prepare(&g).unwrap(), &LowerOptions::default()).unwrap();
        let src = c::compile(&p, &heads, "net").unwrap().source;
        let bodies = loop_bodies(&src, "taps");
        assert!(!bodies.is_empty(), "{file}: float tap loops");
        assert!(bodies.iter().all(|b| values_only(b).contains(" * ")), "{file}: float loops multiply");
    }
}

/// The HLS structure: packed codes in `ap_uint` ROM words decoded by `ap_uint<2>`
/// logic (no decode table), every ternary loop an adder tree over a group of taps
/// with one accumulate an iteration, and a report whose estimate drops below that of
/// the plain accumulation chains.
#[test]
fn hls_adder_trees() {
    let g = model("yolov3-tiny.cfg", 64, true);
    let p =
        lower(&prepare(&g).unwrap(), &LowerOptions { ternary: TernaryKernel::Packed, ..Default::default() })
            .unwrap();
    let project = hls::compile(&p, "net", "net").unwrap();
    let src = &project.files.iter().find(|f| f.0 == "net.cpp").unwrap().1;
    for want in [
        "typedef ap_uint<64> net_rom_t;",
        "typedef ap_uint<8> net_byte_t;",
        "typedef ap_uint<2> net_code_t;",
        "static inline float net_tree16(",
        "static inline float net_tern(net_code_t c, float x)",
        "#pragma HLS PIPELINE II=4",
    ] {
        assert!(src.contains(want), "net.cpp lacks {want:?}");
    }
    // no byte ROMs and no float decode table: the C simulation reads the ap_uint types
    assert!(!src.contains("static const uint8_t"), "a plain byte ROM");
    assert!(!src.contains("ternary2.decode"), "the decode table is not needed");
    // float activations: nothing of the int8 path
    assert!(
        !src.contains("q8") && !src.contains("int8") && !src.contains("itree"),
        "int8 parts in a float build"
    );
    // the tree is balanced: 16 terms in 4 levels
    let tree = &src[src.find("net_tree16(").unwrap()..];
    let ret = tree.lines().find(|l| l.trim_start().starts_with("return")).unwrap();
    assert!(ret.contains("((((a0 + a1) + (a2 + a3))"), "{ret}");
    // every ternary convolution loop is tree-printed (one accumulate per lane)
    let bodies = loop_bodies(src, "code bytes");
    assert_eq!(bodies.len(), 13, "one code-bytes loop per ternary convolution");
    for b in &bodies {
        let accumulates = b.lines().filter(|l| l.contains(" + net_tree")).count();
        let taps = b.matches("net_tern(").count();
        assert!(accumulates > 0 && taps % accumulates == 0, "{b}");
        assert!(!b.contains("l0 = l0 - "), "no chained subtracts:\n{b}");
    }
    // the report: trees beat chains; adders, no multipliers, 2-bit code ROM bits
    let (tree, chain) = (hls::report(&p), hls::report_chain(&p));
    assert_eq!(project.report, tree);
    assert!(
        tree.total_cycles() * 10 < chain.total_cycles() * 8,
        "tree {} vs chain {} cycles",
        tree.total_cycles(),
        chain.total_cycles()
    );
    for t in &tree.layers {
        if t.kind == "convolutional" {
            assert!(t.adders > 0 && t.multipliers == 0 && t.code_bits > 0, "{t:?}");
        }
    }
}

/// The int8 HLS structure (`--act i8`): the same trees over the same ROMs, but each
/// tap an `ap_int<9>` `±q`, integer trees as wide as their sums into `int32_t`
/// accumulators at II=1, the quantized activations in an on-chip `int8_t` array; a
/// report that marks every ternary convolution int8 with integer adders only, and
/// estimates fewer cycles than the float trees (one-cycle adds, two on-chip reads a
/// cycle).
#[test]
fn hls_int8_adder_trees() {
    let g = model("yolov3-tiny.cfg", 64, true);
    let lowered = |act_steps| {
        let opts = LowerOptions { ternary: TernaryKernel::Packed, act_steps, ..Default::default() };
        lower(&prepare(&g).unwrap(), &opts).unwrap()
    };
    let p = lowered(int8_steps(&g));
    let project = hls::compile(&p, "net", "net").unwrap();
    let file = |name: &str| &project.files.iter().find(|f| f.0 == name).unwrap().1;
    let src = file("net.cpp");
    for want in [
        "typedef ap_uint<64> net_rom_t;",
        "typedef ap_int<9> net_tap_t;",
        "static inline net_tap_t net_terni(net_code_t c, net_tap_t x)",
        "static inline ap_int<13> net_itree16(net_tap_t a0,",
        "static int8_t q8[NET_Q8_LEN];",
        "#pragma HLS BIND_STORAGE variable=q8",
        "#pragma HLS PIPELINE II=1",
    ] {
        assert!(src.contains(want), "net.cpp lacks {want:?}");
    }
    assert!(file("net.h").contains(&format!("#define NET_Q8_LEN {}", p.q8_len)));
    assert!(!src.contains("ternary2.decode"), "the decode tables are not needed");
    assert!(!src.contains("net_tern(") && !src.contains("float net_tree"), "float trees in int8 layers");
    let bodies = loop_bodies(src, "code bytes");
    assert_eq!(bodies.len(), 13, "one code-bytes loop per ternary convolution");
    for b in &bodies {
        let accumulates = b.lines().filter(|l| l.contains(" + net_itree")).count();
        let taps = b.matches("net_terni(").count();
        assert!(accumulates > 0 && taps % accumulates == 0, "{b}");
        assert!(b.contains("#pragma HLS PIPELINE II=1") && !b.contains("float"), "{b}");
    }
    // the accumulators are 32-bit integers
    let k1 = &src[src.find("static void net_k1(").unwrap()..];
    assert!(k1.starts_with("static void net_k1(const float *in, float *arena, int8_t q8[NET_Q8_LEN])"));
    let acc =
        bodies[0].lines().find(|l| l.contains(" + net_itree")).unwrap().trim().split(' ').next().unwrap();
    assert!(k1.contains(&format!("int32_t {acc} = 0;")), "{acc} is not int32_t");
    // the report
    let (int8, float) = (&project.report, hls::report(&lowered(Vec::new())));
    assert_eq!(int8.q8_bits, 8 * p.q8_len as u64);
    for t in &int8.layers {
        if t.kind == "convolutional" {
            assert!(t.int8 && t.adders == 0 && t.int_adders > 0 && t.code_bits > 0, "{t:?}");
            assert_eq!(t.multipliers, 1, "the quantize loop's multiply only: {t:?}");
        } else {
            assert!(!t.int8 && t.int_adders == 0, "{t:?}");
        }
    }
    let text = int8.to_string();
    assert!(text.contains("13 int8 layers") && text.contains("integer trees: II"), "{text}");
    assert!(float.layers.iter().all(|t| !t.int8 && t.int_adders == 0));
    assert!(
        int8.total_cycles() < float.total_cycles(),
        "int8 {} vs float {} cycles",
        int8.total_cycles(),
        float.total_cycles()
    );
}
