//! Graph passes over the ternc IR.
//!
//! Will hold, each as a small named `fn run(&mut Graph, ..) -> Result<Report>`:
//! batchnorm folding, ternarization by stage plan (layer-selection grammar, TWN per
//! layer or per channel), packed 2-bit / base-3 ternary weights, fusion of the
//! conv + scale + bias + activation epilogue, concat elimination, memory planning and
//! int8 activation calibration. Shape inference lives in `ternc-ir` (`Op::infer`),
//! because the frontend already needs it while lowering.
