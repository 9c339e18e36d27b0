//! The aarch64 instruction mix of the LLVM backend's convolution kernels, read back
//! from the object with objdump: the innermost loops of ternary convolutions (table
//! form: the loops over a channel's +1 and −1 taps) hold adds and subtracts and no
//! multiply of any kind; the same check on the float network finds the multiplies
//! (`fmul`/`fmla`) in its innermost loops, so it can fail. With int8 activations
//! (W2A8) the tap loops sum bytes as 16-bit lanes: LLVM folds the sign extension
//! into widening adds and subtracts (`saddl`/`saddw`/`ssubl`/`ssubw`), again no
//! multiply.
//!
//! Needs `aarch64-linux-gnu-objdump` (binutils-aarch64-linux-gnu, installed with
//! gcc-aarch64-linux-gnu) or `llvm-objdump-14`; skips when neither is there, fails
//! instead under `TERNC_REQUIRE_CROSS=1`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use ternc_codegen::llvm::{self, Arch, TargetSpec};
use ternc_codegen::{lower, prepare, LowerOptions, TernaryKernel};
use ternc_frontend::{init::init, parse_cfg_text};
use ternc_ir::Graph;
use ternc_passes::spec::Spec;
use ternc_passes::ternarize::{self, Scope};

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

fn objdump() -> Option<&'static str> {
    for tool in ["aarch64-linux-gnu-objdump", "llvm-objdump-14"] {
        if Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success()) {
            return Some(tool);
        }
    }
    let msg = "llvm objdump test: neither aarch64-linux-gnu-objdump nor llvm-objdump-14 is installed";
    if std::env::var("TERNC_REQUIRE_CROSS").is_ok_and(|v| v == "1") {
        panic!("{msg}; TERNC_REQUIRE_CROSS=1 forbids skipping");
    }
    eprintln!("SKIPPED {msg}");
    None
}

/// One disassembled instruction: address, mnemonic, branch target (if any).
struct Insn {
    addr: u64,
    op: String,
    target: Option<u64>,
}

/// Functions of an aarch64 object's disassembly, by symbol.
fn disassemble(tool: &str, graph: &Graph, opts: &LowerOptions) -> BTreeMap<String, Vec<Insn>> {
    let program = lower(&prepare(graph).unwrap(), opts).unwrap();
    let heads = llvm::detect_heads(graph).unwrap();
    let target = TargetSpec { arch: Arch::Aarch64, cpu: Some("cortex-a72".into()) };
    let obj = llvm::compile(&program, &heads, "net", &target).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("net.o");
    std::fs::write(&path, &obj.bytes).unwrap();
    let out = Command::new(tool).args(["-d", "--no-show-raw-insn"]).arg(&path).output().unwrap();
    assert!(out.status.success(), "{tool}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut fns: BTreeMap<String, Vec<Insn>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        // "0000000000000123 <net_k3_conv_2_ternary_table>:"
        if let Some(sym) = line.strip_suffix(">:").and_then(|l| l.split_once(" <")).map(|(_, s)| s) {
            current = Some(sym.to_string());
            fns.entry(sym.to_string()).or_default();
            continue;
        }
        let Some(f) = &current else { continue };
        let Some((addr, rest)) = line.trim_start().split_once(':') else { continue };
        let Ok(addr) = u64::from_str_radix(addr.trim(), 16) else { continue };
        let mut parts = rest.split_whitespace();
        let Some(op) = parts.next() else { continue };
        let branch = op == "b" || op.starts_with("b.") || ["cbz", "cbnz", "tbz", "tbnz"].contains(&op);
        let target = if branch {
            // the target is the last hex word before "<sym+off>"
            rest.split('<')
                .next()
                .and_then(|s| s.split([' ', ',', '\t']).rev().find_map(|w| u64::from_str_radix(w, 16).ok()))
        } else {
            None
        };
        fns.get_mut(f).unwrap().push(Insn { addr, op: op.to_string(), target });
    }
    fns
}

/// Mnemonics of each innermost loop of a function: basic blocks from the
/// disassembly (leaders at branch targets and after branches), then the loop nest as
/// strongly connected components, each minus its header, recursively; an innermost
/// loop is a cycle with no cycle inside.
fn innermost_loops(insns: &[Insn]) -> Vec<Vec<&str>> {
    let is_cond = |op: &str| op.starts_with("b.") || ["cbz", "cbnz", "tbz", "tbnz"].contains(&op);
    let ends_block = |op: &str| op == "b" || op == "br" || op == "ret" || is_cond(op);
    let mut leaders = std::collections::BTreeSet::new();
    leaders.insert(0usize);
    for (k, i) in insns.iter().enumerate() {
        if let Some(t) = i.target {
            if let Some(j) = insns.iter().position(|x| x.addr == t) {
                leaders.insert(j);
            }
        }
        if ends_block(&i.op) && k + 1 < insns.len() {
            leaders.insert(k + 1);
        }
    }
    let starts: Vec<usize> = leaders.into_iter().collect();
    let block_of = |k: usize| starts.partition_point(|&s| s <= k) - 1;
    let n = starts.len();
    let end = |b: usize| if b + 1 < n { starts[b + 1] } else { insns.len() };
    let mut succ = vec![Vec::new(); n];
    for b in 0..n {
        let last = &insns[end(b) - 1];
        if let Some(t) = last.target.and_then(|t| insns.iter().position(|x| x.addr == t)) {
            succ[b].push(block_of(t));
        }
        let falls = !(last.op == "b" || last.op == "br" || last.op == "ret");
        if falls && b + 1 < n {
            succ[b].push(b + 1);
        }
    }
    let mut out = Vec::new();
    nest(&succ, &(0..n).collect(), &mut |blocks| {
        out.push(
            blocks.iter().flat_map(|&b| insns[starts[b]..end(b)].iter().map(|i| i.op.as_str())).collect(),
        )
    });
    out
}

/// Calls `found` with each innermost cycle of the subgraph of `succ` on `nodes`.
fn nest(succ: &[Vec<usize>], nodes: &std::collections::BTreeSet<usize>, found: &mut dyn FnMut(&[usize])) {
    for scc in sccs(succ, nodes) {
        let cyclic = scc.len() > 1 || succ[scc[0]].contains(&scc[0]);
        if !cyclic {
            continue;
        }
        let set: std::collections::BTreeSet<usize> = scc.iter().copied().collect();
        // the header: entered from outside the component (else the first block)
        let header = scc
            .iter()
            .copied()
            .find(|&h| (0..succ.len()).any(|p| !set.contains(&p) && succ[p].contains(&h)))
            .unwrap_or(scc[0]);
        let inner: std::collections::BTreeSet<usize> = set.iter().copied().filter(|&b| b != header).collect();
        let mut nested = false;
        nest(succ, &inner, &mut |l| {
            nested = true;
            found(l)
        });
        if !nested {
            found(&scc);
        }
    }
}

/// Strongly connected components (Tarjan) of the subgraph on `nodes`.
fn sccs(succ: &[Vec<usize>], nodes: &std::collections::BTreeSet<usize>) -> Vec<Vec<usize>> {
    struct T<'a> {
        succ: &'a [Vec<usize>],
        nodes: &'a std::collections::BTreeSet<usize>,
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    fn visit(t: &mut T, v: usize) {
        t.index[v] = Some(t.next);
        t.low[v] = t.next;
        t.next += 1;
        t.stack.push(v);
        t.on[v] = true;
        for &w in &t.succ[v] {
            if !t.nodes.contains(&w) {
                continue;
            }
            match t.index[w] {
                None => {
                    visit(t, w);
                    t.low[v] = t.low[v].min(t.low[w]);
                }
                Some(i) if t.on[w] => t.low[v] = t.low[v].min(i),
                _ => {}
            }
        }
        if Some(t.low[v]) == t.index[v] {
            let mut c = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on[w] = false;
                c.push(w);
                if w == v {
                    break;
                }
            }
            c.sort_unstable();
            t.out.push(c);
        }
    }
    let n = succ.len();
    let mut t = T {
        succ,
        nodes,
        index: vec![None; n],
        low: vec![0; n],
        on: vec![false; n],
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for &v in nodes {
        if t.index[v].is_none() {
            visit(&mut t, v);
        }
    }
    t.out
}

const MULTIPLIES: [&str; 18] = [
    "fmul", "fmla", "fmls", "fnmul", "fmadd", "fmsub", "fnmadd", "fnmsub", "mul", "madd", "msub", "mla",
    "mls", "smull", "umull", "smaddl", "umaddl", "mneg",
];

fn is_multiply(op: &str) -> bool {
    MULTIPLIES.contains(&op)
}

#[test]
fn aarch64_ternary_tap_loops_have_no_multiplies() {
    let Some(tool) = objdump() else { return };
    let table = LowerOptions { ternary: TernaryKernel::Table, ..LowerOptions::default() };

    // float network: its convolutions multiply in the innermost loops (the check works)
    let fns = disassemble(tool, &model("yolov3-tiny.cfg", 64, false), &table);
    let float_convs: Vec<_> =
        fns.iter().filter(|(s, _)| s.contains("_conv_") && s.contains("_float")).collect();
    assert!(!float_convs.is_empty(), "no float conv kernels in {:?}", fns.keys().collect::<Vec<_>>());
    for (sym, insns) in &float_convs {
        let loops = innermost_loops(insns);
        let muls: usize = loops.iter().flatten().filter(|o| is_multiply(o)).count();
        assert!(muls > 0, "{sym}: float conv without multiplies in its innermost loops: {loops:?}");
    }

    // ternary network, table form: none in the tap loops
    let fns = disassemble(tool, &model("yolov3-tiny.cfg", 64, true), &table);
    let ternary: Vec<_> = fns.iter().filter(|(s, _)| s.contains("_ternary_")).collect();
    assert!(ternary.len() >= 10, "ternary kernels: {:?}", fns.keys().collect::<Vec<_>>());
    for (sym, insns) in &ternary {
        let loops = innermost_loops(insns);
        assert!(!loops.is_empty(), "{sym}: no loops");
        let mut adds = 0;
        for l in &loops {
            let muls: Vec<_> = l.iter().filter(|o| is_multiply(o)).collect();
            assert!(muls.is_empty(), "{sym}: multiplies {muls:?} in an innermost loop: {l:?}");
            adds += l.iter().filter(|o| ["fadd", "fsub"].contains(o)).count();
        }
        assert!(adds > 0, "{sym}: no fadd/fsub in the innermost loops: {loops:?}");
        let all_muls = insns.iter().filter(|i| is_multiply(&i.op)).count();
        eprintln!(
            "{sym}: {} instructions, {} innermost loops ({} fadd/fsub, 0 multiplies), {} multiplies in the whole function",
            insns.len(),
            loops.len(),
            adds,
            all_muls
        );
    }
}

/// The auto form unrolls small layers (here the first, 432 codes): each output channel's code is loads
/// and adds/subtracts at constant offsets, then one multiply per output value (the
/// scale). The float multiplies are therefore far fewer than the adds.
#[test]
fn aarch64_unrolled_ternary_kernels_are_mostly_adds() {
    let Some(tool) = objdump() else { return };
    let opts = LowerOptions { unroll_max_taps: 1024, ..LowerOptions::default() };
    let fns = disassemble(tool, &model("yolov3-tiny.cfg", 64, true), &opts);
    let unrolled: Vec<_> = fns.iter().filter(|(s, _)| s.contains("_ternary_unrolled")).collect();
    assert!(!unrolled.is_empty(), "no unrolled kernels: {:?}", fns.keys().collect::<Vec<_>>());
    for (sym, insns) in unrolled {
        let count = |ops: &[&str]| insns.iter().filter(|i| ops.contains(&i.op.as_str())).count();
        let adds = count(&["fadd", "fsub"]);
        let fmuls = count(&["fmul", "fmla", "fmls", "fnmul", "fmadd", "fmsub", "fnmadd", "fnmsub"]);
        eprintln!("{sym}: {} instructions, {adds} fadd/fsub, {fmuls} float multiplies", insns.len());
        assert!(fmuls * 4 < adds, "{sym}: {fmuls} float multiplies vs {adds} adds");
    }
}

/// W2A8 (`act_steps` for every ternary layer): the int8 table kernels' tap loops load
/// 8 bytes and add or subtract them sign-extended into 16-bit lanes (`saddl`,
/// `saddw`, `ssubl`, `ssubw`, or `sshll` then `add`/`sub`), with no multiply; the
/// quantize kernels round with an instruction (`frint*`), not a libm call.
#[test]
fn aarch64_int8_ternary_tap_loops_have_no_multiplies() {
    let Some(tool) = objdump() else { return };
    let g = model("yolov3-tiny.cfg", 64, true);
    let opts = LowerOptions {
        ternary: TernaryKernel::Table,
        act_steps: vec![Some(0.02); g.num_layers()],
        ..LowerOptions::default()
    };
    let fns = disassemble(tool, &g, &opts);
    let int8: Vec<_> = fns.iter().filter(|(s, _)| s.contains("_ternary_table_int8")).collect();
    assert!(int8.len() >= 10, "int8 kernels: {:?}", fns.keys().collect::<Vec<_>>());
    for (sym, insns) in &int8 {
        let loops = innermost_loops(insns);
        assert!(!loops.is_empty(), "{sym}: no loops");
        for l in &loops {
            let muls: Vec<_> = l.iter().filter(|o| is_multiply(o)).collect();
            assert!(muls.is_empty(), "{sym}: multiplies {muls:?} in an innermost loop: {l:?}");
        }
        let widening = ["saddl", "saddw", "ssubl", "ssubw", "sshll", "sxtl"];
        let widen = loops.iter().flatten().filter(|o| widening.contains(o)).count();
        assert!(widen > 0, "{sym}: no bytes widened and summed in the innermost loops: {loops:?}");
        eprintln!(
            "{sym}: {} instructions, {} innermost loops ({widen} widening adds/subs, 0 multiplies)",
            insns.len(),
            loops.len(),
        );
    }
    let quantize: Vec<_> = fns.iter().filter(|(s, _)| s.contains("_quantize_")).collect();
    assert!(!quantize.is_empty(), "no quantize kernels: {:?}", fns.keys().collect::<Vec<_>>());
    for (sym, insns) in quantize {
        let ops: Vec<&str> = insns.iter().map(|i| i.op.as_str()).collect();
        assert!(ops.iter().any(|o| o.starts_with("frint")), "{sym}: no frint: {ops:?}");
        assert!(!ops.contains(&"bl"), "{sym}: calls a function: {ops:?}");
    }
}
