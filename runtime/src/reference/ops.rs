//! The non-convolution layers, one image at a time, each as Darknet's CPU forward.

use rayon::prelude::*;
use ternc_ir::{shortcut_ratio, MaxPool, Region, Reorg, ReorgKind, Shape, Yolo};

fn logistic(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// `forward_maxpool_layer`: windows start at `−padding/2`; taps outside are skipped.
pub fn maxpool(x: &[f32], input: Shape, p: &MaxPool, out: Shape, y: &mut [f32]) {
    let off = (p.padding / 2) as isize;
    let (ih, iw, size) = (input.h as isize, input.w as isize, p.size as isize);
    // Output columns whose window lies wholly inside a row: no bounds checks there.
    let first = |o: usize, s: usize| (o * s) as isize - off;
    let inside = |o: &usize| first(*o, p.stride_x) >= 0 && first(*o, p.stride_x) + size <= iw;
    let (lo, hi) = match (0..out.w).position(|o| inside(&o)) {
        Some(lo) => (lo, lo + (lo..out.w).take_while(inside).count()),
        None => (0, 0),
    };
    y.par_chunks_mut(out.plane()).enumerate().for_each(|(k, dst)| {
        let plane = &x[k * input.plane()..(k + 1) * input.plane()];
        for oy in 0..out.h {
            let y0 = first(oy, p.stride_y);
            let (dy0, dy1) = ((-y0).max(0) as usize, (ih - y0).min(size).max(0) as usize);
            let rows: Vec<&[f32]> =
                (dy0..dy1).map(|dy| &plane[(y0 + dy as isize) as usize * input.w..][..input.w]).collect();
            let line = &mut dst[oy * out.w..(oy + 1) * out.w];
            for (ox, v) in line.iter_mut().enumerate() {
                let x0 = first(ox, p.stride_x);
                *v = if (lo..hi).contains(&ox) {
                    let x0 = x0 as usize;
                    if p.size == 2 {
                        rows.iter().fold(f32::MIN, |m, r| m.max(r[x0].max(r[x0 + 1])))
                    } else {
                        rows.iter().fold(f32::MIN, |m, r| r[x0..x0 + p.size].iter().fold(m, |m, &t| m.max(t)))
                    }
                } else {
                    let (dx0, dx1) = ((-x0).max(0) as usize, (iw - x0).min(size).max(0) as usize);
                    rows.iter().fold(f32::MIN, |m, r| {
                        (dx0..dx1).fold(m, |m, dx| m.max(r[(x0 + dx as isize) as usize]))
                    })
                };
            }
        }
    });
}

/// Global average per channel.
pub fn avgpool(x: &[f32], input: Shape, y: &mut [f32]) {
    for (k, v) in y.iter_mut().enumerate().take(input.c) {
        let plane = &x[k * input.plane()..(k + 1) * input.plane()];
        *v = plane.iter().sum::<f32>() / input.plane() as f32;
    }
}

/// Channel concat of slice `group_id` of each input.
pub fn route(inputs: &[(&[f32], Shape)], groups: usize, group_id: usize, y: &mut [f32]) {
    let mut at = 0;
    for (x, s) in inputs {
        let part = s.numel() / groups;
        y[at..at + part].copy_from_slice(&x[group_id * part..(group_id + 1) * part]);
        at += part;
    }
}

/// `shortcut_multilayer_cpu` without weights: `prev + Σ from` over the overlapping
/// prefix of each from-layer (equal sizes), or original Darknet's strided add
/// (`shortcut_cpu`) when the sizes differ by an integer factor.
pub fn shortcut_add(y: &mut [f32], out: Shape, from: &[f32], fs: Shape, weight: f32) {
    if fs.h == out.h && fs.w == out.w {
        let n = y.len().min(from.len());
        for (o, a) in y[..n].iter_mut().zip(&from[..n]) {
            *o += a * weight;
        }
        return;
    }
    let (stride, sample) = shortcut_ratio(&fs, &out).expect("validated while lowering");
    let (mw, mh, mc) = (out.w.min(fs.w), out.h.min(fs.h), out.c.min(fs.c));
    for k in 0..mc {
        for j in 0..mh {
            for i in 0..mw {
                let o = i * sample + out.w * (j * sample + out.h * k);
                let a = i * stride + fs.w * (j * stride + fs.h * k);
                y[o] += from[a] * weight;
            }
        }
    }
}

/// `upsample_cpu`: nearest neighbour times `scale`; a negative stride sums `s×s`
/// blocks (Darknet's reverse upsample), also times `scale`.
pub fn upsample(x: &[f32], input: Shape, stride: i64, scale: f32, out: Shape, y: &mut [f32]) {
    let s = stride.unsigned_abs() as usize;
    if stride > 0 {
        for k in 0..out.c {
            for j in 0..out.h {
                for i in 0..out.w {
                    y[k * out.plane() + j * out.w + i] =
                        scale * x[k * input.plane() + (j / s) * input.w + i / s];
                }
            }
        }
    } else {
        y.fill(0.0);
        for k in 0..input.c {
            for j in 0..input.h {
                for i in 0..input.w {
                    y[k * out.plane() + (j / s) * out.w + i / s] +=
                        scale * x[k * input.plane() + j * input.w + i];
                }
            }
        }
    }
}

/// Darknet's `reorg_cpu(x, w, h, c, stride, forward)`, flat-index for flat-index.
fn reorg_cpu(x: &[f32], w: usize, h: usize, c: usize, s: usize, forward: bool, y: &mut [f32]) {
    let in_c = c / (s * s);
    for k in 0..c {
        for j in 0..h {
            for i in 0..w {
                let in_index = i + w * (j + h * k);
                let (c2, offset) = (k % in_c, k / in_c);
                let (w2, h2) = (i * s + offset % s, j * s + offset / s);
                let out_index = w2 + w * s * (h2 + h * s * c2);
                if forward {
                    y[out_index] = x[in_index];
                } else {
                    y[in_index] = x[out_index];
                }
            }
        }
    }
}

/// `[reorg]` (AlexeyAB's reorg_old) and `[reorg3d]`, with Darknet's element order:
/// reorg_old calls reorg_cpu with the input's dimensions, reorg3d with the output's.
pub fn reorg(x: &[f32], input: Shape, r: &Reorg, out: Shape, y: &mut [f32]) {
    let d = match r.kind {
        ReorgKind::Old => input,
        ReorgKind::ThreeD => out,
    };
    reorg_cpu(x, d.w, d.h, d.c, r.stride, r.reverse, y);
}

/// `forward_yolo_layer` at inference: logistic on x, y, objectness and classes
/// (none with `new_coords`), then x, y scaled by `scale_x_y`.
pub fn yolo(y: &mut [f32], s: Shape, a: &Yolo) {
    let plane = s.plane();
    let entries = a.classes + 5;
    for n in 0..a.n() {
        let base = n * entries * plane;
        if !a.new_coords {
            y[base..base + 2 * plane].iter_mut().for_each(|v| *v = logistic(*v));
            y[base + 4 * plane..base + entries * plane].iter_mut().for_each(|v| *v = logistic(*v));
        }
        let (alpha, beta) = (a.scale_x_y, -0.5 * (a.scale_x_y - 1.0));
        y[base..base + 2 * plane].iter_mut().for_each(|v| *v = *v * alpha + beta);
    }
}

/// Darknet's `softmax`: `exp(x/t − max/t)` normalised, over `n` values `stride` apart.
pub fn softmax(x: &mut [f32], n: usize, stride: usize, temperature: f32) {
    let largest = (0..n).map(|i| x[i * stride]).fold(f32::MIN, f32::max);
    let mut sum = 0.0f32;
    for i in 0..n {
        let e = (x[i * stride] / temperature - largest / temperature).exp();
        sum += e;
        x[i * stride] = e;
    }
    for i in 0..n {
        x[i * stride] /= sum;
    }
}

/// YOLOv2's region layer in the channel-major layout: logistic on x, y and
/// objectness, softmax over the classes of each cell (when `softmax=1`).
pub fn region(y: &mut [f32], s: Shape, r: &Region) {
    let plane = s.plane();
    let entries = r.classes + r.coords + 1;
    for n in 0..r.num {
        let base = n * entries * plane;
        y[base..base + 2 * plane].iter_mut().for_each(|v| *v = logistic(*v));
        let obj = base + r.coords * plane;
        y[obj..obj + plane].iter_mut().for_each(|v| *v = logistic(*v));
        if r.softmax {
            for p in 0..plane {
                softmax(&mut y[obj + plane + p..], r.classes, plane, 1.0);
            }
        }
    }
}
