//! Helpers the JIT's differential tests share: random-weight graphs from cfg text
//! or a bundled model, full ternarization, and cfg snippets.

use std::path::{Path, PathBuf};

use ternc_frontend::{init::init, parse_cfg_text};
use ternc_ir::Graph;
use ternc_passes::spec::Spec;
use ternc_passes::ternarize::{self, Scope};

pub fn graph(name: &str, text: &str, seed: u64) -> Graph {
    let mut g = parse_cfg_text(Path::new(name), text).unwrap_or_else(|e| panic!("{e}\n{text}")).graph;
    g.params = init(&g, seed);
    g
}

pub fn model(file: &str, size: usize) -> Graph {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models").join(file);
    let text = ternc_frontend::with_input_size(&std::fs::read_to_string(&path).unwrap(), size, size);
    graph(file, &text, 7)
}

/// Ternarizes every weight layer (per-layer α), then folds batchnorm.
pub fn ternarized(mut g: Graph, scope: Scope) -> Graph {
    let sel = Spec::parse("all").unwrap().select(&g).unwrap();
    ternarize::run(&mut g, &sel, scope, 0.7).unwrap();
    ternc_passes::fold::run(&mut g).unwrap();
    g
}

pub fn net(w: usize, h: usize, c: usize, body: &str) -> String {
    format!("[net]\nwidth={w}\nheight={h}\nchannels={c}\n\n{body}")
}

pub fn conv(filters: usize, size: usize, stride: usize, pad: usize, extra: &str) -> String {
    format!(
        "[convolutional]\nbatch_normalize=1\nfilters={filters}\nsize={size}\nstride={stride}\n\
         pad={pad}\n{extra}\n"
    )
}
