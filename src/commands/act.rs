//! `--act f32|i8` and `--calibrate`: the activation precision of the ternary layers,
//! shared by run, bench, detect, map and compile.

use std::path::{Path, PathBuf};

use ternc_ir::{Graph, InputError};
use ternc_runtime::quant::{self, ActScales};
use ternc_runtime::Tensor;

/// Activation precision of the ternary layers.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Act {
    /// W2A32: float activations.
    #[default]
    F32,
    /// W2A8: each ternary layer's input quantized to int8 (per tensor, symmetric,
    /// calibrated), summed in integers; float layers stay float.
    I8,
}

#[derive(clap::Args, Debug, Clone, Default)]
pub struct ActArgs {
    /// Activation precision of the ternary layers: f32 (W2A32) or i8 (W2A8).
    #[arg(long, value_enum, default_value = "f32")]
    pub act: Act,
    /// Calibration for --act i8: an image, or a directory of images (JPEG/PNG, at most
    /// 64 used). Each ternary layer's int8 step is the largest |input| seen over 127.
    /// Default: 4 random inputs in 0..1.
    #[arg(long, value_name = "IMAGES|DIR")]
    pub calibrate: Option<PathBuf>,
}

/// Calibration images read at most.
const MAX_IMAGES: usize = 64;

/// Random inputs calibrated on without --calibrate.
const RANDOM_INPUTS: usize = 4;

impl ActArgs {
    /// The int8 steps for `--act i8` (printing what was calibrated on), `None` for f32.
    pub fn scales(
        &self,
        graph: &Graph,
        letterbox: bool,
        threads: usize,
    ) -> anyhow::Result<Option<ActScales>> {
        if self.act == Act::F32 {
            if let Some(p) = &self.calibrate {
                return Err(InputError::whole(p, "--calibrate applies to --act i8 only").into());
            }
            return Ok(None);
        }
        let (inputs, from) = match &self.calibrate {
            Some(p) => (calibration_images(p, graph, letterbox)?, p.display().to_string()),
            None => (quant::random_inputs(graph, RANDOM_INPUTS, 1), format!("{RANDOM_INPUTS} random inputs")),
        };
        let scales = quant::calibrate(graph, &inputs, threads)?;
        let n = scales.quantized().count();
        if n == 0 {
            eprintln!("--act i8: the model has no ternary layers, so nothing is quantized");
        } else {
            eprintln!(
                "--act i8: {n} ternary layers take int8 inputs, calibrated on {from} ({} inputs)",
                inputs.len()
            );
        }
        Ok(Some(scales))
    }
}

/// The network inputs of an image or of a directory's images (sorted by name).
fn calibration_images(path: &Path, graph: &Graph, letterbox: bool) -> anyhow::Result<Vec<Tensor>> {
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| InputError::whole(path, format!("cannot read the directory: {e}")))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                    ["jpg", "jpeg", "png", "bmp", "ppm"].contains(&e.to_ascii_lowercase().as_str())
                })
            })
            .collect();
        v.sort();
        v.truncate(MAX_IMAGES);
        if v.is_empty() {
            return Err(InputError::whole(path, "no images (jpg, png, bmp, ppm) to calibrate on").into());
        }
        v
    } else {
        vec![path.to_path_buf()]
    };
    files.iter().map(|f| Ok(super::run::load_input(f, graph, letterbox)?)).collect()
}

/// `max |a − b| / max |b|` per head: how far W2A8 heads are from the float path's.
pub fn head_agreement(int8: &[(usize, Tensor)], float: &[(usize, Tensor)]) -> Vec<(usize, f64)> {
    int8.iter()
        .zip(float)
        .map(|((l, a), (_, b))| {
            let scale = b.data.iter().fold(0f64, |m, &v| m.max(v.abs() as f64)).max(1e-30);
            let diff =
                a.data.iter().zip(&b.data).fold(0f64, |m, (&x, &y)| m.max((x as f64 - y as f64).abs()));
            (*l, diff / scale)
        })
        .collect()
}
