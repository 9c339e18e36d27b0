//! Convolution and dense layers as Darknet computes them: im2col, a GEMM per group,
//! then batchnorm `(x − mean)/sqrt(var + 1e-5)·scale + bias` (or the bias alone) and
//! the activation, in that order so the reference rounds like Darknet.

use gemm::{gemm, Parallelism};
use rayon::prelude::*;
use ternc_ir::{Activation, Conv, LayerParams, Shape};

use super::activation::activate;

/// Per-output-channel epilogue before the activation.
#[derive(Debug, Clone)]
pub struct Epilogue {
    pub bias: Vec<f32>,
    /// `(mean, 1/sqrt(var+ε), scale)` when the layer has batchnorm.
    pub bn: Option<(Vec<f32>, Vec<f32>, Vec<f32>)>,
    pub activation: Activation,
}

impl Epilogue {
    pub fn new(p: &LayerParams, activation: Activation) -> Self {
        let bn = p.bn.as_ref().map(|b| {
            let inv: Vec<f32> = b.variance.iter().map(|v| 1.0 / (v + 0.00001).sqrt()).collect();
            (b.mean.clone(), inv, b.scales.clone())
        });
        Epilogue { bias: p.biases.clone(), bn, activation }
    }

    /// Applies to one image `[c, plane]`.
    pub fn apply(&self, y: &mut [f32], c: usize, plane: usize) {
        y.par_chunks_mut(plane).enumerate().for_each(|(k, row)| match &self.bn {
            Some((mean, inv, scale)) => {
                for v in row.iter_mut() {
                    *v = (*v - mean[k]) * inv[k] * scale[k] + self.bias[k];
                }
            }
            None => row.iter_mut().for_each(|v| *v += self.bias[k]),
        });
        activate(y, self.activation, c, plane);
    }
}

/// `dst[m×n] = lhs[m×k] · rhs[k×n]`, all row-major.
pub fn matmul(m: usize, n: usize, k: usize, lhs: &[f32], rhs: &[f32], dst: &mut [f32], threads: usize) {
    debug_assert!(lhs.len() >= m * k && rhs.len() >= k * n && dst.len() >= m * n);
    let par = if threads > 1 { Parallelism::Rayon(threads) } else { Parallelism::None };
    // SAFETY: the slices hold the m×k, k×n and m×n row-major matrices described by
    // the strides (checked above in debug builds, by construction in callers).
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            1,
            n as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

/// Darknet's `im2col_cpu_ext`: rows `(channel, ky, kx)`, columns output pixels;
/// taps outside the (zero-padded) input read 0.
#[allow(clippy::too_many_arguments)]
fn im2col(x: &[f32], h: usize, w: usize, cv: &Conv, oh: usize, ow: usize, cols: &mut [f32]) {
    let k = cv.size;
    cols.par_chunks_mut(oh * ow).enumerate().for_each(|(row, out)| {
        let ch = row / (k * k);
        let ky = (row / k) % k;
        let kx = row % k;
        let plane = &x[ch * h * w..(ch + 1) * h * w];
        for oy in 0..oh {
            let iy = (oy * cv.stride_y + ky * cv.dilation) as isize - cv.pad as isize;
            let dst = &mut out[oy * ow..(oy + 1) * ow];
            if iy < 0 || iy >= h as isize {
                dst.fill(0.0);
                continue;
            }
            let src = &plane[iy as usize * w..(iy as usize + 1) * w];
            for (ox, d) in dst.iter_mut().enumerate() {
                let ix = (ox * cv.stride_x + kx * cv.dilation) as isize - cv.pad as isize;
                *d = if ix < 0 || ix >= w as isize { 0.0 } else { src[ix as usize] };
            }
        }
    });
}

/// One image through a convolution: `x` is `[c,h,w]`, `y` is `out`.
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    x: &[f32],
    input: Shape,
    cv: &Conv,
    weights: &[f32],
    out: Shape,
    y: &mut [f32],
    scratch: &mut Vec<f32>,
    threads: usize,
) {
    let g = cv.groups;
    let (cin, cout) = (input.c / g, cv.filters / g);
    let kdim = cin * cv.size * cv.size;
    let n = out.plane();
    let direct = cv.size == 1 && cv.stride_x == 1 && cv.stride_y == 1 && cv.pad == 0;
    for gi in 0..g {
        let xg = &x[gi * cin * input.plane()..(gi + 1) * cin * input.plane()];
        let wg = &weights[gi * cout * kdim..(gi + 1) * cout * kdim];
        let yg = &mut y[gi * cout * n..(gi + 1) * cout * n];
        if direct {
            matmul(cout, n, kdim, wg, xg, yg, threads);
        } else {
            scratch.resize(kdim * n, 0.0);
            im2col(xg, input.h, input.w, cv, out.h, out.w, scratch);
            matmul(cout, n, kdim, wg, scratch, yg, threads);
        }
    }
}
