//! Execution of ternc graphs.
//!
//! Will hold the reference interpreter (the oracle every backend is tested against),
//! the runner for JIT-compiled kernels, image loading with Darknet's resize and
//! letterbox, YOLO / region decoding, NMS and drawing.
