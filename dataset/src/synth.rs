//! A synthetic detection data set in Darknet's layout, for trying every command
//! without downloads and for training tests.
//!
//! Each image (`size × size`, PNG) has a background of one of four kinds (a linear
//! gradient, noise, stripes, a checkerboard) in muted colours, and 1 to 6 objects:
//! filled shapes in saturated colours, 12–40% of the image across, aspect 0.75–1.33,
//! drawn in order (later ones on top; two objects overlap by at most IoU 0.3). The
//! class is the shape; colour and size vary within every class. The label box is the
//! shape's bounding box, whose edges the shape touches.
//!
//! Everything is drawn from ChaCha RNGs seeded by `(seed, image index)`, without
//! anti-aliasing or floating-point colour maths, so the same seed gives byte-identical
//! files on every machine and for every thread count.

use std::io::Write;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::labels::{format_labels, Label};

/// The shapes ternc can draw; a data set uses some of them as its classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Circle,
    Square,
    Triangle,
    Cross,
    Ring,
    Diamond,
}

impl Shape {
    pub const ALL: [Shape; 6] =
        [Shape::Circle, Shape::Square, Shape::Triangle, Shape::Cross, Shape::Ring, Shape::Diamond];
    /// The default classes.
    pub const DEFAULT: [Shape; 5] =
        [Shape::Circle, Shape::Square, Shape::Triangle, Shape::Cross, Shape::Ring];

    pub fn name(self) -> &'static str {
        match self {
            Shape::Circle => "circle",
            Shape::Square => "square",
            Shape::Triangle => "triangle",
            Shape::Cross => "cross",
            Shape::Ring => "ring",
            Shape::Diamond => "diamond",
        }
    }

    pub fn parse(s: &str) -> Option<Shape> {
        Shape::ALL.into_iter().find(|k| k.name() == s)
    }

    /// Whether the point `(u, v)` (−1..1 across the bounding box) is inside.
    fn contains(self, u: f32, v: f32) -> bool {
        let r2 = u * u + v * v;
        match self {
            Shape::Circle => r2 <= 1.0,
            Shape::Square => u.abs() <= 1.0 && v.abs() <= 1.0,
            // Apex at the top centre, base along the bottom edge.
            Shape::Triangle => (-1.0..=1.0).contains(&v) && u.abs() <= (v + 1.0) / 2.0,
            Shape::Cross => (u.abs() <= 0.3 && v.abs() <= 1.0) || (v.abs() <= 0.3 && u.abs() <= 1.0),
            Shape::Ring => (0.3025..=1.0).contains(&r2),
            Shape::Diamond => u.abs() + v.abs() <= 1.0,
        }
    }

    /// Whether the shape covers its own centre (all but the ring).
    pub fn solid_centre(self) -> bool {
        self != Shape::Ring
    }
}

/// Parses `--classes`: a count (the first N of circle, square, triangle, cross, ring,
/// diamond) or a comma list of those names.
pub fn parse_classes(s: &str) -> Result<Vec<Shape>, String> {
    let known = Shape::ALL.map(Shape::name).join(", ");
    if let Ok(n) = s.trim().parse::<usize>() {
        if n == 0 || n > Shape::ALL.len() {
            return Err(format!("--classes {n}: expected 1..{} or a list of: {known}", Shape::ALL.len()));
        }
        return Ok(Shape::ALL[..n].to_vec());
    }
    let mut out = Vec::new();
    for name in s.split(',').map(str::trim) {
        let shape = Shape::parse(name)
            .ok_or_else(|| format!("--classes: unknown shape '{name}': expected {known}"))?;
        if out.contains(&shape) {
            return Err(format!("--classes: '{name}' given twice"));
        }
        out.push(shape);
    }
    Ok(out)
}

/// One drawn object: its class (index into the classes), colour and pixel box.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub class: usize,
    pub shape: Shape,
    pub color: [u8; 3],
    pub x0: u32,
    pub y0: u32,
    pub w: u32,
    pub h: u32,
}

impl Object {
    /// The Darknet label of this object in a `size × size` image.
    pub fn label(&self, size: u32) -> Label {
        let s = size as f32;
        Label {
            class: self.class,
            cx: (self.x0 as f32 + self.w as f32 / 2.0) / s,
            cy: (self.y0 as f32 + self.h as f32 / 2.0) / s,
            w: self.w as f32 / s,
            h: self.h as f32 / s,
            difficult: false,
        }
    }

    fn iou(&self, o: &Object) -> f32 {
        let ix = (self.x0 + self.w).min(o.x0 + o.w) as i64 - self.x0.max(o.x0) as i64;
        let iy = (self.y0 + self.h).min(o.y0 + o.h) as i64 - self.y0.max(o.y0) as i64;
        if ix <= 0 || iy <= 0 {
            return 0.0;
        }
        let inter = (ix * iy) as f32;
        inter / ((self.w * self.h + o.w * o.h) as f32 - inter)
    }
}

/// One rendered image and its objects (in drawing order).
pub struct SynthImage {
    pub rgb: image::RgbImage,
    pub objects: Vec<Object>,
}

fn image_rng(seed: u64, index: usize) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(index as u64);
    r
}

/// A muted colour: channels 40..200 pulled halfway to their mean.
fn muted(rng: &mut impl Rng) -> [u8; 3] {
    let c: [u32; 3] = [rng.gen_range(40..200), rng.gen_range(40..200), rng.gen_range(40..200)];
    let m = (c[0] + c[1] + c[2]) / 3;
    c.map(|v| ((v + m) / 2) as u8)
}

/// A saturated, bright colour from integer HSV (hue sextant and position).
fn vivid(rng: &mut impl Rng) -> [u8; 3] {
    let v: u32 = rng.gen_range(200..=255);
    let lo: u32 = rng.gen_range(0..=v * 3 / 10); // saturation ≥ 0.7
    let t: u32 = rng.gen_range(lo..=v);
    let (v, lo, t) = (v as u8, lo as u8, t as u8);
    match rng.gen_range(0..6) {
        0 => [v, t, lo],
        1 => [t, v, lo],
        2 => [lo, v, t],
        3 => [lo, t, v],
        4 => [t, lo, v],
        _ => [v, lo, t],
    }
}

fn lerp(a: [u8; 3], b: [u8; 3], num: i64, den: i64) -> [u8; 3] {
    let num = num.clamp(0, den);
    [0, 1, 2].map(|k| ((a[k] as i64 * (den - num) + b[k] as i64 * num) / den) as u8)
}

fn background(rng: &mut ChaCha8Rng, size: u32) -> image::RgbImage {
    let (a, b) = (muted(rng), muted(rng));
    let s = size as i64;
    match rng.gen_range(0..4) {
        0 => {
            // Linear gradient along an integer direction.
            let (dx, dy): (i64, i64) = (rng.gen_range(-4..=4), rng.gen_range(-4..=4));
            let (dx, dy) = if dx == 0 && dy == 0 { (1, 0) } else { (dx, dy) };
            let (lo, hi) = (
                [0, s * dx, s * dy, s * (dx + dy)].into_iter().min().unwrap(),
                [0, s * dx, s * dy, s * (dx + dy)].into_iter().max().unwrap(),
            );
            image::RgbImage::from_fn(size, size, |x, y| {
                let t = x as i64 * dx + y as i64 * dy - lo;
                image::Rgb(lerp(a, b, t, (hi - lo).max(1)))
            })
        }
        1 => {
            let amp: i32 = rng.gen_range(15..60);
            let mut im = image::RgbImage::new(size, size);
            for p in im.pixels_mut() {
                let n: i32 = rng.gen_range(-amp..=amp);
                *p = image::Rgb(a.map(|c| (c as i32 + n).clamp(0, 255) as u8));
            }
            im
        }
        2 => {
            let period: i64 = rng.gen_range(4..16);
            let (dx, dy): (i64, i64) = [(1, 0), (0, 1), (1, 1), (1, -1)][rng.gen_range(0..4)];
            image::RgbImage::from_fn(size, size, |x, y| {
                let t = (x as i64 * dx + y as i64 * dy + 4 * s).div_euclid(period);
                image::Rgb(if t % 2 == 0 { a } else { b })
            })
        }
        _ => {
            let cell: u32 = rng.gen_range(6..24);
            image::RgbImage::from_fn(size, size, |x, y| {
                image::Rgb(if (x / cell + y / cell).is_multiple_of(2) { a } else { b })
            })
        }
    }
}

/// Renders image `index` of the data set with this `seed`.
pub fn render(seed: u64, index: usize, size: u32, classes: &[Shape]) -> SynthImage {
    let mut rng = image_rng(seed, index);
    let mut rgb = background(&mut rng, size);
    let count = rng.gen_range(1..=6);
    let mut objects: Vec<Object> = Vec::new();
    let min_side = (size as f32 * 0.12).max(6.0);
    let max_side = (size as f32 * 0.40).max(min_side + 1.0);
    for _ in 0..count {
        for _attempt in 0..50 {
            let class = rng.gen_range(0..classes.len());
            let side = rng.gen_range(min_side..max_side);
            let aspect: f32 = rng.gen_range(0.75f32..1.333).sqrt();
            let w = ((side * aspect) as u32).clamp(4, size);
            let h = ((side / aspect) as u32).clamp(4, size);
            let x0 = rng.gen_range(0..=size - w);
            let y0 = rng.gen_range(0..=size - h);
            let color = vivid(&mut rng);
            let o = Object { class, shape: classes[class], color, x0, y0, w, h };
            if objects.iter().all(|p| p.iou(&o) <= 0.3) {
                objects.push(o);
                break;
            }
        }
    }
    for o in &objects {
        let (cx, cy) = (o.x0 as f32 + o.w as f32 / 2.0, o.y0 as f32 + o.h as f32 / 2.0);
        let (hw, hh) = (o.w as f32 / 2.0, o.h as f32 / 2.0);
        for y in o.y0..o.y0 + o.h {
            for x in o.x0..o.x0 + o.w {
                let (u, v) = ((x as f32 + 0.5 - cx) / hw, (y as f32 + 0.5 - cy) / hh);
                if o.shape.contains(u, v) {
                    rgb.put_pixel(x, y, image::Rgb(o.color));
                }
            }
        }
    }
    SynthImage { rgb, objects }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct SynthOptions {
    pub images: usize,
    pub size: u32,
    pub seed: u64,
    pub classes: Vec<Shape>,
    /// Every `valid_every`-th image (index ≡ valid_every−1) goes to `valid.txt`
    /// (10: a 90/10 split). 0 or 1 puts every image in both lists.
    pub valid_every: usize,
}

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions { images: 1000, size: 128, seed: 0, classes: Shape::DEFAULT.to_vec(), valid_every: 10 }
    }
}

/// What was written.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthSummary {
    pub data_file: PathBuf,
    pub train: usize,
    pub valid: usize,
    pub objects: usize,
}

/// Writes a file through a temporary file beside it and a rename: never a partial
/// file (without the fsync of [`ternc_frontend::atomic::write_atomic`]: thousands of
/// small files).
fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new().prefix(".ternc-").suffix(".tmp").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

fn encode_png(rgb: &image::RgbImage) -> Vec<u8> {
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    use image::ImageEncoder;
    let mut out = Vec::new();
    PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::Sub)
        .write_image(rgb.as_raw(), rgb.width(), rgb.height(), image::ExtendedColorType::Rgb8)
        .expect("PNG encoding into memory does not fail");
    out
}

/// Writes the data set under `out`: `images/NNNNNN.png`, `labels/NNNNNN.txt`,
/// `train.txt`, `valid.txt`, `synth.names`, `synth.data` and an empty `backup/`.
/// Paths inside the files are relative to `out` (see [`crate::paths`] for how they
/// are found from elsewhere), so the files do not depend on where `out` is.
pub fn write(out: &Path, opts: &SynthOptions) -> std::io::Result<SynthSummary> {
    use std::io::{Error, ErrorKind};
    if opts.classes.is_empty() || opts.images == 0 || opts.size < 16 {
        return Err(Error::new(ErrorKind::InvalidInput, "expected at least one class and image, size >= 16"));
    }
    for d in ["images", "labels", "backup"] {
        std::fs::create_dir_all(out.join(d))?;
    }
    let width = opts.images.saturating_sub(1).to_string().len().max(6);
    let name = |i: usize| format!("{i:0width$}");
    let objects: Vec<usize> = (0..opts.images)
        .into_par_iter()
        .map(|i| -> std::io::Result<usize> {
            let im = render(opts.seed, i, opts.size, &opts.classes);
            let labels: Vec<Label> = im.objects.iter().map(|o| o.label(opts.size)).collect();
            write_file(&out.join("images").join(format!("{}.png", name(i))), &encode_png(&im.rgb))?;
            write_file(
                &out.join("labels").join(format!("{}.txt", name(i))),
                format_labels(&labels).as_bytes(),
            )?;
            Ok(labels.len())
        })
        .collect::<std::io::Result<_>>()?;
    let is_valid = |i: usize| opts.valid_every <= 1 || i % opts.valid_every == opts.valid_every - 1;
    let is_train = |i: usize| opts.valid_every <= 1 || !is_valid(i);
    let list = |keep: &dyn Fn(usize) -> bool| -> String {
        (0..opts.images).filter(|&i| keep(i)).map(|i| format!("images/{}.png\n", name(i))).collect()
    };
    let (train, valid) = (list(&is_train), list(&is_valid));
    use ternc_frontend::atomic::write_atomic;
    write_atomic(&out.join("train.txt"), train.as_bytes())?;
    write_atomic(&out.join("valid.txt"), valid.as_bytes())?;
    let names: String = opts.classes.iter().map(|c| format!("{}\n", c.name())).collect();
    write_atomic(&out.join("synth.names"), names.as_bytes())?;
    let data = format!(
        "classes = {}\ntrain = train.txt\nvalid = valid.txt\nnames = synth.names\nbackup = backup\n",
        opts.classes.len()
    );
    let data_file = out.join("synth.data");
    write_atomic(&data_file, data.as_bytes())?;
    Ok(SynthSummary {
        data_file,
        train: train.lines().count(),
        valid: valid.lines().count(),
        objects: objects.iter().sum(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_parse() {
        assert_eq!(parse_classes("3").unwrap(), [Shape::Circle, Shape::Square, Shape::Triangle]);
        assert_eq!(parse_classes("ring, diamond").unwrap(), [Shape::Ring, Shape::Diamond]);
        assert!(parse_classes("0").is_err());
        assert!(parse_classes("7").is_err());
        assert!(parse_classes("circle,blob").unwrap_err().contains("unknown shape 'blob'"));
        assert!(parse_classes("ring,ring").is_err());
    }

    #[test]
    fn objects_are_where_the_labels_say() {
        let classes = Shape::ALL;
        let mut checked = 0;
        for i in 0..60 {
            let im = render(7, i, 96, &classes);
            assert!((1..=6).contains(&im.objects.len()));
            for (k, o) in im.objects.iter().enumerate() {
                let l = o.label(96);
                // Inside the image.
                assert!(l.cx - l.w / 2.0 >= 0.0 && l.cx + l.w / 2.0 <= 1.0, "{l:?}");
                assert!(l.cy - l.h / 2.0 >= 0.0 && l.cy + l.h / 2.0 <= 1.0, "{l:?}");
                assert!(l.w >= 0.12 * 0.85 && l.w <= 0.4 * 1.16, "{l:?}");
                // The centre pixel has the object's colour unless the shape is hollow
                // or a later object covers the centre.
                let (px, py) = ((l.cx * 96.0) as u32, (l.cy * 96.0) as u32);
                let covered = im.objects[k + 1..]
                    .iter()
                    .any(|p| (p.x0..p.x0 + p.w).contains(&px) && (p.y0..p.y0 + p.h).contains(&py));
                if o.shape.solid_centre() && !covered {
                    assert_eq!(im.rgb.get_pixel(px, py).0, o.color, "image {i} object {k} {o:?}");
                    checked += 1;
                }
                // The bounding box is tight: the shape touches its left and top edges.
                if !covered {
                    let left = (o.y0..o.y0 + o.h).any(|y| im.rgb.get_pixel(o.x0, y).0 == o.color);
                    let top = (o.x0..o.x0 + o.w).any(|x| im.rgb.get_pixel(x, o.y0).0 == o.color);
                    assert!(left || top, "image {i} object {k} {o:?}");
                }
            }
        }
        assert!(checked > 100, "{checked}");
    }

    #[test]
    fn overlap_is_bounded_and_classes_all_appear() {
        let mut seen = [0usize; 5];
        for i in 0..100 {
            let im = render(1, i, 128, &Shape::DEFAULT);
            for (a, o) in im.objects.iter().enumerate() {
                seen[o.class] += 1;
                for p in &im.objects[a + 1..] {
                    assert!(o.iou(p) <= 0.3);
                }
            }
        }
        assert!(seen.iter().all(|&n| n > 40), "{seen:?}");
    }

    #[test]
    fn deterministic_and_seed_dependent() {
        let a = render(3, 5, 64, &Shape::DEFAULT);
        let b = render(3, 5, 64, &Shape::DEFAULT);
        let c = render(4, 5, 64, &Shape::DEFAULT);
        assert_eq!(a.rgb, b.rgb);
        assert_eq!(a.objects, b.objects);
        assert_ne!(a.rgb, c.rgb);
    }
}
