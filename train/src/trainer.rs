//! The training loop's unit: one iteration of `batch` images, split into
//! `subdivisions` mini-batches that accumulate updates, then one SGD update
//! (Darknet's `train_network`).

use ternc_ir::{Graph, NetConfig};

use crate::error::{Result, TrainError};
use crate::loss::{check_truths, HeadStats, Truth};
use crate::network::{Kind, Network};
use crate::sgd;

/// What one [`Trainer::step`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct StepStats {
    /// Darknet's average loss: the heads' costs summed over the iteration, per image.
    pub loss: f32,
    /// The learning rate of this iteration's update.
    pub lr: f32,
    /// Iterations done, this one included.
    pub iteration: usize,
    /// Per head, summed over the mini-batches.
    pub heads: Vec<HeadStats>,
}

pub struct Trainer {
    pub net: Network,
    pub cfg: NetConfig,
    /// Images trained on (the `.weights` header's `seen`).
    pub seen: u64,
    pool: rayon::ThreadPool,
    /// Convolution weights are not updated (QC trains only scales and biases).
    weights_frozen: bool,
}

impl Trainer {
    /// A trainer for `graph` (parameters loaded) with `[net]`'s batch, subdivisions and
    /// schedule, on `threads` threads (0: rayon's default).
    pub fn new(graph: &Graph, threads: usize) -> Result<Self> {
        let cfg = graph.net.clone();
        if cfg.subdivisions == 0 || !cfg.batch.is_multiple_of(cfg.subdivisions) {
            return Err(TrainError::Batch { batch: cfg.batch, subdivisions: cfg.subdivisions });
        }
        sgd::check_schedule(&cfg)?;
        let mini = cfg.batch / cfg.subdivisions;
        let net = Network::new(graph, mini)?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| TrainError::Config(format!("cannot start {threads} threads: {e}")))?;
        Ok(Trainer { net, seen: graph.params.seen, cfg, pool, weights_frozen: false })
    }

    /// Images per mini-batch (`batch / subdivisions`).
    pub fn mini_batch(&self) -> usize {
        self.net.batch()
    }

    /// Iterations done so far (Darknet's `get_current_batch`).
    pub fn iteration(&self) -> usize {
        sgd::current_batch(self.seen, self.cfg.batch)
    }

    /// The learning rate the next update will use.
    pub fn next_learning_rate(&self) -> f32 {
        sgd::learning_rate(&self.cfg, sgd::current_batch(self.seen + self.cfg.batch as u64, self.cfg.batch))
    }

    /// One iteration: `images` holds `batch` images `[c][h][w]` (float, 0..1) and
    /// `truths` their boxes. Runs the `subdivisions` mini-batches, then updates.
    pub fn step(&mut self, images: &[f32], truths: &[Vec<Truth>]) -> Result<StepStats> {
        self.step_observed(images, truths, |_| {})
    }

    /// [`Trainer::step`], calling `observe` after each mini-batch's backward pass (e.g.
    /// to collect batchnorm statistics).
    pub fn step_observed(
        &mut self,
        images: &[f32],
        truths: &[Vec<Truth>],
        mut observe: impl FnMut(&Network),
    ) -> Result<StepStats> {
        let numel = self.net.input_shape.numel();
        let (batch, mini) = (self.cfg.batch, self.mini_batch());
        if images.len() != batch * numel {
            return Err(TrainError::InputSize {
                got: images.len(),
                want: batch * numel,
                n: batch,
                shape: self.net.input_shape,
            });
        }
        if truths.len() != batch {
            return Err(TrainError::TruthCount { got: truths.len(), want: batch });
        }
        check_truths(truths)?;
        let mut total = 0.0f64;
        let mut heads: Vec<HeadStats> = Vec::new();
        for s in 0..self.cfg.subdivisions {
            let range = s * mini..(s + 1) * mini;
            let got =
                self.train_minibatch(&images[range.start * numel..range.end * numel], &truths[range])?;
            observe(&self.net);
            total += got.iter().map(|h| h.cost as f64).sum::<f64>();
            if heads.is_empty() {
                heads = got;
            } else {
                for (a, b) in heads.iter_mut().zip(got) {
                    a.cost += b.cost;
                    a.count += b.count;
                    a.sums.count += b.sums.count;
                    a.sums.tot_iou += b.sums.tot_iou;
                }
            }
        }
        for h in &mut heads {
            h.avg_iou = if h.count > 0 { h.sums.tot_iou / h.count as f32 } else { 0.0 };
        }
        let lr = self.update();
        Ok(StepStats { loss: (total / batch as f64) as f32, lr, iteration: self.iteration(), heads })
    }

    /// Forward, losses and backward of one mini-batch (`mini_batch()` images); the
    /// updates accumulate until [`Trainer::update`].
    pub fn train_minibatch(&mut self, images: &[f32], truths: &[Vec<Truth>]) -> Result<Vec<HeadStats>> {
        if truths.len() != self.mini_batch() {
            return Err(TrainError::TruthCount { got: truths.len(), want: self.mini_batch() });
        }
        check_truths(truths)?;
        self.seen += self.mini_batch() as u64;
        let (net, seen) = (&mut self.net, self.seen);
        self.pool.install(|| {
            net.forward(images, true)?;
            let heads = net.head_losses(truths, seen)?;
            net.backward();
            Ok(heads)
        })
    }

    /// The SGD update at the current iteration's learning rate; returns that rate.
    pub fn update(&mut self) -> f32 {
        let lr = sgd::learning_rate(&self.cfg, self.iteration());
        let (b, m, d) = (self.cfg.batch, self.cfg.momentum, self.cfg.decay);
        for l in &mut self.net.layers {
            if let Kind::Conv(c) = &mut l.kind {
                if self.weights_frozen {
                    c.weight_updates.fill(0.0);
                    sgd::update_conv_affine(c, b, lr, m);
                } else {
                    sgd::update_conv(c, b, lr, m, d);
                }
            }
        }
        lr
    }

    /// Freezes (or thaws) every convolution's weights: updates then change only biases
    /// and batchnorm scales, and the ternary codes stay as they are.
    pub fn set_weights_frozen(&mut self, frozen: bool) {
        self.weights_frozen = frozen;
    }

    /// The optimiser state a `.weights` file does not hold: the momentum buffers
    /// (Darknet's `weight_updates`, `bias_updates` and batchnorm `scale_updates`, which
    /// carry `momentum ×` the last step between updates), per convolution in layer
    /// order, flattened. With the parameters and `seen` it is everything a resumed run
    /// needs to continue exactly as an uninterrupted one.
    pub fn momentum(&self) -> Vec<f32> {
        let mut out = Vec::new();
        for l in &self.net.layers {
            if let Kind::Conv(c) = &l.kind {
                out.extend_from_slice(&c.weight_updates);
                out.extend_from_slice(&c.bias_updates);
                if let Some(bn) = &c.bn {
                    out.extend_from_slice(&bn.scale_updates);
                }
            }
        }
        out
    }

    /// Restores what [`Trainer::momentum`] returned (for the same model); a buffer of
    /// another length is an error and changes nothing.
    pub fn set_momentum(&mut self, values: &[f32]) -> Result<()> {
        let want = self.momentum_len();
        if values.len() != want {
            return Err(TrainError::Config(format!(
                "the momentum state holds {} values, this model needs {want}",
                values.len()
            )));
        }
        let mut rest = values;
        let mut take = |dst: &mut Vec<f32>| {
            let (head, tail) = rest.split_at(dst.len());
            dst.copy_from_slice(head);
            rest = tail;
        };
        for l in &mut self.net.layers {
            if let Kind::Conv(c) = &mut l.kind {
                take(&mut c.weight_updates);
                take(&mut c.bias_updates);
                if let Some(bn) = &mut c.bn {
                    take(&mut bn.scale_updates);
                }
            }
        }
        Ok(())
    }

    fn momentum_len(&self) -> usize {
        self.net
            .layers
            .iter()
            .map(|l| match &l.kind {
                Kind::Conv(c) => {
                    c.weight_updates.len()
                        + c.bias_updates.len()
                        + c.bn.as_ref().map_or(0, |b| b.scale_updates.len())
                }
                _ => 0,
            })
            .sum()
    }

    /// The trained parameters into `graph.params` (and `seen`), ready to be written as
    /// a `.weights` file.
    pub fn write_params(&self, graph: &mut Graph) {
        self.net.write_params(&mut graph.params);
        graph.params.seen = self.seen;
    }
}
