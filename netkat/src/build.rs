//! What a parse makes of each construct it reads: the [`Build`] interface the
//! parser ([`super::parser`]) calls, one method per policy and predicate form,
//! children first. This module owns that interface, how the parser's operators
//! map onto it, its plain implementation, [`SyntaxTree`], which builds the
//! [`syntax`](super::syntax) tree with its spans (for the printer, `scc` and
//! tests), and [`rebuild`], which runs a builder over a tree already parsed. Lowering implements
//! it too, so `check` goes from text to the core calculus without a syntax tree
//! in between (a fat-tree k = 16 policy is about a million syntax nodes). It
//! never reads text and never gives meaning to a policy.

use super::syntax::{HeaderVal, LetInit, Policy, PolicyKind, Pred, PredKind, Span};

/// Builds the nodes of a parse, children before parents (except
/// [`Build::enter_let`], called before a `let`'s body). Methods cannot fail: a
/// builder that refuses a construct keeps its first error and reports it when
/// the parse is over, so a syntax error anywhere still comes first.
pub trait Build {
    /// What a policy becomes.
    type Pol;
    /// What a predicate becomes.
    type Pred;

    /// `id`.
    fn identity(&mut self, span: Span) -> Self::Pol;
    /// `drop`.
    fn drop_all(&mut self, span: Span) -> Self::Pol;
    /// `dup`.
    fn dup(&mut self, span: Span) -> Self::Pol;
    /// `filter a` (also a bare predicate where a policy is expected).
    fn filter(&mut self, a: Self::Pred, span: Span) -> Self::Pol;
    /// `field := value` (its span is the value's).
    fn assign(&mut self, hv: HeaderVal) -> Self::Pol;
    /// `p + q`.
    fn union(&mut self, p: Self::Pol, q: Self::Pol, span: Span) -> Self::Pol;
    /// `p ; q`.
    fn seq(&mut self, p: Self::Pol, q: Self::Pol, span: Span) -> Self::Pol;
    /// `p*`.
    fn star(&mut self, p: Self::Pol, span: Span) -> Self::Pol;
    /// `s1@p1 => s2@p2`, or `=>>` when `virtual_link`.
    fn link(&mut self, ends: [u64; 4], virtual_link: bool, span: Span) -> Self::Pol;
    /// `if a then p else q`.
    fn if_then_else(&mut self, a: Self::Pred, p: Self::Pol, q: Self::Pol, span: Span) -> Self::Pol;
    /// `while a do p`.
    fn while_do(&mut self, a: Self::Pred, p: Self::Pol, span: Span) -> Self::Pol;
    /// A `let` (or `var`, when `mutable`) whose body comes next.
    fn enter_let(&mut self, name: &str, init: &LetInit, mutable: bool, name_span: Span);
    /// The `let` entered last, now that its body is built.
    fn let_in(&mut self, header: LetHeader, body: Self::Pol, span: Span) -> Self::Pol;
    /// A bracketed policy: `span` now covers the brackets.
    fn grouped(&mut self, p: Self::Pol, span: Span) -> Self::Pol;

    /// `true` or `false`.
    fn truth(&mut self, value: bool, span: Span) -> Self::Pred;
    /// `field = value`.
    fn test(&mut self, hv: HeaderVal) -> Self::Pred;
    /// `not a`.
    fn negate(&mut self, a: Self::Pred, span: Span) -> Self::Pred;
    /// `a and b`.
    fn and(&mut self, a: Self::Pred, b: Self::Pred, span: Span) -> Self::Pred;
    /// `a or b`.
    fn or(&mut self, a: Self::Pred, b: Self::Pred, span: Span) -> Self::Pred;
    /// A bracketed predicate: `span` now covers the brackets.
    fn grouped_pred(&mut self, a: Self::Pred, span: Span) -> Self::Pred;
}

/// What a `let` declares, as written.
#[derive(Debug)]
pub struct LetHeader {
    /// The name, without its backquote.
    pub name: String,
    /// Its start.
    pub init: LetInit,
    /// `var` rather than `let`.
    pub mutable: bool,
    /// Where the name is.
    pub name_span: Span,
}

/// Builds the [`syntax`](super::syntax) tree.
#[derive(Debug, Default, Clone, Copy)]
pub struct SyntaxTree;

fn pol(kind: PolicyKind, span: Span) -> Policy {
    Policy { kind, span }
}

fn pred(kind: PredKind, span: Span) -> Pred {
    Pred { kind, span }
}

impl Build for SyntaxTree {
    type Pol = Policy;
    type Pred = Pred;

    fn identity(&mut self, span: Span) -> Policy {
        pol(PolicyKind::Id, span)
    }
    fn drop_all(&mut self, span: Span) -> Policy {
        pol(PolicyKind::Drop, span)
    }
    fn dup(&mut self, span: Span) -> Policy {
        pol(PolicyKind::Dup, span)
    }
    fn filter(&mut self, a: Pred, span: Span) -> Policy {
        pol(PolicyKind::Filter(a), span)
    }
    fn assign(&mut self, hv: HeaderVal) -> Policy {
        let span = hv.span;
        pol(PolicyKind::Mod(hv), span)
    }
    fn union(&mut self, p: Policy, q: Policy, span: Span) -> Policy {
        pol(PolicyKind::Union(Box::new(p), Box::new(q)), span)
    }
    fn seq(&mut self, p: Policy, q: Policy, span: Span) -> Policy {
        pol(PolicyKind::Seq(Box::new(p), Box::new(q)), span)
    }
    fn star(&mut self, p: Policy, span: Span) -> Policy {
        pol(PolicyKind::Star(Box::new(p)), span)
    }
    fn link(&mut self, [s1, p1, s2, p2]: [u64; 4], virtual_link: bool, span: Span) -> Policy {
        let kind = if virtual_link {
            PolicyKind::VLink(s1, p1, s2, p2)
        } else {
            PolicyKind::Link(s1, p1, s2, p2)
        };
        pol(kind, span)
    }
    fn if_then_else(&mut self, a: Pred, p: Policy, q: Policy, span: Span) -> Policy {
        pol(PolicyKind::If(a, Box::new(p), Box::new(q)), span)
    }
    fn while_do(&mut self, a: Pred, p: Policy, span: Span) -> Policy {
        pol(PolicyKind::While(a, Box::new(p)), span)
    }
    fn enter_let(&mut self, _: &str, _: &LetInit, _: bool, _: Span) {}
    fn let_in(&mut self, header: LetHeader, body: Policy, span: Span) -> Policy {
        let LetHeader {
            name,
            init,
            mutable,
            name_span,
        } = header;
        pol(
            PolicyKind::Let {
                name,
                init,
                mutable,
                name_span,
                body: Box::new(body),
            },
            span,
        )
    }
    fn grouped(&mut self, p: Policy, span: Span) -> Policy {
        Policy { span, ..p }
    }

    fn truth(&mut self, value: bool, span: Span) -> Pred {
        pred(
            if value {
                PredKind::True
            } else {
                PredKind::False
            },
            span,
        )
    }
    fn test(&mut self, hv: HeaderVal) -> Pred {
        let span = hv.span;
        pred(PredKind::Test(hv), span)
    }
    fn negate(&mut self, a: Pred, span: Span) -> Pred {
        pred(PredKind::Not(Box::new(a)), span)
    }
    fn and(&mut self, a: Pred, b: Pred, span: Span) -> Pred {
        pred(PredKind::And(Box::new(a), Box::new(b)), span)
    }
    fn or(&mut self, a: Pred, b: Pred, span: Span) -> Pred {
        pred(PredKind::Or(Box::new(a), Box::new(b)), span)
    }
    fn grouped_pred(&mut self, a: Pred, span: Span) -> Pred {
        Pred { span, ..a }
    }
}

/// The parser's operators; `Star` is postfix, the others infix.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Union,
    Seq,
    Star,
    Or,
    And,
}

/// A node built during a parse and the text it covers.
pub(crate) struct Spanned<T> {
    pub(crate) node: T,
    pub(crate) span: Span,
}

impl<T> Spanned<T> {
    pub(crate) fn new(node: T, span: Span) -> Spanned<T> {
        Spanned { node, span }
    }
}

/// One side of the grammar, policies or predicates, as the operator loop
/// builds it: `rhs` is `None` for a postfix operator.
pub(crate) type Join<B, T> = fn(&mut B, Op, T, Option<T>, Span) -> T;

pub(crate) fn join_policy<B: Build>(
    b: &mut B,
    op: Op,
    p: B::Pol,
    q: Option<B::Pol>,
    span: Span,
) -> B::Pol {
    match (op, q) {
        (Op::Union, Some(q)) => b.union(p, q, span),
        (Op::Seq, Some(q)) => b.seq(p, q, span),
        _ => b.star(p, span),
    }
}

pub(crate) fn join_pred<B: Build>(
    b: &mut B,
    op: Op,
    a: B::Pred,
    c: Option<B::Pred>,
    span: Span,
) -> B::Pred {
    match (op, c) {
        (Op::And, Some(c)) => b.and(a, c, span),
        (_, Some(c)) => b.or(a, c, span),
        // No predicate operator is postfix.
        (_, None) => a,
    }
}

/// Builds a syntax tree already parsed again, with `b`: how
/// [`super::ir::lower`] lowers a tree.
pub fn rebuild<B: Build>(p: &Policy, b: &mut B) -> B::Pol {
    crate::stack::deep(|| {
        let span = p.span;
        match &p.kind {
            PolicyKind::Id => b.identity(span),
            PolicyKind::Drop => b.drop_all(span),
            PolicyKind::Dup => b.dup(span),
            PolicyKind::Filter(a) => {
                let a = rebuild_pred(a, b);
                b.filter(a, span)
            }
            PolicyKind::Mod(hv) => b.assign(hv.clone()),
            PolicyKind::Union(x, y) => {
                let (x, y) = (rebuild(x, b), rebuild(y, b));
                b.union(x, y, span)
            }
            PolicyKind::Seq(x, y) => {
                let (x, y) = (rebuild(x, b), rebuild(y, b));
                b.seq(x, y, span)
            }
            PolicyKind::Star(x) => {
                let x = rebuild(x, b);
                b.star(x, span)
            }
            PolicyKind::Link(s1, p1, s2, p2) => b.link([*s1, *p1, *s2, *p2], false, span),
            PolicyKind::VLink(s1, p1, s2, p2) => b.link([*s1, *p1, *s2, *p2], true, span),
            PolicyKind::If(a, x, y) => {
                let a = rebuild_pred(a, b);
                let (x, y) = (rebuild(x, b), rebuild(y, b));
                b.if_then_else(a, x, y, span)
            }
            PolicyKind::While(a, x) => {
                let a = rebuild_pred(a, b);
                let x = rebuild(x, b);
                b.while_do(a, x, span)
            }
            PolicyKind::Let {
                name,
                init,
                mutable,
                name_span,
                body,
            } => {
                b.enter_let(name, init, *mutable, *name_span);
                let body = rebuild(body, b);
                let header = LetHeader {
                    name: name.clone(),
                    init: init.clone(),
                    mutable: *mutable,
                    name_span: *name_span,
                };
                b.let_in(header, body, span)
            }
        }
    })
}

/// [`rebuild`] for a predicate.
pub fn rebuild_pred<B: Build>(a: &Pred, b: &mut B) -> B::Pred {
    crate::stack::deep(|| {
        let span = a.span;
        match &a.kind {
            PredKind::True => b.truth(true, span),
            PredKind::False => b.truth(false, span),
            PredKind::Test(hv) => b.test(hv.clone()),
            PredKind::Not(x) => {
                let x = rebuild_pred(x, b);
                b.negate(x, span)
            }
            PredKind::And(x, y) => {
                let (x, y) = (rebuild_pred(x, b), rebuild_pred(y, b));
                b.and(x, y, span)
            }
            PredKind::Or(x, y) => {
                let (x, y) = (rebuild_pred(x, b), rebuild_pred(y, b));
                b.or(x, y, span)
            }
        }
    })
}
