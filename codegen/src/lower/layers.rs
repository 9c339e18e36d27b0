//! Kernels of the layers other than convolution.

use ternc_ir::{shortcut_ratio, Connected, Sam, ScaleChannels, Softmax};

use super::*;

impl Lowerer<'_> {
    // -----------------------------------------------------------------------
    // Other layers

    pub(super) fn maxpool(&mut self, i: usize, p: &MaxPool, x: Map, out: Map) -> Result<(), CodegenError> {
        let (left, top) = (p.padding / 2, p.padding / 2);
        // taps past the right/bottom edge that some window reaches
        let right = ((out.w - 1) * p.stride_x + p.size).saturating_sub(left + x.w);
        let bottom = ((out.h - 1) * p.stride_y + p.size).saturating_sub(top + x.h);
        let x = if left + top + right + bottom > 0 {
            // Darknet skips out-of-range taps; −FLT_MAX (its initial max) is the same
            self.pad(i, x, [top, left, bottom, right], f32::MIN)
        } else {
            x
        };
        let mut kb = KernelBuilder::new(format!("maxpool {i}"), Some(i));
        let (m, t) = (kb.local(Ty::F32), kb.local(Ty::F32));
        // channels split across threads (yolov3-tiny's first maxpool reads 11 MB)
        kb.for_parallel(0, idx(out.c), 1, "c", |kb, c| {
            kb.for_range(0, idx(out.h), 1, "oy", |kb, oy| {
                kb.for_range(0, idx(out.w), 1, "ox", |kb, ox| {
                    let corner = x.at(&c, &oy.scaled(idx(p.stride_y)), &ox.scaled(idx(p.stride_x)));
                    for ky in 0..p.size {
                        for kx in 0..p.size {
                            let at = corner.add(idx(ky * x.w + kx));
                            if ky == 0 && kx == 0 {
                                kb.load(m, x.buf, at);
                            } else {
                                kb.load(t, x.buf, at);
                                kb.binary(m, BinOp::Max, m, t);
                            }
                        }
                    }
                    kb.store(Buf::Arena, out.at(&c, &oy, &ox), m);
                })
            })
        });
        self.kernels.push(kb.finish());
        Ok(())
    }

    pub(super) fn route(&mut self, i: usize, r: &Route, ins: &[Map], out: Map) {
        let copies = self.plan.route_copies(self.g, i);
        if copies.is_empty() {
            return;
        }
        let mut kb = KernelBuilder::new(format!("route {i}"), Some(i));
        let mut at = 0;
        for (k, x) in ins.iter().enumerate() {
            let part = x.numel() / r.groups;
            if copies.contains(&k) {
                let src = x.off + idx(r.group_id * part);
                copy(&mut kb, x.buf, src, out.off + idx(at), part);
            }
            at += part;
        }
        self.kernels.push(kb.finish());
    }

    pub(super) fn upsample(&mut self, i: usize, u: &Upsample, x: Map, out: Map) -> Result<(), CodegenError> {
        if u.stride < 0 {
            self.downsample(i, u, x, out);
            return Ok(());
        }
        if u.stride == 0 {
            return Err(CodegenError::Invalid(format!("layer {i}: upsample stride=0")));
        }
        let s = u.stride as usize;
        let mut kb = KernelBuilder::new(format!("upsample {i}"), Some(i));
        let v = kb.local(Ty::F32);
        kb.for_range(0, idx(x.c), 1, "c", |kb, c| {
            kb.for_range(0, idx(x.h), 1, "iy", |kb, iy| {
                kb.for_range(0, idx(s), 1, "dy", |kb, dy| {
                    kb.for_range(0, idx(x.w), 1, "ix", |kb, ix| {
                        kb.load(v, x.buf, x.at(&c, &iy, &ix));
                        if u.scale != 1.0 {
                            kb.binary(v, BinOp::Mul, u.scale, v);
                        }
                        let oy = iy.scaled(idx(s)).plus(&dy);
                        for dx in 0..s {
                            let ox = ix.scaled(idx(s)).add(idx(dx));
                            kb.store(Buf::Arena, out.at(&c, &oy, &ox), v);
                        }
                    })
                })
            })
        });
        self.kernels.push(kb.finish());
        Ok(())
    }

    /// `[upsample]` with a negative stride (Darknet's reverse upsample): each output is
    /// the sum of its `s×s` block times `scale`, added in the reference's order (rows,
    /// then columns, from 0).
    fn downsample(&mut self, i: usize, u: &Upsample, x: Map, out: Map) {
        let s = u.stride.unsigned_abs() as usize;
        let mut kb = KernelBuilder::new(format!("downsample {i}"), Some(i));
        let (acc, v) = (kb.local(Ty::F32), kb.local(Ty::F32));
        kb.for_range(0, idx(out.c), 1, "c", |kb, c| {
            kb.for_range(0, idx(out.h), 1, "oy", |kb, oy| {
                kb.for_range(0, idx(out.w), 1, "ox", |kb, ox| {
                    kb.assign(acc, Expr::Copy(Operand::F32(0.0)));
                    let corner = x.at(&c, &oy.scaled(idx(s)), &ox.scaled(idx(s)));
                    for dy in 0..s {
                        for dx in 0..s {
                            kb.load(v, x.buf, corner.add(idx(dy * x.w + dx)));
                            kb.binary(v, BinOp::Mul, u.scale, v);
                            kb.binary(acc, BinOp::Add, acc, v);
                        }
                    }
                    kb.store(Buf::Arena, out.at(&c, &oy, &ox), acc);
                })
            })
        });
        self.kernels.push(kb.finish());
    }

    /// `[shortcut]`: `act(w₀·prev + w₁·from₁ + w₂·from₂ + …)` (weights 1 without
    /// `weights_type`, normalised as the reference does otherwise), each from-layer
    /// added in order over its overlap with the output.
    ///
    /// When every from-layer has the output's spatial size, the overlap is the first
    /// `min(c_out, c_from)` channels, a flat prefix: the output is split at each
    /// from-layer's end, so every segment adds a fixed list of inputs in one pass.
    /// Otherwise (original Darknet's strided shortcut, `shortcut_ratio`), as the
    /// reference: `w₀·prev` first, then each from-layer added over its sampled grid,
    /// then the activation.
    pub(super) fn shortcut(
        &mut self,
        i: usize,
        s: &Shortcut,
        ins: &[Map],
        out: Map,
    ) -> Result<(), CodegenError> {
        let (prev, froms) = (ins[0], &ins[1..]);
        if prev.numel() != out.numel() {
            return Err(self.unsupported(i, "an input whose size differs from the output's"));
        }
        let plane = out.plane();
        // the normalised weights, [inputs][c] (per channel) or [inputs]
        let weights = if s.weights == ShortcutWeights::None {
            None
        } else {
            let kind = self.g.layer(i).op.type_name();
            let p = self
                .g
                .params
                .layer(i)
                .filter(|p| !p.weights.is_empty())
                .ok_or(CodegenError::MissingParams { layer: i, kind, what: "weights" })?;
            let per = p.weights.len() / ins.len();
            if per * ins.len() != p.weights.len() || (per != 1 && per != out.c) {
                return Err(CodegenError::MissingParams {
                    layer: i,
                    kind,
                    what: "weights of the right size",
                });
            }
            Some((normalize_shortcut(&p.weights, ins.len(), per, &s.weights_normalization), per > 1))
        };
        let per_channel = matches!(weights, Some((_, true)));
        let same = froms.iter().all(|f| f.h == out.h && f.w == out.w);
        if per_channel && !same {
            return Err(self.unsupported(
                i,
                "per-channel weights with a from-layer of another spatial size (the reference \
                 indexes it with the output's plane)",
            ));
        }
        // weight of input k for channel ch (1 without weights)
        let w = |k: usize, ch: usize| match &weights {
            None => 1.0,
            Some((w, true)) => w[k * out.c + ch],
            Some((w, false)) => w[k],
        };
        let wtable = match &weights {
            Some((w, true)) => Some(self.table(format!("shortcut{i}.weights"), ConstData::F32(w.clone()))),
            _ => None,
        };
        let mut kb = KernelBuilder::new(format!("shortcut {i}"), Some(i));
        let (v, a, t) = (kb.local(Ty::F32), kb.local(Ty::F32), kb.local(Ty::F32));
        // `dst = src·w` (or `src` for an unweighted input)
        let weigh = |kb: &mut KernelBuilder, dst: Local, src: Local, wk: Option<Operand>| {
            if let Some(wk) = wk {
                kb.binary(dst, BinOp::Mul, src, wk);
            }
        };
        if same {
            let ends: Vec<usize> = froms.iter().map(|f| f.numel().min(out.numel())).collect();
            let mut cuts: Vec<usize> = ends.iter().copied().chain([0, out.numel()]).collect();
            cuts.sort_unstable();
            cuts.dedup();
            let wl: Vec<Local> = (0..ins.len()).map(|_| kb.local(Ty::F32)).collect();
            for seg in cuts.windows(2) {
                let (start, end) = (seg[0], seg[1]);
                let adds: Vec<usize> = (0..froms.len()).filter(|&k| ends[k] >= end).collect();
                // one element j: w₀·prev[j] + Σ wₖ·fromₖ[j], activation, store
                let body = |kb: &mut KernelBuilder, j: &Index, wk: &dyn Fn(usize) -> Option<Operand>| {
                    kb.load(v, prev.buf, j.add(prev.off));
                    weigh(kb, v, v, wk(0));
                    for &k in &adds {
                        let f = froms[k];
                        kb.load(a, f.buf, j.add(f.off));
                        weigh(kb, a, a, wk(k + 1));
                        kb.binary(v, BinOp::Add, v, a);
                    }
                    emit_activation(kb, v, t, s.activation);
                    kb.store(Buf::Arena, j.add(out.off), v);
                };
                match wtable {
                    // segments are whole channels: load the channel's weights, then its plane
                    Some(tb) => {
                        let (c0, c1) = (start / plane, end / plane);
                        kb.for_range(idx(c0), idx(c1), 1, "c", |kb, ch| {
                            let used = std::iter::once(0).chain(adds.iter().map(|k| k + 1));
                            for k in used {
                                kb.load(wl[k], tb, ch.add(idx(k * out.c)));
                            }
                            kb.for_range(0, idx(plane), 1, "p", |kb, p| {
                                let j = ch.scaled(idx(plane)).plus(&p);
                                body(kb, &j, &|k| Some(wl[k].into()));
                            });
                        });
                    }
                    None => kb.for_range(idx(start), idx(end), 1, "j", |kb, j| {
                        body(kb, &j, &|k| weights.as_ref().map(|_| Operand::F32(w(k, 0))));
                    }),
                }
            }
        } else {
            // w₀·prev, then each from-layer in order, then the activation
            let w0 = weights.as_ref().map(|_| Operand::F32(w(0, 0)));
            kb.for_range(0, idx(out.numel()), 1, "j", |kb, j| {
                kb.load(v, prev.buf, j.add(prev.off));
                weigh(kb, v, v, w0);
                kb.store(Buf::Arena, j.add(out.off), v);
            });
            for (k, f) in froms.iter().enumerate() {
                let wk = weights.as_ref().map(|_| Operand::F32(w(k + 1, 0)));
                let add = |kb: &mut KernelBuilder, o: Index, src: Index| {
                    kb.load(v, Buf::Arena, o.clone());
                    kb.load(a, f.buf, src);
                    weigh(kb, a, a, wk);
                    kb.binary(v, BinOp::Add, v, a);
                    kb.store(Buf::Arena, o, v);
                };
                if f.h == out.h && f.w == out.w {
                    let n = f.numel().min(out.numel());
                    kb.for_range(0, idx(n), 1, "j", |kb, j| add(kb, j.add(out.off), j.add(f.off)));
                    continue;
                }
                let fs = Shape::new(f.c, f.h, f.w);
                let os = Shape::new(out.c, out.h, out.w);
                let Some((stride, sample)) = shortcut_ratio(&fs, &os) else {
                    return Err(self.unsupported(
                        i,
                        format!(
                            "a from-layer of {}x{} into {}x{} (no integer ratio)",
                            f.w, f.h, out.w, out.h
                        ),
                    ));
                };
                let (mw, mh, mc) = (out.w.min(f.w), out.h.min(f.h), out.c.min(f.c));
                let (st, sa) = (idx(stride), idx(sample));
                kb.for_range(0, idx(mc), 1, "c", |kb, c| {
                    kb.for_range(0, idx(mh), 1, "y", |kb, y| {
                        kb.for_range(0, idx(mw), 1, "x", |kb, xx| {
                            add(
                                kb,
                                out.at(&c, &y.scaled(sa), &xx.scaled(sa)),
                                f.at(&c, &y.scaled(st), &xx.scaled(st)),
                            )
                        })
                    })
                });
            }
            if !matches!(s.activation, Activation::Linear) && !s.activation.is_channelwise() {
                kb.for_range(0, idx(out.numel()), 1, "j", |kb, j| {
                    kb.load(v, Buf::Arena, j.add(out.off));
                    emit_activation(kb, v, t, s.activation);
                    kb.store(Buf::Arena, j.add(out.off), v);
                });
            }
        }
        self.kernels.push(kb.finish());
        self.channel_activation(i, s.activation, out);
        Ok(())
    }

    /// `[reorg]` (reorg_old) and `[reorg3d]`, forward or `reverse`: Darknet's
    /// `reorg_cpu(x, w, h, c, s, forward = reverse)` on the input's dimensions
    /// `[c, h, w]` (reorg_old) or the output's (reorg3d). For `k < c, j < h, i < w`, with
    /// `c2 = k % (c/s²)`, `off = k / (c/s²)`: `a = i + w·(j + h·k)` and
    /// `b = (i·s + off%s) + w·s·((j·s + off/s) + h·s·c2)`; forward writes `out[b] = x[a]`,
    /// backward `out[a] = x[b]`. As loops over `off = (oy, ox)`, `c2`, `j`, `i` both
    /// indices are affine.
    pub(super) fn reorg(&mut self, i: usize, r: &Reorg, x: Map, out: Map) -> Result<(), CodegenError> {
        let s = r.stride;
        let d = if r.kind == ReorgKind::Old { x } else { out };
        if s == 0 || !d.c.is_multiple_of(s * s) || out.numel() != x.numel() || d.numel() != x.numel() {
            return Err(self.unsupported(i, format!("stride={s} with {} channels", d.c)));
        }
        let forward = r.reverse;
        let (w, h, in_c) = (idx(d.w), idx(d.h), idx(d.c / (s * s)));
        let si = idx(s);
        let mut kb = KernelBuilder::new(format!("reorg {i}"), Some(i));
        let v = kb.local(Ty::F32);
        kb.for_range(0, si, 1, "oy", |kb, oy| {
            kb.for_range(0, si, 1, "ox", |kb, ox| {
                kb.for_range(0, in_c, 1, "c2", |kb, c2| {
                    kb.for_range(0, h, 1, "j", |kb, j| {
                        kb.for_range(0, w, 1, "i", |kb, ii| {
                            let b = ii
                                .scaled(si)
                                .plus(&ox)
                                .plus(&j.scaled(w * si * si))
                                .plus(&oy.scaled(w * si))
                                .plus(&c2.scaled(w * si * h * si));
                            let k = oy.scaled(si).plus(&ox).scaled(in_c).plus(&c2);
                            let a = ii.plus(&j.scaled(w)).plus(&k.scaled(w * h));
                            let (src, dst) = if forward { (a, b) } else { (b, a) };
                            kb.load(v, x.buf, Index::at(x.off).plus(&src));
                            kb.store(Buf::Arena, Index::at(out.off).plus(&dst), v);
                        })
                    })
                })
            })
        });
        self.kernels.push(kb.finish());
        Ok(())
    }

    /// A channel-wise activation (`normalize_channels*`) over `out` in place, as the
    /// reference: per pixel, across channels. Nothing for elementwise activations.
    pub(super) fn channel_activation(&mut self, i: usize, act: Activation, out: Map) {
        if !act.is_channelwise() {
            return;
        }
        let plane = idx(out.plane());
        let mut kb = KernelBuilder::new(format!("{act} {i}"), Some(i));
        let (v, t, m, sum) = (kb.local(Ty::F32), kb.local(Ty::F32), kb.local(Ty::F32), kb.local(Ty::F32));
        let use_max = act == Activation::NormChanSoftmaxMaxval;
        kb.for_range(0, plane, 1, "p", |kb, p| {
            let at = |k: &Index| Index::at(out.off).plus(&p).plus(&k.scaled(plane));
            kb.assign(sum, Expr::Copy(Operand::F32(0.0001)));
            if act == Activation::NormChan {
                // sum of max(x, 0), then x > 0 ? x / sum : 0
                kb.for_range(0, idx(out.c), 1, "c", |kb, k| {
                    kb.load(v, Buf::Arena, at(&k));
                    select_gt(kb, v, v, v.into(), 0.0f32.into());
                    kb.binary(sum, BinOp::Add, sum, v);
                });
                kb.for_range(0, idx(out.c), 1, "c", |kb, k| {
                    kb.load(v, Buf::Arena, at(&k));
                    kb.binary(t, BinOp::Div, v, sum);
                    select_gt(kb, v, v, t.into(), 0.0f32.into());
                    kb.store(Buf::Arena, at(&k), v);
                });
            } else {
                // exp(x − max) / (0.0001 + Σ exp(x − max)), max = 0 without _maxval
                if use_max {
                    kb.assign(m, Expr::Copy(Operand::F32(f32::NEG_INFINITY)));
                    kb.for_range(0, idx(out.c), 1, "c", |kb, k| {
                        kb.load(v, Buf::Arena, at(&k));
                        // f32::max: a NaN is skipped
                        kb.assign(
                            m,
                            Expr::Select {
                                cmp: Cmp::Gt,
                                lhs: v.into(),
                                rhs: m.into(),
                                then: v.into(),
                                otherwise: m.into(),
                            },
                        );
                    });
                }
                let exp = |kb: &mut KernelBuilder, k: &Index| {
                    kb.load(v, Buf::Arena, at(k));
                    if use_max {
                        kb.binary(v, BinOp::Sub, v, m);
                    }
                    kb.assign(v, Expr::Call { f: MathFn::Exp, arg: v.into() });
                };
                kb.for_range(0, idx(out.c), 1, "c", |kb, k| {
                    exp(kb, &k);
                    kb.binary(sum, BinOp::Add, sum, v);
                });
                kb.for_range(0, idx(out.c), 1, "c", |kb, k| {
                    exp(kb, &k);
                    kb.binary(v, BinOp::Div, v, sum);
                    kb.store(Buf::Arena, at(&k), v);
                });
            }
        });
        self.kernels.push(kb.finish());
    }

    /// `[softmax]`: Darknet's softmax over each of `groups` contiguous slices of the
    /// flattened input, `exp(x/t − max/t)` normalised.
    pub(super) fn softmax(&mut self, i: usize, s: &Softmax, x: Map, out: Map) {
        let per = x.numel() / s.groups;
        let temp = s.temperature;
        let mut kb = KernelBuilder::new(format!("softmax {i}"), Some(i));
        let (v, m, sum) = (kb.local(Ty::F32), kb.local(Ty::F32), kb.local(Ty::F32));
        kb.for_range(0, idx(s.groups), 1, "group", |kb, g| {
            let base = g.scaled(idx(per));
            kb.assign(m, Expr::Copy(Operand::F32(f32::MIN)));
            kb.for_range(0, idx(per), 1, "j", |kb, j| {
                kb.load(v, x.buf, base.plus(&j).add(x.off));
                // f32::max: a NaN is skipped
                kb.assign(
                    m,
                    Expr::Select {
                        cmp: Cmp::Gt,
                        lhs: v.into(),
                        rhs: m.into(),
                        then: v.into(),
                        otherwise: m.into(),
                    },
                );
            });
            if temp != 1.0 {
                kb.binary(m, BinOp::Div, m, temp);
            }
            kb.assign(sum, Expr::Copy(Operand::F32(0.0)));
            kb.for_range(0, idx(per), 1, "j", |kb, j| {
                kb.load(v, x.buf, base.plus(&j).add(x.off));
                if temp != 1.0 {
                    kb.binary(v, BinOp::Div, v, temp);
                }
                kb.binary(v, BinOp::Sub, v, m);
                kb.assign(v, Expr::Call { f: MathFn::Exp, arg: v.into() });
                kb.binary(sum, BinOp::Add, sum, v);
                kb.store(Buf::Arena, base.plus(&j).add(out.off), v);
            });
            kb.for_range(0, idx(per), 1, "j", |kb, j| {
                kb.load(v, Buf::Arena, base.plus(&j).add(out.off));
                kb.binary(v, BinOp::Div, v, sum);
                kb.store(Buf::Arena, base.plus(&j).add(out.off), v);
            });
        });
        self.kernels.push(kb.finish());
    }

    /// `[scale_channels]`: `act(prev[c] · from[c, y, x])` (`prev[y, x]` with
    /// `scale_wh`), then any channel-wise activation.
    pub(super) fn scale_channels(&mut self, i: usize, sc: &ScaleChannels, ins: &[Map], out: Map) {
        let (prev, from) = (ins[0], ins[1]);
        let plane = idx(out.plane());
        let mut kb = KernelBuilder::new(format!("scale_channels {i}"), Some(i));
        let (v, s, t) = (kb.local(Ty::F32), kb.local(Ty::F32), kb.local(Ty::F32));
        kb.for_range(0, idx(out.c), 1, "c", |kb, c| {
            if !sc.scale_wh {
                kb.load(s, prev.buf, c.add(prev.off));
            }
            kb.for_range(0, plane, 1, "p", |kb, p| {
                if sc.scale_wh {
                    kb.load(s, prev.buf, p.add(prev.off));
                }
                let j = c.scaled(plane).plus(&p);
                kb.load(v, from.buf, j.add(from.off));
                kb.binary(v, BinOp::Mul, s, v);
                emit_activation(kb, v, t, sc.activation);
                kb.store(Buf::Arena, j.add(out.off), v);
            });
        });
        self.kernels.push(kb.finish());
        self.channel_activation(i, sc.activation, out);
    }

    /// `[sam]`: `act(prev ⊙ from)`, then any channel-wise activation.
    pub(super) fn sam(&mut self, i: usize, sm: &Sam, ins: &[Map], out: Map) {
        let (prev, from) = (ins[0], ins[1]);
        let mut kb = KernelBuilder::new(format!("sam {i}"), Some(i));
        let (v, a, t) = (kb.local(Ty::F32), kb.local(Ty::F32), kb.local(Ty::F32));
        kb.for_range(0, idx(out.numel()), 1, "j", |kb, j| {
            kb.load(v, prev.buf, j.add(prev.off));
            kb.load(a, from.buf, j.add(from.off));
            kb.binary(v, BinOp::Mul, v, a);
            emit_activation(kb, v, t, sm.activation);
            kb.store(Buf::Arena, j.add(out.off), v);
        });
        self.kernels.push(kb.finish());
        self.channel_activation(i, sm.activation, out);
    }

    /// `[connected]`: `act(s_o·Σ_k W[o,k]·x[k] + b_o)` over the flattened input (batchnorm
    /// folded by [`prepare`], or as `s`, `b`). Float layers: a dot product per output,
    /// four lanes at a time. Ternary layers (`ternary=1` or ternarized): per output,
    /// adds of the inputs under `+1` codes and subtracts under `−1` codes, their
    /// indices in a table (as the table form of ternary convolution), one multiply.
    pub(super) fn connected(
        &mut self,
        i: usize,
        c: &Connected,
        x: Map,
        out: Map,
    ) -> Result<(), CodegenError> {
        let g = self.g;
        let kind = g.layer(i).op.type_name();
        let p: &LayerParams = g
            .params
            .layer(i)
            .filter(|p| weight_count(p) > 0)
            .ok_or(CodegenError::MissingParams { layer: i, kind, what: "weights" })?;
        let (rows, n) = (c.output, x.numel());
        if weight_count(p) != rows * n || p.biases.len() != rows {
            return Err(CodegenError::MissingParams { layer: i, kind, what: "weights of the right size" });
        }
        let (Epilogue { mut scale, bias, .. }, codes) = epilogue_and_codes(p, rows, c.ternary, c.activation);
        // W2A8: sum the int8 input in i32, the step joins the scale
        let x = match self.act_step(i).filter(|_| codes.is_some()) {
            Some(step) => {
                scale.iter_mut().for_each(|s| *s *= step);
                self.quantize(i, x, [0; 4], step, false)
            }
            None => x,
        };
        if codes.as_ref().is_some_and(|t| t.len() != rows * n) {
            return Err(CodegenError::MissingParams {
                layer: i,
                kind,
                what: "ternary codes of the right size",
            });
        }
        let scale_t = (!scale.iter().all(|&s| s == 1.0))
            .then(|| self.table(format!("connected{i}.scale"), ConstData::F32(scale)));
        let bias_t = self.table(format!("connected{i}.bias"), ConstData::F32(bias));
        let name = match (&codes, x.buf) {
            (Some(_), Buf::Q8) => "ternary int8",
            (Some(_), _) => "ternary",
            (None, _) => "float",
        };
        let mut kb = KernelBuilder::new(format!("connected {i} {name}"), Some(i));
        let (acc, v, t) = (kb.local(Ty::F32), kb.local(Ty::F32), kb.local(Ty::F32));
        match codes {
            None => {
                let wt = self.table(format!("connected{i}.weights"), ConstData::F32(p.weights.clone()));
                let nv = n / 4 * 4;
                let (va, vw, vx) = (kb.local(Ty::F32x4), kb.local(Ty::F32x4), kb.local(Ty::F32x4));
                kb.for_range(0, idx(rows), 1, "o", |kb, o| {
                    let row = o.scaled(idx(n));
                    kb.assign(acc, Expr::Copy(Operand::F32(0.0)));
                    if nv > 0 {
                        kb.assign(va, Expr::Splat(Operand::F32(0.0)));
                        kb.for_range(0, idx(nv), 4, "k", |kb, k| {
                            kb.assign(vw, Expr::LoadVec { buf: wt, index: row.plus(&k) });
                            kb.assign(vx, Expr::LoadVec { buf: x.buf, index: k.add(x.off) });
                            kb.binary(vw, BinOp::Mul, vw, vx);
                            kb.binary(va, BinOp::Add, va, vw);
                        });
                        for lane in 0..4 {
                            kb.assign(v, Expr::Extract { v: va.into(), lane });
                            kb.binary(acc, BinOp::Add, acc, v);
                        }
                    }
                    kb.for_range(idx(nv), idx(n), 1, "k", |kb, k| {
                        kb.load(v, wt, row.plus(&k));
                        kb.load(t, x.buf, k.add(x.off));
                        kb.binary(v, BinOp::Mul, v, t);
                        kb.binary(acc, BinOp::Add, acc, v);
                    });
                    connected_epilogue(kb, acc, v, t, &o, scale_t, bias_t, c.activation, out);
                });
            }
            Some(codes) => {
                // per row: indices of the +1 codes, then of the −1 codes
                let (mut taps, mut bounds) = (Vec::new(), Vec::with_capacity(3 * rows));
                for row in codes.chunks(n) {
                    bounds.push(taps.len() as i32);
                    taps.extend((0..n).filter(|&k| row[k] > 0).map(|k| k as i32));
                    bounds.push(taps.len() as i32);
                    taps.extend((0..n).filter(|&k| row[k] < 0).map(|k| k as i32));
                    bounds.push(taps.len() as i32);
                }
                if taps.is_empty() {
                    taps.push(0); // never read: every row's loops are empty
                }
                let tt = self.table(format!("connected{i}.taps"), ConstData::I32(taps));
                let bt = self.table(format!("connected{i}.bounds"), ConstData::I32(bounds));
                let (b0, b1, b2, d) =
                    (kb.local(Ty::I32), kb.local(Ty::I32), kb.local(Ty::I32), kb.local(Ty::I32));
                let int8 = x.buf == Buf::Q8;
                let (iacc, q) = (kb.local(Ty::I32), kb.local(Ty::I32));
                kb.for_range(0, idx(rows), 1, "o", |kb, o| {
                    let at = o.scaled(3);
                    kb.load(b0, bt, at.clone());
                    kb.load(b1, bt, at.add(1));
                    kb.load(b2, bt, at.add(2));
                    let (sum, x_, zero) = match int8 {
                        true => (iacc, q, Operand::I32(0)),
                        false => (acc, v, Operand::F32(0.0)),
                    };
                    kb.assign(sum, Expr::Copy(zero));
                    for (lo, hi, op) in [(b0, b1, BinOp::Add), (b1, b2, BinOp::Sub)] {
                        kb.for_table(lo, hi, "tap", |kb, j| {
                            kb.load(d, tt, Index::var(j));
                            kb.load(x_, x.buf, Index::at(x.off).dynamic(d));
                            kb.binary(sum, op, sum, x_);
                        });
                    }
                    if int8 {
                        kb.assign(acc, Expr::Convert(iacc.into()));
                    }
                    connected_epilogue(kb, acc, v, t, &o, scale_t, bias_t, c.activation, out);
                });
            }
        }
        self.kernels.push(kb.finish());
        self.channel_activation(i, c.activation, out);
        Ok(())
    }

    /// `[avgpool]`: each channel's plane summed in order, then divided by its size.
    pub(super) fn avgpool(&mut self, i: usize, x: Map, out: Map) {
        let mut kb = KernelBuilder::new(format!("avgpool {i}"), Some(i));
        let (acc, v) = (kb.local(Ty::F32), kb.local(Ty::F32));
        let plane = x.plane();
        kb.for_range(0, idx(x.c), 1, "c", |kb, c| {
            kb.assign(acc, Expr::Copy(Operand::F32(0.0)));
            kb.for_range(0, idx(plane), 1, "p", |kb, p| {
                kb.load(v, x.buf, Index::at(x.off).plus(&c.scaled(idx(plane))).plus(&p));
                kb.binary(acc, BinOp::Add, acc, v);
            });
            kb.binary(acc, BinOp::Div, acc, plane as f32);
            kb.store(Buf::Arena, Index::at(out.off).plus(&c), acc);
        });
        self.kernels.push(kb.finish());
    }

    /// `forward_yolo_layer` at inference, written to the head's own buffer.
    pub(super) fn yolo(&mut self, i: usize, y: &Yolo, x: Map, out: Map) {
        let plane = x.plane();
        let entries = y.classes + 5;
        let (alpha, beta) = (y.scale_x_y, -0.5 * (y.scale_x_y - 1.0));
        let mut kb = KernelBuilder::new(format!("yolo {i}"), Some(i));
        let (v, t) = (kb.local(Ty::F32), kb.local(Ty::F32));
        let logistic = !y.new_coords;
        for n in 0..y.n() {
            let base = n * entries * plane;
            // x, y: logistic (unless new_coords), then scale_x_y
            elementwise(
                &mut kb,
                x,
                out,
                base,
                2 * plane,
                |kb| {
                    if logistic {
                        emit_logistic(kb, v, t);
                    }
                    if alpha != 1.0 || beta != 0.0 {
                        kb.binary(v, BinOp::Mul, v, alpha);
                        kb.binary(v, BinOp::Add, v, beta);
                    }
                },
                v,
            );
            elementwise(&mut kb, x, out, base + 2 * plane, 2 * plane, |_| {}, v);
            elementwise(
                &mut kb,
                x,
                out,
                base + 4 * plane,
                (entries - 4) * plane,
                |kb| {
                    if logistic {
                        emit_logistic(kb, v, t);
                    }
                },
                v,
            );
        }
        self.kernels.push(kb.finish());
    }

    /// YOLOv2's region layer: logistic on x, y and objectness, softmax over classes.
    pub(super) fn region(&mut self, i: usize, r: &Region, x: Map, out: Map) {
        let plane = x.plane();
        let entries = r.classes + r.coords + 1;
        let mut kb = KernelBuilder::new(format!("region {i}"), Some(i));
        let (v, t, m, sum) = (kb.local(Ty::F32), kb.local(Ty::F32), kb.local(Ty::F32), kb.local(Ty::F32));
        for n in 0..r.num {
            let base = n * entries * plane;
            let logistic = |kb: &mut KernelBuilder| emit_logistic(kb, v, t);
            elementwise(&mut kb, x, out, base, 2 * plane, logistic, v);
            if r.coords > 2 {
                elementwise(&mut kb, x, out, base + 2 * plane, (r.coords - 2) * plane, |_| {}, v);
            }
            let obj = base + r.coords * plane;
            elementwise(&mut kb, x, out, obj, plane, logistic, v);
            let cls = obj + plane;
            if !r.softmax {
                elementwise(&mut kb, x, out, cls, r.classes * plane, |_| {}, v);
                continue;
            }
            // Darknet's softmax per cell over the classes, `plane` apart
            kb.for_range(0, idx(plane), 1, "cell", |kb, p| {
                let at =
                    |map: &Map, k: &Index| Index::at(map.off + idx(cls)).plus(&p).plus(&k.scaled(idx(plane)));
                kb.assign(m, Expr::Copy(Operand::F32(f32::MIN)));
                kb.for_range(0, idx(r.classes), 1, "class", |kb, k| {
                    kb.load(v, x.buf, at(&x, &k));
                    kb.binary(m, BinOp::Max, m, v);
                });
                kb.assign(sum, Expr::Copy(Operand::F32(0.0)));
                kb.for_range(0, idx(r.classes), 1, "class", |kb, k| {
                    kb.load(v, x.buf, at(&x, &k));
                    kb.binary(v, BinOp::Sub, v, m);
                    kb.assign(v, Expr::Call { f: MathFn::Exp, arg: v.into() });
                    kb.binary(sum, BinOp::Add, sum, v);
                    kb.store(Buf::Arena, at(&out, &k), v);
                });
                kb.for_range(0, idx(r.classes), 1, "class", |kb, k| {
                    kb.load(v, Buf::Arena, at(&out, &k));
                    kb.binary(v, BinOp::Div, v, sum);
                    kb.store(Buf::Arena, at(&out, &k), v);
                });
            });
        }
        self.kernels.push(kb.finish());
    }
}

/// `out[o] = act(s[o]·acc + b[o])` (`acc + b[o]` without a scale table).
#[allow(clippy::too_many_arguments)]
fn connected_epilogue(
    kb: &mut KernelBuilder,
    acc: Local,
    v: Local,
    t: Local,
    o: &Index,
    scale: Option<Buf>,
    bias: Buf,
    act: Activation,
    out: Map,
) {
    kb.load(t, bias, o.clone());
    match scale {
        Some(st) => {
            kb.load(v, st, o.clone());
            kb.binary(v, BinOp::Mul, v, acc);
            kb.binary(v, BinOp::Add, v, t);
        }
        None => kb.binary(v, BinOp::Add, acc, t),
    }
    emit_activation(kb, v, t, act);
    kb.store(Buf::Arena, o.add(out.off), v);
}

/// `v = v > 0 ? then : otherwise`.
fn select_gt(kb: &mut KernelBuilder, dst: Local, v: Local, then: Operand, otherwise: Operand) {
    kb.assign(dst, Expr::Select { cmp: Cmp::Gt, lhs: v.into(), rhs: 0.0f32.into(), then, otherwise });
}

/// The reference's `normalize_shortcut` (`shortcut_multilayer_cpu`'s normalisation of
/// the weights across the `inputs` inputs), computed the same way.
fn normalize_shortcut(w: &[f32], inputs: usize, per: usize, norm: &str) -> Vec<f32> {
    let mut out = w.to_vec();
    if norm == "none" {
        return out;
    }
    for j in 0..per {
        let col: Vec<f32> = (0..inputs).map(|k| w[k * per + j]).collect();
        let max = col.iter().copied().fold(f32::MIN, f32::max);
        let f = |v: f32| {
            if norm == "softmax" {
                (v - max).exp()
            } else {
                v.max(0.0)
            }
        };
        let sum = 0.0001 + col.iter().map(|&v| f(v)).sum::<f32>();
        for k in 0..inputs {
            out[k * per + j] = f(col[k]) / sum;
        }
    }
    out
}
