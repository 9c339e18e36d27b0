//! A safe wrapper over the `gemm` crate with transposes expressed as strides.

use gemm::{gemm, Parallelism};

/// A row-major matrix operand, optionally read transposed.
#[derive(Clone, Copy)]
pub struct Mat<'a> {
    pub data: &'a [f32],
    /// Stored as `[rows][cols]`.
    pub rows: usize,
    pub cols: usize,
    /// Use the transpose (`[cols][rows]` logically).
    pub t: bool,
}

impl<'a> Mat<'a> {
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Mat { data, rows, cols, t: false }
    }
    pub fn t(self) -> Self {
        Mat { t: !self.t, ..self }
    }
    /// Logical shape after the optional transpose.
    fn shape(&self) -> (usize, usize) {
        if self.t {
            (self.cols, self.rows)
        } else {
            (self.rows, self.cols)
        }
    }
    /// `(row stride, column stride)` of the logical matrix.
    fn strides(&self) -> (isize, isize) {
        if self.t {
            (1, self.cols as isize)
        } else {
            (self.cols as isize, 1)
        }
    }
}

/// `c = a·b` (or `c += a·b` with `accumulate`), `c` row-major `[m][n]`.
/// `threads > 1` lets the GEMM split the work itself.
pub fn gemm_into(a: Mat, b: Mat, c: &mut [f32], accumulate: bool, threads: usize) {
    let (m, k) = a.shape();
    let (k2, n) = b.shape();
    assert_eq!(k, k2, "inner dimensions");
    assert!(a.data.len() >= a.rows * a.cols && b.data.len() >= b.rows * b.cols && c.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(0.0);
        }
        return;
    }
    let (ars, acs) = a.strides();
    let (brs, bcs) = b.strides();
    let par = if threads > 1 { Parallelism::Rayon(threads) } else { Parallelism::None };
    // SAFETY: the asserts above keep every index the strides form inside the three
    // slices; `c` is borrowed mutably, so nothing aliases it.
    unsafe {
        gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            acs,
            ars,
            b.data.as_ptr(),
            bcs,
            brs,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}
