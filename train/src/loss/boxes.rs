//! Darknet's `box.c`: IoU and its variants between `(x, y, w, h)` centre boxes, and
//! `dx_box_iou`, the IoU-loss gradient `[yolo]` uses for `iou_loss=giou|diou|ciou`.

use std::f32::consts::PI;

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BoxF {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
}

/// How IoU is turned into a loss (`iou_loss=`) or compared (`iou_thresh_kind=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IouKind {
    Mse,
    Iou,
    Giou,
    Diou,
    Ciou,
}

impl IouKind {
    /// Parses the cfg value (the frontend has already checked it is one of these).
    pub fn from_name(s: &str) -> Self {
        match s {
            "iou" => IouKind::Iou,
            "giou" => IouKind::Giou,
            "diou" => IouKind::Diou,
            "ciou" => IouKind::Ciou,
            _ => IouKind::Mse,
        }
    }
}

fn overlap(x1: f32, w1: f32, x2: f32, w2: f32) -> f32 {
    let left = (x1 - w1 / 2.0).max(x2 - w2 / 2.0);
    let right = (x1 + w1 / 2.0).min(x2 + w2 / 2.0);
    right - left
}

pub fn intersection(a: BoxF, b: BoxF) -> f32 {
    let w = overlap(a.x, a.w, b.x, b.w);
    let h = overlap(a.y, a.h, b.y, b.h);
    if w < 0.0 || h < 0.0 {
        0.0
    } else {
        w * h
    }
}

pub fn union(a: BoxF, b: BoxF) -> f32 {
    a.w * a.h + b.w * b.h - intersection(a, b)
}

pub fn iou(a: BoxF, b: BoxF) -> f32 {
    let (i, u) = (intersection(a, b), union(a, b));
    if i == 0.0 || u == 0.0 {
        0.0
    } else {
        i / u
    }
}

/// The smallest enclosing box as `(top, bottom, left, right)`.
fn enclosing(a: BoxF, b: BoxF) -> (f32, f32, f32, f32) {
    (
        (a.y - a.h / 2.0).min(b.y - b.h / 2.0),
        (a.y + a.h / 2.0).max(b.y + b.h / 2.0),
        (a.x - a.w / 2.0).min(b.x - b.w / 2.0),
        (a.x + a.w / 2.0).max(b.x + b.w / 2.0),
    )
}

pub fn giou(a: BoxF, b: BoxF) -> f32 {
    let (t, bo, l, r) = enclosing(a, b);
    let c = (r - l) * (bo - t);
    let i = iou(a, b);
    if c == 0.0 {
        return i;
    }
    i - (c - union(a, b)) / c
}

pub fn diou(a: BoxF, b: BoxF) -> f32 {
    let (t, bo, l, r) = enclosing(a, b);
    let c = (r - l).powi(2) + (bo - t).powi(2);
    let i = iou(a, b);
    if c == 0.0 {
        return i;
    }
    let d = (a.x - b.x).powi(2) + (a.y - b.y).powi(2);
    i - (d / c).powf(0.6)
}

pub fn ciou(a: BoxF, b: BoxF) -> f32 {
    let (t, bo, l, r) = enclosing(a, b);
    let c = (r - l).powi(2) + (bo - t).powi(2);
    let i = iou(a, b);
    if c == 0.0 {
        return i;
    }
    let d = ((a.x - b.x).powi(2) + (a.y - b.y).powi(2)) / c;
    let ar = (b.w / b.h).atan() - (a.w / a.h).atan();
    let ar_loss = 4.0 / (PI * PI) * ar * ar;
    let alpha = ar_loss / (1.0 - i + ar_loss + 0.000001);
    i - (d + alpha * ar_loss)
}

pub fn iou_kind(a: BoxF, b: BoxF, kind: IouKind) -> f32 {
    match kind {
        IouKind::Giou => giou(a, b),
        IouKind::Diou => diou(a, b),
        IouKind::Ciou => ciou(a, b),
        IouKind::Iou | IouKind::Mse => iou(a, b),
    }
}

/// Darknet's `dx_box_iou`: the ascent direction of IoU (or GIoU, DIoU, CIoU) in the
/// prediction's `(x, y, w, h)`. As in Darknet (following g-darknet) the `w`, `h`
/// components are not halved: they are twice `∂IoU/∂w`.
pub fn dx_box_iou(pred: BoxF, truth: BoxF, kind: IouKind) -> [f32; 4] {
    let (pt0, pb0) = (pred.y - pred.h / 2.0, pred.y + pred.h / 2.0);
    let (pl0, pr0) = (pred.x - pred.w / 2.0, pred.x + pred.w / 2.0);
    let (pred_t, pred_b) = (pt0.min(pb0), pt0.max(pb0));
    let (pred_l, pred_r) = (pl0.min(pr0), pl0.max(pr0));
    let (tt, tb) = (truth.y - truth.h / 2.0, truth.y + truth.h / 2.0);
    let (tl, tr) = (truth.x - truth.w / 2.0, truth.x + truth.w / 2.0);

    let x = (pred_b - pred_t) * (pred_r - pred_l);
    let xhat = (tb - tt) * (tr - tl);
    let ih = pred_b.min(tb) - pred_t.max(tt);
    let iw = pred_r.min(tr) - pred_l.max(tl);
    let i = iw * ih;
    let u = x + xhat - i;
    let s = (pred.x - truth.x).powi(2) + (pred.y - truth.y).powi(2);
    let giou_cw = pred_r.max(tr) - pred_l.min(tl);
    let giou_ch = pred_b.max(tb) - pred_t.min(tt);
    let giou_c = giou_cw * giou_ch;

    let (dx_t, dx_b, dx_l, dx_r) = (-(pred_r - pred_l), pred_r - pred_l, -(pred_b - pred_t), pred_b - pred_t);
    let di_t = if pred_t > tt { -iw } else { 0.0 };
    let di_b = if pred_b < tb { iw } else { 0.0 };
    let di_l = if pred_l > tl { -ih } else { 0.0 };
    let di_r = if pred_r < tr { ih } else { 0.0 };
    let (du_t, du_b, du_l, du_r) = (dx_t - di_t, dx_b - di_b, dx_l - di_l, dx_r - di_r);
    let dc_t = if pred_t < tt { -giou_cw } else { 0.0 };
    let dc_b = if pred_b > tb { giou_cw } else { 0.0 };
    let dc_l = if pred_l < tl { -giou_ch } else { 0.0 };
    let dc_r = if pred_r > tr { giou_ch } else { 0.0 };

    let (mut p_dt, mut p_db, mut p_dl, mut p_dr) = (0.0, 0.0, 0.0, 0.0);
    if u > 0.0 {
        p_dt = (u * di_t - i * du_t) / (u * u);
        p_db = (u * di_b - i * du_b) / (u * u);
        p_dl = (u * di_l - i * du_l) / (u * u);
        p_dr = (u * di_r - i * du_r) / (u * u);
    }
    // Darknet's order: t from b (if flipped) first, then b from the new t
    p_dt = if pt0 < pb0 { p_dt } else { p_db };
    p_db = if pt0 < pb0 { p_db } else { p_dt };
    p_dl = if pl0 < pr0 { p_dl } else { p_dr };
    p_dr = if pl0 < pr0 { p_dr } else { p_dl };

    if kind == IouKind::Giou {
        let g = |du: f32, dc: f32| (giou_c * du - u * dc) / (giou_c * giou_c);
        if giou_c > 0.0 {
            p_dt += g(du_t, dc_t);
            p_db += g(du_b, dc_b);
            p_dl += g(du_l, dc_l);
            p_dr += g(du_r, dc_r);
        }
        if iw <= 0.0 || ih <= 0.0 {
            p_dt = g(du_t, dc_t);
            p_db = g(du_b, dc_b);
            p_dl = g(du_l, dc_l);
            p_dr = g(du_r, dc_r);
        }
    }

    let ct = (pred.y - pred.h / 2.0).min(truth.y - truth.h / 2.0);
    let cb = (pred.y + pred.h / 2.0).max(truth.y + truth.h / 2.0);
    let cl = (pred.x - pred.w / 2.0).min(truth.x - truth.w / 2.0);
    let cr = (pred.x + pred.w / 2.0).max(truth.x + truth.w / 2.0);
    let (cw, ch) = (cr - cl, cb - ct);
    let c = cw * cw + ch * ch;
    let ind = |b: bool, v: f32| if b { v } else { 0.0 };
    // d(Ct, Cb, Cl, Cr)/d(x, y, w, h), as Darknet writes them
    let (dct_dy, dct_dh) = (ind(pred_t < tt, 1.0), ind(pred_t < tt, -0.5));
    let (dcb_dy, dcb_dh) = (ind(pred_b > tb, 1.0), ind(pred_b > tb, 0.5));
    let (dcl_dx, dcl_dw) = (ind(pred_l < tl, 1.0), ind(pred_l < tl, -0.5));
    let (dcr_dx, dcr_dw) = (ind(pred_r > tr, 1.0), ind(pred_r > tr, 0.5));
    let (dcw_dx, dcw_dw) = (dcr_dx - dcl_dx, dcr_dw - dcl_dw);
    let (dch_dy, dch_dh) = (dcb_dy - dct_dy, dcb_dh - dct_dh);

    let mut p_dx = p_dl + p_dr;
    let mut p_dy = p_dt + p_db;
    let mut p_dw = p_dr - p_dl;
    let mut p_dh = p_db - p_dt;

    if matches!(kind, IouKind::Diou | IouKind::Ciou) {
        let (ar_dw, ar_dh, alpha) = if kind == IouKind::Ciou {
            let ar = (truth.w / truth.h).atan() - (pred.w / pred.h).atan();
            let ar_loss = 4.0 / (PI * PI) * ar * ar;
            let alpha = ar_loss / (1.0 - i / u + ar_loss + 0.000001);
            (8.0 / (PI * PI) * ar * pred.h, -8.0 / (PI * PI) * ar * pred.w, alpha)
        } else {
            (0.0, 0.0, 0.0)
        };
        let cc = c * c;
        let ddx = (2.0 * (truth.x - pred.x) * c - (2.0 * cw * dcw_dx) * s) / cc;
        let ddy = (2.0 * (truth.y - pred.y) * c - (2.0 * ch * dch_dy) * s) / cc;
        let ddw = (2.0 * cw * dcw_dw) * s / cc + alpha * ar_dw;
        let ddh = (2.0 * ch * dch_dh) * s / cc + alpha * ar_dh;
        if c > 0.0 {
            p_dx += ddx;
            p_dy += ddy;
            p_dw += ddw;
            p_dh += ddh;
        }
        if iw <= 0.0 || ih <= 0.0 {
            (p_dx, p_dy, p_dw, p_dh) = (ddx, ddy, ddw, ddh);
        }
    }
    [p_dx, p_dy, p_dw, p_dh]
}
