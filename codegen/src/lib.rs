//! The kernel program and its backends.
//!
//! - [`program`]: the one low-level kernel description (loops with constant bounds,
//!   buffer loads/stores at affine indices, scalar arithmetic, constant tables), with a
//!   stable textual dump and a verifier that bounds-checks every access statically.
//! - [`lower`]: graph → program (convolutions float and ternary, maxpool, avgpool, route,
//!   unweighted shortcut, reorg, upsample, yolo and region heads); anything else is
//!   [`CodegenError::Unsupported`].
//! - [`cranelift`]: JIT compilation of a program for the host.
//! - [`llvm`]: LLVM (inkwell) object files for the host, x86_64 and aarch64, with a C
//!   header (`ternc compile`).
//! - [`c`]: the program printed as C99 with the same C API (`ternc compile --target c`).
//! - [`opencl`]: OpenCL C kernels and C host code with the same C API (`--target opencl`).
//! - [`hls`]: Vitis HLS C++, a C-simulation test bench, a Tcl script and a per-layer
//!   report (`--target hls`).

pub mod c;
pub mod cranelift;
mod error;
pub mod hls;
pub mod llvm;
pub mod lower;
pub mod opencl;
pub mod program;

pub use error::CodegenError;
pub use lower::{lower, prepare, LowerOptions, TernaryKernel};
pub use program::Program;
