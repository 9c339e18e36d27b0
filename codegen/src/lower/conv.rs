//! Convolution kernels: float, ternary table and ternary unrolled (module docs of `lower`).

use super::*;

impl Lowerer<'_> {
    // -----------------------------------------------------------------------
    // Convolution

    pub(super) fn conv(&mut self, i: usize, cv: &Conv, x: Map, out: Map) -> Result<(), CodegenError> {
        let g = self.g;
        let kind = g.layer(i).op.type_name();
        let p: &LayerParams = g
            .params
            .layer(i)
            .filter(|p| weight_count(p) > 0)
            .ok_or(CodegenError::MissingParams { layer: i, kind, what: "weights" })?;
        let rows = cv.filters;
        let kk = cv.fan_in(x.c);
        if weight_count(p) != rows * kk || p.biases.len() != rows {
            return Err(CodegenError::MissingParams { layer: i, kind, what: "weights of the right size" });
        }
        check_activation(cv.activation).map_err(|w| self.unsupported(i, w))?;
        let (ep, codes) = epilogue_and_codes(p, rows, cv.ternary, cv.activation);
        if let (Some(codes), Some(step)) = (&codes, self.act_step(i)) {
            let ep = Epilogue { scale: ep.scale.iter().map(|s| s * step).collect(), ..ep };
            if self.opts.ternary == TernaryKernel::Packed {
                // (the vector tiling: its tiles are the HLS adder trees' width)
                let xq = self.quantize(i, x, [cv.pad; 4], step, false);
                let geo = ConvGeo::new(cv, xq, out, &self.opts.for_int8(out.w, true));
                self.conv_packed_i8(i, &geo, codes, &ep);
            } else {
                // stride 2 reads even and odd columns apart, so it vectorizes too
                let split = cv.stride_x == 2 && self.opts.vectors;
                let vectors = split || (cv.stride_x == 1 && self.opts.vectors);
                let xq = self.quantize(i, x, [cv.pad; 4], step, split);
                let mut geo = ConvGeo::new(cv, xq, out, &self.opts.for_int8(out.w, vectors));
                if split {
                    geo.split_columns();
                }
                self.conv_table_i8(i, &geo, codes, &ep);
            }
            return Ok(());
        }
        let x = if cv.pad > 0 { self.pad(i, x, [cv.pad; 4], 0.0) } else { x };
        let geo = ConvGeo::new(cv, x, out, self.opts);
        match codes {
            None => self.conv_float(i, &geo, &p.weights, &ep),
            Some(codes) if self.opts.ternary == TernaryKernel::Packed => {
                self.conv_packed(i, &geo, &codes, &ep)
            }
            Some(codes) => {
                let nonzero = codes.iter().filter(|&&c| c != 0).count();
                let unroll = match self.opts.ternary {
                    TernaryKernel::Auto => nonzero <= self.opts.unroll_max_taps,
                    TernaryKernel::Table | TernaryKernel::Packed => false,
                    TernaryKernel::Unrolled => true,
                };
                if unroll {
                    self.conv_unrolled(i, &geo, &codes, &ep)
                } else {
                    self.conv_table(i, &geo, &codes, &ep)
                }
            }
        }
        Ok(())
    }

    /// Copies `x` with a border of `value` (`[top, left, bottom, right]`) into scratch.
    pub(super) fn pad(
        &mut self,
        i: usize,
        x: Map,
        [top, left, bottom, right]: [usize; 4],
        value: f32,
    ) -> Map {
        let dst = Map {
            buf: Buf::Arena,
            off: idx(self.scratch_off),
            c: x.c,
            h: x.h + top + bottom,
            w: x.w + left + right,
        };
        self.scratch_len = self.scratch_len.max(dst.numel());
        let mut kb = KernelBuilder::new(format!("pad {i}"), Some(i));
        let t = kb.local(Ty::F32);
        kb.for_parallel(0, idx(x.c), 1, "c", |kb, c| {
            let fill = |kb: &mut KernelBuilder, y0: usize, rows: usize, x0: usize, cols: usize| {
                kb.for_range(0, idx(rows), 1, "y", |kb, y| {
                    kb.for_range(0, idx(cols), 1, "x", |kb, xx| {
                        let at = dst.at(&c, &y.add(idx(y0)), &xx.add(idx(x0)));
                        kb.store(Buf::Arena, at, value);
                    })
                })
            };
            fill(kb, 0, top, 0, dst.w);
            kb.for_range(0, idx(x.h), 1, "y", |kb, y| {
                let row = y.add(idx(top));
                kb.for_range(0, idx(left), 1, "x", |kb, xx| {
                    kb.store(Buf::Arena, dst.at(&c, &row, &xx), value)
                });
                kb.for_range(0, idx(x.w), 1, "x", |kb, xx| {
                    kb.load(t, x.buf, x.at(&c, &y, &xx));
                    kb.store(Buf::Arena, dst.at(&c, &row, &xx.add(idx(left))), t);
                });
                kb.for_range(0, idx(right), 1, "x", |kb, xx| {
                    kb.store(Buf::Arena, dst.at(&c, &row, &xx.add(idx(left + x.w))), value)
                });
            });
            fill(kb, top + x.h, bottom, 0, dst.w);
        });
        self.kernels.push(kb.finish());
        dst
    }

    pub(super) fn conv_float(&mut self, i: usize, geo: &ConvGeo, weights: &[f32], ep: &Epilogue) {
        let w = self.table(format!("conv{i}.weights"), ConstData::F32(weights.to_vec()));
        let taps =
            self.table(format!("conv{i}.taps"), ConstData::I32((0..geo.kk).map(|j| geo.tap(j)).collect()));
        let (scale, bias) = self.epilogue_tables(i, ep);
        let mut kb = KernelBuilder::new(format!("conv {i} float"), Some(i));
        let r = Regs::new(&mut kb, geo);
        let tap = kb.local(Ty::I32);
        geo.channel_loops(
            &mut kb,
            &|kb, o| {
                kb.load(r.b, bias, o.clone());
                if let Some(s) = scale {
                    kb.load(r.s, s, o.clone());
                }
            },
            &|kb, o, g, oy, ox, tile| {
                r.zero(kb, geo, tile);
                let base = geo.input_at(g, oy, ox);
                kb.for_range(0, idx(geo.kk), 1, "taps", |kb, j| {
                    kb.load(r.w, w, o.scaled(idx(geo.kk)).plus(&j));
                    kb.load(tap, taps, j);
                    r.accumulate(kb, geo, tile, BinOp::Add, &base.dynamic(tap), true);
                });
                let s = scale.map(|_| Operand::Local(r.s));
                r.epilogue(kb, geo, tile, s, r.b.into(), ep.act, geo.out_at(o, oy, ox));
            },
        );
        self.kernels.push(kb.finish());
    }

    /// The bias table, and the scale table unless every scale is 1.
    pub(super) fn epilogue_tables(&mut self, i: usize, ep: &Epilogue) -> (Option<Buf>, Buf) {
        let scale = (!ep.scale.iter().all(|&s| s == 1.0))
            .then(|| self.table(format!("conv{i}.scale"), ConstData::F32(ep.scale.clone())));
        let bias = self.table(format!("conv{i}.bias"), ConstData::F32(ep.bias.clone()));
        (scale, bias)
    }

    pub(super) fn conv_table(&mut self, i: usize, geo: &ConvGeo, codes: &[i8], ep: &Epilogue) {
        // per output channel and input-channel chunk: its +1 taps, then its -1 taps
        let chunks = geo.chunks();
        let per_chunk = geo.kchunk * geo.k * geo.k;
        // (tens of millions of taps on big models: one pass, offsets stepped, no division)
        let mut taps = Vec::with_capacity(codes.iter().filter(|&&c| c != 0).count());
        let mut bounds = Vec::with_capacity(1 + 2 * chunks * codes.len() / geo.kk.max(1));
        bounds.push(0i32);
        let mut minus = Vec::new();
        let (kw, plane) = (geo.k, geo.x.plane());
        for row in codes.chunks(geo.kk) {
            for (q, part) in row.chunks(per_chunk).enumerate() {
                minus.clear();
                for (cj, channel) in part.chunks(kw * kw).enumerate() {
                    let c0 = ((q * geo.kchunk + cj) * plane) as i32;
                    for (ky, line) in channel.chunks(kw).enumerate() {
                        let y0 = c0 + (ky * geo.dilation * geo.x.w) as i32;
                        for (kx, &code) in line.iter().enumerate() {
                            let tap = y0 + (kx * geo.dilation) as i32;
                            match code {
                                1 => taps.push(tap),
                                -1 => minus.push(tap),
                                _ => {}
                            }
                        }
                    }
                }
                bounds.push(taps.len() as i32);
                taps.extend_from_slice(&minus);
                bounds.push(taps.len() as i32);
            }
        }
        debug_assert_eq!(bounds.len(), 1 + 2 * chunks * codes.len() / geo.kk.max(1));
        if taps.is_empty() {
            taps.push(0); // keep the table non-empty; no loop reads it
        }
        let taps = self.table(format!("conv{i}.ternary_taps"), ConstData::I32(taps));
        let bounds = self.table(format!("conv{i}.ternary_bounds"), ConstData::I32(bounds));
        let scale = self.table(format!("conv{i}.scale"), ConstData::F32(ep.scale.clone()));
        let bias = self.table(format!("conv{i}.bias"), ConstData::F32(ep.bias.clone()));
        let name = if chunks > 1 {
            format!("conv {i} ternary table, {chunks} chunks of {} channels", geo.kchunk)
        } else {
            format!("conv {i} ternary table")
        };
        // chunked: the output holds partial sums, zeroed first, with the epilogue as a
        // last pass (one accumulation body for every chunk keeps the code small)
        let chunked = chunks > 1;
        let whole = ConvGeo { kchunk: geo.cin, ..geo.clone() };
        if chunked {
            let mut kb = KernelBuilder::new(format!("conv {i} zero partial sums"), Some(i));
            let r = Regs::new(&mut kb, geo);
            whole.chunk_loops(&mut kb, &|_, _, _| {}, &|kb, o, _, oy, ox, tile, _| {
                r.zero(kb, geo, tile);
                r.store_partial(kb, geo, tile, &geo.out_at(o, oy, ox));
            });
            self.kernels.push(kb.finish());
        }
        let mut kb = KernelBuilder::new(name, Some(i));
        let r = Regs::new(&mut kb, geo);
        let (plus, minus, end) = (kb.local(Ty::I32), kb.local(Ty::I32), kb.local(Ty::I32));
        let tap = kb.local(Ty::I32);
        geo.chunk_loops(
            &mut kb,
            &|kb, o, q| {
                let at = o.scaled(idx(2 * chunks)).plus(&q.scaled(2));
                kb.load(plus, bounds, at.clone());
                kb.load(minus, bounds, at.add(1));
                kb.load(end, bounds, at.add(2));
                if !chunked {
                    kb.load(r.s, scale, o.clone());
                    kb.load(r.b, bias, o.clone());
                }
            },
            &|kb, o, g, oy, ox, tile, phase| {
                let at = geo.out_at(o, oy, ox);
                match phase {
                    Phase::Only => r.zero(kb, geo, tile),
                    Phase::Chunk => r.load_partial(kb, geo, tile, &at),
                }
                let base = geo.input_at(g, oy, ox).dynamic(tap);
                for (from, to, op, note) in
                    [(plus, minus, BinOp::Add, "+1 taps"), (minus, end, BinOp::Sub, "-1 taps")]
                {
                    kb.for_table(from, to, note, |kb, j| {
                        kb.load(tap, taps, Index::var(j));
                        r.accumulate(kb, geo, tile, op, &base, false);
                    });
                }
                match phase {
                    Phase::Only => r.epilogue(kb, geo, tile, Some(r.s.into()), r.b.into(), ep.act, at),
                    Phase::Chunk => r.store_partial(kb, geo, tile, &at),
                }
            },
        );
        self.kernels.push(kb.finish());
        if chunked {
            let mut kb = KernelBuilder::new(format!("conv {i} epilogue"), Some(i));
            let r = Regs::new(&mut kb, geo);
            whole.chunk_loops(
                &mut kb,
                &|kb, o, _| {
                    kb.load(r.s, scale, o.clone());
                    kb.load(r.b, bias, o.clone());
                },
                &|kb, o, _, oy, ox, tile, _| {
                    let at = geo.out_at(o, oy, ox);
                    r.load_partial(kb, geo, tile, &at);
                    r.epilogue(kb, geo, tile, Some(r.s.into()), r.b.into(), ep.act, at);
                },
            );
            self.kernels.push(kb.finish());
        }
    }

    /// The decode table of 2-bit codes, shared by the program's packed layers: entry
    /// `256·q + byte` is code `q` of `byte` as 0, +1 or −1 (`0b10`, never emitted,
    /// reads as 0): `f32` for float kernels, `i32` (`int`) for integer ones.
    pub(super) fn decode2_table(&mut self, int: bool) -> Buf {
        let name = if int { "ternary2.decode_i32" } else { "ternary2.decode" };
        if let Some(k) = self.consts.iter().position(|t| t.name == name) {
            return Buf::Const(k);
        }
        let codes = (0..4).flat_map(|q| {
            (0..256u32).map(move |b| match (b >> (2 * q)) & 3 {
                0b01 => 1i32,
                0b11 => -1,
                _ => 0,
            })
        });
        let data = match int {
            true => ConstData::I32(codes.collect()),
            false => ConstData::F32(codes.map(|c| c as f32).collect()),
        };
        self.table(name.to_string(), data)
    }

    /// The constant tables of a packed kernel: each channel's 2-bit code row, the
    /// tap offset of every code column (padding columns point at tap 0 with code 0),
    /// and the epilogue's scale and bias.
    pub(super) fn packed_tables(
        &mut self,
        i: usize,
        geo: &ConvGeo,
        codes: &[i8],
        ep: &Epilogue,
    ) -> PackedTables {
        let rows = codes.len() / geo.kk.max(1);
        let packed =
            ternc_passes::pack::Packed2::pack(codes, rows, geo.kk, ternc_passes::pack::Scales::Layer(1.0))
                .expect("codes of a ternary layer are -1, 0 or +1");
        let row_bytes = packed.row_bytes;
        let taps: Vec<i32> = (0..4 * row_bytes).map(|j| if j < geo.kk { geo.tap(j) } else { 0 }).collect();
        PackedTables {
            row_bytes,
            codes: self.table(format!("conv{i}.codes2"), ConstData::U8(packed.data)),
            taps: self.table(format!("conv{i}.taps"), ConstData::I32(taps)),
            scale: self.table(format!("conv{i}.scale"), ConstData::F32(ep.scale.clone())),
            bias: self.table(format!("conv{i}.bias"), ConstData::F32(ep.bias.clone())),
        }
    }

    /// [`TernaryKernel::Packed`]: per output channel, the packed row's bytes in order;
    /// each of a byte's four codes is decoded through [`Self::decode2_table`], its tap
    /// offset read from a table shared by all channels (padding columns point at tap
    /// 0 with code 0), and every accumulator of the tile gets
    /// `+ select(c > 0, x, 0) − select(c < 0, x, 0)`.
    pub(super) fn conv_packed(&mut self, i: usize, geo: &ConvGeo, codes: &[i8], ep: &Epilogue) {
        let dec = self.decode2_table(false);
        let PackedTables { row_bytes, codes: codes_t, taps: taps_t, scale, bias } =
            self.packed_tables(i, geo, codes, ep);
        let mut kb = KernelBuilder::new(format!("conv {i} ternary packed"), Some(i));
        let r = Regs::new(&mut kb, geo);
        let (byte, tap) = (kb.local(Ty::I32), kb.local(Ty::I32));
        let (code, p) = (kb.local(Ty::F32), kb.local(Ty::F32));
        let (vcode, vz, vp) = (kb.local(Ty::F32x4), kb.local(Ty::F32x4), kb.local(Ty::F32x4));
        geo.channel_loops(
            &mut kb,
            &|kb, o| {
                kb.load(r.s, scale, o.clone());
                kb.load(r.b, bias, o.clone());
            },
            &|kb, o, g, oy, ox, tile| {
                r.zero(kb, geo, tile);
                let nv = geo.in_vectors(tile.n);
                if nv > 0 {
                    kb.assign(vz, Expr::Splat(Operand::F32(0.0)));
                }
                let base = geo.input_at(g, oy, ox);
                kb.for_range(0, idx(row_bytes), 1, "code bytes", |kb, b| {
                    kb.load(byte, codes_t, o.scaled(idx(row_bytes)).plus(&b));
                    for q in 0..4 {
                        kb.load(code, dec, Index::at(256 * q).dynamic(byte));
                        kb.load(tap, taps_t, b.scaled(4).add(q));
                        let at = base.clone().dynamic(tap);
                        if nv > 0 {
                            kb.assign(vcode, Expr::Splat(code.into()));
                        }
                        for row in 0..tile.rows {
                            let at = at.add(idx(row * geo.sy * geo.x.w));
                            for (k, &a) in r.vacc[row][..nv / 4].iter().enumerate() {
                                kb.assign(r.vx, Expr::LoadVec { buf: geo.x.buf, index: at.add(4 * idx(k)) });
                                for (cmp, op) in [(Cmp::Gt, BinOp::Add), (Cmp::Lt, BinOp::Sub)] {
                                    let sel = Expr::Select {
                                        cmp,
                                        lhs: vcode.into(),
                                        rhs: vz.into(),
                                        then: r.vx.into(),
                                        otherwise: vz.into(),
                                    };
                                    kb.assign(vp, sel);
                                    kb.binary(a, op, a, vp);
                                }
                            }
                            for (t, &a) in r.acc[row].iter().enumerate().take(tile.n).skip(nv) {
                                kb.load(r.x, geo.x.buf, at.add(idx(t * geo.sx)));
                                for (cmp, op) in [(Cmp::Gt, BinOp::Add), (Cmp::Lt, BinOp::Sub)] {
                                    let sel = Expr::Select {
                                        cmp,
                                        lhs: code.into(),
                                        rhs: Operand::F32(0.0),
                                        then: r.x.into(),
                                        otherwise: Operand::F32(0.0),
                                    };
                                    kb.assign(p, sel);
                                    kb.binary(a, op, a, p);
                                }
                            }
                        }
                    }
                });
                r.epilogue(kb, geo, tile, Some(r.s.into()), r.b.into(), ep.act, geo.out_at(o, oy, ox));
            },
        );
        self.kernels.push(kb.finish());
    }

    pub(super) fn conv_unrolled(&mut self, i: usize, geo: &ConvGeo, codes: &[i8], ep: &Epilogue) {
        let mut kb = KernelBuilder::new(format!("conv {i} ternary unrolled"), Some(i));
        let r = Regs::new(&mut kb, geo);
        for (o, row) in codes.chunks(geo.kk).enumerate() {
            let g = Index::at(idx(o / geo.coutg));
            let o = Index::at(idx(o));
            let k = o.offset as usize;
            let nonzero: Vec<(i64, BinOp)> = row
                .iter()
                .enumerate()
                .filter(|(_, &c)| c != 0)
                .map(|(j, &c)| (geo.tap(j) as i64, if c > 0 { BinOp::Add } else { BinOp::Sub }))
                .collect();
            geo.row_groups(&mut kb, &format!("oy, oc {k}"), true, &|kb, oy, rows| {
                geo.tiles(kb, &|kb, ox, n| {
                    let tile = Tile { n, rows };
                    r.zero(kb, geo, tile);
                    let base = geo.input_at(&g, &oy, &ox);
                    for &(tap, op) in &nonzero {
                        r.accumulate(kb, geo, tile, op, &base.add(tap), false);
                    }
                    let s = Operand::F32(ep.scale[k]);
                    let at = geo.out_at(&o, &oy, &ox);
                    r.epilogue(kb, geo, tile, Some(s), Operand::F32(ep.bias[k]), ep.act, at);
                })
            });
        }
        self.kernels.push(kb.finish());
    }
}

/// See [`Lowerer::packed_tables`].
pub(super) struct PackedTables {
    pub(super) row_bytes: usize,
    pub(super) codes: Buf,
    pub(super) taps: Buf,
    pub(super) scale: Buf,
    pub(super) bias: Buf,
}

/// One tile: `rows` output rows of `n` pixels.
#[derive(Debug, Clone, Copy)]
pub(super) struct Tile {
    pub(super) n: usize,
    pub(super) rows: usize,
}

/// The locals every convolution kernel uses.
pub(super) struct Regs {
    /// Scalar accumulators, `[row][pixel]`.
    pub(super) acc: Vec<Vec<Local>>,
    /// Vector accumulators, `[row][4 pixels]` (with vectors on).
    pub(super) vacc: Vec<Vec<Local>>,
    /// Loaded input (scalar and vector).
    pub(super) x: Local,
    pub(super) vx: Local,
    /// A float weight, and splatted (also a scratch vector in the epilogue).
    pub(super) w: Local,
    pub(super) vw: Local,
    /// The epilogue's scale and bias, splatted, and a scratch vector.
    pub(super) vs: Local,
    pub(super) vb: Local,
    pub(super) vc: Local,
    pub(super) v: Local,
    pub(super) t: Local,
    pub(super) s: Local,
    pub(super) b: Local,
}

impl Regs {
    pub(super) fn new(kb: &mut KernelBuilder, geo: &ConvGeo) -> Regs {
        let vecs = if geo.vectors { geo.tile / 4 } else { 0 };
        let mut acc = Vec::new();
        let mut vacc = Vec::new();
        for _ in 0..geo.rows {
            acc.push((0..geo.tile).map(|_| kb.local(Ty::F32)).collect());
            vacc.push((0..vecs).map(|_| kb.local(Ty::F32x4)).collect());
        }
        Regs {
            acc,
            vacc,
            x: kb.local(Ty::F32),
            vx: kb.local(Ty::F32x4),
            w: kb.local(Ty::F32),
            vw: kb.local(Ty::F32x4),
            vs: kb.local(Ty::F32x4),
            vb: kb.local(Ty::F32x4),
            vc: kb.local(Ty::F32x4),
            v: kb.local(Ty::F32),
            t: kb.local(Ty::F32),
            s: kb.local(Ty::F32),
            b: kb.local(Ty::F32),
        }
    }

    pub(super) fn zero(&self, kb: &mut KernelBuilder, geo: &ConvGeo, tile: Tile) {
        let nv = geo.in_vectors(tile.n);
        for r in 0..tile.rows {
            for &a in &self.vacc[r][..nv / 4] {
                kb.assign(a, Expr::Splat(Operand::F32(0.0)));
            }
            for &a in &self.acc[r][nv..tile.n] {
                kb.assign(a, Expr::Copy(Operand::F32(0.0)));
            }
        }
    }

    /// `acc[r][t] op= (w·) x[base + r·sy·W + t·sx]` over the tile: `op` is add or sub;
    /// `weighted` (float layers) multiplies each input by the weight local `w` first.
    pub(super) fn accumulate(
        &self,
        kb: &mut KernelBuilder,
        geo: &ConvGeo,
        tile: Tile,
        op: BinOp,
        base: &Index,
        weighted: bool,
    ) {
        let nv = geo.in_vectors(tile.n);
        let buf = geo.x.buf;
        if weighted && nv > 0 {
            kb.assign(self.vw, Expr::Splat(self.w.into()));
        }
        for r in 0..tile.rows {
            let row = base.add(idx(r * geo.sy * geo.x.w));
            for (k, &a) in self.vacc[r][..nv / 4].iter().enumerate() {
                kb.assign(self.vx, Expr::LoadVec { buf, index: row.add(4 * idx(k)) });
                if weighted {
                    kb.binary(self.vx, BinOp::Mul, self.vw, self.vx);
                }
                kb.binary(a, op, a, self.vx);
            }
            for (t, &a) in self.acc[r].iter().enumerate().take(tile.n).skip(nv) {
                kb.load(self.x, buf, row.add(idx(t * geo.sx)));
                if weighted {
                    kb.binary(self.x, BinOp::Mul, self.w, self.x);
                }
                kb.binary(a, op, a, self.x);
            }
        }
    }

    /// The accumulators from the partial sums at `at` (the tile's place in the output).
    pub(super) fn load_partial(&self, kb: &mut KernelBuilder, geo: &ConvGeo, tile: Tile, at: &Index) {
        let nv = geo.in_vectors(tile.n);
        for r in 0..tile.rows {
            let row = at.add(idx(r * geo.out.w));
            for (k, &a) in self.vacc[r][..nv / 4].iter().enumerate() {
                kb.assign(a, Expr::LoadVec { buf: Buf::Arena, index: row.add(4 * idx(k)) });
            }
            for (t, &a) in self.acc[r].iter().enumerate().take(tile.n).skip(nv) {
                kb.load(a, Buf::Arena, row.add(idx(t)));
            }
        }
    }

    /// Stores the accumulators as partial sums at `at`.
    pub(super) fn store_partial(&self, kb: &mut KernelBuilder, geo: &ConvGeo, tile: Tile, at: &Index) {
        let nv = geo.in_vectors(tile.n);
        for r in 0..tile.rows {
            let row = at.add(idx(r * geo.out.w));
            for (k, &a) in self.vacc[r][..nv / 4].iter().enumerate() {
                kb.store(Buf::Arena, row.add(4 * idx(k)), a);
            }
            for (t, &a) in self.acc[r].iter().enumerate().take(tile.n).skip(nv) {
                kb.store(Buf::Arena, row.add(idx(t)), a);
            }
        }
    }

    /// `out[at + r·OW + t] = act(s·acc[r][t] + b)` over the tile: the one multiply
    /// per output.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn epilogue(
        &self,
        kb: &mut KernelBuilder,
        geo: &ConvGeo,
        tile: Tile,
        s: Option<Operand>,
        b: Operand,
        act: Activation,
        at: Index,
    ) {
        // whole vectors: the same operations lane-wise, one 4-wide store
        let nv = if act == Activation::Logistic { 0 } else { geo.in_vectors(tile.n) };
        if nv > 0 {
            let splat = |kb: &mut KernelBuilder, dst: Local, o: Operand| kb.assign(dst, Expr::Splat(o));
            splat(kb, self.vs, s.unwrap_or(Operand::F32(1.0)));
            splat(kb, self.vb, b);
            for r in 0..tile.rows {
                for (k, &a) in self.vacc[r][..nv / 4].iter().enumerate() {
                    match s {
                        Some(_) => {
                            kb.binary(self.vx, BinOp::Mul, self.vs, a);
                            kb.binary(self.vx, BinOp::Add, self.vx, self.vb);
                        }
                        None => kb.binary(self.vx, BinOp::Add, a, self.vb),
                    }
                    emit_vector_activation(kb, self.vx, self.vw, self.vc, act);
                    kb.store(Buf::Arena, at.add(idx(r * geo.out.w + 4 * k)), self.vx);
                }
            }
        }
        for r in 0..tile.rows {
            for t in nv..tile.n {
                let a = if t < geo.in_vectors(tile.n) {
                    let lane = Expr::Extract { v: self.vacc[r][t / 4].into(), lane: (t % 4) as u8 };
                    kb.assign(self.x, lane);
                    self.x
                } else {
                    self.acc[r][t]
                };
                match s {
                    Some(s) => {
                        kb.binary(self.v, BinOp::Mul, s, a);
                        kb.binary(self.v, BinOp::Add, self.v, b);
                    }
                    None => kb.binary(self.v, BinOp::Add, a, b),
                }
                emit_activation(kb, self.v, self.t, act);
                kb.store(Buf::Arena, at.add(idx(r * geo.out.w + t)), self.v);
            }
        }
    }
}

/// The constants of one convolution over its (padded) input.
#[derive(Clone)]
pub(super) struct ConvGeo {
    pub(super) x: Map,
    pub(super) out: Map,
    pub(super) k: usize,
    pub(super) dilation: usize,
    pub(super) sx: usize,
    pub(super) sy: usize,
    pub(super) groups: usize,
    pub(super) cin: usize,
    pub(super) coutg: usize,
    /// Weights per output channel, `cin·k·k`.
    pub(super) kk: usize,
    /// Pixels and rows of a full tile.
    pub(super) tile: usize,
    pub(super) rows: usize,
    /// Accumulate in f32x4 (stride 1 only).
    pub(super) vectors: bool,
    pub(super) channel_outer: bool,
    /// Input channels a ternary table kernel sums before it moves to the next output
    /// channel (`cin`: all at once). See [`LowerOptions::chunk_bytes`].
    pub(super) kchunk: usize,
    /// Where a row's odd columns start when its columns are split (see
    /// [`split_columns`](Self::split_columns)).
    pub(super) odd_columns: Option<usize>,
}

/// How a tile pass accumulates: over every input channel (from zero, ending in the
/// epilogue), or over one chunk of them (from the partial sums in the output, stored
/// back there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Only,
    Chunk,
}

type ChunkTileFn<'f> = dyn Fn(&mut KernelBuilder, &Index, &Index, &Index, &Index, Tile, Phase) + 'f;

type TileFn<'f> = dyn Fn(&mut KernelBuilder, &Index, &Index, &Index, &Index, Tile) + 'f;

/// Accumulators a tile may keep in registers (x86_64 has 16 vector registers).
const TILE_REGISTERS: usize = 12;

impl ConvGeo {
    pub(super) fn new(cv: &Conv, x: Map, out: Map, opts: &LowerOptions) -> ConvGeo {
        let cin = x.c / cv.groups;
        let vectors = opts.vectors && cv.stride_x == 1;
        let per_row = if vectors { opts.tile / 4 + opts.tile % 4 } else { opts.tile };
        let rows = match opts.tile_rows {
            0 => (TILE_REGISTERS / per_row.max(1)).clamp(1, 4),
            r => r,
        };
        let channel_outer = 4 * x.numel() <= opts.channel_outer_max_bytes;
        // bytes of one input channel that a pass over the tiles reads: the whole
        // plane (channel outer) or the rows one row group reaches (row outer)
        let reach = (rows.min(out.h).max(1) - 1) * cv.stride_y + (cv.size - 1) * cv.dilation + 1;
        let footprint = 4 * if channel_outer { x.plane() } else { reach.min(x.h) * x.w };
        let kchunk = match opts.chunk_bytes {
            0 => cin,
            b => (b / footprint.max(1)).clamp(1, cin),
        };
        ConvGeo {
            x,
            out,
            k: cv.size,
            dilation: cv.dilation,
            sx: cv.stride_x,
            sy: cv.stride_y,
            groups: cv.groups,
            cin,
            coutg: cv.filters / cv.groups,
            kk: cin * cv.size * cv.size,
            tile: opts.tile,
            rows: rows.min(out.h).max(1),
            vectors,
            channel_outer,
            kchunk,
            odd_columns: None,
        }
    }

    /// Input-channel chunks of a ternary table kernel.
    pub(super) fn chunks(&self) -> usize {
        self.cin.div_ceil(self.kchunk)
    }

    /// [`channel_loops`](Self::channel_loops) with the input channels in
    /// [`chunks`](Self::chunks): `setup(o, q)` per output channel and chunk `q`,
    /// `tile(.., phase)` per tile and chunk. The chunk loop sits outside the output
    /// channels (so a chunk of the input stays in L1 while every channel reads it),
    /// inside the row groups when rows are outermost.
    pub(super) fn chunk_loops(
        &self,
        kb: &mut KernelBuilder,
        setup: &dyn Fn(&mut KernelBuilder, &Index, &Index),
        tile: &ChunkTileFn,
    ) {
        let chunks = self.chunks();
        let phases = |kb: &mut KernelBuilder, body: &dyn Fn(&mut KernelBuilder, &Index, Phase)| {
            if chunks == 1 {
                return body(kb, &Index::at(0), Phase::Only);
            }
            kb.for_range(0, idx(chunks), 1, "chunk", |kb, q| body(kb, &q, Phase::Chunk));
        };
        let (par_groups, par_oc) = (self.groups > self.coutg, self.groups <= self.coutg);
        let lp = |kb: &mut KernelBuilder,
                  par: bool,
                  n: usize,
                  note: &str,
                  f: &dyn Fn(&mut KernelBuilder, Index)| {
            if par {
                kb.for_parallel(0, idx(n), 1, note, f)
            } else {
                kb.for_range(0, idx(n), 1, note, f)
            }
        };
        let channels =
            |kb: &mut KernelBuilder, q: &Index, body: &dyn Fn(&mut KernelBuilder, &Index, &Index)| {
                lp(kb, par_groups, self.groups, "group", &|kb, g| {
                    lp(kb, par_oc, self.coutg, "oc", &|kb, oc| {
                        let o = g.scaled(idx(self.coutg)).plus(&oc);
                        setup(kb, &o, q);
                        body(kb, &o, &g)
                    })
                })
            };
        let tiles = |kb: &mut KernelBuilder, o: &Index, g: &Index, oy: &Index, rows: usize, phase: Phase| {
            self.tiles(kb, &|kb, ox, n| tile(kb, o, g, oy, &ox, Tile { n, rows }, phase))
        };
        if self.channel_outer {
            phases(kb, &|kb, q, phase| {
                channels(kb, q, &|kb, o, g| {
                    self.row_groups(kb, "oy", false, &|kb, oy, rows| tiles(kb, o, g, &oy, rows, phase))
                })
            });
        } else {
            self.row_groups(kb, "oy", false, &|kb, oy, rows| {
                phases(kb, &|kb, q, phase| channels(kb, q, &|kb, o, g| tiles(kb, o, g, &oy, rows, phase)))
            });
        }
    }

    /// Pixels of an `n`-pixel row held in vectors.
    pub(super) fn in_vectors(&self, n: usize) -> usize {
        if self.vectors {
            n / 4 * 4
        } else {
            0
        }
    }

    /// Offset of weight column `j` (input channel, ky, kx) in the padded input.
    pub(super) fn tap(&self, j: usize) -> i32 {
        let (c, ky, kx) = (j / (self.k * self.k), (j / self.k) % self.k, j % self.k);
        let col = kx * self.dilation;
        // split columns: input column 2·ox + col sits at ox + col/2 (even) or at
        // odd + ox + (col − 1)/2 (odd)
        let col = match self.odd_columns {
            Some(odd) if col % 2 == 1 => odd + col / 2,
            Some(_) => col / 2,
            None => col,
        };
        (c * self.x.plane() + ky * self.dilation * self.x.w + col) as i32
    }

    /// Reads a stride-2 input whose rows hold the even columns, then the odd ones
    /// (`quantize` with `split`): output pixels then step 1 through each half, so
    /// they can be vectors.
    pub(super) fn split_columns(&mut self) {
        debug_assert_eq!(self.sx, 2);
        self.odd_columns = Some(self.x.w.div_ceil(2));
        self.sx = 1;
        self.vectors = true;
    }

    /// Input element of tap 0 for output `(oy, ox)` of group `g`.
    pub(super) fn input_at(&self, g: &Index, oy: &Index, ox: &Index) -> Index {
        Index::at(self.x.off)
            .plus(&g.scaled(idx(self.cin * self.x.plane())))
            .plus(&oy.scaled(idx(self.sy * self.x.w)))
            .plus(&ox.scaled(idx(self.sx)))
    }

    pub(super) fn out_at(&self, o: &Index, oy: &Index, ox: &Index) -> Index {
        self.out.at(o, oy, ox)
    }

    /// Full tiles of `tile` pixels along the row, then the tail.
    pub(super) fn tiles(&self, kb: &mut KernelBuilder, f: &dyn Fn(&mut KernelBuilder, Index, usize)) {
        let w = self.out.w;
        let full = w / self.tile * self.tile;
        kb.for_range(0, idx(full), idx(self.tile), "ox tile", |kb, ox| f(kb, ox, self.tile));
        if full < w {
            f(kb, Index::at(idx(full)), w - full);
        }
    }

    /// Groups of `rows` output rows, then the remaining rows; split across threads
    /// when `parallel` (the remaining rows as one more parallel loop of one iteration).
    pub(super) fn row_groups(
        &self,
        kb: &mut KernelBuilder,
        note: &str,
        parallel: bool,
        f: &dyn Fn(&mut KernelBuilder, Index, usize),
    ) {
        let h = self.out.h;
        let full = h / self.rows * self.rows;
        if parallel {
            kb.for_parallel(0, idx(full), idx(self.rows), note, |kb, oy| f(kb, oy, self.rows));
            let tail = h - full;
            kb.for_parallel(idx(full), idx(h), idx(tail.max(1)), note, |kb, oy| f(kb, oy, tail));
            return;
        }
        kb.for_range(0, idx(full), idx(self.rows), note, |kb, oy| f(kb, oy, self.rows));
        if full < h {
            f(kb, Index::at(idx(full)), h - full);
        }
    }

    /// Output channels (`o`, and group `g`) and row groups in the chosen order; `setup`
    /// runs at the start of each channel's body, `tile(o, g, oy, ox, tile)` per tile.
    pub(super) fn channel_loops(
        &self,
        kb: &mut KernelBuilder,
        setup: &dyn Fn(&mut KernelBuilder, &Index),
        tile: &TileFn,
    ) {
        // one chunk of every input channel: Phase::Only throughout
        let whole = ConvGeo { kchunk: self.cin, ..self.clone() };
        whole.chunk_loops(kb, &|kb, o, _| setup(kb, o), &|kb, o, g, oy, ox, t, _| tile(kb, o, g, oy, ox, t));
    }
}
