//! Drawing detections the way Darknet's `draw_detections_v3` does (per-class colours
//! from `get_color`, nested one-pixel rectangles, a filled label above the box), with
//! labels rendered from the `font8x8` glyphs; and atomic PNG output.

use std::io;
use std::path::{Path, PathBuf};

use font8x8::{UnicodeFonts, BASIC_FONTS, LATIN_FONTS};
use image::{ImageFormat, Rgb, RgbImage};

use crate::detect::Detection;
use crate::image::Image;

/// Darknet's colour ramp (magenta, blue, cyan, green, yellow, red).
const COLORS: [[f32; 3]; 6] =
    [[1., 0., 1.], [0., 0., 1.], [0., 1., 1.], [0., 1., 0.], [1., 1., 0.], [1., 0., 0.]];

/// Darknet's `get_color`: channel `c` of position `x` of `max` along the ramp.
fn get_color(c: usize, x: usize, max: usize) -> f32 {
    let ratio = (x as f32 / max as f32) * 5.0;
    // x < max keeps both at most 5; `min` only guards the table.
    let i = (ratio.floor() as usize).min(5);
    let j = (ratio.ceil() as usize).min(5);
    let t = ratio - i as f32;
    (1.0 - t) * COLORS[i][c] + t * COLORS[j][c]
}

/// The colour `draw_detections_v3` gives a class: `offset = class·123457 % classes`,
/// red from ramp channel 2, green 1, blue 0.
pub fn class_color(class: usize, classes: usize) -> Rgb<u8> {
    let classes = classes.max(1);
    let offset = (class as u64).wrapping_mul(123_457) % classes as u64;
    let channel = |c| to_byte(get_color(c, offset as usize, classes));
    Rgb([channel(2), channel(1), channel(0)])
}

/// 0..1 to 0..255, rounded (Darknet truncates, which turns some `v/255·255` into
/// `v−1`); NaN becomes 0.
fn to_byte(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0).round() as u8
}

/// The planar image as interleaved RGB; a one-channel image is shown as grey.
fn to_rgb(im: &Image) -> RgbImage {
    let (Ok(w), Ok(h)) = (u32::try_from(im.w), u32::try_from(im.h)) else {
        return RgbImage::new(0, 0);
    };
    let plane = im.w * im.h;
    let channel = |k: usize| if im.c >= 3 { k } else { 0 };
    RgbImage::from_fn(w, h, |x, y| {
        let i = y as usize * im.w + x as usize;
        let v = |k| to_byte(im.data.get(channel(k) * plane + i).copied().unwrap_or(0.0));
        Rgb([v(0), v(1), v(2)])
    })
}

/// Sets a pixel if it is inside the image (Darknet's `set_pixel` ignores the rest).
fn put(img: &mut RgbImage, x: i64, y: i64, color: Rgb<u8>) {
    if let (Ok(x), Ok(y)) = (u32::try_from(x), u32::try_from(y)) {
        if x < img.width() && y < img.height() {
            img.put_pixel(x, y, color);
        }
    }
}

/// Darknet's `draw_box`: a one-pixel rectangle, corners clamped into the image.
fn draw_box(img: &mut RgbImage, corners: [i64; 4], color: Rgb<u8>) {
    let (max_x, max_y) = (i64::from(img.width()) - 1, i64::from(img.height()) - 1);
    if max_x < 0 || max_y < 0 {
        return;
    }
    let [x1, y1, x2, y2] = corners;
    let (x1, x2) = (x1.clamp(0, max_x), x2.clamp(0, max_x));
    let (y1, y2) = (y1.clamp(0, max_y), y2.clamp(0, max_y));
    for x in x1..=x2 {
        put(img, x, y1, color);
        put(img, x, y2, color);
    }
    for y in y1..=y2 {
        put(img, x1, y, color);
        put(img, x2, y, color);
    }
}

/// Darknet's `draw_box_width`: `width` rectangles, each one pixel further inside.
fn draw_box_width(img: &mut RgbImage, [l, t, r, b]: [i64; 4], width: i64, color: Rgb<u8>) {
    for i in 0..width {
        draw_box(img, [l + i, t + i, r - i, b - i], color);
    }
}

/// The 8×8 glyph of `ch` (row bytes, bit 0 leftmost); `?` for characters the font lacks.
fn glyph(ch: char) -> [u8; 8] {
    BASIC_FONTS.get(ch).or_else(|| LATIN_FONTS.get(ch)).or_else(|| BASIC_FONTS.get('?')).unwrap_or_default()
}

/// Draws `text` in a box filled with `bg`, its top-left corner at `(x, y)`, glyphs
/// scaled by `scale`, in black or white, whichever reads better on `bg`.
fn draw_label(img: &mut RgbImage, text: &str, x: i64, y: i64, scale: i64, bg: Rgb<u8>) {
    let (w, h) = label_size(text, scale);
    for dy in 0..h {
        for dx in 0..w {
            put(img, x + dx, y + dy, bg);
        }
    }
    let [r, g, b] = bg.0.map(f32::from);
    let ink = if 0.299 * r + 0.587 * g + 0.114 * b > 140.0 { Rgb([0, 0, 0]) } else { Rgb([255, 255, 255]) };
    for (n, ch) in text.chars().enumerate() {
        let left = x + scale + n as i64 * 8 * scale;
        for (row, bits) in glyph(ch).iter().enumerate() {
            for col in 0..8 {
                if bits & (1 << col) == 0 {
                    continue;
                }
                for s in 0..scale * scale {
                    let px = left + col * scale + s % scale;
                    let py = y + scale + row as i64 * scale + s / scale;
                    put(img, px, py, ink);
                }
            }
        }
    }
}

/// Width and height of a label: 8·scale per character plus a `scale` margin around.
fn label_size(text: &str, scale: i64) -> (i64, i64) {
    let chars = text.chars().count() as i64;
    (chars * 8 * scale + 2 * scale, 8 * scale + 2 * scale)
}

/// The label's top-left corner: above the box when there is room (else just inside
/// its top edge), moved left so it stays inside the image when it can.
fn label_origin(img: &RgbImage, [left, top, ..]: [i64; 4], size: (i64, i64)) -> (i64, i64) {
    let x = left.min(i64::from(img.width()) - size.0).max(0);
    let y = if top >= size.1 { top - size.1 } else { top.max(0) };
    (x, y)
}

/// Pixel corners as `draw_detections_v3` computes them: truncated, then clamped.
fn corners(im: &RgbImage, bbox: [f32; 4]) -> [i64; 4] {
    // `as` saturates and maps NaN to 0: no panic on odd boxes.
    let [x0, y0, x1, y1] = bbox.map(|v| v as i64);
    let (max_x, max_y) = (i64::from(im.width()) - 1, i64::from(im.height()) - 1);
    let inside = |v: i64, hi: i64| v.min(hi).max(0);
    [inside(x0, max_x), inside(y0, max_y), inside(x1, max_x), inside(y1, max_y)]
}

/// The image with each detection drawn: a 2–3 px rectangle in its class colour and a
/// `name score%` label. Weaker detections are drawn first, so the strongest end up on
/// top (Darknet's `compare_by_probs` order). A class without a name is labelled by
/// its number.
pub fn annotate(im: &Image, dets: &[Detection], names: &[String]) -> RgbImage {
    let mut img = to_rgb(im);
    let classes = dets.iter().map(|d| d.class.saturating_add(1)).fold(names.len(), usize::max);
    let width = (im.h / 300).clamp(2, 3) as i64;
    let scale = (im.h / 400).clamp(1, 4) as i64;
    let mut order: Vec<&Detection> = dets.iter().collect();
    order.sort_by(|a, b| a.score.total_cmp(&b.score));
    for d in order {
        let color = class_color(d.class, classes);
        let rect = corners(&img, d.bbox);
        draw_box_width(&mut img, rect, width, color);
        let name = names.get(d.class).cloned().unwrap_or_else(|| d.class.to_string());
        let text = format!("{name} {:.0}%", d.score * 100.0);
        let (x, y) = label_origin(&img, rect, label_size(&text, scale));
        draw_label(&mut img, &text, x, y, scale, color);
    }
    img
}

/// `path` with `.tmp` appended to its file name (same directory, so `rename` is atomic).
fn temp_path(path: &Path) -> io::Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("{} does not name a file", path.display()))
    })?;
    let mut tmp = name.to_os_string();
    tmp.push(".tmp");
    Ok(path.with_file_name(tmp))
}

/// Writes `img` as a PNG at `path` atomically: encoded in memory, written beside it
/// under a temporary name, then renamed, so no partial file is ever left at `path`.
pub fn save_png(img: &RgbImage, path: &Path) -> io::Result<()> {
    let mut bytes = Vec::new();
    img.write_to(&mut io::Cursor::new(&mut bytes), ImageFormat::Png).map_err(io::Error::other)?;
    let tmp = temp_path(path)?;
    let result = std::fs::write(&tmp, &bytes).and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        // Best effort: the write or rename already failed, report that error.
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gray_image(w: usize, h: usize) -> Image {
        Image::filled(3, h, w, 0.5)
    }

    fn det(class: usize, score: f32, bbox: [f32; 4]) -> Detection {
        Detection { class, score, bbox, objectness: score }
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("c{i}")).collect()
    }

    #[test]
    fn colors_follow_darknet() {
        // Class 0: offset 0, ratio 0 → ramp[0] = (1,0,1): red = ramp[0][2] = 1,
        // green = ramp[0][1] = 0, blue = ramp[0][0] = 1.
        assert_eq!(class_color(0, 3), Rgb([255, 0, 255]));
        // Class 1 of 3: 123457 % 3 = 1, ratio 5/3 → i=1, j=2, t=2/3:
        // red = ramp[1][2]·1/3 + ramp[2][2]·2/3 = 1, green = 0·1/3 + 1·2/3, blue = 0.
        assert_eq!(class_color(1, 3), Rgb([255, 170, 0]));
        // 80 classes: class 1 → 123457 % 80 = 17; ratio 17/80·5 = 1.0625.
        // red = 1, green = .9375·0 + .0625·1 = .0625 → 16, blue = 0.
        assert_eq!(class_color(1, 80), Rgb([255, 16, 0]));
        // No panic for zero classes or huge ids.
        let _ = class_color(usize::MAX, 0);
    }

    #[test]
    fn annotate_draws_box_and_label() {
        let im = gray_image(100, 80);
        let dets = [det(1, 0.9, [20.0, 30.0, 60.0, 70.0])];
        let img = annotate(&im, &dets, &names(3));
        assert_eq!(img.dimensions(), (100, 80));
        let color = Rgb([255, 170, 0]);
        let grey = Rgb([128, 128, 128]);
        // Two nested rectangles: outer edge and one pixel in.
        for (x, y) in [(40, 30), (40, 31), (40, 70), (40, 69), (20, 50), (21, 50), (60, 50), (59, 50)] {
            assert_eq!(*img.get_pixel(x, y), color, "({x},{y})");
        }
        assert_eq!(*img.get_pixel(40, 50), grey, "interior untouched");
        assert_eq!(*img.get_pixel(40, 68), grey, "only 2 px wide at this size");
        // Label "c1 90%": 6 chars → 50×10 px ending just above the box (rows 20..30),
        // starting at x = 20; its background is the class colour, with dark ink.
        assert_eq!(*img.get_pixel(20, 20), color);
        assert_eq!(*img.get_pixel(69, 29), color);
        assert_eq!(*img.get_pixel(70, 25), grey);
        assert_eq!(*img.get_pixel(20, 19), grey);
        let ink = (21..69).flat_map(|x| (21..29).map(move |y| (x, y)));
        assert!(ink.into_iter().any(|(x, y)| *img.get_pixel(x, y) == Rgb([0, 0, 0])));
    }

    #[test]
    fn annotate_keeps_labels_inside() {
        // A box at the top-right corner: the label goes inside the box, moved left.
        let im = gray_image(64, 48);
        let img = annotate(&im, &[det(0, 0.5, [40.0, 0.0, 64.0, 20.0])], &names(1));
        // "c0 50%" is 50 px wide: x = 64 − 50 = 14, rows 0..10.
        assert_eq!(*img.get_pixel(14, 0), Rgb([255, 0, 255]));
        assert_eq!(*img.get_pixel(13, 5), Rgb([128, 128, 128]));
    }

    #[test]
    fn annotate_odd_inputs_do_not_panic() {
        let odd = [
            det(7, 0.3, [f32::NAN, -5.0, f32::INFINITY, 1e9]),
            det(0, 0.9, [10.0, 10.0, 10.0, 10.0]),
            det(2, 1.0, [30.0, 30.0, 5.0, 5.0]),
        ];
        let img = annotate(&gray_image(32, 16), &odd, &names(1));
        assert_eq!(img.dimensions(), (32, 16));
        let empty = annotate(&Image::filled(3, 0, 0, 0.0), &odd, &[]);
        assert_eq!(empty.dimensions(), (0, 0));
        let one = Image::filled(1, 2, 2, 1.0);
        assert_eq!(*annotate(&one, &[], &[]).get_pixel(1, 1), Rgb([255, 255, 255]));
    }

    #[test]
    fn save_png_is_atomic_and_round_trips() {
        let dir = std::env::temp_dir().join(format!("ternc-h3-draw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.png");
        let img = annotate(&gray_image(40, 30), &[det(0, 0.8, [5.0, 5.0, 30.0, 25.0])], &names(1));
        save_png(&img, &path).unwrap();
        let back = image::open(&path).unwrap().to_rgb8();
        assert_eq!(back, img);
        assert!(!dir.join("out.png.tmp").exists());
        // An unwritable target: an error, and nothing left behind.
        let bad = dir.join("missing-dir").join("x.png");
        assert!(save_png(&img, &bad).is_err());
        assert!(!bad.exists());
        std::fs::remove_dir_all(&dir).ok();
    }
}
