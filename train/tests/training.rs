//! End to end: a tiny YOLO learns a fixed batch; bad inputs are errors, not panics.

mod common;

use ternc_train::{Trainer, Truth};

const TINY: &str = "[net]\nwidth=32\nheight=32\nchannels=3\nbatch=4\nsubdivisions=2\n\
learning_rate=0.01\nmomentum=0.9\ndecay=0.0005\nburn_in=0\nmax_batches=100\npolicy=constant\n\
[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\nstride=1\npad=1\nactivation=leaky\n\
[maxpool]\nsize=2\nstride=2\n\
[convolutional]\nbatch_normalize=1\nfilters=16\nsize=3\nstride=1\npad=1\nactivation=leaky\n\
[maxpool]\nsize=2\nstride=2\n\
[convolutional]\nbatch_normalize=1\nfilters=16\nsize=3\nstride=1\npad=1\nactivation=leaky\n\
[convolutional]\nfilters=18\nsize=1\nstride=1\nactivation=linear\n\
[yolo]\nmask=0,1,2\nanchors=4,4, 8,8, 16,16\nclasses=1\nnum=3\n";

fn batch() -> (Vec<f32>, Vec<Vec<Truth>>) {
    common::random_batch(4, 32, 32, 21)
}

#[test]
fn loss_decreases_on_a_fixed_batch() {
    let g = common::graph(TINY);
    let mut t = Trainer::new(&g, 2).unwrap();
    let (images, truths) = batch();
    let losses: Vec<f32> = (0..30).map(|_| t.step(&images, &truths).unwrap().loss).collect();
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    let last = losses[25..].iter().sum::<f32>() / 5.0;
    assert!(last < 0.3 * losses[0], "loss did not fall: {losses:?}");
    assert_eq!(t.seen, 120);
    assert_eq!(t.iteration(), 30);
    // the trained parameters go back into a graph
    let mut g2 = g.clone();
    t.write_params(&mut g2);
    assert_eq!(g2.params.seen, 120);
    assert_ne!(g2.params.layer(0).unwrap().weights, g.params.layer(0).unwrap().weights);
    assert_ne!(
        g2.params.layer(0).unwrap().bn.as_ref().unwrap().mean,
        g.params.layer(0).unwrap().bn.as_ref().unwrap().mean
    );
}

#[test]
fn bad_step_inputs_are_errors() {
    let g = common::graph(TINY);
    let mut t = Trainer::new(&g, 1).unwrap();
    let (images, mut truths) = batch();
    assert!(t.step(&images[1..], &truths).is_err());
    assert!(t.step(&images, &truths[1..]).is_err());
    truths[2][1].w = 0.0;
    let e = t.step(&images, &truths).unwrap_err().to_string();
    assert!(e.contains("image 2, truth 1"), "{e}");
    assert_eq!(t.seen, 0, "a rejected step trains nothing");
}

#[test]
fn momentum_round_trips_and_resumes_exactly() {
    let g = common::graph(TINY);
    let (images, truths) = batch();
    // uninterrupted: 4 steps
    let mut a = Trainer::new(&g, 1).unwrap();
    for _ in 0..4 {
        a.step(&images, &truths).unwrap();
    }
    // interrupted after 2: parameters (as a .weights file would hold them) + momentum
    let mut b = Trainer::new(&g, 1).unwrap();
    for _ in 0..2 {
        b.step(&images, &truths).unwrap();
    }
    let m = b.momentum();
    assert!(m.iter().any(|v| *v != 0.0), "momentum is carried between updates");
    let mut g2 = g.clone();
    b.write_params(&mut g2);
    let mut c = Trainer::new(&g2, 1).unwrap();
    assert_eq!(c.iteration(), 2);
    assert!(c.set_momentum(&m[1..]).is_err());
    c.set_momentum(&m).unwrap();
    assert_eq!(c.momentum(), m);
    for _ in 0..2 {
        c.step(&images, &truths).unwrap();
    }
    let (mut ga, mut gc) = (g.clone(), g.clone());
    a.write_params(&mut ga);
    c.write_params(&mut gc);
    assert_eq!(ga.params, gc.params, "resumed training differs from the uninterrupted run");
    assert_eq!(a.momentum(), c.momentum());
}
