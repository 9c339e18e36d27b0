//! W2A8: ternary layers over int8 activations.
//!
//! The semantics are `ternc_runtime::quant`'s: a ternary layer's input `x` becomes
//! `q = clamp(rint(x·(1/s)), −127, 127)` (per tensor, step `s`), the layer sums
//! `Σ code·q` exactly in integers, and the epilogue is `act((scale_o·s)·Σ + bias_o)`.
//!
//! - A **quantize** kernel writes `q`, with the convolution's zero border, into `q8`
//!   (zero quantizes to zero, so the border is exact). Every int8 layer's input starts
//!   at `q8[0]`: it is only read by the layer's own kernel, which runs next.
//! - The **table** kernel (JIT and LLVM) reads the same tap tables as the float one
//!   and accumulates 8 pixels per `i16x8` add or subtract, twice the pixels of an
//!   `f32x4` and a quarter of the bytes. So that no `i16` sum can wrap, each output
//!   channel's taps are cut into segments of at most [`SEGMENT_TAPS`] (`258·127 <
//!   2^15`); after each segment the `i16x8` sums are widened and added into `f32x4`
//!   sums, which stay exact integers (`|Σ| ≤ 127·fan-in < 2^24`). A tile's last
//!   vector may run past the row: it reads up to 7 bytes beyond (the next row, or
//!   slack after the map) and the epilogue stores only the row's pixels, so a 13-pixel
//!   row is two vectors rather than one vector and five scalars. Stride > 1 sums in
//!   scalar `i32`s.
//! - The **packed** kernel (C, OpenCL, HLS) reads 2-bit codes as the float one does and
//!   sums in scalar `i32`s: `acc += select(code > 0, q, 0) − select(code < 0, q, 0)`,
//!   integer-only.

use super::conv::{ConvGeo, PackedTables, Regs, Tile};
use super::*;

/// Taps an `i16` sum of int8 values may take without wrapping: `258·127 = 32766`.
pub const SEGMENT_TAPS: usize = 258;

/// The largest int8 magnitude (symmetric range).
const QMAX: f32 = 127.0;

impl LowerOptions {
    /// The options an int8 convolution with `width`-pixel output rows is tiled with,
    /// a quarter of the bytes per input element and no channel chunks. With
    /// `vectors`: [`tile_i8`](Self::tile_i8) pixels, as many rows as keep about 12
    /// `i16x8` sums (what the tap loop holds in registers) of the row's first tile;
    /// scalar sums take the float kernels' tile, one row unless set (more would spill).
    pub(super) fn for_int8(&self, width: usize, vectors: bool) -> LowerOptions {
        let (tile, tile_rows) = if vectors {
            let per_row = self.tile_i8.min(width).div_ceil(8).max(1);
            let auto = (12 / per_row).clamp(1, 4);
            (self.tile_i8, if self.tile_rows > 0 { self.tile_rows } else { auto })
        } else {
            (self.tile, self.tile_rows.max(1))
        };
        LowerOptions {
            tile,
            tile_rows,
            channel_outer_max_bytes: 4 * self.channel_outer_max_bytes,
            chunk_bytes: 0,
            ..self.clone()
        }
    }
}

impl Lowerer<'_> {
    /// The int8 step of layer `i`'s input, if it has one.
    pub(super) fn act_step(&self, i: usize) -> Option<f32> {
        self.opts.act_steps.get(i).copied().flatten()
    }

    /// A kernel writing `x` quantized with step `step`, with a zero border
    /// (`[top, left, bottom, right]`), at `q8[0..]`; with `split`, each padded row
    /// holds its even columns, then its odd ones (`ConvGeo::split_columns`).
    pub(super) fn quantize(
        &mut self,
        i: usize,
        x: Map,
        [top, left, bottom, right]: [usize; 4],
        step: f32,
        split: bool,
    ) -> Map {
        let dst = Map { buf: Buf::Q8, off: 0, c: x.c, h: x.h + top + bottom, w: x.w + left + right };
        // slack for the vector reads past the last row (module docs)
        self.q8_len = self.q8_len.max(dst.numel() + 8);
        let inv = 1.0 / step;
        if split {
            self.quantize_split(i, x, dst, [top, left], inv, step);
            return dst;
        }
        let mut kb = KernelBuilder::new(format!("quantize {i}, step {step:?}"), Some(i));
        let (t, q) = (kb.local(Ty::F32), kb.local(Ty::I32));
        kb.for_parallel(0, idx(x.c), 1, "c", |kb, c| {
            let zeros = |kb: &mut KernelBuilder, y0: usize, rows: usize, x0: usize, cols: usize| {
                kb.for_range(0, idx(rows), 1, "y", |kb, y| {
                    kb.for_range(0, idx(cols), 1, "x", |kb, xx| {
                        kb.store(Buf::Q8, dst.at(&c, &y.add(idx(y0)), &xx.add(idx(x0))), Operand::I32(0));
                    })
                })
            };
            zeros(kb, 0, top, 0, dst.w);
            kb.for_range(0, idx(x.h), 1, "y", |kb, y| {
                let row = y.add(idx(top));
                kb.for_range(0, idx(left), 1, "x", |kb, xx| {
                    kb.store(Buf::Q8, dst.at(&c, &row, &xx), Operand::I32(0))
                });
                kb.for_range(0, idx(x.w), 1, "x", |kb, xx| {
                    kb.load(t, x.buf, x.at(&c, &y, &xx));
                    emit_quantize(kb, t, q, inv);
                    kb.store(Buf::Q8, dst.at(&c, &row, &xx.add(idx(left))), q);
                });
                kb.for_range(0, idx(right), 1, "x", |kb, xx| {
                    kb.store(Buf::Q8, dst.at(&c, &row, &xx.add(idx(left + x.w))), Operand::I32(0))
                });
            });
            zeros(kb, top + x.h, bottom, 0, dst.w);
        });
        self.kernels.push(kb.finish());
        dst
    }

    /// [`quantize`](Self::quantize) with split columns: padded column `p` goes to
    /// `p/2` when even, to `⌈w/2⌉ + p/2` when odd.
    fn quantize_split(&mut self, i: usize, x: Map, dst: Map, [top, left]: [usize; 2], inv: f32, step: f32) {
        let odd = dst.w.div_ceil(2);
        let place = |p: usize| if p.is_multiple_of(2) { p / 2 } else { odd + p / 2 };
        let mut kb = KernelBuilder::new(format!("quantize {i}, columns split, step {step:?}"), Some(i));
        let (t, q) = (kb.local(Ty::F32), kb.local(Ty::I32));
        kb.for_parallel(0, idx(x.c), 1, "c", |kb, c| {
            // the border: the columns either side on every row, then whole rows
            kb.for_range(0, idx(dst.h), 1, "y", |kb, y| {
                for p in (0..left).chain(left + x.w..dst.w) {
                    kb.store(Buf::Q8, dst.at(&c, &y, &Index::at(idx(place(p)))), Operand::I32(0));
                }
            });
            kb.for_range(0, idx(top), 1, "y", |kb, y| {
                kb.for_range(0, idx(dst.w), 1, "x", |kb, xx| {
                    kb.store(Buf::Q8, dst.at(&c, &y, &xx), Operand::I32(0))
                })
            });
            kb.for_range(idx(top + x.h), idx(dst.h), 1, "y", |kb, y| {
                kb.for_range(0, idx(dst.w), 1, "x", |kb, xx| {
                    kb.store(Buf::Q8, dst.at(&c, &y, &xx), Operand::I32(0))
                })
            });
            kb.for_range(0, idx(x.h), 1, "y", |kb, y| {
                let row = y.add(idx(top));
                for parity in 0..2 {
                    // the first padded column of this parity inside the input
                    let p0 = left + (parity + 2 - left % 2) % 2;
                    if p0 >= left + x.w {
                        continue;
                    }
                    let count = (left + x.w - p0).div_ceil(2);
                    kb.for_range(0, idx(count), 1, "x", |kb, k| {
                        kb.load(t, x.buf, x.at(&c, &y, &k.scaled(2).add(idx(p0 - left))));
                        emit_quantize(kb, t, q, inv);
                        kb.store(Buf::Q8, dst.at(&c, &row, &k.add(idx(place(p0)))), q);
                    });
                }
            });
        });
        self.kernels.push(kb.finish());
    }

    /// The table kernel over int8 input (module docs).
    pub(super) fn conv_table_i8(&mut self, i: usize, geo: &ConvGeo, codes: &[i8], ep: &Epilogue) {
        let kk = geo.kk.max(1);
        let rows = codes.len() / kk;
        // segments only bound the i16 sums; scalar i32 sums need none
        let most = codes.chunks(kk).map(|r| r.iter().filter(|&&c| c != 0).count()).max().unwrap_or(0);
        let segments = if geo.vectors { most.div_ceil(SEGMENT_TAPS).max(1) } else { 1 };
        // per (channel, segment): its +1 taps, then its −1 taps; bounds as in
        // `conv_table` (+1 start, −1 start, and the next entry's +1 start as end)
        let mut taps = Vec::with_capacity(codes.iter().filter(|&&c| c != 0).count().max(1));
        let mut bounds = Vec::with_capacity(1 + 2 * segments * rows);
        bounds.push(0i32);
        let mut minus = Vec::new();
        for row in codes.chunks(kk) {
            let nonzero: Vec<usize> = (0..row.len()).filter(|&j| row[j] != 0).collect();
            let per = nonzero.len().div_ceil(segments).max(1);
            for seg in 0..segments {
                minus.clear();
                for &j in nonzero.iter().skip(seg * per).take(per) {
                    if row[j] > 0 {
                        taps.push(geo.tap(j))
                    } else {
                        minus.push(geo.tap(j))
                    }
                }
                bounds.push(taps.len() as i32);
                taps.extend_from_slice(&minus);
                bounds.push(taps.len() as i32);
            }
        }
        if taps.is_empty() {
            taps.push(0); // keep the table non-empty; no loop reads it
        }
        let taps = self.table(format!("conv{i}.ternary_taps"), ConstData::I32(taps));
        let bounds = self.table(format!("conv{i}.ternary_bounds"), ConstData::I32(bounds));
        let scale = self.table(format!("conv{i}.scale"), ConstData::F32(ep.scale.clone()));
        let bias = self.table(format!("conv{i}.bias"), ConstData::F32(ep.bias.clone()));
        let name = match segments {
            1 => format!("conv {i} ternary table int8"),
            s => format!("conv {i} ternary table int8, {s} segments of at most {SEGMENT_TAPS} taps"),
        };
        let mut kb = KernelBuilder::new(name, Some(i));
        let mut r = Regs::new(&mut kb, geo);
        if geo.vectors {
            // f32x4 sums for every lane of the i16x8 ones, past the row's end too
            let need = 2 * geo.tile.div_ceil(8);
            for row in &mut r.vacc {
                while row.len() < need {
                    row.push(kb.local(Ty::F32x4));
                }
            }
        }
        let q = QRegs::new(&mut kb, geo);
        let (plus, minus, end, tap) =
            (kb.local(Ty::I32), kb.local(Ty::I32), kb.local(Ty::I32), kb.local(Ty::I32));
        geo.channel_loops(
            &mut kb,
            &|kb, o| {
                kb.load(r.s, scale, o.clone());
                kb.load(r.b, bias, o.clone());
            },
            &|kb, o, g, oy, ox, tile| {
                let n8 = q.in_vectors(geo, tile.n);
                q.zero_floats(kb, &r, tile, n8);
                q.zero_scalars(kb, tile, n8);
                let base = geo.input_at(g, oy, ox).dynamic(tap);
                kb.for_range(0, idx(segments), 1, "segment", |kb, seg| {
                    let at = o.scaled(idx(2 * segments)).plus(&seg.scaled(2));
                    kb.load(plus, bounds, at.clone());
                    kb.load(minus, bounds, at.add(1));
                    kb.load(end, bounds, at.add(2));
                    q.zero_vectors(kb, tile, n8);
                    for (from, to, op, note) in
                        [(plus, minus, BinOp::Add, "+1 taps"), (minus, end, BinOp::Sub, "-1 taps")]
                    {
                        kb.for_table(from, to, note, |kb, j| {
                            kb.load(tap, taps, Index::var(j));
                            q.accumulate(kb, geo, tile, n8, op, &base);
                        });
                    }
                    q.flush(kb, &r, tile, n8);
                });
                q.finish(kb, geo, &r, tile, n8);
                r.epilogue(kb, geo, tile, Some(r.s.into()), r.b.into(), ep.act, geo.out_at(o, oy, ox));
            },
        );
        self.kernels.push(kb.finish());
    }

    /// The packed kernel over int8 input (module docs): scalar `i32` sums.
    pub(super) fn conv_packed_i8(&mut self, i: usize, geo: &ConvGeo, codes: &[i8], ep: &Epilogue) {
        let geo = &ConvGeo { vectors: false, ..geo.clone() };
        let dec = self.decode2_table(true);
        let PackedTables { row_bytes, codes: codes_t, taps: taps_t, scale, bias } =
            self.packed_tables(i, geo, codes, ep);
        let mut kb = KernelBuilder::new(format!("conv {i} ternary packed int8"), Some(i));
        let r = Regs::new(&mut kb, geo);
        let q = QRegs::new(&mut kb, geo);
        let (byte, tap, code, p) =
            (kb.local(Ty::I32), kb.local(Ty::I32), kb.local(Ty::I32), kb.local(Ty::I32));
        geo.channel_loops(
            &mut kb,
            &|kb, o| {
                kb.load(r.s, scale, o.clone());
                kb.load(r.b, bias, o.clone());
            },
            &|kb, o, g, oy, ox, tile| {
                q.zero_scalars(kb, tile, 0);
                let base = geo.input_at(g, oy, ox);
                kb.for_range(0, idx(row_bytes), 1, "code bytes", |kb, b| {
                    kb.load(byte, codes_t, o.scaled(idx(row_bytes)).plus(&b));
                    for k in 0..4 {
                        kb.load(code, dec, Index::at(256 * k).dynamic(byte));
                        kb.load(tap, taps_t, b.scaled(4).add(k));
                        let at = base.clone().dynamic(tap);
                        for row in 0..tile.rows {
                            let at = at.add(idx(row * geo.sy * geo.x.w));
                            for (t, &a) in q.acc[row].iter().enumerate().take(tile.n) {
                                kb.load(q.x, Buf::Q8, at.add(idx(t * geo.sx)));
                                for (cmp, op) in [(Cmp::Gt, BinOp::Add), (Cmp::Lt, BinOp::Sub)] {
                                    let sel = Expr::Select {
                                        cmp,
                                        lhs: code.into(),
                                        rhs: Operand::I32(0),
                                        then: q.x.into(),
                                        otherwise: Operand::I32(0),
                                    };
                                    kb.assign(p, sel);
                                    kb.binary(a, op, a, p);
                                }
                            }
                        }
                    }
                });
                q.finish(kb, geo, &r, tile, 0);
                r.epilogue(kb, geo, tile, Some(r.s.into()), r.b.into(), ep.act, geo.out_at(o, oy, ox));
            },
        );
        self.kernels.push(kb.finish());
    }
}

/// `q ← clamp(rint(t·inv), −127, 127)` as an `i32` (`t` is clobbered).
pub(super) fn emit_quantize(kb: &mut KernelBuilder, t: Local, q: Local, inv: f32) {
    kb.binary(t, BinOp::Mul, t, inv);
    kb.assign(t, Expr::Call { f: MathFn::Rint, arg: t.into() });
    kb.binary(t, BinOp::Max, t, -QMAX);
    kb.binary(t, BinOp::Min, t, QMAX);
    kb.assign(q, Expr::Convert(t.into()));
}

/// The integer locals of an int8 convolution.
struct QRegs {
    /// `i16x8` sums, `[row][8 pixels]`.
    vacc: Vec<Vec<Local>>,
    /// Scalar `i32` sums, `[row][pixel]` (the pixels after the last whole 8).
    acc: Vec<Vec<Local>>,
    vx: Local,
    x: Local,
    wide: Local,
    vf: Local,
}

impl QRegs {
    fn new(kb: &mut KernelBuilder, geo: &ConvGeo) -> QRegs {
        let vecs = if geo.vectors { geo.tile.div_ceil(8) } else { 0 };
        let (mut vacc, mut acc) = (Vec::new(), Vec::new());
        for _ in 0..geo.rows {
            vacc.push((0..vecs).map(|_| kb.local(Ty::I16x8)).collect());
            acc.push((0..geo.tile).map(|_| kb.local(Ty::I32)).collect());
        }
        QRegs {
            vacc,
            acc,
            vx: kb.local(Ty::I16x8),
            x: kb.local(Ty::I32),
            wide: kb.local(Ty::I32x4),
            vf: kb.local(Ty::F32x4),
        }
    }

    /// Pixels of an `n`-pixel row summed in `i16x8` vectors: all, rounded up to 8.
    fn in_vectors(&self, geo: &ConvGeo, n: usize) -> usize {
        if geo.vectors {
            n.div_ceil(8) * 8
        } else {
            0
        }
    }

    /// Zeroes the `f32x4` sums the `i16x8` ones flush into (`Regs::zero` sizes them
    /// to the row's pixels, not to whole vectors of 8).
    fn zero_floats(&self, kb: &mut KernelBuilder, r: &Regs, tile: Tile, n8: usize) {
        for row in 0..tile.rows {
            for &a in &r.vacc[row][..n8 / 4] {
                kb.assign(a, Expr::Splat(Operand::F32(0.0)));
            }
        }
    }

    fn zero_scalars(&self, kb: &mut KernelBuilder, tile: Tile, n8: usize) {
        for r in 0..tile.rows {
            for &a in self.acc[r].iter().take(tile.n).skip(n8) {
                kb.assign(a, Expr::Copy(Operand::I32(0)));
            }
        }
    }

    fn zero_vectors(&self, kb: &mut KernelBuilder, tile: Tile, n8: usize) {
        for r in 0..tile.rows {
            for &a in &self.vacc[r][..n8 / 8] {
                kb.assign(a, Expr::Splat(Operand::I32(0)));
            }
        }
    }

    /// `acc op= q8[base + r·sy·W + t·sx]` over the tile.
    fn accumulate(
        &self,
        kb: &mut KernelBuilder,
        geo: &ConvGeo,
        tile: Tile,
        n8: usize,
        op: BinOp,
        base: &Index,
    ) {
        for r in 0..tile.rows {
            let row = base.add(idx(r * geo.sy * geo.x.w));
            for (k, &a) in self.vacc[r][..n8 / 8].iter().enumerate() {
                kb.assign(self.vx, Expr::LoadVec { buf: Buf::Q8, index: row.add(8 * idx(k)) });
                kb.binary(a, op, a, self.vx);
            }
            for (t, &a) in self.acc[r].iter().enumerate().take(tile.n).skip(n8) {
                kb.load(self.x, Buf::Q8, row.add(idx(t * geo.sx)));
                kb.binary(a, op, a, self.x);
            }
        }
    }

    /// Adds the `i16x8` sums into the float accumulators (exact integers).
    fn flush(&self, kb: &mut KernelBuilder, r: &Regs, tile: Tile, n8: usize) {
        for row in 0..tile.rows {
            for (k, &a) in self.vacc[row][..n8 / 8].iter().enumerate() {
                for (half, high) in [false, true].into_iter().enumerate() {
                    let dst = r.vacc[row][2 * k + half];
                    kb.assign(self.wide, Expr::Widen { v: a.into(), high });
                    kb.assign(self.vf, Expr::Convert(self.wide.into()));
                    kb.binary(dst, BinOp::Add, dst, self.vf);
                }
            }
        }
    }

    /// Moves the sums where the epilogue reads them: pixels past the row's whole
    /// `f32x4`s from vector lanes into scalars, scalar `i32` sums (stride > 1) into
    /// the float accumulators.
    fn finish(&self, kb: &mut KernelBuilder, geo: &ConvGeo, r: &Regs, tile: Tile, n8: usize) {
        if n8 > 0 {
            let nv = geo.in_vectors(tile.n);
            for row in 0..tile.rows {
                for t in nv..tile.n {
                    let lane = Expr::Extract { v: r.vacc[row][t / 4].into(), lane: (t % 4) as u8 };
                    kb.assign(r.acc[row][t], lane);
                }
            }
            return;
        }
        for row in 0..tile.rows {
            for t in 0..tile.n {
                kb.assign(r.acc[row][t], Expr::Convert(self.acc[row][t].into()));
            }
        }
    }
}
