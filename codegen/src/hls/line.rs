//! Line buffers for the streaming form (`--hls-arch stream`): a packed ternary
//! convolution reads its window from `R = (rows − 1)·sy + K` rows of its (padded)
//! input held in a local array `lb[C·R·Wp]`, instead of random access to the whole
//! map. Before each tile's `code bytes` loop the window's top row `y0` is computed
//! from the tile's first activation index; `NAME_lbK` moves the rows still needed
//! up (row by row, when the window slides down by less than `R` rows) and loads
//! the new ones. The taps are re-encoded for the buffer (`c·R·Wp + ky·Wp + kx`
//! instead of `c·H·Wp + ky·Wp + kx`), so the tree loop reads `lb[base − y0·Wp + tap]`.
//!
//! The geometry comes from the kernel program alone: `K` and `Wp` from the tap table
//! (consecutive taps one apart along a row, `Wp` between rows, a plane between
//! channels), `sy·Wp` from the `oy` loop's coefficient, `rows` from its step.

use std::fmt::Write as _;

use crate::c::index_expr;
use crate::program::*;

/// A convolution's line buffer.
#[derive(Debug, Clone)]
pub(crate) struct LineGeo {
    /// The tap table it replaces.
    pub taps: usize,
    pub lb_taps: Vec<i32>,
    pub c: usize,
    pub rows: usize,
    pub wp: usize,
    pub hp: usize,
    /// int8 activations (`q8`), else float.
    pub int8: bool,
}

impl LineGeo {
    pub fn len(&self) -> usize {
        self.c * self.rows * self.wp
    }
    pub fn bits(&self) -> u64 {
        self.len() as u64 * if self.int8 { 8 } else { 32 }
    }
    fn elem(&self) -> &'static str {
        if self.int8 {
            "int8_t"
        } else {
            "float"
        }
    }
}

/// The activation loads of a `code bytes` loop (`in` or `q8`), and its tap table.
fn loop_reads<'a>(l: &'a Loop, consts: &[ConstTable]) -> Option<(Vec<&'a Index>, usize, bool)> {
    let mut reads = Vec::new();
    let mut taps = None;
    let mut int8 = None;
    for st in &l.body {
        let Stmt::Assign { expr: Expr::Load { buf, index } | Expr::LoadVec { buf, index }, .. } = st else {
            continue;
        };
        match buf {
            Buf::Input | Buf::Q8 => {
                if *int8.get_or_insert(*buf == Buf::Q8) != (*buf == Buf::Q8) {
                    return None;
                }
                reads.push(index);
            }
            Buf::Const(t) => {
                let table = consts.get(*t)?;
                if table.data.elem() == Elem::I32 && !super::tree::is_decode(&table.name) {
                    taps = Some(*t);
                }
            }
            Buf::Arena => return None,
        }
    }
    Some((reads, taps?, int8?))
}

/// The line buffer of kernel `k` (rebased: it reads its source as `in`, or `q8`) whose
/// source holds `src_len` elements; `None` if it is not a packed convolution of the
/// shape this module reads.
pub(crate) fn analyse(k: &Kernel, consts: &[ConstTable], src_len: usize) -> Option<LineGeo> {
    if !k.name.contains("ternary packed") {
        return None;
    }
    // the oy loop (its var and step) and the code bytes loop inside it
    fn find<'a>(b: &'a [Stmt], oy: Option<(Var, i64)>, out: &mut Vec<(Option<(Var, i64)>, &'a Loop)>) {
        for st in b {
            if let Stmt::Loop(l) = st {
                if l.note == "code bytes" {
                    out.push((oy, l));
                } else {
                    let oy = if l.note.starts_with("oy") { Some((l.var, l.step)) } else { oy };
                    find(&l.body, oy, out);
                }
            }
        }
    }
    let mut loops = Vec::new();
    find(&k.body, None, &mut loops);
    let (oy, step) = loops.iter().find_map(|x| x.0)?;
    let (reads, taps_t, int8) = loop_reads(loops[0].1, consts)?;
    let ConstData::I32(taps) = &consts.get(taps_t)?.data else { return None };
    let coeff = reads.first()?.terms.iter().find(|t| t.0 == oy)?.1;
    // K and Wp from the taps (dilation 1)
    let kx = taps.windows(2).take_while(|w| w[1] - w[0] == 1).count() + 1;
    let (kk, wp, plane);
    if kx > 1 {
        kk = kx;
        wp = (*taps.get(kk)? - taps[0]) as usize;
        plane = match taps.get(kk * kk) {
            Some(&p) if p > 0 => p as usize,
            _ => src_len, // one channel
        };
    } else {
        kk = 1;
        wp = coeff as usize; // 1x1: stride 1
        plane = match taps.get(1) {
            Some(&p) if p > 0 => p as usize,
            _ => src_len,
        };
    }
    if wp == 0
        || !(coeff as usize).is_multiple_of(wp)
        || !plane.is_multiple_of(wp)
        || !src_len.is_multiple_of(plane)
    {
        return None;
    }
    let sy = coeff as usize / wp;
    let c = src_len / plane;
    let hp = plane / wp;
    let rows = ((step as usize - 1) * sy + kk).min(hp);
    // taps re-encoded for the buffer; every tap must be (c, ky < K, kx < Wp)
    let mut lb_taps = Vec::with_capacity(taps.len());
    for &t in taps.iter() {
        let t = t as usize;
        let (ch, y, x) = (t / plane, (t % plane) / wp, t % wp);
        if y >= kk || ch >= c {
            return None;
        }
        lb_taps.push((ch * rows * wp + y * wp + x) as i32);
    }
    // every index: only oy and ox-like terms (no channel group term)
    for r in &reads {
        if r.terms.iter().any(|&(v, c)| v != oy && c as usize >= wp) {
            return None;
        }
    }
    Some(LineGeo { taps: taps_t, lb_taps, c, rows, wp, hp, int8 })
}

/// The fill function and the tap table of kernel `k`'s line buffer.
pub(crate) fn functions(g: &LineGeo, name: &str, k: usize) -> String {
    let (c, r, wp, hp) = (g.c, g.rows, g.wp, g.hp);
    let e = g.elem();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "/* k{k}'s line buffer: {r} rows of {c} channels x {wp}; taps re-encoded as c*{r}*{wp} + ky*{wp} + kx */\n\
         static const int {name}_lbtaps{k}[{}] = {{",
        g.lb_taps.len()
    );
    for (i, t) in g.lb_taps.iter().enumerate() {
        let _ = write!(s, "{}{t},", if i % 16 == 0 { "\n    " } else { " " });
    }
    let _ = write!(
        s,
        "\n}};\n\n\
         /* slides k{k}'s window to top row y0: keeps the rows still in it (moved up row by row), loads the rest */\n\
         static void {name}_lb{k}({e} lb[{len}], const {e} *src, int y0, int &cur) {{\n    \
         if (y0 == cur) return;\n    \
         const int d = y0 - cur;\n    \
         const int keep = (cur >= 0 && d > 0 && d < {r}) ? {r} - d : 0;\n    \
         for (int ch = 0; ch < {c}; ch++) {{\n        \
         for (int y = 0; y < {r}; y++) {{\n            \
         for (int x = 0; x < {wp}; x++) {{\n#pragma HLS PIPELINE II=1\n                \
         const int at = ch * {cr} + y * {wp} + x;\n                \
         if (y < keep) lb[at] = lb[at + d * {wp}];\n                \
         else lb[at] = y0 + y < {hp} ? src[ch * {plane} + (y0 + y) * {wp} + x] : ({e})0;\n            \
         }}\n        }}\n    }}\n    cur = y0;\n}}\n\n",
        len = g.len(),
        cr = r * wp,
        plane = hp * wp,
    );
    s
}

/// Declarations at the top of kernel `k`'s body.
pub(crate) fn declare(g: &LineGeo, reads: usize) -> String {
    format!(
        "    /* the line buffer: the convolution window's rows, on chip */\n    \
         static {e} lb[{len}];\n\
         #pragma HLS ARRAY_PARTITION variable=lb type=cyclic factor={f} dim=1\n    \
         int lbcur = -1; /* its top row (none yet) */\n    (void)lbcur;\n",
        e = g.elem(),
        len = g.len(),
        f = reads.clamp(1, 16),
    )
}

/// What goes before a `code bytes` loop: the window's top row from the tile's first
/// activation index, the slide.
pub(crate) fn before_loop(
    g: &LineGeo,
    l: &Loop,
    name: &str,
    k: usize,
    src: &str,
    pad: &str,
) -> Option<String> {
    let first = l.body.iter().find_map(|st| match st {
        Stmt::Assign {
            expr:
                Expr::Load { buf: Buf::Input | Buf::Q8, index }
                | Expr::LoadVec { buf: Buf::Input | Buf::Q8, index },
            ..
        } => Some(index),
        _ => None,
    })?;
    let mut base = first.clone();
    base.dynamic = None;
    Some(format!(
        "{pad}const int lby0 = ({}) / {wp};\n{pad}{name}_lb{k}(lb, {src}, lby0, lbcur);\n{pad}const int lbw = lby0 * {wp};\n",
        index_expr(&base),
        wp = g.wp
    ))
}
