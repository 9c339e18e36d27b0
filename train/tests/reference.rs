//! Inference-mode forward equals the reference interpreter on the bundled cfgs.

mod common;

use common::uniform;
use ternc_runtime::{Reference, Tensor};
use ternc_train::Network;

fn small(path: &str, size: usize) -> ternc_ir::Graph {
    let text =
        std::fs::read_to_string(format!("{}/../models/darknet/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let text: String = text
        .lines()
        .map(|l| match l.split('=').next().map(str::trim) {
            Some("width") => format!("width={size}"),
            Some("height") => format!("height={size}"),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut g = ternc_frontend::parse_cfg_text(path.as_ref(), &text).unwrap().graph;
    g.params = ternc_frontend::init::init(&g, 3);
    g
}

fn compare(path: &str, size: usize) {
    let g = small(path, size);
    let batch = 2;
    let input = uniform(batch * g.input_shape().numel(), 0.0, 1.0, 4);
    let reference = Reference::new(&g, 2).unwrap();
    let mut want = Vec::new();
    reference
        .run(&Tensor::from_vec(batch, g.input_shape(), input.clone()), |d| want.push(d.output.data.clone()))
        .unwrap();
    let mut net = Network::new(&g, batch).unwrap();
    net.forward(&input, false).unwrap();
    assert_eq!(want.len(), g.num_layers());
    for (i, w) in want.iter().enumerate() {
        let got = net.output(i).unwrap();
        let scale = w.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
        let err = got.iter().zip(w).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            err <= 1e-5 * scale,
            "{path} layer {i} ({}): max error {err} (max |y| {scale})",
            g.layer(i).op.type_name()
        );
    }
}

#[test]
fn yolov3_tiny() {
    compare("yolov3-tiny.cfg", 64);
}

#[test]
fn yolov2_tiny_voc() {
    compare("yolov2-tiny-voc.cfg", 64);
}

#[test]
fn yolov4_tiny() {
    compare("yolov4-tiny.cfg", 64);
}

#[test]
fn reorg_and_upsample_match() {
    let g = common::graph(
        "[net]\nwidth=8\nheight=8\nchannels=3\n[convolutional]\nfilters=4\nsize=3\npad=1\nactivation=leaky\n\
         [reorg]\nstride=2\n[upsample]\nstride=2\nscale=0.5\n[convolutional]\nfilters=3\nsize=3\nstride=2\ndilation=2\npad=1\ngroups=1\nactivation=mish\n",
    );
    let input = uniform(g.input_shape().numel(), 0.0, 1.0, 4);
    let reference = Reference::new(&g, 1).unwrap();
    let mut want = Vec::new();
    reference
        .run(&Tensor::from_vec(1, g.input_shape(), input.clone()), |d| want.push(d.output.data.clone()))
        .unwrap();
    let mut net = Network::new(&g, 1).unwrap();
    net.forward(&input, false).unwrap();
    for (i, w) in want.iter().enumerate() {
        let got = net.output(i).unwrap();
        let err = got.iter().zip(w).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(err <= 1e-5, "layer {i}: {err}");
    }
}

#[test]
fn untrainable_layers_are_errors_naming_the_layer() {
    let g = common::graph("[net]\nwidth=8\nheight=8\nchannels=3\n[convolutional]\nfilters=4\nsize=3\npad=1\nactivation=leaky\n[avgpool]\n");
    let e = Network::new(&g, 1).err().unwrap().to_string();
    assert!(e.contains("layer 1") && e.contains("avgpool"), "{e}");
    let mut g = common::graph(
        "[net]\nwidth=8\nheight=8\nchannels=3\n[convolutional]\nfilters=4\nsize=3\npad=1\nactivation=leaky\n",
    );
    g.params.layers.clear();
    let e = Network::new(&g, 1).err().unwrap().to_string();
    assert!(e.contains("layer 0") && e.contains("weights"), "{e}");
}
