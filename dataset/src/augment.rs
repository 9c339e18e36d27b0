//! Darknet's data augmentation for YOLO training (`load_data_detection`, the path
//! without mosaic / mixup), on ternc's planar images.
//!
//! Per sample, in Darknet's order:
//! 1. **Jitter crop**: each side moves by a random whole number of pixels in
//!    `[-jitter·size, +jitter·size]` (inwards crops, outwards pads); `resize=` (when
//!    not 1) adds a random scale the same way. Pixels outside the image repeat the
//!    nearest edge pixel, as Darknet's C `crop_image` does (its OpenCV build fills
//!    with the image's mean colour instead).
//! 2. **Resize** to the network size with Darknet's `resize_image`
//!    ([`ternc_runtime::image::resize`], bit exact), or with `letterbox`,
//!    [`ternc_runtime::image::letterbox`] of the crop (Darknet widens the crop to the
//!    network's aspect ratio instead; both keep the aspect ratio, ours equals the
//!    inference letterbox exactly when there is no jitter).
//! 3. **Flip** left-right with probability ½ (`flip=1`).
//! 4. **Hue / saturation / exposure** in HSV (`distort_image`): hue shifted by
//!    `U(-hue, hue)` (wrapping), saturation and value scaled by `rand_scale`
//!    (`U(1, s)` or its inverse, ½ each), then clamped to 0..1. With hue 0 and
//!    saturation / exposure 1 the image is left untouched (Darknet would still round
//!    through HSV).
//! 5. **Boxes** as `correct_boxes` + `fill_truth_detection`: boxes with `x = y = 0`
//!    or wholly outside the image are dropped; the rest are mapped through the crop
//!    (and letterbox), mirrored with the image, clipped to 0..1; boxes smaller than
//!    one network pixel (`w < 1/net_w` or `h < 1/net_h`) or whose centre falls
//!    outside `(0, 1]` are dropped; at most `max_boxes` are kept (a random subset, as
//!    Darknet's shuffle, only when there are more). Difficult objects are dropped.
//!
//! All randomness comes from the caller's RNG, so a sample's result depends only on
//! the seed it was given.

use rand::Rng;
use ternc_runtime::image::{letterbox, letterbox_size, resize, Image};

use crate::labels::Label;

/// A ground-truth box for training: centre and size relative to the network input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Truth {
    pub class: usize,
    pub cx: f32,
    pub cy: f32,
    pub w: f32,
    pub h: f32,
}

/// Augmentation settings, named after the cfg keys (`[yolo]`/`[region]` `jitter`,
/// `resize`, `max`; `[net]` `hue`, `saturation`, `exposure`, `flip`, `letter_box`).
#[derive(Debug, Clone, PartialEq)]
pub struct Augment {
    pub jitter: f32,
    pub resize: f32,
    pub hue: f32,
    pub saturation: f32,
    pub exposure: f32,
    pub flip: bool,
    pub letterbox: bool,
    pub max_boxes: usize,
}

impl Default for Augment {
    /// Darknet's defaults for a detector: `jitter=.2`, `hue=0`, `saturation=1`,
    /// `exposure=1`, `flip=1`, `max=200` (`hue`, `saturation`, `exposure` are usually
    /// set in the cfg: `.1`, `1.5`, `1.5`).
    fn default() -> Self {
        Augment {
            jitter: 0.2,
            resize: 1.0,
            hue: 0.0,
            saturation: 1.0,
            exposure: 1.0,
            flip: true,
            letterbox: false,
            max_boxes: 200,
        }
    }
}

impl Augment {
    /// No augmentation at all: the network input is the plain resize (or letterbox).
    pub fn none() -> Self {
        Augment { jitter: 0.0, flip: false, ..Augment::default() }
    }
}

/// Darknet's `rand_uniform_strong`.
fn uniform(rng: &mut impl Rng, a: f32, b: f32) -> f32 {
    let (lo, hi) = if b < a { (b, a) } else { (a, b) };
    rng.gen::<f32>() * (hi - lo) + lo
}

/// Darknet's `rand_scale`: `U(1, s)`, or its inverse, with probability ½ each.
fn rand_scale(rng: &mut impl Rng, s: f32) -> f32 {
    let scale = uniform(rng, 1.0, s);
    if rng.gen::<bool>() {
        scale
    } else {
        1.0 / scale
    }
}

/// Darknet's `rand_precalc_random`, truncated to `int` as its callers do.
fn precalc(min: i64, max: i64, r: f32) -> i64 {
    let (lo, hi) = if max < min { (max as f32, min as f32) } else { (min as f32, max as f32) };
    (r * (hi - lo) + lo) as i64
}

/// The random draws of one sample, made in Darknet's order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Draws {
    pub pleft: i64,
    pub pright: i64,
    pub ptop: i64,
    pub pbot: i64,
    pub flip: bool,
    pub dhue: f32,
    pub dsat: f32,
    pub dexp: f32,
}

impl Augment {
    pub fn draw(&self, rng: &mut impl Rng, ow: usize, oh: usize) -> Draws {
        let (ow, oh) = (ow as i64, oh as i64);
        let dw = (ow as f32 * self.jitter) as i64;
        let dh = (oh as f32 * self.jitter) as i64;
        let resize_down = if self.resize > 1.0 { 1.0 / self.resize } else { self.resize };
        let resize_up = if self.resize < 1.0 { 1.0 / self.resize } else { self.resize };
        let min_rdw = (ow as f32 * (1.0 - 1.0 / resize_down) / 2.0) as i64;
        let min_rdh = (oh as f32 * (1.0 - 1.0 / resize_down) / 2.0) as i64;
        let max_rdw = (ow as f32 * (1.0 - 1.0 / resize_up) / 2.0) as i64;
        let max_rdh = (oh as f32 * (1.0 - 1.0 / resize_up) / 2.0) as i64;
        let resize_r1: f32 = rng.gen();
        let resize_r2: f32 = rng.gen();
        let r: [f32; 4] = [rng.gen(), rng.gen(), rng.gen(), rng.gen()];
        let flip = self.flip && rng.gen::<bool>();
        let _r_scale: f32 = rng.gen(); // drawn, unused, as in Darknet
        let dhue = uniform(rng, -self.hue, self.hue);
        let dsat = rand_scale(rng, self.saturation);
        let dexp = rand_scale(rng, self.exposure);
        let mut d = Draws {
            pleft: precalc(-dw, dw, r[0]),
            pright: precalc(-dw, dw, r[1]),
            ptop: precalc(-dh, dh, r[2]),
            pbot: precalc(-dh, dh, r[3]),
            flip,
            dhue,
            dsat,
            dexp,
        };
        let (hi_w, hi_h) = if self.resize < 1.0 { (0, 0) } else { (max_rdw, max_rdh) };
        d.pleft += precalc(min_rdw, hi_w, resize_r1);
        d.pright += precalc(min_rdw, hi_w, resize_r2);
        d.ptop += precalc(min_rdh, hi_h, resize_r1);
        d.pbot += precalc(min_rdh, hi_h, resize_r2);
        d
    }

    /// Augments one image and its labels into a `net_w × net_h` network input.
    pub fn apply(
        &self,
        im: &Image,
        labels: &[Label],
        net_w: usize,
        net_h: usize,
        rng: &mut impl Rng,
    ) -> (Image, Vec<Truth>) {
        let d = self.draw(rng, im.w, im.h);
        let (ow, oh) = (im.w as i64, im.h as i64);
        // A crop can only be empty with jitter >= 0.5; keep one pixel.
        let swidth = (ow - d.pleft - d.pright).max(1);
        let sheight = (oh - d.ptop - d.pbot).max(1);
        let cropped = crop(im, d.pleft, d.ptop, swidth as usize, sheight as usize);
        let sx = swidth as f32 / ow as f32;
        let sy = sheight as f32 / oh as f32;
        let dx = (d.pleft as f32 / ow as f32) / sx;
        let dy = (d.ptop as f32 / oh as f32) / sy;
        // Box mapping after the crop: v ↦ v·a + b per axis (identity unless letterboxed).
        let (mut sized, post) = if self.letterbox {
            let (nw, nh) = letterbox_size(cropped.w, cropped.h, net_w, net_h);
            let (ox, oy) = ((net_w - nw.min(net_w)) / 2, (net_h - nh.min(net_h)) / 2);
            let post = [
                nw as f32 / net_w as f32,
                ox as f32 / net_w as f32,
                nh as f32 / net_h as f32,
                oy as f32 / net_h as f32,
            ];
            (letterbox(&cropped, net_w, net_h), Some(post))
        } else {
            (resize(&cropped, net_w, net_h), None)
        };
        if d.flip {
            flip_image(&mut sized);
        }
        if d.dhue != 0.0 || d.dsat != 1.0 || d.dexp != 1.0 {
            distort(&mut sized, d.dhue, d.dsat, d.dexp);
        }
        let truths = self.boxes(labels, d.flip, dx, dy, 1.0 / sx, 1.0 / sy, post, net_w, net_h, rng);
        (sized, truths)
    }

    /// `correct_boxes` + `fill_truth_detection`.
    #[allow(clippy::too_many_arguments)]
    fn boxes(
        &self,
        labels: &[Label],
        flip: bool,
        dx: f32,
        dy: f32,
        sx: f32,
        sy: f32,
        post: Option<[f32; 4]>,
        net_w: usize,
        net_h: usize,
        rng: &mut impl Rng,
    ) -> Vec<Truth> {
        let lowest_w = 1.0 / net_w as f32;
        let lowest_h = 1.0 / net_h as f32;
        let mut out = Vec::new();
        // No crop, letterbox or flip: boxes inside the image are kept exactly as
        // written (the general path would round them through their edges).
        let identity = !flip && sx == 1.0 && sy == 1.0 && dx == 0.0 && dy == 0.0 && post.is_none();
        for l in labels.iter().filter(|l| !l.difficult) {
            if l.cx == 0.0 && l.cy == 0.0 {
                continue;
            }
            if l.cx + l.w / 2.0 < 0.0
                || l.cy + l.h / 2.0 < 0.0
                || l.cx - l.w / 2.0 > 1.0
                || l.cy - l.h / 2.0 > 1.0
            {
                continue;
            }
            // Within rounding of the six decimals label files usually hold.
            const EPS: f32 = 1e-5;
            let inside = l.cx - l.w / 2.0 >= -EPS
                && l.cx + l.w / 2.0 <= 1.0 + EPS
                && l.cy - l.h / 2.0 >= -EPS
                && l.cy + l.h / 2.0 <= 1.0 + EPS;
            if identity && inside {
                let (x, y, w, h) = (l.cx, l.cy, l.w.min(1.0), l.h.min(1.0));
                if w >= lowest_w && h >= lowest_h && x > 0.0 && x <= 1.0 && y > 0.0 && y <= 1.0 {
                    out.push(Truth { class: l.class, cx: x, cy: y, w, h });
                }
                continue;
            }
            let mut left = (l.cx - l.w / 2.0) * sx - dx;
            let mut right = (l.cx + l.w / 2.0) * sx - dx;
            let mut top = (l.cy - l.h / 2.0) * sy - dy;
            let mut bottom = (l.cy + l.h / 2.0) * sy - dy;
            if let Some([ax, bx, ay, by]) = post {
                left = left * ax + bx;
                right = right * ax + bx;
                top = top * ay + by;
                bottom = bottom * ay + by;
            }
            if flip {
                (left, right) = (1.0 - right, 1.0 - left);
            }
            let (left, right) = (left.clamp(0.0, 1.0), right.clamp(0.0, 1.0));
            let (top, bottom) = (top.clamp(0.0, 1.0), bottom.clamp(0.0, 1.0));
            let (x, y) = ((left + right) / 2.0, (top + bottom) / 2.0);
            let (w, h) = ((right - left).clamp(0.0, 1.0), (bottom - top).clamp(0.0, 1.0));
            if w < lowest_w || h < lowest_h || x <= 0.0 || x > 1.0 || y <= 0.0 || y > 1.0 {
                continue;
            }
            out.push(Truth { class: l.class, cx: x, cy: y, w, h });
        }
        if out.len() > self.max_boxes {
            // Darknet shuffles the boxes and keeps the first `max`.
            for i in 0..out.len() {
                let j = rng.gen_range(0..out.len());
                out.swap(i, j);
            }
            out.truncate(self.max_boxes);
        }
        out
    }
}

/// Darknet's `crop_image`: a `w × h` window at `(dx, dy)`, coordinates outside the
/// image clamped to its edge.
pub fn crop(im: &Image, dx: i64, dy: i64, w: usize, h: usize) -> Image {
    let mut out = Image::filled(im.c, h, w, 0.0);
    if im.is_empty() {
        return out;
    }
    let cols: Vec<usize> = (0..w as i64).map(|i| (i + dx).clamp(0, im.w as i64 - 1) as usize).collect();
    for k in 0..im.c {
        for j in 0..h {
            let r = (j as i64 + dy).clamp(0, im.h as i64 - 1) as usize;
            let src = &im.data[(k * im.h + r) * im.w..][..im.w];
            let dst = &mut out.data[(k * h + j) * w..][..w];
            for (d, &c) in dst.iter_mut().zip(&cols) {
                *d = src[c];
            }
        }
    }
    out
}

/// Darknet's `flip_image`: mirror left-right in place.
pub fn flip_image(im: &mut Image) {
    let w = im.w;
    if w == 0 {
        return;
    }
    for row in im.data.chunks_exact_mut(w) {
        row.reverse();
    }
}

/// Darknet's `distort_image`: RGB → HSV, scale S and V, shift H (wrapping), back to
/// RGB, clamp to 0..1 (for 3-channel images; otherwise value only).
pub fn distort(im: &mut Image, hue: f32, sat: f32, val: f32) {
    let n = im.h * im.w;
    if im.c < 3 {
        for v in &mut im.data[..n] {
            *v *= val;
        }
    } else {
        let (r, rest) = im.data.split_at_mut(n);
        let (g, b) = rest.split_at_mut(n);
        for i in 0..n {
            let (mut h, mut s, mut v) = rgb_to_hsv(r[i], g[i], b[i]);
            s *= sat;
            v *= val;
            h += hue;
            if h > 1.0 {
                h -= 1.0;
            }
            if h < 0.0 {
                h += 1.0;
            }
            (r[i], g[i], b[i]) = hsv_to_rgb(h, s, v);
        }
    }
    for v in &mut im.data {
        *v = v.clamp(0.0, 1.0);
    }
}

/// Darknet's `rgb_to_hsv` for one pixel (h in 0..1).
pub fn rgb_to_hsv(r: f32, g: f32, b: f32) -> (f32, f32, f32) {
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let delta = max - min;
    if max == 0.0 {
        return (0.0, 0.0, max);
    }
    let s = delta / max;
    let mut h = if delta == 0.0 {
        // Darknet divides 0 by 0 here (NaN hue, harmless since s = 0); use 0.
        0.0
    } else if r == max {
        (g - b) / delta
    } else if g == max {
        2.0 + (b - r) / delta
    } else {
        4.0 + (r - g) / delta
    };
    if h < 0.0 {
        h += 6.0;
    }
    (h / 6.0, s, max)
}

/// Darknet's `hsv_to_rgb` for one pixel.
pub fn hsv_to_rgb(h: f32, s: f32, v: f32) -> (f32, f32, f32) {
    if s == 0.0 {
        return (v, v, v);
    }
    let h = 6.0 * h;
    let index = h.floor();
    let f = h - index;
    let p = v * (1.0 - s);
    let q = v * (1.0 - s * f);
    let t = v * (1.0 - s * (1.0 - f));
    match index as i64 {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn ramp(w: usize, h: usize) -> Image {
        let n = w * h;
        Image { c: 3, h, w, data: (0..3 * n).map(|i| ((i * 37) % 251) as f32 / 251.0).collect() }
    }

    fn label(class: usize, cx: f32, cy: f32, w: f32, h: f32) -> Label {
        Label { class, cx, cy, w, h, difficult: false }
    }

    #[test]
    fn no_augmentation_is_the_plain_resize_and_keeps_boxes() {
        let im = ramp(40, 30);
        let labels = [label(1, 0.25, 0.5, 0.2, 0.4), label(0, 0.75, 0.375, 0.5, 0.25)];
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let (out, truths) = Augment::none().apply(&im, &labels, 16, 24, &mut rng);
        assert_eq!(out, resize(&im, 16, 24));
        assert_eq!(
            truths,
            [
                Truth { class: 1, cx: 0.25, cy: 0.5, w: 0.2, h: 0.4 },
                Truth { class: 0, cx: 0.75, cy: 0.375, w: 0.5, h: 0.25 }
            ]
        );
    }

    #[test]
    fn letterbox_without_jitter_is_the_inference_letterbox() {
        // 40×20 into 32×32: content 32×16 at dy = 8, so y ↦ y/2 + 1/4.
        let im = ramp(40, 20);
        let aug = Augment { letterbox: true, ..Augment::none() };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let (out, t) = aug.apply(&im, &[label(2, 0.5, 0.5, 0.5, 0.5)], 32, 32, &mut rng);
        assert_eq!(out, letterbox(&im, 32, 32));
        assert_eq!(t, [Truth { class: 2, cx: 0.5, cy: 0.5, w: 0.5, h: 0.25 }]);
    }

    #[test]
    fn flip_mirrors_image_and_boxes() {
        let im = ramp(20, 10);
        let aug = Augment { flip: true, ..Augment::none() };
        let labels = [label(0, 0.25, 0.5, 0.25, 0.5)];
        // Find seeds that flip and that do not (p = ½ each).
        let (mut flipped, mut plain) = (false, false);
        for seed in 0..20 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let (out, t) = aug.apply(&im, &labels, 20, 10, &mut rng);
            if out == im {
                plain = true;
                assert_eq!(t[0].cx, 0.25);
            } else {
                flipped = true;
                let mut m = im.clone();
                flip_image(&mut m);
                assert_eq!(out, m);
                assert_eq!((t[0].cx, t[0].cy, t[0].w, t[0].h), (0.75, 0.5, 0.25, 0.5));
                // Pixel (x, y) moved to (w−1−x, y).
                assert_eq!(out.data[3 * 20 + 19], im.data[3 * 20]);
            }
        }
        assert!(flipped && plain);
    }

    #[test]
    fn crop_maps_boxes_like_darknet() {
        // A 100×100 image cropped by pleft = 10, ptop = 20, pright = 30, pbot = 0
        // (swidth 60, sheight 80), drawn by hand through `boxes`.
        let aug = Augment::none();
        let (sx, sy) = (60.0f32 / 100.0, 80.0f32 / 100.0);
        let (dx, dy) = ((10.0f32 / 100.0) / sx, (20.0f32 / 100.0) / sy);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let labels = [
            label(0, 0.4, 0.6, 0.2, 0.2),  // pixels 30..50 × 50..70 → crop 20..40 × 30..50
            label(1, 0.9, 0.5, 0.2, 0.2),  // pixels 80..100: beyond the crop's right edge 70
            label(2, 0.05, 0.5, 0.1, 0.2), // pixels 0..10: left of the crop, clipped to 0 width
            label(3, 0.0, 0.0, 0.5, 0.5),  // x = y = 0: dropped as Darknet does
            label(4, 1.5, 0.5, 0.2, 0.2),  // wholly outside
            label(0, 0.65, 0.5, 0.2, 0.2), // pixels 55..75 → 45..65, clipped at 60
        ];
        let t = aug.boxes(&labels, false, dx, dy, 1.0 / sx, 1.0 / sy, None, 64, 64, &mut rng);
        assert_eq!(t.len(), 2, "{t:?}");
        let close = |a: f32, b: f32| (a - b).abs() < 1e-5;
        assert!(close(t[0].cx, 30.0 / 60.0) && close(t[0].cy, 40.0 / 80.0), "{t:?}");
        assert!(close(t[0].w, 20.0 / 60.0) && close(t[0].h, 20.0 / 80.0), "{t:?}");
        assert!(close(t[1].cx, 52.5 / 60.0) && close(t[1].w, 15.0 / 60.0), "{t:?}");
        // Flipped: x ↦ 1 − x.
        let t = aug.boxes(&labels[..1], true, dx, dy, 1.0 / sx, 1.0 / sy, None, 64, 64, &mut rng);
        assert!(close(t[0].cx, 30.0 / 60.0) && close(t[0].w, 20.0 / 60.0));
        // Tiny boxes (under one network pixel) are dropped.
        let t =
            aug.boxes(&[label(0, 0.5, 0.5, 0.01, 0.5)], false, 0.0, 0.0, 1.0, 1.0, None, 64, 64, &mut rng);
        assert!(t.is_empty());
        let t =
            aug.boxes(&[label(0, 0.5, 0.5, 0.02, 0.5)], false, 0.0, 0.0, 1.0, 1.0, None, 64, 64, &mut rng);
        assert_eq!(t.len(), 1);
        // Difficult objects are not trained on.
        let hard = Label { difficult: true, ..label(0, 0.5, 0.5, 0.5, 0.5) };
        assert!(aug.boxes(&[hard], false, 0.0, 0.0, 1.0, 1.0, None, 64, 64, &mut rng).is_empty());
    }

    #[test]
    fn max_boxes_keeps_a_subset() {
        let aug = Augment { max_boxes: 3, ..Augment::none() };
        let labels: Vec<Label> = (0..10).map(|i| label(i, 0.05 + 0.09 * i as f32, 0.5, 0.05, 0.05)).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let t = aug.boxes(&labels, false, 0.0, 0.0, 1.0, 1.0, None, 64, 64, &mut rng);
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn crop_clamps_to_the_edges() {
        let im = Image { c: 1, h: 2, w: 3, data: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0] };
        let c = crop(&im, -1, 1, 5, 2);
        assert_eq!(c.data, [4.0, 4.0, 5.0, 6.0, 6.0, 4.0, 4.0, 5.0, 6.0, 6.0]);
        assert_eq!(crop(&im, 1, 0, 1, 1).data, [2.0]);
    }

    #[test]
    fn jitter_stays_in_range_and_varies() {
        let aug = Augment { jitter: 0.25, ..Augment::none() };
        let mut seen = std::collections::HashSet::new();
        for seed in 0..200 {
            let d = aug.draw(&mut ChaCha8Rng::seed_from_u64(seed), 100, 40);
            for p in [d.pleft, d.pright] {
                assert!((-25..=25).contains(&p), "{d:?}");
            }
            for p in [d.ptop, d.pbot] {
                assert!((-10..=10).contains(&p), "{d:?}");
            }
            assert!(!d.flip && d.dhue == 0.0 && d.dsat == 1.0 && d.dexp == 1.0);
            seen.insert(d.pleft);
        }
        assert!(seen.len() > 20);
    }

    #[test]
    fn hsv_round_trip_and_shifts() {
        for &(r, g, b) in
            &[(0.2f32, 0.4, 0.6), (0.9, 0.1, 0.3), (0.5, 0.5, 0.5), (0.0, 0.0, 0.0), (0.3, 0.8, 0.1)]
        {
            let (h, s, v) = rgb_to_hsv(r, g, b);
            let (r2, g2, b2) = hsv_to_rgb(h, s, v);
            assert!((r - r2).abs() < 1e-6 && (g - g2).abs() < 1e-6 && (b - b2).abs() < 1e-6);
        }
        // Pure red: h = 0. A third of a turn makes it green.
        let mut im = Image { c: 3, h: 1, w: 1, data: vec![1.0, 0.0, 0.0] };
        distort(&mut im, 1.0 / 3.0, 1.0, 1.0);
        assert!((im.data[0]).abs() < 1e-6 && (im.data[1] - 1.0).abs() < 1e-6 && im.data[2].abs() < 1e-6);
        // Exposure 2 on a 0.4 grey gives 0.8; saturation does nothing to grey.
        let mut im = Image { c: 3, h: 1, w: 1, data: vec![0.4, 0.4, 0.4] };
        distort(&mut im, 0.0, 3.0, 2.0);
        assert_eq!(im.data, [0.8, 0.8, 0.8]);
        // Clamped to 1.
        distort(&mut im, 0.0, 1.0, 2.0);
        assert_eq!(im.data, [1.0, 1.0, 1.0]);
    }
}
