//! Darknet's `random=1` multi-scale training (AlexeyAB's `train_detector`): every 10
//! iterations the network input is resized to a random multiple of `resize_step` around
//! the cfg's size, so one model learns to detect at several scales.
//!
//! Darknet's rule, reproduced here (`init` is the `[net]` width/height, `coef` is the
//! last detection head's `random=` value, `1` meaning 1.4):
//!
//! ```text
//! r      = uniform(min(1,coef), max(1,coef)), then r or 1/r with equal odds
//! dim    = round(r·init / step + 1) · step           (round half away from zero, f32)
//! if r < 1 and (dim_w > init_w or dim_h > init_h):  dim = init
//! at the first resize, and when the iteration is above max_batches − 100:
//!        dim = round(coef·init / step + 1) · step     (the largest size)
//! dim    = max(dim, step)
//! ```
//!
//! Width and height share one draw, so the aspect ratio holds. For `init = 416`,
//! `coef = 1.4`, `step = 32` the sizes run from 320 to 608.
//!
//! Differences from Darknet, each so that a run is a pure function of its seed and a
//! resumed run trains exactly as an uninterrupted one: the draw comes from a hash of
//! the seed and the iteration (not the process-wide `rand()`); resizes happen at
//! iterations that are multiples of 10 (Darknet counts from the start of each process,
//! so a resumed Darknet run resizes at other iterations); "the first resize" is the
//! one at iteration 0 only (Darknet also starts each resumed process at the largest
//! size, as a memory check); the size is not reset to `init` after a mAP evaluation.
//! `dynamic_minibatch` (a batch scaled with the size) is not reproduced.

use ternc_ir::{Graph, Op};

use crate::error::{Result, TrainError};
use crate::trainer::Trainer;

/// `[net] resize_step=` default.
pub const DEFAULT_RESIZE_STEP: usize = 32;
/// Iterations between two size draws.
pub const RESIZE_EVERY: usize = 10;
/// The scale range `random=1` stands for.
pub const DEFAULT_COEF: f32 = 1.4;

/// The multi-scale schedule of one training run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MultiScale {
    /// The cfg's input size, `(w, h)`.
    pub init: (usize, usize),
    /// Darknet's `rand_coef`: sizes range over `init/coef ..= init·coef`.
    pub coef: f32,
    /// `[net] resize_step=`: every size is a multiple of it (unless reset to `init`).
    pub resize_step: usize,
    /// The run's last iteration: the final 100 train at the largest size.
    pub max_batches: usize,
    pub seed: u64,
}

impl MultiScale {
    /// The schedule for a head's `random=` value; `None` when it is 0 (multi-scale
    /// off). `random=1` means Darknet's 1.4; other positive values are the coefficient.
    pub fn new(
        init: (usize, usize),
        random: f32,
        resize_step: usize,
        max_batches: usize,
        seed: u64,
    ) -> Result<Option<Self>> {
        if random == 0.0 {
            return Ok(None);
        }
        if !(random.is_finite() && random > 0.0) {
            return Err(TrainError::Config(format!("random={random}: expected 0, 1 or a positive scale")));
        }
        if resize_step == 0 {
            return Err(TrainError::Config("resize_step=0: expected a positive step".into()));
        }
        let coef = if random == 1.0 { DEFAULT_COEF } else { random };
        Ok(Some(MultiScale { init, coef, resize_step, max_batches, seed }))
    }

    /// The schedule for `graph`: its `[net]` size and the `random=` of its last
    /// `[yolo]`/`[region]` head (the one Darknet reads); `None` when that is 0.
    pub fn for_graph(
        graph: &Graph,
        resize_step: usize,
        max_batches: usize,
        seed: u64,
    ) -> Result<Option<Self>> {
        let random = graph
            .heads()
            .last()
            .map(|&h| match &graph.layer(h).op {
                Op::Yolo(y) => y.random,
                Op::Region(r) => r.random,
                _ => 0.0,
            })
            .unwrap_or(0.0);
        Self::new((graph.net.width, graph.net.height), random, resize_step, max_batches, seed)
    }

    /// Whether iteration `it` (0-based, the one about to run) starts a new size.
    pub fn resizes_at(it: usize) -> bool {
        it.is_multiple_of(RESIZE_EVERY)
    }

    /// The largest size (Darknet's `max_dim_w`, `max_dim_h`).
    pub fn max_size(&self) -> (usize, usize) {
        let d = |init| self.clamp(scaled(init, self.coef, self.resize_step));
        (d(self.init.0), d(self.init.1))
    }

    /// Every size [`MultiScale::size_at`] can return, sorted: the model must take them
    /// all, which a caller can check up front by resizing to each. Found by evaluating
    /// the rule at and around every scale where a side's rounding changes.
    pub fn sizes(&self) -> Vec<(usize, usize)> {
        let (lo, hi) = (self.coef.min(1.0 / self.coef), self.coef.max(1.0 / self.coef));
        let step = self.resize_step as f32;
        let mut rs = vec![lo, hi];
        for init in [self.init.0 as f32, self.init.1 as f32] {
            // a side changes where r·init/step + 1 crosses k + 1/2
            let (k0, k1) = ((lo * init / step).floor() as i64, (hi * init / step).ceil() as i64 + 1);
            for k in k0..=k1 {
                let b = (k as f32 - 0.5) * step / init;
                rs.extend([b * (1.0 - 1e-6), b, b * (1.0 + 1e-6)]);
            }
        }
        rs.retain(|r| (lo..=hi).contains(r));
        rs.sort_by(f32::total_cmp);
        let mids: Vec<f32> = rs.windows(2).map(|p| 0.5 * (p[0] + p[1])).collect();
        let mut out: Vec<(usize, usize)> =
            rs.into_iter().chain(mids).map(|r| size_for(self.init, r, self.resize_step)).collect();
        out.push(self.max_size());
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Darknet's `rand_scale(coef)` for the block of 10 iterations holding `it`: a
    /// scale in `[1, coef]`, or its inverse, from a hash of the seed and the block.
    pub fn random_val(&self, it: usize) -> f32 {
        let block = (it / RESIZE_EVERY) as u64;
        let h = splitmix64(splitmix64(self.seed ^ 0x6d75_6c74_6973_6361) ^ block);
        let u = (h >> 40) as f32 / (1u64 << 24) as f32;
        let (lo, hi) = if self.coef < 1.0 { (self.coef, 1.0) } else { (1.0, self.coef) };
        let scale = u * (hi - lo) + lo;
        if splitmix64(h) & 1 == 1 {
            scale
        } else {
            1.0 / scale
        }
    }

    /// The input size `(w, h)` for iteration `it` (0-based: the iteration about to
    /// run, `Trainer::iteration()` before its step). Constant over each block of 10
    /// iterations, so a run resumed anywhere trains at the sizes an uninterrupted one
    /// did.
    pub fn size_at(&self, it: usize) -> (usize, usize) {
        let start = it - it % RESIZE_EVERY;
        if start == 0 || start as i64 > self.max_batches as i64 - 100 {
            return self.max_size();
        }
        size_for(self.init, self.random_val(it), self.resize_step)
    }

    fn clamp(&self, d: i64) -> usize {
        d.max(self.resize_step as i64) as usize
    }
}

/// The size Darknet picks for the scale `r` (a `rand_scale` value): `init·r` moved to
/// a multiple of `step` (with Darknet's `+ 1`, so `r = 1` gives `init + step` for an
/// `init` that is a multiple of `step`); `init` itself when `r < 1` would grow it.
pub fn size_for(init: (usize, usize), r: f32, step: usize) -> (usize, usize) {
    let (mut w, mut h) = (scaled(init.0, r, step), scaled(init.1, r, step));
    if r < 1.0 && (w > init.0 as i64 || h > init.1 as i64) {
        (w, h) = (init.0 as i64, init.1 as i64);
    }
    let clamp = |d: i64| d.max(step as i64) as usize;
    (clamp(w), clamp(h))
}

/// `roundl(r·init / step + 1) · step` in Darknet's float arithmetic.
fn scaled(init: usize, r: f32, step: usize) -> i64 {
    let x = r * init as f32 / step as f32 + 1.0;
    x.round() as i64 * step as i64
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Trainer {
    /// Resizes the network input to `w`×`h` (Darknet's `resize_network` in training):
    /// the activation buffers follow; the parameters, momentum buffers, batchnorm
    /// state, weight transforms, `seen` and the schedule are unchanged. The next
    /// [`Trainer::step`] takes `batch` images of the new size. An error (a size some
    /// layer cannot take, e.g. not a multiple of the model's stride where a route or
    /// reorg needs one) changes nothing.
    pub fn resize(&mut self, w: usize, h: usize) -> Result<()> {
        self.net.resize(w, h)
    }

    /// The current input size `(w, h)` (the cfg's is in `cfg.width`/`cfg.height`).
    pub fn input_size(&self) -> (usize, usize) {
        (self.net.input_shape.w, self.net.input_shape.h)
    }
}
