//! The OpenFlow 1.3 pipeline of `scd`: flow tables, flow-mod semantics, counters,
//! timeouts and classification.
//!
//! This module owns which flow entry a packet hits and what the entries are. It is
//! I/O-free (time is passed in), so the controller's tests run the very same
//! classifier on compiled tables. It never touches frame bytes: classification works
//! on a [`FlowKey`], and the byte-level rewrite lives in `exec`.
//!
//! Entries live in a slab and are addressed by [`FlowId`]; each table keeps its ids in
//! priority order. Any change to the tables bumps [`Pipeline::generation`], which is
//! what the exact-match cache in `cache` uses to drop stale entries.
//!
//! Beside the flow tables sits the group table ([`GroupTable`]): all and indirect
//! groups whose buckets hold plain actions (a bucket never names a group, so a
//! group runs in one step). Group changes bump the same generation, since the
//! cache's decisions name groups whose buckets the executor looks up.

use crate::classifier::TupleSpace;
use openflow::flow::{
    apply_actions_with_groups, flags, port, Action, Bucket, FlowKey, FlowMatch, GroupSpec,
    GroupType, Instruction, GROUP_MAX,
};
use openflow::{FlowSpec, PortNo};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// `OFPTT_ALL`: a flow-mod delete or a stats request for every table.
pub const ALL_TABLES: u8 = 0xff;

/// Number of tables `scd` offers by default.
pub const DEFAULT_TABLES: u8 = 8;

/// Most entries a single table accepts (`OFPFMFC_TABLE_FULL` beyond).
pub const MAX_ENTRIES_PER_TABLE: usize = 1_000_000;

/// Why a flow-mod was refused (each maps onto an OpenFlow error code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// The table id is not one of the switch's tables.
    #[error("table {0} does not exist")]
    BadTableId(u8),
    /// Goto-table must point to a later, existing table.
    #[error("goto_table:{goto} from table {from} must name a later table below {limit}")]
    BadGoto {
        /// The table holding the instruction.
        from: u8,
        /// The table it points to.
        goto: u8,
        /// Number of tables.
        limit: u8,
    },
    /// An add with check-overlap collided with an entry of the same priority.
    #[error("flow overlaps an existing flow of priority {0} (check_overlap)")]
    Overlap(u16),
    /// The table is full.
    #[error("table {0} is full")]
    TableFull(u8),
    /// An output names a port that cannot be an output.
    #[error("output to port {0:#x} is not valid")]
    BadOutPort(PortNo),
    /// An instruction list with two of the same kind.
    #[error("instruction {0} appears twice")]
    DuplicateInstruction(&'static str),
    /// A group action names a group the switch does not have.
    #[error("group {0} does not exist")]
    BadOutGroup(u32),
}

/// Why a group-mod was refused (each maps onto an `OFPGMFC_*` code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// An add of a group id already in use.
    #[error("group {0} already exists")]
    Exists(u32),
    /// A modify or delete of a group that is not there.
    #[error("group {0} does not exist")]
    Unknown(u32),
    /// A group id above `OFPG_MAX`, or an indirect group without exactly one bucket.
    #[error("group {0}: {1}")]
    Invalid(u32, &'static str),
    /// A bucket names a group; scd runs groups in one step.
    #[error("group {0}: a bucket may not forward to a group")]
    ChainingUnsupported(u32),
    /// A bucket outputs to a port that cannot be an output.
    #[error("group {0}: output to port {1:#x} is not valid")]
    BadBucket(u32, PortNo),
    /// The group table is full.
    #[error("the group table is full ({0} groups)")]
    OutOfGroups(usize),
}

/// Most groups the switch holds (`OFPGMFC_OUT_OF_GROUPS` beyond).
pub const MAX_GROUPS: usize = 65_536;

/// The switch's groups by id, with their counters.
#[derive(Debug, Default)]
pub struct GroupTable {
    groups: HashMap<u32, GroupEntry>,
}

/// An installed group.
#[derive(Clone, Debug)]
pub struct GroupEntry {
    /// What the controller asked for.
    pub spec: GroupSpec,
    /// When it was added.
    pub installed: Instant,
}

impl GroupTable {
    /// The buckets of group `id`, if it exists.
    pub fn buckets(&self, id: u32) -> Option<&[Bucket]> {
        self.groups.get(&id).map(|g| g.spec.buckets.as_slice())
    }

    /// The group `id`, if it exists.
    pub fn get(&self, id: u32) -> Option<&GroupEntry> {
        self.groups.get(&id)
    }

    /// Every group, by increasing id.
    pub fn iter(&self) -> impl Iterator<Item = &GroupEntry> + '_ {
        let mut ids: Vec<&u32> = self.groups.keys().collect();
        ids.sort_unstable();
        ids.into_iter().filter_map(|id| self.groups.get(id))
    }

    /// Number of groups.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// True when there is no group.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    fn validate(spec: &GroupSpec) -> Result<(), GroupError> {
        let id = spec.group_id;
        if id > GROUP_MAX {
            return Err(GroupError::Invalid(id, "group ids end at 0xffffff00"));
        }
        if spec.group_type == GroupType::Indirect && spec.buckets.len() != 1 {
            return Err(GroupError::Invalid(
                id,
                "an indirect group has exactly one bucket",
            ));
        }
        for action in spec.buckets.iter().flat_map(|b| &b.actions) {
            match action {
                Action::Group(_) => return Err(GroupError::ChainingUnsupported(id)),
                Action::Output { port: p, .. } if !valid_output(*p) => {
                    return Err(GroupError::BadBucket(id, *p))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Whether a flow or a bucket may output to `p` (`TABLE` is for packet-outs only,
/// `NORMAL` has no meaning in scd).
fn valid_output(p: PortNo) -> bool {
    !(p == 0 || p == port::ANY || p == port::TABLE || p == port::NORMAL)
}

/// Stable handle of an installed entry, valid until the next table change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowId(u32);

/// An installed flow entry with its counters.
#[derive(Clone, Debug)]
pub struct FlowEntry {
    /// What the controller asked for.
    pub spec: FlowSpec,
    /// When the entry was installed (or last replaced by an add).
    pub installed: Instant,
    /// When a packet last hit it.
    pub last_hit: Instant,
    /// Packets that hit it.
    pub packets: u64,
    /// Bytes of those packets.
    pub bytes: u64,
}

impl FlowEntry {
    /// True when an apply-actions list of the entry runs group `group`.
    pub fn uses_group(&self, group: u32) -> bool {
        self.spec.instructions.iter().any(|i| match i {
            Instruction::ApplyActions(acts) => acts
                .iter()
                .any(|a| matches!(a, Action::Group(g) if *g == group)),
            Instruction::GotoTable(_) => false,
        })
    }

    fn outputs_to(&self, out_port: PortNo) -> bool {
        out_port == port::ANY
            || self.spec.instructions.iter().any(|i| match i {
                Instruction::ApplyActions(acts) => acts
                    .iter()
                    .any(|a| matches!(a, Action::Output { port, .. } if *port == out_port)),
                Instruction::GotoTable(_) => false,
            })
    }

    /// Why and whether the entry has expired at `now`.
    pub fn expiry(&self, now: Instant) -> Option<RemovedReason> {
        let idle = u64::from(self.spec.idle_timeout);
        let hard = u64::from(self.spec.hard_timeout);
        if hard != 0 && now.saturating_duration_since(self.installed) >= Duration::from_secs(hard) {
            return Some(RemovedReason::HardTimeout);
        }
        if idle != 0 && now.saturating_duration_since(self.last_hit) >= Duration::from_secs(idle) {
            return Some(RemovedReason::IdleTimeout);
        }
        None
    }
}

/// Why an entry left the table (`ofp_flow_removed_reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemovedReason {
    /// Idle timeout.
    IdleTimeout,
    /// Hard timeout.
    HardTimeout,
    /// Deleted by a flow-mod.
    Delete,
    /// The group it runs was deleted.
    GroupDelete,
}

/// An entry that left the table, for flow-removed messages.
#[derive(Clone, Debug)]
pub struct RemovedFlow {
    /// The entry as it was, with its final counters.
    pub entry: FlowEntry,
    /// Why it left.
    pub reason: RemovedReason,
}

/// Per-table counters (`ofp_table_stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Packets looked up in this table.
    pub lookups: u64,
    /// Packets that hit an entry.
    pub matched: u64,
}

#[derive(Debug, Default)]
struct FlowTable {
    /// Entry ids, highest priority first; among equal priorities, oldest first.
    order: Vec<FlowId>,
    /// The same entries, grouped by mask for lookups.
    space: TupleSpace,
    stats: TableStats,
}

/// Which entries a modify or delete applies to.
#[derive(Clone, Copy, Debug)]
pub struct Selector<'a> {
    /// Table, or [`ALL_TABLES`].
    pub table_id: u8,
    /// The match of the flow-mod.
    pub matcher: &'a FlowMatch,
    /// `Some(priority)` for the strict variants: identical match and priority.
    pub strict_priority: Option<u16>,
    /// Only entries whose `cookie & cookie_mask == cookie & cookie_mask`.
    pub cookie: u64,
    /// Mask for `cookie` (0 = any cookie).
    pub cookie_mask: u64,
    /// Only entries with an output to this port ([`port::ANY`] = no filter).
    pub out_port: PortNo,
    /// Only entries that run this group (`OFPG_ANY` = no filter).
    pub out_group: u32,
}

impl<'a> Selector<'a> {
    /// Every entry covered by `matcher` in `table_id`, whatever its cookie or outputs.
    pub fn loose(table_id: u8, matcher: &'a FlowMatch) -> Selector<'a> {
        Selector {
            table_id,
            matcher,
            strict_priority: None,
            cookie: 0,
            cookie_mask: 0,
            out_port: port::ANY,
            out_group: openflow::flow::GROUP_ANY,
        }
    }

    /// The entry with exactly this match and priority in `table_id`.
    pub fn strict(table_id: u8, matcher: &'a FlowMatch, priority: u16) -> Selector<'a> {
        Selector {
            strict_priority: Some(priority),
            ..Selector::loose(table_id, matcher)
        }
    }

    fn selects(&self, entry: &FlowEntry) -> bool {
        let by_match = match self.strict_priority {
            Some(prio) => entry.spec.priority == prio && entry.spec.matcher == *self.matcher,
            None => self.matcher.covers(&entry.spec.matcher),
        };
        by_match
            && (entry.spec.cookie & self.cookie_mask) == (self.cookie & self.cookie_mask)
            && entry.outputs_to(self.out_port)
            && (self.out_group == openflow::flow::GROUP_ANY || entry.uses_group(self.out_group))
    }
}

/// The result of classifying one packet: its actions in execution order and the
/// entries it hit (for counters). Reused across packets to avoid allocation.
#[derive(Debug, Default, Clone)]
pub struct Classification {
    /// Every apply-actions list of every table hit, flattened in order.
    pub actions: Vec<Action>,
    /// Entries hit, one per table traversed.
    pub hits: Vec<FlowId>,
    /// Tables looked up, with whether an entry matched.
    pub tables: Vec<(u8, bool)>,
}

impl Classification {
    /// Empties the classification, keeping its allocations.
    pub fn clear(&mut self) {
        self.actions.clear();
        self.hits.clear();
        self.tables.clear();
    }
}

/// The switch's tables.
#[derive(Debug)]
pub struct Pipeline {
    slab: Vec<Option<FlowEntry>>,
    free: Vec<u32>,
    tables: Vec<FlowTable>,
    /// Entries by (table, priority, match): OpenFlow's identity of a flow, so an add
    /// finds the entry it replaces without scanning the table.
    identity: HashMap<(u8, u16, FlowMatch), FlowId>,
    /// Age of entries, for ties between equal priorities (older wins).
    next_seq: u64,
    generation: u64,
    groups: GroupTable,
}

impl Default for Pipeline {
    fn default() -> Self {
        Pipeline::new(DEFAULT_TABLES)
    }
}

impl Pipeline {
    /// An empty pipeline with `n_tables` tables (at least one).
    pub fn new(n_tables: u8) -> Pipeline {
        Pipeline {
            slab: Vec::new(),
            free: Vec::new(),
            tables: (0..n_tables.max(1)).map(|_| FlowTable::default()).collect(),
            identity: HashMap::new(),
            next_seq: 0,
            generation: 0,
            groups: GroupTable::default(),
        }
    }

    /// A pipeline holding exactly these entries (added in order, as flow-mod adds),
    /// with enough tables for every table id and goto they use.
    pub fn from_flows(flows: impl IntoIterator<Item = FlowSpec>) -> Result<Pipeline, TableError> {
        Pipeline::from_groups_and_flows(Vec::new(), flows)
    }

    /// [`Self::from_flows`] with these groups added first (as group-mod adds), so the
    /// flows may run them. A refused group is reported as the flow error a flow
    /// naming it would get.
    pub fn from_groups_and_flows(
        groups: impl IntoIterator<Item = GroupSpec>,
        flows: impl IntoIterator<Item = FlowSpec>,
    ) -> Result<Pipeline, TableError> {
        let flows: Vec<FlowSpec> = flows.into_iter().collect();
        let max_table = flows
            .iter()
            .flat_map(|f| {
                std::iter::once(f.table_id).chain(f.instructions.iter().filter_map(|i| match i {
                    Instruction::GotoTable(t) => Some(*t),
                    Instruction::ApplyActions(_) => None,
                }))
            })
            .max()
            .unwrap_or(0);
        let mut pipeline = Pipeline::new(max_table.saturating_add(1).max(DEFAULT_TABLES));
        let now = Instant::now();
        for group in groups {
            let id = group.group_id;
            pipeline
                .add_group(group, now)
                .map_err(|_| TableError::BadOutGroup(id))?;
        }
        for flow in flows {
            pipeline.add(flow, now)?;
        }
        Ok(pipeline)
    }

    /// Number of tables.
    pub fn n_tables(&self) -> u8 {
        u8::try_from(self.tables.len()).unwrap_or(u8::MAX)
    }

    /// The group table.
    pub fn groups(&self) -> &GroupTable {
        &self.groups
    }

    /// Group-mod add: a new group; an id in use is refused (`OFPGMFC_GROUP_EXISTS`).
    pub fn add_group(&mut self, spec: GroupSpec, now: Instant) -> Result<(), GroupError> {
        GroupTable::validate(&spec)?;
        let id = spec.group_id;
        if self.groups.groups.contains_key(&id) {
            return Err(GroupError::Exists(id));
        }
        if self.groups.groups.len() >= MAX_GROUPS {
            return Err(GroupError::OutOfGroups(MAX_GROUPS));
        }
        self.groups.groups.insert(
            id,
            GroupEntry {
                spec,
                installed: now,
            },
        );
        self.generation += 1;
        Ok(())
    }

    /// Group-mod modify: new type and buckets for an existing group
    /// (`OFPGMFC_UNKNOWN_GROUP` when there is none). Flows using it keep using it.
    pub fn modify_group(&mut self, spec: GroupSpec) -> Result<(), GroupError> {
        GroupTable::validate(&spec)?;
        let Some(entry) = self.groups.groups.get_mut(&spec.group_id) else {
            return Err(GroupError::Unknown(spec.group_id));
        };
        entry.spec = spec;
        self.generation += 1;
        Ok(())
    }

    /// Group-mod delete of `group_id` (or of every group, with `OFPG_ALL`): the
    /// groups go, and so do the flows that run them (OpenFlow 1.3 §6.5), which are
    /// returned for flow-removed messages. Deleting a group that is not there is
    /// not an error.
    pub fn delete_group(&mut self, group_id: u32) -> Vec<RemovedFlow> {
        let doomed: Vec<u32> = if group_id == openflow::flow::GROUP_ALL {
            self.groups.groups.keys().copied().collect()
        } else if self.groups.groups.contains_key(&group_id) {
            vec![group_id]
        } else {
            return Vec::new();
        };
        for id in &doomed {
            self.groups.groups.remove(id);
        }
        self.generation += 1;
        let users: Vec<FlowId> = self
            .tables
            .iter()
            .flat_map(|t| t.order.iter().copied())
            .filter(|id| {
                self.entry(*id)
                    .is_some_and(|e| doomed.iter().any(|g| e.uses_group(*g)))
            })
            .collect();
        self.remove_ids(&users, |_| RemovedReason::GroupDelete)
    }

    /// Changes whenever any entry or group is added, changed or removed.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Number of installed entries.
    pub fn len(&self) -> usize {
        self.tables.iter().map(|t| t.order.len()).sum()
    }

    /// True when no entry is installed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries of one table in priority order.
    pub fn entries(&self, table_id: u8) -> impl Iterator<Item = &FlowEntry> + '_ {
        self.tables
            .get(usize::from(table_id))
            .into_iter()
            .flat_map(|t| t.order.iter())
            .filter_map(|id| self.entry(*id))
    }

    /// Counters of one table.
    pub fn table_stats(&self, table_id: u8) -> Option<TableStats> {
        self.tables.get(usize::from(table_id)).map(|t| t.stats)
    }

    /// The entry behind an id.
    pub fn entry(&self, id: FlowId) -> Option<&FlowEntry> {
        self.slab.get(id.0 as usize).and_then(Option::as_ref)
    }

    fn validate(&self, spec: &FlowSpec) -> Result<(), TableError> {
        let limit = self.n_tables();
        if spec.table_id >= limit {
            return Err(TableError::BadTableId(spec.table_id));
        }
        let (mut applies, mut gotos) = (0, 0);
        for instruction in &spec.instructions {
            match instruction {
                Instruction::GotoTable(goto) => {
                    gotos += 1;
                    if *goto <= spec.table_id || *goto >= limit {
                        return Err(TableError::BadGoto {
                            from: spec.table_id,
                            goto: *goto,
                            limit,
                        });
                    }
                }
                Instruction::ApplyActions(actions) => {
                    applies += 1;
                    for action in actions {
                        match action {
                            Action::Output { port: p, .. } if !valid_output(*p) => {
                                return Err(TableError::BadOutPort(*p));
                            }
                            Action::Group(g) if self.groups.get(*g).is_none() => {
                                return Err(TableError::BadOutGroup(*g));
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
        if applies > 1 {
            return Err(TableError::DuplicateInstruction("apply_actions"));
        }
        if gotos > 1 {
            return Err(TableError::DuplicateInstruction("goto_table"));
        }
        Ok(())
    }

    /// Flow-mod add (OpenFlow 1.3 §6.4): an entry with identical match and priority is
    /// replaced, counters and all; with `CHECK_OVERLAP`, an overlapping entry of the
    /// same priority refuses the add.
    pub fn add(&mut self, spec: FlowSpec, now: Instant) -> Result<FlowId, TableError> {
        self.validate(&spec)?;
        let table = usize::from(spec.table_id);
        if spec.flags & flags::CHECK_OVERLAP != 0 {
            let clash = self.tables[table].order.iter().any(|id| {
                self.entry(*id).is_some_and(|e| {
                    e.spec.priority == spec.priority
                        && e.spec.matcher != spec.matcher
                        && e.spec.matcher.overlaps(&spec.matcher)
                })
            });
            if clash {
                return Err(TableError::Overlap(spec.priority));
            }
        }
        let entry = FlowEntry {
            spec,
            installed: now,
            last_hit: now,
            packets: 0,
            bytes: 0,
        };
        let identity = (entry.spec.table_id, entry.spec.priority, entry.spec.matcher);
        let existing = self.identity.get(&identity).copied();
        self.generation += 1;
        if let Some(id) = existing {
            self.slab[id.0 as usize] = Some(entry);
            return Ok(id);
        }
        if self.tables[table].order.len() >= MAX_ENTRIES_PER_TABLE {
            return Err(TableError::TableFull(entry.spec.table_id));
        }
        let priority = entry.spec.priority;
        let id = match self.free.pop() {
            Some(slot) => {
                self.slab[slot as usize] = Some(entry);
                FlowId(slot)
            }
            None => {
                let slot = u32::try_from(self.slab.len()).map_err(|_| TableError::TableFull(0))?;
                self.slab.push(Some(entry));
                FlowId(slot)
            }
        };
        // Insert after every entry of higher or equal priority (stable for equals).
        let order = &self.tables[table].order;
        let slab = &self.slab;
        let pos = order.partition_point(|other| {
            slab[other.0 as usize]
                .as_ref()
                .is_some_and(|e| e.spec.priority >= priority)
        });
        self.tables[table].order.insert(pos, id);
        self.next_seq += 1;
        self.tables[table]
            .space
            .insert(&identity.2, priority, self.next_seq, id);
        self.identity.insert(identity, id);
        Ok(id)
    }

    fn selected_ids(&self, selector: &Selector<'_>) -> Vec<FlowId> {
        let tables: Vec<usize> = if selector.table_id == ALL_TABLES {
            (0..self.tables.len()).collect()
        } else {
            vec![usize::from(selector.table_id)]
        };
        tables
            .into_iter()
            .filter_map(|t| self.tables.get(t))
            .flat_map(|t| t.order.iter().copied())
            .filter(|id| self.entry(*id).is_some_and(|e| selector.selects(e)))
            .collect()
    }

    /// Flow-mod modify / modify-strict: replaces the instructions (and, when
    /// `reset_counts` is set, the counters) of the selected entries. Returns how many
    /// entries changed.
    pub fn modify(
        &mut self,
        selector: &Selector<'_>,
        instructions: &[Instruction],
        reset_counts: bool,
    ) -> Result<usize, TableError> {
        if selector.table_id != ALL_TABLES && selector.table_id >= self.n_tables() {
            return Err(TableError::BadTableId(selector.table_id));
        }
        let ids = self.selected_ids(selector);
        for id in &ids {
            let Some(entry) = self.entry(*id) else {
                continue;
            };
            let probe = FlowSpec {
                instructions: instructions.to_vec(),
                ..entry.spec.clone()
            };
            self.validate(&probe)?;
        }
        for id in &ids {
            if let Some(entry) = self.slab[id.0 as usize].as_mut() {
                entry.spec.instructions = instructions.to_vec();
                if reset_counts {
                    entry.packets = 0;
                    entry.bytes = 0;
                }
            }
        }
        if !ids.is_empty() {
            self.generation += 1;
        }
        Ok(ids.len())
    }

    /// Flow-mod delete / delete-strict: removes the selected entries.
    pub fn delete(&mut self, selector: &Selector<'_>) -> Result<Vec<RemovedFlow>, TableError> {
        if selector.table_id != ALL_TABLES && selector.table_id >= self.n_tables() {
            return Err(TableError::BadTableId(selector.table_id));
        }
        let ids = self.selected_ids(selector);
        Ok(self.remove_ids(&ids, |_| RemovedReason::Delete))
    }

    fn remove_ids(
        &mut self,
        ids: &[FlowId],
        reason: impl Fn(&FlowEntry) -> RemovedReason,
    ) -> Vec<RemovedFlow> {
        if ids.is_empty() {
            return Vec::new();
        }
        let mut removed = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(entry) = self.slab[id.0 as usize].take() {
                self.free.push(id.0);
                let spec = &entry.spec;
                self.identity
                    .remove(&(spec.table_id, spec.priority, spec.matcher));
                if let Some(t) = self.tables.get_mut(usize::from(spec.table_id)) {
                    t.space.remove(&spec.matcher, spec.priority, *id);
                }
                let reason = reason(&entry);
                removed.push(RemovedFlow { entry, reason });
            }
        }
        let slab = &self.slab;
        for table in &mut self.tables {
            table.order.retain(|id| slab[id.0 as usize].is_some());
        }
        self.generation += 1;
        removed
    }

    /// Removes every entry whose idle or hard timeout has passed.
    pub fn expire(&mut self, now: Instant) -> Vec<RemovedFlow> {
        let expired: Vec<FlowId> = self
            .tables
            .iter()
            .flat_map(|t| t.order.iter().copied())
            .filter(|id| self.entry(*id).is_some_and(|e| e.expiry(now).is_some()))
            .collect();
        self.remove_ids(&expired, |e| {
            e.expiry(now).unwrap_or(RemovedReason::HardTimeout)
        })
    }

    /// Looks a packet up in one table: the highest-priority matching entry.
    fn lookup(&self, table: usize, key: &FlowKey) -> Option<FlowId> {
        self.tables[table].space.lookup(key)
    }

    /// Runs a packet through the tables, from table 0, following goto-table, with
    /// each table matching on the packet as earlier apply-actions left it (OpenFlow
    /// 1.3 §5.1). A packet that misses a table with no table-miss entry is dropped:
    /// its classification then ends there. Counters are not touched; see [`Self::account`].
    pub fn classify(&self, key: &FlowKey, out: &mut Classification) {
        out.clear();
        let mut current = *key;
        let mut scratch = Vec::new();
        let mut table = 0usize;
        loop {
            let hit = self.lookup(table, &current);
            out.tables
                .push((u8::try_from(table).unwrap_or(u8::MAX), hit.is_some()));
            let Some(id) = hit else { return };
            out.hits.push(id);
            let Some(entry) = self.entry(id) else { return };
            let mut next = None;
            for instruction in &entry.spec.instructions {
                match instruction {
                    Instruction::ApplyActions(actions) => {
                        out.actions.extend_from_slice(actions);
                        scratch.clear();
                        // Groups act on copies: only the list's own changes reach
                        // the next table, so no group is looked up here.
                        apply_actions_with_groups(actions, &mut current, &mut scratch, &|_| None);
                    }
                    Instruction::GotoTable(t) => next = Some(usize::from(*t)),
                }
            }
            match next {
                Some(t) if t > table && t < self.tables.len() => table = t,
                _ => return,
            }
        }
    }

    /// Adds one packet of `len` bytes to the counters of what it hit.
    pub fn account(&mut self, hits: &[FlowId], tables: &[(u8, bool)], len: usize, now: Instant) {
        for id in hits {
            if let Some(entry) = self.slab.get_mut(id.0 as usize).and_then(Option::as_mut) {
                entry.packets += 1;
                entry.bytes += len as u64;
                entry.last_hit = now;
            }
        }
        for (table, matched) in tables {
            if let Some(t) = self.tables.get_mut(usize::from(*table)) {
                t.stats.lookups += 1;
                t.stats.matched += u64::from(*matched);
            }
        }
    }

    /// The packets that leave, by output port, when `key` enters the pipeline:
    /// classification plus the abstract meaning of the actions. Reserved ports are
    /// reported as they are (`IN_PORT`, `CONTROLLER`, `FLOOD`...); every bucket of a
    /// group runs on its own copy of the key. Pure: no counters.
    pub fn simulate(&self, key: &FlowKey) -> Vec<(PortNo, FlowKey)> {
        let mut classification = Classification::default();
        self.classify(key, &mut classification);
        let mut current = *key;
        let mut out = Vec::new();
        apply_actions_with_groups(&classification.actions, &mut current, &mut out, &|id| {
            self.groups.buckets(id)
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openflow::flow::{Field, FlowMatch};
    use proptest::prelude::Just;

    fn any_u32() -> impl proptest::strategy::Strategy<Value = u32> {
        // Few distinct addresses, so prefixes overlap often.
        proptest::prelude::prop_oneof![
            Just(0x6440_0001u32),
            Just(0x6440_0102),
            Just(0x6440_ff01),
            Just(0x0a00_0001)
        ]
    }

    fn key(in_port: u32, dst: u32) -> FlowKey {
        FlowKey {
            in_port,
            eth_type: 0x800,
            ipv4_dst: dst,
            ..FlowKey::default()
        }
    }

    fn out(p: u32) -> Vec<Action> {
        vec![Action::output(p)]
    }

    #[test]
    fn highest_priority_wins_and_miss_drops() {
        let now = Instant::now();
        let mut p = Pipeline::default();
        let ip = FlowMatch::any().with(Field::EthType, 0x800);
        p.add(FlowSpec::new(0, 10, ip, out(1)), now).unwrap();
        p.add(
            FlowSpec::new(0, 20, ip.with_prefix32(Field::Ipv4Dst, 5, 32), out(2)),
            now,
        )
        .unwrap();
        assert_eq!(p.simulate(&key(9, 5))[0].0, 2);
        assert_eq!(p.simulate(&key(9, 6))[0].0, 1);
        let arp = FlowKey {
            eth_type: 0x806,
            ..FlowKey::default()
        };
        assert!(p.simulate(&arp).is_empty());
    }

    #[test]
    fn goto_matches_rewritten_packet() {
        let now = Instant::now();
        let mut p = Pipeline::default();
        let mut first = FlowSpec::new(0, 1, FlowMatch::any(), vec![Action::set(Field::Ipv4Dst, 7)]);
        first.instructions.push(Instruction::GotoTable(3));
        p.add(first, now).unwrap();
        p.add(
            FlowSpec::new(3, 1, FlowMatch::any().with(Field::Ipv4Dst, 7), out(4)),
            now,
        )
        .unwrap();
        let result = p.simulate(&key(1, 1));
        assert_eq!(result.len(), 1);
        assert_eq!(result[0].0, 4);
        assert_eq!(result[0].1.ipv4_dst, 7);
    }

    #[test]
    fn backward_goto_is_refused() {
        let mut spec = FlowSpec::new(2, 1, FlowMatch::any(), vec![]);
        spec.instructions.push(Instruction::GotoTable(1));
        let err = Pipeline::default().add(spec, Instant::now()).unwrap_err();
        assert!(matches!(err, TableError::BadGoto { .. }));
    }

    #[test]
    fn add_replaces_identical_and_check_overlap_refuses() {
        let now = Instant::now();
        let mut p = Pipeline::default();
        let m = FlowMatch::any().with(Field::InPort, 1);
        p.add(FlowSpec::new(0, 5, m, out(1)), now).unwrap();
        p.add(FlowSpec::new(0, 5, m, out(2)), now).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p.simulate(&key(1, 0))[0].0, 2);
        let mut overlapping =
            FlowSpec::new(0, 5, FlowMatch::any().with(Field::EthType, 0x800), out(3));
        overlapping.flags = flags::CHECK_OVERLAP;
        assert_eq!(p.add(overlapping, now), Err(TableError::Overlap(5)));
    }

    #[test]
    fn delete_and_modify_select_by_cover_cookie_and_out_port() {
        let now = Instant::now();
        let mut p = Pipeline::default();
        for (i, port) in [(1u32, 10u32), (2, 20), (3, 10)] {
            let mut spec = FlowSpec::new(
                0,
                1,
                FlowMatch::any().with(Field::InPort, i.into()),
                out(port),
            );
            spec.cookie = u64::from(i);
            p.add(spec, now).unwrap();
        }
        let gen = p.generation();
        let any = FlowMatch::any();
        let mut by_port = Selector::loose(ALL_TABLES, &any);
        by_port.out_port = 10;
        assert_eq!(p.delete(&by_port).unwrap().len(), 2);
        assert!(p.generation() > gen);
        assert_eq!(p.len(), 1);
        let mut by_cookie = Selector::loose(0, &any);
        by_cookie.cookie = 2;
        by_cookie.cookie_mask = u64::MAX;
        let changed = p
            .modify(&by_cookie, &[Instruction::ApplyActions(out(30))], false)
            .unwrap();
        assert_eq!(changed, 1);
        assert_eq!(p.simulate(&key(2, 0))[0].0, 30);
        let m = FlowMatch::any().with(Field::InPort, 2);
        assert_eq!(p.delete(&Selector::strict(0, &m, 2)).unwrap().len(), 0);
        assert_eq!(p.delete(&Selector::strict(0, &m, 1)).unwrap().len(), 1);
        assert!(p.is_empty());
    }

    /// The reference: the first entry in priority order (oldest first) that matches.
    fn linear(p: &Pipeline, key: &FlowKey) -> Option<FlowId> {
        p.tables[0]
            .order
            .iter()
            .copied()
            .find(|id| p.entry(*id).is_some_and(|e| e.spec.matcher.matches(key)))
    }

    proptest::proptest! {
        // Tuple-space search picks exactly the entry a linear scan in priority and
        // insertion order picks, whatever the masks, priorities and deletions.
        #[test]
        fn tuple_space_agrees_with_a_linear_scan(
            rules in proptest::collection::vec((0u16..4, 0u8..4, any_u32(), 0u8..33, proptest::option::of(0u16..4)), 1..40),
            deletes in proptest::collection::vec(0usize..40, 0..10),
            keys in proptest::collection::vec((any_u32(), 0u16..4, 0u32..3), 1..40),
        ) {
            let now = Instant::now();
            let mut p = Pipeline::default();
            for (prio, shape, addr, len, l4) in &rules {
                let mut m = FlowMatch::any().with(Field::EthType, 0x800);
                if shape & 1 != 0 {
                    m = m.with_prefix32(Field::Ipv4Dst, *addr, *len);
                }
                if shape & 2 != 0 {
                    m = m.with(Field::InPort, u128::from(*addr % 3));
                }
                if let Some(port) = l4 {
                    m = m.with(Field::L4Dst, u128::from(*port));
                }
                p.add(FlowSpec::new(0, *prio, m, out(u32::from(*prio) + 1)), now).unwrap();
            }
            let ids: Vec<FlowId> = p.tables[0].order.clone();
            for d in deletes {
                if let Some(id) = ids.get(d) {
                    if let Some(e) = p.entry(*id) {
                        let m = e.spec.matcher;
                        let prio = e.spec.priority;
                        p.delete(&Selector::strict(0, &m, prio)).unwrap();
                    }
                }
            }
            for (dst, port, in_port) in keys {
                let key = FlowKey { in_port, eth_type: 0x800, ipv4_dst: dst, l4_dst: port, ..FlowKey::default() };
                proptest::prop_assert_eq!(p.lookup(0, &key), linear(&p, &key));
            }
        }

        // Adds replace by (table, priority, match), deletes remove: the table always
        // holds exactly one entry per identity, with the last add's actions.
        #[test]
        fn one_entry_per_identity(ops in proptest::collection::vec((0u8..3, 0u16..3, 0u32..3, 0u32..9), 1..80)) {
            let now = Instant::now();
            let mut p = Pipeline::default();
            let mut model = std::collections::HashMap::new();
            for (op, prio, in_port, outp) in ops {
                let m = FlowMatch::any().with(Field::InPort, in_port.into());
                if op == 0 {
                    p.delete(&Selector::strict(0, &m, prio)).unwrap();
                    model.remove(&(prio, in_port));
                } else {
                    p.add(FlowSpec::new(0, prio, m, out(outp + 1)), now).unwrap();
                    model.insert((prio, in_port), outp + 1);
                }
                proptest::prop_assert_eq!(p.len(), model.len());
            }
            for e in p.entries(0) {
                let in_port = u32::try_from(e.spec.matcher.exact(Field::InPort).unwrap()).unwrap();
                let want = model[&(e.spec.priority, in_port)];
                proptest::prop_assert_eq!(&e.spec.instructions, &vec![Instruction::ApplyActions(out(want))]);
            }
        }
    }

    #[test]
    fn timeouts_expire_entries() {
        let now = Instant::now();
        let mut p = Pipeline::default();
        let mut idle = FlowSpec::new(0, 1, FlowMatch::any().with(Field::InPort, 1), out(1));
        idle.idle_timeout = 2;
        let mut hard = FlowSpec::new(0, 1, FlowMatch::any().with(Field::InPort, 2), out(1));
        hard.hard_timeout = 5;
        let idle_id = p.add(idle, now).unwrap();
        p.add(hard, now).unwrap();
        p.account(&[idle_id], &[(0, true)], 100, now + Duration::from_secs(1));
        assert!(p.expire(now + Duration::from_secs(2)).is_empty());
        let gone = p.expire(now + Duration::from_secs(3));
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].reason, RemovedReason::IdleTimeout);
        assert_eq!(gone[0].entry.packets, 1);
        assert_eq!(gone[0].entry.bytes, 100);
        let gone = p.expire(now + Duration::from_secs(5));
        assert_eq!(gone[0].reason, RemovedReason::HardTimeout);
        assert_eq!(p.table_stats(0).unwrap().lookups, 1);
    }

    fn all_group(id: u32, buckets: Vec<Vec<Action>>) -> GroupSpec {
        GroupSpec {
            group_id: id,
            group_type: GroupType::All,
            buckets: buckets.into_iter().map(Bucket::new).collect(),
        }
    }

    #[test]
    fn group_mods_follow_the_openflow_rules() {
        let now = Instant::now();
        let mut p = Pipeline::default();
        let g = all_group(1, vec![out(1), out(2)]);
        let before = p.generation();
        p.add_group(g.clone(), now).unwrap();
        assert!(p.generation() > before);
        assert_eq!(p.add_group(g.clone(), now), Err(GroupError::Exists(1)));
        assert_eq!(
            p.modify_group(all_group(2, vec![out(1)])),
            Err(GroupError::Unknown(2))
        );
        let chained = all_group(3, vec![vec![Action::Group(1)]]);
        assert_eq!(
            p.add_group(chained, now),
            Err(GroupError::ChainingUnsupported(3))
        );
        let indirect = GroupSpec {
            group_type: GroupType::Indirect,
            ..all_group(4, vec![out(1), out(2)])
        };
        assert!(matches!(
            p.add_group(indirect, now),
            Err(GroupError::Invalid(4, _))
        ));
        assert!(matches!(
            p.add_group(all_group(GROUP_MAX + 1, vec![]), now),
            Err(GroupError::Invalid(..))
        ));
        assert_eq!(
            p.add_group(all_group(5, vec![out(port::TABLE)]), now),
            Err(GroupError::BadBucket(5, port::TABLE))
        );
        // A flow may name only an existing group.
        let uses = |g: u32| FlowSpec::new(0, 1, FlowMatch::any(), vec![Action::Group(g)]);
        assert_eq!(p.add(uses(9), now), Err(TableError::BadOutGroup(9)));
        let before = p.generation();
        p.modify_group(all_group(1, vec![out(3)])).unwrap();
        assert!(p.generation() > before, "the cache must forget old buckets");
        assert_eq!(p.groups().buckets(1).unwrap(), &[Bucket::new(out(3))]);
    }

    #[test]
    fn deleting_a_group_deletes_the_flows_that_run_it() {
        let now = Instant::now();
        let mut p = Pipeline::default();
        p.add_group(all_group(1, vec![out(1)]), now).unwrap();
        p.add_group(all_group(2, vec![out(2)]), now).unwrap();
        let by_port = |i: u32, g: u32| {
            FlowSpec::new(
                0,
                1,
                FlowMatch::any().with(Field::InPort, u128::from(i)),
                vec![Action::Group(g)],
            )
        };
        p.add(by_port(1, 1), now).unwrap();
        p.add(by_port(2, 2), now).unwrap();
        p.add(FlowSpec::new(0, 0, FlowMatch::any(), out(3)), now)
            .unwrap();
        let gone = p.delete_group(1);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].reason, RemovedReason::GroupDelete);
        assert_eq!(gone[0].entry.spec, by_port(1, 1));
        assert!(p.groups().get(1).is_none());
        assert!(p.delete_group(1).is_empty(), "an absent group is no error");
        let gone = p.delete_group(openflow::flow::GROUP_ALL);
        assert_eq!(gone.len(), 1);
        assert!(p.groups().is_empty());
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn simulate_runs_every_bucket_on_a_copy_and_goto_sees_the_original() {
        let now = Instant::now();
        let mut p = Pipeline::default();
        p.add_group(
            all_group(
                1,
                vec![
                    vec![Action::set(Field::Ipv4Src, 9), Action::output(1)],
                    vec![Action::set(Field::Ipv4Dst, 8), Action::output(2)],
                ],
            ),
            now,
        )
        .unwrap();
        let mut first = FlowSpec::new(0, 1, FlowMatch::any(), vec![Action::Group(1)]);
        first.instructions.push(Instruction::GotoTable(1));
        p.add(first, now).unwrap();
        p.add(
            FlowSpec::new(1, 1, FlowMatch::any().with(Field::Ipv4Dst, 5), out(3)),
            now,
        )
        .unwrap();
        let k = key(7, 5);
        let got = p.simulate(&k);
        let ports: Vec<PortNo> = got.iter().map(|(p, _)| *p).collect();
        assert_eq!(ports, vec![1, 2, 3]);
        assert_eq!((got[0].1.ipv4_src, got[0].1.ipv4_dst), (9, 5));
        assert_eq!((got[1].1.ipv4_src, got[1].1.ipv4_dst), (0, 8));
        assert_eq!(got[2].1, k);
    }
}
