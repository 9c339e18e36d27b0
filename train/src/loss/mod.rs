//! Darknet's detection losses. Each fills the head's delta (Darknet's sign,
//! `target − output`, with respect to the head's input logits) and reports the cost
//! Darknet prints: `‖δ‖²` summed over the batch (for `iou_loss` other than mse,
//! `iou_normalizer·mean(1 − IoU or GIoU) + obj_normalizer·‖δ without box entries‖²`,
//! as Darknet with its default `show_details=1`).

pub mod boxes;
pub mod region;
pub mod yolo;

use rayon::prelude::*;
use ternc_ir::{Region, Shape, Yolo};

use crate::error::{Result, TrainError};
use boxes::{BoxF, IouKind};

/// One ground-truth box: class and centre/size relative to the image (0..1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Truth {
    pub class: usize,
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
}

impl Truth {
    pub fn new(class: usize, x: f32, y: f32, w: f32, h: f32) -> Self {
        Truth { class, x, y, w, h }
    }
    pub fn as_box(&self) -> BoxF {
        BoxF { x: self.x, y: self.y, w: self.w, h: self.h }
    }
    /// Finite, centre inside the image, positive size (Darknet's logs and divisions
    /// need it).
    pub fn check(&self) -> std::result::Result<(), String> {
        let ok = [self.x, self.y, self.w, self.h].iter().all(|v| v.is_finite())
            && (0.0..=1.0).contains(&self.x)
            && (0.0..=1.0).contains(&self.y)
            && self.w > 0.0
            && self.h > 0.0;
        if ok {
            Ok(())
        } else {
            Err(format!(
                "box {} {} {} {} {}: expected 0 <= x, y <= 1 and w, h > 0",
                self.class, self.x, self.y, self.w, self.h
            ))
        }
    }
}

/// Per-image sums (Darknet's `train_yolo_args` plus the printed averages).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ImageStats {
    pub count: usize,
    pub class_count: usize,
    pub tot_iou: f32,
    pub tot_iou_loss: f32,
    pub tot_giou_loss: f32,
    pub avg_obj: f32,
    pub avg_cat: f32,
    pub avg_anyobj: f32,
}

impl ImageStats {
    fn add_iou(&mut self, iou: f32, giou: f32) {
        self.count += 1;
        self.tot_iou += iou;
        self.tot_iou_loss += 1.0 - iou;
        self.tot_giou_loss += 1.0 - giou;
    }
    fn merge(mut self, o: ImageStats) -> ImageStats {
        self.count += o.count;
        self.class_count += o.class_count;
        self.tot_iou += o.tot_iou;
        self.tot_iou_loss += o.tot_iou_loss;
        self.tot_giou_loss += o.tot_giou_loss;
        self.avg_obj += o.avg_obj;
        self.avg_cat += o.avg_cat;
        self.avg_anyobj += o.avg_anyobj;
        self
    }
}

/// One head's loss over a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HeadStats {
    pub layer: usize,
    /// Darknet's `l.cost` for the batch (see the module documentation).
    pub cost: f32,
    /// Truths assigned to an anchor of this head.
    pub count: usize,
    /// Mean IoU of the assigned predictions (0 when none).
    pub avg_iou: f32,
    pub sums: ImageStats,
}

/// Which head, with what it needs besides its output.
pub enum Head<'a> {
    Yolo { l: &'a Yolo, net_w: usize, net_h: usize },
    Region { l: &'a Region, seen: u64 },
}

/// Checks every truth of every image (the error names the image and the box).
pub fn check_truths(truths: &[Vec<Truth>]) -> Result<()> {
    for (b, list) in truths.iter().enumerate() {
        for (k, t) in list.iter().enumerate() {
            t.check().map_err(|why| TrainError::Truth { image: b, index: k, why })?;
        }
    }
    Ok(())
}

/// Runs head `layer` over the batch: `out` and `delta` hold `truths.len()` images of
/// shape `s`; `delta` is overwritten.
pub fn head_loss(
    layer: usize,
    head: Head,
    out: &[f32],
    delta: &mut [f32],
    s: Shape,
    truths: &[Vec<Truth>],
) -> HeadStats {
    let n = s.numel();
    let batch = truths.len();
    delta[..batch * n].fill(0.0);
    let sums = delta[..batch * n]
        .par_chunks_mut(n)
        .zip(out[..batch * n].par_chunks(n))
        .zip(truths.par_iter())
        .map(|((d, o), t)| match &head {
            Head::Yolo { l, net_w, net_h } => yolo::yolo_image(l, o, s, *net_w, *net_h, t, d),
            Head::Region { l, seen } => region::region_image(l, o, s, t, *seen, d),
        })
        .reduce(ImageStats::default, ImageStats::merge);
    let sq = |d: &[f32]| d.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>();
    let mut cost = sq(&delta[..batch * n]) as f32;
    if let Head::Yolo { l, .. } = &head {
        let kind = IouKind::from_name(&l.iou_loss);
        if kind != IouKind::Mse {
            // classification part: the deltas without the four box entries
            let plane = s.plane();
            let entries = l.classes + 5;
            let mut cls = 0.0f64;
            for img in delta[..batch * n].chunks(n) {
                for a in 0..l.n() {
                    cls += sq(&img[(a * entries + 4) * plane..(a + 1) * entries * plane]);
                }
            }
            let count = sums.count.max(1) as f32;
            let tot = if kind == IouKind::Giou { sums.tot_giou_loss } else { sums.tot_iou_loss };
            cost = l.iou_normalizer * tot / count + l.obj_normalizer * cls as f32;
        }
    }
    HeadStats {
        layer,
        cost,
        count: sums.count,
        avg_iou: if sums.count > 0 { sums.tot_iou / sums.count as f32 } else { 0.0 },
        sums,
    }
}
