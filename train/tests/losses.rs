//! The two detection losses: deltas against an independently written objective (by
//! central differences in f64), hand-computed cases, and the IoU-loss derivatives.

mod common;

use common::{close, graph, uniform};
use ternc_ir::{Op, Region, Shape, Yolo};
use ternc_train::layers::{region_forward, yolo_forward};
use ternc_train::loss::boxes::{dx_box_iou, giou, iou, BoxF, IouKind};
use ternc_train::loss::region::region_image;
use ternc_train::loss::yolo::yolo_image;
use ternc_train::Truth;

fn softplus(x: f64) -> f64 {
    if x > 30.0 {
        x
    } else {
        x.exp().ln_1p()
    }
}
fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// `−∂L/∂x` by central differences.
fn neg_grad(l: &dyn Fn(&[f64]) -> f64, x: &[f32]) -> Vec<f64> {
    let mut v: Vec<f64> = x.iter().map(|&a| a as f64).collect();
    (0..v.len())
        .map(|k| {
            let x0 = v[k];
            let e = 1e-5;
            v[k] = x0 + e;
            let p = l(&v);
            v[k] = x0 - e;
            let m = l(&v);
            v[k] = x0;
            -(p - m) / (2.0 * e)
        })
        .collect()
}

/// A 3x3-grid yolo head on a 96x96 network, from cfg text (so the frontend's
/// defaults apply).
fn yolo_head(extra: &str) -> Yolo {
    let g = graph(&format!(
        "[net]\nwidth=96\nheight=96\nchannels=3\n[maxpool]\nsize=32\nstride=32\n\
         [convolutional]\nfilters=14\nsize=1\nactivation=linear\n\
         [yolo]\nmask=0,1\nanchors=10,14, 30,20, 60,70\nclasses=2\nnum=3\n{extra}"
    ));
    match &g.layer(2).op {
        Op::Yolo(y) => y.clone(),
        _ => unreachable!(),
    }
}

fn truths() -> Vec<Truth> {
    vec![Truth::new(1, 0.5, 0.2, 0.3, 0.2), Truth::new(0, 0.1, 0.8, 0.1, 0.15)]
}

#[test]
fn yolo_mse_deltas_are_the_objective_gradient() {
    let l = yolo_head("scale_x_y=1.1\nignore_thresh=1\niou_normalizer=0.5\nobj_normalizer=0.8\n");
    let s = Shape::new(14, 3, 3);
    let x = uniform(s.numel(), -2.0, 2.0, 5);
    let mut out = x.clone();
    yolo_forward(&mut out, s, &l);
    let mut delta = vec![0.0; s.numel()];
    let st = yolo_image(&l, &out, s, 96, 96, &truths(), &mut delta);
    assert_eq!(st.count, 2);
    // Darknet's objective, written out: BCE on objectness and classes, the coordinate
    // terms whose gradients are `scale·norm·(t − out)`.
    let plane = 9;
    let (sxy, beta) = (1.1f64, -0.05f64);
    let idx = |n: usize, e: usize, loc: usize| n * 7 * plane + e * plane + loc;
    // (anchor in mask, cell, truth): truth 0 → anchor 1 (30x20), cell (1,0); truth 1 → anchor 0, cell (0,2)
    let assigned = [(1usize, 1usize, 0usize), (0, 6, 1)];
    let anchors = [(10.0, 14.0), (30.0, 20.0)];
    let objective = |v: &[f64]| -> f64 {
        let mut sum = 0.0;
        for n in 0..2 {
            for loc in 0..plane {
                let hit = assigned.iter().find(|a| a.0 == n && a.1 == loc);
                let o = v[idx(n, 4, loc)];
                let Some(&(_, _, t)) = hit else {
                    sum += 0.8 * softplus(o); // target 0
                    continue;
                };
                let tr = truths()[t];
                sum += 0.8 * softplus(-o); // target 1
                for c in 0..2 {
                    let y = if c == tr.class { 1.0 } else { 0.0 };
                    let z = v[idx(n, 5 + c, loc)];
                    sum += softplus(z) - y * z;
                }
                let (i, j) = ((loc % 3) as f64, (loc / 3) as f64);
                let scale = (2.0 - tr.w * tr.h) as f64 * 0.5;
                let tx = tr.x as f64 * 3.0 - i;
                let ty = tr.y as f64 * 3.0 - j;
                let tw = (tr.w as f64 * 96.0 / anchors[n].0).ln();
                let th = (tr.h as f64 * 96.0 / anchors[n].1).ln();
                for (e, t) in [(0, tx), (1, ty)] {
                    let z = v[idx(n, e, loc)];
                    sum += scale * (sxy * softplus(z) - (t - beta) * z);
                }
                for (e, t) in [(2, tw), (3, th)] {
                    sum += 0.5 * scale * (t - v[idx(n, e, loc)]).powi(2);
                }
            }
        }
        sum
    };
    let g = neg_grad(&objective, &x);
    for k in 0..x.len() {
        assert!(close(delta[k] as f64, g[k], 1e-4, 1e-3), "entry {k}: delta {} vs -dL/dx {}", delta[k], g[k]);
    }
}

#[test]
fn yolo_ignore_thresh_and_hand_values() {
    // all logits 0: σ = 0.5, predictions are anchor-sized boxes at the cell centres
    let l = yolo_head("ignore_thresh=0.05\n");
    let s = Shape::new(14, 3, 3);
    let x = vec![0.0f32; s.numel()];
    let mut out = x.clone();
    yolo_forward(&mut out, s, &l);
    let mut delta = vec![0.0; s.numel()];
    let t = truths();
    yolo_image(&l, &out, s, 96, 96, &t, &mut delta);
    let plane = 9;
    let idx = |n: usize, e: usize, loc: usize| n * 7 * plane + e * plane + loc;
    for n in 0..2 {
        for loc in 0..plane {
            let (i, j) = ((loc % 3) as f32, (loc / 3) as f32);
            let a = [(10.0, 14.0), (30.0, 20.0)][n];
            let pred = BoxF { x: (i + 0.5) / 3.0, y: (j + 0.5) / 3.0, w: a.0 / 96.0, h: a.1 / 96.0 };
            let best = t.iter().map(|tr| iou(pred, tr.as_box())).fold(0.0, f32::max);
            let assigned = (n, loc) == (1, 1) || (n, loc) == (0, 6);
            let want = if assigned {
                1.0 - 0.5
            } else if best > 0.05 {
                0.0
            } else {
                -0.5
            };
            assert_eq!(delta[idx(n, 4, loc)], want, "objectness delta of anchor {n} cell {loc}");
        }
    }
    // truth 0 at cell (1, 0), anchor 1: tx = 0.5·3 − 1, scale = 2 − 0.06, iou_normalizer 0.75
    let k = idx(1, 0, 1);
    assert!((delta[k] - 1.94 * (0.5 - 0.5) * 0.75).abs() < 1e-6);
    let k = idx(1, 1, 1);
    assert!((delta[k] - 1.94 * (0.6 - 0.5) * 0.75).abs() < 1e-6, "{}", delta[k]);
    let k = idx(1, 2, 1);
    assert!((delta[k] - 1.94 * ((0.3f32 * 96.0 / 30.0).ln() - 0.0) * 0.75).abs() < 1e-5);
    // class deltas: 1 − 0.5 for class 1, 0 − 0.5 for class 0
    assert_eq!((delta[idx(1, 5, 1)], delta[idx(1, 6, 1)]), (-0.5, 0.5));
}

#[test]
fn yolo_giou_uses_the_iou_derivative() {
    let l = yolo_head("iou_loss=giou\niou_normalizer=0.07\nignore_thresh=1\n");
    let s = Shape::new(14, 3, 3);
    let x = uniform(s.numel(), -1.0, 1.0, 9);
    let mut out = x.clone();
    yolo_forward(&mut out, s, &l);
    let mut delta = vec![0.0; s.numel()];
    let t = truths();
    yolo_image(&l, &out, s, 96, 96, &t, &mut delta);
    let plane = 9;
    let b = |e: usize| 7 * plane + e * plane + 1; // anchor 1, cell 1
    let pred = BoxF {
        x: (1.0 + out[b(0)]) / 3.0,
        y: (0.0 + out[b(1)]) / 3.0,
        w: out[b(2)].exp() * 30.0 / 96.0,
        h: out[b(3)].exp() * 20.0 / 96.0,
    };
    let d = dx_box_iou(pred, t[0].as_box(), IouKind::Giou);
    let want = [d[0] * 0.07, d[1] * 0.07, d[2] * out[b(2)].exp() * 0.07, d[3] * out[b(3)].exp() * 0.07];
    for e in 0..4 {
        assert!((delta[b(e)] - want[e]).abs() < 1e-6, "entry {e}: {} vs {}", delta[b(e)], want[e]);
    }
}

#[test]
fn iou_and_giou_derivatives_match_finite_differences() {
    let cases = [
        (BoxF { x: 0.5, y: 0.5, w: 0.3, h: 0.2 }, BoxF { x: 0.55, y: 0.47, w: 0.25, h: 0.3 }),
        (BoxF { x: 0.3, y: 0.6, w: 0.2, h: 0.4 }, BoxF { x: 0.36, y: 0.52, w: 0.3, h: 0.2 }),
    ];
    for (ci, (p, t)) in cases.into_iter().enumerate() {
        for (kind, f) in [(IouKind::Iou, iou as fn(BoxF, BoxF) -> f32), (IouKind::Giou, giou)] {
            let d = dx_box_iou(p, t, kind);
            let e = 1e-3f32;
            let num = |k: usize| {
                let mut a = p;
                let mut b = p;
                let (pa, pb) = match k {
                    0 => (&mut a.x, &mut b.x),
                    1 => (&mut a.y, &mut b.y),
                    2 => (&mut a.w, &mut b.w),
                    _ => (&mut a.h, &mut b.h),
                };
                *pa += e;
                *pb -= e;
                (f(a, t) - f(b, t)) / (2.0 * e)
            };
            // x, y: the gradient; w, h: Darknet's undivided (twice the gradient)
            for (k, factor) in [(0, 1.0), (1, 1.0), (2, 2.0), (3, 2.0)] {
                let n = num(k) * factor;
                assert!(
                    close(d[k] as f64, n as f64, 2e-3, 2e-2),
                    "case {ci} {kind:?} entry {k}: {} vs {n}",
                    d[k]
                );
            }
        }
    }
}

#[test]
fn giou_of_disjoint_boxes_pulls_towards_the_truth() {
    // Darknet's formula is not the exact gradient here (it reuses the negative overlap
    // widths); what it must do is move the prediction towards the truth
    let (p, t) = (BoxF { x: 0.2, y: 0.2, w: 0.1, h: 0.1 }, BoxF { x: 0.6, y: 0.7, w: 0.2, h: 0.3 });
    let d = dx_box_iou(p, t, IouKind::Giou);
    assert!(d[0] > 0.0 && d[1] > 0.0, "{d:?}");
    let stepped = BoxF { x: p.x + 0.01 * d[0], y: p.y + 0.01 * d[1], ..p };
    assert!(giou(stepped, t) > giou(p, t));
}

fn region_head() -> Region {
    let g = graph(
        "[net]\nwidth=96\nheight=96\nchannels=3\n[maxpool]\nsize=32\nstride=32\n\
         [convolutional]\nfilters=16\nsize=1\nactivation=linear\n\
         [region]\nanchors=1.0,1.5, 2.0,1.0\nbias_match=1\nclasses=3\ncoords=4\nnum=2\nsoftmax=1\n\
         object_scale=5\nnoobject_scale=1\nclass_scale=1\ncoord_scale=1\nthresh=.99\n",
    );
    match &g.layer(2).op {
        Op::Region(r) => r.clone(),
        _ => unreachable!(),
    }
}

#[test]
fn region_deltas_are_the_objective_gradient() {
    let l = region_head();
    let s = Shape::new(16, 3, 3);
    let x = uniform(s.numel(), -2.0, 2.0, 11);
    let t = vec![Truth::new(2, 0.5, 0.2, 0.3, 0.4), Truth::new(0, 0.8, 0.9, 0.5, 0.2)];
    for seen in [0u64, 20000] {
        let mut out = x.clone();
        region_forward(&mut out, s, &l);
        let mut delta = vec![0.0; s.numel()];
        let st = region_image(&l, &out, s, &t, seen, &mut delta);
        assert_eq!(st.count, 2);
        let plane = 9;
        let idx = |n: usize, e: usize, loc: usize| n * 8 * plane + e * plane + loc;
        let anchors = [(1.0, 1.5), (2.0, 1.0)];
        // bias_match: truth 0 (0.9 x 1.2 cells) → anchor 0; truth 1 (1.5 x 0.6) → anchor 1
        let assigned = [(0usize, 1usize, 0usize), (1, 8, 1)];
        let warm = seen < 12800;
        let objective = |v: &[f64]| -> f64 {
            let mut sum = 0.0;
            for n in 0..2 {
                for loc in 0..plane {
                    let (i, j) = ((loc % 3) as f64, (loc / 3) as f64);
                    let sq = |a: f64, b: f64| 0.5 * (a - b) * (a - b);
                    let hit = assigned.iter().find(|a| a.0 == n && a.1 == loc);
                    let o = sigmoid(v[idx(n, 4, loc)]);
                    if let Some(&(_, _, k)) = hit {
                        let tr = t[k];
                        sum += 5.0 * sq(1.0, o);
                        let tx = tr.x as f64 * 3.0 - i;
                        let ty = tr.y as f64 * 3.0 - j;
                        let tw = (tr.w as f64 * 3.0 / anchors[n].0).ln();
                        let th = (tr.h as f64 * 3.0 / anchors[n].1).ln();
                        sum += sq(tx, sigmoid(v[idx(n, 0, loc)])) + sq(ty, sigmoid(v[idx(n, 1, loc)]));
                        sum += sq(tw, v[idx(n, 2, loc)]) + sq(th, v[idx(n, 3, loc)]);
                        let z: Vec<f64> = (0..3).map(|c| v[idx(n, 5 + c, loc)]).collect();
                        let lse = z.iter().map(|a| a.exp()).sum::<f64>().ln();
                        sum += lse - z[tr.class];
                    } else {
                        sum += 0.5 * o * o;
                        if warm {
                            // the prior: cell centre, anchor size, scale .01
                            sum += 0.01
                                * (sq(0.5, sigmoid(v[idx(n, 0, loc)])) + sq(0.5, sigmoid(v[idx(n, 1, loc)])));
                            sum += 0.01 * (sq(0.0, v[idx(n, 2, loc)]) + sq(0.0, v[idx(n, 3, loc)]));
                        }
                    }
                }
            }
            sum
        };
        let g = neg_grad(&objective, &x);
        for k in 0..x.len() {
            assert!(
                close(delta[k] as f64, g[k], 1e-4, 1e-3),
                "seen {seen} entry {k}: {} vs {}",
                delta[k],
                g[k]
            );
        }
    }
}

#[test]
fn region_rescore_targets_the_iou() {
    let mut l = region_head();
    l.rescore = true;
    let s = Shape::new(16, 3, 3);
    let x = uniform(s.numel(), -1.0, 1.0, 12);
    let mut out = x.clone();
    region_forward(&mut out, s, &l);
    let mut delta = vec![0.0; s.numel()];
    let t = vec![Truth::new(1, 0.5, 0.5, 0.3, 0.4)];
    region_image(&l, &out, s, &t, 20000, &mut delta);
    let (plane, loc) = (9, 4);
    let b = |e: usize| e * plane + loc; // anchor 0
    let pred = BoxF {
        x: (1.0 + out[b(0)]) / 3.0,
        y: (1.0 + out[b(1)]) / 3.0,
        w: out[b(2)].exp() * 1.0 / 3.0,
        h: out[b(3)].exp() * 1.5 / 3.0,
    };
    let o = out[b(4)];
    let want = 5.0 * (iou(pred, t[0].as_box()) - o) * (1.0 - o) * o;
    assert!((delta[b(4)] - want).abs() < 1e-6, "{} vs {want}", delta[b(4)]);
}
