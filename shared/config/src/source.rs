//! Pure: source text, locations and the diagnostics (errors and warnings) of one config file.

use std::fmt::{self, Write as _};
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// A 1-based line and column (in characters) inside the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Default)]
pub struct Location {
    /// 1-based line number.
    pub line: u32,
    /// 1-based column, counted in characters.
    pub column: u32,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// The text of a config file with an index of its line starts.
#[derive(Debug, Clone)]
pub struct SourceFile {
    path: PathBuf,
    text: String,
    line_starts: Vec<usize>,
}

impl SourceFile {
    /// Wraps `text` read from `path`.
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        let text = text.into();
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self {
            path: path.into(),
            text,
            line_starts,
        }
    }

    /// The path the text was read from (as given by the user).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The whole text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Converts a byte offset into a line and column; offsets past the end clamp to it.
    pub fn location(&self, offset: usize) -> Location {
        let offset = floor_char_boundary(&self.text, offset.min(self.text.len()));
        let line_idx = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let start = self.line_starts[line_idx];
        let column = self.text[start..offset].chars().count() + 1;
        Location {
            line: u32::try_from(line_idx + 1).unwrap_or(u32::MAX),
            column: u32::try_from(column).unwrap_or(u32::MAX),
        }
    }

    /// The text of 1-based line `line`, without its line ending.
    pub fn line_text(&self, line: u32) -> &str {
        let idx = (line as usize).saturating_sub(1);
        let Some(&start) = self.line_starts.get(idx) else {
            return "";
        };
        let end = self
            .line_starts
            .get(idx + 1)
            .map_or(self.text.len(), |&e| e.saturating_sub(1));
        self.text[start..end.max(start)].trim_end_matches('\r')
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The file is refused.
    Error,
    /// Suspicious but accepted.
    Warning,
}

/// One located message about the config file.
#[derive(Debug, Clone, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Dotted key path of the offending value, e.g. `fw.forward[1].port`.
    pub key: String,
    /// What is wrong, in one sentence.
    pub message: String,
    /// What to do about it, when we know.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// Where it is, when it has a place in the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// Byte range of the offending text.
    #[serde(skip)]
    pub span: Option<Range<usize>>,
}

impl Diagnostic {
    /// Sets the hint.
    pub fn hint(&mut self, hint: impl Into<String>) -> &mut Self {
        self.hint = Some(hint.into());
        self
    }
}

/// All diagnostics of one file, with the text needed to render them.
#[derive(Debug, Clone)]
pub struct Diagnostics {
    source: SourceFile,
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    /// Bundles diagnostics with their source, sorted by position (unlocated ones first).
    pub fn new(source: SourceFile, mut items: Vec<Diagnostic>) -> Self {
        items.sort_by_key(|d| (d.location, d.severity));
        Self { source, items }
    }

    /// The source file the diagnostics refer to.
    pub fn source(&self) -> &SourceFile {
        &self.source
    }

    /// Every diagnostic, in file order.
    pub fn items(&self) -> &[Diagnostic] {
        &self.items
    }

    /// Only the errors.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter().filter(|d| d.severity == Severity::Error)
    }

    /// Only the warnings.
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items
            .iter()
            .filter(|d| d.severity == Severity::Warning)
    }

    /// Number of errors.
    pub fn error_count(&self) -> usize {
        self.errors().count()
    }

    /// True when there is nothing to report.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Renders one diagnostic as `FILE:LINE:COL: severity: message`, the line, a caret and the hint.
    pub fn render_one(&self, d: &Diagnostic) -> String {
        let mut out = String::new();
        let path = self.source.path().display();
        let sev = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        match d.location {
            Some(loc) => {
                let _ = writeln!(out, "{path}:{loc}: {sev}: {}", d.message);
                let line = self.source.line_text(loc.line);
                let gutter = loc.line.to_string().len();
                let width = d
                    .span
                    .as_ref()
                    .map(|s| {
                        let end = self.source.location(s.end);
                        if end.line == loc.line {
                            end.column.saturating_sub(loc.column).max(1)
                        } else {
                            let len = u32::try_from(line.chars().count()).unwrap_or(u32::MAX);
                            len.saturating_sub(loc.column - 1).max(1)
                        }
                    })
                    .unwrap_or(1);
                let _ = writeln!(out, "{:gutter$} |", "");
                let _ = writeln!(out, "{} | {line}", loc.line);
                let pad: String = line
                    .chars()
                    .take(loc.column.saturating_sub(1) as usize)
                    .map(|c| if c == '\t' { '\t' } else { ' ' })
                    .collect();
                let _ = writeln!(out, "{:gutter$} | {pad}{}", "", "^".repeat(width as usize));
                if let Some(h) = &d.hint {
                    let _ = writeln!(out, "{:gutter$} = hint: {h}", "");
                }
            }
            None => {
                let _ = writeln!(out, "{path}: {sev}: {}", d.message);
                if let Some(h) = &d.hint {
                    let _ = writeln!(out, "  = hint: {h}");
                }
            }
        }
        out
    }

    /// Renders every diagnostic, then a one-line summary.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for d in &self.items {
            out.push_str(&self.render_one(d));
        }
        let errors = self.error_count();
        let warnings = self.items.len() - errors;
        if errors > 0 {
            let _ = writeln!(
                out,
                "{}: {} error{}, {} warning{}: the configuration was refused",
                self.source.path().display(),
                errors,
                plural(errors),
                warnings,
                plural(warnings)
            );
        }
        out
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

impl std::error::Error for Diagnostics {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_counts_characters_and_lines() {
        let s = SourceFile::new("x.toml", "a = 1\nbé = 2\n");
        assert_eq!(s.location(0), Location { line: 1, column: 1 });
        assert_eq!(s.location(6), Location { line: 2, column: 1 });
        // 'é' is two bytes; the '=' after "bé " is the 4th character.
        assert_eq!(s.location(10), Location { line: 2, column: 4 });
        assert_eq!(s.line_text(2), "bé = 2");
        assert_eq!(s.line_text(9), "");
    }

    #[test]
    fn render_shows_line_caret_and_hint() {
        let src = SourceFile::new("edge.toml", "version = 1\nprot = \"tcp\"\n");
        let mut d = Diagnostic {
            severity: Severity::Error,
            key: "prot".into(),
            message: "unknown key `prot`".into(),
            hint: None,
            location: Some(src.location(12)),
            span: Some(12..16),
        };
        d.hint("did you mean `proto`?");
        let r = Diagnostics::new(src, vec![d]).render();
        assert!(
            r.starts_with("edge.toml:2:1: error: unknown key `prot`\n"),
            "{r}"
        );
        assert!(r.contains("2 | prot = \"tcp\"\n  | ^^^^\n"), "{r}");
        assert!(r.contains("= hint: did you mean `proto`?"), "{r}");
        assert!(r.contains("1 error, 0 warnings"), "{r}");
    }
}
