//! Label files: one object per line, `class cx cy w h`, box centre and size relative
//! to the image (0..1), as Darknet's `read_boxes` reads them.
//!
//! ternc is stricter than Darknet's `fscanf` loop (which stops silently at the first
//! thing it cannot read): every non-blank line must hold exactly five numbers, or six
//! where the sixth is a `difficult` flag (`0` or `1`). The flag is a ternc extension
//! for VOC-style evaluation ([`crate::map`]): Darknet's own label files never have it
//! (its `voc_label.py` leaves difficult objects out), and Darknet would misread such a
//! file. Training drops difficult objects, as `voc_label.py` does; evaluation counts
//! them neither as hits nor as misses.

use std::path::Path;

use ternc_ir::InputError;

/// One labelled object.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Label {
    pub class: usize,
    pub cx: f32,
    pub cy: f32,
    pub w: f32,
    pub h: f32,
    pub difficult: bool,
}

impl Label {
    /// `x0, y0, x1, y1` in pixels of a `img_w × img_h` image.
    pub fn to_pixels(&self, img_w: usize, img_h: usize) -> [f32; 4] {
        let (iw, ih) = (img_w as f32, img_h as f32);
        [
            (self.cx - self.w / 2.0) * iw,
            (self.cy - self.h / 2.0) * ih,
            (self.cx + self.w / 2.0) * iw,
            (self.cy + self.h / 2.0) * ih,
        ]
    }
}

const EXPECTED: &str = "expected 5 numbers 'class cx cy w h' (and an optional difficult flag 0/1)";

/// Parses label text; `classes` (when known) bounds the class index. `path` is for
/// messages: `labels/x.txt:3: expected 5 numbers ...`.
pub fn parse_labels(path: &Path, text: &str, classes: Option<usize>) -> Result<Vec<Label>, InputError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let err = |msg: String| InputError::at_line(path, line, msg);
        let fields: Vec<&str> = raw.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        if fields.len() != 5 && fields.len() != 6 {
            return Err(err(format!("{EXPECTED}, found {} field(s)", fields.len())));
        }
        let class = fields[0]
            .parse::<usize>()
            .map_err(|_| err(format!("class '{}': expected a class index, {EXPECTED}", fields[0])))?;
        if let Some(n) = classes {
            if class >= n {
                return Err(err(format!("class {class}: expected 0..{} ({n} classes)", n - 1)));
            }
        }
        let mut v = [0f32; 4];
        for (k, (slot, name)) in v.iter_mut().zip(["cx", "cy", "w", "h"]).enumerate() {
            let f = fields[k + 1];
            *slot = f
                .parse::<f32>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| err(format!("{name} '{f}' is not a finite number: {EXPECTED}")))?;
        }
        if v[2] < 0.0 || v[3] < 0.0 {
            return Err(err(format!("negative box size w={} h={}: expected w, h >= 0", v[2], v[3])));
        }
        let difficult = match fields.get(5) {
            None | Some(&"0") => false,
            Some(&"1") => true,
            Some(f) => return Err(err(format!("difficult flag '{f}': expected 0 or 1"))),
        };
        out.push(Label { class, cx: v[0], cy: v[1], w: v[2], h: v[3], difficult });
    }
    Ok(out)
}

/// Reads a label file. `Ok(None)` when it does not exist: Darknet treats that as an
/// image without objects (and so do the loader and `ternc map`, counting it).
pub fn read_labels(path: &Path, classes: Option<usize>) -> Result<Option<Vec<Label>>, InputError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(InputError::whole(path, format!("cannot read the label file: {e}"))),
    };
    let text = String::from_utf8(bytes).map_err(|e| {
        let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()].iter().filter(|&&b| b == b'\n').count();
        InputError::at_line(path, line, format!("not UTF-8 text: {EXPECTED}"))
    })?;
    parse_labels(path, &text, classes).map(Some)
}

/// Formats labels as a Darknet label file (six decimals, `\n` line ends; the
/// difficult flag only when set).
pub fn format_labels(labels: &[Label]) -> String {
    let mut s = String::new();
    for l in labels {
        s += &format!("{} {:.6} {:.6} {:.6} {:.6}", l.class, l.cx, l.cy, l.w, l.h);
        if l.difficult {
            s += " 1";
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Vec<Label>, String> {
        parse_labels(Path::new("labels/x.txt"), text, Some(3)).map_err(|e| e.to_string())
    }

    #[test]
    fn parses_darknet_lines() {
        let got = p("0 0.5 0.5 0.25 0.125\n\n2\t0.1 0.2 0.3 0.4 1\r\n  1 1e-1 .5 1 1 0  \n").unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], Label { class: 0, cx: 0.5, cy: 0.5, w: 0.25, h: 0.125, difficult: false });
        assert_eq!((got[1].class, got[1].w, got[1].difficult), (2, 0.3, true));
        assert_eq!((got[2].cx, got[2].difficult), (0.1, false));
        assert_eq!(got[0].to_pixels(100, 80), [37.5, 35.0, 62.5, 45.0]);
        assert_eq!(p("").unwrap(), []);
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let e = p("0 .5 .5 .1 .1\n\n1 .5 .5 .1\n").unwrap_err();
        assert_eq!(
            e,
            "labels/x.txt:3: expected 5 numbers 'class cx cy w h' (and an optional difficult flag 0/1), found 4 field(s)"
        );
        assert!(p("x .5 .5 .1 .1").unwrap_err().starts_with("labels/x.txt:1: class 'x'"));
        assert!(p("1.5 .5 .5 .1 .1").unwrap_err().starts_with("labels/x.txt:1: class '1.5'"));
        assert_eq!(
            p("0 .5 .5 .1 .1\n3 .5 .5 .1 .1").unwrap_err(),
            "labels/x.txt:2: class 3: expected 0..2 (3 classes)"
        );
        assert!(p("0 .5 nan .1 .1")
            .unwrap_err()
            .starts_with("labels/x.txt:1: cy 'nan' is not a finite number"));
        assert!(p("0 .5 .5 -.1 .1").unwrap_err().starts_with("labels/x.txt:1: negative box size"));
        assert!(p("0 .5 .5 .1 .1 2").unwrap_err().starts_with("labels/x.txt:1: difficult flag '2'"));
        assert!(p("0 .5 .5 .1 .1 0 7").unwrap_err().contains("found 7 field(s)"));
    }

    #[test]
    fn round_trip_and_missing_file() {
        let labels = p("0 0.5 0.25 0.125 0.0625\n2 0.1 0.2 0.3 0.4 1\n").unwrap();
        let text = format_labels(&labels);
        assert_eq!(text, "0 0.500000 0.250000 0.125000 0.062500\n2 0.100000 0.200000 0.300000 0.400000 1\n");
        assert_eq!(p(&text).unwrap(), labels);
        assert_eq!(read_labels(Path::new("/nonexistent/ternc/labels.txt"), None).unwrap(), None);
    }
}
