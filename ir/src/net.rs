//! `[net]`: input geometry and the training settings Darknet reads from it.

/// Darknet's learning-rate policies with their parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum Policy {
    Constant,
    Step { step: i64, scale: f32 },
    Steps { steps: Vec<i64>, scales: Vec<f32> },
    Exp { gamma: f32 },
    Poly,
    Sigmoid { gamma: f32, step: i64 },
    Random,
    Sgdr,
}

impl Policy {
    pub fn name(&self) -> &'static str {
        match self {
            Policy::Constant => "constant",
            Policy::Step { .. } => "step",
            Policy::Steps { .. } => "steps",
            Policy::Exp { .. } => "exp",
            Policy::Poly => "poly",
            Policy::Sigmoid { .. } => "sigmoid",
            Policy::Random => "random",
            Policy::Sgdr => "sgdr",
        }
    }
}

/// The `[net]` section, with Darknet's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConfig {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    /// `batch` as written (images per iteration); Darknet's mini-batch is `batch/subdivisions`.
    pub batch: usize,
    pub subdivisions: usize,
    pub max_batches: usize,
    pub learning_rate: f32,
    pub momentum: f32,
    pub decay: f32,
    pub burn_in: usize,
    pub power: f32,
    pub policy: Policy,
    pub angle: f32,
    pub aspect: f32,
    pub saturation: f32,
    pub exposure: f32,
    pub hue: f32,
    pub flip: bool,
    pub letter_box: bool,
    pub mosaic: bool,
    pub max_crop: usize,
    pub min_crop: usize,
    pub ema_alpha: f32,
    pub adam: bool,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            width: 0,
            height: 0,
            channels: 0,
            batch: 1,
            subdivisions: 1,
            max_batches: 0,
            learning_rate: 0.001,
            momentum: 0.9,
            decay: 0.0001,
            burn_in: 0,
            power: 4.0,
            policy: Policy::Constant,
            angle: 0.0,
            aspect: 1.0,
            saturation: 1.0,
            exposure: 1.0,
            hue: 0.0,
            flip: true,
            letter_box: false,
            mosaic: false,
            max_crop: 0,
            min_crop: 0,
            ema_alpha: 0.0,
            adam: false,
        }
    }
}
