//! The NetKAT lexer: policy text to tokens with spans, following Frenetic's
//! `Lexer.cppo.ml` (keywords, `0x`/decimal integers with an optional `l`/`L`,
//! dotted IPv4 addresses, MAC addresses, strings, nested `(* *)` comments), plus
//! IPv6 addresses (extension: text with a `:` that reads as one).
//!
//! Frenetic's lexer has no identifiers: a word is read as the longest keyword it
//! starts with, so `1andport=2` is `1 and port = 2`. We keep that (when the whole
//! word splits into keywords) and otherwise report the unknown word with a
//! suggestion. Extension words (`udpSrcPort`, `ethType`, `vm:name`) are words that
//! Frenetic rejects, so Frenetic files lex the same. This module never interprets
//! tokens and never panics on any input.

use super::diagnostics::Diagnostic;
use super::syntax::{HeaderField, Span};
use std::fmt;

/// A token.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Tok {
    /// An integer (`l`/`L` suffix dropped).
    Int(u64),
    /// A dotted IPv4 address.
    Ip4(u32),
    /// An IPv6 address (extension), in any of its text forms (bytes, not a
    /// `u128`, whose alignment would widen every token).
    Ip6(std::net::Ipv6Addr),
    /// A MAC address.
    Mac(u64),
    /// A double-quoted string (contents).
    Str(String),
    /// `` `name ``.
    Meta(String),
    /// `kind:name` (extension: inventory names such as `vm:web1`), boxed: a
    /// policy of megabytes is millions of tokens, all held at once.
    Named(Box<(String, String)>),
    /// A header field keyword.
    Field(HeaderField),
    /// A keyword or punctuation.
    Kw(Kw),
    /// End of input.
    Eof,
}

/// Keywords and punctuation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kw {
    /// `pipe`
    Pipe,
    /// `query`
    Query,
    /// `dup`
    Dup,
    /// `true`
    True,
    /// `false`
    False,
    /// `and`
    And,
    /// `or`
    Or,
    /// `not`
    Not,
    /// `=`
    Eq,
    /// `id`
    Id,
    /// `drop`
    Drop,
    /// `filter`
    Filter,
    /// `:=`
    Assign,
    /// `;`
    Semi,
    /// `+`
    Plus,
    /// `*`
    Star,
    /// `=>`
    Link,
    /// `=>>`
    VLink,
    /// `@`
    At,
    /// `/`
    Slash,
    /// `if`
    If,
    /// `then`
    Then,
    /// `else`
    Else,
    /// `while`
    While,
    /// `do`
    Do,
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `begin`
    Begin,
    /// `end`
    End,
    /// `let`
    Let,
    /// `var`
    Var,
    /// `in`
    In,
    /// `from` (Frenetic's portless mode; rejected by the parser)
    From,
    /// `loc` (Frenetic's portless mode; rejected by the parser)
    Loc,
}

const WORDS: [(&str, Kw); 25] = [
    ("pipe", Kw::Pipe),
    ("query", Kw::Query),
    ("dup", Kw::Dup),
    ("true", Kw::True),
    ("false", Kw::False),
    ("and", Kw::And),
    ("or", Kw::Or),
    ("not", Kw::Not),
    ("id", Kw::Id),
    ("drop", Kw::Drop),
    ("filter", Kw::Filter),
    ("if", Kw::If),
    ("then", Kw::Then),
    ("else", Kw::Else),
    ("while", Kw::While),
    ("do", Kw::Do),
    ("begin", Kw::Begin),
    ("end", Kw::End),
    ("let", Kw::Let),
    ("var", Kw::Var),
    ("in", Kw::In),
    ("from", Kw::From),
    ("loc", Kw::Loc),
    // Frenetic lexes `=>`/`=>>`/`@` as punctuation; listed here only for names.
    ("=>", Kw::Link),
    ("=>>", Kw::VLink),
];

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Int(n) => write!(f, "integer `{n}`"),
            Tok::Ip4(a) => write!(f, "address `{}`", std::net::Ipv4Addr::from(*a)),
            Tok::Ip6(a) => write!(f, "address `{a}`"),
            Tok::Mac(m) => write!(f, "MAC `{}`", openflow::flow::Mac::from_u64(*m)),
            Tok::Str(s) => write!(f, "string \"{s}\""),
            Tok::Meta(m) => write!(f, "meta field `{m}`"),
            Tok::Named(named) => write!(f, "name `{}:{}`", named.0, named.1),
            Tok::Field(h) => write!(f, "field `{h}`"),
            Tok::Kw(k) => write!(f, "`{}`", k.text()),
            Tok::Eof => f.write_str("end of input"),
        }
    }
}

impl Kw {
    /// The text of the keyword.
    pub fn text(self) -> &'static str {
        match self {
            Kw::Eq => "=",
            Kw::Assign => ":=",
            Kw::Semi => ";",
            Kw::Plus => "+",
            Kw::Star => "*",
            Kw::At => "@",
            Kw::Slash => "/",
            Kw::LParen => "(",
            Kw::RParen => ")",
            other => WORDS
                .iter()
                .find(|(_, k)| *k == other)
                .map(|(w, _)| *w)
                .unwrap_or("?"),
        }
    }
}

/// Keyword words of Frenetic (fields included), for the longest-prefix rule.
fn frenetic_word(word: &str) -> Option<Tok> {
    if let Some((_, k)) = WORDS.iter().find(|(w, _)| *w == word) {
        return Some(Tok::Kw(*k));
    }
    HeaderField::KEYWORDS
        .iter()
        .find(|(w, _)| *w == word)
        .filter(|(w, _)| !w.starts_with("udp") && !w.starts_with("ip6"))
        .map(|(_, f)| Tok::Field(f.clone()))
}

/// Words we accept that Frenetic does not know.
fn extension_word(word: &str) -> Option<Tok> {
    match word {
        "udpSrcPort" => Some(Tok::Field(HeaderField::UdpSrcPort)),
        "udpDstPort" => Some(Tok::Field(HeaderField::UdpDstPort)),
        "ethType" => Some(Tok::Field(HeaderField::EthTyp)),
        "ip6Src" => Some(Tok::Field(HeaderField::Ip6Src)),
        "ip6Dst" => Some(Tok::Field(HeaderField::Ip6Dst)),
        _ => None,
    }
}

/// Splits a word into Frenetic keywords the way its longest-match lexer would;
/// `None` unless the whole word splits.
fn split_word(word: &str) -> Option<Vec<(usize, usize, Tok)>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < word.len() {
        let rest = &word[at..];
        let mut best: Option<(usize, Tok)> = None;
        for len in (1..=rest.len()).rev() {
            if !rest.is_char_boundary(len) {
                continue;
            }
            if let Some(t) = frenetic_word(&rest[..len]) {
                best = Some((len, t));
                break;
            }
        }
        let (len, tok) = best?;
        out.push((at, at + len, tok));
        at += len;
    }
    Some(out)
}

/// All the words a field or keyword could be, for "did you mean" hints.
fn vocabulary() -> impl Iterator<Item = &'static str> {
    WORDS
        .iter()
        .map(|(w, _)| *w)
        .filter(|w| w.chars().all(|c| c.is_ascii_alphabetic()))
        .chain(HeaderField::KEYWORDS.iter().map(|(w, _)| *w))
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest known word, if any is close.
pub fn suggest(word: &str) -> Option<&'static str> {
    vocabulary()
        .map(|w| (edit_distance(word, w), w))
        .filter(|(d, w)| *d <= (w.len() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, w)| w)
}

fn is_word_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_word_cont(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b'\''
}

/// Reads a MAC address `hh:hh:hh:hh:hh:hh` at the start of `s`.
fn mac_at(s: &[u8]) -> Option<u64> {
    if s.len() < 17 {
        return None;
    }
    let mut v = 0u64;
    for i in 0..6 {
        let hi = (s[i * 3] as char).to_digit(16)?;
        let lo = (s[i * 3 + 1] as char).to_digit(16)?;
        if i < 5 && s[i * 3 + 2] != b':' {
            return None;
        }
        v = (v << 8) | u64::from(hi * 16 + lo);
    }
    Some(v)
}

/// Reads `d.d.d.d` (1-3 digits each) at the start of `s`: `(length, octets)`.
fn ip_at(s: &[u8]) -> Option<(usize, [u32; 4])> {
    let mut at = 0;
    let mut octets = [0u32; 4];
    for (i, octet) in octets.iter_mut().enumerate() {
        if i > 0 {
            if s.get(at) != Some(&b'.') {
                return None;
            }
            at += 1;
        }
        let start = at;
        while at < s.len() && at - start < 3 && s[at].is_ascii_digit() {
            *octet = *octet * 10 + u32::from(s[at] - b'0');
            at += 1;
        }
        if at == start {
            return None;
        }
    }
    Some((at, octets))
}

/// Reads an IPv6 address at the start of `s`, the longest text that is one:
/// `(length, address)`. Only text with a `:` qualifies, so integers, IPv4
/// addresses and words are left alone; no Frenetic token has a `:` but `:=`.
fn ip6_at(s: &[u8]) -> Option<(usize, std::net::Ipv6Addr)> {
    const LONGEST: usize = 45; // eight groups with an embedded IPv4 address
    let run = s
        .iter()
        .take(LONGEST)
        .take_while(|c| c.is_ascii_hexdigit() || **c == b':' || **c == b'.')
        .count();
    let text = std::str::from_utf8(&s[..run]).ok()?;
    // An address has `::` or eight groups; a MAC (five colons) is not tried,
    // so policies of MACs lex at the speed they did.
    if !text.contains("::") && text.bytes().filter(|c| *c == b':').count() < 7 {
        return None;
    }
    (2..=run).rev().find_map(|end| {
        let addr = text[..end].parse::<std::net::Ipv6Addr>().ok()?;
        Some((end, addr))
    })
}

/// Turns policy text into tokens; the last token is [`Tok::Eof`].
pub fn lex(src: &str) -> Result<Vec<(Tok, Span)>, Diagnostic> {
    let mut lexer = Lexer::new(src);
    let mut out = Vec::new();
    while out.last().is_none_or(|(t, _)| *t != Tok::Eof) {
        lexer.next_into(&mut out)?;
    }
    Ok(out)
}

/// Policy text read a token at a time, so that the parser holds only the
/// tokens it looks ahead at (a policy of megabytes is millions of tokens).
#[derive(Debug, Clone)]
pub struct Lexer<'a> {
    src: &'a str,
    at: usize,
}

impl<'a> Lexer<'a> {
    /// A lexer at the start of `src`.
    pub fn new(src: &'a str) -> Lexer<'a> {
        Lexer { src, at: 0 }
    }

    /// Appends the next token to `out` (several when a word splits into
    /// keywords; [`Tok::Eof`] again and again at the end).
    pub fn next_into(&mut self, out: &mut Vec<(Tok, Span)>) -> Result<(), Diagnostic> {
        self.at = scan(self.src, self.at, out)?;
        Ok(())
    }
}

/// Appends the token(s) at byte `i` of `src` to `out`; returns where the next
/// token starts.
fn scan(src: &str, mut i: usize, out: &mut Vec<(Tok, Span)>) -> Result<usize, Diagnostic> {
    let b = src.as_bytes();
    let before = out.len();
    loop {
        if out.len() > before {
            return Ok(i);
        }
        // Whitespace and (nested) comments.
        loop {
            while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\r' | b'\n') {
                i += 1;
            }
            if b[i..].starts_with(b"(*") {
                let open = i;
                let mut depth = 0usize;
                loop {
                    if i >= b.len() {
                        return Err(Diagnostic::error(
                            Span::new(open, open + 2),
                            "unterminated comment",
                        )
                        .with_label("this comment is never closed")
                        .with_hint("comments nest: every `(*` needs its own `*)`"));
                    }
                    if b[i..].starts_with(b"(*") {
                        depth += 1;
                        i += 2;
                    } else if b[i..].starts_with(b"*)") {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                continue;
            }
            break;
        }
        if i >= b.len() {
            out.push((Tok::Eof, Span::new(b.len(), b.len())));
            return Ok(i);
        }
        let start = i;
        let c = b[i];
        // Values first: longest match between IPv6, MAC, IPv4 and integers.
        let mac = mac_at(&b[i..]);
        // Cheap guards first (this runs for every word and number): an IPv6
        // address has a `:` within its first five characters, and one that
        // starts like a MAC goes on with a `:` after it.
        let ip6_like = match mac {
            Some(_) => b.get(i + 17) == Some(&b':'),
            None => {
                (c.is_ascii_hexdigit() || c == b':') && b[i..].iter().take(5).any(|x| *x == b':')
            }
        };
        if let Some((len, addr)) = ip6_like.then(|| ip6_at(&b[i..])).flatten() {
            out.push((Tok::Ip6(addr), Span::new(i, i + len)));
            i += len;
            continue;
        }
        if let Some(m) = mac {
            out.push((Tok::Mac(m), Span::new(i, i + 17)));
            i += 17;
            continue;
        }
        if c.is_ascii_digit() {
            if let Some((len, octets)) = ip_at(&b[i..]) {
                if octets.iter().any(|o| *o > 255) {
                    return Err(Diagnostic::error(
                        Span::new(i, i + len),
                        "an IPv4 address has octets from 0 to 255",
                    )
                    .with_label("not an IPv4 address"));
                }
                let v = octets.iter().fold(0u32, |acc, o| (acc << 8) | o);
                out.push((Tok::Ip4(v), Span::new(i, i + len)));
                i += len;
                continue;
            }
            let (digits, radix) =
                if b[i..].starts_with(b"0x") && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit) {
                    i += 2;
                    let s = i;
                    while i < b.len() && b[i].is_ascii_hexdigit() {
                        i += 1;
                    }
                    (&src[s..i], 16)
                } else {
                    let s = i;
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                    (&src[s..i], 10)
                };
            let value = u64::from_str_radix(digits, radix).map_err(|_| {
                Diagnostic::error(Span::new(start, i), "integer too large")
                    .with_label("does not fit in 64 bits")
            })?;
            if i < b.len() && (b[i] == b'l' || b[i] == b'L') {
                i += 1;
            }
            out.push((Tok::Int(value), Span::new(start, i)));
            continue;
        }
        if c == b'"' {
            let close = b[i + 1..].iter().position(|&x| x == b'"');
            let Some(close) = close else {
                return Err(
                    Diagnostic::error(Span::new(i, i + 1), "unterminated string")
                        .with_label("this string is never closed"),
                );
            };
            let s = src[i + 1..i + 1 + close].to_string();
            out.push((Tok::Str(s), Span::new(i, i + close + 2)));
            i += close + 2;
            continue;
        }
        if c == b'`' {
            i += 1;
            if i >= b.len() || !is_word_start(b[i]) {
                return Err(Diagnostic::error(
                    Span::new(start, i),
                    "expected a meta field name after `",
                )
                .with_hint("meta fields are written `name, e.g. `ingress"));
            }
            while i < b.len() && is_word_cont(b[i]) {
                i += 1;
            }
            out.push((
                Tok::Meta(src[start + 1..i].to_string()),
                Span::new(start, i),
            ));
            continue;
        }
        if is_word_start(c) {
            while i < b.len() && is_word_cont(b[i]) {
                i += 1;
            }
            let word = &src[start..i];
            if let Some(t) = frenetic_word(word).or_else(|| extension_word(word)) {
                out.push((t, Span::new(start, i)));
                continue;
            }
            if (word == "vm" || word == "host") && b.get(i) == Some(&b':') {
                let ns = i + 1;
                let mut j = ns;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b"_-.".contains(&b[j])) {
                    j += 1;
                }
                if j > ns {
                    out.push((
                        Tok::Named(Box::new((word.to_string(), src[ns..j].to_string()))),
                        Span::new(start, j),
                    ));
                    i = j;
                    continue;
                }
            }
            if let Some(parts) = split_word(word) {
                for (s, e, t) in parts {
                    out.push((t, Span::new(start + s, start + e)));
                }
                continue;
            }
            let mut d = Diagnostic::error(Span::new(start, i), format!("unknown word `{word}`"))
                .with_label("not a NetKAT keyword or field");
            if let Some(s) = suggest(word) {
                d = d.with_hint(format!("did you mean `{s}`?"));
            }
            return Err(d);
        }
        let two = &b[i..(i + 3).min(b.len())];
        let (kw, len) = if two.starts_with(b"=>>") {
            (Kw::VLink, 3)
        } else if two.starts_with(b"=>") {
            (Kw::Link, 2)
        } else if two.starts_with(b":=") {
            (Kw::Assign, 2)
        } else {
            let k = match c {
                b'=' => Kw::Eq,
                b';' => Kw::Semi,
                b'+' => Kw::Plus,
                b'*' => Kw::Star,
                b'@' => Kw::At,
                b'/' => Kw::Slash,
                b'(' => Kw::LParen,
                b')' => Kw::RParen,
                _ => {
                    let ch = src[i..].chars().next().unwrap_or('?');
                    let mut d = Diagnostic::error(
                        Span::new(i, i + ch.len_utf8()),
                        format!("unexpected character `{}`", ch.escape_default()),
                    )
                    .with_label("not part of NetKAT's syntax");
                    if ch == '!' {
                        d = d.with_hint("negation is written `not`");
                    } else if ch == '&' || ch == '|' {
                        d = d.with_hint("conjunction is `and`, disjunction is `or`");
                    } else if ch == ':' {
                        d = d.with_hint("assignment is written `:=`");
                    }
                    return Err(d);
                }
            };
            (k, 1)
        };
        out.push((Tok::Kw(kw), Span::new(i, i + len)));
        i += len;
    }
}
