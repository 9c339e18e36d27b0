use std::fmt;

/// Darknet's activation functions (AlexeyAB's `get_activation`), plus `hardswish`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Activation {
    Linear,
    Logistic,
    Loggy,
    Relu,
    Relu6,
    Relie,
    Ramp,
    Leaky,
    RevLeaky,
    Elu,
    Selu,
    Gelu,
    Tanh,
    Plse,
    Stair,
    Hardtan,
    Lhtan,
    Swish,
    Mish,
    HardMish,
    HardSwish,
    NormChan,
    NormChanSoftmax,
    NormChanSoftmaxMaxval,
}

const NAMES: &[(Activation, &str)] = &[
    (Activation::Linear, "linear"),
    (Activation::Logistic, "logistic"),
    (Activation::Loggy, "loggy"),
    (Activation::Relu, "relu"),
    (Activation::Relu6, "relu6"),
    (Activation::Relie, "relie"),
    (Activation::Ramp, "ramp"),
    (Activation::Leaky, "leaky"),
    (Activation::RevLeaky, "revleaky"),
    (Activation::Elu, "elu"),
    (Activation::Selu, "selu"),
    (Activation::Gelu, "gelu"),
    (Activation::Tanh, "tanh"),
    (Activation::Plse, "plse"),
    (Activation::Stair, "stair"),
    (Activation::Hardtan, "hardtan"),
    (Activation::Lhtan, "lhtan"),
    (Activation::Swish, "swish"),
    (Activation::Mish, "mish"),
    (Activation::HardMish, "hard_mish"),
    (Activation::HardSwish, "hardswish"),
    (Activation::NormChan, "normalize_channels"),
    (Activation::NormChanSoftmax, "normalize_channels_softmax"),
    (Activation::NormChanSoftmaxMaxval, "normalize_channels_softmax_maxval"),
];

impl Activation {
    /// Parses a cfg `activation=` value; `None` for names Darknet does not know.
    pub fn from_name(name: &str) -> Option<Self> {
        NAMES.iter().find(|(_, n)| *n == name).map(|(a, _)| *a)
    }
    /// The name as written in a cfg.
    pub fn name(self) -> &'static str {
        NAMES.iter().find(|(a, _)| *a == self).map(|(_, n)| *n).unwrap_or("?")
    }
    /// Every name a cfg may use, for error messages.
    pub fn all_names() -> impl Iterator<Item = &'static str> {
        NAMES.iter().map(|(_, n)| *n)
    }
    /// The activation of one value, with Darknet's formulas in float32 (`activations.h`).
    /// Channel-wise activations ([`Activation::is_channelwise`]) are not elementwise:
    /// for them this returns `x` and the caller normalises across channels.
    pub fn apply(self, x: f32) -> f32 {
        use Activation::*;
        let logistic = |x: f32| 1.0 / (1.0 + (-x).exp());
        match self {
            Linear | NormChan | NormChanSoftmax | NormChanSoftmaxMaxval => x,
            Logistic => logistic(x),
            Loggy => 2.0 / (1.0 + (-x).exp()) - 1.0,
            Relu => {
                if x > 0.0 {
                    x
                } else {
                    0.0
                }
            }
            Relu6 => x.clamp(0.0, 6.0),
            Relie => {
                if x > 0.0 {
                    x
                } else {
                    0.01 * x
                }
            }
            Ramp => {
                if x > 0.0 {
                    x + 0.1 * x
                } else {
                    0.1 * x
                }
            }
            Leaky | RevLeaky => {
                if x > 0.0 {
                    x
                } else {
                    0.1 * x
                }
            }
            Elu => {
                if x >= 0.0 {
                    x
                } else {
                    x.exp() - 1.0
                }
            }
            Selu => {
                if x >= 0.0 {
                    1.0507 * x
                } else {
                    1.0507 * 1.6732 * (x.exp() - 1.0)
                }
            }
            Gelu => 0.5 * x * (1.0 + (0.797885 * x + 0.035677 * x.powi(3)).tanh()),
            Tanh => 2.0 / (1.0 + (-2.0 * x).exp()) - 1.0,
            Plse => {
                if x < -4.0 {
                    0.01 * (x + 4.0)
                } else if x > 4.0 {
                    0.01 * (x - 4.0) + 1.0
                } else {
                    0.125 * x + 0.5
                }
            }
            Stair => {
                let n = x.floor();
                if (n as i64) % 2 == 0 {
                    (x / 2.0).floor()
                } else {
                    (x - n) + (x / 2.0).floor()
                }
            }
            Hardtan => x.clamp(-1.0, 1.0),
            Lhtan => {
                if x < 0.0 {
                    0.001 * x
                } else if x > 1.0 {
                    0.001 * (x - 1.0) + 1.0
                } else {
                    x
                }
            }
            Swish => x * logistic(x),
            Mish => {
                // softplus with Darknet's threshold of 20, then its tanh
                let sp = if x > 20.0 {
                    x
                } else if x < -20.0 {
                    x.exp()
                } else {
                    x.exp().ln_1p()
                };
                x * (2.0 / (1.0 + (-2.0 * sp).exp()) - 1.0)
            }
            HardMish => {
                if x > 0.0 {
                    x
                } else if x > -2.0 {
                    x * x / 2.0 + x
                } else {
                    0.0
                }
            }
            HardSwish => x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
        }
    }

    /// Activations that mix values across channels instead of mapping each element.
    pub fn is_channelwise(self) -> bool {
        matches!(self, Activation::NormChan | Activation::NormChanSoftmax | Activation::NormChanSoftmaxMaxval)
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for name in Activation::all_names() {
            assert_eq!(Activation::from_name(name).unwrap().name(), name);
        }
        assert_eq!(Activation::from_name("leaky"), Some(Activation::Leaky));
        assert_eq!(Activation::from_name("Leaky"), None);
    }

    #[test]
    fn hand_computed_values() {
        use Activation::*;
        let close = |a: f32, b: f32| (a - b).abs() <= 1e-6 * b.abs().max(1.0);
        for (act, x, y) in [
            (Linear, -2.5, -2.5),
            (Leaky, -2.0, -0.2),
            (Leaky, 3.0, 3.0),
            (Relu, -1.0, 0.0),
            (Relu6, 7.5, 6.0),
            (Relu6, -1.0, 0.0),
            (Logistic, 0.0, 0.5),
            (Logistic, 2.0, 0.880797),
            (Tanh, 1.0, 0.761594),
            (Swish, 1.0, 0.731059),
            (Mish, 1.0, 0.865098),
            (Mish, 30.0, 30.0),
            (HardMish, -1.0, -0.5),
            (HardMish, -3.0, 0.0),
            (HardSwish, 1.0, 0.666667),
            (HardSwish, -4.0, 0.0),
            (Elu, -1.0, -0.632121),
            (Selu, 1.0, 1.0507),
            (Ramp, 2.0, 2.2),
            (Relie, -1.0, -0.01),
            (Plse, 8.0, 1.04),
            (Loggy, 0.0, 0.0),
            (Hardtan, -3.0, -1.0),
            (Lhtan, 2.0, 1.001),
            (Gelu, 1.0, 0.841192),
            (Stair, 3.5, 1.5),
        ] {
            assert!(close(act.apply(x), y), "{act}({x}) = {} != {y}", act.apply(x));
        }
    }
}
