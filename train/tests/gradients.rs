//! Finite-difference checks of the backward pass: every layer type, each activation,
//! batchnorm in training mode, and the weight-transform hook.
//!
//! The objective is `J = Σ r·y` over the last layer's output `y` (fixed random `r`);
//! with Darknet's convention the output delta is then `r`, the weight updates are
//! `∂J/∂w` and the input delta is `∂J/∂x`.

mod common;

use common::{close, graph, uniform};
use rand::Rng;
use ternc_train::{Network, WeightTransform};

struct Check {
    net: Network,
    input: Vec<f32>,
    r: Vec<f32>,
    last: usize,
}

impl Check {
    fn new(cfg: &str, batch: usize) -> Check {
        let g = graph(cfg);
        let mut net = Network::new(&g, batch).expect("network");
        net.track_input_delta(true);
        let input = uniform(batch * g.input_shape().numel(), -1.0, 1.0, 7);
        let last = g.num_layers() - 1;
        let r = uniform(batch * g.layer(last).shape.numel(), -1.0, 1.0, 8);
        Check { net, input, r, last }
    }

    fn objective(&mut self) -> f64 {
        self.net.forward(&self.input, true).unwrap();
        let y = self.net.output(self.last).unwrap();
        y.iter().zip(&self.r).map(|(&a, &b)| a as f64 * b as f64).sum()
    }

    /// Runs forward + backward once, then compares sampled weight, bias, scale and input
    /// gradients with central differences.
    fn run(&mut self, eps: f32, samples: usize) {
        self.objective();
        self.net.delta_mut(self.last).unwrap().copy_from_slice(&self.r);
        self.net.backward();
        let mut rng = common::rng(3);
        let mut checked = 0;
        // input
        let dx = self.net.input_delta().unwrap().to_vec();
        for _ in 0..samples {
            let k = rng.gen_range(0..self.input.len());
            let x0 = self.input[k];
            let ok = agrees(dx[k], eps, |e| {
                self.input[k] = x0 + e;
                let jp = self.objective();
                self.input[k] = x0 - e;
                let jm = self.objective();
                self.input[k] = x0;
                (jp - jm) / (2.0 * e as f64)
            });
            assert!(ok.is_ok(), "input[{k}]: backward {} vs numeric {:?}", dx[k], ok);
            checked += 1;
        }
        // parameters of every convolution
        let convs: Vec<usize> = (0..=self.last).filter(|&i| self.net.conv(i).is_some()).collect();
        for &i in &convs {
            let c = self.net.conv(i).unwrap();
            let grads = [
                c.weight_updates.clone(),
                c.bias_updates.clone(),
                c.bn.as_ref().map(|b| b.scale_updates.clone()).unwrap_or_default(),
            ];
            for (which, g) in grads.iter().enumerate() {
                for _ in 0..samples.min(g.len()) {
                    let k = rng.gen_range(0..g.len());
                    let p = |net: &mut Network| -> *mut f32 {
                        let c = net.conv_mut(i).unwrap();
                        match which {
                            0 => &mut c.weights[k],
                            1 => &mut c.biases[k],
                            _ => &mut c.bn.as_mut().unwrap().scales[k],
                        }
                    };
                    // SAFETY: the pointer is used before the network is touched again
                    let v0 = unsafe { *p(&mut self.net) };
                    let ok = agrees(g[k], eps, |e| {
                        unsafe { *p(&mut self.net) = v0 + e };
                        let jp = self.objective();
                        unsafe { *p(&mut self.net) = v0 - e };
                        let jm = self.objective();
                        unsafe { *p(&mut self.net) = v0 };
                        (jp - jm) / (2.0 * e as f64)
                    });
                    assert!(
                        ok.is_ok(),
                        "layer {i} param set {which} [{k}]: backward {} vs numeric {:?}",
                        g[k],
                        ok
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked >= samples, "checked {checked}");
    }
}

/// Whether `analytic` matches the central difference at `eps`, or (when a kink of
/// relu/leaky/maxpool lies within `±eps`) at `eps/10`. Errs with the differences.
fn agrees(analytic: f32, eps: f32, mut fd: impl FnMut(f32) -> f64) -> Result<(), Vec<f64>> {
    let mut seen = Vec::new();
    for e in [eps, eps / 10.0] {
        let n = fd(e);
        if close(analytic as f64, n, 2e-2, 3e-2) {
            return Ok(());
        }
        seen.push(n);
    }
    Err(seen)
}

const NET: &str = "[net]\nwidth=8\nheight=8\nchannels=3\n";

fn conv(filters: usize, size: usize, stride: usize, bn: bool, act: &str) -> String {
    format!(
        "[convolutional]\nfilters={filters}\nsize={size}\nstride={stride}\npad=1\nbatch_normalize={}\nactivation={act}\n",
        bn as u8
    )
}

#[test]
fn convolution_plain_strided_dilated_grouped() {
    let cfg = format!(
        "{NET}{}{}[convolutional]\nfilters=4\nsize=3\nstride=1\npad=1\ndilation=2\nactivation=linear\n\
         [convolutional]\nfilters=4\nsize=3\ngroups=2\nstride_x=2\nstride_y=1\npadding=1\nactivation=linear\n",
        conv(4, 3, 1, false, "linear"),
        conv(6, 3, 2, false, "linear")
    );
    Check::new(&cfg, 2).run(1e-2, 12);
}

#[test]
fn batchnorm_in_training_mode() {
    let cfg = format!("{NET}{}{}", conv(4, 3, 1, true, "linear"), conv(3, 1, 1, true, "linear"));
    Check::new(&cfg, 3).run(1e-2, 12);
}

#[test]
fn activations() {
    for act in ["leaky", "logistic", "relu", "mish", "swish", "relu6", "tanh"] {
        // kinked ones only before batchnorm'd layers: a bias shift moves every value of
        // a channel, and some sit within 1e-5 of the kink
        let second = if ["relu", "leaky", "relu6"].contains(&act) { "linear" } else { act };
        let cfg = format!("{NET}{}{}", conv(4, 3, 1, true, act), conv(3, 1, 1, false, second));
        Check::new(&cfg, 2).run(1e-3, 8);
    }
}

#[test]
fn maxpool_with_darknet_padding() {
    for pool in [
        "[maxpool]\nsize=2\nstride=2\n",
        "[maxpool]\nsize=2\nstride=1\n",
        "[maxpool]\nsize=3\nstride=2\n",
        "[maxpool]\nsize=3\nstride=1\npadding=2\n",
    ] {
        let cfg = format!("{NET}{}{pool}{}", conv(4, 3, 1, false, "linear"), conv(2, 1, 1, false, "linear"));
        Check::new(&cfg, 2).run(1e-3, 10);
    }
}

#[test]
fn route_groups_and_concat() {
    let cfg = format!(
        "{NET}{}[route]\nlayers=-1\ngroups=2\ngroup_id=1\n{}[route]\nlayers=-1,0\n{}",
        conv(4, 3, 1, false, "linear"),
        conv(3, 3, 1, false, "linear"),
        conv(2, 1, 1, false, "linear")
    );
    Check::new(&cfg, 2).run(1e-2, 10);
}

#[test]
fn shortcut() {
    let cfg = format!(
        "{NET}{}{}[shortcut]\nfrom=-2\nactivation=leaky\n{}",
        conv(4, 3, 1, false, "linear"),
        conv(4, 3, 1, false, "linear"),
        conv(2, 1, 1, false, "linear")
    );
    Check::new(&cfg, 2).run(3e-3, 10);
}

#[test]
fn upsample_and_reorg() {
    let cfg = format!(
        "{NET}{}[upsample]\nstride=2\nscale=0.5\n{}[reorg]\nstride=2\n{}",
        conv(3, 3, 2, false, "linear"),
        conv(4, 3, 1, false, "linear"),
        conv(2, 1, 1, false, "linear")
    );
    Check::new(&cfg, 2).run(1e-2, 10);
}

/// `w' = 2·w`: forward must equal the model with doubled weights, and the updates must
/// be the gradient at the transformed weights (straight-through).
struct Double;
impl WeightTransform for Double {
    fn apply(&self, latent: &[f32], _filters: usize, out: &mut Vec<f32>) {
        out.clear();
        out.extend(latent.iter().map(|w| 2.0 * w));
    }
    fn name(&self) -> &str {
        "double"
    }
}

#[test]
fn weight_transform_is_applied_and_straight_through() {
    let cfg = format!("{NET}{}{}", conv(4, 3, 1, false, "leaky"), conv(3, 1, 1, false, "linear"));
    let g = graph(&cfg);
    let input = uniform(2 * g.input_shape().numel(), -1.0, 1.0, 7);
    let r = uniform(2 * g.layer(1).shape.numel(), -1.0, 1.0, 8);
    // a: transform on layer 0
    let mut a = Network::new(&g, 2).unwrap();
    a.set_weight_transform(0, Some(Box::new(Double))).unwrap();
    a.forward(&input, true).unwrap();
    a.delta_mut(1).unwrap().copy_from_slice(&r);
    a.backward();
    // b: the doubled weights stored directly
    let mut g2 = g.clone();
    g2.params.layer_mut(0).weights.iter_mut().for_each(|w| *w *= 2.0);
    let mut b = Network::new(&g2, 2).unwrap();
    b.forward(&input, true).unwrap();
    b.delta_mut(1).unwrap().copy_from_slice(&r);
    b.backward();
    assert_eq!(a.output(1).unwrap(), b.output(1).unwrap());
    assert_eq!(a.conv(0).unwrap().weight_updates, b.conv(0).unwrap().weight_updates);
    assert_eq!(a.conv(0).unwrap().weights, g.params.layer(0).unwrap().weights, "latent weights untouched");
    // a transform on a non-convolution is an error naming the layer
    let cfg = format!("{NET}{}[maxpool]\nsize=2\nstride=2\n", conv(4, 3, 1, false, "leaky"));
    let mut n = Network::new(&graph(&cfg), 1).unwrap();
    let e = n.set_weight_transform(1, Some(Box::new(Double))).unwrap_err().to_string();
    assert!(e.contains("layer 1"), "{e}");
}
