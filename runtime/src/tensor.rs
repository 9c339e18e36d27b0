//! A batch of feature maps, NCHW float32.

use ternc_ir::Shape;

#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Batch size.
    pub n: usize,
    pub shape: Shape,
    pub data: Vec<f32>,
}

impl Tensor {
    pub fn zeros(n: usize, shape: Shape) -> Self {
        Tensor { n, shape, data: vec![0.0; n * shape.numel()] }
    }

    /// Wraps `data`, which must hold `n·c·h·w` values.
    pub fn from_vec(n: usize, shape: Shape, data: Vec<f32>) -> Self {
        assert_eq!(data.len(), n * shape.numel(), "tensor data does not match {n}x{shape}");
        Tensor { n, shape, data }
    }

    /// Image `b` of the batch.
    pub fn image(&self, b: usize) -> &[f32] {
        let m = self.shape.numel();
        &self.data[b * m..(b + 1) * m]
    }

    pub fn image_mut(&mut self, b: usize) -> &mut [f32] {
        let m = self.shape.numel();
        &mut self.data[b * m..(b + 1) * m]
    }

    /// `[n, c, h, w]`.
    pub fn dims(&self) -> [usize; 4] {
        [self.n, self.shape.c, self.shape.h, self.shape.w]
    }
}
