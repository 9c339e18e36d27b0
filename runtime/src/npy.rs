//! `.npy` arrays in and out: network inputs and per-layer dumps.

use std::path::Path;

use npyz::WriterBuilder;
use ternc_ir::{InputError, Shape};

use crate::Tensor;

/// Reads a float32 `[n,c,h,w]` (or `[c,h,w]`) array in C order.
pub fn read_tensor(path: &Path) -> Result<Tensor, InputError> {
    let bytes = std::fs::read(path).map_err(|e| InputError::whole(path, format!("cannot read: {e}")))?;
    let bad = |msg: String| InputError::whole(path, msg);
    let npy = npyz::NpyFile::new(&bytes[..])
        .map_err(|e| bad(format!("not a .npy file ({e}): expected a float32 [1,c,h,w] array")))?;
    if npy.order() != npyz::Order::C {
        return Err(bad("array is in Fortran order: expected C order".into()));
    }
    let dims: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let (n, shape) = match dims[..] {
        [n, c, h, w] => (n, Shape::new(c, h, w)),
        [c, h, w] => (1, Shape::new(c, h, w)),
        _ => return Err(bad(format!("array has shape {dims:?}: expected [1,c,h,w]"))),
    };
    if npy.dtype() != npyz::DType::Plain("<f4".parse().expect("valid type string")) {
        return Err(bad(format!("array has dtype {}: expected float32 ('<f4')", npy.dtype().descr())));
    }
    let data: Vec<f32> = npy.into_vec().map_err(|e| bad(format!("cannot read the array data: {e}")))?;
    if data.len() != n * shape.numel() || n == 0 {
        return Err(bad(format!(
            "array holds {} values: expected {} for shape {dims:?}",
            data.len(),
            n * shape.numel()
        )));
    }
    Ok(Tensor::from_vec(n, shape, data))
}

/// The `.npy` bytes of a tensor, shape `[n,c,h,w]`.
pub fn tensor_bytes(t: &Tensor) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(128 + 4 * t.data.len());
    let dims: Vec<u64> = t.dims().iter().map(|&d| d as u64).collect();
    let mut w = npyz::WriteOptions::new().default_dtype().shape(&dims).writer(&mut out).begin_nd()?;
    w.extend(t.data.iter().copied())?;
    w.finish()?;
    Ok(out)
}
