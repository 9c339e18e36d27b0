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
    (
        Activation::NormChanSoftmaxMaxval,
        "normalize_channels_softmax_maxval",
    ),
];

impl Activation {
    /// Parses a cfg `activation=` value; `None` for names Darknet does not know.
    pub fn from_name(name: &str) -> Option<Self> {
        NAMES.iter().find(|(_, n)| *n == name).map(|(a, _)| *a)
    }
    /// The name as written in a cfg.
    pub fn name(self) -> &'static str {
        NAMES
            .iter()
            .find(|(a, _)| *a == self)
            .map(|(_, n)| *n)
            .unwrap_or("?")
    }
    /// Every name a cfg may use, for error messages.
    pub fn all_names() -> impl Iterator<Item = &'static str> {
        NAMES.iter().map(|(_, n)| *n)
    }
    /// Activations that mix values across channels instead of mapping each element.
    pub fn is_channelwise(self) -> bool {
        matches!(
            self,
            Activation::NormChan | Activation::NormChanSoftmax | Activation::NormChanSoftmaxMaxval
        )
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
}
