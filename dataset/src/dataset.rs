//! A data set as a Darknet `.data` file describes it.

use std::path::{Path, PathBuf};

use ternc_frontend::data::{read_data, read_names, DataConfig};
use ternc_ir::InputError;

use crate::paths::{dir_of, label_candidates, read_list, resolve};

/// One image and where its labels are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub image: PathBuf,
    /// The label file: the first of [`label_candidates`] that exists, or Darknet's
    /// [`crate::paths::label_path`] when none does (read as "no objects").
    pub label: PathBuf,
}

impl Sample {
    pub fn new(image: PathBuf) -> Sample {
        let candidates = label_candidates(&image);
        let label = candidates.iter().find(|p| p.exists()).unwrap_or(&candidates[0]).clone();
        Sample { image, label }
    }
}

/// A `.data` file with its lists read: paths resolved as [`crate::paths`] says.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub data_file: PathBuf,
    pub config: DataConfig,
    /// `classes=`, or the number of names when the file has no `classes=`.
    pub classes: usize,
    /// Class names (`names=`); `class0, class1, ...` when the file has no `names=`.
    pub names: Vec<String>,
    /// The `train=` list (empty when the file has none).
    pub train: Vec<Sample>,
    /// The `valid=` list (empty when the file has none).
    pub valid: Vec<Sample>,
    /// `backup=`, resolved like the other paths (it may not exist yet).
    pub backup: Option<PathBuf>,
}

impl Dataset {
    /// Reads the `.data` file, its names and its train / valid lists. A missing or
    /// malformed file is an [`InputError`] naming it (and the line).
    pub fn open(data_file: &Path) -> Result<Dataset, InputError> {
        let config = read_data(data_file)?;
        let base = dir_of(data_file);
        let names = match &config.names {
            Some(n) => Some(read_names(&resolve(n, base))?),
            None => None,
        };
        let classes = match (config.classes, &names) {
            (Some(c), Some(n)) if n.len() < c => {
                return Err(InputError::whole(
                    data_file,
                    format!(
                        "classes={c} but the names file has {} names: expected one name per class",
                        n.len()
                    ),
                ))
            }
            (Some(c), _) => c,
            (None, Some(n)) => n.len(),
            (None, None) => {
                return Err(InputError::whole(
                    data_file,
                    "no classes= and no names=: expected the class count",
                ))
            }
        };
        let names = names.unwrap_or_else(|| (0..classes).map(|i| format!("class{i}")).collect());
        let list = |p: &Option<PathBuf>| -> Result<Vec<Sample>, InputError> {
            match p {
                Some(p) => Ok(read_list(&resolve(p, base))?.into_iter().map(Sample::new).collect()),
                None => Ok(Vec::new()),
            }
        };
        let train = list(&config.train)?;
        let valid = list(&config.valid)?;
        let backup = config.backup.as_ref().map(|b| {
            if b.is_relative() && !b.exists() {
                // Where the other files were found, if they were found beside the .data file.
                match (base, &config.train) {
                    (Some(d), Some(t)) if !t.exists() && d.join(t).exists() => d.join(b),
                    _ => b.clone(),
                }
            } else {
                b.clone()
            }
        });
        Ok(Dataset { data_file: data_file.to_path_buf(), config, classes, names, train, valid, backup })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_a_data_file_relative_to_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("images")).unwrap();
        std::fs::create_dir_all(d.join("labels")).unwrap();
        std::fs::write(d.join("images/a.png"), b"").unwrap();
        std::fs::write(d.join("labels/a.txt"), b"0 .5 .5 .1 .1\n").unwrap();
        std::fs::write(d.join("images/b.png"), b"").unwrap();
        std::fs::write(d.join("images/b.txt"), b"").unwrap(); // beside the image
        std::fs::write(d.join("t.txt"), "images/a.png\nimages/b.png\n").unwrap();
        std::fs::write(d.join("v.txt"), "images/c.png\n").unwrap();
        std::fs::write(d.join("x.names"), "dog\ncat\n").unwrap();
        std::fs::write(d.join("x.data"), "classes=2\ntrain=t.txt\nvalid=v.txt\nnames=x.names\nbackup=bk\n")
            .unwrap();
        let ds = Dataset::open(&d.join("x.data")).unwrap();
        assert_eq!(ds.classes, 2);
        assert_eq!(ds.names, ["dog", "cat"]);
        assert_eq!(ds.train[0], Sample { image: d.join("images/a.png"), label: d.join("labels/a.txt") });
        assert_eq!(ds.train[1].label, d.join("images/b.txt"));
        // Nothing exists: as written, with Darknet's label path.
        assert_eq!(ds.valid[0], Sample { image: "images/c.png".into(), label: "labels/c.txt".into() });
        assert_eq!(ds.backup, Some(d.join("bk")));

        std::fs::write(d.join("y.data"), "classes=3\nnames=x.names\n").unwrap();
        let e = Dataset::open(&d.join("y.data")).unwrap_err().to_string();
        assert!(
            e.ends_with("y.data: classes=3 but the names file has 2 names: expected one name per class"),
            "{e}"
        );
        std::fs::write(d.join("z.data"), "classes=2\ntrain=nope.txt\n").unwrap();
        let e = Dataset::open(&d.join("z.data")).unwrap_err().to_string();
        assert!(e.starts_with("nope.txt: cannot read the image list"), "{e}");
        std::fs::write(d.join("w.data"), "classes=2\ntrain\n").unwrap();
        let e = Dataset::open(&d.join("w.data")).unwrap_err().to_string();
        assert!(e.ends_with("w.data:2: 'train' is not a key=value line"), "{e}");
    }
}
