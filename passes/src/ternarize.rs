//! The ternarization pass: TWN weights for the selected layers (and for layers the
//! cfg flags `ternary=1`), per layer or per output channel, with a report of what
//! each layer lost and saved.

use std::collections::BTreeSet;
use std::fmt;

use ternc_ir::{Graph, TernaryParams};

use crate::ternary::twn;

/// One α for the whole layer (the seeds' choice) or one per output channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scope {
    #[default]
    Layer,
    Channel,
}

impl Scope {
    pub fn parse(s: &str) -> Result<Scope, String> {
        match s {
            "layer" => Ok(Scope::Layer),
            "channel" => Ok(Scope::Channel),
            _ => Err(format!("scope '{s}': expected layer or channel")),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scope::Layer => "layer",
            Scope::Channel => "channel",
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LayerReport {
    pub layer: usize,
    pub kind: &'static str,
    pub weights: usize,
    /// Smallest and largest α (equal with per-layer scope).
    pub alpha: (f32, f32),
    /// Share of weights that became 0.
    pub sparsity: f64,
    /// ‖W − αT‖ / ‖W‖.
    pub rel_error: f64,
    pub bytes_fp32: usize,
    /// 2-bit codes (rows padded to 16 codes) plus float scales.
    pub bytes_packed: usize,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Report {
    pub scope: Scope,
    pub threshold: f32,
    pub layers: Vec<LayerReport>,
}

impl Report {
    pub fn bytes_fp32(&self) -> usize {
        self.layers.iter().map(|l| l.bytes_fp32).sum()
    }
    pub fn bytes_packed(&self) -> usize {
        self.layers.iter().map(|l| l.bytes_packed).sum()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "ternarized {} layers (TWN, scope {}, threshold {})",
            self.layers.len(),
            self.scope,
            self.threshold
        )?;
        writeln!(
            f,
            "{:>5}  {:<14} {:>9} {:>19} {:>8} {:>9} {:>10} {:>9}",
            "layer", "type", "weights", "alpha", "zeros", "rel.err", "fp32", "packed"
        )?;
        for l in &self.layers {
            let alpha = if l.alpha.0 == l.alpha.1 {
                format!("{:.5}", l.alpha.0)
            } else {
                format!("{:.4}..{:.4}", l.alpha.0, l.alpha.1)
            };
            writeln!(
                f,
                "{:>5}  {:<14} {:>9} {:>19} {:>7.1}% {:>9.4} {:>10} {:>9}",
                l.layer,
                l.kind,
                l.weights,
                alpha,
                100.0 * l.sparsity,
                l.rel_error,
                l.bytes_fp32,
                l.bytes_packed
            )?;
        }
        let (a, b) = (self.bytes_fp32(), self.bytes_packed());
        write!(
            f,
            "weights of these layers: {a} bytes as fp32, {b} bytes packed ({:.1}x smaller)",
            a as f64 / b.max(1) as f64
        )
    }
}

/// Bytes of a `rows x cols` matrix as 2-bit codes ([`crate::pack::Packed2`]) plus scales.
pub fn packed2_bytes(rows: usize, cols: usize, scales: usize) -> usize {
    rows * crate::pack::Packed2::row_bytes_for(cols) + 4 * scales
}

/// Ternarizes `selected` plus every layer already flagged `ternary=1`.
pub fn run(
    graph: &mut Graph,
    selected: &BTreeSet<usize>,
    scope: Scope,
    threshold: f32,
) -> Result<Report, String> {
    let flagged = (0..graph.num_layers()).filter(|&i| graph.layer(i).op.is_ternary());
    let layers: BTreeSet<usize> = selected.iter().copied().chain(flagged).collect();
    let mut report = Report { scope, threshold, layers: Vec::new() };
    for i in layers {
        let node = graph.layers[i];
        let kind = graph.g[node].op.type_name();
        let rows = graph.g[node]
            .op
            .weight_rows()
            .ok_or_else(|| format!("layer {i} is a {kind} layer: it has no weights to ternarize"))?;
        let params = graph.params.layers.get_mut(&i).filter(|p| !p.weights.is_empty());
        let p = params.ok_or_else(|| format!("layer {i} ({kind}) has no weights loaded"))?;
        let cols = p.weights.len() / rows;
        let groups: Vec<&[f32]> = match scope {
            Scope::Layer => vec![&p.weights[..]],
            Scope::Channel => p.weights.chunks(cols).collect(),
        };
        let parts: Vec<_> = groups.into_iter().map(|w| twn(w, threshold)).collect();
        let codes: Vec<i8> = parts.iter().flat_map(|t| t.codes.iter().copied()).collect();
        let scales: Vec<f32> = parts.iter().map(|t| t.alpha).collect();
        let t = TernaryParams { codes, scales };
        let approx = t.dequantize(rows);
        let err: f64 =
            p.weights.iter().zip(&approx).map(|(w, a)| ((w - a) as f64).powi(2)).sum::<f64>().sqrt();
        let norm: f64 = p.weights.iter().map(|&w| (w as f64).powi(2)).sum::<f64>().sqrt();
        let (lo, hi) =
            t.scales.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &s| (a.min(s), b.max(s)));
        report.layers.push(LayerReport {
            layer: i,
            kind,
            weights: p.weights.len(),
            alpha: (lo, hi),
            sparsity: t.codes.iter().filter(|&&c| c == 0).count() as f64 / t.codes.len().max(1) as f64,
            rel_error: if norm > 0.0 { err / norm } else { 0.0 },
            bytes_fp32: 4 * p.weights.len(),
            bytes_packed: packed2_bytes(rows, cols, t.scales.len()),
        });
        p.ternary = Some(t);
        graph.g[node].op.set_ternary(true);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ternc_ir::*;

    /// One 1x1 conv with 2 output channels over 3 inputs.
    fn graph(weights: Vec<f32>) -> Graph {
        let net = NetConfig { width: 1, height: 1, channels: 3, ..Default::default() };
        let mut g = Graph::new("t.cfg", net, 1);
        let conv = Op::Conv(Conv::pointwise(2));
        let input = g.input;
        g.add_layer(conv, &[input], 1).unwrap();
        *g.params.layer_mut(0) = LayerParams { biases: vec![0.0; 2], weights, ..Default::default() };
        g
    }

    #[test]
    fn per_layer_and_per_channel_by_hand() {
        // rows [1.0, -0.1, 0.6] and [0.2, -0.2, 0.3]: mean|W| = 2.4/6 = 0.4, Δ = 0.28
        // per layer: above Δ 1.0, 0.6, 0.3 → α = 0.63333, codes [1,0,1 | 0,0,1]
        let w = vec![1.0, -0.1, 0.6, 0.2, -0.2, 0.3];
        let mut g = graph(w.clone());
        let r = run(&mut g, &[0].into(), Scope::Layer, 0.7).unwrap();
        let t = g.params.layer(0).unwrap().ternary.clone().unwrap();
        assert_eq!(t.codes, [1, 0, 1, 0, 0, 1]);
        assert!((t.scales[0] - 1.9 / 3.0).abs() < 1e-6);
        assert!(g.layer(0).op.is_ternary());
        assert!((r.layers[0].sparsity - 0.5).abs() < 1e-12);
        // ‖W − αT‖² = 0.3667² + 0.01 + 0.0333² + 0.04 + 0.04 + 0.3333²
        let e: f64 = [1.0 - 1.9 / 3.0, -0.1, 0.6 - 1.9 / 3.0, 0.2, -0.2, 0.3 - 1.9 / 3.0]
            .iter()
            .map(|v: &f64| v * v)
            .sum::<f64>()
            .sqrt();
        let n: f64 = w.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
        assert!((r.layers[0].rel_error - e / n).abs() < 1e-6);
        assert_eq!(r.layers[0].bytes_packed, 2 * 4 + 4);

        // per channel: row 0 mean 0.5667, Δ 0.3967 → 1.0, 0.6 → α 0.8;
        // row 1 mean 0.2333, Δ 0.1633 → all three → α 0.2333, codes [1,-1,1]
        let mut g = graph(w);
        let r = run(&mut g, &[0].into(), Scope::Channel, 0.7).unwrap();
        let t = g.params.layer(0).unwrap().ternary.clone().unwrap();
        assert_eq!(t.codes, [1, 0, 1, 1, -1, 1]);
        assert!((t.scales[0] - 0.8).abs() < 1e-6 && (t.scales[1] - 0.7 / 3.0).abs() < 1e-6);
        assert!((r.layers[0].alpha.0 - 0.7 / 3.0).abs() < 1e-6 && (r.layers[0].alpha.1 - 0.8).abs() < 1e-6);
        assert_eq!(t.dequantize(2), [0.8, 0.0, 0.8, 0.7 / 3.0, -0.7 / 3.0, 0.7 / 3.0]);
    }

    #[test]
    fn layers_without_weights_are_errors() {
        let mut g = graph(vec![]);
        assert!(run(&mut g, &[0].into(), Scope::Layer, 0.7).unwrap_err().contains("no weights loaded"));
    }
}
