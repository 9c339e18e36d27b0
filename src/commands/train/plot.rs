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
const FLIPS: Rgb<u8> = Rgb([30, 150, 60]);

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

/// One row of the chart: the iteration's loss, smoothed loss and flip fraction.
#[derive(Debug, Clone, Copy)]
pub struct Point {
    pub iteration: usize,
    pub loss: f32,
    pub avg_loss: f32,
    pub flips: f64,
}

/// Height of the flip-fraction panel below the loss chart.
const FLIPS_H: u32 = 200;

/// Axes, grid and tick labels of a plot area over `x_lo..x_hi` × `0..y_hi`; returns the
/// mapping of a data point to pixels.
fn axes(
    img: &mut RgbImage,
    (l, t, r, b): (i64, i64, i64, i64),
    (x_lo, x_hi): (f64, f64),
    y_hi: f64,
    y_ticks: usize,
) -> impl Fn(f64, f64) -> (i64, i64) {
    let px = move |x: f64| l + ((x - x_lo) / (x_hi - x_lo).max(1e-12) * (r - l) as f64).round() as i64;
    let py = move |y: f64| b - (y.clamp(0.0, y_hi) / y_hi * (b - t) as f64).round() as i64;
    for v in ticks(0.0, y_hi, y_ticks) {
        let y = py(v);
        line(img, (l, y), (r, y), GRID);
        line(img, (l - 4, y), (l, y), BLACK);
        let s = label(v);
        text(img, &s, l - 8 - text_width(&s), y - 4, BLACK);
    }
    for v in ticks(x_lo, x_hi, 8) {
        let x = px(v);
        line(img, (x, t), (x, b), GRID);
        line(img, (x, b), (x, b + 4), BLACK);
        let s = label(v);
        text(img, &s, x - text_width(&s) / 2, b + 8, BLACK);
    }
    line(img, (l, t), (l, b), BLACK);
    line(img, (l, b), (r, b), BLACK);
    move |x, y| (px(x), py(y))
}

/// A polyline through the finite points, broken at the others.
fn series(
    img: &mut RgbImage,
    points: impl Iterator<Item = (f64, f64)>,
    to_px: &impl Fn(f64, f64) -> (i64, i64),
    c: Rgb<u8>,
) {
    let mut prev: Option<(i64, i64)> = None;
    for (x, y) in points {
        if !y.is_finite() {
            prev = None;
            continue;
        }
        let p = to_px(x, y);
        match prev {
            Some(q) => line(img, q, p, c),
            None => put(img, p.0, p.1, c),
        }
        prev = Some(p);
    }
}

/// The chart of the rows: loss and smoothed loss, and with `flips` a second panel with
/// the percentage of ternary weights whose code flipped in the window.
pub fn loss_chart(title: &str, rows: &[Point], flips: bool) -> RgbImage {
    let height = if flips { H + FLIPS_H } else { H };
    let mut img = RgbImage::from_pixel(W, height, WHITE);
    let (l, t, r, b) = AREA;
    let x_hi = rows.last().map_or(1, |p| p.iteration).max(1) as f64;
    let x_lo = rows.first().map_or(0, |p| p.iteration.saturating_sub(1)) as f64;
    let finite = |v: f32| v.is_finite().then_some(v as f64);
    // The y range follows the smoothed loss (the raw loss may spike above it: clipped).
    let y_hi = rows
        .iter()
        .filter_map(|p| finite(p.avg_loss))
        .chain(rows.iter().skip(rows.len() / 10).filter_map(|p| finite(p.loss)))
        .fold(0.0f64, f64::max)
        .max(1e-6)
        * 1.05;
    let to_px = axes(&mut img, AREA, (x_lo, x_hi), y_hi, 6);
    series(&mut img, rows.iter().map(|p| (p.iteration as f64, p.loss as f64)), &to_px, LOSS);
    series(&mut img, rows.iter().map(|p| (p.iteration as f64, p.avg_loss as f64)), &to_px, AVG);
    text(&mut img, title, l, 12, BLACK);
    // legend, top right
    let (lx, ly) = (r - 150, t + 8);
    line(&mut img, (lx, ly + 4), (lx + 20, ly + 4), LOSS);
    text(&mut img, "loss", lx + 26, ly, BLACK);
    line(&mut img, (lx, ly + 18), (lx + 20, ly + 18), AVG);
    line(&mut img, (lx, ly + 19), (lx + 20, ly + 19), AVG);
    text(&mut img, "avg loss", lx + 26, ly + 14, BLACK);
    if flips {
        let area = (l, b + 60, r, height as i64 - 48);
        let top = rows.iter().map(|p| 100.0 * p.flips).filter(|v| v.is_finite()).fold(0.0f64, f64::max);
        let to_px = axes(&mut img, area, (x_lo, x_hi), (top * 1.1).max(0.1), 4);
        series(&mut img, rows.iter().map(|p| (p.iteration as f64, 100.0 * p.flips)), &to_px, FLIPS);
        text(&mut img, "% of ternary weights that flipped in the window", l, area.1 - 18, BLACK);
    }
    let xl = "iteration";
    text(&mut img, xl, (l + r) / 2 - text_width(xl) / 2, height as i64 - 20, BLACK);
    img
}

/// [`loss_chart`] encoded as PNG bytes.
pub fn loss_png(title: &str, rows: &[Point], flips: bool) -> anyhow::Result<Vec<u8>> {
    let img = loss_chart(title, rows, flips);
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

    fn rows() -> Vec<Point> {
        (1..=50)
            .map(|i| Point {
                iteration: i,
                loss: 10.0 / i as f32 + 1.0,
                avg_loss: 8.0 / (i as f32).sqrt() + 1.0,
                flips: 0.2 / i as f64,
            })
            .collect()
    }

    #[test]
    fn draws_both_lines() {
        let img = loss_chart("t", &rows(), false);
        assert_eq!(img.dimensions(), (W, H));
        let count = |c: Rgb<u8>| img.pixels().filter(|p| **p == c).count();
        assert!(count(LOSS) > 100 && count(AVG) > 100, "{} {}", count(LOSS), count(AVG));
        assert!(count(BLACK) > 500);
        assert_eq!(count(FLIPS), 0);
    }

    #[test]
    fn draws_the_flips_panel_below() {
        let img = loss_chart("t", &rows(), true);
        assert_eq!(img.dimensions(), (W, H + FLIPS_H));
        let flips: Vec<u32> =
            img.enumerate_pixels().filter(|(_, _, p)| **p == FLIPS).map(|(_, y, _)| y).collect();
        assert!(flips.len() > 100, "{}", flips.len());
        assert!(flips.iter().all(|&y| y > H), "the flip line lies in the lower panel");
    }
}
