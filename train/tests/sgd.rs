//! The optimiser against hand-computed updates, and the learning-rate schedule.

mod common;

use ternc_ir::{NetConfig, Policy};
use ternc_train::sgd::learning_rate;
use ternc_train::Trainer;

#[test]
fn one_sgd_step_and_momentum_by_hand() {
    // one 1x1 linear convolution: y = w·x + b on 2 pixels, batch 2
    let g = common::graph(
        "[net]\nwidth=2\nheight=1\nchannels=1\nbatch=2\nsubdivisions=1\nlearning_rate=0.1\nmomentum=0.9\ndecay=0.01\n\
         [convolutional]\nfilters=1\nsize=1\nactivation=linear\n",
    );
    let mut t = Trainer::new(&g, 1).unwrap();
    let (w0, b0) = (g.params.layer(0).unwrap().weights[0], g.params.layer(0).unwrap().biases[0]);
    let x = [0.5f32, -1.0, 2.0, 0.25];
    let d = [0.3f32, -0.2, 0.1, 0.4];
    let step = |t: &mut Trainer| {
        t.net.forward(&x, true).unwrap();
        t.net.delta_mut(0).unwrap().copy_from_slice(&d);
        t.net.backward();
        t.update()
    };
    let lr = step(&mut t);
    assert_eq!(lr, 0.1);
    // gradient (ascent) Σδx and Σδ; u = g − decay·batch·w; w += lr/batch·u; u *= momentum
    let gw: f32 = x.iter().zip(&d).map(|(a, b)| a * b).sum();
    let gb: f32 = d.iter().sum();
    let u1 = gw - 0.01 * 2.0 * w0;
    let w1 = w0 + 0.1 / 2.0 * u1;
    let b1 = b0 + 0.1 / 2.0 * gb;
    let c = t.net.conv(0).unwrap();
    assert!((c.weights[0] - w1).abs() < 1e-6, "{} vs {w1}", c.weights[0]);
    assert!((c.biases[0] - b1).abs() < 1e-6);
    assert!((c.weight_updates[0] - 0.9 * u1).abs() < 1e-6);
    // the second step carries momentum
    step(&mut t);
    let u2 = 0.9 * u1 + gw - 0.01 * 2.0 * w1;
    let w2 = w1 + 0.05 * u2;
    let b2 = b1 + 0.05 * (0.9 * gb + gb);
    let c = t.net.conv(0).unwrap();
    assert!((c.weights[0] - w2).abs() < 1e-6, "{} vs {w2}", c.weights[0]);
    assert!((c.biases[0] - b2).abs() < 1e-6);
}

fn net(policy: Policy, burn_in: usize, power: f32, max_batches: usize) -> NetConfig {
    NetConfig { learning_rate: 0.001, policy, burn_in, power, max_batches, ..NetConfig::default() }
}

#[test]
fn schedule_burn_in_steps_poly() {
    let close = |a: f32, b: f32| (a - b).abs() <= 1e-9 + 1e-5 * b.abs();
    let steps = Policy::Steps { steps: vec![200, 300], scales: vec![0.1, 0.5] };
    let n = net(steps, 100, 4.0, 0);
    assert!(close(learning_rate(&n, 0), 0.0));
    assert!(close(learning_rate(&n, 50), 0.001 * 0.0625));
    assert!(close(learning_rate(&n, 100), 0.001));
    assert!(close(learning_rate(&n, 199), 0.001));
    assert!(close(learning_rate(&n, 200), 0.0001));
    assert!(close(learning_rate(&n, 300), 0.00005));
    let n = net(Policy::Poly, 0, 2.0, 1000);
    assert!(close(learning_rate(&n, 250), 0.001 * 0.5625));
    let n = net(Policy::Step { step: 100, scale: 0.5 }, 10, 4.0, 0);
    assert!(close(learning_rate(&n, 5), 0.001 * 0.0625));
    assert!(close(learning_rate(&n, 250), 0.00025));
    let n = net(Policy::Exp { gamma: 0.99 }, 0, 4.0, 0);
    assert!(close(learning_rate(&n, 10), 0.001 * 0.99f32.powi(10)));
    assert!(close(learning_rate(&net(Policy::Constant, 0, 4.0, 0), 77), 0.001));
}

#[test]
fn schedule_from_a_cfg_and_bad_configs() {
    let g = common::graph(
        "[net]\nwidth=2\nheight=1\nchannels=1\nbatch=4\nsubdivisions=2\nlearning_rate=0.01\nburn_in=4\n\
         policy=steps\nsteps=6,8\nscales=.1,.1\nmax_batches=10\n[convolutional]\nfilters=1\nsize=1\nactivation=linear\n",
    );
    let t = Trainer::new(&g, 1).unwrap();
    assert_eq!(t.mini_batch(), 2);
    // the first update is iteration 1 (Darknet counts `seen / batch` after the images)
    assert!((t.next_learning_rate() - 0.01 * (0.25f32).powi(4)).abs() < 1e-9);
    let mut bad = g.clone();
    bad.net.subdivisions = 3;
    assert!(Trainer::new(&bad, 1).err().unwrap().to_string().contains("subdivisions=3"));
    let mut bad = g.clone();
    bad.net.policy = Policy::Poly;
    bad.net.max_batches = 0;
    assert!(Trainer::new(&bad, 1).err().unwrap().to_string().contains("max_batches"));
}
