//! The reference interpreter against hand-computed cases, one op at a time.
//! Every expected value is worked out in the comment beside it.

use std::path::Path;

use ternc_frontend::parse_cfg_text;
use ternc_ir::{BatchNorm, Graph, LayerParams, Shape};
use ternc_runtime::{Reference, Tensor};

fn graph(c: usize, h: usize, w: usize, body: &str) -> Graph {
    let text = format!("[net]\nwidth={w}\nheight={h}\nchannels={c}\n\n{body}");
    parse_cfg_text(Path::new("t.cfg"), &text).unwrap_or_else(|e| panic!("{e}")).graph
}

fn set(g: &mut Graph, layer: usize, biases: &[f32], weights: &[f32]) {
    let p = g.params.layer_mut(layer);
    p.biases = biases.to_vec();
    p.weights = weights.to_vec();
}

fn run_all(g: &Graph, input: Vec<f32>) -> Vec<Vec<f32>> {
    let s = g.input_shape();
    let t = Tensor::from_vec(1, s, input);
    let mut outs = vec![Vec::new(); g.num_layers()];
    Reference::new(g, 1).unwrap().run(&t, |d| outs[d.layer] = d.output.data.clone()).unwrap();
    outs
}

fn last(g: &Graph, input: Vec<f32>) -> Vec<f32> {
    run_all(g, input).pop().unwrap()
}

fn close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "element {i}: {a} vs {b}\n{got:?}\n{want:?}");
    }
}

#[test]
fn conv_1x1_with_bias() {
    // two input channels [1,2,3,4] and [10,20,30,40]; out = 2·a − b + 0.5, then linear
    let mut g = graph(2, 2, 2, "[convolutional]\nfilters=1\nsize=1\nactivation=linear\n");
    set(&mut g, 0, &[0.5], &[2.0, -1.0]);
    close(&last(&g, vec![1., 2., 3., 4., 10., 20., 30., 40.]), &[-7.5, -15.5, -23.5, -31.5]);
}

#[test]
fn conv_3x3_padding_stride_dilation_groups() {
    // all-ones 3x3 kernel, pad 1 over 1..9: sums of each 3x3 neighbourhood
    let mut g = graph(1, 3, 3, "[conv]\nfilters=1\nsize=3\npad=1\nactivation=linear\n");
    set(&mut g, 0, &[0.0], &[1.0; 9]);
    close(&last(&g, (1..=9).map(|v| v as f32).collect()), &[12., 21., 16., 27., 45., 33., 24., 39., 28.]);

    // stride 2: the corners of the above
    let mut g = graph(1, 3, 3, "[conv]\nfilters=1\nsize=3\npad=1\nstride=2\nactivation=linear\n");
    set(&mut g, 0, &[0.0], &[1.0; 9]);
    close(&last(&g, (1..=9).map(|v| v as f32).collect()), &[12., 16., 24., 28.]);

    // dilation 2 with pad=1 (pads 2): taps at −2, 0, +2 on a 5x5 of 1..25;
    // centre output (2,2) sums rows 0,2,4 x cols 0,2,4: 1+3+5+11+13+15+21+23+25 = 117
    let mut g = graph(1, 5, 5, "[conv]\nfilters=1\nsize=3\npad=1\ndilation=2\nactivation=linear\n");
    set(&mut g, 0, &[0.0], &[1.0; 9]);
    let out = last(&g, (1..=25).map(|v| v as f32).collect());
    assert_eq!(out.len(), 25);
    close(&out[12..13], &[117.0]);
    // corner (0,0) only sees taps (0,0),(0,2),(2,0),(2,2): 1+3+11+13 = 28
    close(&out[0..1], &[28.0]);

    // depthwise (groups=2): each channel scaled by its own 1x1 weight
    let mut g = graph(2, 1, 2, "[conv]\nfilters=2\nsize=1\ngroups=2\nactivation=linear\n");
    set(&mut g, 0, &[1.0, 0.0], &[3.0, -2.0]);
    close(&last(&g, vec![1., 2., 5., 7.]), &[4., 7., -10., -14.]);
}

#[test]
fn batchnorm_then_leaky() {
    // y = leaky(scale·(x − mean)/sqrt(var + 1e-5) + bias), weight 1:
    // x = 3: 2·(3 − 1)/sqrt(4.00001) + 0.5 = 2.4999994;  x = −3: 2·(−4)/2.0000025 + 0.5 = −3.4999950 → ·0.1
    let mut g = graph(1, 1, 2, "[conv]\nbatch_normalize=1\nfilters=1\nsize=1\nactivation=leaky\n");
    set(&mut g, 0, &[0.5], &[1.0]);
    g.params.layer_mut(0).bn = Some(BatchNorm { scales: vec![2.0], mean: vec![1.0], variance: vec![4.0] });
    let d = (4.0f32 + 0.00001).sqrt();
    close(&last(&g, vec![3.0, -3.0]), &[2.0 * 2.0 / d + 0.5, 0.1 * (2.0 * -4.0 / d + 0.5)]);
}

#[test]
fn ternary_layers_run_with_twn_weights() {
    // weights [0.1, −0.5, 0.9, 0.3]: mean|W| = 0.45, Δ = 0.315, α = mean(0.5, 0.9) = 0.7
    // → [0, −0.7, 0.7, 0]; inputs all 1 → −0.7 + 0.7 = 0, input [1,2,3,4] → −1.4 + 2.1 = 0.7
    let mut g = graph(4, 1, 1, "[conv]\nfilters=1\nsize=1\nactivation=linear\nternary=1\n");
    set(&mut g, 0, &[0.0], &[0.1, -0.5, 0.9, 0.3]);
    close(&last(&g, vec![1., 2., 3., 4.]), &[0.7]);
    let mut f = graph(4, 1, 1, "[conv]\nfilters=1\nsize=1\nactivation=linear\n");
    set(&mut f, 0, &[0.0], &[0.1, -0.5, 0.9, 0.3]);
    close(&last(&f, vec![1., 2., 3., 4.]), &[0.1 - 1.0 + 2.7 + 1.2]);
}

#[test]
fn maxpool_padding_rules() {
    // size 2 stride 1 (yolov3-tiny's 13→13): padding 1, window starts at 0, the
    // last row/column sees only itself
    let g = graph(1, 3, 3, "[maxpool]\nsize=2\nstride=1\n");
    close(&last(&g, vec![1., 5., 2., 4., 3., 9., 0., 8., 6.]), &[5., 9., 9., 8., 9., 9., 8., 8., 6.]);
    // size 2 stride 2 on 3x3: out 2x2, windows {0,1}x{0,1}, {0,1}x{2}, ...
    let g = graph(1, 3, 3, "[maxpool]\nsize=2\nstride=2\n");
    close(&last(&g, vec![1., 5., 2., 4., 3., 9., 0., 8., 6.]), &[5., 9., 8., 6.]);
    // size 3 stride 1: padding 2 → window starts at −1 (centred); negatives stay
    let g = graph(1, 1, 3, "[maxpool]\nsize=3\nstride=1\n");
    close(&last(&g, vec![-3., -1., -2.]), &[-1., -1., -1.]);
}

#[test]
fn avgpool_route_shortcut() {
    let g = graph(2, 1, 2, "[avgpool]\n");
    close(&last(&g, vec![1., 3., 10., 20.]), &[2., 15.]);

    // route of the input via two 1x1 identity-ish convs, then groups=2 group_id=1
    let body = "[conv]\nfilters=2\nsize=1\nactivation=linear\n\n[route]\nlayers=-1,0\n\n[route]\nlayers=-1\ngroups=2\ngroup_id=1\n";
    let mut g = graph(2, 1, 1, body);
    set(&mut g, 0, &[0.0, 0.0], &[1., 0., 0., 1.]);
    let outs = run_all(&g, vec![7., 8.]);
    close(&outs[1], &[7., 8., 7., 8.]);
    close(&outs[2], &[7., 8.]);

    // shortcut with fewer channels in the from-layer: only the overlap is added
    let body = "[conv]\nfilters=1\nsize=1\nactivation=linear\n\n[conv]\nfilters=2\nsize=1\nactivation=linear\n\n[shortcut]\nfrom=-2\nactivation=leaky\n";
    let mut g = graph(1, 1, 2, body);
    set(&mut g, 0, &[0.0], &[2.0]); // [2, 4]
    set(&mut g, 1, &[0.0, 0.0], &[-10.0, 1.0]); // [−20, −40] and [2, 4]
                                                // channel 0: leaky(−20 + 2, −40 + 4) = [−1.8, −3.6]; channel 1 only activated: [2, 4]
    close(&last(&g, vec![1., 2.]), &[-1.8, -3.6, 2., 4.]);
}

#[test]
fn strided_shortcut_like_original_darknet() {
    // from-layer 4x4 (values 0..15) added into a 2x2 map of zeros: stride 2 picks
    // from[0,0], [0,2], [2,0], [2,2] = 0, 2, 8, 10
    let body = "[conv]\nfilters=1\nsize=1\nactivation=linear\n\n[conv]\nfilters=1\nsize=1\nstride=2\nactivation=linear\n\n[shortcut]\nfrom=-2\n";
    let mut g = graph(1, 4, 4, body);
    set(&mut g, 0, &[0.0], &[1.0]);
    set(&mut g, 1, &[0.0], &[0.0]);
    close(&last(&g, (0..16).map(|v| v as f32).collect()), &[0., 2., 8., 10.]);
}

#[test]
fn upsample_and_reorg() {
    let g = graph(1, 2, 2, "[upsample]\nstride=2\n");
    close(&last(&g, vec![1., 2., 3., 4.]), &[1., 1., 2., 2., 1., 1., 2., 2., 3., 3., 4., 4., 3., 3., 4., 4.]);
    // reverse: sums of 2x2 blocks, times scale 0.5
    let g = graph(1, 2, 4, "[upsample]\nstride=-2\nscale=0.5\n");
    close(&last(&g, vec![1., 2., 3., 4., 5., 6., 7., 8.]), &[7.0, 11.0]);

    // [reorg] stride 2 on [4,2,2] = 0..15 (Darknet's reorg_old order): output flat
    // index (k,j,i) over [4,2,2] reads x as [1,4,4] at (2j + k/2, 2i + k%2), giving
    // k=0: 0,2,8,10  k=1: 1,3,9,11  k=2: 4,6,12,14  k=3: 5,7,13,15
    let g = graph(4, 2, 2, "[reorg]\nstride=2\n");
    assert_eq!(g.layer(0).shape, Shape::new(16, 1, 1));
    let want = [0., 2., 8., 10., 1., 3., 9., 11., 4., 6., 12., 14., 5., 7., 13., 15.];
    close(&last(&g, (0..16).map(|v| v as f32).collect()), &want);
    // [reorg3d] is plain space-to-depth: channel (dy·2 + dx)·c + ch holds x[ch, 2j+dy, 2i+dx]
    let g = graph(1, 2, 2, "[reorg3d]\nstride=2\n");
    close(&last(&g, vec![1., 2., 3., 4.]), &[1., 2., 3., 4.]);
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

#[test]
fn yolo_and_region_activations() {
    // 1 anchor, 1 class, 1x1 grid: entries x, y, w, h, obj, cls
    let body = "[conv]\nfilters=6\nsize=1\nactivation=linear\n\n[yolo]\nmask=0\nnum=1\nanchors=10,14\nclasses=1\nscale_x_y=1.05\n";
    let mut g = graph(1, 1, 1, body);
    set(&mut g, 0, &[0.0; 6], &[1., -1., 0.5, 2., 3., -2.]);
    let s = 1.05f32;
    let xy = |v: f32| sigmoid(v) * s - 0.5 * (s - 1.0);
    close(&last(&g, vec![1.0]), &[xy(1.0), xy(-1.0), 0.5, 2.0, sigmoid(3.0), sigmoid(-2.0)]);

    // region: x, y, w, h, obj, then a softmax over 2 classes
    let body = "[conv]\nfilters=7\nsize=1\nactivation=linear\n\n[region]\nnum=1\nclasses=2\ncoords=4\nsoftmax=1\nanchors=1,1\n";
    let mut g = graph(1, 1, 1, body);
    set(&mut g, 0, &[0.0; 7], &[0.0, 1.0, 0.3, 0.4, -1.0, 1.0, 3.0]);
    let e = (1.0f32).exp() + (3.0f32).exp();
    let want = [0.5, sigmoid(1.0), 0.3, 0.4, sigmoid(-1.0), 1.0f32.exp() / e, 3.0f32.exp() / e];
    close(&last(&g, vec![1.0]), &want);
}

#[test]
fn attention_connected_softmax() {
    // scale_channels: [2,1,1] scales from-layer [2,1,2] channel-wise
    let body = "[conv]\nfilters=2\nsize=1\nactivation=linear\n\n[avgpool]\n\n[scale_channels]\nfrom=-2\n";
    let mut g = graph(1, 1, 2, body);
    set(&mut g, 0, &[0.0, 1.0], &[1.0, 2.0]); // [1, 3], [3, 7] from input [1, 3]
                                              // avg: [2, 5]; out = [2·1, 2·3, 5·3, 5·7]
    close(&last(&g, vec![1., 3.]), &[2., 6., 15., 35.]);

    // sam: elementwise product with the from-layer
    let body = "[conv]\nfilters=1\nsize=1\nactivation=linear\n\n[conv]\nfilters=1\nsize=1\nactivation=linear\n\n[sam]\nfrom=-2\n";
    let mut g = graph(1, 1, 2, body);
    set(&mut g, 0, &[0.0], &[2.0]);
    set(&mut g, 1, &[1.0], &[1.0]);
    close(&last(&g, vec![1., 3.]), &[2. * 3., 6. * 7.]);

    // connected: y = W·x + b over the flattened [2,1,1] input, then relu
    let mut g = graph(2, 1, 1, "[connected]\noutput=2\nactivation=relu\n");
    set(&mut g, 0, &[1.0, -10.0], &[1., 2., 3., 4.]);
    close(&last(&g, vec![1., 1.]), &[4.0, 0.0]);

    // softmax in 2 groups of 2 with temperature 2
    let g = graph(4, 1, 1, "[softmax]\ngroups=2\ntemperature=2\n");
    let (a, b) = ((0.5f32).exp(), (1.5f32).exp());
    close(&last(&g, vec![1., 3., 0., 0.]), &[a / (a + b), b / (a + b), 0.5, 0.5]);
}

#[test]
fn batches_run_image_by_image() {
    let mut g =
        graph(1, 2, 2, "[conv]\nfilters=2\nsize=3\npad=1\nactivation=leaky\n\n[maxpool]\nsize=2\nstride=2\n");
    let p = g.params.layer_mut(0);
    *p = LayerParams {
        ternary: None,
        biases: vec![0.1, -0.2],
        weights: (0..18).map(|i| (i as f32 - 9.0) / 10.0).collect(),
        bn: None,
    };
    let one = |x: Vec<f32>| last(&g, x);
    let (a, b) = (vec![1., -2., 3., 0.5], vec![0., 4., -1., 2.]);
    let t = Tensor::from_vec(2, g.input_shape(), [a.clone(), b.clone()].concat());
    let heads = Reference::new(&g, 2).unwrap().run(&t, |_| {}).unwrap();
    assert_eq!(heads.len(), 1);
    close(heads[0].1.image(0), &one(a));
    close(heads[0].1.image(1), &one(b));
}
