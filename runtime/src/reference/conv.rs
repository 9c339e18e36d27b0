//! Convolution and dense layers as Darknet computes them: im2col, a GEMM per group,
//! then batchnorm `(x − mean)/sqrt(var + 1e-5)·scale + bias` (or the bias alone) and
//! the activation. Batchnorm is applied as one multiply-add per value; that rounds
//! differently from Darknet's three steps by an ulp, far below what GEMM summation
//! order already changes.

use gemm::{gemm, Parallelism};
use rayon::prelude::*;
use ternc_ir::{Activation, Conv, LayerParams, Shape};

use super::activation::{activate, activate_row};

/// Per-output-channel `y = act(a·x + b)`.
#[derive(Debug, Clone)]
pub struct Epilogue {
    pub a: Vec<f32>,
    pub b: Vec<f32>,
    pub activation: Activation,
}

impl Epilogue {
    pub fn new(p: &LayerParams, activation: Activation) -> Self {
        let (a, b) = match &p.bn {
            Some(bn) => (0..p.biases.len())
                .map(|k| {
                    let a = bn.scales[k] / (bn.variance[k] + 0.00001).sqrt();
                    (a, p.biases[k] - bn.mean[k] * a)
                })
                .unzip(),
            None => (vec![1.0; p.biases.len()], p.biases.clone()),
        };
        Epilogue { a, b, activation }
    }

    /// Applies to one image `[c, plane]`.
    pub fn apply(&self, y: &mut [f32], c: usize, plane: usize) {
        let elementwise = !self.activation.is_channelwise();
        y.par_chunks_mut(plane).enumerate().for_each(|(k, row)| {
            let (a, b) = (self.a[k], self.b[k]);
            row.iter_mut().for_each(|v| *v = a * *v + b);
            if elementwise {
                activate_row(row, self.activation);
            }
        });
        if !elementwise {
            activate(y, self.activation, c, plane);
        }
    }
}

/// `dst = lhs · rhs` for row-major `lhs[m×k]`, `rhs[k×n]` and `dst[m×n]` whose rows
/// are `dst_rs` apart (so a column block of a wider matrix can be the destination).
///
/// # Safety
/// `dst` must be valid for writes of `m` rows of `n` floats, `dst_rs` apart, and not
/// aliased by `lhs` or `rhs`.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_into(
    m: usize,
    n: usize,
    k: usize,
    lhs: &[f32],
    rhs: &[f32],
    dst: *mut f32,
    dst_rs: usize,
    par: Parallelism,
) {
    assert!(lhs.len() >= m * k && rhs.len() >= k * n);
    // SAFETY: lhs and rhs hold the matrices the strides describe (asserted above);
    // dst is the caller's promise.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
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

/// `dst[m×n] = lhs[m×k] · rhs[k×n]`, all row-major.
pub fn matmul(m: usize, n: usize, k: usize, lhs: &[f32], rhs: &[f32], dst: &mut [f32], threads: usize) {
    assert!(dst.len() >= m * n);
    let par = if threads > 1 { Parallelism::Rayon(threads) } else { Parallelism::None };
    // SAFETY: dst holds m contiguous rows of n floats (asserted) and is borrowed mutably.
    unsafe { gemm_into(m, n, k, lhs, rhs, dst.as_mut_ptr(), n, par) }
}

/// A raw output pointer shared by tasks that write disjoint column blocks.
#[derive(Clone, Copy)]
struct Disjoint(*mut f32);
// SAFETY: only used for writes to disjoint regions, see `conv2d`.
unsafe impl Send for Disjoint {}
unsafe impl Sync for Disjoint {}

impl Disjoint {
    /// The pointer `offset` floats in (a method, so closures capture the whole
    /// `Send` wrapper rather than the raw pointer field).
    fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// Darknet's `im2col_cpu_ext` for output rows `oy0..oy1`: rows `(channel, ky, kx)`,
/// columns output pixels; taps outside the (zero-padded) input read 0. Public for
/// the training engine, whose backward pass rebuilds the same columns.
#[allow(clippy::too_many_arguments)]
pub fn im2col(
    x: &[f32],
    h: usize,
    w: usize,
    cv: &Conv,
    (oy0, oy1): (usize, usize),
    ow: usize,
    cols: &mut [f32],
    parallel: bool,
) {
    let k = cv.size;
    let (sx, pad) = (cv.stride_x, cv.pad as isize);
    let width = (oy1 - oy0) * ow;
    let fill_row = |(row, out): (usize, &mut [f32])| {
        let ch = row / (k * k);
        let (ky, kx) = ((row / k) % k, row % k);
        let plane = &x[ch * h * w..(ch + 1) * h * w];
        let x0 = (kx * cv.dilation) as isize - pad;
        // output columns whose tap lies inside the row: ox in [lo, hi)
        let lo = if x0 >= 0 { 0 } else { ((-x0) as usize).div_ceil(sx) };
        let hi = if x0 >= w as isize { 0 } else { ((w as isize - x0) as usize).div_ceil(sx).min(ow) };
        for oy in oy0..oy1 {
            let iy = (oy * cv.stride_y + ky * cv.dilation) as isize - pad;
            let dst = &mut out[(oy - oy0) * ow..(oy - oy0 + 1) * ow];
            if iy < 0 || iy >= h as isize || lo >= hi {
                dst.fill(0.0);
                continue;
            }
            let src = &plane[iy as usize * w..(iy as usize + 1) * w];
            dst[..lo].fill(0.0);
            dst[hi..].fill(0.0);
            let start = (x0 + (lo * sx) as isize) as usize;
            if sx == 1 {
                dst[lo..hi].copy_from_slice(&src[start..start + (hi - lo)]);
            } else {
                for (d, s) in dst[lo..hi].iter_mut().zip(src[start..].iter().step_by(sx)) {
                    *d = *s;
                }
            }
        }
    };
    if parallel {
        cols.par_chunks_mut(width).enumerate().for_each(fill_row);
    } else {
        cols.chunks_mut(width).enumerate().for_each(fill_row);
    }
}

/// Scratch floats per im2col block: small enough to stay in L2 while the GEMM reads it.
const BLOCK_FLOATS: usize = 1 << 16;

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
    // Large outputs: im2col and multiply blocks of output rows in parallel, each
    // block's columns staying in cache. Small ones: one im2col, one threaded GEMM.
    let rows_per_block = (BLOCK_FLOATS / (kdim * out.w).max(1)).max(1);
    let blocked = !direct && n >= 4096 && out.h >= 2 * rows_per_block;
    for gi in 0..g {
        let xg = &x[gi * cin * input.plane()..(gi + 1) * cin * input.plane()];
        let wg = &weights[gi * cout * kdim..(gi + 1) * cout * kdim];
        let yg = &mut y[gi * cout * n..(gi + 1) * cout * n];
        if direct {
            matmul(cout, n, kdim, wg, xg, yg, threads);
        } else if blocked {
            let dst = Disjoint(yg.as_mut_ptr());
            let blocks: Vec<(usize, usize)> =
                (0..out.h).step_by(rows_per_block).map(|r| (r, (r + rows_per_block).min(out.h))).collect();
            blocks.into_par_iter().for_each_init(Vec::new, |cols, (oy0, oy1)| {
                let width = (oy1 - oy0) * out.w;
                cols.resize(kdim * width, 0.0);
                im2col(xg, input.h, input.w, cv, (oy0, oy1), out.w, cols, false);
                // SAFETY: yg holds cout rows of n floats; this block writes columns
                // oy0·ow..oy1·ow of each row, and no other block writes those.
                unsafe { gemm_into(cout, width, kdim, wg, cols, dst.at(oy0 * out.w), n, Parallelism::None) };
            });
        } else {
            scratch.resize(kdim * n, 0.0);
            im2col(xg, input.h, input.w, cv, (0, out.h), out.w, scratch, true);
            matmul(cout, n, kdim, wg, scratch, yg, threads);
        }
    }
}
