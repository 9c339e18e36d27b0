//! Ternary sums as adder trees: the HLS printing of a packed ternary convolution's
//! `code bytes` loop.
//!
//! The lowering (`conv_packed`) writes one code byte's four taps as a chain of
//! `acc = acc + select(c > 0, x, 0); acc = acc - select(c < 0, x, 0)` per accumulator,
//! eight dependent float adds per byte and accumulator. Here the loop body is
//! evaluated symbolically instead ([`analyse`]) and printed as what an FPGA engineer
//! writes: `G` code bytes an iteration (`G` = 4, 2 or 1, the largest dividing the
//! trip count), each byte read from a 64-bit ROM word as an `ap_uint<8>` and split
//! into four `ap_uint<2>` codes, every tap's `±x` selected by its code (a sign flip,
//! no adder, no multiplier: `NAME_tern`), the `4·G` terms of an accumulator summed by
//! a balanced tree (`NAME_treeN`), and one add into the accumulator per iteration.
//! The loop-carried dependency is then one fadd an iteration instead of `8·G`.
//!
//! The int8 packed kernel (`conv_packed_i8`, `--act i8`) has the same loop over
//! `i32` sums of sign-extended `q8` bytes, its codes decoded through an `i32` table:
//! it prints the same way with integer types, each tap's `±x` an `ap_int<9>`
//! (`NAME_terni`), the tree an integer tree as wide as its sum needs
//! (`NAME_itreeN`: `9 + ⌈log2 N⌉` bits) and the accumulators `int32_t`. An integer
//! add takes one cycle, so the loop is `PIPELINE II=1` (bound in practice by the
//! reads of the on-chip `q8` array, which the report counts at two a cycle).
//!
//! Anything in the body that does not fit the pattern makes [`analyse`] give up (the
//! caller reports an error: a packed code ROM cannot be read byte-wise).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;

use crate::c::index_expr;
use crate::program::*;

/// Name of the 2-bit decode table of the lowering (not used by the tree form).
pub(crate) const DECODE: &str = "ternary2.decode";
/// Its `i32` twin, read by the int8 packed kernel (not used by the tree form either).
pub(crate) const DECODE_I32: &str = "ternary2.decode_i32";

/// Whether table `name` is a decode table the tree form replaces by `ap_uint<2>` logic.
pub(crate) fn is_decode(name: &str) -> bool {
    name == DECODE || name == DECODE_I32
}

/// Bits of an int8 tap `±x` (`x` in −128..127).
pub(crate) const TAP_BITS: usize = 9;

/// What a tree-printed loop does per iteration (for the report).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TreeLoop {
    /// The loop as C++ (the whole `for`).
    pub text: String,
    /// Code bytes an iteration.
    pub group: usize,
    /// Iterations.
    pub trips: u64,
    /// Accumulators (scalar lanes) updated an iteration.
    pub accs: usize,
    /// Terms each accumulator's tree sums (`4·group`).
    pub terms: usize,
    /// Activation reads (arena or input) an iteration.
    pub reads: usize,
    /// Integer sums over int8 activations (reads of the on-chip `q8` array, counted
    /// in `reads`), rather than float sums.
    pub int: bool,
}

impl TreeLoop {
    /// Levels of the balanced tree.
    pub fn depth(&self) -> u64 {
        (usize::BITS - (self.terms.max(1) - 1).leading_zeros()) as u64
    }
    /// Adders (float, or integer for `int`): each tree's `terms − 1` and the
    /// accumulate.
    pub fn adders(&self) -> usize {
        self.accs * self.terms
    }
}

/// A tap of an accumulator: its code, its activation, and whether both halves of
/// the lowering's `+ select(c > 0) − select(c < 0)` pair were seen.
type Term = (String, String, bool);

#[derive(Debug, Clone, PartialEq)]
enum Sym {
    Byte(String),
    Code(String),
    Tap(String),
    X(String),
    Zero,
    Pos(String, String),
    Neg(String, String),
}

/// Locals whose every assignment is the constant 0.0 (scalar or splatted) or 0.
fn zero_locals(k: &Kernel) -> HashSet<u32> {
    fn walk(b: &[Stmt], zero: &mut HashMap<u32, bool>) {
        for st in b {
            match st {
                Stmt::Assign { dst, expr } => {
                    let z = matches!(expr, Expr::Copy(Operand::F32(v)) | Expr::Splat(Operand::F32(v)) if *v == 0.0)
                        || matches!(expr, Expr::Copy(Operand::I32(0)));
                    *zero.entry(dst.0).or_insert(true) &= z;
                }
                Stmt::Loop(l) => walk(&l.body, zero),
                Stmt::Store { .. } => {}
            }
        }
    }
    let mut zero = HashMap::new();
    walk(&k.body, &mut zero);
    zero.into_iter().filter(|&(_, z)| z).map(|(l, _)| l).collect()
}

/// `index` of iteration `g` of a group (the loop variable advanced by `g·step`), as C.
fn shifted(index: &Index, var: Var, step: i64, g: usize, dynamic: Option<&str>) -> String {
    let mut i = index.clone();
    if let Some(&(_, c)) = i.terms.iter().find(|t| t.0 == var) {
        i.offset += c * step * g as i64;
    }
    let d = i.dynamic.take();
    let mut s = index_expr(&i);
    if let (Some(_), Some(name)) = (d, dynamic) {
        s = if s == "0" { name.to_string() } else { format!("{s} + {name}") };
    }
    s
}

/// The tree form of `l` (a `code bytes` loop of kernel `k`), or `None` if its body is
/// not the lowering's packed ternary accumulation.
pub(crate) fn analyse(
    k: &Kernel,
    l: &Loop,
    consts: &[ConstTable],
    prefix: &str,
    buf_name: &dyn Fn(Buf) -> String,
    indent: usize,
    shift: Option<&str>,
) -> Option<TreeLoop> {
    if l.note != "code bytes" || l.body.iter().any(|s| !matches!(s, Stmt::Assign { .. })) {
        return None;
    }
    let trips = l.const_trips()?;
    let Bound::Const(start) = l.start else { return None };
    let group = [4usize, 2, 1].into_iter().find(|&g| trips % g as i64 == 0)?;
    let zeros = zero_locals(k);
    let pad = "    ".repeat(indent + 1);
    let mut body = String::new();
    let mut sym: HashMap<(u32, usize), Sym> = HashMap::new();
    // accumulator lanes in first-update order, with their terms (None: half a pair)
    let mut order: Vec<(u32, usize)> = Vec::new();
    let mut terms: HashMap<(u32, usize), Vec<Term>> = HashMap::new();
    let (mut n, mut reads) = (0usize, 0usize);
    // integer sums over q8 or float sums over the arena/input, never both
    let mut int: Option<bool> = None;
    let mut kind = |is_int: bool| *int.get_or_insert(is_int) == is_int;
    let lanes = |d: Local| k.locals[d.0 as usize].lanes();
    for g in 0..group {
        for st in &l.body {
            let Stmt::Assign { dst, expr } = st else { return None };
            let d = dst.0;
            let is_zero = |o: &Operand, lane: usize, sym: &HashMap<(u32, usize), Sym>| match o {
                Operand::F32(v) => *v == 0.0,
                Operand::Local(x) => zeros.contains(&x.0) || sym.get(&(x.0, lane)) == Some(&Sym::Zero),
                Operand::I32(v) => *v == 0,
            };
            match expr {
                Expr::Load { buf: Buf::Const(t), index } => {
                    let table = consts.get(*t)?;
                    match table.data.elem() {
                        Elem::U8 if index.dynamic.is_none() => {
                            n += 1;
                            let idx = shifted(index, l.var, l.step, g, None);
                            let _ = writeln!(
                                body,
                                "{pad}const int a{n} = {idx};\n\
                                 {pad}const {prefix}_byte_t b{n} = {prefix}_byte({}[a{n} >> 3], a{n} & 7);",
                                buf_name(Buf::Const(*t))
                            );
                            sym.insert((d, 0), Sym::Byte(format!("b{n}")));
                        }
                        Elem::F32 | Elem::I32 if is_decode(&table.name) => {
                            let Some(Sym::Byte(b)) = index.dynamic.and_then(|x| sym.get(&(x.0, 0))).cloned()
                            else {
                                return None;
                            };
                            if !index.terms.is_empty() || index.offset % 256 != 0 || index.offset / 256 > 3 {
                                return None;
                            }
                            n += 1;
                            let q = index.offset / 256;
                            let _ =
                                writeln!(body, "{pad}const {prefix}_code_t w{n} = {prefix}_code({b}, {q});");
                            sym.insert((d, 0), Sym::Code(format!("w{n}")));
                        }
                        Elem::I32 if index.dynamic.is_none() => {
                            n += 1;
                            let idx = shifted(index, l.var, l.step, g, None);
                            let _ =
                                writeln!(body, "{pad}const int t{n} = {}[{idx}];", buf_name(Buf::Const(*t)));
                            sym.insert((d, 0), Sym::Tap(format!("t{n}")));
                        }
                        _ => return None,
                    }
                }
                Expr::Load { buf: b @ (Buf::Arena | Buf::Input | Buf::Q8), index }
                | Expr::LoadVec { buf: b @ (Buf::Arena | Buf::Input), index } => {
                    if !kind(*b == Buf::Q8) {
                        return None;
                    }
                    let ty = if *b == Buf::Q8 { "int8_t" } else { "float" };
                    let tap = match index.dynamic {
                        None => None,
                        Some(x) => match sym.get(&(x.0, 0)) {
                            Some(Sym::Tap(t)) => Some(t.clone()),
                            _ => return None,
                        },
                    };
                    for lane in 0..lanes(*dst) {
                        n += 1;
                        let idx = shifted(&index.add(lane as i64), l.var, l.step, g, tap.as_deref());
                        // a line buffer: the window's rows start at `shift`
                        let idx = match shift {
                            Some(sh) => format!("{idx} - {sh}"),
                            None => idx,
                        };
                        let _ = writeln!(body, "{pad}const {ty} x{n} = {}[{idx}];", buf_name(*b));
                        sym.insert((d, lane), Sym::X(format!("x{n}")));
                        reads += 1;
                    }
                }
                Expr::Splat(o) => {
                    let s = match o {
                        Operand::F32(v) if *v == 0.0 => Sym::Zero,
                        Operand::Local(x) => match sym.get(&(x.0, 0)) {
                            Some(s @ Sym::Code(_)) => s.clone(),
                            _ => return None,
                        },
                        _ => return None,
                    };
                    for lane in 0..4 {
                        sym.insert((d, lane), s.clone());
                    }
                }
                Expr::Select { cmp: cmp @ (Cmp::Gt | Cmp::Lt), lhs, rhs, then, otherwise } => {
                    for lane in 0..lanes(*dst) {
                        let get = |o: &Operand| match o {
                            Operand::Local(x) => sym.get(&(x.0, lane)).cloned(),
                            _ => None,
                        };
                        let (Some(Sym::Code(c)), Some(Sym::X(x))) = (get(lhs), get(then)) else {
                            return None;
                        };
                        if !is_zero(rhs, lane, &sym) || !is_zero(otherwise, lane, &sym) {
                            return None;
                        }
                        let s = if *cmp == Cmp::Gt { Sym::Pos(c, x) } else { Sym::Neg(c, x) };
                        sym.insert((d, lane), s);
                    }
                }
                Expr::Binary {
                    op: op @ (BinOp::Add | BinOp::Sub),
                    a: Operand::Local(a),
                    b: Operand::Local(p),
                } if a.0 == d && matches!(k.locals[d as usize], Ty::F32 | Ty::F32x4 | Ty::I32) => {
                    if !kind(k.locals[d as usize] == Ty::I32) {
                        return None;
                    }
                    for lane in 0..lanes(*dst) {
                        let key = (d, lane);
                        let ts = terms.entry(key).or_default();
                        if ts.is_empty() {
                            order.push(key);
                        }
                        match (op, sym.get(&(p.0, lane))) {
                            (BinOp::Add, Some(Sym::Pos(c, x))) => ts.push((c.clone(), x.clone(), false)),
                            (BinOp::Sub, Some(Sym::Neg(c, x))) => match ts.last_mut() {
                                Some(last) if !last.2 && &last.0 == c && &last.1 == x => last.2 = true,
                                _ => return None,
                            },
                            _ => return None,
                        }
                    }
                }
                _ => return None,
            }
        }
    }
    if order.is_empty() || terms.values().flatten().any(|t| !t.2) {
        return None;
    }
    let counts: BTreeSet<usize> = terms.values().map(Vec::len).collect();
    let [count] = counts.into_iter().collect::<Vec<_>>()[..] else { return None };
    let int = int == Some(true);
    // an integer add takes a cycle; a float add FADD_LATENCY
    let (ii, tern, tree) = match int {
        true => (1, "terni", "itree"),
        false => (crate::hls::FADD_LATENCY, "tern", "tree"),
    };
    let out = "    ".repeat(indent);
    let v = format!("i{}", l.var.0);
    let mut text = format!(
        "{out}for (int {v} = {start}; {v} < {end}; {v} += {step}) {{  /* code bytes */\n\
         {out}    /* {group} code byte(s) an iteration: {count} taps a tree, one accumulate */\n\
         {out}    #pragma HLS PIPELINE II={ii}\n{body}",
        end = start + trips * l.step,
        step = l.step * group as i64,
    );
    for key in &order {
        let acc = match k.locals[key.0 as usize] {
            Ty::F32x4 => format!("l{}_{}", key.0, key.1),
            _ => format!("l{}", key.0),
        };
        let args: Vec<String> =
            terms[key].iter().map(|(c, x, _)| format!("{prefix}_{tern}({c}, {x})")).collect();
        let _ = writeln!(text, "{out}    {acc} = {acc} + {prefix}_{tree}{count}({});", args.join(", "));
    }
    let _ = writeln!(text, "{out}}}");
    Some(TreeLoop {
        text,
        group,
        trips: (trips / group as i64) as u64,
        accs: order.len(),
        terms: count,
        reads,
        int,
    })
}

/// `static inline float PREFIX_treeN(float a0, ...)`: a balanced tree of adds; with
/// `int`, `PREFIX_itreeN` over int8 taps (`PREFIX_tap_t`), as wide as its sum.
pub(crate) fn tree_fn(prefix: &str, n: usize, int: bool) -> String {
    fn sum(lo: usize, hi: usize) -> String {
        if hi - lo == 1 {
            format!("a{lo}")
        } else {
            let mid = lo + (hi - lo).div_ceil(2);
            format!("({} + {})", sum(lo, mid), sum(mid, hi))
        }
    }
    let levels = (usize::BITS - (n.max(1) - 1).leading_zeros()) as usize;
    let (ty, arg, name, what) = match int {
        true => (format!("ap_int<{}>", TAP_BITS + levels), format!("{prefix}_tap_t"), "itree", "integer "),
        false => ("float".to_string(), "float".to_string(), "tree", ""),
    };
    let params: Vec<String> = (0..n).map(|i| format!("{arg} a{i}")).collect();
    format!(
        "/* a balanced {what}adder tree of {n} terms ({levels} levels) */\n\
         static inline {ty} {prefix}_{name}{n}({}) {{\n#pragma HLS INLINE\n    return {};\n}}\n\n",
        params.join(", "),
        sum(0, n)
    )
}
