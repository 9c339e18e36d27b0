//! From detection-head outputs to boxes: YOLO / region decoding in Darknet's order
//! and arithmetic, the mapping back to original-image pixels, and per-class NMS.

use std::collections::HashMap;

use ternc_ir::{Region, Yolo};

use crate::image::letterbox_size;

/// A box as Darknet's `box`: centre and size, relative to the network input (0..1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxRel {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
}

/// One (box, class) pair that passed the threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    pub class: usize,
    /// `objectness · class probability`, Darknet's `prob[class]`.
    pub score: f32,
    /// `x0, y0, x1, y1` in pixels of the original image; [`clip_to_image`] clamps it
    /// to `[0, w] × [0, h]` (after NMS, as Darknet does).
    pub bbox: [f32; 4],
    pub objectness: f32,
}

/// Undoes the resize or letterbox that made the network input: Darknet's
/// `correct_yolo_boxes` (relative = 1), then the scaling to pixels its consumers do.
struct Correction {
    net_w: f32,
    net_h: f32,
    /// The size the image had inside the network input (the network size unless
    /// letterboxed).
    new_w: f32,
    new_h: f32,
    img_w: f32,
    img_h: f32,
}

impl Correction {
    /// `None` when any size is zero (nothing to map to).
    fn new(net_w: usize, net_h: usize, img_w: usize, img_h: usize, letterbox: bool) -> Option<Self> {
        let (new_w, new_h) =
            if letterbox { letterbox_size(img_w, img_h, net_w, net_h) } else { (net_w, net_h) };
        if [net_w, net_h, img_w, img_h, new_w, new_h].contains(&0) {
            return None;
        }
        Some(Correction {
            net_w: net_w as f32,
            net_h: net_h as f32,
            new_w: new_w as f32,
            new_h: new_h as f32,
            img_w: img_w as f32,
            img_h: img_h as f32,
        })
    }

    /// The box in pixels of the original image, not clipped. The offset term is in
    /// double precision, as in `correct_yolo_boxes` (`deltaw / 2. / netw`).
    fn to_pixels(&self, b: BoxRel) -> [f32; 4] {
        let (ratio_w, ratio_h) = (self.new_w / self.net_w, self.new_h / self.net_h);
        let delta_w = (self.net_w - self.new_w) as f64;
        let delta_h = (self.net_h - self.new_h) as f64;
        // Computed in double, stored in the float `box` as Darknet does.
        let x = ((b.x as f64 - delta_w / 2.0 / self.net_w as f64) / ratio_w as f64) as f32;
        let y = ((b.y as f64 - delta_h / 2.0 / self.net_h as f64) / ratio_h as f64) as f32;
        let (x, y) = (x as f64, y as f64);
        let w = (b.w * (1.0 / ratio_w)) as f64;
        let h = (b.h * (1.0 / ratio_h)) as f64;
        let (iw, ih) = (self.img_w as f64, self.img_h as f64);
        [(x - w / 2.0) * iw, (y - h / 2.0) * ih, (x + w / 2.0) * iw, (y + h / 2.0) * ih].map(finite)
    }
}

/// NaN (from a NaN network output) becomes 0, infinities the largest finite value.
fn finite(v: f64) -> f32 {
    if v.is_nan() {
        0.0
    } else {
        (v as f32).clamp(f32::MIN, f32::MAX)
    }
}

/// Clamps boxes to the `img_w × img_h` image. Darknet clips only after NMS (when it
/// draws or prints), so call this after [`nms`] to suppress exactly as it does.
pub fn clip_to_image(dets: &mut [Detection], img_w: usize, img_h: usize) {
    let (w, h) = (img_w as f32, img_h as f32);
    for d in dets {
        let [x0, y0, x1, y1] = d.bbox;
        d.bbox = [x0.clamp(0.0, w), y0.clamp(0.0, h), x1.clamp(0.0, w), y1.clamp(0.0, h)];
    }
}

/// Darknet's `objectness > thresh` test; false for NaN (not the same as `!(v <= t)`).
fn above(v: f32, thresh: f32) -> bool {
    v > thresh
}

/// One anchor slot of a detection head at one cell: reads entry `e` of the
/// `[n·entries, h, w]` output.
struct Slot<'a> {
    out: &'a [f32],
    base: usize,
    plane: usize,
}

impl Slot<'_> {
    fn at(&self, e: usize) -> f32 {
        self.out[self.base + e * self.plane]
    }
}

/// Checks that `out` holds `n·entries` channels of `h·w` and returns the plane size.
fn plane_of(out: &[f32], c: usize, h: usize, w: usize, n: usize, entries: usize) -> Option<usize> {
    let plane = h.checked_mul(w)?;
    let need = c.checked_mul(plane)?;
    (c == n.checked_mul(entries)? && out.len() >= need && plane > 0).then_some(plane)
}

/// The `(w, h)` of anchor `m`, in the units of `anchors` (`None` if out of range).
fn anchor(anchors: &[f32], m: usize) -> Option<(f32, f32)> {
    let i = m.checked_mul(2)?;
    Some((*anchors.get(i)?, *anchors.get(i.checked_add(1)?)?))
}

/// Darknet's `get_yolo_box` on the layer's output: `tx, ty` already include the
/// logistic and `scale_x_y`; `tw, th` are raw (`exp`), or with `new_coords` already
/// logistic (`(2σ)²`, written `t²·4`). Anchors are in network-input pixels.
fn yolo_box(
    t: [f32; 4],
    anchor: (f32, f32),
    col: usize,
    row: usize,
    grid: (usize, usize),
    net: (usize, usize),
    new_coords: bool,
) -> BoxRel {
    let x = (col as f32 + t[0]) / grid.0 as f32;
    let y = (row as f32 + t[1]) / grid.1 as f32;
    let (w, h) = if new_coords {
        (t[2] * t[2] * 4.0 * anchor.0 / net.0 as f32, t[3] * t[3] * 4.0 * anchor.1 / net.1 as f32)
    } else {
        // C's `exp` is double: exp(t)·anchor/net, rounded to float once.
        (
            ((t[2] as f64).exp() * anchor.0 as f64 / net.0 as f64) as f32,
            ((t[3] as f64).exp() * anchor.1 as f64 / net.1 as f64) as f32,
        )
    };
    BoxRel { x, y, w, h }
}

/// The per-class half of `get_yolo_detections`: `prob = objectness · p(class)`,
/// kept when `prob > thresh`.
fn push_classes(
    dets: &mut Vec<Detection>,
    slot: &Slot,
    first: usize,
    classes: usize,
    objectness: f32,
    thresh: f32,
    bbox: [f32; 4],
) {
    for class in 0..classes {
        let score = objectness * slot.at(first + class);
        if score > thresh {
            dets.push(Detection { class, score, bbox, objectness });
        }
    }
}

/// Where a head keeps its entries: `n` anchor slots of `entries` channels each, the
/// box at entries `0..4`, objectness at `obj`, `classes` probabilities right after it.
struct Layout {
    n: usize,
    entries: usize,
    obj: usize,
    classes: usize,
}

/// The loop shared by both heads, in Darknet's order (cells row-major, anchor slots
/// within a cell): `objectness > thresh` first, then `push_classes`. `make_box` turns
/// anchor slot, `[tx, ty, tw, th]`, column and row into the relative box.
fn decode_head(
    out: &[f32],
    (c, h, w): (usize, usize, usize),
    layout: &Layout,
    fix: Option<Correction>,
    thresh: f32,
    make_box: impl Fn(usize, [f32; 4], usize, usize) -> Option<BoxRel>,
) -> Vec<Detection> {
    let Some(plane) = plane_of(out, c, h, w, layout.n, layout.entries) else {
        return Vec::new();
    };
    let Some(fix) = fix else {
        return Vec::new();
    };
    let mut dets = Vec::new();
    for cell in 0..plane {
        let (row, col) = (cell / w, cell % w);
        for a in 0..layout.n {
            let slot = Slot { out, base: a * layout.entries * plane + cell, plane };
            let objectness = slot.at(layout.obj);
            if !above(objectness, thresh) {
                continue;
            }
            let t = [slot.at(0), slot.at(1), slot.at(2), slot.at(3)];
            let Some(b) = make_box(a, t, col, row) else {
                continue;
            };
            let bbox = fix.to_pixels(b);
            push_classes(&mut dets, &slot, layout.obj + 1, layout.classes, objectness, thresh, bbox);
        }
    }
    dets
}

/// Decodes one image's `[yolo]` output (`c = mask.len()·(classes+5)` channels of
/// `h × w`, entry `e` of anchor slot `a` at channel `a·(classes+5)+e`) as Darknet's
/// `get_yolo_detections` + `correct_yolo_boxes`: cells in row-major order, anchor slots
/// within a cell, `objectness > thresh` first, then one detection per class whose
/// `objectness · p(class) > thresh`. Boxes are in pixels of the `img_w × img_h` image.
/// A tensor that does not match `attrs` gives no detections.
#[allow(clippy::too_many_arguments)]
pub fn decode_yolo(
    out: &[f32],
    c: usize,
    h: usize,
    w: usize,
    attrs: &Yolo,
    net_w: usize,
    net_h: usize,
    img_w: usize,
    img_h: usize,
    letterbox: bool,
    thresh: f32,
) -> Vec<Detection> {
    let Some(entries) = attrs.classes.checked_add(5) else {
        return Vec::new();
    };
    let layout = Layout { n: attrs.mask.len(), entries, obj: 4, classes: attrs.classes };
    let fix = Correction::new(net_w, net_h, img_w, img_h, letterbox);
    decode_head(out, (c, h, w), &layout, fix, thresh, |a, t, col, row| {
        let anchor = anchor(&attrs.anchors, *attrs.mask.get(a)?)?;
        let (grid, net) = ((w, h), (net_w, net_h));
        Some(yolo_box(t, anchor, col, row, grid, net, attrs.new_coords))
    })
}

/// Darknet's `get_region_box` (with `DOABS`) on already-activated `x, y`: anchors are
/// in grid cells, so `w = exp(tw)·anchor_w / grid_w`.
fn region_box(t: [f32; 4], anchor: (f32, f32), col: usize, row: usize, grid: (usize, usize)) -> BoxRel {
    BoxRel {
        x: (col as f32 + t[0]) / grid.0 as f32,
        y: (row as f32 + t[1]) / grid.1 as f32,
        w: ((t[2] as f64).exp() * anchor.0 as f64 / grid.0 as f64) as f32,
        h: ((t[3] as f64).exp() * anchor.1 as f64 / grid.1 as f64) as f32,
    }
}

/// Decodes one image's YOLOv2 `[region]` output in the layout our runtime produces
/// (pjreddie's: entry `e` of anchor `a` at channel `a·(classes+coords+1)+e`; box
/// entries `0..4`, objectness at `coords`, classes after it). `x, y` and objectness are
/// already logistic and the classes already softmaxed (when `softmax=1`; otherwise
/// they are used as they are). Thresholding and the mapping to image pixels are the
/// same as [`decode_yolo`] (AlexeyAB's `custom_get_region_detections` also ends in
/// `correct_yolo_boxes`).
#[allow(clippy::too_many_arguments)]
pub fn decode_region(
    out: &[f32],
    c: usize,
    h: usize,
    w: usize,
    attrs: &Region,
    net_w: usize,
    net_h: usize,
    img_w: usize,
    img_h: usize,
    letterbox: bool,
    thresh: f32,
) -> Vec<Detection> {
    let entries = attrs.classes.checked_add(attrs.coords).and_then(|e| e.checked_add(1));
    let Some(entries) = entries.filter(|_| attrs.coords >= 4) else {
        return Vec::new();
    };
    let layout = Layout { n: attrs.num, entries, obj: attrs.coords, classes: attrs.classes };
    let fix = Correction::new(net_w, net_h, img_w, img_h, letterbox);
    decode_head(out, (c, h, w), &layout, fix, thresh, |a, t, col, row| {
        Some(region_box(t, anchor(&attrs.anchors, a)?, col, row, (w, h)))
    })
}

/// Intersection over union of two `x0, y0, x1, y1` boxes, as Darknet's `box_iou`:
/// 0 when they do not overlap or either has no area (never NaN from zero sizes).
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    // `f32::min`/`max` skip NaN, so a NaN box must be caught before them.
    if a.iter().chain(b).any(|v| v.is_nan()) {
        return 0.0;
    }
    let iw = a[2].min(b[2]) - a[0].max(b[0]);
    let ih = a[3].min(b[3]) - a[1].max(b[1]);
    if iw <= 0.0 || ih <= 0.0 {
        return 0.0;
    }
    let inter = iw * ih;
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// Per-class greedy NMS, Darknet's `do_nms_sort`: within a class, boxes in descending
/// score; a box is dropped when its IoU with a kept box of its class is above
/// `iou_thresh` (a dropped box suppresses nothing). The result is ordered by score
/// (descending), then class, then input position, so it is deterministic where
/// Darknet's `qsort` is not.
pub fn nms(dets: &mut Vec<Detection>, iou_thresh: f32) {
    let mut order: Vec<usize> = (0..dets.len()).collect();
    order.sort_by(|&i, &j| {
        let (a, b) = (&dets[i], &dets[j]);
        b.score.total_cmp(&a.score).then(a.class.cmp(&b.class)).then(i.cmp(&j))
    });
    let mut kept_boxes: HashMap<usize, Vec<[f32; 4]>> = HashMap::new();
    let mut kept = Vec::with_capacity(dets.len());
    for i in order {
        let d = &dets[i];
        let same_class = kept_boxes.entry(d.class).or_default();
        if same_class.iter().any(|k| iou(k, &d.bbox) > iou_thresh) {
            continue;
        }
        same_class.push(d.bbox);
        kept.push(d.clone());
    }
    *dets = kept;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yolo(classes: usize, mask: Vec<usize>, anchors: Vec<f32>, scale_x_y: f32, new_coords: bool) -> Yolo {
        Yolo {
            classes,
            total: anchors.len() / 2,
            mask,
            anchors,
            scale_x_y,
            new_coords,
            max_boxes: 200,
            jitter: 0.2,
            resize: 1.0,
            random: 0.0,
            ignore_thresh: 0.5,
            truth_thresh: 1.0,
            iou_thresh: 1.0,
            iou_normalizer: 0.75,
            obj_normalizer: 1.0,
            cls_normalizer: 1.0,
            delta_normalizer: 1.0,
            max_delta: f32::MAX,
            label_smooth_eps: 0.0,
            objectness_smooth: false,
            focal_loss: false,
            iou_loss: "mse".into(),
            iou_thresh_kind: "iou".into(),
            nms_kind: "default".into(),
            beta_nms: 0.6,
        }
    }

    fn region(classes: usize, num: usize, anchors: Vec<f32>) -> Region {
        Region {
            classes,
            coords: 4,
            num,
            anchors,
            softmax: true,
            max_boxes: 30,
            jitter: 0.2,
            resize: 1.0,
            random: 0.0,
            rescore: true,
            thresh: 0.6,
            absolute: true,
            bias_match: true,
            log: false,
            sqrt: false,
            focal_loss: false,
            coord_scale: 1.0,
            object_scale: 5.0,
            noobject_scale: 1.0,
            mask_scale: 1.0,
            class_scale: 1.0,
        }
    }

    /// A zeroed `[n·entries, 13, 13]` head with `values[e]` written as entry `e` of
    /// anchor slot `a` at cell (`col`, `row`).
    fn head(n: usize, entries: usize, a: usize, col: usize, row: usize, values: &[f32]) -> Vec<f32> {
        let plane = 13 * 13;
        let mut out = vec![0.0; n * entries * plane];
        for (e, &v) in values.iter().enumerate() {
            out[(a * entries + e) * plane + row * 13 + col] = v;
        }
        out
    }

    fn assert_box(got: [f32; 4], want: [f32; 4]) {
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-3, "{got:?} vs {want:?}");
        }
    }

    // The YOLO head below: 13×13 grid, net 416×416, 2 classes, mask [1, 2] of anchors
    // (10,14) (23,27) (37,58). At col 5, row 7, anchor slot 1 (= anchor 2: 37×58):
    // x = .5, y = .25, tw = ln 2, th = 0, objectness .9, classes (.2, .8).
    //   relative: x = (5+.5)/13, y = (7+.25)/13, w = 2·37/416, h = 58/416.
    //   class 0: .9·.2 = .18 ≤ .25, dropped; class 1: .9·.8 = .72 kept.
    const LN2: f32 = std::f32::consts::LN_2;

    fn strong_yolo_cell(tx: f32, t: [f32; 3]) -> Vec<f32> {
        head(2, 7, 1, 5, 7, &[tx, t[0], t[1], t[2], 0.9, 0.2, 0.8])
    }

    #[test]
    fn yolo_plain_resize() {
        // 640×480 stretched to 416×416: the relative box scales straight to pixels.
        //   cx = 5.5/13·640 = 270.769, w = 74/416·640 = 113.846 → x 213.846..327.692
        //   cy = 7.25/13·480 = 267.692, h = 58/416·480 = 66.923 → y 234.231..301.154
        let attrs = yolo(2, vec![1, 2], vec![10., 14., 23., 27., 37., 58.], 1.0, false);
        let out = strong_yolo_cell(0.5, [0.25, LN2, 0.0]);
        let dets = decode_yolo(&out, 14, 13, 13, &attrs, 416, 416, 640, 480, false, 0.25);
        assert_eq!(dets.len(), 1, "{dets:?}");
        let d = &dets[0];
        assert_eq!(d.class, 1);
        assert!((d.score - 0.72).abs() < 1e-6 && (d.objectness - 0.9).abs() < 1e-6);
        assert_box(d.bbox, [213.846, 234.231, 327.692, 301.154]);
    }

    #[test]
    fn yolo_letterbox() {
        // 640×480 letterboxed in 416: new 416×312, deltah = 104, ratioh = .75.
        //   y = (7.25/13 − 52/416)/.75 = 7.5/13 → cy = 276.923
        //   h = 58/416/.75 = 58/312 → 89.231 px → y 232.308..321.538; x as before.
        let attrs = yolo(2, vec![1, 2], vec![10., 14., 23., 27., 37., 58.], 1.0, false);
        let out = strong_yolo_cell(0.5, [0.25, LN2, 0.0]);
        let dets = decode_yolo(&out, 14, 13, 13, &attrs, 416, 416, 640, 480, true, 0.25);
        assert_eq!(dets.len(), 1, "{dets:?}");
        assert_box(dets[0].bbox, [213.846, 232.308, 327.692, 321.538]);
    }

    #[test]
    fn yolo_scale_x_y_is_already_in_the_output() {
        // With scale_x_y = 1.1 the layer output x can reach 1.05 (= σ·1.1 − .05); the
        // decoder must use it as is: cx = (5+1.05)/13·640 = 297.846 → x 240.923..354.769.
        let attrs = yolo(2, vec![1, 2], vec![10., 14., 23., 27., 37., 58.], 1.1, false);
        let out = strong_yolo_cell(1.05, [0.25, LN2, 0.0]);
        let dets = decode_yolo(&out, 14, 13, 13, &attrs, 416, 416, 640, 480, false, 0.25);
        assert_box(dets[0].bbox, [240.923, 234.231, 354.769, 301.154]);
    }

    #[test]
    fn yolo_new_coords() {
        // new_coords: w = tw²·4·anchor/net. tw = .5 → 37/416 → 56.923 px;
        // th = .75 → 2.25·58/416 → 150.577 px. Centre as before (270.769, 267.692).
        let attrs = yolo(2, vec![1, 2], vec![10., 14., 23., 27., 37., 58.], 1.0, true);
        let out = strong_yolo_cell(0.5, [0.25, 0.5, 0.75]);
        let dets = decode_yolo(&out, 14, 13, 13, &attrs, 416, 416, 640, 480, false, 0.25);
        assert_box(dets[0].bbox, [242.308, 192.404, 299.231, 342.981]);
    }

    #[test]
    fn yolo_threshold_and_order() {
        let attrs = yolo(2, vec![1, 2], vec![10., 14., 23., 27., 37., 58.], 1.0, false);
        let mut out = strong_yolo_cell(0.5, [0.25, 0.0, 0.0]);
        // Both classes pass at thresh .1: .18 and .72, in class order.
        let dets = decode_yolo(&out, 14, 13, 13, &attrs, 416, 416, 640, 480, false, 0.1);
        let classes: Vec<_> = dets.iter().map(|d| d.class).collect();
        assert_eq!(classes, [0, 1]);
        // Objectness ≤ thresh drops the cell even though a class is certain.
        out[(7 + 4) * 169 + 7 * 13 + 5] = 0.25;
        out[(7 + 6) * 169 + 7 * 13 + 5] = 1.0;
        let dets = decode_yolo(&out, 14, 13, 13, &attrs, 416, 416, 640, 480, false, 0.25);
        assert!(dets.is_empty(), "{dets:?}");
    }

    #[test]
    fn yolo_bad_inputs_give_nothing() {
        let attrs = yolo(2, vec![1, 2], vec![10., 14., 23., 27., 37., 58.], 1.0, false);
        let out = strong_yolo_cell(0.5, [0.25, 0.0, 0.0]);
        let run = |out: &[f32], c, img_w, img_h| {
            decode_yolo(out, c, 13, 13, &attrs, 416, 416, img_w, img_h, true, 0.25)
        };
        assert!(run(&out, 21, 640, 480).is_empty()); // wrong channel count
        assert!(run(&out[..100], 14, 640, 480).is_empty()); // short tensor
        assert!(run(&out, 14, 0, 480).is_empty()); // empty image
        assert!(run(&out, 14, 100_000, 1).is_empty()); // letterbox height rounds to 0
                                                       // NaN and huge values: no panic, boxes stay inside the image.
        let mut wild = out.clone();
        wild[7 * 169 + 7 * 13 + 5] = f32::NAN;
        wild[9 * 169 + 7 * 13 + 5] = 1e30;
        let dets = run(&wild, 14, 640, 480);
        assert_eq!(dets.len(), 1);
        let [x0, y0, x1, y1] = dets[0].bbox;
        assert!(x0 == 0.0 && x1 == 0.0 && y0 >= 0.0 && y1 <= 480.0, "{:?}", dets[0].bbox);
    }

    // The region head: 13×13 grid, net 416×416, 2 classes, 2 anchors (1.08,1.19)
    // (3.42,4.41) in grid cells. At col 3, row 9, anchor 1: x = y = .5, tw = 0,
    // th = ln 2, objectness .8, classes (.9, .1) → class 0 at .72.
    //   relative: x = 3.5/13, y = 9.5/13, w = 3.42/13, h = 2·4.41/13.
    fn region_case(letterbox: bool, img_w: usize, img_h: usize) -> Vec<Detection> {
        let attrs = region(2, 2, vec![1.08, 1.19, 3.42, 4.41]);
        let out = head(2, 7, 1, 3, 9, &[0.5, 0.5, 0.0, LN2, 0.8, 0.9, 0.1]);
        decode_region(&out, 14, 13, 13, &attrs, 416, 416, img_w, img_h, letterbox, 0.25)
    }

    #[test]
    fn region_plain() {
        // 416×416 image: cx = 112, w = 109.44 → x 57.28..166.72;
        // cy = 304, h = 282.24 → y 162.88..445.12, clipped to 416 after NMS.
        let mut dets = region_case(false, 416, 416);
        assert_eq!(dets.len(), 1, "{dets:?}");
        assert_eq!(dets[0].class, 0);
        assert!((dets[0].score - 0.72).abs() < 1e-6);
        assert_box(dets[0].bbox, [57.28, 162.88, 166.72, 445.12]);
        clip_to_image(&mut dets, 416, 416);
        assert_box(dets[0].bbox, [57.28, 162.88, 166.72, 416.0]);
    }

    #[test]
    fn region_letterbox() {
        // 640×480 letterboxed: x: 3.5/13·640 = 172.308 ± 3.42/13·640/2 → 88.123..256.492;
        // y = (9.5/13 − .125)/.75 = .807692 → 387.692, h = 8.82/13/.75·480 = 434.215
        //   → 170.585..604.8, clipped to 480.
        let mut dets = region_case(true, 640, 480);
        assert_eq!(dets.len(), 1, "{dets:?}");
        assert_box(dets[0].bbox, [88.123, 170.585, 256.492, 604.8]);
        clip_to_image(&mut dets, 640, 480);
        assert_box(dets[0].bbox, [88.123, 170.585, 256.492, 480.0]);
    }

    fn det(class: usize, score: f32, bbox: [f32; 4]) -> Detection {
        Detection { class, score, bbox, objectness: score }
    }

    #[test]
    fn iou_hand_cases() {
        let a = [0.0, 0.0, 2.0, 2.0];
        assert_eq!(iou(&a, &a), 1.0);
        // Overlap 1×2 = 2, union 4 + 4 − 2 = 6.
        assert!((iou(&a, &[1.0, 0.0, 3.0, 2.0]) - 1.0 / 3.0).abs() < 1e-7);
        // Overlap 1×1, union 4 + 4 − 1 = 7.
        assert!((iou(&a, &[1.0, 1.0, 3.0, 3.0]) - 1.0 / 7.0).abs() < 1e-7);
        // Touching edges and disjoint boxes: 0.
        assert_eq!(iou(&a, &[2.0, 0.0, 4.0, 2.0]), 0.0);
        assert_eq!(iou(&a, &[5.0, 5.0, 6.0, 6.0]), 0.0);
        // Zero-size and NaN boxes: 0, not NaN.
        assert_eq!(iou(&[1.0, 1.0, 1.0, 1.0], &[1.0, 1.0, 1.0, 1.0]), 0.0);
        assert_eq!(iou(&a, &[f32::NAN, 0.0, 1.0, 1.0]), 0.0);
    }

    #[test]
    fn nms_per_class() {
        let mut dets = vec![
            det(0, 0.6, [0.0, 0.0, 10.0, 10.0]),
            det(0, 0.9, [1.0, 0.0, 11.0, 10.0]), // IoU .818 with the first
            det(1, 0.8, [0.0, 0.0, 10.0, 10.0]), // another class: kept
            det(0, 0.7, [50.0, 50.0, 60.0, 60.0]), // far away: kept
        ];
        nms(&mut dets, 0.45);
        let got: Vec<_> = dets.iter().map(|d| (d.class, d.score)).collect();
        assert_eq!(got, [(0, 0.9), (1, 0.8), (0, 0.7)]);
    }

    #[test]
    fn nms_threshold_is_strict_and_suppressed_boxes_do_not_suppress() {
        // IoU exactly .5 (overlap 2, union 4) is not above .5: both kept.
        let mut dets = vec![det(2, 0.9, [0.0, 0.0, 4.0, 1.0]), det(2, 0.8, [0.0, 0.0, 2.0, 1.0])];
        nms(&mut dets, 0.5);
        assert_eq!(dets.len(), 2);
        // A chain: B overlaps A (dropped), C overlaps only B: C survives.
        let mut dets = vec![
            det(0, 0.9, [0.0, 0.0, 10.0, 10.0]),
            det(0, 0.8, [2.0, 0.0, 12.0, 10.0]),
            det(0, 0.7, [9.0, 0.0, 19.0, 10.0]),
        ];
        nms(&mut dets, 0.45);
        let got: Vec<_> = dets.iter().map(|d| d.score).collect();
        assert_eq!(got, [0.9, 0.7]);
    }

    #[test]
    fn nms_orders_ties_by_class_then_position() {
        let mut dets = vec![
            det(3, 0.5, [0.0, 0.0, 1.0, 1.0]),
            det(1, 0.5, [5.0, 5.0, 6.0, 6.0]),
            det(1, 0.5, [8.0, 8.0, 9.0, 9.0]),
            det(2, 0.7, [0.0, 0.0, 1.0, 1.0]),
        ];
        nms(&mut dets, 0.45);
        let got: Vec<_> = dets.iter().map(|d| (d.class, d.bbox[0])).collect();
        assert_eq!(got, [(2, 0.0), (1, 5.0), (1, 8.0), (3, 0.0)]);
        let mut empty = Vec::new();
        nms(&mut empty, 0.45);
        assert!(empty.is_empty());
    }
}
