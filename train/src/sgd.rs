//! Darknet's optimiser: the learning-rate schedule (`get_current_rate`) and SGD with
//! momentum and weight decay (`update_convolutional_layer`).
//!
//! The `*_updates` arrays hold `−∂loss/∂p` summed over the `batch` images of an
//! iteration plus `momentum ×` the previous step's, so one update is
//! `u += −decay·batch·w;  w += (lr/batch)·u;  u *= momentum`
//! (decay on the weights only, not on biases or batchnorm scales).

use ternc_ir::{NetConfig, Policy};

use crate::conv::ConvLayer;
use crate::error::{Result, TrainError};

/// Darknet's `get_current_batch`: iterations done, from the images seen.
pub fn current_batch(seen: u64, batch: usize) -> usize {
    (seen / batch.max(1) as u64) as usize
}

/// Checks that `[net]` describes a schedule this engine runs.
pub fn check_schedule(net: &NetConfig) -> Result<()> {
    let bad = |why: &str| Err(TrainError::Config(why.to_string()));
    match &net.policy {
        Policy::Random => bad("policy=random is not supported for training"),
        Policy::Sgdr => bad("policy=sgdr is not supported for training"),
        Policy::Poly if net.max_batches == 0 => bad("policy=poly needs max_batches > 0"),
        Policy::Step { step, .. } if *step <= 0 => bad("policy=step needs step > 0"),
        _ => Ok(()),
    }
}

/// The learning rate for iteration `batch_num` (`get_current_rate`): `burn_in` ramps
/// up as `lr·(i/burn_in)^power`, then the policy applies.
pub fn learning_rate(net: &NetConfig, batch_num: usize) -> f32 {
    let lr = net.learning_rate;
    if batch_num < net.burn_in {
        return lr * (batch_num as f32 / net.burn_in as f32).powf(net.power);
    }
    let b = batch_num as i64;
    match &net.policy {
        Policy::Constant | Policy::Random | Policy::Sgdr => lr,
        Policy::Step { step, scale } => lr * scale.powi((b / (*step).max(1)) as i32),
        Policy::Steps { steps, scales } => {
            let mut rate = lr;
            for (s, k) in steps.iter().zip(scales) {
                if *s > b {
                    return rate;
                }
                rate *= k;
            }
            rate
        }
        Policy::Exp { gamma } => lr * gamma.powf(batch_num as f32),
        Policy::Poly => lr * (1.0 - batch_num as f32 / net.max_batches.max(1) as f32).powf(net.power),
        Policy::Sigmoid { gamma, step } => lr * (1.0 / (1.0 + (gamma * (b - step) as f32).exp())),
    }
}

/// One SGD step on a convolution (`update_convolutional_layer`); `batch` is the
/// images per iteration (`batch` as written in `[net]`).
pub fn update_conv(c: &mut ConvLayer, batch: usize, lr: f32, momentum: f32, decay: f32) {
    let b = batch as f32;
    let step = lr / b;
    for (w, u) in c.weights.iter_mut().zip(c.weight_updates.iter_mut()) {
        *u += -decay * b * *w;
        *w += step * *u;
        *u *= momentum;
    }
    update_conv_affine(c, batch, lr, momentum);
}

/// The part of [`update_conv`] for the per-channel affine parameters (biases and
/// batchnorm scales), which take no weight decay; alone, it is the update of a
/// convolution whose weights are frozen.
pub fn update_conv_affine(c: &mut ConvLayer, batch: usize, lr: f32, momentum: f32) {
    let step = lr / batch as f32;
    let plain = |p: &mut [f32], u: &mut [f32]| {
        for (p, u) in p.iter_mut().zip(u.iter_mut()) {
            *p += step * *u;
            *u *= momentum;
        }
    };
    plain(&mut c.biases, &mut c.bias_updates);
    if let Some(bn) = &mut c.bn {
        plain(&mut bn.scales, &mut bn.scale_updates);
    }
}
