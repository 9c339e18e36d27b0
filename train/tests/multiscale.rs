//! `random=1` multi-scale training: Darknet's size rule, its determinism, and a resized
//! network computing exactly what a network built at that size computes.

mod common;

use ternc_train::multiscale::{size_for, MultiScale, DEFAULT_RESIZE_STEP, RESIZE_EVERY};
use ternc_train::{Kind, Trainer, Twn};

/// yolov3-tiny in small: batchnorm convolutions, maxpool, route with groups, shortcut,
/// upsample, route of two inputs, two `[yolo]` heads.
const YOLO: &str = "[net]\nwidth=64\nheight=64\nchannels=3\nbatch=4\nsubdivisions=2\n\
learning_rate=0.01\nmomentum=0.9\ndecay=0.0005\nburn_in=0\nmax_batches=100\npolicy=constant\n\
[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\nstride=1\npad=1\nactivation=leaky\n\
[maxpool]\nsize=2\nstride=2\n\
[convolutional]\nbatch_normalize=1\nfilters=16\nsize=3\nstride=1\npad=1\nactivation=leaky\n\
[maxpool]\nsize=2\nstride=2\n\
[convolutional]\nbatch_normalize=1\nfilters=16\nsize=3\nstride=1\npad=1\nactivation=leaky\n\
[route]\nlayers=-1\ngroups=2\ngroup_id=1\n\
[convolutional]\nbatch_normalize=1\nfilters=16\nsize=3\nstride=1\npad=1\nactivation=leaky\n\
[shortcut]\nfrom=-3\nactivation=linear\n\
[maxpool]\nsize=2\nstride=2\n\
[convolutional]\nbatch_normalize=1\nfilters=32\nsize=3\nstride=1\npad=1\nactivation=leaky\n\
[convolutional]\nfilters=18\nsize=1\nstride=1\nactivation=linear\n\
[yolo]\nmask=3,4,5\nanchors=4,4, 8,8, 12,12, 16,16, 24,24, 32,32\nclasses=1\nnum=6\nrandom=1\n\
[route]\nlayers=-4\n\
[convolutional]\nbatch_normalize=1\nfilters=8\nsize=1\nstride=1\nactivation=leaky\n\
[upsample]\nstride=2\n\
[route]\nlayers=-1,7\n\
[convolutional]\nfilters=18\nsize=1\nstride=1\nactivation=linear\n\
[yolo]\nmask=0,1,2\nanchors=4,4, 8,8, 12,12, 16,16, 24,24, 32,32\nclasses=1\nnum=6\nrandom=1\n";

/// yolov2 in small: reorg and a `[region]` head.
const REGION: &str = "[net]\nwidth=64\nheight=64\nchannels=3\nbatch=4\nsubdivisions=2\n\
learning_rate=0.01\nmomentum=0.9\ndecay=0.0005\nburn_in=0\nmax_batches=100\npolicy=constant\n\
[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\nstride=1\npad=1\nactivation=leaky\n\
[maxpool]\nsize=2\nstride=2\n\
[convolutional]\nbatch_normalize=1\nfilters=16\nsize=3\nstride=1\npad=1\nactivation=leaky\n\
[maxpool]\nsize=2\nstride=2\n\
[convolutional]\nbatch_normalize=1\nfilters=16\nsize=3\nstride=1\npad=1\nactivation=leaky\n\
[route]\nlayers=-3\n\
[convolutional]\nbatch_normalize=1\nfilters=4\nsize=1\nstride=1\nactivation=leaky\n\
[reorg]\nstride=2\n\
[route]\nlayers=-1,-4\n\
[convolutional]\nfilters=30\nsize=1\nstride=1\nactivation=linear\n\
[region]\nanchors=1,1, 2,2, 3,3, 4,4, 5,5\nclasses=1\ncoords=4\nnum=5\nrandom=1\n";

fn cfg_at(cfg: &str, w: usize, h: usize) -> String {
    ternc_frontend::with_input_size(cfg, w, h)
}

/// A trainer built at `w`×`h` holding exactly `from`'s state: parameters, batchnorm
/// statistics, momentum, `seen`.
fn fresh(cfg: &str, w: usize, h: usize, from: &Trainer) -> Trainer {
    let mut g = common::graph(&cfg_at(cfg, w, h));
    from.write_params(&mut g);
    let mut t = Trainer::new(&g, 2).unwrap();
    t.set_momentum(&from.momentum()).unwrap();
    assert_eq!(t.seen, from.seen);
    t
}

/// Every parameter and optimiser buffer, flattened: equal state means equal vectors.
fn state(t: &Trainer) -> Vec<f32> {
    let mut out = t.momentum();
    for l in &t.net.layers {
        if let Kind::Conv(c) = &l.kind {
            out.extend_from_slice(&c.weights);
            out.extend_from_slice(&c.biases);
            if let Some(bn) = &c.bn {
                out.extend_from_slice(&bn.scales);
                out.extend_from_slice(&bn.rolling_mean);
                out.extend_from_slice(&bn.rolling_variance);
            }
        }
    }
    out
}

/// Runs one forward of the mini-batch `input` through both and asserts every layer has
/// the same shapes and bit-identical outputs.
fn assert_same_forward(a: &mut Trainer, b: &mut Trainer, input: &[f32], train: bool) {
    assert_eq!(a.net.input_shape, b.net.input_shape);
    a.net.forward(input, train).unwrap();
    b.net.forward(input, train).unwrap();
    assert_eq!(a.net.layers.len(), b.net.layers.len());
    for (la, lb) in a.net.layers.iter().zip(&b.net.layers) {
        let i = la.index;
        assert_eq!(la.in_shapes, lb.in_shapes, "layer {i} input shapes");
        assert_eq!(la.out, lb.out, "layer {i} output shape");
        let (ya, yb) = (a.net.output(i).unwrap(), b.net.output(i).unwrap());
        assert_eq!(ya.len(), a.net.batch() * la.out.numel(), "layer {i} buffer");
        assert!(
            ya.iter().zip(yb).all(|(x, y)| x.to_bits() == y.to_bits()),
            "layer {i} ({}) differs",
            la.type_name
        );
    }
}

#[test]
fn darknets_size_rule_by_hand() {
    // round(r·416/32 + 1)·32: Darknet's "+ 1" makes r = 1 pick 448
    assert_eq!(size_for((416, 416), 1.0, 32), (448, 448));
    assert_eq!(size_for((416, 416), 1.4, 32), (608, 608)); // 18.2 + 1 → 19
    assert_eq!(size_for((416, 416), 1.0 / 1.4, 32), (320, 320)); // 9.29 + 1 → 10
    assert_eq!(size_for((416, 416), 0.8, 32), (352, 352)); // 10.4 + 1 → 11
    assert_eq!(size_for((416, 416), 0.9, 32), (416, 416)); // 11.7 + 1 → 13

    // r < 1 that would grow the input keeps the cfg's size
    assert_eq!(size_for((416, 416), 0.99, 32), (416, 416)); // 12.87 + 1 → 14 → 448 > 416
    assert_eq!(size_for((100, 100), 0.95, 32), (100, 100)); // 3.97 → 4 → 128 > 100

    // one draw for both sides; round half away from zero
    assert_eq!(size_for((608, 320), 1.2, 32), (768, 416)); // 23.8 → 24, 13 → 13
    assert_eq!(size_for((80, 80), 1.0, 32), (128, 128)); // 3.5 → 4
    assert_eq!(size_for((416, 416), 1.25, 64), (576, 576)); // 8.125 + 1 → 9
}

#[test]
fn sizes_are_multiples_of_the_step_within_darknets_bounds() {
    let ms = MultiScale::new((416, 416), 1.0, DEFAULT_RESIZE_STEP, 20_000, 7).unwrap().unwrap();
    assert_eq!(ms.coef, 1.4, "random=1 means Darknet's 1.4");
    assert_eq!(ms.max_size(), (608, 608));
    let mut seen = std::collections::BTreeSet::new();
    for it in 0..20_000 {
        let (w, h) = ms.size_at(it);
        assert_eq!(w, h, "one draw for both sides");
        assert_eq!(w % 32, 0, "iteration {it}: {w}");
        assert!((320..=608).contains(&w), "iteration {it}: {w}");
        let r = ms.random_val(it);
        assert!((1.0 / 1.4 - 1e-6..=1.4 + 1e-6).contains(&r), "{r}");
        if (RESIZE_EVERY..19_910).contains(&it) {
            assert_eq!((w, h), size_for((416, 416), r, 32), "iteration {it}");
        } else {
            // the first resize and the last 100 iterations train at the largest size
            assert_eq!((w, h), (608, 608), "iteration {it}");
        }
        seen.insert(w);
    }
    // every multiple of 32 from 320 to 608 occurs, and sizes() lists exactly these
    let all: Vec<usize> = (10..=19).map(|k| k * 32).collect();
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), all);
    assert_eq!(ms.sizes(), all.iter().map(|&d| (d, d)).collect::<Vec<_>>());
    // about half the draws shrink
    let below = (1..2000).filter(|&b| ms.random_val(b * RESIZE_EVERY) < 1.0).count();
    assert!((800..1200).contains(&below), "{below} of 1999 below 1");

    // a non-square input, another coefficient and step
    let ms = MultiScale::new((320, 192), 1.2, 64, 1000, 3).unwrap().unwrap();
    assert_eq!(ms.max_size(), (448, 320)); // 7 → 448, 4.6 → 5 → 320
    let sizes = ms.sizes();
    let mut seen = std::collections::BTreeSet::new();
    for it in 0..5000 {
        let (w, h) = ms.size_at(it);
        assert!(w % 64 == 0 && h % 64 == 0, "iteration {it}: {w}x{h}");
        assert!((320..=448).contains(&w) && (192..=320).contains(&h), "iteration {it}: {w}x{h}");
        assert!(sizes.contains(&(w, h)), "iteration {it}: {w}x{h} not in {sizes:?}");
        seen.insert((w, h));
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), sizes, "every listed size occurs");
}

#[test]
fn sizes_are_deterministic_per_seed_and_iteration() {
    let ms = |seed| MultiScale::new((416, 416), 1.0, 32, 10_000, seed).unwrap().unwrap();
    let (a, b, c) = (ms(5), ms(5), ms(6));
    let run =
        |m: &MultiScale, range: std::ops::Range<usize>| range.map(|it| m.size_at(it)).collect::<Vec<_>>();
    let whole = run(&a, 0..5000);
    assert_eq!(whole, run(&b, 0..5000), "same seed, same sizes");
    assert_ne!(whole, run(&c, 0..5000), "another seed, other sizes");
    // a run resumed at any iteration continues with the sizes of the uninterrupted one
    assert_eq!(&whole[2537..], &run(&b, 2537..5000)[..]);
    // one size per block of 10 iterations, drawn at its first
    for it in 0..5000 {
        assert_eq!(whole[it], whole[it - it % RESIZE_EVERY], "iteration {it}");
        assert_eq!(MultiScale::resizes_at(it), it % RESIZE_EVERY == 0);
    }
    let distinct_blocks = (1..500).filter(|&k| whole[k * 10] != whole[k * 10 - 10]).count();
    assert!(distinct_blocks > 300, "the size should change at most resizes ({distinct_blocks})");
}

#[test]
fn the_schedule_comes_from_the_last_head() {
    let g = common::graph(YOLO);
    let ms = MultiScale::for_graph(&g, 32, 500, 1).unwrap().unwrap();
    assert_eq!((ms.init, ms.coef, ms.resize_step, ms.max_batches), ((64, 64), 1.4, 32, 500));
    // random=0 on the last head (the one Darknet reads): off
    let last_off = YOLO.rsplit_once("random=1").map(|(a, b)| format!("{a}random=0{b}")).unwrap();
    assert!(MultiScale::for_graph(&common::graph(&last_off), 32, 500, 1).unwrap().is_none());
    // random=1.2 is the coefficient itself
    let coef = YOLO.replace("random=1", "random=1.2");
    assert_eq!(MultiScale::for_graph(&common::graph(&coef), 32, 500, 1).unwrap().unwrap().coef, 1.2);
    let g = common::graph(REGION);
    assert_eq!(MultiScale::for_graph(&g, 32, 500, 1).unwrap().unwrap().coef, 1.4);
    // bad settings are errors
    assert!(MultiScale::new((64, 64), 1.0, 0, 500, 1).is_err());
    assert!(MultiScale::new((64, 64), -1.0, 32, 500, 1).is_err());
}

/// A network resized from 64 to 96 (and 128×96) equals one built at that size with
/// the same parameters, layer by layer, in inference and training mode.
fn resized_equals_fresh(cfg: &str) {
    let g = common::graph(cfg);
    let mut t = Trainer::new(&g, 2).unwrap();
    // train a little first, so batchnorm statistics and momentum are not the initial ones
    let (images, truths) = common::random_batch(4, 64, 64, 30);
    t.step(&images, &truths).unwrap();
    for (w, h) in [(96, 96), (128, 96), (32, 32), (64, 64)] {
        t.resize(w, h).unwrap();
        assert_eq!(t.input_size(), (w, h));
        assert_eq!((t.cfg.width, t.cfg.height), (64, 64), "the cfg keeps the initial size");
        let mut f = fresh(cfg, w, h, &t);
        let (input, _) = common::random_batch(2, w, h, 40 + w as u64);
        assert_same_forward(&mut t, &mut f, &input, false);
        assert_same_forward(&mut t, &mut f, &input, true);
        assert_eq!(state(&t), state(&f));
    }
}

#[test]
fn a_resized_yolo_network_equals_a_fresh_one() {
    resized_equals_fresh(YOLO);
}

#[test]
fn a_resized_region_network_equals_a_fresh_one() {
    resized_equals_fresh(REGION);
}

/// Steps at 64, 96, then 64 again on one trainer equal the same steps on trainers
/// built fresh at each size and handed the state: losses, parameters, batchnorm
/// statistics and momentum bit for bit, and a weight transform survives the resizes.
#[test]
fn training_across_sizes_keeps_every_parameter() {
    let g = common::graph(YOLO);
    let mut t = Trainer::new(&g, 2).unwrap();
    t.net.set_weight_transform(2, Some(Box::new(Twn { threshold: 0.7 }))).unwrap();
    let mut reference: Option<Trainer> = None;
    for (k, (w, h)) in [(64, 64), (96, 96), (64, 64), (128, 64)].into_iter().enumerate() {
        t.resize(w, h).unwrap();
        let mut f = match &reference {
            None => Trainer::new(&g, 2).unwrap(),
            Some(r) => fresh(YOLO, w, h, r),
        };
        f.net.set_weight_transform(2, Some(Box::new(Twn { threshold: 0.7 }))).unwrap();
        let (images, truths) = common::random_batch(4, w, h, 50 + k as u64);
        let (a, b) = (t.step(&images, &truths).unwrap(), f.step(&images, &truths).unwrap());
        assert_eq!(a, b, "step {k} at {w}x{h}");
        assert!(a.loss.is_finite());
        assert_eq!(state(&t), state(&f), "after step {k} at {w}x{h}");
        assert!(t.net.conv(2).unwrap().transform.is_some());
        reference = Some(f);
    }
    assert_eq!(t.iteration(), 4);
    // and back at the cfg's size it computes what a fresh network with its parameters does
    t.resize(64, 64).unwrap();
    let mut f = fresh(YOLO, 64, 64, &t);
    f.net.set_weight_transform(2, Some(Box::new(Twn { threshold: 0.7 }))).unwrap();
    let (input, _) = common::random_batch(2, 64, 64, 60);
    assert_same_forward(&mut t, &mut f, &input, false);
}

#[test]
fn a_size_the_model_cannot_take_is_an_error_that_changes_nothing() {
    let g = common::graph(YOLO);
    let mut t = Trainer::new(&g, 1).unwrap();
    // 66 → 33 → 17 at layer 7, → 9 upsampled to 18: the route of both fails (as 100
    // does: 25 against 26); Darknet too needs multiples of the model's stride
    for (w, h) in [(0, 64), (66, 64), (100, 100)] {
        let e = t.resize(w, h).unwrap_err().to_string();
        assert!(e.contains(&format!("at a {w}x{h} input")), "{e}");
        assert_eq!(t.input_size(), (64, 64));
    }
    let (images, truths) = common::random_batch(4, 64, 64, 70);
    t.step(&images, &truths).unwrap();
    // the wrong image size for the current input is an error too
    t.resize(96, 96).unwrap();
    assert!(t.step(&images, &truths).is_err());
}
