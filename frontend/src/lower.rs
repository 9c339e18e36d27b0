//! Lowering cfg sections into the graph IR: Darknet's defaults, layer references
//! and shape rules, each failure an error at the offending line.

use ternc_ir::{
    Activation, Connected, Conv, Cost, Dropout, Graph, InputError, MaxPool, NetConfig, NodeIndex, Op, Policy,
    Region, Reorg, ReorgKind, Route, Sam, ScaleChannels, Shortcut, ShortcutWeights, Softmax, Upsample,
    Warning, Yolo, MAX_TENSOR_BYTES,
};

use crate::cfg::{CfgFile, Options};

/// Keys every layer section may carry (Darknet reads them for all layer types).
const COMMON_KEYS: &[&str] = &[
    "clip", "onlyforward", "dont_update", "burnin_update", "stopbackward", "train_only_bn", "learning_rate",
    "stream", "wait_stream", "dontload", "dontloadscales",
];

const NET_KEYS: &[&str] = &[
    "B1", "B2", "adam", "adversarial_lr", "angle", "aspect", "attention", "augment_speed",
    "badlabels_rejection_percentage", "batch", "blur", "burn_in", "channels", "contrastive",
    "contrastive_color", "contrastive_jit_flip", "cutmix", "decay", "dynamic_minibatch", "ema_alpha", "eps",
    "equidistant_point", "exposure", "flip", "gamma", "gaussian_noise", "height", "hue", "inputs",
    "label_smooth_eps", "learning_rate", "learning_rate_min", "letter_box", "loss_scale", "max_batches",
    "max_chart_loss", "max_crop", "min_crop", "mixup", "momentum", "mosaic", "mosaic_bound",
    "num_sigmas_reject_badlabels", "optimized_memory", "policy", "power", "resize_step", "saturation",
    "scale", "scales", "seq_scales", "sequential_subdivisions", "sgdr_cycle", "sgdr_mult",
    "show_receptive_field", "step", "steps", "subdivisions", "time_steps", "track", "try_fix_nan",
    "unsupervised", "use_cuda_graph", "weights_reject_freq", "width", "workspace_size_limit_MB",
];

const CONV_KEYS: &[&str] = &[
    "filters", "size", "stride", "stride_x", "stride_y", "pad", "padding", "groups", "dilation",
    "activation", "batch_normalize", "cbn", "ternary", "binary", "xnor", "bin_output", "antialiasing",
    "share_index", "sway", "rotate", "stretch", "stretch_sway", "assisted_excitation", "flipped", "dot",
    "angle", "grad_centr", "reverse", "coordconv",
];

const YOLO_KEYS: &[&str] = &[
    "classes", "num", "mask", "anchors", "max", "show_details", "max_delta", "counters_per_class",
    "label_smooth_eps", "scale_x_y", "objectness_smooth", "new_coords", "iou_normalizer", "obj_normalizer",
    "cls_normalizer", "delta_normalizer", "iou_loss", "iou_thresh_kind", "beta_nms", "nms_kind", "jitter",
    "resize", "focal_loss", "ignore_thresh", "truth_thresh", "iou_thresh", "random", "track_history_size",
    "sim_thresh", "dets_for_track", "dets_for_show", "track_ciou_norm", "embedding_layer", "map",
];

const REGION_KEYS: &[&str] = &[
    "coords", "classes", "num", "max", "log", "sqrt", "softmax", "focal_loss", "jitter", "resize", "rescore",
    "thresh", "classfix", "absolute", "random", "coord_scale", "object_scale", "noobject_scale",
    "mask_scale", "class_scale", "bias_match", "tree", "map", "anchors",
];

/// Darknet layer sections that ternc does not implement (distinct from typos).
const UNSUPPORTED_SECTIONS: &[&str] = &[
    "local", "crnn", "rnn", "gru", "lstm", "conv_lstm", "history", "crop", "detection", "Gaussian_yolo",
    "activation", "batchnorm", "lrn", "normalization", "local_avg", "local_avgpool", "contrastive", "empty",
    "silence", "implicit",
];

const SUPPORTED: &str = "convolutional, connected, maxpool, avgpool, route, shortcut, upsample, reorg, reorg3d, yolo, region, scale_channels, sam, dropout, softmax, cost";

/// A lowered model and the warnings (unknown or repeated keys) met on the way.
#[derive(Debug)]
pub struct Lowered {
    pub graph: Graph,
    pub warnings: Vec<Warning>,
}

fn activation(o: &Options, default: &str) -> Result<Activation, InputError> {
    let name = o.str("activation", default);
    Activation::from_name(&name).ok_or_else(|| {
        let all: Vec<&str> = Activation::all_names().collect();
        o.err(
            o.line_of("activation"),
            format!("activation={name}: unknown activation; expected one of {}", all.join(", ")),
        )
    })
}

fn parse_net(o: &Options) -> Result<NetConfig, InputError> {
    let d = NetConfig::default();
    let mut net = NetConfig {
        width: o.int_min("width", 0, 0)?,
        height: o.int_min("height", 0, 0)?,
        channels: o.int_min("channels", 0, 0)?,
        batch: o.int_min("batch", 1, 1)?,
        subdivisions: o.int_min("subdivisions", 1, 1)?,
        max_batches: o.int_min("max_batches", 0, 0)?,
        learning_rate: o.float("learning_rate", d.learning_rate)?,
        momentum: o.float("momentum", d.momentum)?,
        decay: o.float("decay", d.decay)?,
        burn_in: o.int_min("burn_in", 0, 0)?,
        power: o.float("power", d.power)?,
        policy: Policy::Constant,
        angle: o.float("angle", d.angle)?,
        aspect: o.float("aspect", d.aspect)?,
        saturation: o.float("saturation", d.saturation)?,
        exposure: o.float("exposure", d.exposure)?,
        hue: o.float("hue", d.hue)?,
        flip: o.flag("flip", d.flip)?,
        letter_box: o.flag("letter_box", false)?,
        mosaic: o.flag("mosaic", false)?,
        max_crop: 0,
        min_crop: 0,
        ema_alpha: o.float("ema_alpha", 0.0)?,
        adam: o.flag("adam", false)?,
    };
    net.max_crop = o.int_min("max_crop", 2 * net.width as i64, 0)?;
    net.min_crop = o.int_min("min_crop", net.width as i64, 0)?;
    let inputs = o.int_min("inputs", 0, 0)?;
    if net.width == 0 || net.height == 0 || net.channels == 0 {
        if inputs == 0 || net.width + net.height + net.channels != 0 {
            return Err(o.section_err("width, height and channels must all be set and positive"));
        }
        // Darknet's non-image networks: a flat input of `inputs` values.
        (net.channels, net.height, net.width) = (inputs, 1, 1);
    }
    // Every later shape is checked when its layer is added; the input must be too.
    let bytes = net.channels as u128 * net.height as u128 * net.width as u128 * 4;
    if bytes > MAX_TENSOR_BYTES as u128 {
        return Err(o.section_err(format!(
            "input {}x{}x{} needs {bytes} bytes, over the {} GiB limit for one tensor",
            net.width,
            net.height,
            net.channels,
            MAX_TENSOR_BYTES >> 30
        )));
    }
    net.policy = match o
        .choice(
            "policy",
            "constant",
            &["constant", "step", "steps", "exp", "poly", "sigmoid", "random", "sgdr"],
        )?
        .as_str()
    {
        "step" => Policy::Step { step: o.int("step", 1)?, scale: o.float("scale", 1.0)? },
        "steps" | "sgdr" => {
            let steps = o.int_list("steps")?;
            let scales = o.float_list("scales")?;
            let is_steps = o.str("policy", "") == "steps";
            match (steps, scales) {
                (Some(steps), Some(scales)) => {
                    if steps.len() != scales.len() {
                        return Err(o.err(
                            o.line_of("scales"),
                            format!(
                                "{} scales for {} steps: expected one scale per step",
                                scales.len(),
                                steps.len()
                            ),
                        ));
                    }
                    if is_steps {
                        Policy::Steps { steps, scales }
                    } else {
                        Policy::Sgdr
                    }
                }
                _ if is_steps => return Err(o.section_err("policy=steps needs both steps= and scales=")),
                _ => Policy::Sgdr,
            }
        }
        "exp" => Policy::Exp { gamma: o.float("gamma", 1.0)? },
        "poly" => Policy::Poly,
        "sigmoid" => Policy::Sigmoid { gamma: o.float("gamma", 1.0)?, step: o.int("step", 1)? },
        "random" => Policy::Random,
        _ => Policy::Constant,
    };
    Ok(net)
}

/// Resolves `layers=`/`from=` values (negative = relative) to earlier layer indices.
fn layer_refs(o: &Options, key: &str, index: usize) -> Result<Vec<usize>, InputError> {
    let line = o.line_of(key);
    let Some(values) = o.int_list(key)? else {
        return Err(o.section_err(format!("needs {key}= naming the layers it reads")));
    };
    values
        .into_iter()
        .map(|v| {
            let abs = if v < 0 { index as i64 + v } else { v };
            if abs < 0 || abs >= index as i64 {
                let range = if index == 0 {
                    "there is none before layer 0".to_string()
                } else {
                    format!("expected 0..={}", index - 1)
                };
                return Err(o.err(
                    line,
                    format!("{key}={v} refers to layer {abs}, which is not an earlier layer ({range})"),
                ));
            }
            Ok(abs as usize)
        })
        .collect()
}

/// More anchors than any model has. `num` sizes allocations (default anchors and
/// mask), so a typo such as `num=2147483647` must be an error, not an abort.
const MAX_ANCHORS: usize = 1 << 16;

fn num_anchors(o: &Options) -> Result<usize, InputError> {
    let num = o.int_min("num", 1, 1)?;
    if num > MAX_ANCHORS {
        return Err(o.err(o.line_of("num"), format!("num={num}: expected at most {MAX_ANCHORS} anchors")));
    }
    Ok(num)
}

/// `2·count` anchor values; Darknet fills missing ones with 0.5 and ignores extras.
fn anchors(o: &Options, count: usize) -> Result<Vec<f32>, InputError> {
    let mut a = o.float_list("anchors")?.unwrap_or_default();
    if a.len() < 2 * count {
        o.warn(
            o.line_of("anchors"),
            format!(
                "{} anchor values for {count} anchors: expected {}; the missing ones are 0.5, as in Darknet",
                a.len(),
                2 * count
            ),
        );
        a.resize(2 * count, 0.5);
    }
    a.truncate(2 * count);
    Ok(a)
}

fn conv(o: &Options) -> Result<Op, InputError> {
    o.unsupported(&[
        "binary", "xnor", "antialiasing", "share_index", "sway", "rotate", "stretch", "stretch_sway",
        "assisted_excitation", "coordconv", "flipped",
    ])?;
    let size = o.int_min("size", 1, 1)?;
    let (mut sx, mut sy) = (o.int("stride_x", -1)?, o.int("stride_y", -1)?);
    if sx < 1 || sy < 1 {
        let stride = o.int_min("stride", 1, 1)? as i64;
        if sx < 1 {
            sx = stride;
        }
        if sy < 1 {
            sy = stride;
        }
    }
    let dilation = if size == 1 { 1 } else { o.int_min("dilation", 1, 1)? };
    let pad = if o.flag("pad", false)? { size / 2 } else { o.int_min("padding", 0, 0)? };
    // Darknet's im2col pads by pad·dilation, so a dilated 3x3 with pad=1 keeps the size.
    let pad = pad.checked_mul(dilation).ok_or_else(|| o.section_err("padding x dilation is too large"))?;
    Ok(Op::Conv(Conv {
        filters: o.int_min("filters", 1, 1)?,
        size,
        stride_x: sx as usize,
        stride_y: sy as usize,
        pad,
        dilation,
        groups: o.int_min("groups", 1, 1)?,
        batch_normalize: o.flag("batch_normalize", false)? || o.flag("cbn", false)?,
        activation: activation(o, "logistic")?,
        ternary: o.flag("ternary", false)?,
    }))
}

fn maxpool(o: &Options) -> Result<Op, InputError> {
    o.unsupported(&["maxpool_depth", "antialiasing"])?;
    let stride = o.int_min("stride", 1, 1)? as i64;
    let size = o.int_min("size", stride, 1)?;
    Ok(Op::MaxPool(MaxPool {
        size,
        stride_x: o.int_min("stride_x", stride, 1)?,
        stride_y: o.int_min("stride_y", stride, 1)?,
        padding: o.int_min("padding", size as i64 - 1, 0)?,
    }))
}

fn yolo(o: &Options) -> Result<Op, InputError> {
    let num = num_anchors(o)?;
    let line = o.line_of("mask");
    let mask = match o.int_list("mask")? {
        None => (0..num).collect(),
        Some(m) => m
            .into_iter()
            .map(|v| {
                usize::try_from(v)
                    .map_err(|_| o.err(line, format!("mask value {v}: expected an anchor index >= 0")))
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    let mut total = num;
    if let Some(&beyond) = mask.iter().filter(|&&m| m >= num).max() {
        // Darknet reads past its anchor array here; use the anchors the cfg wrote.
        let given = o.float_list("anchors")?.map_or(0, |a| a.len() / 2);
        if beyond >= given {
            return Err(o.err(line, format!("mask value {beyond} needs anchor pair {beyond}, but num={num} and anchors= has {given} pairs")));
        }
        o.warn(
            line,
            format!("mask value {beyond} is not below num={num}; using the anchor pairs written in anchors="),
        );
        total = beyond + 1;
    }
    let loss = ["mse", "iou", "giou", "diou", "ciou"];
    Ok(Op::Yolo(Yolo {
        classes: o.int_min("classes", 20, 1)?,
        total,
        anchors: anchors(o, total)?,
        mask,
        scale_x_y: o.float("scale_x_y", 1.0)?,
        new_coords: o.flag("new_coords", false)?,
        max_boxes: o.int_min("max", 200, 1)?,
        jitter: o.float("jitter", 0.2)?,
        resize: o.float("resize", 1.0)?,
        random: o.float("random", 0.0)?,
        ignore_thresh: o.float("ignore_thresh", 0.5)?,
        truth_thresh: o.float("truth_thresh", 1.0)?,
        iou_thresh: o.float("iou_thresh", 1.0)?,
        iou_normalizer: o.float("iou_normalizer", 0.75)?,
        obj_normalizer: o.float("obj_normalizer", 1.0)?,
        cls_normalizer: o.float("cls_normalizer", 1.0)?,
        delta_normalizer: o.float("delta_normalizer", 1.0)?,
        max_delta: o.float("max_delta", f32::MAX)?,
        label_smooth_eps: o.float("label_smooth_eps", 0.0)?,
        objectness_smooth: o.flag("objectness_smooth", false)?,
        focal_loss: o.flag("focal_loss", false)?,
        iou_loss: o.choice("iou_loss", "mse", &loss)?,
        iou_thresh_kind: o.choice("iou_thresh_kind", "iou", &loss[1..])?,
        nms_kind: o.choice("nms_kind", "default", &["default", "greedynms", "diounms", "cornersnms"])?,
        beta_nms: o.float("beta_nms", 0.6)?,
    }))
}

fn region(o: &Options) -> Result<Op, InputError> {
    o.unsupported(&["tree", "map"])?;
    let num = num_anchors(o)?;
    Ok(Op::Region(Region {
        classes: o.int_min("classes", 20, 1)?,
        coords: o.int_min("coords", 4, 4)?,
        num,
        anchors: anchors(o, num)?,
        softmax: o.flag("softmax", false)?,
        max_boxes: o.int_min("max", 200, 1)?,
        jitter: o.float("jitter", 0.2)?,
        resize: o.float("resize", 1.0)?,
        random: o.float("random", 0.0)?,
        rescore: o.flag("rescore", false)?,
        thresh: o.float("thresh", 0.5)?,
        absolute: o.flag("absolute", false)?,
        bias_match: o.flag("bias_match", false)?,
        log: o.flag("log", false)?,
        sqrt: o.flag("sqrt", false)?,
        focal_loss: o.flag("focal_loss", false)?,
        coord_scale: o.float("coord_scale", 1.0)?,
        object_scale: o.float("object_scale", 1.0)?,
        noobject_scale: o.float("noobject_scale", 1.0)?,
        mask_scale: o.float("mask_scale", 1.0)?,
        class_scale: o.float("class_scale", 1.0)?,
    }))
}

/// Builds one layer section's op and its inputs; returns the keys it knows.
fn layer(
    o: &Options,
    index: usize,
    prev: NodeIndex,
    g: &Graph,
) -> Result<(Op, Vec<NodeIndex>, &'static [&'static str]), InputError> {
    let node = |i: usize| g.layers[i];
    let name = o.section.name.as_str();
    Ok(match name {
        "convolutional" | "conv" => (conv(o)?, vec![prev], CONV_KEYS),
        "connected" | "conn" => {
            let op = Op::Connected(Connected {
                output: o.int_min("output", 1, 1)?,
                batch_normalize: o.flag("batch_normalize", false)?,
                activation: activation(o, "logistic")?,
                ternary: false,
            });
            (op, vec![prev], &["output", "activation", "batch_normalize"])
        }
        "maxpool" | "max" => (
            maxpool(o)?,
            vec![prev],
            &[
                "stride", "stride_x", "stride_y", "size", "padding", "maxpool_depth", "out_channels",
                "antialiasing", "maxpool_zero_nonmax",
            ],
        ),
        "avgpool" | "avg" => (Op::AvgPool, vec![prev], &[]),
        "route" => {
            let inputs = layer_refs(o, "layers", index)?.into_iter().map(node).collect();
            let op = Op::Route(Route {
                groups: o.int_min("groups", 1, 1)?,
                group_id: o.int_min("group_id", 0, 0)?,
            });
            (op, inputs, &["layers", "groups", "group_id"])
        }
        "shortcut" => {
            let weights = match o
                .choice("weights_type", "none", &["none", "per_feature", "per_layer", "per_channel"])?
                .as_str()
            {
                "none" => ShortcutWeights::None,
                "per_channel" => ShortcutWeights::PerChannel,
                _ => ShortcutWeights::PerFeature,
            };
            let norm = o.choice("weights_normalization", "none", &["none", "relu", "avg_relu", "softmax"])?;
            let op = Op::Shortcut(Shortcut {
                activation: activation(o, "linear")?,
                weights,
                weights_normalization: norm.replace("avg_relu", "relu"),
            });
            let mut inputs = vec![prev];
            inputs.extend(layer_refs(o, "from", index)?.into_iter().map(node));
            (op, inputs, &["from", "activation", "weights_type", "weights_normalization"])
        }
        "upsample" => {
            let stride = o.int("stride", 2)?;
            if stride == 0 {
                return Err(o.err(
                    o.line_of("stride"),
                    "stride=0: expected a non-zero integer (negative downsamples)",
                ));
            }
            (
                Op::Upsample(Upsample { stride, scale: o.float("scale", 1.0)? }),
                vec![prev],
                &["stride", "scale"],
            )
        }
        "reorg" | "reorg3d" => {
            let kind = if name == "reorg" { ReorgKind::Old } else { ReorgKind::ThreeD };
            let op = Op::Reorg(Reorg {
                stride: o.int_min("stride", 1, 1)?,
                reverse: o.flag("reverse", false)?,
                kind,
            });
            (op, vec![prev], &["stride", "reverse"])
        }
        "yolo" => (yolo(o)?, vec![prev], YOLO_KEYS),
        "region" => (region(o)?, vec![prev], REGION_KEYS),
        "scale_channels" | "sam" => {
            let from = node(layer_refs(o, "from", index)?[0]);
            let act = activation(o, "linear")?;
            let op = if name == "sam" {
                Op::Sam(Sam { activation: act })
            } else {
                Op::ScaleChannels(ScaleChannels { scale_wh: o.flag("scale_wh", false)?, activation: act })
            };
            (op, vec![prev, from], &["from", "activation", "scale_wh"])
        }
        "dropout" => {
            let p = o.float("probability", 0.2)?;
            if !(0.0..1.0).contains(&p) {
                return Err(
                    o.err(o.line_of("probability"), format!("probability={p}: expected a value in [0, 1)"))
                );
            }
            let op = Op::Dropout(Dropout { probability: p, dropblock: o.flag("dropblock", false)? });
            (op, vec![prev], &["probability", "dropblock", "dropblock_size_rel", "dropblock_size_abs"])
        }
        "softmax" | "soft" => {
            o.unsupported(&["tree"])?;
            let op = Op::Softmax(Softmax {
                groups: o.int_min("groups", 1, 1)?,
                temperature: o.float("temperature", 1.0)?,
            });
            (op, vec![prev], &["groups", "temperature", "spatial", "noloss"])
        }
        "cost" => {
            let kind = o.choice("type", "sse", &["sse", "masked", "smooth", "L1", "seg", "wgan"])?;
            let op = Op::Cost(Cost { kind, scale: o.float("scale", 1.0)?, ratio: o.float("ratio", 0.0)? });
            (op, vec![prev], &["type", "scale", "ratio"])
        }
        "net" | "network" => return Err(o.section_err("only the first section may be [net]")),
        _ if UNSUPPORTED_SECTIONS.contains(&name) => {
            return Err(o.section_err(format!(
                "this Darknet layer type is not supported by ternc (supported: {SUPPORTED})"
            )))
        }
        _ => return Err(o.section_err(format!("unknown section; expected one of {SUPPORTED}"))),
    })
}

/// Lowers a parsed cfg into a graph (no parameters yet).
pub fn lower(cfg: &CfgFile) -> Result<Lowered, InputError> {
    let path = cfg.path.as_path();
    let name =
        path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
    let Some((first, rest)) = cfg.sections.split_first() else {
        return Err(InputError::whole(path, "no sections: expected a Darknet cfg starting with [net]"));
    };
    let o = Options::new(path, first);
    if first.name != "net" && first.name != "network" {
        return Err(
            o.err(first.line, format!("first section is [{}]: expected [net] or [network]", first.name))
        );
    }
    let net = parse_net(&o)?;
    let mut warnings = o.warnings(NET_KEYS);
    let mut graph = Graph::new(name, net, first.line);
    for (index, section) in rest.iter().enumerate() {
        let o = Options::new(path, section);
        let prev = if index == 0 { graph.input } else { graph.layers[index - 1] };
        let (op, inputs, known) = layer(&o, index, prev, &graph)?;
        o.unsupported(&["dontload", "dontloadscales"])?;
        let known: Vec<&str> = known.iter().chain(COMMON_KEYS).copied().collect();
        warnings.extend(o.warnings(&known));
        graph
            .add_layer(op, &inputs, section.line)
            .map_err(|msg| o.section_err(format!("layer {index}: {msg}")))?;
    }
    if graph.num_layers() == 0 {
        return Err(o.err(
            first.line,
            "no layers after [net]: expected at least one layer section such as [convolutional]",
        ));
    }
    Ok(Lowered { graph, warnings })
}
