//! The input pipeline: decoding JPEG/PNG files into Darknet's planar float layout,
//! and Darknet's own `resize_image` and `letterbox_image`, reproduced operation for
//! operation (in `f32`, like the C code) so that the network sees the same input.

use std::path::Path;

use ternc_ir::InputError;

/// A planar image as Darknet holds it: `data[k·h·w + y·w + x]`, RGB, values in 0..1.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub data: Vec<f32>,
}

impl Image {
    /// A `c`×`h`×`w` image with every value `v` (Darknet's `make_image` + `fill_image`).
    pub fn filled(c: usize, h: usize, w: usize, v: f32) -> Image {
        Image { c, h, w, data: vec![v; c * h * w] }
    }

    pub fn is_empty(&self) -> bool {
        self.c == 0 || self.h == 0 || self.w == 0
    }

    fn at(&self, x: usize, y: usize, k: usize) -> f32 {
        self.data[(k * self.h + y) * self.w + x]
    }

    fn at_mut(&mut self, x: usize, y: usize, k: usize) -> &mut f32 {
        &mut self.data[(k * self.h + y) * self.w + x]
    }
}

/// Decodes a JPEG or PNG file into RGB, values `byte/255` (Darknet's `load_image_stb`
/// with 3 channels). Any failure is an [`InputError`] naming the file.
pub fn load(path: &Path) -> Result<Image, InputError> {
    let bytes =
        std::fs::read(path).map_err(|e| InputError::whole(path, format!("cannot read the image: {e}")))?;
    decode(path, &bytes)
}

/// [`load`] of an image already in memory; `path` names it in errors.
pub fn decode(path: &Path, bytes: &[u8]) -> Result<Image, InputError> {
    let decoded = image::load_from_memory(bytes).map_err(|e| {
        // Decoder messages may span lines; the contract is one line.
        let why = e.to_string().replace(['\n', '\r'], " ");
        InputError::whole(path, format!("expected a JPEG or PNG image: {why}"))
    })?;
    let rgb = decoded.to_rgb8();
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    if w == 0 || h == 0 {
        return Err(InputError::whole(path, "the image has no pixels"));
    }
    let mut im = Image::filled(3, h, w, 0.0);
    for (x, y, px) in rgb.enumerate_pixels() {
        for k in 0..3 {
            *im.at_mut(x as usize, y as usize, k) = f32::from(px[k]) / 255.0;
        }
    }
    Ok(im)
}

/// Source step between output samples, `(in−1)/(out−1)` as Darknet computes it. With
/// one output sample Darknet divides by zero; every finite step maps sample 0 to
/// source 0, so 0 is the step that keeps the formula's meaning.
fn step(src: usize, dst: usize) -> f32 {
    if dst <= 1 {
        0.0
    } else {
        (src - 1) as f32 / (dst - 1) as f32
    }
}

/// Darknet's `resize_image`: bilinear in two passes, first along rows into an
/// `im.h × w` image, then along columns. The last output column copies the last
/// source column; the last output row takes `(1−dy)·row[iy]` only.
pub fn resize(im: &Image, w: usize, h: usize) -> Image {
    if im.w == w && im.h == h {
        return im.clone();
    }
    if im.is_empty() || w == 0 || h == 0 {
        // Nothing to sample from (Darknet would read out of bounds): a black image.
        return Image::filled(im.c, h, w, 0.0);
    }
    let part = resize_rows(im, w);
    resize_columns(&part, h)
}

/// First pass of `resize_image`: each row resampled to width `w`.
fn resize_rows(im: &Image, w: usize) -> Image {
    let scale = step(im.w, w);
    let mut part = Image::filled(im.c, im.h, w, 0.0);
    for k in 0..im.c {
        for r in 0..im.h {
            for c in 0..w {
                let val = if c == w - 1 || im.w == 1 {
                    im.at(im.w - 1, r, k)
                } else {
                    let sx = c as f32 * scale;
                    let ix = sx as usize;
                    let dx = sx - ix as f32;
                    // `min` only guards against rounding; for c < w−1, ix+1 < im.w.
                    let (ix, ix1) = (ix.min(im.w - 1), (ix + 1).min(im.w - 1));
                    (1.0 - dx) * im.at(ix, r, k) + dx * im.at(ix1, r, k)
                };
                *part.at_mut(c, r, k) = val;
            }
        }
    }
    part
}

/// Second pass of `resize_image`: each column resampled to height `h`.
fn resize_columns(part: &Image, h: usize) -> Image {
    let scale = step(part.h, h);
    let mut out = Image::filled(part.c, h, part.w, 0.0);
    for k in 0..part.c {
        for r in 0..h {
            let sy = r as f32 * scale;
            let iy = (sy as usize).min(part.h - 1);
            let dy = sy - iy as f32;
            let last = r == h - 1 || part.h == 1;
            let iy1 = (iy + 1).min(part.h - 1);
            for c in 0..part.w {
                // Set, then add: the same two f32 roundings as Darknet.
                let mut val = (1.0 - dy) * part.at(c, iy, k);
                if !last {
                    val += dy * part.at(c, iy1, k);
                }
                *out.at_mut(c, r, k) = val;
            }
        }
    }
    out
}

/// The size an `im_w × im_h` image is scaled to inside a `w × h` letterbox, with
/// Darknet's float comparison and integer division (`letterbox_image`, and again in
/// `correct_yolo_boxes`, which must undo exactly this).
pub fn letterbox_size(im_w: usize, im_h: usize, w: usize, h: usize) -> (usize, usize) {
    if im_w == 0 || im_h == 0 {
        return (0, 0);
    }
    if (w as f32 / im_w as f32) < (h as f32 / im_h as f32) {
        (w, im_h * w / im_w)
    } else {
        (im_w * h / im_h, h)
    }
}

/// Darknet's `letterbox_image`: scale to fit keeping the aspect ratio, centre on a
/// `w × h` canvas of 0.5 at `((w−new_w)/2, (h−new_h)/2)`.
pub fn letterbox(im: &Image, w: usize, h: usize) -> Image {
    let mut boxed = Image::filled(im.c, h, w, 0.5);
    let (new_w, new_h) = letterbox_size(im.w, im.h, w, h);
    if new_w == 0 || new_h == 0 {
        return boxed;
    }
    let resized = resize(im, new_w, new_h);
    embed(&resized, &mut boxed, (w - new_w.min(w)) / 2, (h - new_h.min(h)) / 2);
    boxed
}

/// Darknet's `embed_image`: copy `src` into `dst` at `(dx, dy)`, dropping what falls
/// outside (its `set_pixel` ignores out-of-range writes).
fn embed(src: &Image, dst: &mut Image, dx: usize, dy: usize) {
    let c = src.c.min(dst.c);
    let w = src.w.min(dst.w.saturating_sub(dx));
    let h = src.h.min(dst.h.saturating_sub(dy));
    for k in 0..c {
        for y in 0..h {
            for x in 0..w {
                *dst.at_mut(dx + x, dy + y, k) = src.at(x, y, k);
            }
        }
    }
}

/// The network input for an image: letterboxed when the cfg says `letter_box=1`,
/// otherwise stretched to the network size.
pub fn to_network_input(im: &Image, net_w: usize, net_h: usize, letterbox: bool) -> Image {
    if letterbox {
        self::letterbox(im, net_w, net_h)
    } else {
        resize(im, net_w, net_h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn gray(h: usize, w: usize, data: &[f32]) -> Image {
        Image { c: 1, h, w, data: data.to_vec() }
    }

    fn assert_close(got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn resize_2x2_to_3x3() {
        // [[0 1] [2 4]], w_scale = h_scale = (2−1)/(3−1) = 0.5.
        // Rows: c=0 → sx=0 → left; c=1 → sx=.5 → mean; c=2 = w−1 → last column.
        //   part = [[0 .5 1] [2 3 4]]
        // Columns: r=0 → row 0; r=1 → sy=.5 → .5·row0 + .5·row1 = [1 1.75 2.5];
        //   r=2 = h−1 → sy = 1, iy = 1, dy = 0 → (1−0)·row1, no second term.
        let im = gray(2, 2, &[0.0, 1.0, 2.0, 4.0]);
        let out = resize(&im, 3, 3);
        assert_eq!((out.c, out.h, out.w), (1, 3, 3));
        assert_close(&out.data, &[0.0, 0.5, 1.0, 1.0, 1.75, 2.5, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn resize_4x1_down() {
        // [0 1 4 9] → width 2: w_scale = 3/1; c=0 → im[0]; c=1 = w−1 → im[3].
        // Height 1 → 1: Darknet's h_scale is 0/0; ours is 0, r=0 is also the last row.
        let im = gray(1, 4, &[0.0, 1.0, 4.0, 9.0]);
        assert_close(&resize(&im, 2, 1).data, &[0.0, 9.0]);
        // → width 3: w_scale = 1.5; c=1 → sx=1.5, ix=1, dx=.5 → (1+4)/2 = 2.5.
        assert_close(&resize(&im, 3, 1).data, &[0.0, 2.5, 9.0]);
    }

    #[test]
    fn resize_to_one_pixel_does_not_divide_by_zero() {
        // 2 wide, 3 tall → 1×1: the column pass takes the LAST column (Darknet's
        // `c == w−1` branch), the row pass row 0 (step 0).
        let im = gray(3, 2, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_close(&resize(&im, 1, 1).data, &[2.0]);
        // 1×1 → 2×2: every output is the single pixel.
        let one = gray(1, 1, &[0.25]);
        assert_close(&resize(&one, 2, 2).data, &[0.25; 4]);
    }

    #[test]
    fn resize_empty_is_safe() {
        let empty = Image::filled(3, 0, 0, 0.0);
        assert_eq!(resize(&empty, 4, 2).data, vec![0.0; 24]);
        let im = gray(1, 1, &[0.25]);
        assert!(resize(&im, 0, 5).data.is_empty());
        assert!(letterbox(&empty, 4, 4).data.iter().all(|&v| v == 0.5));
    }

    #[test]
    fn letterbox_size_uses_integer_math() {
        // 416/640 = .65 < 416/480 → new_w = 416, new_h = 480·416/640 = 312.
        assert_eq!(letterbox_size(640, 480, 416, 416), (416, 312));
        assert_eq!(letterbox_size(480, 640, 416, 416), (312, 416));
        // 30·64/100 = 19.2 → 19 (truncated, not rounded).
        assert_eq!(letterbox_size(100, 30, 64, 64), (64, 19));
        assert_eq!(letterbox_size(0, 30, 64, 64), (0, 0));
    }

    /// Letterboxes a 3-channel ramp whose values (0..0.4) never equal the 0.5 fill.
    fn letterbox_case(im_w: usize, im_h: usize, w: usize, h: usize) -> Image {
        let n = im_w * im_h;
        let data = (0..3 * n).map(|i| (i % n) as f32 / n as f32 * 0.4).collect();
        let im = Image { c: 3, h: im_h, w: im_w, data };
        letterbox(&im, w, h)
    }

    #[test]
    fn letterbox_landscape_rows() {
        // 640×480 in 416×416: content 416×312 at dy = (416−312)/2 = 52, rows 52..364.
        let im =
            Image { c: 3, h: 480, w: 640, data: (0..3 * 480 * 640).map(|i| (i % 7) as f32 / 20.0).collect() };
        let boxed = letterbox(&im, 416, 416);
        assert_eq!((boxed.c, boxed.h, boxed.w), (3, 416, 416));
        let inner = resize(&im, 416, 312);
        for k in 0..3 {
            for y in 0..416 {
                for x in 0..416 {
                    let v = boxed.at(x, y, k);
                    if (52..364).contains(&y) {
                        assert_eq!(v, inner.at(x, y - 52, k), "({x},{y},{k})");
                    } else {
                        assert_eq!(v, 0.5, "({x},{y},{k})");
                    }
                }
            }
        }
    }

    #[test]
    fn letterbox_portrait_and_odd_sizes() {
        // 480×640 in 416×416: columns 52..364.
        let b = letterbox_case(480, 640, 416, 416);
        assert_eq!(b.at(51, 200, 0), 0.5);
        assert_ne!(b.at(52, 200, 0), 0.5);
        assert_ne!(b.at(363, 200, 2), 0.5);
        assert_eq!(b.at(364, 200, 2), 0.5);
        // 100×30 in 64×64: 64×19 at dy = (64−19)/2 = 22, rows 22..41.
        let b = letterbox_case(100, 30, 64, 64);
        assert_eq!(b.at(10, 21, 1), 0.5);
        assert_ne!(b.at(10, 22, 1), 0.5);
        assert_ne!(b.at(10, 40, 1), 0.5);
        assert_eq!(b.at(10, 41, 1), 0.5);
    }

    #[test]
    fn network_input_chooses() {
        let im = letterbox_case(8, 4, 8, 4);
        assert_eq!(to_network_input(&im, 4, 4, false), resize(&im, 4, 4));
        assert_eq!(to_network_input(&im, 4, 4, true), letterbox(&im, 4, 4));
    }

    fn repo_file(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
    }

    #[test]
    fn load_dog() {
        let im = load(&repo_file("images/dog.jpg")).expect("dog.jpg decodes");
        assert_eq!((im.c, im.h, im.w), (3, 576, 768));
        assert_eq!(im.data.len(), 3 * 576 * 768);
        assert!(im.data.iter().all(|v| (0.0..=1.0).contains(v)));
        // A real photo, not a constant image.
        assert!(im.data.iter().any(|&v| v != im.data[0]));
    }

    #[test]
    fn load_garbage_is_an_input_error() {
        let path = std::env::temp_dir().join(format!("ternc-h3-garbage-{}.jpg", std::process::id()));
        std::fs::write(&path, b"this is not a JPEG at all").unwrap();
        let err = load(&path).unwrap_err();
        std::fs::remove_file(&path).ok();
        let line = err.to_string();
        assert!(line.contains(&path.display().to_string()), "{line}");
        assert!(line.contains("expected a JPEG or PNG image"), "{line}");
        assert!(!line.contains('\n'), "{line}");

        let missing = std::env::temp_dir().join("ternc-h3-no-such-image.png");
        let line = load(&missing).unwrap_err().to_string();
        assert!(line.contains("ternc-h3-no-such-image.png"), "{line}");
    }
}
