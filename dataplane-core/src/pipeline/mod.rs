//! The OpenFlow 1.3 pipeline of `scd`: flow tables, flow-mod semantics, counters,
//! timeouts and classification.
//!
//! This module owns which flow entry a packet hits and what the entries are. It is
//! I/O-free (time is passed in), so the controller's tests run the very same
//! classifier on compiled tables. It never touches frame bytes: classification works
//! on a [`FlowKey`], and the byte-level rewrite lives in `exec`.
//!
//! Entries live in a slab and are addressed by [`FlowId`]; each table keeps them in
//! priority order, in its identity index and in its classifier (`table`), so strict
//! flow-mods cost the same at any table size. Any change to the tables bumps
//! [`Pipeline::generation`], which is what the caches (`cache`, `megaflow`) use to
//! drop stale entries.
//!
//! Counters are shared atomics (see `entry`), so the pipeline can be read and
//! counted on through a shared reference: `scd` changes its own copy on a control
//! thread and hands clones to the forwarding thread as immutable snapshots.
//!
//! Beside the flow tables sits the group table ([`GroupTable`]): all and indirect
//! groups whose buckets hold plain actions (a bucket never names a group, so a
//! group runs in one step). Group changes bump the same generation, since the
//! cache's decisions name groups whose buckets the executor looks up.
//!
//! A classification also notes each output to the controller with the entry and
//! the metadata behind it (`to_controller`), which the packet-in reports.

mod batch;
mod entry;
mod error;
mod group;
mod selector;
mod table;
mod to_controller;

pub use crate::flow_id::FlowId;
pub use batch::{BatchError, BatchRefusal};
pub use entry::{FlowEntry, RemovedFlow, RemovedReason, TableStats};
pub use error::{GroupError, TableError};
pub use group::{GroupEntry, GroupTable, MAX_GROUPS};
pub use selector::Selector;
pub use to_controller::ControllerOutput;

use group::valid_output;
use openflow::flow::{
    apply_actions_with_groups, flags, Action, ActionSet, FlowKey, GroupSpec, Instruction,
};
use openflow::{FlowSpec, PortNo};
use std::time::Instant;
use table::{Entries, FlowTable};
use to_controller::SetWriters;

/// `OFPTT_ALL`: a flow-mod delete or a stats request for every table.
pub const ALL_TABLES: u8 = 0xff;

/// Number of tables `scd` offers by default: every table id OpenFlow 1.3 allows
/// (0..=253; 254 is reserved and 255 means "all").
pub const DEFAULT_TABLES: u8 = 254;

/// Most entries a single table accepts (`OFPFMFC_TABLE_FULL` beyond).
pub const MAX_ENTRIES_PER_TABLE: usize = 1_000_000;

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
    /// Every output to `CONTROLLER` that running [`Self::actions`] makes, in
    /// order, with the entry and the metadata a packet-in reports for it.
    pub to_controller: Vec<ControllerOutput>,
    /// Where classification writes the outputs of an action list it runs to learn
    /// the next table's key: kept here so that a reused classification allocates
    /// nothing.
    group_outputs: Vec<(PortNo, FlowKey)>,
    /// The packet's action set while it goes through the tables.
    action_set: ActionSet,
    /// Who wrote the action set's output and group.
    set_writers: SetWriters,
}

impl Classification {
    /// An empty classification with room for `actions` actions and `tables`
    /// tables traversed, so that classifying into it does not allocate.
    pub fn with_capacity(actions: usize, tables: usize) -> Classification {
        Classification {
            actions: Vec::with_capacity(actions),
            hits: Vec::with_capacity(tables),
            tables: Vec::with_capacity(tables),
            to_controller: Vec::with_capacity(tables),
            group_outputs: Vec::with_capacity(actions),
            action_set: ActionSet::default(),
            set_writers: SetWriters::default(),
        }
    }

    /// Empties the classification, keeping its allocations.
    pub fn clear(&mut self) {
        self.actions.clear();
        self.hits.clear();
        self.tables.clear();
        self.to_controller.clear();
        self.group_outputs.clear();
        self.action_set.clear();
        self.set_writers.clear();
    }
}

/// The switch's tables. A clone copies the entries but shares their counters
/// (and the tables'): what a batch is tried on before it replaces the tables (see
/// [`Pipeline::replace_cookie`]), and what the control side publishes as the
/// forwarding threads' next snapshot, whose packets then count for both.
#[derive(Clone, Debug)]
pub struct Pipeline {
    entries: Entries,
    /// Tables `0..tables.len()`: a table is made when an entry goes into it or
    /// names it in a goto, so a copy of the tables (every publish) costs what is
    /// used, not [`DEFAULT_TABLES`]. Tables beyond are empty and never looked up.
    tables: Vec<FlowTable>,
    /// Tables offered (`n_tables` of the features reply).
    n_tables: u8,
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

/// Whether `set_field` can write `field`: the match-only fields (`in_port`, and
/// `eth_type` and `ip_proto`, which decide how the rest of the frame is read) cannot
/// be, and the pipeline refuses a flow or a bucket that tries rather than forward
/// packets that differ from what the controller asked for.
pub fn writable(field: openflow::flow::Field) -> bool {
    use openflow::flow::Field;
    !matches!(field, Field::InPort | Field::EthType | Field::IpProto)
}

impl Pipeline {
    /// An empty pipeline with `n_tables` tables (at least one).
    pub fn new(n_tables: u8) -> Pipeline {
        Pipeline {
            entries: Entries::default(),
            tables: vec![FlowTable::default()],
            n_tables: n_tables.max(1),
            next_seq: 0,
            generation: 0,
            groups: GroupTable::default(),
        }
    }

    /// A pipeline holding exactly these entries (added in order, as flow-mod adds),
    /// with enough tables for every table id and goto they use, installed at `now`.
    pub fn from_flows_at(
        flows: impl IntoIterator<Item = FlowSpec>,
        now: Instant,
    ) -> Result<Pipeline, TableError> {
        Pipeline::from_groups_and_flows_at(Vec::new(), flows, now)
    }

    /// [`Self::from_flows_at`] installed now: a convenience for tests and tools that
    /// do not care about install times. It reads the clock, so it exists only with
    /// the `wall-clock` feature.
    #[cfg(feature = "wall-clock")]
    pub fn from_flows(flows: impl IntoIterator<Item = FlowSpec>) -> Result<Pipeline, TableError> {
        Pipeline::from_groups_and_flows_at(Vec::new(), flows, Instant::now())
    }

    /// [`Self::from_groups_and_flows_at`] installed now, like `from_flows` (also only
    /// with the `wall-clock` feature).
    #[cfg(feature = "wall-clock")]
    pub fn from_groups_and_flows(
        groups: impl IntoIterator<Item = GroupSpec>,
        flows: impl IntoIterator<Item = FlowSpec>,
    ) -> Result<Pipeline, TableError> {
        Pipeline::from_groups_and_flows_at(groups, flows, Instant::now())
    }

    /// [`Self::from_flows_at`] with these groups added first (as group-mod adds), so
    /// the flows may run them. A refused group is reported as the flow error a flow
    /// naming it would get.
    pub fn from_groups_and_flows_at(
        groups: impl IntoIterator<Item = GroupSpec>,
        flows: impl IntoIterator<Item = FlowSpec>,
        now: Instant,
    ) -> Result<Pipeline, TableError> {
        let flows: Vec<FlowSpec> = flows.into_iter().collect();
        let max_table = flows
            .iter()
            .flat_map(|f| {
                std::iter::once(f.table_id).chain(f.instructions.iter().filter_map(|i| match i {
                    Instruction::GotoTable(t) => Some(*t),
                    _ => None,
                }))
            })
            .max()
            .unwrap_or(0);
        let mut pipeline = Pipeline::new(max_table.saturating_add(1).max(DEFAULT_TABLES));
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
        self.n_tables
    }

    /// Makes the tables up to `table_id` exist (callers have checked it is offered).
    fn make_tables_up_to(&mut self, table_id: u8) {
        let wanted = usize::from(table_id) + 1;
        if self.tables.len() < wanted {
            self.tables.resize_with(wanted, FlowTable::default);
        }
    }

    /// Makes the tables an entry lives in or goes to exist.
    fn make_tables_of(&mut self, table_id: u8, instructions: &[Instruction]) {
        let last = instructions
            .iter()
            .filter_map(|i| match i {
                Instruction::GotoTable(t) => Some(*t),
                _ => None,
            })
            .fold(table_id, u8::max);
        self.make_tables_up_to(last);
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
            .flat_map(|t| t.ids(&self.entries))
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
        self.tables.iter().map(FlowTable::len).sum()
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
            .flat_map(|t| t.ids(&self.entries))
            .filter_map(|id| self.entry(id))
    }

    /// Counters of one table.
    pub fn table_stats(&self, table_id: u8) -> Option<TableStats> {
        if table_id >= self.n_tables {
            return None;
        }
        Some(
            self.tables
                .get(usize::from(table_id))
                .map_or_else(TableStats::default, |t| t.stats.read()),
        )
    }

    /// The entry behind an id.
    pub fn entry(&self, id: FlowId) -> Option<&FlowEntry> {
        self.entries.get(id)
    }

    fn validate(&self, spec: &FlowSpec) -> Result<(), TableError> {
        let limit = self.n_tables();
        if spec.table_id >= limit {
            return Err(TableError::BadTableId(spec.table_id));
        }
        let mut seen: Vec<&'static str> = Vec::with_capacity(spec.instructions.len());
        for instruction in &spec.instructions {
            let kind = match instruction {
                Instruction::GotoTable(goto) => {
                    if *goto <= spec.table_id || *goto >= limit {
                        return Err(TableError::BadGoto {
                            from: spec.table_id,
                            goto: *goto,
                            limit,
                        });
                    }
                    "goto_table"
                }
                Instruction::ApplyActions(_) => "apply_actions",
                Instruction::WriteActions(_) => "write_actions",
                Instruction::ClearActions => "clear_actions",
                Instruction::WriteMetadata { .. } => "write_metadata",
            };
            if seen.contains(&kind) {
                return Err(TableError::DuplicateInstruction(kind));
            }
            seen.push(kind);
            for action in instruction.actions() {
                match action {
                    Action::Output { port: p, .. } if !valid_output(*p) => {
                        return Err(TableError::BadOutPort(*p));
                    }
                    Action::Group(g) if self.groups.get(*g).is_none() => {
                        return Err(TableError::BadOutGroup(*g));
                    }
                    Action::SetField { field, .. } if !writable(*field) => {
                        return Err(TableError::BadSetField(*field));
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Flow-mod add (OpenFlow 1.3 §6.4): an entry with identical match and priority is
    /// replaced, counters and all; with `CHECK_OVERLAP`, an overlapping entry of the
    /// same priority refuses the add.
    pub fn add(&mut self, mut spec: FlowSpec, now: Instant) -> Result<FlowId, TableError> {
        self.validate(&spec)?;
        in_execution_order(&mut spec.instructions);
        self.make_tables_of(spec.table_id, &spec.instructions);
        let table = usize::from(spec.table_id);
        if spec.flags & flags::CHECK_OVERLAP != 0 {
            let clash = self.tables[table].ids(&self.entries).any(|id| {
                self.entry(id).is_some_and(|e| {
                    e.spec.priority == spec.priority
                        && e.spec.matcher != spec.matcher
                        && e.spec.matcher.overlaps(&spec.matcher)
                })
            });
            if clash {
                return Err(TableError::Overlap(spec.priority));
            }
        }
        let entry = FlowEntry::installed_at(spec, now);
        let existing =
            self.tables[table].find(&self.entries, entry.spec.priority, &entry.spec.matcher);
        self.generation += 1;
        if let Some(id) = existing {
            // Same place in the order, the classifier and the index: only the
            // entry itself changes, counters and all.
            if let Some(replaced) = self.entries.get_mut(id) {
                *replaced = entry;
            }
            return Ok(id);
        }
        if self.tables[table].len() >= MAX_ENTRIES_PER_TABLE {
            return Err(TableError::TableFull(entry.spec.table_id));
        }
        self.next_seq += 1;
        self.tables[table]
            .insert(&mut self.entries, entry, self.next_seq)
            .ok_or(TableError::TableFull(0))
    }

    /// The entries a flow-mod selects, in table and priority order.
    /// A strict selector names at most one entry per table, which the identity
    /// index finds without a scan.
    fn selected_ids(&self, selector: &Selector<'_>) -> Vec<FlowId> {
        let tables = if selector.table_id == ALL_TABLES {
            &self.tables[..]
        } else {
            let t = usize::from(selector.table_id);
            self.tables.get(t..=t).unwrap_or_default()
        };
        let selected = |id: &FlowId| self.entry(*id).is_some_and(|e| selector.selects(e));
        let mut ids = Vec::new();
        for table in tables {
            match selector.strict_priority {
                Some(priority) => ids.extend(
                    table
                        .find(&self.entries, priority, selector.matcher)
                        .filter(selected),
                ),
                None => ids.extend(table.ids(&self.entries).filter(selected)),
            }
        }
        ids
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
        if let Some(last) = ids
            .iter()
            .filter_map(|id| self.entry(*id).map(|e| e.spec.table_id))
            .max()
        {
            self.make_tables_of(last, instructions);
        }
        let mut instructions = instructions.to_vec();
        in_execution_order(&mut instructions);
        for id in &ids {
            if let Some(entry) = self.entries.get_mut(*id) {
                entry.spec.instructions = instructions.clone();
                if reset_counts {
                    entry.reset_counts();
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
            let Some(table) = self.entry(*id).map(|e| usize::from(e.spec.table_id)) else {
                continue;
            };
            if let Some(entry) = self.tables[table].remove(&mut self.entries, *id) {
                let reason = reason(&entry);
                removed.push(RemovedFlow { entry, reason });
            }
        }
        self.generation += 1;
        removed
    }

    /// Removes every entry whose idle or hard timeout has passed.
    pub fn expire(&mut self, now: Instant) -> Vec<RemovedFlow> {
        let expired: Vec<FlowId> = self
            .tables
            .iter()
            .flat_map(|t| t.ids(&self.entries))
            .filter(|id| self.entry(*id).is_some_and(|e| e.expiry(now).is_some()))
            .collect();
        self.remove_ids(&expired, |e| {
            e.expiry(now).unwrap_or(RemovedReason::HardTimeout)
        })
    }

    /// Runs a packet through the tables, from table 0, following goto-table, with
    /// each table matching on the packet as earlier apply-actions left it (OpenFlow
    /// 1.3 §5.1). A packet that misses a table with no table-miss entry is dropped:
    /// its classification then ends there. Counters are not touched; see [`Self::account`].
    pub fn classify(&self, key: &FlowKey, out: &mut Classification) {
        self.classify_gathering(key, out, None);
    }

    /// [`Self::classify`], also saying which bits of `key` the answer depends on:
    /// `consulted` becomes the union of the masks of every subtable probed in every
    /// table traversed. Every packet equal to `key` under that mask gets the same
    /// classification (a later table's probe of a field an action set is counted
    /// on the original key, which only makes the mask narrower than it could be).
    /// Allocates nothing once `out` has room for the answer.
    pub fn classify_consulting(
        &self,
        key: &FlowKey,
        out: &mut Classification,
        consulted: &mut FlowKey,
    ) {
        *consulted = FlowKey::default();
        self.classify_gathering(key, out, Some(consulted));
    }

    fn classify_gathering(
        &self,
        key: &FlowKey,
        out: &mut Classification,
        mut consulted: Option<&mut FlowKey>,
    ) {
        out.clear();
        let mut current = *key;
        let mut table = 0usize;
        loop {
            let Some(flow_table) = self.tables.get(table) else {
                return;
            };
            let hit = flow_table.lookup_consulting(&current, consulted.as_deref_mut());
            out.tables
                .push((u8::try_from(table).unwrap_or(u8::MAX), hit.is_some()));
            let Some(id) = hit else { return };
            out.hits.push(id);
            let Some(entry) = self.entry(id) else { return };
            let mut next = None;
            // Instructions are kept in execution order (see `in_execution_order`).
            for instruction in &entry.spec.instructions {
                match instruction {
                    Instruction::ClearActions => {
                        out.action_set.clear();
                        out.set_writers.clear();
                    }
                    Instruction::WriteActions(actions) => {
                        out.action_set.write(actions);
                        out.set_writers.wrote(id, actions);
                    }
                    Instruction::WriteMetadata { value, mask } => {
                        current.metadata = (current.metadata & !mask) | (value & mask);
                    }
                    Instruction::ApplyActions(actions) => {
                        out.actions.extend_from_slice(actions);
                        to_controller::note(
                            actions,
                            id,
                            current.metadata,
                            &self.groups,
                            &mut out.to_controller,
                        );
                        out.group_outputs.clear();
                        // Groups act on copies: only the list's own changes reach
                        // the next table, so no group is looked up here.
                        apply_actions_with_groups(
                            actions,
                            &mut current,
                            &mut out.group_outputs,
                            &|_| None,
                        );
                    }
                    Instruction::GotoTable(t) => next = Some(usize::from(*t)),
                }
            }
            match next {
                Some(t) if t > table && t < self.tables.len() => table = t,
                _ => {
                    // The pipeline ends here: the action set runs after every
                    // action applied on the way (OpenFlow 1.3 §5.10).
                    let start = out.actions.len();
                    out.action_set.append_to(&mut out.actions);
                    out.set_writers.note(
                        &out.actions[start..],
                        current.metadata,
                        &self.groups,
                        &mut out.to_controller,
                    );
                    return;
                }
            }
        }
    }

    /// Adds one packet of `len` bytes to the counters of what it hit. The
    /// counters are shared atomics, so a forwarding thread counts on the snapshot
    /// it reads while the control side builds the next version.
    pub fn account(&self, hits: &[FlowId], tables: &[(u8, bool)], len: usize, now: Instant) {
        for id in hits {
            if let Some(entry) = self.entries.get(*id) {
                entry.count(len, now);
            }
        }
        for (table, matched) in tables {
            if let Some(t) = self.tables.get(usize::from(*table)) {
                t.stats.count(*matched);
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

/// Sorts an entry's instructions into the order OpenFlow 1.3 §5.9 runs them in
/// (apply-actions, clear-actions, write-actions, write-metadata, goto-table),
/// whatever order the flow-mod gave, so that classification walks them once.
fn in_execution_order(instructions: &mut [Instruction]) {
    instructions.sort_by_key(|i| match i {
        Instruction::ApplyActions(_) => 0,
        Instruction::ClearActions => 1,
        Instruction::WriteActions(_) => 2,
        Instruction::WriteMetadata { .. } => 3,
        Instruction::GotoTable(_) => 4,
    });
}

#[cfg(test)]
pub(crate) mod tests;
