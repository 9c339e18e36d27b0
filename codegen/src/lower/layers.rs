//! Kernels of the layers other than convolution.

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
        kb.for_range(0, idx(out.c), 1, "c", |kb, c| {
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
        if u.stride <= 0 {
            return Err(self.unsupported(i, format!("stride={} (downsampling)", u.stride)));
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

    /// `[shortcut]` without weights: `act(prev + from₁ + from₂ + …)`, each from-layer
    /// (same spatial size) added over its overlap with the output, the first
    /// `min(c_out, c_from)` channels, which is the flat prefix of that many planes.
    /// The output is split at each from-layer's end, so every segment adds a fixed
    /// list of inputs, in the reference's order.
    pub(super) fn shortcut(
        &mut self,
        i: usize,
        s: &Shortcut,
        ins: &[Map],
        out: Map,
    ) -> Result<(), CodegenError> {
        if s.weights != ShortcutWeights::None {
            return Err(self.unsupported(i, "weighted shortcut (weights_type other than none)"));
        }
        check_activation(s.activation).map_err(|w| self.unsupported(i, w))?;
        let (prev, froms) = (ins[0], &ins[1..]);
        if prev.numel() != out.numel() {
            return Err(self.unsupported(i, "an input whose size differs from the output's"));
        }
        if let Some(f) = froms.iter().find(|f| f.h != out.h || f.w != out.w) {
            return Err(self.unsupported(
                i,
                format!(
                    "a from-layer of spatial size {}x{} into {}x{} (strided shortcut)",
                    f.w, f.h, out.w, out.h
                ),
            ));
        }
        let ends: Vec<usize> = froms.iter().map(|f| f.numel().min(out.numel())).collect();
        let mut cuts: Vec<usize> = ends.iter().copied().chain([0, out.numel()]).collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut kb = KernelBuilder::new(format!("shortcut {i}"), Some(i));
        let (v, a, t) = (kb.local(Ty::F32), kb.local(Ty::F32), kb.local(Ty::F32));
        for seg in cuts.windows(2) {
            let (start, end) = (seg[0], seg[1]);
            kb.for_range(idx(start), idx(end), 1, "j", |kb, j| {
                kb.load(v, prev.buf, j.add(prev.off));
                for (f, &e) in froms.iter().zip(&ends) {
                    if e >= end {
                        kb.load(a, f.buf, j.add(f.off));
                        kb.binary(v, BinOp::Add, v, a);
                    }
                }
                emit_activation(kb, v, t, s.activation);
                kb.store(Buf::Arena, j.add(out.off), v);
            });
        }
        self.kernels.push(kb.finish());
        Ok(())
    }

    /// `[reorg]` (reorg_old, forward): Darknet's `reorg_cpu` on the input's dimensions
    /// `[c, h, w]` with `forward = 0`, i.e. for `k < c, j < h, i < w`:
    /// `out[i + w·(j + h·k)] = x[(i·s + off%s) + w·s·((j·s + off/s) + h·s·c2)]`, with
    /// `c2 = k % (c/s²)`, `off = k / (c/s²)`. As loops over `off = (oy, ox)`, `c2`,
    /// `j`, `i` both sides are affine.
    pub(super) fn reorg(&mut self, i: usize, r: &Reorg, x: Map, out: Map) -> Result<(), CodegenError> {
        if r.kind != ReorgKind::Old || r.reverse {
            return Err(self.unsupported(i, "reorg3d and reverse reorg"));
        }
        let s = r.stride;
        if s == 0 || !x.c.is_multiple_of(s * s) || out.numel() != x.numel() {
            return Err(self.unsupported(i, format!("stride={s} with {} input channels", x.c)));
        }
        let (w, h, in_c) = (idx(x.w), idx(x.h), idx(x.c / (s * s)));
        let si = idx(s);
        let mut kb = KernelBuilder::new(format!("reorg {i}"), Some(i));
        let v = kb.local(Ty::F32);
        kb.for_range(0, si, 1, "oy", |kb, oy| {
            kb.for_range(0, si, 1, "ox", |kb, ox| {
                kb.for_range(0, in_c, 1, "c2", |kb, c2| {
                    kb.for_range(0, h, 1, "j", |kb, j| {
                        kb.for_range(0, w, 1, "i", |kb, ii| {
                            let src = Index::at(x.off)
                                .plus(&ii.scaled(si))
                                .plus(&ox)
                                .plus(&j.scaled(w * si * si))
                                .plus(&oy.scaled(w * si))
                                .plus(&c2.scaled(w * si * h * si));
                            let k = oy.scaled(si).plus(&ox).scaled(in_c).plus(&c2);
                            let dst = Index::at(out.off).plus(&ii).plus(&j.scaled(w)).plus(&k.scaled(w * h));
                            kb.load(v, x.buf, src);
                            kb.store(Buf::Arena, dst, v);
                        })
                    })
                })
            })
        });
        self.kernels.push(kb.finish());
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
