//! The reference interpreter: runs a graph exactly as Darknet's CPU forward pass
//! does, float32 NCHW. It is the oracle every backend is tested against.

mod activation;
mod conv;
mod ops;

use std::borrow::Cow;
use std::time::{Duration, Instant};

use ternc_ir::{Graph, Op, Shape, ShortcutWeights};
use ternc_passes::ternary::{ternarize_layer, DEFAULT_THRESHOLD};

pub use activation::activate;
pub use conv::{conv2d, im2col, matmul, Epilogue};

use crate::Tensor;

/// What [`Reference::run`] reports for each layer as it finishes.
pub struct LayerDone<'a> {
    pub layer: usize,
    pub output: &'a Tensor,
    pub elapsed: Duration,
}

/// Per-layer state prepared once: effective weights and epilogues.
enum Prepared<'g> {
    None,
    /// Borrowed from the graph unless ternarized.
    Conv {
        weights: Cow<'g, [f32]>,
        epilogue: Epilogue,
    },
    Connected {
        weights: Cow<'g, [f32]>,
        epilogue: Epilogue,
    },
    /// Normalised per-input weights of a weighted shortcut: `[n+1][c or 1]`.
    Shortcut {
        weights: Vec<f32>,
        per_channel: bool,
    },
}

/// Errors that stop a run: the model is missing parameters or the input is wrong.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("layer {layer} ({kind}) has no {what}: load weights (or use random ones) first")]
    MissingParams { layer: usize, kind: &'static str, what: &'static str },
    #[error("input is {got:?} but the network takes [n,{c},{h},{w}]", c = .want.c, h = .want.h, w = .want.w)]
    InputShape { got: [usize; 4], want: Shape },
}

pub struct Reference<'g> {
    graph: &'g Graph,
    prepared: Vec<Prepared<'g>>,
    threads: usize,
    pool: rayon::ThreadPool,
    /// Freed activation buffers, reused so repeated runs do not fault in fresh pages.
    buffers: std::sync::Mutex<Vec<Vec<f32>>>,
    peak_live: std::sync::atomic::AtomicUsize,
    /// W2A8: the input steps of the ternary layers (`crate::quant`).
    act_scales: Option<crate::quant::ActScales>,
}

impl<'g> Reference<'g> {
    /// Prepares `graph` (whose parameters must be loaded) to run on `threads` threads.
    /// Layers flagged `ternary=1` get TWN-ternarized weights, as in Darknet-TWN.
    pub fn new(graph: &'g Graph, threads: usize) -> Result<Self, RunError> {
        let threads = threads.max(1);
        let mut prepared = Vec::with_capacity(graph.num_layers());
        for i in 0..graph.num_layers() {
            prepared.push(prepare(graph, i)?);
        }
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("thread pool");
        Ok(Reference {
            graph,
            prepared,
            threads,
            pool,
            buffers: Default::default(),
            peak_live: Default::default(),
            act_scales: None,
        })
    }

    /// Runs the ternary layers on int8-quantized inputs (W2A8, see [`crate::quant`]).
    pub fn with_act_scales(mut self, scales: crate::quant::ActScales) -> Self {
        self.act_scales = Some(scales);
        self
    }

    /// The graph this interpreter runs.
    pub fn graph(&self) -> &'g Graph {
        self.graph
    }

    /// Runs a batch; `on_layer` sees every layer's output as it is produced (for
    /// dumps and timings). Returns the outputs of the detection heads (or of the
    /// last layer when the model has none), in layer order.
    pub fn run(
        &self,
        input: &Tensor,
        mut on_layer: impl FnMut(LayerDone),
    ) -> Result<Vec<(usize, Tensor)>, RunError> {
        let want = self.graph.input_shape();
        if input.shape != want {
            return Err(RunError::InputShape { got: input.dims(), want });
        }
        let g = self.graph;
        let n = g.num_layers();
        let mut keep = g.heads();
        if keep.is_empty() {
            keep.push(n - 1);
        }
        // Free each value after its last reader: peak memory ≈ live tensors.
        let mut last_use = vec![0usize; n];
        for i in 0..n {
            for src in g.inputs(g.layers[i]) {
                if let Some(l) = g.node(src).layer {
                    last_use[l] = last_use[l].max(i);
                }
            }
        }
        let mut values: Vec<Option<Tensor>> = (0..n).map(|_| None).collect();
        let mut scratch = Vec::new();
        for i in 0..n {
            let start = Instant::now();
            let ins: Vec<(&Tensor, Shape)> = g
                .inputs(g.layers[i])
                .into_iter()
                .map(|s| {
                    let t = match g.node(s).layer {
                        Some(l) => values[l].as_ref().expect("inputs are computed first"),
                        None => input,
                    };
                    (t, g.node(s).shape)
                })
                .collect();
            let out = self.pool.install(|| self.layer(i, &ins, &mut scratch));
            drop(ins);
            on_layer(LayerDone { layer: i, output: &out, elapsed: start.elapsed() });
            values[i] = Some(out);
            let live: usize = values.iter().flatten().map(|t| 4 * t.data.len()).sum();
            self.peak_live.fetch_max(live, std::sync::atomic::Ordering::Relaxed);
            for src in g.inputs(g.layers[i]) {
                if let Some(l) = g.node(src).layer {
                    if last_use[l] == i && !keep.contains(&l) {
                        self.recycle(values[l].take());
                    }
                }
            }
            if last_use[i] == 0 && !keep.contains(&i) && i + 1 < n {
                self.recycle(values[i].take());
            }
        }
        Ok(keep.into_iter().map(|l| (l, values[l].take().expect("kept"))).collect())
    }

    /// The most activation bytes alive at once in any run so far (outputs waiting
    /// for their last reader, the input excluded).
    pub fn peak_live_bytes(&self) -> usize {
        self.peak_live.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn recycle(&self, t: Option<Tensor>) {
        if let Some(t) = t {
            self.buffers.lock().expect("buffer pool").push(t.data);
        }
    }

    /// An output tensor on a reused buffer. Its contents are stale: every op below
    /// writes its whole output.
    fn output(&self, n: usize, shape: Shape) -> Tensor {
        let len = n * shape.numel();
        let mut pool = self.buffers.lock().expect("buffer pool");
        // the smallest free buffer that fits, else a new one
        let best = (0..pool.len()).filter(|&i| pool[i].capacity() >= len).min_by_key(|&i| pool[i].capacity());
        let mut data = best.map(|i| pool.swap_remove(i)).unwrap_or_default();
        data.truncate(len);
        data.resize(len, 0.0);
        Tensor::from_vec(n, shape, data)
    }

    /// One layer over the whole batch.
    fn layer(&self, i: usize, ins: &[(&Tensor, Shape)], scratch: &mut Vec<f32>) -> Tensor {
        let node = self.graph.layer(i);
        let out_shape = node.shape;
        let (x, xs) = ins[0];
        let mut y = self.output(x.n, out_shape);
        let step = self.act_scales.as_ref().and_then(|a| a.steps.get(i).copied().flatten());
        let mut quantized = Vec::new();
        for b in 0..x.n {
            let mut xb = x.image(b);
            if let Some(step) = step {
                quantized.clear();
                quantized.extend_from_slice(xb);
                crate::quant::fake_quantize(&mut quantized, step);
                xb = &quantized;
            }
            let yb = y.image_mut(b);
            match (&node.op, &self.prepared[i]) {
                (Op::Conv(cv), Prepared::Conv { weights, epilogue }) => {
                    conv2d(xb, xs, cv, weights, out_shape, yb, scratch, self.threads);
                    epilogue.apply(yb, out_shape.c, out_shape.plane());
                }
                (Op::Connected(c), Prepared::Connected { weights, epilogue }) => {
                    matmul(c.output, 1, xs.numel(), weights, xb, yb, self.threads);
                    epilogue.apply(yb, c.output, 1);
                }
                (Op::MaxPool(p), _) => ops::maxpool(xb, xs, p, out_shape, yb),
                (Op::AvgPool, _) => ops::avgpool(xb, xs, yb),
                (Op::Route(r), _) => {
                    let parts: Vec<(&[f32], Shape)> = ins.iter().map(|(t, s)| (t.image(b), *s)).collect();
                    ops::route(&parts, r.groups, r.group_id, yb);
                }
                (Op::Shortcut(s), prep) => {
                    let w = |k: usize, ch: usize| match prep {
                        Prepared::Shortcut { weights, per_channel: true } => weights[k * out_shape.c + ch],
                        Prepared::Shortcut { weights, per_channel: false } => weights[k],
                        _ => 1.0,
                    };
                    let plane = out_shape.plane();
                    for (j, v) in yb.iter_mut().enumerate() {
                        *v = xb[j] * w(0, j / plane);
                    }
                    for (k, (t, fs)) in ins.iter().enumerate().skip(1) {
                        if matches!(prep, Prepared::Shortcut { per_channel: true, .. }) {
                            // per-channel weights: add channel by channel
                            for ch in 0..out_shape.c.min(fs.c) {
                                let src = &t.image(b)[ch * plane..(ch + 1) * plane];
                                let dst = &mut yb[ch * plane..(ch + 1) * plane];
                                dst.iter_mut().zip(src).for_each(|(d, a)| *d += a * w(k, ch));
                            }
                        } else {
                            ops::shortcut_add(yb, out_shape, t.image(b), *fs, w(k, 0));
                        }
                    }
                    activate(yb, s.activation, out_shape.c, plane);
                }
                (Op::Upsample(u), _) => ops::upsample(xb, xs, u.stride, u.scale, out_shape, yb),
                (Op::Reorg(r), _) => ops::reorg(xb, xs, r, out_shape, yb),
                (Op::Yolo(a), _) => {
                    yb.copy_from_slice(xb);
                    ops::yolo(yb, out_shape, a);
                }
                (Op::Region(r), _) => {
                    yb.copy_from_slice(xb);
                    ops::region(yb, out_shape, r);
                }
                (Op::ScaleChannels(s), _) => {
                    let from = ins[1].0.image(b);
                    let plane = out_shape.plane();
                    for (j, v) in yb.iter_mut().enumerate() {
                        let scale = if s.scale_wh { xb[j % plane] } else { xb[j / plane] };
                        *v = scale * from[j];
                    }
                    activate(yb, s.activation, out_shape.c, plane);
                }
                (Op::Sam(s), _) => {
                    let from = ins[1].0.image(b);
                    for (j, v) in yb.iter_mut().enumerate() {
                        *v = xb[j] * from[j];
                    }
                    activate(yb, s.activation, out_shape.c, out_shape.plane());
                }
                (Op::Softmax(s), _) => {
                    yb.copy_from_slice(xb);
                    let per = yb.len() / s.groups;
                    for grp in yb.chunks_mut(per) {
                        ops::softmax(grp, per, 1, s.temperature);
                    }
                }
                (Op::Dropout(_) | Op::Cost(_) | Op::Input, _) => yb.copy_from_slice(xb),
                (Op::Conv(_) | Op::Connected(_), _) => unreachable!("prepared in new()"),
            }
        }
        y
    }
}

fn prepare(g: &Graph, i: usize) -> Result<Prepared<'_>, RunError> {
    let node = g.layer(i);
    let kind = node.op.type_name();
    let params = || {
        g.params.layer(i).filter(|p| !p.weights.is_empty()).ok_or(RunError::MissingParams {
            layer: i,
            kind,
            what: "weights",
        })
    };
    Ok(match &node.op {
        Op::Conv(c) => {
            let p = params()?;
            let weights = match (&p.ternary, c.ternary) {
                // codes and scales from the ternarization pass (maybe folded)
                (Some(t), _) => Cow::Owned(t.dequantize(c.filters)),
                // a cfg's ternary=1: Darknet-TWN ternarizes the file's weights
                (None, true) => Cow::Owned(ternarize_layer(&p.weights, DEFAULT_THRESHOLD)),
                (None, false) => Cow::Borrowed(&p.weights[..]),
            };
            Prepared::Conv { weights, epilogue: Epilogue::new(p, c.activation) }
        }
        Op::Connected(c) => {
            let p = params()?;
            let weights = match (&p.ternary, c.ternary) {
                (Some(t), _) => Cow::Owned(t.dequantize(c.output)),
                (None, true) => Cow::Owned(ternarize_layer(&p.weights, DEFAULT_THRESHOLD)),
                (None, false) => Cow::Borrowed(&p.weights[..]),
            };
            Prepared::Connected { weights, epilogue: Epilogue::new(p, c.activation) }
        }
        Op::Shortcut(s) if s.weights != ShortcutWeights::None => {
            let p = params()?;
            let inputs = g.inputs(g.layers[i]).len();
            let per = p.weights.len() / inputs;
            Prepared::Shortcut {
                weights: normalize_shortcut(&p.weights, inputs, per, &s.weights_normalization),
                per_channel: per > 1,
            }
        }
        _ => Prepared::None,
    })
}

/// `shortcut_multilayer_cpu`'s weight normalisation across the `n+1` inputs.
fn normalize_shortcut(w: &[f32], inputs: usize, per: usize, norm: &str) -> Vec<f32> {
    let mut out = w.to_vec();
    if norm == "none" {
        return out;
    }
    for j in 0..per {
        let col: Vec<f32> = (0..inputs).map(|k| w[k * per + j]).collect();
        let max = col.iter().copied().fold(f32::MIN, f32::max);
        let f = |v: f32| {
            if norm == "softmax" {
                (v - max).exp()
            } else {
                v.max(0.0)
            }
        };
        let sum = 0.0001 + col.iter().map(|&v| f(v)).sum::<f32>();
        for k in 0..inputs {
            out[k * per + j] = f(col[k]) / sum;
        }
    }
    out
}
