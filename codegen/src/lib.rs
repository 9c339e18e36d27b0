//! The kernel program and its backends.
//!
//! Will hold one low-level kernel description (loops with constant bounds, buffer
//! loads/stores, 128-bit vectors, packed ternary weights), produced from the lowered
//! graph, and thin backends that lower or print it: Cranelift (JIT in this process),
//! LLVM via inkwell (object files for x86_64 and aarch64 plus a C header), and C /
//! HLS C++ / OpenCL printers.
