//! The layers without weights, one image at a time: forward as the reference
//! interpreter (Darknet's CPU forward), backward as Darknet's `backward_*_layer`.
//! Backward functions add into the input delta, since a tensor may feed several layers.

use ternc_ir::{MaxPool, Region, Reorg, ReorgKind, Shape, Yolo};

pub fn logistic(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// `forward_maxpool_layer`: windows start at `−padding/2`, taps outside are skipped,
/// the first maximum wins; `index` records the input offset of each output (or
/// `u32::MAX` when the window holds no tap).
pub fn maxpool_forward(x: &[f32], input: Shape, p: &MaxPool, out: Shape, y: &mut [f32], index: &mut [u32]) {
    let off = (p.padding / 2) as isize;
    let (ih, iw) = (input.h as isize, input.w as isize);
    for k in 0..out.c {
        for oy in 0..out.h {
            for ox in 0..out.w {
                let o = (k * out.h + oy) * out.w + ox;
                let (mut best, mut at) = (f32::MIN, u32::MAX);
                for n in 0..p.size as isize {
                    let cy = oy as isize * p.stride_y as isize - off + n;
                    if cy < 0 || cy >= ih {
                        continue;
                    }
                    for m in 0..p.size as isize {
                        let cx = ox as isize * p.stride_x as isize - off + m;
                        if cx < 0 || cx >= iw {
                            continue;
                        }
                        let i = (k * input.h + cy as usize) * input.w + cx as usize;
                        if x[i] > best {
                            best = x[i];
                            at = i as u32;
                        }
                    }
                }
                y[o] = best;
                index[o] = at;
            }
        }
    }
}

/// `backward_maxpool_layer`: each output delta goes to its arg-max.
pub fn maxpool_backward(delta: &[f32], index: &[u32], dx: &mut [f32]) {
    for (d, &i) in delta.iter().zip(index) {
        if i != u32::MAX {
            dx[i as usize] += d;
        }
    }
}

/// The slice of one input a route takes: `group_id` of `groups` equal parts.
pub fn route_part(s: Shape, groups: usize, group_id: usize) -> std::ops::Range<usize> {
    let part = s.numel() / groups;
    group_id * part..(group_id + 1) * part
}

/// Nearest-neighbour upsample (`stride > 0`) or block sum (`stride < 0`), times `scale`.
pub fn upsample_forward(x: &[f32], input: Shape, stride: i64, scale: f32, out: Shape, y: &mut [f32]) {
    let s = stride.unsigned_abs() as usize;
    if stride > 0 {
        for k in 0..out.c {
            for j in 0..out.h {
                for i in 0..out.w {
                    y[(k * out.h + j) * out.w + i] = scale * x[(k * input.h + j / s) * input.w + i / s];
                }
            }
        }
    } else {
        y.fill(0.0);
        for k in 0..input.c {
            for j in 0..input.h {
                for i in 0..input.w {
                    y[(k * out.h + j / s) * out.w + i / s] += scale * x[(k * input.h + j) * input.w + i];
                }
            }
        }
    }
}

/// `backward_upsample_layer`: the transpose of the forward map.
pub fn upsample_backward(delta: &[f32], input: Shape, stride: i64, scale: f32, out: Shape, dx: &mut [f32]) {
    let s = stride.unsigned_abs() as usize;
    if stride > 0 {
        for k in 0..out.c {
            for j in 0..out.h {
                for i in 0..out.w {
                    dx[(k * input.h + j / s) * input.w + i / s] += scale * delta[(k * out.h + j) * out.w + i];
                }
            }
        }
    } else {
        for k in 0..input.c {
            for j in 0..input.h {
                for i in 0..input.w {
                    dx[(k * input.h + j) * input.w + i] += scale * delta[(k * out.h + j / s) * out.w + i / s];
                }
            }
        }
    }
}

/// The permutation Darknet's `reorg_cpu` applies, as `y[t] = x[map[t]]`: reorg_old
/// calls it with the input's dimensions, reorg3d with the output's.
pub fn reorg_map(input: Shape, r: &Reorg, out: Shape) -> Vec<u32> {
    let d = match r.kind {
        ReorgKind::Old => input,
        ReorgKind::ThreeD => out,
    };
    let (w, h, c, s) = (d.w, d.h, d.c, r.stride);
    let forward = r.reverse;
    let in_c = c / (s * s);
    let mut map = vec![0u32; out.numel()];
    for k in 0..c {
        for j in 0..h {
            for i in 0..w {
                let in_index = i + w * (j + h * k);
                let (c2, offset) = (k % in_c, k / in_c);
                let (w2, h2) = (i * s + offset % s, j * s + offset / s);
                let out_index = w2 + w * s * (h2 + h * s * c2);
                if forward {
                    map[out_index] = in_index as u32;
                } else {
                    map[in_index] = out_index as u32;
                }
            }
        }
    }
    map
}

/// `forward_yolo_layer` outside training: logistic on x, y, objectness and classes
/// (not with `new_coords`), then x, y scaled by `scale_x_y`.
pub fn yolo_forward(y: &mut [f32], s: Shape, a: &Yolo) {
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

/// Darknet's `softmax` over `n` values `stride` apart.
pub fn softmax(x: &mut [f32], n: usize, stride: usize) {
    let largest = (0..n).map(|i| x[i * stride]).fold(f32::MIN, f32::max);
    let mut sum = 0.0f32;
    for i in 0..n {
        let e = (x[i * stride] - largest).exp();
        sum += e;
        x[i * stride] = e;
    }
    for i in 0..n {
        x[i * stride] /= sum;
    }
}

/// The region head: logistic on x, y and objectness, softmax over the classes.
pub fn region_forward(y: &mut [f32], s: Shape, r: &Region) {
    let plane = s.plane();
    let entries = r.classes + r.coords + 1;
    for n in 0..r.num {
        let base = n * entries * plane;
        y[base..base + 2 * plane].iter_mut().for_each(|v| *v = logistic(*v));
        let obj = base + r.coords * plane;
        y[obj..obj + plane].iter_mut().for_each(|v| *v = logistic(*v));
        if r.softmax {
            for p in 0..plane {
                softmax(&mut y[obj + plane + p..], r.classes, plane);
            }
        }
    }
}
