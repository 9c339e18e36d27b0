//! Oscillation of ternary weights (seed 003): with a straight-through estimator the
//! latent weights near a threshold keep crossing it, so their codes flip back and forth
//! instead of settling. [`FlipTracker`] measures it as the fraction of ternary weights
//! whose code changed at least once in the last `window` iterations.

use crate::network::{Kind, Network};

/// The ternary code of a transformed weight (`±α` or 0).
fn code(w: f32) -> i8 {
    if w > 0.0 {
        1
    } else if w < 0.0 {
        -1
    } else {
        0
    }
}

pub struct FlipTracker {
    layers: Vec<usize>,
    window: usize,
    /// Codes seen at the last observation, all tracked layers concatenated.
    prev: Vec<i8>,
    /// Iteration of each weight's last flip (`u64::MAX`: never).
    last_flip: Vec<u64>,
}

impl FlipTracker {
    /// Tracks the convolutions in `layers` that carry a weight transform (the ternary
    /// ones); the others are ignored.
    pub fn new(net: &Network, layers: &[usize], window: usize) -> Self {
        let layers: Vec<usize> =
            layers.iter().copied().filter(|&l| net.conv(l).is_some_and(|c| c.transform.is_some())).collect();
        FlipTracker { layers, window: window.max(1), prev: Vec::new(), last_flip: Vec::new() }
    }

    /// Weights tracked.
    pub fn len(&self) -> usize {
        self.last_flip.len()
    }

    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// Records the codes the last forward pass used (call after each training step
    /// with its iteration number) and returns the fraction of tracked weights that
    /// flipped in the last `window` iterations, this one included (0 with no
    /// ternary layer).
    pub fn observe(&mut self, net: &Network, iteration: u64) -> f64 {
        let first = self.prev.is_empty();
        let mut i = 0;
        for &l in &self.layers {
            let Some(c) = net.conv(l) else { continue };
            for &w in c.forward_weights() {
                let k = code(w);
                if first {
                    self.prev.push(k);
                    self.last_flip.push(u64::MAX);
                } else if self.prev[i] != k {
                    self.prev[i] = k;
                    self.last_flip[i] = iteration;
                }
                i += 1;
            }
        }
        self.fraction(iteration)
    }

    /// The tracker's history (codes and last flips), for a checkpoint.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 * self.prev.len());
        for (&k, &t) in self.prev.iter().zip(&self.last_flip) {
            out.push(k as u8);
            out.extend_from_slice(&t.to_le_bytes());
        }
        out
    }

    /// Restores what [`FlipTracker::to_bytes`] wrote for the same layers; `false` (and
    /// nothing changed) if `bytes` cannot be that.
    pub fn restore(&mut self, net: &Network, bytes: &[u8]) -> bool {
        let n: usize = self.layers.iter().filter_map(|&l| net.conv(l)).map(|c| c.weights.len()).sum();
        if bytes.len() != 9 * n {
            return false;
        }
        self.prev = bytes.chunks_exact(9).map(|c| c[0] as i8).collect();
        self.last_flip =
            bytes.chunks_exact(9).map(|c| u64::from_le_bytes(c[1..9].try_into().expect("8 bytes"))).collect();
        true
    }

    /// The fraction of weights whose code changed in `(iteration − window, iteration]`.
    pub fn fraction(&self, iteration: u64) -> f64 {
        if self.last_flip.is_empty() {
            return 0.0;
        }
        let since = iteration.saturating_sub(self.window as u64);
        let n = self.last_flip.iter().filter(|&&t| t != u64::MAX && t > since).count();
        n as f64 / self.last_flip.len() as f64
    }
}

/// The ternary codes of the convolutions in `layers` as the last forward used them,
/// concatenated: to check that something left them unchanged.
pub fn codes(net: &Network, layers: &[usize]) -> Vec<i8> {
    layers
        .iter()
        .filter_map(|&l| match &net.layers.get(l)?.kind {
            Kind::Conv(c) if c.transform.is_some() => Some(c.forward_weights().iter().map(|&w| code(w))),
            _ => None,
        })
        .flatten()
        .collect()
}
