//! What the configuration parsers of `scd` (the host file) and `scc` (the
//! inventory) share: IPv4 and IPv6 prefix parsing and turning a TOML byte offset into the
//! `line:column` an error names, so both files report errors the same way; and
//! how every daemon of the project logs (`logging`).
#![forbid(unsafe_code)]

pub mod logging;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Range;

/// The netmask of a prefix length (`0` for `/0`); lengths over 32 count as 32.
pub fn prefix_mask(len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(len.min(32)))
        .unwrap_or(0)
}

/// Parses `a.b.c.d/len` (spaces around either part allowed) into the network,
/// with the host bits cleared, and the length; `None` unless it is one.
pub fn parse_ipv4_prefix(text: &str) -> Option<(Ipv4Addr, u8)> {
    let (addr, len) = text.split_once('/')?;
    let addr: Ipv4Addr = addr.trim().parse().ok()?;
    let len: u8 = len.trim().parse().ok().filter(|len| *len <= 32)?;
    Some((Ipv4Addr::from(u32::from(addr) & prefix_mask(len)), len))
}

/// The netmask of an IPv6 prefix length (`0` for `/0`); lengths over 128 count
/// as 128.
pub fn prefix_mask128(len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(len.min(128)))
        .unwrap_or(0)
}

/// Parses `addr/len` for IPv6 (spaces around either part allowed) into the
/// network, with the host bits cleared, and the length; `None` unless it is one.
pub fn parse_ipv6_prefix(text: &str) -> Option<(Ipv6Addr, u8)> {
    let (addr, len) = text.split_once('/')?;
    let addr: Ipv6Addr = addr.trim().parse().ok()?;
    let len: u8 = len.trim().parse().ok().filter(|len| *len <= 128)?;
    Some((Ipv6Addr::from(u128::from(addr) & prefix_mask128(len)), len))
}

/// A place in a text file, both 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Line.
    pub line: usize,
    /// Column, in bytes from the start of the line.
    pub column: usize,
}

impl Position {
    /// Where byte `offset` of `text` is (an offset past the end is the end).
    pub fn of(text: &str, offset: usize) -> Position {
        let offset = floor_char_boundary(text, offset);
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Position {
            line: before.matches('\n').count() + 1,
            column: offset - line_start + 1,
        }
    }

    /// Where a span (from `toml::Spanned`) starts.
    pub fn of_span(text: &str, span: &Range<usize>) -> Position {
        Position::of(text, span.start)
    }

    /// Where a TOML parse error is, or the file's start when it names no place.
    pub fn of_error(text: &str, error: &toml::de::Error) -> Position {
        error.span().map_or(Position { line: 1, column: 1 }, |s| {
            Position::of_span(text, &s)
        })
    }
}

/// The largest char boundary of `text` at or before `offset`.
fn floor_char_boundary(text: &str, offset: usize) -> usize {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ipv6_prefixes_parse_with_host_bits_cleared() {
        assert_eq!(
            parse_ipv6_prefix("fd00:5c::1/48"),
            Some(("fd00:5c::".parse().unwrap(), 48))
        );
        assert_eq!(
            parse_ipv6_prefix(" ::/0 "),
            Some((Ipv6Addr::UNSPECIFIED, 0))
        );
        for bad in ["fd00::", "fd00::/129", "10.0.0.0/8", "fd00::/x", "/64"] {
            assert_eq!(parse_ipv6_prefix(bad), None, "{bad}");
        }
        assert_eq!(prefix_mask128(0), 0);
        assert_eq!(prefix_mask128(128), u128::MAX);
        assert_eq!(prefix_mask128(64), u128::MAX << 64);
    }

    #[test]
    fn prefixes_parse_with_host_bits_cleared() {
        assert_eq!(
            parse_ipv4_prefix("100.64.3.7/10"),
            Some((Ipv4Addr::new(100, 64, 0, 0), 10))
        );
        assert_eq!(
            parse_ipv4_prefix(" 10.0.0.1 / 32 "),
            Some((Ipv4Addr::new(10, 0, 0, 1), 32))
        );
        assert_eq!(
            parse_ipv4_prefix("1.2.3.4/0"),
            Some((Ipv4Addr::UNSPECIFIED, 0))
        );
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0/8",
            "x/8",
            "10.0.0.0/-1",
            "",
        ] {
            assert_eq!(parse_ipv4_prefix(bad), None, "{bad}");
        }
    }

    #[test]
    fn positions_count_lines_and_columns_from_one() {
        let text = "a = 1\nbb = 2\n";
        assert_eq!(Position::of(text, 0), Position { line: 1, column: 1 });
        assert_eq!(Position::of(text, 6), Position { line: 2, column: 1 });
        assert_eq!(Position::of(text, 9), Position { line: 2, column: 4 });
        assert_eq!(Position::of(text, 99), Position { line: 3, column: 1 });
        let e = toml::from_str::<toml::Table>("a = 1\nb = \n").unwrap_err();
        assert_eq!(Position::of_error("a = 1\nb = \n", &e).line, 2);
    }

    proptest! {
        #[test]
        fn every_prefix_round_trips(addr: u32, len in 0u8..=32) {
            let network = Ipv4Addr::from(addr & prefix_mask(len));
            let text = format!("{}/{len}", Ipv4Addr::from(addr));
            prop_assert_eq!(parse_ipv4_prefix(&text), Some((network, len)));
            prop_assert_eq!(parse_ipv4_prefix(&format!("{network}/{len}")), Some((network, len)));
            // The mask keeps exactly `len` leading bits.
            prop_assert_eq!(prefix_mask(len).count_ones(), u32::from(len));
            prop_assert_eq!(prefix_mask(len).leading_ones(), u32::from(len));
        }

        #[test]
        fn lengths_over_32_and_garbage_are_refused(addr: u32, len in 33u16..1000, junk in "[^/]*") {
            let text = format!("{}/{len}", Ipv4Addr::from(addr));
            prop_assert_eq!(parse_ipv4_prefix(&text), None);
            prop_assert_eq!(parse_ipv4_prefix(&junk), None);
        }

        #[test]
        fn positions_never_panic_and_agree_with_lines(text in "(?s).{0,80}", offset in 0usize..100) {
            let p = Position::of(&text, offset);
            let lines: Vec<&str> = text.split('\n').collect();
            prop_assert!(p.line >= 1 && p.line <= lines.len());
            prop_assert!(p.column >= 1 && p.column <= lines[p.line - 1].len() + 1);
        }
    }
}
