//! `[convolutional]` in training: im2col + GEMM per image and group, batchnorm with
//! batch statistics, the activation; and the backward pass of all three.

use rayon::prelude::*;
use ternc_ir::{Activation, Conv, LayerParams, Shape};
use ternc_runtime::reference::im2col;

use crate::activation;
use crate::linalg::{gemm_into, Mat};
use crate::scratch::Scratch;
use crate::transform::WeightTransform;

/// Darknet's batchnorm epsilon (inside the square root).
pub const BN_EPS: f32 = 0.00001;
/// Weight of the new batch statistics in the rolling averages. Darknet's GPU path (the
/// one models are trained with) uses `.99/.01`; its CPU-only path uses `.9/.1`.
pub const ROLLING_MOMENTUM: f32 = 0.01;

/// Batchnorm parameters, their accumulated updates and the last batch's statistics.
#[derive(Debug, Clone, Default)]
pub struct BatchNormState {
    pub scales: Vec<f32>,
    pub rolling_mean: Vec<f32>,
    pub rolling_variance: Vec<f32>,
    /// Darknet's `scale_updates`: the ascent direction summed over the batch, then
    /// scaled by momentum after each update.
    pub scale_updates: Vec<f32>,
    pub mean: Vec<f32>,
    pub variance: Vec<f32>,
    /// `(z − mean)/sqrt(var + ε)` of the last training forward, `[batch][c][plane]`.
    x_norm: Vec<f32>,
}

/// One convolutional layer's parameters, updates and saved activations.
pub struct ConvLayer {
    pub cfg: Conv,
    pub input: Shape,
    pub output: Shape,
    /// Latent float weights, OIHW.
    pub weights: Vec<f32>,
    pub biases: Vec<f32>,
    /// Darknet's `weight_updates` / `bias_updates`: `−∂loss/∂w` summed over the
    /// images since the last update, plus momentum·(previous step).
    pub weight_updates: Vec<f32>,
    pub bias_updates: Vec<f32>,
    pub bn: Option<BatchNormState>,
    pub transform: Option<Box<dyn WeightTransform>>,
    /// The transformed weights of the last forward (empty without a transform).
    effective: Vec<f32>,
    /// Pre-activation values of the last training forward (nonlinear activations only).
    pre: Vec<f32>,
}

impl ConvLayer {
    pub fn new(cfg: Conv, input: Shape, output: Shape, p: &LayerParams) -> Self {
        let n = cfg.filters;
        let bn = cfg.batch_normalize.then(|| {
            let b = p.bn.clone().unwrap_or_default();
            BatchNormState {
                scales: b.scales,
                rolling_mean: b.mean,
                rolling_variance: b.variance,
                scale_updates: vec![0.0; n],
                mean: vec![0.0; n],
                variance: vec![0.0; n],
                x_norm: Vec::new(),
            }
        });
        ConvLayer {
            weight_updates: vec![0.0; p.weights.len()],
            bias_updates: vec![0.0; n],
            weights: p.weights.clone(),
            biases: p.biases.clone(),
            bn,
            cfg,
            input,
            output,
            transform: None,
            effective: Vec::new(),
            pre: Vec::new(),
        }
    }

    /// Sizes the saved-activation buffers for `batch` images.
    pub fn alloc(&mut self, batch: usize) {
        let len = batch * self.output.numel();
        if let Some(bn) = &mut self.bn {
            bn.x_norm.resize(len, 0.0);
        }
        if self.cfg.activation != Activation::Linear {
            self.pre.resize(len, 0.0);
        }
    }

    /// Weights the forward pass uses: the transform's output, or the latent weights.
    pub fn forward_weights(&self) -> &[f32] {
        if self.transform.is_some() {
            &self.effective
        } else {
            &self.weights
        }
    }

    /// Recomputes the transformed weights from the latent ones; returns their count.
    pub fn refresh_transform(&mut self) -> usize {
        if let Some(t) = &self.transform {
            t.apply(&self.weights, self.cfg.filters, &mut self.effective);
            self.effective.len()
        } else {
            self.weights.len()
        }
    }

    fn dims(&self) -> (usize, usize, usize, usize) {
        let g = self.cfg.groups;
        let cin = self.input.c / g;
        (g, cin, self.cfg.filters / g, cin * self.cfg.size * self.cfg.size)
    }

    /// 1x1, stride 1, no padding: the input is its own column matrix.
    fn direct(&self) -> bool {
        let c = &self.cfg;
        c.size == 1 && c.stride_x == 1 && c.stride_y == 1 && c.pad == 0
    }

    /// `y = act(bn(W∗x))` for `batch` images. In training mode batchnorm uses the batch
    /// statistics and updates the rolling ones; the values backward needs are kept.
    pub fn forward(&mut self, x: &[f32], y: &mut [f32], batch: usize, train: bool, scratch: &Scratch) {
        let (inn, outn) = (self.input.numel(), self.output.numel());
        let threads = rayon::current_num_threads();
        let inner = if batch >= threads { 1 } else { threads };
        {
            let w = self.forward_weights();
            let this = &*self;
            y[..batch * outn].par_chunks_mut(outn).zip(x[..batch * inn].par_chunks(inn)).for_each(
                |(yb, xb)| {
                    this.conv_image(xb, w, yb, scratch, inner);
                },
            );
        }
        let plane = self.output.plane();
        let c = self.output.c;
        match &mut self.bn {
            Some(bn) if train => {
                batch_stats(y, batch, c, plane, &mut bn.mean, &mut bn.variance);
                for k in 0..c {
                    bn.rolling_mean[k] =
                        (1.0 - ROLLING_MOMENTUM) * bn.rolling_mean[k] + ROLLING_MOMENTUM * bn.mean[k];
                    bn.rolling_variance[k] =
                        (1.0 - ROLLING_MOMENTUM) * bn.rolling_variance[k] + ROLLING_MOMENTUM * bn.variance[k];
                }
                let (mean, var, scales, biases) = (&bn.mean, &bn.variance, &bn.scales, &self.biases);
                y[..batch * outn]
                    .par_chunks_mut(plane)
                    .zip(bn.x_norm[..batch * outn].par_chunks_mut(plane))
                    .enumerate()
                    .for_each(|(i, (row, xn))| {
                        let k = i % c;
                        let inv = 1.0 / (var[k] + BN_EPS).sqrt();
                        for (v, n) in row.iter_mut().zip(xn.iter_mut()) {
                            *n = (*v - mean[k]) * inv;
                            *v = scales[k] * *n + biases[k];
                        }
                    });
            }
            Some(bn) => {
                // the reference interpreter's fused form: a·z + b
                let (a, b): (Vec<f32>, Vec<f32>) = (0..c)
                    .map(|k| {
                        let a = bn.scales[k] / (bn.rolling_variance[k] + BN_EPS).sqrt();
                        (a, self.biases[k] - bn.rolling_mean[k] * a)
                    })
                    .unzip();
                y[..batch * outn].par_chunks_mut(plane).enumerate().for_each(|(i, row)| {
                    let k = i % c;
                    row.iter_mut().for_each(|v| *v = a[k] * *v + b[k]);
                });
            }
            None => {
                let biases = &self.biases;
                y[..batch * outn].par_chunks_mut(plane).enumerate().for_each(|(i, row)| {
                    let b = biases[i % c];
                    row.iter_mut().for_each(|v| *v += b);
                });
            }
        }
        let act = self.cfg.activation;
        if act != Activation::Linear {
            if train {
                self.pre[..batch * outn].copy_from_slice(&y[..batch * outn]);
            }
            y[..batch * outn].par_chunks_mut(1 << 14).for_each(|ch| {
                ch.iter_mut().for_each(|v| *v = activation::apply(act, *v));
            });
        }
    }

    /// One image: `y = W ∗ x` per group, no bias.
    fn conv_image(&self, x: &[f32], w: &[f32], y: &mut [f32], scratch: &Scratch, threads: usize) {
        let (g, cin, cout, kdim) = self.dims();
        let n = self.output.plane();
        let inp = self.input.plane();
        for gi in 0..g {
            let xg = &x[gi * cin * inp..(gi + 1) * cin * inp];
            let wg = Mat::new(&w[gi * cout * kdim..(gi + 1) * cout * kdim], cout, kdim);
            let yg = &mut y[gi * cout * n..(gi + 1) * cout * n];
            if self.direct() {
                gemm_into(wg, Mat::new(xg, kdim, n), yg, false, threads);
            } else {
                let mut cols = scratch.take(kdim * n);
                im2col(
                    xg,
                    self.input.h,
                    self.input.w,
                    &self.cfg,
                    (0, self.output.h),
                    self.output.w,
                    &mut cols,
                    false,
                );
                gemm_into(wg, Mat::new(&cols, kdim, n), yg, false, threads);
                scratch.give(cols);
            }
        }
    }

    /// Backward over `batch` images. `delta` is this layer's output delta (Darknet's
    /// sign: `−∂loss/∂y`), consumed in place; updates accumulate into the `*_updates`
    /// arrays; `dx`, when given, receives (adds) the delta of the input.
    pub fn backward(
        &mut self,
        x: &[f32],
        delta: &mut [f32],
        dx: Option<&mut [f32]>,
        batch: usize,
        scratch: &Scratch,
    ) {
        let (inn, outn) = (self.input.numel(), self.output.numel());
        let (c, plane) = (self.output.c, self.output.plane());
        let delta = &mut delta[..batch * outn];
        if self.cfg.activation != Activation::Linear {
            let (act, pre) = (self.cfg.activation, &self.pre[..batch * outn]);
            delta.par_chunks_mut(1 << 14).zip(pre.par_chunks(1 << 14)).for_each(|(d, p)| {
                activation::backward(act, p, d);
            });
        }
        // bias (beta) updates: Σ delta per channel
        for (k, u) in self.bias_updates.iter_mut().enumerate() {
            *u += channel_sum(delta, batch, c, plane, k, |d, _| d as f64) as f32;
        }
        if let Some(bn) = &mut self.bn {
            bn_backward(bn, delta, batch, c, plane);
        }
        // weight updates: Σ_b δ_b · cols_bᵀ, per group
        let (g, cin, cout, kdim) = self.dims();
        let threads = rayon::current_num_threads();
        let inp = self.input.plane();
        let direct = self.direct();
        for b in 0..batch {
            let xb = &x[b * inn..(b + 1) * inn];
            let db = &delta[b * outn..(b + 1) * outn];
            for gi in 0..g {
                let xg = &xb[gi * cin * inp..(gi + 1) * cin * inp];
                let dg = Mat::new(&db[gi * cout * plane..(gi + 1) * cout * plane], cout, plane);
                let wu = &mut self.weight_updates[gi * cout * kdim..(gi + 1) * cout * kdim];
                if direct {
                    gemm_into(dg, Mat::new(xg, kdim, plane).t(), wu, true, threads);
                } else {
                    let mut cols = scratch.take(kdim * plane);
                    im2col(
                        xg,
                        self.input.h,
                        self.input.w,
                        &self.cfg,
                        (0, self.output.h),
                        self.output.w,
                        &mut cols,
                        true,
                    );
                    gemm_into(dg, Mat::new(&cols, kdim, plane).t(), wu, true, threads);
                    scratch.give(cols);
                }
            }
        }
        // input delta: Wᵀ·δ, scattered back by col2im (straight through a transform)
        let Some(dx) = dx else { return };
        let inner = if batch >= threads { 1 } else { threads };
        let w = self.forward_weights();
        let this = &*self;
        dx[..batch * inn].par_chunks_mut(inn).zip(delta.par_chunks(outn)).for_each(|(dxb, db)| {
            for gi in 0..g {
                let wg = Mat::new(&w[gi * cout * kdim..(gi + 1) * cout * kdim], cout, kdim).t();
                let dg = Mat::new(&db[gi * cout * plane..(gi + 1) * cout * plane], cout, plane);
                let dxg = &mut dxb[gi * cin * inp..(gi + 1) * cin * inp];
                if direct {
                    gemm_into(wg, dg, dxg, true, inner);
                } else {
                    let mut cols = scratch.take(kdim * plane);
                    gemm_into(wg, dg, &mut cols, false, inner);
                    col2im_add(&cols, this.input, &this.cfg, this.output, dxg);
                    scratch.give(cols);
                }
            }
        });
    }
}

/// `Σ f(delta, index)` over channel `k` of every image, in f64.
fn channel_sum(
    v: &[f32],
    batch: usize,
    c: usize,
    plane: usize,
    k: usize,
    f: impl Fn(f32, usize) -> f64,
) -> f64 {
    let mut s = 0.0;
    for b in 0..batch {
        let start = (b * c + k) * plane;
        for (i, &d) in v[start..start + plane].iter().enumerate() {
            s += f(d, start + i);
        }
    }
    s
}

/// Darknet's `mean_cpu` and `variance_cpu` (unbiased: divided by `N − 1`), in f64.
fn batch_stats(y: &[f32], batch: usize, c: usize, plane: usize, mean: &mut [f32], var: &mut [f32]) {
    let n = (batch * plane) as f64;
    let stats: Vec<(f32, f32)> = (0..c)
        .into_par_iter()
        .map(|k| {
            let m = channel_sum(y, batch, c, plane, k, |v, _| v as f64) / n;
            let ss = channel_sum(y, batch, c, plane, k, |v, _| (v as f64 - m).powi(2));
            (m as f32, (ss / (n - 1.0).max(1.0)) as f32)
        })
        .collect();
    for (k, (m, v)) in stats.into_iter().enumerate() {
        mean[k] = m;
        var[k] = v;
    }
}

/// Batchnorm backward in training mode. `delta` holds the delta of `scale·x̂ + bias`;
/// afterwards it holds the delta of the convolution output `z`. This is the exact
/// gradient of the forward above (unbiased variance, ε inside the root); Darknet's
/// `normalize_delta_cpu` divides the variance term by `N` instead of `N − 1` and puts
/// ε outside the root, a difference of order `1/N`.
fn bn_backward(bn: &mut BatchNormState, delta: &mut [f32], batch: usize, c: usize, plane: usize) {
    let x_norm = &bn.x_norm;
    let n = (batch * plane) as f64;
    let sums: Vec<(f64, f64)> = (0..c)
        .into_par_iter()
        .map(|k| {
            let sd = channel_sum(delta, batch, c, plane, k, |d, _| d as f64);
            let sdx = channel_sum(delta, batch, c, plane, k, |d, i| d as f64 * x_norm[i] as f64);
            (sd, sdx)
        })
        .collect();
    for (k, (_, sdx)) in sums.iter().enumerate() {
        bn.scale_updates[k] += *sdx as f32;
    }
    let (scales, var) = (&bn.scales, &bn.variance);
    delta.par_chunks_mut(plane).zip(x_norm.par_chunks(plane)).enumerate().for_each(|(i, (d, xn))| {
        let k = i % c;
        let (sd, sdx) = sums[k];
        let s = scales[k] as f64;
        // g = scale·δ;  dz = (g − mean g − x̂·Σ g x̂ /(N−1)) / sqrt(var + ε)
        let mean_g = s * sd / n;
        let proj = s * sdx / (n - 1.0).max(1.0);
        let inv = 1.0 / ((var[k] + BN_EPS) as f64).sqrt();
        for (dv, &x) in d.iter_mut().zip(xn) {
            *dv = ((s * *dv as f64 - mean_g - x as f64 * proj) * inv) as f32;
        }
    });
}

/// Darknet's `col2im_cpu_ext`: adds each column entry back onto the input pixel it was
/// read from (padding taps are dropped).
fn col2im_add(cols: &[f32], input: Shape, cv: &Conv, out: Shape, dx: &mut [f32]) {
    let (k, d, pad) = (cv.size, cv.dilation, cv.pad as isize);
    let (h, w, n) = (input.h as isize, input.w as isize, out.plane());
    dx.par_chunks_mut(input.plane()).enumerate().for_each(|(ch, plane)| {
        for ky in 0..k {
            for kx in 0..k {
                let row = &cols[((ch * k + ky) * k + kx) * n..][..n];
                for oy in 0..out.h {
                    let iy = (oy * cv.stride_y + ky * d) as isize - pad;
                    if iy < 0 || iy >= h {
                        continue;
                    }
                    let dst = &mut plane[iy as usize * w as usize..][..w as usize];
                    for ox in 0..out.w {
                        let ix = (ox * cv.stride_x + kx * d) as isize - pad;
                        if ix >= 0 && ix < w {
                            dst[ix as usize] += row[oy * out.w + ox];
                        }
                    }
                }
            }
        }
    });
}
