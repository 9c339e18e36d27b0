//! Activations over whole feature maps, including Darknet's channel-wise ones.

use rayon::prelude::*;
use ternc_ir::Activation;

const PAR_CHUNK: usize = 1 << 14;

/// Applies `act` in place to one image `[c, plane]`.
pub fn activate(x: &mut [f32], act: Activation, c: usize, plane: usize) {
    match act {
        Activation::Linear => {}
        Activation::NormChan => normalize_channels(x, c, plane),
        Activation::NormChanSoftmax | Activation::NormChanSoftmaxMaxval => {
            softmax_channels(x, c, plane, act == Activation::NormChanSoftmaxMaxval)
        }
        _ => x.par_chunks_mut(PAR_CHUNK).for_each(|chunk| activate_row(chunk, act)),
    }
}

/// An elementwise activation over a slice, with the common ones as tight loops the
/// compiler vectorises.
pub fn activate_row(x: &mut [f32], act: Activation) {
    match act {
        Activation::Linear => {}
        Activation::Leaky => x.iter_mut().for_each(|v| *v = if *v > 0.0 { *v } else { 0.1 * *v }),
        Activation::Relu => x.iter_mut().for_each(|v| *v = v.max(0.0)),
        _ => x.iter_mut().for_each(|v| *v = act.apply(*v)),
    }
}

/// Darknet's `normalize_channels`: positive parts divided by their sum (+1e-4) per pixel.
fn normalize_channels(x: &mut [f32], c: usize, plane: usize) {
    for p in 0..plane {
        let mut sum = 0.0001f32;
        for k in 0..c {
            sum += x[k * plane + p].max(0.0);
        }
        for k in 0..c {
            let v = x[k * plane + p];
            x[k * plane + p] = if v > 0.0 { v / sum } else { 0.0 };
        }
    }
}

/// Darknet's `normalize_channels_softmax` (optionally subtracting the max first).
fn softmax_channels(x: &mut [f32], c: usize, plane: usize, use_max: bool) {
    for p in 0..plane {
        let max =
            if use_max { (0..c).map(|k| x[k * plane + p]).fold(f32::NEG_INFINITY, f32::max) } else { 0.0 };
        let mut sum = 0.0001f32;
        for k in 0..c {
            sum += (x[k * plane + p] - max).exp();
        }
        for k in 0..c {
            let v = x[k * plane + p];
            x[k * plane + p] = (v - max).exp() / sum;
        }
    }
}
