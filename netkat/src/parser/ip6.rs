//! The parser's reading of IPv6 values (extension): an address with an
//! optional `/prefix` of 0 to 128 bits. Kept apart from the parser's body, which
//! reads Frenetic's own syntax.

use super::{Parser, R};
use crate::diagnostics::Diagnostic;
use crate::lexer::Kw;
use crate::syntax::{Span, Value};

impl<B: crate::build::Build> Parser<'_, '_, B> {
    /// The IPv6 address `addr` at `span` (the current token), with its prefix.
    pub(super) fn ip6_value(&mut self, addr: std::net::Ipv6Addr, span: Span) -> R<(Value, Span)> {
        self.bump();
        if !self.eat(Kw::Slash) {
            return Ok((Value::Ip6 { addr, prefix: None }, span));
        }
        let ps = self.span();
        let n = self.int("a prefix length")?;
        let prefix = u8::try_from(n).ok().filter(|p| *p <= 128).ok_or_else(|| {
            Diagnostic::error(ps, "an IPv6 prefix length is 0 to 128").with_label("too long")
        })?;
        Ok((
            Value::Ip6 {
                addr,
                prefix: Some(prefix),
            },
            span.to(ps),
        ))
    }
}
