//! Snapshot tests of the IR dump: any change to lowering shows up as a reviewed diff.

use std::path::PathBuf;

fn dump(rel: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models").join(rel);
    let lowered = ternc_frontend::load_cfg(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(lowered.warnings.is_empty(), "{:?}", lowered.warnings);
    lowered.graph.dump()
}

#[test]
fn yolov3_tiny() {
    insta::assert_snapshot!(dump("darknet/yolov3-tiny.cfg"));
}

#[test]
fn yolov2_voc() {
    insta::assert_snapshot!(dump("darknet/yolov2-voc.cfg"));
}

#[test]
fn yolov4_tiny() {
    insta::assert_snapshot!(dump("darknet/yolov4-tiny.cfg"));
}

#[test]
fn twn_yolov3_tiny_voc_m1() {
    insta::assert_snapshot!(dump("darknet-twn/yolov3-tiny-voc_M1.cfg"));
}
