//! Memory planning on hand-built graphs (offsets worked out by hand) and on every
//! bundled cfg (the plan validates, beats no reuse, and never beats the live peak).
//!
//! The hand-built graphs use an 8x8 network input, so one float32 channel is
//! `8·8·4 = 256` bytes. Live ranges are inclusive steps `first..last`.

use std::path::{Path, PathBuf};

use ternc_frontend::{load_cfg, parse_cfg_text};
use ternc_ir::{Graph, Op};
use ternc_passes::memory::{self, MemoryPlan, Options, Order, Slot, ALIGN};

fn graph(body: &str) -> Graph {
    graph_sized(8, body)
}

fn graph_sized(size: usize, body: &str) -> Graph {
    let text = format!("[net]\nwidth={size}\nheight={size}\nchannels=3\n\n{body}");
    match parse_cfg_text(Path::new("t.cfg"), &text) {
        Ok(l) => l.graph,
        Err(e) => panic!("{e}\n{text}"),
    }
}

fn conv(filters: usize) -> String {
    format!("[convolutional]\nfilters={filters}\nsize=3\npad=1\nactivation=leaky\n\n")
}

fn conv1x1(filters: usize) -> String {
    format!("[convolutional]\nfilters={filters}\nsize=1\nactivation=leaky\n\n")
}

fn route(layers: &str) -> String {
    format!("[route]\nlayers={layers}\n\n")
}

fn plan(g: &Graph) -> MemoryPlan {
    let p = memory::run(g, 4);
    if let Err(e) = p.validate(g) {
        panic!("{e}\n{}", p.dump(g));
    }
    p
}

/// `(offset, alias_of)` of every layer.
fn layout(p: &MemoryPlan) -> Vec<(usize, Option<usize>)> {
    p.slots.iter().map(|s| (s.offset, s.alias_of)).collect()
}

#[test]
fn chain_reuses_two_buffers() {
    // 0 conv 16 → 1 conv 16 → 2 conv 16, each [16,8,8] = 4096 bytes.
    // live 0: 0..1, 1: 1..2, 2: 2..2 (the last layer is an output).
    // All the same size, so they are placed in layer order: 0 at 0; 1 meets 0 at
    // step 1 → 4096; 2 meets only 1 → back to 0. Two buffers: 8192 bytes.
    let g = graph(&[conv(16), conv(16), conv(16)].concat());
    let p = plan(&g);
    assert_eq!(layout(&p), [(0, None), (4096, None), (0, None)]);
    assert_eq!(p.slots[1], Slot { offset: 4096, bytes: 4096, alias_of: None, live: (1, 2) });
    assert_eq!((p.arena_bytes, p.naive_bytes, p.peak_live_bytes), (8192, 12288, 8192));
    assert!(p.elided_routes.is_empty() && p.views.is_empty());

    // int8 activations: 1024 bytes each, same layout scaled by 1/4.
    let p8 = memory::run(&g, 1);
    p8.validate(&g).unwrap();
    assert_eq!(layout(&p8), [(0, None), (1024, None), (0, None)]);
    assert_eq!((p8.arena_bytes, p8.naive_bytes, p8.peak_live_bytes), (2048, 3072, 2048));
}

#[test]
fn offsets_are_aligned() {
    // 5x5 input, 1-filter convs: 25·4 = 100 bytes each. Layer 1 cannot start at 100:
    // it goes to the next multiple of 64, 128; the arena is 228 rounded up to 256.
    let g = graph_sized(5, &[conv1x1(1), conv1x1(1), conv1x1(1)].concat());
    let p = plan(&g);
    assert_eq!(layout(&p), [(0, None), (128, None), (0, None)]);
    assert_eq!((p.arena_bytes, p.peak_live_bytes, p.naive_bytes), (256, 200, 300));
    assert_eq!(p.arena_bytes % ALIGN, 0);
}

#[test]
fn route_of_two_convs_is_elided() {
    // 0 conv 4  [4,8,8]  = 1024 bytes, live 0..2
    // 1 conv 8  [8,8,8]  = 2048 bytes, live 1..2
    // 2 route 0,1 [12,8,8] = 3072 bytes, live 2..3
    // 3 conv1x1 2 [2,8,8] = 512 bytes, live 3..3
    // Layers 0 and 1 are written into the route: 0 at +0, 1 at +c0·plane·4 = 4·64·4
    // = 1024. Layer 3 meets the route at step 3 → 3072. Arena 3584 = the live peak
    // (step 3: 3072 + 512); no reuse needs 6656.
    let g = graph(&[conv(4), conv(8), route("-2,-1"), conv1x1(2)].concat());
    let p = plan(&g);
    assert_eq!(layout(&p), [(0, Some(2)), (1024, Some(2)), (0, None), (3072, None)]);
    assert_eq!(p.slots[1].offset - p.slots[2].offset, 4 * 64 * 4);
    assert_eq!((p.arena_bytes, p.naive_bytes, p.peak_live_bytes), (3584, 6656, 3584));
    // every tensor separately at step 2: 1024 + 2048 + 3072
    assert_eq!(p.peak_tensor_bytes, 6144);
    assert_eq!(p.elided_routes, [2]);
    assert!(p.route_copies(&g, 2).is_empty());

    // Without aliases: by size, route 2 (2..3) at 0; 1 (1..2) meets it → 3072;
    // 0 (0..2) meets both → 5120; 3 (3..3) meets only 2 → 3072. Arena 6144.
    let q = memory::run_with(&g, 4, Options::NO_ALIASES);
    q.validate(&g).unwrap();
    assert_eq!(layout(&q), [(5120, None), (3072, None), (0, None), (3072, None)]);
    assert_eq!(q.arena_bytes, 6144);
    assert_eq!(q.route_copies(&g, 2), [0, 1]);
    assert!(q.elided_routes.is_empty());
}

#[test]
fn layer_routed_by_two_routes_aliases_into_one() {
    // 0 conv 4     1024 B, live 0..4 (read by 1, 2 and 4)
    // 1 conv 4     1024 B, live 1..2
    // 2 route 0,1  2048 B, live 2..3   ← 0 at +0, 1 at +1024: elided
    // 3 conv 4     1024 B, live 3..4
    // 4 route 0,3  2048 B, live 4..5   ← 0 is already inside route 2: copied;
    //                                     3 at +1024 (partial elision)
    // 5 conv1x1 2   512 B, live 5..5
    // Trees, by size: route 2's {0,1,2} at 0. Route 4's {3,4}: at 0, layer 3 (+1024,
    // 3..4) would hit route 2 ([0,2048) over 2..3); at 1024, layer 3 is at [2048,3072)
    // and route 4 at [1024,3072) over 4..5, where only layer 0 ([0,1024)) is live: it
    // fits. Layer 5 (5..5) meets only route 4 → 0. Arena 3072, the live peak (steps
    // 3 and 4: 2048 + 1024).
    let g = graph(&[conv(4), conv(4), route("-2,-1"), conv(4), route("0,3"), conv1x1(2)].concat());
    let p = plan(&g);
    assert_eq!(
        layout(&p),
        [(0, Some(2)), (1024, Some(2)), (0, None), (2048, Some(4)), (1024, None), (0, None)]
    );
    assert_eq!((p.arena_bytes, p.naive_bytes, p.peak_live_bytes), (3072, 7680, 3072));
    assert_eq!(p.elided_routes, [2]);
    assert_eq!(p.route_copies(&g, 4), [0]);
}

#[test]
fn layer_routed_twice_by_one_route_is_copied() {
    // 0 conv 4 (1024 B, 0..1); 1 route -1,-1 (2048 B, 1..2); 2 conv1x1 2 (512 B, 2..2).
    // Layer 0 would need two places inside the route: both halves are copied.
    // Route 1 at 0; 0 meets it → 2048; 2 meets only the route → 2048. Arena 3072.
    let g = graph(&[conv(4), route("-1,-1"), conv1x1(2)].concat());
    let p = plan(&g);
    assert_eq!(layout(&p), [(2048, None), (0, None), (2048, None)]);
    assert!(p.elided_routes.is_empty());
    assert_eq!(p.route_copies(&g, 1), [0, 1]);
    assert_eq!(p.arena_bytes, 3072);
}

#[test]
fn single_input_routes() {
    // A route of one layer with groups=1 is a copy of it: it becomes a view, offset +0.
    // Here layer 0 outlives the route (the shortcut reads it again).
    // 0 conv 4 (1024 B, 0..3); 1 route -1 (view of 0, 1..2); 2 conv1x1 2 (512 B, 2..3);
    // 3 shortcut from=0 (prev 2 + overlap of 0: [2,8,8] 512 B, 3..3).
    // Tree {0,1} over 0..3 at 0; 2 → 1024; 3 meets both → 1536. Arena 2048.
    let g = graph(&[conv(4), route("-1"), conv1x1(2), "[shortcut]\nfrom=0\n\n".into()].concat());
    let p = plan(&g);
    assert_eq!(layout(&p), [(0, None), (0, Some(0)), (1024, None), (1536, None)]);
    assert_eq!((p.views.clone(), p.elided_routes.clone()), (vec![1], vec![1]));
    assert_eq!(p.arena_bytes, 2048);

    // Also when the route outlives the layer: only the route's own bytes stay
    // reserved after step 1, as for a copy. 0 conv 4 (0..1); 1 route -1 (1..2, view of
    // 0); 2 conv1x1 2 (2..2) meets the route → 1024.
    let g = graph(&[conv(4), route("-1"), conv1x1(2)].concat());
    let p = plan(&g);
    assert_eq!(layout(&p), [(0, None), (0, Some(0)), (1024, None)]);
    assert_eq!((p.views.clone(), p.elided_routes.clone()), (vec![1], vec![1]));
    assert_eq!(p.arena_bytes, 1536);

    // Without views, the layer is written into the route instead (concat elision of
    // its only input).
    let p = memory::run_with(&g, 4, Options { views: false, ..Options::default() });
    p.validate(&g).unwrap();
    assert_eq!(layout(&p), [(0, Some(1)), (0, None), (1024, None)]);
    assert_eq!((p.views.clone(), p.elided_routes.clone()), (vec![], vec![1]));
    assert_eq!(p.arena_bytes, 1536);
}

#[test]
fn dropout_is_a_view_of_its_input() {
    // 0 conv 4 (1024 B, 0..1); 1 dropout (view of 0, 1..2); 2 conv 4 (1024 B, 2..2).
    // Tree {0,1} over 0..2 at 0; layer 2 meets it at step 2 → 1024. Arena 2048.
    let g = graph(&[conv(4), "[dropout]\nprobability=.5\n\n".into(), conv(4)].concat());
    let p = plan(&g);
    assert_eq!(layout(&p), [(0, None), (0, Some(0)), (1024, None)]);
    assert_eq!(p.views, [1]);
    assert!(p.elided_routes.is_empty());
    assert_eq!(p.arena_bytes, 2048);
}

#[test]
fn grouped_route_like_yolov4_tiny() {
    // yolov4-tiny's CSP block at 8x8:
    // 0 conv 8          [8,8,8]   2048 B, live 0..6
    // 1 route -1 groups=2 group_id=1: [4,8,8] 1024 B, live 1..2, view of 0 at
    //   +group_id·2048/2 = +1024
    // 2 conv 4          1024 B, live 2..4
    // 3 conv 4          1024 B, live 3..4
    // 4 route -1,-2     (3, 2) 2048 B, live 4..5: 3 at +0, 2 at +1024
    // 5 conv1x1 8       2048 B, live 5..6
    // 6 route -6,-1     (0, 5) [16,8,8] 4096 B, live 6..7: 0 at +0, 5 at +2048
    // 7 maxpool 2/2     [16,4,4] 1024 B, live 7..7
    // Trees, by size: route 6's {0,1,5,6} (4096 B) at 0. Route 4's {2,3,4} (2048 B):
    // at 0 or 1024, layers 2/3 hit layer 0 ([0,2048), live to 6); at 2048, route 4
    // ([2048,4096), 4..5) hits layer 5 (+2048, 5..6); so 4096. Layer 7 (7..7) meets
    // route 6 ([0,4096)) → 4096. Arena 6144 = the live peak (step 5: layers 0 and 5,
    // 4096 B, plus route 4, 2048 B).
    // So layer 1 sits at 0 + 1024, layer 2 at 4096 + 1024, layer 5 at 0 + 2048.
    let g = graph(
        &[
            conv(8),
            "[route]\nlayers=-1\ngroups=2\ngroup_id=1\n\n".into(),
            conv(4),
            conv(4),
            route("-1,-2"),
            conv1x1(8),
            route("-6,-1"),
            "[maxpool]\nsize=2\nstride=2\n\n".into(),
        ]
        .concat(),
    );
    let p = plan(&g);
    assert_eq!(
        layout(&p),
        [
            (0, Some(6)),
            (1024, Some(0)),
            (5120, Some(4)),
            (4096, Some(4)),
            (4096, None),
            (2048, Some(6)),
            (0, None),
            (4096, None),
        ]
    );
    assert_eq!(p.views, [1]);
    assert_eq!(p.elided_routes, [1, 4, 6]);
    assert_eq!(
        (p.arena_bytes, p.naive_bytes, p.peak_live_bytes, p.peak_tensor_bytes),
        (6144, 14336, 6144, 8192)
    );
    insta::assert_snapshot!(p.dump(&g), @r"
    arena 6144 bytes (Size order), naive 14336, peak live 6144, peak tensors 8192, elided routes [1, 4, 6], views [1]
    layer type            live      bytes    offset  alias
        0 convolutional      0..6        2048         0  in route 6 +0
        1 route              1..2        1024      1024  view of 0
        2 convolutional      2..4        1024      5120  in route 4 +1024
        3 convolutional      3..4        1024      4096  in route 4 +0
        4 route              4..5        2048      4096  
        5 convolutional      5..6        2048      2048  in route 6 +2048
        6 route              6..7        4096         0  
        7 maxpool            7..7        1024      4096
    ");
}

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

fn cfgs() -> Vec<PathBuf> {
    let mut v = Vec::new();
    for dir in ["darknet", "darknet-twn"] {
        let entries = std::fs::read_dir(models_dir().join(dir)).expect("models dir");
        v.extend(entries.map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "cfg")));
    }
    v.sort();
    v
}

#[test]
fn real_yolov4_tiny_grouped_routes() {
    let g = load_cfg(&models_dir().join("darknet/yolov4-tiny.cfg")).unwrap().graph;
    let p = plan(&g);
    let plane = |i: usize| g.layer(i).shape.plane() * 4;
    // 3 = route 2 groups=2 group_id=1: a view of the second half (32 of 64 channels)
    assert_eq!(p.slots[3].alias_of, Some(2));
    assert_eq!(p.slots[3].offset, p.slots[2].offset + 32 * plane(2));
    // 6 = route 5,4: both written in place; 8 = route 2,7: both written in place, so
    // layer 2 (and its view 3) live inside route 8
    assert_eq!((p.slots[5].alias_of, p.slots[4].alias_of), (Some(6), Some(6)));
    assert_eq!(p.slots[4].offset, p.slots[6].offset + 32 * plane(4));
    assert_eq!((p.slots[2].alias_of, p.slots[7].alias_of), (Some(8), Some(8)));
    assert_eq!(p.slots[2].offset, p.slots[8].offset);
    assert_eq!(p.slots[7].offset, p.slots[8].offset + 64 * plane(7));
    for r in [3, 6, 8] {
        assert!(p.elided_routes.contains(&r), "route {r}\n{}", p.dump(&g));
        assert!(p.route_copies(&g, r).is_empty());
    }
}

fn mib(b: usize) -> String {
    format!("{:.2} MiB", b as f64 / (1 << 20) as f64)
}

#[test]
fn every_bundled_cfg_validates() {
    let cfgs = cfgs();
    assert!(cfgs.len() >= 30, "found {} cfgs", cfgs.len());
    println!(
        "{:<28} {:>11} {:>11} {:>11} {:>11} {:>11} {:>7}",
        "cfg", "naive", "tensors", "peak", "arena", "no-alias", "elided"
    );
    for path in cfgs {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let g = load_cfg(&path).unwrap_or_else(|e| panic!("{e}")).graph;
        for elem in [4, 1] {
            let size_only = Options { orders: &[Order::Size], ..Options::default() };
            for opts in [Options::default(), Options::NO_ALIASES, size_only] {
                let p = memory::run_with(&g, elem, opts);
                if let Err(e) = p.validate(&g) {
                    panic!("{name} ({elem}-byte, {opts:?}): {e}\n{}", p.dump(&g));
                }
                assert!(p.arena_bytes >= p.peak_live_bytes, "{name}");
                assert!(p.peak_live_bytes <= p.peak_tensor_bytes, "{name}");
                if !g.heads().is_empty() {
                    assert!(
                        p.arena_bytes < p.naive_bytes,
                        "{name}: arena {} naive {}",
                        p.arena_bytes,
                        p.naive_bytes
                    );
                }
                if opts == Options::NO_ALIASES {
                    assert_eq!(p.peak_live_bytes, p.peak_tensor_bytes, "{name}");
                    assert!(p.elided_routes.is_empty() && p.views.is_empty());
                }
            }
        }
        let p = memory::run(&g, 4);
        let q = memory::run_with(&g, 4, Options::NO_ALIASES);
        println!(
            "{name:<28} {:>11} {:>11} {:>11} {:>11} {:>11} {:>7}",
            mib(p.naive_bytes),
            mib(p.peak_tensor_bytes),
            mib(p.peak_live_bytes),
            mib(p.arena_bytes),
            mib(q.arena_bytes),
            p.elided_routes.len()
        );
    }
}

/// `text` with the `[net]` width and height set to `size`.
fn resized(text: &str, size: usize) -> String {
    text.lines()
        .map(|l| match l.split_once('=').map(|(k, _)| k.trim()) {
            Some("width") => format!("width={size}"),
            Some("height") => format!("height={size}"),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn figures_at_416() {
    for name in ["yolov3-voc.cfg", "yolov4.cfg"] {
        let text = std::fs::read_to_string(models_dir().join("darknet").join(name)).unwrap();
        let g = parse_cfg_text(Path::new(name), &resized(&text, 416)).unwrap().graph;
        assert_eq!((g.input_shape().w, g.input_shape().h), (416, 416));
        let p = plan(&g);
        let q = memory::run_with(&g, 4, Options::NO_ALIASES);
        q.validate(&g).unwrap();
        let routes = (0..g.num_layers()).filter(|&i| g.layer(i).op.type_name() == "route").count();
        let views = p.elided_routes.iter().filter(|r| p.views.contains(r)).count();
        let partial = (0..g.num_layers())
            .filter(|&i| g.layer(i).op.type_name() == "route" && !p.elided_routes.contains(&i))
            .filter(|&i| p.slots.iter().any(|s| s.alias_of == Some(i)))
            .count();
        println!(
            "{name} at 416x416, float32: {} layers, {routes} routes\n  naive (sum of outputs) {} ({} B)\n  peak live tensors (no aliasing) {} ({} B)\n  peak live buffers (this plan's lower bound) {} ({} B)\n  arena {} ({} B, {:?} order)\n  arena without aliases {} ({} B)\n  elided routes {} ({} concats written in place, {views} views), partially elided {partial}",
            g.num_layers(),
            mib(p.naive_bytes),
            p.naive_bytes,
            mib(p.peak_tensor_bytes),
            p.peak_tensor_bytes,
            mib(p.peak_live_bytes),
            p.peak_live_bytes,
            mib(p.arena_bytes),
            p.arena_bytes,
            p.order,
            mib(q.arena_bytes),
            q.arena_bytes,
            p.elided_routes.len(),
            p.elided_routes.len() - views,
        );
        assert!(p.peak_live_bytes <= p.arena_bytes && p.arena_bytes < p.naive_bytes);
    }
}

/// The logical value of every element of every layer output, as a tag: `(producer,
/// element)` of the op that computed it, seen through the ops that only move data
/// (routes, dropout, cost), which forward their inputs' tags. The network input is
/// producer `u32::MAX`.
fn origins(g: &Graph) -> Vec<Vec<u64>> {
    let mut all: Vec<Vec<u64>> = Vec::new();
    for i in 0..g.num_layers() {
        let ins: Vec<Vec<u64>> = g
            .inputs(g.layers[i])
            .into_iter()
            .map(|n| match g.node(n).layer {
                Some(x) => all[x].clone(),
                None => {
                    (0..g.node(n).shape.numel() as u64).map(|k| (u64::from(u32::MAX) << 32) | k).collect()
                }
            })
            .collect();
        all.push(match &g.layer(i).op {
            Op::Dropout(_) | Op::Cost(_) => ins[0].clone(),
            Op::Route(r) => ins
                .iter()
                .flat_map(|x| {
                    let part = x.len() / r.groups;
                    x[r.group_id * part..(r.group_id + 1) * part].to_vec()
                })
                .collect(),
            _ => (0..g.layer(i).shape.numel() as u64).map(|k| ((i as u64) << 32) | k).collect(),
        });
    }
    all
}

/// Executes the plan on an arena of tags: each layer writes the tags of what it
/// computes where the plan puts it (a view writes nothing, a route writes only the
/// inputs it copies), and its inputs must hold the right tags before and after that
/// (an op reads while it writes), as must the outputs at the end. Catches any output
/// overwritten before its last reader is done.
fn simulate(g: &Graph, p: &MemoryPlan) -> Result<(), String> {
    let e = p.elem_bytes;
    let tags = origins(g);
    let mut arena = vec![u64::MAX - 1; p.arena_bytes / e];
    let n = g.num_layers();
    let at = |i: usize| p.slots[i].offset / e;
    let check = |arena: &[u64], x: usize, step: usize| -> Result<(), String> {
        if arena[at(x)..at(x) + tags[x].len()] != tags[x][..] {
            return Err(format!("step {step}: layer {x} was overwritten"));
        }
        Ok(())
    };
    for i in 0..n {
        let ins: Vec<Option<usize>> = g.inputs(g.layers[i]).into_iter().map(|n| g.node(n).layer).collect();
        for x in ins.iter().flatten() {
            check(&arena, *x, i)?;
        }
        if p.views.contains(&i) {
            continue;
        }
        let mut copy = |from: usize, to: usize| {
            arena[at(i) + from..at(i) + to].copy_from_slice(&tags[i][from..to]);
        };
        if let Op::Route(r) = &g.layer(i).op {
            let mut k = 0;
            for (x, s) in ins.iter().zip(g.input_shapes(g.layers[i])) {
                let part = s.numel() / r.groups;
                if !matches!(x, Some(x) if p.slots[*x].alias_of == Some(i)) {
                    copy(k, k + part);
                }
                k += part;
            }
        } else {
            copy(0, tags[i].len());
        }
        for x in ins.iter().flatten() {
            check(&arena, *x, i)?;
        }
    }
    for h in g.heads().into_iter().chain([n - 1]) {
        check(&arena, h, n)?;
    }
    Ok(())
}

#[test]
fn plans_execute_correctly() {
    // every bundled cfg at 128x128 (so the tag arena stays small), float32 and int8
    for path in cfgs() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let g = parse_cfg_text(&path, &resized(&text, 128)).unwrap_or_else(|e| panic!("{e}")).graph;
        for elem in [4, 1] {
            for opts in [Options::default(), Options::NO_ALIASES] {
                let p = memory::run_with(&g, elem, opts);
                p.validate(&g).unwrap_or_else(|e| panic!("{name}: {e}"));
                if let Err(e) = simulate(&g, &p) {
                    panic!("{name} ({elem}-byte, {opts:?}): {e}\n{}", p.dump(&g));
                }
            }
        }
    }
}

#[test]
fn broken_plans_are_rejected() {
    // chain: layer 2 moved onto layer 1, which it reads
    let g = graph(&[conv(16), conv(16), conv(16)].concat());
    let mut p = plan(&g);
    p.slots[2].offset = 4096;
    let e = p.validate(&g).unwrap_err();
    assert!(e.contains("layers 1 and 2"), "{e}");
    assert!(simulate(&g, &p).is_err());
    // unaligned buffer
    let mut p = plan(&g);
    p.slots[1].offset = 4100;
    p.arena_bytes = 8256;
    assert!(p.validate(&g).unwrap_err().contains("aligned"));
    // past the arena, or an arena below the live peak
    let mut p = plan(&g);
    p.arena_bytes = 4096;
    assert!(p.validate(&g).is_err());

    let g = graph(&[conv(4), conv(8), route("-2,-1"), conv1x1(2)].concat());
    // an elided input at the wrong channel offset
    let mut p = plan(&g);
    p.slots[1].offset += 256;
    assert!(p.validate(&g).unwrap_err().contains("expected offset 1024"));
    assert!(simulate(&g, &p).is_err());
    // inside a layer that is not a route
    let mut p = plan(&g);
    p.slots[0].alias_of = Some(3);
    assert!(p.validate(&g).unwrap_err().contains("not a route"));
    // a route listed as elided that copies
    let mut p = plan(&g);
    p.slots[1] = Slot { offset: 3584, alias_of: None, ..p.slots[1] };
    p.arena_bytes = 5632;
    assert!(p.validate(&g).unwrap_err().contains("elided_routes"));
    p.elided_routes.clear();
    p.validate(&g).unwrap();
    simulate(&g, &p).unwrap();
}
