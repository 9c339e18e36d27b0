//! QAT correction (QC, seed 003): after QAT, the ternary codes are frozen and one epoch
//! trains only the per-channel scales and biases that follow each convolution, which
//! absorbs the error the last oscillating weights left. The batchnorm statistics are
//! re-estimated at the same time: the rolling averages of training lag the frozen
//! network, so they are replaced by the plain mean of the epoch's batch statistics.

use crate::network::{Kind, Network};

/// The batchnorm batch statistics of every convolution, averaged over the mini-batches
/// observed.
#[derive(Debug, Clone, Default)]
pub struct BatchStatsAverage {
    /// Per batchnorm convolution in layer order: sums of means and variances.
    sums: Vec<(Vec<f64>, Vec<f64>)>,
    count: usize,
}

impl BatchStatsAverage {
    pub fn new() -> Self {
        Self::default()
    }

    /// Mini-batches observed.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Adds the statistics of the last training forward.
    pub fn observe(&mut self, net: &Network) {
        let bns = net.layers.iter().filter_map(|l| match &l.kind {
            Kind::Conv(c) => c.bn.as_ref(),
            _ => None,
        });
        for (i, bn) in bns.enumerate() {
            if self.sums.len() <= i {
                self.sums.push((vec![0.0; bn.mean.len()], vec![0.0; bn.variance.len()]));
            }
            let (m, v) = &mut self.sums[i];
            m.iter_mut().zip(&bn.mean).for_each(|(s, &x)| *s += x as f64);
            v.iter_mut().zip(&bn.variance).for_each(|(s, &x)| *s += x as f64);
        }
        self.count += 1;
    }

    /// Sets every rolling mean and variance to the averages (nothing before the first
    /// observation).
    pub fn write(&self, net: &mut Network) {
        if self.count == 0 {
            return;
        }
        let n = self.count as f64;
        let bns = net.layers.iter_mut().filter_map(|l| match &mut l.kind {
            Kind::Conv(c) => c.bn.as_mut(),
            _ => None,
        });
        for (bn, (m, v)) in bns.zip(&self.sums) {
            bn.rolling_mean.iter_mut().zip(m).for_each(|(r, s)| *r = (s / n) as f32);
            bn.rolling_variance.iter_mut().zip(v).for_each(|(r, s)| *r = (s / n) as f32);
        }
    }
}
