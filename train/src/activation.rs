//! Activations in training: forward keeps the pre-activation, backward multiplies the
//! delta by Darknet's gradient (`activations.h`, `gradient_array_mish`, ...).

use ternc_ir::Activation;

/// Activations the training engine can differentiate.
pub fn supported(a: Activation) -> bool {
    use Activation::*;
    matches!(
        a,
        Linear | Logistic | Relu | Relu6 | Leaky | Tanh | Elu | Swish | Mish | HardMish | Relie | Ramp
    )
}

fn logistic(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// The value, as the reference interpreter computes it (one formula for both).
#[inline]
pub fn apply(a: Activation, x: f32) -> f32 {
    match a {
        Activation::Linear => x,
        Activation::Leaky => {
            if x > 0.0 {
                x
            } else {
                0.1 * x
            }
        }
        _ => a.apply(x),
    }
}

/// `d act / d x` at pre-activation `x`. Darknet evaluates most gradients from the output;
/// these are the same functions written in the input (they agree everywhere except on
/// the kinks, where both pick the one-sided value Darknet does).
#[inline]
pub fn gradient(a: Activation, x: f32) -> f32 {
    use Activation::*;
    match a {
        Linear => 1.0,
        Logistic => {
            let y = logistic(x);
            (1.0 - y) * y
        }
        Relu => (x > 0.0) as u8 as f32,
        Relu6 => (x > 0.0 && x < 6.0) as u8 as f32,
        Leaky => {
            if x > 0.0 {
                1.0
            } else {
                0.1
            }
        }
        Relie => {
            if x > 0.0 {
                1.0
            } else {
                0.01
            }
        }
        Ramp => (x > 0.0) as u8 as f32 + 0.1,
        Tanh => {
            let y = a.apply(x);
            1.0 - y * y
        }
        Elu => {
            if x >= 0.0 {
                1.0
            } else {
                x.exp()
            }
        }
        // gradient_array_swish: swish + sigmoid·(1 − swish)
        Swish => {
            let s = logistic(x);
            let y = x * s;
            y + s * (1.0 - y)
        }
        // gradient_array_mish, with Darknet's softplus threshold of 20
        Mish => {
            let sp = if x > 20.0 {
                x
            } else if x < -20.0 {
                x.exp()
            } else {
                x.exp().ln_1p()
            };
            let grad_sp = 1.0 - (-sp).exp();
            let tsp = sp.tanh();
            let grad_tsp = (1.0 - tsp * tsp) * grad_sp;
            x * grad_tsp + tsp
        }
        HardMish => {
            if x > 0.0 {
                1.0
            } else if x > -2.0 {
                x + 1.0
            } else {
                0.0
            }
        }
        _ => 1.0,
    }
}

/// `delta *= act'(pre)` elementwise.
pub fn backward(a: Activation, pre: &[f32], delta: &mut [f32]) {
    match a {
        Activation::Linear => {}
        Activation::Leaky => delta.iter_mut().zip(pre).for_each(|(d, &x)| {
            if x <= 0.0 {
                *d *= 0.1
            }
        }),
        _ => delta.iter_mut().zip(pre).for_each(|(d, &x)| *d *= gradient(a, x)),
    }
}
