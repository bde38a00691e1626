//! The NetKAT abstract syntax tree, as written in Frenetic's concrete syntax, with
//! source spans, and its printer.
//!
//! This module owns the shape of a parsed policy (sugar such as `if`/`while`/`let`
//! is kept, so errors can point at what the engineer wrote) and the canonical text
//! form that [`std::fmt::Display`] produces, which the parser reads back to the same
//! tree. It never gives meaning to a policy (that is [`super::ir`] and
//! [`super::semantics`]) and never reads files.

use std::fmt;

/// A byte range `start..end` of the source text.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// The span `start..end`.
    pub fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }
}

/// A header field as Frenetic spells it (plus the friendly extensions).
#[derive(Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum HeaderField {
    /// `switch`: the datapath id.
    Switch,
    /// `port`: the port a packet is at (ingress port in tests, output in assignments).
    Port,
    /// `vswitch` (Frenetic's virtual compiler only; rejected by `scc`).
    VSwitch,
    /// `vport` (Frenetic's virtual compiler only; rejected by `scc`).
    VPort,
    /// `vfabric` (Frenetic's virtual compiler only; rejected by `scc`).
    VFabric,
    /// `ethSrc`.
    EthSrc,
    /// `ethDst`.
    EthDst,
    /// `vlanId` (0xffff means "no tag", as in Frenetic).
    VlanId,
    /// `vlanPcp`.
    VlanPcp,
    /// `ethTyp` (also accepted as `ethType`).
    EthTyp,
    /// `ipProto`.
    IpProto,
    /// `ip4Src`.
    Ip4Src,
    /// `ip4Dst`.
    Ip4Dst,
    /// `tcpSrcPort`.
    TcpSrcPort,
    /// `tcpDstPort`.
    TcpDstPort,
    /// `udpSrcPort` (extension).
    UdpSrcPort,
    /// `udpDstPort` (extension).
    UdpDstPort,
    /// `ip6Src` (extension).
    Ip6Src,
    /// `ip6Dst` (extension).
    Ip6Dst,
    /// A meta field `` `name ``.
    Meta(String),
}

impl HeaderField {
    /// Every field with a keyword, in Frenetic's spelling.
    pub const KEYWORDS: [(&'static str, HeaderField); 19] = [
        ("switch", HeaderField::Switch),
        ("port", HeaderField::Port),
        ("vswitch", HeaderField::VSwitch),
        ("vport", HeaderField::VPort),
        ("vfabric", HeaderField::VFabric),
        ("ethSrc", HeaderField::EthSrc),
        ("ethDst", HeaderField::EthDst),
        ("vlanId", HeaderField::VlanId),
        ("vlanPcp", HeaderField::VlanPcp),
        ("ethTyp", HeaderField::EthTyp),
        ("ipProto", HeaderField::IpProto),
        ("ip4Src", HeaderField::Ip4Src),
        ("ip4Dst", HeaderField::Ip4Dst),
        ("tcpSrcPort", HeaderField::TcpSrcPort),
        ("tcpDstPort", HeaderField::TcpDstPort),
        ("udpSrcPort", HeaderField::UdpSrcPort),
        ("udpDstPort", HeaderField::UdpDstPort),
        ("ip6Src", HeaderField::Ip6Src),
        ("ip6Dst", HeaderField::Ip6Dst),
    ];

    /// The field's keyword (meta fields print with their backquote).
    pub fn name(&self) -> String {
        match self {
            HeaderField::Meta(m) => format!("`{m}"),
            other => HeaderField::KEYWORDS
                .iter()
                .find(|(_, f)| f == other)
                .map(|(k, _)| (*k).to_string())
                .unwrap_or_default(),
        }
    }

    /// The largest integer the field holds, when it is an integer field.
    pub fn max_int(&self) -> u64 {
        match self {
            HeaderField::Switch
            | HeaderField::VSwitch
            | HeaderField::VPort
            | HeaderField::VFabric
            | HeaderField::Ip6Src
            | HeaderField::Ip6Dst
            | HeaderField::Meta(_) => u64::MAX,
            HeaderField::Port => u64::from(u32::MAX),
            HeaderField::EthSrc | HeaderField::EthDst => (1 << 48) - 1,
            HeaderField::VlanId => 0xffff,
            HeaderField::VlanPcp => 7,
            HeaderField::EthTyp
            | HeaderField::TcpSrcPort
            | HeaderField::TcpDstPort
            | HeaderField::UdpSrcPort
            | HeaderField::UdpDstPort => 0xffff,
            HeaderField::IpProto => 0xff,
            HeaderField::Ip4Src | HeaderField::Ip4Dst => u64::from(u32::MAX),
        }
    }
}

/// A value on the right of `=` or `:=`.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Value {
    /// A decimal or `0x` hexadecimal integer.
    Int(u64),
    /// A MAC address `xx:xx:xx:xx:xx:xx` (the low 48 bits).
    Mac(u64),
    /// An IPv4 address with an optional `/prefix`.
    Ip4 {
        /// The address.
        addr: u32,
        /// The prefix length, when written.
        prefix: Option<u8>,
    },
    /// An IPv6 address with an optional `/prefix` (extension).
    Ip6 {
        /// The address (bytes, not a `u128`: a 16-byte alignment would
        /// widen every syntax node).
        addr: std::net::Ipv6Addr,
        /// The prefix length, when written.
        prefix: Option<u8>,
    },
    /// `pipe("name")`: to the controller application `name`.
    Pipe(String),
    /// `query("name")`: to the controller's counter `name`.
    Query(String),
    /// `kind:name`, e.g. `vm:web1` (extension), resolved through the inventory.
    Named {
        /// `vm` or `host`.
        kind: String,
        /// The object's name.
        name: String,
    },
}

/// `field = value` or `field := value`.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct HeaderVal {
    /// The field.
    pub field: HeaderField,
    /// The value.
    pub value: Value,
    /// Where the whole `field op value` is.
    pub span: Span,
}

/// A predicate (a test on the packet).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Pred {
    /// What kind of predicate.
    pub kind: PredKind,
    /// Where it is.
    pub span: Span,
}

/// The kinds of predicate.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum PredKind {
    /// `true`.
    True,
    /// `false`.
    False,
    /// `field = value`.
    Test(HeaderVal),
    /// `not a`.
    Not(Box<Pred>),
    /// `a and b`.
    And(Box<Pred>, Box<Pred>),
    /// `a or b`.
    Or(Box<Pred>, Box<Pred>),
}

/// How a `let`/`var` meta field starts.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum LetInit {
    /// A constant.
    Const(Value),
    /// The value a header field has when the packet enters the `let`.
    Alias(HeaderField),
}

/// A policy.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Policy {
    /// What kind of policy.
    pub kind: PolicyKind,
    /// Where it is.
    pub span: Span,
}

/// The kinds of policy.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum PolicyKind {
    /// `id`.
    Id,
    /// `drop`.
    Drop,
    /// `dup`.
    Dup,
    /// `filter a` (or a bare predicate).
    Filter(Pred),
    /// `field := value`.
    Mod(HeaderVal),
    /// `p + q`.
    Union(Box<Policy>, Box<Policy>),
    /// `p ; q`.
    Seq(Box<Policy>, Box<Policy>),
    /// `p*`.
    Star(Box<Policy>),
    /// `s1@p1 => s2@p2`.
    Link(u64, u64, u64, u64),
    /// `s1@p1 =>> s2@p2` (Frenetic's virtual links; rejected by `scc`).
    VLink(u64, u64, u64, u64),
    /// `if a then p else q`.
    If(Pred, Box<Policy>, Box<Policy>),
    /// `while a do p`.
    While(Pred, Box<Policy>),
    /// `let `x := v in p` (immutable) or `var `x := v in p` (mutable).
    Let {
        /// Name without the backquote.
        name: String,
        /// Initial value.
        init: LetInit,
        /// `var` (true) or `let` (false).
        mutable: bool,
        /// Where the name is, for errors.
        name_span: Span,
        /// The scope.
        body: Box<Policy>,
    },
}

impl Policy {
    /// A policy with a default span (for building trees in code and tests).
    pub fn new(kind: PolicyKind) -> Policy {
        Policy {
            kind,
            span: Span::default(),
        }
    }

    /// `filter a`.
    pub fn filter(a: Pred) -> Policy {
        Policy::new(PolicyKind::Filter(a))
    }

    /// `field := value`.
    pub fn assign(field: HeaderField, value: Value) -> Policy {
        Policy::new(PolicyKind::Mod(HeaderVal {
            field,
            value,
            span: Span::default(),
        }))
    }

    /// The union of `parts` as a balanced tree (`drop` when empty), so a union of
    /// a hundred thousand cases nests seventeen levels, not a hundred thousand.
    pub fn union_all(parts: Vec<Policy>) -> Policy {
        balanced(parts, Policy::new(PolicyKind::Drop), &|p, q| {
            Policy::new(PolicyKind::Union(Box::new(p), Box::new(q)))
        })
    }

    /// The sequence of `steps` (`id` when empty), nested as a balanced tree.
    pub fn seq_all(steps: Vec<Policy>) -> Policy {
        balanced(steps, Policy::new(PolicyKind::Id), &|p, q| {
            Policy::new(PolicyKind::Seq(Box::new(p), Box::new(q)))
        })
    }

    /// Sets every span in the tree to the default, so trees parsed from different
    /// text can be compared for structure alone.
    pub fn erase_spans(&mut self) {
        crate::stack::deep(|| {
            self.span = Span::default();
            match &mut self.kind {
                PolicyKind::Id
                | PolicyKind::Drop
                | PolicyKind::Dup
                | PolicyKind::Link(..)
                | PolicyKind::VLink(..) => {}
                PolicyKind::Filter(a) => a.erase_spans(),
                PolicyKind::Mod(hv) => hv.span = Span::default(),
                PolicyKind::Union(p, q) | PolicyKind::Seq(p, q) => {
                    p.erase_spans();
                    q.erase_spans();
                }
                PolicyKind::Star(p) => p.erase_spans(),
                PolicyKind::If(a, p, q) => {
                    a.erase_spans();
                    p.erase_spans();
                    q.erase_spans();
                }
                PolicyKind::While(a, p) => {
                    a.erase_spans();
                    p.erase_spans();
                }
                PolicyKind::Let {
                    name_span, body, ..
                } => {
                    *name_span = Span::default();
                    body.erase_spans();
                }
            }
        })
    }

    /// True when the policy contains links (and so needs the global compiler).
    pub fn has_links(&self) -> bool {
        crate::stack::deep(|| match &self.kind {
            PolicyKind::Link(..) | PolicyKind::VLink(..) => true,
            PolicyKind::Id
            | PolicyKind::Drop
            | PolicyKind::Dup
            | PolicyKind::Filter(_)
            | PolicyKind::Mod(_) => false,
            PolicyKind::Union(p, q) | PolicyKind::Seq(p, q) | PolicyKind::If(_, p, q) => {
                p.has_links() || q.has_links()
            }
            PolicyKind::Star(p) | PolicyKind::While(_, p) => p.has_links(),
            PolicyKind::Let { body, .. } => body.has_links(),
        })
    }
}

impl Pred {
    /// `field = value`.
    pub fn test(field: HeaderField, value: Value) -> Pred {
        Pred::new(PredKind::Test(HeaderVal {
            field,
            value,
            span: Span::default(),
        }))
    }

    /// `not a`.
    pub fn negate(a: Pred) -> Pred {
        Pred::new(PredKind::Not(Box::new(a)))
    }

    /// The conjunction of `parts` as a balanced tree (`true` when empty).
    pub fn and_all(parts: Vec<Pred>) -> Pred {
        balanced(parts, Pred::new(PredKind::True), &|a, b| {
            Pred::new(PredKind::And(Box::new(a), Box::new(b)))
        })
    }

    /// The disjunction of `parts` as a balanced tree (`false` when empty).
    pub fn or_all(parts: Vec<Pred>) -> Pred {
        balanced(parts, Pred::new(PredKind::False), &|a, b| {
            Pred::new(PredKind::Or(Box::new(a), Box::new(b)))
        })
    }

    /// A predicate with a default span.
    pub fn new(kind: PredKind) -> Pred {
        Pred {
            kind,
            span: Span::default(),
        }
    }

    /// Sets every span in the tree to the default.
    pub fn erase_spans(&mut self) {
        crate::stack::deep(|| {
            self.span = Span::default();
            match &mut self.kind {
                PredKind::True | PredKind::False => {}
                PredKind::Test(hv) => hv.span = Span::default(),
                PredKind::Not(a) => a.erase_spans(),
                PredKind::And(a, b) | PredKind::Or(a, b) => {
                    a.erase_spans();
                    b.erase_spans();
                }
            }
        })
    }
}

/// `parts` joined by `join` as a balanced binary tree, in order; `empty` when
/// there is none. Associative operators only: the grouping changes, the meaning
/// does not.
fn balanced<T>(mut parts: Vec<T>, empty: T, join: &dyn Fn(T, T) -> T) -> T {
    if parts.is_empty() {
        return empty;
    }
    while parts.len() > 1 {
        let mut next = Vec::with_capacity(parts.len().div_ceil(2));
        let mut it = parts.into_iter();
        while let Some(a) = it.next() {
            next.push(match it.next() {
                Some(b) => join(a, b),
                None => a,
            });
        }
        parts = next;
    }
    parts.pop().unwrap_or(empty)
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(n) => write!(f, "{n}"),
            Value::Mac(m) => write!(f, "{}", openflow::flow::Mac::from_u64(*m)),
            Value::Ip4 { addr, prefix } => {
                write!(f, "{}", std::net::Ipv4Addr::from(*addr))?;
                if let Some(p) = prefix {
                    write!(f, "/{p}")?;
                }
                Ok(())
            }
            Value::Ip6 { addr, prefix } => {
                write!(f, "{addr}")?;
                if let Some(p) = prefix {
                    write!(f, "/{p}")?;
                }
                Ok(())
            }
            Value::Pipe(s) => write!(f, "pipe(\"{s}\")"),
            Value::Query(s) => write!(f, "query(\"{s}\")"),
            Value::Named { kind, name } => write!(f, "{kind}:{name}"),
        }
    }
}

impl fmt::Display for HeaderField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl fmt::Display for Pred {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::stack::deep(|| self.fmt_node(f))
    }
}

impl Pred {
    fn fmt_node(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            PredKind::True => f.write_str("true"),
            PredKind::False => f.write_str("false"),
            PredKind::Test(hv) => write!(f, "{} = {}", hv.field, hv.value),
            PredKind::Not(a) => write!(f, "not {}", PredAtom(a)),
            PredKind::And(a, b) => write!(f, "{} and {}", PredAtom(a), PredAtom(b)),
            PredKind::Or(a, b) => write!(f, "{} or {}", PredAtom(a), PredAtom(b)),
        }
    }
}

/// Prints a predicate, in parentheses unless it is atomic.
struct PredAtom<'a>(&'a Pred);

impl fmt::Display for PredAtom<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.kind {
            PredKind::True | PredKind::False | PredKind::Test(_) => write!(f, "{}", self.0),
            _ => write!(f, "({})", self.0),
        }
    }
}

/// Prints a policy, in parentheses unless it is atomic.
struct PolAtom<'a>(&'a Policy);

impl fmt::Display for PolAtom<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.kind {
            PolicyKind::Id
            | PolicyKind::Drop
            | PolicyKind::Dup
            | PolicyKind::Mod(_)
            | PolicyKind::Link(..)
            | PolicyKind::VLink(..) => write!(f, "{}", self.0),
            _ => write!(f, "({})", self.0),
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::stack::deep(|| self.fmt_node(f))
    }
}

impl Policy {
    fn fmt_node(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            PolicyKind::Id => f.write_str("id"),
            PolicyKind::Drop => f.write_str("drop"),
            PolicyKind::Dup => f.write_str("dup"),
            PolicyKind::Filter(a) => write!(f, "filter {}", PredAtom(a)),
            PolicyKind::Mod(hv) => write!(f, "{} := {}", hv.field, hv.value),
            PolicyKind::Union(p, q) => write!(f, "{} + {}", PolAtom(p), PolAtom(q)),
            PolicyKind::Seq(p, q) => write!(f, "{}; {}", PolAtom(p), PolAtom(q)),
            PolicyKind::Star(p) => write!(f, "{}*", PolAtom(p)),
            PolicyKind::Link(a, b, c, d) => write!(f, "{a}@{b} => {c}@{d}"),
            PolicyKind::VLink(a, b, c, d) => write!(f, "{a}@{b} =>> {c}@{d}"),
            PolicyKind::If(a, p, q) => {
                // `else if` chains print flat, as the parser reads them in a loop.
                write!(f, "if {} then {} else ", PredAtom(a), PolAtom(p))?;
                let mut rest = q;
                while let PolicyKind::If(a, p, q) = &rest.kind {
                    write!(f, "if {} then {} else ", PredAtom(a), PolAtom(p))?;
                    rest = q;
                }
                write!(f, "{}", PolAtom(rest))
            }
            PolicyKind::While(a, p) => write!(f, "while {} do {}", PredAtom(a), PolAtom(p)),
            PolicyKind::Let {
                name,
                init,
                mutable,
                body,
                ..
            } => {
                let kw = if *mutable { "var" } else { "let" };
                let init = match init {
                    LetInit::Const(v) => v.to_string(),
                    LetInit::Alias(h) => h.to_string(),
                };
                write!(f, "{kw} `{name} := {init} in {}", PolAtom(body))
            }
        }
    }
}

impl crate::stack::Detach for PolicyKind {
    fn detach_children(&mut self, out: &mut Vec<PolicyKind>) {
        let mut take = |p: &mut Box<Policy>| {
            out.push(std::mem::replace(&mut p.kind, PolicyKind::Id));
        };
        match self {
            PolicyKind::Id
            | PolicyKind::Drop
            | PolicyKind::Dup
            | PolicyKind::Filter(_)
            | PolicyKind::Mod(_)
            | PolicyKind::Link(..)
            | PolicyKind::VLink(..) => {}
            PolicyKind::Union(p, q) | PolicyKind::Seq(p, q) | PolicyKind::If(_, p, q) => {
                take(p);
                take(q);
            }
            PolicyKind::Star(p) | PolicyKind::While(_, p) | PolicyKind::Let { body: p, .. } => {
                take(p)
            }
        }
    }
}

/// Long `+`/`;` chains and `else if` chains are as deep as they are long.
impl Drop for PolicyKind {
    fn drop(&mut self) {
        crate::stack::drop_iteratively(self);
    }
}

impl crate::stack::Detach for PredKind {
    fn detach_children(&mut self, out: &mut Vec<PredKind>) {
        let mut take = |a: &mut Box<Pred>| {
            out.push(std::mem::replace(&mut a.kind, PredKind::True));
        };
        match self {
            PredKind::True | PredKind::False | PredKind::Test(_) => {}
            PredKind::Not(a) => take(a),
            PredKind::And(a, b) | PredKind::Or(a, b) => {
                take(a);
                take(b);
            }
        }
    }
}

/// Long `or`/`and` chains are as deep as they are long.
impl Drop for PredKind {
    fn drop(&mut self) {
        crate::stack::drop_iteratively(self);
    }
}
