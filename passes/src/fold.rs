//! Batchnorm folding: `scale·(x − mean)/sqrt(var + ε) + bias` becomes `a·x + b` per
//! output channel and moves into the layer. Float layers absorb `a` into their
//! weights; ternary layers into their per-channel scale, so the inner sum stays
//! adds and subtracts of `±x`: `y = act(s_o·Σ t·x + b_o)`, `s_o = a_o·α`.

use ternc_ir::{Graph, Op};

/// Darknet's batchnorm epsilon.
pub const BN_EPSILON: f32 = 0.00001;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Report {
    /// Layers whose batchnorm was folded.
    pub folded: Vec<usize>,
}

pub fn run(graph: &mut Graph) -> Result<Report, String> {
    let mut report = Report::default();
    for i in 0..graph.num_layers() {
        let node = graph.layers[i];
        let Some(rows) = graph.g[node].op.weight_rows() else {
            continue;
        };
        let has_bn = matches!(&graph.g[node].op, Op::Conv(c) if c.batch_normalize)
            || matches!(&graph.g[node].op, Op::Connected(c) if c.batch_normalize);
        if !has_bn {
            continue;
        }
        let p =
            graph.params.layers.get_mut(&i).ok_or_else(|| format!("layer {i} has no parameters loaded"))?;
        let bn =
            p.bn.take()
                .ok_or_else(|| format!("layer {i} has batch_normalize=1 but no batchnorm parameters"))?;
        let a: Vec<f32> = (0..rows).map(|o| bn.scales[o] / (bn.variance[o] + BN_EPSILON).sqrt()).collect();
        for ((b, m), a) in p.biases.iter_mut().zip(&bn.mean).zip(&a) {
            *b -= m * a;
        }
        let cols = p.weights.len() / rows;
        for (o, row) in p.weights.chunks_mut(cols.max(1)).enumerate() {
            row.iter_mut().for_each(|w| *w *= a[o]);
        }
        if let Some(t) = &mut p.ternary {
            let alpha = |o: usize| {
                if t.scales.len() == 1 {
                    t.scales[0]
                } else {
                    t.scales[o]
                }
            };
            t.scales = (0..rows).map(|o| a[o] * alpha(o)).collect();
        }
        match &mut graph.g[node].op {
            Op::Conv(c) => c.batch_normalize = false,
            Op::Connected(c) => c.batch_normalize = false,
            _ => unreachable!("weight_rows is only Some for weight layers"),
        }
        report.folded.push(i);
    }
    Ok(report)
}
