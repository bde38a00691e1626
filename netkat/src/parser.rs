//! The NetKAT parser: tokens to a [`Policy`] (or a [`Pred`]), with Frenetic's
//! grammar and precedence (`Parser.cppo.mly`).
//!
//! Precedence, loosest first: `let … in` (its body extends as far as possible), `+`,
//! `;`, `else` (so `if a then p else q; r` is `(if … else q); r`), `do`, `*`; in
//! predicates `or` < `and` < `not`. A predicate written where a policy is expected
//! is a filter and extends as far as it can (`port = 1 and vlanId = 2; …`). `( … )`
//! and `begin … end` group either a predicate or a policy; as in Frenetic's LR
//! parser, a group that is a whole predicate is read as one. The parser never
//! goes back: a group's contents are read once, as a predicate for as long as
//! they are one, and become a policy at the first policy operator or keyword, so
//! it pulls tokens from the lexer as it goes and holds only the next two. This
//! module checks that each value suits its field (type and width), and never
//! panics: nesting deeper than [`MAX_DEPTH`] is an error, not a stack overflow.
//! What each construct becomes is up to a [`Build`]er ([`parse_with`]): the
//! syntax tree, or directly the core calculus.

mod ip6;

use super::build::{join_policy, join_pred, Build, Join, LetHeader, Op, Spanned, SyntaxTree};
use super::diagnostics::Diagnostic;
use super::lexer::{Kw, Lexer, Tok};
use super::syntax::{HeaderField, HeaderVal, LetInit, Policy, Pred, Span, Value};

/// Deepest nesting of groups and operators the parser accepts.
pub const MAX_DEPTH: usize = 500;

/// Parses a whole policy file into its syntax tree.
pub fn parse_policy(src: &str) -> Result<Policy, Diagnostic> {
    parse_with(src, &mut SyntaxTree)
}

/// Parses a whole policy file, building it with `build`. A lexing or syntax
/// error comes before any error the builder keeps.
pub fn parse_with<B: Build>(src: &str, build: &mut B) -> Result<B::Pol, Diagnostic> {
    let mut p = Parser::new(src, build);
    let pol = p.policy(0).and_then(|pol| {
        p.expect_eof("a policy operator (`+`, `;`, `*`)")?;
        Ok(pol.node)
    });
    p.finish(pol)
}

/// Parses a whole predicate file (Frenetic's `pred_eof` entry point).
pub fn parse_predicate(src: &str) -> Result<Pred, Diagnostic> {
    let mut tree = SyntaxTree;
    let mut p = Parser::new(src, &mut tree);
    let pred = p.pred(0).and_then(|pred| {
        p.expect_eof("`and`, `or`")?;
        Ok(pred.node)
    });
    p.finish(pred)
}

/// Policy operators: `p + q` (level 0), `p ; q` (level 1), `p*` (level 2).
const POLICY_OPERATORS: &[Operator] = &[
    Operator {
        kw: Kw::Plus,
        level: 0,
        op: Op::Union,
    },
    Operator {
        kw: Kw::Semi,
        level: 1,
        op: Op::Seq,
    },
    Operator {
        kw: Kw::Star,
        level: 2,
        op: Op::Star,
    },
];

/// Predicate operators: `a or b` (level 0), `a and b` (level 1); `not` is a
/// prefix, parsed with the operands.
const PRED_OPERATORS: &[Operator] = &[
    Operator {
        kw: Kw::Or,
        level: 0,
        op: Op::Or,
    },
    Operator {
        kw: Kw::And,
        level: 1,
        op: Op::And,
    },
];

/// An operator written after an operand, and how tightly it binds: the higher
/// its level, the tighter.
struct Operator {
    kw: Kw,
    level: u8,
    op: Op,
}

/// A group's contents, read once: a predicate as long as they are one.
enum Grouped<B: Build> {
    Pred(Spanned<B::Pred>),
    Policy(Spanned<B::Pol>),
}

struct Parser<'a, 'b, B: Build> {
    build: &'b mut B,
    lexer: Lexer<'a>,
    /// The current token and the one after it (only the current one at the
    /// end): all the lookahead the grammar needs.
    ahead: Vec<(Tok, Span)>,
    /// The last token consumed, if any.
    prev: Option<Span>,
    /// The first lexing error: the text ends there for the parser (an `Eof`
    /// stands in for it), and the error is what the parse reports.
    lex_error: Option<Diagnostic>,
    depth: usize,
}

type R<T> = Result<T, Diagnostic>;

impl<'a, 'b, B: Build> Parser<'a, 'b, B> {
    fn new(src: &'a str, build: &'b mut B) -> Parser<'a, 'b, B> {
        let mut p = Parser {
            build,
            lexer: Lexer::new(src),
            ahead: Vec::with_capacity(4),
            prev: None,
            lex_error: None,
            depth: 0,
        };
        p.fill();
        p
    }

    /// Lexes until two tokens are ahead, or the end.
    fn fill(&mut self) {
        while self.ahead.len() < 2 && self.ahead.last().is_none_or(|(t, _)| *t != Tok::Eof) {
            if let Err(e) = self.lexer.next_into(&mut self.ahead) {
                let at = e.span.map_or(0, |s| s.start);
                self.ahead.push((Tok::Eof, Span::new(at, at)));
                self.lex_error = Some(e);
            }
        }
    }

    /// The parse's outcome: a lexing error met on the way comes first (the
    /// parser saw an end of input there).
    fn finish<T>(mut self, parsed: R<T>) -> R<T> {
        match self.lex_error.take() {
            Some(e) => Err(e),
            None => parsed,
        }
    }

    fn peek(&self) -> &Tok {
        &self.ahead[0].0
    }

    fn peek_at(&self, n: usize) -> &Tok {
        &self.ahead[n.min(self.ahead.len() - 1)].0
    }

    fn span(&self) -> Span {
        self.ahead[0].1
    }

    fn span_at(&self, n: usize) -> Span {
        self.ahead[n.min(self.ahead.len() - 1)].1
    }

    fn prev_span(&self) -> Span {
        self.prev.unwrap_or_else(|| self.span())
    }

    fn bump(&mut self) -> (Tok, Span) {
        if *self.peek() == Tok::Eof {
            return self.ahead[0].clone();
        }
        let t = self.ahead.remove(0);
        self.prev = Some(t.1);
        self.fill();
        t
    }

    fn is(&self, k: Kw) -> bool {
        *self.peek() == Tok::Kw(k)
    }

    fn eat(&mut self, k: Kw) -> bool {
        if self.is(k) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn unexpected(&self, expected: &str) -> Diagnostic {
        let found = self.peek();
        // At the end of input, point just after the last token rather than at an
        // empty line.
        let at = match self.prev {
            Some(prev) if *found == Tok::Eof => Span::new(prev.end, prev.end),
            _ => self.span(),
        };
        let mut d = Diagnostic::error(at, format!("expected {expected}, found {found}"))
            .with_label(format!("expected {expected}"));
        match found {
            Tok::Kw(Kw::Eq) if expected.contains(":=") => {
                d = d.with_hint("assignment is `:=`; `=` is a test");
            }
            Tok::Eof => d = d.with_hint("the policy ends too early: is a group left open?"),
            Tok::Kw(Kw::RParen) | Tok::Kw(Kw::End) => {
                d = d.with_hint(
                    "is there a stray closing bracket, or an operand missing before it?",
                );
            }
            _ => {}
        }
        d
    }

    fn expect(&mut self, k: Kw, open: Option<(Span, &str)>) -> R<Span> {
        if self.is(k) {
            Ok(self.bump().1)
        } else {
            let mut d = self.unexpected(&format!("`{}`", k.text()));
            if let Some((s, what)) = open {
                d = d.with_note(s, format!("{what} opened here"));
            }
            Err(d)
        }
    }

    fn expect_eof(&mut self, what: &str) -> R<()> {
        if *self.peek() == Tok::Eof {
            Ok(())
        } else {
            let mut d = self.unexpected(&format!("{what} or the end of the policy"));
            if matches!(self.peek(), Tok::Kw(Kw::RParen) | Tok::Kw(Kw::End)) {
                d = d.with_hint("this closes a group that was never opened");
            }
            Err(d)
        }
    }

    /// Expects the `)` or `end` that closes the group `open` opened at `start`.
    fn close_group(&mut self, open: Kw, start: Span) -> R<Span> {
        let (close, what) = if open == Kw::LParen {
            (Kw::RParen, "`(`")
        } else {
            (Kw::End, "`begin`")
        };
        self.expect(close, Some((start, what)))
    }

    /// Runs `parse` one level deeper, refusing text nested beyond [`MAX_DEPTH`]:
    /// a recursive descent must not overflow the stack on hostile input.
    fn nested<T>(&mut self, parse: impl FnOnce(&mut Self) -> R<T>) -> R<T> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Diagnostic::error(self.span(), "policy nested too deeply")
                .with_label(format!("more than {MAX_DEPTH} levels deep here")));
        }
        let r = crate::stack::deep(|| parse(self));
        self.depth -= 1;
        r
    }

    // ----- operators ------------------------------------------------------------

    /// Parses an operand with `prefix`, then, left to right, every operator of
    /// `table` whose level is at least `min`. The right operand of an infix
    /// operator is parsed by `operand` one level above the operator's, so that
    /// operators of the same level associate to the left.
    fn operators<T>(
        &mut self,
        min: u8,
        table: &[Operator],
        prefix: fn(&mut Self) -> R<Spanned<T>>,
        operand: fn(&mut Self, u8) -> R<Spanned<T>>,
        join: Join<B, T>,
    ) -> R<Spanned<T>> {
        let lhs = prefix(self)?;
        self.operators_after(lhs, min, table, operand, join)
    }

    /// [`Self::operators`] with the first operand already read.
    fn operators_after<T>(
        &mut self,
        mut lhs: Spanned<T>,
        min: u8,
        table: &[Operator],
        operand: fn(&mut Self, u8) -> R<Spanned<T>>,
        join: Join<B, T>,
    ) -> R<Spanned<T>> {
        while let Some(op) = table.iter().find(|op| min <= op.level && self.is(op.kw)) {
            let kw_span = self.bump().1;
            lhs = if op.op == Op::Star {
                let span = lhs.span.to(kw_span);
                Spanned::new(join(self.build, op.op, lhs.node, None, span), span)
            } else {
                let rhs = operand(self, op.level + 1)?;
                let span = lhs.span.to(rhs.span);
                Spanned::new(
                    join(self.build, op.op, lhs.node, Some(rhs.node), span),
                    span,
                )
            };
        }
        Ok(lhs)
    }

    /// The predicate operators after a first operand.
    fn pred_operators_after(&mut self, a: Spanned<B::Pred>) -> R<Spanned<B::Pred>> {
        self.operators_after(a, 0, PRED_OPERATORS, Self::pred, join_pred)
    }

    /// A filter of the predicate `a`, covering its text.
    fn filter(&mut self, a: Spanned<B::Pred>) -> Spanned<B::Pol> {
        Spanned::new(self.build.filter(a.node, a.span), a.span)
    }

    // ----- policies -------------------------------------------------------------

    /// Parses a policy whose operators bind at least as tightly as `min`
    /// (0: `+` and up, 1: `;` and up, 2: only `*`).
    fn policy(&mut self, min: u8) -> R<Spanned<B::Pol>> {
        self.nested(|p| p.policy_inner(min))
    }

    fn policy_inner(&mut self, min: u8) -> R<Spanned<B::Pol>> {
        self.operators(
            min,
            POLICY_OPERATORS,
            Self::policy_prefix,
            Self::policy,
            join_policy,
        )
    }

    fn starts_pred(&self) -> bool {
        match self.peek() {
            Tok::Kw(Kw::True | Kw::False | Kw::Not | Kw::LParen | Kw::Begin) => true,
            Tok::Field(_) | Tok::Meta(_) => !matches!(self.peek_at(1), Tok::Kw(Kw::Assign)),
            _ => false,
        }
    }

    fn policy_prefix(&mut self) -> R<Spanned<B::Pol>> {
        let start = self.span();
        let simple = |node| Ok(Spanned::new(node, start));
        match self.peek().clone() {
            Tok::Kw(Kw::Id) => {
                self.bump();
                simple(self.build.identity(start))
            }
            Tok::Kw(Kw::Drop) => {
                self.bump();
                simple(self.build.drop_all(start))
            }
            Tok::Kw(Kw::Dup) => {
                self.bump();
                simple(self.build.dup(start))
            }
            Tok::Kw(Kw::Filter) => {
                self.bump();
                let a = self.pred(0)?;
                let span = start.to(a.span);
                Ok(Spanned::new(self.build.filter(a.node, span), span))
            }
            Tok::Kw(Kw::If) => self.if_chain(),
            Tok::Kw(Kw::While) => {
                self.bump();
                let a = self.pred(0)?;
                self.expect(Kw::Do, Some((start, "`while`")))?;
                let p = self.policy(2)?;
                let span = start.to(p.span);
                Ok(Spanned::new(
                    self.build.while_do(a.node, p.node, span),
                    span,
                ))
            }
            Tok::Kw(k @ (Kw::Let | Kw::Var)) => {
                self.bump();
                let (name, name_span) = match self.bump() {
                    (Tok::Meta(m), s) => (m, s),
                    (t, s) => {
                        return Err(Diagnostic::error(
                            s,
                            format!("expected a meta field name, found {t}"),
                        )
                        .with_label("expected `name")
                        .with_hint("meta fields start with a backquote: let `x := 1 in …"))
                    }
                };
                self.expect(Kw::Assign, None).map_err(|d| {
                    d.with_hint("a meta field is introduced with `:=`, e.g. let `x := port in …")
                })?;
                let init = match self.peek().clone() {
                    Tok::Field(f) => {
                        self.bump();
                        LetInit::Alias(f)
                    }
                    _ => {
                        let (v, vs) = self.value()?;
                        if let Value::Ip4 {
                            prefix: Some(_), ..
                        }
                        | Value::Ip6 {
                            prefix: Some(_), ..
                        } = v
                        {
                            return Err(Diagnostic::error(vs, "a meta field holds a single value")
                                .with_label(
                                    "prefixes are only allowed in tests of ip4Src/ip4Dst",
                                ));
                        }
                        if matches!(
                            v,
                            Value::Pipe(_)
                                | Value::Query(_)
                                | Value::Named { .. }
                                | Value::Ip6 { .. }
                        ) {
                            return Err(Diagnostic::error(
                                vs,
                                "a meta field holds an integer, a MAC or an IPv4 address",
                            )
                            .with_label("not a meta field value"));
                        }
                        LetInit::Const(v)
                    }
                };
                self.expect(Kw::In, Some((start, "this `let`")))?;
                let header = LetHeader {
                    name,
                    init,
                    mutable: k == Kw::Var,
                    name_span,
                };
                self.build
                    .enter_let(&header.name, &header.init, header.mutable, name_span);
                let body = self.policy(0)?;
                let span = start.to(body.span);
                Ok(Spanned::new(
                    self.build.let_in(header, body.node, span),
                    span,
                ))
            }
            Tok::Int(_) if self.peek_at(1) == &Tok::Kw(Kw::At) => self.link(),
            Tok::Field(_) | Tok::Meta(_) if self.peek_at(1) == &Tok::Kw(Kw::Assign) => {
                let hv = self.header_val(Kw::Assign)?;
                let whole = match hv.value {
                    Value::Ip4 { prefix, .. } => prefix.is_none_or(|p| p == 32),
                    Value::Ip6 { prefix, .. } => prefix.is_none_or(|p| p == 128),
                    _ => true,
                };
                if !whole {
                    return Err(
                        Diagnostic::error(hv.span, "cannot assign an address prefix")
                            .with_label("an assignment writes one whole address")
                            .with_hint("drop the `/prefix`"),
                    );
                }
                let span = hv.span;
                Ok(Spanned::new(self.build.assign(hv), span))
            }
            Tok::Kw(open @ (Kw::LParen | Kw::Begin)) => match self.group(open)? {
                // A group that is a whole predicate goes on as one (`(a or b)
                // and c`), and the filter is the whole predicate.
                Grouped::Pred(a) => {
                    let a = self.pred_operators_after(a)?;
                    Ok(self.filter(a))
                }
                Grouped::Policy(p) => Ok(p),
            },
            _ if self.starts_pred() => {
                let a = self.pred(0)?;
                Ok(self.filter(a))
            }
            Tok::Kw(Kw::From | Kw::Loc) => Err(Diagnostic::error(
                start,
                "`from`/`loc` belong to Frenetic's portless mode, which scc does not support",
            )
            .with_label("portless field")),
            _ => Err(self.unexpected("a policy")),
        }
    }

    /// A group `( … )` or `begin … end` at a policy's place, its span covering
    /// the brackets.
    fn group(&mut self, open: Kw) -> R<Grouped<B>> {
        self.nested(|p| {
            let start = p.bump().1;
            let inner = p.policy_or_pred()?;
            let span = start.to(p.close_group(open, start)?);
            Ok(match inner {
                Grouped::Pred(a) => {
                    Grouped::Pred(Spanned::new(p.build.grouped_pred(a.node, span), span))
                }
                Grouped::Policy(q) => {
                    Grouped::Policy(Spanned::new(p.build.grouped(q.node, span), span))
                }
            })
        })
    }

    /// A group's contents: a predicate until a policy operator or keyword shows
    /// that they are a policy (the predicate so far then becomes its filter).
    fn policy_or_pred(&mut self) -> R<Grouped<B>> {
        let first = match self.peek() {
            Tok::Kw(open @ (Kw::LParen | Kw::Begin)) => {
                let open = *open;
                self.group(open)?
            }
            _ if self.starts_pred() => Grouped::Pred(self.pred_atom()?),
            _ => return Ok(Grouped::Policy(self.policy(0)?)),
        };
        let first = match first {
            Grouped::Pred(a) => {
                let a = self.pred_operators_after(a)?;
                if !POLICY_OPERATORS.iter().any(|op| self.is(op.kw)) {
                    return Ok(Grouped::Pred(a));
                }
                self.filter(a)
            }
            Grouped::Policy(p) => p,
        };
        let p = self.operators_after(first, 0, POLICY_OPERATORS, Self::policy, join_policy)?;
        Ok(Grouped::Policy(p))
    }

    /// `if a1 then p1 else if a2 then p2 … else q`, read as a loop: an `else if`
    /// chain is how routing tables are written, so its length is not nesting.
    fn if_chain(&mut self) -> R<Spanned<B::Pol>> {
        let mut branches = Vec::new();
        let last = loop {
            let start = self.span();
            self.bump();
            let a = self.pred(0)?;
            self.expect(Kw::Then, Some((start, "`if`")))?;
            let p = self.policy(0)?;
            self.expect(Kw::Else, Some((start, "`if`"))).map_err(|d| {
                d.with_hint(
                    "NetKAT's `if` always has an `else` branch (use `else drop` or `else id`)",
                )
            })?;
            branches.push((start, a.node, p.node));
            if !self.is(Kw::If) {
                break self.policy(2)?;
            }
        };
        Ok(branches.into_iter().rev().fold(last, |q, (start, a, p)| {
            let span = start.to(q.span);
            Spanned::new(self.build.if_then_else(a, p, q.node, span), span)
        }))
    }

    fn link(&mut self) -> R<Spanned<B::Pol>> {
        let start = self.span();
        let s1 = self.int("a switch number")?;
        self.expect(Kw::At, None)?;
        let p1 = self.int("a port number")?;
        let virt = match self.peek() {
            Tok::Kw(Kw::Link) => false,
            Tok::Kw(Kw::VLink) => true,
            _ => {
                return Err(self
                    .unexpected("`=>`")
                    .with_hint("a link is written switch@port => switch@port"))
            }
        };
        self.bump();
        let s2 = self.int("a switch number")?;
        self.expect(Kw::At, None)?;
        let p2 = self.int("a port number")?;
        let span = start.to(self.prev_span());
        for (v, what) in [(p1, "port"), (p2, "port")] {
            if v > u64::from(u32::MAX) {
                return Err(Diagnostic::error(
                    span,
                    format!("{what} {v} does not fit in 32 bits"),
                ));
            }
        }
        Ok(Spanned::new(
            self.build.link([s1, p1, s2, p2], virt, span),
            span,
        ))
    }

    fn int(&mut self, what: &str) -> R<u64> {
        match self.peek() {
            Tok::Int(n) => {
                let n = *n;
                self.bump();
                Ok(n)
            }
            _ => Err(self.unexpected(what)),
        }
    }

    // ----- predicates -----------------------------------------------------------

    /// Parses a predicate (min 0: `or` and up, 1: `and` and up, 2: no operator).
    fn pred(&mut self, min: u8) -> R<Spanned<B::Pred>> {
        self.nested(|p| p.pred_inner(min))
    }

    fn pred_inner(&mut self, min: u8) -> R<Spanned<B::Pred>> {
        self.operators(
            min,
            PRED_OPERATORS,
            Self::pred_prefix,
            Self::pred,
            join_pred,
        )
    }

    fn pred_atom(&mut self) -> R<Spanned<B::Pred>> {
        self.nested(|p| p.pred_prefix())
    }

    fn pred_prefix(&mut self) -> R<Spanned<B::Pred>> {
        let start = self.span();
        match self.peek().clone() {
            Tok::Kw(k @ (Kw::True | Kw::False)) => {
                self.bump();
                Ok(Spanned::new(self.build.truth(k == Kw::True, start), start))
            }
            Tok::Kw(Kw::Not) => {
                self.bump();
                let a = self.pred_atom()?;
                let span = start.to(a.span);
                Ok(Spanned::new(self.build.negate(a.node, span), span))
            }
            Tok::Kw(open @ (Kw::LParen | Kw::Begin)) => {
                self.bump();
                let a = self.pred(0)?;
                let end = self.close_group(open, start)?;
                let span = start.to(end);
                Ok(Spanned::new(self.build.grouped_pred(a.node, span), span))
            }
            Tok::Field(_) | Tok::Meta(_) => {
                if self.peek_at(1) == &Tok::Kw(Kw::Assign) {
                    return Err(Diagnostic::error(
                        self.span_at(1),
                        "an assignment cannot be part of a predicate",
                    )
                    .with_label("`:=` inside a test")
                    .with_hint(
                        "use `=` to test a field; to assign, end the predicate with `;` first",
                    ));
                }
                let hv = self.header_val(Kw::Eq)?;
                let span = hv.span;
                Ok(Spanned::new(self.build.test(hv), span))
            }
            _ => Err(self.unexpected("a predicate")),
        }
    }

    // ----- header values --------------------------------------------------------

    fn header_val(&mut self, op: Kw) -> R<HeaderVal> {
        let (tok, fspan) = self.bump();
        let field = match tok {
            Tok::Field(f) => f,
            Tok::Meta(m) => HeaderField::Meta(m),
            t => {
                return Err(Diagnostic::error(
                    fspan,
                    format!("expected a field, found {t}"),
                ))
            }
        };
        if !self.is(op) {
            let mut d = self.unexpected(&format!("`{}` after field `{field}`", op.text()));
            if op == Kw::Eq && self.is(Kw::Assign) {
                d = d.with_hint("`:=` assigns; in a test write `=`");
            }
            return Err(d);
        }
        self.bump();
        let (value, vspan) =
            if field == HeaderField::Port && matches!(self.peek(), Tok::Kw(Kw::Pipe | Kw::Query)) {
                self.location_value()?
            } else {
                self.value()?
            };
        let span = fspan.to(vspan);
        check_value(&field, &value, vspan)?;
        Ok(HeaderVal { field, value, span })
    }

    fn location_value(&mut self) -> R<(Value, Span)> {
        let (tok, start) = self.bump();
        self.expect(Kw::LParen, None)?;
        let s = match self.bump() {
            (Tok::Str(s), _) => s,
            (t, sp) => {
                return Err(
                    Diagnostic::error(sp, format!("expected a string, found {t}"))
                        .with_hint("write pipe(\"name\") or query(\"name\")"),
                )
            }
        };
        let end = self.expect(Kw::RParen, Some((start, "this call")))?;
        let v = if tok == Tok::Kw(Kw::Pipe) {
            Value::Pipe(s)
        } else {
            Value::Query(s)
        };
        Ok((v, start.to(end)))
    }

    fn value(&mut self) -> R<(Value, Span)> {
        let (tok, span) = (self.peek().clone(), self.span());
        let v = match tok {
            Tok::Int(n) => Value::Int(n),
            Tok::Mac(m) => Value::Mac(m),
            Tok::Named(named) => {
                let (kind, name) = *named;
                Value::Named { kind, name }
            }
            Tok::Ip4(addr) => {
                self.bump();
                if self.eat(Kw::Slash) {
                    let ps = self.span();
                    let n = self.int("a prefix length")?;
                    let p = u8::try_from(n).ok().filter(|p| *p <= 32).ok_or_else(|| {
                        Diagnostic::error(ps, "an IPv4 prefix length is 0 to 32")
                            .with_label("too long")
                    })?;
                    return Ok((
                        Value::Ip4 {
                            addr,
                            prefix: Some(p),
                        },
                        span.to(ps),
                    ));
                }
                return Ok((Value::Ip4 { addr, prefix: None }, span));
            }
            Tok::Kw(Kw::Pipe | Kw::Query) => {
                return Err(Diagnostic::error(
                    span,
                    "pipe(…) and query(…) are values of `port` only",
                )
                .with_label("not a value of this field"))
            }
            Tok::Ip6(addr) => return self.ip6_value(addr, span),
            _ => return Err(self.unexpected("a value (integer, MAC or IP address)")),
        };
        self.bump();
        Ok((v, span))
    }
}

/// Checks that a value suits its field (kind and width), as Frenetic's typed grammar
/// does, with a positioned error.
fn check_value(field: &HeaderField, value: &Value, span: Span) -> R<()> {
    let kind_err = |want: &str| {
        Err(Diagnostic::error(span, format!("`{field}` takes {want}"))
            .with_label(format!("found {value}")))
    };
    match (field, value) {
        (HeaderField::Ip4Src | HeaderField::Ip4Dst, Value::Ip4 { .. } | Value::Named { .. }) => {
            Ok(())
        }
        (HeaderField::Ip4Src | HeaderField::Ip4Dst, _) => {
            kind_err("an IPv4 address, optionally with /prefix")
        }
        (HeaderField::Ip6Src | HeaderField::Ip6Dst, Value::Ip6 { .. } | Value::Named { .. }) => {
            Ok(())
        }
        (HeaderField::Ip6Src | HeaderField::Ip6Dst, _) => {
            kind_err("an IPv6 address, optionally with /prefix")
        }
        (_, Value::Ip6 { .. }) => kind_err("no IPv6 address (only ip6Src and ip6Dst do)"),
        (HeaderField::EthSrc | HeaderField::EthDst, Value::Mac(_) | Value::Named { .. }) => Ok(()),
        (HeaderField::Meta(_), Value::Mac(_)) => Ok(()),
        (HeaderField::Meta(_), Value::Ip4 { prefix: None, .. }) => Ok(()),
        (HeaderField::Meta(_), Value::Ip4 { .. }) => kind_err("a single value, not a prefix"),
        (HeaderField::Port, Value::Pipe(_) | Value::Query(_)) => Ok(()),
        (_, Value::Int(n)) => {
            if *n > field.max_int() {
                return Err(
                    Diagnostic::error(span, format!("{n} does not fit in `{field}`")).with_label(
                        format!("the largest value of `{field}` is {}", field.max_int()),
                    ),
                );
            }
            if *field == HeaderField::VlanId && *n >= 4096 && *n != 0xffff {
                return Err(Diagnostic::error(
                    span,
                    "a VLAN id is 0 to 4095 (or 0xffff for \"no tag\")",
                )
                .with_label("not a VLAN id"));
            }
            Ok(())
        }
        (HeaderField::EthSrc | HeaderField::EthDst | HeaderField::Meta(_), _) => {
            kind_err("a MAC address or an integer")
        }
        _ => kind_err("an integer"),
    }
}
