//! What the Cranelift backend emits for a ternary convolution: its accumulation loops
//! hold loads, adds and subtracts only; the one multiply per output sits in the
//! epilogue, outside them; address arithmetic never multiplies (only the share of a
//! parallel loop each thread runs is computed with a multiply, once per loop entry).

use std::path::Path;

use ternc_codegen::cranelift::{inspect, KernelClif};
use ternc_codegen::{lower, prepare, LowerOptions, Program, TernaryKernel};
use ternc_frontend::{init::init, parse_cfg_text};
use ternc_ir::Graph;
use ternc_passes::spec::Spec;
use ternc_passes::ternarize::{self, Scope};

/// A 16-filter 3x3 convolution over a 10x10x8 input, linear activation (so the only
/// float multiplies are the epilogue's), optionally ternarized.
fn graph(ternary: bool) -> Graph {
    let text = "[net]\nwidth=10\nheight=10\nchannels=8\n\n[convolutional]\nbatch_normalize=1\n\
                filters=16\nsize=3\nstride=1\npad=1\nactivation=linear\n";
    let mut g = parse_cfg_text(Path::new("t.cfg"), text).unwrap().graph;
    g.params = init(&g, 3);
    if ternary {
        let sel = Spec::parse("all").unwrap().select(&g).unwrap();
        ternarize::run(&mut g, &sel, Scope::Layer, 0.7).unwrap();
    }
    prepare(&g).unwrap()
}

fn conv_kernel(p: &Program, name: &str) -> KernelClif {
    let k = p.kernels.iter().position(|k| k.name == name).unwrap_or_else(|| panic!("no kernel {name}"));
    inspect(p, k).unwrap()
}

/// Instructions with opcode `op` in CLIF text (`v3 = fmul.f32 v1, v2`).
fn count(text: &str, op: &str) -> usize {
    text.lines()
        .filter(|l| {
            l.split_whitespace().any(|w| w == op || w.strip_prefix(op).is_some_and(|r| r.starts_with('.')))
        })
        .count()
}

/// Integer multiplies other than those finding a thread's share of a parallel loop
/// (`part·n / parts`, then times the step and the strides, once per loop entry):
/// an `imul` is allowed when its result feeds a `udiv` or one of its operands
/// derives from a `udiv`.
fn stray_imuls(text: &str) -> usize {
    use std::collections::{HashMap, HashSet};
    // `v5 = imul v3, v4` -> ("v5", "imul", ["v3", "v4"])
    let insts: Vec<(String, String, Vec<String>)> = text
        .lines()
        .filter_map(|l| {
            let (dst, rhs) = l.trim().split_once(" = ")?;
            let mut words = rhs.split_whitespace();
            let op = words.next()?.split('.').next()?.to_string();
            let args =
                words.map(|w| w.trim_matches(',').to_string()).filter(|w| w.starts_with('v')).collect();
            Some((dst.to_string(), op, args))
        })
        .collect();
    let mut tainted: HashSet<&str> = HashSet::new();
    loop {
        let before = tainted.len();
        for (dst, op, args) in &insts {
            if op == "udiv" || args.iter().any(|a| tainted.contains(a.as_str())) {
                tainted.insert(dst);
            }
        }
        if tainted.len() == before {
            break;
        }
    }
    let mut feeds_udiv: HashMap<&str, bool> = HashMap::new();
    for (_, op, args) in &insts {
        if op == "udiv" {
            for a in args {
                feeds_udiv.insert(a, true);
            }
        }
    }
    insts
        .iter()
        .filter(|(dst, op, args)| {
            op.starts_with("imul")
                && !feeds_udiv.contains_key(dst.as_str())
                && !args.iter().any(|a| tainted.contains(a.as_str()))
        })
        .count()
}

fn lowered(ternary: bool, form: TernaryKernel) -> Program {
    let opts = LowerOptions { ternary: form, ..Default::default() };
    lower(&graph(ternary), &opts).unwrap()
}

#[test]
fn ternary_table_kernel_accumulates_without_multiplies() {
    let p = lowered(true, TernaryKernel::Table);
    let c = conv_kernel(&p, "conv 0 ternary table");
    for (when, loops) in [("emitted", &c.innermost_loops), ("optimized", &c.innermost_loops_optimized)] {
        // two tap loops (+1, -1) per tile shape: {8, 2 pixels} x {4, 2 rows}
        assert_eq!(loops.len(), 8, "{when}: {loops:?}\n{}", c.clif);
        for ops in loops {
            assert!(
                !ops.iter().any(|o| o == "fmul" || o == "imul"),
                "{when}: a multiply in an accumulation loop: {ops:?}"
            );
            assert!(ops.iter().any(|o| o == "load"), "{when}: {ops:?}");
            assert!(ops.iter().any(|o| o == "fadd" || o == "fsub"), "{when}: {ops:?}");
        }
        assert!(loops.iter().any(|ops| ops.iter().any(|o| o == "fsub")));
    }
    // one multiply per output, lane-wise: each store (one f32, or four as f32x4) comes
    // with one fmul; none in address arithmetic
    assert_eq!(count(&c.clif, "fmul"), count(&c.clif, "store"), "{}", c.clif);
    // rows of 8 pixels (two vectors) + 2 (scalars), in groups of 4 rows and 2
    assert_eq!(count(&c.clif, "store"), 4 * (2 + 2) + 2 * (2 + 2));
    for text in [&c.clif, &c.optimized] {
        assert_eq!(stray_imuls(text), 0, "{text}");
    }
}

#[test]
fn ternary_unrolled_kernel_has_one_multiply_per_output() {
    let p = lowered(true, TernaryKernel::Unrolled);
    let c = conv_kernel(&p, "conv 0 ternary unrolled");
    // 16 channels, each with tiles of {8, 2} pixels x {4, 2} rows
    assert_eq!(count(&c.clif, "store"), 16 * 24);
    assert_eq!(count(&c.clif, "fmul"), count(&c.clif, "store"));
    assert_eq!(stray_imuls(&c.clif) + stray_imuls(&c.optimized), 0);
    assert!(count(&c.clif, "fadd") + count(&c.clif, "fsub") > 16 * 10 * 8);
}

#[test]
fn float_kernel_multiplies_in_its_tap_loop() {
    // the same analysis sees the multiply-accumulate of a float convolution
    let p = lowered(false, TernaryKernel::Auto);
    let c = conv_kernel(&p, "conv 0 float");
    assert!(!c.innermost_loops.is_empty());
    assert!(c.innermost_loops.iter().all(|ops| ops.iter().any(|o| o == "fmul")));
    assert_eq!(stray_imuls(&c.optimized), 0);
}

/// W2A8: the int8 table kernel's tap loops load 8 sign-extended bytes and add or
/// subtract `i16x8`s, nothing else; floats appear only when the segment's sums are
/// flushed and in the epilogue.
#[test]
fn int8_table_kernel_accumulates_bytes_without_multiplies() {
    let opts =
        LowerOptions { ternary: TernaryKernel::Table, act_steps: vec![Some(0.02)], ..Default::default() };
    let p = lower(&graph(true), &opts).unwrap();
    let c = conv_kernel(&p, "conv 0 ternary table int8");
    for (when, loops) in [("emitted", &c.innermost_loops), ("optimized", &c.innermost_loops_optimized)] {
        assert!(!loops.is_empty(), "{when}");
        for ops in loops {
            assert!(
                !ops.iter().any(|o| o.contains("mul") || o.starts_with('f')),
                "{when}: a multiply or float op in an accumulation loop: {ops:?}"
            );
            assert!(ops.iter().any(|o| o == "sload8x8"), "{when}: {ops:?}");
            assert!(ops.iter().any(|o| o == "iadd" || o == "isub"), "{when}: {ops:?}");
        }
        assert!(loops.iter().any(|ops| ops.iter().any(|o| o == "isub")));
    }
    // one float multiply per output, in the epilogue
    assert_eq!(count(&c.clif, "fmul"), count(&c.clif, "store"), "{}", c.clif);
    assert_eq!(stray_imuls(&c.clif) + stray_imuls(&c.optimized), 0);
    // the quantize kernel before it rounds half to even and saturates in float
    let q = conv_kernel(&p, "quantize 0, step 0.02");
    for op in ["nearest", "fmax", "fmin", "fcvt_to_sint_sat", "istore8"] {
        assert!(count(&q.clif, op) > 0, "{op}:\n{}", q.clif);
    }
}

/// Prints a ternary table kernel's CLIF and machine code (for reading, not a check):
/// `cargo test -p ternc-codegen --test clif -- --ignored --nocapture`.
#[test]
#[ignore]
fn print_ternary_table_kernel() {
    let p = lowered(true, TernaryKernel::Table);
    let c = conv_kernel(&p, "conv 0 ternary table");
    println!("{}\n{}", c.optimized, c.asm);
}
