//! The Darknet frontend: `.cfg` parsing and lowering into the graph IR, `.weights`
//! reading and writing, random initialisation, and `.data` / `.names` files.
//!
//! ```no_run
//! let model = ternc_frontend::load_cfg("models/darknet/yolov3-tiny.cfg".as_ref()).unwrap();
//! println!("{}", model.graph.dump());
//! ```

pub mod atomic;
pub mod cfg;
pub mod data;
pub mod init;
pub mod lower;
pub mod weights;

use std::path::Path;

pub use lower::Lowered;
use ternc_ir::InputError;

/// Parses and lowers cfg text (`path` is used in messages only).
pub fn parse_cfg_text(path: &Path, text: &str) -> Result<Lowered, InputError> {
    lower::lower(&cfg::parse(path, text)?)
}

/// Reads, parses and lowers a cfg file.
pub fn load_cfg(path: &Path) -> Result<Lowered, InputError> {
    let bytes = std::fs::read(path).map_err(|e| InputError::whole(path, format!("cannot read cfg: {e}")))?;
    parse_cfg_text(path, &String::from_utf8_lossy(&bytes))
}
