//! Turns Rust source text into tokens a structure check can trust: comments and
//! string/char literals are blanked first (keeping every newline, so line numbers
//! stay true), then the rest is split into identifiers, `::` and single punctuation.
//! It knows nothing about modules; it must never read files.

/// One token of blanked source, with the 1-based line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub kind: TokenKind,
    pub line: usize,
}

/// What a token is; numbers and lifetimes come out as `Ident`/`Punct` pieces, which
/// is all the scanner needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenKind {
    Ident(String),
    PathSep,
    Punct(char),
}

impl Token {
    /// Whether this token is the identifier or keyword `word`.
    pub fn is_ident(&self, word: &str) -> bool {
        matches!(&self.kind, TokenKind::Ident(name) if name == word)
    }

    /// Whether this token is the punctuation `c`.
    pub fn is_punct(&self, c: char) -> bool {
        self.kind == TokenKind::Punct(c)
    }

    /// The identifier's text, if it is one.
    pub fn ident(&self) -> Option<&str> {
        match &self.kind {
            TokenKind::Ident(name) => Some(name),
            _ => None,
        }
    }
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Replaces comments, string literals (plain, byte, C and raw) and char literals by
/// spaces, keeping newlines. Lifetimes and labels (`'a`) are left alone.
pub fn blank_comments_and_literals(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    // Appends chars[from..to] with everything but newlines turned into spaces.
    let blank = |out: &mut String, from: usize, to: usize| {
        for &c in &chars[from..to.min(chars.len())] {
            out.push(if c == '\n' { '\n' } else { ' ' });
        }
    };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let prev_is_ident = i > 0 && is_ident_char(chars[i - 1]);
        // Where the comment or literal starting here ends, if one does.
        let blanked_end = if c == '/' && next == Some('/') {
            let line_end = chars[i..].iter().position(|&c| c == '\n');
            Some(line_end.map_or(chars.len(), |n| i + n))
        } else if c == '/' && next == Some('*') {
            Some(block_comment_end(&chars, i))
        } else if c == '"' {
            Some(quoted_end(&chars, i + 1, '"'))
        } else if !prev_is_ident && c == 'r' {
            raw_string_end(&chars, i + 1)
        } else if !prev_is_ident && c == 'b' && next == Some('r') {
            raw_string_end(&chars, i + 2)
        } else if c == '\'' {
            char_literal_end(&chars, i)
        } else {
            None
        };
        match blanked_end {
            Some(end) => {
                blank(&mut out, i, end);
                i = end;
            }
            None => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// The index just past the (possibly nested) block comment opening at `start`.
fn block_comment_end(chars: &[char], start: usize) -> usize {
    let mut depth = 0;
    let mut i = start;
    while i < chars.len() {
        if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
            depth += 1;
            i += 2;
        } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    chars.len()
}

/// The index just past the closing `quote`, honouring backslash escapes.
fn quoted_end(chars: &[char], mut i: usize, quote: char) -> usize {
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    chars.len()
}

/// If `r#*"` starts at `after_r - 1`, the index just past the raw string's end.
fn raw_string_end(chars: &[char], after_r: usize) -> Option<usize> {
    let hashes = chars[after_r..].iter().take_while(|&&c| c == '#').count();
    if chars.get(after_r + hashes) != Some(&'"') {
        return None;
    }
    let mut i = after_r + hashes + 1;
    while i < chars.len() {
        if chars[i] == '"'
            && chars[i + 1..]
                .iter()
                .take(hashes)
                .filter(|&&c| c == '#')
                .count()
                == hashes
        {
            return Some(i + 1 + hashes);
        }
        i += 1;
    }
    Some(chars.len())
}

/// If a char literal starts at `start` (not a lifetime), the index just past it.
fn char_literal_end(chars: &[char], start: usize) -> Option<usize> {
    match chars.get(start + 1) {
        Some('\\') => Some(quoted_end(chars, start + 1, '\'')),
        Some(_) if chars.get(start + 2) == Some(&'\'') => Some(start + 3),
        _ => None,
    }
}

/// Splits blanked source into tokens.
pub fn tokenize(blanked: &str) -> Vec<Token> {
    let chars: Vec<char> = blanked.chars().collect();
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if is_ident_char(c) {
            let start = i;
            while i < chars.len() && is_ident_char(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            tokens.push(Token {
                kind: TokenKind::Ident(word),
                line,
            });
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            tokens.push(Token {
                kind: TokenKind::PathSep,
                line,
            });
            i += 2;
        } else {
            tokens.push(Token {
                kind: TokenKind::Punct(c),
                line,
            });
            i += 1;
        }
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idents(source: &str) -> Vec<String> {
        tokenize(&blank_comments_and_literals(source))
            .into_iter()
            .filter_map(|t| t.ident().map(str::to_owned))
            .collect()
    }

    #[test]
    fn comments_and_strings_are_blanked_but_lines_kept() {
        let source =
            "a // crate::x\n/* b /* nested */ c */ d \"crate::y\\\"\" e\nr#\"f\"# g '\"' h 'i' j";
        let blanked = blank_comments_and_literals(source);
        assert_eq!(blanked.lines().count(), source.lines().count());
        assert_eq!(idents(source), ["a", "d", "e", "g", "h", "j"]);
    }

    #[test]
    fn lifetimes_and_byte_chars_survive() {
        assert_eq!(
            idents("fn f<'a>(x: &'a u8) { b'{'; br\"}\"; }"),
            ["fn", "f", "a", "x", "a", "u8", "b"]
        );
        let tokens = tokenize(&blank_comments_and_literals("{ b'{' }"));
        assert_eq!(tokens.iter().filter(|t| t.is_punct('{')).count(), 1);
    }

    #[test]
    fn tokens_carry_lines_and_path_separators() {
        let tokens = tokenize("a::b\nc");
        assert_eq!(tokens[1].kind, TokenKind::PathSep);
        assert_eq!(tokens[3].line, 2);
    }
}
