//! The local compiler: from an FDD to one OpenFlow 1.3 table per switch, as
//! Frenetic's `Local_compiler.ml` does, with exact OpenFlow meaning.
//!
//! This module owns the translation of FDD paths into prioritised [`FlowSpec`]s:
//! one rule per path (positive tests become the match; negative tests are implied by
//! the rules above it), minimal priorities (a rule sits just above the highest
//! overlapping rule below it; non-overlapping rules share a priority), drop rules
//! only where they hide a forwarding rule, and no rule shadowed by another. It also
//! owns the places where OpenFlow and NetKAT disagree:
//! - `port := n` is an output; a packet that came in on `n` must use `IN_PORT`
//!   (OpenFlow never sends a packet back out of its ingress port otherwise), and a
//!   branch that leaves `port` alone also goes out `IN_PORT`. So a rule that outputs
//!   to `n` without knowing the ingress port is split on `in_port = n`.
//! - two branches that would emit the same packet (`ip4Src := a + id` on a packet
//!   with source `a`) are merged, by splitting on the field as Frenetic's `dedup`
//!   does, so a packet is never duplicated.
//! - between branches of one action list, fields changed by an earlier branch are
//!   restored (from the match) before the next branch's output. Where the match
//!   does not pin the original value, only a group of type ALL can send the copies
//!   (one bucket per branch, each starting from the packet as it came): with
//!   [`Groups::Allowed`] the rule outputs to such a group (one per distinct bucket
//!   list, shared by the rules that use it), else the compiler refuses.
//! - `vlanId := n` on an untagged packet is `push_vlan` then `set_field`; untagging
//!   is `pop_vlan`; a rule not knowing whether the packet is tagged is split into
//!   the two cases (disjoint matches, same priority).
//! - prerequisites (`dl_type` for IP fields, `nw_proto` for ports, a tag for
//!   `vlan_pcp`) come from the meaning given in [`super::ir`]; where a policy makes
//!   them unknowable (it assigns `ipProto` and then tests `tcpSrcPort`) the compiler
//!   refuses with [`LocalError::Unrepresentable`] rather than emit a wrong table.
//! - `pipe(…)` and `query(…)` are outputs to `CONTROLLER`; an output to port 0 (not
//!   an OpenFlow port) is dropped, with a warning.
//!
//! It never parses text, never touches a switch, and never panics.

use super::fdd::{Fdd, Node, NodeId, Seq};
use super::guard::Entry;
use super::ir::ip6;
use super::ir::{HField, Pattern, LOCATION_BASE};
use super::overlap::OverlapIndex;
use super::path::Ctx;
use matches::{complete_pcp, entry_match, field_of, is_physical, to_match};
use openflow::flow::{
    port, Action, Bucket, Field, FlowMatch, FlowSpec, GroupSpec, GroupType, VLAN_PRESENT,
};
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::BTreeMap;

mod matches;

/// Why a table cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocalError {
    /// The policy moves packets to another switch with `switch :=`.
    #[error("the policy assigns `switch := {0}` on switch {1}; moving packets between switches needs links (`s1@p1 => s2@p2`) and the global compiler")]
    NonLocal(u64, u64),
    /// The table cannot express what the policy means.
    #[error("OpenFlow cannot express this policy: {0}")]
    Unrepresentable(String),
    /// More priority levels than OpenFlow's 16 bits.
    #[error("the table needs {0} priority levels, more than OpenFlow's 65535")]
    TooManyPriorities(usize),
}

/// Options of the table generator.
#[derive(Debug, Clone, Copy)]
pub struct TableOptions {
    /// Table the rules go into.
    pub table_id: u8,
    /// Cookie of every rule.
    pub cookie: u64,
    /// Priority of the lowest rule.
    pub base_priority: u16,
}

impl Default for TableOptions {
    fn default() -> Self {
        TableOptions {
            table_id: 0,
            cookie: 0,
            base_priority: 1,
        }
    }
}

/// Whether the generator may emit OpenFlow groups. A switch must have a table's
/// groups before its flows (and lose them only after them), so only callers that
/// install groups opt in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Groups {
    /// Refuse policies that need copies with different changes (no groups).
    #[default]
    Refused,
    /// Send such copies through ALL groups, listed in [`Table::groups`].
    Allowed,
}

/// A generated table and what the generator noticed.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// The groups the rules output to, by increasing id from 1 (empty unless
    /// [`Groups::Allowed`]); install them before the rules.
    pub groups: Vec<GroupSpec>,
    /// The rules, highest priority first.
    pub flows: Vec<FlowSpec>,
    /// Things that compiled but probably not as meant.
    pub warnings: Vec<String>,
}

struct Rule {
    matcher: FlowMatch,
    actions: Vec<Action>,
}

struct Gen<'a> {
    fdd: &'a Fdd,
    switch: u64,
    rules: Vec<Rule>,
    warnings: Vec<String>,
    allow_groups: Groups,
    /// Group ids by transport protocol and bucket list, so rules with the same
    /// copies share a group; a bucket setting a transport port is written for one
    /// protocol (OpenFlow 1.3 names `tcp_dst` and `udp_dst` apart), so rules of
    /// different protocols do not share it.
    groups: FxHashMap<(Option<u128>, Vec<Vec<Action>>), u32>,
}

/// Builds the table of `switch` from an FDD already restricted to it.
pub fn table(
    fdd: &Fdd,
    root: NodeId,
    switch: u64,
    opts: TableOptions,
) -> Result<Table, LocalError> {
    guarded_table(fdd, root, switch, &[], opts, Groups::Refused)
}

/// Builds the table of `switch` for `filter not (e1 or … or en); root`: one drop
/// rule per entry of `deny` (see [`super::guard`]) above the rules of `root`, an
/// FDD already restricted to the switch. Entries for other switches, entries no
/// packet can match and entries that hide no forwarding rule are left out.
pub fn guarded_table(
    fdd: &Fdd,
    root: NodeId,
    switch: u64,
    deny: &[Entry],
    opts: TableOptions,
    allow_groups: Groups,
) -> Result<Table, LocalError> {
    let tables = Tables {
        fdd,
        deny,
        opts,
        allow_groups,
    };
    tables.build(root, switch, &mut Scratch::default())
}

/// What building one table leaves to the next of the same program: the room of
/// the rule list and of the path, and the overlap index (its masks and views,
/// emptied), so a program of hundreds of switches does not grow them anew for
/// each.
#[derive(Default)]
pub(crate) struct Scratch {
    rules: Vec<Rule>,
    ctx: Ctx,
    index: OverlapIndex,
}

impl std::fmt::Debug for Scratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scratch")
    }
}

/// The tables of one program: its FDD, ACL guard and options.
pub(crate) struct Tables<'a> {
    pub(crate) fdd: &'a Fdd,
    pub(crate) deny: &'a [Entry],
    pub(crate) opts: TableOptions,
    pub(crate) allow_groups: Groups,
}

impl Tables<'_> {
    /// The table of `switch` ([`guarded_table`]), from `root` already
    /// restricted to it.
    pub(crate) fn build(
        &self,
        root: NodeId,
        switch: u64,
        scratch: &mut Scratch,
    ) -> Result<Table, LocalError> {
        let mut rules = std::mem::take(&mut scratch.rules);
        rules.clear();
        scratch.ctx.clear();
        scratch.index.clear();
        let mut g = Gen {
            fdd: self.fdd,
            switch,
            rules,
            warnings: Vec::new(),
            allow_groups: self.allow_groups,
            groups: FxHashMap::default(),
        };
        g.walk(root, &mut scratch.ctx)?;
        let mut guards = Vec::with_capacity(self.deny.len());
        for entry in self.deny {
            if let Some(m) = entry_match(entry, switch)? {
                guards.push(m);
            }
        }
        let flows = prioritise(&mut g.rules, &guards, self.opts, &mut scratch.index)?;
        scratch.rules = std::mem::take(&mut g.rules);
        Ok(g.finish(flows))
    }
}

impl Gen<'_> {
    /// The table of the rules placed as `flows`, with the groups and warnings
    /// met on the way.
    fn finish(self, flows: Vec<FlowSpec>) -> Table {
        let mut warnings = self.warnings;
        warnings.sort();
        warnings.dedup();
        let mut groups: Vec<GroupSpec> = self
            .groups
            .into_iter()
            .map(|((_, buckets), group_id)| GroupSpec {
                group_id,
                group_type: GroupType::All,
                buckets: buckets.into_iter().map(Bucket::new).collect(),
            })
            .collect();
        groups.sort_by_key(|g| g.group_id);
        Table {
            groups,
            flows,
            warnings,
        }
    }
}

impl<'a> Gen<'a> {
    fn walk(&mut self, n: NodeId, ctx: &mut Ctx) -> Result<(), LocalError> {
        crate::stack::deep(|| {
            match self.fdd.node(n) {
                Node::Leaf(a) => self.leaf(ctx, self.fdd.actions(a)),
                Node::Branch { test, hi, lo } => {
                    // The FDD order guarantees the path does not already decide `test`
                    // positively; a decided test just follows its branch.
                    match ctx.decides(&test) {
                        Some(true) => return self.walk(hi, ctx),
                        Some(false) => return self.walk(lo, ctx),
                        None => {}
                    }
                    ctx.pos.push(test);
                    self.walk(hi, ctx)?;
                    ctx.pos.pop();
                    ctx.neg.push(test);
                    self.walk(lo, ctx)?;
                    ctx.neg.pop(test);
                    Ok(())
                }
            }
        })
    }

    /// Splits a leaf on tests that make branches coincide (`dedup`) or that decide
    /// between `output:n` and `IN_PORT`, then emits its rules.
    fn leaf(&mut self, ctx: &mut Ctx, acts: &'a [Seq]) -> Result<(), LocalError> {
        // Actions on the tag differ for tagged and untagged packets: decide first.
        let untagged = Pattern::exact(HField::VlanVid, 0);
        let touches_vlan = acts.iter().any(|s| {
            s.iter()
                .any(|(f, _)| matches!(f, HField::VlanVid | HField::VlanPcp))
        });
        let vid_known = || self.ctx_has_vid(ctx);
        // The first undecided candidate in the FDD order (no list: this runs once
        // per rule).
        let mut split_on: Option<Pattern> = None;
        let mut consider = |c: Pattern| {
            if split_on.is_none_or(|s| c.order_key() < s.order_key()) && ctx.decides(&c).is_none() {
                split_on = Some(c);
            }
        };
        if touches_vlan && !vid_known() {
            consider(untagged);
        }
        for s in acts {
            for (f, v) in s {
                if *f == HField::Port && is_physical(*v) {
                    consider(Pattern::exact(HField::Port, *v));
                }
            }
        }
        if acts.len() > 1 {
            for s in acts {
                for (f, v) in s {
                    if matches!(f, HField::Port | HField::Switch) {
                        continue;
                    }
                    let everywhere = acts.iter().all(|t| t.iter().any(|(g, _)| g == f));
                    if !everywhere {
                        consider(Pattern::exact(*f, *v));
                    }
                }
            }
        }
        if let Some(c) = split_on {
            ctx.pos.push(c);
            self.leaf(ctx, acts)?;
            ctx.pos.pop();
            ctx.neg.push(c);
            self.leaf(ctx, acts)?;
            ctx.neg.pop(c);
            return Ok(());
        }
        // Every candidate is decided: drop assignments that change nothing. Most
        // leaves keep every assignment, and then the sorted, duplicate-free set is
        // used as it is (this runs once per rule).
        let changes_nothing = |&(f, v): &(HField, u64)| {
            (f == HField::Switch && v == self.switch)
                || ctx.decides(&Pattern::exact(f, v)) == Some(true)
        };
        if !acts.iter().flatten().any(changes_nothing) {
            return self.emit(ctx, acts);
        }
        let mut seqs: Vec<Seq> = acts
            .iter()
            .map(|s| s.iter().filter(|a| !changes_nothing(a)).copied().collect())
            .collect();
        seqs.sort();
        seqs.dedup();
        self.emit(ctx, &seqs)
    }

    fn ctx_has_vid(&self, ctx: &Ctx) -> bool {
        ctx.decides(&Pattern::exact(HField::VlanVid, 0)).is_some()
            || ctx.pos.iter().any(|p| p.field == HField::VlanVid)
    }

    fn emit(&mut self, ctx: &Ctx, seqs: &[Seq]) -> Result<(), LocalError> {
        for s in seqs {
            if let Some((_, v)) = s.iter().find(|(f, _)| *f == HField::Switch) {
                return Err(LocalError::NonLocal(*v, self.switch));
            }
        }
        let Some(base) = to_match(ctx)? else {
            return Ok(()); // no packet reaches this path (e.g. it arrives from a pipe)
        };
        // A path that took the false branch of `vlan_vid = 0` only sees tagged packets.
        let known_tagged = ctx.decides(&Pattern::exact(HField::VlanVid, 0)) == Some(false);
        let base = if known_tagged && base.get(Field::VlanVid).is_none() {
            base.with_masked(
                Field::VlanVid,
                u128::from(VLAN_PRESENT),
                u128::from(VLAN_PRESENT),
            )
        } else {
            base
        };
        for m in complete_pcp(base).into_iter().flatten() {
            let actions = self.actions(&m, seqs)?;
            self.rules.push(Rule {
                matcher: m,
                actions,
            });
        }
        Ok(())
    }

    /// The action list: for each branch, its assignments then its output, with the
    /// fields of earlier branches restored; where that is impossible and groups
    /// are allowed, an output to an ALL group with one bucket per branch.
    fn actions(&mut self, m: &FlowMatch, seqs: &[Seq]) -> Result<Vec<Action>, LocalError> {
        match self.sequential_actions(m, seqs) {
            Err(LocalError::Unrepresentable(_)) if self.allow_groups == Groups::Allowed => {
                self.group_actions(m, seqs)
            }
            other => other,
        }
    }

    /// One bucket per branch, each acting on the packet as it came; the rule runs
    /// the group holding exactly these buckets.
    fn group_actions(&mut self, m: &FlowMatch, seqs: &[Seq]) -> Result<Vec<Action>, LocalError> {
        let mut buckets = Vec::with_capacity(seqs.len());
        for s in seqs {
            let mut st = VState::new(m);
            let mut bucket = Vec::new();
            for (f, v) in s.iter().filter(|(f, _)| *f != HField::Port) {
                st.set(*f, *v, &mut bucket)?;
            }
            self.output(s, &mut bucket)?;
            buckets.push(bucket);
        }
        let next = u32::try_from(self.groups.len() + 1).map_err(|_| {
            LocalError::Unrepresentable("more groups than OpenFlow's 32-bit ids".into())
        })?;
        let sets_transport = buckets.iter().flatten().any(|a| {
            matches!(
                a,
                Action::SetField {
                    field: Field::L4Src | Field::L4Dst,
                    ..
                }
            )
        });
        let protocol = if sets_transport {
            m.exact(Field::IpProto)
        } else {
            None
        };
        let id = *self.groups.entry((protocol, buckets)).or_insert(next);
        Ok(vec![Action::Group(id)])
    }

    /// Appends the output of one branch (`port := n`, the ingress port when the
    /// branch leaves `port` alone, the controller for a pipe).
    fn output(&mut self, s: &Seq, out: &mut Vec<Action>) -> Result<(), LocalError> {
        match s.iter().find(|(f, _)| *f == HField::Port) {
            None => out.push(Action::output(port::IN_PORT)),
            Some((_, 0)) => self
                .warnings
                .push("`port := 0` is not an OpenFlow port; those packets are dropped".into()),
            Some((_, p)) if *p >= LOCATION_BASE => out.push(Action::output(port::CONTROLLER)),
            Some((_, p)) => {
                let p = u32::try_from(*p).map_err(|_| {
                    LocalError::Unrepresentable(format!("port {p} does not fit in 32 bits"))
                })?;
                out.push(Action::output(p));
            }
        }
        Ok(())
    }

    fn sequential_actions(
        &mut self,
        m: &FlowMatch,
        seqs: &[Seq],
    ) -> Result<Vec<Action>, LocalError> {
        let mut order: Vec<&Seq> = seqs.iter().collect();
        if order.len() > 1 {
            order.sort_by_cached_key(|s| {
                (
                    s.iter().filter(|(f, _)| *f != HField::Port).count(),
                    (*s).clone(),
                )
            });
        }
        let mut st = VState::new(m);
        let mut out = Vec::with_capacity(seqs.iter().map(|s| s.len() + 1).sum());
        for s in order {
            // A sequence is sorted by field, one value per field.
            let wanted = || s.iter().filter(|(f, _)| *f != HField::Port);
            // Restore what earlier branches changed and this one does not set.
            let stale: Vec<HField> = st
                .changed
                .keys()
                .copied()
                .filter(|f| !wanted().any(|(g, _)| g == f))
                .collect();
            // Restoring the tag restores its PCP too.
            let whole_tag = stale.contains(&HField::VlanVid);
            // No tag to write the PCP into yet: if this branch pushes one below
            // (the original was tagged), the PCP is put back after the push.
            let mut pcp_after_push = false;
            for f in stale {
                if f == HField::VlanPcp && st.tagged() == Some(false) && !whole_tag {
                    pcp_after_push = true;
                } else if !(whole_tag && f == HField::VlanPcp) {
                    st.restore(f, &mut out)?;
                }
            }
            for (f, v) in wanted() {
                st.set(*f, *v, &mut out)?;
            }
            // A branch that leaves the packet untagged has no PCP to put back.
            if pcp_after_push && st.tagged() == Some(true) {
                st.restore(HField::VlanPcp, &mut out)?;
            }
            self.output(s, &mut out)?;
        }
        Ok(out)
    }
}

/// What an action list has done to the packet so far.
struct VState {
    orig: FlowMatch,
    changed: BTreeMap<HField, u64>,
}

impl VState {
    fn new(m: &FlowMatch) -> VState {
        VState {
            orig: *m,
            changed: BTreeMap::new(),
        }
    }

    fn original(&self, f: HField) -> Option<u64> {
        if let Some((field, shift)) = ip6::half(f) {
            let (v, mask) = self.orig.get(field)?;
            return (ip6::bits_at(mask, shift) == u64::MAX).then(|| ip6::bits_at(v, shift));
        }
        field_of(f)
            .and_then(|g| self.orig.exact(g))
            .and_then(|v| u64::try_from(v).ok())
    }

    fn current(&self, f: HField) -> Option<u64> {
        self.changed.get(&f).copied().or_else(|| self.original(f))
    }

    fn tagged(&self) -> Option<bool> {
        if let Some(v) = self.changed.get(&HField::VlanVid) {
            return Some(*v != 0);
        }
        match self.orig.get(Field::VlanVid) {
            Some((v, m)) if m & u128::from(VLAN_PRESENT) != 0 => {
                Some(v & u128::from(VLAN_PRESENT) != 0)
            }
            _ => None,
        }
    }

    fn set(&mut self, f: HField, v: u64, out: &mut Vec<Action>) -> Result<(), LocalError> {
        if self.current(f) == Some(v) {
            return Ok(());
        }
        if let Some((field, _)) = ip6::half(f) {
            // One `set_field` for the whole address, once both halves are known
            // (an assignment writes both; a half the match pins is left out).
            self.changed.insert(f, v);
            if let Some(other) = self.current(ip6::other_half(f)) {
                out.push(Action::set(field, ip6::join(f, v, other)));
            }
            return Ok(());
        }
        let Some(field) = field_of(f) else {
            return Ok(());
        };
        match f {
            HField::VlanVid => {
                let tagged = self.tagged().ok_or_else(|| {
                    LocalError::Unrepresentable("the VLAN tag state is unknown".into())
                })?;
                if v == 0 {
                    if tagged {
                        out.push(Action::PopVlan);
                    }
                    self.changed.insert(HField::VlanPcp, 0);
                } else {
                    if !tagged {
                        out.push(Action::PushVlan(openflow::flow::ethertype::VLAN));
                    }
                    out.push(Action::set(field, u128::from(v)));
                }
            }
            HField::VlanPcp => {
                if self.tagged() == Some(false) {
                    // No tag: the assignment has no header to change.
                    return Ok(());
                }
                out.push(Action::set(field, u128::from(v)));
            }
            _ => out.push(Action::set(field, u128::from(v))),
        }
        self.changed.insert(f, v);
        Ok(())
    }

    fn restore(&mut self, f: HField, out: &mut Vec<Action>) -> Result<(), LocalError> {
        if f == HField::VlanVid {
            let orig_tagged = match self.orig.get(Field::VlanVid) {
                Some((v, m)) if m & u128::from(VLAN_PRESENT) != 0 => {
                    v & u128::from(VLAN_PRESENT) != 0
                }
                _ => {
                    return Err(LocalError::Unrepresentable(
                        "a branch changes the VLAN tag and a later branch needs the original"
                            .into(),
                    ))
                }
            };
            if !orig_tagged {
                if self.tagged() == Some(true) {
                    out.push(Action::PopVlan);
                }
                self.changed.remove(&HField::VlanVid);
                self.changed.remove(&HField::VlanPcp);
                return Ok(());
            }
            let (Some(vid), Some(pcp)) = (
                self.original(HField::VlanVid),
                self.original(HField::VlanPcp),
            ) else {
                return Err(LocalError::Unrepresentable(
                    "a branch changes the VLAN tag and a later branch needs the original, which the match does not pin".into(),
                ));
            };
            if self.tagged() == Some(false) {
                out.push(Action::PushVlan(openflow::flow::ethertype::VLAN));
            }
            out.push(Action::set(Field::VlanVid, u128::from(vid)));
            out.push(Action::set(Field::VlanPcp, u128::from(pcp)));
            self.changed.remove(&HField::VlanVid);
            self.changed.remove(&HField::VlanPcp);
            return Ok(());
        }
        if let (Some((field, _)), Some(v)) = (ip6::half(f), self.original(f)) {
            self.changed.remove(&f);
            let other = self.current(ip6::other_half(f)).ok_or_else(|| {
                LocalError::Unrepresentable(
                    "a branch changes an IPv6 address that the match does not pin".into(),
                )
            })?;
            out.push(Action::set(field, ip6::join(f, v, other)));
            return Ok(());
        }
        let Some(v) = self.original(f) else {
            return Err(LocalError::Unrepresentable(format!(
                "one branch changes {f:?} and a later branch of the same packet needs the original value, which the match does not pin (OpenFlow 1.3 copies such a packet only through a group, which this table may not use)"
            )));
        };
        if let Some(field) = field_of(f) {
            out.push(Action::set(field, u128::from(v)));
        }
        self.changed.remove(&f);
        Ok(())
    }
}

/// Minimal priorities, bottom-up; drops that hide nothing are left to table-miss.
/// `guards` are drop rules above all of `rules`: each sits just above the highest
/// rule it overlaps. They are not compared with each other (they all drop), which
/// keeps an ACL of n entries at n queries of the index of the other rules.
fn prioritise(
    rules: &mut Vec<Rule>,
    guards: &[FlowMatch],
    opts: TableOptions,
    idx: &mut OverlapIndex,
) -> Result<Vec<FlowSpec>, LocalError> {
    // The rules stay where they are (a rule is a few hundred bytes); the index
    // and the priorities refer to them by position.
    let mut kept: Vec<Placed> = Vec::with_capacity(rules.len());
    for (at, r) in rules.iter().enumerate().rev() {
        let (top, hides_forwarding) = below(idx, &kept, &r.matcher);
        if r.actions.is_empty() && !hides_forwarding {
            continue;
        }
        idx.insert(&r.matcher);
        kept.push(Placed {
            rule: at,
            prio: top.map_or(0, |t| t + 1),
            forwards: !r.actions.is_empty(),
        });
    }
    // Drop rules overlapping each other share one level (their order does not
    // matter), just above every rule any of them hides; rules a guard covers
    // completely can never match and are removed.
    let mut denied: Vec<FlowMatch> = Vec::new();
    let mut level: Option<u32> = None;
    let mut seen = FxHashSet::default();
    for m in guards {
        let (top, hides_forwarding) = below(idx, &kept, m);
        if hides_forwarding && seen.insert(*m) {
            level = level.max(top);
            denied.push(*m);
        }
    }
    if let Some(level) = level {
        let mut deny_idx = OverlapIndex::default();
        for m in &denied {
            deny_idx.insert(m);
        }
        kept.retain(|k| {
            let matcher = &rules[k.rule].matcher;
            let mut covered = false;
            deny_idx.for_overlapping(matcher, |i| covered |= denied[i].covers(matcher));
            !covered
        });
        // Reversed, because the table is read out in reverse: entries then keep the
        // order they were written in.
        for matcher in denied.into_iter().rev() {
            kept.push(Placed {
                rule: rules.len(),
                prio: level + 1,
                forwards: false,
            });
            rules.push(Rule {
                matcher,
                actions: Vec::new(),
            });
        }
    }
    let levels = kept.iter().map(|k| k.prio as usize + 1).max().unwrap_or(0);
    if levels + usize::from(opts.base_priority) > usize::from(u16::MAX) {
        return Err(LocalError::TooManyPriorities(levels));
    }
    // Highest priority first, and in reverse placing order within a level.
    kept.reverse();
    kept.sort_by_key(|k| std::cmp::Reverse(k.prio));
    let flows = kept
        .into_iter()
        .map(|k| {
            let prio = u16::try_from(k.prio)
                .unwrap_or(u16::MAX)
                .saturating_add(opts.base_priority);
            let r = &mut rules[k.rule];
            let mut f = FlowSpec::new(
                opts.table_id,
                prio,
                r.matcher,
                std::mem::take(&mut r.actions),
            );
            f.cookie = opts.cookie;
            f
        })
        .collect();
    Ok(flows)
}

/// A rule given its place in the table: its position among the generated rules
/// (or a guard's, after them), its priority level, whether it forwards.
struct Placed {
    rule: usize,
    prio: u32,
    forwards: bool,
}

/// The highest priority among the placed rules overlapping `m`, and whether one of
/// them forwards.
fn below(idx: &mut OverlapIndex, kept: &[Placed], m: &FlowMatch) -> (Option<u32>, bool) {
    let mut top: Option<u32> = None;
    let mut hides_forwarding = false;
    idx.for_overlapping(m, |i| {
        let k = &kept[i];
        top = Some(top.map_or(k.prio, |t| t.max(k.prio)));
        hides_forwarding |= k.forwards;
    });
    (top, hides_forwarding)
}
