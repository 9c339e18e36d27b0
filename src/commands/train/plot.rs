//! `loss.png`: the training loss and Darknet's smoothed average against the iteration,
//! a plain line chart with labelled axes, drawn with `image` and the `font8x8` glyphs.

use font8x8::{UnicodeFonts, BASIC_FONTS};
use image::{Rgb, RgbImage};

const W: u32 = 720;
const H: u32 = 420;
/// Plot area: left, top, right, bottom.
const AREA: (i64, i64, i64, i64) = (72, 34, W as i64 - 20, H as i64 - 48);
const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
const BLACK: Rgb<u8> = Rgb([0, 0, 0]);
const GRID: Rgb<u8> = Rgb([225, 225, 225]);
const LOSS: Rgb<u8> = Rgb([120, 170, 230]);
const AVG: Rgb<u8> = Rgb([210, 40, 40]);

/// Tick values covering `lo..=hi`: about `n` steps of 1, 2 or 5 × 10^k.
pub fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let span = (hi - lo).max(1e-12);
    let raw = span / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() * step;
    let mut out = Vec::new();
    let mut k = 0;
    loop {
        let v = first + k as f64 * step;
        if v > hi + step * 1e-9 {
            break;
        }
        out.push(if v.abs() < step * 1e-9 { 0.0 } else { v });
        k += 1;
    }
    out
}

fn label(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{v:.1e}")
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn put(img: &mut RgbImage, x: i64, y: i64, c: Rgb<u8>) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, c);
    }
}

fn line(img: &mut RgbImage, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: Rgb<u8>) {
    let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
    let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
    let (mut x, mut y, mut err) = (x0, y0, dx + dy);
    loop {
        put(img, x, y, c);
        if x == x1 && y == y1 {
            break;
        }
        let e2 = 2 * err;
        if e2 >= dy {
            err += dy;
            x += sx;
        }
        if e2 <= dx {
            err += dx;
            y += sy;
        }
    }
}

fn text(img: &mut RgbImage, s: &str, x: i64, y: i64, c: Rgb<u8>) {
    for (k, ch) in s.chars().enumerate() {
        let Some(glyph) = BASIC_FONTS.get(ch) else { continue };
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if (bits >> col) & 1 == 1 {
                    put(img, x + 8 * k as i64 + col, y + row as i64, c);
                }
            }
        }
    }
}

fn text_width(s: &str) -> i64 {
    8 * s.chars().count() as i64
}

/// The chart of `(iteration, loss, avg_loss)` rows as a PNG image.
pub fn loss_chart(title: &str, rows: &[(usize, f32, f32)]) -> RgbImage {
    let mut img = RgbImage::from_pixel(W, H, WHITE);
    let (l, t, r, b) = AREA;
    let x_hi = rows.last().map_or(1, |r| r.0).max(1) as f64;
    let x_lo = rows.first().map_or(0, |r| r.0.saturating_sub(1)) as f64;
    let finite = |v: f32| v.is_finite().then_some(v as f64);
    // The y range follows the smoothed loss (the raw loss may spike above it: clipped).
    let y_hi = rows
        .iter()
        .filter_map(|r| finite(r.2))
        .chain(rows.iter().skip(rows.len() / 10).filter_map(|r| finite(r.1)))
        .fold(0.0f64, f64::max)
        .max(1e-6)
        * 1.05;
    let y_lo = 0.0;
    let px = |x: f64| l + ((x - x_lo) / (x_hi - x_lo).max(1e-12) * (r - l) as f64).round() as i64;
    let py = |y: f64| {
        let y = y.clamp(y_lo, y_hi);
        b - ((y - y_lo) / (y_hi - y_lo) * (b - t) as f64).round() as i64
    };
    for v in ticks(y_lo, y_hi, 6) {
        let y = py(v);
        line(&mut img, (l, y), (r, y), GRID);
        line(&mut img, (l - 4, y), (l, y), BLACK);
        let s = label(v);
        text(&mut img, &s, l - 8 - text_width(&s), y - 4, BLACK);
    }
    for v in ticks(x_lo, x_hi, 8) {
        let x = px(v);
        line(&mut img, (x, t), (x, b), GRID);
        line(&mut img, (x, b), (x, b + 4), BLACK);
        let s = label(v);
        text(&mut img, &s, x - text_width(&s) / 2, b + 8, BLACK);
    }
    line(&mut img, (l, t), (l, b), BLACK);
    line(&mut img, (l, b), (r, b), BLACK);
    for (k, colour) in [(1usize, LOSS), (2, AVG)] {
        let mut prev: Option<(i64, i64)> = None;
        for row in rows {
            let v = if k == 1 { row.1 } else { row.2 };
            let Some(v) = finite(v) else {
                prev = None;
                continue;
            };
            let p = (px(row.0 as f64), py(v));
            match prev {
                Some(q) => line(&mut img, q, p, colour),
                None => put(&mut img, p.0, p.1, colour),
            }
            prev = Some(p);
        }
    }
    text(&mut img, title, l, 12, BLACK);
    let xl = "iteration";
    text(&mut img, xl, (l + r) / 2 - text_width(xl) / 2, H as i64 - 20, BLACK);
    // legend, top right
    let (lx, ly) = (r - 150, t + 8);
    line(&mut img, (lx, ly + 4), (lx + 20, ly + 4), LOSS);
    text(&mut img, "loss", lx + 26, ly, BLACK);
    line(&mut img, (lx, ly + 18), (lx + 20, ly + 18), AVG);
    line(&mut img, (lx, ly + 19), (lx + 20, ly + 19), AVG);
    text(&mut img, "avg loss", lx + 26, ly + 14, BLACK);
    img
}

/// [`loss_chart`] encoded as PNG bytes.
pub fn loss_png(title: &str, rows: &[(usize, f32, f32)]) -> anyhow::Result<Vec<u8>> {
    let img = loss_chart(title, rows);
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round() {
        assert_eq!(ticks(0.0, 10.0, 5), [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(ticks(0.0, 0.9, 4), [0.0, 0.5]);
        assert_eq!(ticks(3.0, 40.0, 8), [5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0]);
        assert_eq!(label(0.2), "0.2");
        assert_eq!(label(40.0), "40");
    }

    #[test]
    fn draws_both_lines() {
        let rows: Vec<(usize, f32, f32)> =
            (1..=50).map(|i| (i, 10.0 / i as f32 + 1.0, 8.0 / (i as f32).sqrt() + 1.0)).collect();
        let img = loss_chart("t", &rows);
        let count = |c: Rgb<u8>| img.pixels().filter(|p| **p == c).count();
        assert!(count(LOSS) > 100 && count(AVG) > 100, "{} {}", count(LOSS), count(AVG));
        assert!(count(BLACK) > 500);
    }
}
