//! The core calculus the evaluator and the compilers share: NetKAT over the header
//! fields an OpenFlow 1.3 switch has, with sugar removed and names resolved.
//!
//! This module owns the *meaning of Frenetic's fields on a real packet*, which is
//! where NetKAT and OpenFlow differ. NetKAT treats every field as present in every
//! packet; OpenFlow has prerequisites (`tcp_src` only exists for TCP over IP). We
//! choose: **a test of a field the packet does not carry is false, and an
//! assignment to such a field does nothing.** So `tcpSrcPort = 80` means
//! `ethTyp = 0x800 and ipProto = 6 and tp_src = 80`, `ip4Dst = a` means
//! `ethTyp = 0x800 and nw_dst = a`, `vlanPcp = 3` means "tagged, with PCP 3", and
//! `ip4Src := a` means `if ethTyp = 0x800 then nw_src := a else id`. With that
//! meaning the compiled tables carry exactly the prerequisites Open vSwitch demands
//! and still agree with the reference evaluator packet for packet. (Frenetic,
//! coming from OpenFlow 1.0, instead lets `ip4Src` also match ARP's sender address
//! and `tcpSrcPort` also match UDP; we keep ARP and UDP apart, and offer
//! `udpSrcPort`/`udpDstPort`.) `vlanId = 0xffff` means "untagged", as in Frenetic.
//!
//! Lowering also checks scoping: unknown and immutable meta fields, Frenetic's limit
//! of five meta fields in scope, virtual fields. It never compiles or evaluates.

use super::build::rebuild;
use super::diagnostics::Diagnostic;
use super::syntax::{HeaderField, HeaderVal, Policy, Span, Value};
use openflow::flow::{ethertype, ipproto, VLAN_PRESENT};

pub mod ip6;

/// Most meta fields in scope at once (Frenetic's `Meta0`..`Meta4`).
pub const MAX_META: usize = 5;

/// First value used for pipe and query locations of the `port` field; physical
/// ports are below 2^32.
pub const LOCATION_BASE: u64 = 1 << 40;

/// A field of the core calculus; the declaration order is the FDD variable order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum HField {
    /// Datapath id.
    Switch,
    /// Location: physical port (< 2^32) or a pipe/query (>= [`LOCATION_BASE`]).
    Port,
    /// OpenFlow `vlan_vid`: 0 untagged, `0x1000 | vid` tagged.
    VlanVid,
    /// `vlan_pcp`.
    VlanPcp,
    /// `dl_type`.
    EthType,
    /// `dl_src`.
    EthSrc,
    /// `dl_dst`.
    EthDst,
    /// `nw_proto`.
    IpProto,
    /// `nw_src`.
    Ip4Src,
    /// `nw_dst`.
    Ip4Dst,
    /// `ipv6_src`, its high 64 bits (see [`crate::ip6`] for the split).
    Ip6SrcHi,
    /// `ipv6_src`, its low 64 bits.
    Ip6SrcLo,
    /// `ipv6_dst`, its high 64 bits.
    Ip6DstHi,
    /// `ipv6_dst`, its low 64 bits.
    Ip6DstLo,
    /// `tp_src`.
    L4Src,
    /// `tp_dst`.
    L4Dst,
    /// A meta field (numbered per `let`).
    Meta(u16),
}

impl HField {
    /// Width in bits.
    pub fn bits(self) -> u8 {
        match self {
            HField::Switch | HField::Port | HField::Meta(_) => 64,
            HField::Ip6SrcHi | HField::Ip6SrcLo | HField::Ip6DstHi | HField::Ip6DstLo => 64,
            HField::VlanVid => 13,
            HField::VlanPcp => 3,
            HField::EthType | HField::L4Src | HField::L4Dst => 16,
            HField::EthSrc | HField::EthDst => 48,
            HField::IpProto => 8,
            HField::Ip4Src | HField::Ip4Dst => 32,
        }
    }
}

/// A test `field ∈ value/len` (the top `len` bits equal); `len == bits` is exact.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Pattern {
    /// The field.
    pub field: HField,
    /// The value, with bits below the prefix cleared.
    pub value: u64,
    /// Prefix length.
    pub len: u8,
}

impl Pattern {
    /// An exact test.
    pub fn exact(field: HField, value: u64) -> Pattern {
        Pattern {
            field,
            value,
            len: field.bits(),
        }
    }

    /// A prefix test (value is canonicalised).
    pub fn prefix(field: HField, value: u64, len: u8) -> Pattern {
        let len = len.min(field.bits());
        let p = Pattern { field, value, len };
        Pattern {
            value: value & p.mask(),
            ..p
        }
    }

    /// The mask of the prefix, within the field's width.
    pub fn mask(&self) -> u64 {
        let bits = u32::from(self.field.bits());
        let len = u32::from(self.len);
        if len == 0 {
            return 0;
        }
        let ones = if len >= 64 {
            u64::MAX
        } else {
            (1u64 << len) - 1
        };
        ones << (bits - len)
    }

    /// True when `v` satisfies the test.
    pub fn holds(&self, v: u64) -> bool {
        v & self.mask() == self.value
    }

    /// True when every value satisfying `other` satisfies `self`.
    pub fn contains(&self, other: &Pattern) -> bool {
        self.field == other.field
            && self.len <= other.len
            && other.value & self.mask() == self.value
    }

    /// True when no value satisfies both (same field only).
    pub fn disjoint(&self, other: &Pattern) -> bool {
        self.field == other.field && !self.contains(other) && !other.contains(self)
    }

    /// The FDD order: by field, then more specific first, then by value.
    pub fn order_key(&self) -> (HField, std::cmp::Reverse<u8>, u64) {
        (self.field, std::cmp::Reverse(self.len), self.value)
    }
}

/// A core predicate.
#[derive(PartialEq, Eq, Hash, Debug)]
pub enum CPred {
    /// Always.
    True,
    /// Never.
    False,
    /// A field test.
    Test(Pattern),
    /// Negation.
    Not(Box<CPred>),
    /// Conjunction.
    And(Box<CPred>, Box<CPred>),
    /// Disjunction.
    Or(Box<CPred>, Box<CPred>),
}

/// How a meta field starts.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum CInit {
    /// A constant.
    Const(u64),
    /// The entry value of a header field: a test `meta = v` means the Frenetic test
    /// `field = v` on the packet as it entered the `let`.
    Alias(HeaderField),
}

/// A core policy.
#[derive(PartialEq, Eq, Hash, Debug)]
pub enum CPol {
    /// Keep the packets satisfying the predicate.
    Filter(CPred),
    /// Set a field.
    Mod(HField, u64),
    /// Both.
    Union(Box<CPol>, Box<CPol>),
    /// One then the other.
    Seq(Box<CPol>, Box<CPol>),
    /// Any number of times.
    Star(Box<CPol>),
    /// Record the packet in its history (identity on the packet itself).
    Dup,
    /// `s1@p1 => s2@p2`, with the span of its text.
    Link {
        /// Source switch.
        s1: u64,
        /// Source port.
        p1: u64,
        /// Destination switch.
        s2: u64,
        /// Destination port.
        p2: u64,
        /// Where it is written.
        span: Span,
    },
    /// A meta field's scope.
    Let {
        /// The field.
        meta: u16,
        /// Its start.
        init: CInit,
        /// The scope.
        body: Box<CPol>,
    },
}

// Clone and Drop by hand: a derived one recurses once per level, and a chain of
// ten thousand `+` or `else if` is ten thousand levels deep.
impl Clone for CPred {
    fn clone(&self) -> CPred {
        crate::stack::deep(|| match self {
            CPred::True => CPred::True,
            CPred::False => CPred::False,
            CPred::Test(p) => CPred::Test(*p),
            CPred::Not(a) => CPred::Not(a.clone()),
            CPred::And(a, b) => CPred::And(a.clone(), b.clone()),
            CPred::Or(a, b) => CPred::Or(a.clone(), b.clone()),
        })
    }
}

impl Clone for CPol {
    fn clone(&self) -> CPol {
        crate::stack::deep(|| match self {
            CPol::Filter(a) => CPol::Filter(a.clone()),
            CPol::Mod(f, v) => CPol::Mod(*f, *v),
            CPol::Union(p, q) => CPol::Union(p.clone(), q.clone()),
            CPol::Seq(p, q) => CPol::Seq(p.clone(), q.clone()),
            CPol::Star(p) => CPol::Star(p.clone()),
            CPol::Dup => CPol::Dup,
            CPol::Link {
                s1,
                p1,
                s2,
                p2,
                span,
            } => CPol::Link {
                s1: *s1,
                p1: *p1,
                s2: *s2,
                p2: *p2,
                span: *span,
            },
            CPol::Let { meta, init, body } => CPol::Let {
                meta: *meta,
                init: init.clone(),
                body: body.clone(),
            },
        })
    }
}

impl crate::stack::Detach for CPred {
    fn detach_children(&mut self, out: &mut Vec<CPred>) {
        let mut take = |a: &mut Box<CPred>| out.push(std::mem::replace(&mut **a, CPred::True));
        match self {
            CPred::True | CPred::False | CPred::Test(_) => {}
            CPred::Not(a) => take(a),
            CPred::And(a, b) | CPred::Or(a, b) => {
                take(a);
                take(b);
            }
        }
    }
}

impl Drop for CPred {
    fn drop(&mut self) {
        crate::stack::drop_iteratively(self);
    }
}

impl crate::stack::Detach for CPol {
    fn detach_children(&mut self, out: &mut Vec<CPol>) {
        let mut take = |p: &mut Box<CPol>| out.push(std::mem::replace(&mut **p, CPol::Dup));
        match self {
            CPol::Filter(_) | CPol::Mod(..) | CPol::Dup | CPol::Link { .. } => {}
            CPol::Union(p, q) | CPol::Seq(p, q) => {
                take(p);
                take(q);
            }
            CPol::Star(p) | CPol::Let { body: p, .. } => take(p),
        }
    }
}

impl Drop for CPol {
    fn drop(&mut self) {
        crate::stack::drop_iteratively(self);
    }
}

/// The leaves of a binary tree of one operator, left to right: `split` gives the
/// two operands of a node of that operator. Iterative, so that a chain of ten
/// thousand `+`, `;` or `or` does not exhaust the stack.
pub fn operands<'a, T>(root: &'a T, split: impl Fn(&'a T) -> Option<(&'a T, &'a T)>) -> Vec<&'a T> {
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(q) = stack.pop() {
        match split(q) {
            Some((x, y)) => {
                stack.push(y);
                stack.push(x);
            }
            None => out.push(q),
        }
    }
    out
}

impl CPol {
    /// The branches of a `+` tree.
    pub fn union_branches(&self) -> Vec<&CPol> {
        operands(self, |q| match q {
            CPol::Union(x, y) => Some((x, y)),
            _ => None,
        })
    }

    /// The steps of a `;` chain.
    pub fn seq_steps(&self) -> Vec<&CPol> {
        operands(self, |q| match q {
            CPol::Seq(x, y) => Some((x, y)),
            _ => None,
        })
    }

    /// `p ; q`.
    pub fn seq(p: CPol, q: CPol) -> CPol {
        CPol::Seq(Box::new(p), Box::new(q))
    }

    /// `p + q`.
    pub fn union(p: CPol, q: CPol) -> CPol {
        CPol::Union(Box::new(p), Box::new(q))
    }

    /// `filter a`.
    pub fn filter(a: CPred) -> CPol {
        CPol::Filter(a)
    }

    /// `id`.
    pub fn id() -> CPol {
        CPol::Filter(CPred::True)
    }

    /// True when the policy contains links.
    pub fn has_links(&self) -> bool {
        crate::stack::deep(|| match self {
            CPol::Link { .. } => true,
            CPol::Filter(_) | CPol::Mod(..) | CPol::Dup => false,
            CPol::Union(p, q) | CPol::Seq(p, q) => p.has_links() || q.has_links(),
            CPol::Star(p) | CPol::Let { body: p, .. } => p.has_links(),
        })
    }
}

impl CPred {
    /// `a and b`.
    pub fn and(a: CPred, b: CPred) -> CPred {
        CPred::And(Box::new(a), Box::new(b))
    }

    /// `a or b`.
    pub fn or(a: CPred, b: CPred) -> CPred {
        CPred::Or(Box::new(a), Box::new(b))
    }

    /// `not a`.
    pub fn negate(a: CPred) -> CPred {
        CPred::Not(Box::new(a))
    }

    /// `field = value` exactly.
    pub fn test(field: HField, value: u64) -> CPred {
        CPred::Test(Pattern::exact(field, value))
    }
}

/// The kind of controller location a `pipe`/`query` names.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Location {
    /// `pipe("name")`.
    Pipe(String),
    /// `query("name")`.
    Query(String),
}

/// Resolves inventory names such as `vm:web1` (the controller implements this from
/// its inventory; the compiler only asks).
pub trait Resolver {
    /// The IPv4 address of `kind:name`.
    fn ipv4(&self, kind: &str, name: &str) -> Option<u32>;
    /// The MAC address of `kind:name`.
    fn mac(&self, kind: &str, name: &str) -> Option<u64>;
    /// The IPv6 addresses of `kind:name`, its primary one first (none by default).
    fn ipv6(&self, _kind: &str, _name: &str) -> Vec<u128> {
        Vec::new()
    }
}

/// A resolver that knows no names.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoNames;

impl Resolver for NoNames {
    fn ipv4(&self, _: &str, _: &str) -> Option<u32> {
        None
    }
    fn mac(&self, _: &str, _: &str) -> Option<u64> {
        None
    }
}

/// A lowered policy and the tables it refers to.
#[derive(Clone, Debug)]
pub struct Program {
    /// The policy.
    pub pol: CPol,
    /// Pipe and query locations; location `i` is `port` value `LOCATION_BASE + i`.
    pub locations: Vec<Location>,
    /// Number of meta fields (`Meta(0..metas)`).
    pub metas: u16,
}

impl Program {
    /// The location a `port` value names, if it is a pipe or query.
    pub fn location(&self, port: u64) -> Option<&Location> {
        port.checked_sub(LOCATION_BASE)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.locations.get(i))
    }
}

/// A meta field in scope.
pub(crate) struct Scope {
    pub(crate) name: String,
    pub(crate) meta: u16,
    pub(crate) mutable: bool,
    pub(crate) span: Span,
}

/// The state of a lowering: names in scope, locations met, the first error.
/// What each construct becomes is in [`super::lowering`]; field tests and
/// assignments are here.
pub(crate) struct Lowerer<'a> {
    resolver: &'a dyn Resolver,
    pub(crate) scopes: Vec<Scope>,
    locations: Vec<Location>,
    pub(crate) metas: u16,
    /// For each `let` being built: its meta field and start (`None` when the
    /// declaration was refused).
    pub(crate) lets: Vec<Option<(u16, CInit)>>,
    /// The first error: lowering goes on after it (a syntax error later in the
    /// text takes precedence), and reports it at the end.
    error: Option<Diagnostic>,
}

/// Lowers a parsed policy to the core calculus.
pub fn lower(pol: &Policy, resolver: &dyn Resolver) -> Result<Program, Diagnostic> {
    let mut l = Lowerer::new(resolver);
    let pol = rebuild(pol, &mut l);
    l.finish(pol)
}

/// The core meaning of the Frenetic test `field = value` for a non-meta field
/// whose value is already an integer (used for `let` aliases).
pub fn alias_test(field: &HeaderField, value: u64) -> CPred {
    let hv = HeaderVal {
        field: field.clone(),
        value: match field {
            HeaderField::Ip4Src | HeaderField::Ip4Dst => Value::Ip4 {
                addr: u32::try_from(value).unwrap_or(u32::MAX),
                prefix: None,
            },
            _ => Value::Int(value),
        },
        span: Span::default(),
    };
    if value > field.max_int() || (*field == HeaderField::VlanId && (4096..0xffff).contains(&value))
    {
        return CPred::False;
    }
    Lowerer::new(&NoNames).test(&hv).unwrap_or(CPred::False)
}

pub(crate) fn ip4() -> CPred {
    CPred::test(HField::EthType, u64::from(ethertype::IPV4))
}

fn proto(p: u8) -> CPred {
    CPred::and(ip4(), CPred::test(HField::IpProto, u64::from(p)))
}

fn tagged() -> CPred {
    CPred::negate(CPred::test(HField::VlanVid, 0))
}

/// `field := value` with the prerequisite the assignment was lowered with, for a
/// compiler that carries an assignment away from its source: an IP or transport
/// field is written only on a packet that has it. The transport guard accepts
/// both protocols, as the lowered assignment already chose one and `ipProto` is
/// read-only.
pub(crate) fn assignment(field: HField, value: u64) -> CPol {
    match field {
        HField::Ip4Src | HField::Ip4Dst => guarded(ip4(), field, value),
        HField::Ip6SrcHi | HField::Ip6SrcLo | HField::Ip6DstHi | HField::Ip6DstLo => {
            guarded(ip6::ethertype_test(), field, value)
        }
        HField::L4Src | HField::L4Dst => guarded(
            CPred::or(proto(ipproto::TCP), proto(ipproto::UDP)),
            field,
            value,
        ),
        _ => CPol::Mod(field, value),
    }
}

fn guarded(guard: CPred, field: HField, v: u64) -> CPol {
    CPol::union(
        CPol::seq(CPol::filter(guard.clone()), CPol::Mod(field, v)),
        CPol::filter(CPred::negate(guard)),
    )
}

impl<'a> Lowerer<'a> {
    pub(crate) fn new(resolver: &'a dyn Resolver) -> Lowerer<'a> {
        Lowerer {
            resolver,
            scopes: Vec::new(),
            locations: Vec::new(),
            metas: 0,
            lets: Vec::new(),
            error: None,
        }
    }

    /// Keeps `e` if it is the first error.
    pub(crate) fn fail(&mut self, e: Diagnostic) {
        self.error.get_or_insert(e);
    }

    /// Moves the kept error from `from` to `to` if it is at `from` (a virtual
    /// link's, when brackets around the link widen its span).
    pub(crate) fn widen_error(&mut self, from: Span, to: Span) {
        if let Some(e) = self.error.as_mut().filter(|e| e.span == Some(from)) {
            e.span = Some(to);
        }
    }

    /// The program lowered to `pol`, or the first error met.
    pub(crate) fn finish(self, pol: CPol) -> Result<Program, Diagnostic> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(Program {
                pol,
                locations: self.locations,
                metas: self.metas,
            }),
        }
    }

    fn lookup(&self, name: &str, span: Span) -> Result<&Scope, Diagnostic> {
        self.scopes
            .iter()
            .rev()
            .find(|s| s.name == name)
            .ok_or_else(|| {
                Diagnostic::error(span, format!("unknown meta field `{name}"))
                    .with_label("not declared")
                    .with_hint(format!("declare it first: let `{name} := 0 in …"))
            })
    }

    fn int_value(&self, hv: &HeaderVal) -> Result<u64, Diagnostic> {
        match &hv.value {
            Value::Int(n) | Value::Mac(n) => Ok(*n),
            Value::Ip4 { addr, .. } => Ok(u64::from(*addr)),
            Value::Ip6 { .. } => Ok(0), // lowered by `crate::ip6`
            Value::Named { kind, name } => {
                let r = match hv.field {
                    HeaderField::EthSrc | HeaderField::EthDst => self.resolver.mac(kind, name),
                    _ => self.resolver.ipv4(kind, name).map(u64::from),
                };
                r.ok_or_else(|| {
                    Diagnostic::error(hv.span, format!("unknown name `{kind}:{name}`"))
                        .with_label("not in the inventory")
                        .with_hint("names are resolved against the controller's inventory of hosts and VMs")
                })
            }
            Value::Pipe(_) | Value::Query(_) => Ok(0),
        }
    }

    fn location(&mut self, v: &Value) -> u64 {
        let loc = match v {
            Value::Pipe(s) => Location::Pipe(s.clone()),
            Value::Query(s) => Location::Query(s.clone()),
            _ => return 0,
        };
        let i = match self.locations.iter().position(|l| *l == loc) {
            Some(i) => i,
            None => {
                self.locations.push(loc);
                self.locations.len() - 1
            }
        };
        LOCATION_BASE + i as u64
    }

    fn virtual_field(hv: &HeaderVal) -> Diagnostic {
        Diagnostic::error(
            hv.span,
            format!("`{}` belongs to Frenetic's virtual compiler", hv.field),
        )
        .with_label("virtual field")
        .with_hint("scc compiles physical programs; virtual networks are not supported")
    }

    pub(crate) fn test(&mut self, hv: &HeaderVal) -> Result<CPred, Diagnostic> {
        if let Some(a) = ip6::lower_test(self.resolver, hv)? {
            return Ok(a);
        }
        let v = self.int_value(hv)?;
        Ok(match &hv.field {
            HeaderField::Switch => CPred::test(HField::Switch, v),
            HeaderField::Port => match hv.value {
                Value::Pipe(_) | Value::Query(_) => {
                    CPred::test(HField::Port, self.location(&hv.value))
                }
                _ => CPred::test(HField::Port, v),
            },
            HeaderField::VSwitch | HeaderField::VPort | HeaderField::VFabric => {
                return Err(Self::virtual_field(hv))
            }
            HeaderField::EthSrc => CPred::test(HField::EthSrc, v),
            HeaderField::EthDst => CPred::test(HField::EthDst, v),
            HeaderField::VlanId if v == 0xffff => CPred::test(HField::VlanVid, 0),
            HeaderField::VlanId => CPred::test(HField::VlanVid, u64::from(VLAN_PRESENT) | v),
            HeaderField::VlanPcp => CPred::and(tagged(), CPred::test(HField::VlanPcp, v)),
            HeaderField::EthTyp => CPred::test(HField::EthType, v),
            HeaderField::IpProto => CPred::and(ip4(), CPred::test(HField::IpProto, v)),
            HeaderField::Ip4Src | HeaderField::Ip4Dst => {
                let f = if hv.field == HeaderField::Ip4Src {
                    HField::Ip4Src
                } else {
                    HField::Ip4Dst
                };
                let len = match hv.value {
                    Value::Ip4 {
                        prefix: Some(p), ..
                    } => p,
                    _ => 32,
                };
                CPred::and(ip4(), CPred::Test(Pattern::prefix(f, v, len)))
            }
            HeaderField::TcpSrcPort => {
                CPred::and(proto(ipproto::TCP), CPred::test(HField::L4Src, v))
            }
            HeaderField::TcpDstPort => {
                CPred::and(proto(ipproto::TCP), CPred::test(HField::L4Dst, v))
            }
            HeaderField::UdpSrcPort => {
                CPred::and(proto(ipproto::UDP), CPred::test(HField::L4Src, v))
            }
            HeaderField::UdpDstPort => {
                CPred::and(proto(ipproto::UDP), CPred::test(HField::L4Dst, v))
            }
            // An IPv6 field with a value that is no IPv6 address (a `let` alias's).
            HeaderField::Ip6Src | HeaderField::Ip6Dst => CPred::False,
            HeaderField::Meta(name) => {
                let s = self.lookup(name, hv.span)?;
                CPred::test(HField::Meta(s.meta), v)
            }
        })
    }

    pub(crate) fn modify(&mut self, hv: &HeaderVal) -> Result<CPol, Diagnostic> {
        if let Some(p) = ip6::lower_assignment(self.resolver, hv)? {
            return Ok(p);
        }
        let v = self.int_value(hv)?;
        Ok(match &hv.field {
            HeaderField::Switch => CPol::Mod(HField::Switch, v),
            HeaderField::Port => match hv.value {
                Value::Pipe(_) | Value::Query(_) => {
                    CPol::Mod(HField::Port, self.location(&hv.value))
                }
                _ if v > u64::from(openflow::flow::port::MAX) => {
                    return Err(Diagnostic::error(
                        hv.span,
                        format!("port {v:#x} is an OpenFlow reserved port, not a port number"),
                    )
                    .with_label("reserved port")
                    .with_hint(format!(
                    "ports are 1..={:#x}; to reach the controller write `port := pipe(\"name\")`, \
                         and a packet that is not assigned a port leaves by the one it came in on",
                    openflow::flow::port::MAX
                )))
                }
                _ => CPol::Mod(HField::Port, v),
            },
            HeaderField::VSwitch | HeaderField::VPort | HeaderField::VFabric => {
                return Err(Self::virtual_field(hv))
            }
            HeaderField::EthSrc => CPol::Mod(HField::EthSrc, v),
            HeaderField::EthDst => CPol::Mod(HField::EthDst, v),
            // Untagging also clears the PCP (a switch pops the whole tag).
            HeaderField::VlanId if v == 0xffff => {
                CPol::seq(CPol::Mod(HField::VlanVid, 0), CPol::Mod(HField::VlanPcp, 0))
            }
            HeaderField::VlanId => CPol::Mod(HField::VlanVid, u64::from(VLAN_PRESENT) | v),
            HeaderField::VlanPcp => guarded(tagged(), HField::VlanPcp, v),
            HeaderField::EthTyp | HeaderField::IpProto => {
                return Err(Diagnostic::error(
                    hv.span,
                    format!(
                        "`{}` cannot be assigned: OpenFlow 1.3 only reads it",
                        hv.field
                    ),
                )
                .with_label("read-only field")
                .with_hint(
                    "test it with `=` instead; a switch cannot rewrite a packet's protocol",
                ))
            }
            HeaderField::Ip4Src => guarded(ip4(), HField::Ip4Src, v),
            HeaderField::Ip4Dst => guarded(ip4(), HField::Ip4Dst, v),
            HeaderField::TcpSrcPort => guarded(proto(ipproto::TCP), HField::L4Src, v),
            HeaderField::TcpDstPort => guarded(proto(ipproto::TCP), HField::L4Dst, v),
            HeaderField::UdpSrcPort => guarded(proto(ipproto::UDP), HField::L4Src, v),
            HeaderField::UdpDstPort => guarded(proto(ipproto::UDP), HField::L4Dst, v),
            HeaderField::Ip6Src | HeaderField::Ip6Dst => CPol::Filter(CPred::False),
            HeaderField::Meta(name) => {
                let s = self.lookup(name, hv.span)?;
                if !s.mutable {
                    return Err(Diagnostic::error(
                        hv.span,
                        format!("cannot assign to immutable meta field `{name}"),
                    )
                    .with_label("assignment to a `let` field")
                    .with_note(s.span, "declared with `let` here")
                    .with_hint(format!(
                        "declare it with `var `{name} := …` to make it mutable"
                    )));
                }
                CPol::Mod(HField::Meta(s.meta), v)
            }
        })
    }
}
