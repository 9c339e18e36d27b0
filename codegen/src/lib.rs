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
//!
//! To come: C / HLS C++ / OpenCL printers of the same program.

pub mod cranelift;
mod error;
pub mod llvm;
pub mod lower;
pub mod program;

pub use error::CodegenError;
pub use lower::{lower, prepare, LowerOptions, TernaryKernel};
pub use program::Program;
