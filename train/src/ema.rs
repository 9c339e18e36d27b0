//! Exponential moving average of the parameters (seed 003's remedy against weight
//! oscillation in straight-through QAT): the averaged latent weights sit away from the
//! ternarization thresholds the live ones keep crossing, so the codes they give are
//! the ones training settled on.
//!
//! The average covers every convolution's latent weights, biases, batchnorm scales and
//! rolling statistics, in the order of [`params`]. As in common EMA
//! implementations, the decay warms up as `min(decay, (1 + n)/(10 + n))` after `n`
//! updates, so a short stage is not dominated by its starting point.

use ternc_ir::ParamStore;

use crate::network::{Kind, Network};

#[derive(Debug, Clone, PartialEq)]
pub struct Ema {
    decay: f32,
    updates: u64,
    shadow: Vec<f32>,
}

/// The decay applied at update `n` (0-based) for a target decay `decay`.
pub fn warmed_decay(decay: f32, n: u64) -> f32 {
    decay.min((1.0 + n as f32) / (10.0 + n as f32))
}

/// Calls `f` on every averaged parameter array: per convolution in layer order, its
/// weights, biases, and with batchnorm its scales, rolling means and variances.
pub fn for_each_param(net: &Network, mut f: impl FnMut(&[f32])) {
    for l in &net.layers {
        if let Kind::Conv(c) = &l.kind {
            f(&c.weights);
            f(&c.biases);
            if let Some(bn) = &c.bn {
                f(&bn.scales);
                f(&bn.rolling_mean);
                f(&bn.rolling_variance);
            }
        }
    }
}

/// The parameters [`Ema`] averages, flattened.
pub fn params(net: &Network) -> Vec<f32> {
    let mut out = Vec::with_capacity(params_len(net));
    for_each_param(net, |p| out.extend_from_slice(p));
    out
}

fn params_len(net: &Network) -> usize {
    let mut n = 0;
    for_each_param(net, |p| n += p.len());
    n
}

impl Ema {
    /// Starts the average at the network's current parameters.
    pub fn new(net: &Network, decay: f32) -> Self {
        Ema { decay, updates: 0, shadow: params(net) }
    }

    /// Restores a saved average (`values` from [`Ema::values`], `updates` from
    /// [`Ema::updates`]); `None` if its length does not fit this network.
    pub fn restore(net: &Network, decay: f32, updates: u64, values: Vec<f32>) -> Option<Self> {
        (values.len() == params_len(net)).then_some(Ema { decay, updates, shadow: values })
    }

    pub fn decay(&self) -> f32 {
        self.decay
    }

    /// Updates done so far.
    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// The averaged parameters, in [`params`] order.
    pub fn values(&self) -> &[f32] {
        &self.shadow
    }

    /// `s ← d·s + (1 − d)·p` with the warmed-up decay; call after each optimiser step.
    pub fn update(&mut self, net: &Network) {
        let d = warmed_decay(self.decay, self.updates);
        let mut i = 0;
        for_each_param(net, |p| {
            for (s, &v) in self.shadow[i..i + p.len()].iter_mut().zip(p) {
                *s = d * *s + (1.0 - d) * v;
            }
            i += p.len();
        });
        self.updates += 1;
    }

    /// Writes the network's parameters into `store` with the averaged values in place
    /// of the live ones: a `.weights`-ready model of the average.
    pub fn write_params(&self, net: &Network, store: &mut ParamStore) {
        let mut rest = self.shadow.as_slice();
        let mut take = |dst: &mut Vec<f32>, n: usize| {
            let (head, tail) = rest.split_at(n);
            dst.clear();
            dst.extend_from_slice(head);
            rest = tail;
        };
        for l in &net.layers {
            if let Kind::Conv(c) = &l.kind {
                let p = store.layer_mut(l.index);
                take(&mut p.weights, c.weights.len());
                take(&mut p.biases, c.biases.len());
                if let Some(bn) = &c.bn {
                    let b = p.bn.get_or_insert_with(Default::default);
                    take(&mut b.scales, bn.scales.len());
                    take(&mut b.mean, bn.rolling_mean.len());
                    take(&mut b.variance, bn.rolling_variance.len());
                }
            }
        }
    }
}
