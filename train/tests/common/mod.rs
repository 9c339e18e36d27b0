//! Helpers shared by the training tests.
#![allow(dead_code)]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ternc_ir::Graph;

/// A graph from cfg text with random parameters (seed 1).
pub fn graph(cfg: &str) -> Graph {
    let mut g = ternc_frontend::parse_cfg_text("test.cfg".as_ref(), cfg).expect("cfg").graph;
    g.params = ternc_frontend::init::init(&g, 1);
    g
}

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

pub fn uniform(n: usize, lo: f32, hi: f32, seed: u64) -> Vec<f32> {
    let mut r = rng(seed);
    (0..n).map(|_| r.gen_range(lo..hi)).collect()
}

/// `|a − b| <= abs + rel·max(|a|, |b|)`.
pub fn close(a: f64, b: f64, abs: f64, rel: f64) -> bool {
    (a - b).abs() <= abs + rel * a.abs().max(b.abs())
}

/// `batch` images of `w`×`h` and two boxes each, from `seed`.
pub fn random_batch(batch: usize, w: usize, h: usize, seed: u64) -> (Vec<f32>, Vec<Vec<ternc_train::Truth>>) {
    let images = uniform(batch * 3 * w * h, 0.0, 1.0, seed);
    let mut r = rng(seed + 1);
    let truths = (0..batch)
        .map(|_| {
            (0..2)
                .map(|_| {
                    ternc_train::Truth::new(
                        0,
                        r.gen_range(0.1..0.9),
                        r.gen_range(0.1..0.9),
                        r.gen_range(0.1..0.5),
                        r.gen_range(0.1..0.5),
                    )
                })
                .collect()
        })
        .collect();
    (images, truths)
}
