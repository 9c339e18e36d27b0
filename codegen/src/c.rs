//! The C backend: a [`Program`] printed as one plain C99 file with the C API of the
//! LLVM backend (`crate::llvm`), so the same client code links against either.
//!
//! # What `PREFIX.c` holds
//!
//! - the header ([`crate::llvm::header`]) pasted at the top (its include guard lets a
//!   client include `PREFIX.h` as well), so the file compiles alone;
//! - every constant table a kernel reads, as a `static const` array (`float`,
//!   `int32_t`, or `uint8_t` for 2-bit packed ternary codes: four weights a byte);
//! - one `static void NAME_kN(const float *in, float *arena)` per kernel, a
//!   statement-for-statement print of the program: loops as `for`, locals as C
//!   variables, `f32x4` locals as four scalars (one statement a lane), indices as the
//!   affine expressions of the program, `max`/`min` as `fmaxf`/`fminf` (Rust's
//!   `f32::max`/`min`), selects as `?:` (C comparisons are ordered, `!=` unordered, as
//!   the program defines them). Parallel loops run all their iterations;
//! - with int8 activations (`--act i8`), the kernels that read or write them take a
//!   third argument `int8_t *restrict q8`, the workspace's bytes after the arena
//!   (`Program::q8_offset`). A load of a `q8` byte sign-extends (C's conversion), a
//!   store casts to `int8_t` (the low 8 bits); `i16x8` and `i32x4` locals are eight
//!   `int16_t` or four `int32_t` scalars, their adds computed in `int` and cast back
//!   (wrapping), `widen` a lane copy, `convert` a C cast (`(float)`, `(int32_t)`: a
//!   truncation, of integral values only), `rint` C's `rintf`;
//! - `NAME_workspace_size`, `NAME_output_size`, `NAME_run` and `NAME_detect`, with the
//!   LLVM backend's workspace layout (`q8` after the arena, then the detection
//!   candidates) and decoding, statement for statement.
//!
//! It needs `<math.h>`, `<string.h>`, `<stdint.h>` and `<stddef.h>` only, allocates
//! nothing and has no writable globals. It compiles with `-std=c99 -Wall -Wextra
//! -Werror` (gcc and clang). Sums are written in the program's order: compile without
//! `-ffast-math` (and, on targets with FMA, with `-ffp-contract=off` to stay within
//! rounding of the reference).
//!
//! The printer ([`KernelPrinter`]) is shared with the OpenCL ([`crate::opencl`]) and
//! HLS ([`crate::hls`]) backends, which differ in types, buffer names and how parallel
//! loops run.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::llvm::{self, DetectHead, Workspace};
use crate::program::*;
use crate::CodegenError;

/// The language a kernel is printed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// C99 (`int32_t`, `expf`, ...).
    C,
    /// OpenCL C 1.2 (`int`, `uchar`, overloaded `exp`, `__global` pointers).
    OpenCl,
    /// C++ for Vitis HLS (C99 types, `#pragma HLS` on loops).
    Hls,
}

impl Dialect {
    /// The C type of a local of type `t` (of each lane, for vectors, which are
    /// printed as one scalar a lane).
    pub(crate) fn ty(self, t: Ty) -> &'static str {
        match (self, t) {
            (_, Ty::F32 | Ty::F32x4) => "float",
            (Dialect::OpenCl, Ty::I32 | Ty::I32x4) => "int",
            (_, Ty::I32 | Ty::I32x4) => "int32_t",
            (Dialect::OpenCl, Ty::I16x8) => "short",
            (_, Ty::I16x8) => "int16_t",
        }
    }

    pub(crate) fn elem(self, e: Elem) -> &'static str {
        match (self, e) {
            (_, Elem::F32) => "float",
            (Dialect::OpenCl, Elem::I32) => "int",
            (Dialect::OpenCl, Elem::U8) => "uchar",
            (_, Elem::I32) => "int32_t",
            (_, Elem::U8) => "uint8_t",
            (Dialect::OpenCl, Elem::I8) => "char",
            (_, Elem::I8) => "int8_t",
        }
    }

    /// The type of loop variables (indices stay below 2^31 on OpenCL devices).
    fn index(self) -> &'static str {
        match self {
            Dialect::OpenCl | Dialect::Hls => "int",
            Dialect::C => "long",
        }
    }

    fn math(self, f: MathFn) -> &'static str {
        match self {
            Dialect::OpenCl => match f {
                MathFn::Exp => "exp",
                MathFn::Tanh => "tanh",
                MathFn::Log1p => "log1p",
                MathFn::Floor => "floor",
                MathFn::Rint => "rint",
            },
            _ => f.name(),
        }
    }

    fn minmax(self, op: BinOp) -> &'static str {
        match (self, op) {
            (Dialect::OpenCl, BinOp::Max) => "fmax",
            (Dialect::OpenCl, _) => "fmin",
            (_, BinOp::Max) => "fmaxf",
            (_, _) => "fminf",
        }
    }
}

/// `v` as a C float literal that reads back as the same `f32` (Rust's shortest
/// round-trip digits plus `f`; `INFINITY`/`NAN` from `<math.h>`).
pub fn float_lit(v: f32) -> String {
    if v.is_nan() {
        return "NAN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "INFINITY".into() } else { "(-INFINITY)".into() };
    }
    format!("{v:?}f")
}

fn int_lit(v: i64) -> String {
    if v == i32::MIN as i64 {
        // `-2147483648` is the negation of a constant too large for int
        "(-2147483647 - 1)".into()
    } else {
        v.to_string()
    }
}

/// An index `offset ± c·iN + lD` as a C expression.
pub(crate) fn index_expr(index: &Index) -> String {
    let mut s = String::new();
    if index.offset != 0 || (index.terms.is_empty() && index.dynamic.is_none()) {
        s.push_str(&index.offset.to_string());
    }
    for &(v, c) in &index.terms {
        let (sign, mag) = if c < 0 { ("-", -c) } else { ("+", c) };
        if s.is_empty() {
            if sign == "-" {
                s.push('-');
            }
        } else {
            let _ = write!(s, " {sign} ");
        }
        if mag == 1 {
            let _ = write!(s, "i{}", v.0);
        } else {
            let _ = write!(s, "{mag}*i{}", v.0);
        }
    }
    if let Some(d) = index.dynamic {
        if !s.is_empty() {
            s.push_str(" + ");
        }
        let _ = write!(s, "l{}", d.0);
    }
    s
}

/// The constant tables some kernel reads, in table order.
pub(crate) fn used_tables(program: &Program) -> BTreeSet<usize> {
    fn index_tables(b: &[Stmt], out: &mut BTreeSet<usize>) {
        for st in b {
            match st {
                Stmt::Assign { expr: Expr::Load { buf: Buf::Const(n), .. }, .. } => {
                    out.insert(*n);
                }
                Stmt::Loop(l) => index_tables(&l.body, out),
                _ => {}
            }
        }
    }
    let mut out = BTreeSet::new();
    for k in &program.kernels {
        index_tables(&k.body, &mut out);
    }
    out
}

/// Appends the values of a table as a C initializer list (no braces), 16 values or
/// 24 bytes a line.
pub(crate) fn table_values(out: &mut String, data: &ConstData) {
    fn lines<T>(out: &mut String, v: &[T], per: usize, f: impl Fn(&mut String, &T)) {
        for (k, chunk) in v.chunks(per).enumerate() {
            if k > 0 {
                out.push('\n');
            }
            out.push_str("    ");
            for x in chunk {
                f(out, x);
                out.push(',');
            }
        }
    }
    match data {
        ConstData::F32(v) => lines(out, v, 8, |o, &x| o.push_str(&float_lit(x))),
        ConstData::I32(v) => lines(out, v, 16, |o, &x| o.push_str(&int_lit(x as i64))),
        ConstData::U8(v) => lines(out, v, 24, |o, &x| {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            o.push_str("0x");
            o.push(HEX[(x >> 4) as usize] as char);
            o.push(HEX[(x & 15) as usize] as char);
        }),
    }
    out.push('\n');
}

/// A printer's hook for loops it prints itself (`KernelPrinter::loop_hook`).
pub(crate) type LoopHook<'a> = dyn Fn(&Loop, usize) -> Option<String> + 'a;

/// Prints one kernel's body as statements of a [`Dialect`].
pub(crate) struct KernelPrinter<'a> {
    pub kernel: &'a Kernel,
    pub dialect: Dialect,
    /// The name of a buffer in expressions.
    pub buf_name: &'a dyn Fn(Buf) -> String,
    /// OpenCL: parallel loops run this work-item's share of their iterations.
    pub split_parallel: bool,
    /// HLS: pipeline innermost loops.
    pub pipeline_inner: bool,
    /// HLS: prints a loop itself (`Some(text)`, the whole loop at this indent) or
    /// leaves it to the printer (`None`).
    pub loop_hook: Option<&'a LoopHook<'a>>,
    out: String,
    read: Vec<bool>,
}

impl<'a> KernelPrinter<'a> {
    pub fn new(kernel: &'a Kernel, dialect: Dialect, buf_name: &'a dyn Fn(Buf) -> String) -> Self {
        let mut read = vec![false; kernel.locals.len()];
        fn operand(o: &Operand, read: &mut [bool]) {
            if let Operand::Local(l) = o {
                read[l.0 as usize] = true;
            }
        }
        fn index(i: &Index, read: &mut [bool]) {
            if let Some(d) = i.dynamic {
                read[d.0 as usize] = true;
            }
        }
        fn walk(b: &[Stmt], read: &mut [bool]) {
            for st in b {
                match st {
                    Stmt::Assign { expr, .. } => match expr {
                        Expr::Copy(o) | Expr::Splat(o) | Expr::Unary { a: o, .. } => operand(o, read),
                        Expr::Call { arg, .. } => operand(arg, read),
                        Expr::Load { index: i, .. } | Expr::LoadVec { index: i, .. } => index(i, read),
                        Expr::Extract { v, .. } => operand(v, read),
                        Expr::Widen { v, .. } | Expr::Convert(v) => operand(v, read),
                        Expr::Insert { v, x, .. } => {
                            operand(v, read);
                            operand(x, read);
                        }
                        Expr::Binary { a, b, .. } => {
                            operand(a, read);
                            operand(b, read);
                        }
                        Expr::Select { lhs, rhs, then, otherwise, .. } => {
                            for o in [lhs, rhs, then, otherwise] {
                                operand(o, read);
                            }
                        }
                    },
                    Stmt::Store { index: i, value, .. } => {
                        index(i, read);
                        operand(value, read);
                    }
                    Stmt::Loop(l) => {
                        for b in [l.start, l.end] {
                            if let Bound::Local(x) = b {
                                read[x.0 as usize] = true;
                            }
                        }
                        walk(&l.body, read);
                    }
                }
            }
        }
        walk(&kernel.body, &mut read);
        KernelPrinter {
            kernel,
            dialect,
            buf_name,
            split_parallel: false,
            pipeline_inner: false,
            loop_hook: None,
            out: String::new(),
            read,
        }
    }

    /// Declarations of the locals that are read (each zero-initialised, so no
    /// compiler sees a maybe-uninitialised use), then the body. Assignments to
    /// locals never read are dropped (expressions have no side effects).
    pub fn print(mut self, indent: usize) -> String {
        let pad = "    ".repeat(indent);
        let mut decl: Vec<String> = Vec::new();
        for (i, &t) in self.kernel.locals.iter().enumerate() {
            if !self.read[i] {
                continue;
            }
            let zero = if t.is_float() { "0.0f" } else { "0" };
            match t.lanes() {
                1 => decl.push(format!("l{i} = {zero}")),
                n => decl.extend((0..n).map(|k| format!("l{i}_{k} = {zero}"))),
            }
            let ty = self.dialect.ty(t);
            let line = format!("{pad}{ty} {};\n", decl.join(", "));
            self.out.push_str(&line);
            decl.clear();
        }
        let kernel = self.kernel;
        self.block(&kernel.body, indent);
        self.out
    }

    fn lane(&self, o: Operand, lane: Option<usize>) -> String {
        match o {
            Operand::Local(l) => match (self.kernel.locals[l.0 as usize].is_vector(), lane) {
                (true, k) => format!("l{}_{}", l.0, k.unwrap_or(0)),
                (false, _) => format!("l{}", l.0),
            },
            Operand::F32(v) => float_lit(v),
            Operand::I32(v) => int_lit(v as i64),
        }
    }

    fn ty_of(&self, o: Operand) -> Ty {
        match o {
            Operand::Local(l) => self.kernel.locals[l.0 as usize],
            Operand::F32(_) => Ty::F32,
            Operand::I32(_) => Ty::I32,
        }
    }

    /// The right-hand side of lane `lane` (`None`: a scalar) of `expr`, assigned to a
    /// local of type `dst`.
    fn rhs(&self, expr: &Expr, lane: Option<usize>, dst: Ty) -> String {
        let o = |x: &Operand| self.lane(*x, lane);
        match expr {
            // lanes 0..4 or 4..8 of an i16x8, sign-extended by C's conversion
            Expr::Widen { v, high } => self.lane(*v, Some(lane.unwrap_or(0) + 4 * *high as usize)),
            // i32 -> f32 (exact below 2^24), f32 -> i32 (truncation, of integral values)
            Expr::Convert(a) => format!("({}){}", self.dialect.ty(dst), o(a)),
            Expr::Copy(a) => o(a),
            Expr::Load { buf, index } => format!("{}[{}]", (self.buf_name)(*buf), index_expr(index)),
            Expr::LoadVec { buf, index } => {
                format!("{}[{}]", (self.buf_name)(*buf), index_expr(&index.add(lane.unwrap_or(0) as i64)))
            }
            // an i16x8 lane keeps the low 16 bits of the i32
            Expr::Splat(a) if dst == Ty::I16x8 => {
                format!("({}){}", self.dialect.ty(dst), self.lane(*a, None))
            }
            Expr::Splat(a) => self.lane(*a, None),
            Expr::Extract { v, lane: l } => self.lane(*v, Some(*l as usize)),
            Expr::Insert { v, lane: l, x } => {
                if lane == Some(*l as usize) {
                    self.lane(*x, None)
                } else {
                    o(v)
                }
            }
            Expr::Unary { op: UnOp::Neg, a } => format!("-({})", o(a)),
            Expr::Binary { op, a, b } => {
                let ty = self.ty_of(*a);
                let float = ty.is_float();
                let (a, b) = (o(a), o(b));
                match op {
                    // i16x8 lanes wrap: the sum in int, then its low 16 bits
                    BinOp::Add | BinOp::Sub if ty == Ty::I16x8 => {
                        let sign = if *op == BinOp::Add { '+' } else { '-' };
                        format!("({})({a} {sign} {b})", self.dialect.ty(ty))
                    }
                    BinOp::Add => format!("{a} + {b}"),
                    BinOp::Sub => format!("{a} - {b}"),
                    BinOp::Mul => format!("{a} * {b}"),
                    BinOp::Div => format!("{a} / {b}"),
                    BinOp::Max | BinOp::Min if float => format!("{}({a}, {b})", self.dialect.minmax(*op)),
                    BinOp::Max => format!("({a} > {b} ? {a} : {b})"),
                    BinOp::Min => format!("({a} < {b} ? {a} : {b})"),
                }
            }
            Expr::Select { cmp, lhs, rhs, then, otherwise } => {
                format!("({} {cmp} {}) ? {} : {}", o(lhs), o(rhs), o(then), o(otherwise))
            }
            Expr::Call { f, arg } => format!("{}({})", self.dialect.math(*f), o(arg)),
        }
    }

    fn block(&mut self, body: &[Stmt], indent: usize) {
        let pad = "    ".repeat(indent);
        for st in body {
            match st {
                Stmt::Assign { dst, expr } => {
                    if !self.read[dst.0 as usize] {
                        continue;
                    }
                    let ty = self.kernel.locals[dst.0 as usize];
                    if ty.is_vector() {
                        for k in 0..ty.lanes() {
                            let line = format!("{pad}l{}_{k} = {};\n", dst.0, self.rhs(expr, Some(k), ty));
                            self.out.push_str(&line);
                        }
                    } else {
                        let line = format!("{pad}l{} = {};\n", dst.0, self.rhs(expr, None, ty));
                        self.out.push_str(&line);
                    }
                }
                Stmt::Store { buf, index, value } => {
                    let name = (self.buf_name)(*buf);
                    let ty = self.ty_of(*value);
                    if ty.is_vector() {
                        for k in 0..ty.lanes() {
                            let line = format!(
                                "{pad}{name}[{}] = {};\n",
                                index_expr(&index.add(k as i64)),
                                self.lane(*value, Some(k))
                            );
                            self.out.push_str(&line);
                        }
                    } else {
                        // an i32 stored to q8 keeps its low 8 bits
                        let cast = match (buf, value) {
                            (Buf::Q8, Operand::Local(_)) => format!("({})", self.dialect.elem(Elem::I8)),
                            _ => String::new(),
                        };
                        let value = self.lane(*value, None);
                        let line = format!("{pad}{name}[{}] = {cast}{value};\n", index_expr(index));
                        self.out.push_str(&line);
                    }
                }
                Stmt::Loop(l) => self.emit_loop(l, indent),
            }
        }
    }

    fn emit_loop(&mut self, l: &Loop, indent: usize) {
        if let Some(text) = self.loop_hook.and_then(|h| h(l, indent)) {
            self.out.push_str(&text);
            return;
        }
        let pad = "    ".repeat(indent);
        let bound = |b: Bound| match b {
            Bound::Const(c) => c.to_string(),
            Bound::Local(x) => format!("l{}", x.0),
        };
        let ity = self.dialect.index();
        let v = format!("i{}", l.var.0);
        let note = match (l.parallel, l.note.is_empty()) {
            (true, _) => format!("  /* parallel: {} */", l.note),
            (false, false) => format!("  /* {} */", l.note),
            (false, true) => String::new(),
        };
        let (start, end) = (bound(l.start), bound(l.end));
        let head = match (l.parallel && self.split_parallel, l.const_trips()) {
            (true, Some(n)) => {
                // this work-item's share [n·g/G, n·(g+1)/G) of the n iterations, as
                // the JIT's threads split them
                let (Bound::Const(s), step) = (l.start, l.step) else {
                    unreachable!("parallel loops are constant")
                };
                format!(
                    "for ({ity} {v} = {s} + {step} * (int)(((long){n} * gid) / gsz); \
                     {v} < {s} + {step} * (int)(((long){n} * (gid + 1)) / gsz); {v} += {step}) {{{note}\n"
                )
            }
            _ => format!("for ({ity} {v} = {start}; {v} < {end}; {v} += {}) {{{note}\n", l.step),
        };
        self.out.push_str(&pad);
        self.out.push_str(&head);
        let inner = !l.body.iter().any(|s| matches!(s, Stmt::Loop(_)));
        if self.pipeline_inner && inner {
            let _ = writeln!(self.out, "{pad}    #pragma HLS PIPELINE II=1");
            if let (Bound::Local(_), _) | (_, Bound::Local(_)) = (l.start, l.end) {
                let _ = writeln!(self.out, "{pad}    #pragma HLS LOOP_TRIPCOUNT min=0 max=64 avg=16");
            }
        }
        self.block(&l.body, indent + 1);
        self.out.push_str(&pad);
        self.out.push_str("}\n");
    }
}

/// The buffers a kernel reads or writes.
#[derive(Debug, Default)]
pub(crate) struct Uses {
    pub input: bool,
    pub arena: bool,
    /// The int8 activations.
    pub q8: bool,
    pub tables: BTreeSet<usize>,
}

/// Which buffers a kernel reads or writes.
pub(crate) fn kernel_buffers(k: &Kernel) -> Uses {
    fn see(buf: Buf, u: &mut Uses) {
        match buf {
            Buf::Input => u.input = true,
            Buf::Arena => u.arena = true,
            Buf::Const(n) => {
                u.tables.insert(n);
            }
            Buf::Q8 => u.q8 = true,
        }
    }
    fn walk(b: &[Stmt], u: &mut Uses) {
        for st in b {
            match st {
                Stmt::Assign { expr: Expr::Load { buf, .. } | Expr::LoadVec { buf, .. }, .. } => see(*buf, u),
                Stmt::Store { buf, .. } => see(*buf, u),
                Stmt::Loop(l) => walk(&l.body, u),
                Stmt::Assign { .. } => {}
            }
        }
    }
    let mut u = Uses::default();
    walk(&k.body, &mut u);
    u
}

/// A C comment's text: no `*/` inside.
pub(crate) fn comment(s: &str) -> String {
    s.replace("*/", "* /")
}

/// The generated files of the C target.
#[derive(Debug, Clone)]
pub struct CSource {
    /// `PREFIX.c`.
    pub source: String,
    /// `PREFIX.h` (the LLVM backend's header).
    pub header: String,
    pub workspace_bytes: u64,
}

/// Verifies the program and checks the detection heads against its layers (every
/// backend that emits `NAME_detect` starts with this).
pub(crate) fn check_heads(program: &Program, heads: &[DetectHead]) -> Result<(), CodegenError> {
    program.verify().map_err(CodegenError::Invalid)?;
    for h in heads {
        let l = program
            .layers
            .get(h.layer)
            .ok_or_else(|| CodegenError::Invalid(format!("no layer {}", h.layer)))?;
        if l.shape[0] != h.n * h.entries || h.anchors.len() != h.n || h.obj + 1 + h.classes > h.entries {
            return Err(CodegenError::Invalid(format!(
                "detection head {} does not match its output",
                h.layer
            )));
        }
    }
    Ok(())
}

/// Prints `program` (with `heads` for `NAME_detect`) as C99 exporting `NAME_run` etc.
pub fn compile(program: &Program, heads: &[DetectHead], name: &str) -> Result<CSource, CodegenError> {
    check_heads(program, heads)?;
    let header = llvm::header(program, name);
    let ws = Workspace::new(program, heads);
    let mut s = String::with_capacity(program.const_bytes() * 3 + (1 << 20));
    s.push_str(&header);
    let _ = write!(
        s,
        "\n/* The implementation: {} kernels of the ternc kernel program, printed as C99.\n   \
         Compile without -ffast-math; -ffp-contract=off keeps sums as the program orders them. */\n\
         #include <math.h>\n#include <stdint.h>\n#include <string.h>\n\n",
        program.kernels.len()
    );
    // constant tables
    for n in used_tables(program) {
        let t = &program.consts[n];
        let _ = writeln!(
            s,
            "/* {}: {} x {} */\nstatic const {} {name}_c{n}[{}] = {{",
            comment(&t.name),
            t.data.len(),
            t.data.elem(),
            Dialect::C.elem(t.data.elem()),
            t.data.len()
        );
        table_values(&mut s, &t.data);
        s.push_str("};\n\n");
    }
    // kernels
    let names = |b: Buf| match b {
        Buf::Input => "in".to_string(),
        Buf::Arena => "arena".to_string(),
        Buf::Const(n) => format!("{name}_c{n}"),
        Buf::Q8 => "q8".to_string(),
    };
    let mut calls = String::new();
    for (k, kernel) in program.kernels.iter().enumerate() {
        let uses = kernel_buffers(kernel);
        let layer = kernel.layer.map_or(String::new(), |l| format!(" (layer {l})"));
        // the kernels of int8 layers also take the int8 activations
        let (q8_param, q8_arg) = if uses.q8 { (", int8_t *restrict q8", ", q8") } else { Default::default() };
        let _ = writeln!(
            s,
            "/* k{k}: {}{layer} */\nstatic void {name}_k{k}(const float *restrict in, float *restrict arena{q8_param}) {{",
            comment(&kernel.name)
        );
        if !uses.input {
            s.push_str("    (void)in;\n");
        }
        if !uses.arena {
            s.push_str("    (void)arena;\n");
        }
        s.push_str(&KernelPrinter::new(kernel, Dialect::C, &names).print(1));
        s.push_str("}\n\n");
        let _ = writeln!(calls, "    {name}_k{k}(in, arena{q8_arg});");
    }
    let _ = writeln!(s, "static void {name}_kernels(const float *in, float *arena) {{");
    if program.has_int8() {
        let _ = writeln!(
            s,
            "    /* int8 activations: {} bytes after the arena */\n    \
             int8_t *q8 = (int8_t *)((char *)arena + {});",
            program.q8_len,
            program.q8_offset()
        );
    }
    s.push_str(&calls);
    s.push_str("}\n\n");
    s.push_str(&api(program, heads, name, &ws, None));
    Ok(CSource { source: s, header, workspace_bytes: ws.bytes() })
}

/// `NAME_workspace_size`, `NAME_output_size`, `NAME_run` and `NAME_detect` over a
/// function `NAME_kernels(in, arena)` that leaves every layer output in the arena
/// (`run_kernels`: OpenCL, a call that instead copies the heads' outputs into the
/// host arena and returns nonzero on failure).
pub(crate) fn api(
    program: &Program,
    heads: &[DetectHead],
    name: &str,
    ws: &Workspace,
    run_kernels: Option<&str>,
) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "size_t {name}_workspace_size(void) {{\n    return {};\n}}\n\n\
         size_t {name}_output_size(int i) {{\n    switch (i) {{\n",
        ws.bytes()
    );
    for (i, &l) in program.outputs.iter().enumerate() {
        let _ = writeln!(s, "    case {i}: return {};", program.layers[l].len());
    }
    s.push_str("    default: return 0;\n    }\n}\n\n");
    // how the kernels run: C calls them (cannot fail), OpenCL may fail
    let call = match run_kernels {
        None => format!("    {name}_kernels(input, arena);\n"),
        Some(f) => format!("    if ({f}(input, arena) != 0) return -1;\n"),
    };
    let _ = write!(
        s,
        "int {name}_run(const float *input, float *const *outputs, void *workspace) {{\n    \
         float *arena = (float *)workspace;\n{call}"
    );
    for (i, &l) in program.outputs.iter().enumerate() {
        let lay = &program.layers[l];
        let _ =
            writeln!(s, "    memcpy(outputs[{i}], arena + {}, {} * sizeof(float));", lay.offset, lay.len());
    }
    s.push_str("    return 0;\n}\n\n");
    s.push_str(&detect(program, heads, name, ws, &call));
    s
}

/// `NAME_detect` in C: the LLVM backend's `build_detect`, operation for operation.
fn detect(program: &Program, heads: &[DetectHead], name: &str, ws: &Workspace, call: &str) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "/* IoU of two x0, y0, x1, y1 boxes: 0 for NaN coordinates, no overlap or no union. */\n\
         static float {name}_iou(const float *a, const float *c) {{\n    \
         int k, nan = 0;\n    \
         for (k = 0; k < 4; k++) nan |= a[k] != a[k] || c[k] != c[k];\n    \
         float iw = (a[2] < c[2] ? a[2] : c[2]) - (a[0] > c[0] ? a[0] : c[0]);\n    \
         float ih = (a[3] < c[3] ? a[3] : c[3]) - (a[1] > c[1] ? a[1] : c[1]);\n    \
         float inter = iw * ih;\n    \
         float aw = a[2] - a[0], ah = a[3] - a[1], cw = c[2] - c[0], ch = c[3] - c[1];\n    \
         aw = aw > 0.0f ? aw : 0.0f; ah = ah > 0.0f ? ah : 0.0f;\n    \
         cw = cw > 0.0f ? cw : 0.0f; ch = ch > 0.0f ? ch : 0.0f;\n    \
         float uni = aw * ah + cw * ch - inter;\n    \
         float ratio = inter / uni;\n    \
         return (iw > 0.0f && ih > 0.0f && uni > 0.0f && !nan) ? ratio : 0.0f;\n}}\n\n\
         /* Whether candidate x goes before y: higher score, then lower class, then decode order. */\n\
         static int {name}_before(const float *cand, int32_t x, int32_t y) {{\n    \
         float sx = cand[6 * (long)x + 4], sy = cand[6 * (long)y + 4];\n    \
         float cx = cand[6 * (long)x + 5], cy = cand[6 * (long)y + 5];\n    \
         return sx > sy || (sx == sy && (cx < cy || (cx == cy && x < y)));\n}}\n\n\
         int {name}_detect(const float *input, void *workspace, float thresh, float nms,\n                 \
         {name}_box *boxes, int max_boxes) {{\n    \
         float *arena = (float *)workspace;\n    \
         float *cand = (float *)((char *)workspace + {arena_bytes});\n    \
         int32_t *order = (int32_t *)((char *)workspace + {order});\n    \
         long count = 0, n, gap, i, j, k, m, kept = 0;\n    \
         (void)thresh;\n{call}",
        arena_bytes = ws.arena_bytes,
        order = ws.order_offset(),
    );
    for h in heads {
        let lay = &program.layers[h.layer];
        let [_, gh, gw] = lay.shape;
        let plane = gh * gw;
        let _ = write!(
            s,
            "    {{ /* head: layer {l} ({kind}), {gh}x{gw} cells, {n} anchors, {c} classes */\n        \
             const float *out = arena + {off};\n        \
             long row, col, cls;\n        \
             for (row = 0; row < {gh}; row++) for (col = 0; col < {gw}; col++) {{\n            \
             long cell = row * {gw} + col;\n",
            l = h.layer,
            kind = lay.kind,
            n = h.n,
            c = h.classes,
            off = lay.offset,
        );
        for (a, &(aw, ah)) in h.anchors.iter().enumerate() {
            let size = |t: &str, anchor: f64| {
                if h.new_coords {
                    format!("{t} * {t} * {}", float_lit((4.0 * anchor) as f32))
                } else {
                    format!("(float)(exp((double){t}) * {anchor:?})")
                }
            };
            let _ = write!(
                s,
                "            {{ /* anchor {a} */\n                \
                 long base = cell + {base};\n                \
                 float obj = out[base + {obj}];\n                \
                 if (obj > thresh) {{\n                    \
                 float t0 = out[base], t1 = out[base + {plane}], t2 = out[base + {p2}], t3 = out[base + {p3}];\n                    \
                 float x = ((float)col + t0) / {gwf};\n                    \
                 float y = ((float)row + t1) / {ghf};\n                    \
                 float hw = ({bw}) * 0.5f, hh = ({bh}) * 0.5f;\n                    \
                 for (cls = 0; cls < {classes}; cls++) {{\n                        \
                 float score = obj * out[base + (cls + {o1}) * {plane}];\n                        \
                 if (score > thresh && count < {cands}) {{\n                            \
                 float *c = cand + 6 * count;\n                            \
                 c[0] = x - hw; c[1] = y - hh; c[2] = x + hw; c[3] = y + hh;\n                            \
                 c[4] = score; c[5] = (float)cls;\n                            \
                 order[count] = (int32_t)count;\n                            \
                 count++;\n                        }}\n                    }}\n                }}\n            }}\n",
                base = a * h.entries * plane,
                obj = h.obj * plane,
                p2 = 2 * plane,
                p3 = 3 * plane,
                gwf = float_lit(gw as f32),
                ghf = float_lit(gh as f32),
                bw = size("t2", aw),
                bh = size("t3", ah),
                classes = h.classes,
                o1 = h.obj + 1,
                cands = ws.candidates,
            );
        }
        s.push_str("        }\n    }\n");
    }
    let _ = write!(
        s,
        "    /* shell sort of the candidates, best first */\n    \
         n = count;\n    \
         for (gap = n / 2; gap > 0; gap /= 2) {{\n        \
         for (i = gap; i < n; i++) {{\n            \
         int32_t t = order[i];\n            \
         for (j = i; j >= gap && {name}_before(cand, t, order[j - gap]); j -= gap) order[j] = order[j - gap];\n            \
         order[j] = t;\n        }}\n    }}\n    \
         /* greedy per-class NMS */\n    \
         for (k = 0; k < n; k++) {{\n        \
         if (kept >= max_boxes) continue;\n        \
         const float *bx = cand + 6 * (long)order[k];\n        \
         int cls = (int)bx[5], keep = 1;\n        \
         for (m = 0; m < kept; m++) {{\n            \
         if (boxes[m].cls == cls) {{\n                \
         float a[4];\n                \
         a[0] = boxes[m].x0; a[1] = boxes[m].y0; a[2] = boxes[m].x1; a[3] = boxes[m].y1;\n                \
         if ({name}_iou(a, bx) > nms) keep = 0;\n            }}\n        }}\n        \
         if (keep) {{\n            \
         boxes[kept].x0 = bx[0]; boxes[kept].y0 = bx[1]; boxes[kept].x1 = bx[2]; boxes[kept].y1 = bx[3];\n            \
         boxes[kept].score = bx[4]; boxes[kept].cls = cls;\n            \
         kept++;\n        }}\n    }}\n    \
         return (int)kept;\n}}\n"
    );
    s
}
