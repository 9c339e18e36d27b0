//! Random Darknet weights for tests and benchmarks: He-normal weights and
//! batchnorm statistics near identity, deterministic per seed and per layer.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use ternc_ir::{Graph, Op, ParamKind, ParamStore};

/// One RNG per layer, so a layer's values do not depend on the layers before it.
fn layer_rng(seed: u64, layer: usize) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed ^ (layer as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// Fresh parameters for every layer of `graph`.
pub fn init(graph: &Graph, seed: u64) -> ParamStore {
    let mut store = ParamStore::default();
    for i in 0..graph.num_layers() {
        let layout = graph.param_layout(i);
        if layout.is_empty() {
            continue;
        }
        let node = graph.layer(i);
        let in_shape = graph.input_shapes(graph.layers[i])[0];
        let fan_in = match &node.op {
            Op::Conv(c) => c.fan_in(in_shape.c),
            _ => in_shape.numel(),
        };
        let he = Normal::new(0.0, (2.0 / fan_in.max(1) as f32).sqrt()).expect("finite std");
        let small = Normal::new(0.0f32, 0.05).expect("finite std");
        let mut rng = layer_rng(seed, i);
        let params = store.layer_mut(i);
        for (kind, n) in layout {
            let values: Vec<f32> = match (kind, &node.op) {
                (ParamKind::Weights, Op::Shortcut(_)) => vec![1.0; n],
                (ParamKind::Weights, _) => (0..n).map(|_| he.sample(&mut rng)).collect(),
                (ParamKind::Biases | ParamKind::RollingMean, _) => {
                    (0..n).map(|_| small.sample(&mut rng)).collect()
                }
                (ParamKind::Scales | ParamKind::RollingVariance, _) => {
                    (0..n).map(|_| rng.gen_range(0.8..1.2)).collect()
                }
            };
            *params.get_mut(kind) = values;
        }
    }
    store
}
