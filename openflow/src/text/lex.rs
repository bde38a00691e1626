//! The items of a line of flow text (`key=value`, `key:value` or a bare `key`)
//! with where each starts, and the errors that point at them.

/// Why a line of flow text was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message} (at `{token}`)")]
pub struct ParseError {
    /// 1-based line number (1 for [`parse_flow`](super::parse_flow)).
    pub line: usize,
    /// 1-based column, in characters, where the offending token starts.
    pub column: usize,
    /// The offending token, as written.
    pub token: String,
    /// What is wrong with it.
    pub message: String,
}

/// One `key[=value]` or `key:value` item of a line, with where it starts.
#[derive(Debug, Clone, Copy)]
pub(super) struct Item<'a> {
    /// Byte offset of the item in the line.
    pub(super) at: usize,
    /// The whole item as written.
    pub(super) text: &'a str,
    pub(super) key: &'a str,
    pub(super) value: Option<&'a str>,
}

fn is_delim(c: char) -> bool {
    matches!(c, ',' | ' ' | '\t' | '\r' | '\n')
}

/// Splits `s` (starting at byte `base` of the line) into items, as OVS does:
/// delimiters are commas and white space; a key ends at `=`, `:` or `(`; a value runs
/// to the next delimiter outside parentheses.
pub(super) fn items(s: &str, base: usize) -> Vec<Item<'_>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if is_delim(char::from(b[i])) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !matches!(b[i], b'=' | b':' | b'(') && !is_delim(char::from(b[i])) {
            i += 1;
        }
        let key = &s[start..i];
        let mut value = None;
        if i < b.len() && matches!(b[i], b'=' | b':' | b'(') {
            let paren = b[i] == b'(';
            let vstart = if paren { i } else { i + 1 };
            i = vstart;
            let mut depth = 0usize;
            while i < b.len() {
                match b[i] {
                    b'(' => depth += 1,
                    b')' => depth = depth.saturating_sub(1),
                    c if depth == 0 && is_delim(char::from(c)) => break,
                    _ => {}
                }
                i += 1;
            }
            value = Some(&s[vstart..i]);
        }
        out.push(Item {
            at: base + start,
            text: &s[start..i],
            key,
            value,
        });
    }
    out
}

/// Builds errors that point into one line.
#[derive(Debug)]
pub(super) struct Ctx<'a> {
    pub(super) line_no: usize,
    pub(super) line: &'a str,
}

impl Ctx<'_> {
    pub(super) fn err(&self, item: &Item<'_>, message: impl Into<String>) -> ParseError {
        ParseError {
            line: self.line_no,
            column: self
                .line
                .get(..item.at)
                .map_or(1, |p| p.chars().count() + 1),
            token: item.text.to_string(),
            message: message.into(),
        }
    }
}
