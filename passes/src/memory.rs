//! Memory planning: one arena for every activation of a compiled network.
//!
//! The compiled backends run the layers in Darknet order (a topological order of the
//! graph). Each layer output gets a byte range `[offset, offset + bytes)` of a single
//! arena (batch 1, `elem_bytes` per element: 4 for float32, 1 for int8 activations).
//! The network input is not in the arena: the caller owns it.
//!
//! # Lifetimes
//!
//! Step `i` is the execution of layer `i`. Layer `i`'s output is live over the
//! inclusive range of steps `[i, last]`, `last` being the largest index of a layer
//! that reads it ([`Graph::inputs`]), or `i` when nothing does. Detection heads
//! ([`Graph::heads`]) and the last layer are the network's outputs and stay live to
//! the last step. Two outputs *conflict* when their ranges share a step: at step `i`
//! layer `i` writes its output while reading its inputs, so an input read for the last
//! time at step `i` still conflicts with the output of step `i` (no op computes in
//! place, apart from the views below). These are the rules of the reference
//! interpreter, which frees a tensor after its last reader.
//!
//! # Aliases
//!
//! An output may live inside another layer's buffer ([`Slot::alias_of`]). The alias
//! relation forms a forest; each tree's root owns one arena allocation and every
//! member sits at a fixed byte offset inside it. Two kinds:
//!
//! - **Concat elision** (`alias_of > layer`): a `[route]` with `groups=1` is a channel
//!   concat, so an input can be written by its producer straight into its channel slice
//!   of the route's buffer, at `offset(route) + (bytes of the inputs before it)`. Legal
//!   when the input is a layer output (not the network input), appears only once among
//!   this route's inputs, and is not already placed inside another buffer: an output
//!   read by two routes sits inside at most one of them, the first in layer order; the
//!   other route copies it. Elision is per input: a route copies the inputs that are
//!   not placed inside it ([`MemoryPlan::route_copies`]) and is listed in
//!   [`MemoryPlan::elided_routes`] only when it copies nothing.
//! - **Views** (`alias_of < layer`, listed in [`MemoryPlan::views`]): the output is a
//!   contiguous slice of its single input, so the layer runs no code at all.
//!   * `[dropout]` and `[cost]` are the identity at inference (Darknet runs them in
//!     place): a view of their input at the same offset.
//!   * a `[route]` with one input takes slice `group_id` of `groups` of it, i.e. bytes
//!     `[group_id·b/groups, (group_id+1)·b/groups)` of the input's `b` bytes
//!     (yolov4-tiny's `groups=2 group_id=1`; `groups=1` is the whole input, as in
//!     yolov3's `layers=-4`). A grouped route with several inputs takes a slice of
//!     each, which is not contiguous in any of them: it is copied.
//!
//!   A view is made even when it outlives its input: only the view's own bytes stay
//!   reserved after the input's last reader (see below), exactly what a copy would
//!   need, so a view never costs more than the copy it replaces.
//!
//! A view can itself be inside a route (yolov4-tiny: the `groups=2` route 3 is a view
//! of layer 2, which is elided into route 8), and routes nest (an elided input of an
//! elided route). Views never write, and elided inputs write disjoint slices, so all
//! members of one tree that overlap hold the same bytes.
//!
//! # Allocation
//!
//! A tree reserves, for each member, the member's bytes over the member's live range
//! (not its whole root over the union of the ranges: a route's buffer is only partly
//! in use before the route runs). Trees are placed one by one, rigidly, each at the
//! lowest offset, aligned to [`ALIGN`] bytes, where none of its reservations overlaps
//! a reservation of a placed tree that shares a step with it. The order is greedy by
//! size (largest root first, the classic heuristic); since that heuristic can be far
//! from the bound on some networks, a few other orders ([`Order`]) are tried too and
//! the smallest arena wins. Aliases sit at their exact byte offsets inside their
//! root, which need not be aligned.
//!
//! [`MemoryPlan::validate`] re-checks a plan against the graph: no two outputs live at
//! the same step overlap in the arena unless they belong to the same alias tree, and
//! each alias is where its rule puts it.

use std::cmp::Reverse;
use std::fmt::Write as _;

use ternc_ir::{Graph, Op};

/// Alignment of every arena allocation (the roots of the alias trees), in bytes.
pub const ALIGN: usize = 64;

/// Where one layer output lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Byte offset in the arena.
    pub offset: usize,
    /// `numel · elem_bytes`.
    pub bytes: usize,
    /// The layer whose buffer holds this output: a later `[route]` that the output is
    /// written into (concat elision), or, for a view, the earlier layer it is a slice
    /// of. `None` for the roots, which own their allocation.
    pub alias_of: Option<usize>,
    /// Live steps `(first, last)`, inclusive: produced at step `first` (the layer's own
    /// index), last read at step `last`.
    pub live: (usize, usize),
}

/// The arena layout of every layer output (see the module docs for the rules).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryPlan {
    /// Bytes per element the plan was made for.
    pub elem_bytes: usize,
    /// One arena; every layer output lives at `[offset, offset + bytes)` of it. A
    /// multiple of [`ALIGN`].
    pub arena_bytes: usize,
    /// Indexed by Darknet layer index.
    pub slots: Vec<Slot>,
    /// Sum of all layer outputs (no reuse).
    pub naive_bytes: usize,
    /// Max over steps of the bytes live at that step, bytes shared by aliases counted
    /// once (per alias tree, the union of its live members' ranges): a lower bound
    /// for any placement with these aliases, so `arena_bytes >= peak_live_bytes`.
    pub peak_live_bytes: usize,
    /// Max over steps of the bytes of the layer outputs live at that step, each
    /// counted as its own tensor (no aliasing): what the reference interpreter's
    /// `peak_live_bytes` measures for one float32 image. `peak_live_bytes` is never
    /// above it, and equal to it without aliases.
    pub peak_tensor_bytes: usize,
    /// Routes that copy nothing: every input is written in place into the route's
    /// buffer, or the route is a view of its input.
    pub elided_routes: Vec<usize>,
    /// Layers whose output is a view of their single input (dropout, cost, routes
    /// slicing one input): no code runs for them.
    pub views: Vec<usize>,
    /// The placement order that gave the smallest arena.
    pub order: Order,
}

/// An order in which the allocator places the alias trees (module docs, "Allocation").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Largest root first, then earliest (greedy by size).
    Size,
    /// Longest reserved span of steps first, then largest.
    Lifetime,
    /// Largest bytes × steps first (summed over the members).
    Area,
    /// Execution order (first live step), then largest: first fit as an online
    /// allocator would.
    Start,
}

impl Order {
    pub const ALL: &'static [Order] = &[Order::Size, Order::Lifetime, Order::Area, Order::Start];
}

/// What the planner may do ([`run_with`]). [`Options::default`] allows every alias and
/// tries every order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Write route inputs in place into the route's buffer.
    pub elide_routes: bool,
    /// Let dropout, cost and single-input routes be views of their input.
    pub views: bool,
    /// Placement orders to try (at least one); the smallest arena wins, the earlier
    /// order on ties.
    pub orders: &'static [Order],
}

impl Default for Options {
    fn default() -> Self {
        Options { elide_routes: true, views: true, orders: Order::ALL }
    }
}

impl Options {
    /// Liveness only: every output owns its buffer.
    pub const NO_ALIASES: Options = Options { elide_routes: false, views: false, orders: Order::ALL };
}

/// Plans the arena for `graph` with every alias allowed.
pub fn run(graph: &Graph, elem_bytes: usize) -> MemoryPlan {
    run_with(graph, elem_bytes, Options::default())
}

/// The input layers of layer `i`, in slot order (`None`: the network input).
fn input_layers(graph: &Graph, i: usize) -> Vec<Option<usize>> {
    graph.inputs(graph.layers[i]).into_iter().map(|n| graph.node(n).layer).collect()
}

fn out_bytes(graph: &Graph, i: usize, elem_bytes: usize) -> usize {
    graph.layer(i).shape.numel() * elem_bytes
}

/// Live steps `(first, last)` of every layer output (module docs, "Lifetimes").
pub fn lifetimes(graph: &Graph) -> Vec<(usize, usize)> {
    let n = graph.num_layers();
    let mut last: Vec<usize> = (0..n).collect();
    for i in 0..n {
        for l in input_layers(graph, i).into_iter().flatten() {
            last[l] = last[l].max(i);
        }
    }
    for h in graph.heads().into_iter().chain(n.checked_sub(1)) {
        last[h] = n - 1;
    }
    (0..n).map(|i| (i, last[i])).collect()
}

fn overlaps(a: (usize, usize), b: (usize, usize)) -> bool {
    a.0 <= b.1 && b.0 <= a.1
}

fn align_up(x: usize) -> usize {
    x.div_ceil(ALIGN) * ALIGN
}

/// One member's reservation: `bytes` at `rel` bytes into its tree, over steps `live`.
#[derive(Debug, Clone, Copy)]
struct Rect {
    rel: usize,
    bytes: usize,
    live: (usize, usize),
}

/// Places the trees in `order`, each at the lowest aligned offset where its
/// reservations miss those of the trees placed before; returns the offsets and the
/// arena size.
fn place(trees: &[Vec<Rect>], order: &[usize]) -> (Vec<usize>, usize) {
    let mut offset = vec![0; trees.len()];
    // placed reservations: (start byte, end byte, live)
    let mut placed: Vec<(usize, usize, (usize, usize))> = Vec::new();
    let mut top = 0;
    for &t in order {
        let rects = &trees[t];
        // for each own reservation, the placed ones sharing a step with it
        let near: Vec<Vec<(usize, usize)>> = rects
            .iter()
            .map(|r| placed.iter().filter(|p| overlaps(p.2, r.live)).map(|p| (p.0, p.1)).collect())
            .collect();
        // The lowest fit puts some reservation just above a placed one (or at 0).
        let mut candidates = vec![0];
        for (r, near) in rects.iter().zip(&near) {
            candidates.extend(near.iter().map(|&(_, end)| align_up(end.saturating_sub(r.rel))));
        }
        candidates.sort_unstable();
        candidates.dedup();
        let fits = |o: usize| {
            rects.iter().zip(&near).all(|(r, near)| {
                let (a, b) = (o + r.rel, o + r.rel + r.bytes);
                near.iter().all(|&(s, e)| b <= s || e <= a)
            })
        };
        let o = candidates.into_iter().find(|&o| fits(o)).expect("above every placed reservation fits");
        offset[t] = o;
        for r in rects {
            placed.push((o + r.rel, o + r.rel + r.bytes, r.live));
            top = top.max(o + r.rel + r.bytes);
        }
    }
    (offset, align_up(top))
}

/// Plans the arena for `graph` under `opts`.
pub fn run_with(graph: &Graph, elem_bytes: usize, opts: Options) -> MemoryPlan {
    let n = graph.num_layers();
    let live = lifetimes(graph);
    let bytes: Vec<usize> = (0..n).map(|i| out_bytes(graph, i, elem_bytes)).collect();

    // parent[i] = (layer whose buffer holds i, byte offset of i inside it)
    let mut parent: Vec<Option<(usize, usize)>> = vec![None; n];
    for i in 0..n {
        let ins = input_layers(graph, i);
        match &graph.layer(i).op {
            Op::Dropout(_) | Op::Cost(_) if opts.views => {
                if let [Some(x)] = ins[..] {
                    parent[i] = Some((x, 0));
                }
            }
            Op::Route(r) if ins.len() == 1 => {
                let Some(x) = ins[0] else { continue };
                if opts.views {
                    parent[i] = Some((x, r.group_id * (bytes[x] / r.groups)));
                } else if opts.elide_routes && r.groups == 1 && parent[x].is_none() {
                    parent[x] = Some((i, 0));
                }
            }
            Op::Route(r) if r.groups == 1 && opts.elide_routes => {
                let shapes = graph.input_shapes(graph.layers[i]);
                let mut at = 0;
                for (&x, shape) in ins.iter().zip(shapes) {
                    if let Some(x) = x {
                        let once = ins.iter().filter(|&&y| y == Some(x)).count() == 1;
                        if once && parent[x].is_none() {
                            parent[x] = Some((i, at));
                        }
                    }
                    at += shape.numel() * elem_bytes;
                }
            }
            _ => {}
        }
    }

    // The trees: roots, and each member's reservation relative to its root.
    let (root, rel) = resolve(&parent);
    let roots: Vec<usize> = (0..n).filter(|&i| root[i] == i).collect();
    let mut tree_of = vec![usize::MAX; n];
    for (t, &r) in roots.iter().enumerate() {
        tree_of[r] = t;
    }
    let mut trees: Vec<Vec<Rect>> = vec![Vec::new(); roots.len()];
    for i in 0..n {
        trees[tree_of[root[i]]].push(Rect { rel: rel[i], bytes: bytes[i], live: live[i] });
    }

    let span = |t: usize| {
        let first = trees[t].iter().map(|r| r.live.0).min().unwrap_or(0);
        let last = trees[t].iter().map(|r| r.live.1).max().unwrap_or(0);
        (first, last)
    };
    let area = |t: usize| trees[t].iter().map(|r| r.bytes * (r.live.1 - r.live.0 + 1)).sum::<usize>();
    let size = |t: usize| bytes[roots[t]];
    let mut best: Option<(Vec<usize>, usize, Order)> = None;
    let orders = if opts.orders.is_empty() { &[Order::Size][..] } else { opts.orders };
    for &how in orders {
        let mut order: Vec<usize> = (0..roots.len()).collect();
        match how {
            Order::Size => order.sort_by_key(|&t| (Reverse(size(t)), span(t).0)),
            Order::Lifetime => {
                order.sort_by_key(|&t| (Reverse(span(t).1 - span(t).0), Reverse(size(t)), span(t).0))
            }
            Order::Area => order.sort_by_key(|&t| (Reverse(area(t)), span(t).0)),
            Order::Start => order.sort_by_key(|&t| (span(t).0, Reverse(size(t)))),
        }
        let (offsets, arena) = place(&trees, &order);
        let better = match &best {
            Some(b) => arena < b.1,
            None => true,
        };
        if better {
            best = Some((offsets, arena, how));
        }
    }
    let (offsets, arena_bytes, order) = best.unwrap_or((Vec::new(), 0, Order::Size));

    let slots: Vec<Slot> = (0..n)
        .map(|i| Slot {
            offset: offsets[tree_of[root[i]]] + rel[i],
            bytes: bytes[i],
            alias_of: parent[i].map(|p| p.0),
            live: live[i],
        })
        .collect();

    let mut peak_live_bytes = 0;
    let mut peak_tensor_bytes = 0;
    for t in 0..n {
        let now: Vec<usize> = (0..n).filter(|&i| live[i].0 <= t && t <= live[i].1).collect();
        peak_tensor_bytes = peak_tensor_bytes.max(now.iter().map(|&i| bytes[i]).sum());
        // per tree, the union of the live members' byte ranges
        let mut ranges: Vec<(usize, usize, usize)> =
            now.iter().map(|&i| (root[i], rel[i], rel[i] + bytes[i])).collect();
        ranges.sort_unstable();
        let mut total = 0;
        let mut cur: Option<(usize, usize, usize)> = None;
        for (r, a, b) in ranges {
            cur = match cur {
                Some((cr, ca, cb)) if cr == r && a <= cb => Some((cr, ca, cb.max(b))),
                Some((_, ca, cb)) => {
                    total += cb - ca;
                    Some((r, a, b))
                }
                None => Some((r, a, b)),
            };
        }
        total += cur.map_or(0, |(_, a, b)| b - a);
        peak_live_bytes = peak_live_bytes.max(total);
    }

    let views: Vec<usize> = (0..n).filter(|&i| matches!(parent[i], Some((p, _)) if p < i)).collect();
    let elided_routes = (0..n)
        .filter(|&i| matches!(graph.layer(i).op, Op::Route(_)))
        .filter(|&i| {
            views.contains(&i)
                || input_layers(graph, i)
                    .iter()
                    .all(|x| matches!(x, Some(x) if parent[*x].map(|p| p.0) == Some(i)))
        })
        .collect();

    MemoryPlan {
        elem_bytes,
        arena_bytes,
        slots,
        naive_bytes: bytes.iter().sum(),
        peak_live_bytes,
        peak_tensor_bytes,
        elided_routes,
        views,
        order,
    }
}

/// For each layer: the root of its alias tree and its byte offset relative to that
/// root. The parent links must be acyclic (they are, by construction: concat links go
/// to later routes, which never have a view link; view links go to earlier layers).
fn resolve(parent: &[Option<(usize, usize)>]) -> (Vec<usize>, Vec<usize>) {
    let n = parent.len();
    let mut root = vec![0; n];
    let mut rel = vec![0; n];
    for i in 0..n {
        let (mut at, mut off) = (i, 0);
        while let Some((p, o)) = parent[at] {
            at = p;
            off += o;
        }
        root[i] = at;
        rel[i] = off;
    }
    (root, rel)
}

impl MemoryPlan {
    /// Input slots of route `layer` that its code must copy into its buffer: those not
    /// written there in place. Empty for elided routes (views included).
    pub fn route_copies(&self, graph: &Graph, layer: usize) -> Vec<usize> {
        if self.views.contains(&layer) {
            return Vec::new();
        }
        input_layers(graph, layer)
            .iter()
            .enumerate()
            .filter(|(_, x)| !matches!(x, Some(x) if self.slots[*x].alias_of == Some(layer)))
            .map(|(k, _)| k)
            .collect()
    }

    /// Checks the plan against `graph`: sizes and bounds, the position of every alias
    /// under its rule, the elided-route and view lists, and that no two outputs live at
    /// the same step overlap in the arena unless they share an alias tree.
    pub fn validate(&self, graph: &Graph) -> Result<(), String> {
        let n = graph.num_layers();
        let e = self.elem_bytes;
        if self.slots.len() != n {
            return Err(format!("{} slots for {n} layers", self.slots.len()));
        }
        let live = lifetimes(graph);
        for (i, s) in self.slots.iter().enumerate() {
            let want = out_bytes(graph, i, e);
            if s.bytes != want {
                return Err(format!("layer {i}: {} bytes, its output needs {want}", s.bytes));
            }
            if s.offset + s.bytes > self.arena_bytes {
                return Err(format!(
                    "layer {i}: [{}, {}) is past the {}-byte arena",
                    s.offset,
                    s.offset + s.bytes,
                    self.arena_bytes
                ));
            }
            if s.live != live[i] {
                return Err(format!("layer {i}: live {:?}, expected {:?}", s.live, live[i]));
            }
            for x in input_layers(graph, i).into_iter().flatten() {
                if x >= i {
                    return Err(format!("layer {i} reads layer {x}: not in topological order"));
                }
            }
            match s.alias_of {
                None if s.offset % ALIGN != 0 => {
                    return Err(format!("layer {i}: offset {} is not {ALIGN}-byte aligned", s.offset))
                }
                None => {}
                Some(p) if p >= n || p == i => return Err(format!("layer {i}: alias of {p}")),
                Some(p) => self.check_alias(graph, i, p)?,
            }
        }

        // Alias trees (a cycle would loop forever in `resolve`).
        let mut root = vec![0; n];
        for (i, r) in root.iter_mut().enumerate() {
            let mut at = i;
            for _ in 0..=n {
                match self.slots[at].alias_of {
                    Some(p) => at = p,
                    None => break,
                }
            }
            if self.slots[at].alias_of.is_some() {
                return Err(format!("layer {i}: the alias links form a cycle"));
            }
            *r = at;
        }

        // No two simultaneously-live outputs of different trees overlap.
        let mut by_start: Vec<usize> = (0..n).collect();
        by_start.sort_by_key(|&i| self.slots[i].offset);
        for (k, &i) in by_start.iter().enumerate() {
            let a = self.slots[i];
            for &j in &by_start[k + 1..] {
                let b = self.slots[j];
                if b.offset >= a.offset + a.bytes {
                    break;
                }
                if b.bytes == 0 || a.bytes == 0 || root[i] == root[j] || !overlaps(a.live, b.live) {
                    continue;
                }
                let (x, y) = (i.min(j), i.max(j));
                return Err(format!(
                    "layers {x} and {y} are both live at step {} and overlap in the arena at [{}, {})",
                    a.live.0.max(b.live.0),
                    b.offset,
                    (a.offset + a.bytes).min(b.offset + b.bytes)
                ));
            }
        }

        // The lists agree with the slots.
        for (i, s) in self.slots.iter().enumerate() {
            let is_view = matches!(s.alias_of, Some(p) if p < i);
            if is_view != self.views.contains(&i) {
                return Err(format!("layer {i}: views list disagrees with its slot"));
            }
            let elided = matches!(graph.layer(i).op, Op::Route(_)) && self.route_copies(graph, i).is_empty();
            if elided != self.elided_routes.contains(&i) {
                return Err(format!("layer {i}: elided_routes disagrees with the slots"));
            }
        }
        let naive: usize = self.slots.iter().map(|s| s.bytes).sum();
        if naive != self.naive_bytes {
            return Err(format!("naive_bytes is {}, the outputs sum to {naive}", self.naive_bytes));
        }
        if self.arena_bytes < self.peak_live_bytes {
            return Err(format!(
                "arena of {} bytes is below the {} bytes live at the peak",
                self.arena_bytes, self.peak_live_bytes
            ));
        }
        Ok(())
    }

    /// Checks that layer `i`, declared inside layer `p`'s buffer, is where its rule puts it.
    fn check_alias(&self, graph: &Graph, i: usize, p: usize) -> Result<(), String> {
        let (s, ps) = (self.slots[i], self.slots[p]);
        let at = |rel: usize| {
            if s.offset == ps.offset + rel && rel + s.bytes <= ps.bytes {
                Ok(())
            } else {
                Err(format!(
                    "layer {i} at offset {} inside layer {p} (offset {}, {} bytes): expected offset {}",
                    s.offset,
                    ps.offset,
                    ps.bytes,
                    ps.offset + rel
                ))
            }
        };
        let node = graph.layer(i);
        if p > i {
            // concat elision: i is written into its channel slice of route p
            let Op::Route(r) = &graph.layer(p).op else {
                return Err(format!("layer {i} is inside layer {p}, which is not a route"));
            };
            if r.groups != 1 {
                return Err(format!("layer {i} is inside route {p}, which has groups={}", r.groups));
            }
            let ins = input_layers(graph, p);
            if ins.iter().filter(|&&x| x == Some(i)).count() != 1 {
                return Err(format!("layer {i} is inside route {p}, which does not read it exactly once"));
            }
            let k = ins.iter().position(|&x| x == Some(i)).expect("counted once");
            let before: usize =
                graph.input_shapes(graph.layers[p])[..k].iter().map(|x| x.numel() * self.elem_bytes).sum();
            return at(before);
        }
        // a view of its single input p
        if input_layers(graph, i) != [Some(p)] {
            return Err(format!("layer {i} is a view of layer {p}, but does not read only layer {p}"));
        }
        match &node.op {
            Op::Dropout(_) | Op::Cost(_) => at(0),
            Op::Route(r) => at(r.group_id * (ps.bytes / r.groups)),
            op => Err(format!("layer {i} ({}) cannot be a view of its input", op.type_name())),
        }
    }

    /// A table of the plan: one row per layer, with its live steps, bytes, offset and
    /// alias, under a header with the totals.
    pub fn dump(&self, graph: &Graph) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "arena {} bytes ({:?} order), naive {}, peak live {}, peak tensors {}, elided routes {:?}, views {:?}",
            self.arena_bytes,
            self.order,
            self.naive_bytes,
            self.peak_live_bytes,
            self.peak_tensor_bytes,
            self.elided_routes,
            self.views
        );
        let _ = writeln!(s, "layer type            live      bytes    offset  alias");
        for (i, sl) in self.slots.iter().enumerate() {
            let alias = match sl.alias_of {
                Some(p) if p < i => format!("view of {p}"),
                Some(p) => format!("in route {p} +{}", sl.offset as i64 - self.slots[p].offset as i64),
                None => String::new(),
            };
            let _ = writeln!(
                s,
                "{i:>5} {:<15} {:>4}..{:<4} {:>8} {:>9}  {alias}",
                graph.layer(i).op.type_name(),
                sl.live.0,
                sl.live.1,
                sl.bytes,
                sl.offset
            );
        }
        let _ = s.pop();
        s
    }
}
