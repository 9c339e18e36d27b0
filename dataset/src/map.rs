//! VOC mean average precision.
//!
//! Per class, every detection of that class over all images, strongest first (ties:
//! image order, then the order given), is matched to the ground truth box of that
//! class in its image with the highest IoU. When that IoU reaches the threshold
//! (`>=`, as the VOC devkit): a *difficult* box makes the detection neither a true
//! nor a false positive; a box not yet matched makes it a true positive (and the box
//! is now matched); a box already matched makes it a false positive (a duplicate).
//! Below the threshold, a false positive. Recall is over the non-difficult boxes.
//!
//! - **AP** (VOC2010 and later, "all points"): the area under the precision-recall
//!   curve made monotone (precision at recall r = the best precision at any recall
//!   ≥ r).
//! - **AP11** (VOC2007): the mean over r = 0, 0.1, ..., 1 of the best precision at
//!   recall ≥ r (0 where that recall is never reached).
//!
//! A class without non-difficult ground truth has no AP (`None`) and is left out of
//! the mean; a class with ground truth but no detection has AP 0. Boxes are `x0, y0,
//! x1, y1` in any one unit (ternc uses image pixels); IoU is the continuous one of
//! [`ternc_runtime::detect::iou`] (no VOC "+1 pixel").

use ternc_runtime::detect::iou as box_iou;

/// A detection to evaluate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    pub class: usize,
    pub score: f32,
    pub bbox: [f32; 4],
}

/// A ground-truth object.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroundTruth {
    pub class: usize,
    pub bbox: [f32; 4],
    pub difficult: bool,
}

/// The result for one class.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassAp {
    pub name: String,
    /// All-point AP; `None` without ground truth.
    pub ap: Option<f64>,
    /// 11-point AP; `None` without ground truth.
    pub ap11: Option<f64>,
    pub tp: usize,
    pub fp: usize,
    /// Non-difficult ground-truth boxes.
    pub n_gt: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MapReport {
    /// The IoU threshold used (the name `map50` is kept for any threshold).
    pub iou: f32,
    /// Mean all-point AP over the classes with ground truth (0 when none has).
    pub map50: f64,
    /// Mean 11-point AP over the same classes.
    pub map50_11pt: f64,
    pub per_class: Vec<ClassAp>,
    /// Mean IoU of the true positives (0 when there are none).
    pub avg_iou: f64,
}

/// Evaluates detections against ground truth, image by image (`dets[i]` and
/// `truths[i]` belong to image `i`; missing entries count as empty). Detections and
/// boxes whose class is not below `class_names.len()` are ignored.
pub fn evaluate(
    dets: &[Vec<Detection>],
    truths: &[Vec<GroundTruth>],
    class_names: &[String],
    iou_thresh: f32,
) -> MapReport {
    let images = dets.len().max(truths.len());
    let empty_d = Vec::new();
    let empty_t = Vec::new();
    let (mut iou_sum, mut iou_n) = (0f64, 0usize);
    let mut per_class = Vec::with_capacity(class_names.len());
    for (class, name) in class_names.iter().enumerate() {
        // (score, image, index) of this class's detections, strongest first.
        let mut order: Vec<(f32, usize, usize)> = Vec::new();
        for img in 0..images {
            for (j, d) in dets.get(img).unwrap_or(&empty_d).iter().enumerate() {
                if d.class == class {
                    order.push((d.score, img, j));
                }
            }
        }
        order.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let gts: Vec<Vec<&GroundTruth>> = (0..images)
            .map(|i| truths.get(i).unwrap_or(&empty_t).iter().filter(|g| g.class == class).collect())
            .collect();
        let n_gt = gts.iter().flatten().filter(|g| !g.difficult).count();
        let mut matched: Vec<Vec<bool>> = gts.iter().map(|g| vec![false; g.len()]).collect();
        // Cumulative (tp, fp) after each counted detection.
        let mut curve: Vec<(usize, usize)> = Vec::with_capacity(order.len());
        let (mut tp, mut fp) = (0, 0);
        for &(_, img, j) in &order {
            let d = &dets[img][j];
            let mut best: Option<(usize, f32)> = None;
            for (k, g) in gts[img].iter().enumerate() {
                let o = box_iou(&d.bbox, &g.bbox);
                if best.is_none_or(|(_, b)| o > b) {
                    best = Some((k, o));
                }
            }
            match best {
                Some((k, o)) if o >= iou_thresh => {
                    if gts[img][k].difficult {
                        continue;
                    }
                    if matched[img][k] {
                        fp += 1;
                    } else {
                        matched[img][k] = true;
                        tp += 1;
                        iou_sum += f64::from(o);
                        iou_n += 1;
                    }
                }
                _ => fp += 1,
            }
            curve.push((tp, fp));
        }
        let (ap, ap11) =
            if n_gt == 0 { (None, None) } else { (Some(ap_all(&curve, n_gt)), Some(ap_11(&curve, n_gt))) };
        per_class.push(ClassAp { name: name.clone(), ap, ap11, tp, fp, n_gt });
    }
    let with_gt: Vec<&ClassAp> = per_class.iter().filter(|c| c.ap.is_some()).collect();
    let mean = |f: fn(&ClassAp) -> f64| {
        if with_gt.is_empty() {
            0.0
        } else {
            with_gt.iter().map(|c| f(c)).sum::<f64>() / with_gt.len() as f64
        }
    };
    let map50 = mean(|c| c.ap.unwrap_or(0.0));
    let map50_11pt = mean(|c| c.ap11.unwrap_or(0.0));
    let avg_iou = if iou_n == 0 { 0.0 } else { iou_sum / iou_n as f64 };
    MapReport { iou: iou_thresh, map50, map50_11pt, per_class, avg_iou }
}

/// Recall and precision at each point of the curve.
fn pr(curve: &[(usize, usize)], n_gt: usize) -> Vec<(f64, f64)> {
    curve.iter().map(|&(tp, fp)| (tp as f64 / n_gt as f64, tp as f64 / (tp + fp) as f64)).collect()
}

/// VOC2010+ all-point AP.
fn ap_all(curve: &[(usize, usize)], n_gt: usize) -> f64 {
    let pts = pr(curve, n_gt);
    let mut mrec = vec![0.0];
    let mut mpre = vec![0.0];
    for &(r, p) in &pts {
        mrec.push(r);
        mpre.push(p);
    }
    mrec.push(1.0);
    mpre.push(0.0);
    for i in (0..mpre.len() - 1).rev() {
        mpre[i] = mpre[i].max(mpre[i + 1]);
    }
    (1..mrec.len()).filter(|&i| mrec[i] != mrec[i - 1]).map(|i| (mrec[i] - mrec[i - 1]) * mpre[i]).sum()
}

/// VOC2007 11-point AP.
fn ap_11(curve: &[(usize, usize)], n_gt: usize) -> f64 {
    let pts = pr(curve, n_gt);
    (0..=10)
        .map(|k| {
            let t = k as f64 / 10.0;
            pts.iter().filter(|(r, _)| *r >= t).map(|&(_, p)| p).fold(0.0, f64::max)
        })
        .sum::<f64>()
        / 11.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(class: usize, score: f32, bbox: [f32; 4]) -> Detection {
        Detection { class, score, bbox }
    }
    fn g(class: usize, bbox: [f32; 4]) -> GroundTruth {
        GroundTruth { class, bbox, difficult: false }
    }
    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("c{i}")).collect()
    }
    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    const A: [f32; 4] = [0.0, 0.0, 10.0, 10.0];
    const B: [f32; 4] = [20.0, 20.0, 30.0, 30.0];
    const FAR: [f32; 4] = [50.0, 50.0, 60.0, 60.0];

    #[test]
    fn perfect_detections() {
        let truths = vec![vec![g(0, A), g(1, B)], vec![g(0, B)]];
        let dets = vec![vec![d(0, 0.9, A), d(1, 0.8, B)], vec![d(0, 0.7, B)]];
        let r = evaluate(&dets, &truths, &names(2), 0.5);
        assert_eq!((r.map50, r.map50_11pt, r.avg_iou), (1.0, 1.0, 1.0));
        assert_eq!((r.per_class[0].tp, r.per_class[0].fp, r.per_class[0].n_gt), (2, 0, 2));
    }

    #[test]
    fn a_false_positive_above_a_true_positive() {
        // FP (0.9) then TP (0.8): precision 0 then ½ at recall 1 → AP ½, AP11 ½.
        let r = evaluate(&[vec![d(0, 0.9, FAR), d(0, 0.8, A)]], &[vec![g(0, A)]], &names(1), 0.5);
        assert!(close(r.map50, 0.5) && close(r.map50_11pt, 0.5), "{r:?}");
        assert_eq!((r.per_class[0].tp, r.per_class[0].fp), (1, 1));
        // Below it instead: AP 1.
        let r = evaluate(&[vec![d(0, 0.7, FAR), d(0, 0.8, A)]], &[vec![g(0, A)]], &names(1), 0.5);
        assert!(close(r.map50, 1.0));
    }

    #[test]
    fn duplicates_are_false_positives_and_11_point_differs() {
        // Two boxes; detections: TP on A (0.9), a duplicate of A (0.8), TP on B (0.7).
        // recall  .5 .5 1;  precision 1 .5 2/3.
        // all-point: .5·1 + .5·(2/3) = 5/6.
        // 11-point: r = 0..0.5 (6 points) → 1, r = .6..1 (5 points) → 2/3: (6 + 10/3)/11 = 28/33.
        let a_shifted = [0.5, 0.0, 10.5, 10.0];
        let dets = vec![vec![d(0, 0.9, A), d(0, 0.8, a_shifted)], vec![d(0, 0.7, B)]];
        let truths = vec![vec![g(0, A)], vec![g(0, B)]];
        let r = evaluate(&dets, &truths, &names(1), 0.5);
        assert!(close(r.map50, 5.0 / 6.0), "{r:?}");
        assert!(close(r.map50_11pt, 28.0 / 33.0), "{r:?}");
        assert_eq!((r.per_class[0].tp, r.per_class[0].fp, r.per_class[0].n_gt), (2, 1, 2));
        // avg IoU over the two true positives (both exact).
        assert!(close(r.avg_iou, 1.0));
    }

    #[test]
    fn difficult_boxes_count_neither_way() {
        let hard = GroundTruth { class: 0, bbox: B, difficult: true };
        // The detection on the difficult box is ignored: no FP; recall is over A only.
        let r = evaluate(&[vec![d(0, 0.95, B), d(0, 0.9, A)]], &[vec![hard, g(0, A)]], &names(1), 0.5);
        assert!(close(r.map50, 1.0), "{r:?}");
        assert_eq!((r.per_class[0].tp, r.per_class[0].fp, r.per_class[0].n_gt), (1, 0, 1));
        // A class whose only box is difficult has no AP.
        let r = evaluate(&[vec![d(0, 0.9, B)]], &[vec![hard]], &names(1), 0.5);
        assert_eq!(r.per_class[0].ap, None);
        assert_eq!(r.map50, 0.0);
    }

    #[test]
    fn classes_without_ground_truth_are_left_out() {
        // Class 1 has detections but no boxes: no AP, not in the mean. Class 2 has a box
        // and no detection: AP 0, in the mean.
        let r = evaluate(&[vec![d(0, 0.9, A), d(1, 0.8, B)]], &[vec![g(0, A), g(2, FAR)]], &names(3), 0.5);
        assert_eq!(r.per_class[1].ap, None);
        assert_eq!(r.per_class[1].fp, 1);
        assert_eq!(r.per_class[2].ap, Some(0.0));
        assert!(close(r.map50, 0.5), "{r:?}");
    }

    #[test]
    fn iou_threshold_and_average_iou() {
        // IoU of A and [0,0,10,5] is ½: a hit at 0.5 (>=), a miss at 0.6.
        let half = [0.0, 0.0, 10.0, 5.0];
        let r = evaluate(&[vec![d(0, 0.9, half)]], &[vec![g(0, A)]], &names(1), 0.5);
        assert!(close(r.map50, 1.0) && close(r.avg_iou, 0.5));
        let r = evaluate(&[vec![d(0, 0.9, half)]], &[vec![g(0, A)]], &names(1), 0.6);
        assert!(close(r.map50, 0.0) && r.avg_iou == 0.0);
        // A detection goes to the best-overlapping box of its class.
        let r =
            evaluate(&[vec![d(0, 0.9, half), d(0, 0.8, A)]], &[vec![g(0, half), g(0, A)]], &names(1), 0.5);
        assert!(close(r.map50, 1.0));
    }

    #[test]
    fn empty_inputs() {
        let r = evaluate(&[], &[], &names(2), 0.5);
        assert_eq!((r.map50, r.map50_11pt, r.avg_iou), (0.0, 0.0, 0.0));
        let r = evaluate(&[], &[vec![g(0, A)]], &names(1), 0.5);
        assert_eq!(r.per_class[0].ap, Some(0.0));
    }
}
