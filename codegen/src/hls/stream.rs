//! The streaming form of the HLS top function (`--hls-arch stream`): every layer
//! output in its own on-chip array, the layers as processes of a `#pragma HLS
//! DATAFLOW` region, the input copied in and the heads copied out over AXI once.
//!
//! [`plan`] reads the kernel program as it is: each kernel's arena accesses are
//! bounded statically (affine indices over constant loop bounds, tap offsets within
//! their table's range) and resolved to the *value* they touch, the latest layer
//! output (or scratch area) whose region holds them. The memory plan's reuse of
//! arena regions thus disappears: every value gets its own buffer (no reuse, so
//! more memory than the plan, but single-producer). Then:
//!
//! - a value with several consumer processes (a layer output a route reads too) is
//!   copied by a `fork` process into one buffer per consumer (DATAFLOW wants one
//!   consumer per buffer);
//! - a route the memory plan builds in place (its inputs write into its region, a
//!   zero-copy concatenation) gets a `concat` process copying the parts into its own
//!   buffer, so no buffer has two producers;
//! - a layer's scratch (padded copies) and its int8 activations (`q8`) are local
//!   arrays of its process;
//! - a kernel's accesses are rebased onto its buffers: it reads one value (`src`)
//!   and writes one (`dst`), otherwise [`plan`] refuses the program.
//!
//! Ternary convolutions read their window through a line buffer (module `line`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::program::*;

/// A buffer's contents: a layer output, a route assembled by a concat process, a
/// layer's scratch, or the network input.
#[derive(Debug, Clone)]
pub(crate) struct Value {
    /// Arena region `[lo, hi)` (the input: `[0, input_len)` of its own space).
    pub lo: i64,
    pub hi: i64,
    pub producer: usize,
    /// Consumer processes (not the producer itself), in first-read order.
    pub consumers: Vec<usize>,
    /// Scratch of its producer (a local array of that process).
    pub local: bool,
    pub layer: Option<usize>,
}

impl Value {
    pub fn len(&self) -> usize {
        (self.hi - self.lo) as usize
    }
}

/// A process of the DATAFLOW region.
#[derive(Debug, Clone)]
pub(crate) enum Proc {
    /// The input copied from AXI into value `0`.
    Input,
    /// A layer: its kernels in order.
    Layer { layer: usize, kernels: Vec<usize> },
    /// A route's parts (values) copied into its value.
    Concat { value: usize, parts: Vec<usize> },
    /// Head `i`: value copied out to AXI.
    Output { head: usize, value: usize },
}

/// The streaming structure of a program.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// The kernels, rebased: `Buf::Input` reads the kernel's source value, `Buf::Arena`
    /// is its destination value.
    pub kernels: Vec<Kernel>,
    /// Per kernel: the value it reads and the value it writes.
    pub src: Vec<Option<usize>>,
    pub dst: Vec<Option<usize>>,
    pub values: Vec<Value>,
    pub procs: Vec<Proc>,
    /// Bytes of `q8` each layer uses (int8 layers).
    pub q8: BTreeMap<usize, usize>,
}

type Range = (i64, i64);

/// Value ranges of the i32 locals loaded from integer tables or set to constants.
fn local_ranges(k: &Kernel, consts: &[ConstTable]) -> Vec<Option<Range>> {
    fn walk(b: &[Stmt], consts: &[ConstTable], r: &mut [Option<Option<Range>>]) {
        for st in b {
            match st {
                Stmt::Assign { dst, expr } => {
                    let this = match expr {
                        Expr::Copy(Operand::I32(v)) => Some((*v as i64, *v as i64)),
                        Expr::Load { buf: Buf::Const(t), .. } => {
                            consts.get(*t).and_then(|t| t.data.int_range())
                        }
                        _ => None,
                    };
                    let slot = &mut r[dst.0 as usize];
                    *slot = Some(match (*slot, this) {
                        (None, x) => x,
                        (Some(Some(a)), Some(b)) => Some((a.0.min(b.0), a.1.max(b.1))),
                        _ => None,
                    });
                }
                Stmt::Loop(l) => walk(&l.body, consts, r),
                Stmt::Store { .. } => {}
            }
        }
    }
    let mut r = vec![None; k.locals.len()];
    walk(&k.body, consts, &mut r);
    r.into_iter().map(Option::flatten).collect()
}

/// Every access of a kernel to `in` or the arena: `(buf, store, [lo, hi])`, in
/// program order (the order [`rebase`] rewrites them in).
fn accesses(k: &Kernel, consts: &[ConstTable]) -> Result<Vec<(Buf, bool, Range)>, String> {
    let locals = local_ranges(k, consts);
    let mut vars: Vec<Range> = vec![(0, 0); k.vars as usize];
    let mut out = Vec::new();
    fn range(i: &Index, vars: &[Range], locals: &[Option<Range>], lanes: i64) -> Result<Range, String> {
        let (mut lo, mut hi) = (i.offset, i.offset);
        for &(v, c) in &i.terms {
            let (a, b) = vars[v.0 as usize];
            lo += (c * a).min(c * b);
            hi += (c * a).max(c * b);
        }
        if let Some(d) = i.dynamic {
            let (a, b) = locals[d.0 as usize].ok_or("an index with an unbounded dynamic part")?;
            lo += a;
            hi += b;
        }
        Ok((lo, hi + lanes - 1))
    }
    fn bound(b: Bound, locals: &[Option<Range>], hi: bool) -> Result<i64, String> {
        match b {
            Bound::Const(c) => Ok(c),
            Bound::Local(l) => {
                let (a, b) = locals[l.0 as usize].ok_or("a loop bound without a range")?;
                Ok(if hi { b } else { a })
            }
        }
    }
    fn walk(
        b: &[Stmt],
        k: &Kernel,
        vars: &mut Vec<Range>,
        locals: &[Option<Range>],
        out: &mut Vec<(Buf, bool, Range)>,
    ) -> Result<(), String> {
        for st in b {
            match st {
                Stmt::Assign { dst, expr: Expr::Load { buf, index } | Expr::LoadVec { buf, index } }
                    if matches!(buf, Buf::Arena | Buf::Input) =>
                {
                    let lanes = match st {
                        Stmt::Assign { expr: Expr::LoadVec { .. }, .. } => k.locals[dst.0 as usize].lanes(),
                        _ => 1,
                    };
                    out.push((*buf, false, range(index, vars, locals, lanes as i64)?));
                }
                Stmt::Store { buf: Buf::Arena, index, value } => {
                    let lanes = match value {
                        Operand::Local(l) => k.locals[l.0 as usize].lanes(),
                        _ => 1,
                    };
                    out.push((Buf::Arena, true, range(index, vars, locals, lanes as i64)?));
                }
                Stmt::Loop(l) => {
                    let (a, e) = (bound(l.start, locals, false)?, bound(l.end, locals, true)?);
                    let last = if e <= a { a } else { a + (e - a - 1) / l.step * l.step };
                    vars[l.var.0 as usize] = (a, last);
                    walk(&l.body, k, vars, locals, out)?;
                }
                _ => {}
            }
        }
        Ok(())
    }
    walk(&k.body, k, &mut vars, &locals, &mut out)?;
    Ok(out)
}

/// Rebases a kernel: each access to `in` or the arena (in [`accesses`] order) goes to
/// `targets[n]`: `Buf::Input` (the kernel's source value) or `Buf::Arena` (its
/// destination), its index minus that value's start.
fn rebase(k: &Kernel, targets: &[(Buf, i64)]) -> Kernel {
    fn walk(b: &mut [Stmt], t: &mut std::slice::Iter<(Buf, i64)>) {
        for st in b {
            match st {
                Stmt::Assign { expr: Expr::Load { buf, index } | Expr::LoadVec { buf, index }, .. }
                    if matches!(buf, Buf::Arena | Buf::Input) =>
                {
                    let &(b, lo) = t.next().expect("one target an access");
                    *buf = b;
                    index.offset -= lo;
                }
                Stmt::Store { buf: Buf::Arena, index, .. } => {
                    let &(_, lo) = t.next().expect("one target an access");
                    index.offset -= lo;
                }
                Stmt::Loop(l) => walk(&mut l.body, t),
                _ => {}
            }
        }
    }
    let mut k = k.clone();
    walk(&mut k.body, &mut targets.iter());
    k
}

/// Bytes of `q8` a kernel touches (its highest index + 1 over loads and stores).
fn q8_extent(k: &Kernel, consts: &[ConstTable]) -> usize {
    let locals = local_ranges(k, consts);
    let mut vars: Vec<Range> = vec![(0, 0); k.vars as usize];
    fn walk(b: &[Stmt], k: &Kernel, vars: &mut Vec<Range>, locals: &[Option<Range>], hi: &mut i64) {
        for st in b {
            let (index, lanes) = match st {
                Stmt::Assign { expr: Expr::Load { buf: Buf::Q8, index }, .. } => (index, 1),
                Stmt::Assign { dst, expr: Expr::LoadVec { buf: Buf::Q8, index } } => {
                    (index, k.locals[dst.0 as usize].lanes() as i64)
                }
                Stmt::Store { buf: Buf::Q8, index, .. } => (index, 1),
                Stmt::Loop(l) => {
                    let b = |b: Bound, up: bool| match b {
                        Bound::Const(c) => c,
                        Bound::Local(x) => locals[x.0 as usize].map_or(0, |r| if up { r.1 } else { r.0 }),
                    };
                    let (a, e) = (b(l.start, false), b(l.end, true));
                    if e > a {
                        vars[l.var.0 as usize] = (a, a + (e - a - 1) / l.step * l.step);
                        walk(&l.body, k, vars, locals, hi);
                    }
                    continue;
                }
                _ => continue,
            };
            let mut m = index.offset;
            for &(v, c) in &index.terms {
                let (a, b) = vars[v.0 as usize];
                m += (c * a).max(c * b);
            }
            if let Some(d) = index.dynamic {
                m += locals[d.0 as usize].map_or(0, |r| r.1);
            }
            *hi = (*hi).max(m + lanes);
        }
    }
    let mut hi = 0;
    walk(&k.body, k, &mut vars, &locals, &mut hi);
    hi.max(0) as usize
}

/// The streaming structure of `program`, or why it has none.
pub(crate) fn plan(program: &Program) -> Result<Plan, String> {
    let mut values = vec![Value {
        lo: 0,
        hi: program.input_len() as i64,
        producer: 0,
        consumers: Vec::new(),
        local: false,
        layer: None,
    }];
    let mut procs = vec![Proc::Input];
    // arena values in creation order (indices into `values`), the input excluded
    let mut arena: Vec<usize> = Vec::new();
    let mut concat_of: BTreeMap<usize, usize> = BTreeMap::new();
    let n = program.kernels.len();
    let (mut src, mut dst) = (vec![None; n], vec![None; n]);
    let mut kernels = Vec::with_capacity(n);
    let mut q8: BTreeMap<usize, usize> = BTreeMap::new();
    let plan_len = program.plan_len as i64;
    let mut k = 0;
    while k < n {
        let layer = program.kernels[k].layer.ok_or("a kernel without a layer")?;
        let first = k;
        while k < n && program.kernels[k].layer == Some(layer) {
            k += 1;
        }
        let mut pending_concats = Vec::new();
        let mut mine: Vec<usize> = Vec::new(); // values this layer produced
        let mut reads: Vec<usize> = Vec::new();
        for kk in first..k {
            let kernel = &program.kernels[kk];
            let acc = accesses(kernel, &program.consts)
                .map_err(|e| format!("kernel k{kk} \"{}\": {e}", kernel.name))?;
            // the value written
            let stores: Vec<Range> = acc.iter().filter(|a| a.1).map(|a| a.2).collect();
            let mut write = None;
            if !stores.is_empty() {
                let lo = stores.iter().map(|r| r.0).min().unwrap();
                let hi = stores.iter().map(|r| r.1).max().unwrap();
                let out = &program.layers[layer];
                let (olo, ohi) = (out.offset as i64, (out.offset + out.len()) as i64);
                let (vlo, vhi, local) = if olo <= lo && hi < ohi {
                    (olo, ohi, false)
                } else if lo >= plan_len {
                    (lo, hi + 1, true)
                } else {
                    return Err(format!(
                        "kernel k{kk} \"{}\" writes [{lo}, {hi}] outside its layer's output",
                        kernel.name
                    ));
                };
                // this layer's own value for that region, if it made one already
                let v = match mine.iter().copied().find(|&v| values[v].lo == vlo && values[v].hi == vhi) {
                    Some(v) => v,
                    None => {
                        let v = values.len();
                        values.push(Value {
                            lo: vlo,
                            hi: vhi,
                            producer: usize::MAX,
                            consumers: Vec::new(),
                            local,
                            layer: Some(layer),
                        });
                        v
                    }
                };
                write = Some(v);
            }
            let mut targets: Vec<(Buf, i64)> = Vec::with_capacity(acc.len());
            // the value read
            let mut read: Option<usize> = None;
            let set_read = |v: usize, read: &mut Option<usize>| -> Result<(), String> {
                match *read {
                    Some(r) if r != v => Err(format!(
                        "kernel k{kk} \"{}\" reads two buffers (the stream form gives a kernel one source)",
                        kernel.name
                    )),
                    _ => {
                        *read = Some(v);
                        Ok(())
                    }
                }
            };
            for &(buf, store, (lo, hi)) in &acc {
                if store {
                    targets.push((Buf::Arena, write.map_or(0, |w| values[w].lo)));
                    continue;
                }
                if buf == Buf::Input {
                    set_read(0, &mut read)?;
                    targets.push((Buf::Input, 0));
                    continue;
                }
                // the latest value intersecting the access
                let hit = arena.iter().rev().copied().find(|&v| values[v].lo <= hi && lo < values[v].hi);
                // a read back of what this kernel writes (not in place: the latest value
                // there is an older one of another region, or none)
                if let Some(w) = write.filter(|&w| !arena.contains(&w)) {
                    let ww = &values[w];
                    if ww.lo <= lo && hi < ww.hi {
                        if hit.is_some_and(|h| values[h].lo == ww.lo && values[h].hi == ww.hi) {
                            return Err(format!("kernel k{kk} \"{}\" works in place", kernel.name));
                        }
                        targets.push((Buf::Arena, ww.lo));
                        continue;
                    }
                }
                let v = match hit {
                    Some(v) if values[v].lo <= lo && hi < values[v].hi => v,
                    _ => {
                        // a route the memory plan builds in place: its parts, concatenated
                        let r = program
                            .layers
                            .iter()
                            .filter(|l| {
                                l.kind == "route"
                                    && (l.offset as i64) <= lo
                                    && hi < (l.offset + l.len()) as i64
                                    && l.layer < layer
                            })
                            .map(|l| l.layer)
                            .next_back()
                            .ok_or_else(|| {
                                format!("kernel k{kk} \"{}\" reads [{lo}, {hi}] across buffers", kernel.name)
                            })?;
                        match concat_of.get(&r) {
                            Some(&v) => v,
                            None => {
                                let l = &program.layers[r];
                                let (rlo, rhi) = (l.offset as i64, (l.offset + l.len()) as i64);
                                let mut parts: Vec<usize> = Vec::new();
                                let mut at = rlo;
                                while at < rhi {
                                    let p = arena
                                        .iter()
                                        .rev()
                                        .copied()
                                        .find(|&v| values[v].lo <= at && at < values[v].hi)
                                        .filter(|&v| values[v].lo == at && values[v].hi <= rhi)
                                        .ok_or_else(|| {
                                            format!("route {r}: its parts do not tile its region")
                                        })?;
                                    parts.push(p);
                                    at = values[p].hi;
                                }
                                let v = values.len();
                                values.push(Value {
                                    lo: rlo,
                                    hi: rhi,
                                    producer: usize::MAX, // set below
                                    consumers: Vec::new(),
                                    local: false,
                                    layer: Some(r),
                                });
                                arena.push(v);
                                concat_of.insert(r, v);
                                pending_concats.push((v, parts));
                                v
                            }
                        }
                    }
                };
                set_read(v, &mut read)?;
                targets.push((Buf::Input, values[v].lo));
            }
            if let Some(w) = write.filter(|w| !mine.contains(w)) {
                arena.push(w);
                mine.push(w);
            }
            if let Some(r) = read {
                if !mine.contains(&r) && !reads.contains(&r) {
                    reads.push(r);
                }
            }
            kernels.push(rebase(kernel, &targets));
            src[kk] = read;
            dst[kk] = write;
            if program.has_int8() {
                let e = q8_extent(kernel, &program.consts);
                if e > 0 {
                    let q = q8.entry(layer).or_insert(0);
                    *q = (*q).max(e);
                }
            }
        }
        for (v, parts) in pending_concats {
            let p = procs.len();
            values[v].producer = p;
            for &part in &parts {
                values[part].consumers.push(p);
            }
            procs.push(Proc::Concat { value: v, parts });
        }
        let p = procs.len();
        for &v in &mine {
            values[v].producer = p;
        }
        for &r in &reads {
            if !values[r].consumers.contains(&p) {
                values[r].consumers.push(p);
            }
        }
        procs.push(Proc::Layer { layer, kernels: (first..k).collect() });
    }
    // the heads: the latest value holding each output layer's region
    for (i, &l) in program.outputs.iter().enumerate() {
        let out = &program.layers[l];
        let (lo, hi) = (out.offset as i64, (out.offset + out.len()) as i64);
        let v = arena
            .iter()
            .rev()
            .copied()
            .find(|&v| !values[v].local && values[v].lo <= lo && hi <= values[v].hi)
            .ok_or_else(|| format!("head {i} (layer {l}) has no buffer"))?;
        if values[v].lo != lo || values[v].hi != hi {
            return Err(format!("head {i} (layer {l}) is part of a larger buffer"));
        }
        let p = procs.len();
        values[v].consumers.push(p);
        procs.push(Proc::Output { head: i, value: v });
    }
    Ok(Plan { kernels, src, dst, values, procs, q8 })
}

/// The name of the buffer consumer `p` reads value `v` from.
pub(crate) fn edge(plan: &Plan, v: usize, p: usize) -> String {
    let val = &plan.values[v];
    match val.consumers.iter().position(|&c| c == p) {
        Some(j) if val.consumers.len() > 1 => format!("v{v}_{j}"),
        _ => format!("v{v}"),
    }
}

/// Bits of the top-level buffers a layer's outputs take (each value, and one copy per
/// consumer where it forks), and of its local arrays (scratch, int8 activations).
pub(crate) fn layer_bits(plan: &Plan, layer: usize) -> (u64, u64) {
    let (mut out, mut local) = (0u64, 0u64);
    for v in &plan.values {
        if v.layer != Some(layer) {
            continue;
        }
        let bits = v.len() as u64 * 32;
        if v.local {
            local += bits;
        } else {
            let copies = if v.consumers.len() > 1 { 1 + v.consumers.len() as u64 } else { 1 };
            out += bits * copies;
        }
    }
    local += plan.q8.get(&layer).copied().unwrap_or(0) as u64 * 8;
    (out, local)
}

/// Storage for an array of `bits`: URAM from 1 Mbit, block RAM below.
pub(crate) fn storage(bits: u64) -> &'static str {
    if bits >= 1 << 20 {
        "uram"
    } else {
        "bram"
    }
}

/// Writes the forks' and concats' copy loops and the output copies as functions.
pub(crate) fn glue_functions(s: &mut String, plan: &Plan, name: &str, head_len: &[usize]) {
    for (v, val) in plan.values.iter().enumerate() {
        if val.consumers.len() > 1 {
            let n = val.len();
            let outs: Vec<String> = (0..val.consumers.len()).map(|j| format!("float o{j}[{n}]")).collect();
            let _ = writeln!(
                s,
                "/* fork: value v{v} has {} consumers, each gets its own copy (DATAFLOW: one consumer a buffer) */\n\
                 static void {name}_fork{v}(const float x[{n}], {}) {{\n    for (int j = 0; j < {n}; j++) {{\n#pragma HLS PIPELINE II=1\n        \
                 const float t = x[j];",
                val.consumers.len(),
                outs.join(", ")
            );
            for j in 0..val.consumers.len() {
                let _ = writeln!(s, "        o{j}[j] = t;");
            }
            s.push_str("    }\n}\n\n");
        }
    }
    for (p, proc) in plan.procs.iter().enumerate() {
        match proc {
            Proc::Concat { value, parts } => {
                let val = &plan.values[*value];
                let params: Vec<String> = parts
                    .iter()
                    .enumerate()
                    .map(|(j, &q)| format!("const float p{j}[{}]", plan.values[q].len()))
                    .collect();
                let _ = writeln!(
                    s,
                    "/* concat: route {} as its own buffer (the memory plan builds it in place) */\n\
                     static void {name}_p{p}({}, float y[{}]) {{",
                    val.layer.unwrap_or(0),
                    params.join(", "),
                    val.len()
                );
                for (j, &q) in parts.iter().enumerate() {
                    let part = &plan.values[q];
                    let _ = writeln!(
                        s,
                        "    for (int j = 0; j < {}; j++) {{\n#pragma HLS PIPELINE II=1\n        y[{} + j] = p{j}[j];\n    }}",
                        part.len(),
                        part.lo - val.lo
                    );
                }
                s.push_str("}\n\n");
            }
            Proc::Output { head, value } => {
                let n = head_len[*head];
                let _ = writeln!(
                    s,
                    "/* head {head} out over AXI */\nstatic void {name}_p{p}(const float x[{n}], float *out) {{\n    \
                     for (int j = 0; j < {n}; j++) {{\n#pragma HLS PIPELINE II=1\n        out[j] = x[j];\n    }}\n}}\n",
                );
                let _ = value;
            }
            _ => {}
        }
    }
}
