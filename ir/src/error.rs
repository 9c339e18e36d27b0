use std::fmt;
use std::path::PathBuf;

/// Where in an input file a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loc {
    /// The file as a whole.
    File,
    /// A 1-based line of a text file.
    Line(usize),
    /// A byte offset into a binary file.
    Offset(u64),
}

/// Bad user input: a cfg, weights, plan, image or dataset file that is not what ternc
/// expects. Rendered as one line, `FILE:LINE: what is wrong, what was expected`; the
/// command line turns it into exit code 2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InputError {
    pub file: PathBuf,
    pub loc: Loc,
    pub msg: String,
}

impl InputError {
    pub fn new(file: impl Into<PathBuf>, loc: Loc, msg: impl Into<String>) -> Self {
        InputError { file: file.into(), loc, msg: msg.into() }
    }
    pub fn at_line(file: impl Into<PathBuf>, line: usize, msg: impl Into<String>) -> Self {
        Self::new(file, Loc::Line(line), msg)
    }
    pub fn at_offset(file: impl Into<PathBuf>, offset: u64, msg: impl Into<String>) -> Self {
        Self::new(file, Loc::Offset(offset), msg)
    }
    pub fn whole(file: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Self::new(file, Loc::File, msg)
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        match self.loc {
            Loc::File => write!(f, "{file}: {}", self.msg),
            Loc::Line(l) => write!(f, "{file}:{l}: {}", self.msg),
            Loc::Offset(o) => write!(f, "{file}: byte offset {o}: {}", self.msg),
        }
    }
}

/// Something suspicious that Darknet tolerates (an unknown key, a duplicate key):
/// reported, never fatal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub file: PathBuf,
    pub line: usize,
    pub msg: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: warning: {}", self.file.display(), self.line, self.msg)
    }
}
