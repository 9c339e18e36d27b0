//! Execution of ternc graphs.
//!
//! [`reference`] is the reference interpreter (the oracle every backend is tested
//! against). To come: the runner for JIT-compiled kernels.

pub mod detect;
pub mod draw;
pub mod image;
pub mod jit;
pub mod npy;
pub mod quant;
pub mod reference;
mod tensor;

pub use reference::{LayerDone, Reference, RunError};
pub use tensor::Tensor;
