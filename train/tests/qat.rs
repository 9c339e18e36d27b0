//! Ternary QAT and its remedies: the forward of `ternary=1` layers equals the reference
//! interpreter, the straight-through gradient reaches the latent weights, the EMA of
//! the weights follows its formula, code flips are counted, and QC leaves the codes
//! unchanged while correcting scales, biases and batchnorm statistics.

mod common;

use common::{graph, uniform};
use ternc_passes::ternary::ternarize_layer;
use ternc_runtime::{Reference, Tensor};
use ternc_train::ema::{params, warmed_decay};
use ternc_train::oscillation::codes;
use ternc_train::{BatchStatsAverage, Ema, FlipTracker, Network, Trainer, Truth};

const NET: &str = "[net]\nwidth=12\nheight=12\nchannels=3\nbatch=2\nsubdivisions=1\nlearning_rate=0.05\nmomentum=0.9\ndecay=0.0005\nmax_batches=100\npolicy=constant\n";

/// A small detector: conv0 (ternary), conv1 (ternary, batchnorm), conv2 float head.
fn detector() -> String {
    format!(
        "{NET}[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\nstride=1\npad=1\nactivation=leaky\nternary=1\n\
         [convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\nstride=2\npad=1\nactivation=leaky\nternary=1\n\
         [convolutional]\nfilters=21\nsize=1\nstride=1\npad=0\nactivation=linear\n\
         [yolo]\nmask=0,1,2\nanchors=2,2, 4,4, 6,6\nclasses=2\nnum=3\njitter=0\nignore_thresh=.6\nrandom=0\n"
    )
}

fn truths() -> Vec<Vec<Truth>> {
    vec![vec![Truth::new(0, 0.4, 0.5, 0.3, 0.4)], vec![Truth::new(1, 0.6, 0.3, 0.2, 0.2)]]
}

#[test]
fn ternary_forward_equals_the_reference_on_the_stage_cfg() {
    // yolov3-tiny at 64x64 with every convolution but the first and the heads ternary=1,
    // as a stage cfg written by `ternc train` flags them.
    let path = format!("{}/../models/darknet/yolov3-tiny.cfg", env!("CARGO_MANIFEST_DIR"));
    let text = ternc_frontend::with_input_size(&std::fs::read_to_string(&path).unwrap(), 64, 64);
    let mut g = ternc_frontend::parse_cfg_text(path.as_ref(), &text).unwrap().graph;
    let convs: Vec<usize> =
        (0..g.num_layers()).filter(|&i| g.layer(i).op.type_name() == "convolutional").collect();
    for &l in &convs[1..convs.len() - 2] {
        let n = g.layers[l];
        g.g[n].op.set_ternary(true);
    }
    g.params = ternc_frontend::init::init(&g, 9);
    let input = uniform(2 * g.input_shape().numel(), 0.0, 1.0, 4);
    let mut want = Vec::new();
    Reference::new(&g, 2)
        .unwrap()
        .run(&Tensor::from_vec(2, g.input_shape(), input.clone()), |d| want.push(d.output.data.clone()))
        .unwrap();
    let mut net = Network::new(&g, 2).unwrap();
    net.forward(&input, false).unwrap();
    for (i, w) in want.iter().enumerate() {
        let got = net.output(i).unwrap();
        let scale = w.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
        let err = got.iter().zip(w).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(err <= 1e-5 * scale, "layer {i}: max error {err} (max |y| {scale})");
    }
    // ... and the ternary layers really ran ternary: three distinct values per layer.
    let c = net.conv(convs[1]).unwrap();
    let mut v: Vec<f32> = c.forward_weights().to_vec();
    v.sort_by(f32::total_cmp);
    v.dedup();
    assert_eq!(v.len(), 3, "{v:?}");
    assert_eq!(c.forward_weights(), ternarize_layer(&c.weights, 0.7).as_slice());
}

#[test]
fn straight_through_gradient_updates_the_latent_weights() {
    let g = graph(&detector());
    let mut t = Trainer::new(&g, 1).unwrap();
    let input = uniform(2 * g.input_shape().numel(), 0.0, 1.0, 3);
    let latent0 = t.net.conv(0).unwrap().weights.clone();
    let codes0 = ternarize_layer(&latent0, 0.7);
    t.train_minibatch(&input, &truths()).unwrap();
    // The gradient is that of the ternarized weights: the same network with the
    // ternary values stored as plain weights gets the same weight updates.
    let mut g2 = g.clone();
    g2.params.layer_mut(0).weights = codes0.clone();
    g2.params.layer_mut(1).weights = ternarize_layer(&g.params.layer(1).unwrap().weights, 0.7);
    let mut n2 = g2.clone();
    for l in [0, 1] {
        let n = n2.layers[l];
        n2.g[n].op.set_ternary(false);
    }
    let mut t2 = Trainer::new(&n2, 1).unwrap();
    t2.train_minibatch(&input, &truths()).unwrap();
    let (u1, u2) = (&t.net.conv(0).unwrap().weight_updates, &t2.net.conv(0).unwrap().weight_updates);
    assert!(u1.iter().any(|&u| u != 0.0));
    for (a, b) in u1.iter().zip(u2) {
        assert!((a - b).abs() <= 1e-4 * a.abs().max(b.abs()).max(1e-3), "{a} vs {b}");
    }
    // The update moves the latent float weights (not only ±α/0 values).
    t.update();
    let latent1 = &t.net.conv(0).unwrap().weights;
    let moved = latent0.iter().zip(latent1).filter(|(a, b)| a != b).count();
    assert!(moved > latent0.len() / 2, "{moved} of {} latent weights moved", latent0.len());
    assert!(latent1.iter().map(|w| w.to_bits()).collect::<std::collections::BTreeSet<_>>().len() > 3);
}

#[test]
fn ema_follows_its_formula_and_writes_the_average() {
    assert_eq!(warmed_decay(0.9998, 0), 0.1);
    assert!((warmed_decay(0.9998, 10) - 11.0 / 20.0).abs() < 1e-7);
    assert_eq!(warmed_decay(0.9, 1000), 0.9);
    let g = graph(&detector());
    let mut t = Trainer::new(&g, 1).unwrap();
    let input = uniform(2 * g.input_shape().numel(), 0.0, 1.0, 3);
    let mut ema = Ema::new(&t.net, 0.5);
    let mut want = params(&t.net);
    for n in 0..4u64 {
        t.step(&input, &truths()).unwrap();
        ema.update(&t.net);
        let d = warmed_decay(0.5, n) as f64;
        for (s, p) in want.iter_mut().zip(params(&t.net)) {
            *s = (d * *s as f64 + (1.0 - d) * p as f64) as f32;
        }
    }
    assert_eq!(ema.updates(), 4);
    for (a, b) in ema.values().iter().zip(&want) {
        assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0), "{a} vs {b}");
    }
    assert_ne!(ema.values(), params(&t.net).as_slice(), "the average lags the live weights");
    // write_params: the average in a .weights-ready store, layer by layer.
    let mut store = g.params.clone();
    ema.write_params(&t.net, &mut store);
    let w0 = &store.layer(0).unwrap().weights;
    assert_eq!(w0.as_slice(), &ema.values()[..w0.len()]);
    let bn1 = store.layer(1).unwrap().bn.as_ref().unwrap();
    assert!(bn1.variance.iter().all(|v| v.is_finite() && *v > 0.0));
    // restore: a saved average of the wrong length is refused
    assert!(Ema::restore(&t.net, 0.5, 4, ema.values().to_vec()).is_some());
    assert!(Ema::restore(&t.net, 0.5, 4, vec![0.0; 3]).is_none());
}

#[test]
fn flips_are_counted_over_the_window() {
    let g = graph(&detector());
    let mut t = Trainer::new(&g, 1).unwrap();
    let input = uniform(2 * g.input_shape().numel(), 0.0, 1.0, 3);
    let mut tracker = FlipTracker::new(&t.net, &[0, 1, 2], 3);
    // layer 2 is float: only the two ternary layers are tracked
    let tracked = t.net.conv(0).unwrap().weights.len() + t.net.conv(1).unwrap().weights.len();
    t.step(&input, &truths()).unwrap();
    // the codes of the updated weights, as the next forward uses them
    t.net.forward(&input, false).unwrap();
    assert_eq!(tracker.observe(&t.net, 1), 0.0, "nothing flips at the first observation");
    assert_eq!(tracker.len(), tracked);
    // Force flips: negate 5 nonzero codes of layer 0 by negating their latent weights.
    let before = codes(&t.net, &[0, 1]);
    {
        let c = t.net.conv_mut(0).unwrap();
        let mut n = 0;
        for (w, k) in c.weights.iter_mut().zip(&before) {
            if *k != 0 && n < 5 {
                *w = -*w;
                n += 1;
            }
        }
    }
    t.net.forward(&input, false).unwrap();
    let f = tracker.observe(&t.net, 2);
    let after = codes(&t.net, &[0, 1]);
    let changed = before.iter().zip(&after).filter(|(a, b)| a != b).count();
    assert_eq!(changed, 5, "negating a weight negates its code; nothing else moved");
    assert_eq!(f, 5.0 / tracked as f64);
    // Still inside the window at iteration 4, gone at iteration 5.
    assert_eq!(tracker.fraction(4), f);
    assert_eq!(tracker.fraction(5), 0.0);
}

#[test]
fn correction_keeps_the_codes_and_moves_only_scales_biases_and_statistics() {
    let g = graph(&detector());
    let mut t = Trainer::new(&g, 1).unwrap();
    let input = uniform(2 * g.input_shape().numel(), 0.0, 1.0, 3);
    for _ in 0..3 {
        t.step(&input, &truths()).unwrap();
    }
    t.net.forward(&input, false).unwrap();
    let codes0 = codes(&t.net, &[0, 1]);
    let weights0: Vec<Vec<f32>> = (0..3).map(|l| t.net.conv(l).unwrap().weights.clone()).collect();
    let bias0 = t.net.conv(2).unwrap().biases.clone();
    let scales0 = t.net.conv(1).unwrap().bn.as_ref().unwrap().scales.clone();

    t.set_weights_frozen(true);
    let mut stats = BatchStatsAverage::new();
    let mut batch_means = Vec::new();
    for _ in 0..4 {
        t.step_observed(&input, &truths(), |net| {
            stats.observe(net);
            batch_means.push(net.conv(1).unwrap().bn.as_ref().unwrap().mean.clone());
        })
        .unwrap();
    }
    stats.write(&mut t.net);
    assert_eq!(stats.count(), 4);
    for (l, w) in weights0.iter().enumerate() {
        assert_eq!(&t.net.conv(l).unwrap().weights, w, "layer {l}'s weights moved");
    }
    t.net.forward(&input, false).unwrap();
    assert_eq!(codes(&t.net, &[0, 1]), codes0);
    assert_ne!(t.net.conv(2).unwrap().biases, bias0, "biases are trained");
    assert_ne!(t.net.conv(1).unwrap().bn.as_ref().unwrap().scales, scales0, "scales are trained");
    // rolling means = the average of the four batch means
    let bn = t.net.conv(1).unwrap().bn.as_ref().unwrap();
    for (k, &m) in bn.rolling_mean.iter().enumerate() {
        let want = batch_means.iter().map(|b| b[k] as f64).sum::<f64>() / 4.0;
        assert!((m as f64 - want).abs() <= 1e-6 * want.abs().max(1.0), "{m} vs {want}");
    }
}
