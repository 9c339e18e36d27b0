//! The kernel program: the one low-level description of a compiled network that every
//! backend lowers or prints (Cranelift JIT now; LLVM, C, HLS C++ and OpenCL later).
//!
//! It is plain data with a stable textual dump ([`Program`]'s `Display`), checked by
//! [`Program::verify`] before any backend sees it.
//!
//! # Buffers
//!
//! A program reads and writes three kinds of buffers ([`Buf`]), all addressed in
//! elements of their own type:
//!
//! - `in`: the network input, `f32[c·h·w]`, read only (the caller owns it);
//! - `arena`: one `f32` array holding every layer output at the offset the memory plan
//!   (`ternc_passes::memory`) gives it, followed by a scratch area for padded copies;
//! - `cN`: constant tables ([`ConstTable`]): weights, scales, biases, tap offsets, packed
//!   ternary codes. Read only. A backend decides where they live (one blob passed as
//!   an argument for the JIT, `static const` arrays for a C printer).
//!
//! # Kernels
//!
//! A program is an ordered list of [`Kernel`]s; running them in order runs the network.
//! A kernel is a tree of statements over two kinds of names:
//!
//! - loop variables `iN` ([`Var`]), introduced by `for iN in A..B step S` ([`Loop`]).
//!   Bounds are constants, except that an index-table loop may take its bounds from
//!   `i32` locals loaded from a constant table (still compile-time data: a printer can
//!   emit the table, an HLS printer can unroll it);
//! - locals `%N` ([`Local`]), typed scalars ([`Ty`]) that may be assigned many times
//!   (backends turn them into SSA values or C variables).
//!
//! Memory accesses use affine indices ([`Index`]): `offset + Σ coeff·iN (+ %d)`, all
//! constants except the loop variables and at most one `i32` local loaded from a
//! constant table (a tap offset). Every access can therefore be bounds-checked
//! statically, which [`Program::verify`] does: a verified program never reads or writes
//! outside its buffers, whatever the input values.
//!
//! Arithmetic ([`Expr`]) is `f32`/`i32`: add, sub, mul, div, max, min, neg,
//! compare-and-select, and calls to math helpers ([`MathFn`]). Nothing else: a
//! ternary convolution's accumulation is a sequence of loads, adds and subtracts.
//!
//! # Vectors
//!
//! One 128-bit type, [`Ty::F32x4`]: [`Expr::LoadVec`] reads 4 consecutive `f32` at an
//! index (the verifier checks `index + 3`), a store of an `f32x4` writes 4,
//! [`Expr::Splat`] broadcasts a scalar, [`Expr::Extract`] reads a lane,
//! [`Expr::Insert`] replaces one, and add, sub, mul, div, max, min and
//! compare-and-select (all operands vectors) work lane-wise. Calls ([`MathFn`]) stay
//! scalar for now: vector activations that need them run lane by lane. A backend
//! without vectors can lower them lane by lane.
//!
//! # Int8 activations (W2A8)
//!
//! A fourth buffer, `q8` ([`Buf::Q8`], `i8[q8_len]`), holds the quantized input of a
//! ternary layer (backends put it after the arena in the same workspace). A scalar
//! load of an `i8` element sign-extends to `i32`, a store of an `i32` keeps its low 8
//! bits. Two integer vector types accumulate it: [`Ty::I16x8`], which
//! [`Expr::LoadVec`] on `q8` fills with 8 sign-extended bytes and add/sub combine
//! lane-wise (wrapping; the lowering bounds every sum so it never wraps), and
//! [`Ty::I32x4`], which [`Expr::Widen`] makes from one half of an `i16x8`.
//! [`Expr::Convert`] turns `i32`/`i32x4` into `f32`/`f32x4` for the epilogue, and an
//! integral `f32` into `i32` (after [`MathFn::Rint`]) when quantizing.

use std::collections::HashSet;
use std::fmt::{self, Write as _};

/// The type of a local.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ty {
    F32,
    I32,
    /// Four f32 lanes (128 bits).
    F32x4,
    /// Eight i16 lanes (128 bits): int8 activations, summed.
    I16x8,
    /// Four i32 lanes (128 bits).
    I32x4,
}

impl Ty {
    /// f32 or a vector of f32.
    pub fn is_float(self) -> bool {
        matches!(self, Ty::F32 | Ty::F32x4)
    }
    /// Elements a load or store of this type moves.
    pub fn lanes(self) -> usize {
        match self {
            Ty::F32x4 | Ty::I32x4 => 4,
            Ty::I16x8 => 8,
            Ty::F32 | Ty::I32 => 1,
        }
    }
    pub fn is_vector(self) -> bool {
        self.lanes() > 1
    }
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ty::F32 => "f32",
            Ty::I32 => "i32",
            Ty::F32x4 => "f32x4",
            Ty::I16x8 => "i16x8",
            Ty::I32x4 => "i32x4",
        })
    }
}

/// The element type of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Elem {
    F32,
    I32,
    /// Bytes (packed ternary codes); a load zero-extends to `i32`.
    U8,
    /// Signed bytes (int8 activations); a load sign-extends to `i32`.
    I8,
}

impl Elem {
    pub fn bytes(self) -> usize {
        match self {
            Elem::F32 | Elem::I32 => 4,
            Elem::U8 | Elem::I8 => 1,
        }
    }
    /// The type of a value loaded from such a buffer.
    pub fn value_ty(self) -> Ty {
        match self {
            Elem::F32 => Ty::F32,
            Elem::I32 | Elem::U8 | Elem::I8 => Ty::I32,
        }
    }
}

impl fmt::Display for Elem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Elem::F32 => "f32",
            Elem::I32 => "i32",
            Elem::U8 => "u8",
            Elem::I8 => "i8",
        })
    }
}

/// The contents of a constant table.
#[derive(Debug, Clone, PartialEq)]
pub enum ConstData {
    F32(Vec<f32>),
    I32(Vec<i32>),
    U8(Vec<u8>),
}

impl ConstData {
    pub fn len(&self) -> usize {
        match self {
            ConstData::F32(v) => v.len(),
            ConstData::I32(v) => v.len(),
            ConstData::U8(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn elem(&self) -> Elem {
        match self {
            ConstData::F32(_) => Elem::F32,
            ConstData::I32(_) => Elem::I32,
            ConstData::U8(_) => Elem::U8,
        }
    }
    /// The table as little-endian bytes (what a backend embeds).
    pub fn to_le_bytes(&self) -> Vec<u8> {
        let mut out = vec![0; self.len() * self.elem().bytes()];
        self.write_le(&mut out);
        out
    }

    /// Writes the table as little-endian bytes into `out` (`len · elem bytes` long):
    /// no intermediate copy, for the 100+ MiB tables of large models.
    pub fn write_le(&self, out: &mut [u8]) {
        match self {
            ConstData::F32(v) => {
                out.chunks_exact_mut(4).zip(v).for_each(|(o, x)| o.copy_from_slice(&x.to_le_bytes()))
            }
            ConstData::I32(v) => {
                out.chunks_exact_mut(4).zip(v).for_each(|(o, x)| o.copy_from_slice(&x.to_le_bytes()))
            }
            ConstData::U8(v) => out[..v.len()].copy_from_slice(v),
        }
    }
    /// Smallest and largest value of an integer table (`None` for f32 or empty tables).
    pub fn int_range(&self) -> Option<(i64, i64)> {
        let (lo, hi) = match self {
            ConstData::F32(_) => return None,
            ConstData::I32(v) => (v.iter().min()?, v.iter().max()?),
            ConstData::U8(v) => return Some((*v.iter().min()? as i64, *v.iter().max()? as i64)),
        };
        Some((*lo as i64, *hi as i64))
    }
}

/// A named constant table.
#[derive(Debug, Clone, PartialEq)]
pub struct ConstTable {
    pub name: String,
    pub data: ConstData,
}

/// A local `%N` of a kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Local(pub u32);

/// A loop variable `iN` of a kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Var(pub u32);

impl fmt::Display for Local {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.0)
    }
}

impl fmt::Display for Var {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "i{}", self.0)
    }
}

/// A buffer a kernel reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Buf {
    /// The network input (f32, read only).
    Input,
    /// The activation arena (f32).
    Arena,
    /// Constant table `n` of the program (read only).
    Const(usize),
    /// Int8 activations (`i8[q8_len]`): a ternary layer's quantized input.
    Q8,
}

impl fmt::Display for Buf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Buf::Input => f.write_str("in"),
            Buf::Arena => f.write_str("arena"),
            Buf::Const(n) => write!(f, "c{n}"),
            Buf::Q8 => f.write_str("q8"),
        }
    }
}

/// An element index `offset + Σ coeff·var (+ dynamic)`. Without `dynamic` it doubles as
/// an affine expression of the loop variables while lowering.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Index {
    pub offset: i64,
    /// At most one term per variable, none with a zero coefficient, sorted by variable.
    pub terms: Vec<(Var, i64)>,
    /// An `i32` local loaded from a constant table, added as is.
    pub dynamic: Option<Local>,
}

impl Index {
    /// The constant index `offset`.
    pub fn at(offset: i64) -> Index {
        Index { offset, ..Default::default() }
    }
    /// The index `var`.
    pub fn var(var: Var) -> Index {
        Index::at(0).with(var, 1)
    }
    /// This index plus `coeff·var`.
    pub fn with(mut self, var: Var, coeff: i64) -> Index {
        match self.terms.iter().position(|t| t.0 == var) {
            Some(k) => self.terms[k].1 += coeff,
            None => self.terms.push((var, coeff)),
        }
        self.terms.retain(|t| t.1 != 0);
        self.terms.sort_unstable();
        self
    }
    /// This index plus the constant `k`.
    pub fn add(&self, k: i64) -> Index {
        let mut out = self.clone();
        out.offset += k;
        out
    }
    /// The sum of two indices (at most one of them dynamic).
    pub fn plus(&self, other: &Index) -> Index {
        assert!(self.dynamic.is_none() || other.dynamic.is_none(), "an index has at most one dynamic part");
        let mut out = self.clone().add(other.offset);
        for &(v, c) in &other.terms {
            out = out.with(v, c);
        }
        out.dynamic = self.dynamic.or(other.dynamic);
        out
    }
    /// This index times `k` (offset and coefficients; not for dynamic indices).
    pub fn scaled(&self, k: i64) -> Index {
        assert!(self.dynamic.is_none(), "cannot scale a dynamic index");
        let mut out = Index::at(self.offset * k);
        for &(v, c) in &self.terms {
            out = out.with(v, c * k);
        }
        out
    }
    /// This index plus the local `d`.
    pub fn dynamic(mut self, d: Local) -> Index {
        assert!(self.dynamic.is_none(), "an index has at most one dynamic part");
        self.dynamic = Some(d);
        self
    }
}

impl fmt::Display for Index {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.offset != 0 || (self.terms.is_empty() && self.dynamic.is_none()) {
            parts.push(self.offset.to_string());
        }
        for &(v, c) in &self.terms {
            parts.push(match c {
                1 => v.to_string(),
                -1 => format!("-{v}"),
                c => format!("{c}*{v}"),
            });
        }
        if let Some(d) = self.dynamic {
            parts.push(d.to_string());
        }
        f.write_str(&parts.join(" + ").replace("+ -", "- "))
    }
}

/// A local or an immediate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Operand {
    Local(Local),
    F32(f32),
    I32(i32),
}

impl From<Local> for Operand {
    fn from(l: Local) -> Self {
        Operand::Local(l)
    }
}

impl From<f32> for Operand {
    fn from(v: f32) -> Self {
        Operand::F32(v)
    }
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operand::Local(l) => l.fmt(f),
            // `{:?}` is the shortest text that reads back as the same f32
            Operand::F32(v) => write!(f, "{v:?}"),
            Operand::I32(v) => write!(f, "{v}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnOp {
    Neg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    /// f32 only.
    Div,
    Max,
    Min,
}

impl BinOp {
    fn name(self) -> &'static str {
        match self {
            BinOp::Add => "add",
            BinOp::Sub => "sub",
            BinOp::Mul => "mul",
            BinOp::Div => "div",
            BinOp::Max => "max",
            BinOp::Min => "min",
        }
    }
}

/// Comparisons (ordered for f32: false when either side is NaN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

impl fmt::Display for Cmp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Cmp::Gt => ">",
            Cmp::Ge => ">=",
            Cmp::Lt => "<",
            Cmp::Le => "<=",
            Cmp::Eq => "==",
            Cmp::Ne => "!=",
        })
    }
}

/// Math helpers a backend provides as calls (or intrinsics), all `f32 -> f32`. Each is
/// the function Rust's `f32` methods compute (which the reference interpreter uses),
/// so results match it bit for bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MathFn {
    /// `expf` (`f32::exp`).
    Exp,
    /// `tanhf` (`f32::tanh`).
    Tanh,
    /// `log1pf` (`f32::ln_1p`).
    Log1p,
    /// `floorf` (`f32::floor`): exact, so any correct floor (an instruction) will do.
    Floor,
    /// `rintf` in the default rounding mode (`f32::round_ties_even`): to the nearest
    /// integer, ties to even. Exact, like floor.
    Rint,
}

impl MathFn {
    /// Every helper, for backends that declare them up front.
    pub const ALL: [MathFn; 5] = [MathFn::Exp, MathFn::Tanh, MathFn::Log1p, MathFn::Floor, MathFn::Rint];

    pub fn name(self) -> &'static str {
        match self {
            MathFn::Exp => "expf",
            MathFn::Tanh => "tanhf",
            MathFn::Log1p => "log1pf",
            MathFn::Floor => "floorf",
            MathFn::Rint => "rintf",
        }
    }
}

/// The right-hand side of an assignment.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Copy(Operand),
    Load {
        buf: Buf,
        index: Index,
    },
    /// Four consecutive f32 elements `buf[index..index+4]` as an `f32x4`, or (from
    /// `q8`) eight consecutive i8 elements sign-extended to an `i16x8`.
    LoadVec {
        buf: Buf,
        index: Index,
    },
    /// A vector with every lane equal to a scalar: an `f32x4` from an f32, an `i16x8`
    /// or `i32x4` (the destination's type) from an i32 (truncated to 16 bits for
    /// `i16x8`).
    Splat(Operand),
    /// Lane `lane` (0..4) of an `f32x4`, as an f32.
    Extract {
        v: Operand,
        lane: u8,
    },
    /// The `f32x4` `v` with lane `lane` (0..4) replaced by the f32 `x`.
    Insert {
        v: Operand,
        lane: u8,
        x: Operand,
    },
    Unary {
        op: UnOp,
        a: Operand,
    },
    Binary {
        op: BinOp,
        a: Operand,
        b: Operand,
    },
    /// `(lhs cmp rhs) ? then : otherwise`.
    Select {
        cmp: Cmp,
        lhs: Operand,
        rhs: Operand,
        then: Operand,
        otherwise: Operand,
    },
    Call {
        f: MathFn,
        arg: Operand,
    },
    /// Lanes 0..4 (`high`: 4..8) of an `i16x8`, sign-extended to an `i32x4`.
    Widen {
        v: Operand,
        high: bool,
    },
    /// A numeric conversion to the destination's type: `i32 → f32` and
    /// `i32x4 → f32x4` (exact below 2^24), `f32 → i32` (truncation; used on integral
    /// values that fit).
    Convert(Operand),
}

/// A loop bound: a constant, or (index-table loops) an `i32` local.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    Const(i64),
    Local(Local),
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bound::Const(c) => write!(f, "{c}"),
            Bound::Local(l) => l.fmt(f),
        }
    }
}

/// `for var in start..end step step { body }` (`end` exclusive, `step > 0`).
#[derive(Debug, Clone, PartialEq)]
pub struct Loop {
    pub var: Var,
    pub start: Bound,
    pub end: Bound,
    pub step: i64,
    /// What the loop runs over (`oc`, `oy`, ...), for the dump only.
    pub note: String,
    /// The iterations may run on different threads: a kernel called as part `t` of
    /// `T` runs only its share `[n·t/T, n·(t+1)/T)` of this loop's `n` iterations.
    /// Iterations write disjoint elements (the lowering guarantees it); the verifier
    /// checks that parallel loops have constant bounds, do not nest, and that every
    /// store of a kernel that has one lies inside one.
    pub parallel: bool,
    pub body: Vec<Stmt>,
}

impl Loop {
    /// Iterations of a loop with constant bounds.
    pub fn const_trips(&self) -> Option<i64> {
        match (self.start, self.end) {
            (Bound::Const(a), Bound::Const(b)) => {
                Some(if b > a { (b - a + self.step - 1) / self.step } else { 0 })
            }
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Stmt {
    Assign { dst: Local, expr: Expr },
    Store { buf: Buf, index: Index, value: Operand },
    Loop(Loop),
}

/// One unit of generated code: a function `(in, arena, consts)` for a backend.
#[derive(Debug, Clone, PartialEq)]
pub struct Kernel {
    pub name: String,
    /// The Darknet layer this kernel computes (or prepares, for a padded copy).
    pub layer: Option<usize>,
    /// Type of each local, indexed by [`Local`].
    pub locals: Vec<Ty>,
    /// Number of loop variables.
    pub vars: u32,
    pub body: Vec<Stmt>,
}

impl Kernel {
    /// Whether the kernel has parallel loops, so it may be split across threads.
    pub fn is_parallel(&self) -> bool {
        fn any(b: &[Stmt]) -> bool {
            b.iter().any(|s| matches!(s, Stmt::Loop(l) if l.parallel || any(&l.body)))
        }
        any(&self.body)
    }
}

/// Where one Darknet layer's output lives once its kernels ran.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerOut {
    pub layer: usize,
    /// Darknet type name.
    pub kind: String,
    /// `[c, h, w]`.
    pub shape: [usize; 3],
    /// Offset in the arena, in floats.
    pub offset: usize,
    /// How the output comes about: `kernel`, `view of N`, `written in place`, ...
    pub note: String,
}

impl LayerOut {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A whole network as kernels; see the [module docs](self).
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    pub name: String,
    /// Network input `[c, h, w]`.
    pub input_shape: [usize; 3],
    /// Floats in the arena (layer outputs plus scratch).
    pub arena_len: usize,
    /// Floats of the arena used by layer outputs (the memory plan); scratch follows.
    pub plan_len: usize,
    /// Bytes of the int8 activation buffer `q8` (0 without int8 layers).
    pub q8_len: usize,
    pub consts: Vec<ConstTable>,
    pub kernels: Vec<Kernel>,
    /// Every Darknet layer's output, indexed by layer.
    pub layers: Vec<LayerOut>,
    /// Layers the network returns (detection heads, or the last layer), in order.
    pub outputs: Vec<usize>,
}

impl Program {
    pub fn input_len(&self) -> usize {
        self.input_shape.iter().product()
    }

    /// Elements of buffer `b`.
    pub fn buf_len(&self, b: Buf) -> usize {
        match b {
            Buf::Input => self.input_len(),
            Buf::Arena => self.arena_len,
            Buf::Const(n) => self.consts.get(n).map_or(0, |t| t.data.len()),
            Buf::Q8 => self.q8_len,
        }
    }

    pub fn buf_elem(&self, b: Buf) -> Elem {
        match b {
            Buf::Input | Buf::Arena => Elem::F32,
            Buf::Const(n) => self.consts.get(n).map_or(Elem::F32, |t| t.data.elem()),
            Buf::Q8 => Elem::I8,
        }
    }

    /// Byte offset of `q8` in a workspace that starts with the arena (64-aligned).
    pub fn q8_offset(&self) -> usize {
        (4 * self.arena_len).div_ceil(64) * 64
    }

    /// Bytes of the workspace the compiled backends run in: the arena, then `q8`.
    pub fn workspace_bytes(&self) -> usize {
        if self.q8_len == 0 {
            4 * self.arena_len
        } else {
            self.q8_offset() + self.q8_len.div_ceil(64) * 64
        }
    }

    /// Whether any kernel reads int8 activations.
    pub fn has_int8(&self) -> bool {
        self.q8_len > 0
    }

    /// Bytes of all constant tables.
    pub fn const_bytes(&self) -> usize {
        self.consts.iter().map(|t| t.data.len() * t.data.elem().bytes()).sum()
    }

    /// Checks every kernel: types, locals defined before use, loop steps, and that
    /// every load and store stays inside its buffer for all values the loop variables
    /// and table-loaded offsets can take. Stores go to the arena only.
    pub fn verify(&self) -> Result<(), String> {
        let tables: Vec<Option<Range>> = self.consts.iter().map(|t| t.data.int_range()).collect();
        for (k, kernel) in self.kernels.iter().enumerate() {
            Verifier::new(self, kernel, &tables)
                .block(&kernel.body)
                .map_err(|e| format!("kernel k{k} \"{}\": {e}", kernel.name))?;
        }
        if self.layers.iter().any(|l| l.offset + l.len() > self.plan_len) || self.plan_len > self.arena_len {
            return Err("a layer output lies outside the arena".into());
        }
        Ok(())
    }

    /// Kernel statistics: `(loops, assignments, stores)`, for reports.
    pub fn stats(&self) -> (usize, usize, usize) {
        fn walk(b: &[Stmt], s: &mut (usize, usize, usize)) {
            for st in b {
                match st {
                    Stmt::Assign { .. } => s.1 += 1,
                    Stmt::Store { .. } => s.2 += 1,
                    Stmt::Loop(l) => {
                        s.0 += 1;
                        walk(&l.body, s);
                    }
                }
            }
        }
        let mut s = (0, 0, 0);
        for k in &self.kernels {
            walk(&k.body, &mut s);
        }
        s
    }
}

/// Inclusive value range of a loop variable or an integer local.
type Range = (i64, i64);

struct Verifier<'p> {
    program: &'p Program,
    kernel: &'p Kernel,
    vars: Vec<Option<Range>>,
    /// Flow-insensitive ranges of i32 locals whose every assignment is a constant or
    /// a load from an integer constant table.
    ranges: Vec<Option<Range>>,
    defined: HashSet<Local>,
    /// Whether the kernel splits across threads, and whether we are inside a
    /// parallel loop.
    parallel_kernel: bool,
    in_parallel: bool,
}

impl<'p> Verifier<'p> {
    /// `tables`: the value range of each integer constant table (computed once per
    /// program: the tap tables of a large model hold tens of millions of entries).
    fn new(program: &'p Program, kernel: &'p Kernel, tables: &[Option<Range>]) -> Self {
        let n = kernel.locals.len();
        let mut ranges: Vec<Option<Option<Range>>> = vec![None; n];
        fn collect(t: &[Option<Range>], b: &[Stmt], r: &mut [Option<Option<Range>>]) {
            for st in b {
                match st {
                    Stmt::Assign { dst, expr } => {
                        let this = match expr {
                            Expr::Copy(Operand::I32(v)) => Some((*v as i64, *v as i64)),
                            Expr::Load { buf: Buf::Const(k), .. } => t.get(*k).copied().flatten(),
                            _ => None,
                        };
                        if let Some(slot) = r.get_mut(dst.0 as usize) {
                            *slot = Some(match (*slot, this) {
                                (None, x) => x,
                                (Some(Some(a)), Some(b)) => Some((a.0.min(b.0), a.1.max(b.1))),
                                _ => None,
                            });
                        }
                    }
                    Stmt::Loop(l) => collect(t, &l.body, r),
                    Stmt::Store { .. } => {}
                }
            }
        }
        collect(tables, &kernel.body, &mut ranges);
        Verifier {
            program,
            kernel,
            vars: vec![None; kernel.vars as usize],
            ranges: ranges.into_iter().map(Option::flatten).collect(),
            defined: HashSet::new(),
            parallel_kernel: kernel.is_parallel(),
            in_parallel: false,
        }
    }

    fn local_ty(&self, l: Local) -> Result<Ty, String> {
        self.kernel.locals.get(l.0 as usize).copied().ok_or_else(|| format!("{l} is not declared"))
    }

    fn operand(&self, o: Operand) -> Result<Ty, String> {
        match o {
            Operand::Local(l) => {
                if !self.defined.contains(&l) {
                    return Err(format!("{l} is used before it is assigned"));
                }
                self.local_ty(l)
            }
            Operand::F32(_) => Ok(Ty::F32),
            Operand::I32(_) => Ok(Ty::I32),
        }
    }

    fn same(&self, a: Operand, b: Operand) -> Result<Ty, String> {
        let (ta, tb) = (self.operand(a)?, self.operand(b)?);
        if ta != tb {
            return Err(format!("{a} is {ta} but {b} is {tb}"));
        }
        Ok(ta)
    }

    /// The type of `expr` assigned to a local of type `want`, after checking its
    /// operands and accesses (`want` decides splats and conversions).
    fn expr(&self, expr: &Expr, want: Ty) -> Result<Ty, String> {
        Ok(match expr {
            Expr::Copy(o) => self.operand(*o)?,
            Expr::Load { buf, index } => {
                self.access(*buf, index, 1)?;
                self.program.buf_elem(*buf).value_ty()
            }
            Expr::LoadVec { buf, index } => {
                let ty = match self.program.buf_elem(*buf) {
                    Elem::F32 => Ty::F32x4,
                    Elem::I8 => Ty::I16x8,
                    e => return Err(format!("vector load from {buf}, an {e} buffer")),
                };
                self.access(*buf, index, ty.lanes() as i64)?;
                ty
            }
            Expr::Splat(o) => match (self.operand(*o)?, want) {
                (Ty::F32, _) => Ty::F32x4,
                (Ty::I32, Ty::I16x8 | Ty::I32x4) => want,
                (t, _) => return Err(format!("splat of {t} into {want}")),
            },
            Expr::Widen { v, .. } => match self.operand(*v)? {
                Ty::I16x8 => Ty::I32x4,
                t => return Err(format!("widen of {t}")),
            },
            Expr::Convert(a) => match (self.operand(*a)?, want) {
                (Ty::I32, Ty::F32) | (Ty::F32, Ty::I32) | (Ty::I32x4, Ty::F32x4) => want,
                (t, _) => return Err(format!("conversion of {t} to {want}")),
            },
            Expr::Extract { v, lane } => match self.operand(*v)? {
                Ty::F32x4 if *lane < 4 => Ty::F32,
                t => return Err(format!("lane {lane} of {t}")),
            },
            Expr::Unary { op: UnOp::Neg, a } => match self.operand(*a)? {
                Ty::F32 => Ty::F32,
                t => return Err(format!("neg of {t}")),
            },
            Expr::Binary { op, a, b } => {
                let t = self.same(*a, *b)?;
                if *op == BinOp::Div && !t.is_float() {
                    return Err("integer division".into());
                }
                if matches!(t, Ty::I16x8 | Ty::I32x4) && !matches!(op, BinOp::Add | BinOp::Sub) {
                    return Err(format!("{} of {t}", op.name()));
                }
                t
            }
            Expr::Select { lhs, rhs, then, otherwise, .. } => {
                let c = self.same(*lhs, *rhs)?;
                let t = self.same(*then, *otherwise)?;
                if matches!(c, Ty::I16x8 | Ty::I32x4) || (c == Ty::F32x4) != (t == Ty::F32x4) {
                    return Err(format!("select of {t} on a {c} comparison"));
                }
                t
            }
            Expr::Insert { v, lane, x } => match (self.operand(*v)?, self.operand(*x)?) {
                (Ty::F32x4, Ty::F32) if *lane < 4 => Ty::F32x4,
                (t, u) => return Err(format!("insert of {u} into lane {lane} of {t}")),
            },
            Expr::Call { f, arg } => match self.operand(*arg)? {
                Ty::F32 => Ty::F32,
                t => return Err(format!("{} of {t}", f.name())),
            },
        })
    }
    /// Checks that `buf[index .. index + width]` is in bounds for every value the
    /// index can take.
    fn access(&self, buf: Buf, index: &Index, width: i64) -> Result<(), String> {
        let len = self.program.buf_len(buf) as i64;
        if let Buf::Const(n) = buf {
            if n >= self.program.consts.len() {
                return Err(format!("{buf} does not exist"));
            }
        }
        let (mut lo, mut hi) = (index.offset, index.offset);
        for &(v, c) in &index.terms {
            let (a, b) = self
                .vars
                .get(v.0 as usize)
                .copied()
                .flatten()
                .ok_or_else(|| format!("{buf}[{index}]: {v} is not an enclosing loop variable"))?;
            lo += (c * a).min(c * b);
            hi += (c * a).max(c * b);
        }
        if let Some(d) = index.dynamic {
            if self.operand(Operand::Local(d))? != Ty::I32 {
                return Err(format!("{buf}[{index}]: {d} is not i32"));
            }
            let (a, b) = self.ranges[d.0 as usize]
                .ok_or_else(|| format!("{buf}[{index}]: {d} is not loaded from an integer constant table"))?;
            lo += a;
            hi += b;
        }
        let hi = hi + width - 1;
        if lo < 0 || hi >= len {
            return Err(format!("{buf}[{index}] spans {lo}..={hi}, outside the buffer's {len} elements"));
        }
        Ok(())
    }

    fn bound(&self, b: Bound) -> Result<Range, String> {
        match b {
            Bound::Const(c) => Ok((c, c)),
            Bound::Local(l) => {
                if self.operand(Operand::Local(l))? != Ty::I32 {
                    return Err(format!("loop bound {l} is not i32"));
                }
                self.ranges[l.0 as usize]
                    .ok_or_else(|| format!("loop bound {l} is not loaded from a constant table"))
            }
        }
    }

    fn block(mut self, body: &[Stmt]) -> Result<(), String> {
        self.stmts(body)
    }

    fn stmts(&mut self, body: &[Stmt]) -> Result<(), String> {
        for st in body {
            match st {
                Stmt::Assign { dst, expr } => {
                    let want = self.local_ty(*dst)?;
                    let t = self.expr(expr, want)?;
                    if t != want {
                        return Err(format!("{dst} is {want} but is assigned a {t}"));
                    }
                    self.defined.insert(*dst);
                }
                Stmt::Store { buf, index, value } => {
                    if self.parallel_kernel && !self.in_parallel {
                        return Err("a store outside the parallel loops would run on every thread".into());
                    }
                    let t = self.operand(*value)?;
                    match (buf, t) {
                        (Buf::Arena, Ty::F32 | Ty::F32x4) | (Buf::Q8, Ty::I32) => {}
                        (Buf::Arena | Buf::Q8, _) => return Err(format!("store of {t} to {buf}")),
                        _ => return Err(format!("store to read-only buffer {buf}")),
                    }
                    self.access(*buf, index, t.lanes() as i64)?;
                }
                Stmt::Loop(l) => {
                    let slot = l.var.0 as usize;
                    if slot >= self.vars.len() || self.vars[slot].is_some() {
                        return Err(format!("{} is undeclared or already in use", l.var));
                    }
                    if l.step <= 0 {
                        return Err(format!("{}: step {} is not positive", l.var, l.step));
                    }
                    if l.const_trips() == Some(0) {
                        return Err(format!("{}: the loop never runs", l.var));
                    }
                    if l.parallel && (self.in_parallel || l.const_trips().is_none()) {
                        return Err(format!(
                            "{}: parallel loops need constant bounds and do not nest",
                            l.var
                        ));
                    }
                    let (s, _) = self.bound(l.start)?;
                    let (_, e) = self.bound(l.end)?;
                    let last = match l.const_trips() {
                        Some(n) => s + (n - 1) * l.step,
                        None if l.step == 1 => e - 1,
                        None => return Err(format!("{}: table-bound loops step by 1", l.var)),
                    };
                    // a loop whose bounds come from a table may run zero times: its body
                    // is checked for every value it could see
                    let (s_lo, _) = match l.start {
                        Bound::Local(x) => self.ranges[x.0 as usize].unwrap_or((s, s)),
                        Bound::Const(c) => (c, c),
                    };
                    // (an empty range means the body never runs: any value is sound)
                    self.vars[slot] = Some((s_lo, last.max(s_lo)));
                    let saved = self.defined.clone();
                    let outer = self.in_parallel;
                    self.in_parallel |= l.parallel;
                    self.stmts(&l.body)?;
                    self.in_parallel = outer;
                    // definitions inside a loop do not reach past it (it may not run)
                    self.defined = saved;
                    self.vars[slot] = None;
                }
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// The textual dump

fn write_expr(s: &mut String, k: &Kernel, dst: Local, e: &Expr) {
    let ty = k.locals.get(dst.0 as usize).copied().unwrap_or(Ty::F32);
    let p = if ty.is_float() { "f" } else { "i" };
    let _ = match e {
        Expr::Copy(o) => write!(s, "{o}"),
        Expr::Load { buf, index } => write!(s, "load {buf}[{index}]"),
        Expr::LoadVec { buf, index } => write!(s, "load.x{} {buf}[{index}]", ty.lanes()),
        Expr::Splat(o) => write!(s, "splat {o}"),
        Expr::Extract { v, lane } => write!(s, "extract {v}, {lane}"),
        Expr::Insert { v, lane, x } => write!(s, "insert {v}, {lane}, {x}"),
        Expr::Unary { op: UnOp::Neg, a } => write!(s, "{p}neg {a}"),
        Expr::Binary { op, a, b } => write!(s, "{p}{} {a}, {b}", op.name()),
        Expr::Select { cmp, lhs, rhs, then, otherwise } => {
            write!(s, "select {lhs} {cmp} {rhs}, {then}, {otherwise}")
        }
        Expr::Call { f, arg } => write!(s, "call {}({arg})", f.name()),
        Expr::Widen { v, high } => write!(s, "widen.{} {v}", if *high { "hi" } else { "lo" }),
        Expr::Convert(a) => write!(s, "convert.{ty} {a}"),
    };
}

fn write_block(s: &mut String, k: &Kernel, body: &[Stmt], depth: usize) {
    let pad = "  ".repeat(depth);
    for st in body {
        match st {
            Stmt::Assign { dst, expr } => {
                let _ = write!(s, "{pad}{dst} = ");
                write_expr(s, k, *dst, expr);
                s.push('\n');
            }
            Stmt::Store { buf, index, value } => {
                let x4 = match value {
                    Operand::Local(l) if k.locals.get(l.0 as usize) == Some(&Ty::F32x4) => ".x4",
                    _ if *buf == Buf::Q8 => ".i8",
                    _ => "",
                };
                let _ = writeln!(s, "{pad}store{x4} {buf}[{index}], {value}");
            }
            Stmt::Loop(l) => {
                let step = if l.step == 1 { String::new() } else { format!(" step {}", l.step) };
                let note = if l.note.is_empty() { String::new() } else { format!("  # {}", l.note) };
                let par = if l.parallel { " parallel" } else { "" };
                let _ = writeln!(s, "{pad}for {} in {}..{}{step}{par} {{{note}", l.var, l.start, l.end);
                write_block(s, k, &l.body, depth + 1);
                let _ = writeln!(s, "{pad}}}");
            }
        }
    }
}

/// `f32 %0..%9, i32 %10..%12`: the locals as runs of one type.
fn locals_line(locals: &[Ty]) -> String {
    let mut runs: Vec<(Ty, usize, usize)> = Vec::new();
    for (i, &t) in locals.iter().enumerate() {
        match runs.last_mut() {
            Some((rt, _, end)) if *rt == t && *end + 1 == i => *end = i,
            _ => runs.push((t, i, i)),
        }
    }
    runs.iter()
        .map(|&(t, a, b)| if a == b { format!("{t} %{a}") } else { format!("{t} %{a}..%{b}") })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Constant values shown per table in the dump; the rest are counted.
const SHOWN_VALUES: usize = 12;

fn table_preview(d: &ConstData) -> String {
    fn show<T: fmt::Debug>(v: &[T]) -> String {
        let mut s: Vec<String> = v.iter().take(SHOWN_VALUES).map(|x| format!("{x:?}")).collect();
        if v.len() > SHOWN_VALUES {
            s.push(format!("... {} more", v.len() - SHOWN_VALUES));
        }
        s.join(", ")
    }
    match d {
        ConstData::F32(v) => show(v),
        ConstData::I32(v) => show(v),
        ConstData::U8(v) => show(v),
    }
}

impl Kernel {
    /// The kernel's part of the dump.
    pub fn dump(&self, index: usize) -> String {
        let mut s = String::new();
        let layer = self.layer.map_or(String::new(), |l| format!(" layer {l}"));
        let _ = writeln!(s, "kernel k{index} \"{}\"{layer} {{", self.name);
        if !self.locals.is_empty() {
            let _ = writeln!(s, "  locals {}", locals_line(&self.locals));
        }
        write_block(&mut s, self, &self.body, 1);
        s.push_str("}\n");
        s
    }
}

impl fmt::Display for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [c, h, w] = self.input_shape;
        writeln!(f, "program \"{}\"", self.name)?;
        writeln!(f, "buffer in: f32[{}]  # input [{c},{h},{w}]", self.input_len())?;
        writeln!(
            f,
            "buffer arena: f32[{}]  # layer outputs 0..{}, scratch {}..{}",
            self.arena_len, self.plan_len, self.plan_len, self.arena_len
        )?;
        if self.q8_len > 0 {
            writeln!(f, "buffer q8: i8[{}]  # int8 activations", self.q8_len)?;
        }
        for (i, t) in self.consts.iter().enumerate() {
            writeln!(
                f,
                "const c{i} \"{}\": {}[{}] = [{}]",
                t.name,
                t.data.elem(),
                t.data.len(),
                table_preview(&t.data)
            )?;
        }
        for l in &self.layers {
            let [c, h, w] = l.shape;
            writeln!(
                f,
                "layer {} {} [{c},{h},{w}] at arena[{}..{}]  # {}",
                l.layer,
                l.kind,
                l.offset,
                l.offset + l.len(),
                l.note
            )?;
        }
        writeln!(f, "outputs {}", self.outputs.iter().map(|o| o.to_string()).collect::<Vec<_>>().join(", "))?;
        for (i, k) in self.kernels.iter().enumerate() {
            f.write_str(&k.dump(i))?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Building kernels

/// Builds one [`Kernel`]: locals, loop variables and nested statement lists.
#[derive(Debug)]
pub struct KernelBuilder {
    name: String,
    layer: Option<usize>,
    locals: Vec<Ty>,
    vars: u32,
    stack: Vec<Vec<Stmt>>,
    /// The next loop emitted is parallel.
    parallel: bool,
}

impl KernelBuilder {
    pub fn new(name: impl Into<String>, layer: Option<usize>) -> Self {
        KernelBuilder {
            name: name.into(),
            layer,
            locals: Vec::new(),
            vars: 0,
            stack: vec![Vec::new()],
            parallel: false,
        }
    }

    /// A fresh local of type `ty`.
    pub fn local(&mut self, ty: Ty) -> Local {
        self.locals.push(ty);
        Local(self.locals.len() as u32 - 1)
    }

    fn push(&mut self, st: Stmt) {
        self.stack.last_mut().expect("a statement list").push(st);
    }

    pub fn assign(&mut self, dst: Local, expr: Expr) {
        self.push(Stmt::Assign { dst, expr });
    }

    pub fn load(&mut self, dst: Local, buf: Buf, index: Index) {
        self.assign(dst, Expr::Load { buf, index });
    }

    pub fn binary(&mut self, dst: Local, op: BinOp, a: impl Into<Operand>, b: impl Into<Operand>) {
        self.assign(dst, Expr::Binary { op, a: a.into(), b: b.into() });
    }

    pub fn store(&mut self, buf: Buf, index: Index, value: impl Into<Operand>) {
        self.push(Stmt::Store { buf, index, value: value.into() });
    }

    /// `for v in start..end step step { f(v) }`. A constant loop of one iteration is
    /// not emitted as a loop: `f` gets the constant index instead. Zero iterations
    /// emit nothing.
    pub fn for_range(
        &mut self,
        start: i64,
        end: i64,
        step: i64,
        note: &str,
        f: impl FnOnce(&mut Self, Index),
    ) {
        let trips = if end > start { (end - start + step - 1) / step } else { 0 };
        match trips {
            0 => {}
            1 => f(self, Index::at(start)),
            _ => self
                .emit_loop(Bound::Const(start), Bound::Const(end), step, note, |kb, v| f(kb, Index::var(v))),
        }
    }

    /// A parallel loop (see [`Loop::parallel`]): emitted even for one iteration, so
    /// that the work it holds runs on one thread only. Zero iterations emit nothing.
    pub fn for_parallel(
        &mut self,
        start: i64,
        end: i64,
        step: i64,
        note: &str,
        f: impl FnOnce(&mut Self, Index),
    ) {
        if end > start {
            self.parallel = true;
            self.emit_loop(Bound::Const(start), Bound::Const(end), step, note, |kb, v| f(kb, Index::var(v)));
            self.parallel = false;
        }
    }

    /// A loop over `start..end` with table-loaded bounds (step 1).
    pub fn for_table(&mut self, start: Local, end: Local, note: &str, f: impl FnOnce(&mut Self, Var)) {
        self.emit_loop(Bound::Local(start), Bound::Local(end), 1, note, f);
    }

    fn emit_loop(&mut self, start: Bound, end: Bound, step: i64, note: &str, f: impl FnOnce(&mut Self, Var)) {
        let var = Var(self.vars);
        self.vars += 1;
        let parallel = std::mem::take(&mut self.parallel);
        self.stack.push(Vec::new());
        f(self, var);
        let body = self.stack.pop().expect("pushed above");
        self.push(Stmt::Loop(Loop { var, start, end, step, note: note.to_string(), parallel, body }));
    }

    pub fn finish(mut self) -> Kernel {
        assert_eq!(self.stack.len(), 1, "unclosed loop");
        Kernel {
            name: self.name,
            layer: self.layer,
            locals: self.locals,
            vars: self.vars,
            body: self.stack.pop().unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(kernel: Kernel, consts: Vec<ConstTable>) -> Program {
        Program {
            name: "t".into(),
            input_shape: [1, 1, 8],
            arena_len: 16,
            plan_len: 16,
            q8_len: 0,
            consts,
            kernels: vec![kernel],
            layers: vec![],
            outputs: vec![],
        }
    }

    #[test]
    fn index_arithmetic_and_text() {
        let (a, b) = (Var(0), Var(1));
        let i = Index::at(3).with(b, 2).with(a, 5).with(b, -2);
        assert_eq!(i.terms, [(a, 5)]);
        assert_eq!(i.to_string(), "3 + 5*i0");
        let j = i.plus(&Index::var(b).add(-1)).scaled(2);
        assert_eq!(j.to_string(), "4 + 10*i0 + 2*i1");
        assert_eq!(Index::at(0).with(a, -1).to_string(), "-i0");
        assert_eq!(Index::at(7).with(a, -3).to_string(), "7 - 3*i0");
        assert_eq!(Index::at(0).dynamic(Local(2)).to_string(), "%2");
    }

    #[test]
    fn verifier_checks_bounds_statically() {
        // copy in[0..8] to arena[8..16]: fine; one element further is out of bounds
        for (end, ok) in [(8, true), (9, false)] {
            let mut kb = KernelBuilder::new("copy", None);
            let x = kb.local(Ty::F32);
            kb.for_range(0, end, 1, "", |kb, i| {
                kb.load(x, Buf::Input, i.clone());
                kb.store(Buf::Arena, i.add(8), x);
            });
            let r = program(kb.finish(), vec![]).verify();
            assert_eq!(r.is_ok(), ok, "{r:?}");
        }
    }

    #[test]
    fn verifier_checks_table_offsets_and_definitions() {
        let table = |v: Vec<i32>| ConstTable { name: "taps".into(), data: ConstData::I32(v) };
        for (taps, ok) in [(vec![0, 3, 8], true), (vec![0, 9], false), (vec![-8], false), (vec![-7], true)] {
            let mut kb = KernelBuilder::new("gather", None);
            let (t, x) = (kb.local(Ty::I32), kb.local(Ty::F32));
            let n = taps.len() as i64;
            kb.for_range(0, n, 1, "", |kb, j| {
                kb.load(t, Buf::Const(0), j);
                // arena[7 + t]: the largest tap must stay below 16 - 7
                kb.load(x, Buf::Arena, Index::at(7).dynamic(t));
                kb.store(Buf::Arena, Index::at(0), x);
            });
            let r = program(kb.finish(), vec![table(taps.clone())]).verify();
            assert_eq!(r.is_ok(), ok, "{taps:?}: {r:?}");
        }
        let mut kb = KernelBuilder::new("undefined", None);
        let x = kb.local(Ty::F32);
        kb.store(Buf::Arena, Index::at(0), x);
        let e = program(kb.finish(), vec![]).verify().unwrap_err();
        assert!(e.contains("used before it is assigned"), "{e}");
        let mut kb = KernelBuilder::new("readonly", None);
        kb.store(Buf::Input, Index::at(0), 1.0f32);
        let e = program(kb.finish(), vec![]).verify().unwrap_err();
        assert!(e.contains("read-only"), "{e}");
    }

    #[test]
    fn dump_of_a_small_kernel() {
        let mut kb = KernelBuilder::new("scale", Some(0));
        let x = kb.local(Ty::F32);
        kb.for_range(0, 8, 2, "x", |kb, i| {
            kb.load(x, Buf::Input, i.clone());
            kb.binary(x, BinOp::Mul, x, 0.5f32);
            kb.assign(
                x,
                Expr::Select {
                    cmp: Cmp::Gt,
                    lhs: x.into(),
                    rhs: 0.0f32.into(),
                    then: x.into(),
                    otherwise: 0.0f32.into(),
                },
            );
            kb.store(Buf::Arena, i.add(8), x);
        });
        let k = kb.finish();
        assert_eq!(
            k.dump(0),
            "kernel k0 \"scale\" layer 0 {\n  locals f32 %0\n  for i0 in 0..8 step 2 {  # x\n    \
             %0 = load in[i0]\n    %0 = fmul %0, 0.5\n    %0 = select %0 > 0.0, %0, 0.0\n    \
             store arena[8 + i0], %0\n  }\n}\n"
        );
    }
}
