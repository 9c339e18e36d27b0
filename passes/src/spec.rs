//! The layer-selection grammar of `--layers SPEC` and stage plans: a comma list of
//! `N`, `A-B` (inclusive), `-N` (N-th from the end), `all`, `none`, `all-but-last`,
//! `all-but-first`, `all-but-first-and-last`. `N` and `A-B` are Darknet layer indices.
//! Only weight layers (convolutional and connected) are selected: other indices inside
//! a range are skipped, and `-N`, `first` and `last` count weight layers only (the
//! last Darknet layer of a detector is a `[yolo]` head, never what one means).

use std::collections::BTreeSet;

use ternc_ir::Graph;

/// A parsed SPEC, independent of any model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    text: String,
    items: Vec<Item>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    Index(usize),
    FromEnd(usize),
    Range(usize, usize),
    All,
    None,
    AllButLast,
    AllButFirst,
    AllButFirstAndLast,
}

impl Spec {
    /// Parses a SPEC; `Err` says which item is malformed and what was expected.
    pub fn parse(text: &str) -> Result<Spec, String> {
        let expected =
            "expected N, A-B, -N, all, none, all-but-last, all-but-first or all-but-first-and-last";
        let mut items = Vec::new();
        for raw in text.split(',') {
            let t = raw.trim();
            let num =
                |s: &str| s.parse::<usize>().map_err(|_| format!("'{t}' in layer spec '{text}': {expected}"));
            let item = match t {
                "all" => Item::All,
                "none" => Item::None,
                "all-but-last" => Item::AllButLast,
                "all-but-first" => Item::AllButFirst,
                "all-but-first-and-last" => Item::AllButFirstAndLast,
                "" => return Err(format!("empty item in layer spec '{text}': {expected}")),
                _ if t.starts_with('-') => {
                    let n = num(&t[1..])?;
                    if n == 0 {
                        return Err(format!(
                            "'-0' in layer spec '{text}': counting from the end starts at -1"
                        ));
                    }
                    Item::FromEnd(n)
                }
                _ => match t.split_once('-') {
                    Some((a, b)) => {
                        let (a, b) = (num(a.trim())?, num(b.trim())?);
                        if a > b {
                            return Err(format!("'{t}' in layer spec '{text}': the range runs backwards"));
                        }
                        Item::Range(a, b)
                    }
                    None => Item::Index(num(t)?),
                },
            };
            items.push(item);
        }
        Ok(Spec { text: text.to_string(), items })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The Darknet layer indices this SPEC selects in `graph`, sorted. An index out
    /// of range is an error naming it; an explicit index that is not a weight layer
    /// too (a range merely skips such layers).
    pub fn select(&self, graph: &Graph) -> Result<BTreeSet<usize>, String> {
        let n = graph.num_layers();
        let weights: Vec<usize> = (0..n).filter(|&i| graph.layer(i).op.has_weights()).collect();
        let is_weight = |i: usize| graph.layer(i).op.has_weights();
        let check = |i: usize| {
            if i >= n {
                Err(format!(
                    "layer {i} in layer spec '{}' is out of range: {} has layers 0..={}",
                    self.text,
                    graph.name,
                    n - 1
                ))
            } else if !is_weight(i) {
                Err(format!(
                    "layer {i} in layer spec '{}' is a {} layer: only convolutional and connected layers can be ternary",
                    self.text,
                    graph.layer(i).op.type_name()
                ))
            } else {
                Ok(i)
            }
        };
        let mut out = BTreeSet::new();
        for &item in &self.items {
            match item {
                Item::Index(i) => {
                    out.insert(check(i)?);
                }
                Item::FromEnd(k) => {
                    let i = weights.len().checked_sub(k).map(|j| weights[j]).ok_or_else(|| {
                        format!(
                            "-{k} in layer spec '{}' is out of range: {} has {} weight layers",
                            self.text,
                            graph.name,
                            weights.len()
                        )
                    })?;
                    out.insert(i);
                }
                Item::Range(a, b) => {
                    check_range(a, n, &self.text, &graph.name)?;
                    check_range(b, n, &self.text, &graph.name)?;
                    out.extend((a..=b).filter(|&i| is_weight(i)));
                }
                Item::All => out.extend(weights.iter().copied()),
                Item::None => {}
                Item::AllButLast => out.extend(weights.iter().take(weights.len().saturating_sub(1)).copied()),
                Item::AllButFirst => out.extend(weights.iter().skip(1).copied()),
                Item::AllButFirstAndLast => {
                    out.extend(weights.iter().skip(1).take(weights.len().saturating_sub(2)).copied())
                }
            }
        }
        Ok(out)
    }
}

fn check_range(i: usize, n: usize, text: &str, name: &str) -> Result<(), String> {
    if i >= n {
        return Err(format!(
            "layer {i} in layer spec '{text}' is out of range: {name} has layers 0..={}",
            n - 1
        ));
    }
    Ok(())
}

/// The shortest SPEC selecting exactly `layers`: runs of consecutive weight layers
/// become `A-B` ranges (other layer types in between do not break a run).
pub fn describe(graph: &Graph, layers: &BTreeSet<usize>) -> String {
    let weights: Vec<usize> = (0..graph.num_layers()).filter(|&i| graph.layer(i).op.has_weights()).collect();
    if layers.is_empty() {
        return "none".into();
    }
    if weights.iter().all(|i| layers.contains(i)) {
        return "all".into();
    }
    let mut parts = Vec::new();
    let mut run: Option<(usize, usize)> = None;
    for &i in &weights {
        match (layers.contains(&i), run) {
            (true, None) => run = Some((i, i)),
            (true, Some((a, _))) => run = Some((a, i)),
            (false, Some((a, b))) => {
                parts.push(if a == b { a.to_string() } else { format!("{a}-{b}") });
                run = None;
            }
            (false, None) => {}
        }
    }
    if let Some((a, b)) = run {
        parts.push(if a == b { a.to_string() } else { format!("{a}-{b}") });
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// conv(0) maxpool(1) conv(2) conv(3) route(4) conv(5), built by hand (this crate
    /// does not depend on the frontend).
    fn graph() -> Graph {
        use ternc_ir::*;
        let net = NetConfig { width: 8, height: 8, channels: 3, ..Default::default() };
        let mut g = Graph::new("t.cfg", net, 1);
        let conv = |f| Op::Conv(Conv::pointwise(f));
        let pool = Op::MaxPool(MaxPool { size: 2, stride_x: 2, stride_y: 2, padding: 1 });
        let mut prev = g.input;
        for op in [conv(2), pool, conv(2), conv(2), Op::Route(Route { groups: 1, group_id: 0 }), conv(6)] {
            prev = g.add_layer(op, &[prev], 1).unwrap();
        }
        g
    }

    fn sel(spec: &str) -> Result<Vec<usize>, String> {
        Spec::parse(spec)?.select(&graph()).map(|s| s.into_iter().collect())
    }

    #[test]
    fn grammar_table() {
        for (spec, want) in [
            ("0", vec![0]),
            ("0,3", vec![0, 3]),
            ("0-3", vec![0, 2, 3]),
            ("1-4", vec![2, 3]),
            ("-1", vec![5]),
            ("-2,-4", vec![0, 3]),
            ("all", vec![0, 2, 3, 5]),
            ("none", vec![]),
            ("all-but-last", vec![0, 2, 3]),
            ("all-but-first", vec![2, 3, 5]),
            ("all-but-first-and-last", vec![2, 3]),
            (" 5 , 0-0 ", vec![0, 5]),
            ("none,2", vec![2]),
        ] {
            assert_eq!(sel(spec).unwrap(), want, "{spec}");
        }
    }

    #[test]
    fn grammar_errors() {
        for (spec, needle) in [
            ("x", "'x' in layer spec"),
            ("1,,2", "empty item"),
            ("3-1", "runs backwards"),
            ("-0", "-0"),
            ("7", "layer 7 in layer spec '7' is out of range"),
            ("0-9", "layer 9 in layer spec '0-9' is out of range"),
            ("1", "is a maxpool layer"),
            ("-5", "-5 in layer spec '-5' is out of range"),
            ("6", "layer 6 in layer spec '6' is out of range"),
            ("all-but", "'all-but'"),
        ] {
            let e = sel(spec).unwrap_err();
            assert!(e.contains(needle), "{spec}: {e}");
        }
    }

    #[test]
    fn describe_round_trips() {
        let g = graph();
        for spec in ["0", "0-3", "2-3", "all", "none", "0,5"] {
            let chosen = Spec::parse(spec).unwrap().select(&g).unwrap();
            let d = describe(&g, &chosen);
            assert_eq!(Spec::parse(&d).unwrap().select(&g).unwrap(), chosen, "{spec} -> {d}");
        }
        assert_eq!(describe(&g, &[0, 2, 3].into()), "0-3");
    }
}
