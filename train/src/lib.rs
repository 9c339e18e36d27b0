//! Training on the ternc IR: batched forward and backward over the same graph the
//! compiler reads, Darknet's `[yolo]` and `[region]` losses, and its SGD optimiser with
//! the `[net]` learning-rate schedule.
//!
//! Conventions (Darknet's): a delta is `−∂loss/∂output`, the direction that lowers the
//! loss; parameter `*_updates` accumulate `−∂loss/∂parameter` over the images of a
//! batch and double as the momentum buffer (see [`sgd`]).
//!
//! ```text
//! Network::new(&graph, mini_batch)        buffers for one mini-batch
//! Trainer::new(&graph)?.step(images, truths)  forward, losses, backward per
//!                                             subdivision, then one SGD update
//! ```

mod activation;
pub mod conv;
pub mod correction;
pub mod ema;
pub mod error;
pub mod layers;
mod linalg;
pub mod loss;
pub mod multiscale;
pub mod network;
pub mod oscillation;
mod scratch;
pub mod sgd;
pub mod trainer;
pub mod transform;

pub use correction::BatchStatsAverage;
pub use ema::Ema;
pub use error::{Result, TrainError};
pub use loss::{HeadStats, Truth};
pub use multiscale::MultiScale;
pub use network::{Kind, Network, Src};
pub use oscillation::FlipTracker;
pub use trainer::{StepStats, Trainer};
pub use transform::{Twn, WeightTransform};
