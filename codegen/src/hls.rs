//! The HLS backend: a [`Program`] as C++ for Vitis HLS, with a C-simulation test
//! bench, a Tcl script and a per-layer resource and latency report.
//!
//! # The files (for `-o DIR/net`)
//!
//! - `net.h`: sizes as macros and the top function
//!   `void NAME_top(const float in[], float arena[], float out0[], ...)`;
//! - `net.cpp`: the constant tables as ROMs (`static const`; the packed ternary codes
//!   as `ap_uint<8>`, four 2-bit weights a byte; a plain byte under g++ without Vitis), one function per kernel printed by
//!   the C backend's printer ([`crate::c::KernelPrinter`]) with `#pragma HLS PIPELINE
//!   II=1` on innermost loops and the 2-bit decode table partitioned four ways (the
//!   four codes of a byte decode in one cycle), and the top function: AXI masters for
//!   the input, the arena (scratch in DDR) and each output, AXI-lite control, the
//!   kernels called in order, then the outputs copied out;
//! - `net_tb.cpp`: the test bench, `./tb IN.raw OUTDIR`: reads the raw float32
//!   `[C,H,W]` input, runs the top function, writes head `i` as `OUTDIR/out_<i>.raw`;
//! - `net_ap_int.h`: a small `ap_uint`/`ap_int` stand-in, included when `<ap_int.h>`
//!   (Vitis) is not on the include path, so `g++ -std=c++14 -O2 DIR/*.cpp -o tb`
//!   builds and runs anywhere;
//! - `net.tcl`: `vitis_hls -f net.tcl` creates the project, runs the C simulation
//!   (`TB_ARGS`), synthesis at 200 MHz (5 ns) for the part in `PART`, and exports IP.
//!
//! The kernels are the same loop nests as the C target's: a faithful, synthesizable
//! C-simulation reference with multiply-free ternary loops and 2-bit weight ROMs.
//! Not yet here: line buffers for convolution windows, DATAFLOW between layers and
//! adder trees for the ternary sums (the accumulation chains bound the II, which
//! the [`report`] estimates).

use std::fmt::Write as _;

use crate::c::{self, comment, kernel_buffers, Dialect, KernelPrinter};
use crate::program::*;
use crate::CodegenError;

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
    pub kernels: usize,
    /// fp32 adders and subtractors instantiated by the pipelined innermost loops.
    pub adders: usize,
    /// Multipliers in the innermost loops (0 for ternary convolutions).
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
            "layer  type            kernels  adders  mults  parallel    ROM bits  2-bit codes      est. cycles"
        )?;
        for l in &self.layers {
            writeln!(
                f,
                "{:5}  {:<14} {:8} {:7} {:6} {:9} {:11} {:12} {:16}",
                l.layer,
                l.kind,
                l.kernels,
                l.adders,
                l.multipliers,
                l.parallel,
                l.rom_bits,
                l.code_bits,
                l.cycles
            )?;
        }
        let rom: u64 = self.layers.iter().map(|l| l.rom_bits).sum();
        let codes: u64 = self.layers.iter().map(|l| l.code_bits).sum();
        write!(
            f,
            "total: {} adders, ROM {:.2} Mbit ({:.2} Mbit of 2-bit codes), {} cycles = {:.3} ms at {} MHz \
             (II from accumulation chains x {} cycles per fadd and one arena access a cycle; no DATAFLOW overlap)",
            self.layers.iter().map(|l| l.adders).sum::<usize>(),
            rom as f64 / 1e6,
            codes as f64 / 1e6,
            self.total_cycles(),
            self.latency_ms(),
            CLOCK_MHZ,
            FADD_LATENCY,
        )
    }
}

/// Per-kernel figures: `(adders, multipliers, parallel, cycles)`.
///
/// Cycles: a statement outside an innermost loop costs one cycle; an innermost loop
/// costs its trips times its II, the largest of 1, the longest chain of dependent
/// float adds on one local times [`FADD_LATENCY`], and its arena and input accesses
/// (one AXI port each); a loop whose bounds come from a table counts 16 trips.
fn kernel_figures(k: &Kernel) -> (usize, usize, usize, u64) {
    fn inner_ii(k: &Kernel, body: &[Stmt]) -> (usize, usize, usize, u64) {
        let (mut adds, mut muls) = (0, 0);
        let mut chain = vec![0u64; k.locals.len()];
        let (mut arena, mut input) = (0u64, 0u64);
        let mut accs = std::collections::BTreeSet::new();
        for st in body {
            match st {
                Stmt::Assign { dst, expr } => {
                    let lanes = k.locals[dst.0 as usize].lanes();
                    match expr {
                        Expr::Binary { op: BinOp::Add | BinOp::Sub, a, b }
                            if k.locals[dst.0 as usize].is_float() =>
                        {
                            adds += lanes;
                            if [a, b].contains(&&Operand::Local(*dst)) {
                                chain[dst.0 as usize] += 1;
                                accs.insert(dst.0);
                            }
                        }
                        Expr::Binary { op: BinOp::Mul, .. } if k.locals[dst.0 as usize].is_float() => {
                            muls += lanes
                        }
                        Expr::Load { buf: Buf::Arena, .. } => arena += 1,
                        Expr::LoadVec { buf: Buf::Arena, .. } => arena += 4,
                        Expr::Load { buf: Buf::Input, .. } => input += 1,
                        Expr::LoadVec { buf: Buf::Input, .. } => input += 4,
                        _ => {}
                    }
                }
                Stmt::Store { .. } => arena += 1,
                Stmt::Loop(_) => {}
            }
        }
        let par = accs.iter().map(|&a| k.locals[a as usize].lanes()).sum();
        let chain = chain.into_iter().max().unwrap_or(0) * FADD_LATENCY;
        (adds, muls, par, chain.max(arena).max(input).max(1))
    }
    fn walk(k: &Kernel, body: &[Stmt], acc: &mut (usize, usize, usize, u64)) -> u64 {
        let mut cycles = 0;
        for st in body {
            match st {
                Stmt::Loop(l) => {
                    let trips = l.const_trips().unwrap_or(16).max(0) as u64;
                    if l.body.iter().any(|s| matches!(s, Stmt::Loop(_))) {
                        cycles += trips * walk(k, &l.body, acc);
                    } else {
                        let (adds, muls, par, ii) = inner_ii(k, &l.body);
                        acc.0 += adds;
                        acc.1 += muls;
                        acc.2 = acc.2.max(par);
                        cycles += trips * ii;
                    }
                }
                _ => cycles += 1,
            }
        }
        cycles
    }
    let mut acc = (0, 0, 0, 0);
    let cycles = walk(k, &k.body, &mut acc);
    (acc.0, acc.1, acc.2.max(1), cycles)
}

/// The per-layer report of `program` (kernels grouped by their Darknet layer).
pub fn report(program: &Program) -> Report {
    let mut layers: Vec<LayerReport> = Vec::new();
    let mut seen = vec![false; program.consts.len()];
    for k in &program.kernels {
        let layer = k.layer.unwrap_or(0);
        let (adders, multipliers, parallel, cycles) = kernel_figures(k);
        let (mut rom_bits, mut code_bits) = (0, 0);
        for n in kernel_buffers(k).2 {
            if std::mem::replace(&mut seen[n], true) {
                continue;
            }
            let t = &program.consts[n];
            let bits = (t.data.len() * t.data.elem().bytes() * 8) as u64;
            rom_bits += bits;
            if t.data.elem() == Elem::U8 {
                code_bits += bits;
            }
        }
        match layers.last_mut() {
            Some(l) if l.layer == layer => {
                l.kernels += 1;
                l.adders += adders;
                l.multipliers += multipliers;
                l.parallel = l.parallel.max(parallel);
                l.rom_bits += rom_bits;
                l.code_bits += code_bits;
                l.cycles += cycles;
            }
            _ => layers.push(LayerReport {
                layer,
                kind: program.layers.get(layer).map_or_else(String::new, |l| l.kind.clone()),
                kernels: 1,
                adders,
                multipliers,
                rom_bits,
                code_bits,
                parallel,
                cycles,
            }),
        }
    }
    Report { layers }
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
    program.verify().map_err(CodegenError::Invalid)?;
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
    let _ = write!(
        h,
        "\n/* Runs the network on in [C,H,W] (RGB, 0..1); arena is scratch; out<i> receives head i. */\n\
         void {name}_top(const float in[{u}_INPUT_LEN], float arena[{u}_ARENA_LEN]{sep}{params});\n\n#endif\n",
        sep = if out_params.is_empty() { "" } else { ", " },
        params = out_params.join(", "),
    );

    // the implementation
    let mut s = String::with_capacity(program.const_bytes() * 3 + (1 << 20));
    let _ = write!(
        s,
        "/* {name}: Vitis HLS C++ generated by ternc from \"{model}\": {nk} kernels of the ternc\n   \
         kernel program, ternary weights as 2-bit codes in ap_uint<8> ROMs, no multiplies in\n   \
         the ternary loops. */\n\
         #include \"{stem}.h\"\n\n#include <math.h>\n#include <stdint.h>\n\n\
         #ifdef __has_include\n#if __has_include(<ap_int.h>)\n#include <ap_int.h>\n#define {u}_HAVE_AP_INT 1\n#endif\n#endif\n\
         #ifndef {u}_HAVE_AP_INT\n#include \"{stem}_ap_int.h\" /* no Vitis headers: the stand-in */\n#endif\n\n\
         /* A ROM word of four 2-bit codes: ap_uint<8> for synthesis; a plain byte (the same 8\n   \
         bits) without Vitis, as g++ initialises millions of class elements slowly. */\n\
         #ifdef {u}_HAVE_AP_INT\ntypedef ap_uint<8> {name}_codes_t;\n#else\ntypedef uint8_t {name}_codes_t;\n#endif\n\n\
         ",
        model = comment(&program.name),
        nk = program.kernels.len(),
    );
    let decode = program.consts.iter().position(|t| t.name == "ternary2.decode");
    for n in c::used_tables(program) {
        let t = &program.consts[n];
        let ty = match t.data.elem() {
            Elem::U8 => format!("{name}_codes_t"),
            e => Dialect::Hls.elem(e).to_string(),
        };
        let _ = writeln!(
            s,
            "/* {}: {} x {} (ROM) */\nstatic const {ty} {name}_c{n}[{}] = {{",
            comment(&t.name),
            t.data.len(),
            t.data.elem(),
            t.data.len()
        );
        c::table_values(&mut s, &t.data);
        s.push_str("};\n\n");
    }
    let names = |b: Buf| match b {
        Buf::Input => "in".to_string(),
        Buf::Arena => "arena".to_string(),
        Buf::Const(n) => format!("{name}_c{n}"),
    };
    for (k, kernel) in program.kernels.iter().enumerate() {
        let (uses_in, uses_arena, tables) = kernel_buffers(kernel);
        let layer = kernel.layer.map_or(String::new(), |l| format!(" (layer {l})"));
        let _ = writeln!(
            s,
            "/* k{k}: {}{layer} */\nstatic void {name}_k{k}(const float *in, float *arena) {{",
            comment(&kernel.name)
        );
        if let Some(d) = decode.filter(|d| tables.contains(d)) {
            let _ = writeln!(s, "#pragma HLS ARRAY_PARTITION variable={name}_c{d} block factor=4 dim=1");
        }
        if !uses_in {
            s.push_str("    (void)in;\n");
        }
        if !uses_arena {
            s.push_str("    (void)arena;\n");
        }
        let mut p = KernelPrinter::new(kernel, Dialect::Hls, &names);
        p.pipeline_inner = true;
        s.push_str(&p.print(1));
        s.push_str("}\n\n");
    }
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
    for k in 0..program.kernels.len() {
        let _ = writeln!(s, "    {name}_k{k}(in, arena);");
    }
    for (i, &(off, len)) in outs.iter().enumerate() {
        let _ = write!(
            s,
            "    for (int j = 0; j < {len}; j++) {{\n#pragma HLS PIPELINE II=1\n        out{i}[j] = arena[{off} + j];\n    }}\n"
        );
    }
    s.push_str("}\n");

    // the test bench
    let mut tb = String::new();
    let _ = write!(
        tb,
        "/* C-simulation test bench of {name}_top: ./tb IN.raw OUTDIR reads the raw float32 [C,H,W]\n   \
         input and writes head i as OUTDIR/out_<i>.raw (raw float32). */\n\
         #include \"{stem}.h\"\n\n#include <cstdio>\n#include <vector>\n\n\
         int main(int argc, char **argv) {{\n    \
         if (argc != 3) {{\n        std::fprintf(stderr, \"usage: %s IN.raw OUTDIR\\n\", argv[0]);\n        return 1;\n    }}\n    \
         std::vector<float> in({u}_INPUT_LEN), arena({u}_ARENA_LEN);\n    \
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
    let _ = writeln!(tb, "    {name}_top(in.data(), arena.data(){});", args.concat());
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
        report: report(program),
    })
}
