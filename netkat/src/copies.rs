//! One delivery per packet when copies of it travel different paths: the global
//! compiler's forks ([`Forks`]) decide, at compile time, which copy delivers a
//! packet that several copies would deliver.
//!
//! Every copy on a wire carries the headers the packet entered with (its changes
//! travel in the tag, see [`super::global`]), so what a copy will deliver, the
//! *future* of its tag, is a function of those headers alone, computed here as an
//! FDD whose outputs name their location explicitly. Where a packet forks (its
//! entry switch, or a switch a tagged copy reaches), the outputs it delivers
//! there come first, then the copies in wire order: each copy's tag carries the
//! outputs its elders (and its parent's elders) will deliver, and it drops them
//! where it would deliver them. NetKAT's semantics delivers a set of packets; so
//! does the network: each packet by the first copy whose future holds it. A tag
//! whose future meets none of those outputs carries nothing extra, so programs
//! whose copies never meet get the tags they always had.
//!
//! This module owns the subset construction over FDD leaves and the futures; it
//! never reads the program's syntax (that is [`super::global`]).

use super::fdd::{Fdd, FddError, Node, NodeId, Seq, DROP, ID};
use super::ir::{CPol, CPred, HField, Pattern};
use rustc_hash::FxHashMap as HashMap;
use std::collections::{BTreeMap, BTreeSet};

/// The pseudo-field carrying the automaton state in leaves during construction.
pub(crate) const PC: HField = HField::Meta(u16::MAX);

/// A link occurrence's endpoints: `(s1, p1, s2, p2)`.
pub(crate) type Endpoints = (u64, u64, u64, u64);

/// An automaton state: the links a packet is crossing, each with the header
/// changes its copy has pending, and the outputs (an FDD over the headers on the
/// wire, locations explicit) this copy must not deliver because an elder copy
/// does.
pub(crate) type State = (BTreeSet<(u64, Seq)>, NodeId);

/// Why the futures of copies cannot be computed.
#[derive(Debug)]
pub(crate) enum CopiesError {
    /// They did not settle: the program's links loop.
    Loop,
    /// A pending change failed to compile.
    Fdd(FddError),
}

impl From<FddError> for CopiesError {
    fn from(e: FddError) -> CopiesError {
        CopiesError::Fdd(e)
    }
}

/// What the program does after each link occurrence, to compute futures.
pub(crate) struct Program {
    /// The link occurrences, by id.
    pub(crate) links: Vec<Endpoints>,
    /// Code after link `l` that ends the program.
    pub(crate) last: BTreeMap<usize, NodeId>,
    /// Code after link `l1` that leads to link `l2`.
    pub(crate) follow: BTreeMap<(usize, usize), NodeId>,
    /// Where the links start: `(s1, p1)`.
    pub(crate) link_sources: BTreeSet<(u64, u64)>,
    /// Every switch and port value the program mentions.
    pub(crate) switches: Vec<u64>,
    pub(crate) ports: Vec<u64>,
}

/// What a path through the FDD knows about the packet's location.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Known {
    Unknown,
    Is(u64),
    /// None of the values the program mentions: no future output is there.
    Other,
}

/// The subset construction with its states, and the futures it needs.
pub(crate) struct Forks {
    prog: Program,
    /// `post[l]`: the outputs of a copy that has just crossed link `l`.
    post: Option<Vec<NodeId>>,
    pub(crate) states: Vec<State>,
    ids: HashMap<State, u64>,
    pub(crate) todo: Vec<u64>,
}

/// Iterations allowed for the futures of looping links to settle.
const FUTURE_LIMIT: usize = 256;

impl Forks {
    pub(crate) fn new(prog: Program) -> Forks {
        Forks {
            prog,
            post: None,
            states: Vec::new(),
            ids: HashMap::default(),
            todo: Vec::new(),
        }
    }

    /// `t`'s leaves with every copy about to cross a link grouped by output port
    /// into one tagged copy, and outputs `excluded` holds dropped.
    pub(crate) fn fork(
        &mut self,
        fdd: &mut Fdd,
        t: NodeId,
        excluded: NodeId,
    ) -> Result<NodeId, CopiesError> {
        let mut memo = HashMap::default();
        self.walk(
            fdd,
            t,
            excluded,
            (Known::Unknown, Known::Unknown),
            &mut memo,
        )
    }

    fn walk(
        &mut self,
        fdd: &mut Fdd,
        t: NodeId,
        excluded: NodeId,
        at: (Known, Known),
        memo: &mut HashMap<(NodeId, (Known, Known)), NodeId>,
    ) -> Result<NodeId, CopiesError> {
        crate::stack::deep(|| {
            if let Some(r) = memo.get(&(t, at)) {
                return Ok(*r);
            }
            let r = match fdd.node(t) {
                Node::Leaf(a) => {
                    let seqs = fdd.actions(a).clone();
                    self.leaf(fdd, &seqs, excluded, at)?
                }
                Node::Branch { test, hi, lo } => {
                    let mut at_hi = at;
                    if test.len == test.field.bits() {
                        match test.field {
                            HField::Switch => at_hi.0 = Known::Is(test.value),
                            HField::Port => at_hi.1 = Known::Is(test.value),
                            _ => {}
                        }
                    }
                    let h = self.walk(fdd, hi, excluded, at_hi, memo)?;
                    let l = self.walk(fdd, lo, excluded, at, memo)?;
                    join(fdd, test, h, l)
                }
            };
            memo.insert((t, at), r);
            Ok(r)
        })
    }

    fn leaf(
        &mut self,
        fdd: &mut Fdd,
        seqs: &[Seq],
        excluded: NodeId,
        at: (Known, Known),
    ) -> Result<NodeId, CopiesError> {
        let mut egress: Vec<Seq> = Vec::new();
        let mut groups: BTreeMap<Seq, BTreeSet<(u64, Seq)>> = BTreeMap::new();
        for s in seqs {
            match s.iter().find(|(f, _)| *f == PC) {
                None => egress.push(s.clone()),
                Some((_, pc)) => {
                    let (moves, pending): (Seq, Seq) = s
                        .iter()
                        .filter(|(f, _)| *f != PC)
                        .partition(|(f, _)| matches!(f, HField::Switch | HField::Port));
                    // Only the output port matters on the wire: the link sets
                    // the location the copy arrives at.
                    let wire: Seq = moves
                        .into_iter()
                        .filter(|(f, _)| *f == HField::Port)
                        .collect();
                    groups.entry(wire).or_default().insert((*pc, pending));
                }
            }
        }
        let located = |s: &Seq| -> Option<Seq> {
            let mut out = s.clone();
            for (field, known) in [(HField::Switch, at.0), (HField::Port, at.1)] {
                if !s.iter().any(|(f, _)| *f == field) {
                    match known {
                        Known::Is(v) => out.push((field, v)),
                        Known::Unknown | Known::Other => return None,
                    }
                }
            }
            out.sort_unstable();
            Some(out)
        };
        // An output on a link's source port has ended the program where a link
        // starts: it is no delivery (as in the evaluator's terms), so it neither
        // yields to nor excludes a copy.
        let (ends, egress): (Vec<Seq>, Vec<Seq>) = if groups.is_empty() && excluded == DROP {
            (Vec::new(), egress)
        } else {
            egress.into_iter().partition(|s| {
                located(s)
                    .and_then(|s| location(&s))
                    .is_some_and(|l| self.prog.link_sources.contains(&l))
            })
        };
        let copies_may_meet =
            excluded != DROP || groups.len() > 1 || (!egress.is_empty() && !groups.is_empty());
        if !copies_may_meet {
            let mut out = ends;
            out.extend(egress);
            return Ok(self.plain(fdd, out, groups, &[]));
        }
        let mut futures = Vec::with_capacity(groups.len());
        for set in groups.values() {
            futures.push(self.future(fdd, set)?);
        }
        // Outputs here are compared by location: where the path has not learnt
        // it, test it against the places the futures and the excluded outputs
        // name (elsewhere nothing can be the same packet).
        let mut meeting = places(fdd, excluded);
        for &f in &futures {
            meeting = match (meeting, places(fdd, f)) {
                (Some(mut a), Some(b)) => {
                    a.extend(b);
                    Some(a)
                }
                _ => None,
            };
        }
        let lacks = |f: HField| egress.iter().any(|s| !s.iter().any(|(g, _)| *g == f));
        for (field, known) in [(HField::Switch, at.0), (HField::Port, at.1)] {
            if known == Known::Unknown && lacks(field) {
                let values: BTreeSet<u64> = match (&meeting, field) {
                    (None, HField::Switch) => self.prog.switches.iter().copied().collect(),
                    (None, _) => self.prog.ports.iter().copied().collect(),
                    (Some(p), HField::Switch) => p.iter().map(|l| l.0).collect(),
                    (Some(p), _) => p.iter().map(|l| l.1).collect(),
                };
                let split = |k: Known| match field {
                    HField::Switch => (k, at.1),
                    _ => (at.0, k),
                };
                let mut r = self.leaf(fdd, seqs, excluded, split(Known::Other))?;
                for v in values.into_iter().rev() {
                    let hi = self.leaf(fdd, seqs, excluded, split(Known::Is(v)))?;
                    r = fdd.ite(Pattern::exact(field, v), hi, r);
                }
                return Ok(r);
            }
        }
        // The outputs delivered here, each unless an elder copy delivers it.
        let mut result = DROP;
        let mut kept: Vec<Seq> = ends;
        let mut elders: Vec<Seq> = Vec::new();
        for s in &egress {
            let Some(at_s) = located(s) else {
                kept.push(s.clone());
                continue;
            };
            if excluded == DROP {
                kept.push(s.clone());
            } else {
                let taken = member(fdd, excluded, &at_s);
                let free = fdd.negate(taken);
                let out = fdd.leaf(vec![s.clone()]);
                let out = fdd.prod(free, out);
                result = fdd.union(result, out);
            }
            elders.push(at_s);
        }
        let elders = fdd.leaf(elders);
        let mut before = fdd.union(excluded, elders);
        let mut tagged: Vec<Seq> = Vec::new();
        for ((mut wire, set), future) in groups.into_iter().zip(futures) {
            let excl = narrow(fdd, before, future);
            before = fdd.union(before, future);
            wire.push((PC, self.state(set, excl)));
            wire.sort_unstable();
            tagged.push(wire);
        }
        let plain = self.plain(fdd, kept, BTreeMap::new(), &tagged);
        Ok(fdd.union(result, plain))
    }

    /// A leaf of `egress` and copies tagged with their states, nothing excluded.
    fn plain(
        &mut self,
        fdd: &mut Fdd,
        mut out: Vec<Seq>,
        groups: BTreeMap<Seq, BTreeSet<(u64, Seq)>>,
        tagged: &[Seq],
    ) -> NodeId {
        for (mut wire, set) in groups {
            wire.push((PC, self.state(set, DROP)));
            wire.sort_unstable();
            out.push(wire);
        }
        out.extend_from_slice(tagged);
        fdd.leaf(out)
    }

    fn state(&mut self, set: BTreeSet<(u64, Seq)>, excluded: NodeId) -> u64 {
        let key = (set, excluded);
        if let Some(id) = self.ids.get(&key) {
            return *id;
        }
        let id = self.states.len() as u64;
        self.states.push(key.clone());
        self.ids.insert(key, id);
        self.todo.push(id);
        id
    }

    /// What a copy tagged with `set` delivers, over the headers on its wire.
    fn future(&mut self, fdd: &mut Fdd, set: &BTreeSet<(u64, Seq)>) -> Result<NodeId, CopiesError> {
        let post = self.post(fdd)?;
        let mut out = DROP;
        for (l, pending) in set {
            let after = post
                .get(usize::try_from(*l).unwrap_or(usize::MAX))
                .copied()
                .unwrap_or(DROP);
            let changes = pending_changes(fdd, pending)?;
            let f = fdd.seq(changes, after);
            out = fdd.union(out, f);
        }
        Ok(out)
    }

    /// The outputs of a copy that has just crossed each link: the least solution
    /// of `post(l) = move(l); (last(l) + Σ follow(l, l2); at(l2); post(l2))`.
    fn post(&mut self, fdd: &mut Fdd) -> Result<Vec<NodeId>, CopiesError> {
        if let Some(p) = &self.post {
            return Ok(p.clone());
        }
        let links = self.prog.links.clone();
        // `move(l); follow(l, l2); at(l2)`, once: most pairs are `drop` (a link
        // that does not start where `l` ends), and never looked at again.
        let mut ends = Vec::with_capacity(links.len());
        let mut steps: Vec<Vec<(usize, NodeId)>> = vec![Vec::new(); links.len()];
        for (l, &(_, _, s2, p2)) in links.iter().enumerate() {
            let arrive = fdd.leaf(vec![vec![(HField::Switch, s2), (HField::Port, p2)]]);
            let last = self.prog.last.get(&l).copied().unwrap_or(DROP);
            ends.push(fdd.seq(arrive, last));
            for (&(_, l2), &d) in self.prog.follow.range((l, 0)..=(l, usize::MAX)) {
                let (s1, p1, _, _) = links[l2];
                let a = fdd.atom(Pattern::exact(HField::Switch, s1));
                let b = fdd.atom(Pattern::exact(HField::Port, p1));
                let at = fdd.prod(a, b);
                let step = fdd.seq(d, at);
                let step = fdd.seq(arrive, step);
                if step != DROP {
                    steps[l].push((l2, step));
                }
            }
        }
        let mut post = vec![DROP; links.len()];
        for _ in 0..FUTURE_LIMIT + links.len() {
            let mut next = Vec::with_capacity(links.len());
            for (l, &end) in ends.iter().enumerate() {
                let mut body = end;
                for &(l2, step) in &steps[l] {
                    let v = fdd.seq(step, post[l2]);
                    body = fdd.union(body, v);
                }
                next.push(body);
            }
            if next == post {
                self.post = Some(post.clone());
                return Ok(post);
            }
            post = next;
        }
        Err(CopiesError::Loop)
    }
}

/// The FDD of a copy's pending header changes (with their prerequisites).
pub(crate) fn pending_changes(fdd: &mut Fdd, pending: &Seq) -> Result<NodeId, CopiesError> {
    let changes = pending
        .iter()
        .fold(CPol::Filter(CPred::True), |p, &(f, v)| {
            CPol::seq(p, super::ir::assignment(f, v))
        });
    Ok(fdd.compile(&changes)?)
}

/// True when `test` comes before every test of `n` (so `n` may be its child).
fn after(fdd: &Fdd, test: &Pattern, n: NodeId) -> bool {
    match fdd.node(n) {
        Node::Leaf(_) => true,
        Node::Branch { test: t, .. } => test.order_key() < t.order_key(),
    }
}

/// The packets for which `s` (locations explicit) is one of `set`'s outputs.
fn member(fdd: &mut Fdd, set: NodeId, s: &Seq) -> NodeId {
    substitute(fdd, set, &mut |fdd: &mut Fdd, outs: &[Seq]| {
        let mut r = DROP;
        for o in outs {
            let e = same_packet(fdd, s, o);
            r = fdd.union(r, e);
        }
        r
    })
}

/// The packets that `a` and `b` change into the same packet: a field both set
/// must get one value, a field one of them sets must already have that value.
fn same_packet(fdd: &mut Fdd, a: &Seq, b: &Seq) -> NodeId {
    let value = |s: &Seq, f: HField| s.iter().find(|(g, _)| *g == f).map(|(_, v)| *v);
    let fields: BTreeSet<HField> = a.iter().chain(b).map(|(f, _)| *f).collect();
    let mut r = ID;
    for f in fields {
        let cond = match (value(a, f), value(b, f)) {
            (Some(x), Some(y)) if x == y => ID,
            (Some(_), Some(_)) => DROP,
            (Some(x), None) | (None, Some(x)) => fdd.atom(Pattern::exact(f, x)),
            (None, None) => ID,
        };
        r = fdd.prod(r, cond);
        if r == DROP {
            break;
        }
    }
    r
}

/// Where a sequence leaves the packet, when it says.
fn location(s: &Seq) -> Option<(u64, u64)> {
    let v = |f: HField| s.iter().find(|(g, _)| *g == f).map(|(_, v)| *v);
    Some((v(HField::Switch)?, v(HField::Port)?))
}

/// The locations of `t`'s outputs; `None` when one of them does not say.
fn places(fdd: &Fdd, t: NodeId) -> Option<BTreeSet<(u64, u64)>> {
    let mut out = BTreeSet::new();
    for n in fdd.reachable(t) {
        if let Node::Leaf(a) = fdd.node(n) {
            for s in fdd.actions(a) {
                out.insert(location(s)?);
            }
        }
    }
    Some(out)
}

/// `excluded` cut to the outputs at locations where `future` has outputs (the
/// rest can never be dropped by this copy): `DROP` when there are none.
fn narrow(fdd: &mut Fdd, excluded: NodeId, future: NodeId) -> NodeId {
    if excluded == DROP {
        return DROP;
    }
    let Some(places) = places(fdd, future) else {
        return excluded;
    };
    substitute(fdd, excluded, &mut |fdd: &mut Fdd, outs: &[Seq]| {
        let kept = outs
            .iter()
            .filter(|s| location(s).is_none_or(|p| places.contains(&p)))
            .cloned()
            .collect();
        fdd.leaf(kept)
    })
}

/// `t` with every leaf replaced by the diagram `f` makes of its sequences.
fn substitute(fdd: &mut Fdd, t: NodeId, f: &mut dyn FnMut(&mut Fdd, &[Seq]) -> NodeId) -> NodeId {
    fn go(
        fdd: &mut Fdd,
        t: NodeId,
        f: &mut dyn FnMut(&mut Fdd, &[Seq]) -> NodeId,
        memo: &mut HashMap<NodeId, NodeId>,
    ) -> NodeId {
        crate::stack::deep(|| {
            if let Some(r) = memo.get(&t) {
                return *r;
            }
            let r = match fdd.node(t) {
                Node::Leaf(a) => {
                    let seqs = fdd.actions(a).clone();
                    f(fdd, &seqs)
                }
                Node::Branch { test, hi, lo } => {
                    let h = go(fdd, hi, f, memo);
                    let l = go(fdd, lo, f, memo);
                    join(fdd, test, h, l)
                }
            };
            memo.insert(t, r);
            r
        })
    }
    go(fdd, t, f, &mut HashMap::default())
}

/// `if test then hi else lo`, a plain test node when the order allows it.
pub(crate) fn join(fdd: &mut Fdd, test: Pattern, hi: NodeId, lo: NodeId) -> NodeId {
    if after(fdd, &test, hi) && after(fdd, &test, lo) {
        fdd.branch(test, hi, lo)
    } else {
        fdd.ite(test, hi, lo)
    }
}
