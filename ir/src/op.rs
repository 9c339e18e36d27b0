//! Ops: typed attributes, Darknet's shape rules, parameter layout and cost.

use crate::{Activation, ParamKind, Shape, MAX_TENSOR_BYTES};

/// `[convolutional]`: weights OIHW, `(c/groups)·filters·size²` of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Conv {
    pub filters: usize,
    pub size: usize,
    pub stride_x: usize,
    pub stride_y: usize,
    /// Zero padding on each side as Darknet's im2col applies it: `pad=1` means
    /// `size/2`, else `padding=`; either times `dilation`.
    pub pad: usize,
    pub dilation: usize,
    pub groups: usize,
    pub batch_normalize: bool,
    pub activation: Activation,
    /// Darknet-TWN `ternary=1`: the layer always runs with ternarized weights.
    pub ternary: bool,
}

impl Conv {
    /// A 1x1, stride-1, linear convolution without batchnorm: the simplest weight
    /// layer, for graphs built by hand.
    pub fn pointwise(filters: usize) -> Self {
        Conv {
            filters,
            size: 1,
            stride_x: 1,
            stride_y: 1,
            pad: 0,
            dilation: 1,
            groups: 1,
            batch_normalize: false,
            activation: Activation::Linear,
            ternary: false,
        }
    }

    /// Weights per output channel: `(c/groups)·size²`.
    pub fn fan_in(&self, in_c: usize) -> usize {
        in_c / self.groups * self.size * self.size
    }
    pub fn nweights(&self, in_c: usize) -> usize {
        self.fan_in(in_c) * self.filters
    }
}

/// `[connected]`: a dense layer over the flattened input.
#[derive(Debug, Clone, PartialEq)]
pub struct Connected {
    pub output: usize,
    pub batch_normalize: bool,
    pub activation: Activation,
    /// Selected by a ternarization plan (Darknet has no `ternary=` for this layer).
    pub ternary: bool,
}

/// `[maxpool]`: window starts at `-padding/2`; out-of-range taps are ignored.
#[derive(Debug, Clone, PartialEq)]
pub struct MaxPool {
    pub size: usize,
    pub stride_x: usize,
    pub stride_y: usize,
    /// Total padding (Darknet's default is `size-1`), split `padding/2` before.
    pub padding: usize,
}

/// `[route]`: channel concat of its inputs, then slice `group_id` of `groups`.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub groups: usize,
    pub group_id: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShortcutWeights {
    None,
    PerFeature,
    PerChannel,
}

/// `[shortcut]`: `act(prev + from...)`; channel counts may differ (the overlap is added).
#[derive(Debug, Clone, PartialEq)]
pub struct Shortcut {
    pub activation: Activation,
    pub weights: ShortcutWeights,
    /// `weights_normalization`: none, relu or softmax.
    pub weights_normalization: String,
}

/// `[upsample]`: nearest neighbour by `stride` (a negative stride downsamples), times `scale`.
#[derive(Debug, Clone, PartialEq)]
pub struct Upsample {
    pub stride: i64,
    pub scale: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReorgKind {
    /// `[reorg]`: AlexeyAB's `reorg_old` (YOLOv2's passthrough layer).
    Old,
    /// `[reorg3d]`.
    ThreeD,
}

/// Space-to-depth (or back, with `reverse`).
#[derive(Debug, Clone, PartialEq)]
pub struct Reorg {
    pub stride: usize,
    pub reverse: bool,
    pub kind: ReorgKind,
}

/// `[yolo]` (YOLOv3/v4): the detection head and its training parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Yolo {
    pub classes: usize,
    /// `num`: anchors in the whole model.
    pub total: usize,
    /// Anchors this head predicts (indices into `anchors`).
    pub mask: Vec<usize>,
    /// `2·total` values: w, h pairs in network-input pixels.
    pub anchors: Vec<f32>,
    pub scale_x_y: f32,
    pub new_coords: bool,
    pub max_boxes: usize,
    pub jitter: f32,
    pub resize: f32,
    pub random: f32,
    pub ignore_thresh: f32,
    pub truth_thresh: f32,
    pub iou_thresh: f32,
    pub iou_normalizer: f32,
    pub obj_normalizer: f32,
    pub cls_normalizer: f32,
    pub delta_normalizer: f32,
    pub max_delta: f32,
    pub label_smooth_eps: f32,
    pub objectness_smooth: bool,
    pub focal_loss: bool,
    pub iou_loss: String,
    pub iou_thresh_kind: String,
    pub nms_kind: String,
    pub beta_nms: f32,
}

impl Yolo {
    /// Boxes predicted per cell.
    pub fn n(&self) -> usize {
        self.mask.len()
    }
}

/// `[region]` (YOLOv2).
#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    pub classes: usize,
    pub coords: usize,
    pub num: usize,
    pub anchors: Vec<f32>,
    pub softmax: bool,
    pub max_boxes: usize,
    pub jitter: f32,
    pub resize: f32,
    pub random: f32,
    pub rescore: bool,
    pub thresh: f32,
    pub absolute: bool,
    pub bias_match: bool,
    pub log: bool,
    pub sqrt: bool,
    pub focal_loss: bool,
    pub coord_scale: f32,
    pub object_scale: f32,
    pub noobject_scale: f32,
    pub mask_scale: f32,
    pub class_scale: f32,
}

/// `[scale_channels]`: `from ⊙ prev`, broadcasting prev (`[c,1,1]`, or `[1,h,w]` with
/// `scale_wh`).
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleChannels {
    pub scale_wh: bool,
    pub activation: Activation,
}

/// `[sam]`: spatial attention, `from ⊙ prev` elementwise.
#[derive(Debug, Clone, PartialEq)]
pub struct Sam {
    pub activation: Activation,
}

/// `[dropout]`: identity at inference.
#[derive(Debug, Clone, PartialEq)]
pub struct Dropout {
    pub probability: f32,
    pub dropblock: bool,
}

/// `[softmax]` over groups of the flattened input.
#[derive(Debug, Clone, PartialEq)]
pub struct Softmax {
    pub groups: usize,
    pub temperature: f32,
}

/// `[cost]`: a training loss on the input; identity at inference.
#[derive(Debug, Clone, PartialEq)]
pub struct Cost {
    pub kind: String,
    pub scale: f32,
    pub ratio: f32,
}

/// One node of the graph. Inputs are the node's incoming edges, ordered by slot:
/// slot 0 is the previous layer for ops that read it implicitly (shortcut,
/// scale_channels, sam), followed by the layers named with `from=`.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// The network input, `[channels, height, width]` from `[net]`.
    Input,
    Conv(Conv),
    Connected(Connected),
    MaxPool(MaxPool),
    /// `[avgpool]`: global average, `[c,1,1]`.
    AvgPool,
    Route(Route),
    Shortcut(Shortcut),
    Upsample(Upsample),
    Reorg(Reorg),
    Yolo(Yolo),
    Region(Region),
    ScaleChannels(ScaleChannels),
    Sam(Sam),
    Dropout(Dropout),
    Softmax(Softmax),
    Cost(Cost),
}

/// Products of cfg values, which may be absurd: overflow is an input error, not a panic.
fn mul(a: usize, b: usize) -> Result<usize, String> {
    a.checked_mul(b).ok_or_else(|| format!("{a} x {b} is too large"))
}

fn positive(values: &[(&str, usize)]) -> Result<(), String> {
    match values.iter().find(|(_, v)| *v == 0) {
        Some((k, _)) => Err(format!("{k} must be at least 1")),
        None => Ok(()),
    }
}

fn check_bytes(what: &str, numel: usize) -> Result<(), String> {
    if numel as u128 * 4 > MAX_TENSOR_BYTES as u128 {
        return Err(format!(
            "{what} would hold {numel} floats, over the {} GiB limit",
            MAX_TENSOR_BYTES >> 30
        ));
    }
    Ok(())
}

/// For a shortcut between different spatial sizes (original Darknet's strided add,
/// used by resnet cfgs): `(stride, sample)` such that `out[j·sample] += from[j·stride]`.
/// `None` unless the sizes differ by the same integer factor in both dimensions.
pub fn shortcut_ratio(from: &Shape, out: &Shape) -> Option<(usize, usize)> {
    let exact = |a: usize, b: usize| a.is_multiple_of(b).then(|| a / b);
    let down = exact(from.w, out.w).zip(exact(from.h, out.h)).filter(|(a, b)| a == b);
    let up = exact(out.w, from.w).zip(exact(out.h, from.h)).filter(|(a, b)| a == b);
    match (down, up) {
        (Some((s, _)), _) => Some((s, 1)),
        (None, Some((s, _))) => Some((1, s)),
        _ => None,
    }
}

fn same_spatial(a: &Shape, b: &Shape) -> bool {
    a.h == b.h && a.w == b.w
}

/// `(in + 2·pad − ((size−1)·dilation + 1)) / stride + 1`, or `None` when not positive.
fn conv_out(input: usize, pad: usize, size: usize, dilation: usize, stride: usize) -> Option<usize> {
    let span = (size - 1) * dilation + 1;
    let padded = input + 2 * pad;
    (padded >= span).then(|| (padded - span) / stride + 1)
}

impl Op {
    /// Darknet's layer type name (as `inspect --json` reports it).
    pub fn type_name(&self) -> &'static str {
        match self {
            Op::Input => "input",
            Op::Conv(_) => "convolutional",
            Op::Connected(_) => "connected",
            Op::MaxPool(_) => "maxpool",
            Op::AvgPool => "avgpool",
            Op::Route(_) => "route",
            Op::Shortcut(_) => "shortcut",
            Op::Upsample(_) => "upsample",
            Op::Reorg(r) => match r.kind {
                ReorgKind::Old => "reorg",
                ReorgKind::ThreeD => "reorg3d",
            },
            Op::Yolo(_) => "yolo",
            Op::Region(_) => "region",
            Op::ScaleChannels(_) => "scale_channels",
            Op::Sam(_) => "sam",
            Op::Dropout(_) => "dropout",
            Op::Softmax(_) => "softmax",
            Op::Cost(_) => "cost",
        }
    }

    /// True for ops with a trainable weight matrix (the ones ternarization may select).
    pub fn has_weights(&self) -> bool {
        matches!(self, Op::Conv(_) | Op::Connected(_))
    }

    /// Whether the layer is flagged ternary (`ternary=1`, or chosen by a plan).
    pub fn is_ternary(&self) -> bool {
        match self {
            Op::Conv(c) => c.ternary,
            Op::Connected(c) => c.ternary,
            _ => false,
        }
    }

    /// Sets the ternary flag of a weight layer; false for ops without weights.
    pub fn set_ternary(&mut self, on: bool) -> bool {
        match self {
            Op::Conv(c) => c.ternary = on,
            Op::Connected(c) => c.ternary = on,
            _ => return false,
        }
        true
    }

    /// Output channels of a weight layer (rows of its weight matrix).
    pub fn weight_rows(&self) -> Option<usize> {
        match self {
            Op::Conv(c) => Some(c.filters),
            Op::Connected(c) => Some(c.output),
            _ => None,
        }
    }

    /// Output shape from input shapes, with Darknet's formulas; `Err` explains why the
    /// layer cannot be built (the caller adds the file and line).
    pub fn infer(&self, inputs: &[Shape]) -> Result<Shape, String> {
        let out = self.infer_unchecked(inputs)?;
        if out.c == 0 || out.h == 0 || out.w == 0 {
            return Err(format!("output shape {out} is empty"));
        }
        let bytes = (out.c as u128) * (out.h as u128) * (out.w as u128) * 4;
        if bytes > MAX_TENSOR_BYTES as u128 {
            return Err(format!(
                "output shape {out} needs {bytes} bytes, over the {} GiB limit for one tensor",
                MAX_TENSOR_BYTES >> 30
            ));
        }
        Ok(out)
    }

    fn infer_unchecked(&self, inputs: &[Shape]) -> Result<Shape, String> {
        let x = *inputs.first().ok_or("layer has no input")?;
        match self {
            Op::Input => Ok(x),
            Op::Conv(c) => {
                positive(&[
                    ("filters", c.filters),
                    ("size", c.size),
                    ("stride", c.stride_x.min(c.stride_y)),
                ])?;
                positive(&[("dilation", c.dilation), ("groups", c.groups)])?;
                mul(c.size - 1, c.dilation)?;
                check_bytes(
                    "the weight tensor",
                    mul(mul(x.c / c.groups, c.filters)?, mul(c.size, c.size)?)?,
                )?;
                if x.c % c.groups != 0 {
                    return Err(format!("groups={} does not divide the {} input channels", c.groups, x.c));
                }
                if c.filters % c.groups != 0 {
                    return Err(format!("groups={} does not divide filters={}", c.groups, c.filters));
                }
                let h = conv_out(x.h, c.pad, c.size, c.dilation, c.stride_y);
                let w = conv_out(x.w, c.pad, c.size, c.dilation, c.stride_x);
                match (h, w) {
                    (Some(h), Some(w)) => Ok(Shape::new(c.filters, h, w)),
                    _ => Err(format!(
                        "a {}x{} kernel (dilation {}) with padding {} does not fit the {}x{} input",
                        c.size, c.size, c.dilation, c.pad, x.w, x.h
                    )),
                }
            }
            Op::Connected(c) => {
                positive(&[("output", c.output)])?;
                check_bytes("the weight matrix", mul(c.output, x.numel())?)?;
                Ok(Shape::new(c.output, 1, 1))
            }
            Op::MaxPool(p) => {
                positive(&[("size", p.size), ("stride", p.stride_x.min(p.stride_y))])?;
                let fits = x.h + p.padding >= p.size && x.w + p.padding >= p.size;
                if !fits {
                    return Err(format!(
                        "a {}x{} window with padding {} does not fit the {}x{} input",
                        p.size, p.size, p.padding, x.w, x.h
                    ));
                }
                let h = (x.h + p.padding - p.size) / p.stride_y + 1;
                let w = (x.w + p.padding - p.size) / p.stride_x + 1;
                Ok(Shape::new(x.c, h, w))
            }
            Op::AvgPool => Ok(Shape::new(x.c, 1, 1)),
            Op::Route(r) => {
                positive(&[("groups", r.groups)])?;
                if r.group_id >= r.groups {
                    return Err(format!("group_id={} must be below groups={}", r.group_id, r.groups));
                }
                let mut c = 0;
                for (i, s) in inputs.iter().enumerate() {
                    if !same_spatial(s, &x) {
                        return Err(format!(
                            "input {} is {}x{} but input 0 is {}x{}: routed layers must have the same width and height",
                            i, s.w, s.h, x.w, x.h
                        ));
                    }
                    c += s.c;
                }
                if c % r.groups != 0 {
                    return Err(format!("groups={} does not divide the {c} routed channels", r.groups));
                }
                Ok(Shape::new(c / r.groups, x.h, x.w))
            }
            Op::Shortcut(_) => {
                for s in &inputs[1..] {
                    if !same_spatial(s, &x) && shortcut_ratio(s, &x).is_none() {
                        return Err(format!(
                            "the from-layer is {}x{} but the previous layer is {}x{}: shortcut needs equal sizes or an integer ratio between them",
                            s.w, s.h, x.w, x.h
                        ));
                    }
                }
                Ok(x)
            }
            Op::Upsample(u) => {
                let s = usize::try_from(u.stride.unsigned_abs()).map_err(|_| "stride is too large")?;
                positive(&[("stride", s)])?;
                if u.stride > 0 {
                    Ok(Shape::new(x.c, mul(x.h, s)?, mul(x.w, s)?))
                } else if x.h % s != 0 || x.w % s != 0 {
                    Err(format!("upsample stride={} does not divide the {}x{} input", u.stride, x.w, x.h))
                } else {
                    Ok(Shape::new(x.c, x.h / s, x.w / s))
                }
            }
            Op::Reorg(r) => {
                let s = r.stride;
                positive(&[("stride", s)])?;
                let s2 = mul(s, s)?;
                // Darknet's reorg_cpu reinterprets the buffer as [C/s², H·s, W·s] for some
                // [C,H,W]: these checks keep every index it forms inside the tensor.
                let out = if r.reverse {
                    Shape::new(x.c / s2, mul(x.h, s)?, mul(x.w, s)?)
                } else {
                    if x.h % s != 0 || x.w % s != 0 {
                        return Err(format!("reorg stride={s} does not divide the {}x{} input", x.w, x.h));
                    }
                    Shape::new(mul(x.c, s2)?, x.h / s, x.w / s)
                };
                let c = match (r.kind, r.reverse) {
                    (ReorgKind::ThreeD, true) => out.c,
                    (ReorgKind::ThreeD, false) => x.c * s2,
                    (ReorgKind::Old, _) => x.c,
                };
                if (r.reverse && x.c % s2 != 0) || c % s2 != 0 {
                    return Err(format!("reorg stride={s} needs channels divisible by {s2}, got {}", x.c));
                }
                Ok(out)
            }
            Op::Yolo(y) => {
                let need = y.n() * (y.classes + 5);
                if x.c != need {
                    return Err(format!(
                        "expects {need} input channels ({} anchors x ({} classes + 5)), but the previous layer gives {}: set filters={need} there",
                        y.n(), y.classes, x.c
                    ));
                }
                Ok(x)
            }
            Op::Region(r) => {
                let need = r.num * (r.classes + r.coords + 1);
                if x.c != need {
                    return Err(format!(
                        "expects {need} input channels ({} anchors x ({} classes + {} coords + 1)), but the previous layer gives {}: set filters={need} there",
                        r.num, r.classes, r.coords, x.c
                    ));
                }
                Ok(x)
            }
            Op::ScaleChannels(s) => {
                let from = *inputs.get(1).ok_or("scale_channels needs from=")?;
                if s.scale_wh {
                    if x.c != 1 || !same_spatial(&x, &from) {
                        return Err(format!(
                            "scale_wh=1 needs a [1,h,w] previous layer matching {from}, got {x}"
                        ));
                    }
                } else if x.h != 1 || x.w != 1 || x.c != from.c {
                    return Err(format!("needs a [{},1,1] previous layer to scale {from}, got {x}", from.c));
                }
                Ok(from)
            }
            Op::Sam(_) => {
                let from = *inputs.get(1).ok_or("sam needs from=")?;
                if from != x {
                    return Err(format!(
                        "the previous layer {x} and the from-layer {from} must have the same shape"
                    ));
                }
                Ok(from)
            }
            Op::Softmax(s) => {
                positive(&[("groups", s.groups)])?;
                if x.numel() % s.groups != 0 {
                    return Err(format!("groups={} does not divide the {} inputs", s.groups, x.numel()));
                }
                Ok(x)
            }
            Op::Dropout(_) | Op::Cost(_) => Ok(x),
        }
    }

    /// The float arrays a Darknet `.weights` file holds for this layer, in file order.
    pub fn param_layout(&self, inputs: &[Shape]) -> Vec<(ParamKind, usize)> {
        use ParamKind::*;
        let x = inputs.first().copied().unwrap_or_default();
        match self {
            Op::Conv(c) => {
                let n = c.filters;
                let mut v = vec![(Biases, n)];
                if c.batch_normalize {
                    v.extend([(Scales, n), (RollingMean, n), (RollingVariance, n)]);
                }
                v.push((Weights, c.nweights(x.c)));
                v
            }
            Op::Connected(c) => {
                let n = c.output;
                let mut v = vec![(Biases, n), (Weights, n * x.numel())];
                if c.batch_normalize {
                    v.extend([(Scales, n), (RollingMean, n), (RollingVariance, n)]);
                }
                v
            }
            Op::Shortcut(s) => {
                let n = inputs.len().saturating_sub(1);
                match s.weights {
                    ShortcutWeights::None => vec![],
                    ShortcutWeights::PerFeature => vec![(Weights, n + 1)],
                    ShortcutWeights::PerChannel => vec![(Weights, (n + 1) * x.c)],
                }
            }
            _ => vec![],
        }
    }

    /// Number of floats the `.weights` file holds for this layer.
    pub fn param_count(&self, inputs: &[Shape]) -> usize {
        self.param_layout(inputs).iter().map(|(_, n)| n).sum()
    }

    /// Billions of floating-point operations, as Darknet counts them (it counts only
    /// convolutional, maxpool and shortcut layers).
    pub fn bflops(&self, inputs: &[Shape], out: Shape) -> f64 {
        let x = inputs.first().copied().unwrap_or_default();
        match self {
            Op::Conv(c) => 2.0 * c.nweights(x.c) as f64 * out.plane() as f64 / 1e9,
            // In f64: `size` may be huge (the default padding makes any window fit).
            Op::MaxPool(p) => p.size as f64 * p.size as f64 * x.c as f64 * out.plane() as f64 / 1e9,
            Op::Shortcut(s) => {
                let n = inputs.len().saturating_sub(1);
                let f = (out.numel() * n) as f64 / 1e9;
                if s.weights == ShortcutWeights::None {
                    f
                } else {
                    2.0 * f
                }
            }
            _ => 0.0,
        }
    }
}
