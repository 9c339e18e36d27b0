//! W2A8 semantics (`ternc_runtime::quant`): rounding, calibration, the reference's
//! fake-quantized ternary layers against an integer computation by hand, and how
//! close the W2A8 heads stay to the float path on yolov3-tiny.

use std::path::{Path, PathBuf};

use ternc_frontend::{init::init, parse_cfg_text};
use ternc_ir::Graph;
use ternc_passes::spec::Spec;
use ternc_passes::ternarize::{self, Scope};
use ternc_runtime::quant::{self, ActScales};
use ternc_runtime::{Reference, Tensor};

fn ternarized(mut g: Graph) -> Graph {
    let sel = Spec::parse("all").unwrap().select(&g).unwrap();
    ternarize::run(&mut g, &sel, Scope::Channel, 0.7).unwrap();
    g
}

#[test]
fn quantization_rounds_ties_to_even_and_saturates() {
    let inv = 2.0; // step 0.5
    assert_eq!(quant::quantize(0.26, inv), 1);
    assert_eq!(quant::quantize(0.25, inv), 0); // 0.5 -> 0 (even)
    assert_eq!(quant::quantize(0.75, inv), 2); // 1.5 -> 2
    assert_eq!(quant::quantize(-0.75, inv), -2);
    assert_eq!(quant::quantize(100.0, inv), 127);
    assert_eq!(quant::quantize(-100.0, inv), -127);
    let mut x = vec![0.0, 0.26, -3.1, 1e9];
    quant::fake_quantize(&mut x, 0.5);
    assert_eq!(x, vec![0.0, 0.5, -3.0, 63.5]);
}

/// One ternary 3x3 convolution (no batchnorm, linear): the reference with act
/// scales equals `α_o·s·Σ code·q + b_o` computed with integers here.
#[test]
fn reference_w2a8_equals_integer_sums() {
    let cfg = "[net]\nwidth=7\nheight=6\nchannels=3\n\n\
               [convolutional]\nfilters=4\nsize=3\nstride=1\npad=1\nactivation=linear\n";
    let mut g = parse_cfg_text(Path::new("q.cfg"), cfg).unwrap().graph;
    g.params = init(&g, 4);
    let g = ternarized(g);
    let x = quant::random_inputs(&g, 1, 9).remove(0);
    let scales = quant::calibrate(&g, std::slice::from_ref(&x), 1).unwrap();
    let step = scales.steps[0].expect("the ternary conv is quantized");
    let max = x.data.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert_eq!(step, max / 127.0);
    let got = Reference::new(&g, 1).unwrap().with_act_scales(scales).run(&x, |_| {}).unwrap().remove(0).1;

    let p = g.params.layer(0).unwrap();
    let t = p.ternary.as_ref().unwrap();
    let q: Vec<i32> = x.data.iter().map(|&v| quant::quantize(v, 1.0 / step) as i32).collect();
    let (h, w) = (6i64, 7i64);
    for o in 0..4 {
        for y in 0..h {
            for xx in 0..w {
                let mut acc = 0i32;
                for c in 0..3 {
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let (iy, ix) = (y + ky - 1, xx + kx - 1);
                            if iy < 0 || ix < 0 || iy >= h || ix >= w {
                                continue;
                            }
                            let code = t.codes[((o * 3 + c) * 3 + ky as usize) * 3 + kx as usize] as i32;
                            acc += code * q[(c as i64 * h * w + iy * w + ix) as usize];
                        }
                    }
                }
                let want = t.scales[o] * step * acc as f32 + p.biases[o];
                let v = got.data[(o as i64 * h * w + y * w + xx) as usize];
                assert!((v - want).abs() <= 1e-5 * want.abs().max(1.0), "o{o} y{y} x{xx}: {v} vs {want}");
            }
        }
    }
}

#[test]
fn float_layers_are_not_quantized() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/darknet/yolov3-tiny.cfg");
    let text = ternc_frontend::with_input_size(&std::fs::read_to_string(path).unwrap(), 64, 64);
    let mut g = parse_cfg_text(Path::new("y.cfg"), &text).unwrap().graph;
    g.params = init(&g, 1);
    // only layers 2..=8 ternary
    let sel = Spec::parse("2-8").unwrap().select(&g).unwrap();
    ternarize::run(&mut g, &sel, Scope::Layer, 0.7).unwrap();
    let scales = quant::calibrate(&g, &quant::random_inputs(&g, 2, 1), 1).unwrap();
    let q: Vec<usize> = scales.quantized().map(|(i, _)| i).collect();
    assert_eq!(q, (2..=8).filter(|&i| quant::is_ternary_layer(&g, i)).collect::<Vec<_>>());
    assert!(q.contains(&2) && !q.contains(&0) && !q.contains(&13));
    assert!(scales.quantized().all(|(_, s)| s > 0.0 && s.is_finite()));
}

/// The W2A8 heads of a fully ternary yolov3-tiny stay within a few percent of the
/// float (W2A32) heads, calibrated on other random inputs than the one compared.
#[test]
fn yolov3_tiny_w2a8_heads_track_the_float_path() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/darknet/yolov3-tiny.cfg");
    let text = ternc_frontend::with_input_size(&std::fs::read_to_string(path).unwrap(), 96, 96);
    let mut g = parse_cfg_text(Path::new("y.cfg"), &text).unwrap().graph;
    g.params = init(&g, 2);
    let g = ternarized(g);
    let scales: ActScales = quant::calibrate(&g, &quant::random_inputs(&g, 4, 7), 1).unwrap();
    assert_eq!(scales.quantized().count(), 13, "every conv is ternary");
    let x: Tensor = quant::random_inputs(&g, 1, 99).remove(0);
    let float = Reference::new(&g, 1).unwrap().run(&x, |_| {}).unwrap();
    let int8 = Reference::new(&g, 1).unwrap().with_act_scales(scales).run(&x, |_| {}).unwrap();
    for ((l, a), (_, b)) in int8.iter().zip(&float) {
        let scale = b.data.iter().fold(0f32, |m, v| m.max(v.abs()));
        let err = a.data.iter().zip(&b.data).fold(0f32, |m, (p, q)| m.max((p - q).abs())) / scale;
        eprintln!("head {l}: W2A8 vs W2A32 max error {err:.3e} of the head's largest value");
        assert!(err > 0.0, "quantization should change something");
        assert!(err < 0.05, "head {l}: {err}");
    }
}
