//! Lowering as a [`Build`]er: what each construct of Frenetic's syntax means in
//! the core calculus (`if` and `while` as unions and stars of filters, `let` as
//! a meta field's scope, links), node by node as the parser reads them. This
//! module owns those rules and [`check`], which parses straight into the core
//! calculus without building the syntax tree; [`super::ir::lower`] runs the
//! same rules over a tree already parsed. Field tests and assignments are
//! lowered by [`super::ir`]'s `Lowerer`, which also keeps the scopes. It never
//! compiles or evaluates.

use super::build::{Build, LetHeader};
use super::diagnostics::Diagnostic;
use super::ir::{CInit, CPol, CPred, Lowerer, Program, Resolver, Scope, MAX_META};
use super::syntax::{HeaderField, HeaderVal, LetInit, Span, Value};

/// Parses and lowers a policy in one pass. A lexing or syntax error anywhere
/// comes first; otherwise the first lowering error, in the order of the text.
pub(crate) fn check(src: &str, resolver: &dyn Resolver) -> Result<Program, Diagnostic> {
    let mut l = Lowerer::new(resolver);
    let pol = super::parser::parse_with(src, &mut l)?;
    l.finish(pol)
}

impl Lowerer<'_> {
    /// The meta field a `let` declares, and its start, with its scope opened.
    fn declare(
        &mut self,
        name: &str,
        init: &LetInit,
        mutable: bool,
        name_span: Span,
    ) -> Result<(u16, CInit), Diagnostic> {
        if self.scopes.len() >= MAX_META {
            return Err(Diagnostic::error(
                name_span,
                format!(
                    "too many meta fields: `{name} would be number {}",
                    MAX_META + 1
                ),
            )
            .with_label(format!(
                "at most {MAX_META} meta fields may be in scope at once"
            ))
            .with_hint(
                "Frenetic maps meta fields to five registers (Meta0..Meta4); end some scopes first",
            ));
        }
        let cinit = match init {
            LetInit::Const(v) => CInit::Const(match v {
                Value::Int(n) | Value::Mac(n) => *n,
                Value::Ip4 { addr, .. } => u64::from(*addr),
                _ => 0,
            }),
            LetInit::Alias(HeaderField::Meta(_))
            | LetInit::Alias(
                HeaderField::VSwitch
                | HeaderField::VPort
                | HeaderField::VFabric
                | HeaderField::Ip6Src
                | HeaderField::Ip6Dst,
            ) => {
                return Err(Diagnostic::error(
                    name_span,
                    "a meta field can alias a packet header only",
                )
                .with_label("bad alias"))
            }
            LetInit::Alias(h) => CInit::Alias(h.clone()),
        };
        let meta = self.metas;
        self.metas += 1;
        self.scopes.push(Scope {
            name: name.to_string(),
            meta,
            mutable,
            span: name_span,
        });
        Ok((meta, cinit))
    }
}

impl Build for Lowerer<'_> {
    type Pol = CPol;
    type Pred = CPred;

    fn identity(&mut self, _: Span) -> CPol {
        CPol::id()
    }
    fn drop_all(&mut self, _: Span) -> CPol {
        CPol::Filter(CPred::False)
    }
    fn dup(&mut self, _: Span) -> CPol {
        CPol::Dup
    }
    fn filter(&mut self, a: CPred, _: Span) -> CPol {
        CPol::Filter(a)
    }
    fn assign(&mut self, hv: HeaderVal) -> CPol {
        let lowered = self.modify(&hv);
        self.kept(lowered, CPol::id)
    }
    fn union(&mut self, p: CPol, q: CPol, _: Span) -> CPol {
        CPol::union(p, q)
    }
    fn seq(&mut self, p: CPol, q: CPol, _: Span) -> CPol {
        CPol::seq(p, q)
    }
    fn star(&mut self, p: CPol, _: Span) -> CPol {
        CPol::Star(Box::new(p))
    }
    fn link(&mut self, [s1, p1, s2, p2]: [u64; 4], virtual_link: bool, span: Span) -> CPol {
        if virtual_link {
            self.fail(
                Diagnostic::error(
                    span,
                    "virtual links `=>>` belong to Frenetic's virtual compiler",
                )
                .with_label("virtual link")
                .with_hint("physical links are written `s1@p1 => s2@p2`"),
            );
        }
        CPol::Link {
            s1,
            p1,
            s2,
            p2,
            span,
        }
    }
    fn if_then_else(&mut self, a: CPred, p: CPol, q: CPol, _: Span) -> CPol {
        CPol::union(
            CPol::seq(CPol::Filter(a.clone()), p),
            CPol::seq(CPol::Filter(CPred::negate(a)), q),
        )
    }
    fn while_do(&mut self, a: CPred, p: CPol, _: Span) -> CPol {
        CPol::seq(
            CPol::Star(Box::new(CPol::seq(CPol::Filter(a.clone()), p))),
            CPol::Filter(CPred::negate(a)),
        )
    }
    fn enter_let(&mut self, name: &str, init: &LetInit, mutable: bool, name_span: Span) {
        let declared = self.declare(name, init, mutable, name_span);
        let declared = declared.map_err(|e| self.fail(e)).ok();
        self.lets.push(declared);
    }
    fn let_in(&mut self, _: LetHeader, body: CPol, _: Span) -> CPol {
        match self.lets.pop().flatten() {
            Some((meta, init)) => {
                self.scopes.pop();
                CPol::Let {
                    meta,
                    init,
                    body: Box::new(body),
                }
            }
            // The declaration failed: its error is kept, the body is not a scope.
            None => body,
        }
    }
    fn grouped(&mut self, mut p: CPol, span: Span) -> CPol {
        // A link's span covers its brackets, as the syntax tree's does, and so
        // does the error of a virtual link.
        if let CPol::Link { span: at, .. } = &mut p {
            self.widen_error(*at, span);
            *at = span;
        }
        p
    }

    fn truth(&mut self, value: bool, _: Span) -> CPred {
        if value {
            CPred::True
        } else {
            CPred::False
        }
    }
    fn test(&mut self, hv: HeaderVal) -> CPred {
        let lowered = Lowerer::test(self, &hv);
        self.kept(lowered, || CPred::False)
    }
    fn negate(&mut self, a: CPred, _: Span) -> CPred {
        CPred::negate(a)
    }
    fn and(&mut self, a: CPred, b: CPred, _: Span) -> CPred {
        CPred::and(a, b)
    }
    fn or(&mut self, a: CPred, b: CPred, _: Span) -> CPred {
        CPred::or(a, b)
    }
    fn grouped_pred(&mut self, a: CPred, _: Span) -> CPred {
        a
    }
}

impl Lowerer<'_> {
    /// The lowered node, or a stand-in when lowering failed (the error is kept).
    fn kept<T>(&mut self, lowered: Result<T, Diagnostic>, stand_in: impl FnOnce() -> T) -> T {
        lowered.unwrap_or_else(|e| {
            self.fail(e);
            stand_in()
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::ir::{lower, NoNames};
    use crate::parser::parse_policy;

    /// The one-pass check and the tree's lowering agree, errors and their
    /// positions included, on the constructs whose lowering can fail.
    #[test]
    fn one_pass_agrees_with_the_tree_on_errors() {
        let texts = [
            "(1@1 =>> 2@2)",
            "filter port = 1; 1@1 =>> 2@2 + 3@1 => 4@1",
            "(1@1 => 2@2); drop",
            "filter `x = 1",
            "let `a := 1 in let `b := 2 in let `c := 3 in let `d := 4 in let `e := 5 in let `f := 6 in `a := 1",
            "let `a := 1 in `a := 2",
            "let `a := `b in id",
            "let `a := vswitch in id",
            "var `a := port in (filter `a = 3; `a := 4) + filter `b = 1",
            "filter vswitch = 1",
            "ethTyp := 1",
            "filter ip4Src = vm:web",
            "port := 0xffffffff; filter `zz = 1",
            "filter `zz = 1; (",
            "if port = 1 then `q := 1 else while vlanId = 2 do port := 3",
        ];
        for text in texts {
            let direct = crate::check(text, &NoNames);
            let via_tree = parse_policy(text).and_then(|t| lower(&t, &NoNames));
            match (direct, via_tree) {
                (Ok(a), Ok(b)) => assert_eq!(a.pol, b.pol, "{text}"),
                (Err(a), Err(b)) => assert_eq!(a, b, "{text}"),
                (a, b) => panic!("{text}: {:?} / {:?}", a.err(), b.err()),
            }
        }
    }
}
