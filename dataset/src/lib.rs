//! Detection data in Darknet's layout, for training and evaluation.
//!
//! - [`paths`]: image lists, the label path Darknet derives from an image path, and
//!   how relative paths are resolved.
//! - [`labels`]: label files (`class cx cy w h` per line, relative to the image).
//! - [`Dataset`]: a `.data` file with its class names and train / valid lists.
//! - [`augment`]: Darknet's `load_data_detection` for YOLO (jitter crop, flip,
//!   hue / saturation / exposure), boxes transformed and filtered as Darknet does.
//! - [`loader`]: batches on worker threads, prefetching, deterministic per seed.
//! - [`synth`]: a synthetic detection data set (shapes on varied backgrounds).
//! - [`map`]: VOC mean average precision (all-point and 11-point).

pub mod augment;
pub mod labels;
pub mod loader;
pub mod map;
pub mod paths;
pub mod synth;

mod dataset;

pub use augment::{Augment, Truth};
pub use dataset::{Dataset, Sample};
pub use labels::Label;
pub use loader::{Batch, Loader, LoaderOptions, LoaderStats, Pending};
pub use map::{evaluate, ClassAp, Detection, GroundTruth, MapReport};
