//! Threads: a JIT model split across 2, 3 and 4 threads computes the same bits as on
//! one thread (every output element is computed by the same code whatever the
//! split), and the split really happens (parallel kernels exist and the verifier
//! accepts them).

use std::path::{Path, PathBuf};

use ternc_codegen::{LowerOptions, TernaryKernel};
use ternc_frontend::{init::init, parse_cfg_text};
use ternc_ir::Graph;
use ternc_passes::spec::Spec;
use ternc_passes::ternarize::{self, Scope};
use ternc_runtime::jit::JitModel;
use ternc_runtime::{Reference, Tensor};

fn model(file: &str, size: usize) -> Graph {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models").join(file);
    let text = ternc_frontend::with_input_size(&std::fs::read_to_string(&path).unwrap(), size, size);
    let mut g = parse_cfg_text(Path::new(file), &text).unwrap().graph;
    g.params = init(&g, 11);
    g
}

fn ternarized(mut g: Graph) -> Graph {
    let sel = Spec::parse("all").unwrap().select(&g).unwrap();
    ternarize::run(&mut g, &sel, Scope::Channel, 0.7).unwrap();
    g
}

fn input(g: &Graph, n: usize) -> Tensor {
    let s = g.input_shape();
    let data = (0..n * s.numel()).map(|i| ((i as u64 * 2654435761) % 1000) as f32 / 1000.0).collect();
    Tensor::from_vec(n, s, data)
}

fn check(what: &str, g: &Graph, opts: &LowerOptions) {
    let x = input(g, 2);
    let one = JitModel::compile_with(g, opts).unwrap();
    assert!(
        one.program().kernels.iter().filter(|k| k.is_parallel()).count() >= 10,
        "{what}: the convolutions should be parallel"
    );
    assert_eq!(one.threads(), 1);
    let want = one.run(&x).unwrap();
    for threads in [2, 3, 4] {
        let many = JitModel::compile_with(g, opts).unwrap().with_threads(threads).unwrap();
        assert_eq!(many.threads(), threads);
        for _ in 0..2 {
            assert!(many.run(&x).unwrap() == want, "{what}: {threads} threads differ from one");
        }
    }
    // and one thread agrees with the reference interpreter
    let reference = Reference::new(g, 1).unwrap().run(&x, |_| {}).unwrap();
    for ((l, a), (_, b)) in want.iter().zip(&reference) {
        let scale = b.data.iter().fold(1e-30f32, |m, v| m.max(v.abs()));
        let err = a.data.iter().zip(&b.data).fold(0f32, |m, (p, q)| m.max((p - q).abs())) / scale;
        assert!(err < 1e-4, "{what}: head {l} differs from the reference by {err:e}");
    }
}

#[test]
fn yolov3_tiny_threads_agree() {
    let g = model("darknet/yolov3-tiny.cfg", 96);
    check("yolov3-tiny float", &g, &LowerOptions::default());
    let t = ternarized(g);
    check(
        "yolov3-tiny ternary table",
        &t,
        &LowerOptions { ternary: TernaryKernel::Table, ..Default::default() },
    );
    // (unrolled code for yolov3-tiny's 8.8M weights would be huge: the default
    // unrolls only the small layers)
    check("yolov3-tiny ternary auto", &t, &LowerOptions::default());
}

#[test]
fn depthwise_and_grouped_threads_agree() {
    // groups > channels per group: the threads split the groups
    let cfg = "[net]\nwidth=19\nheight=17\nchannels=6\n\n\
               [convolutional]\nfilters=12\nsize=3\nstride=1\npad=1\nactivation=leaky\n\n\
               [convolutional]\nfilters=12\ngroups=12\nsize=3\nstride=2\npad=1\nbatch_normalize=1\nactivation=relu\n\n\
               [convolutional]\nfilters=8\ngroups=2\nsize=1\nstride=1\nactivation=linear\n";
    let mut g = parse_cfg_text(Path::new("grouped.cfg"), cfg).unwrap().graph;
    g.params = init(&g, 5);
    check_small("grouped float", &g);
    check_small("grouped ternary", &ternarized(g));
}

fn check_small(what: &str, g: &Graph) {
    let x = input(g, 1);
    let want = JitModel::compile(g).unwrap().run(&x).unwrap();
    for threads in [2, 5] {
        let got = JitModel::compile(g).unwrap().with_threads(threads).unwrap().run(&x).unwrap();
        assert!(got == want, "{what}: {threads} threads differ from one");
    }
}
