//! The stable textual form of a graph: one line per node, used by snapshot tests
//! and `ternc inspect --ir`. Changing it is a reviewed change of every snapshot.

use std::fmt::Write;

use crate::{Graph, NodeIndex, Op, ReorgKind, ShortcutWeights};

fn list<T: ToString>(v: &[T]) -> String {
    v.iter().map(T::to_string).collect::<Vec<_>>().join(",")
}

fn stride(x: usize, y: usize) -> String {
    if x == y {
        x.to_string()
    } else {
        format!("{x}x{y}")
    }
}

/// The op's attributes as `key=value` words (flags as bare words).
fn attrs(op: &Op) -> String {
    match op {
        Op::Input => String::new(),
        Op::Conv(c) => format!(
            "filters={} size={} stride={} pad={} dilation={} groups={}{} act={}{}",
            c.filters,
            c.size,
            stride(c.stride_x, c.stride_y),
            c.pad,
            c.dilation,
            c.groups,
            if c.batch_normalize { " bn" } else { "" },
            c.activation,
            if c.ternary { " ternary" } else { "" },
        ),
        Op::Connected(c) => format!(
            "output={}{} act={}{}",
            c.output,
            if c.batch_normalize { " bn" } else { "" },
            c.activation,
            if c.ternary { " ternary" } else { "" },
        ),
        Op::MaxPool(p) => {
            format!("size={} stride={} padding={}", p.size, stride(p.stride_x, p.stride_y), p.padding)
        }
        Op::AvgPool => String::new(),
        Op::Route(r) => {
            if r.groups > 1 {
                format!("groups={} group_id={}", r.groups, r.group_id)
            } else {
                String::new()
            }
        }
        Op::Shortcut(s) => {
            let w = match s.weights {
                ShortcutWeights::None => String::new(),
                ShortcutWeights::PerFeature => {
                    format!(" weights=per_feature norm={}", s.weights_normalization)
                }
                ShortcutWeights::PerChannel => {
                    format!(" weights=per_channel norm={}", s.weights_normalization)
                }
            };
            format!("act={}{w}", s.activation)
        }
        Op::Upsample(u) => format!("stride={} scale={}", u.stride, u.scale),
        Op::Reorg(r) => format!(
            "stride={}{}{}",
            r.stride,
            if r.reverse { " reverse" } else { "" },
            if r.kind == ReorgKind::Old { " old" } else { "" }
        ),
        Op::Yolo(y) => format!(
            "classes={} mask={} anchors={} scale_x_y={}{}",
            y.classes,
            list(&y.mask),
            list(&y.anchors),
            y.scale_x_y,
            if y.new_coords { " new_coords" } else { "" }
        ),
        Op::Region(r) => format!(
            "classes={} coords={} num={} anchors={}{}",
            r.classes,
            r.coords,
            r.num,
            list(&r.anchors),
            if r.softmax { " softmax" } else { "" }
        ),
        Op::ScaleChannels(s) => format!("act={}{}", s.activation, if s.scale_wh { " scale_wh" } else { "" }),
        Op::Sam(s) => format!("act={}", s.activation),
        Op::Dropout(d) => format!("probability={}", d.probability),
        Op::Softmax(s) => format!("groups={} temperature={}", s.groups, s.temperature),
        Op::Cost(c) => format!("type={} scale={}", c.kind, c.scale),
    }
}

/// What the parameter store holds for a layer: ` {b=16 bn w=432 t=432/16}` (`t` =
/// ternary codes / scales).
fn param_summary(p: &crate::LayerParams) -> String {
    let mut parts = Vec::new();
    if !p.biases.is_empty() {
        parts.push(format!("b={}", p.biases.len()));
    }
    if p.bn.is_some() {
        parts.push("bn".to_string());
    }
    if !p.weights.is_empty() {
        parts.push(format!("w={}", p.weights.len()));
    }
    if let Some(t) = &p.ternary {
        parts.push(format!("t={}/{}", t.codes.len(), t.scales.len()));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" {{{}}}", parts.join(" "))
    }
}

impl Graph {
    fn value_name(&self, n: NodeIndex) -> String {
        match self.g[n].layer {
            Some(l) => format!("%{l}"),
            None => "%in".to_string(),
        }
    }

    /// The stable textual dump.
    pub fn dump(&self) -> String {
        let mut s = String::new();
        let net = &self.net;
        let _ = writeln!(s, "graph \"{}\"", self.name);
        let _ = writeln!(
            s,
            "net input={} batch={} subdivisions={}{}",
            self.input_shape(),
            net.batch,
            net.subdivisions,
            if net.letter_box { " letter_box" } else { "" }
        );
        let _ = writeln!(s, "%in = input : {}  # line {}", self.input_shape(), self.g[self.input].line);
        for &n in &self.layers {
            let node = &self.g[n];
            let ins: Vec<String> = self.inputs(n).into_iter().map(|i| self.value_name(i)).collect();
            let a = attrs(&node.op);
            let sep = if a.is_empty() { "" } else { " " };
            let params = node.layer.and_then(|l| self.params.layer(l)).map_or(String::new(), param_summary);
            let _ = writeln!(
                s,
                "{} = {} {}{sep}{a} : {}{params}  # line {}",
                self.value_name(n),
                node.op.type_name(),
                ins.join(", "),
                node.shape,
                node.line
            );
        }
        let _ = writeln!(
            s,
            "heads {}",
            if self.heads().is_empty() {
                "none".to_string()
            } else {
                self.heads().iter().map(|h| format!("%{h}")).collect::<Vec<_>>().join(", ")
            }
        );
        let _ = writeln!(s, "params {} floats, bflops {:.3}", self.total_params(), self.total_bflops());
        s
    }
}
