//! `[region]` (YOLOv2)'s training deltas, a port of `forward_region_layer` for one
//! image (no `softmax_tree`, `classfix`, `map`). Darknet's `DOABS` is on: anchors are in
//! grid cells. The x, y and objectness deltas include the logistic's derivative (MSE
//! on the probability); the class deltas `t − softmax` are cross-entropy's gradient.

use ternc_ir::{Region, Shape};

use super::boxes::{self, BoxF};
use super::{ImageStats, Truth};

/// Images seen before which every anchor is also pulled towards its prior (the cell
/// centre and the anchor's size) with scale 0.01.
pub const PRIOR_WARMUP_IMAGES: u64 = 12800;

struct Ctx<'a> {
    l: &'a Region,
    out: &'a [f32],
    lw: usize,
    lh: usize,
}

impl Ctx<'_> {
    fn plane(&self) -> usize {
        self.lw * self.lh
    }
    fn index(&self, n: usize, loc: usize, e: usize) -> usize {
        let size = self.l.coords + self.l.classes + 1;
        n * self.plane() * size + e * self.plane() + loc
    }
    /// `get_region_box`: `out` already holds σ(x), σ(y).
    fn pred_box(&self, n: usize, index: usize, i: usize, j: usize) -> BoxF {
        let (x, s, a) = (self.out, self.plane(), &self.l.anchors);
        BoxF {
            x: (i as f32 + x[index]) / self.lw as f32,
            y: (j as f32 + x[index + s]) / self.lh as f32,
            w: x[index + 2 * s].exp() * a[2 * n] / self.lw as f32,
            h: x[index + 3 * s].exp() * a[2 * n + 1] / self.lh as f32,
        }
    }
    /// `delta_region_box`: overwrites the four coordinate deltas; returns the IoU.
    #[allow(clippy::too_many_arguments)]
    fn delta_box(
        &self,
        truth: BoxF,
        n: usize,
        index: usize,
        i: usize,
        j: usize,
        delta: &mut [f32],
        scale: f32,
    ) -> f32 {
        let (x, s, a) = (self.out, self.plane(), &self.l.anchors);
        let iou = boxes::iou(self.pred_box(n, index, i, j), truth);
        let tx = truth.x * self.lw as f32 - i as f32;
        let ty = truth.y * self.lh as f32 - j as f32;
        let tw = (truth.w * self.lw as f32 / a[2 * n]).ln();
        let th = (truth.h * self.lh as f32 / a[2 * n + 1]).ln();
        let (sx, sy) = (x[index], x[index + s]);
        delta[index] = scale * (tx - sx) * (1.0 - sx) * sx;
        delta[index + s] = scale * (ty - sy) * (1.0 - sy) * sy;
        delta[index + 2 * s] = scale * (tw - x[index + 2 * s]);
        delta[index + 3 * s] = scale * (th - x[index + 3 * s]);
        iou
    }
}

/// Fills `delta` (one image, zeroed by the caller) for the region head `l`. `seen` is
/// the number of images trained on so far (Darknet's `*net.seen`).
pub fn region_image(
    l: &Region,
    out: &[f32],
    s: Shape,
    truths: &[Truth],
    seen: u64,
    delta: &mut [f32],
) -> ImageStats {
    let cx = Ctx { l, out, lw: s.w, lh: s.h };
    let plane = s.plane();
    let mut st = ImageStats::default();
    let truths: Vec<&Truth> = truths.iter().take(l.max_boxes).take_while(|t| t.x != 0.0).collect();
    for j in 0..s.h {
        for i in 0..s.w {
            let loc = j * s.w + i;
            for n in 0..l.num {
                let index = cx.index(n, loc, 0);
                let obj = cx.index(n, loc, 4);
                let pred = cx.pred_box(n, index, i, j);
                let best_iou = truths
                    .iter()
                    .filter(|t| t.class < l.classes)
                    .map(|t| boxes::iou(pred, t.as_box()))
                    .fold(0.0f32, f32::max);
                let o = out[obj];
                st.avg_anyobj += o;
                delta[obj] = l.noobject_scale * ((0.0 - o) * (1.0 - o) * o);
                if best_iou > l.thresh {
                    delta[obj] = 0.0;
                }
                if seen < PRIOR_WARMUP_IMAGES {
                    let prior = BoxF {
                        x: (i as f32 + 0.5) / s.w as f32,
                        y: (j as f32 + 0.5) / s.h as f32,
                        w: l.anchors[2 * n] / s.w as f32,
                        h: l.anchors[2 * n + 1] / s.h as f32,
                    };
                    cx.delta_box(prior, n, index, i, j, delta, 0.01);
                }
            }
        }
    }
    for t in &truths {
        if t.class >= l.classes {
            continue;
        }
        let i = ((t.x * s.w as f32) as usize).min(s.w - 1);
        let j = ((t.y * s.h as f32) as usize).min(s.h - 1);
        let loc = j * s.w + i;
        let shift = BoxF { x: 0.0, y: 0.0, w: t.w, h: t.h };
        let (mut best_iou, mut best_n) = (0.0f32, 0usize);
        for n in 0..l.num {
            let mut pred = cx.pred_box(n, cx.index(n, loc, 0), i, j);
            if l.bias_match {
                pred.w = l.anchors[2 * n] / s.w as f32;
                pred.h = l.anchors[2 * n + 1] / s.h as f32;
            }
            pred.x = 0.0;
            pred.y = 0.0;
            let iou = boxes::iou(pred, shift);
            if iou > best_iou {
                best_iou = iou;
                best_n = n;
            }
        }
        let index = cx.index(best_n, loc, 0);
        let iou = cx.delta_box(t.as_box(), best_n, index, i, j, delta, l.coord_scale);
        st.add_iou(iou, boxes::giou(cx.pred_box(best_n, index, i, j), t.as_box()));
        let obj = cx.index(best_n, loc, 4);
        let o = out[obj];
        st.avg_obj += o;
        let target = if l.rescore { iou } else { 1.0 };
        delta[obj] = l.object_scale * (target - o) * (1.0 - o) * o;
        // delta_region_class
        let cls = cx.index(best_n, loc, 5);
        let focal = l.focal_loss.then(|| {
            let pt = out[cls + plane * t.class] + 0.000000000000001;
            0.5 * -(1.0 - pt) * (2.0 * pt * pt.ln() + pt - 1.0)
        });
        for c in 0..l.classes {
            let y = if c == t.class { 1.0 } else { 0.0 };
            delta[cls + plane * c] = l.class_scale * (y - out[cls + plane * c]) * focal.unwrap_or(1.0);
        }
        st.avg_cat += out[cls + plane * t.class];
        st.class_count += 1;
    }
    st
}
