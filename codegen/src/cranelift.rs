//! The Cranelift backend: each [`Kernel`] becomes one function
//! `extern "C" fn(input: *const f32, arena: *mut f32, consts: *const u8)`, JIT-compiled
//! for the host (cranelift-native: x86_64 or aarch64).
//!
//! The translation is direct: locals become `cranelift_frontend` variables (SSA is
//! built by the frontend), loops become a preheader, a body block that is its own
//! latch, and an exit block (loops whose bounds come from a table get a guard first).
//! Addresses never multiply: for every loop variable and every coefficient it has in
//! some index, the loop keeps an induction variable `var·coeff·elem_bytes` that it
//! bumps by a constant each iteration; an address is the buffer's base pointer plus
//! those induction variables (outer loops first, so Cranelift hoists the partial sums
//! out of inner loops), plus a table-loaded offset shifted left by 2, with the
//! constant part as the load's immediate offset. Constant tables are laid out in one
//! 64-byte aligned blob; a table is `consts + its offset`.
//!
//! [`inspect`] returns a kernel's CLIF before and after Cranelift's optimiser, with the
//! opcodes of every innermost loop, so tests can check what the accumulation loops do.

use std::collections::BTreeSet;

use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{
    self, types, AbiParam, Function, InstBuilder, MemFlagsData, Signature, UserFuncName, Value,
};
use cranelift_codegen::isa::{OwnedTargetIsa, TargetFrontendConfig};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::Context;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, FuncId, Linkage, Module};

use crate::program::*;
use crate::CodegenError;

/// `(input, arena, consts, part, parts)`: see [`Compiled::run_kernel_part`].
pub type KernelFn = unsafe extern "C" fn(*const f32, *mut f32, *const u8, usize, usize);

/// `expf` for generated code: Rust's `f32::exp`, which the reference interpreter uses.
extern "C" fn ternc_expf(x: f32) -> f32 {
    x.exp()
}

/// `tanhf`: Rust's `f32::tanh`, as the reference interpreter's gelu.
extern "C" fn ternc_tanhf(x: f32) -> f32 {
    x.tanh()
}

/// `log1pf`: Rust's `f32::ln_1p`, as the reference interpreter's mish.
extern "C" fn ternc_log1pf(x: f32) -> f32 {
    x.ln_1p()
}

/// The [`MathFn`]s lowered as calls (floor is an instruction), with their symbols.
const CALLED: [(MathFn, &str, extern "C" fn(f32) -> f32); 3] = [
    (MathFn::Exp, "ternc_expf", ternc_expf),
    (MathFn::Tanh, "ternc_tanhf", ternc_tanhf),
    (MathFn::Log1p, "ternc_log1pf", ternc_log1pf),
];

const BACKEND: &str = "cranelift";

fn backend_err(e: impl std::fmt::Display) -> CodegenError {
    CodegenError::Backend { backend: BACKEND, msg: e.to_string() }
}

/// The host ISA with our settings: `opt_level=speed`; Cranelift's IR verifier in debug
/// builds only.
fn host_isa() -> Result<OwnedTargetIsa, CodegenError> {
    let mut flags = settings::builder();
    let set = |f: &mut settings::Builder, k: &str, v: &str| f.set(k, v).map_err(backend_err);
    set(&mut flags, "opt_level", "speed")?;
    set(&mut flags, "use_colocated_libcalls", "false")?;
    set(&mut flags, "is_pic", "false")?;
    let verify = if cfg!(debug_assertions) { "true" } else { "false" };
    set(&mut flags, "enable_verifier", verify)?;
    let isa = cranelift_native::builder().map_err(backend_err)?;
    isa.finish(settings::Flags::new(flags)).map_err(backend_err)
}

/// A cache-line aligned copy of the program's constant tables.
struct ConstBlob {
    lines: Vec<Line>,
    /// Byte offset of each table.
    offsets: Vec<usize>,
}

#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line([u8; 64]);

impl ConstBlob {
    fn new(program: &Program) -> ConstBlob {
        let mut offsets = Vec::with_capacity(program.consts.len());
        let mut len = 0;
        for t in &program.consts {
            offsets.push(len);
            len += (t.data.len() * t.data.elem().bytes()).div_ceil(64) * 64;
        }
        let mut lines = vec![Line([0; 64]); len / 64];
        // SAFETY: `Line` is `repr(C)` around `[u8; 64]`: the lines are `64·n`
        // initialised bytes, borrowed mutably and exclusively here.
        let bytes = unsafe { std::slice::from_raw_parts_mut(lines.as_mut_ptr().cast::<u8>(), len) };
        for (t, &at) in program.consts.iter().zip(&offsets) {
            t.data.write_le(&mut bytes[at..at + t.data.len() * t.data.elem().bytes()]);
        }
        ConstBlob { lines, offsets }
    }

    fn as_ptr(&self) -> *const u8 {
        self.lines.as_ptr().cast()
    }
}

/// The JIT module, kept alive for the code it owns and freed on drop.
struct Code(Option<JITModule>);

// SAFETY: after `finalize_definitions` the module is never used again except to free
// its memory in `drop`, which needs `&mut self`; the finalized code is immutable.
unsafe impl Send for Code {}
unsafe impl Sync for Code {}

impl Drop for Code {
    fn drop(&mut self) {
        if let Some(m) = self.0.take() {
            // SAFETY: the function pointers into this memory live in the same
            // `Compiled` and are dropped with it.
            unsafe { m.free_memory() };
        }
    }
}

/// A program compiled to host code.
pub struct Compiled {
    fns: Vec<KernelFn>,
    consts: ConstBlob,
    input_len: usize,
    arena_len: usize,
    _code: Code,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled")
            .field("kernels", &self.fns.len())
            .field("input_len", &self.input_len)
            .field("arena_len", &self.arena_len)
            .finish()
    }
}

impl Compiled {
    pub fn kernels(&self) -> usize {
        self.fns.len()
    }

    /// Runs kernel `k` on `input` and `arena`.
    ///
    /// # Panics
    /// If the slices are shorter than the program's buffers, or `k` is out of range.
    pub fn run_kernel(&self, k: usize, input: &[f32], arena: &mut [f32]) {
        assert!(
            input.len() >= self.input_len && arena.len() >= self.arena_len,
            "buffers of {} and {} floats, the program needs {} and {}",
            input.len(),
            arena.len(),
            self.input_len,
            self.arena_len
        );
        // SAFETY: the program passed `Program::verify`, so every access of every kernel
        // stays inside `input_len`, `arena_len` and the constant tables (all checked
        // above or owned here); the input and consts are only read.
        unsafe { (self.fns[k])(input.as_ptr(), arena.as_mut_ptr(), self.consts.as_ptr(), 0, 1) }
    }

    /// Runs part `part` of `parts` of kernel `k` (see `Loop::parallel`): called once
    /// for every part, on any threads, the parts together do what
    /// [`run_kernel`](Self::run_kernel) does.
    ///
    /// # Safety
    /// `input` and `arena` must point to at least the program's input and arena
    /// lengths of floats, and `part < parts`. Only parts of the same parallel kernel
    /// may run at the same time on one arena (they write disjoint elements), and
    /// nothing else may access the arena meanwhile.
    pub unsafe fn run_kernel_part(
        &self,
        k: usize,
        input: *const f32,
        arena: *mut f32,
        part: usize,
        parts: usize,
    ) {
        debug_assert!(part < parts);
        // SAFETY: as `run_kernel`, with the caller's guarantees for the pointers.
        unsafe { (self.fns[k])(input, arena, self.consts.as_ptr(), part, parts) }
    }

    /// Buffer lengths the kernels need, in floats: `(input, arena)`.
    pub fn buffer_lens(&self) -> (usize, usize) {
        (self.input_len, self.arena_len)
    }

    /// Runs every kernel in order.
    pub fn run(&self, input: &[f32], arena: &mut [f32]) {
        for k in 0..self.fns.len() {
            self.run_kernel(k, input, arena);
        }
    }
}

/// Compiles every kernel of a (verified) program for the host.
pub fn compile(program: &Program) -> Result<Compiled, CodegenError> {
    program.verify().map_err(CodegenError::Invalid)?;
    let consts = ConstBlob::new(program);
    let mut builder = JITBuilder::with_isa(host_isa()?, default_libcall_names());
    for (_, name, f) in CALLED {
        builder.symbol(name, f as *const u8);
    }
    let mut module = JITModule::new(builder);
    let mut ctx = module.make_context();
    let mut fctx = FunctionBuilderContext::new();
    let math = declare_math(&mut module)?;
    let mut ids = Vec::with_capacity(program.kernels.len());
    for (k, kernel) in program.kernels.iter().enumerate() {
        let sig = kernel_signature(&module);
        let id = module.declare_function(&format!("k{k}"), Linkage::Local, &sig).map_err(backend_err)?;
        ctx.func = build_function(
            program,
            kernel,
            &consts.offsets,
            sig,
            id,
            module.target_config(),
            &mut fctx,
            |f| math.map(|id| module.declare_func_in_func(id, f)),
        );
        module
            .define_function(id, &mut ctx)
            .map_err(|e| backend_err(format!("kernel k{k} \"{}\": {e:?}", kernel.name)))?;
        module.clear_context(&mut ctx);
        ids.push(id);
    }
    module.finalize_definitions().map_err(backend_err)?;
    let fns = ids
        .iter()
        .map(|&id| {
            let p = module.get_finalized_function(id);
            // SAFETY: the function was built with `kernel_signature`, the host's
            // default (C) calling convention with three pointer arguments.
            unsafe { std::mem::transmute::<*const u8, KernelFn>(p) }
        })
        .collect();
    Ok(Compiled {
        fns,
        consts,
        input_len: program.input_len(),
        // the workspace: the arena, then q8
        arena_len: program.workspace_bytes().div_ceil(4),
        _code: Code(Some(module)),
    })
}

fn kernel_signature(module: &JITModule) -> Signature {
    let ptr = module.target_config().pointer_type();
    let mut sig = module.make_signature();
    sig.params.extend([AbiParam::new(ptr); 5]);
    sig
}

/// The imported [`CALLED`] helpers, in that order.
fn declare_math(module: &mut JITModule) -> Result<[FuncId; CALLED.len()], CodegenError> {
    let mut sig = module.make_signature();
    sig.params.push(AbiParam::new(types::F32));
    sig.returns.push(AbiParam::new(types::F32));
    let mut ids = Vec::with_capacity(CALLED.len());
    for (_, name, _) in CALLED {
        ids.push(module.declare_function(name, Linkage::Import, &sig).map_err(backend_err)?);
    }
    Ok(ids.try_into().expect("one id per helper"))
}

/// A kernel's CLIF, for tests and debugging.
#[derive(Debug, Clone)]
pub struct KernelClif {
    /// As this backend emits it.
    pub clif: String,
    /// After Cranelift's optimiser (egraph: GVN, LICM, constant folding).
    pub optimized: String,
    /// Opcode names of each innermost loop (blocks of loops containing no other loop),
    /// before optimisation.
    pub innermost_loops: Vec<Vec<String>>,
    /// The same after optimisation.
    pub innermost_loops_optimized: Vec<Vec<String>>,
    /// The host machine code, as Cranelift's disassembly of its lowered code.
    pub asm: String,
}

/// Builds kernel `k` of `program` and returns its CLIF (see [`KernelClif`]).
pub fn inspect(program: &Program, k: usize) -> Result<KernelClif, CodegenError> {
    let kernel = program.kernels.get(k).ok_or_else(|| CodegenError::Invalid(format!("no kernel k{k}")))?;
    let isa = host_isa()?;
    let mut module = JITModule::new(JITBuilder::with_isa(isa, default_libcall_names()));
    let math = declare_math(&mut module)?;
    let sig = kernel_signature(&module);
    let id = module.declare_function("k", Linkage::Local, &sig).map_err(backend_err)?;
    let offsets = ConstBlob::new(program).offsets;
    let mut fctx = FunctionBuilderContext::new();
    let func = build_function(program, kernel, &offsets, sig, id, module.target_config(), &mut fctx, |f| {
        math.map(|id| module.declare_func_in_func(id, f))
    });
    let mut ctx = Context::for_function(func);
    let clif = ctx.func.display().to_string();
    let innermost_loops = innermost_loop_ops(&mut ctx);
    ctx.optimize(module.isa(), &mut ControlPlane::default()).map_err(|e| backend_err(format!("{e:?}")))?;
    let optimized = ctx.func.display().to_string();
    let innermost_loops_optimized = innermost_loop_ops(&mut ctx);
    ctx.set_disasm(true);
    let asm = ctx
        .compile(module.isa(), &mut ControlPlane::default())
        .map_err(|e| backend_err(format!("{:?}", e.inner)))?
        .vcode
        .clone()
        .unwrap_or_default();
    Ok(KernelClif { asm, clif, optimized, innermost_loops, innermost_loops_optimized })
}

fn innermost_loop_ops(ctx: &mut Context) -> Vec<Vec<String>> {
    ctx.compute_cfg();
    ctx.compute_domtree();
    ctx.compute_loop_analysis();
    let la = &ctx.loop_analysis;
    let loops: Vec<_> = la.loops().collect();
    let inner: Vec<_> =
        loops.iter().copied().filter(|&l| !loops.iter().any(|&c| la.loop_parent(c) == Some(l))).collect();
    inner
        .into_iter()
        .map(|l| {
            let mut ops = Vec::new();
            for block in ctx.func.layout.blocks() {
                if la.innermost_loop(block) == Some(l) {
                    for inst in ctx.func.layout.block_insts(block) {
                        ops.push(ctx.func.dfg.insts[inst].opcode().to_string());
                    }
                }
            }
            ops
        })
        .collect()
}

/// Flags of an access to `buf`: never trapping (the program is verified); aligned to
/// the element (not to 16 bytes for vectors); the input and the tables are never
/// written while a kernel runs, so their loads may be hoisted out of loops.
fn mem_flags(buf: Buf, vector: bool) -> MemFlagsData {
    let f = if vector { MemFlagsData::new().with_notrap() } else { MemFlagsData::trusted() };
    match buf {
        Buf::Arena | Buf::Q8 => f,
        Buf::Input | Buf::Const(_) => f.with_readonly().with_can_move(),
    }
}

/// The per-loop state: the trip counter and one induction variable per byte stride.
struct LoopVars {
    strides: Vec<(i64, Variable)>,
}

struct Translator<'a, 'b> {
    b: FunctionBuilder<'b>,
    program: &'a Program,
    table_offsets: &'a [usize],
    locals: Vec<Variable>,
    local_tys: &'a [Ty],
    loops: Vec<Option<LoopVars>>,
    /// `input`, `arena`, `consts`, `part`, `parts`.
    params: [Value; 5],
    /// The [`CALLED`] helpers, in that order.
    math: [ir::FuncRef; CALLED.len()],
    ptr: ir::Type,
}

#[allow(clippy::too_many_arguments)]
fn build_function(
    program: &Program,
    kernel: &Kernel,
    table_offsets: &[usize],
    sig: Signature,
    id: FuncId,
    target: TargetFrontendConfig,
    fctx: &mut FunctionBuilderContext,
    declare_math: impl FnOnce(&mut Function) -> [ir::FuncRef; CALLED.len()],
) -> Function {
    let ptr = sig.params[0].value_type;
    let mut func = Function::with_name_signature(UserFuncName::user(0, id.as_u32()), sig);
    let math = declare_math(&mut func);
    let mut b = FunctionBuilder::new(&mut func, fctx);
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    let p = b.block_params(entry);
    let params = [p[0], p[1], p[2], p[3], p[4]];
    let locals = kernel
        .locals
        .iter()
        .map(|t| {
            b.declare_var(match t {
                Ty::F32 => types::F32,
                Ty::I32 => types::I32,
                Ty::F32x4 => types::F32X4,
                Ty::I16x8 => types::I16X8,
                Ty::I32x4 => types::I32X4,
            })
        })
        .collect();
    let mut tx = Translator {
        b,
        program,
        table_offsets,
        locals,
        local_tys: &kernel.locals,
        loops: (0..kernel.vars).map(|_| None).collect(),
        params,
        math,
        ptr,
    };
    tx.block(&kernel.body);
    tx.b.ins().return_(&[]);
    tx.b.seal_all_blocks();
    tx.b.finalize(target);
    func
}

/// Byte strides (`coeff · elem_bytes`) of `var` in the indices of `body`.
fn strides_of(program: &Program, body: &[Stmt], var: Var, out: &mut BTreeSet<i64>) {
    let add = |out: &mut BTreeSet<i64>, buf: Buf, index: &Index| {
        for &(v, c) in &index.terms {
            if v == var {
                out.insert(c * program.buf_elem(buf).bytes() as i64);
            }
        }
    };
    for st in body {
        match st {
            Stmt::Assign { expr: Expr::Load { buf, index } | Expr::LoadVec { buf, index }, .. } => {
                add(out, *buf, index)
            }
            Stmt::Store { buf, index, .. } => add(out, *buf, index),
            Stmt::Loop(l) => strides_of(program, &l.body, var, out),
            Stmt::Assign { .. } => {}
        }
    }
}

impl Translator<'_, '_> {
    fn block(&mut self, body: &[Stmt]) {
        for st in body {
            match st {
                Stmt::Assign { dst, expr } => {
                    let v = self.expr(expr, self.local_tys[dst.0 as usize]);
                    self.b.def_var(self.locals[dst.0 as usize], v);
                }
                Stmt::Store { buf, index, value } => {
                    let vector = self.ty(*value).is_vector();
                    let v = self.operand(*value);
                    let (addr, off) = self.address(*buf, index);
                    let flags = mem_flags(*buf, vector);
                    match self.program.buf_elem(*buf) {
                        Elem::I8 | Elem::U8 => self.b.ins().istore8(flags, v, addr, off),
                        _ => self.b.ins().store(flags, v, addr, off),
                    };
                }
                Stmt::Loop(l) => self.emit_loop(l),
            }
        }
    }

    fn operand(&mut self, o: Operand) -> Value {
        match o {
            Operand::Local(l) => self.b.use_var(self.locals[l.0 as usize]),
            Operand::F32(v) => self.b.ins().f32const(v),
            Operand::I32(v) => self.b.ins().iconst(types::I32, v as i64),
        }
    }
    fn ty(&self, o: Operand) -> Ty {
        match o {
            Operand::F32(_) => Ty::F32,
            Operand::I32(_) => Ty::I32,
            Operand::Local(l) => self.local_tys[l.0 as usize],
        }
    }

    fn is_f32(&self, o: Operand) -> bool {
        self.ty(o).is_float()
    }

    /// The value of `e`, assigned to a local of type `dst`.
    fn expr(&mut self, e: &Expr, dst: Ty) -> Value {
        match e {
            Expr::Copy(o) => self.operand(*o),
            Expr::Load { buf, index } => {
                let (addr, off) = self.address(*buf, index);
                let flags = mem_flags(*buf, false);
                match self.program.buf_elem(*buf) {
                    Elem::F32 => self.b.ins().load(types::F32, flags, addr, off),
                    Elem::I32 => self.b.ins().load(types::I32, flags, addr, off),
                    Elem::U8 => self.b.ins().uload8(types::I32, flags, addr, off),
                    Elem::I8 => self.b.ins().sload8(types::I32, flags, addr, off),
                }
            }
            Expr::LoadVec { buf, index } => {
                let (addr, off) = self.address(*buf, index);
                let flags = mem_flags(*buf, true);
                match self.program.buf_elem(*buf) {
                    // 8 bytes, each sign-extended to an i16 lane (pmovsxbw / sxtl)
                    Elem::I8 => self.b.ins().sload8x8(flags, addr, off),
                    _ => self.b.ins().load(types::F32X4, flags, addr, off),
                }
            }
            Expr::Splat(o) => {
                let v = self.operand(*o);
                match dst {
                    Ty::I16x8 => {
                        let v = self.b.ins().ireduce(types::I16, v);
                        self.b.ins().splat(types::I16X8, v)
                    }
                    Ty::I32x4 => self.b.ins().splat(types::I32X4, v),
                    _ => self.b.ins().splat(types::F32X4, v),
                }
            }
            Expr::Widen { v, high } => {
                let v = self.operand(*v);
                match high {
                    false => self.b.ins().swiden_low(v),
                    true => self.b.ins().swiden_high(v),
                }
            }
            Expr::Convert(a) => {
                let v = self.operand(*a);
                match dst {
                    Ty::F32 => self.b.ins().fcvt_from_sint(types::F32, v),
                    Ty::F32x4 => self.b.ins().fcvt_from_sint(types::F32X4, v),
                    // verified: an integral f32 (saturating, so it can never trap)
                    _ => self.b.ins().fcvt_to_sint_sat(types::I32, v),
                }
            }
            Expr::Extract { v, lane } => {
                let v = self.operand(*v);
                self.b.ins().extractlane(v, *lane)
            }
            Expr::Unary { op: UnOp::Neg, a } => {
                let a = self.operand(*a);
                self.b.ins().fneg(a)
            }
            Expr::Binary { op, a, b } => {
                let float = self.is_f32(*a);
                let (a, b) = (self.operand(*a), self.operand(*b));
                let ins = self.b.ins();
                match (op, float) {
                    (BinOp::Add, true) => ins.fadd(a, b),
                    (BinOp::Sub, true) => ins.fsub(a, b),
                    (BinOp::Mul, true) => ins.fmul(a, b),
                    (BinOp::Div, true) => ins.fdiv(a, b),
                    (BinOp::Max, true) => ins.fmax(a, b),
                    (BinOp::Min, true) => ins.fmin(a, b),
                    (BinOp::Add, false) => ins.iadd(a, b),
                    (BinOp::Sub, false) => ins.isub(a, b),
                    (BinOp::Mul, false) => ins.imul(a, b),
                    (BinOp::Max, false) => ins.smax(a, b),
                    (BinOp::Min, false) => ins.smin(a, b),
                    (BinOp::Div, false) => unreachable!("rejected by Program::verify"),
                }
            }
            Expr::Select { cmp, lhs, rhs, then, otherwise } => {
                let float = self.is_f32(*lhs);
                let (l, r) = (self.operand(*lhs), self.operand(*rhs));
                let c = if float {
                    let cc = match cmp {
                        Cmp::Gt => FloatCC::GreaterThan,
                        Cmp::Ge => FloatCC::GreaterThanOrEqual,
                        Cmp::Lt => FloatCC::LessThan,
                        Cmp::Le => FloatCC::LessThanOrEqual,
                        Cmp::Eq => FloatCC::Equal,
                        Cmp::Ne => FloatCC::NotEqual,
                    };
                    self.b.ins().fcmp(cc, l, r)
                } else {
                    let cc = match cmp {
                        Cmp::Gt => IntCC::SignedGreaterThan,
                        Cmp::Ge => IntCC::SignedGreaterThanOrEqual,
                        Cmp::Lt => IntCC::SignedLessThan,
                        Cmp::Le => IntCC::SignedLessThanOrEqual,
                        Cmp::Eq => IntCC::Equal,
                        Cmp::Ne => IntCC::NotEqual,
                    };
                    self.b.ins().icmp(cc, l, r)
                };
                let vector = self.ty(*then) == Ty::F32x4;
                let (t, o) = (self.operand(*then), self.operand(*otherwise));
                if vector {
                    // fcmp on f32x4 gives an all-ones/all-zeros i32x4 lane mask
                    let little = MemFlagsData::new().with_endianness(ir::Endianness::Little);
                    let mask = self.b.ins().bitcast(types::F32X4, little, c);
                    self.b.ins().bitselect(mask, t, o)
                } else {
                    self.b.ins().select(c, t, o)
                }
            }
            Expr::Insert { v, lane, x } => {
                let (v, x) = (self.operand(*v), self.operand(*x));
                self.b.ins().insertlane(v, x, *lane)
            }
            Expr::Call { f: MathFn::Floor, arg } => {
                let a = self.operand(*arg);
                self.b.ins().floor(a)
            }
            Expr::Call { f: MathFn::Rint, arg } => {
                let a = self.operand(*arg);
                self.b.ins().nearest(a)
            }
            Expr::Call { f, arg } => {
                let a = self.operand(*arg);
                let k = CALLED.iter().position(|c| c.0 == *f).expect("every other helper is called");
                let call = self.b.ins().call(self.math[k], &[a]);
                self.b.inst_results(call)[0]
            }
        }
    }

    /// `(address, immediate offset)` of `buf[index]`.
    fn address(&mut self, buf: Buf, index: &Index) -> (Value, i32) {
        let eb = self.program.buf_elem(buf).bytes() as i64;
        let (base, mut off) = match buf {
            Buf::Input => (self.params[0], 0),
            Buf::Arena => (self.params[1], 0),
            Buf::Const(t) => (self.params[2], self.table_offsets[t] as i64),
            Buf::Q8 => (self.params[1], self.program.q8_offset() as i64),
        };
        off += index.offset * eb;
        let mut addr = base;
        for &(v, c) in &index.terms {
            let lv = self.loops[v.0 as usize].as_ref().expect("verified: enclosing loop");
            let var = lv.strides.iter().find(|s| s.0 == c * eb).expect("collected before the loop").1;
            let s = self.b.use_var(var);
            addr = self.b.ins().iadd(addr, s);
        }
        if let Some(d) = index.dynamic {
            let d = self.b.use_var(self.locals[d.0 as usize]);
            let mut d = self.b.ins().sextend(self.ptr, d);
            if eb > 1 {
                d = self.b.ins().ishl_imm_u(d, eb.trailing_zeros() as i64);
            }
            addr = self.b.ins().iadd(addr, d);
        }
        match i32::try_from(off) {
            Ok(off) => (addr, off),
            Err(_) => (self.b.ins().iadd_imm_s(addr, off), 0),
        }
    }

    /// `value · k` without a multiply when `k` is a power of two.
    fn times(&mut self, value: Value, k: i64) -> Value {
        if k > 0 && (k as u64).is_power_of_two() {
            self.b.ins().ishl_imm_u(value, k.trailing_zeros() as i64)
        } else {
            self.b.ins().imul_imm_s(value, k)
        }
    }

    fn bound(&mut self, b: Bound) -> Value {
        match b {
            Bound::Const(c) => self.b.ins().iconst(self.ptr, c),
            Bound::Local(l) => {
                let v = self.b.use_var(self.locals[l.0 as usize]);
                self.b.ins().sextend(self.ptr, v)
            }
        }
    }

    /// This call's share of a parallel loop of `n` iterations: iterations
    /// `[n·part/parts, n·(part+1)/parts)`, as loop-variable values.
    fn share(&mut self, l: &Loop, n: i64) -> (Value, Value) {
        let Bound::Const(first) = l.start else {
            unreachable!("the verifier rejects table-bound parallel loops")
        };
        let [.., part, parts] = self.params;
        let at = |tx: &mut Self, k: Value| {
            let i = tx.b.ins().imul_imm_s(k, n);
            let i = tx.b.ins().udiv(i, parts);
            let i = tx.b.ins().imul_imm_s(i, l.step);
            tx.b.ins().iadd_imm_s(i, first)
        };
        let start = at(self, part);
        let next = self.b.ins().iadd_imm_s(part, 1);
        let end = at(self, next);
        (start, end)
    }

    fn emit_loop(&mut self, l: &Loop) {
        let trips = l.const_trips();
        if trips == Some(0) {
            return;
        }
        let ptr = self.ptr;
        let (start, end) = match trips {
            Some(n) if l.parallel => self.share(l, n),
            _ => (self.bound(l.start), self.bound(l.end)),
        };
        let counter = self.b.declare_var(ptr);
        self.b.def_var(counter, start);
        let mut set = BTreeSet::new();
        strides_of(self.program, &l.body, l.var, &mut set);
        let mut strides = Vec::with_capacity(set.len());
        for stride in set {
            let var = self.b.declare_var(ptr);
            let init = match l.start {
                Bound::Const(s) if !l.parallel => self.b.ins().iconst(ptr, s * stride),
                _ => self.times(start, stride),
            };
            self.b.def_var(var, init);
            strides.push((stride, var));
        }
        let body = self.b.create_block();
        let exit = self.b.create_block();
        if trips.is_none() || l.parallel {
            let go = self.b.ins().icmp(IntCC::SignedLessThan, start, end);
            self.b.ins().brif(go, body, &[], exit, &[]);
        } else {
            self.b.ins().jump(body, &[]);
        }
        self.b.switch_to_block(body);
        let slot = l.var.0 as usize;
        self.loops[slot] = Some(LoopVars { strides: strides.clone() });
        self.block(&l.body);
        self.loops[slot] = None;
        // latch
        let c = self.b.use_var(counter);
        let next = self.b.ins().iadd_imm_s(c, l.step);
        self.b.def_var(counter, next);
        for (stride, var) in strides {
            let v = self.b.use_var(var);
            let v = self.b.ins().iadd_imm_s(v, stride * l.step);
            self.b.def_var(var, v);
        }
        let go = self.b.ins().icmp(IntCC::SignedLessThan, next, end);
        self.b.ins().brif(go, body, &[], exit, &[]);
        self.b.switch_to_block(exit);
    }
}
