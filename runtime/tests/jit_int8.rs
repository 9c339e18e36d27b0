//! W2A8 in the JIT: int8 activations into the ternary layers (`--act i8`) against the
//! reference interpreter running the same quantization (`Reference::with_act_scales`),
//! layer by layer, on hand-written cfgs over the kernels' edge cases and on the
//! shared detector cfgs at small sizes.
//!
//! Both compute the same integers, so they agree to float rounding (~1e-6): the edge
//! cases are held to 1e-4 relative, as the float path is. Deep networks add one
//! effect: where a value lands within rounding noise of a quantization boundary
//! (`x/s` at `k + 0.5`), the two sides may round it to neighbouring codes, and the
//! one-step difference spreads: each later layer quantizes slightly different values
//! (yolov3-voc, 75 convolutions deep, ends up 8% apart). So on the detectors the
//! reference bounds the JIT loosely (15% of each layer's largest value), and the exact
//! check is between the
//! JIT's two int8 kernels: table (i16 segments) and packed (scalar i32) must give the
//! same bits, layer by layer.

mod common;

use common::{conv, graph, model, net, ternarized};

use ternc_codegen::{LowerOptions, TernaryKernel};
use ternc_ir::Graph;
use ternc_passes::ternarize::Scope;
use ternc_runtime::jit::JitModel;
use ternc_runtime::quant::{self, ActScales};
use ternc_runtime::{Reference, Tensor};

/// max |a − b| / max |b| (b the reference).
fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    if a.iter().any(|v| !v.is_finite()) {
        return f64::INFINITY;
    }
    let scale = b.iter().fold(0f64, |m, &v| m.max(v.abs() as f64)).max(1e-30);
    let diff = a.iter().zip(b).fold(0f64, |m, (&x, &y)| m.max((x as f64 - y as f64).abs()));
    diff / scale
}

/// How close the JIT must be (module docs).
#[derive(Clone, Copy, PartialEq)]
enum Agreement {
    Strict,
    /// Allows the rounding flips of deep networks.
    Flips,
}

/// Calibrates on two random inputs, runs a third through both, compares every layer;
/// returns the worst layer error and the JIT's layer outputs.
fn compare(what: &str, g: &Graph, opts: &LowerOptions, agreement: Agreement) -> (f64, Vec<Tensor>) {
    let scales: ActScales = quant::calibrate(g, &quant::random_inputs(g, 2, 5), 1).unwrap();
    assert!(scales.quantized().count() > 0, "{what}: nothing quantized");
    let x: Tensor = quant::random_inputs(g, 1, 77).remove(0);
    let mut want = Vec::new();
    let reference = Reference::new(g, 1).unwrap().with_act_scales(scales.clone());
    reference.run(&x, |d| want.push(d.output.clone())).unwrap();
    let opts = LowerOptions { act_steps: scales.steps.clone(), ..opts.clone() };
    let jit = JitModel::compile_with(g, &opts).unwrap_or_else(|e| panic!("{what}: {e}"));
    let int8_kernels = jit.program().kernels.iter().filter(|k| k.name.contains("int8")).count();
    assert_eq!(int8_kernels, scales.quantized().count(), "{what}: one int8 kernel per quantized layer");
    let mut got = Vec::new();
    let heads = jit.run_with(&x, |d| got.push(d.output.clone())).unwrap();
    let mut worst = 0f64;
    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
        let (e, kind) = (rel_err(&a.data, &b.data), g.layer(i).op.type_name());
        match agreement {
            Agreement::Strict => assert!(e <= TOL, "{what}: layer {i} ({kind}) differs by {e:.3e} relative"),
            Agreement::Flips => assert!(e <= 0.15, "{what}: layer {i} ({kind}) differs by {e:.3e} relative"),
        }
        worst = worst.max(e);
    }
    assert_eq!(jit.run(&x).unwrap(), heads, "{what}: second run");
    (worst, got)
}

/// As the float path's differential tests: the sums are the same integers.
const TOL: f64 = 1e-4;

#[test]
fn int8_kernel_edge_cases() {
    let cases: Vec<(&str, String)> = vec![
        (
            "odd sizes, 3x3 pad 1, channels not a multiple of 4",
            net(
                29,
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
                19,
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
            // stride 2 reads split columns: odd and even widths, dilation, 5x5, no pad
            "stride 2: split columns",
            net(
                37,
                21,
                3,
                &[
                    conv(5, 3, 2, 1, "activation=leaky"),
                    conv(4, 3, 2, 1, "dilation=2\nactivation=leaky"),
                    conv(6, 5, 2, 0, "activation=linear"),
                ]
                .concat(),
            ),
        ),
        (
            // 96·9 = 864 taps a channel, about 500 nonzero: two or three i16 segments
            "wide fan-in: several segments",
            net(
                21,
                9,
                3,
                &[conv(96, 3, 1, 1, "activation=leaky"), conv(5, 3, 1, 1, "activation=linear")].concat(),
            ),
        ),
        (
            "connected",
            net(
                5,
                4,
                3,
                &[conv(4, 3, 1, 1, "activation=leaky"), "[connected]\noutput=7\nactivation=leaky\n\n".into()]
                    .concat(),
            ),
        ),
    ];
    for (what, text) in &cases {
        let g = ternarized(graph("edge.cfg", text, 11), Scope::Channel);
        if what.contains("split") {
            let p = JitModel::compile_with(
                &g,
                &LowerOptions { act_steps: vec![Some(0.01); 3], ..Default::default() },
            );
            let names: Vec<String> = p.unwrap().program().kernels.iter().map(|k| k.name.clone()).collect();
            assert_eq!(names.iter().filter(|n| n.contains("columns split")).count(), 3, "{names:?}");
        }
        if what.contains("segments") {
            let p = JitModel::compile_with(
                &g,
                &LowerOptions { act_steps: vec![Some(0.01); 2], ..Default::default() },
            );
            let names: Vec<String> = p.unwrap().program().kernels.iter().map(|k| k.name.clone()).collect();
            assert!(names.iter().any(|n| n.contains("int8, 2 segments")), "{names:?}");
        }
        for (tile_i8, vectors, tile_rows) in
            [(16, true, 0), (24, true, 3), (8, true, 1), (12, true, 0), (8, false, 2)]
        {
            for form in [TernaryKernel::Table, TernaryKernel::Packed] {
                let opts = LowerOptions { tile_i8, vectors, tile_rows, ternary: form, ..Default::default() };
                let (e, _) = compare(
                    &format!("{what}, {form:?}, tile {tile_i8}, vectors {vectors}"),
                    &g,
                    &opts,
                    Agreement::Strict,
                );
                eprintln!("{what}, {form:?}, tile {tile_i8}, vectors {vectors}: {e:.2e}");
            }
        }
    }
}

/// The shared detectors (shortcuts, reorg, route slices, upsample), fully ternary.
#[test]
fn int8_detectors() {
    for (file, size) in [
        ("darknet/yolov3-tiny.cfg", 96),
        ("darknet/yolov2-tiny-voc.cfg", 96),
        ("darknet/yolov4-tiny.cfg", 96),
        ("darknet/yolov3-voc.cfg", 64),
        ("darknet/yolov2-voc.cfg", 64),
    ] {
        let g = ternarized(model(file, size), Scope::Layer);
        let mut outputs = Vec::new();
        for form in [TernaryKernel::Table, TernaryKernel::Packed] {
            let opts = LowerOptions { ternary: form, ..Default::default() };
            let (e, got) = compare(&format!("{file} {form:?}"), &g, &opts, Agreement::Flips);
            eprintln!("{file} {form:?}: {e:.2e} from the reference");
            outputs.push(got);
        }
        for (i, (t, p)) in outputs[0].iter().zip(&outputs[1]).enumerate() {
            assert!(t == p, "{file}: layer {i}: the table and packed int8 kernels differ");
        }
    }
}

/// A Darknet-TWN stage cfg flags `ternary=1` itself: exactly those layers take int8.
#[test]
fn int8_twn_stage_cfg() {
    let g = model("darknet-twn/yolov3-tiny-voc_M1.cfg", 64);
    let flagged = (0..g.num_layers()).filter(|&i| quant::is_ternary_layer(&g, i)).count();
    let all = (0..g.num_layers()).filter(|&i| matches!(g.layer(i).op, ternc_ir::Op::Conv(_))).count();
    assert!(flagged > 0 && flagged < all, "{flagged} of {all}");
    compare("yolov3-tiny-voc_M1", &g, &LowerOptions::default(), Agreement::Flips);
}
