//! Positioned error messages for policies, printed the way rustc prints its own.
//!
//! This module owns the [`Diagnostic`] type every layer of the policy compiler
//! returns (a message, a primary span with a label, optional secondary spans and a
//! hint) and its rendering as `error: ...` / `--> file:line:column` / caret lines.
//! It never decides what is an error, and never reads files: the caller passes the
//! source text and the name to show.

use super::syntax::Span;
use std::fmt::Write as _;

/// How serious a diagnostic is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Severity {
    /// The policy is rejected.
    Error,
    /// The policy compiles, but probably not as meant.
    Warning,
}

/// An error or warning about a span of policy text (boxed, so `Result`s stay
/// small); its parts are the fields of [`Report`].
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("{}", .0.message)]
pub struct Diagnostic(pub Box<Report>);

impl std::ops::Deref for Diagnostic {
    type Target = Report;
    fn deref(&self) -> &Report {
        &self.0
    }
}

impl std::ops::DerefMut for Diagnostic {
    fn deref_mut(&mut self) -> &mut Report {
        &mut self.0
    }
}

/// The parts of a [`Diagnostic`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Report {
    /// Error or warning.
    pub severity: Severity,
    /// One line saying what is wrong.
    pub message: String,
    /// Where (`None` for whole-policy problems).
    pub span: Option<Span>,
    /// Short text under the carets.
    pub label: String,
    /// Other places that explain the error, each with its label.
    pub notes: Vec<(Span, String)>,
    /// What to do about it.
    pub hint: Option<String>,
}

impl Diagnostic {
    /// An error at `span`.
    pub fn error(span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic(Box::new(Report {
            severity: Severity::Error,
            message: message.into(),
            span: Some(span),
            label: String::new(),
            notes: Vec::new(),
            hint: None,
        }))
    }

    /// An error about the whole policy.
    pub fn global(message: impl Into<String>) -> Diagnostic {
        let mut d = Diagnostic::error(Span::default(), message);
        d.span = None;
        d
    }

    /// The same diagnostic as a warning.
    pub fn warning(mut self) -> Diagnostic {
        self.severity = Severity::Warning;
        self
    }

    /// Adds the label under the carets.
    pub fn with_label(mut self, label: impl Into<String>) -> Diagnostic {
        self.label = label.into();
        self
    }

    /// Adds a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.hint = Some(hint.into());
        self
    }

    /// Adds a secondary span.
    pub fn with_note(mut self, span: Span, label: impl Into<String>) -> Diagnostic {
        self.notes.push((span, label.into()));
        self
    }

    /// `(line, column)` of the primary span, both from 1, or `None`.
    pub fn line_col(&self, source: &str) -> Option<(usize, usize)> {
        self.span.map(|s| line_col(source, s.start))
    }

    /// Renders the diagnostic as rustc does:
    ///
    /// ```text
    /// error: expected `then`, found `;`
    ///  --> policy.kat:3:14
    ///   |
    /// 3 | if port = 1 ; port := 2
    ///   |             ^ expected `then`
    ///   |
    ///   = hint: ...
    /// ```
    pub fn render(&self, file: &str, source: &str) -> String {
        let mut out = String::new();
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let _ = writeln!(out, "{kind}: {}", self.message);
        let Some(span) = self.span else {
            let _ = writeln!(out, " --> {file}");
            if let Some(h) = &self.hint {
                let _ = writeln!(out, "  = hint: {h}");
            }
            return out;
        };
        let (line, col) = line_col(source, span.start);
        let mut spans = vec![(span, self.label.as_str(), '^')];
        spans.extend(self.notes.iter().map(|(s, l)| (*s, l.as_str(), '-')));
        spans.sort_by_key(|(s, _, _)| s.start);
        let width = spans
            .iter()
            .map(|(s, _, _)| line_col(source, s.start).0)
            .max()
            .unwrap_or(line)
            .to_string()
            .len();
        let pad = " ".repeat(width);
        let _ = writeln!(out, "{pad}--> {file}:{line}:{col}");
        let _ = writeln!(out, "{pad} |");
        let mut last_line = 0;
        for (s, label, mark) in spans {
            let (l, c) = line_col(source, s.start);
            let text = source.lines().nth(l - 1).unwrap_or("");
            let text = text.trim_end_matches('\r');
            let line_chars = text.chars().count();
            let start = c - 1;
            let (el, ec) = line_col(source, s.end.max(s.start + 1));
            let end = if el == l {
                ec - 1
            } else {
                line_chars.max(start + 1)
            };
            let window = Window::around(line_chars, start);
            if l != last_line || window.clipped(line_chars) {
                let _ = writeln!(out, "{l:>width$} | {}", window.show(text, line_chars));
                last_line = l;
            }
            let len = end.min(window.end).saturating_sub(start).max(1);
            let indent: String = window
                .lead()
                .chars()
                .chain(text.chars().skip(window.start).take(start - window.start))
                .map(|ch| if ch == '\t' { '\t' } else { ' ' })
                .collect();
            let marks: String = std::iter::repeat_n(mark, len).collect();
            let _ = writeln!(out, "{pad} | {indent}{marks} {label}");
        }
        if let Some(h) = &self.hint {
            let _ = writeln!(out, "{pad} |");
            let _ = writeln!(out, "{pad} = hint: {h}");
        }
        out
    }
}

/// Longest source line echoed whole; longer ones (generated policies put
/// hundreds of kilobytes on a line) are clipped around the column.
const MAX_ECHOED_CHARS: usize = 160;

/// The characters `start..end` of a source line that an error echoes.
struct Window {
    start: usize,
    end: usize,
}

impl Window {
    fn around(line_chars: usize, column: usize) -> Window {
        if line_chars <= MAX_ECHOED_CHARS {
            return Window {
                start: 0,
                end: line_chars,
            };
        }
        let start = column.saturating_sub(MAX_ECHOED_CHARS / 2);
        Window {
            start,
            end: (start + MAX_ECHOED_CHARS).min(line_chars),
        }
    }

    fn clipped(&self, line_chars: usize) -> bool {
        self.start > 0 || self.end < line_chars
    }

    fn lead(&self) -> &'static str {
        if self.start > 0 {
            "…"
        } else {
            ""
        }
    }

    fn show(&self, text: &str, line_chars: usize) -> String {
        let tail = if self.end < line_chars { "…" } else { "" };
        let middle: String = text
            .chars()
            .skip(self.start)
            .take(self.end - self.start)
            .collect();
        format!("{}{middle}{tail}", self.lead())
    }
}

/// `(line, column)` of a byte offset, both counted from 1 (columns in characters).
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let mut line = 1;
    let mut col = 1;
    for (i, ch) in source.char_indices() {
        if i >= offset {
            break;
        }
        if ch == '\n' {
            line += 1;
            col = 1;
        } else {
            col += 1;
        }
    }
    (line, col)
}
