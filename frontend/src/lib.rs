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

/// The cfg text with the network input size set: the `width=` and `height=` lines
/// of `[net]` rewritten, every other line as it was (for running a model smaller).
pub fn with_input_size(text: &str, w: usize, h: usize) -> String {
    let mut in_net = false;
    text.lines()
        .map(|l| {
            let key: String = l.chars().filter(|c| !c.is_whitespace()).collect();
            if key.starts_with('[') {
                in_net = key.starts_with("[net]") || key.starts_with("[network]");
            }
            match key.split('=').next() {
                Some("width") if in_net => format!("width={w}\n"),
                Some("height") if in_net => format!("height={h}\n"),
                _ => format!("{l}\n"),
            }
        })
        .collect()
}

/// Reads, parses and lowers a cfg file.
pub fn load_cfg(path: &Path) -> Result<Lowered, InputError> {
    let bytes = std::fs::read(path).map_err(|e| InputError::whole(path, format!("cannot read cfg: {e}")))?;
    parse_cfg_text(path, &String::from_utf8_lossy(&bytes))
}

#[cfg(test)]
mod tests {
    #[test]
    fn input_size_changes_only_the_net_section() {
        let text = "[net]\n width = 416\nheight=416\nchannels=3\n[convolutional]\nwidth=7\n";
        let got = super::with_input_size(text, 64, 32);
        assert_eq!(got, "[net]\nwidth=64\nheight=32\nchannels=3\n[convolutional]\nwidth=7\n");
    }
}
