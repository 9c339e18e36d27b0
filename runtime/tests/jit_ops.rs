//! The JIT backend against the reference interpreter on every bundled cfg (small
//! inputs, float, fully ternarized, and fully ternarized with int8 activations), and on each layer type and activation the
//! JIT added after the first detectors, on edge shapes: all activations (scalar and
//! lane-by-lane vector forms), weighted, multi-input and strided shortcuts, reorg3d and
//! reverse reorg, scale_channels, sam, softmax, connected (float and ternary, with
//! batchnorm), downsampling upsample and channel-wise activations.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use ternc_codegen::{cranelift, lower, prepare, LowerOptions, TernaryKernel};
use ternc_frontend::{init::init, parse_cfg_text};
use ternc_ir::{Activation, Graph};
use ternc_passes::spec::Spec;
use ternc_passes::ternarize::{self, Scope};
use ternc_runtime::jit::JitModel;
use ternc_runtime::quant::{self, ActScales};
use ternc_runtime::{Reference, Tensor};

fn graph(name: &str, text: &str, seed: u64) -> Graph {
    let mut g = parse_cfg_text(Path::new(name), text).unwrap_or_else(|e| panic!("{e}\n{text}")).graph;
    g.params = init(&g, seed);
    g
}

/// Ternarizes every weight layer (convolutional and connected), then folds batchnorm.
fn ternarized(mut g: Graph, scope: Scope) -> Graph {
    let sel = Spec::parse("all").unwrap().select(&g).unwrap();
    ternarize::run(&mut g, &sel, scope, 0.7).unwrap();
    ternc_passes::fold::run(&mut g).unwrap();
    g
}

/// Values in `[lo, hi)`, deterministic per seed.
fn input(g: &Graph, seed: u32, lo: f32, hi: f32) -> Tensor {
    let s = g.input_shape();
    let mut state = seed.wrapping_mul(2654435761).wrapping_add(12345);
    let data = (0..s.numel())
        .map(|_| {
            state = state.wrapping_mul(1664525).wrapping_add(1013904223);
            lo + (hi - lo) * ((state >> 8) as f32 / (1 << 24) as f32)
        })
        .collect();
    Tensor::from_vec(1, s, data)
}

/// max |a − b| / max |b| (b the reference); infinite when `a` has a non-finite value
/// where `b` has none.
fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f64, |m, &v| m.max(v.abs() as f64)).max(1e-30);
    let diff = a.iter().zip(b).fold(0f64, |m, (&x, &y)| m.max((x as f64 - y as f64).abs()));
    if a.iter().zip(b).any(|(x, y)| !x.is_finite() && x.to_bits() != y.to_bits()) {
        return f64::INFINITY;
    }
    diff / scale
}

const TOL: f64 = 1e-4;

/// What [`try_compare`] measured.
#[derive(Debug, Default)]
struct Report {
    /// Worst per-layer error with the reference's inputs.
    isolated: f64,
    /// Worst per-layer error of the whole JIT run (errors compound through the net).
    chained: f64,
    compile_s: f64,
    lower_s: f64,
    reference_s: f64,
}

/// Runs the reference on `g` (every layer's output), then the JIT's kernels twice:
///
/// - **isolated**: each layer's kernels alone, on an arena (otherwise NaN) holding the
///   reference's outputs of the layer's inputs, so each layer is checked on exactly
///   the reference's inputs: within [`TOL`] relative to the layer's largest value;
/// - **chained**: the whole program in order, as `JitModel::run` does: every layer
///   and the heads within [`TOL`] too (summation order differences compound through
///   the network, so this needs well-conditioned weights: see [`damp_residuals`]).
///
/// With `int8` steps (W2A8), both sides quantize the ternary layers' inputs: isolated
/// layers still agree within [`TOL`] (the same inputs quantize to the same integers),
/// but in the chained run a value within rounding noise of a quantization boundary
/// may round to neighbouring codes on the two sides, and the one-step difference
/// spreads through the later layers: there the bound is [`INT8_CHAINED_TOL`].
///
/// `Err` says which layer differs (or why the JIT could not compile).
fn try_compare(
    what: &str,
    g: &Graph,
    opts: &LowerOptions,
    x: &Tensor,
    int8: Option<&ActScales>,
) -> Result<Report, String> {
    let t = Instant::now();
    let mut want = Vec::new();
    let reference = Reference::new(g, 1).unwrap();
    let reference = match int8 {
        Some(s) => reference.with_act_scales(s.clone()),
        None => reference,
    };
    let ref_heads = reference.run(x, |d| want.push(d.output.clone())).unwrap();
    let reference_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let prepared = prepare(g).map_err(|e| format!("{what}: {e}"))?;
    let opts = LowerOptions { act_steps: int8.map(|s| s.steps.clone()).unwrap_or_default(), ..opts.clone() };
    let program = lower(&prepared, &opts).map_err(|e| format!("{what}: {e}"))?;
    let lower_s = t.elapsed().as_secs_f64();
    let code = cranelift::compile(&program).map_err(|e| format!("{what}: {e}"))?;
    let compile_s = t.elapsed().as_secs_f64();
    let n = g.num_layers();
    if program.layers.len() != n || want.len() != n {
        return Err(format!("{what}: {} layers, the reference has {}", program.layers.len(), want.len()));
    }
    let mut layer_kernels = vec![Vec::new(); n];
    for (k, kernel) in program.kernels.iter().enumerate() {
        if let Some(l) = kernel.layer {
            layer_kernels[l].push(k);
        }
    }
    let names = |i: usize| {
        layer_kernels[i].iter().map(|&k| program.kernels[k].name.as_str()).collect::<Vec<_>>().join(", ")
    };
    let out_of = |arena: &[f32], i: usize| {
        let l = &program.layers[i];
        arena[l.offset..l.offset + l.len()].to_vec()
    };
    let mut report = Report { compile_s, lower_s, reference_s, ..Default::default() };
    let check = |e: f64, i: usize, how: &str| {
        let tol = if int8.is_some() && how != "isolated" { INT8_CHAINED_TOL } else { TOL };
        if e > tol || e.is_nan() {
            return Err(format!(
                "{what}: layer {i} ({}) differs by {e:.3e} relative ({how}; kernels {})",
                g.layer(i).op.type_name(),
                names(i)
            ));
        }
        Ok(e)
    };
    // (the whole workspace: the arena, then int8 activations)
    let mut arena = vec![f32::NAN; code.buffer_lens().1];
    for i in 0..n {
        if program.layers[i].shape != want[i].shape.to_array() {
            return Err(format!(
                "{what}: layer {i} shape {:?} != {}",
                program.layers[i].shape, want[i].shape
            ));
        }
        arena.fill(f32::NAN);
        for src in g.inputs(g.layers[i]) {
            if let Some(l) = g.node(src).layer {
                let o = program.layers[l].offset;
                arena[o..o + want[l].data.len()].copy_from_slice(&want[l].data);
            }
        }
        for &k in &layer_kernels[i] {
            code.run_kernel(k, &x.data, &mut arena);
        }
        let e = rel_err(&out_of(&arena, i), &want[i].data);
        report.isolated = report.isolated.max(check(e, i, "isolated")?);
    }
    // layer outputs share buffers: compare the chained run layer by layer as it goes
    arena.fill(f32::NAN);
    for i in 0..n {
        for &k in &layer_kernels[i] {
            code.run_kernel(k, &x.data, &mut arena);
        }
        let e = rel_err(&out_of(&arena, i), &want[i].data);
        report.chained = report.chained.max(check(e, i, "chained")?);
    }
    let heads: Vec<usize> = ref_heads.iter().map(|h| h.0).collect();
    if program.outputs != heads {
        return Err(format!("{what}: heads {:?}, the reference's {heads:?}", program.outputs));
    }
    for (l, b) in &ref_heads {
        check(rel_err(&out_of(&arena, *l), &b.data), *l, "head after the whole run")?;
    }
    Ok(report)
}

fn compare(what: &str, g: &Graph, opts: &LowerOptions) {
    let x = input(g, 3, 0.0, 1.0);
    try_compare(what, g, opts, &x, None).unwrap_or_else(|e| panic!("{e}"));
}

/// [`try_compare`]'s bound on chained int8 layers (yolov3-voc ends up 8% apart).
const INT8_CHAINED_TOL: f64 = 0.15;

// ---------------------------------------------------------------------------
// Every bundled cfg

/// Cfgs with more parameters than this run with their convolutions' `filters=`
/// divided by [`NARROW`] (see [`narrowed`]): the cost of a check (random weights,
/// ternarization, batchnorm folding, constant tables) grows with the parameters,
/// whatever the input size, and the full-width yolov3-voc and yolov2-voc run in
/// `tests/jit.rs`.
const NARROW_ABOVE_PARAMS: usize = 8_000_000;
const NARROW: usize = 4;

/// The cfg text with every `[convolutional]`'s `filters=` divided by `k` (where it
/// divides), except before a `[yolo]` or `[region]` head, whose input channels are
/// fixed by its classes and anchors: the same layers and shapes, `k²` times fewer
/// weights in most layers.
fn narrowed(text: &str, k: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let headers: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].trim_start().starts_with('[')).collect();
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    for (h, &start) in headers.iter().enumerate() {
        if lines[start].trim() != "[convolutional]" {
            continue;
        }
        let end = headers.get(h + 1).copied().unwrap_or(lines.len());
        let next = headers.get(h + 1).map(|&n| lines[n].trim());
        if matches!(next, Some("[yolo]" | "[region]")) {
            continue;
        }
        for line in &mut out[start..end] {
            let Some((key, value)) = line.split_once('=') else { continue };
            if key.trim() == "filters" {
                if let Ok(f) = value.trim().parse::<usize>() {
                    if f % k == 0 {
                        *line = format!("filters={}", f / k);
                    }
                }
            }
        }
    }
    out.join("\n")
}

/// Cfgs the JIT cannot run, with the reason its error must give. Empty: every bundled
/// cfg runs.
const UNSUPPORTED: &[(&str, &str)] = &[];

/// The default options, but ternary layers unrolled only up to 128 nonzero codes: at
/// narrowed widths most layers fall under the default 1024, and Cranelift then spends
/// ~20 s on yolov4x-mish alone. Both forms still run (the small layers unroll).
fn sweep_options() -> LowerOptions {
    LowerOptions { unroll_max_taps: 128, ..Default::default() }
}

fn bundled_cfgs() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models");
    let mut files = Vec::new();
    for dir in ["darknet", "darknet-twn"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "cfg") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

/// Scales the residual branch of every `[shortcut]` (its previous layer, when that is
/// a convolution) by 0.1, as "zero-init residual" initialisations do. With plain random
/// weights the activations of deep residual cfgs double with every block (to ~1e5 in
/// yolov4x-mish), and layers summing such values into O(1) outputs (logistic heads)
/// lose more digits to summation order than the metric allows, in any two correct
/// implementations.
fn damp_residuals(g: &mut Graph) {
    for i in 0..g.num_layers() {
        if !matches!(g.layer(i).op, ternc_ir::Op::Shortcut(_)) {
            continue;
        }
        let prev = g.inputs(g.layers[i]).first().and_then(|&s| g.node(s).layer);
        let Some(prev) = prev.filter(|&l| matches!(g.layer(l).op, ternc_ir::Op::Conv(_))) else {
            continue;
        };
        let p = g.params.layer_mut(prev);
        match &mut p.bn {
            Some(bn) => bn.scales.iter_mut().for_each(|s| *s *= 0.1),
            None => p.weights.iter_mut().for_each(|w| *w *= 0.1),
        }
        p.biases.iter_mut().for_each(|b| *b *= 0.1);
    }
}

/// Every bundled cfg at a small size, float (`ternary=1` layers as the cfg says) and
/// with every weight layer ternarized (per-layer α), JIT vs reference per layer.
/// Ternarized graphs identical to one already checked (the Darknet-TWN stage cfgs
/// differ only in their `ternary=1` flags) are reported as such and not run again.
#[test]
fn every_bundled_cfg_float_and_ternary() {
    let files = bundled_cfgs();
    assert_eq!(files.len(), 37, "bundled cfgs: {files:?}");
    let checked = Mutex::new(Vec::new());
    let next = AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
    let mut results: Vec<(usize, String, Vec<String>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        let Some(path) = files.get(k) else { break done };
                        let (line, failures) = check_cfg(path, &checked);
                        eprintln!("{line}");
                        done.push((k, line, failures));
                    }
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    results.sort_by_key(|r| r.0);
    let failures: Vec<String> = results.iter().flat_map(|r| r.2.clone()).collect();
    assert_eq!(results.len(), files.len());
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

/// Ternarized graphs already checked: (cfg, dump, parameters).
type Checked = Mutex<Vec<(String, String, ternc_ir::ParamStore)>>;

/// One cfg of [`every_bundled_cfg_float_and_ternary`]: its report line and failures.
fn check_cfg(path: &Path, checked: &Checked) -> (String, Vec<String>) {
    let name = format!(
        "{}/{}",
        path.parent().unwrap().file_name().unwrap().to_string_lossy(),
        path.file_name().unwrap().to_string_lossy()
    );
    let size = 64;
    let mut text = ternc_frontend::with_input_size(&std::fs::read_to_string(path).unwrap(), size, size);
    let params = parse_cfg_text(path, &text).unwrap().graph.total_params();
    let narrow = params > NARROW_ABOVE_PARAMS;
    if narrow {
        text = narrowed(&text, NARROW);
    }
    let start = Instant::now();
    let mut g = graph(&name, &text, 7);
    damp_residuals(&mut g);
    let x = input(&g, 3, 0.0, 1.0);
    let opts = sweep_options();
    let float = try_compare(&format!("{name} float"), &g, &opts, &x, None);
    let mut t = ternarized(g, Scope::Layer);
    t.name.clear();
    let dump = t.dump();
    let same = {
        let mut c = checked.lock().unwrap();
        let same = c.iter().find(|c| c.1 == dump && c.2 == t.params).map(|c| c.0.clone());
        if same.is_none() {
            c.push((name.clone(), dump, t.params.clone()));
        }
        same
    };
    let (ternary, int8) = match &same {
        Some(_) => (Ok(Report::default()), Ok(Report::default())),
        None => {
            let scales = quant::calibrate(&t, &[input(&t, 5, 0.0, 1.0)], 1).unwrap();
            (
                try_compare(&format!("{name} ternary"), &t, &opts, &x, None),
                try_compare(&format!("{name} ternary int8"), &t, &opts, &x, Some(&scales)),
            )
        }
    };
    let show = |r: &Result<Report, String>, same: Option<&String>| match (r, same) {
        (Ok(_), Some(s)) => format!("the graph checked for {s}"),
        (Ok(r), None) => format!(
            "isolated {:.1e} chained {:.1e} (lower {:.1} s, compile {:.1} s, reference {:.1} s)",
            r.isolated, r.chained, r.lower_s, r.compile_s, r.reference_s
        ),
        (Err(_), _) => "error".to_string(),
    };
    let line = format!(
        "{name} at {size}{}: float {}; ternary {}; int8 {}; {:.1} s",
        if narrow { format!(", filters/{NARROW}") } else { String::new() },
        show(&float, None),
        show(&ternary, same.as_ref()),
        show(&int8, same.as_ref()),
        start.elapsed().as_secs_f64()
    );
    let expected = UNSUPPORTED.iter().find(|u| u.0 == name);
    let mut failures = Vec::new();
    for r in [float, ternary, int8] {
        match (r, expected) {
            (Ok(_), None) => {}
            (Err(e), Some((_, why))) if e.contains(why) => {}
            (Ok(_), Some(_)) => failures.push(format!("{name} runs: remove it from UNSUPPORTED")),
            (Err(e), _) => failures.push(e),
        }
    }
    (line, failures)
}

// ---------------------------------------------------------------------------
// Single ops on edge shapes

fn net(w: usize, h: usize, c: usize, body: &str) -> String {
    format!("[net]\nwidth={w}\nheight={h}\nchannels={c}\n\n{body}")
}

fn conv(filters: usize, size: usize, stride: usize, pad: usize, extra: &str) -> String {
    format!(
        "[convolutional]\nbatch_normalize=1\nfilters={filters}\nsize={size}\nstride={stride}\n\
         pad={pad}\n{extra}\n"
    )
}

/// Float, ternarized per channel (table and unrolled forms), with vectors on and off.
fn compare_all_forms(what: &str, g: &Graph) {
    for vectors in [true, false] {
        let opts = LowerOptions { vectors, tile: 6, ..Default::default() };
        compare(&format!("{what}, float, vectors {vectors}"), g, &opts);
        for form in [TernaryKernel::Table, TernaryKernel::Unrolled] {
            let t = ternarized(g.clone(), Scope::Channel);
            let opts = LowerOptions { vectors, tile: 6, ternary: form, ..Default::default() };
            compare(&format!("{what}, ternary {form:?}, vectors {vectors}"), &t, &opts);
        }
    }
}

/// Every activation Darknet knows, as a convolution's epilogue (vector and scalar
/// paths: 13 columns with tiles of 6), a shortcut's, scale_channels', sam's and a
/// connected layer's, on inputs spread over [−30, 30) so every branch (mish's ±20
/// thresholds, plse's ±4, stair's parity, ...) is taken.
#[test]
fn every_activation() {
    for name in Activation::all_names() {
        let act = format!("activation={name}");
        let body = [
            // wide pre-activations: no batchnorm, weights scaled up below
            format!("[convolutional]\nfilters=5\nsize=3\nstride=1\npad=1\n{act}\n\n"), // 0
            conv(5, 1, 1, 0, "activation=linear"),                                     // 1
            format!("[shortcut]\nfrom=0\n{act}\n\n"),                                  // 2
            "[avgpool]\n\n".to_string(),                                               // 3
            format!("[scale_channels]\nfrom=1\n{act}\n\n"),                            // 4
            format!("[sam]\nfrom=1\n{act}\n\n"),                                       // 5
            format!("[connected]\noutput=7\n{act}\n\n"),                               // 6
        ]
        .concat();
        let mut g = graph("act.cfg", &net(13, 5, 3, &body), 5);
        g.params.layer_mut(0).weights.iter_mut().for_each(|w| *w *= 8.0);
        g.params.layer_mut(6).weights.iter_mut().for_each(|w| *w *= 4.0);
        let x = input(&g, 9, -30.0, 30.0);
        let check = |what: String, g: &Graph, opts: &LowerOptions| {
            try_compare(&what, g, opts, &x, None).unwrap_or_else(|e| panic!("{e}"));
        };
        for vectors in [true, false] {
            let opts = LowerOptions { vectors, tile: 6, ..Default::default() };
            check(format!("{name}, float, vectors {vectors}"), &g, &opts);
            let t = ternarized(g.clone(), Scope::Channel);
            check(format!("{name}, ternary, vectors {vectors}"), &t, &opts);
        }
    }
}

/// The formulas, value by value against `Activation::apply`: a 1x1 convolution with
/// weight 1 and bias 0 feeds the activation the input as is, so the outputs must be
/// identical (NaN for NaN), including huge values, infinities and the branches' edges.
#[test]
fn activations_bit_for_bit() {
    let mut xs: Vec<f32> = vec![
        0.0,
        -0.0,
        1.0,
        -1.0,
        2.0,
        -2.0,
        3.0,
        -3.0,
        4.0,
        -4.0,
        6.0,
        -6.0,
        20.0,
        -20.0,
        20.5,
        -20.5,
        0.5,
        -0.5,
        1.5,
        2.5,
        3.5,
        -3.5,
        1e-3,
        -1e-3,
        1e-30,
        -1e-30,
        88.0,
        -88.0,
        100.0,
        -100.0,
        1e20,
        -1e20,
        3e38,
        -3e38,
        f32::INFINITY,
        f32::NEG_INFINITY,
        16777217.0,
        9.3e18,
        -9.3e18,
        0.125,
        -7.75,
    ];
    xs.extend((0..200).map(|k| -25.0 + 0.25 * k as f32 + 0.013));
    let n = xs.len();
    for name in Activation::all_names() {
        let act = Activation::from_name(name).unwrap();
        if act.is_channelwise() {
            continue; // not elementwise: see channelwise_activations
        }
        let text = net(
            n,
            1,
            1,
            &format!("[convolutional]\nfilters=1\nsize=1\nstride=1\npad=0\nactivation={name}\n"),
        );
        let mut g = graph("bits.cfg", &text, 1);
        let p = g.params.layer_mut(0);
        p.weights = vec![1.0];
        p.biases = vec![0.0];
        let x = Tensor::from_vec(1, g.input_shape(), xs.clone());
        for vectors in [true, false] {
            let jit = JitModel::compile_with(&g, &LowerOptions { vectors, ..Default::default() }).unwrap();
            let got = &jit.run(&x).unwrap()[0].1.data;
            for (k, (&xi, &y)) in xs.iter().zip(got).enumerate() {
                let want = act.apply(xi);
                // (== : the convolution may turn −0 into +0 before the activation)
                assert!(
                    want == y || (want.is_nan() && y.is_nan()),
                    "{name}({xi:e}) = {want:e} but the JIT gives {y:e} (element {k}, vectors {vectors})"
                );
            }
        }
    }
}

/// normalize_channels, normalize_channels_softmax and _maxval after a convolution, a
/// shortcut and a connected layer (channels not a multiple of 4, odd sizes).
#[test]
fn channelwise_activations() {
    for name in ["normalize_channels", "normalize_channels_softmax", "normalize_channels_softmax_maxval"] {
        let act = format!("activation={name}");
        let body = [
            conv(5, 3, 1, 1, &act),                      // 0
            conv(5, 1, 1, 0, "activation=leaky"),        // 1
            format!("[shortcut]\nfrom=0\n{act}\n\n"),    // 2
            format!("[connected]\noutput=6\n{act}\n\n"), // 3
        ]
        .concat();
        let g = graph("chan.cfg", &net(7, 5, 3, &body), 4);
        compare_all_forms(name, &g);
    }
}

/// Weighted shortcuts (per feature, per channel; normalisation none, relu, softmax)
/// with one and two from-layers of fewer, equal and more channels.
#[test]
fn weighted_shortcuts() {
    for wt in ["per_feature", "per_channel"] {
        for norm in ["none", "relu", "softmax"] {
            let w = format!("weights_type={wt}\nweights_normalization={norm}");
            let body = [
                conv(6, 3, 1, 1, "activation=leaky"),                           // 0
                conv(4, 3, 1, 1, "activation=leaky"),                           // 1
                conv(9, 1, 1, 0, "activation=linear"),                          // 2
                conv(6, 3, 1, 1, "activation=leaky"),                           // 3
                format!("[shortcut]\nfrom=1\n{w}\nactivation=linear\n\n"),      // 4: 4 < 6
                format!("[shortcut]\nfrom=2\n{w}\nactivation=leaky\n\n"),       // 5: 9 > 6
                format!("[shortcut]\nfrom=0, 2, 1\n{w}\nactivation=swish\n\n"), // 6: three
                format!("[shortcut]\nfrom=-7\n{w}\nactivation=logistic\n\n"),   // 7: from 0
            ]
            .concat();
            let mut g = graph("ws.cfg", &net(7, 5, 3, &body), 6);
            // spread the shortcut weights so relu zeroes some and softmax is not flat
            for l in 4..8 {
                let p = g.params.layer_mut(l);
                for (k, v) in p.weights.iter_mut().enumerate() {
                    *v = (k as f32 * 0.77).sin() * 2.0;
                }
            }
            compare_all_forms(&format!("shortcut {wt} {norm}"), &g);
        }
    }
}

/// Original Darknet's strided shortcut: from-layers twice and four times as large
/// (sampled) and half as large (spread), mixed with a same-size one, with and without
/// per-feature weights.
#[test]
fn strided_shortcuts() {
    for w in ["", "weights_type=per_feature\nweights_normalization=softmax\n"] {
        let body = [
            conv(5, 3, 1, 1, "activation=leaky"),                      // 0: 12x8
            conv(7, 3, 2, 1, "activation=leaky"),                      // 1: 6x4
            conv(3, 3, 2, 1, "activation=leaky"),                      // 2: 3x2
            format!("[shortcut]\nfrom=0\n{w}activation=leaky\n\n"),    // 3: 12x8 into 3x2 (x4)
            conv(4, 1, 1, 0, "activation=linear"),                     // 4: 3x2
            "[upsample]\nstride=2\n\n".to_string(),                    // 5: 6x4
            format!("[shortcut]\nfrom=2,1,0\n{w}activation=mish\n\n"), // 6: 3x2 (/2), same, 12x8 (x2)
        ]
        .concat();
        let mut g = graph("ss.cfg", &net(12, 8, 3, &body), 8);
        for l in [3, 6] {
            if let Some(p) = g.params.layers.get_mut(&l) {
                p.weights.iter_mut().enumerate().for_each(|(k, v)| *v = 0.5 + k as f32 * 0.3);
            }
        }
        compare_all_forms(&format!("strided shortcut {w:?}"), &g);
    }
}

/// reorg3d forward and reverse, reverse reorg_old, on odd channel groups and stride 3.
#[test]
fn reorg3d_and_reverse() {
    let cases = [
        (
            "reorg3d stride 2",
            net(
                6,
                4,
                3,
                &[
                    conv(5, 3, 1, 1, "activation=leaky"),
                    "[reorg3d]\nstride=2\n\n".into(),
                    conv(3, 1, 1, 0, "activation=leaky"),
                ]
                .concat(),
            ),
        ),
        (
            "reorg3d stride 3",
            net(9, 6, 2, &[conv(3, 3, 1, 1, "activation=leaky"), "[reorg3d]\nstride=3\n\n".into()].concat()),
        ),
        (
            "reorg3d reverse",
            net(
                5,
                3,
                3,
                &[
                    conv(16, 3, 1, 1, "activation=leaky"),
                    "[reorg3d]\nstride=2\nreverse=1\n\n".into(),
                    conv(3, 3, 1, 1, "activation=leaky"),
                ]
                .concat(),
            ),
        ),
        (
            "reorg reverse",
            net(
                5,
                3,
                3,
                &[
                    conv(12, 3, 1, 1, "activation=leaky"),
                    "[reorg]\nstride=2\nreverse=1\n\n".into(),
                    conv(3, 1, 1, 0, "activation=leaky"),
                ]
                .concat(),
            ),
        ),
        (
            "reorg then reverse",
            net(
                6,
                6,
                3,
                &[
                    conv(8, 3, 1, 1, "activation=leaky"),
                    "[reorg3d]\nstride=2\n\n".into(),
                    "[reorg3d]\nstride=2\nreverse=1\n\n".into(),
                ]
                .concat(),
            ),
        ),
    ];
    for (what, text) in &cases {
        compare_all_forms(what, &graph("reorg.cfg", text, 12));
    }
}

/// scale_channels (per channel, and scale_wh), sam, softmax (groups, temperature),
/// a downsampling upsample and the classifier tail (avgpool, connected, softmax, cost).
#[test]
fn attention_softmax_downsample() {
    let cases = [
        (
            "scale_channels and scale_wh",
            net(
                7,
                5,
                3,
                &[
                    conv(6, 3, 1, 1, "activation=leaky"),                                // 0
                    "[avgpool]\n\n".into(),                                              // 1: [6,1,1]
                    conv(6, 1, 1, 0, "activation=logistic"),                             // 2
                    "[scale_channels]\nfrom=0\nactivation=linear\n\n".into(),            // 3
                    conv(1, 3, 1, 1, "activation=logistic"),                             // 4: [1,5,7]
                    "[scale_channels]\nfrom=3\nscale_wh=1\nactivation=leaky\n\n".into(), // 5
                ]
                .concat(),
            ),
        ),
        (
            "sam",
            net(
                9,
                3,
                3,
                &[
                    conv(5, 3, 1, 1, "activation=leaky"),
                    conv(5, 1, 1, 0, "activation=logistic"),
                    "[sam]\nfrom=0\n\n".into(),
                ]
                .concat(),
            ),
        ),
        (
            "softmax: groups, temperature",
            net(
                5,
                3,
                3,
                &[
                    conv(6, 3, 1, 1, "activation=leaky"),
                    "[softmax]\ngroups=3\n\n".into(),
                    conv(4, 1, 1, 0, "activation=linear"),
                    "[softmax]\ntemperature=0.3\n\n".into(),
                    conv(5, 1, 1, 0, "activation=linear"),
                    "[softmax]\ngroups=5\ntemperature=2.5\n\n".into(),
                ]
                .concat(),
            ),
        ),
        (
            "downsampling upsample",
            net(
                12,
                6,
                3,
                &[
                    conv(5, 3, 1, 1, "activation=leaky"),
                    "[upsample]\nstride=-2\n\n".into(),
                    "[upsample]\nstride=-3\nscale=0.25\n\n".into(),
                ]
                .concat(),
            ),
        ),
        (
            "classifier tail: connected with batchnorm, dropout, softmax, cost",
            net(
                6,
                5,
                3,
                &[
                    conv(7, 3, 2, 1, "activation=leaky"),
                    "[connected]\noutput=10\nbatch_normalize=1\nactivation=leaky\n\n".into(),
                    "[dropout]\nprobability=0.5\n\n".into(),
                    "[connected]\noutput=5\nactivation=linear\n\n".into(),
                    "[softmax]\n\n".into(),
                    "[cost]\n\n".into(),
                ]
                .concat(),
            ),
        ),
        (
            "connected first, input of 1..3 floats a row",
            net(
                3,
                1,
                1,
                "[connected]\noutput=9\nbatch_normalize=1\nactivation=relu\n\n\
                 [connected]\noutput=1\nactivation=logistic\n\n",
            ),
        ),
    ];
    for (what, text) in &cases {
        compare_all_forms(what, &graph("att.cfg", text, 14));
    }
}

/// A connected layer flagged `ternary=1` by a plan (not by the cfg: Darknet has no
/// such key there): the JIT computes TWN codes as the reference does, before folding
/// batchnorm; an all-zero row adds nothing.
#[test]
fn ternary_connected_flag() {
    let text = net(4, 3, 2, "[connected]\noutput=6\nbatch_normalize=1\nactivation=leaky\n\n[connected]\noutput=3\nactivation=linear\n");
    let mut g = graph("tc.cfg", &text, 21);
    for i in 0..2 {
        let node = g.layers[i];
        assert!(g.g[node].op.set_ternary(true));
    }
    // row 2 of layer 0 all zero: below every threshold
    g.params.layer_mut(0).weights[2 * 24..3 * 24].iter_mut().for_each(|w| *w = 0.0);
    compare("ternary-flagged connected", &g, &LowerOptions::default());
}
