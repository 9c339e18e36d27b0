//! Ternary Weight Networks (Li & Liu 2016) as the darknetTWN fork applies them:
//! `Δ = 0.7·mean|W|`, `t = sign(W)` where `|W| > Δ` else 0, `α = mean(|W| : |W| > Δ)`.

/// Darknet-TWN's threshold factor.
pub const DEFAULT_THRESHOLD: f32 = 0.7;

/// One group of weights (a layer, or one output channel) in ternary form.
#[derive(Debug, Clone, PartialEq)]
pub struct Ternary {
    pub alpha: f32,
    pub delta: f32,
    /// −1, 0 or +1 per weight.
    pub codes: Vec<i8>,
}

impl Ternary {
    /// The float values `α·t` this group stands for.
    pub fn values(&self) -> impl Iterator<Item = f32> + '_ {
        self.codes.iter().map(move |&t| self.alpha * t as f32)
    }
}

/// Ternarizes `w` as one group; sums in f64 so the result does not depend on the
/// order of summation (every backend must agree on α and Δ).
pub fn twn(w: &[f32], threshold: f32) -> Ternary {
    if w.is_empty() {
        return Ternary { alpha: 0.0, delta: 0.0, codes: Vec::new() };
    }
    let mean_abs = w.iter().map(|v| v.abs() as f64).sum::<f64>() / w.len() as f64;
    let delta = (threshold as f64 * mean_abs) as f32;
    let (mut sum, mut count) = (0.0f64, 0usize);
    // branch-free: the signs of random weights defeat a branch predictor
    let codes = w
        .iter()
        .map(|&v| {
            let kept = v.abs() > delta;
            sum += if kept { v.abs() as f64 } else { 0.0 };
            count += kept as usize;
            (v > delta) as i8 - (v < -delta) as i8
        })
        .collect();
    let alpha = if count == 0 { 0.0 } else { (sum / count as f64) as f32 };
    Ternary { alpha, delta, codes }
}

/// The ternarized float weights of a whole layer (`α·t`), Darknet-TWN's `ternary=1`.
pub fn ternarize_layer(w: &[f32], threshold: f32) -> Vec<f32> {
    twn(w, threshold).values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_layer() {
        // mean|W| = (0.1+0.5+0.9+0.3+0.2+1.0)/6 = 0.5, Δ = 0.35;
        // above Δ: 0.5, 0.9, 1.0 → α = 0.8
        let w = [0.1, -0.5, 0.9, 0.3, -0.2, 1.0];
        let t = twn(&w, 0.7);
        assert!((t.delta - 0.35).abs() < 1e-6);
        assert!((t.alpha - 0.8).abs() < 1e-6);
        assert_eq!(t.codes, [0, -1, 1, 0, 0, 1]);
        let v = ternarize_layer(&w, 0.7);
        assert_eq!(v[1], -t.alpha);
        assert_eq!(v[0], 0.0);
    }

    #[test]
    fn degenerate_groups() {
        assert_eq!(twn(&[0.0; 4], 0.7).alpha, 0.0);
        assert_eq!(twn(&[0.0; 4], 0.7).codes, [0; 4]);
        assert!(twn(&[], 0.7).codes.is_empty());
        // equal magnitudes are all above 0.7·mean
        let t = twn(&[2.0, -2.0], 0.7);
        assert_eq!((t.alpha, t.codes.clone()), (2.0, vec![1, -1]));
    }
}
