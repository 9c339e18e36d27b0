//! Errors of the training engine. Each names the Darknet layer it concerns.

/// Why a model cannot be trained, or a step cannot run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TrainError {
    #[error("layer {layer} ({kind}): {why}")]
    Unsupported { layer: usize, kind: &'static str, why: String },
    #[error("layer {layer} ({kind}) has no {what}: load weights (or use random ones) first")]
    MissingParams { layer: usize, kind: &'static str, what: &'static str },
    #[error("layer {layer} ({kind}): {what} holds {got} values, expected {want}")]
    ParamSize { layer: usize, kind: &'static str, what: &'static str, got: usize, want: usize },
    #[error("input holds {got} floats, expected {want} ({n} images of {shape})")]
    InputSize { got: usize, want: usize, n: usize, shape: ternc_ir::Shape },
    #[error("{got} truth lists for {want} images")]
    TruthCount { got: usize, want: usize },
    #[error("image {image}, truth {index}: {why}")]
    Truth { image: usize, index: usize, why: String },
    #[error("layer {layer}: no such layer (the model has {layers})")]
    NoLayer { layer: usize, layers: usize },
    #[error("[net]: {0}")]
    Config(String),
    #[error("[net] batch={batch} is not a multiple of subdivisions={subdivisions}")]
    Batch { batch: usize, subdivisions: usize },
    #[error("layer {layer} ({kind}): the weight transform returned {got} weights, expected {want}")]
    Transform { layer: usize, kind: &'static str, got: usize, want: usize },
}

pub type Result<T, E = TrainError> = std::result::Result<T, E>;
