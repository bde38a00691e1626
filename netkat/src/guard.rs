//! Deny guards: a policy that starts with `filter not (c1 or … or cn); rest`, where
//! every `ci` is a conjunction of positive field tests (an ACL), is compiled as `n`
//! drop rules above the table of `rest` instead of through one FDD.
//!
//! Why not the FDD: under any single field order, the FDD of a disjunction of
//! conjunctions over different field pairs (`src ∧ tcpDst`, `dst ∧ udpDst`,
//! `src ∧ dst`) grows quadratically. Below the test `src = s_i`, the diagram must
//! decide `tcpDst = p_i` *and* every other entry that does not test `src`, so each of
//! the n/3 source tests carries its own copy of the n/3-long chain of destination
//! tests; one rule per FDD path then gives the same square in OpenFlow rules. A
//! prioritised table needs no such copies: packets matching an entry are dropped by
//! its rule, the others fall through to the rules below, one rule per entry.
//!
//! This module owns only the recognition (splitting a program into its guard's
//! entries and the rest, [`split`]); [`super::local`] places the drop rules. It
//! never changes what a policy means: `filter a; p` with `¬a ≡ c1 ∨ … ∨ cn` drops
//! exactly the packets some `ci` matches and runs `p` on the others.

use super::ir::{operands, CInit, CPol, CPred, HField, Pattern};
use std::borrow::Cow;

/// One ACL entry: packets matching every test are dropped. Tests of one field are
/// merged (the most specific prefix kept); an entry no packet matches is removed.
pub type Entry = Vec<Pattern>;

/// Most entries the guard may expand to (`and` over `or` multiplies entries).
pub const MAX_ENTRIES: usize = 1 << 20;

/// A program split into the entries its guards deny and the policy that runs on the
/// packets they let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split<'a> {
    /// Drop entries, in no particular order (all have the same action).
    pub deny: Vec<Entry>,
    /// The rest of the policy: `p` itself, not a copy, when it has no guard (a
    /// routing policy is hundreds of thousands of terms).
    pub rest: Cow<'a, CPol>,
}

/// Splits `p` into deny entries and the rest. Returns `deny` empty and `rest == p`
/// when `p` has no such guard. Recognised shapes: a `;`-chain whose leading
/// `filter`s (they commute) include predicates whose negation is a disjunction of
/// positive conjunctions; the same again inside the step after them when it is a
/// `+` with one branch that is not `drop` (what `if c then drop else q` lowers to)
/// or a `let` scope (a guard never tests a meta field, so it may leave the scope).
pub fn split(p: &CPol) -> Split<'_> {
    let mut deny: Vec<Entry> = Vec::new();
    let mut levels: Vec<Level> = Vec::new();
    let mut current = p;
    let innermost = loop {
        let live = live_branches(current);
        let body = match live.as_slice() {
            [only] => *only,
            _ => current,
        };
        let chain = body.seq_steps();
        let mut before: Vec<CPol> = Vec::new();
        let mut i = 0;
        while let Some(CPol::Filter(a)) = chain.get(i) {
            match negation_as_entries(a) {
                Some(entries) if deny.len() + entries.len() <= MAX_ENTRIES => deny.extend(entries),
                _ => before.push(CPol::Filter(a.clone())),
            }
            i += 1;
        }
        let after = || chain.iter().skip(i + 1).map(|q| (*q).clone()).collect();
        match chain.get(i) {
            Some(CPol::Let { meta, init, body }) => {
                levels.push(Level {
                    before,
                    scope: Some((*meta, init.clone())),
                    after: after(),
                });
                current = body;
            }
            Some(step @ CPol::Union(..)) if live_branches(step).len() == 1 => {
                levels.push(Level {
                    before,
                    scope: None,
                    after: after(),
                });
                current = step;
            }
            _ => break (before, chain[i..].to_vec()),
        }
    };
    if deny.is_empty() {
        return Split {
            deny,
            rest: Cow::Borrowed(p),
        };
    }
    let (mut innermost, tail) = innermost;
    innermost.extend(tail.into_iter().cloned());
    let mut rest = chain_of(innermost);
    while let Some(Level {
        before,
        scope,
        after,
    }) = levels.pop()
    {
        let inner = match scope {
            Some((meta, init)) => CPol::Let {
                meta,
                init,
                body: Box::new(rest),
            },
            None => rest,
        };
        rest = chain_of(before.into_iter().chain([inner]).chain(after).collect());
    }
    Split {
        deny,
        rest: Cow::Owned(rest),
    }
}

/// A step of a `;` chain that [`split`] looked inside.
struct Level {
    /// The filters kept before the step.
    before: Vec<CPol>,
    /// The `let` scope the step opened, if it was one.
    scope: Option<(u16, CInit)>,
    /// The steps after it.
    after: Vec<CPol>,
}

fn chain_of(steps: Vec<CPol>) -> CPol {
    steps.into_iter().reduce(CPol::seq).unwrap_or_else(CPol::id)
}

/// The branches of a `+` tree that are not obviously `drop`.
fn live_branches(p: &CPol) -> Vec<&CPol> {
    p.union_branches()
        .into_iter()
        .filter(|q| {
            !q.seq_steps()
                .iter()
                .any(|s| matches!(s, CPol::Filter(CPred::False)))
        })
        .collect()
}

/// `¬a` as a disjunction of positive conjunctions, when it is one.
pub fn negation_as_entries(a: &CPred) -> Option<Vec<Entry>> {
    let raw = dnf(a, true)?;
    Some(raw.into_iter().filter_map(normalise).collect())
}

/// Disjunctive normal form of `a` (of `¬a` when `negated`) with positive literals
/// only; `None` when a negative literal or a meta field remains, or when
/// distributing would exceed [`MAX_ENTRIES`].
fn dnf(a: &CPred, negated: bool) -> Option<Vec<Entry>> {
    crate::stack::deep(|| {
        // `or` under no negation and `and` under one are disjunctions: flatten such
        // chains iteratively, since long ACLs make them deep.
        let is_disjunction = |q: &CPred| {
            matches!(
                (q, negated),
                (CPred::Or(..), false) | (CPred::And(..), true)
            )
        };
        match a {
            CPred::True => Some(if negated { vec![] } else { vec![vec![]] }),
            CPred::False => Some(if negated { vec![vec![]] } else { vec![] }),
            CPred::Test(t) => {
                if negated || matches!(t.field, HField::Meta(_)) {
                    None
                } else {
                    Some(vec![vec![*t]])
                }
            }
            CPred::Not(x) => dnf(x, !negated),
            _ if is_disjunction(a) => {
                let disjuncts = operands(a, |q| match q {
                    CPred::Or(x, y) | CPred::And(x, y) if is_disjunction(q) => Some((&**x, &**y)),
                    _ => None,
                });
                let mut out = Vec::new();
                for q in disjuncts {
                    out.extend(dnf(q, negated)?);
                    if out.len() > MAX_ENTRIES {
                        return None;
                    }
                }
                Some(out)
            }
            CPred::And(..) | CPred::Or(..) => {
                // A conjunction (chains flattened, as above): every entry of one
                // conjunct with every entry of the others.
                let conjuncts = operands(a, |q| match q {
                    CPred::Or(x, y) | CPred::And(x, y) if !is_disjunction(q) => Some((&**x, &**y)),
                    _ => None,
                });
                let mut out: Vec<Entry> = vec![vec![]];
                for q in conjuncts {
                    let ys = dnf(q, negated)?;
                    if out.len().saturating_mul(ys.len()) > MAX_ENTRIES {
                        return None;
                    }
                    out = out
                        .iter()
                        .flat_map(|e| {
                            ys.iter().map(move |f| {
                                let mut g = e.clone();
                                g.extend_from_slice(f);
                                g
                            })
                        })
                        .collect();
                }
                Some(out)
            }
        }
    })
}

/// Merges the tests of one field (keeping the most specific); `None` when two of
/// them contradict each other, so no packet matches the entry.
fn normalise(mut e: Entry) -> Option<Entry> {
    e.sort_by_key(Pattern::order_key);
    let mut out: Entry = Vec::with_capacity(e.len());
    for t in e {
        match out.last() {
            Some(last) if last.field == t.field => {
                // Sorted most specific first: `t` must contain `last`.
                if !t.contains(last) {
                    return None;
                }
            }
            _ => out.push(t),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(f: HField, v: u64) -> CPred {
        CPred::test(f, v)
    }

    #[test]
    fn acl_guard_becomes_entries() {
        let entries = CPred::or(
            CPred::and(t(HField::Port, 1), t(HField::EthType, 0x800)),
            t(HField::EthDst, 7),
        );
        let p = CPol::seq(
            CPol::filter(CPred::negate(entries)),
            CPol::Mod(HField::Port, 2),
        );
        let s = split(&p);
        assert_eq!(*s.rest, CPol::Mod(HField::Port, 2));
        assert_eq!(
            s.deny,
            vec![
                vec![
                    Pattern::exact(HField::Port, 1),
                    Pattern::exact(HField::EthType, 0x800)
                ],
                vec![Pattern::exact(HField::EthDst, 7)],
            ]
        );
    }

    #[test]
    fn if_then_drop_is_a_guard() {
        let c = t(HField::EthDst, 7);
        let p = CPol::union(
            CPol::seq(CPol::filter(c.clone()), CPol::filter(CPred::False)),
            CPol::seq(CPol::filter(CPred::negate(c)), CPol::Mod(HField::Port, 2)),
        );
        let s = split(&p);
        assert_eq!(s.deny, vec![vec![Pattern::exact(HField::EthDst, 7)]]);
        assert_eq!(*s.rest, CPol::Mod(HField::Port, 2));
    }

    #[test]
    fn guards_inside_let_and_nested_ifs_are_found() {
        // let m := port in (if a then drop else (if b then drop else port := 2)); port := 3
        let (a, b) = (t(HField::EthDst, 7), t(HField::EthSrc, 3));
        let if_drop = |c: CPred, q: CPol| {
            CPol::union(
                CPol::seq(CPol::filter(c.clone()), CPol::filter(CPred::False)),
                CPol::seq(CPol::filter(CPred::negate(c)), q),
            )
        };
        let body = if_drop(a, if_drop(b, CPol::Mod(HField::Port, 2)));
        let p = CPol::seq(
            CPol::Let {
                meta: 0,
                init: CInit::Alias(crate::syntax::HeaderField::Port),
                body: Box::new(body),
            },
            CPol::Mod(HField::Port, 3),
        );
        let s = split(&p);
        assert_eq!(
            s.deny,
            vec![
                vec![Pattern::exact(HField::EthDst, 7)],
                vec![Pattern::exact(HField::EthSrc, 3)]
            ]
        );
        assert_eq!(
            *s.rest,
            CPol::seq(
                CPol::Let {
                    meta: 0,
                    init: CInit::Alias(crate::syntax::HeaderField::Port),
                    body: Box::new(CPol::Mod(HField::Port, 2)),
                },
                CPol::Mod(HField::Port, 3),
            )
        );
    }

    #[test]
    fn positive_filters_and_negative_literals_stay_in_the_rest() {
        // `filter port = 1` (its negation is not positive) and `not (a and not b)`.
        let inner = CPred::and(t(HField::EthDst, 7), CPred::negate(t(HField::EthSrc, 3)));
        let p = CPol::seq(
            CPol::filter(t(HField::Port, 1)),
            CPol::seq(
                CPol::filter(CPred::negate(inner)),
                CPol::Mod(HField::Port, 2),
            ),
        );
        let s = split(&p);
        assert!(s.deny.is_empty());
        assert_eq!(*s.rest, p);
    }

    #[test]
    fn contradictory_entries_vanish_and_prefixes_merge() {
        let wide = CPred::Test(Pattern::prefix(HField::Ip4Src, 0x0a00_0000, 8));
        let narrow = CPred::Test(Pattern::prefix(HField::Ip4Src, 0x0a01_0000, 16));
        let other = CPred::Test(Pattern::prefix(HField::Ip4Src, 0x0b00_0000, 8));
        let a = CPred::or(CPred::and(wide.clone(), narrow), CPred::and(wide, other));
        let entries = negation_as_entries(&CPred::negate(a)).expect("positive");
        assert_eq!(
            entries,
            vec![vec![Pattern::prefix(HField::Ip4Src, 0x0a01_0000, 16)]]
        );
    }
}
