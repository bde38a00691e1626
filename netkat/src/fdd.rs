//! Forwarding decision diagrams (Smolka et al., "A Fast Compiler for NetKAT",
//! ICFP'15): hash-consed, ordered, reduced decision diagrams whose inner nodes test
//! one field against a value (or an IPv4 prefix) and whose leaves are sets of
//! modification sequences.
//!
//! This module owns the FDD store ([`Fdd`]) and the algebra on it: union, product
//! (for predicates and for sequencing with constant right-hand sides), sequential
//! composition (restricting the right operand by each left leaf's assignments),
//! Kleene star (fixpoint), negation, and the compilation of the core calculus
//! ([`super::ir::CPol`]) into an FDD, including the scoping of meta fields. Tests
//! are ordered by field (the order of [`HField`]), then more specific prefix first,
//! then by value, so that under a true test every later test of the same field is
//! decided. It never emits flow tables (that is [`super::local`]) and never sees
//! links (the [`super::global`] compiler removes them first).

use super::ir::{alias_test, operands, CInit, CPol, CPred, HField, Pattern};
use rustc_hash::{FxHashMap as HashMap, FxHashSet};

/// A node of the store.
pub type NodeId = u32;

/// A sequence of assignments, sorted by field, one value per field.
pub type Seq = Vec<(HField, u64)>;

/// A leaf: a set of sequences (sorted, no duplicates). Empty is `drop`; the set of
/// the empty sequence is `id`.
pub type ActionSet = Vec<Seq>;

/// The `drop` leaf.
pub const DROP: NodeId = 0;
/// The `id` leaf.
pub const ID: NodeId = 1;

/// A node: a leaf or a test.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Node {
    /// Actions (an index into the action store).
    Leaf(u32),
    /// `if test then hi else lo`.
    Branch {
        /// The test.
        test: Pattern,
        /// Where packets satisfying the test go.
        hi: NodeId,
        /// Where the others go.
        lo: NodeId,
    },
}

/// Why a policy cannot become an FDD.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FddError {
    /// Links need the global compiler.
    #[error("links (`s1@p1 => s2@p2`) need the global compiler")]
    Link,
    /// A star did not reach its fixpoint.
    #[error("a star did not converge after {0} iterations")]
    Diverges(usize),
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Op {
    Sum,
    Prod,
}

/// The store of FDD nodes and leaves, with operation caches.
#[derive(Debug, Default)]
pub struct Fdd {
    nodes: Vec<Node>,
    unique: HashMap<Node, NodeId>,
    acts: Vec<ActionSet>,
    act_ids: HashMap<ActionSet, u32>,
    apply_cache: HashMap<(Op, NodeId, NodeId), NodeId>,
    seq_cache: HashMap<(NodeId, NodeId), NodeId>,
    restrict_cache: HashMap<(NodeId, u32), NodeId>,
    neg_cache: HashMap<NodeId, NodeId>,
    /// For a node testing `f` with prefix length `l`: the first node down its
    /// `lo` chain that does not (see [`Fdd::past_run`]).
    run_end: HashMap<NodeId, NodeId>,
}

/// Most iterations a star may take.
pub const STAR_LIMIT: usize = 10_000;

fn merge(a: &Seq, b: &Seq) -> Seq {
    // Sequential composition of assignments: later ones win.
    let mut out: Seq = a
        .iter()
        .filter(|(f, _)| !b.iter().any(|(g, _)| g == f))
        .copied()
        .collect();
    out.extend_from_slice(b);
    out.sort_unstable();
    out
}

fn order(n: Option<Pattern>) -> Option<(HField, std::cmp::Reverse<u8>, u64)> {
    n.map(|p| p.order_key())
}

/// `a < b` in the test order, where `None` (a leaf) is greater than every test.
fn before(a: &Pattern, b: Option<Pattern>) -> bool {
    match order(b) {
        None => true,
        Some(k) => a.order_key() < k,
    }
}

impl Fdd {
    /// An empty store holding the `drop` and `id` leaves.
    pub fn new() -> Fdd {
        let mut f = Fdd::default();
        let d = f.leaf(Vec::new());
        let i = f.leaf(vec![Vec::new()]);
        debug_assert!(d == DROP && i == ID);
        f
    }

    /// Number of nodes in the store.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when only the two constant leaves exist.
    pub fn is_empty(&self) -> bool {
        self.nodes.len() <= 2
    }

    /// The node behind an id.
    pub fn node(&self, n: NodeId) -> Node {
        self.nodes[n as usize]
    }

    /// The actions of a leaf index.
    pub fn actions(&self, a: u32) -> &ActionSet {
        &self.acts[a as usize]
    }

    fn intern(&mut self, node: Node) -> NodeId {
        if let Some(id) = self.unique.get(&node) {
            return *id;
        }
        let id = NodeId::try_from(self.nodes.len()).unwrap_or(NodeId::MAX);
        self.nodes.push(node);
        self.unique.insert(node, id);
        id
    }

    /// The leaf with these actions.
    pub fn leaf(&mut self, mut acts: ActionSet) -> NodeId {
        acts.sort_unstable();
        acts.dedup();
        let a = match self.act_ids.get(&acts) {
            Some(a) => *a,
            None => {
                let a = u32::try_from(self.acts.len()).unwrap_or(u32::MAX);
                self.acts.push(acts.clone());
                self.act_ids.insert(acts, a);
                a
            }
        };
        self.intern(Node::Leaf(a))
    }

    /// A test node; the caller guarantees the order (`test` before both children).
    pub fn branch(&mut self, test: Pattern, hi: NodeId, lo: NodeId) -> NodeId {
        if hi == lo {
            return hi;
        }
        self.intern(Node::Branch { test, hi, lo })
    }

    fn top(&self, n: NodeId) -> Option<Pattern> {
        match self.node(n) {
            Node::Leaf(_) => None,
            Node::Branch { test, .. } => Some(test),
        }
    }

    /// The predicate `test` as an FDD.
    pub fn atom(&mut self, test: Pattern) -> NodeId {
        if test.len == 0 {
            return ID;
        }
        self.branch(test, ID, DROP)
    }

    /// A single assignment.
    pub fn modify(&mut self, f: HField, v: u64) -> NodeId {
        self.leaf(vec![vec![(f, v)]])
    }

    /// Union (`+`).
    pub fn union(&mut self, a: NodeId, b: NodeId) -> NodeId {
        self.apply(Op::Sum, a, b)
    }

    /// Pointwise product: conjunction of predicates, and sequencing when every leaf
    /// of `a` is a filter or `b` is a leaf.
    pub fn prod(&mut self, a: NodeId, b: NodeId) -> NodeId {
        self.apply(Op::Prod, a, b)
    }

    fn leaf_op(&mut self, op: Op, x: u32, y: u32) -> NodeId {
        let (a, b) = (&self.acts[x as usize], &self.acts[y as usize]);
        let out: ActionSet = match op {
            Op::Sum => a.iter().chain(b.iter()).cloned().collect(),
            Op::Prod => a
                .iter()
                .flat_map(|s| b.iter().map(move |t| merge(s, t)))
                .collect(),
        };
        self.leaf(out)
    }

    fn apply(&mut self, op: Op, a: NodeId, b: NodeId) -> NodeId {
        crate::stack::deep(|| {
            match op {
                Op::Sum => {
                    if a == DROP || a == b {
                        return b;
                    }
                    if b == DROP {
                        return a;
                    }
                }
                Op::Prod => {
                    if a == DROP || b == DROP {
                        return DROP;
                    }
                    if a == ID {
                        return b;
                    }
                    if b == ID {
                        return a;
                    }
                }
            }
            let key = if op == Op::Sum && b < a {
                (op, b, a)
            } else {
                (op, a, b)
            };
            if let Some(r) = self.apply_cache.get(&key) {
                return *r;
            }
            let r = match (self.node(a), self.node(b)) {
                (Node::Leaf(x), Node::Leaf(y)) => self.leaf_op(op, x, y),
                _ => {
                    let (ta, tb) = (self.top(a), self.top(b));
                    let v = match (ta, tb) {
                        (Some(x), Some(y)) => {
                            if x.order_key() <= y.order_key() {
                                x
                            } else {
                                y
                            }
                        }
                        (Some(x), None) | (None, Some(x)) => x,
                        (None, None) => unreachable_leafs(),
                    };
                    let (ah, al) = self.split(a, v);
                    let (bh, bl) = self.split(b, v);
                    let hi = self.apply(op, ah, bh);
                    let lo = self.apply(op, al, bl);
                    self.branch(v, hi, lo)
                }
            };
            self.apply_cache.insert(key, r);
            r
        })
    }

    /// The two cofactors of `x` for the test `v`, which is at or before `x`'s top.
    fn split(&mut self, x: NodeId, v: Pattern) -> (NodeId, NodeId) {
        match self.node(x) {
            Node::Branch { test, hi, lo } if test == v => (hi, lo),
            Node::Branch { test, .. } if test.field == v.field => {
                // Every test of the run starting at `x` has `v`'s length and a
                // larger value, so is disjoint from `v`: false where `v` holds.
                // Skipping the run in one step keeps the union of two long chains
                // of one field (a routing table) linear instead of quadratic.
                let from = if test.len == v.len {
                    self.past_run(x)
                } else {
                    x
                };
                let mut memo = HashMap::default();
                (self.restrict_pattern(from, v, true, &mut memo), x)
            }
            _ => (x, x),
        }
    }

    /// The first node down the `lo` chain of `x` whose test is not on `x`'s field
    /// with `x`'s prefix length (a leaf at the latest). Remembered for every node
    /// of the chain walked, so each node is walked past once.
    fn past_run(&mut self, x: NodeId) -> NodeId {
        let Node::Branch { test: first, .. } = self.node(x) else {
            return x;
        };
        let mut walked = Vec::new();
        let mut n = x;
        let end = loop {
            match self.node(n) {
                Node::Branch { test, lo, .. }
                    if test.field == first.field && test.len == first.len =>
                {
                    // Only a node of this run may answer from the cache: any other
                    // node's entry is the end of its own run, past the node itself.
                    if let Some(e) = self.run_end.get(&n) {
                        break *e;
                    }
                    walked.push(n);
                    n = lo;
                }
                _ => break n,
            }
        };
        for w in walked {
            self.run_end.insert(w, end);
        }
        end
    }

    /// `x` for packets whose `v.field` is known to satisfy `v` (`truth`) or not.
    pub fn restrict_pattern(
        &mut self,
        x: NodeId,
        v: Pattern,
        truth: bool,
        memo: &mut HashMap<NodeId, NodeId>,
    ) -> NodeId {
        crate::stack::deep(|| {
            let Node::Branch { test, hi, lo } = self.node(x) else {
                return x;
            };
            if test.field > v.field {
                return x;
            }
            if let Some(r) = memo.get(&x) {
                return *r;
            }
            let r = if test.field != v.field {
                let h = self.restrict_pattern(hi, v, truth, memo);
                let l = self.restrict_pattern(lo, v, truth, memo);
                self.branch(test, h, l)
            } else if truth && test.contains(&v) {
                self.restrict_pattern(hi, v, truth, memo)
            } else if (truth && test.disjoint(&v)) || (!truth && v.contains(&test)) {
                self.restrict_pattern(lo, v, truth, memo)
            } else {
                let h = self.restrict_pattern(hi, v, truth, memo);
                let l = self.restrict_pattern(lo, v, truth, memo);
                self.branch(test, h, l)
            };
            memo.insert(x, r);
            r
        })
    }

    /// `x` for packets whose fields are known to have the values of `seq` (every
    /// test of an assigned field is decided).
    pub fn restrict_seq(&mut self, x: NodeId, seq: &Seq) -> NodeId {
        if seq.is_empty() {
            return x;
        }
        let key_leaf = self.leaf(vec![seq.clone()]);
        let Node::Leaf(a) = self.node(key_leaf) else {
            return x;
        };
        self.restrict_seq_rec(x, seq, a)
    }

    fn restrict_seq_rec(&mut self, x: NodeId, seq: &Seq, a: u32) -> NodeId {
        crate::stack::deep(|| {
            let Node::Branch { test, hi, lo } = self.node(x) else {
                return x;
            };
            // Below a test, only later fields are tested (the variable order):
            // past every field of `seq`, nothing is decided (a switch's routing
            // table under the union over switches is returned as it is).
            if seq.iter().all(|(f, _)| *f < test.field) {
                return x;
            }
            if let Some(r) = self.restrict_cache.get(&(x, a)) {
                return *r;
            }
            let r = match seq.iter().find(|(f, _)| *f == test.field) {
                Some((_, v)) => {
                    let next = if test.holds(*v) { hi } else { lo };
                    self.restrict_seq_rec(next, seq, a)
                }
                None => {
                    let h = self.restrict_seq_rec(hi, seq, a);
                    let l = self.restrict_seq_rec(lo, seq, a);
                    self.branch(test, h, l)
                }
            };
            self.restrict_cache.insert((x, a), r);
            r
        })
    }

    /// `if test then hi else lo`, for children in any order.
    pub fn ite(&mut self, test: Pattern, hi: NodeId, lo: NodeId) -> NodeId {
        if hi == lo {
            return hi;
        }
        if test.len == 0 {
            return hi;
        }
        let (th, tl) = (self.top(hi), self.top(lo));
        if before(&test, th) && before(&test, tl) {
            let mut memo = HashMap::default();
            let h = self.restrict_pattern(hi, test, true, &mut memo);
            return self.branch(test, h, lo);
        }
        let yes = self.atom(test);
        let no = self.branch(test, DROP, ID);
        let a = self.prod(yes, hi);
        let b = self.prod(no, lo);
        self.union(a, b)
    }

    /// Sequential composition `t ; u`.
    pub fn seq(&mut self, t: NodeId, u: NodeId) -> NodeId {
        crate::stack::deep(|| {
            if t == DROP || u == DROP {
                return DROP;
            }
            if t == ID {
                return u;
            }
            if matches!(self.node(u), Node::Leaf(_)) {
                return self.prod(t, u);
            }
            if let Some(r) = self.seq_cache.get(&(t, u)) {
                return *r;
            }
            let r = match self.node(t) {
                Node::Leaf(a) => {
                    let seqs = self.acts[a as usize].clone();
                    let mut acc = DROP;
                    for s in seqs {
                        let restricted = self.restrict_seq(u, &s);
                        let l = self.leaf(vec![s]);
                        let part = self.prod(l, restricted);
                        acc = self.union(acc, part);
                    }
                    acc
                }
                Node::Branch { test, hi, lo } => {
                    let h = self.seq(hi, u);
                    let l = self.seq(lo, u);
                    self.ite(test, h, l)
                }
            };
            self.seq_cache.insert((t, u), r);
            r
        })
    }

    /// Combines many FDDs with a commutative, associative operation, pairwise.
    fn balanced(&mut self, mut xs: Vec<NodeId>, op: Op) -> NodeId {
        if xs.is_empty() {
            return if op == Op::Sum { DROP } else { ID };
        }
        if op == Op::Sum {
            if let Some(chain) = self.disjoint_union(&xs) {
                return chain;
            }
        }
        while xs.len() > 1 {
            let mut next = Vec::with_capacity(xs.len() / 2 + 1);
            for pair in xs.chunks(2) {
                next.push(match pair {
                    [a, b] => self.apply(op, *a, *b),
                    [a] => *a,
                    _ => DROP,
                });
            }
            xs = next;
        }
        xs[0]
    }

    /// The union of FDDs that each test one field for one exact value, distinct
    /// values, and drop the rest (`filter f = v1; p1 + filter f = v2; p2 + …`: a
    /// routing table, or the switches of a network): the chain the pairwise union
    /// builds (tests in value order, each `lo` the next test), made in one sorted
    /// pass instead of n log n cached steps. `None` when `xs` is not such a union.
    fn disjoint_union(&mut self, xs: &[NodeId]) -> Option<NodeId> {
        let mut arms = Vec::with_capacity(xs.len());
        for &x in xs {
            let Node::Branch { test, hi, lo: DROP } = self.node(x) else {
                return None;
            };
            let same_field = arms
                .first()
                .is_none_or(|(first, _): &(Pattern, NodeId)| first.field == test.field);
            if test.len != test.field.bits() || !same_field {
                return None;
            }
            arms.push((test, hi));
        }
        arms.sort_unstable_by_key(|(test, _)| test.value);
        if arms.windows(2).any(|w| w[0].0.value == w[1].0.value) {
            return None;
        }
        Some(
            arms.into_iter()
                .rev()
                .fold(DROP, |lo, (test, hi)| self.branch(test, hi, lo)),
        )
    }

    /// Kleene star `t*`.
    pub fn star(&mut self, t: NodeId) -> Result<NodeId, FddError> {
        let mut acc = ID;
        for _ in 0..STAR_LIMIT {
            let step = self.seq(acc, t);
            let next = self.union(ID, step);
            if next == acc {
                return Ok(acc);
            }
            acc = next;
        }
        Err(FddError::Diverges(STAR_LIMIT))
    }

    /// Negation of a predicate FDD (non-drop leaves become drop, drop becomes id).
    pub fn negate(&mut self, t: NodeId) -> NodeId {
        crate::stack::deep(|| {
            if let Some(r) = self.neg_cache.get(&t) {
                return *r;
            }
            let r = match self.node(t) {
                Node::Leaf(_) => {
                    if t == DROP {
                        ID
                    } else {
                        DROP
                    }
                }
                Node::Branch { test, hi, lo } => {
                    let h = self.negate(hi);
                    let l = self.negate(lo);
                    self.branch(test, h, l)
                }
            };
            self.neg_cache.insert(t, r);
            r
        })
    }

    /// The FDD of a core predicate.
    pub fn pred(&mut self, a: &CPred) -> NodeId {
        crate::stack::deep(|| match a {
            CPred::True => ID,
            CPred::False => DROP,
            CPred::Test(p) => self.atom(*p),
            CPred::Not(x) => {
                let x = self.pred(x);
                self.negate(x)
            }
            CPred::And(x, y) => {
                let x = self.pred(x);
                let y = self.pred(y);
                self.prod(x, y)
            }
            CPred::Or(..) => {
                let disjuncts = operands(a, |q| match q {
                    CPred::Or(x, y) => Some((&**x, &**y)),
                    _ => None,
                });
                let parts = disjuncts.into_iter().map(|q| self.pred(q)).collect();
                self.balanced(parts, Op::Sum)
            }
        })
    }

    /// Rebuilds `t` with every leaf's sequences passed through `f`.
    pub fn map_leaves(&mut self, t: NodeId, f: &mut dyn FnMut(&Seq) -> Seq) -> NodeId {
        let mut memo = HashMap::default();
        self.map_leaves_rec(t, f, &mut memo)
    }

    fn map_leaves_rec(
        &mut self,
        t: NodeId,
        f: &mut dyn FnMut(&Seq) -> Seq,
        memo: &mut HashMap<NodeId, NodeId>,
    ) -> NodeId {
        crate::stack::deep(|| {
            if let Some(r) = memo.get(&t) {
                return *r;
            }
            let r = match self.node(t) {
                Node::Leaf(a) => {
                    let seqs: ActionSet = self.acts[a as usize].iter().map(&mut *f).collect();
                    self.leaf(seqs)
                }
                Node::Branch { test, hi, lo } => {
                    let h = self.map_leaves_rec(hi, f, memo);
                    let l = self.map_leaves_rec(lo, f, memo);
                    self.branch(test, h, l)
                }
            };
            memo.insert(t, r);
            r
        })
    }

    /// Replaces every test on `field` by the FDD `g(test)`.
    fn replace_tests(
        &mut self,
        t: NodeId,
        field: HField,
        g: &mut dyn FnMut(&mut Fdd, Pattern) -> NodeId,
        memo: &mut HashMap<NodeId, NodeId>,
    ) -> NodeId {
        crate::stack::deep(|| {
            if let Some(r) = memo.get(&t) {
                return *r;
            }
            let r = match self.node(t) {
                Node::Leaf(_) => t,
                Node::Branch { test, hi, lo } => {
                    let h = self.replace_tests(hi, field, g, memo);
                    let l = self.replace_tests(lo, field, g, memo);
                    if test.field == field {
                        let c = g(self, test);
                        let nc = self.negate(c);
                        let a = self.prod(c, h);
                        let b = self.prod(nc, l);
                        self.union(a, b)
                    } else {
                        self.ite(test, h, l)
                    }
                }
            };
            memo.insert(t, r);
            r
        })
    }

    /// Compiles a link-free core policy.
    pub fn compile(&mut self, p: &CPol) -> Result<NodeId, FddError> {
        crate::stack::deep(|| {
            Ok(match p {
                CPol::Filter(a) => self.pred(a),
                CPol::Mod(f, v) => self.modify(*f, *v),
                CPol::Union(..) => {
                    // Long `+` chains are unioned pairwise (balanced), which keeps the
                    // work near n log n instead of n² for a left-deep chain.
                    let mut parts = Vec::new();
                    for q in p.union_branches() {
                        parts.push(self.compile(q)?);
                    }
                    self.balanced(parts, Op::Sum)
                }
                CPol::Seq(x, y) => {
                    let x = self.compile(x)?;
                    if x == DROP {
                        return Ok(DROP);
                    }
                    let y = self.compile(y)?;
                    self.seq(x, y)
                }
                CPol::Star(x) => {
                    let x = self.compile(x)?;
                    self.star(x)?
                }
                CPol::Dup => ID,
                CPol::Link { .. } => return Err(FddError::Link),
                CPol::Let { meta, init, body } => {
                    let body = self.compile(body)?;
                    self.close_meta(body, *meta, init)
                }
            })
        })
    }

    /// Ends the scope of a meta field: its tests refer to the value it had on entry
    /// (the constant, or the aliased header), and its assignments are forgotten.
    pub fn close_meta(&mut self, body: NodeId, meta: u16, init: &CInit) -> NodeId {
        let field = HField::Meta(meta);
        let t = match init {
            CInit::Const(c) => self.restrict_seq(body, &vec![(field, *c)]),
            CInit::Alias(h) => {
                let h = h.clone();
                let mut memo = HashMap::default();
                self.replace_tests(
                    body,
                    field,
                    &mut |fdd: &mut Fdd, test: Pattern| {
                        let a = alias_test(&h, test.value);
                        fdd.pred(&a)
                    },
                    &mut memo,
                )
            }
        };
        self.map_leaves(t, &mut |s: &Seq| {
            s.iter().filter(|(f, _)| *f != field).copied().collect()
        })
    }

    /// Every node reachable from `t`, each once.
    pub fn reachable(&self, t: NodeId) -> Vec<NodeId> {
        let mut seen = FxHashSet::default();
        let mut out = Vec::new();
        let mut stack = vec![t];
        while let Some(n) = stack.pop() {
            if seen.insert(n) {
                out.push(n);
                if let Node::Branch { hi, lo, .. } = self.node(n) {
                    stack.push(hi);
                    stack.push(lo);
                }
            }
        }
        out
    }

    /// The values `field` is tested against anywhere under `t`.
    pub fn tested_values(&self, t: NodeId, field: HField) -> Vec<u64> {
        let mut out: Vec<u64> = self
            .reachable(t)
            .into_iter()
            .filter_map(|n| match self.node(n) {
                Node::Branch { test, .. } if test.field == field => Some(test.value),
                _ => None,
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Number of distinct nodes reachable from `t`.
    pub fn size(&self, t: NodeId) -> usize {
        self.reachable(t).len()
    }

    /// Evaluates `t` on concrete field values: the leaf's action set.
    pub fn eval(&self, t: NodeId, value: &dyn Fn(HField) -> u64) -> &ActionSet {
        let mut n = t;
        loop {
            match self.node(n) {
                Node::Leaf(a) => return &self.acts[a as usize],
                Node::Branch { test, hi, lo } => {
                    n = if test.holds(value(test.field)) {
                        hi
                    } else {
                        lo
                    };
                }
            }
        }
    }
}

fn unreachable_leafs() -> Pattern {
    // Two leaves are handled before a test is chosen; keep a harmless value.
    Pattern::prefix(HField::Switch, 0, 0)
}
