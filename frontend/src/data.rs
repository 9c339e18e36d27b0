//! Darknet `.data` (dataset description) and `.names` (class names) files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ternc_ir::InputError;

/// A `.data` file: `classes`, `train`, `valid`, `names`, `backup`, and whatever else
/// it holds (kept in `other`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DataConfig {
    pub classes: Option<usize>,
    pub train: Option<PathBuf>,
    pub valid: Option<PathBuf>,
    pub names: Option<PathBuf>,
    pub backup: Option<PathBuf>,
    pub other: BTreeMap<String, String>,
}

fn read_text(path: &Path, what: &str) -> Result<String, InputError> {
    let bytes =
        std::fs::read(path).map_err(|e| InputError::whole(path, format!("cannot read {what}: {e}")))?;
    String::from_utf8(bytes).map_err(|e| {
        let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()].iter().filter(|&&b| b == b'\n').count();
        InputError::at_line(path, line, format!("not UTF-8 text: expected a {what}"))
    })
}

/// Parses `.data` text. Paths are kept as written: Darknet resolves them against
/// the working directory.
pub fn parse_data(path: &Path, text: &str) -> Result<DataConfig, InputError> {
    let mut d = DataConfig::default();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let s = raw.trim();
        if s.is_empty() || s.starts_with('#') || s.starts_with(';') {
            continue;
        }
        let Some((k, v)) = s.split_once('=') else {
            return Err(InputError::at_line(path, line, format!("'{s}' is not a key=value line")));
        };
        let (k, v) = (k.trim(), v.trim());
        if v.is_empty() {
            return Err(InputError::at_line(path, line, format!("key '{k}' has no value")));
        }
        match k {
            "classes" => {
                let n = v.parse::<usize>().ok().filter(|&n| n > 0);
                d.classes = Some(n.ok_or_else(|| {
                    InputError::at_line(path, line, format!("classes={v}: expected a positive integer"))
                })?);
            }
            "train" => d.train = Some(v.into()),
            "valid" => d.valid = Some(v.into()),
            "names" | "labels" => d.names = Some(v.into()),
            "backup" => d.backup = Some(v.into()),
            _ => {
                d.other.insert(k.to_string(), v.to_string());
            }
        }
    }
    Ok(d)
}

pub fn read_data(path: &Path) -> Result<DataConfig, InputError> {
    parse_data(path, &read_text(path, ".data file")?)
}

/// Class names, one per line; trailing blank lines are dropped, blank lines inside
/// are an error (they would shift every later class).
pub fn parse_names(path: &Path, text: &str) -> Result<Vec<String>, InputError> {
    let mut names: Vec<String> = text.lines().map(|l| l.trim().to_string()).collect();
    while names.last().is_some_and(String::is_empty) {
        names.pop();
    }
    if let Some(i) = names.iter().position(String::is_empty) {
        return Err(InputError::at_line(path, i + 1, "empty class name: expected one name per line"));
    }
    if names.is_empty() {
        return Err(InputError::whole(path, "no class names: expected one name per line"));
    }
    Ok(names)
}

pub fn read_names(path: &Path) -> Result<Vec<String>, InputError> {
    parse_names(path, &read_text(path, ".names file")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_file() {
        let d = parse_data(Path::new("v.data"), "classes= 20\ntrain  = /a/train.txt\nvalid = b.txt\nnames = data/voc.names\nbackup = backup\neval=voc\n").unwrap();
        assert_eq!(d.classes, Some(20));
        assert_eq!(d.train.unwrap(), PathBuf::from("/a/train.txt"));
        assert_eq!(d.names.unwrap(), PathBuf::from("data/voc.names"));
        assert_eq!(d.other["eval"], "voc");
        let e = parse_data(Path::new("v.data"), "classes=x\n").unwrap_err();
        assert_eq!(e.to_string(), "v.data:1: classes=x: expected a positive integer");
        assert!(parse_data(Path::new("v.data"), "\n\nnonsense\n")
            .unwrap_err()
            .to_string()
            .starts_with("v.data:3:"));
    }

    #[test]
    fn names_file() {
        assert_eq!(parse_names(Path::new("n"), "dog\r\ncat\n\n").unwrap(), ["dog", "cat"]);
        assert!(parse_names(Path::new("n"), "dog\n\ncat\n").unwrap_err().to_string().starts_with("n:2:"));
        assert!(parse_names(Path::new("n"), "\n").is_err());
    }
}
