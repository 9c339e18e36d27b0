//! The training network: the graph's layers with float parameters, their updates and
//! the activations of one batch, allocated once per batch size.

use rayon::prelude::*;
use ternc_ir::{Activation, Graph, MaxPool, Op, ParamStore, Region, Shape, ShortcutWeights, Yolo};

use crate::activation;
use crate::conv::ConvLayer;
use crate::error::{Result, TrainError};
use crate::layers;
use crate::loss::{head_loss, Head, HeadStats, Truth};
use crate::scratch::Scratch;
use crate::transform::{Twn, WeightTransform};

/// Where a layer reads one of its inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Src {
    /// The network input.
    Input,
    /// The output of an earlier layer (Darknet index).
    Layer(usize),
}

/// What a layer computes, with its per-layer state.
pub enum Kind {
    Conv(Box<ConvLayer>),
    MaxPool {
        p: MaxPool,
        index: Vec<u32>,
    },
    Route {
        groups: usize,
        group_id: usize,
    },
    /// Unweighted `[shortcut]` over equal spatial sizes; `pre` keeps the sum before a
    /// nonlinear activation.
    Shortcut {
        activation: Activation,
        pre: Vec<f32>,
    },
    Upsample {
        stride: i64,
        scale: f32,
    },
    /// `y[t] = x[map[t]]` per image.
    Reorg {
        map: Vec<u32>,
    },
    Yolo(Yolo),
    Region(Region),
}

pub struct TrainLayer {
    pub index: usize,
    pub type_name: &'static str,
    pub kind: Kind,
    pub inputs: Vec<Src>,
    pub in_shapes: Vec<Shape>,
    pub out: Shape,
}

/// Forward and backward over a graph, `batch` images at a time.
///
/// Deltas follow Darknet's convention: `delta = −∂loss/∂output` (the direction that
/// lowers the loss), and the `*_updates` arrays accumulate `−∂loss/∂parameter`.
pub struct Network {
    pub layers: Vec<TrainLayer>,
    pub input_shape: Shape,
    /// Each layer's op, for re-inferring shapes when the input size changes.
    ops: Vec<Op>,
    batch: usize,
    input: Vec<f32>,
    outputs: Vec<Vec<f32>>,
    deltas: Vec<Vec<f32>>,
    /// Delta of the network input, kept only when asked for (gradient checks).
    input_delta: Option<Vec<f32>>,
    scratch: Scratch,
}

fn pick<'a>(input: &'a [f32], outputs: &'a [Vec<f32>], s: Src) -> &'a [f32] {
    match s {
        Src::Input => input,
        Src::Layer(j) => &outputs[j],
    }
}

fn unsupported(layer: usize, kind: &'static str, why: impl Into<String>) -> TrainError {
    TrainError::Unsupported { layer, kind, why: why.into() }
}

/// Why shapes the graph accepts are not trainable here, if they are not.
fn shape_problem(op: &Op, ins: &[Shape], out: Shape) -> Option<&'static str> {
    let shortcut = matches!(op, Op::Shortcut(_));
    (shortcut && ins.iter().any(|f| f.h != out.h || f.w != out.w))
        .then_some("a shortcut between different sizes is not trainable yet")
}

impl Network {
    /// Builds the training network from `graph` and its loaded parameters.
    /// Layers flagged `ternary=1` get the TWN transform, as the reference runs them.
    pub fn new(graph: &Graph, batch: usize) -> Result<Self> {
        let mut layers = Vec::with_capacity(graph.num_layers());
        let mut ops = Vec::with_capacity(graph.num_layers());
        for i in 0..graph.num_layers() {
            let node = graph.layer(i);
            let ty = node.op.type_name();
            let srcs = graph.inputs(graph.layers[i]);
            let inputs: Vec<Src> =
                srcs.iter().map(|&s| graph.node(s).layer.map_or(Src::Input, Src::Layer)).collect();
            let in_shapes: Vec<Shape> = srcs.iter().map(|&s| graph.node(s).shape).collect();
            let out = node.shape;
            let kind = match &node.op {
                Op::Conv(c) => {
                    if !activation::supported(c.activation) {
                        return Err(unsupported(
                            i,
                            ty,
                            format!("activation={} has no gradient here", c.activation),
                        ));
                    }
                    let p = graph
                        .params
                        .layer(i)
                        .filter(|p| !p.weights.is_empty())
                        .ok_or(TrainError::MissingParams { layer: i, kind: ty, what: "weights" })?;
                    let check = |what: &'static str, got: usize, want: usize| {
                        if got == want {
                            Ok(())
                        } else {
                            Err(TrainError::ParamSize { layer: i, kind: ty, what, got, want })
                        }
                    };
                    check("weights", p.weights.len(), c.nweights(in_shapes[0].c))?;
                    check("biases", p.biases.len(), c.filters)?;
                    if c.batch_normalize {
                        let bn = p.bn.as_ref().ok_or(TrainError::MissingParams {
                            layer: i,
                            kind: ty,
                            what: "batchnorm parameters",
                        })?;
                        check("scales", bn.scales.len(), c.filters)?;
                        check("rolling_mean", bn.mean.len(), c.filters)?;
                        check("rolling_variance", bn.variance.len(), c.filters)?;
                    }
                    let mut layer = ConvLayer::new(c.clone(), in_shapes[0], out, p);
                    if c.ternary {
                        layer.transform =
                            Some(Box::new(Twn { threshold: ternc_passes::ternary::DEFAULT_THRESHOLD }));
                    }
                    Kind::Conv(Box::new(layer))
                }
                Op::MaxPool(p) => Kind::MaxPool { p: p.clone(), index: Vec::new() },
                Op::Route(r) => Kind::Route { groups: r.groups, group_id: r.group_id },
                Op::Shortcut(s) => {
                    if s.weights != ShortcutWeights::None {
                        return Err(unsupported(
                            i,
                            ty,
                            "weighted shortcuts (weights_type=) are not trainable yet",
                        ));
                    }
                    if let Some(why) = shape_problem(&node.op, &in_shapes, out) {
                        return Err(unsupported(i, ty, why));
                    }
                    if !activation::supported(s.activation) {
                        return Err(unsupported(
                            i,
                            ty,
                            format!("activation={} has no gradient here", s.activation),
                        ));
                    }
                    Kind::Shortcut { activation: s.activation, pre: Vec::new() }
                }
                Op::Upsample(u) => Kind::Upsample { stride: u.stride, scale: u.scale },
                Op::Reorg(r) => Kind::Reorg { map: layers::reorg_map(in_shapes[0], r, out) },
                Op::Yolo(y) => {
                    let need = y.mask.iter().map(|m| m + 1).max().unwrap_or(0).max(y.total);
                    if y.anchors.len() < 2 * need {
                        return Err(unsupported(
                            i,
                            ty,
                            format!("needs {need} anchor pairs, anchors= gives {}", y.anchors.len() / 2),
                        ));
                    }
                    Kind::Yolo(y.clone())
                }
                Op::Region(r) => {
                    if r.coords != 4 {
                        return Err(unsupported(i, ty, format!("coords={} (only 4 is trainable)", r.coords)));
                    }
                    if r.anchors.len() < 2 * r.num {
                        return Err(unsupported(
                            i,
                            ty,
                            format!("needs {} anchor pairs, anchors= gives {}", r.num, r.anchors.len() / 2),
                        ));
                    }
                    Kind::Region(r.clone())
                }
                op => return Err(unsupported(i, op.type_name(), "this layer type is not trainable yet")),
            };
            layers.push(TrainLayer { index: i, type_name: ty, kind, inputs, in_shapes, out });
            ops.push(node.op.clone());
        }
        let mut net = Network {
            layers,
            input_shape: graph.input_shape(),
            ops,
            batch: 0,
            input: Vec::new(),
            outputs: Vec::new(),
            deltas: Vec::new(),
            input_delta: None,
            scratch: Scratch::default(),
        };
        net.set_batch(batch.max(1));
        Ok(net)
    }

    pub fn batch(&self) -> usize {
        self.batch
    }

    /// (Re)allocates every per-batch buffer for `batch` images.
    pub fn set_batch(&mut self, batch: usize) {
        if batch == self.batch {
            return;
        }
        self.batch = batch;
        self.alloc();
    }

    /// Changes the network input to `w`×`h` (Darknet's `resize_network`, what `random=1`
    /// multi-scale training does every 10 iterations): every layer's shapes follow from
    /// the graph's shape rules and the per-batch buffers are resized. Parameters, their
    /// accumulated updates (the momentum), batchnorm scales and rolling statistics and
    /// weight transforms are kept as they are: they do not depend on the spatial size.
    /// Buffers keep their capacity, so going back to a size seen before allocates
    /// nothing. An error (a size some layer cannot take) changes nothing.
    pub fn resize(&mut self, w: usize, h: usize) -> Result<()> {
        if (w, h) == (self.input_shape.w, self.input_shape.h) {
            return Ok(());
        }
        let input = Shape::new(self.input_shape.c, h, w);
        let at = |l: &TrainLayer, why: String| {
            unsupported(l.index, l.type_name, format!("at a {w}x{h} input: {why}"))
        };
        if w == 0 || h == 0 {
            let first = self.layers.first().ok_or(TrainError::Config("the model has no layers".into()))?;
            return Err(at(first, "the input size must be positive".into()));
        }
        let mut shapes: Vec<(Vec<Shape>, Shape)> = Vec::with_capacity(self.layers.len());
        for (l, op) in self.layers.iter().zip(&self.ops) {
            let ins: Vec<Shape> = l
                .inputs
                .iter()
                .map(|&s| match s {
                    Src::Input => input,
                    Src::Layer(j) => shapes[j].1,
                })
                .collect();
            let out = op.infer(&ins).map_err(|why| at(l, why))?;
            if let Some(why) = shape_problem(op, &ins, out) {
                return Err(at(l, why.into()));
            }
            shapes.push((ins, out));
        }
        for ((l, op), (ins, out)) in self.layers.iter_mut().zip(&self.ops).zip(shapes) {
            match (&mut l.kind, op) {
                (Kind::Conv(c), _) => (c.input, c.output) = (ins[0], out),
                (Kind::Reorg { map }, Op::Reorg(r)) => *map = layers::reorg_map(ins[0], r, out),
                _ => {}
            }
            (l.in_shapes, l.out) = (ins, out);
        }
        self.input_shape = input;
        self.alloc();
        Ok(())
    }

    /// Sizes every per-batch buffer for `self.batch` images at the current shapes,
    /// zeroed, keeping the capacity each already has.
    fn alloc(&mut self) {
        let batch = self.batch;
        let fit = |v: &mut Vec<f32>, len: usize| {
            v.clear();
            v.resize(len, 0.0);
        };
        fit(&mut self.input, batch * self.input_shape.numel());
        self.outputs.resize_with(self.layers.len(), Vec::new);
        self.deltas.resize_with(self.layers.len(), Vec::new);
        for ((l, o), d) in self.layers.iter().zip(&mut self.outputs).zip(&mut self.deltas) {
            fit(o, batch * l.out.numel());
            fit(d, batch * l.out.numel());
        }
        if let Some(d) = &mut self.input_delta {
            fit(d, self.input.len());
        }
        for l in &mut self.layers {
            let len = batch * l.out.numel();
            match &mut l.kind {
                Kind::Conv(c) => c.alloc(batch),
                Kind::MaxPool { index, .. } => {
                    index.clear();
                    index.resize(len, 0);
                }
                Kind::Shortcut { activation, pre } if *activation != Activation::Linear => fit(pre, len),
                _ => {}
            }
        }
    }

    /// Keep the delta of the network input (off by default: it costs a col2im).
    pub fn track_input_delta(&mut self, on: bool) {
        self.input_delta = on.then(|| vec![0.0; self.input.len()]);
    }

    pub fn input_delta(&self) -> Option<&[f32]> {
        self.input_delta.as_deref()
    }

    /// Layer indices of the detection heads.
    pub fn heads(&self) -> Vec<usize> {
        self.layers
            .iter()
            .filter(|l| matches!(l.kind, Kind::Yolo(_) | Kind::Region(_)))
            .map(|l| l.index)
            .collect()
    }

    fn check_layer(&self, layer: usize) -> Result<()> {
        if layer < self.layers.len() {
            Ok(())
        } else {
            Err(TrainError::NoLayer { layer, layers: self.layers.len() })
        }
    }

    /// The output of `layer` for the current batch, `[batch][c][h][w]`.
    pub fn output(&self, layer: usize) -> Result<&[f32]> {
        self.check_layer(layer)?;
        Ok(&self.outputs[layer])
    }

    /// The delta of `layer`'s output: losses write it, backward reads it.
    pub fn delta_mut(&mut self, layer: usize) -> Result<&mut [f32]> {
        self.check_layer(layer)?;
        Ok(&mut self.deltas[layer])
    }

    /// Output and delta of one layer at once (what a loss needs).
    pub fn output_and_delta(&mut self, layer: usize) -> Result<(&[f32], &mut [f32])> {
        self.check_layer(layer)?;
        Ok((&self.outputs[layer], &mut self.deltas[layer]))
    }

    pub fn conv(&self, layer: usize) -> Option<&ConvLayer> {
        match &self.layers.get(layer)?.kind {
            Kind::Conv(c) => Some(c),
            _ => None,
        }
    }

    pub fn conv_mut(&mut self, layer: usize) -> Option<&mut ConvLayer> {
        match &mut self.layers.get_mut(layer)?.kind {
            Kind::Conv(c) => Some(c),
            _ => None,
        }
    }

    /// Installs (or, with `None`, removes) a weight transform on a convolution.
    pub fn set_weight_transform(&mut self, layer: usize, t: Option<Box<dyn WeightTransform>>) -> Result<()> {
        self.check_layer(layer)?;
        let ty = self.layers[layer].type_name;
        let c = self
            .conv_mut(layer)
            .ok_or_else(|| unsupported(layer, ty, "weight transforms apply to convolutional layers only"))?;
        c.transform = t;
        Ok(())
    }

    /// Runs the batch in `input` (`batch` images). In training mode it zeroes every
    /// delta, uses batch statistics in batchnorm and keeps what backward needs.
    pub fn forward(&mut self, input: &[f32], train: bool) -> Result<()> {
        let want = self.batch * self.input_shape.numel();
        if input.len() != want {
            return Err(TrainError::InputSize {
                got: input.len(),
                want,
                n: self.batch,
                shape: self.input_shape,
            });
        }
        self.input.copy_from_slice(input);
        if train {
            self.deltas.iter_mut().for_each(|d| d.fill(0.0));
            if let Some(d) = &mut self.input_delta {
                d.fill(0.0);
            }
        }
        let batch = self.batch;
        for i in 0..self.layers.len() {
            let (done, rest) = self.outputs.split_at_mut(i);
            let (done, y) = (&*done, &mut rest[0]);
            let l = &mut self.layers[i];
            let input = &self.input[..];
            let src = |s: Src| pick(input, done, s);
            let x = src(l.inputs[0]);
            let (inn, outn) = (l.in_shapes[0].numel(), l.out.numel());
            let (xs, out) = (l.in_shapes[0], l.out);
            match &mut l.kind {
                Kind::Conv(c) => {
                    let got = c.refresh_transform();
                    if got != c.weights.len() {
                        return Err(TrainError::Transform {
                            layer: i,
                            kind: l.type_name,
                            got,
                            want: c.weights.len(),
                        });
                    }
                    c.forward(x, y, batch, train, &self.scratch);
                }
                Kind::MaxPool { p, index } => {
                    let p = &*p;
                    y.par_chunks_mut(outn)
                        .zip(x.par_chunks(inn))
                        .zip(index.par_chunks_mut(outn))
                        .for_each(|((yb, xb), ib)| layers::maxpool_forward(xb, xs, p, out, yb, ib));
                }
                Kind::Route { groups, group_id } => {
                    let mut at = 0;
                    for (k, &s) in l.inputs.iter().enumerate() {
                        let part = layers::route_part(l.in_shapes[k], *groups, *group_id);
                        let n = l.in_shapes[k].numel();
                        let xk = src(s);
                        for b in 0..batch {
                            y[b * outn + at..][..part.len()].copy_from_slice(&xk[b * n..][part.clone()]);
                        }
                        at += part.len();
                    }
                }
                Kind::Shortcut { activation, pre } => {
                    y.copy_from_slice(x);
                    for (k, &s) in l.inputs.iter().enumerate().skip(1) {
                        let (xk, n) = (src(s), l.in_shapes[k].numel());
                        let m = n.min(outn);
                        for b in 0..batch {
                            let (dst, from) = (&mut y[b * outn..][..m], &xk[b * n..][..m]);
                            dst.iter_mut().zip(from).for_each(|(d, a)| *d += a);
                        }
                    }
                    if *activation != Activation::Linear {
                        if train {
                            pre.copy_from_slice(y);
                        }
                        let a = *activation;
                        y.iter_mut().for_each(|v| *v = activation::apply(a, *v));
                    }
                }
                Kind::Upsample { stride, scale } => {
                    let (s, sc) = (*stride, *scale);
                    y.par_chunks_mut(outn)
                        .zip(x.par_chunks(inn))
                        .for_each(|(yb, xb)| layers::upsample_forward(xb, xs, s, sc, out, yb));
                }
                Kind::Reorg { map } => {
                    let map = &*map;
                    y.par_chunks_mut(outn).zip(x.par_chunks(inn)).for_each(|(yb, xb)| {
                        yb.iter_mut().zip(map).for_each(|(v, &m)| *v = xb[m as usize]);
                    });
                }
                Kind::Yolo(a) => {
                    y.copy_from_slice(x);
                    y.par_chunks_mut(outn).for_each(|yb| layers::yolo_forward(yb, out, a));
                }
                Kind::Region(r) => {
                    y.copy_from_slice(x);
                    y.par_chunks_mut(outn).for_each(|yb| layers::region_forward(yb, out, r));
                }
            }
        }
        Ok(())
    }

    /// Backpropagates the deltas the losses (or a caller) wrote after a training
    /// `forward`, accumulating parameter updates.
    pub fn backward(&mut self) {
        let batch = self.batch;
        for i in (0..self.layers.len()).rev() {
            let (before, rest) = self.deltas.split_at_mut(i);
            let d = &mut rest[0];
            let l = &mut self.layers[i];
            let outputs = &self.outputs[..];
            let input = &self.input[..];
            let mut input_delta = self.input_delta.as_deref_mut();
            let src = |s: Src| pick(input, outputs, s);
            // the delta of an input, if anyone wants it
            macro_rules! dst {
                ($s:expr) => {
                    match $s {
                        Src::Input => input_delta.as_deref_mut(),
                        Src::Layer(j) => Some(&mut before[j][..]),
                    }
                };
            }
            let (inn, outn) = (l.in_shapes[0].numel(), l.out.numel());
            let (xs, out) = (l.in_shapes[0], l.out);
            let s0 = l.inputs[0];
            match &mut l.kind {
                Kind::Conv(c) => c.backward(src(s0), d, dst!(s0), batch, &self.scratch),
                Kind::MaxPool { index, .. } => {
                    if let Some(dx) = dst!(s0) {
                        dx.par_chunks_mut(inn)
                            .zip(d.par_chunks(outn))
                            .zip(index.par_chunks(outn))
                            .for_each(|((dxb, db), ib)| layers::maxpool_backward(db, ib, dxb));
                    }
                }
                Kind::Route { groups, group_id } => {
                    let mut at = 0;
                    for (k, &s) in l.inputs.iter().enumerate() {
                        let part = layers::route_part(l.in_shapes[k], *groups, *group_id);
                        let n = l.in_shapes[k].numel();
                        if let Some(dx) = dst!(s) {
                            for b in 0..batch {
                                let from = &d[b * outn + at..][..part.len()];
                                dx[b * n..][part.clone()].iter_mut().zip(from).for_each(|(t, f)| *t += f);
                            }
                        }
                        at += part.len();
                    }
                }
                Kind::Shortcut { activation, pre } => {
                    if *activation != Activation::Linear {
                        activation::backward(*activation, pre, d);
                    }
                    for (k, &s) in l.inputs.iter().enumerate() {
                        let n = l.in_shapes[k].numel();
                        let m = n.min(outn);
                        if let Some(dx) = dst!(s) {
                            for b in 0..batch {
                                let from = &d[b * outn..][..m];
                                dx[b * n..][..m].iter_mut().zip(from).for_each(|(t, f)| *t += f);
                            }
                        }
                    }
                }
                Kind::Upsample { stride, scale } => {
                    let (s, sc) = (*stride, *scale);
                    if let Some(dx) = dst!(s0) {
                        dx.par_chunks_mut(inn)
                            .zip(d.par_chunks(outn))
                            .for_each(|(dxb, db)| layers::upsample_backward(db, xs, s, sc, out, dxb));
                    }
                }
                Kind::Reorg { map } => {
                    let map = &*map;
                    if let Some(dx) = dst!(s0) {
                        dx.par_chunks_mut(inn).zip(d.par_chunks(outn)).for_each(|(dxb, db)| {
                            db.iter().zip(map).for_each(|(v, &m)| dxb[m as usize] += v);
                        });
                    }
                }
                // The heads' deltas are already with respect to their inputs (Darknet
                // folds the logistic/softmax derivative into the loss): pass through.
                Kind::Yolo(_) | Kind::Region(_) => {
                    if let Some(dx) = dst!(s0) {
                        dx.iter_mut().zip(d.iter()).for_each(|(t, f)| *t += f);
                    }
                }
            }
        }
    }

    /// Runs every detection head's loss on the current batch (after a training
    /// `forward`), writing the heads' deltas. `seen` is the images trained on so far.
    pub fn head_losses(&mut self, truths: &[Vec<Truth>], seen: u64) -> Result<Vec<HeadStats>> {
        if truths.len() != self.batch {
            return Err(TrainError::TruthCount { got: truths.len(), want: self.batch });
        }
        let (net_w, net_h) = (self.input_shape.w, self.input_shape.h);
        let mut stats = Vec::new();
        for l in &self.layers {
            let head = match &l.kind {
                Kind::Yolo(y) => Head::Yolo { l: y, net_w, net_h },
                Kind::Region(r) => Head::Region { l: r, seen },
                _ => continue,
            };
            let i = l.index;
            stats.push(head_loss(i, head, &self.outputs[i], &mut self.deltas[i], l.out, truths));
        }
        Ok(stats)
    }

    /// Writes the trained parameters into `store` (weights, biases, batchnorm scales
    /// and rolling statistics), e.g. to save them as a `.weights` file.
    pub fn write_params(&self, store: &mut ParamStore) {
        for l in &self.layers {
            if let Kind::Conv(c) = &l.kind {
                let p = store.layer_mut(l.index);
                p.weights.clone_from(&c.weights);
                p.biases.clone_from(&c.biases);
                if let Some(bn) = &c.bn {
                    let b = p.bn.get_or_insert_with(Default::default);
                    b.scales.clone_from(&bn.scales);
                    b.mean.clone_from(&bn.rolling_mean);
                    b.variance.clone_from(&bn.rolling_variance);
                }
            }
        }
    }
}
