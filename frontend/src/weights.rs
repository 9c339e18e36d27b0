//! Darknet `.weights` files: a header (major, minor, revision, images seen), then
//! each layer's float32 arrays in the order the cfg implies (see
//! [`ternc_ir::Op::param_layout`]). Reading checks the size against the cfg exactly.

use std::io;
use std::path::Path;

use ternc_ir::{Graph, InputError, Op, ParamStore};

use crate::atomic::write_atomic;

/// The header ternc writes: Darknet 0.2.0, `seen` as uint64.
pub const WRITE_VERSION: (i32, i32, i32) = (0, 2, 0);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub major: i32,
    pub minor: i32,
    pub revision: i32,
    pub seen: u64,
}

impl Header {
    /// `seen` is a uint64 from version 0.2 on, a uint32 before.
    pub fn seen_is_64bit(major: i32, minor: i32) -> bool {
        major as i64 * 10 + minor as i64 >= 2
    }
    pub fn size(&self) -> usize {
        if Self::seen_is_64bit(self.major, self.minor) {
            20
        } else {
            16
        }
    }
    /// Files written by old Darknet versions store connected weights transposed.
    pub fn transposed(&self) -> bool {
        self.major > 1000 || self.minor > 1000
    }
}

fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// Parses the header; `Err` when the file is too short for one.
pub fn read_header(path: &Path, bytes: &[u8]) -> Result<Header, InputError> {
    let short = |need: usize| {
        InputError::at_offset(
            path,
            bytes.len() as u64,
            format!("file ends inside the Darknet header: expected {need} bytes, found {}", bytes.len()),
        )
    };
    if bytes.len() < 12 {
        return Err(short(12));
    }
    let (major, minor, revision) = (i32_at(bytes, 0), i32_at(bytes, 4), i32_at(bytes, 8));
    let seen = if Header::seen_is_64bit(major, minor) {
        u64::from_le_bytes(bytes.get(12..20).ok_or_else(|| short(20))?.try_into().expect("8 bytes"))
    } else {
        u32::from_le_bytes(bytes.get(12..16).ok_or_else(|| short(16))?.try_into().expect("4 bytes")) as u64
    };
    Ok(Header { major, minor, revision, seen })
}

/// Bytes a complete weights file for `graph` has (with a 0.2 header).
pub fn expected_size(graph: &Graph) -> u64 {
    20 + 4 * graph.total_params() as u64
}

fn read_file(path: &Path) -> Result<Vec<u8>, InputError> {
    std::fs::read(path).map_err(|e| InputError::whole(path, format!("cannot read weights: {e}")))
}

/// Reads a `.weights` file for `graph`. With `prefix = Some(n)` only layers `0..n`
/// are read and anything after them is ignored (like `darknet53.conv.74`); without
/// it the file must hold exactly what the cfg needs.
pub fn read(path: &Path, graph: &Graph, prefix: Option<usize>) -> Result<ParamStore, InputError> {
    let bytes = read_file(path)?;
    read_bytes(path, &bytes, graph, prefix)
}

pub fn read_bytes(
    path: &Path,
    bytes: &[u8],
    graph: &Graph,
    prefix: Option<usize>,
) -> Result<ParamStore, InputError> {
    let header = read_header(path, bytes)?;
    let n = graph.num_layers();
    let limit = match prefix {
        Some(p) if p > n => {
            return Err(InputError::whole(
                path,
                format!("--weights-prefix {p} is more than the {n} layers of {}", graph.name),
            ));
        }
        Some(p) => p,
        None => n,
    };
    let needed = header.size() as u64 + 4 * (0..limit).map(|i| graph.param_count(i) as u64).sum::<u64>();
    let mut store = ParamStore { seen: header.seen, ..Default::default() };
    let mut at = header.size();
    for i in 0..limit {
        let layout = graph.param_layout(i);
        if layout.is_empty() {
            continue;
        }
        let node = graph.layer(i);
        let params = store.layer_mut(i);
        for (kind, count) in layout {
            let need = count * 4;
            let Some(chunk) = bytes.get(at..at + need) else {
                return Err(InputError::at_offset(
                    path,
                    at as u64,
                    format!(
                        "file ends inside layer {i} ({}, cfg line {}) {kind}: expected {count} floats, {} bytes left; the cfg needs {needed} bytes, the file has {} (a truncated file, or a backbone prefix: load it with --weights-prefix N)",
                        node.op.type_name(),
                        node.line,
                        bytes.len() - at,
                        bytes.len()
                    ),
                ));
            };
            let values: Vec<f32> =
                chunk.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))).collect();
            if let Some(bad) = values.iter().position(|v| !v.is_finite()) {
                return Err(InputError::at_offset(
                    path,
                    (at + 4 * bad) as u64,
                    format!(
                        "layer {i} ({}) {kind} holds {}: expected finite floats (corrupt file?)",
                        node.op.type_name(),
                        values[bad]
                    ),
                ));
            }
            *params.get_mut(kind) = values;
            at += need;
        }
        if let (Op::Connected(c), true) = (&node.op, header.transposed()) {
            let inputs = params.weights.len() / c.output;
            params.weights = transpose(&params.weights, inputs, c.output);
        }
    }
    if prefix.is_none() && at != bytes.len() {
        return Err(InputError::at_offset(
            path,
            at as u64,
            format!(
                "{} trailing bytes after the last layer: the cfg needs {needed} bytes, the file has {} (weights for a different cfg?)",
                bytes.len() - at,
                bytes.len()
            ),
        ));
    }
    Ok(store)
}

/// `rows x cols` row-major → `cols x rows`.
fn transpose(a: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; a.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = a[r * cols + c];
        }
    }
    t
}

/// Serialises `graph.params` in Darknet's layout with a 0.2.0 header.
pub fn to_bytes(graph: &Graph) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(expected_size(graph) as usize);
    let (major, minor, revision) = WRITE_VERSION;
    for v in [major, minor, revision] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&graph.params.seen.to_le_bytes());
    for i in 0..graph.num_layers() {
        for (kind, count) in graph.param_layout(i) {
            let values = graph.params.layer(i).and_then(|p| p.get(kind)).unwrap_or(&[]);
            if values.len() != count {
                return Err(io::Error::other(format!(
                    "layer {i} {kind} holds {} floats, the cfg needs {count}",
                    values.len()
                )));
            }
            for v in values {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
    Ok(out)
}

/// Writes `graph.params` to `path` atomically.
pub fn write(path: &Path, graph: &Graph) -> io::Result<()> {
    write_atomic(path, &to_bytes(graph)?)
}
