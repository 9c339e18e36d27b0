//! The LLVM backend (inkwell, LLVM 14): a whole [`Program`] becomes one relocatable,
//! position-independent ELF object for the host, x86_64 or aarch64, with a C API.
//!
//! # What the object holds
//!
//! - every constant table as a private constant global (64-byte aligned; `u8` tables
//!   stay packed, one byte an element);
//! - one internal function per kernel, `void kN(const float *input, float *arena,
//!   int64_t part, int64_t parts)`, with the same semantics as the Cranelift backend
//!   (`crate::cranelift`): compiled for more than one thread, its parallel loops run
//!   only part `part` of `parts` of their iterations; single-threaded, they run all
//!   of them (and the last two arguments are unused). Kernels are `noinline` so each
//!   keeps its own symbol (`NAME_kN_<kernel name>`), which the instruction-mix tests
//!   and profilers rely on;
//! - `size_t NAME_workspace_size(void)`, `size_t NAME_output_size(int i)`,
//!   `int NAME_run(const float *input, float *const *outputs, void *workspace)` and
//!   `int NAME_detect(const float *input, void *workspace, float thresh, float nms,
//!   NAME_box *boxes, int max_boxes)`; see [`header`] for the C declarations.
//!
//! The workspace is the kernels' arena (the memory plan's layer outputs, then
//! scratch), then the int8 activations `q8` at [`Program::q8_offset`] (W2A8 programs
//! only), then, for `detect`, room for candidate boxes and their order. Nothing
//! else is written: no globals, no allocation, so the functions are reentrant.
//!
//! # Threads
//!
//! [`compile`] makes a single-threaded object that needs only libc and libm.
//! [`compile_threaded`] with `threads > 1` (`ternc compile --threads N`) runs every
//! kernel that has parallel loops ([`Kernel::is_parallel`]) as `threads` parts:
//! `pthread_create` for parts 1.., part 0 on the calling thread, `pthread_join` of
//! all before the next kernel. The threads' arguments live in arrays on the calling
//! thread's stack, so the functions stay reentrant, without globals or allocation;
//! a part whose thread cannot be created runs on the calling thread. Such an object
//! needs `-lpthread` (glibc before 2.34; its header says so).
//!
//! # The translation
//!
//! Locals and loop counters are `alloca`s (LLVM's SROA/mem2reg make them SSA
//! values); an index `offset + Σ c·iN (+ %d)` is computed in `i64` and used by an
//! in-bounds GEP on the buffer's element type; loops get a guard only when their
//! bounds come from a table. `max`/`min` are `llvm.maxnum`/`llvm.minnum` (Rust's
//! `f32::max`/`min`), floor is `llvm.floor`, rint is `llvm.rint` (ties to even in the
//! default rounding mode), and `expf`, `tanhf`, `log1pf` are calls to libm (which may
//! differ from Rust's by an ulp). No fast-math flags: LLVM never reassociates or
//! contracts, so sums are added in the program's order.
//!
//! Int8 activations: `q8` is the workspace's bytes from [`Program::q8_offset`]; a byte
//! loads sign-extended, an `i32` stores its low byte; an `i16x8` load is
//! `load <8 x i8>` (align 1) then `sext` (one `pmovsxbw` / `sshll`), `widen` a
//! `shufflevector` of one half then `sext`, `convert` `sitofp` / `fptosi`.
//!
//! # Detection
//!
//! `NAME_detect` runs the network, then decodes every `[yolo]` / `[region]` head as
//! `ternc_runtime::detect` does (cells row-major, anchors within a cell, objectness
//! `> thresh` first, then `objectness·p(class) > thresh`), keeping boxes relative to
//! the network input (`x0, y0, x1, y1` in 0..1, not clipped), sorts the candidates by
//! score (then class, then decode order), and applies per-class greedy NMS: a box is
//! dropped when its IoU with a kept box of its class is above `nms`. At most
//! [`MAX_CANDIDATES`] candidates are considered.

use std::path::Path;

use inkwell::attributes::{Attribute, AttributeLoc};
use inkwell::builder::Builder;
use inkwell::context::Context;
use inkwell::intrinsics::Intrinsic;
use inkwell::module::{Linkage, Module};
use inkwell::passes::PassBuilderOptions;
use inkwell::targets::{
    CodeModel, FileType, InitializationConfig, RelocMode, Target, TargetMachine, TargetTriple,
};
use inkwell::types::{BasicType, BasicTypeEnum, VectorType};
use inkwell::values::{
    BasicMetadataValueEnum, BasicValue, BasicValueEnum, FloatValue, FunctionValue, IntValue, PointerValue,
};
use inkwell::{AddressSpace, FloatPredicate, IntPredicate, OptimizationLevel};
use ternc_ir::{Graph, Op};

use crate::program::*;
use crate::CodegenError;

const BACKEND: &str = "llvm";

/// Candidate boxes `NAME_detect` considers at most (the rest are ignored).
pub const MAX_CANDIDATES: usize = 65536;

fn err(e: impl std::fmt::Display) -> CodegenError {
    CodegenError::Backend { backend: BACKEND, msg: e.to_string() }
}

/// What machine code is generated for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arch {
    /// The machine running the compiler (its CPU and features).
    Host,
    X86_64,
    Aarch64,
}

/// The CPU names LLVM 14 knows for aarch64 (`llc -mtriple=aarch64 -mcpu=help`).
pub const AARCH64_CPUS: &[&str] = &[
    "a64fx", "ampere1", "apple-a10", "apple-a11", "apple-a12", "apple-a13", "apple-a14", "apple-a7",
    "apple-a8", "apple-a9", "apple-latest", "apple-m1", "apple-s4", "apple-s5", "carmel", "cortex-a34",
    "cortex-a35", "cortex-a510", "cortex-a53", "cortex-a55", "cortex-a57", "cortex-a65", "cortex-a65ae",
    "cortex-a710", "cortex-a72", "cortex-a73", "cortex-a75", "cortex-a76", "cortex-a76ae", "cortex-a77",
    "cortex-a78", "cortex-a78c", "cortex-r82", "cortex-x1", "cortex-x1c", "cortex-x2", "cyclone",
    "exynos-m3", "exynos-m4", "exynos-m5", "falkor", "generic", "kryo", "neoverse-512tvb", "neoverse-e1",
    "neoverse-n1", "neoverse-n2", "neoverse-v1", "saphira", "thunderx", "thunderx2t99", "thunderx3t110",
    "thunderxt81", "thunderxt83", "thunderxt88", "tsv110",
];

/// The CPU names LLVM 14 knows for x86_64.
pub const X86_64_CPUS: &[&str] = &[
    "alderlake", "amdfam10", "athlon", "athlon-4", "athlon-fx", "athlon-mp", "athlon-tbird", "athlon-xp",
    "athlon64", "athlon64-sse3", "atom", "barcelona", "bdver1", "bdver2", "bdver3", "bdver4", "bonnell",
    "broadwell", "btver1", "btver2", "c3", "c3-2", "cannonlake", "cascadelake", "cooperlake", "core-avx-i",
    "core-avx2", "core2", "corei7", "corei7-avx", "generic", "geode", "goldmont", "goldmont-plus", "haswell",
    "i386", "i486", "i586", "i686", "icelake-client", "icelake-server", "ivybridge", "k6", "k6-2", "k6-3",
    "k8", "k8-sse3", "knl", "knm", "lakemont", "nehalem", "nocona", "opteron", "opteron-sse3", "penryn",
    "pentium", "pentium-m", "pentium-mmx", "pentium2", "pentium3", "pentium3m", "pentium4", "pentium4m",
    "pentiumpro", "prescott", "rocketlake", "sandybridge", "sapphirerapids", "silvermont", "skx", "skylake",
    "skylake-avx512", "slm", "tigerlake", "tremont", "westmere", "winchip-c6", "winchip2", "x86-64",
    "x86-64-v2", "x86-64-v3", "x86-64-v4", "yonah", "znver1", "znver2", "znver3",
];

/// A target: architecture and CPU (`None`: x86-64-v3 for x86_64, `generic` — NEON
/// baseline — for aarch64; `native` means the host's CPU).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSpec {
    pub arch: Arch,
    pub cpu: Option<String>,
}

impl TargetSpec {
    pub fn host() -> Self {
        TargetSpec { arch: Arch::Host, cpu: None }
    }

    fn machine(&self) -> Result<TargetMachine, CodegenError> {
        let config = InitializationConfig::default();
        let (triple, default_cpu) = match self.arch {
            Arch::Host => {
                Target::initialize_native(&config).map_err(err)?;
                (TargetMachine::get_default_triple(), None)
            }
            Arch::X86_64 => {
                Target::initialize_x86(&config);
                (TargetTriple::create("x86_64-unknown-linux-gnu"), Some("x86-64-v3"))
            }
            Arch::Aarch64 => {
                Target::initialize_aarch64(&config);
                (TargetTriple::create("aarch64-unknown-linux-gnu"), Some("generic"))
            }
        };
        let native = self.arch == Arch::Host && self.cpu.is_none() || self.cpu.as_deref() == Some("native");
        let (cpu, features) = if native {
            (
                TargetMachine::get_host_cpu_name().to_string(),
                TargetMachine::get_host_cpu_features().to_string(),
            )
        } else {
            (self.cpu.clone().unwrap_or_else(|| default_cpu.unwrap_or("generic").to_string()), String::new())
        };
        if !native {
            let known = match self.arch {
                Arch::Aarch64 => AARCH64_CPUS,
                Arch::X86_64 => X86_64_CPUS,
                Arch::Host if cfg!(target_arch = "aarch64") => AARCH64_CPUS,
                Arch::Host => X86_64_CPUS,
            };
            if !known.contains(&cpu.as_str()) {
                return Err(err(format!(
                    "unknown CPU '{cpu}' for {}: one of native, {}",
                    triple.as_str().to_string_lossy(),
                    known.join(", ")
                )));
            }
        }
        let target = Target::from_triple(&triple).map_err(err)?;
        target
            .create_target_machine(
                &triple,
                &cpu,
                &features,
                OptimizationLevel::Aggressive,
                RelocMode::PIC,
                CodeModel::Default,
            )
            .ok_or_else(|| {
                err(format!("no target machine for {} with CPU {cpu}", triple.as_str().to_string_lossy()))
            })
    }
}

/// A detection head `NAME_detect` decodes.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectHead {
    /// Darknet layer index (its output is `Program::layers[layer]`).
    pub layer: usize,
    /// Anchor slots per cell.
    pub n: usize,
    /// Channels per anchor slot.
    pub entries: usize,
    /// Entry of the objectness; the classes follow it.
    pub obj: usize,
    pub classes: usize,
    /// Anchor `(w, h)` of each slot, as a fraction of the network input (yolo) or of
    /// the grid (region): the box size is `exp(t)·anchor` (or `4t²·anchor` when
    /// `new_coords`).
    pub anchors: Vec<(f64, f64)>,
    pub new_coords: bool,
}

/// The detection heads of `graph` (`[yolo]` and `[region]` layers), in layer order.
pub fn detect_heads(graph: &Graph) -> Result<Vec<DetectHead>, CodegenError> {
    let [_, net_h, net_w] = graph.input_shape().to_array();
    let mut heads = Vec::new();
    for i in graph.heads() {
        let node = graph.layer(i);
        let [_, h, w] = node.shape.to_array();
        let bad = |what: String| CodegenError::Unsupported { layer: i, op: "detect", what };
        match &node.op {
            Op::Yolo(y) => {
                let anchors = y
                    .mask
                    .iter()
                    .map(|&m| match (y.anchors.get(2 * m), y.anchors.get(2 * m + 1)) {
                        (Some(&aw), Some(&ah)) => Ok((aw as f64 / net_w as f64, ah as f64 / net_h as f64)),
                        _ => Err(bad(format!("mask {m} without an anchor"))),
                    })
                    .collect::<Result<_, _>>()?;
                heads.push(DetectHead {
                    layer: i,
                    n: y.mask.len(),
                    entries: y.classes + 5,
                    obj: 4,
                    classes: y.classes,
                    anchors,
                    new_coords: y.new_coords,
                })
            }
            Op::Region(r) => {
                if r.coords < 4 {
                    return Err(bad(format!("coords={}", r.coords)));
                }
                let anchors = (0..r.num)
                    .map(|a| match (r.anchors.get(2 * a), r.anchors.get(2 * a + 1)) {
                        (Some(&aw), Some(&ah)) => Ok((aw as f64 / w as f64, ah as f64 / h as f64)),
                        _ => Err(bad(format!("anchor slot {a} without an anchor"))),
                    })
                    .collect::<Result<_, _>>()?;
                heads.push(DetectHead {
                    layer: i,
                    n: r.num,
                    entries: r.classes + r.coords + 1,
                    obj: r.coords,
                    classes: r.classes,
                    anchors,
                    new_coords: false,
                })
            }
            _ => {}
        }
    }
    Ok(heads)
}

/// The C identifier prefix of an output prefix: its basename in lower case with every
/// other character than `a-z0-9` as `_` (and `_` first if it starts with a digit).
pub fn c_name(prefix: &Path) -> String {
    c_ident(&prefix.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default())
}

fn c_ident(s: &str) -> String {
    let mut name: String =
        s.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    name
}

/// Workspace layout: the kernels' workspace (the arena, then `q8`:
/// [`Program::workspace_bytes`], rounded to 64), then the candidates (`6 × f32` each),
/// then their order (`i32` each).
pub(crate) struct Workspace {
    /// Bytes of the arena and `q8`, rounded to 64: where the candidates start.
    pub(crate) arena_bytes: u64,
    pub(crate) candidates: u64,
}

impl Workspace {
    pub(crate) fn new(program: &Program, heads: &[DetectHead]) -> Workspace {
        let arena_bytes = (program.workspace_bytes() as u64).div_ceil(64) * 64;
        let total: u64 = heads
            .iter()
            .map(|h| {
                let [_, hh, ww] = program.layers[h.layer].shape;
                (hh * ww * h.n * h.classes) as u64
            })
            .sum();
        Workspace { arena_bytes, candidates: total.min(MAX_CANDIDATES as u64) }
    }
    pub(crate) fn order_offset(&self) -> u64 {
        self.arena_bytes + self.candidates * 24
    }
    pub(crate) fn bytes(&self) -> u64 {
        self.order_offset() + self.candidates * 4
    }
}

/// An object file's text and figures.
#[derive(Debug, Clone)]
pub struct Object {
    /// The ELF relocatable object.
    pub bytes: Vec<u8>,
    /// The C header declaring its API.
    pub header: String,
    pub workspace_bytes: u64,
    /// Wall time of building the IR, LLVM's O3 pipeline, and code generation.
    pub timings: [std::time::Duration; 3],
}

/// Threads an object may split a kernel into at most (`compile_threaded`).
pub const MAX_THREADS: usize = 1024;

/// Compiles `program` (with `heads` for `NAME_detect`) into an object file for
/// `target`, exporting `NAME_run` etc. Single-threaded: needs only libc and libm.
pub fn compile(
    program: &Program,
    heads: &[DetectHead],
    name: &str,
    target: &TargetSpec,
) -> Result<Object, CodegenError> {
    compile_threaded(program, heads, name, target, 1)
}

/// [`compile`], with `NAME_run` and `NAME_detect` running each kernel that has
/// parallel loops on `threads` threads (1..=[`MAX_THREADS`]; 1: no threads, as
/// [`compile`]). More than one thread needs pthreads (see the [module docs](self)).
pub fn compile_threaded(
    program: &Program,
    heads: &[DetectHead],
    name: &str,
    target: &TargetSpec,
    threads: usize,
) -> Result<Object, CodegenError> {
    if !(1..=MAX_THREADS).contains(&threads) {
        return Err(CodegenError::Invalid(format!("{threads} threads: 1 to {MAX_THREADS}")));
    }
    crate::c::check_heads(program, heads)?;
    let machine = target.machine()?;
    let t0 = std::time::Instant::now();
    let context = Context::create();
    let module = build_module(&context, program, heads, name, threads)?;
    module.set_triple(&machine.get_triple());
    module.set_data_layout(&machine.get_target_data().get_data_layout());
    module.verify().map_err(|e| err(e.to_string()))?;
    let t1 = std::time::Instant::now();
    module
        .run_passes("default<O3>", &machine, PassBuilderOptions::create())
        .map_err(|e| err(e.to_string()))?;
    let t2 = std::time::Instant::now();
    let buf = machine.write_to_memory_buffer(&module, FileType::Object).map_err(|e| err(e.to_string()))?;
    let ws = Workspace::new(program, heads);
    Ok(Object {
        bytes: buf.as_slice().to_vec(),
        header: header_threaded(program, name, threads),
        workspace_bytes: ws.bytes(),
        timings: [t1 - t0, t2 - t1, t2.elapsed()],
    })
}

/// The textual LLVM IR of the module before optimisation (for debugging and tests).
pub fn llvm_ir(program: &Program, heads: &[DetectHead], name: &str) -> Result<String, CodegenError> {
    let context = Context::create();
    let module = build_module(&context, program, heads, name, 1)?;
    module.verify().map_err(|e| err(e.to_string()))?;
    Ok(module.print_to_string().to_string())
}

/// The C header of an object compiled with `name`.
pub fn header(program: &Program, name: &str) -> String {
    header_threaded(program, name, 1)
}

/// The C header of an object compiled with `name` for `threads` threads: beyond one,
/// it says to link with `-lpthread` and defines `UNAME_THREADS`.
pub fn header_threaded(program: &Program, name: &str, threads: usize) -> String {
    let text = header_text(program, name);
    if threads <= 1 {
        return text;
    }
    let u = name.to_ascii_uppercase();
    text.replacen(
        "needs only libc and libm. */",
        &format!(
            "needs libc, libm and pthreads: link with -lpthread.\n   \
             Built with --threads {threads}: {name}_run and {name}_detect run each parallel kernel on\n   \
             {threads} threads (pthread_create, then join; a part whose thread cannot be created runs\n   \
             on the calling thread). */"
        ),
        1,
    )
    .replacen(
        &format!("#define {u}_NUM_OUTPUTS"),
        &format!("#define {u}_THREADS {threads}\n#define {u}_NUM_OUTPUTS"),
        1,
    )
}

fn header_text(program: &Program, name: &str) -> String {
    let u = name.to_ascii_uppercase();
    let [c, h, w] = program.input_shape;
    let guard = format!("{u}_H");
    let outputs: Vec<String> = program
        .outputs
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            let [c, h, w] = program.layers[l].shape;
            format!(" *   output {i}: layer {l} ({}), [{c}, {h}, {w}]\n", program.layers[l].kind)
        })
        .collect();
    format!(
        "/* {name}: generated by ternc from \"{model}\"; needs only libc and libm. */\n\
         #ifndef {guard}\n#define {guard}\n\n#include <stddef.h>\n\n#ifdef __cplusplus\nextern \"C\" {{\n#endif\n\n\
         #define {u}_INPUT_C {c}\n#define {u}_INPUT_H {h}\n#define {u}_INPUT_W {w}\n\
         #define {u}_NUM_OUTPUTS {n}\n\n\
         /* Outputs, in layer order (as Darknet defines them, after their activations):\n{outs} */\n\n\
         /* Bytes of the workspace {name}_run and {name}_detect need (aligned for float). */\n\
         size_t {name}_workspace_size(void);\n\
         /* Floats in output i (0 for i out of range). */\n\
         size_t {name}_output_size(int i);\n\
         /* Runs the network on input [C,H,W] (RGB, 0..1, at the network size) and copies\n   \
         each output into outputs[i]. Returns 0. Reentrant: all state is in workspace. */\n\
         int {name}_run(const float *input, float *const *outputs, void *workspace);\n\n\
         /* A detection, relative to the network input (0..1). */\n\
         typedef struct {{ float x0, y0, x1, y1, score; int cls; }} {name}_box;\n\n\
         /* Runs the network, decodes its heads (objectness and class score > thresh) and\n   \
         applies per-class NMS (IoU > nms suppresses). Writes at most max_boxes boxes,\n   \
         best first; returns how many. */\n\
         int {name}_detect(const float *input, void *workspace, float thresh, float nms,\n                 \
         {name}_box *boxes, int max_boxes);\n\n\
         #ifdef __cplusplus\n}}\n#endif\n\n#endif /* {guard} */\n",
        model = program.name.replace("*/", "* /"),
        n = program.outputs.len(),
        outs = outputs.concat(),
    )
}

// ---------------------------------------------------------------------------
// Building the module

struct Cx<'ctx> {
    cx: &'ctx Context,
    module: Module<'ctx>,
    b: Builder<'ctx>,
}

/// Maps inkwell's builder errors.
trait Or<T> {
    fn or_err(self) -> Result<T, CodegenError>;
}

impl<T, E: std::fmt::Display> Or<T> for Result<T, E> {
    fn or_err(self) -> Result<T, CodegenError> {
        self.map_err(err)
    }
}

fn build_module<'ctx>(
    cx: &'ctx Context,
    program: &Program,
    heads: &[DetectHead],
    name: &str,
    threads: usize,
) -> Result<Module<'ctx>, CodegenError> {
    let c = Cx { cx, module: cx.create_module(name), b: cx.create_builder() };
    let f32t = cx.f32_type();
    let i8t = cx.i8_type();
    let i32t = cx.i32_type();
    let i64t = cx.i64_type();
    let gen = AddressSpace::default();

    // constant tables, as bytes
    let mut tables = Vec::with_capacity(program.consts.len());
    for (i, t) in program.consts.iter().enumerate() {
        let bytes = t.data.to_le_bytes();
        let init = cx.const_string(&bytes, false);
        let g = c.module.add_global(init.get_type(), Some(gen), &format!("{name}_c{i}"));
        g.set_initializer(&init);
        g.set_constant(true);
        g.set_linkage(Linkage::Private);
        g.set_unnamed_addr(true);
        g.set_alignment(64);
        let elem: BasicTypeEnum = match t.data.elem() {
            Elem::F32 => f32t.into(),
            Elem::I32 => i32t.into(),
            Elem::U8 | Elem::I8 => i8t.into(),
        };
        let ptr = g.as_pointer_value().const_cast(elem.ptr_type(gen));
        tables.push(ptr);
    }

    // kernels
    let fptr = f32t.ptr_type(gen);
    // (input, arena, part, parts)
    let kty = cx.void_type().fn_type(&[fptr.into(), fptr.into(), i64t.into(), i64t.into()], false);
    let noalias = cx.create_enum_attribute(Attribute::get_named_enum_kind_id("noalias"), 0);
    let nocapture = cx.create_enum_attribute(Attribute::get_named_enum_kind_id("nocapture"), 0);
    let readonly = cx.create_enum_attribute(Attribute::get_named_enum_kind_id("readonly"), 0);
    let noinline = cx.create_enum_attribute(Attribute::get_named_enum_kind_id("noinline"), 0);
    let nounwind = cx.create_enum_attribute(Attribute::get_named_enum_kind_id("nounwind"), 0);
    let mut kfns = Vec::with_capacity(program.kernels.len());
    for (k, kernel) in program.kernels.iter().enumerate() {
        let sym = format!("{name}_k{k}_{}", c_ident(&kernel.name).trim_start_matches('_'));
        let f = c.module.add_function(&sym, kty, Some(Linkage::Internal));
        for p in 0..2 {
            f.add_attribute(AttributeLoc::Param(p), noalias);
            f.add_attribute(AttributeLoc::Param(p), nocapture);
        }
        f.add_attribute(AttributeLoc::Param(0), readonly);
        f.add_attribute(AttributeLoc::Function, noinline);
        f.add_attribute(AttributeLoc::Function, nounwind);
        KernelTx::build(&c, program, kernel, f, &tables, threads > 1).map_err(|e| match e {
            CodegenError::Backend { backend, msg } => {
                CodegenError::Backend { backend, msg: format!("kernel k{k} \"{}\": {msg}", kernel.name) }
            }
            e => e,
        })?;
        kfns.push(f);
    }

    let ws = Workspace::new(program, heads);
    let size_t = i64t; // both targets are LP64
    let vptr = i8t.ptr_type(gen);

    // NAME_workspace_size
    let f = c.module.add_function(&format!("{name}_workspace_size"), size_t.fn_type(&[], false), None);
    f.add_attribute(AttributeLoc::Function, nounwind);
    c.b.position_at_end(cx.append_basic_block(f, "entry"));
    c.b.build_return(Some(&size_t.const_int(ws.bytes(), false))).or_err()?;

    // NAME_output_size
    let f =
        c.module.add_function(&format!("{name}_output_size"), size_t.fn_type(&[i32t.into()], false), None);
    f.add_attribute(AttributeLoc::Function, nounwind);
    let entry = cx.append_basic_block(f, "entry");
    let none = cx.append_basic_block(f, "none");
    c.b.position_at_end(none);
    c.b.build_return(Some(&size_t.const_zero())).or_err()?;
    let mut cases = Vec::new();
    for (i, &l) in program.outputs.iter().enumerate() {
        let bb = cx.append_basic_block(f, &format!("out{i}"));
        c.b.position_at_end(bb);
        c.b.build_return(Some(&size_t.const_int(program.layers[l].len() as u64, false))).or_err()?;
        cases.push((i32t.const_int(i as u64, false), bb));
    }
    c.b.position_at_end(entry);
    let arg = f.get_nth_param(0).expect("one parameter").into_int_value();
    c.b.build_switch(arg, none, &cases).or_err()?;

    // an internal function running every kernel: (input, arena)
    let all_ty = cx.void_type().fn_type(&[fptr.into(), fptr.into()], false);
    let all = c.module.add_function(&format!("{name}_kernels"), all_ty, Some(Linkage::Internal));
    all.add_attribute(AttributeLoc::Function, nounwind);
    build_kernels(&c, program, name, all, &kfns, threads)?;

    // NAME_run
    let run_ty = i32t.fn_type(&[fptr.into(), fptr.ptr_type(gen).into(), vptr.into()], false);
    let f = c.module.add_function(&format!("{name}_run"), run_ty, None);
    f.add_attribute(AttributeLoc::Function, nounwind);
    c.b.position_at_end(cx.append_basic_block(f, "entry"));
    let (input, outputs, ws_ptr) = (param_ptr(f, 0), param_ptr(f, 1), param_ptr(f, 2));
    let arena = c.b.build_pointer_cast(ws_ptr, fptr, "arena").or_err()?;
    c.b.build_call(all, &[input.into(), arena.into()], "").or_err()?;
    for (i, &l) in program.outputs.iter().enumerate() {
        let lay = &program.layers[l];
        // SAFETY (of the generated code): `outputs` has NUM_OUTPUTS entries (the API)
        let slot = unsafe { c.b.build_in_bounds_gep(outputs, &[i64t.const_int(i as u64, false)], "slot") }
            .or_err()?;
        let dst = c.b.build_load(slot, "dst").or_err()?.into_pointer_value();
        let src =
            unsafe { c.b.build_in_bounds_gep(arena, &[i64t.const_int(lay.offset as u64, false)], "src") }
                .or_err()?;
        c.b.build_memcpy(dst, 4, src, 4, i64t.const_int(lay.len() as u64 * 4, false)).or_err()?;
    }
    c.b.build_return(Some(&i32t.const_zero())).or_err()?;

    // NAME_detect
    build_detect(&c, program, heads, name, all, &ws)?;
    Ok(c.module)
}

fn param_ptr(f: FunctionValue<'_>, i: u32) -> PointerValue<'_> {
    f.get_nth_param(i).expect("declared parameter").into_pointer_value()
}

/// One kernel's translation.
struct KernelTx<'a, 'ctx> {
    c: &'a Cx<'ctx>,
    program: &'a Program,
    kernel: &'a Kernel,
    f: FunctionValue<'ctx>,
    tables: &'a [PointerValue<'ctx>],
    locals: Vec<PointerValue<'ctx>>,
    counters: Vec<PointerValue<'ctx>>,
    /// The value of each loop variable inside its loop.
    vars: Vec<Option<IntValue<'ctx>>>,
    input: PointerValue<'ctx>,
    arena: PointerValue<'ctx>,
    /// `q8`: the workspace's bytes from `Program::q8_offset` on.
    q8: PointerValue<'ctx>,
    /// Whether parallel loops run only the share of part `part` of `parts` (the
    /// kernel's last two arguments); else they run every iteration.
    threaded: bool,
}

impl<'a, 'ctx> KernelTx<'a, 'ctx> {
    fn build(
        c: &'a Cx<'ctx>,
        program: &'a Program,
        kernel: &'a Kernel,
        f: FunctionValue<'ctx>,
        tables: &'a [PointerValue<'ctx>],
        threaded: bool,
    ) -> Result<(), CodegenError> {
        let cx = c.cx;
        c.b.position_at_end(cx.append_basic_block(f, "entry"));
        let mut locals = Vec::with_capacity(kernel.locals.len());
        for (i, t) in kernel.locals.iter().enumerate() {
            let ty: BasicTypeEnum = match t {
                Ty::F32 => cx.f32_type().into(),
                Ty::I32 => cx.i32_type().into(),
                Ty::F32x4 => cx.f32_type().vec_type(4).into(),
                Ty::I16x8 => cx.i16_type().vec_type(8).into(),
                Ty::I32x4 => cx.i32_type().vec_type(4).into(),
            };
            locals.push(c.b.build_alloca(ty, &format!("l{i}")).or_err()?);
        }
        let counters = (0..kernel.vars)
            .map(|v| c.b.build_alloca(cx.i64_type(), &format!("i{v}")).or_err())
            .collect::<Result<_, _>>()?;
        let i8p = cx.i8_type().ptr_type(AddressSpace::default());
        let bytes = c.b.build_pointer_cast(param_ptr(f, 1), i8p, "ws").or_err()?;
        let q8_offset = cx.i64_type().const_int(program.q8_offset() as u64, false);
        // SAFETY (of the generated code): q8 lies inside the workspace (the API's size)
        let q8 = unsafe { c.b.build_in_bounds_gep(bytes, &[q8_offset], "q8") }.or_err()?;
        let mut tx = KernelTx {
            c,
            program,
            kernel,
            f,
            tables,
            locals,
            counters,
            vars: vec![None; kernel.vars as usize],
            input: param_ptr(f, 0),
            arena: param_ptr(f, 1),
            q8,
            threaded,
        };
        tx.block(&kernel.body)?;
        c.b.build_return(None).or_err()?;
        Ok(())
    }

    fn ty(&self, o: Operand) -> Ty {
        match o {
            Operand::F32(_) => Ty::F32,
            Operand::I32(_) => Ty::I32,
            Operand::Local(l) => self.kernel.locals[l.0 as usize],
        }
    }

    fn operand(&self, o: Operand) -> Result<BasicValueEnum<'ctx>, CodegenError> {
        Ok(match o {
            Operand::Local(l) => self.c.b.build_load(self.locals[l.0 as usize], "").or_err()?,
            Operand::F32(v) => self.c.cx.f32_type().const_float(v as f64).into(),
            Operand::I32(v) => self.c.cx.i32_type().const_int(v as i64 as u64, true).into(),
        })
    }

    fn block(&mut self, body: &[Stmt]) -> Result<(), CodegenError> {
        for st in body {
            match st {
                Stmt::Assign { dst, expr } => {
                    let v = self.expr(expr, self.kernel.locals[dst.0 as usize])?;
                    self.c.b.build_store(self.locals[dst.0 as usize], v).or_err()?;
                }
                Stmt::Store { buf, index, value } => {
                    let b = &self.c.b;
                    let mut v = self.operand(*value)?;
                    let mut p = self.address(*buf, index)?;
                    let elem = self.program.buf_elem(*buf);
                    if self.ty(*value).is_vector() {
                        p = b
                            .build_pointer_cast(p, v.get_type().ptr_type(AddressSpace::default()), "")
                            .or_err()?;
                    } else if elem.bytes() == 1 {
                        // an i32 into q8: its low 8 bits
                        v = b
                            .build_int_truncate(v.into_int_value(), self.c.cx.i8_type(), "")
                            .or_err()?
                            .into();
                    }
                    let st = b.build_store(p, v).or_err()?;
                    st.set_alignment(elem.bytes() as u32).or_err()?;
                }
                Stmt::Loop(l) => self.emit_loop(l)?,
            }
        }
        Ok(())
    }

    /// Pointer to `buf[index]`, typed as the buffer's element.
    fn address(&self, buf: Buf, index: &Index) -> Result<PointerValue<'ctx>, CodegenError> {
        let i64t = self.c.cx.i64_type();
        let b = &self.c.b;
        let base = match buf {
            Buf::Input => self.input,
            Buf::Arena => self.arena,
            Buf::Const(t) => self.tables[t],
            Buf::Q8 => self.q8,
        };
        let mut idx = i64t.const_int(index.offset as u64, true);
        for &(v, coeff) in &index.terms {
            let var = self.vars[v.0 as usize].ok_or_else(|| err(format!("{v} outside its loop")))?;
            let term = if coeff == 1 {
                var
            } else {
                b.build_int_nsw_mul(var, i64t.const_int(coeff as u64, true), "").or_err()?
            };
            idx = b.build_int_nsw_add(idx, term, "").or_err()?;
        }
        if let Some(d) = index.dynamic {
            let d = b.build_load(self.locals[d.0 as usize], "").or_err()?.into_int_value();
            let d = b.build_int_s_extend(d, i64t, "").or_err()?;
            idx = b.build_int_nsw_add(idx, d, "").or_err()?;
        }
        // SAFETY (of the generated code): the program is verified, every index is in
        // bounds of its buffer.
        unsafe { b.build_in_bounds_gep(base, &[idx], "") }.or_err()
    }

    fn intrinsic(&self, name: &str, ty: BasicTypeEnum<'ctx>) -> Result<FunctionValue<'ctx>, CodegenError> {
        Intrinsic::find(name)
            .and_then(|i| i.get_declaration(&self.c.module, &[ty]))
            .ok_or_else(|| err(format!("no intrinsic {name}")))
    }

    fn call1(
        &self,
        f: FunctionValue<'ctx>,
        args: &[BasicValueEnum<'ctx>],
    ) -> Result<BasicValueEnum<'ctx>, CodegenError> {
        let args: Vec<BasicMetadataValueEnum> = args.iter().map(|&a| a.into()).collect();
        self.c
            .b
            .build_call(f, &args, "")
            .or_err()?
            .try_as_basic_value()
            .basic()
            .ok_or_else(|| err("call without a value"))
    }

    fn libm(&self, name: &str) -> FunctionValue<'ctx> {
        self.c.module.get_function(name).unwrap_or_else(|| {
            let f32t = self.c.cx.f32_type();
            let f = self.c.module.add_function(
                name,
                f32t.fn_type(&[f32t.into()], false),
                Some(Linkage::External),
            );
            let nounwind = self.c.cx.create_enum_attribute(Attribute::get_named_enum_kind_id("nounwind"), 0);
            f.add_attribute(AttributeLoc::Function, nounwind);
            f
        })
    }

    /// The value of `e`, assigned to a local of type `dst` (which decides splats and
    /// conversions).
    fn expr(&mut self, e: &Expr, dst: Ty) -> Result<BasicValueEnum<'ctx>, CodegenError> {
        let b = &self.c.b;
        let cx = self.c.cx;
        let v4 = cx.f32_type().vec_type(4);
        let i32t = cx.i32_type();
        Ok(match e {
            Expr::Copy(o) => self.operand(*o)?,
            Expr::Widen { v, high } => {
                let v = self.operand(*v)?.into_vector_value();
                let first = if *high { 4 } else { 0 };
                let mask = VectorType::const_vector(
                    &(first..first + 4).map(|k| i32t.const_int(k, false)).collect::<Vec<_>>(),
                );
                let half = b.build_shuffle_vector(v, v.get_type().get_undef(), mask, "").or_err()?;
                b.build_int_s_extend(half, i32t.vec_type(4), "").or_err()?.into()
            }
            Expr::Convert(a) => {
                let a = self.operand(*a)?;
                match (a, dst) {
                    (BasicValueEnum::IntValue(x), Ty::F32) => {
                        b.build_signed_int_to_float(x, cx.f32_type(), "").or_err()?.into()
                    }
                    (BasicValueEnum::VectorValue(x), Ty::F32x4) => {
                        b.build_signed_int_to_float(x, v4, "").or_err()?.into()
                    }
                    // an integral f32 in range (the lowering clamps it first)
                    (BasicValueEnum::FloatValue(x), Ty::I32) => {
                        b.build_float_to_signed_int(x, i32t, "").or_err()?.into()
                    }
                    (a, t) => return Err(err(format!("conversion of {} to {t}", a.get_type()))),
                }
            }
            Expr::Load { buf, index } => {
                let p = self.address(*buf, index)?;
                let v = b.build_load(p, "").or_err()?;
                if let Some(i) = v.as_instruction_value() {
                    i.set_alignment(self.program.buf_elem(*buf).bytes() as u32).or_err()?;
                }
                match self.program.buf_elem(*buf) {
                    Elem::U8 => b.build_int_z_extend(v.into_int_value(), i32t, "").or_err()?.into(),
                    Elem::I8 => b.build_int_s_extend(v.into_int_value(), i32t, "").or_err()?.into(),
                    Elem::F32 | Elem::I32 => v,
                }
            }
            Expr::LoadVec { buf, index } => {
                let p = self.address(*buf, index)?;
                let elem = self.program.buf_elem(*buf);
                // f32x4, or 8 bytes of q8 sign-extended to i16x8 (pmovsxbw / sshll)
                let ty = match elem {
                    Elem::I8 => cx.i8_type().vec_type(8),
                    _ => v4,
                };
                let p = b.build_pointer_cast(p, ty.ptr_type(AddressSpace::default()), "").or_err()?;
                let v = b.build_load(p, "").or_err()?;
                if let Some(i) = v.as_instruction_value() {
                    i.set_alignment(elem.bytes() as u32).or_err()?;
                }
                match elem {
                    Elem::I8 => b
                        .build_int_s_extend(v.into_vector_value(), cx.i16_type().vec_type(8), "")
                        .or_err()?
                        .into(),
                    _ => v,
                }
            }
            Expr::Splat(o) => {
                let mut x = self.operand(*o)?;
                let ty = match dst {
                    Ty::I16x8 => {
                        x = b.build_int_truncate(x.into_int_value(), cx.i16_type(), "").or_err()?.into();
                        cx.i16_type().vec_type(8)
                    }
                    Ty::I32x4 => i32t.vec_type(4),
                    _ => v4,
                };
                let undef = ty.get_undef();
                let one = b.build_insert_element(undef, x, i32t.const_zero(), "").or_err()?;
                let lanes = i32t.vec_type(ty.get_size()).const_zero();
                b.build_shuffle_vector(one, undef, lanes, "").or_err()?.into()
            }
            Expr::Extract { v, lane } => {
                let v = self.operand(*v)?.into_vector_value();
                b.build_extract_element(v, cx.i32_type().const_int(*lane as u64, false), "").or_err()?
            }
            Expr::Insert { v, lane, x } => {
                let v = self.operand(*v)?.into_vector_value();
                let x = self.operand(*x)?;
                b.build_insert_element(v, x, cx.i32_type().const_int(*lane as u64, false), "")
                    .or_err()?
                    .into()
            }
            Expr::Unary { op: UnOp::Neg, a } => match self.operand(*a)? {
                BasicValueEnum::FloatValue(a) => b.build_float_neg(a, "").or_err()?.into(),
                BasicValueEnum::VectorValue(a) => b.build_float_neg(a, "").or_err()?.into(),
                BasicValueEnum::IntValue(a) => b.build_int_neg(a, "").or_err()?.into(),
                _ => return Err(err("neg of a non-number")),
            },
            Expr::Binary { op, a, b: rhs } => {
                let (x, y) = (self.operand(*a)?, self.operand(*rhs)?);
                self.binary(*op, x, y)?
            }
            Expr::Select { cmp, lhs, rhs, then, otherwise } => {
                let (l, r) = (self.operand(*lhs)?, self.operand(*rhs)?);
                let cond = self.compare(*cmp, l, r)?;
                let (t, o) = (self.operand(*then)?, self.operand(*otherwise)?);
                match cond {
                    BasicValueEnum::IntValue(c) => b.build_select(c, t, o, "").or_err()?,
                    BasicValueEnum::VectorValue(c) => b.build_select(c, t, o, "").or_err()?,
                    _ => return Err(err("comparison of a non-number")),
                }
            }
            Expr::Call { f, arg } => {
                let a = self.operand(*arg)?;
                match f {
                    MathFn::Floor => self.call1(self.intrinsic("llvm.floor", a.get_type())?, &[a])?,
                    MathFn::Exp | MathFn::Tanh | MathFn::Log1p => self.call1(self.libm(f.name()), &[a])?,
                    // the default rounding mode: to nearest, ties to even (frintx on
                    // aarch64, roundss on x86 with SSE4.1, else libm's rintf; LLVM 14's
                    // llvm.roundeven would call roundevenf, which older libcs lack)
                    MathFn::Rint => self.call1(self.intrinsic("llvm.rint", a.get_type())?, &[a])?,
                }
            }
        })
    }

    fn binary(
        &self,
        op: BinOp,
        x: BasicValueEnum<'ctx>,
        y: BasicValueEnum<'ctx>,
    ) -> Result<BasicValueEnum<'ctx>, CodegenError> {
        let b = &self.c.b;
        let float = match x {
            BasicValueEnum::FloatValue(_) => true,
            BasicValueEnum::VectorValue(v) => v.get_type().get_element_type().is_float_type(),
            _ => false,
        };
        if float {
            if matches!(op, BinOp::Max | BinOp::Min) {
                let name = if op == BinOp::Max { "llvm.maxnum" } else { "llvm.minnum" };
                return self.call1(self.intrinsic(name, x.get_type())?, &[x, y]);
            }
            macro_rules! fop {
                ($x:expr, $y:expr) => {
                    match op {
                        BinOp::Add => b.build_float_add($x, $y, "").or_err()?.into(),
                        BinOp::Sub => b.build_float_sub($x, $y, "").or_err()?.into(),
                        BinOp::Mul => b.build_float_mul($x, $y, "").or_err()?.into(),
                        BinOp::Div => b.build_float_div($x, $y, "").or_err()?.into(),
                        BinOp::Max | BinOp::Min => unreachable!("handled above"),
                    }
                };
            }
            return Ok(match (x, y) {
                (BasicValueEnum::FloatValue(x), BasicValueEnum::FloatValue(y)) => fop!(x, y),
                (BasicValueEnum::VectorValue(x), BasicValueEnum::VectorValue(y)) => fop!(x, y),
                _ => return Err(err("mixed operand types")),
            });
        }
        if let (BasicValueEnum::VectorValue(x), BasicValueEnum::VectorValue(y)) = (x, y) {
            // i16x8 / i32x4 lane-wise, wrapping
            return Ok(match op {
                BinOp::Add => b.build_int_add(x, y, "").or_err()?.into(),
                BinOp::Sub => b.build_int_sub(x, y, "").or_err()?.into(),
                _ => return Err(CodegenError::Invalid(format!("{op:?} of integer vectors"))),
            });
        }
        let (x, y) = (x.into_int_value(), y.into_int_value());
        Ok(match op {
            BinOp::Add => b.build_int_add(x, y, "").or_err()?.into(),
            BinOp::Sub => b.build_int_sub(x, y, "").or_err()?.into(),
            BinOp::Mul => b.build_int_mul(x, y, "").or_err()?.into(),
            BinOp::Max | BinOp::Min => {
                let p = if op == BinOp::Max { IntPredicate::SGT } else { IntPredicate::SLT };
                let c = b.build_int_compare(p, x, y, "").or_err()?;
                b.build_select(c, x, y, "").or_err()?
            }
            BinOp::Div => return Err(CodegenError::Invalid("integer division".into())),
        })
    }

    /// `lhs cmp rhs`: `i1` or `<4 x i1>`. Float comparisons are ordered except `!=`,
    /// which is unordered (true for NaN), as Cranelift's `NotEqual`.
    fn compare(
        &self,
        cmp: Cmp,
        l: BasicValueEnum<'ctx>,
        r: BasicValueEnum<'ctx>,
    ) -> Result<BasicValueEnum<'ctx>, CodegenError> {
        let b = &self.c.b;
        let fp = match cmp {
            Cmp::Gt => FloatPredicate::OGT,
            Cmp::Ge => FloatPredicate::OGE,
            Cmp::Lt => FloatPredicate::OLT,
            Cmp::Le => FloatPredicate::OLE,
            Cmp::Eq => FloatPredicate::OEQ,
            Cmp::Ne => FloatPredicate::UNE,
        };
        let ip = match cmp {
            Cmp::Gt => IntPredicate::SGT,
            Cmp::Ge => IntPredicate::SGE,
            Cmp::Lt => IntPredicate::SLT,
            Cmp::Le => IntPredicate::SLE,
            Cmp::Eq => IntPredicate::EQ,
            Cmp::Ne => IntPredicate::NE,
        };
        Ok(match (l, r) {
            (BasicValueEnum::FloatValue(l), BasicValueEnum::FloatValue(r)) => {
                b.build_float_compare(fp, l, r, "").or_err()?.into()
            }
            (BasicValueEnum::VectorValue(l), BasicValueEnum::VectorValue(r)) => {
                b.build_float_compare(fp, l, r, "").or_err()?.into()
            }
            (BasicValueEnum::IntValue(l), BasicValueEnum::IntValue(r)) => {
                b.build_int_compare(ip, l, r, "").or_err()?.into()
            }
            _ => return Err(err("comparison of mixed types")),
        })
    }

    fn bound(&self, bd: Bound) -> Result<IntValue<'ctx>, CodegenError> {
        let i64t = self.c.cx.i64_type();
        Ok(match bd {
            Bound::Const(c) => i64t.const_int(c as u64, true),
            Bound::Local(l) => {
                let v = self.c.b.build_load(self.locals[l.0 as usize], "").or_err()?.into_int_value();
                self.c.b.build_int_s_extend(v, i64t, "").or_err()?
            }
        })
    }

    /// This call's share of a parallel loop of `n` iterations: iterations
    /// `[n·part/parts, n·(part+1)/parts)`, as loop-variable values (as the JIT).
    fn share(&self, l: &Loop, n: i64) -> Result<(IntValue<'ctx>, IntValue<'ctx>), CodegenError> {
        let Bound::Const(first) = l.start else {
            return Err(err("a parallel loop with table bounds"));
        };
        let b = &self.c.b;
        let i64t = self.c.cx.i64_type();
        let k = |v: i64| i64t.const_int(v as u64, true);
        let (part, parts) = (
            self.f.get_nth_param(2).expect("part").into_int_value(),
            self.f.get_nth_param(3).expect("parts").into_int_value(),
        );
        let at = |t: IntValue<'ctx>| -> Result<IntValue<'ctx>, CodegenError> {
            let i = b.build_int_mul(t, k(n), "").or_err()?;
            let i = b.build_int_unsigned_div(i, parts, "").or_err()?;
            let i = b.build_int_mul(i, k(l.step), "").or_err()?;
            b.build_int_add(i, k(first), "").or_err()
        };
        let next = b.build_int_add(part, k(1), "").or_err()?;
        Ok((at(part)?, at(next)?))
    }

    fn emit_loop(&mut self, l: &Loop) -> Result<(), CodegenError> {
        if l.const_trips() == Some(0) {
            return Ok(());
        }
        let cx = self.c.cx;
        let i64t = cx.i64_type();
        let shared = l.parallel && self.threaded;
        let (start, end) = match l.const_trips() {
            Some(n) if shared => self.share(l, n)?,
            _ => (self.bound(l.start)?, self.bound(l.end)?),
        };
        let counter = self.counters[l.var.0 as usize];
        let b = &self.c.b;
        b.build_store(counter, start).or_err()?;
        let body = cx.append_basic_block(self.f, "body");
        let exit = cx.append_basic_block(self.f, "exit");
        if l.const_trips().is_none() || shared {
            let go = b.build_int_compare(IntPredicate::SLT, start, end, "").or_err()?;
            b.build_conditional_branch(go, body, exit).or_err()?;
        } else {
            b.build_unconditional_branch(body).or_err()?;
        }
        b.position_at_end(body);
        let i = b.build_load(counter, "").or_err()?.into_int_value();
        self.vars[l.var.0 as usize] = Some(i);
        self.block(&l.body)?;
        self.vars[l.var.0 as usize] = None;
        let b = &self.c.b;
        let next = b.build_int_nsw_add(i, i64t.const_int(l.step as u64, true), "").or_err()?;
        b.build_store(counter, next).or_err()?;
        let go = b.build_int_compare(IntPredicate::SLT, next, end, "").or_err()?;
        b.build_conditional_branch(go, body, exit).or_err()?;
        b.position_at_end(exit);
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Running the kernels, on threads with --threads

/// The body of `NAME_kernels(input, arena)`: every kernel in order. With more than one
/// thread, a kernel with parallel loops runs as `threads` parts: parts 1.. on new
/// threads (`pthread_create` of the kernel's trampoline `NAME_kN_part`, its
/// arguments in a stack array), part 0 on the calling thread, then every thread is
/// joined before the next kernel. A part whose thread cannot be created runs at once
/// on the calling thread (the parts write disjoint elements, so any order is right).
fn build_kernels<'ctx>(
    c: &Cx<'ctx>,
    program: &Program,
    name: &str,
    all: FunctionValue<'ctx>,
    kfns: &[FunctionValue<'ctx>],
    threads: usize,
) -> Result<(), CodegenError> {
    let cx = c.cx;
    let gen = AddressSpace::default();
    let (i32t, i64t, i8p) = (cx.i32_type(), cx.i64_type(), cx.i8_type().ptr_type(gen));
    let fptr = cx.f32_type().ptr_type(gen);
    let k64 = |v: u64| i64t.const_int(v, false);
    let nounwind = cx.create_enum_attribute(Attribute::get_named_enum_kind_id("nounwind"), 0);
    let threaded = threads > 1 && program.kernels.iter().any(Kernel::is_parallel);
    // a part's arguments: { input, arena, part, parts }
    let args_ty = cx.struct_type(&[fptr.into(), fptr.into(), i64t.into(), i64t.into()], false);
    let part_ty = i8p.fn_type(&[i8p.into()], false);
    let (create, join) = if threaded {
        // pthread_t is an unsigned long (glibc) or a pointer (musl): 64 bits on LP64
        let create = c.module.add_function(
            "pthread_create",
            i32t.fn_type(
                &[i64t.ptr_type(gen).into(), i8p.into(), part_ty.ptr_type(gen).into(), i8p.into()],
                false,
            ),
            Some(Linkage::External),
        );
        let join = c.module.add_function(
            "pthread_join",
            i32t.fn_type(&[i64t.into(), i8p.ptr_type(gen).into()], false),
            Some(Linkage::External),
        );
        join.add_attribute(AttributeLoc::Function, nounwind);
        (Some(create), Some(join))
    } else {
        (None, None)
    };

    // a trampoline per parallel kernel: void *NAME_kN_part(void *args)
    let mut parts = vec![None; kfns.len()];
    if threaded {
        for (k, (kernel, &f)) in program.kernels.iter().zip(kfns).enumerate() {
            if !kernel.is_parallel() {
                continue;
            }
            let t = c.module.add_function(&format!("{name}_k{k}_part"), part_ty, Some(Linkage::Internal));
            t.add_attribute(AttributeLoc::Function, nounwind);
            c.b.position_at_end(cx.append_basic_block(t, "entry"));
            let a = c.b.build_pointer_cast(param_ptr(t, 0), args_ty.ptr_type(gen), "args").or_err()?;
            let mut vals: Vec<BasicMetadataValueEnum> = Vec::with_capacity(4);
            for field in 0..4 {
                let p = c.b.build_struct_gep(a, field, "").or_err()?;
                vals.push(c.b.build_load(p, "").or_err()?.into());
            }
            c.b.build_call(f, &vals, "").or_err()?;
            c.b.build_return(Some(&i8p.const_null())).or_err()?;
            parts[k] = Some(t);
        }
    }

    c.b.position_at_end(cx.append_basic_block(all, "entry"));
    let fb = Fb { c, f: all };
    let b = &c.b;
    let (input, arena) = (param_ptr(all, 0), param_ptr(all, 1));
    let n = threads as u64;
    let (tids, args, started) = if threaded {
        // the stack arrays, in the entry block (allocated once)
        let others = n - 1;
        (
            b.build_array_alloca(i64t, k64(others), "tids").or_err()?,
            b.build_array_alloca(args_ty, k64(others), "args").or_err()?,
            b.build_array_alloca(cx.bool_type(), k64(others), "started").or_err()?,
        )
    } else {
        (i64t.ptr_type(gen).const_null(), args_ty.ptr_type(gen).const_null(), i8p.const_null())
    };
    for (k, &f) in kfns.iter().enumerate() {
        let (Some(part), Some(create), Some(join)) = (parts[k], create, join) else {
            b.build_call(f, &[input.into(), arena.into(), k64(0).into(), k64(1).into()], "").or_err()?;
            continue;
        };
        // parts 1..n on new threads
        fb.for_range(k64(1), k64(n), &mut |t| {
            let slot = b.build_int_sub(t, k64(1), "").or_err()?;
            let a = fb.gep(args, slot)?;
            for (field, v) in [input.into(), arena.into(), t.into(), k64(n).into()].into_iter().enumerate() {
                let v: BasicValueEnum = v;
                b.build_store(b.build_struct_gep(a, field as u32, "").or_err()?, v).or_err()?;
            }
            let raw = b.build_pointer_cast(a, i8p, "").or_err()?;
            let rc = b
                .build_call(
                    create,
                    &[
                        fb.gep(tids, slot)?.into(),
                        i8p.const_null().into(),
                        part.as_global_value().as_pointer_value().into(),
                        raw.into(),
                    ],
                    "",
                )
                .or_err()?
                .try_as_basic_value()
                .basic()
                .ok_or_else(|| err("pthread_create"))?
                .into_int_value();
            let ok = b.build_int_compare(IntPredicate::EQ, rc, i32t.const_zero(), "").or_err()?;
            b.build_store(fb.gep(started, slot)?, ok).or_err()?;
            let failed = b.build_not(ok, "").or_err()?;
            // no thread: this part runs here, now
            fb.if_(failed, &mut || {
                b.build_call(f, &[input.into(), arena.into(), t.into(), k64(n).into()], "").or_err()?;
                Ok(())
            })
        })?;
        // part 0 here
        b.build_call(f, &[input.into(), arena.into(), k64(0).into(), k64(n).into()], "").or_err()?;
        fb.for_range(k64(1), k64(n), &mut |t| {
            let slot = b.build_int_sub(t, k64(1), "").or_err()?;
            let ok = fb.load_int(fb.gep(started, slot)?)?;
            fb.if_(ok, &mut || {
                let tid = fb.load_int(fb.gep(tids, slot)?)?;
                b.build_call(join, &[tid.into(), i8p.ptr_type(gen).const_null().into()], "").or_err()?;
                Ok(())
            })
        })?;
    }
    b.build_return(None).or_err()?;
    Ok(())
}

// ---------------------------------------------------------------------------
// NAME_detect

/// Small structured-control-flow helpers over `alloca`d variables.
struct Fb<'a, 'ctx> {
    c: &'a Cx<'ctx>,
    f: FunctionValue<'ctx>,
}

impl<'ctx> Fb<'_, 'ctx> {
    fn var<T: BasicType<'ctx>>(
        &self,
        ty: T,
        init: impl BasicValue<'ctx>,
    ) -> Result<PointerValue<'ctx>, CodegenError> {
        // allocas in the entry block, so mem2reg promotes them
        let entry = self.f.get_first_basic_block().expect("entry block");
        let here = self.c.b.get_insert_block().expect("positioned");
        let tmp = self.c.cx.create_builder();
        match entry.get_first_instruction() {
            Some(i) => tmp.position_before(&i),
            None => tmp.position_at_end(entry),
        }
        let p = tmp.build_alloca(ty, "v").or_err()?;
        self.c.b.position_at_end(here);
        self.c.b.build_store(p, init).or_err()?;
        Ok(p)
    }

    fn load_int(&self, p: PointerValue<'ctx>) -> Result<IntValue<'ctx>, CodegenError> {
        Ok(self.c.b.build_load(p, "").or_err()?.into_int_value())
    }

    fn load_f(&self, p: PointerValue<'ctx>) -> Result<FloatValue<'ctx>, CodegenError> {
        Ok(self.c.b.build_load(p, "").or_err()?.into_float_value())
    }

    /// `for i in start..end { body(i) }` (i64; nothing when `start >= end`).
    fn for_range(
        &self,
        start: IntValue<'ctx>,
        end: IntValue<'ctx>,
        body: &mut dyn FnMut(IntValue<'ctx>) -> Result<(), CodegenError>,
    ) -> Result<(), CodegenError> {
        let i64t = self.c.cx.i64_type();
        let ctr = self.var(i64t, start)?;
        self.while_(
            &mut || {
                let i = self.load_int(ctr)?;
                self.c.b.build_int_compare(IntPredicate::SLT, i, end, "").or_err()
            },
            &mut || {
                let i = self.load_int(ctr)?;
                body(i)?;
                let next = self.c.b.build_int_add(i, i64t.const_int(1, false), "").or_err()?;
                self.c.b.build_store(ctr, next).or_err()?;
                Ok(())
            },
        )
    }

    /// `while cond() { body() }`.
    fn while_(
        &self,
        cond: &mut dyn FnMut() -> Result<IntValue<'ctx>, CodegenError>,
        body: &mut dyn FnMut() -> Result<(), CodegenError>,
    ) -> Result<(), CodegenError> {
        let cx = self.c.cx;
        let (head, bb, exit) = (
            cx.append_basic_block(self.f, "head"),
            cx.append_basic_block(self.f, "body"),
            cx.append_basic_block(self.f, "exit"),
        );
        self.c.b.build_unconditional_branch(head).or_err()?;
        self.c.b.position_at_end(head);
        let go = cond()?;
        self.c.b.build_conditional_branch(go, bb, exit).or_err()?;
        self.c.b.position_at_end(bb);
        body()?;
        self.c.b.build_unconditional_branch(head).or_err()?;
        self.c.b.position_at_end(exit);
        Ok(())
    }

    /// `if cond { body() }`.
    fn if_(
        &self,
        cond: IntValue<'ctx>,
        body: &mut dyn FnMut() -> Result<(), CodegenError>,
    ) -> Result<(), CodegenError> {
        let cx = self.c.cx;
        let (then, done) = (cx.append_basic_block(self.f, "then"), cx.append_basic_block(self.f, "endif"));
        self.c.b.build_conditional_branch(cond, then, done).or_err()?;
        self.c.b.position_at_end(then);
        body()?;
        self.c.b.build_unconditional_branch(done).or_err()?;
        self.c.b.position_at_end(done);
        Ok(())
    }

    fn gep(&self, p: PointerValue<'ctx>, i: IntValue<'ctx>) -> Result<PointerValue<'ctx>, CodegenError> {
        // SAFETY (of the generated code): callers index inside the workspace layout.
        unsafe { self.c.b.build_in_bounds_gep(p, &[i], "") }.or_err()
    }

    fn at_f(&self, p: PointerValue<'ctx>, i: IntValue<'ctx>) -> Result<FloatValue<'ctx>, CodegenError> {
        let q = self.gep(p, i)?;
        self.load_f(q)
    }
}

fn build_detect<'ctx>(
    c: &Cx<'ctx>,
    program: &Program,
    heads: &[DetectHead],
    name: &str,
    kernels: FunctionValue<'ctx>,
    ws: &Workspace,
) -> Result<(), CodegenError> {
    let cx = c.cx;
    let gen = AddressSpace::default();
    let (f32t, f64t, i32t, i64t, i8t) =
        (cx.f32_type(), cx.f64_type(), cx.i32_type(), cx.i64_type(), cx.i8_type());
    let fptr = f32t.ptr_type(gen);
    let box_ty =
        cx.struct_type(&[f32t.into(); 5].iter().copied().chain([i32t.into()]).collect::<Vec<_>>(), false);
    let ty = i32t.fn_type(
        &[
            fptr.into(),
            i8t.ptr_type(gen).into(),
            f32t.into(),
            f32t.into(),
            box_ty.ptr_type(gen).into(),
            i32t.into(),
        ],
        false,
    );
    let f = c.module.add_function(&format!("{name}_detect"), ty, None);
    let nounwind = cx.create_enum_attribute(Attribute::get_named_enum_kind_id("nounwind"), 0);
    f.add_attribute(AttributeLoc::Function, nounwind);
    c.b.position_at_end(cx.append_basic_block(f, "entry"));
    let fb = Fb { c, f };
    let b = &c.b;
    let input = param_ptr(f, 0);
    let wsp = param_ptr(f, 1);
    let thresh = f.get_nth_param(2).expect("thresh").into_float_value();
    let nms = f.get_nth_param(3).expect("nms").into_float_value();
    let boxes = param_ptr(f, 4);
    let max_boxes = f.get_nth_param(5).expect("max_boxes").into_int_value();
    let arena = b.build_pointer_cast(wsp, fptr, "arena").or_err()?;
    b.build_call(kernels, &[input.into(), arena.into()], "").or_err()?;

    let k64 = |v: u64| i64t.const_int(v, false);
    let kf = |v: f64| f32t.const_float(v);
    let cand = {
        let p = fb.gep(wsp, k64(ws.arena_bytes))?;
        b.build_pointer_cast(p, fptr, "cand").or_err()?
    };
    let order = {
        let p = fb.gep(wsp, k64(ws.order_offset()))?;
        b.build_pointer_cast(p, i32t.ptr_type(gen), "order").or_err()?
    };
    let count = fb.var(i64t, k64(0))?;
    let exp = c.module.add_function("exp", f64t.fn_type(&[f64t.into()], false), Some(Linkage::External));
    exp.add_attribute(AttributeLoc::Function, nounwind);

    // decode
    for h in heads {
        let lay = &program.layers[h.layer];
        let [_, gh, gw] = lay.shape;
        let plane = (gh * gw) as u64;
        let out = fb.gep(arena, k64(lay.offset as u64))?;
        fb.for_range(k64(0), k64(gh as u64), &mut |row| {
            fb.for_range(k64(0), k64(gw as u64), &mut |col| {
                let cell =
                    b.build_int_add(b.build_int_mul(row, k64(gw as u64), "").or_err()?, col, "").or_err()?;
                for (a, &(aw, ah)) in h.anchors.iter().enumerate() {
                    let base = b.build_int_add(cell, k64((a * h.entries) as u64 * plane), "").or_err()?;
                    let entry = |e: usize| -> Result<FloatValue<'ctx>, CodegenError> {
                        let i = b.build_int_add(base, k64(e as u64 * plane), "").or_err()?;
                        fb.at_f(out, i)
                    };
                    let obj = entry(h.obj)?;
                    let above = b.build_float_compare(FloatPredicate::OGT, obj, thresh, "").or_err()?;
                    fb.if_(above, &mut || {
                        let t: Vec<FloatValue> = (0..4).map(&entry).collect::<Result<_, _>>()?;
                        let colf = b.build_signed_int_to_float(col, f32t, "").or_err()?;
                        let rowf = b.build_signed_int_to_float(row, f32t, "").or_err()?;
                        let x = b
                            .build_float_div(b.build_float_add(colf, t[0], "").or_err()?, kf(gw as f64), "")
                            .or_err()?;
                        let y = b
                            .build_float_div(b.build_float_add(rowf, t[1], "").or_err()?, kf(gh as f64), "")
                            .or_err()?;
                        let size =
                            |t: FloatValue<'ctx>, anchor: f64| -> Result<FloatValue<'ctx>, CodegenError> {
                                if h.new_coords {
                                    let tt = b.build_float_mul(t, t, "").or_err()?;
                                    return b.build_float_mul(tt, kf(4.0 * anchor), "").or_err();
                                }
                                let td = b.build_float_ext(t, f64t, "").or_err()?;
                                let e = b
                                    .build_call(exp, &[td.into()], "")
                                    .or_err()?
                                    .try_as_basic_value()
                                    .basic()
                                    .ok_or_else(|| err("exp"))?
                                    .into_float_value();
                                let s = b.build_float_mul(e, f64t.const_float(anchor), "").or_err()?;
                                b.build_float_trunc(s, f32t, "").or_err()
                            };
                        let (bw, bh) = (size(t[2], aw)?, size(t[3], ah)?);
                        let hw = b.build_float_mul(bw, kf(0.5), "").or_err()?;
                        let hh = b.build_float_mul(bh, kf(0.5), "").or_err()?;
                        let coords = [
                            b.build_float_sub(x, hw, "").or_err()?,
                            b.build_float_sub(y, hh, "").or_err()?,
                            b.build_float_add(x, hw, "").or_err()?,
                            b.build_float_add(y, hh, "").or_err()?,
                        ];
                        fb.for_range(k64(0), k64(h.classes as u64), &mut |cls| {
                            let e = b.build_int_add(cls, k64((h.obj + 1) as u64), "").or_err()?;
                            let i = b
                                .build_int_add(base, b.build_int_mul(e, k64(plane), "").or_err()?, "")
                                .or_err()?;
                            let p = fb.at_f(out, i)?;
                            let score = b.build_float_mul(obj, p, "").or_err()?;
                            let n = fb.load_int(count)?;
                            let keep = b
                                .build_and(
                                    b.build_float_compare(FloatPredicate::OGT, score, thresh, "").or_err()?,
                                    b.build_int_compare(IntPredicate::SLT, n, k64(ws.candidates), "")
                                        .or_err()?,
                                    "",
                                )
                                .or_err()?;
                            fb.if_(keep, &mut || {
                                let at = b.build_int_mul(n, k64(6), "").or_err()?;
                                let clsf = b.build_signed_int_to_float(cls, f32t, "").or_err()?;
                                for (k, v) in coords.iter().copied().chain([score, clsf]).enumerate() {
                                    let i = b.build_int_add(at, k64(k as u64), "").or_err()?;
                                    b.build_store(fb.gep(cand, i)?, v).or_err()?;
                                }
                                let n32 = b.build_int_truncate(n, i32t, "").or_err()?;
                                b.build_store(fb.gep(order, n)?, n32).or_err()?;
                                b.build_store(count, b.build_int_add(n, k64(1), "").or_err()?).or_err()?;
                                Ok(())
                            })
                        })
                    })?;
                }
                Ok(())
            })
        })?;
    }

    // sort `order` by score (descending), class, decode order: shell sort
    let n = fb.load_int(count)?;
    let field = |ci: IntValue<'ctx>, k: u64| -> Result<FloatValue<'ctx>, CodegenError> {
        let c64 = b.build_int_s_extend(ci, i64t, "").or_err()?;
        let i = b.build_int_add(b.build_int_mul(c64, k64(6), "").or_err()?, k64(k), "").or_err()?;
        fb.at_f(cand, i)
    };
    // whether candidate `a` goes before candidate `b`
    let before = |x: IntValue<'ctx>, y: IntValue<'ctx>| -> Result<IntValue<'ctx>, CodegenError> {
        let (sx, sy) = (field(x, 4)?, field(y, 4)?);
        let (cx_, cy) = (field(x, 5)?, field(y, 5)?);
        let gt = b.build_float_compare(FloatPredicate::OGT, sx, sy, "").or_err()?;
        let eq = b.build_float_compare(FloatPredicate::OEQ, sx, sy, "").or_err()?;
        let clt = b.build_float_compare(FloatPredicate::OLT, cx_, cy, "").or_err()?;
        let ceq = b.build_float_compare(FloatPredicate::OEQ, cx_, cy, "").or_err()?;
        let ilt = b.build_int_compare(IntPredicate::SLT, x, y, "").or_err()?;
        let tie = b.build_or(clt, b.build_and(ceq, ilt, "").or_err()?, "").or_err()?;
        b.build_or(gt, b.build_and(eq, tie, "").or_err()?, "").or_err()
    };
    let gap = fb.var(i64t, b.build_int_signed_div(n, k64(2), "").or_err()?)?;
    fb.while_(
        &mut || {
            let g = fb.load_int(gap)?;
            b.build_int_compare(IntPredicate::SGT, g, k64(0), "").or_err()
        },
        &mut || {
            let g = fb.load_int(gap)?;
            fb.for_range(g, n, &mut |i| {
                let t = b.build_load(fb.gep(order, i)?, "").or_err()?.into_int_value();
                let j = fb.var(i64t, i)?;
                // while j >= gap && before(t, order[j - gap])
                let head = cx.append_basic_block(f, "ins.head");
                let test = cx.append_basic_block(f, "ins.test");
                let shift = cx.append_basic_block(f, "ins.shift");
                let done = cx.append_basic_block(f, "ins.done");
                b.build_unconditional_branch(head).or_err()?;
                b.position_at_end(head);
                let jv = fb.load_int(j)?;
                let ok = b.build_int_compare(IntPredicate::SGE, jv, g, "").or_err()?;
                b.build_conditional_branch(ok, test, done).or_err()?;
                b.position_at_end(test);
                let jg = b.build_int_sub(jv, g, "").or_err()?;
                let prev = b.build_load(fb.gep(order, jg)?, "").or_err()?.into_int_value();
                let go = before(t, prev)?;
                b.build_conditional_branch(go, shift, done).or_err()?;
                b.position_at_end(shift);
                b.build_store(fb.gep(order, jv)?, prev).or_err()?;
                b.build_store(j, jg).or_err()?;
                b.build_unconditional_branch(head).or_err()?;
                b.position_at_end(done);
                let jv = fb.load_int(j)?;
                b.build_store(fb.gep(order, jv)?, t).or_err()?;
                Ok(())
            })?;
            b.build_store(gap, b.build_int_signed_div(g, k64(2), "").or_err()?).or_err()?;
            Ok(())
        },
    )?;

    // greedy per-class NMS into `boxes`
    let kept = fb.var(i64t, k64(0))?;
    let max64 = b.build_int_s_extend(max_boxes, i64t, "").or_err()?;
    let boxes_f = b.build_pointer_cast(boxes, fptr, "").or_err()?;
    let boxes_i = b.build_pointer_cast(boxes, i32t.ptr_type(gen), "").or_err()?;
    let zero = kf(0.0);
    let fmin = |x: FloatValue<'ctx>, y: FloatValue<'ctx>| -> Result<FloatValue<'ctx>, CodegenError> {
        let c_ = b.build_float_compare(FloatPredicate::OLT, x, y, "").or_err()?;
        Ok(b.build_select(c_, x, y, "").or_err()?.into_float_value())
    };
    let fmax = |x: FloatValue<'ctx>, y: FloatValue<'ctx>| -> Result<FloatValue<'ctx>, CodegenError> {
        let c_ = b.build_float_compare(FloatPredicate::OGT, x, y, "").or_err()?;
        Ok(b.build_select(c_, x, y, "").or_err()?.into_float_value())
    };
    fb.for_range(k64(0), n, &mut |k| {
        let room = b.build_int_compare(IntPredicate::SLT, fb.load_int(kept)?, max64, "").or_err()?;
        fb.if_(room, &mut || {
            let ci = b.build_load(fb.gep(order, k)?, "").or_err()?.into_int_value();
            let bx: Vec<FloatValue> = (0..6).map(|q| field(ci, q)).collect::<Result<_, _>>()?;
            let cls = b.build_float_to_signed_int(bx[5], i32t, "").or_err()?;
            let keep = fb.var(cx.bool_type(), cx.bool_type().const_int(1, false))?;
            let nk = fb.load_int(kept)?;
            fb.for_range(k64(0), nk, &mut |m| {
                let m6 = b.build_int_mul(m, k64(6), "").or_err()?;
                let kc =
                    b.build_load(fb.gep(boxes_i, b.build_int_add(m6, k64(5), "").or_err()?)?, "").or_err()?;
                let same = b.build_int_compare(IntPredicate::EQ, kc.into_int_value(), cls, "").or_err()?;
                fb.if_(same, &mut || {
                    let a: Vec<FloatValue> = (0..4)
                        .map(|q| fb.at_f(boxes_f, b.build_int_add(m6, k64(q), "").or_err()?))
                        .collect::<Result<_, _>>()?;
                    let iou = iou(b, &a, &bx[..4], &fmin, &fmax, zero)?;
                    let over = b.build_float_compare(FloatPredicate::OGT, iou, nms, "").or_err()?;
                    fb.if_(over, &mut || {
                        b.build_store(keep, cx.bool_type().const_zero()).or_err()?;
                        Ok(())
                    })
                })
            })?;
            let keep_v = fb.load_int(keep)?;
            fb.if_(keep_v, &mut || {
                let nk = fb.load_int(kept)?;
                let m6 = b.build_int_mul(nk, k64(6), "").or_err()?;
                for (q, &v) in bx.iter().take(5).enumerate() {
                    b.build_store(fb.gep(boxes_f, b.build_int_add(m6, k64(q as u64), "").or_err()?)?, v)
                        .or_err()?;
                }
                b.build_store(fb.gep(boxes_i, b.build_int_add(m6, k64(5), "").or_err()?)?, cls).or_err()?;
                b.build_store(kept, b.build_int_add(nk, k64(1), "").or_err()?).or_err()?;
                Ok(())
            })
        })
    })?;
    let nk = fb.load_int(kept)?;
    b.build_return(Some(&b.build_int_truncate(nk, i32t, "").or_err()?)).or_err()?;
    Ok(())
}

/// IoU of two `x0, y0, x1, y1` boxes as `ternc_runtime::detect::iou`: 0 for NaN
/// coordinates, no overlap or no union.
fn iou<'ctx>(
    b: &Builder<'ctx>,
    a: &[FloatValue<'ctx>],
    c: &[FloatValue<'ctx>],
    fmin: &dyn Fn(FloatValue<'ctx>, FloatValue<'ctx>) -> Result<FloatValue<'ctx>, CodegenError>,
    fmax: &dyn Fn(FloatValue<'ctx>, FloatValue<'ctx>) -> Result<FloatValue<'ctx>, CodegenError>,
    zero: FloatValue<'ctx>,
) -> Result<FloatValue<'ctx>, CodegenError> {
    let mut nan = None;
    for &v in a.iter().chain(c) {
        let u = b.build_float_compare(FloatPredicate::UNO, v, v, "").or_err()?;
        nan = Some(match nan {
            None => u,
            Some(n) => b.build_or(n, u, "").or_err()?,
        });
    }
    let iw = b.build_float_sub(fmin(a[2], c[2])?, fmax(a[0], c[0])?, "").or_err()?;
    let ih = b.build_float_sub(fmin(a[3], c[3])?, fmax(a[1], c[1])?, "").or_err()?;
    let inter = b.build_float_mul(iw, ih, "").or_err()?;
    let area = |r: &[FloatValue<'ctx>]| -> Result<FloatValue<'ctx>, CodegenError> {
        let w = fmax(b.build_float_sub(r[2], r[0], "").or_err()?, zero)?;
        let h = fmax(b.build_float_sub(r[3], r[1], "").or_err()?, zero)?;
        b.build_float_mul(w, h, "").or_err()
    };
    let union = b.build_float_sub(b.build_float_add(area(a)?, area(c)?, "").or_err()?, inter, "").or_err()?;
    let ratio = b.build_float_div(inter, union, "").or_err()?;
    let ok = [
        b.build_float_compare(FloatPredicate::OGT, iw, zero, "").or_err()?,
        b.build_float_compare(FloatPredicate::OGT, ih, zero, "").or_err()?,
        b.build_float_compare(FloatPredicate::OGT, union, zero, "").or_err()?,
        b.build_not(nan.expect("eight coordinates"), "").or_err()?,
    ];
    let mut all = ok[0];
    for &o in &ok[1..] {
        all = b.build_and(all, o, "").or_err()?;
    }
    Ok(b.build_select(all, ratio, zero, "").or_err()?.into_float_value())
}
