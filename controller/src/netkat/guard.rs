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

use super::ir::{operands, CPol, CPred, HField, Pattern};

/// One ACL entry: packets matching every test are dropped. Tests of one field are
/// merged (the most specific prefix kept); an entry no packet matches is removed.
pub type Entry = Vec<Pattern>;

/// Most entries the guard may expand to (`and` over `or` multiplies entries).
pub const MAX_ENTRIES: usize = 1 << 20;

/// A program split into the entries its guards deny and the policy that runs on the
/// packets they let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// Drop entries, in no particular order (all have the same action).
    pub deny: Vec<Entry>,
    /// The rest of the policy.
    pub rest: CPol,
}

/// Splits `p` into deny entries and the rest. Returns `deny` empty and `rest == p`
/// when `p` has no such guard. Recognised shapes: a `;`-chain whose leading
/// `filter`s (they commute) include predicates whose negation is a disjunction of
/// positive conjunctions, possibly as the only non-`drop` branch of a `+` (which is
/// what `if c then drop else p` lowers to).
pub fn split(p: &CPol) -> Split {
    let live = live_branches(p);
    let body = match live.as_slice() {
        [only] => *only,
        _ => p,
    };
    let chain = body.seq_steps();
    let mut deny: Vec<Entry> = Vec::new();
    let mut kept: Vec<CPol> = Vec::new();
    let mut leading = true;
    for part in chain {
        if leading {
            if let CPol::Filter(a) = part {
                if let Some(entries) = negation_as_entries(a) {
                    if deny.len() + entries.len() <= MAX_ENTRIES {
                        deny.extend(entries);
                        continue;
                    }
                }
                kept.push(part.clone());
                continue;
            }
            leading = false;
        }
        kept.push(part.clone());
    }
    if deny.is_empty() {
        return Split {
            deny,
            rest: p.clone(),
        };
    }
    let rest = kept.into_iter().reduce(CPol::seq).unwrap_or_else(CPol::id);
    Split { deny, rest }
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
        CPred::And(x, y) | CPred::Or(x, y) => {
            // A conjunction: every entry of one side with every entry of the other.
            let xs = dnf(x, negated)?;
            let ys = dnf(y, negated)?;
            if xs.len().saturating_mul(ys.len()) > MAX_ENTRIES {
                return None;
            }
            Some(
                xs.iter()
                    .flat_map(|e| {
                        ys.iter().map(move |f| {
                            let mut g = e.clone();
                            g.extend_from_slice(f);
                            g
                        })
                    })
                    .collect(),
            )
        }
    }
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
        assert_eq!(s.rest, CPol::Mod(HField::Port, 2));
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
        assert_eq!(s.rest, CPol::Mod(HField::Port, 2));
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
        assert_eq!(s.rest, p);
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
