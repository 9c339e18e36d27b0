//! `.weights` round trips and Darknet's header variants.

use std::path::Path;

use ternc_frontend::{init::init, parse_cfg_text, weights};
use ternc_ir::{Graph, ParamKind};

const CFG: &str = "[net]\nwidth=8\nheight=8\nchannels=3\n\n[convolutional]\nbatch_normalize=1\nfilters=4\nsize=3\npad=1\nactivation=leaky\n\n[maxpool]\nsize=2\nstride=2\n\n[convolutional]\nfilters=2\nsize=1\n\n[connected]\noutput=3\nactivation=linear\n";

fn graph() -> Graph {
    parse_cfg_text(Path::new("w.cfg"), CFG).unwrap().graph
}

#[test]
fn layout_follows_darknet() {
    let g = graph();
    use ParamKind::*;
    assert_eq!(
        g.param_layout(0),
        [(Biases, 4), (Scales, 4), (RollingMean, 4), (RollingVariance, 4), (Weights, 108)]
    );
    assert!(g.param_layout(1).is_empty());
    assert_eq!(g.param_layout(2), [(Biases, 2), (Weights, 8)]);
    // connected: biases, weights, then batchnorm arrays (none here)
    assert_eq!(g.param_layout(3), [(Biases, 3), (Weights, 3 * 32)]);
    assert_eq!(weights::expected_size(&g), 20 + 4 * (16 + 108 + 10 + 99));
}

#[test]
fn round_trip_is_exact() {
    let mut g = graph();
    g.params = init(&g, 7);
    g.params.seen = 123_456_789_012;
    let bytes = weights::to_bytes(&g).unwrap();
    assert_eq!(bytes.len() as u64, weights::expected_size(&g));
    assert_eq!(&bytes[..12], &[0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
    let back = weights::read_bytes(Path::new("w.weights"), &bytes, &g, None).unwrap();
    assert_eq!(back, g.params);
    // the first float after the header is layer 0's first bias
    assert_eq!(f32::from_le_bytes(bytes[20..24].try_into().unwrap()), g.params.layer(0).unwrap().biases[0]);
}

#[test]
fn init_is_deterministic_and_sensible() {
    let g = graph();
    assert_eq!(init(&g, 1), init(&g, 1));
    assert_ne!(init(&g, 1), init(&g, 2));
    let p = init(&g, 1);
    let l0 = p.layer(0).unwrap();
    let bn = l0.bn.as_ref().unwrap();
    assert!(bn.variance.iter().all(|&v| (0.8..1.2).contains(&v)));
    // He-normal: std sqrt(2/27) ≈ 0.27 for 3·3·3 inputs
    let std = (l0.weights.iter().map(|w| w * w).sum::<f32>() / l0.weights.len() as f32).sqrt();
    assert!((0.15..0.4).contains(&std), "{std}");
}

#[test]
fn old_header_has_32bit_seen_and_transposed_connected() {
    let mut g = graph();
    g.params = init(&g, 3);
    let new = weights::to_bytes(&g).unwrap();
    // version 0.1: seen is a uint32, so the header is 16 bytes
    let mut old = Vec::new();
    for v in [0i32, 1, 0] {
        old.extend_from_slice(&v.to_le_bytes());
    }
    old.extend_from_slice(&77u32.to_le_bytes());
    old.extend_from_slice(&new[20..]);
    let back = weights::read_bytes(Path::new("old.weights"), &old, &g, None).unwrap();
    assert_eq!(back.seen, 77);
    assert_eq!(back.layers, g.params.layers);

    // major > 1000: connected weights are stored inputs x outputs
    let mut t = new.clone();
    t[0..4].copy_from_slice(&1001i32.to_le_bytes());
    let w = &g.params.layer(3).unwrap().weights; // 3 outputs x 32 inputs
    let wt_at = t.len() - 4 * 96;
    for i in 0..32 {
        for o in 0..3 {
            let at = wt_at + 4 * (i * 3 + o);
            t[at..at + 4].copy_from_slice(&w[o * 32 + i].to_le_bytes());
        }
    }
    let back = weights::read_bytes(Path::new("t.weights"), &t, &g, None).unwrap();
    assert_eq!(&back.layer(3).unwrap().weights, w);
}

#[test]
fn prefix_loads_the_first_layers_only() {
    let mut g = graph();
    g.params = init(&g, 5);
    let bytes = weights::to_bytes(&g).unwrap();
    let layer0 = 20 + 4 * (16 + 108);
    let back = weights::read_bytes(Path::new("p.weights"), &bytes[..layer0], &g, Some(1)).unwrap();
    assert_eq!(back.layers.len(), 1);
    assert_eq!(back.layer(0), g.params.layer(0));
    // a prefix ignores what follows; without one, the same bytes are an error
    assert!(weights::read_bytes(Path::new("p.weights"), &bytes, &g, Some(2)).is_ok());
    let e = weights::read_bytes(Path::new("p.weights"), &bytes[..layer0], &g, None).unwrap_err();
    assert_eq!(e.loc, ternc_ir::Loc::Offset(layer0 as u64));
    assert!(e.to_string().contains("layer 2 (convolutional, cfg line 17) biases"), "{e}");
    let e = weights::read_bytes(Path::new("p.weights"), &bytes, &g, Some(9)).unwrap_err();
    assert!(e.to_string().contains("--weights-prefix 9 is more than the 4 layers"), "{e}");
}
