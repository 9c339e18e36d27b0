//! Lowering: graph → [`Program`].
//!
//! One pass over the layers in Darknet order. Every layer output lives where the
//! memory plan (`ternc_passes::memory::run`, 4 bytes an element) puts it; views and
//! elided routes run no code, routes copy only the inputs not written in place.
//! Shapes, strides, paddings, weights and tap offsets all become constants.
//!
//! # Convolution
//!
//! Padding is a copy: a `pad` kernel writes the input with its zero border into the
//! scratch area after the planned arena, so the convolution reads without bounds
//! checks and every index is affine. Outputs are computed in tiles of
//! [`LowerOptions::tile`] pixels × [`LowerOptions::tile_rows`] rows, in independent
//! accumulators, so each tap's table load and loop overhead is shared by the whole
//! tile; shorter tail tiles cover what is left of a row or of the map. With
//! [`LowerOptions::vectors`] and stride 1, each group of 4 pixels of a tile row is one
//! `f32x4` accumulator fed by 4-wide loads (the rest of the row stays scalar). Each
//! output is `act(s_o·acc + b_o)`: one multiply per output (lane-wise for vectors),
//! after the accumulation; logistic epilogues extract the lanes and run scalar.
//!
//! Ternary layers have two forms ([`TernaryKernel`]):
//!
//! - **table**: per output channel, the tap offsets (input channel, ky, kx → element
//!   offset in the padded input) of its `+1` codes, then of its `−1` codes, in one
//!   `i32` table; a second table holds each channel's `[+1 start, −1 start, end)`.
//!   The inner loops are `acc += x[base + tap]` over the `+1` taps and `acc −= ...`
//!   over the `−1` taps: no multiply, zeros skipped, and code size independent of the
//!   weights. Costs one table load per tap (amortised over the tile) and two loops
//!   with table-loaded bounds.
//! - **unrolled**: the codes are compile-time constants, so each output channel gets
//!   its own code with one load and add/sub per nonzero tap at a constant offset,
//!   and its scale and bias as immediates. No table loads and no tap loop, but code
//!   grows with the number of nonzero weights (times the tile shapes), so it is only
//!   for small layers ([`LowerOptions::unroll_max_taps`]).
//!
//! A third form, [`TernaryKernel::Packed`], keeps the weights as 2-bit codes (see its
//! docs); the portable printers (C, HLS, OpenCL) use it.
//!
//! Table kernels sum the input channels in chunks ([`LowerOptions::chunk_bytes`]):
//! the part of the input that one pass over the tiles reads for a chunk (whole
//! planes with channels outermost, the rows of a row group otherwise) stays in L1
//! while every output channel reads it. The output holds the partial sums: a first
//! kernel zeroes it, every chunk's pass adds to it, a last kernel runs the epilogue. On
//! yolov3-tiny this halves the time of the 13×13 and 26×26 layers, whose inputs
//! (0.5–1 MB) would otherwise stream from L2 for every output channel.
//!
//! Float layers keep a dense weight table and a tap-offset table shared by all output
//! channels: `acc += w·x`.
//!
//! Loop order: output channel outermost when the (padded) input fits in
//! [`LowerOptions::channel_outer_max_bytes`] (the input stays cached while each
//! channel's taps are read once), output row outermost otherwise (a few input rows
//! stay cached while all channels' taps are streamed per row).

use ternc_ir::{
    Activation, Conv, Graph, LayerParams, MaxPool, Op, Region, Reorg, ReorgKind, Route, Shape, Shortcut,
    ShortcutWeights, Upsample, Yolo,
};
use ternc_passes::fold::{self, BN_EPSILON};
use ternc_passes::memory::{self, MemoryPlan};
use ternc_passes::ternary::{twn, DEFAULT_THRESHOLD};

use crate::program::*;
use crate::CodegenError;

mod activation;
mod conv;
pub mod int8;
mod layers;

use activation::*;

/// How ternary convolutions are lowered (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TernaryKernel {
    /// Unrolled up to [`LowerOptions::unroll_max_taps`] nonzero codes, table above.
    #[default]
    Auto,
    Table,
    Unrolled,
    /// **packed**: the codes stay 2-bit constants (`ternc_passes::pack::Packed2`, four
    /// a byte), read densely: per tap, the code is decoded through a constant table
    /// (byte, position → 0.0 / +1.0 / −1.0) and the input is added or subtracted by
    /// compare-and-select, no multiply. Twice the work of a table on a CPU (zeros are
    /// not skipped), but constant trip counts and 2 bits a weight: the form the C, HLS
    /// and OpenCL printers use.
    Packed,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LowerOptions {
    /// Output pixels computed together along a row.
    pub tile: usize,
    /// Output rows computed together (`0`: as many as keep about 12 accumulators in
    /// registers, at most 4).
    pub tile_rows: usize,
    /// Accumulate stride-1 convolutions in `f32x4` vectors.
    pub vectors: bool,
    pub ternary: TernaryKernel,
    /// `Auto` unrolls a ternary layer with at most this many nonzero codes. Unrolled
    /// code measured no faster than tables on yolov3-tiny (layer 0: 8 ms unrolled,
    /// 5 ms as a table) and compiles slowly, so only tiny layers are unrolled.
    pub unroll_max_taps: usize,
    /// Output channel outermost when the padded input has at most this many bytes.
    pub channel_outer_max_bytes: usize,
    /// Ternary table kernels sum the input channels in chunks whose reads fit in this
    /// many bytes (about half of L1), storing partial sums in between (`0`: no chunks).
    pub chunk_bytes: usize,
    /// W2A8: per layer, the quantization step of its input (`ternc_runtime::quant`);
    /// the ternary layers with a step take int8 inputs (see [`int8`]). Empty: float
    /// activations everywhere (W2A32).
    pub act_steps: Vec<Option<f32>>,
    /// Output pixels an int8 ternary kernel computes together along a row.
    pub tile_i8: usize,
}

impl Default for LowerOptions {
    fn default() -> Self {
        LowerOptions {
            tile: 8,
            tile_rows: 0,
            vectors: true,
            ternary: TernaryKernel::Auto,
            unroll_max_taps: 128,
            channel_outer_max_bytes: 512 << 10,
            chunk_bytes: 16 << 10,
            act_steps: Vec::new(),
            tile_i8: 16,
        }
    }
}

/// The graph the compiled backends run: layers flagged `ternary=1` without codes
/// (convolutional or connected) get TWN codes (per layer, Darknet-TWN's threshold, as
/// the reference interpreter computes them), then batchnorm is folded
/// (`ternc_passes::fold`) into float weights and into the ternary layers' per-channel
/// scales.
///
/// A ternary layer's float weights are not copied: its kernels read only the codes
/// (on yolov3-voc that is 235 MiB not copied and not scaled by batchnorm).
pub fn prepare(graph: &Graph) -> Result<Graph, CodegenError> {
    let mut g = Graph {
        name: graph.name.clone(),
        net: graph.net.clone(),
        g: graph.g.clone(),
        input: graph.input,
        layers: graph.layers.clone(),
        params: ternc_ir::ParamStore { seen: graph.params.seen, layers: Default::default() },
    };
    for (&i, p) in &graph.params.layers {
        let flagged = i < graph.num_layers() && graph.layer(i).op.is_ternary();
        let ternary = match &p.ternary {
            None if flagged && !p.weights.is_empty() => {
                let t = twn(&p.weights, DEFAULT_THRESHOLD);
                Some(ternc_ir::TernaryParams { codes: t.codes, scales: vec![t.alpha] })
            }
            t => t.clone(),
        };
        let weights = if ternary.is_some() { Vec::new() } else { p.weights.clone() };
        let q = LayerParams { biases: p.biases.clone(), weights, bn: p.bn.clone(), ternary };
        g.params.layers.insert(i, q);
    }
    fold::run(&mut g).map_err(CodegenError::Invalid)?;
    Ok(g)
}

/// Weights of a convolutional or connected layer: its float weights, or (a ternary
/// layer after [`prepare`]) its codes.
fn weight_count(p: &LayerParams) -> usize {
    match (&p.ternary, p.weights.len()) {
        (Some(t), 0) => t.codes.len(),
        (_, n) => n,
    }
}

/// Lowers `graph` (best after [`prepare`]; unfolded batchnorm still works, as a
/// per-channel epilogue) into a verified [`Program`].
pub fn lower(graph: &Graph, opts: &LowerOptions) -> Result<Program, CodegenError> {
    if opts.tile == 0 || opts.tile_i8 == 0 {
        return Err(CodegenError::Invalid("tile must be at least 1".into()));
    }
    if let Some((i, s)) = opts.act_steps.iter().enumerate().find_map(|(i, s)| s.map(|s| (i, s))) {
        if !(s.is_finite() && s > 0.0) || opts.act_steps.len() > graph.num_layers() {
            return Err(CodegenError::Invalid(format!("bad int8 step {s} for layer {i}")));
        }
    }
    let plan = memory::run(graph, 4);
    plan.validate(graph).map_err(CodegenError::Invalid)?;
    let plan_len = plan.arena_bytes / 4;
    let mut l = Lowerer {
        g: graph,
        plan: &plan,
        opts,
        consts: Vec::new(),
        kernels: Vec::new(),
        scratch_off: plan_len,
        scratch_len: 0,
        q8_len: 0,
    };
    let mut layers = Vec::with_capacity(graph.num_layers());
    for i in 0..graph.num_layers() {
        let first = l.kernels.len();
        l.layer(i)?;
        let node = graph.layer(i);
        let slot = plan.slots[i];
        let mut note = if plan.views.contains(&i) {
            format!("view of {}", slot.alias_of.unwrap_or(i))
        } else if l.kernels.len() == first {
            "no code".to_string()
        } else {
            (first..l.kernels.len()).map(|k| format!("k{k}")).collect::<Vec<_>>().join(" ")
        };
        if let Some(r) = slot.alias_of.filter(|&r| r > i) {
            note.push_str(&format!(", written into route {r}"));
        }
        layers.push(LayerOut {
            layer: i,
            kind: node.op.type_name().to_string(),
            shape: node.shape.to_array(),
            offset: slot.offset / 4,
            note,
        });
    }
    let mut outputs = graph.heads();
    if outputs.is_empty() {
        outputs.extend(graph.num_layers().checked_sub(1));
    }
    let program = Program {
        name: graph.name.clone(),
        input_shape: graph.input_shape().to_array(),
        arena_len: plan_len + l.scratch_len,
        plan_len,
        q8_len: l.q8_len,
        consts: l.consts,
        kernels: l.kernels,
        layers,
        outputs,
    };
    program.verify().map_err(CodegenError::Invalid)?;
    Ok(program)
}

/// A `[c, h, w]` feature map at element `off` of a buffer.
#[derive(Debug, Clone, Copy)]
struct Map {
    buf: Buf,
    off: i64,
    c: usize,
    h: usize,
    w: usize,
}

impl Map {
    fn plane(&self) -> usize {
        self.h * self.w
    }
    fn numel(&self) -> usize {
        self.c * self.plane()
    }
    /// Element `(c, y, x)`.
    fn at(&self, c: &Index, y: &Index, x: &Index) -> Index {
        Index::at(self.off).plus(&c.scaled(self.plane() as i64)).plus(&y.scaled(self.w as i64)).plus(x)
    }
}

struct Lowerer<'a> {
    g: &'a Graph,
    plan: &'a MemoryPlan,
    opts: &'a LowerOptions,
    consts: Vec<ConstTable>,
    kernels: Vec<Kernel>,
    /// Floats: where the scratch area starts, and how much of it is used.
    scratch_off: usize,
    scratch_len: usize,
    /// Bytes of `q8` used (every int8 layer's input starts at 0).
    q8_len: usize,
}

/// Per-channel epilogue `y = act(s·acc + b)`.
struct Epilogue {
    scale: Vec<f32>,
    bias: Vec<f32>,
    act: Activation,
}

/// The per-output epilogue of a convolution or connected layer with `rows` outputs
/// (batchnorm folded into scale and bias, the ternary α into the scale) and its
/// ternary codes: the ternarization pass's, or TWN's for a cfg's `ternary=1`.
fn epilogue_and_codes(
    p: &LayerParams,
    rows: usize,
    ternary: bool,
    act: Activation,
) -> (Epilogue, Option<Vec<i8>>) {
    let (mut scale, bias): (Vec<f32>, Vec<f32>) = match &p.bn {
        Some(bn) => (0..rows)
            .map(|k| {
                let a = bn.scales[k] / (bn.variance[k] + BN_EPSILON).sqrt();
                (a, p.biases[k] - bn.mean[k] * a)
            })
            .unzip(),
        None => (vec![1.0; rows], p.biases.clone()),
    };
    let codes = match (&p.ternary, ternary) {
        (Some(t), _) => {
            for (k, s) in scale.iter_mut().enumerate() {
                *s *= if t.scales.len() == 1 { t.scales[0] } else { t.scales[k] };
            }
            Some(t.codes.clone())
        }
        (None, true) => {
            let t = twn(&p.weights, DEFAULT_THRESHOLD);
            scale.iter_mut().for_each(|s| *s *= t.alpha);
            Some(t.codes)
        }
        (None, false) => None,
    };
    (Epilogue { scale, bias, act }, codes)
}

fn idx(v: usize) -> i64 {
    v as i64
}

impl<'a> Lowerer<'a> {
    fn unsupported(&self, i: usize, what: impl Into<String>) -> CodegenError {
        CodegenError::Unsupported { layer: i, op: self.g.layer(i).op.type_name(), what: what.into() }
    }

    fn table(&mut self, name: String, data: ConstData) -> Buf {
        self.consts.push(ConstTable { name, data });
        Buf::Const(self.consts.len() - 1)
    }

    fn map_of(&self, layer: Option<usize>, shape: Shape) -> Map {
        let (buf, off) = match layer {
            Some(l) => (Buf::Arena, idx(self.plan.slots[l].offset / 4)),
            None => (Buf::Input, 0),
        };
        Map { buf, off, c: shape.c, h: shape.h, w: shape.w }
    }

    /// The inputs of layer `i` and its output.
    fn maps(&self, i: usize) -> (Vec<Map>, Map) {
        let n = self.g.layers[i];
        let ins = self
            .g
            .inputs(n)
            .into_iter()
            .map(|s| self.map_of(self.g.node(s).layer, self.g.node(s).shape))
            .collect();
        (ins, self.map_of(Some(i), self.g.layer(i).shape))
    }

    fn layer(&mut self, i: usize) -> Result<(), CodegenError> {
        if self.plan.views.contains(&i) {
            return Ok(());
        }
        let (ins, out) = self.maps(i);
        let op = &self.g.layer(i).op;
        match op {
            Op::Conv(cv) => {
                self.conv(i, cv, ins[0], out)?;
                self.channel_activation(i, cv.activation, out);
                Ok(())
            }
            Op::Connected(c) => self.connected(i, c, ins[0], out),
            Op::MaxPool(p) => self.maxpool(i, p, ins[0], out),
            Op::Route(r) => {
                self.route(i, r, &ins, out);
                Ok(())
            }
            Op::Upsample(u) => self.upsample(i, u, ins[0], out),
            Op::Shortcut(s) => self.shortcut(i, s, &ins, out),
            Op::Reorg(r) => self.reorg(i, r, ins[0], out),
            Op::AvgPool => {
                self.avgpool(i, ins[0], out);
                Ok(())
            }
            Op::Yolo(y) => {
                self.yolo(i, y, ins[0], out);
                Ok(())
            }
            Op::Region(r) => {
                self.region(i, r, ins[0], out);
                Ok(())
            }
            Op::Dropout(_) | Op::Cost(_) => {
                let mut kb = KernelBuilder::new(format!("copy {i}"), Some(i));
                copy(&mut kb, ins[0].buf, ins[0].off, out.off, out.numel());
                self.kernels.push(kb.finish());
                Ok(())
            }
            Op::ScaleChannels(s) => {
                self.scale_channels(i, s, &ins, out);
                Ok(())
            }
            Op::Sam(s) => {
                self.sam(i, s, &ins, out);
                Ok(())
            }
            Op::Softmax(s) => {
                self.softmax(i, s, ins[0], out);
                Ok(())
            }
            Op::Input => Err(CodegenError::Invalid(format!("layer {i} is an input"))),
        }
    }
}

/// `dst[out.off + start + j] = f(src[x.off + start + j])` for `j < len`, `f` acting on `v`.
fn elementwise(
    kb: &mut KernelBuilder,
    x: Map,
    out: Map,
    start: usize,
    len: usize,
    f: impl FnOnce(&mut KernelBuilder),
    v: Local,
) {
    kb.for_range(0, idx(len), 1, "", |kb, j| {
        kb.load(v, x.buf, j.add(x.off + idx(start)));
        f(kb);
        kb.store(Buf::Arena, j.add(out.off + idx(start)), v);
    });
}

/// `dst[d..d+len] = src[s..s+len]`.
fn copy(kb: &mut KernelBuilder, buf: Buf, s: i64, d: i64, len: usize) {
    let v = kb.local(Ty::F32);
    kb.for_range(0, idx(len), 1, "copy", |kb, j| {
        kb.load(v, buf, j.add(s));
        kb.store(Buf::Arena, j.add(d), v);
    });
}
