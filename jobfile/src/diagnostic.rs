//! Problems found in a job file, each with file, line, column, field path and what
//! was expected.

use crate::yaml::Pos;
use std::fmt;

/// One problem in a job file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file name as given.
    pub file: String,
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
    /// The field path, e.g. `operators[2].window.size` (empty for the whole file).
    pub path: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Collects the problems of one file.
#[derive(Debug)]
pub(crate) struct Problems {
    file: String,
    pub(crate) list: Vec<Diagnostic>,
    /// Names of sources and operators whose entries have problems: defined, so
    /// readers are not also told the stream is undefined.
    pub(crate) unusable: Vec<String>,
}

impl Problems {
    pub(crate) fn new(file: &str) -> Self {
        Self {
            file: file.to_string(),
            list: Vec::new(),
            unusable: Vec::new(),
        }
    }

    pub(crate) fn add(&mut self, at: Pos, path: &str, message: impl Into<String>) {
        self.list.push(Diagnostic {
            file: self.file.clone(),
            line: at.line,
            column: at.column,
            path: path.to_string(),
            message: message.into(),
        });
    }

    /// The problems in file order.
    pub(crate) fn sorted(mut self) -> Vec<Diagnostic> {
        self.list.sort_by_key(|d| (d.line, d.column));
        self.list.dedup();
        self.list
    }
}
