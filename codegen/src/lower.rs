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

/// How ternary convolutions are lowered (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TernaryKernel {
    /// Unrolled up to [`LowerOptions::unroll_max_taps`] nonzero codes, table above.
    #[default]
    Auto,
    Table,
    Unrolled,
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
    /// `Auto` unrolls a ternary layer with at most this many nonzero codes.
    pub unroll_max_taps: usize,
    /// Output channel outermost when the padded input has at most this many bytes.
    pub channel_outer_max_bytes: usize,
}

impl Default for LowerOptions {
    fn default() -> Self {
        LowerOptions {
            tile: 8,
            tile_rows: 0,
            vectors: true,
            ternary: TernaryKernel::Auto,
            unroll_max_taps: 1024,
            channel_outer_max_bytes: 512 << 10,
        }
    }
}

/// The graph the compiled backends run: layers flagged `ternary=1` without codes get
/// TWN codes (per layer, Darknet-TWN's threshold, as the reference interpreter
/// computes them), then batchnorm is folded (`ternc_passes::fold`) into float weights
/// and into the ternary layers' per-channel scales.
pub fn prepare(graph: &Graph) -> Result<Graph, CodegenError> {
    let mut g = graph.clone();
    for i in 0..g.num_layers() {
        let op = &g.layer(i).op;
        if !(op.is_ternary() && matches!(op, Op::Conv(_))) {
            continue;
        }
        if let Some(p) = g.params.layers.get_mut(&i) {
            if p.ternary.is_none() && !p.weights.is_empty() {
                let t = twn(&p.weights, DEFAULT_THRESHOLD);
                p.ternary = Some(ternc_ir::TernaryParams { codes: t.codes, scales: vec![t.alpha] });
            }
        }
    }
    fold::run(&mut g).map_err(CodegenError::Invalid)?;
    Ok(g)
}

/// Lowers `graph` (best after [`prepare`]; unfolded batchnorm still works, as a
/// per-channel epilogue) into a verified [`Program`].
pub fn lower(graph: &Graph, opts: &LowerOptions) -> Result<Program, CodegenError> {
    if opts.tile == 0 {
        return Err(CodegenError::Invalid("tile must be at least 1".into()));
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
}

/// Per-channel epilogue `y = act(s·acc + b)`.
struct Epilogue {
    scale: Vec<f32>,
    bias: Vec<f32>,
    act: Activation,
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
            Op::Conv(cv) => self.conv(i, cv, ins[0], out),
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
            Op::Input => Err(CodegenError::Invalid(format!("layer {i} is an input"))),
            Op::Connected(_) | Op::ScaleChannels(_) | Op::Sam(_) | Op::Softmax(_) => {
                Err(self.unsupported(i, "this layer type"))
            }
        }
    }

    // -----------------------------------------------------------------------
    // Convolution

    fn conv(&mut self, i: usize, cv: &Conv, x: Map, out: Map) -> Result<(), CodegenError> {
        let g = self.g;
        let kind = g.layer(i).op.type_name();
        let p: &LayerParams = g
            .params
            .layer(i)
            .filter(|p| !p.weights.is_empty())
            .ok_or(CodegenError::MissingParams { layer: i, kind, what: "weights" })?;
        let rows = cv.filters;
        let kk = cv.fan_in(x.c);
        if p.weights.len() != rows * kk || p.biases.len() != rows {
            return Err(CodegenError::MissingParams { layer: i, kind, what: "weights of the right size" });
        }
        check_activation(cv.activation).map_err(|w| self.unsupported(i, w))?;
        let (mut scale, bias) = match &p.bn {
            Some(bn) => (0..rows)
                .map(|k| {
                    let a = bn.scales[k] / (bn.variance[k] + BN_EPSILON).sqrt();
                    (a, p.biases[k] - bn.mean[k] * a)
                })
                .unzip(),
            None => (vec![1.0; rows], p.biases.clone()),
        };
        let codes = match (&p.ternary, cv.ternary) {
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
        let ep = Epilogue { scale, bias, act: cv.activation };
        let x = if cv.pad > 0 { self.pad(i, x, [cv.pad; 4], 0.0) } else { x };
        let geo = ConvGeo::new(cv, x, out, self.opts);
        match codes {
            None => self.conv_float(i, &geo, &p.weights, &ep),
            Some(codes) => {
                let nonzero = codes.iter().filter(|&&c| c != 0).count();
                let unroll = match self.opts.ternary {
                    TernaryKernel::Auto => nonzero <= self.opts.unroll_max_taps,
                    TernaryKernel::Table => false,
                    TernaryKernel::Unrolled => true,
                };
                if unroll {
                    self.conv_unrolled(i, &geo, &codes, &ep)
                } else {
                    self.conv_table(i, &geo, &codes, &ep)
                }
            }
        }
        Ok(())
    }

    /// Copies `x` with a border of `value` (`[top, left, bottom, right]`) into scratch.
    fn pad(&mut self, i: usize, x: Map, [top, left, bottom, right]: [usize; 4], value: f32) -> Map {
        let dst = Map {
            buf: Buf::Arena,
            off: idx(self.scratch_off),
            c: x.c,
            h: x.h + top + bottom,
            w: x.w + left + right,
        };
        self.scratch_len = self.scratch_len.max(dst.numel());
        let mut kb = KernelBuilder::new(format!("pad {i}"), Some(i));
        let t = kb.local(Ty::F32);
        kb.for_range(0, idx(x.c), 1, "c", |kb, c| {
            let fill = |kb: &mut KernelBuilder, y0: usize, rows: usize, x0: usize, cols: usize| {
                kb.for_range(0, idx(rows), 1, "y", |kb, y| {
                    kb.for_range(0, idx(cols), 1, "x", |kb, xx| {
                        let at = dst.at(&c, &y.add(idx(y0)), &xx.add(idx(x0)));
                        kb.store(Buf::Arena, at, value);
                    })
                })
            };
            fill(kb, 0, top, 0, dst.w);
            kb.for_range(0, idx(x.h), 1, "y", |kb, y| {
                let row = y.add(idx(top));
                kb.for_range(0, idx(left), 1, "x", |kb, xx| {
                    kb.store(Buf::Arena, dst.at(&c, &row, &xx), value)
                });
                kb.for_range(0, idx(x.w), 1, "x", |kb, xx| {
                    kb.load(t, x.buf, x.at(&c, &y, &xx));
                    kb.store(Buf::Arena, dst.at(&c, &row, &xx.add(idx(left))), t);
                });
                kb.for_range(0, idx(right), 1, "x", |kb, xx| {
                    kb.store(Buf::Arena, dst.at(&c, &row, &xx.add(idx(left + x.w))), value)
                });
            });
            fill(kb, top + x.h, bottom, 0, dst.w);
        });
        self.kernels.push(kb.finish());
        dst
    }

    fn conv_float(&mut self, i: usize, geo: &ConvGeo, weights: &[f32], ep: &Epilogue) {
        let w = self.table(format!("conv{i}.weights"), ConstData::F32(weights.to_vec()));
        let taps =
            self.table(format!("conv{i}.taps"), ConstData::I32((0..geo.kk).map(|j| geo.tap(j)).collect()));
        let (scale, bias) = self.epilogue_tables(i, ep);
        let mut kb = KernelBuilder::new(format!("conv {i} float"), Some(i));
        let r = Regs::new(&mut kb, geo);
        let tap = kb.local(Ty::I32);
        geo.channel_loops(
            &mut kb,
            &|kb, o| {
                kb.load(r.b, bias, o.clone());
                if let Some(s) = scale {
                    kb.load(r.s, s, o.clone());
                }
            },
            &|kb, o, g, oy, ox, tile| {
                r.zero(kb, geo, tile);
                let base = geo.input_at(g, oy, ox);
                kb.for_range(0, idx(geo.kk), 1, "taps", |kb, j| {
                    kb.load(r.w, w, o.scaled(idx(geo.kk)).plus(&j));
                    kb.load(tap, taps, j);
                    r.accumulate(kb, geo, tile, BinOp::Add, &base.dynamic(tap), true);
                });
                let s = scale.map(|_| Operand::Local(r.s));
                r.epilogue(kb, geo, tile, s, r.b.into(), ep.act, geo.out_at(o, oy, ox));
            },
        );
        self.kernels.push(kb.finish());
    }

    /// The bias table, and the scale table unless every scale is 1.
    fn epilogue_tables(&mut self, i: usize, ep: &Epilogue) -> (Option<Buf>, Buf) {
        let scale = (!ep.scale.iter().all(|&s| s == 1.0))
            .then(|| self.table(format!("conv{i}.scale"), ConstData::F32(ep.scale.clone())));
        let bias = self.table(format!("conv{i}.bias"), ConstData::F32(ep.bias.clone()));
        (scale, bias)
    }

    fn conv_table(&mut self, i: usize, geo: &ConvGeo, codes: &[i8], ep: &Epilogue) {
        let mut taps = Vec::new();
        let mut bounds = vec![0i32];
        for row in codes.chunks(geo.kk) {
            for sign in [1, -1] {
                taps.extend(row.iter().enumerate().filter(|(_, &c)| c == sign).map(|(j, _)| geo.tap(j)));
                bounds.push(taps.len() as i32);
            }
        }
        if taps.is_empty() {
            taps.push(0); // keep the table non-empty; no loop reads it
        }
        let taps = self.table(format!("conv{i}.ternary_taps"), ConstData::I32(taps));
        let bounds = self.table(format!("conv{i}.ternary_bounds"), ConstData::I32(bounds));
        let scale = self.table(format!("conv{i}.scale"), ConstData::F32(ep.scale.clone()));
        let bias = self.table(format!("conv{i}.bias"), ConstData::F32(ep.bias.clone()));
        let mut kb = KernelBuilder::new(format!("conv {i} ternary table"), Some(i));
        let r = Regs::new(&mut kb, geo);
        let (plus, minus, end) = (kb.local(Ty::I32), kb.local(Ty::I32), kb.local(Ty::I32));
        let tap = kb.local(Ty::I32);
        geo.channel_loops(
            &mut kb,
            &|kb, o| {
                let o2 = o.scaled(2);
                kb.load(plus, bounds, o2.clone());
                kb.load(minus, bounds, o2.add(1));
                kb.load(end, bounds, o2.add(2));
                kb.load(r.s, scale, o.clone());
                kb.load(r.b, bias, o.clone());
            },
            &|kb, o, g, oy, ox, tile| {
                r.zero(kb, geo, tile);
                let base = geo.input_at(g, oy, ox).dynamic(tap);
                for (from, to, op, note) in
                    [(plus, minus, BinOp::Add, "+1 taps"), (minus, end, BinOp::Sub, "-1 taps")]
                {
                    kb.for_table(from, to, note, |kb, j| {
                        kb.load(tap, taps, Index::var(j));
                        r.accumulate(kb, geo, tile, op, &base, false);
                    });
                }
                let at = geo.out_at(o, oy, ox);
                r.epilogue(kb, geo, tile, Some(r.s.into()), r.b.into(), ep.act, at);
            },
        );
        self.kernels.push(kb.finish());
    }

    fn conv_unrolled(&mut self, i: usize, geo: &ConvGeo, codes: &[i8], ep: &Epilogue) {
        let mut kb = KernelBuilder::new(format!("conv {i} ternary unrolled"), Some(i));
        let r = Regs::new(&mut kb, geo);
        for (o, row) in codes.chunks(geo.kk).enumerate() {
            let g = Index::at(idx(o / geo.coutg));
            let o = Index::at(idx(o));
            let k = o.offset as usize;
            let nonzero: Vec<(i64, BinOp)> = row
                .iter()
                .enumerate()
                .filter(|(_, &c)| c != 0)
                .map(|(j, &c)| (geo.tap(j) as i64, if c > 0 { BinOp::Add } else { BinOp::Sub }))
                .collect();
            geo.row_groups(&mut kb, &format!("oy, oc {k}"), &|kb, oy, rows| {
                geo.tiles(kb, &|kb, ox, n| {
                    let tile = Tile { n, rows };
                    r.zero(kb, geo, tile);
                    let base = geo.input_at(&g, &oy, &ox);
                    for &(tap, op) in &nonzero {
                        r.accumulate(kb, geo, tile, op, &base.add(tap), false);
                    }
                    let s = Operand::F32(ep.scale[k]);
                    let at = geo.out_at(&o, &oy, &ox);
                    r.epilogue(kb, geo, tile, Some(s), Operand::F32(ep.bias[k]), ep.act, at);
                })
            });
        }
        self.kernels.push(kb.finish());
    }

    // -----------------------------------------------------------------------
    // Other layers

    fn maxpool(&mut self, i: usize, p: &MaxPool, x: Map, out: Map) -> Result<(), CodegenError> {
        let (left, top) = (p.padding / 2, p.padding / 2);
        // taps past the right/bottom edge that some window reaches
        let right = ((out.w - 1) * p.stride_x + p.size).saturating_sub(left + x.w);
        let bottom = ((out.h - 1) * p.stride_y + p.size).saturating_sub(top + x.h);
        let x = if left + top + right + bottom > 0 {
            // Darknet skips out-of-range taps; −FLT_MAX (its initial max) is the same
            self.pad(i, x, [top, left, bottom, right], f32::MIN)
        } else {
            x
        };
        let mut kb = KernelBuilder::new(format!("maxpool {i}"), Some(i));
        let (m, t) = (kb.local(Ty::F32), kb.local(Ty::F32));
        kb.for_range(0, idx(out.c), 1, "c", |kb, c| {
            kb.for_range(0, idx(out.h), 1, "oy", |kb, oy| {
                kb.for_range(0, idx(out.w), 1, "ox", |kb, ox| {
                    let corner = x.at(&c, &oy.scaled(idx(p.stride_y)), &ox.scaled(idx(p.stride_x)));
                    for ky in 0..p.size {
                        for kx in 0..p.size {
                            let at = corner.add(idx(ky * x.w + kx));
                            if ky == 0 && kx == 0 {
                                kb.load(m, x.buf, at);
                            } else {
                                kb.load(t, x.buf, at);
                                kb.binary(m, BinOp::Max, m, t);
                            }
                        }
                    }
                    kb.store(Buf::Arena, out.at(&c, &oy, &ox), m);
                })
            })
        });
        self.kernels.push(kb.finish());
        Ok(())
    }

    fn route(&mut self, i: usize, r: &Route, ins: &[Map], out: Map) {
        let copies = self.plan.route_copies(self.g, i);
        if copies.is_empty() {
            return;
        }
        let mut kb = KernelBuilder::new(format!("route {i}"), Some(i));
        let mut at = 0;
        for (k, x) in ins.iter().enumerate() {
            let part = x.numel() / r.groups;
            if copies.contains(&k) {
                let src = x.off + idx(r.group_id * part);
                copy(&mut kb, x.buf, src, out.off + idx(at), part);
            }
            at += part;
        }
        self.kernels.push(kb.finish());
    }

    fn upsample(&mut self, i: usize, u: &Upsample, x: Map, out: Map) -> Result<(), CodegenError> {
        if u.stride <= 0 {
            return Err(self.unsupported(i, format!("stride={} (downsampling)", u.stride)));
        }
        let s = u.stride as usize;
        let mut kb = KernelBuilder::new(format!("upsample {i}"), Some(i));
        let v = kb.local(Ty::F32);
        kb.for_range(0, idx(x.c), 1, "c", |kb, c| {
            kb.for_range(0, idx(x.h), 1, "iy", |kb, iy| {
                kb.for_range(0, idx(s), 1, "dy", |kb, dy| {
                    kb.for_range(0, idx(x.w), 1, "ix", |kb, ix| {
                        kb.load(v, x.buf, x.at(&c, &iy, &ix));
                        if u.scale != 1.0 {
                            kb.binary(v, BinOp::Mul, u.scale, v);
                        }
                        let oy = iy.scaled(idx(s)).plus(&dy);
                        for dx in 0..s {
                            let ox = ix.scaled(idx(s)).add(idx(dx));
                            kb.store(Buf::Arena, out.at(&c, &oy, &ox), v);
                        }
                    })
                })
            })
        });
        self.kernels.push(kb.finish());
        Ok(())
    }

    /// `[shortcut]` without weights: `act(prev + from₁ + from₂ + …)`, each from-layer
    /// (same spatial size) added over its overlap with the output, the first
    /// `min(c_out, c_from)` channels, which is the flat prefix of that many planes.
    /// The output is split at each from-layer's end, so every segment adds a fixed
    /// list of inputs, in the reference's order.
    fn shortcut(&mut self, i: usize, s: &Shortcut, ins: &[Map], out: Map) -> Result<(), CodegenError> {
        if s.weights != ShortcutWeights::None {
            return Err(self.unsupported(i, "weighted shortcut (weights_type other than none)"));
        }
        check_activation(s.activation).map_err(|w| self.unsupported(i, w))?;
        let (prev, froms) = (ins[0], &ins[1..]);
        if prev.numel() != out.numel() {
            return Err(self.unsupported(i, "an input whose size differs from the output's"));
        }
        if let Some(f) = froms.iter().find(|f| f.h != out.h || f.w != out.w) {
            return Err(self.unsupported(
                i,
                format!(
                    "a from-layer of spatial size {}x{} into {}x{} (strided shortcut)",
                    f.w, f.h, out.w, out.h
                ),
            ));
        }
        let ends: Vec<usize> = froms.iter().map(|f| f.numel().min(out.numel())).collect();
        let mut cuts: Vec<usize> = ends.iter().copied().chain([0, out.numel()]).collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut kb = KernelBuilder::new(format!("shortcut {i}"), Some(i));
        let (v, a, t) = (kb.local(Ty::F32), kb.local(Ty::F32), kb.local(Ty::F32));
        for seg in cuts.windows(2) {
            let (start, end) = (seg[0], seg[1]);
            kb.for_range(idx(start), idx(end), 1, "j", |kb, j| {
                kb.load(v, prev.buf, j.add(prev.off));
                for (f, &e) in froms.iter().zip(&ends) {
                    if e >= end {
                        kb.load(a, f.buf, j.add(f.off));
                        kb.binary(v, BinOp::Add, v, a);
                    }
                }
                emit_activation(kb, v, t, s.activation);
                kb.store(Buf::Arena, j.add(out.off), v);
            });
        }
        self.kernels.push(kb.finish());
        Ok(())
    }

    /// `[reorg]` (reorg_old, forward): Darknet's `reorg_cpu` on the input's dimensions
    /// `[c, h, w]` with `forward = 0`, i.e. for `k < c, j < h, i < w`:
    /// `out[i + w·(j + h·k)] = x[(i·s + off%s) + w·s·((j·s + off/s) + h·s·c2)]`, with
    /// `c2 = k % (c/s²)`, `off = k / (c/s²)`. As loops over `off = (oy, ox)`, `c2`,
    /// `j`, `i` both sides are affine.
    fn reorg(&mut self, i: usize, r: &Reorg, x: Map, out: Map) -> Result<(), CodegenError> {
        if r.kind != ReorgKind::Old || r.reverse {
            return Err(self.unsupported(i, "reorg3d and reverse reorg"));
        }
        let s = r.stride;
        if s == 0 || !x.c.is_multiple_of(s * s) || out.numel() != x.numel() {
            return Err(self.unsupported(i, format!("stride={s} with {} input channels", x.c)));
        }
        let (w, h, in_c) = (idx(x.w), idx(x.h), idx(x.c / (s * s)));
        let si = idx(s);
        let mut kb = KernelBuilder::new(format!("reorg {i}"), Some(i));
        let v = kb.local(Ty::F32);
        kb.for_range(0, si, 1, "oy", |kb, oy| {
            kb.for_range(0, si, 1, "ox", |kb, ox| {
                kb.for_range(0, in_c, 1, "c2", |kb, c2| {
                    kb.for_range(0, h, 1, "j", |kb, j| {
                        kb.for_range(0, w, 1, "i", |kb, ii| {
                            let src = Index::at(x.off)
                                .plus(&ii.scaled(si))
                                .plus(&ox)
                                .plus(&j.scaled(w * si * si))
                                .plus(&oy.scaled(w * si))
                                .plus(&c2.scaled(w * si * h * si));
                            let k = oy.scaled(si).plus(&ox).scaled(in_c).plus(&c2);
                            let dst = Index::at(out.off).plus(&ii).plus(&j.scaled(w)).plus(&k.scaled(w * h));
                            kb.load(v, x.buf, src);
                            kb.store(Buf::Arena, dst, v);
                        })
                    })
                })
            })
        });
        self.kernels.push(kb.finish());
        Ok(())
    }

    /// `[avgpool]`: each channel's plane summed in order, then divided by its size.
    fn avgpool(&mut self, i: usize, x: Map, out: Map) {
        let mut kb = KernelBuilder::new(format!("avgpool {i}"), Some(i));
        let (acc, v) = (kb.local(Ty::F32), kb.local(Ty::F32));
        let plane = x.plane();
        kb.for_range(0, idx(x.c), 1, "c", |kb, c| {
            kb.assign(acc, Expr::Copy(Operand::F32(0.0)));
            kb.for_range(0, idx(plane), 1, "p", |kb, p| {
                kb.load(v, x.buf, Index::at(x.off).plus(&c.scaled(idx(plane))).plus(&p));
                kb.binary(acc, BinOp::Add, acc, v);
            });
            kb.binary(acc, BinOp::Div, acc, plane as f32);
            kb.store(Buf::Arena, Index::at(out.off).plus(&c), acc);
        });
        self.kernels.push(kb.finish());
    }

    /// `forward_yolo_layer` at inference, written to the head's own buffer.
    fn yolo(&mut self, i: usize, y: &Yolo, x: Map, out: Map) {
        let plane = x.plane();
        let entries = y.classes + 5;
        let (alpha, beta) = (y.scale_x_y, -0.5 * (y.scale_x_y - 1.0));
        let mut kb = KernelBuilder::new(format!("yolo {i}"), Some(i));
        let (v, t) = (kb.local(Ty::F32), kb.local(Ty::F32));
        let logistic = !y.new_coords;
        for n in 0..y.n() {
            let base = n * entries * plane;
            // x, y: logistic (unless new_coords), then scale_x_y
            elementwise(
                &mut kb,
                x,
                out,
                base,
                2 * plane,
                |kb| {
                    if logistic {
                        emit_logistic(kb, v, t);
                    }
                    if alpha != 1.0 || beta != 0.0 {
                        kb.binary(v, BinOp::Mul, v, alpha);
                        kb.binary(v, BinOp::Add, v, beta);
                    }
                },
                v,
            );
            elementwise(&mut kb, x, out, base + 2 * plane, 2 * plane, |_| {}, v);
            elementwise(
                &mut kb,
                x,
                out,
                base + 4 * plane,
                (entries - 4) * plane,
                |kb| {
                    if logistic {
                        emit_logistic(kb, v, t);
                    }
                },
                v,
            );
        }
        self.kernels.push(kb.finish());
    }

    /// YOLOv2's region layer: logistic on x, y and objectness, softmax over classes.
    fn region(&mut self, i: usize, r: &Region, x: Map, out: Map) {
        let plane = x.plane();
        let entries = r.classes + r.coords + 1;
        let mut kb = KernelBuilder::new(format!("region {i}"), Some(i));
        let (v, t, m, sum) = (kb.local(Ty::F32), kb.local(Ty::F32), kb.local(Ty::F32), kb.local(Ty::F32));
        for n in 0..r.num {
            let base = n * entries * plane;
            let logistic = |kb: &mut KernelBuilder| emit_logistic(kb, v, t);
            elementwise(&mut kb, x, out, base, 2 * plane, logistic, v);
            if r.coords > 2 {
                elementwise(&mut kb, x, out, base + 2 * plane, (r.coords - 2) * plane, |_| {}, v);
            }
            let obj = base + r.coords * plane;
            elementwise(&mut kb, x, out, obj, plane, logistic, v);
            let cls = obj + plane;
            if !r.softmax {
                elementwise(&mut kb, x, out, cls, r.classes * plane, |_| {}, v);
                continue;
            }
            // Darknet's softmax per cell over the classes, `plane` apart
            kb.for_range(0, idx(plane), 1, "cell", |kb, p| {
                let at =
                    |map: &Map, k: &Index| Index::at(map.off + idx(cls)).plus(&p).plus(&k.scaled(idx(plane)));
                kb.assign(m, Expr::Copy(Operand::F32(f32::MIN)));
                kb.for_range(0, idx(r.classes), 1, "class", |kb, k| {
                    kb.load(v, x.buf, at(&x, &k));
                    kb.binary(m, BinOp::Max, m, v);
                });
                kb.assign(sum, Expr::Copy(Operand::F32(0.0)));
                kb.for_range(0, idx(r.classes), 1, "class", |kb, k| {
                    kb.load(v, x.buf, at(&x, &k));
                    kb.binary(v, BinOp::Sub, v, m);
                    kb.assign(v, Expr::Call { f: MathFn::Exp, arg: v.into() });
                    kb.binary(sum, BinOp::Add, sum, v);
                    kb.store(Buf::Arena, at(&out, &k), v);
                });
                kb.for_range(0, idx(r.classes), 1, "class", |kb, k| {
                    kb.load(v, Buf::Arena, at(&out, &k));
                    kb.binary(v, BinOp::Div, v, sum);
                    kb.store(Buf::Arena, at(&out, &k), v);
                });
            });
        }
        self.kernels.push(kb.finish());
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

/// `v = 1 / (1 + exp(−v))`, as the reference computes it.
fn emit_logistic(kb: &mut KernelBuilder, v: Local, t: Local) {
    kb.assign(t, Expr::Unary { op: UnOp::Neg, a: v.into() });
    kb.assign(t, Expr::Call { f: MathFn::Exp, arg: t.into() });
    kb.binary(t, BinOp::Add, 1.0f32, t);
    kb.binary(v, BinOp::Div, 1.0f32, t);
}

fn check_activation(a: Activation) -> Result<(), String> {
    use Activation::*;
    match a {
        Linear | Leaky | Relu | Logistic | Relu6 | Hardtan => Ok(()),
        other => Err(format!("activation={other}")),
    }
}

/// `v = act(v)` in place (`t` a scratch local), with the reference's formulas.
fn emit_activation(kb: &mut KernelBuilder, v: Local, t: Local, act: Activation) {
    let select = |cmp, rhs: f32, then: Operand, otherwise: Operand| Expr::Select {
        cmp,
        lhs: v.into(),
        rhs: rhs.into(),
        then,
        otherwise,
    };
    match act {
        Activation::Leaky => {
            kb.binary(t, BinOp::Mul, 0.1f32, v);
            kb.assign(v, select(Cmp::Gt, 0.0, v.into(), t.into()));
        }
        Activation::Relu => kb.assign(v, select(Cmp::Gt, 0.0, v.into(), 0.0f32.into())),
        Activation::Logistic => emit_logistic(kb, v, t),
        // f32::clamp: below min → min, then above max → max
        Activation::Relu6 | Activation::Hardtan => {
            let (lo, hi) = if act == Activation::Relu6 { (0.0f32, 6.0f32) } else { (-1.0, 1.0) };
            kb.assign(v, select(Cmp::Lt, lo, lo.into(), v.into()));
            kb.assign(v, select(Cmp::Gt, hi, hi.into(), v.into()));
        }
        _ => {} // Linear (others are rejected by check_activation)
    }
}

/// One tile: `rows` output rows of `n` pixels.
#[derive(Debug, Clone, Copy)]
struct Tile {
    n: usize,
    rows: usize,
}

/// [`emit_activation`] on an `f32x4` (`t`, `c` scratch vectors); not for logistic.
fn emit_vector_activation(kb: &mut KernelBuilder, v: Local, t: Local, c: Local, act: Activation) {
    let select = |cmp, rhs: Local, then: Local, otherwise: Local| Expr::Select {
        cmp,
        lhs: v.into(),
        rhs: rhs.into(),
        then: then.into(),
        otherwise: otherwise.into(),
    };
    let splat = |kb: &mut KernelBuilder, dst: Local, x: f32| kb.assign(dst, Expr::Splat(Operand::F32(x)));
    match act {
        Activation::Leaky => {
            splat(kb, c, 0.1);
            kb.binary(t, BinOp::Mul, c, v);
            splat(kb, c, 0.0);
            kb.assign(v, select(Cmp::Gt, c, v, t));
        }
        Activation::Relu => {
            splat(kb, c, 0.0);
            kb.assign(v, select(Cmp::Gt, c, v, c));
        }
        Activation::Relu6 | Activation::Hardtan => {
            let (lo, hi) = if act == Activation::Relu6 { (0.0f32, 6.0f32) } else { (-1.0, 1.0) };
            splat(kb, c, lo);
            kb.assign(v, select(Cmp::Lt, c, c, v));
            splat(kb, c, hi);
            kb.assign(v, select(Cmp::Gt, c, c, v));
        }
        _ => {} // Linear; logistic takes the scalar path
    }
}

/// The locals every convolution kernel uses.
struct Regs {
    /// Scalar accumulators, `[row][pixel]`.
    acc: Vec<Vec<Local>>,
    /// Vector accumulators, `[row][4 pixels]` (with vectors on).
    vacc: Vec<Vec<Local>>,
    /// Loaded input (scalar and vector).
    x: Local,
    vx: Local,
    /// A float weight, and splatted (also a scratch vector in the epilogue).
    w: Local,
    vw: Local,
    /// The epilogue's scale and bias, splatted, and a scratch vector.
    vs: Local,
    vb: Local,
    vc: Local,
    v: Local,
    t: Local,
    s: Local,
    b: Local,
}

impl Regs {
    fn new(kb: &mut KernelBuilder, geo: &ConvGeo) -> Regs {
        let vecs = if geo.vectors { geo.tile / 4 } else { 0 };
        let mut acc = Vec::new();
        let mut vacc = Vec::new();
        for _ in 0..geo.rows {
            acc.push((0..geo.tile).map(|_| kb.local(Ty::F32)).collect());
            vacc.push((0..vecs).map(|_| kb.local(Ty::F32x4)).collect());
        }
        Regs {
            acc,
            vacc,
            x: kb.local(Ty::F32),
            vx: kb.local(Ty::F32x4),
            w: kb.local(Ty::F32),
            vw: kb.local(Ty::F32x4),
            vs: kb.local(Ty::F32x4),
            vb: kb.local(Ty::F32x4),
            vc: kb.local(Ty::F32x4),
            v: kb.local(Ty::F32),
            t: kb.local(Ty::F32),
            s: kb.local(Ty::F32),
            b: kb.local(Ty::F32),
        }
    }

    fn zero(&self, kb: &mut KernelBuilder, geo: &ConvGeo, tile: Tile) {
        let nv = geo.in_vectors(tile.n);
        for r in 0..tile.rows {
            for &a in &self.vacc[r][..nv / 4] {
                kb.assign(a, Expr::Splat(Operand::F32(0.0)));
            }
            for &a in &self.acc[r][nv..tile.n] {
                kb.assign(a, Expr::Copy(Operand::F32(0.0)));
            }
        }
    }

    /// `acc[r][t] op= (w·) x[base + r·sy·W + t·sx]` over the tile: `op` is add or sub;
    /// `weighted` (float layers) multiplies each input by the weight local `w` first.
    fn accumulate(
        &self,
        kb: &mut KernelBuilder,
        geo: &ConvGeo,
        tile: Tile,
        op: BinOp,
        base: &Index,
        weighted: bool,
    ) {
        let nv = geo.in_vectors(tile.n);
        let buf = geo.x.buf;
        if weighted && nv > 0 {
            kb.assign(self.vw, Expr::Splat(self.w.into()));
        }
        for r in 0..tile.rows {
            let row = base.add(idx(r * geo.sy * geo.x.w));
            for (k, &a) in self.vacc[r][..nv / 4].iter().enumerate() {
                kb.assign(self.vx, Expr::LoadVec { buf, index: row.add(4 * idx(k)) });
                if weighted {
                    kb.binary(self.vx, BinOp::Mul, self.vw, self.vx);
                }
                kb.binary(a, op, a, self.vx);
            }
            for (t, &a) in self.acc[r].iter().enumerate().take(tile.n).skip(nv) {
                kb.load(self.x, buf, row.add(idx(t * geo.sx)));
                if weighted {
                    kb.binary(self.x, BinOp::Mul, self.w, self.x);
                }
                kb.binary(a, op, a, self.x);
            }
        }
    }

    /// `out[at + r·OW + t] = act(s·acc[r][t] + b)` over the tile: the one multiply
    /// per output.
    #[allow(clippy::too_many_arguments)]
    fn epilogue(
        &self,
        kb: &mut KernelBuilder,
        geo: &ConvGeo,
        tile: Tile,
        s: Option<Operand>,
        b: Operand,
        act: Activation,
        at: Index,
    ) {
        // whole vectors: the same operations lane-wise, one 4-wide store
        let nv = if act == Activation::Logistic { 0 } else { geo.in_vectors(tile.n) };
        if nv > 0 {
            let splat = |kb: &mut KernelBuilder, dst: Local, o: Operand| kb.assign(dst, Expr::Splat(o));
            splat(kb, self.vs, s.unwrap_or(Operand::F32(1.0)));
            splat(kb, self.vb, b);
            for r in 0..tile.rows {
                for (k, &a) in self.vacc[r][..nv / 4].iter().enumerate() {
                    match s {
                        Some(_) => {
                            kb.binary(self.vx, BinOp::Mul, self.vs, a);
                            kb.binary(self.vx, BinOp::Add, self.vx, self.vb);
                        }
                        None => kb.binary(self.vx, BinOp::Add, a, self.vb),
                    }
                    emit_vector_activation(kb, self.vx, self.vw, self.vc, act);
                    kb.store(Buf::Arena, at.add(idx(r * geo.out.w + 4 * k)), self.vx);
                }
            }
        }
        for r in 0..tile.rows {
            for t in nv..tile.n {
                let a = if t < geo.in_vectors(tile.n) {
                    let lane = Expr::Extract { v: self.vacc[r][t / 4].into(), lane: (t % 4) as u8 };
                    kb.assign(self.x, lane);
                    self.x
                } else {
                    self.acc[r][t]
                };
                match s {
                    Some(s) => {
                        kb.binary(self.v, BinOp::Mul, s, a);
                        kb.binary(self.v, BinOp::Add, self.v, b);
                    }
                    None => kb.binary(self.v, BinOp::Add, a, b),
                }
                emit_activation(kb, self.v, self.t, act);
                kb.store(Buf::Arena, at.add(idx(r * geo.out.w + t)), self.v);
            }
        }
    }
}

/// The constants of one convolution over its (padded) input.
struct ConvGeo {
    x: Map,
    out: Map,
    k: usize,
    dilation: usize,
    sx: usize,
    sy: usize,
    groups: usize,
    cin: usize,
    coutg: usize,
    /// Weights per output channel, `cin·k·k`.
    kk: usize,
    /// Pixels and rows of a full tile.
    tile: usize,
    rows: usize,
    /// Accumulate in f32x4 (stride 1 only).
    vectors: bool,
    channel_outer: bool,
}

type TileFn<'f> = dyn Fn(&mut KernelBuilder, &Index, &Index, &Index, &Index, Tile) + 'f;

/// Accumulators a tile may keep in registers (x86_64 has 16 vector registers).
const TILE_REGISTERS: usize = 12;

impl ConvGeo {
    fn new(cv: &Conv, x: Map, out: Map, opts: &LowerOptions) -> ConvGeo {
        let cin = x.c / cv.groups;
        let vectors = opts.vectors && cv.stride_x == 1;
        let per_row = if vectors { opts.tile / 4 + opts.tile % 4 } else { opts.tile };
        let rows = match opts.tile_rows {
            0 => (TILE_REGISTERS / per_row.max(1)).clamp(1, 4),
            r => r,
        };
        ConvGeo {
            x,
            out,
            k: cv.size,
            dilation: cv.dilation,
            sx: cv.stride_x,
            sy: cv.stride_y,
            groups: cv.groups,
            cin,
            coutg: cv.filters / cv.groups,
            kk: cin * cv.size * cv.size,
            tile: opts.tile,
            rows: rows.min(out.h).max(1),
            vectors,
            channel_outer: 4 * x.numel() <= opts.channel_outer_max_bytes,
        }
    }

    /// Pixels of an `n`-pixel row held in vectors.
    fn in_vectors(&self, n: usize) -> usize {
        if self.vectors {
            n / 4 * 4
        } else {
            0
        }
    }

    /// Offset of weight column `j` (input channel, ky, kx) in the padded input.
    fn tap(&self, j: usize) -> i32 {
        let (c, ky, kx) = (j / (self.k * self.k), (j / self.k) % self.k, j % self.k);
        (c * self.x.plane() + ky * self.dilation * self.x.w + kx * self.dilation) as i32
    }

    /// Input element of tap 0 for output `(oy, ox)` of group `g`.
    fn input_at(&self, g: &Index, oy: &Index, ox: &Index) -> Index {
        Index::at(self.x.off)
            .plus(&g.scaled(idx(self.cin * self.x.plane())))
            .plus(&oy.scaled(idx(self.sy * self.x.w)))
            .plus(&ox.scaled(idx(self.sx)))
    }

    fn out_at(&self, o: &Index, oy: &Index, ox: &Index) -> Index {
        self.out.at(o, oy, ox)
    }

    /// Full tiles of `tile` pixels along the row, then the tail.
    fn tiles(&self, kb: &mut KernelBuilder, f: &dyn Fn(&mut KernelBuilder, Index, usize)) {
        let w = self.out.w;
        let full = w / self.tile * self.tile;
        kb.for_range(0, idx(full), idx(self.tile), "ox tile", |kb, ox| f(kb, ox, self.tile));
        if full < w {
            f(kb, Index::at(idx(full)), w - full);
        }
    }

    /// Groups of `rows` output rows, then the remaining rows.
    fn row_groups(&self, kb: &mut KernelBuilder, note: &str, f: &dyn Fn(&mut KernelBuilder, Index, usize)) {
        let h = self.out.h;
        let full = h / self.rows * self.rows;
        kb.for_range(0, idx(full), idx(self.rows), note, |kb, oy| f(kb, oy, self.rows));
        if full < h {
            f(kb, Index::at(idx(full)), h - full);
        }
    }

    /// Output channels (`o`, and group `g`) and row groups in the chosen order; `setup`
    /// runs at the start of each channel's body, `tile(o, g, oy, ox, tile)` per tile.
    fn channel_loops(
        &self,
        kb: &mut KernelBuilder,
        setup: &dyn Fn(&mut KernelBuilder, &Index),
        tile: &TileFn,
    ) {
        let tiles = |kb: &mut KernelBuilder, o: &Index, g: &Index, oy: &Index, rows: usize| {
            self.tiles(kb, &|kb, ox, n| tile(kb, o, g, oy, &ox, Tile { n, rows }))
        };
        let channels = |kb: &mut KernelBuilder, body: &dyn Fn(&mut KernelBuilder, &Index, &Index)| {
            kb.for_range(0, idx(self.groups), 1, "group", |kb, g| {
                kb.for_range(0, idx(self.coutg), 1, "oc", |kb, oc| {
                    let o = g.scaled(idx(self.coutg)).plus(&oc);
                    setup(kb, &o);
                    body(kb, &o, &g)
                })
            })
        };
        if self.channel_outer {
            channels(kb, &|kb, o, g| self.row_groups(kb, "oy", &|kb, oy, rows| tiles(kb, o, g, &oy, rows)));
        } else {
            self.row_groups(kb, "oy", &|kb, oy, rows| channels(kb, &|kb, o, g| tiles(kb, o, g, &oy, rows)));
        }
    }
}
