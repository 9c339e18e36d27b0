//! Paths in Darknet's data layout.
//!
//! **Resolution.** Darknet opens every path in a `.data` file or an image list as
//! written, so relative paths are relative to the current directory. ternc does the
//! same first and, when nothing exists there, tries the path relative to the
//! directory of the file that names it (the `.data` file or the list). So a data set
//! whose files name each other relative to its own folder (what `ternc dataset synth`
//! writes) works from any directory, and a Darknet-style set works from where Darknet
//! would be run.
//!
//! **Label paths.** [`label_path`] follows Darknet's `replace_image_to_label`:
//! the first `/images/train2017/`, `/images/val2017/`, `/images/train2014/`,
//! `/images/val2014/` (COCO) and `/JPEGImages/` (VOC) become the `labels/` folder (also
//! with backslashes); then, as the original Darknet and the layout
//! ("labels/ beside images/") do, the first `images/` path component becomes `labels/`;
//! the image extension (`.jpg .jpeg .png .bmp .ppm .tiff`, lower or upper case)
//! becomes `.txt`. [`label_candidates`] adds the file beside the image (`a.jpg` →
//! `a.txt`, AlexeyAB's usual layout) as a second place to look.

use std::path::{Path, PathBuf};

use ternc_ir::InputError;

/// `path` as Darknet would open it (relative to the current directory) if that
/// exists, else relative to `base_dir` if that exists, else as written (so the error
/// names the path the user wrote).
pub fn resolve(path: &Path, base_dir: Option<&Path>) -> PathBuf {
    if path.is_absolute() || path.exists() {
        return path.to_path_buf();
    }
    if let Some(base) = base_dir {
        let p = base.join(path);
        if p.exists() {
            return p;
        }
    }
    path.to_path_buf()
}

/// The directory holding `file` (`None` for a bare file name: the current directory).
pub fn dir_of(file: &Path) -> Option<&Path> {
    file.parent().filter(|d| !d.as_os_str().is_empty())
}

/// Replaces the first occurrence of `from` (C's `strstr` + splice, as `find_replace`).
fn replace_first(s: &str, from: &str, to: &str) -> String {
    match s.find(from) {
        Some(i) => format!("{}{}{}", &s[..i], to, &s[i + from.len()..]),
        None => s.to_string(),
    }
}

const IMAGE_EXTENSIONS: [&str; 12] =
    [".jpg", ".JPG", ".jpeg", ".JPEG", ".png", ".PNG", ".bmp", ".BMP", ".ppm", ".PPM", ".tiff", ".TIFF"];

/// The label file Darknet reads for an image (see the module documentation).
pub fn label_path(image: &Path) -> PathBuf {
    let mut s = image.to_string_lossy().into_owned();
    for (from, to) in [
        ("/images/train2017/", "/labels/train2017/"),
        ("/images/val2017/", "/labels/val2017/"),
        ("/JPEGImages/", "/labels/"),
        ("\\images\\train2017\\", "\\labels\\train2017\\"),
        ("\\images\\val2017\\", "\\labels\\val2017\\"),
        ("\\images\\train2014\\", "\\labels\\train2014\\"),
        ("\\images\\val2014\\", "\\labels\\val2014\\"),
        ("/images/train2014/", "/labels/train2014/"),
        ("/images/val2014/", "/labels/val2014/"),
        ("\\JPEGImages\\", "\\labels\\"),
    ] {
        s = replace_first(&s, from, to);
    }
    // The original Darknet's images → labels, as a whole path component (also at the
    // start of a relative path).
    if let Some(rest) = s.strip_prefix("images/") {
        s = format!("labels/{rest}");
    } else {
        s = replace_first(&s, "/images/", "/labels/");
    }
    let s = s.trim_matches([' ', '\t']).to_string();
    for ext in IMAGE_EXTENSIONS {
        if let Some(stem) = s.strip_suffix(ext) {
            return PathBuf::from(format!("{stem}.txt"));
        }
    }
    PathBuf::from(s)
}

/// Where to look for an image's labels, in order: [`label_path`], then the `.txt`
/// beside the image (when different).
pub fn label_candidates(image: &Path) -> Vec<PathBuf> {
    let mut out = vec![label_path(image)];
    let beside = image.with_extension("txt");
    if !out.contains(&beside) && beside != image {
        out.push(beside);
    }
    out
}

/// Reads an image list: one path per line, blank lines ignored, surrounding
/// whitespace trimmed; each path resolved with [`resolve`] against the list's folder.
pub fn read_list(list: &Path) -> Result<Vec<PathBuf>, InputError> {
    let bytes = std::fs::read(list)
        .map_err(|e| InputError::whole(list, format!("cannot read the image list: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()].iter().filter(|&&b| b == b'\n').count();
        InputError::at_line(list, line, "not UTF-8 text: expected one image path per line")
    })?;
    let base = dir_of(list);
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(|l| resolve(Path::new(l), base)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lp(s: &str) -> String {
        label_path(Path::new(s)).to_string_lossy().into_owned()
    }

    #[test]
    fn darknet_label_paths() {
        assert_eq!(
            lp("/data/voc/VOCdevkit/VOC2007/JPEGImages/000001.jpg"),
            "/data/voc/VOCdevkit/VOC2007/labels/000001.txt"
        );
        assert_eq!(lp("/coco/images/train2014/COCO_1.jpg"), "/coco/labels/train2014/COCO_1.txt");
        assert_eq!(lp("/coco/images/val2017/x.JPEG"), "/coco/labels/val2017/x.txt");
        assert_eq!(lp("data/synth/images/000003.png"), "data/synth/labels/000003.txt");
        assert_eq!(lp("images/000003.png"), "labels/000003.txt");
        // Only the first `images/` component, only the final extension.
        assert_eq!(lp("a/images/b/images/c.jpg.png"), "a/labels/b/images/c.jpg.txt");
        // Not a whole component: left alone.
        assert_eq!(lp("myimages/x.bmp"), "myimages/x.txt");
        assert_eq!(lp("obj/x.tiff"), "obj/x.txt");
        // An unknown extension is kept (the caller reports it).
        assert_eq!(lp("obj/x.gif"), "obj/x.gif");
    }

    #[test]
    fn candidates_add_the_file_beside_the_image() {
        let c = label_candidates(Path::new("d/images/a.jpg"));
        assert_eq!(c, [PathBuf::from("d/labels/a.txt"), PathBuf::from("d/images/a.txt")]);
        assert_eq!(label_candidates(Path::new("obj/a.jpg")), [PathBuf::from("obj/a.txt")]);
    }

    #[test]
    fn lists_resolve_against_cwd_then_the_list_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("images")).unwrap();
        std::fs::write(dir.path().join("images/a.png"), b"x").unwrap();
        let list = dir.path().join("train.txt");
        // `Cargo.toml` exists in the crate folder (the tests' working directory).
        std::fs::write(&list, "images/a.png\n\n  Cargo.toml  \r\nimages/missing.png\n").unwrap();
        let got = read_list(&list).unwrap();
        assert_eq!(
            got,
            [
                dir.path().join("images/a.png"),
                PathBuf::from("Cargo.toml"),
                PathBuf::from("images/missing.png")
            ]
        );
        let e = read_list(&dir.path().join("nope.txt")).unwrap_err().to_string();
        assert!(e.contains("nope.txt: cannot read the image list"), "{e}");
    }
}
