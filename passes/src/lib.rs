//! Graph passes over the ternc IR.
//!
//! Now: the TWN ternarization math ([`ternary`]), which the reference interpreter
//! already needs for `ternary=1` layers. To come, each as a small named
//! `fn run(&mut Graph, ..) -> Result<Report>`: batchnorm folding, ternarization by
//! stage plan (layer-selection grammar, per layer or per channel), packed 2-bit /
//! base-3 ternary weights, epilogue fusion, concat elimination, memory planning and
//! int8 activation calibration. Shape inference lives in `ternc-ir` (`Op::infer`),
//! because the frontend already needs it while lowering.

pub mod ternary;
