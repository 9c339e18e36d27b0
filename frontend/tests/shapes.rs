//! Darknet's shape, parameter and BFLOP rules, one layer type at a time, against
//! values computed by hand in the comments.

use std::path::Path;

use ternc_frontend::parse_cfg_text;
use ternc_ir::{Graph, Op};

/// A network `[c,h,w]` input followed by `body`.
fn net(c: usize, h: usize, w: usize, body: &str) -> Graph {
    let text = format!("[net]\nwidth={w}\nheight={h}\nchannels={c}\n\n{body}");
    match parse_cfg_text(Path::new("t.cfg"), &text) {
        Ok(l) => l.graph,
        Err(e) => panic!("{e}\n{text}"),
    }
}

fn err(c: usize, h: usize, w: usize, body: &str) -> String {
    let text = format!("[net]\nwidth={w}\nheight={h}\nchannels={c}\n\n{body}");
    match parse_cfg_text(Path::new("t.cfg"), &text) {
        Ok(_) => panic!("should fail:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn out(g: &Graph, layer: usize) -> [usize; 3] {
    g.layer(layer).shape.to_array()
}

#[test]
fn convolution_shapes() {
    // (32 + 2·1 − 3)/2 + 1 = 16
    let g = net(3, 32, 32, "[convolutional]\nfilters=8\nsize=3\nstride=2\npad=1\nactivation=leaky\n");
    assert_eq!(out(&g, 0), [8, 16, 16]);
    assert_eq!(g.param_count(0), 8 + 8 * 3 * 9);
    assert!((g.bflops(0) - 2.0 * 216.0 * 256.0 / 1e9).abs() < 1e-15);

    // pad=0 uses padding= (default 0): (32 − 5)/1 + 1 = 28
    let g = net(3, 32, 32, "[convolutional]\nfilters=4\nsize=5\n");
    assert_eq!(out(&g, 0), [4, 28, 28]);
    // pad=1 overrides padding=: size/2 = 2 → 32
    let g = net(3, 32, 32, "[convolutional]\nfilters=4\nsize=5\npad=1\npadding=7\n");
    assert_eq!(out(&g, 0), [4, 32, 32]);

    // stride_x/stride_y: w (32+2−3)/2+1 = 16, h 32
    let g = net(3, 32, 32, "[convolutional]\nfilters=4\nsize=3\nstride_x=2\nstride_y=1\npad=1\n");
    assert_eq!(out(&g, 0), [4, 32, 16]);

    // dilation 2 spans 5 and pads 1·2 (Darknet's im2col): (32 + 4 − 5)/1 + 1 = 32
    assert_eq!(out(&net(3, 32, 32, "[conv]\nfilters=4\nsize=3\ndilation=2\npad=1\n"), 0), [4, 32, 32]);
    // no padding: (32 − 5)/2 + 1 = 14; padding=3 with dilation 3 spans 7: (20 + 18 − 7)/1 + 1 = 32
    assert_eq!(out(&net(3, 32, 32, "[conv]\nfilters=4\nsize=3\nstride=2\ndilation=2\n"), 0), [4, 14, 14]);
    assert_eq!(out(&net(3, 20, 20, "[conv]\nfilters=4\nsize=3\ndilation=3\npadding=3\n"), 0), [4, 32, 32]);
    // size=1 forces dilation 1
    let g = net(3, 8, 8, "[conv]\nfilters=4\nsize=1\ndilation=4\n");
    assert!(matches!(&g.layer(0).op, Op::Conv(c) if c.dilation == 1));

    // groups: (8/2)·4·9 weights + 4 biases; depthwise: 1·8·9 + 8 + 3·8 (bn)
    assert_eq!(net(8, 8, 8, "[conv]\nfilters=4\nsize=3\ngroups=2\npad=1\n").param_count(0), 4 + 4 * 4 * 9);
    let g = net(8, 8, 8, "[conv]\nbatch_normalize=1\nfilters=8\nsize=3\ngroups=8\npad=1\n");
    assert_eq!(g.param_count(0), 8 * 4 + 8 * 9);
    assert!((g.bflops(0) - 2.0 * 72.0 * 64.0 / 1e9).abs() < 1e-15);

    // defaults: filters=1 size=1 stride=1 activation=logistic
    let g = net(3, 4, 4, "[convolutional]\n");
    assert_eq!(out(&g, 0), [1, 4, 4]);
    assert!(
        matches!(&g.layer(0).op, Op::Conv(c) if c.activation == ternc_ir::Activation::Logistic && !c.ternary)
    );
    assert!(net(3, 4, 4, "[conv]\nternary=1\n").layer(0).op.is_ternary());
}

#[test]
fn maxpool_shapes() {
    // default padding = size − 1: (32 + 1 − 2)/2 + 1 = 16
    assert_eq!(out(&net(3, 32, 32, "[maxpool]\nsize=2\nstride=2\n"), 0), [3, 16, 16]);
    // yolov3-tiny's size=2 stride=1 keeps 13: (13 + 1 − 2)/1 + 1
    assert_eq!(out(&net(3, 13, 13, "[maxpool]\nsize=2\nstride=1\n"), 0), [3, 13, 13]);
    // odd input: (13 + 1 − 2)/2 + 1 = 7
    assert_eq!(out(&net(3, 13, 13, "[maxpool]\nsize=2\nstride=2\n"), 0), [3, 7, 7]);
    // SPP's size=5 stride=1: (19 + 4 − 5)/1 + 1 = 19
    assert_eq!(out(&net(3, 19, 19, "[maxpool]\nsize=5\nstride=1\n"), 0), [3, 19, 19]);
    // explicit padding=0: (32 − 3)/2 + 1 = 15; size defaults to stride
    assert_eq!(out(&net(3, 32, 32, "[maxpool]\nsize=3\nstride=2\npadding=0\n"), 0), [3, 15, 15]);
    assert_eq!(out(&net(3, 32, 32, "[max]\nstride=4\n"), 0), [3, 8, 8]);
    let g = net(16, 32, 32, "[maxpool]\nsize=2\nstride=2\n");
    assert!((g.bflops(0) - (4 * 16 * 256) as f64 / 1e9).abs() < 1e-15);
}

#[test]
fn pooling_routing_and_resampling() {
    assert_eq!(out(&net(7, 5, 5, "[avgpool]\n"), 0), [7, 1, 1]);

    let body = "[conv]\nfilters=4\nsize=1\n\n[conv]\nfilters=6\nsize=1\n\n[route]\nlayers=-1,0\n\n[route]\nlayers=2\ngroups=2\ngroup_id=1\n";
    let g = net(3, 8, 8, body);
    assert_eq!(out(&g, 2), [10, 8, 8]);
    assert_eq!(out(&g, 3), [5, 8, 8]);
    let ins: Vec<_> = g.inputs(g.layers[2]).iter().map(|&n| g.node(n).layer).collect();
    assert_eq!(ins, [Some(1), Some(0)], "route inputs keep the order of layers=");

    // shortcut: the previous layer's shape even when the from-layer has fewer channels
    let g = net(
        3,
        8,
        8,
        "[conv]\nfilters=4\nsize=1\n\n[conv]\nfilters=6\nsize=1\n\n[shortcut]\nfrom=-2\nactivation=leaky\n",
    );
    assert_eq!(out(&g, 2), [6, 8, 8]);
    assert_eq!(g.param_count(2), 0);
    assert!((g.bflops(2) - 384.0 / 1e9).abs() < 1e-15);
    // weighted shortcut: (n+1) per feature, (n+1)·c per channel
    let g = net(3, 8, 8, "[conv]\nfilters=6\nsize=1\n\n[conv]\nfilters=6\nsize=1\n\n[shortcut]\nfrom=-2\nweights_type=per_channel\n");
    assert_eq!(g.param_count(2), 2 * 6);
    // resnet-style strided shortcut: a 8x8 from-layer added into 4x4
    let g = net(
        3,
        8,
        8,
        "[conv]\nfilters=4\nsize=1\n\n[conv]\nfilters=4\nsize=1\nstride=2\n\n[shortcut]\nfrom=-2\n",
    );
    assert_eq!(out(&g, 2), [4, 4, 4]);

    assert_eq!(out(&net(3, 13, 13, "[upsample]\nstride=2\n"), 0), [3, 26, 26]);
    assert_eq!(out(&net(3, 26, 26, "[upsample]\nstride=-2\n"), 0), [3, 13, 13]);
    assert_eq!(out(&net(3, 13, 13, "[upsample]\n"), 0), [3, 26, 26]);

    assert_eq!(out(&net(64, 26, 26, "[reorg]\nstride=2\n"), 0), [256, 13, 13]);
    assert_eq!(out(&net(256, 13, 13, "[reorg3d]\nstride=2\nreverse=1\n"), 0), [64, 26, 26]);
}

#[test]
fn heads_and_the_rest() {
    let yolo =
        "[conv]\nfilters=21\nsize=1\n\n[yolo]\nmask=0,1,2\nanchors=1,2, 3,4, 5,6, 7,8\nclasses=2\nnum=4\n";
    let g = net(3, 13, 13, yolo);
    assert_eq!(out(&g, 1), [21, 13, 13]);
    let Op::Yolo(y) = &g.layer(1).op else { panic!() };
    assert_eq!((y.n(), y.total, y.anchors.len(), y.scale_x_y), (3, 4, 8, 1.0));
    assert_eq!(g.heads(), [1]);
    // region: num·(classes + coords + 1) = 5·25
    let g = net(3, 13, 13, "[conv]\nfilters=125\nsize=1\n\n[region]\nclasses=20\nnum=5\nanchors=1,1,2,2,3,3,4,4,5,5\nsoftmax=1\n");
    assert_eq!(out(&g, 1), [125, 13, 13]);

    // connected: [out,1,1], out + out·inputs (+ 3·out with bn)
    let g = net(2, 3, 4, "[connected]\noutput=5\nbatch_normalize=1\n");
    assert_eq!(out(&g, 0), [5, 1, 1]);
    assert_eq!(g.param_count(0), 5 + 5 * 24 + 15);
    assert_eq!(g.bflops(0), 0.0, "Darknet counts no BFLOPs for connected layers");

    let g = net(8, 6, 6, "[conv]\nfilters=8\nsize=1\n\n[avgpool]\n\n[scale_channels]\nfrom=-2\n");
    assert_eq!(out(&g, 2), [8, 6, 6]);
    let g = net(8, 6, 6, "[conv]\nfilters=8\nsize=1\n\n[conv]\nfilters=8\nsize=1\n\n[sam]\nfrom=-2\n");
    assert_eq!(out(&g, 2), [8, 6, 6]);
    for body in ["[softmax]\ngroups=2\n", "[dropout]\nprobability=.5\n", "[cost]\ntype=sse\n"] {
        assert_eq!(out(&net(4, 3, 3, body), 0), [4, 3, 3], "{body}");
    }
}

#[test]
fn shape_errors_point_at_the_section() {
    let e = err(3, 8, 8, "[conv]\nfilters=4\nsize=1\n\n[route]\nlayers=-1,-3\n");
    assert!(e.starts_with("t.cfg:11: layers=-3 refers to layer -2"), "{e}");
    let e = err(
        3,
        8,
        8,
        "[conv]\nfilters=4\nsize=1\nstride=2\n\n[conv]\nfilters=4\nsize=1\n\n[route]\nlayers=0,-3\n",
    );
    assert!(e.starts_with("t.cfg:16: layers=-3 refers to layer -1"), "{e}");
    let e = err(
        3,
        8,
        8,
        "[conv]\nfilters=4\nsize=1\n\n[conv]\nfilters=4\nsize=1\nstride=2\n\n[route]\nlayers=-1,0\n",
    );
    assert!(e.starts_with("t.cfg:15: [route]: layer 2: input 1 is 8x8 but input 0 is 4x4"), "{e}");
    let e = err(6, 8, 8, "[conv]\nfilters=4\nsize=3\ngroups=4\n");
    assert!(e.contains("groups=4 does not divide the 6 input channels"), "{e}");
    let e = err(3, 13, 13, "[conv]\nfilters=20\nsize=1\n\n[yolo]\nmask=0,1,2\nnum=3\nclasses=2\n");
    assert!(e.starts_with("t.cfg:10: [yolo]: layer 1: expects 21 input channels"), "{e}");
    let e = err(3, 4, 4, "[conv]\nfilters=4\nsize=7\n");
    assert!(e.contains("does not fit the 4x4 input"), "{e}");
    let e = err(3, 65536, 65536, "[conv]\nfilters=512\nsize=1\n");
    assert!(e.contains("GiB limit"), "{e}");
}

#[test]
fn anchors_as_darknet_tolerates_them() {
    // Too few anchor values: Darknet fills the rest with 0.5; ternc warns.
    let text = "[net]\nwidth=8\nheight=8\nchannels=3\n[conv]\nfilters=14\nsize=1\n[yolo]\nmask=0,1\nnum=2\nclasses=2\nanchors=1,2,3\n";
    let l = parse_cfg_text(Path::new("t.cfg"), text).unwrap();
    let Op::Yolo(y) = &l.graph.layer(1).op else { panic!() };
    assert_eq!(y.anchors, [1.0, 2.0, 3.0, 0.5]);
    assert_eq!(l.warnings.len(), 1);
    assert_eq!(l.warnings[0].line, 12);
    // A mask beyond num (AlexeyAB's cspx-p7-mish.cfg): the written anchor pairs are used.
    let text = "[net]\nwidth=8\nheight=8\nchannels=3\n[conv]\nfilters=14\nsize=1\n[yolo]\nmask=2,3\nnum=2\nclasses=2\nanchors=1,2,3,4,5,6,7,8\n";
    let l = parse_cfg_text(Path::new("t.cfg"), text).unwrap();
    let Op::Yolo(y) = &l.graph.layer(1).op else { panic!() };
    assert_eq!((y.total, y.anchors.len()), (4, 8));
    assert!(l.warnings[0].msg.contains("mask value 3 is not below num=2"), "{}", l.warnings[0]);
    // ... but only when they are there
    let e = parse_cfg_text(Path::new("t.cfg"), &text.replace(",7,8", "")).unwrap_err().to_string();
    assert!(e.starts_with("t.cfg:9: mask value 3 needs anchor pair 3"), "{e}");
}
