//! Hop programs: the end-to-end form `in; (p; t)*; p; out` of a network, where
//! the topology `t` is written with moves (`filter switch = a and port = b;
//! (switch := c; port := d)`, one per wire) instead of links, and `in`/`out` are
//! sets of locations. Frenetic's example `bug-#497-may-2016.kat` is such a program
//! (its issue #497 was a wrong FDD for it; Frenetic's table generator refuses its
//! `switch :=` with `Non_local`).
//!
//! A network whose switches run `p` and whose wires are the moves of `t` already
//! is that program, so it needs no tags: every switch runs
//! `filter (in or arrived over a wire); p; filter (leaves on a wire or out)`. A
//! packet entering at an `in` location is processed by `p`; an output on a wire's
//! source port crosses the wire and is processed by `p` again (the star); an output
//! at an `out` location is delivered (the final `p; out`); other outputs are
//! dropped, as the program drops them. This module owns the recognition of that
//! shape and the construction of the per-switch program ([`HopProgram::local`]);
//! it never changes a program of another shape, and it assumes, as a physical
//! network does, that packets enter only at `in` locations, never on a wire.

use super::guard::negation_as_entries;
use super::ir::{CPol, CPred, HField, Pattern};

/// A location: `(switch, port)`.
pub type Loc = (u64, u64);

/// A recognised hop program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HopProgram {
    /// Where packets enter.
    pub ingress: Vec<Loc>,
    /// The switch program `p`.
    pub body: CPol,
    /// The wires of `t`: `(from, to)`.
    pub wires: Vec<(Loc, Loc)>,
    /// Where packets leave.
    pub egress: Vec<Loc>,
}

/// Recognises `in; (p; t)*; p; out` (the second `p` written out again).
pub fn recognise(pol: &CPol) -> Option<HopProgram> {
    let steps = pol.seq_steps();
    let [first, star, middle @ .., last] = steps.as_slice() else {
        return None;
    };
    let CPol::Star(looped) = star else {
        return None;
    };
    let looped_steps = looped.seq_steps();
    // `t` is the star body's last step (a `+` of moves), or its last three steps
    // when the topology is a single move (`filter …; switch := c; port := d`).
    let (body_steps, wires) = [1, 3].into_iter().find_map(|n| {
        let cut = looped_steps.len().checked_sub(n)?;
        let (body, topo) = looped_steps.split_at(cut);
        let topo = topo.iter().map(|s| (*s).clone()).reduce(CPol::seq)?;
        Some((body, wires(&topo)?))
    })?;
    if body_steps.len() != middle.len() || body_steps.iter().zip(middle).any(|(a, b)| a != b) {
        return None;
    }
    let body = body_steps.iter().map(|s| (*s).clone()).reduce(CPol::seq)?;
    if body.has_links() || assigns_switch(&body) {
        return None;
    }
    Some(HopProgram {
        ingress: locations(first)?,
        body,
        wires,
        egress: locations(last)?,
    })
}

fn assigns_switch(p: &CPol) -> bool {
    crate::stack::deep(|| match p {
        CPol::Mod(f, _) => *f == HField::Switch,
        CPol::Filter(_) | CPol::Dup | CPol::Link { .. } => false,
        CPol::Union(x, y) | CPol::Seq(x, y) => assigns_switch(x) || assigns_switch(y),
        CPol::Star(x) | CPol::Let { body: x, .. } => assigns_switch(x),
    })
}

/// The locations of `filter l1 or l2 …` or `filter l1 + filter l2 + …`, where each
/// `li` is `switch = s and port = p`.
fn locations(p: &CPol) -> Option<Vec<Loc>> {
    let mut out = Vec::new();
    for branch in p.union_branches() {
        let CPol::Filter(a) = branch else {
            return None;
        };
        for entry in negation_as_entries(&CPred::negate(a.clone()))? {
            out.push(location(&entry)?);
        }
    }
    out.sort_unstable();
    out.dedup();
    Some(out)
}

fn location(tests: &[Pattern]) -> Option<Loc> {
    let exact = |f: HField| {
        tests
            .iter()
            .find(|t| t.field == f && t.len == f.bits())
            .map(|t| t.value)
    };
    match tests {
        [_, _] => Some((exact(HField::Switch)?, exact(HField::Port)?)),
        _ => None,
    }
}

/// The wires of `t`: each branch `filter switch = a and port = b; switch := c;
/// port := d` (the two assignments in either order).
fn wires(t: &CPol) -> Option<Vec<(Loc, Loc)>> {
    let mut out = Vec::new();
    for branch in t.union_branches() {
        let steps = branch.seq_steps();
        let [CPol::Filter(a), m1, m2] = steps.as_slice() else {
            return None;
        };
        let from = match negation_as_entries(&CPred::negate(a.clone()))?.as_slice() {
            [entry] => location(entry)?,
            _ => return None,
        };
        let to = match (m1, m2) {
            (CPol::Mod(HField::Switch, s), CPol::Mod(HField::Port, p))
            | (CPol::Mod(HField::Port, p), CPol::Mod(HField::Switch, s)) => (*s, *p),
            _ => return None,
        };
        out.push((from, to));
    }
    Some(out)
}

fn any_of(locs: impl IntoIterator<Item = Loc>) -> CPred {
    locs.into_iter()
        .map(|(s, p)| CPred::and(CPred::test(HField::Switch, s), CPred::test(HField::Port, p)))
        .reduce(CPred::or)
        .unwrap_or(CPred::False)
}

impl HopProgram {
    /// What every switch runs: `filter (in or arrived over a wire); p; filter
    /// (leaves on a wire or out)`.
    pub fn local(&self) -> CPol {
        let admit = any_of(
            self.ingress
                .iter()
                .copied()
                .chain(self.wires.iter().map(|w| w.1)),
        );
        let leave = any_of(
            self.egress
                .iter()
                .copied()
                .chain(self.wires.iter().map(|w| w.0)),
        );
        CPol::seq(
            CPol::filter(admit),
            CPol::seq(self.body.clone(), CPol::filter(leave)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{lower, NoNames};
    use crate::parser::parse_policy;

    fn core(src: &str) -> CPol {
        lower(&parse_policy(src).expect("parses"), &NoNames)
            .expect("lowers")
            .pol
    }

    #[test]
    fn recognises_moves_as_wires() {
        let p = "filter port = 1 and vlanId = 1; port := 2 + filter port = 2; port := 1";
        let t = "filter switch = 1 and port = 2; (switch := 2; port := 2) + \
                 filter switch = 2 and port = 2; (port := 2; switch := 1)";
        let src = format!(
            "filter switch = 1 and port = 1; (({p}); ({t}))*; ({p}); \
             (filter switch = 2 and port = 1 + filter switch = 1 and port = 1)"
        );
        let h = recognise(&core(&src)).expect("a hop program");
        assert_eq!(h.ingress, vec![(1, 1)]);
        assert_eq!(h.egress, vec![(1, 1), (2, 1)]);
        assert_eq!(h.wires, vec![((1, 2), (2, 2)), ((2, 2), (1, 2))]);
    }

    #[test]
    fn a_single_move_is_a_wire() {
        let src = "filter switch = 1 and port = 1; (port := 2; \
                   filter switch = 1 and port = 2; switch := 2; port := 1)*; \
                   port := 2; filter switch = 2 and port = 2";
        let h = recognise(&core(src)).expect("a hop program");
        assert_eq!(h.wires, vec![((1, 2), (2, 1))]);
        assert_eq!(h.body, CPol::Mod(HField::Port, 2));
    }

    #[test]
    fn other_shapes_are_not_hop_programs() {
        // The two copies of `p` differ.
        let src = "filter switch = 1 and port = 1; (port := 2; \
                   (filter switch = 1 and port = 2; switch := 2; port := 2))*; \
                   port := 3; filter switch = 2 and port = 1";
        assert_eq!(recognise(&core(src)), None);
        // `t` tests a field other than the location.
        let src = "filter switch = 1 and port = 1; (port := 2; \
                   (filter switch = 1 and ethDst = 1; switch := 2; port := 2))*; \
                   port := 2; filter switch = 2 and port = 1";
        assert_eq!(recognise(&core(src)), None);
    }
}
