//! Darknet `.cfg` text: sections of `key=value` lines, read as Darknet reads them
//! (all whitespace inside a line is dropped; `#` and `;` start comment lines; the
//! first occurrence of a key wins), but with every malformed line an error.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};

use ternc_ir::{InputError, Warning};

#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    pub value: String,
    pub line: usize,
    used: Cell<bool>,
}

/// One `[section]` with its entries in file order.
#[derive(Debug, Clone)]
pub struct Section {
    /// The name between the brackets, e.g. `convolutional`.
    pub name: String,
    pub line: usize,
    pub entries: Vec<Entry>,
}

/// A parsed cfg file.
#[derive(Debug, Clone)]
pub struct CfgFile {
    pub path: PathBuf,
    pub sections: Vec<Section>,
}

/// Splits cfg text into sections. Only the syntax is checked here; values are
/// checked when each section is lowered.
pub fn parse(path: &Path, text: &str) -> Result<CfgFile, InputError> {
    let mut sections: Vec<Section> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let s: String = raw.chars().filter(|c| !matches!(c, ' ' | '\t' | '\r' | '\n')).collect();
        if s.is_empty() || s.starts_with('#') || s.starts_with(';') {
            continue;
        }
        if let Some(rest) = s.strip_prefix('[') {
            let Some(end) = rest.find(']') else {
                return Err(InputError::at_line(
                    path,
                    line,
                    format!("'{s}' has no closing ']': expected a section header like [convolutional]"),
                ));
            };
            let tail = &rest[end + 1..];
            if !(tail.is_empty() || tail.starts_with('#') || tail.starts_with(';')) {
                return Err(InputError::at_line(
                    path,
                    line,
                    format!("unexpected '{tail}' after the section header"),
                ));
            }
            sections.push(Section { name: rest[..end].to_string(), line, entries: Vec::new() });
            continue;
        }
        let Some((key, value)) = s.split_once('=') else {
            return Err(InputError::at_line(
                path,
                line,
                format!("'{s}' is not a section header or key=value line"),
            ));
        };
        if key.is_empty() {
            return Err(InputError::at_line(path, line, format!("'{s}' has no key before '='")));
        }
        if value.is_empty() {
            return Err(InputError::at_line(path, line, format!("key '{key}' has no value")));
        }
        let Some(section) = sections.last_mut() else {
            return Err(InputError::at_line(
                path,
                line,
                format!("'{key}={value}' comes before the first section; expected [net] first"),
            ));
        };
        section.entries.push(Entry {
            key: key.to_string(),
            value: value.to_string(),
            line,
            used: Cell::new(false),
        });
    }
    Ok(CfgFile { path: path.to_path_buf(), sections })
}

/// Typed, tracked access to one section's keys, with errors pointing at the line.
pub struct Options<'a> {
    pub path: &'a Path,
    pub section: &'a Section,
    notes: RefCell<Vec<Warning>>,
}

/// A value without a trailing `#comment` (Darknet's atoi/atof stop there too).
fn bare(value: &str) -> &str {
    let end = value.find(['#', ';']).unwrap_or(value.len());
    &value[..end]
}

impl<'a> Options<'a> {
    pub fn new(path: &'a Path, section: &'a Section) -> Self {
        Options { path, section, notes: RefCell::new(Vec::new()) }
    }

    /// Records a warning about something Darknet tolerates at `line`.
    pub fn warn(&self, line: usize, msg: impl Into<String>) {
        self.notes.borrow_mut().push(Warning { file: self.path.to_path_buf(), line, msg: msg.into() });
    }

    pub fn err(&self, line: usize, msg: impl Into<String>) -> InputError {
        InputError::at_line(self.path, line, msg)
    }

    /// An error about the section as a whole (pointing at its header line).
    pub fn section_err(&self, msg: impl std::fmt::Display) -> InputError {
        self.err(self.section.line, format!("[{}]: {msg}", self.section.name))
    }

    /// The first entry for `key` (Darknet's rule), marked as used.
    pub fn entry(&self, key: &str) -> Option<&'a Entry> {
        let e = self.section.entries.iter().find(|e| e.key == key)?;
        e.used.set(true);
        Some(e)
    }

    pub fn has(&self, key: &str) -> bool {
        self.section.entries.iter().any(|e| e.key == key)
    }

    pub fn line_of(&self, key: &str) -> usize {
        self.section.entries.iter().find(|e| e.key == key).map_or(self.section.line, |e| e.line)
    }

    fn parse_int(&self, e: &Entry, text: &str) -> Result<i64, InputError> {
        text.parse::<i32>()
            .map(i64::from)
            .map_err(|_| self.err(e.line, format!("{}={}: expected an integer", e.key, e.value)))
    }

    fn parse_float(&self, e: &Entry, text: &str) -> Result<f32, InputError> {
        match text.parse::<f32>() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => Err(self.err(e.line, format!("{}={}: expected a number", e.key, e.value))),
        }
    }

    pub fn int(&self, key: &str, default: i64) -> Result<i64, InputError> {
        match self.entry(key) {
            Some(e) => self.parse_int(e, bare(&e.value)),
            None => Ok(default),
        }
    }

    /// An integer that must be at least `min`.
    pub fn int_min(&self, key: &str, default: i64, min: i64) -> Result<usize, InputError> {
        let v = self.int(key, default)?;
        if v < min {
            return Err(self.err(self.line_of(key), format!("{key}={v}: expected an integer >= {min}")));
        }
        Ok(v as usize)
    }

    pub fn flag(&self, key: &str, default: bool) -> Result<bool, InputError> {
        Ok(self.int(key, default as i64)? != 0)
    }

    pub fn float(&self, key: &str, default: f32) -> Result<f32, InputError> {
        match self.entry(key) {
            Some(e) => self.parse_float(e, bare(&e.value)),
            None => Ok(default),
        }
    }

    pub fn str(&self, key: &str, default: &str) -> String {
        self.entry(key).map_or(default, |e| bare(&e.value)).to_string()
    }

    /// One of `choices`, or an error listing them.
    pub fn choice(&self, key: &str, default: &str, choices: &[&str]) -> Result<String, InputError> {
        let v = self.str(key, default);
        if choices.contains(&v.as_str()) {
            Ok(v)
        } else {
            Err(self.err(self.line_of(key), format!("{key}={v}: expected one of {}", choices.join(", "))))
        }
    }

    fn items(&self, e: &'a Entry) -> Vec<&'a str> {
        let mut v: Vec<&str> = bare(&e.value).split(',').collect();
        // A trailing comma is harmless in Darknet; drop the empty item it makes.
        if v.len() > 1 && v.last() == Some(&"") {
            v.pop();
        }
        v
    }

    /// A comma-separated integer list, `None` when the key is absent.
    pub fn int_list(&self, key: &str) -> Result<Option<Vec<i64>>, InputError> {
        let Some(e) = self.entry(key) else {
            return Ok(None);
        };
        self.items(e).into_iter().map(|t| self.parse_int(e, t)).collect::<Result<_, _>>().map(Some)
    }

    pub fn float_list(&self, key: &str) -> Result<Option<Vec<f32>>, InputError> {
        let Some(e) = self.entry(key) else {
            return Ok(None);
        };
        self.items(e).into_iter().map(|t| self.parse_float(e, t)).collect::<Result<_, _>>().map(Some)
    }

    /// Rejects a Darknet feature ternc does not implement, when it is switched on.
    pub fn unsupported(&self, keys: &[&str]) -> Result<(), InputError> {
        for key in keys {
            if let Some(e) = self.entry(key) {
                let off = matches!(bare(&e.value), "0" | "0.0" | "none");
                if !off {
                    return Err(self.err(
                        e.line,
                        format!(
                            "{}={}: this Darknet feature of [{}] is not supported by ternc",
                            e.key, e.value, self.section.name
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Warnings recorded with [`Options::warn`], then for keys this section does not
    /// know and for repeated keys.
    pub fn warnings(&self, known: &[&str]) -> Vec<Warning> {
        let mut out = self.notes.take();
        for (i, e) in self.section.entries.iter().enumerate() {
            let name = &self.section.name;
            if let Some(first) = self.section.entries[..i].iter().find(|f| f.key == e.key) {
                out.push(Warning {
                    file: self.path.to_path_buf(),
                    line: e.line,
                    msg: format!(
                        "'{}' repeats line {} in [{name}]; the first value wins, as in Darknet",
                        e.key, first.line
                    ),
                });
            } else if !e.used.get() && !known.contains(&e.key.as_str()) {
                out.push(Warning {
                    file: self.path.to_path_buf(),
                    line: e.line,
                    msg: format!("unknown key '{}' in [{name}] is ignored (Darknet ignores it too)", e.key),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Result<CfgFile, InputError> {
        parse(Path::new("t.cfg"), text)
    }

    #[test]
    fn strips_whitespace_and_comments_like_darknet() {
        let c =
            cfg("# comment\n[net]\n wid th = 4 16\n; other\nheight=416 # trailing\n\n[conv]\nfilters=8\n")
                .unwrap();
        assert_eq!(c.sections.len(), 2);
        assert_eq!(c.sections[0].name, "net");
        assert_eq!(c.sections[0].entries[0].key, "width");
        assert_eq!(c.sections[0].entries[0].value, "416");
        assert_eq!(c.sections[0].entries[1].line, 5);
        let o = Options::new(Path::new("t.cfg"), &c.sections[0]);
        assert_eq!(o.int("height", 0).unwrap(), 416);
        assert_eq!(c.sections[1].line, 7);
    }

    #[test]
    fn first_key_wins_and_repeats_warn() {
        let c = cfg("[net]\nwidth=1\nwidth=2\nbogus=3\n").unwrap();
        let o = Options::new(Path::new("t.cfg"), &c.sections[0]);
        assert_eq!(o.int("width", 0).unwrap(), 1);
        let w = o.warnings(&["width"]);
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].line, 3);
        assert!(w[1].msg.contains("unknown key 'bogus'"), "{}", w[1]);
    }

    #[test]
    fn syntax_errors_name_the_line() {
        for (text, line) in [
            ("[net]\nwidth\n", 2),
            ("width=3\n[net]\n", 1),
            ("[net]\n[conv\n", 2),
            ("[net]\n=3\n", 2),
            ("[net]\nwidth=\n", 2),
            ("[net]x\n", 1),
        ] {
            let e = cfg(text).unwrap_err();
            assert_eq!(e.loc, ternc_ir::Loc::Line(line), "{text:?}: {e}");
            assert!(e.to_string().starts_with(&format!("t.cfg:{line}: ")), "{e}");
        }
    }

    #[test]
    fn typed_values() {
        let c = cfg("[x]\na=12\nb=1.5\nc=abc\nd=1,2,3,\ne=0.5,x\nf=-3\n").unwrap();
        let o = Options::new(Path::new("t.cfg"), &c.sections[0]);
        assert_eq!(o.float("b", 0.0).unwrap(), 1.5);
        assert!(o.int("b", 0).unwrap_err().to_string().contains("t.cfg:3: b=1.5: expected an integer"));
        assert!(o.float("c", 0.0).is_err());
        assert_eq!(o.int_list("d").unwrap().unwrap(), vec![1, 2, 3]);
        assert!(o.float_list("e").unwrap_err().to_string().starts_with("t.cfg:6:"));
        assert!(o.int_min("f", 1, 1).unwrap_err().to_string().contains("f=-3"));
        assert_eq!(o.int("missing", 7).unwrap(), 7);
    }
}
