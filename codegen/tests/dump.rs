//! The kernel program's textual dump for a tiny network (snapshot), and its invariants
//! on the bundled models.

use std::path::{Path, PathBuf};

use ternc_codegen::{lower, prepare, LowerOptions, TernaryKernel};
use ternc_frontend::{init::init, parse_cfg_text};
use ternc_passes::spec::Spec;
use ternc_passes::ternarize::{self, Scope};

/// A ternary 3x3 convolution (table form), a float 1x1 convolution, maxpool,
/// upsample, a concat route and a yolo head over a 6x6x2 input.
const TINY: &str = "[net]
width=6
height=6
channels=2

[convolutional]
batch_normalize=1
filters=3
size=3
stride=1
pad=1
activation=leaky
ternary=1

[maxpool]
size=2
stride=2

[upsample]
stride=2

[route]
layers=-1,0

[convolutional]
filters=6
size=1
stride=1
activation=linear

[yolo]
mask=0
anchors=2,3,4,5
classes=1
num=2
";

#[test]
fn tiny_program_dump() {
    let mut g = parse_cfg_text(Path::new("tiny.cfg"), TINY).unwrap().graph;
    g.params = init(&g, 1);
    let opts = LowerOptions { tile: 4, ternary: TernaryKernel::Table, ..Default::default() };
    let p = lower(&prepare(&g).unwrap(), &opts).unwrap();
    insta::assert_snapshot!(p.to_string());
}

#[test]
fn bundled_models_lower_and_verify() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/darknet");
    for name in ["yolov3-tiny.cfg", "yolov2-tiny-voc.cfg", "yolov2-tiny.cfg", "tiny-yolo-voc.cfg"] {
        let text = std::fs::read_to_string(root.join(name)).unwrap();
        let mut g = parse_cfg_text(Path::new(name), &text).unwrap().graph;
        g.params = init(&g, 1);
        let sel = Spec::parse("all").unwrap().select(&g).unwrap();
        for ternary in [false, true] {
            let mut g = g.clone();
            if ternary {
                ternarize::run(&mut g, &sel, Scope::Layer, 0.7).unwrap();
            }
            let p = lower(&prepare(&g).unwrap(), &LowerOptions::default()).unwrap();
            // lower() verifies; the dump names every layer once
            p.verify().unwrap();
            let dump = p.to_string();
            assert_eq!(p.layers.len(), g.num_layers());
            assert_eq!(dump.matches("\nlayer ").count(), g.num_layers(), "{name}");
            assert_eq!(p.outputs, g.heads(), "{name}");
            let ternary_kernels = p.kernels.iter().filter(|k| k.name.contains("ternary")).count();
            let convs = (0..g.num_layers()).filter(|&i| g.layer(i).op.type_name() == "convolutional").count();
            assert_eq!(ternary_kernels, if ternary { convs } else { 0 }, "{name}");
        }
    }
}

#[test]
fn unfolded_batchnorm_is_the_same_per_channel_epilogue() {
    // lowering the unprepared graph (TWN on the fly, batchnorm unfolded) gives the
    // tables that preparing (TWN, then folding) gives
    let mut g = parse_cfg_text(Path::new("tiny.cfg"), TINY).unwrap().graph;
    g.params = init(&g, 1);
    let opts = LowerOptions { ternary: TernaryKernel::Table, ..Default::default() };
    let raw = lower(&g, &opts).unwrap();
    let folded = lower(&prepare(&g).unwrap(), &opts).unwrap();
    for name in ["conv0.scale", "conv0.bias", "conv0.ternary_taps"] {
        let table =
            |p: &ternc_codegen::Program| p.consts.iter().find(|t| t.name == name).unwrap().data.clone();
        assert_eq!(table(&raw), table(&folded), "{name}");
    }
}
