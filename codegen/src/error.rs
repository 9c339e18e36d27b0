/// Why a graph could not be compiled.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CodegenError {
    /// A layer (or a setting of it) the compiled backends do not implement yet. Never
    /// silently replaced by the reference interpreter.
    #[error("layer {layer} ({op}): {what} is not supported by the compiled backends yet")]
    Unsupported { layer: usize, op: &'static str, what: String },
    #[error("layer {layer} ({kind}) has no {what}: load weights (or use random ones) first")]
    MissingParams { layer: usize, kind: &'static str, what: &'static str },
    /// A kernel program that fails [`crate::Program::verify`], or an inconsistent graph.
    #[error("invalid kernel program: {0}")]
    Invalid(String),
    /// The backend (Cranelift) rejected the code.
    #[error("{backend}: {msg}")]
    Backend { backend: &'static str, msg: String },
}
