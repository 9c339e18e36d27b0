//! Parameters, stored beside the graph and keyed by Darknet layer index.

use std::collections::BTreeMap;
use std::fmt;

/// The arrays a Darknet layer may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ParamKind {
    Biases,
    Scales,
    RollingMean,
    RollingVariance,
    Weights,
}

impl fmt::Display for ParamKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParamKind::Biases => "biases",
            ParamKind::Scales => "scales",
            ParamKind::RollingMean => "rolling_mean",
            ParamKind::RollingVariance => "rolling_variance",
            ParamKind::Weights => "weights",
        })
    }
}

/// Batchnorm parameters of one layer: `y = scale·(x − mean)/sqrt(var + ε) + bias`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BatchNorm {
    pub scales: Vec<f32>,
    pub mean: Vec<f32>,
    pub variance: Vec<f32>,
}

/// A layer's weights in ternary form: `w[o][i] = scales[o or 0] · codes[o][i]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TernaryParams {
    /// −1, 0 or +1 per weight, in the layout of `LayerParams::weights`.
    pub codes: Vec<i8>,
    /// One scale for the layer, or one per output channel.
    pub scales: Vec<f32>,
}

impl TernaryParams {
    /// The weights these codes stand for, `rows` output channels.
    pub fn dequantize(&self, rows: usize) -> Vec<f32> {
        let cols = self.codes.len() / rows.max(1);
        self.codes
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                let s = if self.scales.len() == 1 { self.scales[0] } else { self.scales[i / cols] };
                s * t as f32
            })
            .collect()
    }
}

/// One layer's parameters. Empty vectors for arrays the layer does not have.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LayerParams {
    pub biases: Vec<f32>,
    /// Float weights (for a ternary layer: the latent weights it was made from).
    pub weights: Vec<f32>,
    pub bn: Option<BatchNorm>,
    /// Set by the ternarization pass; the layer then computes with these.
    pub ternary: Option<TernaryParams>,
}

impl LayerParams {
    pub fn get(&self, kind: ParamKind) -> Option<&[f32]> {
        Some(match kind {
            ParamKind::Biases => &self.biases,
            ParamKind::Weights => &self.weights,
            ParamKind::Scales => &self.bn.as_ref()?.scales,
            ParamKind::RollingMean => &self.bn.as_ref()?.mean,
            ParamKind::RollingVariance => &self.bn.as_ref()?.variance,
        })
    }

    /// The array for `kind`, creating the batchnorm block on first use.
    pub fn get_mut(&mut self, kind: ParamKind) -> &mut Vec<f32> {
        match kind {
            ParamKind::Biases => &mut self.biases,
            ParamKind::Weights => &mut self.weights,
            ParamKind::Scales => &mut self.bn.get_or_insert_with(Default::default).scales,
            ParamKind::RollingMean => &mut self.bn.get_or_insert_with(Default::default).mean,
            ParamKind::RollingVariance => &mut self.bn.get_or_insert_with(Default::default).variance,
        }
    }

    /// Floats held in all arrays.
    pub fn len(&self) -> usize {
        let bn = self.bn.as_ref().map_or(0, |b| b.scales.len() + b.mean.len() + b.variance.len());
        self.biases.len() + self.weights.len() + bn
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// All parameters of a model plus the training counter a `.weights` header carries.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ParamStore {
    /// Images seen in training (the `.weights` header's `seen`).
    pub seen: u64,
    pub layers: BTreeMap<usize, LayerParams>,
}

impl ParamStore {
    pub fn layer(&self, index: usize) -> Option<&LayerParams> {
        self.layers.get(&index)
    }
    pub fn layer_mut(&mut self, index: usize) -> &mut LayerParams {
        self.layers.entry(index).or_default()
    }
    /// Floats held in all layers.
    pub fn total(&self) -> usize {
        self.layers.values().map(LayerParams::len).sum()
    }
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}
