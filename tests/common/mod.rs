//! Helpers shared by the tests that compile a model and run the generated code
//! (`llvm_aot`, `portable_targets`): tool checks, the fixed input, error measure and
//! the reference's boxes.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

use ternc_ir::{Graph, Op};
use ternc_runtime::detect::{decode_region, decode_yolo, nms, Detection};
use ternc_runtime::Tensor;

pub const TOL: f64 = 1e-4;
pub const NMS: f32 = 0.45;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success())
}

/// Skips (prints why and returns false) or, under `TERNC_REQUIRE_CROSS=1`, fails.
pub fn skip(what: &str, why: &str) -> bool {
    let msg = format!("{what}: {why}");
    if std::env::var("TERNC_REQUIRE_CROSS").is_ok_and(|v| v == "1") {
        panic!("{msg}; TERNC_REQUIRE_CROSS=1 forbids skipping");
    }
    eprintln!("SKIPPED {msg}");
    false
}

pub fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    if a.iter().any(|v| !v.is_finite()) {
        return f64::INFINITY;
    }
    let scale = b.iter().fold(0f64, |m, &v| m.max(v.abs() as f64)).max(1e-30);
    let diff = a.iter().zip(b).fold(0f64, |m, (&x, &y)| m.max((x as f64 - y as f64).abs()));
    diff / scale
}

pub fn input(g: &Graph) -> Tensor {
    let s = g.input_shape();
    let mut state = 0x1234_5678u32;
    let data = (0..s.numel())
        .map(|_| {
            state = state.wrapping_mul(1664525).wrapping_add(1013904223);
            (state >> 8) as f32 / (1 << 24) as f32
        })
        .collect();
    Tensor::from_vec(1, s, data)
}

/// The reference's boxes, relative to the network input, after NMS.
pub fn reference_boxes(g: &Graph, heads: &[(usize, Tensor)], thresh: f32) -> Vec<Detection> {
    let [_, nh, nw] = g.input_shape().to_array();
    let mut dets = Vec::new();
    for (l, t) in heads {
        let [c, h, w] = g.layer(*l).shape.to_array();
        dets.extend(match &g.layer(*l).op {
            Op::Yolo(y) => decode_yolo(&t.data, c, h, w, y, nw, nh, nw, nh, false, thresh),
            Op::Region(r) => decode_region(&t.data, c, h, w, r, nw, nh, nw, nh, false, thresh),
            _ => Vec::new(),
        });
    }
    nms(&mut dets, NMS);
    for d in &mut dets {
        d.bbox = [d.bbox[0] / nw as f32, d.bbox[1] / nh as f32, d.bbox[2] / nw as f32, d.bbox[3] / nh as f32];
    }
    dets
}
