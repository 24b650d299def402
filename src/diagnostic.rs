//! Diagnostics of the files the gateway reads (gateway.toml, the keys file, the users file): a
//! message tied to a place, printed as `file:line:col: message`, and the messages several of
//! those files share. A leaf: the config and the loaders below it all report through it.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem found in a config file, with the place it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file the problem is in.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
    /// What is wrong, for a person to read.
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic at byte offset `span.start` of `source`.
    pub fn at(file: &Path, source: &str, span: Range<usize>, message: impl Into<String>) -> Self {
        let (line, column) = line_and_column(source, span.start);
        Diagnostic {
            file: file.to_path_buf(),
            line,
            column,
            message: message.into(),
        }
    }

    /// A diagnostic about the file as a whole (it cannot be read, say): reported at 1:1.
    pub fn whole_file(file: &Path, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.to_path_buf(),
            line: 1,
            column: 1,
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

/// Every problem a config load found; a load either succeeds whole or reports all of these.
#[derive(Debug, Clone)]
pub struct ConfigErrors {
    /// The problems, in the order of the places they were found at.
    pub diagnostics: Vec<Diagnostic>,
    /// Every file the rejected config names (existing or not), so that a watcher can retry
    /// when one of them appears or changes.
    pub named: Vec<PathBuf>,
}

impl ConfigErrors {
    /// One problem, in a config that names no files that could be read.
    pub fn one(diagnostic: Diagnostic) -> Self {
        ConfigErrors {
            diagnostics: vec![diagnostic],
            named: Vec::new(),
        }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, diagnostic) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{diagnostic}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Converts a byte offset into a 1-based (line, column), the column counted in characters so
/// that editors land on the right spot in lines holding non-ASCII text.
pub fn line_and_column(source: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The message for a plan name no `[plans.NAME]` defines.
pub fn unknown_plan<'a>(name: &str, known: impl Iterator<Item = &'a String>) -> String {
    let known: Vec<&str> = known.map(String::as_str).collect();
    if known.is_empty() {
        format!("plan `{name}` is not defined: add a [plans.{name}] table")
    } else {
        format!(
            "plan `{name}` is not defined in [plans] (defined: {})",
            known.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_one_based_lines_and_columns() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_and_column(text, 0), (1, 1));
        assert_eq!(line_and_column(text, 4), (1, 5));
        assert_eq!(line_and_column(text, 6), (2, 1));
        // 'é' is two bytes but one column.
        assert_eq!(line_and_column(text, 10), (2, 4));
        assert_eq!(line_and_column(text, 999), (3, 1));
    }

    #[test]
    fn display_is_file_line_column_message() {
        let d = Diagnostic::at(Path::new("g.toml"), "x\ny = 2", 2..3, "bad");
        assert_eq!(d.to_string(), "g.toml:2:1: bad");
    }
}
