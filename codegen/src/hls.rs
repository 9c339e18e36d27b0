//! The HLS backend: a [`Program`] as C++ for Vitis HLS, with a C-simulation test
//! bench, a Tcl script and a per-layer resource and latency report.
//!
//! # The files (for `-o DIR/net`)
//!
//! - `net.h`: sizes as macros and the top function
//!   `void NAME_top(const float in[], float arena[], float out0[], ...)`;
//! - `net.cpp`: the constant tables as ROMs (`static const`): the packed ternary
//!   codes as `ap_uint<64>` words (eight code bytes, 32 weights a word), read as an
//!   `ap_uint<8>` byte and split into `ap_uint<2>` codes by `NAME_byte`/`NAME_code`,
//!   the same types in the g++ C simulation (the stand-in) and under Vitis; one
//!   function per kernel printed by the C backend's printer
//!   ([`crate::c::KernelPrinter`]) with `#pragma HLS PIPELINE II=1` on innermost
//!   loops, except the ternary convolutions' `code bytes` loops, printed as adder
//!   trees (module `tree`): per iteration `G` code bytes (`4·G` taps), each tap's
//!   `±x` chosen by its code (`NAME_tern`: a select and a sign flip), a balanced
//!   `NAME_treeN` per accumulator and one accumulate, `PIPELINE II=4` (one fadd);
//!   then the top function: AXI masters for the input, the arena (scratch in DDR)
//!   and each output, AXI-lite control, the kernels called in order, then the
//!   outputs copied out;
//! - `net_tb.cpp`: the test bench, `./tb IN.raw OUTDIR`: reads the raw float32
//!   `[C,H,W]` input, runs the top function, writes head `i` as `OUTDIR/out_<i>.raw`;
//! - `net_ap_int.h`: a small `ap_uint`/`ap_int` stand-in, included when `<ap_int.h>`
//!   (Vitis) is not on the include path, so `g++ -std=c++14 -O2 DIR/*.cpp -o tb`
//!   builds and runs anywhere;
//! - `net.tcl`: `vitis_hls -f net.tcl` creates the project, runs the C simulation
//!   (`TB_ARGS`), synthesis at 200 MHz (5 ns) for the part in `PART`, and exports IP.
//!
//! The kernels are the C target's loop nests (a faithful, synthesizable
//! C-simulation reference, multiply-free ternary loops, 2-bit weight ROMs) with the
//! ternary sums restructured as adder trees. In this (`sequential`) form the layers
//! share one DDR arena through one AXI port, which the memory plan reuses, so they
//! run in order; the activation reads through that port, one float a cycle, bound
//! most loops' II, as the [`report`] shows.
//!
//! # The streaming form (`--hls-arch stream`, [`Arch::Stream`])
//!
//! Layer outputs in on-chip arrays, the layers as processes of a DATAFLOW region,
//! forks and concats where a buffer would have two consumers or producers (module
//! `stream`), packed convolutions reading their window through a line buffer
//! (module `line`); the report adds the on-chip bits ([`StreamReport`]).
//!
//! # Int8 activations (`--act i8`)
//!
//! Each int8 layer's quantize kernel writes its input, as int8, into an on-chip
//! array `static int8_t q8[UNAME_Q8_LEN]` of the top function (block RAM, passed to
//! the kernels that use it); its packed convolution prints as the float one does,
//! with integer types (module `tree`): `ap_int<9>` taps `±q` (`NAME_terni`), integer
//! trees as wide as their sums (`NAME_itreeN`), `int32_t` accumulators, `PIPELINE
//! II=1`, and a float epilogue (one multiply-add an output). The report marks those
//! layers `i8` and counts their adders as integer adders.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::c::{self, comment, kernel_buffers, Dialect, KernelPrinter};
use crate::program::*;
use crate::CodegenError;

mod line;
mod stream;
mod tree;

/// The shape of the top function (`--hls-arch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Arch {
    /// The layers' kernels one after another over one DDR arena through AXI.
    #[default]
    Sequential,
    /// Layer outputs in on-chip buffers, the layers as DATAFLOW processes, the input
    /// and the heads over AXI once (module `stream`).
    Stream,
}

/// The tree form of a kernel's loop, if it has one (`tree::analyse`).
type TreeOf<'a> = dyn Fn(&Kernel, &Loop) -> Option<tree::TreeLoop> + 'a;

/// Clock the report and the Tcl script assume.
pub const CLOCK_MHZ: f64 = 200.0;
/// Cycles of an fp32 add at 200 MHz (Vitis HLS `fadd`, typical).
pub const FADD_LATENCY: u64 = 4;

/// The generated files: `(file name, contents)`, and the report.
#[derive(Debug, Clone)]
pub struct HlsProject {
    pub files: Vec<(String, String)>,
    pub report: Report,
}

/// One row of the report: a Darknet layer's kernels.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerReport {
    pub layer: usize,
    pub kind: String,
    /// Whether the layer sums int8 activations (`--act i8`): its input is quantized
    /// into the on-chip `q8` array and its ternary sums are integer.
    pub int8: bool,
    pub kernels: usize,
    /// fp32 adders and subtractors instantiated by the pipelined innermost loops.
    pub adders: usize,
    /// Integer adders and subtractors of the ternary sums over int8 activations
    /// (trees of `9 + levels` bits into 32-bit accumulators).
    pub int_adders: usize,
    /// fp32 multipliers in the innermost loops (0 for float-activation ternary
    /// convolutions; an int8 layer's quantize loop has one, `x·(1/step)`).
    pub multipliers: usize,
    /// Bits of the constant tables the layer's kernels read first (2-bit codes,
    /// tap offsets, scales, float weights).
    pub rom_bits: u64,
    /// Bits of those that are 2-bit weight codes.
    pub code_bits: u64,
    /// Outputs computed per innermost-loop iteration (the tile).
    pub parallel: usize,
    /// Estimated cycles (module docs of [`report`]).
    pub cycles: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub layers: Vec<LayerReport>,
    /// Bits of the on-chip int8 activation array (0 without int8 layers).
    pub q8_bits: u64,
    /// The on-chip buffers of the streaming form (`--hls-arch stream`).
    pub stream: Option<StreamReport>,
}

/// One layer's on-chip memory in the streaming form.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamLayer {
    pub layer: usize,
    pub kind: String,
    /// Bits of the top-level buffers holding its output (one copy per consumer where
    /// it has several: the forks' copies).
    pub buffer_bits: u64,
    /// Bits of its process's local arrays (padded copies, int8 activations).
    pub local_bits: u64,
    /// Bits of its convolution's line buffer.
    pub line_bits: u64,
}

/// The streaming form's memory: per layer, and the glue processes.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamReport {
    pub layers: Vec<StreamLayer>,
    /// Bits of the input buffer (the AXI copy's destination).
    pub input_bits: u64,
    /// Fork processes (a value with several consumers) and concat processes (routes
    /// the memory plan builds in place).
    pub forks: usize,
    pub concats: usize,
}

impl StreamReport {
    pub fn total_bits(&self) -> u64 {
        self.input_bits + self.layers.iter().map(|l| l.buffer_bits + l.local_bits + l.line_bits).sum::<u64>()
    }
}

impl std::fmt::Display for StreamReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "on-chip memory (--hls-arch stream: one buffer per layer output and consumer, DATAFLOW):"
        )?;
        writeln!(f, "layer  type              buffer bits   local bits  line-buffer bits")?;
        for l in &self.layers {
            writeln!(
                f,
                "{:5}  {:<14} {:14} {:12} {:17}",
                l.layer, l.kind, l.buffer_bits, l.local_bits, l.line_bits
            )?;
        }
        let sum = |g: fn(&StreamLayer) -> u64| self.layers.iter().map(g).sum::<u64>() as f64 / 1e6;
        write!(
            f,
            "stream total: {:.2} Mbit on chip (input {:.2}, layer buffers {:.2}, local {:.2}, line buffers {:.2}); \
             {} fork and {} concat processes; ZCU104 has 11 Mbit BRAM + 27 Mbit URAM = 38 Mbit: {}",
            self.total_bits() as f64 / 1e6,
            self.input_bits as f64 / 1e6,
            sum(|l| l.buffer_bits),
            sum(|l| l.local_bits),
            sum(|l| l.line_bits),
            self.forks,
            self.concats,
            if self.total_bits() <= 38_000_000 { "fits" } else { "does not fit" }
        )
    }
}

impl Report {
    pub fn total_cycles(&self) -> u64 {
        self.layers.iter().map(|l| l.cycles).sum()
    }
    /// Latency of one inference at [`CLOCK_MHZ`], in milliseconds.
    pub fn latency_ms(&self) -> f64 {
        self.total_cycles() as f64 / (CLOCK_MHZ * 1e3)
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "layer  type            act  kernels  adders  int adders  mults  parallel    ROM bits  2-bit codes      est. cycles"
        )?;
        for l in &self.layers {
            writeln!(
                f,
                "{:5}  {:<14} {:>4} {:8} {:7} {:11} {:6} {:9} {:11} {:12} {:16}",
                l.layer,
                l.kind,
                if l.int8 { "i8" } else { "f32" },
                l.kernels,
                l.adders,
                l.int_adders,
                l.multipliers,
                l.parallel,
                l.rom_bits,
                l.code_bits,
                l.cycles
            )?;
        }
        let rom: u64 = self.layers.iter().map(|l| l.rom_bits).sum();
        let codes: u64 = self.layers.iter().map(|l| l.code_bits).sum();
        let int8 = self.layers.iter().filter(|l| l.int8).count();
        write!(
            f,
            "total: {} fp32 adders, {} integer adders, ROM {:.2} Mbit ({:.2} Mbit of 2-bit codes), ",
            self.layers.iter().map(|l| l.adders).sum::<usize>(),
            self.layers.iter().map(|l| l.int_adders).sum::<usize>(),
            rom as f64 / 1e6,
            codes as f64 / 1e6,
        )?;
        if int8 > 0 {
            write!(
                f,
                "{int8} int8 layers (on-chip int8 activations {:.2} Mbit), ",
                self.q8_bits as f64 / 1e6
            )?;
        }
        write!(
            f,
            "{} cycles = {:.3} ms at {} MHz \
             (ternary sums as adder trees: II = max({} cycles per fadd, activation reads at one a cycle)",
            self.total_cycles(),
            self.latency_ms(),
            CLOCK_MHZ,
            FADD_LATENCY,
        )?;
        if int8 > 0 {
            write!(
                f,
                "; integer trees: II = max(1 cycle per add, on-chip int8 reads at {Q8_PORTS} a cycle)"
            )?;
        }
        match &self.stream {
            None => write!(f, "; layers in order, no DATAFLOW overlap)"),
            Some(st) => write!(f, "; cycles as if in order, DATAFLOW overlaps them)\n{st}"),
        }
    }
}

/// Reads (or writes) of the on-chip int8 array a cycle: a dual-port block RAM.
pub const Q8_PORTS: u64 = 2;

/// What the report counts for one kernel.
#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    adders: usize,
    int_adders: usize,
    multipliers: usize,
    parallel: usize,
    cycles: u64,
}

/// Per-kernel figures.
///
/// Cycles: a statement outside an innermost loop costs one cycle; an innermost loop
/// costs its trips times its II, the largest of 1, the longest chain of dependent
/// float adds on one local times [`FADD_LATENCY`] (integer adds: one cycle each), its
/// arena and input accesses (one AXI port each) and its int8 accesses ([`Q8_PORTS`]
/// a cycle); a loop whose bounds come from a table counts 16 trips. With `tree`, a
/// ternary `code bytes` loop it prints as an adder tree costs its trips (of `G`
/// bytes) times the larger of one add (an fadd, or one cycle for an integer tree)
/// and its activation reads, plus the tree's levels and the accumulate once (the
/// pipeline filling).
fn kernel_figures(k: &Kernel, tree: Option<&TreeOf>) -> Figures {
    fn inner_ii(k: &Kernel, body: &[Stmt], acc: &mut Figures) -> u64 {
        let mut chain = vec![0u64; k.locals.len()];
        let (mut arena, mut input, mut q8) = (0u64, 0u64, 0u64);
        let mut accs = std::collections::BTreeSet::new();
        for st in body {
            match st {
                Stmt::Assign { dst, expr } => {
                    let ty = k.locals[dst.0 as usize];
                    let lanes = ty.lanes();
                    match expr {
                        Expr::Binary { op: BinOp::Add | BinOp::Sub, a, b } => {
                            let (adders, latency) = match ty.is_float() {
                                true => (&mut acc.adders, FADD_LATENCY),
                                false => (&mut acc.int_adders, 1),
                            };
                            *adders += lanes;
                            if [a, b].contains(&&Operand::Local(*dst)) {
                                chain[dst.0 as usize] += latency;
                                accs.insert(dst.0);
                            }
                        }
                        Expr::Binary { op: BinOp::Mul, .. } if ty.is_float() => acc.multipliers += lanes,
                        Expr::Load { buf: Buf::Arena, .. } => arena += 1,
                        Expr::LoadVec { buf: Buf::Arena, .. } => arena += 4,
                        Expr::Load { buf: Buf::Input, .. } => input += 1,
                        Expr::LoadVec { buf: Buf::Input, .. } => input += 4,
                        Expr::Load { buf: Buf::Q8, .. } => q8 += 1,
                        Expr::LoadVec { buf: Buf::Q8, .. } => q8 += 8,
                        _ => {}
                    }
                }
                Stmt::Store { buf: Buf::Q8, .. } => q8 += 1,
                Stmt::Store { .. } => arena += 1,
                Stmt::Loop(_) => {}
            }
        }
        let par = accs.iter().map(|&a| k.locals[a as usize].lanes()).sum();
        acc.parallel = acc.parallel.max(par);
        let chain = chain.into_iter().max().unwrap_or(0);
        chain.max(arena).max(input).max(q8.div_ceil(Q8_PORTS)).max(1)
    }
    type Tree<'a> = Option<&'a TreeOf<'a>>;
    fn walk(k: &Kernel, body: &[Stmt], acc: &mut Figures, tree: Tree) -> u64 {
        let mut cycles = 0;
        for st in body {
            match st {
                Stmt::Loop(l) => {
                    let trips = l.const_trips().unwrap_or(16).max(0) as u64;
                    if l.body.iter().any(|s| matches!(s, Stmt::Loop(_))) {
                        cycles += trips * walk(k, &l.body, acc, tree);
                    } else if let Some(t) = tree.and_then(|f| f(k, l)) {
                        // one accumulate a lane an iteration (II = one add), unless the
                        // activation reads (one a cycle from the arena, Q8_PORTS from
                        // the on-chip q8) take longer; the tree's levels and the
                        // accumulate fill the pipeline once per loop
                        let (add, reads) = match t.int {
                            true => (1, (t.reads as u64).div_ceil(Q8_PORTS)),
                            false => (FADD_LATENCY, t.reads as u64),
                        };
                        match t.int {
                            true => acc.int_adders += t.adders(),
                            false => acc.adders += t.adders(),
                        }
                        acc.parallel = acc.parallel.max(t.accs);
                        cycles += t.trips * add.max(reads) + (t.depth() + 1) * add;
                    } else {
                        cycles += trips * inner_ii(k, &l.body, acc);
                    }
                }
                _ => cycles += 1,
            }
        }
        cycles
    }
    let mut acc = Figures::default();
    acc.cycles = walk(k, &k.body, &mut acc, tree);
    acc.parallel = acc.parallel.max(1);
    acc
}

/// The per-layer report of `program` as [`compile`] prints it (kernels grouped by
/// their Darknet layer): ternary sums as adder trees (module `tree`), each `code
/// bytes` loop at II = max(one add, its activation reads).
pub fn report(program: &Program) -> Report {
    let tree = |k: &Kernel, l: &Loop| tree::analyse(k, l, &program.consts, "r", &|_| String::new(), 0, None);
    report_with(program, Some(&tree))
}

/// The report of the accumulation chains the kernel program writes (every `±x` a
/// dependent add: II = the longest chain × [`FADD_LATENCY`], or one cycle an integer
/// add), the structure before adder trees, to compare with [`report`].
pub fn report_chain(program: &Program) -> Report {
    report_with(program, None)
}

fn report_with(program: &Program, tree: Option<&TreeOf>) -> Report {
    let mut layers: Vec<LayerReport> = Vec::new();
    let mut seen = vec![false; program.consts.len()];
    for k in &program.kernels {
        let layer = k.layer.unwrap_or(0);
        let f = kernel_figures(k, tree);
        let uses = kernel_buffers(k);
        let (mut rom_bits, mut code_bits) = (0, 0);
        for n in uses.tables {
            if std::mem::replace(&mut seen[n], true) {
                continue;
            }
            let t = &program.consts[n];
            if tree::is_decode(&t.name) && tree.is_some() {
                continue; // the tree form decodes codes with ap_uint<2> logic
            }
            let bits = (t.data.len() * t.data.elem().bytes() * 8) as u64;
            rom_bits += bits;
            if t.data.elem() == Elem::U8 {
                code_bits += bits;
            }
        }
        match layers.last_mut() {
            Some(l) if l.layer == layer => {
                l.int8 |= uses.q8;
                l.kernels += 1;
                l.adders += f.adders;
                l.int_adders += f.int_adders;
                l.multipliers += f.multipliers;
                l.parallel = l.parallel.max(f.parallel);
                l.rom_bits += rom_bits;
                l.code_bits += code_bits;
                l.cycles += f.cycles;
            }
            _ => layers.push(LayerReport {
                layer,
                kind: program.layers.get(layer).map_or_else(String::new, |l| l.kind.clone()),
                int8: uses.q8,
                kernels: 1,
                adders: f.adders,
                int_adders: f.int_adders,
                multipliers: f.multipliers,
                rom_bits,
                code_bits,
                parallel: f.parallel,
                cycles: f.cycles,
            }),
        }
    }
    Report { layers, q8_bits: 8 * program.q8_len as u64, stream: None }
}

const AP_INT: &str = r#"/* A stand-in for the Vitis HLS <ap_int.h> with what ternc's HLS code uses:
 * ap_uint<W> / ap_int<W> (W <= 64) as integers of W bits, converting to and from
 * the built-in integers. Used only when <ap_int.h> is not on the include path. */
#ifndef TERNC_AP_INT_STANDIN_H
#define TERNC_AP_INT_STANDIN_H

/* the smallest built-in unsigned type of at least W bits */
template <bool B, class T, class F> struct ternc_if { typedef T type; };
template <class T, class F> struct ternc_if<false, T, F> { typedef F type; };
template <int W> struct ternc_uint {
    typedef typename ternc_if<(W <= 8), unsigned char,
        typename ternc_if<(W <= 16), unsigned short,
        typename ternc_if<(W <= 32), unsigned int, unsigned long long>::type>::type>::type type;
};

template <int W> struct ap_uint {
    static_assert(W > 0 && W <= 64, "ap_uint stand-in: 1 to 64 bits");
    typename ternc_uint<W>::type v;
    constexpr ap_uint() : v(0) {}
    constexpr ap_uint(unsigned long long x)
        : v((typename ternc_uint<W>::type)(W == 64 ? x : x & ((1ULL << (W % 64)) - 1))) {}
    constexpr operator unsigned long long() const { return v; }
};

template <int W> struct ap_int {
    static_assert(W > 0 && W <= 64, "ap_int stand-in: 1 to 64 bits");
    long long v;
    constexpr ap_int() : v(0) {}
    constexpr ap_int(long long x)
        : v(W == 64 ? x
                    : (long long)((unsigned long long)x << (64 - W % 64)) >> (64 - W % 64)) {}
    constexpr operator long long() const { return v; }
};

#endif
"#;

/// Prints `program` as a Vitis HLS project; `stem` is the file name of PREFIX (the
/// files are `stem.cpp`, `stem.h`, `stem_tb.cpp`, `stem_ap_int.h`, `stem.tcl`).
pub fn compile(program: &Program, name: &str, stem: &str) -> Result<HlsProject, CodegenError> {
    compile_arch(program, name, stem, Arch::Sequential)
}

/// [`compile`] with the top function's shape `arch`.
pub fn compile_arch(
    program: &Program,
    name: &str,
    stem: &str,
    arch: Arch,
) -> Result<HlsProject, CodegenError> {
    program.verify().map_err(CodegenError::Invalid)?;
    let plan = match arch {
        Arch::Sequential => None,
        Arch::Stream => Some(
            stream::plan(program).map_err(|e| CodegenError::Invalid(format!("--hls-arch stream: {e}")))?,
        ),
    };
    if stem.is_empty() || stem.contains(['"', '\\', '\n', '/']) {
        return Err(CodegenError::Invalid(format!("{stem:?} cannot be named in an #include")));
    }
    let u = name.to_ascii_uppercase();
    let [ic, ih, iw] = program.input_shape;
    let outs: Vec<(usize, usize)> =
        program.outputs.iter().map(|&l| (program.layers[l].offset, program.layers[l].len())).collect();
    let out_params: Vec<String> =
        (0..outs.len()).map(|i| format!("float out{i}[{u}_OUTPUT_{i}_LEN]")).collect();

    // the header
    let mut h = String::new();
    let _ = write!(
        h,
        "/* {name}: Vitis HLS top function generated by ternc from \"{model}\". */\n\
         #ifndef {u}_HLS_H\n#define {u}_HLS_H\n\n\
         #define {u}_INPUT_C {ic}\n#define {u}_INPUT_H {ih}\n#define {u}_INPUT_W {iw}\n\
         #define {u}_INPUT_LEN {inl}\n\
         /* floats of scratch the top function needs (layer outputs and padded copies) */\n\
         #define {u}_ARENA_LEN {arena}\n#define {u}_NUM_OUTPUTS {no}\n",
        model = comment(&program.name),
        inl = program.input_len(),
        arena = program.arena_len.max(1),
        no = outs.len(),
    );
    if program.has_int8() {
        let _ = writeln!(
            h,
            "/* bytes of the on-chip int8 activations (--act i8: each int8 layer's quantized input) */\n\
             #define {u}_Q8_LEN {}",
            program.q8_len
        );
    }
    for (i, &l) in program.outputs.iter().enumerate() {
        let lay = &program.layers[l];
        let [c, hh, w] = lay.shape;
        let _ = writeln!(
            h,
            "#define {u}_OUTPUT_{i}_LEN {} /* layer {l} ({}), [{c}, {hh}, {w}] */",
            lay.len(),
            lay.kind
        );
    }
    let arena_param = match arch {
        Arch::Sequential => format!(", float arena[{u}_ARENA_LEN]"),
        Arch::Stream => String::new(),
    };
    let _ = write!(
        h,
        "\n/* Runs the network on in [C,H,W] (RGB, 0..1); {scratch}out<i> receives head i. */\n\
         void {name}_top(const float in[{u}_INPUT_LEN]{arena_param}{sep}{params});\n\n#endif\n",
        scratch = match arch {
            Arch::Sequential => "arena is scratch; ",
            Arch::Stream => "every buffer is on chip (DATAFLOW); ",
        },
        sep = if out_params.is_empty() { "" } else { ", " },
        params = out_params.join(", "),
    );

    // the kernels first (the helpers they need go above them)
    let names = |b: Buf| match b {
        Buf::Input => "in".to_string(),
        Buf::Arena => "arena".to_string(),
        Buf::Const(n) => format!("{name}_c{n}"),
        Buf::Q8 => "q8".to_string(),
    };
    // (terms, integer) of every tree the loops call
    let trees: RefCell<BTreeSet<(usize, bool)>> = RefCell::new(BTreeSet::new());
    let untreed: RefCell<Option<String>> = RefCell::new(None);
    let mut kernels = String::new();
    let mut calls = String::new();
    let mut line_bits: std::collections::BTreeMap<usize, u64> = Default::default();
    let kernel_list = plan.as_ref().map_or(&program.kernels, |p| &p.kernels);
    for (k, kernel) in kernel_list.iter().enumerate() {
        let uses = kernel_buffers(kernel);
        let layer = kernel.layer.map_or(String::new(), |l| format!(" (layer {l})"));
        // the kernels of int8 layers also take the on-chip int8 activations
        let (q8_param, q8_arg) = match (uses.q8, plan.is_some()) {
            (true, false) => (format!(", int8_t q8[{u}_Q8_LEN]"), ", q8"),
            (true, true) => (", int8_t *q8".to_string(), ", q8"),
            (false, _) => (String::new(), ""),
        };
        let _ = writeln!(
            kernels,
            "/* k{k}: {}{layer} */\nstatic void {name}_k{k}(const float *in, float *arena{q8_param}) {{",
            comment(&kernel.name)
        );
        let _ = writeln!(calls, "    {name}_k{k}(in, arena{q8_arg});");
        if !uses.input {
            kernels.push_str("    (void)in;\n");
        }
        if !uses.arena {
            kernels.push_str("    (void)arena;\n");
        }
        // the streaming form: a packed convolution reads its window from a line buffer
        let lgeo = plan.as_ref().and_then(|pl| {
            let src_len = match uses.q8 {
                true => *pl.q8.get(&kernel.layer?)?,
                false => pl.values[pl.src[k]?].len(),
            };
            line::analyse(kernel, &program.consts, src_len)
        });
        if let Some(g) = &lgeo {
            let at = kernels.rfind("/* k").unwrap_or(kernels.len());
            kernels.insert_str(at, &line::functions(g, name, k));
            kernels.push_str(&line::declare(g, 16));
            *line_bits.entry(kernel.layer.unwrap_or(0)).or_insert(0) += g.bits();
        }
        let lb_names = |b: Buf| match (b, &lgeo) {
            (Buf::Input | Buf::Q8, Some(_)) => "lb".to_string(),
            (Buf::Const(t), Some(g)) if t == g.taps => format!("{name}_lbtaps{k}"),
            _ => names(b),
        };
        let hook = |l: &Loop, indent: usize| {
            if l.note != "code bytes" {
                return None;
            }
            let analysed = match &lgeo {
                None => tree::analyse(kernel, l, &program.consts, name, &names, indent, None),
                Some(g) => {
                    let pad = "    ".repeat(indent + 1);
                    let src = if uses.q8 { "q8" } else { "in" };
                    let pre = line::before_loop(g, l, name, k, src, &pad);
                    tree::analyse(kernel, l, &program.consts, name, &lb_names, indent + 1, Some("lbw"))
                        .and_then(|mut t| {
                            let p0 = "    ".repeat(indent);
                            t.text = format!("{p0}{{\n{}{}{p0}}}\n", pre?, t.text);
                            Some(t)
                        })
                }
            };
            match analysed {
                Some(t) => {
                    trees.borrow_mut().insert((t.terms, t.int));
                    Some(t.text)
                }
                None => {
                    untreed.borrow_mut().get_or_insert_with(|| kernel.name.clone());
                    None
                }
            }
        };
        let mut p = KernelPrinter::new(kernel, Dialect::Hls, &names);
        p.pipeline_inner = true;
        p.loop_hook = Some(&hook);
        kernels.push_str(&p.print(1));
        kernels.push_str("}\n\n");
    }
    if let Some(k) = untreed.into_inner() {
        return Err(CodegenError::Invalid(format!(
            "kernel {k:?}: its packed ternary loop is not in the form the HLS adder trees read"
        )));
    }

    // the implementation
    let mut s = String::with_capacity(program.const_bytes() * 3 + kernels.len() + (1 << 20));
    let _ = write!(
        s,
        "/* {name}: Vitis HLS C++ generated by ternc from \"{model}\": {nk} kernels of the ternc\n   \
         kernel program. Ternary weights are 2-bit codes packed 32 to an ap_uint<64> ROM word;\n   \
         every ternary sum is an adder tree over the +-x its codes select (no multiplies). */\n\
         #include \"{stem}.h\"\n\n#include <math.h>\n#include <stdint.h>\n\n\
         #ifdef __has_include\n#if __has_include(<ap_int.h>)\n#include <ap_int.h>\n#define {u}_HAVE_AP_INT 1\n#endif\n#endif\n\
         #ifndef {u}_HAVE_AP_INT\n#include \"{stem}_ap_int.h\" /* no Vitis headers: the stand-in */\n#endif\n\n\
         /* the same types under Vitis and in the g++ C simulation */\n\
         typedef ap_uint<64> {name}_rom_t;  /* a ROM word: 8 code bytes, 32 ternary weights */\n\
         typedef ap_uint<8> {name}_byte_t;  /* four 2-bit codes */\n\
         typedef ap_uint<2> {name}_code_t;  /* 0b01: +1, 0b11: -1, else 0 */\n\n\
         /* byte `lane` (0..7) of a ROM word */\n\
         static inline {name}_byte_t {name}_byte({name}_rom_t w, int lane) {{\n#pragma HLS INLINE\n    \
         return ({name}_byte_t)(w >> (lane << 3));\n}}\n\n\
         /* code q (0..3) of a byte */\n\
         static inline {name}_code_t {name}_code({name}_byte_t b, int q) {{\n#pragma HLS INLINE\n    \
         return ({name}_code_t)(b >> (q << 1));\n}}\n\n",
        model = comment(&program.name),
        nk = program.kernels.len(),
    );
    // the float tap, unless every tree is an integer one
    let (int_trees, float_trees) = (trees.borrow().iter().any(|t| t.1), trees.borrow().iter().any(|t| !t.1));
    if float_trees || !int_trees {
        let _ = write!(
            s,
            "/* a ternary tap: x, -x (a sign flip) or 0, selected by its code; no adder */\n\
             static inline float {name}_tern({name}_code_t c, float x) {{\n#pragma HLS INLINE\n    \
             return c == 1 ? x : (c == 3 ? -x : 0.0f);\n}}\n\n"
        );
    }
    if int_trees {
        let _ = write!(
            s,
            "/* int8 activations (--act i8): a ternary tap of an int8 x is x, -x or 0, in {bits} bits */\n\
             typedef ap_int<{bits}> {name}_tap_t;\n\n\
             /* a ternary tap of an int8 activation, selected by its code; no adder */\n\
             static inline {name}_tap_t {name}_terni({name}_code_t c, {name}_tap_t x) {{\n#pragma HLS INLINE\n    \
             return c == 1 ? x : (c == 3 ? {name}_tap_t(-x) : {name}_tap_t(0));\n}}\n\n",
            bits = tree::TAP_BITS,
        );
    }
    for &(n, int) in trees.borrow().iter() {
        s.push_str(&tree::tree_fn(name, n, int));
    }
    for n in c::used_tables(program) {
        let t = &program.consts[n];
        match &t.data {
            _ if tree::is_decode(&t.name) => {} // decoded by {name}_code
            ConstData::U8(bytes) => {
                let words = bytes.len().div_ceil(8);
                let _ = writeln!(
                    s,
                    "/* {}: {} code bytes as {words} words (ROM) */\nstatic const {name}_rom_t {name}_c{n}[{words}] = {{",
                    comment(&t.name),
                    bytes.len(),
                );
                for (i, w) in bytes.chunks(8).enumerate() {
                    let mut v = [0u8; 8];
                    v[..w.len()].copy_from_slice(w);
                    let _ = write!(
                        s,
                        "{}0x{:016x}ULL,",
                        match i {
                            0 => "    ",
                            i if i % 4 == 0 => "\n    ",
                            _ => " ",
                        },
                        u64::from_le_bytes(v)
                    );
                }
                s.push_str("\n};\n\n");
            }
            data => {
                let _ = writeln!(
                    s,
                    "/* {}: {} x {} (ROM) */\nstatic const {} {name}_c{n}[{}] = {{",
                    comment(&t.name),
                    data.len(),
                    data.elem(),
                    Dialect::Hls.elem(data.elem()),
                    data.len()
                );
                c::table_values(&mut s, data);
                s.push_str("};\n\n");
            }
        }
    }
    s.push_str(&kernels);
    if let Some(plan) = &plan {
        let head_len: Vec<usize> = outs.iter().map(|o| o.1).collect();
        stream_top(&mut s, program, plan, name, &u, &head_len, &out_params);
    } else {
        let _ = write!(
            s,
            "void {name}_top(const float in[{u}_INPUT_LEN], float arena[{u}_ARENA_LEN]{sep}{params}) {{\n\
         #pragma HLS INTERFACE m_axi port=in offset=slave bundle=gmem0 depth={u}_INPUT_LEN\n\
         #pragma HLS INTERFACE m_axi port=arena offset=slave bundle=gmem1 depth={u}_ARENA_LEN\n",
            sep = if out_params.is_empty() { "" } else { ", " },
            params = out_params.join(", "),
        );
        for i in 0..outs.len() {
            let _ = writeln!(
                s,
                "#pragma HLS INTERFACE m_axi port=out{i} offset=slave bundle=gmem0 depth={u}_OUTPUT_{i}_LEN"
            );
        }
        s.push_str("#pragma HLS INTERFACE s_axilite port=return\n");
        if program.has_int8() {
            // static: on-chip memory under Vitis, not the stack in the C simulation
            let _ = writeln!(
                s,
                "    /* the int8 activations of the int8 layers, on chip (block RAM) */\n    \
             static int8_t q8[{u}_Q8_LEN];\n\
             #pragma HLS BIND_STORAGE variable=q8 type=ram_2p impl=bram"
            );
        }
        s.push_str(&calls);
        for (i, &(off, len)) in outs.iter().enumerate() {
            let _ = write!(
            s,
            "    for (int j = 0; j < {len}; j++) {{\n#pragma HLS PIPELINE II=1\n        out{i}[j] = arena[{off} + j];\n    }}\n"
        );
        }
        s.push_str("}\n");
    }

    // the test bench
    let (tb_arena, tb_arena_arg) = match arch {
        Arch::Sequential => (format!(", arena({u}_ARENA_LEN)"), ", arena.data()"),
        Arch::Stream => (String::new(), ""),
    };
    let mut tb = String::new();
    let _ = write!(
        tb,
        "/* C-simulation test bench of {name}_top: ./tb IN.raw OUTDIR reads the raw float32 [C,H,W]\n   \
         input and writes head i as OUTDIR/out_<i>.raw (raw float32). */\n\
         #include \"{stem}.h\"\n\n#include <cstdio>\n#include <vector>\n\n\
         int main(int argc, char **argv) {{\n    \
         if (argc != 3) {{\n        std::fprintf(stderr, \"usage: %s IN.raw OUTDIR\\n\", argv[0]);\n        return 1;\n    }}\n    \
         std::vector<float> in({u}_INPUT_LEN){tb_arena};\n    \
         std::FILE *f = std::fopen(argv[1], \"rb\");\n    \
         if (!f) {{ std::perror(argv[1]); return 1; }}\n    \
         size_t got = std::fread(in.data(), sizeof(float), in.size(), f);\n    \
         bool extra = std::fgetc(f) != EOF;\n    \
         std::fclose(f);\n    \
         if (got != in.size() || extra) {{\n        \
         std::fprintf(stderr, \"%s: expected %d floats ([%d,%d,%d])\\n\", argv[1], {u}_INPUT_LEN, {u}_INPUT_C, {u}_INPUT_H, {u}_INPUT_W);\n        \
         return 1;\n    }}\n"
    );
    for i in 0..outs.len() {
        let _ = writeln!(tb, "    std::vector<float> out{i}({u}_OUTPUT_{i}_LEN);");
    }
    let args: Vec<String> = (0..outs.len()).map(|i| format!(", out{i}.data()")).collect();
    let _ = writeln!(tb, "    {name}_top(in.data(){tb_arena_arg}{});", args.concat());
    for i in 0..outs.len() {
        let _ = write!(
            tb,
            "    {{\n        char path[4096];\n        std::snprintf(path, sizeof path, \"%s/out_{i}.raw\", argv[2]);\n        \
             std::FILE *o = std::fopen(path, \"wb\");\n        \
             if (!o || std::fwrite(out{i}.data(), sizeof(float), out{i}.size(), o) != out{i}.size()) {{\n            \
             std::perror(path);\n            return 1;\n        }}\n        std::fclose(o);\n    }}\n"
        );
    }
    let _ = write!(tb, "    std::printf(\"%d outputs\\n\", {u}_NUM_OUTPUTS);\n    return 0;\n}}\n");

    // the Tcl script
    let tcl = format!(
        "# Vitis HLS project for {name}_top (generated by ternc).\n\
         #   vitis_hls -f {stem}.tcl                       (in this directory)\n\
         # C simulation runs the test bench on TB_ARGS (a raw float32 [{ic},{ih},{iw}] input and an\n\
         # output directory); synthesis targets PART at 200 MHz; the IP goes to the Vivado catalog.\n\
         set PART    [expr {{[info exists ::env(PART)] ? $::env(PART) : \"xczu9eg-ffvb1156-2-e\"}}]\n\
         set TB_ARGS [expr {{[info exists ::env(TB_ARGS)] ? $::env(TB_ARGS) : \"in.raw out\"}}]\n\
         open_project -reset {name}_hls\n\
         set_top {name}_top\n\
         add_files {stem}.cpp -cflags \"-std=c++14\"\n\
         add_files -tb {stem}_tb.cpp -cflags \"-std=c++14\"\n\
         open_solution -reset solution1 -flow_target vivado\n\
         set_part $PART\n\
         create_clock -period 5 -name default\n\
         file mkdir out\n\
         csim_design -argv $TB_ARGS\n\
         csynth_design\n\
         # cosim_design -argv $TB_ARGS\n\
         export_design -format ip_catalog\n\
         exit\n"
    );
    Ok(HlsProject {
        files: vec![
            (format!("{stem}.h"), h),
            (format!("{stem}.cpp"), s),
            (format!("{stem}_tb.cpp"), tb),
            (format!("{stem}_ap_int.h"), AP_INT.to_string()),
            (format!("{stem}.tcl"), tcl),
        ],
        report: match &plan {
            None => report(program),
            Some(plan) => {
                Report { stream: Some(stream_report(program, plan, &line_bits)), ..report(program) }
            }
        },
    })
}

/// The streaming top function: buffers, the processes (one function a layer), the
/// DATAFLOW region.
fn stream_top(
    s: &mut String,
    program: &Program,
    plan: &stream::Plan,
    name: &str,
    u: &str,
    head_len: &[usize],
    out_params: &[String],
) {
    use stream::{edge, Proc};
    let _ = write!(
        s,
        "/* the input in from AXI, once */\nstatic void {name}_p0(const float *in, float x[{u}_INPUT_LEN]) {{\n    \
         for (int j = 0; j < {u}_INPUT_LEN; j++) {{\n#pragma HLS PIPELINE II=1\n        x[j] = in[j];\n    }}\n}}\n\n"
    );
    stream::glue_functions(s, plan, name, head_len);
    // the layers' processes
    for (p, proc) in plan.procs.iter().enumerate() {
        let Proc::Layer { layer, kernels } = proc else { continue };
        let mut params = Vec::new();
        let mut locals = String::new();
        for (v, val) in plan.values.iter().enumerate() {
            if val.producer == p && !val.local {
                params.push(format!("float v{v}[{}]", val.len()));
            } else if val.producer == p {
                let bits = val.len() as u64 * 32;
                let _ = writeln!(
                    locals,
                    "    /* scratch of layer {layer} (padded copy), on chip */\n    static float v{v}[{}];\n\
                     #pragma HLS BIND_STORAGE variable=v{v} type=ram_2p impl={}",
                    val.len(),
                    stream::storage(bits)
                );
            } else if val.consumers.contains(&p) {
                params.insert(0, format!("const float {}[{}]", edge(plan, v, p), val.len()));
            }
        }
        if let Some(&q) = plan.q8.get(layer) {
            let _ = writeln!(
                locals,
                "    /* the int8 activations of layer {layer}, on chip */\n    static int8_t q8[{q}];\n\
                 #pragma HLS BIND_STORAGE variable=q8 type=ram_2p impl=bram"
            );
        }
        let _ = writeln!(
            s,
            "/* layer {layer} ({}) as a DATAFLOW process */\nstatic void {name}_p{p}({}) {{\n{locals}",
            program.layers[*layer].kind,
            params.join(", ")
        );
        for &k in kernels {
            let arg = |v: Option<usize>| match v {
                None => "0".to_string(),
                Some(v) if plan.values[v].producer == p => format!("v{v}"),
                Some(v) => edge(plan, v, p),
            };
            let q8 =
                if plan.q8.contains_key(layer) && kernel_buffers(&plan.kernels[k]).q8 { ", q8" } else { "" };
            let _ = writeln!(s, "    {name}_k{k}({}, {}{q8});", arg(plan.src[k]), arg(plan.dst[k]));
        }
        s.push_str("}\n\n");
    }
    // the top function
    let _ = write!(
        s,
        "void {name}_top(const float in[{u}_INPUT_LEN]{sep}{params}) {{\n\
         #pragma HLS INTERFACE m_axi port=in offset=slave bundle=gmem0 depth={u}_INPUT_LEN\n",
        sep = if out_params.is_empty() { "" } else { ", " },
        params = out_params.join(", "),
    );
    for i in 0..head_len.len() {
        let _ = writeln!(
            s,
            "#pragma HLS INTERFACE m_axi port=out{i} offset=slave bundle=gmem1 depth={u}_OUTPUT_{i}_LEN"
        );
    }
    s.push_str("#pragma HLS INTERFACE s_axilite port=return\n");
    s.push_str(
        "    /* every layer output in its own on-chip buffer (one per consumer), static: not the stack */\n",
    );
    for (v, val) in plan.values.iter().enumerate() {
        if val.local {
            continue;
        }
        let what = match val.layer {
            None => "the input".to_string(),
            Some(l) => format!("layer {l} ({})", program.layers[l].kind),
        };
        let mut names = vec![format!("v{v}")];
        if val.consumers.len() > 1 {
            names.extend((0..val.consumers.len()).map(|j| format!("v{v}_{j}")));
        }
        for n in names {
            let _ = writeln!(
                s,
                "    static float {n}[{}]; /* {what} */\n#pragma HLS BIND_STORAGE variable={n} type=ram_2p impl={}",
                val.len(),
                stream::storage(val.len() as u64 * 32)
            );
        }
    }
    s.push_str("#pragma HLS DATAFLOW\n");
    let forks = |s: &mut String, p: usize| {
        for (v, val) in plan.values.iter().enumerate() {
            if val.producer == p && !val.local && val.consumers.len() > 1 {
                let outs: Vec<String> = (0..val.consumers.len()).map(|j| format!("v{v}_{j}")).collect();
                let _ = writeln!(s, "    {name}_fork{v}(v{v}, {});", outs.join(", "));
            }
        }
    };
    for (p, proc) in plan.procs.iter().enumerate() {
        let args: Vec<String> = match proc {
            Proc::Input => vec!["in".into(), "v0".into()],
            Proc::Layer { .. } => {
                let mut a = Vec::new();
                for (v, val) in plan.values.iter().enumerate() {
                    if val.producer == p && !val.local {
                        a.push(format!("v{v}"));
                    } else if val.producer != p && val.consumers.contains(&p) {
                        a.insert(0, edge(plan, v, p));
                    }
                }
                a
            }
            Proc::Concat { value, parts } => {
                let mut a: Vec<String> = parts.iter().map(|&q| edge(plan, q, p)).collect();
                a.push(format!("v{value}"));
                a
            }
            Proc::Output { head, value } => vec![edge(plan, *value, p), format!("out{head}")],
        };
        let _ = writeln!(s, "    {name}_p{p}({});", args.join(", "));
        forks(s, p);
    }
    s.push_str("}\n");
}

/// The streaming form's memory figures.
fn stream_report(
    program: &Program,
    plan: &stream::Plan,
    line_bits: &std::collections::BTreeMap<usize, u64>,
) -> StreamReport {
    let mut layers = Vec::new();
    for proc in &plan.procs {
        let stream::Proc::Layer { layer, .. } = proc else { continue };
        let (buffer_bits, local_bits) = stream::layer_bits(plan, *layer);
        layers.push(StreamLayer {
            layer: *layer,
            kind: program.layers[*layer].kind.clone(),
            buffer_bits,
            local_bits,
            line_bits: line_bits.get(layer).copied().unwrap_or(0),
        });
    }
    // routes assembled by concat processes count as their layer's buffers
    for v in &plan.values {
        if let (Some(l), false) = (v.layer, layers.iter().any(|x| Some(x.layer) == v.layer)) {
            let (buffer_bits, local_bits) = stream::layer_bits(plan, l);
            layers.push(StreamLayer {
                layer: l,
                kind: program.layers[l].kind.clone(),
                buffer_bits,
                local_bits,
                line_bits: 0,
            });
        }
    }
    layers.sort_by_key(|l| l.layer);
    let input = &plan.values[0];
    StreamReport {
        layers,
        input_bits: (input.len() as u64)
            * 32
            * if input.consumers.len() > 1 { 1 + input.consumers.len() as u64 } else { 1 },
        forks: plan.values.iter().filter(|v| !v.local && v.consumers.len() > 1).count(),
        concats: plan.procs.iter().filter(|p| matches!(p, stream::Proc::Concat { .. })).count(),
    }
}
