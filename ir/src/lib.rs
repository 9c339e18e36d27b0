//! The ternc graph IR.
//!
//! A model is a [`Graph`]: a petgraph DAG whose nodes are ops with typed attributes
//! ([`Op`]) and their inferred output [`Shape`], each remembering the Darknet layer
//! index and cfg line it came from. Parameters live beside the graph in a
//! [`ParamStore`], keyed by Darknet layer index, so passes can rewrite attributes
//! without touching tensors and the store can be swapped (random init, a `.weights`
//! file, a ternarized copy). [`Graph::dump`] prints the stable textual form that
//! snapshot tests compare.

mod activation;
mod dump;
mod error;
mod graph;
mod net;
mod op;
mod params;
mod shape;

pub use activation::Activation;
pub use error::{InputError, Loc, Warning};
pub use graph::{Graph, Node, NodeIndex};
pub use net::{NetConfig, Policy};
pub use op::{
    shortcut_ratio, Connected, Conv, Cost, Dropout, MaxPool, Op, Region, Reorg, ReorgKind, Route, Sam,
    ScaleChannels, Shortcut, ShortcutWeights, Softmax, Upsample, Yolo,
};
pub use params::{BatchNorm, LayerParams, ParamKind, ParamStore, TernaryParams};
pub use shape::{Shape, MAX_TENSOR_BYTES};
