//! Graph passes over the ternc IR. Each pass is a small named function,
//! `run(&mut Graph, ..) -> Result<Report, String>`, with snapshot tests of the IR dump
//! before and after.
//!
//! - [`spec`]: the layer-selection grammar (`--layers SPEC`, stage plans).
//! - [`ternary`]: the TWN math; [`ternarize`]: the pass that applies it.
//! - [`fold`]: batchnorm folding into weights (float) or per-channel scales (ternary).
//! - [`pack`]: packed 2-bit and base-3 ternary weights, the layout kernels read.
//! - [`memory`]: activation buffers by liveness, with concat elision.
//! - [`plan`]: stage plans (`plan.toml`), shared with training.
//!
//! Shape inference lives in `ternc-ir` (`Op::infer`): the frontend needs it while
//! lowering.

pub mod fold;
pub mod memory;
pub mod pack;
pub mod plan;
pub mod spec;
pub mod ternarize;
pub mod ternary;
