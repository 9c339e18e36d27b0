//! The hook quantization-aware training plugs into: a per-layer transform of the latent
//! float weights applied before the convolution. The backward pass is straight-through:
//! gradients computed against the transformed weights update the latent ones.

use ternc_passes::ternary::ternarize_layer;

/// Maps a convolution's latent weights (OIHW, `filters` rows) to the weights the
/// forward pass uses. Must write exactly `latent.len()` values into `out`.
pub trait WeightTransform: Send + Sync {
    fn apply(&self, latent: &[f32], filters: usize, out: &mut Vec<f32>);
    /// A short name for logs.
    fn name(&self) -> &str;
}

/// Darknet-TWN's per-layer ternarization (`Δ = t·mean|W|`, values `±α, 0`), which the
/// reference interpreter applies to layers flagged `ternary=1`; installed on those
/// layers by default so training and inference agree.
#[derive(Debug, Clone, Copy)]
pub struct Twn {
    pub threshold: f32,
}

impl WeightTransform for Twn {
    fn apply(&self, latent: &[f32], _filters: usize, out: &mut Vec<f32>) {
        *out = ternarize_layer(latent, self.threshold);
    }
    fn name(&self) -> &str {
        "twn"
    }
}
