//! Every bundled cfg runs end to end at a small input size with random weights:
//! no error, finite outputs, and heads of the shape the cfg implies.

use std::path::{Path, PathBuf};

use ternc_frontend::{init::init, parse_cfg_text};
use ternc_ir::Op;
use ternc_runtime::{Reference, Tensor};

#[test]
fn every_bundled_cfg_runs_at_a_small_size() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models");
    let mut ran = 0;
    for dir in ["darknet", "darknet-twn"] {
        let mut paths: Vec<PathBuf> =
            std::fs::read_dir(root.join(dir)).unwrap().map(|e| e.unwrap().path()).collect();
        paths.sort();
        for path in paths.into_iter().filter(|p| p.extension().is_some_and(|e| e == "cfg")) {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            // large-stride models (P5, 5 heads) need a bigger minimum input
            let size = if name.contains("p5") || name.contains("_5l") { 256 } else { 128 };
            let text = ternc_frontend::with_input_size(&std::fs::read_to_string(&path).unwrap(), size, size);
            let mut g = parse_cfg_text(Path::new(&name), &text).unwrap_or_else(|e| panic!("{e}")).graph;
            g.params = init(&g, 1);
            let s = g.input_shape();
            let input = Tensor::from_vec(1, s, (0..s.numel()).map(|i| (i % 255) as f32 / 255.0).collect());
            let heads = Reference::new(&g, 2).unwrap().run(&input, |d| {
                assert!(
                    d.output.data.iter().all(|v| v.is_finite()),
                    "{name}: layer {} is not finite",
                    d.layer
                );
            });
            let heads = heads.unwrap_or_else(|e| panic!("{name}: {e}"));
            let expected = g.heads();
            if expected.is_empty() {
                assert_eq!(heads.len(), 1, "{name}: classifiers return their last layer");
            } else {
                assert_eq!(heads.iter().map(|h| h.0).collect::<Vec<_>>(), expected, "{name}");
            }
            for (layer, t) in &heads {
                let node = g.layer(*layer);
                assert_eq!(t.shape, node.shape, "{name}: head {layer}");
                if let Op::Yolo(y) = &node.op {
                    assert_eq!(t.shape.c, y.n() * (y.classes + 5));
                    // objectness went through the logistic
                    let obj = &t.data[4 * t.shape.plane()..5 * t.shape.plane()];
                    assert!(obj.iter().all(|&v| (0.0..=1.0).contains(&v)), "{name}");
                }
            }
            ran += 1;
        }
    }
    assert_eq!(ran, 37);
}
