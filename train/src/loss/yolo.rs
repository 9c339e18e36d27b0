//! `[yolo]`'s training deltas, a port of AlexeyAB's `forward_yolo_layer` /
//! `process_batch` for one image (without `adversarial`, `classes_multipliers` and the
//! bad-label rejection, which no bundled cfg uses).
//!
//! The deltas are written for the head's *input* logits: the objectness and class
//! deltas `t − σ(x)` are the gradient of binary cross-entropy, and Darknet passes them
//! through the logistic unchanged; the x, y deltas `t − (s·σ(x) − (s−1)/2)` likewise.

use ternc_ir::{Shape, Yolo};

use super::boxes::{self, BoxF, IouKind};
use super::{ImageStats, Truth};

/// `entry_index` within one image: anchor `n`, cell `loc`, entry `e`.
fn entry(l: &Yolo, plane: usize, n: usize, loc: usize, e: usize) -> usize {
    n * plane * (4 + l.classes + 1) + e * plane + loc
}

struct Ctx<'a> {
    l: &'a Yolo,
    out: &'a [f32],
    lw: usize,
    lh: usize,
    net_w: f32,
    net_h: f32,
    iou_loss: IouKind,
}

impl Ctx<'_> {
    fn plane(&self) -> usize {
        self.lw * self.lh
    }

    /// `get_yolo_box` for anchor pair `a` (an index into `anchors`).
    fn pred_box(&self, a: usize, index: usize, i: usize, j: usize) -> BoxF {
        let (x, s) = (self.out, self.plane());
        let (aw, ah) = (self.l.anchors[2 * a], self.l.anchors[2 * a + 1]);
        let (tw, th) = (x[index + 2 * s], x[index + 3 * s]);
        let (w, h) = if self.l.new_coords {
            (tw * tw * 4.0 * aw / self.net_w, th * th * 4.0 * ah / self.net_h)
        } else {
            (tw.exp() * aw / self.net_w, th.exp() * ah / self.net_h)
        };
        BoxF {
            x: (i as f32 + x[index]) / self.lw as f32,
            y: (j as f32 + x[index + s]) / self.lh as f32,
            w,
            h,
        }
    }

    /// `delta_yolo_box` with `accumulate = 1`; returns `(iou, giou)`.
    #[allow(clippy::too_many_arguments)]
    fn delta_box(
        &self,
        truth: BoxF,
        a: usize,
        index: usize,
        i: usize,
        j: usize,
        delta: &mut [f32],
        scale: f32,
    ) -> (f32, f32) {
        let (x, s, l) = (self.out, self.plane(), self.l);
        let mut pred = self.pred_box(a, index, i, j);
        let iou = boxes::iou(pred, truth);
        let giou = boxes::giou(pred, truth);
        if pred.w == 0.0 {
            pred.w = 1.0;
        }
        if pred.h == 0.0 {
            pred.h = 1.0;
        }
        let (aw, ah) = (l.anchors[2 * a], l.anchors[2 * a + 1]);
        let norm = l.iou_normalizer;
        if self.iou_loss == IouKind::Mse {
            let tx = truth.x * self.lw as f32 - i as f32;
            let ty = truth.y * self.lh as f32 - j as f32;
            let (tw, th) = if l.new_coords {
                ((truth.w * self.net_w / (4.0 * aw)).sqrt(), (truth.h * self.net_h / (4.0 * ah)).sqrt())
            } else {
                ((truth.w * self.net_w / aw).ln(), (truth.h * self.net_h / ah).ln())
            };
            for (e, t) in [tx, ty, tw, th].into_iter().enumerate() {
                delta[index + e * s] += scale * (t - x[index + e * s]) * norm;
            }
        } else {
            let [mut dx, mut dy, mut dw, mut dh] = boxes::dx_box_iou(pred, truth, self.iou_loss);
            if !l.new_coords {
                // exponential w, h: Darknet applies e^t only (not the anchor factor)
                dw *= x[index + 2 * s].exp();
                dh *= x[index + 3 * s].exp();
            }
            for d in [&mut dx, &mut dy, &mut dw, &mut dh] {
                *d *= norm;
                if !d.is_finite() {
                    *d = 0.0;
                }
                if l.max_delta != f32::MAX {
                    *d = d.clamp(-l.max_delta, l.max_delta);
                }
            }
            for (e, d) in [dx, dy, dw, dh].into_iter().enumerate() {
                delta[index + e * s] += d;
            }
        }
        (iou, giou)
    }

    /// `delta_yolo_class` (no class multipliers); returns the output of the true class.
    fn delta_class(&self, delta: &mut [f32], index: usize, class_id: usize) -> f32 {
        let (out, s, l) = (self.out, self.plane(), self.l);
        let smooth = |y: f32| {
            if l.label_smooth_eps != 0.0 {
                y * (1.0 - l.label_smooth_eps) + 0.5 * l.label_smooth_eps
            } else {
                y
            }
        };
        let at = index + s * class_id;
        if delta[at] != 0.0 {
            // the cell already has this class from another truth: refresh that entry only
            let d = smooth(1.0) - out[at];
            if d.is_finite() {
                delta[at] = d;
            }
            return out[at];
        }
        if l.focal_loss {
            let alpha = 0.5;
            let pt = out[at] + 0.000000000000001;
            let grad = -(1.0 - pt) * (2.0 * pt * pt.ln() + pt - 1.0);
            for n in 0..l.classes {
                let y = if n == class_id { 1.0 } else { 0.0 };
                delta[index + s * n] = (y - out[index + s * n]) * alpha * grad;
            }
        } else {
            for n in 0..l.classes {
                let y = smooth(if n == class_id { 1.0 } else { 0.0 });
                let d = y - out[index + s * n];
                if d.is_finite() {
                    delta[index + s * n] = d;
                }
            }
        }
        out[at]
    }

    /// The delta of a truth assigned to anchor `mask_n` (pair `a`) of cell `(i, j)`:
    /// box, objectness and class. Shared by the best-anchor and `iou_thresh` paths.
    #[allow(clippy::too_many_arguments)]
    fn assign(
        &self,
        t: &Truth,
        a: usize,
        mask_n: usize,
        i: usize,
        j: usize,
        delta: &mut [f32],
        st: &mut ImageStats,
    ) {
        let (l, plane) = (self.l, self.plane());
        let loc = j * self.lw + i;
        let truth = t.as_box();
        let box_index = entry(l, plane, mask_n, loc, 0);
        let (iou, giou) = self.delta_box(truth, a, box_index, i, j, delta, 2.0 - truth.w * truth.h);
        st.add_iou(iou, giou);
        let obj = entry(l, plane, mask_n, loc, 4);
        st.avg_obj += self.out[obj];
        let d = l.obj_normalizer * (1.0 - self.out[obj]);
        if !l.objectness_smooth || delta[obj] == 0.0 {
            delta[obj] = d;
        }
        st.avg_cat += self.delta_class(delta, entry(l, plane, mask_n, loc, 5), t.class);
        st.class_count += 1;
    }
}

/// Fills `delta` (one image, zeroed by the caller) for the `[yolo]` head `l` whose
/// activated output is `out`, of shape `s`, in a network of input size `net_w × net_h`.
pub fn yolo_image(
    l: &Yolo,
    out: &[f32],
    s: Shape,
    net_w: usize,
    net_h: usize,
    truths: &[Truth],
    delta: &mut [f32],
) -> ImageStats {
    let cx = Ctx {
        l,
        out,
        lw: s.w,
        lh: s.h,
        net_w: net_w as f32,
        net_h: net_h as f32,
        iou_loss: IouKind::from_name(&l.iou_loss),
    };
    let plane = s.plane();
    let mut st = ImageStats::default();
    // Darknet reads at most `max` truths and stops at the first with x == 0
    let truths: Vec<&Truth> = truths.iter().take(l.max_boxes).take_while(|t| t.x != 0.0).collect();
    for j in 0..s.h {
        for i in 0..s.w {
            let loc = j * s.w + i;
            for n in 0..l.n() {
                let class_index = entry(l, plane, n, loc, 5);
                let obj = entry(l, plane, n, loc, 4);
                let box_index = entry(l, plane, n, loc, 0);
                let pred = cx.pred_box(l.mask[n], box_index, i, j);
                let (mut best_match_iou, mut best_iou, mut best_t) = (0.0f32, 0.0f32, 0usize);
                // compare_yolo_class: some class above 0.25
                let class_match = (0..l.classes).any(|c| out[class_index + plane * c] > 0.25);
                for (t, truth) in truths.iter().enumerate() {
                    if truth.class >= l.classes {
                        continue;
                    }
                    let iou = boxes::iou(pred, truth.as_box());
                    if iou > best_match_iou && class_match {
                        best_match_iou = iou;
                    }
                    if iou > best_iou {
                        best_iou = iou;
                        best_t = t;
                    }
                }
                st.avg_anyobj += out[obj];
                delta[obj] = l.obj_normalizer * (0.0 - out[obj]);
                if best_match_iou > l.ignore_thresh {
                    if l.objectness_smooth {
                        let d = l.obj_normalizer * (best_match_iou - out[obj]);
                        if d > delta[obj] {
                            delta[obj] = d;
                        }
                    } else {
                        delta[obj] = 0.0;
                    }
                }
                if best_iou > l.truth_thresh {
                    let mult = best_iou * best_iou;
                    delta[obj] = l.obj_normalizer * (if l.objectness_smooth { mult } else { 1.0 } - out[obj]);
                    let t = truths[best_t];
                    cx.delta_class(delta, class_index, t.class);
                    if l.objectness_smooth {
                        let at = class_index + plane * t.class;
                        delta[at] = mult - out[at];
                    }
                    let truth = t.as_box();
                    cx.delta_box(truth, l.mask[n], box_index, i, j, delta, 2.0 - truth.w * truth.h);
                }
            }
        }
    }
    for t in &truths {
        if t.class >= l.classes {
            continue;
        }
        // the cell holding the centre (clamped: Darknet would index past the row at x == 1)
        let i = ((t.x * s.w as f32) as usize).min(s.w - 1);
        let j = ((t.y * s.h as f32) as usize).min(s.h - 1);
        let shift = BoxF { x: 0.0, y: 0.0, w: t.w, h: t.h };
        let anchor = |n: usize| BoxF {
            x: 0.0,
            y: 0.0,
            w: l.anchors[2 * n] / cx.net_w,
            h: l.anchors[2 * n + 1] / cx.net_h,
        };
        let (mut best_iou, mut best_n) = (0.0f32, 0usize);
        for n in 0..l.total {
            let iou = boxes::iou(anchor(n), shift);
            if iou > best_iou {
                best_iou = iou;
                best_n = n;
            }
        }
        if let Some(mask_n) = l.mask.iter().position(|&m| m == best_n) {
            cx.assign(t, best_n, mask_n, i, j, delta, &mut st);
        }
        if l.iou_thresh < 1.0 {
            let kind = IouKind::from_name(&l.iou_thresh_kind);
            for n in 0..l.total {
                let Some(mask_n) = l.mask.iter().position(|&m| m == n) else { continue };
                if n != best_n && boxes::iou_kind(anchor(n), shift, kind) > l.iou_thresh {
                    cx.assign(t, n, mask_n, i, j, delta, &mut st);
                }
            }
        }
    }
    if l.iou_thresh < 1.0 {
        // averages_yolo_deltas: a box trained by several classes gets their mean
        for loc in 0..plane {
            for n in 0..l.n() {
                let (obj, bx, cls) =
                    (entry(l, plane, n, loc, 4), entry(l, plane, n, loc, 0), entry(l, plane, n, loc, 5));
                if delta[obj] != 0.0 {
                    let k = (0..l.classes).filter(|&c| delta[cls + plane * c] > 0.0).count();
                    if k > 0 {
                        (0..4).for_each(|e| delta[bx + e * plane] /= k as f32);
                    }
                }
            }
        }
    }
    st
}
