//! The interpreter's convolution (im2col, blocked or not, and GEMM) against the
//! textbook seven-loop definition, over strides, paddings, dilations and groups, at
//! sizes that take every code path.

use std::path::Path;

use rand::{Rng, SeedableRng};
use ternc_frontend::parse_cfg_text;
use ternc_ir::{Op, Shape};
use ternc_runtime::{Reference, Tensor};

#[allow(clippy::too_many_arguments)]
fn naive(
    x: &[f32],
    s: Shape,
    w: &[f32],
    bias: &[f32],
    f: usize,
    k: usize,
    stride: usize,
    pad: usize,
    dil: usize,
    g: usize,
    out: Shape,
) -> Vec<f32> {
    let (cin, cout) = (s.c / g, f / g);
    let mut y = vec![0.0f32; out.numel()];
    for o in 0..f {
        let grp = o / cout;
        for oy in 0..out.h {
            for ox in 0..out.w {
                let mut acc = 0.0f64;
                for ci in 0..cin {
                    for ky in 0..k {
                        for kx in 0..k {
                            let iy = (oy * stride + ky * dil) as isize - pad as isize;
                            let ix = (ox * stride + kx * dil) as isize - pad as isize;
                            if iy >= 0 && ix >= 0 && (iy as usize) < s.h && (ix as usize) < s.w {
                                let xv = x[(grp * cin + ci) * s.plane() + iy as usize * s.w + ix as usize];
                                acc += (xv * w[((o * cin + ci) * k + ky) * k + kx]) as f64;
                            }
                        }
                    }
                }
                y[o * out.plane() + oy * out.w + ox] = acc as f32 + bias[o];
            }
        }
    }
    y
}

#[test]
fn convolution_matches_the_definition() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    // (channels, size, filters, kernel, stride, pad=1?, dilation, groups)
    let cases = [
        (3, 70, 8, 3, 1, true, 1, 1),
        (3, 70, 8, 3, 2, true, 1, 1),
        (4, 68, 6, 5, 1, false, 1, 2),
        (4, 66, 4, 3, 1, true, 2, 4),
        (6, 9, 6, 3, 1, true, 1, 3),
        (2, 80, 3, 1, 1, false, 1, 1),
        (2, 80, 3, 1, 2, false, 1, 1),
        (5, 11, 7, 3, 2, false, 2, 1),
    ];
    for (c, hw, f, k, stride, pad, dil, g) in cases {
        let body = format!(
            "[convolutional]\nfilters={f}\nsize={k}\nstride={stride}\npad={}\ndilation={dil}\ngroups={g}\nactivation=linear\n",
            pad as u8
        );
        let text = format!("[net]\nwidth={hw}\nheight={}\nchannels={c}\n\n{body}", hw - 1);
        let mut graph = parse_cfg_text(Path::new("t.cfg"), &text).unwrap().graph;
        let Op::Conv(cv) = graph.layer(0).op.clone() else { unreachable!() };
        let (s, out) = (graph.input_shape(), graph.layer(0).shape);
        let p = graph.params.layer_mut(0);
        p.biases = (0..f).map(|_| rng.gen_range(-1.0..1.0)).collect();
        p.weights = (0..f * (c / g) * k * k).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let x: Vec<f32> = (0..s.numel()).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let want = naive(
            &x,
            s,
            &graph.params.layer(0).unwrap().weights,
            &graph.params.layer(0).unwrap().biases,
            f,
            k,
            stride,
            cv.pad,
            cv.dilation,
            g,
            out,
        );
        for threads in [1, 2] {
            let heads = Reference::new(&graph, threads)
                .unwrap()
                .run(&Tensor::from_vec(1, s, x.clone()), |_| {})
                .unwrap();
            let got = &heads[0].1.data;
            let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(worst < 1e-4, "{body} ({threads} threads): max error {worst}");
        }
    }
}
