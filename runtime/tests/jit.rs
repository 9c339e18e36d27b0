//! The JIT backend against the reference interpreter: every layer's output and the
//! heads, on yolov3-tiny, yolov2-tiny-voc, yolov3-voc (shortcuts) and yolov2-voc
//! (reorg) at a small size (float and fully ternarized), and on hand-written cfgs
//! covering the kernels' edge cases.

mod common;

use common::{conv, graph, model, net, ternarized};

use ternc_codegen::{CodegenError, LowerOptions, TernaryKernel};
use ternc_ir::Graph;
use ternc_passes::ternarize::Scope;
use ternc_runtime::jit::JitModel;
use ternc_runtime::{Reference, Tensor};

fn input(g: &Graph, seed: u32) -> Tensor {
    let s = g.input_shape();
    let mut state = seed.wrapping_mul(2654435761).wrapping_add(12345);
    let data = (0..s.numel())
        .map(|_| {
            state = state.wrapping_mul(1664525).wrapping_add(1013904223);
            (state >> 8) as f32 / (1 << 24) as f32
        })
        .collect();
    Tensor::from_vec(1, s, data)
}

/// max |a − b| / max |b| (b the reference).
fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f64, |m, &v| m.max(v.abs() as f64)).max(1e-30);
    let diff = a.iter().zip(b).fold(0f64, |m, (&x, &y)| m.max((x as f64 - y as f64).abs()));
    if a.iter().any(|v| !v.is_finite()) {
        return f64::INFINITY;
    }
    diff / scale
}

/// Runs both backends on `g`, compares every layer within `tol` (relative to the
/// layer's largest value) and the heads; returns the worst head error.
fn compare(what: &str, g: &Graph, opts: &LowerOptions, tol: f64) -> f64 {
    let x = input(g, 3);
    let mut want = Vec::new();
    let ref_heads = Reference::new(g, 1).unwrap().run(&x, |d| want.push(d.output.clone())).unwrap();
    let jit = JitModel::compile_with(g, opts).unwrap_or_else(|e| panic!("{what}: {e}"));
    let mut got = Vec::new();
    let heads = jit.run_with(&x, |d| got.push(d.output.clone())).unwrap();
    assert_eq!(got.len(), want.len(), "{what}: layers");
    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
        assert_eq!(a.shape, b.shape, "{what}: layer {i} shape");
        let e = rel_err(&a.data, &b.data);
        assert!(
            e <= tol,
            "{what}: layer {i} ({}) differs by {e:.3e} relative\n{}",
            g.layer(i).op.type_name(),
            jit.program()
                .kernels
                .iter()
                .filter(|k| k.layer == Some(i))
                .map(|k| k.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    assert_eq!(
        heads.iter().map(|h| h.0).collect::<Vec<_>>(),
        ref_heads.iter().map(|h| h.0).collect::<Vec<_>>(),
        "{what}: head layers"
    );
    let mut worst = 0f64;
    for ((l, a), (_, b)) in heads.iter().zip(&ref_heads) {
        assert_eq!(a.shape, b.shape);
        let e = rel_err(&a.data, &b.data);
        assert!(e <= tol, "{what}: head {l} differs by {e:.3e} relative");
        worst = worst.max(e);
    }
    // a second run reuses the arena and gives the same bits
    let again = jit.run(&x).unwrap();
    assert_eq!(again, heads, "{what}: second run");
    worst
}

const TOL: f64 = 1e-4;

#[test]
fn yolov3_tiny_float_and_ternary() {
    let g = model("darknet/yolov3-tiny.cfg", 64);
    let opts = LowerOptions::default();
    let e = compare("yolov3-tiny float", &g, &opts, TOL);
    eprintln!("yolov3-tiny float: worst head {e:.2e}");
    let t = ternarized(g, Scope::Layer);
    let e = compare("yolov3-tiny ternary", &t, &opts, TOL);
    eprintln!("yolov3-tiny ternary: worst head {e:.2e}");
}

#[test]
fn yolov2_tiny_voc_float_and_ternary() {
    let g = model("darknet/yolov2-tiny-voc.cfg", 96);
    let opts = LowerOptions::default();
    let e = compare("yolov2-tiny-voc float", &g, &opts, TOL);
    eprintln!("yolov2-tiny-voc float: worst head {e:.2e}");
    let t = ternarized(g, Scope::Channel);
    let e = compare("yolov2-tiny-voc ternary", &t, &opts, TOL);
    eprintln!("yolov2-tiny-voc ternary: worst head {e:.2e}");
}

#[test]
fn yolov3_voc_float_and_ternary() {
    let g = model("darknet/yolov3-voc.cfg", 64);
    let opts = LowerOptions::default();
    let e = compare("yolov3-voc float", &g, &opts, TOL);
    eprintln!("yolov3-voc float: worst head {e:.2e}");
    let t = ternarized(g, Scope::Layer);
    let e = compare("yolov3-voc ternary", &t, &opts, TOL);
    eprintln!("yolov3-voc ternary: worst head {e:.2e}");
}

#[test]
fn yolov2_voc_float_and_ternary() {
    let g = model("darknet/yolov2-voc.cfg", 64);
    let opts = LowerOptions::default();
    let e = compare("yolov2-voc float", &g, &opts, TOL);
    eprintln!("yolov2-voc float: worst head {e:.2e}");
    let t = ternarized(g, Scope::Channel);
    let e = compare("yolov2-voc ternary", &t, &opts, TOL);
    eprintln!("yolov2-voc ternary: worst head {e:.2e}");
}

/// The Darknet-TWN stage cfg flags `ternary=1` itself: the JIT ternarizes those layers
/// as the reference does (TWN on the file's weights, batchnorm after).
#[test]
fn twn_stage_cfg_with_ternary_flags() {
    let g = model("darknet-twn/yolov3-tiny-voc_M1.cfg", 64);
    assert!((0..g.num_layers()).any(|i| g.layer(i).op.is_ternary()));
    compare("yolov3-tiny-voc_M1", &g, &LowerOptions::default(), TOL);
}

/// Tiny networks over the kernels' edge cases, each run float and ternary (both
/// ternary kernel forms), with tiles that leave tails.
#[test]
fn kernel_edge_cases() {
    let cases: Vec<(&str, String)> = vec![
        (
            "odd sizes, 3x3 pad 1, channels not a multiple of 4",
            net(
                13,
                11,
                3,
                &[conv(5, 3, 1, 1, "activation=leaky"), conv(7, 3, 1, 1, "activation=logistic")].concat(),
            ),
        ),
        (
            "1x1 and stride 2",
            net(
                15,
                9,
                5,
                &[
                    conv(6, 1, 1, 1, "activation=relu"),
                    conv(3, 3, 2, 1, "activation=leaky"),
                    conv(4, 1, 2, 0, "activation=logistic"),
                ]
                .concat(),
            ),
        ),
        (
            "no padding, 5x5, stride 3, dilation 2",
            net(
                17,
                14,
                2,
                &[conv(3, 5, 3, 0, "activation=leaky"), conv(4, 3, 1, 1, "dilation=2\nactivation=relu6")]
                    .concat(),
            ),
        ),
        (
            "groups and depthwise",
            net(
                9,
                10,
                6,
                &[
                    conv(4, 3, 1, 1, "groups=2\nactivation=leaky"),
                    conv(4, 3, 2, 1, "groups=4\nactivation=relu6"),
                    conv(8, 1, 1, 0, "groups=2\nactivation=hardtan"),
                ]
                .concat(),
            ),
        ),
        (
            "maxpool: odd sizes, stride 1, size 3, explicit padding",
            net(
                13,
                7,
                3,
                &[
                    conv(4, 3, 1, 1, "activation=leaky"),
                    "[maxpool]\nsize=2\nstride=2\n\n".to_string(),
                    "[maxpool]\nsize=2\nstride=1\n\n".to_string(),
                    "[maxpool]\nsize=3\nstride=2\npadding=0\n\n".to_string(),
                    "[maxpool]\nsize=3\nstride=1\npadding=4\n\n".to_string(),
                ]
                .concat(),
            ),
        ),
        (
            "route views, elided concats, copies and grouped slices; upsample",
            net(
                8,
                6,
                3,
                &[
                    conv(4, 3, 1, 1, "activation=leaky"),                        // 0
                    conv(6, 3, 1, 1, "activation=leaky"),                        // 1
                    "[route]\nlayers=-1\ngroups=2\ngroup_id=1\n\n".to_string(),  // 2: view of 1
                    conv(2, 1, 1, 0, "activation=linear"),                       // 3
                    "[route]\nlayers=0,3,1\n\n".to_string(),                     // 4: elided concat
                    "[route]\nlayers=3,0\n\n".to_string(),                       // 5: copies
                    "[route]\nlayers=0,1\ngroups=2\ngroup_id=0\n\n".to_string(), // 6: slices
                    "[upsample]\nstride=2\n\n".to_string(),                      // 7
                    "[upsample]\nstride=3\nscale=0.5\n\n".to_string(),           // 8
                ]
                .concat(),
            ),
        ),
    ];
    for (what, text) in &cases {
        let g = graph("edge.cfg", text, 11);
        // tiles of 8 (two vectors), 6 (a vector and two scalar lanes) and 3 (scalar),
        // with vectors on and off
        for (tile, vectors, tile_rows) in [(8, true, 0), (6, true, 3), (3, true, 1), (8, false, 2)] {
            let opts = LowerOptions { tile, vectors, tile_rows, ..Default::default() };
            compare(&format!("{what}, float, tile {tile}, vectors {vectors}"), &g, &opts, TOL);
            for form in [TernaryKernel::Table, TernaryKernel::Unrolled] {
                let t = ternarized(g.clone(), Scope::Channel);
                let opts = LowerOptions { tile, vectors, tile_rows, ternary: form, ..Default::default() };
                compare(&format!("{what}, ternary {form:?}, tile {tile}, vectors {vectors}"), &t, &opts, TOL);
            }
        }
        // channel-outer and row-outer loop orders give the same result
        let opts = LowerOptions { channel_outer_max_bytes: 0, ..Default::default() };
        compare(&format!("{what}, row-outer"), &g, &opts, TOL);
        // ternary tables in input-channel chunks (one channel a chunk: first, middle
        // and last passes with partial sums), in both loop orders
        let t = ternarized(g.clone(), Scope::Channel);
        for outer in [0, usize::MAX] {
            let opts = LowerOptions {
                chunk_bytes: 1,
                channel_outer_max_bytes: outer,
                ternary: TernaryKernel::Table,
                ..Default::default()
            };
            let p = JitModel::compile_with(&t, &opts).unwrap();
            assert!(p.program().kernels.iter().any(|k| k.name.contains("chunks of 1 channels")), "{what}");
            compare(&format!("{what}, chunked, outer {outer}"), &t, &opts, TOL);
        }
    }
}

/// Shortcut (from-layers with fewer, equal and more channels than the output, and
/// several from-layers at once), reorg and avgpool, float and ternary.
#[test]
fn shortcut_reorg_avgpool() {
    let cases: Vec<(&str, String)> = vec![
        (
            "shortcut: from-layer with fewer, equal and more channels; two from-layers",
            net(
                7,
                5,
                3,
                &[
                    conv(6, 3, 1, 1, "activation=leaky"),                       // 0
                    conv(4, 3, 1, 1, "activation=leaky"),                       // 1
                    conv(8, 1, 1, 0, "activation=linear"),                      // 2
                    conv(6, 3, 1, 1, "activation=leaky"),                       // 3
                    "[shortcut]\nfrom=1\nactivation=linear\n\n".to_string(),    // 4: 4 < 6
                    "[shortcut]\nfrom=2\nactivation=leaky\n\n".to_string(),     // 5: 8 > 6
                    "[shortcut]\nfrom=0\nactivation=relu\n\n".to_string(),      // 6: 6 = 6
                    "[shortcut]\nfrom=1,2\nactivation=leaky\n\n".to_string(),   // 7: both
                    "[shortcut]\nfrom=-7\nactivation=logistic\n\n".to_string(), // 8: from 1
                ]
                .concat(),
            ),
        ),
        (
            "reorg stride 2 on [8,4,4], then a convolution",
            net(
                4,
                4,
                3,
                &[
                    conv(8, 3, 1, 1, "activation=leaky"),
                    "[reorg]\nstride=2\n\n".to_string(),
                    conv(5, 1, 1, 0, "activation=leaky"),
                ]
                .concat(),
            ),
        ),
        (
            "reorg stride 2 on odd channel groups, stride 3",
            net(
                6,
                6,
                3,
                &[
                    conv(12, 3, 1, 1, "activation=leaky"),
                    "[reorg]\nstride=2\n\n".to_string(),
                    conv(9, 1, 1, 0, "activation=leaky"),
                    "[reorg]\nstride=3\n\n".to_string(),
                ]
                .concat(),
            ),
        ),
        (
            "avgpool",
            net(9, 7, 3, &[conv(10, 3, 1, 1, "activation=leaky"), "[avgpool]\n\n".to_string()].concat()),
        ),
    ];
    for (what, text) in &cases {
        let g = graph("sra.cfg", text, 13);
        compare(&format!("{what}, float"), &g, &LowerOptions::default(), TOL);
        let t = ternarized(g, Scope::Channel);
        compare(&format!("{what}, ternary"), &t, &LowerOptions::default(), TOL);
    }
}

#[test]
fn all_zero_ternary_layer() {
    // every code 0 (α = 0): the tap loops never run, the output is act(bias)
    let mut g = graph("z.cfg", &net(5, 5, 3, &conv(4, 3, 1, 1, "activation=leaky")), 1);
    g.params.layer_mut(0).weights.iter_mut().for_each(|w| *w = 0.0);
    let t = ternarized(g, Scope::Layer);
    for form in [TernaryKernel::Table, TernaryKernel::Unrolled] {
        let opts = LowerOptions { ternary: form, ..Default::default() };
        compare(&format!("all-zero {form:?}"), &t, &opts, TOL);
    }
}

#[test]
fn heads_yolo_scale_x_y_and_region_without_softmax() {
    let yolo = net(
        10,
        10,
        3,
        &[
            conv(2 * (3 + 5), 3, 1, 1, "activation=leaky"),
            "[convolutional]\nfilters=16\nsize=1\nactivation=linear\n\n".to_string(),
            "[yolo]\nmask=0,1\nanchors=10,14,23,27,37,58\nclasses=3\nnum=3\nscale_x_y=1.05\n\n".to_string(),
        ]
        .concat(),
    );
    compare("yolo scale_x_y", &graph("y.cfg", &yolo, 2), &LowerOptions::default(), TOL);
    let region = net(
        7,
        7,
        3,
        &[
            "[convolutional]\nfilters=18\nsize=1\nactivation=linear\n\n".to_string(),
            "[region]\nanchors=1,1,2,2\nclasses=4\ncoords=4\nnum=2\nsoftmax=0\n\n".to_string(),
        ]
        .concat(),
    );
    compare("region no softmax", &graph("r.cfg", &region, 2), &LowerOptions::default(), TOL);
}

/// What the compiled backends cannot do is an error naming the layer, never a silent
/// fallback: per-channel shortcut weights with a from-layer of another spatial size
/// (the reference indexes such a from-layer with the output's plane). The layer types
/// once listed here (softmax, weighted and strided shortcuts, reorg3d, mish) compile.
#[test]
fn unsupported_layers_are_named() {
    let body = "[maxpool]\nsize=2\nstride=2\n\n[shortcut]\nfrom=0\nweights_type=per_channel\n\n";
    let text = net(8, 8, 3, &[conv(4, 3, 1, 1, "activation=leaky"), body.to_string()].concat());
    let e = JitModel::compile(&graph("s.cfg", &text, 1)).unwrap_err();
    assert!(matches!(e, CodegenError::Unsupported { layer: 2, op: "shortcut", .. }), "{e}");
    assert!(e.to_string().starts_with("layer 2 (shortcut): per-channel weights"), "{e}");
    for body in [
        "[softmax]\n\n",
        "[shortcut]\nfrom=0\nweights_type=per_feature\n\n",
        "[maxpool]\nsize=2\nstride=2\n\n[shortcut]\nfrom=0\n\n",
        "[reorg3d]\nstride=2\n\n",
        "[convolutional]\nfilters=2\nsize=1\nactivation=mish\n\n",
    ] {
        let text = net(8, 8, 3, &[conv(4, 3, 1, 1, "activation=leaky"), body.to_string()].concat());
        let g = graph("s.cfg", &text, 1);
        compare(body, &g, &LowerOptions::default(), TOL);
    }
}

#[test]
fn wrong_input_shape_is_an_error() {
    let g = graph("c.cfg", &net(8, 8, 3, &conv(4, 3, 1, 1, "activation=leaky")), 1);
    let jit = JitModel::compile(&g).unwrap();
    let bad = Tensor::zeros(1, ternc_ir::Shape::new(3, 8, 9));
    assert!(jit.run(&bad).is_err());
    // a batch of two runs each image on its own arena
    let s = g.input_shape();
    let mut two = Tensor::zeros(2, s);
    let one = input(&g, 5);
    two.data[s.numel()..].copy_from_slice(&one.data);
    let heads = jit.run(&two).unwrap();
    let single = jit.run(&one).unwrap();
    assert_eq!(heads[0].1.image(1), single[0].1.image(0));
}

/// Timing on yolov3-tiny at 416 (not a timed test; run with
/// `cargo test --release -p ternc-runtime --test jit -- --ignored --nocapture`):
/// compile time, and single-thread ms per inference of the JIT and the reference,
/// float and fully ternarized.
#[test]
#[ignore]
fn timing_yolov3_tiny_416() {
    use std::time::Instant;
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let iters: usize = std::env::var("TERNC_ITERS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let g = model("darknet/yolov3-tiny.cfg", 416);
    for (what, g) in [("float", g.clone()), ("ternary", ternarized(g, Scope::Layer))] {
        let x = input(&g, 1);
        let t = Instant::now();
        let env = |k: &str| std::env::var(k).ok().and_then(|s| s.parse().ok());
        let opts = LowerOptions {
            tile: env("TERNC_TILE").unwrap_or(8),
            vectors: env("TERNC_VECTORS").unwrap_or(1) == 1,
            ..Default::default()
        };
        let jit = JitModel::compile_with(&g, &opts).unwrap();
        let compile = t.elapsed();
        let r = Reference::new(&g, 1).unwrap();
        let mut tj = Vec::new();
        let mut tr = Vec::new();
        let mut worst = 0f64;
        for _ in 0..iters {
            let t = Instant::now();
            let a = jit.run(&x).unwrap();
            tj.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            let b = r.run(&x, |_| {}).unwrap();
            tr.push(t.elapsed().as_secs_f64() * 1e3);
            for ((_, a), (_, b)) in a.iter().zip(&b) {
                worst = worst.max(rel_err(&a.data, &b.data));
            }
        }
        if env("TERNC_LAYERS") == Some(1) {
            let mut jl = vec![0f64; g.num_layers()];
            jit.run_with(&x, |d| jl[d.layer] = d.elapsed.as_secs_f64() * 1e3).unwrap();
            let mut rl = vec![0f64; g.num_layers()];
            r.run(&x, |d| rl[d.layer] = d.elapsed.as_secs_f64() * 1e3).unwrap();
            for i in 0..g.num_layers() {
                let kernels: Vec<&str> = jit
                    .program()
                    .kernels
                    .iter()
                    .filter(|k| k.layer == Some(i))
                    .map(|k| k.name.as_str())
                    .collect();
                eprintln!(
                    "  {i:>3} {:<14} jit {:>7.2} ms  ref {:>7.2} ms  {:.3} GFLOP  {}",
                    g.layer(i).op.type_name(),
                    jl[i],
                    rl[i],
                    g.bflops(i),
                    kernels.join(", ")
                );
            }
        }
        let (loops, assigns, stores) = jit.program().stats();
        eprintln!(
            "yolov3-tiny 416 {what}: compile {:.0} ms ({} kernels, {loops} loops, {assigns} assignments, {stores} stores, {:.1} MiB consts), \
             JIT {:.1} ms, reference {:.1} ms (1 thread, median of {iters}), worst head rel err {worst:.2e}",
            compile.as_secs_f64() * 1e3,
            jit.program().kernels.len(),
            jit.program().const_bytes() as f64 / (1 << 20) as f64,
            median(tj),
            median(tr),
        );
    }
}
