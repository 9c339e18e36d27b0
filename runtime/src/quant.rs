//! W2A8: int8 activations into the ternary layers, and their calibration.
//!
//! The semantics every W2A8 backend implements (and the reference interpreter runs
//! when given [`ActScales`], see [`Reference::with_act_scales`]): the input `x` of
//! a ternary convolution or connected layer is quantized per tensor with step `s`,
//!
//! ```text
//! q = clamp(round_half_even(x / s), −127, 127)        (an int8)
//! y = act(scale_o · s · Σ code·q + bias_o)            (the sum exact in i32)
//! ```
//!
//! so the accumulation is integer adds and subtracts of int8 values; only the
//! epilogue is float. Float layers keep float inputs. Steps come from
//! [`calibrate`]: the largest `|x|` seen on calibration inputs, over 127 (symmetric,
//! so zero stays exactly zero: padding and ReLU zeros cost nothing).
//!
//! The reference runs this as "fake quantization": the input is replaced by
//! `s·q` and the float convolution follows, which equals the integer sum times `s`
//! up to float rounding of the sum (≈1e-6 relative).

use ternc_ir::{Graph, Op};

use crate::{Reference, RunError, Tensor};

/// Largest int8 magnitude used (symmetric: −127..127).
pub const QMAX: f32 = 127.0;

/// Per layer, the quantization step of its input (`None`: float input).
#[derive(Debug, Clone, PartialEq)]
pub struct ActScales {
    pub steps: Vec<Option<f32>>,
}

impl ActScales {
    /// Layers whose input is quantized.
    pub fn quantized(&self) -> impl Iterator<Item = (usize, f32)> + '_ {
        self.steps.iter().enumerate().filter_map(|(i, s)| s.map(|s| (i, s)))
    }
}

/// Whether layer `i` runs with ternary weights (and so takes int8 inputs in W2A8).
pub fn is_ternary_layer(g: &Graph, i: usize) -> bool {
    let op = &g.layer(i).op;
    matches!(op, Op::Conv(_) | Op::Connected(_))
        && (op.is_ternary() || g.params.layer(i).is_some_and(|p| p.ternary.is_some()))
}

/// `x ← s·clamp(round(x/s), −127, 127)` in place.
pub fn fake_quantize(x: &mut [f32], step: f32) {
    let inv = 1.0 / step;
    for v in x {
        *v = step * quantize(*v, inv) as f32;
    }
}

/// The int8 code of `x` for the step whose inverse is `inv` (ties to even, as the
/// SIMD conversion instructions round).
pub fn quantize(x: f32, inv: f32) -> i8 {
    (x * inv).round_ties_even().clamp(-QMAX, QMAX) as i8
}

/// Steps for the inputs of `graph`'s ternary layers from the float reference run on
/// `inputs` (each a batch): `max |x| / 127` over all of them (1 where the input was
/// all zeros).
pub fn calibrate(graph: &Graph, inputs: &[Tensor], threads: usize) -> Result<ActScales, RunError> {
    let n = graph.num_layers();
    let reference = Reference::new(graph, threads)?;
    // the largest |value| of every layer output, and of the network input
    let mut out_max = vec![0f32; n];
    let mut in_max = 0f32;
    let absmax = |d: &[f32]| d.iter().fold(0f32, |m, v| m.max(v.abs()));
    for x in inputs {
        in_max = in_max.max(absmax(&x.data));
        reference.run(x, |d| out_max[d.layer] = out_max[d.layer].max(absmax(&d.output.data)))?;
    }
    let steps = (0..n)
        .map(|i| {
            is_ternary_layer(graph, i).then(|| {
                let src = graph.inputs(graph.layers[i])[0];
                let m = graph.node(src).layer.map_or(in_max, |l| out_max[l]);
                if m > 0.0 && m.is_finite() {
                    m / QMAX
                } else {
                    1.0
                }
            })
        })
        .collect();
    Ok(ActScales { steps })
}

/// `count` pseudo-random inputs in `[0, 1)` for `graph` (batch 1 each): the default
/// calibration set when no images are given.
pub fn random_inputs(graph: &Graph, count: usize, seed: u64) -> Vec<Tensor> {
    let s = graph.input_shape();
    (0..count as u64)
        .map(|k| {
            let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(k * 1442695040888963407 + 1);
            let data = (0..s.numel())
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (state >> 40) as f32 / (1u64 << 24) as f32
                })
                .collect();
            Tensor::from_vec(1, s, data)
        })
        .collect()
}
