//! The global compiler: programs with links (`s1@p1 => s2@p2`) become one FDD per
//! network whose per-switch tables carry the program's position in a VLAN tag, as
//! Frenetic's `Global_compiler.ml` does with its program counter.
//!
//! The program is read as an automaton whose letters are link occurrences: for every
//! sub-policy we compute the link-free part (`e`), the code before the first link
//! (`first`), after the last link (`last`), and between two consecutive links
//! (`follow`), all as FDDs. A switch then runs, for an untagged packet (one entering
//! the network), `e` plus every `first` followed by its link's source test, tagging
//! the packet with the link it is about to cross; for a tagged packet, the
//! continuation of its tag. States are sets of link occurrences, built by subset
//! construction over FDD leaves, so two program paths that send the same packet
//! over the same link send it once (determinisation). A copy crosses a link with
//! only its location changed: the state records, per link, the header changes
//! still to apply, so copies that differ at the entry switch but agree later are
//! one packet on the wire and one at the exit; copies that meet after different
//! links are told apart by their tags, so that only one of them delivers the
//! packet (`copies`). Packets leaving the network are untagged; an untagged
//! output on a link's source port is dropped (it ended the program inside the
//! network, and sent it would enter the network again at the far end). This
//! module owns that construction; it never emits rules itself (that is
//! [`super::local`]) and never parses.
//!
//! Limits: the tag is the VLAN id, so a program with links may not itself test or
//! set `vlanId`/`vlanPcp`, and at most 4094 states; meta fields may not span links.

use super::copies::{self, Forks, PC};
use super::fdd::{Fdd, Node, NodeId, Seq, DROP, ID};
use super::ir::{CPol, CPred, HField, Pattern};
use super::syntax::Span;
use openflow::flow::VLAN_PRESENT;
use rustc_hash::FxHashMap as HashMap;
use std::collections::{BTreeMap, BTreeSet};

/// Why a program with links cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobalError {
    /// The program uses the VLAN tag the compiler needs.
    #[error("a program with links may not use vlanId/vlanPcp: the global compiler carries its state in the VLAN tag")]
    UsesVlan,
    /// A meta field's scope contains a link.
    #[error("a meta field's scope may not contain links")]
    MetaAcrossLink(Span),
    /// Too many automaton states for the VLAN id space.
    #[error("the program needs {0} tags, more than the 4094 VLAN ids")]
    TooManyStates(usize),
    /// The futures of copies crossing looping links did not settle.
    #[error("copies of a packet may cross the program's links in a loop forever")]
    CopiesLoop,
    /// A link-free part failed to compile.
    #[error(transparent)]
    Fdd(#[from] super::fdd::FddError),
}

#[derive(Clone, Copy, Debug)]
struct Link {
    s1: u64,
    p1: u64,
    s2: u64,
    p2: u64,
}

#[derive(Default)]
struct Parts {
    e: NodeId,
    first: BTreeMap<usize, NodeId>,
    last: BTreeMap<usize, NodeId>,
    follow: BTreeMap<(usize, usize), NodeId>,
}

fn add<K: Ord + Copy>(fdd: &mut Fdd, m: &mut BTreeMap<K, NodeId>, k: K, v: NodeId) {
    let cur = m.get(&k).copied().unwrap_or(DROP);
    let u = fdd.union(cur, v);
    m.insert(k, u);
}

fn uses_vlan(p: &CPol) -> bool {
    fn pred(a: &CPred) -> bool {
        crate::stack::deep(|| match a {
            CPred::True | CPred::False => false,
            CPred::Test(t) => matches!(t.field, HField::VlanVid | HField::VlanPcp),
            CPred::Not(x) => pred(x),
            CPred::And(x, y) | CPred::Or(x, y) => pred(x) || pred(y),
        })
    }
    match p {
        CPol::Filter(a) => pred(a),
        CPol::Mod(f, _) => matches!(f, HField::VlanVid | HField::VlanPcp),
        CPol::Union(x, y) | CPol::Seq(x, y) => uses_vlan(x) || uses_vlan(y),
        CPol::Star(x) | CPol::Let { body: x, .. } => uses_vlan(x),
        CPol::Dup | CPol::Link { .. } => false,
    }
}

struct Builder<'a> {
    fdd: &'a mut Fdd,
    links: Vec<Link>,
}

impl Builder<'_> {
    fn parts(&mut self, p: &CPol) -> Result<Parts, GlobalError> {
        crate::stack::deep(|| {
            if !p.has_links() {
                let e = self.fdd.compile(p)?;
                return Ok(Parts {
                    e,
                    ..Parts::default()
                });
            }
            Ok(match p {
                CPol::Link { s1, p1, s2, p2, .. } => {
                    let id = self.links.len();
                    self.links.push(Link {
                        s1: *s1,
                        p1: *p1,
                        s2: *s2,
                        p2: *p2,
                    });
                    let mut parts = Parts {
                        e: DROP,
                        ..Parts::default()
                    };
                    parts.first.insert(id, ID);
                    parts.last.insert(id, ID);
                    parts
                }
                CPol::Union(x, y) => {
                    let a = self.parts(x)?;
                    let b = self.parts(y)?;
                    let mut out = a;
                    out.e = self.fdd.union(out.e, b.e);
                    for (k, v) in b.first {
                        add(self.fdd, &mut out.first, k, v);
                    }
                    for (k, v) in b.last {
                        add(self.fdd, &mut out.last, k, v);
                    }
                    for (k, v) in b.follow {
                        add(self.fdd, &mut out.follow, k, v);
                    }
                    out
                }
                CPol::Seq(x, y) => {
                    let a = self.parts(x)?;
                    let b = self.parts(y)?;
                    let mut out = Parts {
                        e: self.fdd.seq(a.e, b.e),
                        first: a.first.clone(),
                        follow: a.follow.clone(),
                        ..Parts::default()
                    };
                    for (&l, &d) in &b.first {
                        let v = self.fdd.seq(a.e, d);
                        add(self.fdd, &mut out.first, l, v);
                    }
                    for (&l, &d) in &a.last {
                        let v = self.fdd.seq(d, b.e);
                        add(self.fdd, &mut out.last, l, v);
                    }
                    for (&l, &d) in &b.last {
                        add(self.fdd, &mut out.last, l, d);
                    }
                    for (&k, &d) in &b.follow {
                        add(self.fdd, &mut out.follow, k, d);
                    }
                    for (&l1, &d1) in &a.last {
                        for (&l2, &d2) in &b.first {
                            let v = self.fdd.seq(d1, d2);
                            add(self.fdd, &mut out.follow, (l1, l2), v);
                        }
                    }
                    out
                }
                CPol::Star(x) => {
                    let a = self.parts(x)?;
                    let s = self.fdd.star(a.e)?;
                    let mut out = Parts {
                        e: s,
                        follow: a.follow.clone(),
                        ..Parts::default()
                    };
                    for (&l, &d) in &a.first {
                        let v = self.fdd.seq(s, d);
                        add(self.fdd, &mut out.first, l, v);
                    }
                    for (&l, &d) in &a.last {
                        let v = self.fdd.seq(d, s);
                        add(self.fdd, &mut out.last, l, v);
                    }
                    for (&l1, &d1) in &a.last {
                        let d1s = self.fdd.seq(d1, s);
                        for (&l2, &d2) in &a.first {
                            let v = self.fdd.seq(d1s, d2);
                            add(self.fdd, &mut out.follow, (l1, l2), v);
                        }
                    }
                    out
                }
                CPol::Let { .. } => return Err(GlobalError::MetaAcrossLink(Span::default())),
                CPol::Filter(_) | CPol::Mod(..) | CPol::Dup => {
                    let e = self.fdd.compile(p)?;
                    Parts {
                        e,
                        ..Parts::default()
                    }
                }
            })
        })
    }

    /// `filter switch = s1 and port = p1; pc := link`.
    fn out(&mut self, l: usize) -> NodeId {
        let k = self.links[l];
        let t = location_test(self.fdd, k.s1, k.p1);
        let m = self.fdd.modify(PC, l as u64);
        self.fdd.prod(t, m)
    }

    /// `filter switch = s2 and port = p2` (where a packet arrives over a link).
    fn arrive(&mut self, l: usize) -> NodeId {
        let k = self.links[l];
        location_test(self.fdd, k.s2, k.p2)
    }
}

impl From<copies::CopiesError> for GlobalError {
    fn from(e: copies::CopiesError) -> GlobalError {
        match e {
            copies::CopiesError::Loop => GlobalError::CopiesLoop,
            copies::CopiesError::Fdd(e) => GlobalError::Fdd(e),
        }
    }
}

/// Compiles a program with links to one FDD whose tables (per switch, by
/// [`super::local::table`]) implement it with VLAN tags between switches.
pub fn compile(fdd: &mut Fdd, pol: &CPol) -> Result<NodeId, GlobalError> {
    if uses_vlan(pol) {
        return Err(GlobalError::UsesVlan);
    }
    let mut b = Builder {
        fdd,
        links: Vec::new(),
    };
    let parts = b.parts(pol)?;
    // Code run after crossing link l, ending in an egress or in another link.
    let mut cont: HashMap<usize, NodeId> = HashMap::default();
    for l in 0..b.links.len() {
        let mut c = parts.last.get(&l).copied().unwrap_or(DROP);
        for (&(l1, l2), &d) in parts.follow.range((l, 0)..=(l, usize::MAX)) {
            debug_assert_eq!(l1, l);
            let o = b.out(l2);
            let v = b.fdd.seq(d, o);
            c = b.fdd.union(c, v);
        }
        let arrive = b.arrive(l);
        let c = b.fdd.prod(arrive, c);
        cont.insert(l, c);
    }
    let mut ingress = parts.e;
    for (&l, &d) in &parts.first {
        let o = b.out(l);
        let v = b.fdd.seq(d, o);
        ingress = b.fdd.union(ingress, v);
    }
    // Subset construction over leaves. A copy about to cross a link changes only
    // its location on the way: the header changes the program made so far travel
    // in the state (the tag) as pending changes, applied where the copy leaves the
    // network. Every copy on a wire thus carries the headers it entered with, so
    // copies that differ at the entry switch but end up identical meet in one
    // leaf (a set) and are sent once, as NetKAT's semantics delivers them once;
    // copies that meet after different links are told apart by their tags (see
    // `copies`).
    let (switches, ports) = locations(pol);
    let fdd = b.fdd;
    let mut forks = Forks::new(copies::Program {
        links: b.links.iter().map(|k| (k.s1, k.p1, k.s2, k.p2)).collect(),
        link_sources: b.links.iter().map(|k| (k.s1, k.p1)).collect(),
        last: parts.last,
        follow: parts.follow,
        switches,
        ports,
    });
    let ingress = forks.fork(fdd, ingress, DROP)?;
    let untagged = fdd.atom(Pattern::exact(HField::VlanVid, 0));
    let mut program = fdd.prod(untagged, ingress);
    while let Some(id) = forks.todo.pop() {
        let (set, excluded) = forks.states[usize::try_from(id).unwrap_or(usize::MAX)].clone();
        let mut c = DROP;
        for (l, pending) in set {
            let part = cont
                .get(&usize::try_from(l).unwrap_or(usize::MAX))
                .copied()
                .unwrap_or(DROP);
            let changes = copies::pending_changes(fdd, &pending)?;
            let part = fdd.seq(changes, part);
            c = fdd.union(c, part);
        }
        let c = forks.fork(fdd, c, excluded)?;
        if forks.states.len() > 4094 {
            return Err(GlobalError::TooManyStates(forks.states.len()));
        }
        let guard = fdd.atom(Pattern::exact(HField::VlanVid, tag(id)));
        let g = fdd.prod(guard, c);
        program = fdd.union(program, g);
    }
    // The state becomes the VLAN tag; packets leaving the network leave untagged.
    let program = fdd.map_leaves(program, &mut |s: &Seq| {
        let mut out: Seq = s
            .iter()
            .filter(|(f, _)| *f != PC && *f != HField::VlanVid)
            .copied()
            .collect();
        match s.iter().find(|(f, _)| *f == PC) {
            Some((_, id)) => out.push((HField::VlanVid, tag(*id))),
            None => {
                out.push((HField::VlanVid, 0));
            }
        }
        out.sort_unstable();
        out
    });
    // An untagged output on a link's source port ended the program inside the
    // network (NetKAT's semantics delivers nothing there); sent, it would cross
    // the wire and enter the network again at the far switch.
    let mut link_sources = DROP;
    for k in &b.links {
        let at = location_test(fdd, k.s1, k.p1);
        link_sources = fdd.union(link_sources, at);
    }
    let onto_a_link = fdd.prod(untagged, link_sources);
    let not_onto_a_link = fdd.negate(onto_a_link);
    let sources: BTreeSet<(u64, u64)> = b.links.iter().map(|k| (k.s1, k.p1)).collect();
    let mut memo = HashMap::default();
    Ok(drop_onto_links(
        fdd,
        program,
        &sources,
        not_onto_a_link,
        (None, None),
        &mut memo,
    ))
}

/// The switch and port a path through the diagram has tested, when it has.
type KnownAt = (Option<u64>, Option<u64>);

/// `t; not_onto_a_link`, computed where the path or the output says the
/// location (most of the diagram) by dropping the outputs, and by `seq` only at
/// leaves whose untagged outputs leave it unknown.
fn drop_onto_links(
    fdd: &mut Fdd,
    t: NodeId,
    sources: &BTreeSet<(u64, u64)>,
    not_onto_a_link: NodeId,
    at: KnownAt,
    memo: &mut HashMap<(NodeId, KnownAt), NodeId>,
) -> NodeId {
    crate::stack::deep(|| {
        if let Some(r) = memo.get(&(t, at)) {
            return *r;
        }
        let r = match fdd.node(t) {
            Node::Leaf(a) => {
                let value = |s: &Seq, f: HField| s.iter().find(|(g, _)| *g == f).map(|(_, v)| *v);
                let mut kept = Vec::new();
                let mut unknown = Vec::new();
                for s in fdd.actions(a) {
                    if value(s, HField::VlanVid) != Some(0) {
                        kept.push(s.clone());
                        continue;
                    }
                    let switch = value(s, HField::Switch).or(at.0);
                    let port = value(s, HField::Port).or(at.1);
                    match (switch, port) {
                        (Some(sw), Some(p)) if sources.contains(&(sw, p)) => {}
                        (Some(_), Some(_)) => kept.push(s.clone()),
                        _ => unknown.push(s.clone()),
                    }
                }
                let kept = fdd.leaf(kept);
                if unknown.is_empty() {
                    kept
                } else {
                    let unknown = fdd.leaf(unknown);
                    let checked = fdd.seq(unknown, not_onto_a_link);
                    fdd.union(kept, checked)
                }
            }
            Node::Branch { test, hi, lo } => {
                let mut at_hi = at;
                if test.len == test.field.bits() {
                    match test.field {
                        HField::Switch => at_hi.0 = Some(test.value),
                        HField::Port => at_hi.1 = Some(test.value),
                        _ => {}
                    }
                }
                let h = drop_onto_links(fdd, hi, sources, not_onto_a_link, at_hi, memo);
                let l = drop_onto_links(fdd, lo, sources, not_onto_a_link, at, memo);
                copies::join(fdd, test, h, l)
            }
        };
        memo.insert((t, at), r);
        r
    })
}

/// `filter switch = s and port = p`.
fn location_test(fdd: &mut Fdd, s: u64, p: u64) -> NodeId {
    let a = fdd.atom(Pattern::exact(HField::Switch, s));
    let b = fdd.atom(Pattern::exact(HField::Port, p));
    fdd.prod(a, b)
}

fn tag(state: u64) -> u64 {
    u64::from(VLAN_PRESENT) | (state + 1)
}

/// Every switch and every port value `pol` mentions (tests, assignments, links).
fn locations(pol: &CPol) -> (Vec<u64>, Vec<u64>) {
    fn pred(a: &CPred, out: &mut (BTreeSet<u64>, BTreeSet<u64>)) {
        crate::stack::deep(|| match a {
            CPred::True | CPred::False => {}
            CPred::Test(t) => match t.field {
                HField::Switch => {
                    out.0.insert(t.value);
                }
                HField::Port => {
                    out.1.insert(t.value);
                }
                _ => {}
            },
            CPred::Not(x) => pred(x, out),
            CPred::And(x, y) | CPred::Or(x, y) => {
                pred(x, out);
                pred(y, out);
            }
        })
    }
    fn walk(p: &CPol, out: &mut (BTreeSet<u64>, BTreeSet<u64>)) {
        crate::stack::deep(|| match p {
            CPol::Filter(a) => pred(a, out),
            CPol::Mod(HField::Switch, v) => {
                out.0.insert(*v);
            }
            CPol::Mod(HField::Port, v) => {
                out.1.insert(*v);
            }
            CPol::Mod(..) | CPol::Dup => {}
            CPol::Link { s1, p1, s2, p2, .. } => {
                out.0.extend([*s1, *s2]);
                out.1.extend([*p1, *p2]);
            }
            CPol::Union(x, y) | CPol::Seq(x, y) => {
                walk(x, out);
                walk(y, out);
            }
            CPol::Star(x) | CPol::Let { body: x, .. } => walk(x, out),
        })
    }
    let mut out = (BTreeSet::new(), BTreeSet::new());
    walk(pol, &mut out);
    (out.0.into_iter().collect(), out.1.into_iter().collect())
}

/// The physical links a program names, as `(s1, p1, s2, p2)`.
pub fn links(pol: &CPol) -> Vec<(u64, u64, u64, u64)> {
    let mut out = Vec::new();
    fn walk(p: &CPol, out: &mut Vec<(u64, u64, u64, u64)>) {
        crate::stack::deep(|| match p {
            CPol::Link { s1, p1, s2, p2, .. } => out.push((*s1, *p1, *s2, *p2)),
            CPol::Union(x, y) | CPol::Seq(x, y) => {
                walk(x, out);
                walk(y, out);
            }
            CPol::Star(x) | CPol::Let { body: x, .. } => walk(x, out),
            CPol::Filter(_) | CPol::Mod(..) | CPol::Dup => {}
        })
    }
    walk(pol, &mut out);
    out.sort_unstable();
    out.dedup();
    out
}
