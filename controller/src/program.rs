//! The compiled network program: every switch's table for an inventory, a policy
//! and a migration step, and how a change recompiles only what it affects.
//!
//! When the user's policy only filters (tests, `and`/`or`/`not`, `+` and `;` of
//! filters; the usual tenant isolation), `policy; routing` is the union over
//! destination addresses of `policy; the cases about that address` (`routing`'s
//! [`Case`]s), and those never overlap. Each such *unit* is compiled alone, its
//! rules narrowed to its address, and a switch's table is its units in two
//! priority bands: routes to remote VMs below a guard that drops IPv4 from the
//! tunnels (no transit), everything else (local delivery, gateways, a migration's
//! transit) above it. When hosts have VM prefixes, the lower band is split: the
//! routes to other hosts' prefixes (one unit per prefix, the same on every
//! switch) below the routes to single VMs, which override them. Plain flows (a migration's announcement, a gateway's NAT
//! and counted drops) sit on top. A VM added, removed or moved, a host added or
//! removed, or a migration step then recompiles the units of the addresses it
//! touches, on every switch, and nothing else; units with equal cases (a remote
//! VM's route is the same on every switch) are compiled once and shared. A
//! policy that changes packets, or names something that moved, is compiled
//! whole. Each switch's table keeps its units behind shared pointers, so the
//! difference between two versions is found from the units that changed
//! ([`SwitchTable::changed_since`]). Pure: no I/O, no clock, no lock held by
//! anyone else.

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_prefix;

use crate::gateway::PublicVms;
use crate::model::{Host, Inventory, Migration, Phase, TUNNEL_PORT_BASE};
use crate::netkat::ir::{self, CPol, CPred, HField, NoNames};
use crate::netkat::syntax::{HeaderField, Policy, Pred, Value};
use crate::netkat::{self, local::LocalError, CompileError, TableOptions};
use crate::routing::{
    cases_to, prefix_case, routing_program_during, Band, Destinations, ProgramError,
    ANNOUNCE_PRIORITY, SCC_COOKIE,
};
use openflow::flow::{ethertype, Action, Field, FlowMatch};
use openflow::FlowSpec;
use rustc_hash::{FxHashMap as HashMap, FxHashSet};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

/// Lowest priority of the routes to remote VMs.
pub const REMOTE_BASE: u16 = 1;
/// Priority levels a unit may use within its band.
pub const BAND_LEVELS: u16 = 20_000;
/// When some host has a VM prefix: the levels of the prefix routes, from
/// [`REMOTE_BASE`] up; the routes to remote VMs take the rest of their band,
/// above them.
pub const PREFIX_LEVELS: u16 = 10_000;
/// Priority of the drops of IPv4 from the tunnels, between the bands.
pub const GUARD_PRIORITY: u16 = REMOTE_BASE + BAND_LEVELS;
/// Lowest priority of the other routing cases.
pub const OPEN_BASE: u16 = GUARD_PRIORITY + 1;

// A VM's outbound public IPv6 from the tunnels must pass the tunnels' drop.
const _: () = assert!(crate::gateway6::PUBLIC6_FROM_TUNNEL_PRIORITY > GUARD_PRIORITY);

/// The compiled rules of one unit (shared between switches and versions).
type Unit = Arc<[FlowSpec]>;
/// A switch's units of up to 256 consecutive addresses.
type Chunk = BTreeMap<(u32, Band), Unit>;

/// One switch's table, kept as the units it was assembled from.
#[derive(Debug, Clone)]
pub struct SwitchTable {
    /// Flows outside the units (all of them for a policy compiled whole).
    plain: Arc<[FlowSpec]>,
    /// Units by `address >> 8`.
    chunks: BTreeMap<u32, Arc<Chunk>>,
    len: usize,
}

impl Default for SwitchTable {
    fn default() -> SwitchTable {
        SwitchTable::from_flows(Vec::new())
    }
}

impl SwitchTable {
    /// A table of plain flows (such as those read back from a switch).
    pub fn from_flows(flows: Vec<FlowSpec>) -> SwitchTable {
        SwitchTable {
            len: flows.len(),
            plain: flows.into(),
            chunks: BTreeMap::new(),
        }
    }

    /// Number of flows.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when it holds no flow.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every flow: plain flows first, then units by address.
    pub fn flows(&self) -> impl Iterator<Item = &FlowSpec> {
        self.plain.iter().chain(
            self.chunks
                .values()
                .flat_map(|c| c.values().flat_map(|u| u.iter())),
        )
    }

    /// Every flow, copied.
    pub fn to_vec(&self) -> Vec<FlowSpec> {
        self.flows().cloned().collect()
    }

    /// The flows of `old` and of `self` that are not shared by both: what a
    /// switch holding `old` must be told about to hold `self`. Units that did not
    /// change (the same pointer) cost one comparison.
    pub fn changed_since(&self, old: &SwitchTable) -> (Vec<FlowSpec>, Vec<FlowSpec>) {
        let (mut was, mut now) = (Vec::new(), Vec::new());
        if !Arc::ptr_eq(&self.plain, &old.plain) {
            // Most plain flows are the tunnel guards, one per other host and
            // unchanged by a VM's move: only the middle that differs is planned.
            let (was_plain, now_plain) = differing_middle(&old.plain, &self.plain);
            was.extend_from_slice(was_plain);
            now.extend_from_slice(now_plain);
        }
        merge(&old.chunks, &self.chunks, |old_chunk, new_chunk| {
            match (old_chunk, new_chunk) {
                (Some(a), Some(b)) if Arc::ptr_eq(a, b) => {}
                (a, b) => {
                    let empty = Chunk::new();
                    let (a, b) = (a.map_or(&empty, |c| &**c), b.map_or(&empty, |c| &**c));
                    merge(a, b, |u, v| match (u, v) {
                        // Equal contents compiled apart (a step compiled ahead)
                        // change nothing either: comparing is cheaper than a plan.
                        (Some(u), Some(v)) if Arc::ptr_eq(u, v) || u == v => {}
                        (u, v) => {
                            was.extend(u.into_iter().flat_map(|u| u.iter().cloned()));
                            now.extend(v.into_iter().flat_map(|v| v.iter().cloned()));
                        }
                    });
                }
            }
        });
        (was, now)
    }

    /// The unit of `dst` in `band`, if the table has one.
    fn unit(&self, dst: u32, band: Band) -> Option<&Unit> {
        self.chunks.get(&(dst >> 8))?.get(&(dst, band))
    }

    /// Sets (or with `None` removes) the unit of `dst` in `band`.
    fn set_unit(&mut self, dst: u32, band: Band, unit: Option<Unit>) {
        let chunk = self.chunks.entry(dst >> 8).or_default();
        let chunk = Arc::make_mut(chunk);
        let old = match unit {
            Some(u) => {
                self.len += u.len();
                chunk.insert((dst, band), u)
            }
            None => chunk.remove(&(dst, band)),
        };
        self.len -= old.map_or(0, |u| u.len());
        if chunk.is_empty() {
            self.chunks.remove(&(dst >> 8));
        }
    }

    /// Replaces the plain flows; equal ones keep their shared pointer, so the
    /// difference to the version before passes over them at once.
    fn set_plain(&mut self, flows: Vec<FlowSpec>) {
        if *self.plain == *flows {
            return;
        }
        self.len = self.len - self.plain.len() + flows.len();
        self.plain = flows.into();
    }
}

/// `a` and `b` without the flows both start and both end with.
fn differing_middle<'a>(a: &'a [FlowSpec], b: &'a [FlowSpec]) -> (&'a [FlowSpec], &'a [FlowSpec]) {
    let head = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let (a, b) = (&a[head..], &b[head..]);
    let tail = a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    (&a[..a.len() - tail], &b[..b.len() - tail])
}

/// Calls `f` with the values of each key of `a` or `b`, in key order.
fn merge<K: Ord, V>(
    a: &BTreeMap<K, V>,
    b: &BTreeMap<K, V>,
    mut f: impl FnMut(Option<&V>, Option<&V>),
) {
    let (mut a, mut b) = (a.iter().peekable(), b.iter().peekable());
    loop {
        match (a.peek(), b.peek()) {
            (None, None) => return,
            (Some((ka, _)), Some((kb, _))) if ka == kb => {
                f(a.next().map(|e| e.1), b.next().map(|e| e.1));
            }
            (Some((ka, _)), Some((kb, _))) if ka < kb => f(a.next().map(|e| e.1), None),
            (Some(_), None) => f(a.next().map(|e| e.1), None),
            _ => f(None, b.next().map(|e| e.1)),
        }
    }
}

/// The user's policy as the compiler uses it.
#[derive(Debug)]
struct PolicyForm {
    text: String,
    parsed: Policy,
    lowered: ir::Program,
    /// The policy only filters: it composes with each address's cases alone.
    filters_only: bool,
    /// The policy tests the switch: units are compiled per switch.
    per_switch: bool,
}

impl PolicyForm {
    /// `policy; routing`, composed on the lowered trees (`routing` names no VM).
    fn before(&self, routing: &Policy) -> Result<ir::Program, ProgramError> {
        let lowered = ir::lower(routing, &NoNames)
            .map_err(|d| ProgramError::Routing(d.render("routing", &routing.to_string())))?;
        Ok(ir::Program {
            pol: CPol::seq(self.lowered.pol.clone(), lowered.pol),
            locations: self.lowered.locations.clone(),
            metas: self.lowered.metas,
        })
    }
}

/// What a unit is compiled from; equal keys compile to equal rules.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct UnitKey {
    /// The switch, when the policy tests it.
    switch: Option<u64>,
    dst: u32,
    /// The IPv6 destination of an IPv6 unit (then `dst` and `len` are 0).
    dst6: Option<u128>,
    /// The prefix length of the addresses the unit is about.
    len: u8,
    band: Band,
    /// The band is split for prefix routes ([`PREFIX_LEVELS`]).
    layered: bool,
    cases: Vec<Policy>,
}

/// Units compiled for one policy, by what they were compiled from.
type UnitCache = Arc<Mutex<Units>>;

/// The compiled units, and how many there were after the last look for
/// unused ones (the next look waits until they doubled, so that counting the
/// units in use, which visits every table, costs a change nothing on average).
#[derive(Debug, Default)]
struct Units {
    by_key: HashMap<UnitKey, Unit>,
    looked_at: usize,
}

/// Every switch's table for one inventory, policy and migration step, and what
/// it takes to compile the next one.
#[derive(Debug, Clone)]
pub struct NetworkProgram {
    policy: Option<Arc<PolicyForm>>,
    /// What the tables were compiled from (`None` before the first compile).
    inventory: Option<Arc<Inventory>>,
    migration: Option<Migration>,
    tables: BTreeMap<u64, Arc<SwitchTable>>,
    cache: UnitCache,
    /// Some host has a VM prefix: the lower band is split.
    layered: bool,
    /// The inventory's VMs by address, kept from one version to the next
    /// (`None` for a policy compiled whole).
    dests: Option<Destinations>,
}

impl NetworkProgram {
    /// Compiles the whole network.
    pub fn compile(
        inv: &Inventory,
        policy: &str,
        policy_name: &str,
        migration: Option<&Migration>,
    ) -> Result<NetworkProgram, ProgramError> {
        NetworkProgram::compile_shared(&Arc::new(inv.clone()), policy, policy_name, migration)
    }

    /// [`Self::compile`] of an inventory already shared, kept without copying.
    pub fn compile_shared(
        inv: &Arc<Inventory>,
        policy: &str,
        policy_name: &str,
        migration: Option<&Migration>,
    ) -> Result<NetworkProgram, ProgramError> {
        NetworkProgram {
            policy: None,
            inventory: None,
            migration: None,
            tables: BTreeMap::new(),
            cache: UnitCache::default(),
            layered: false,
            dests: None,
        }
        .update_shared(inv, policy, policy_name, migration)
    }

    /// The inventory the tables were compiled from.
    pub fn inventory(&self) -> Option<&Arc<Inventory>> {
        self.inventory.as_ref()
    }

    /// The index of destinations kept for the next change, if any.
    #[cfg(test)]
    fn destinations(&self) -> Option<&Destinations> {
        self.dests.as_ref()
    }

    /// Each switch's table, by datapath id.
    pub fn tables(&self) -> &BTreeMap<u64, Arc<SwitchTable>> {
        &self.tables
    }

    /// Switch `dpid`'s table.
    pub fn table(&self, dpid: u64) -> Option<&Arc<SwitchTable>> {
        self.tables.get(&dpid)
    }

    /// Each switch's flows, copied (for tests and tools).
    pub fn flat_tables(&self) -> BTreeMap<u64, Vec<FlowSpec>> {
        self.tables.iter().map(|(d, t)| (*d, t.to_vec())).collect()
    }

    /// The program for `inv`, `policy` and `migration`, recompiling only what
    /// differs from this one. Refused (with the policy's own diagnostic when it is
    /// at fault) if it does not compile.
    pub fn update(
        &self,
        inv: &Inventory,
        policy: &str,
        policy_name: &str,
        migration: Option<&Migration>,
    ) -> Result<NetworkProgram, ProgramError> {
        self.update_shared(&Arc::new(inv.clone()), policy, policy_name, migration)
    }

    /// [`Self::update`] for an inventory already shared, which the new program
    /// keeps without copying it.
    pub fn update_shared(
        &self,
        inv: &Arc<Inventory>,
        policy: &str,
        policy_name: &str,
        migration: Option<&Migration>,
    ) -> Result<NetworkProgram, ProgramError> {
        let refused = |d: netkat::diagnostics::Diagnostic| ProgramError::Policy {
            rendered: d.render(policy_name, policy),
            diagnostic: d,
        };
        let known = self.policy.as_ref().filter(|p| p.text == policy);
        let parsed = match known {
            Some(p) => p.parsed.clone(),
            None => netkat::parser::parse_policy(policy).map_err(refused)?,
        };
        // Lowered again each time: a name it uses may now mean another address.
        let lowered = ir::lower(&parsed, &**inv).map_err(refused)?;
        let same = known.filter(|p| {
            p.lowered.pol == lowered.pol
                && p.lowered.locations == lowered.locations
                && p.lowered.metas == lowered.metas
        });
        let form = match same {
            Some(p) => p.clone(),
            None => Arc::new(PolicyForm {
                text: policy.to_string(),
                filters_only: filters_only(&lowered.pol),
                per_switch: tests_switch(&lowered.pol),
                parsed,
                lowered,
            }),
        };
        if !form.filters_only {
            return whole(inv, form, migration);
        }
        let Some(old) = self.inventory.as_deref().filter(|_| same.is_some()) else {
            return self.recompile(inv, form, migration, None);
        };
        let everything = old.gateway_mac != inv.gateway_mac
            || old.overlay != inv.overlay
            || old.has_vm_prefixes() != inv.has_vm_prefixes()
            || old.gateways != inv.gateways
            || (old.hosts != inv.hosts && {
                let before: HashMap<&str, &Host> =
                    old.hosts.iter().map(|h| (h.name.as_str(), h)).collect();
                inv.hosts
                    .iter()
                    .any(|h| before.get(h.name.as_str()).is_some_and(|o| *o != h))
            });
        let touched = (!everything).then(|| self.touched(old, inv, migration));
        self.recompile(inv, form, migration, touched)
    }

    /// The program for `inv` and `migration` under the policy `form`, whose
    /// units are recompiled only for the addresses `touched` names (all when
    /// `None`).
    fn recompile(
        &self,
        inv: &Arc<Inventory>,
        form: Arc<PolicyForm>,
        migration: Option<&Migration>,
        touched: Option<Touched>,
    ) -> Result<NetworkProgram, ProgramError> {
        let mut next = NetworkProgram {
            policy: Some(form),
            inventory: Some(inv.clone()),
            migration: migration.cloned(),
            tables: BTreeMap::new(),
            cache: if touched.is_some() {
                self.cache.clone()
            } else {
                UnitCache::default()
            },
            layered: inv.has_vm_prefixes(),
            dests: None,
        };
        let dests = match (&touched, &self.dests, self.inventory.as_deref()) {
            (Some(_), Some(dests), Some(old)) => dests.updated(old, inv),
            _ => Destinations::new(inv),
        };
        let hosts_changed = self
            .inventory
            .as_ref()
            .is_none_or(|old| old.hosts != inv.hosts);
        // The switches whose plain flows may differ (`None`: all of them). A
        // migration's step alone changes only the announcement flows of its
        // destination (its VM's public address, if any, is in `touched.plain`).
        let plain_hosts: Option<BTreeSet<&str>> = match &touched {
            Some(t) if !t.plain && !hosts_changed => Some(
                [self.migration.as_ref(), migration]
                    .into_iter()
                    .flatten()
                    .filter(|_| self.migration.as_ref() != migration)
                    .map(|m| m.to_host.as_str())
                    .collect(),
            ),
            _ => None,
        };
        let public = std::cell::OnceCell::new();
        let public_vms = || public.get_or_init(|| crate::gateway::public_vms_of(inv));
        for host in &inv.hosts {
            let table = match (self.tables.get(&host.datapath_id), &touched) {
                (Some(before), Some(touched)) => {
                    let mut units = Vec::new();
                    for &dst in &touched.addresses {
                        next.cases_units(host, dst, &dests, &mut units)?;
                    }
                    for &net in &touched.prefixes {
                        units.push((net, Band::Prefix, next.prefix_unit(host, net, &dests)?));
                    }
                    let plain = if plain_hosts
                        .as_ref()
                        .is_none_or(|hosts| hosts.contains(host.name.as_str()))
                    {
                        Some(next.plain_of(host, public_vms())?)
                    } else {
                        None
                    };
                    let plain = plain.filter(|p| **p != *before.plain);
                    // Most switches are not concerned by a VM's change: their
                    // table stays the same shared value, never copied.
                    let same = |(dst, band, unit): &(u32, Band, Option<Unit>)| match (
                        before.unit(*dst, *band),
                        unit,
                    ) {
                        (None, None) => true,
                        (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
                        _ => false,
                    };
                    if plain.is_none() && units.iter().all(same) {
                        next.tables.insert(host.datapath_id, before.clone());
                        continue;
                    }
                    let mut table = (**before).clone();
                    for (dst, band, unit) in units {
                        table.set_unit(dst, band, unit);
                    }
                    if let Some(plain) = plain {
                        table.set_plain(plain);
                    }
                    next.tables.insert(host.datapath_id, Arc::new(table));
                    continue;
                }
                _ => {
                    let mut table = SwitchTable::from_flows(next.plain_of(host, public_vms())?);
                    for dst in dests.addresses_on(inv, host, migration) {
                        next.set_cases(&mut table, host, dst, &dests)?;
                    }
                    for (net, _) in inv.hosts.iter().filter_map(|h| h.vm_prefix) {
                        next.set_prefix(&mut table, host, u32::from(net), &dests)?;
                    }
                    table
                }
            };
            let table = match self.tables.get(&host.datapath_id) {
                Some(before) if table.changed_since(before) == (Vec::new(), Vec::new()) => {
                    before.clone()
                }
                _ => Arc::new(table),
            };
            next.tables.insert(host.datapath_id, table);
        }
        next.forget_unused();
        next.dests = Some(dests);
        Ok(next)
    }

    /// The addresses whose cases may differ between this program and `inv` with
    /// `migration`, and whether plain flows may too.
    fn touched(&self, old: &Inventory, inv: &Inventory, migration: Option<&Migration>) -> Touched {
        let mut t = Touched {
            plain: old.overlay_ipv6 != inv.overlay_ipv6,
            ..Touched::default()
        };
        // The IPv6 routes are plain flows (`routing6`): any VM's change moves them.
        let ipv6 = inv.overlay_ipv6.is_some();
        let mut note = |vm: &crate::model::Vm| {
            t.plain |= ipv6;
            t.addresses.insert(u32::from(vm.ip));
            if let Some(public) = vm.public_ip {
                t.addresses.insert(u32::from(public));
                t.plain = true;
            }
        };
        for (was, is) in old.vm_changes(inv) {
            was.into_iter().chain(is).for_each(&mut note);
        }
        // Hosts come and go with their prefixes (a changed host recompiles all).
        let hosts_differ = old.hosts != inv.hosts;
        for (a, b) in [(old, inv), (inv, old)]
            .into_iter()
            .filter(|_| hosts_differ)
        {
            t.prefixes.extend(
                a.hosts
                    .iter()
                    .filter(|h| b.host(&h.name).is_none())
                    .filter_map(|h| h.vm_prefix)
                    .map(|(net, _)| u32::from(net)),
            );
        }
        let moving = [self.migration.as_ref(), migration];
        if self.migration.as_ref() != migration || old.hosts != inv.hosts {
            for m in moving.into_iter().flatten() {
                for vm in [old.vms.get(&m.vm), inv.vms.get(&m.vm)]
                    .into_iter()
                    .flatten()
                {
                    note(vm);
                }
            }
        }
        t
    }

    /// Recompiles (or finds compiled) the units of `dst` on `host`'s switch.
    fn set_cases(
        &self,
        table: &mut SwitchTable,
        host: &Host,
        dst: u32,
        dests: &Destinations,
    ) -> Result<(), ProgramError> {
        let mut units = Vec::new();
        self.cases_units(host, dst, dests, &mut units)?;
        for (dst, band, unit) in units {
            table.set_unit(dst, band, unit);
        }
        Ok(())
    }

    /// The units of `dst` on `host`'s switch in each band (`None`: none there),
    /// recompiled or found compiled, added to `units`.
    fn cases_units(
        &self,
        host: &Host,
        dst: u32,
        dests: &Destinations,
        units: &mut Vec<(u32, Band, Option<Unit>)>,
    ) -> Result<(), ProgramError> {
        let Some(inv) = self.inventory.as_deref() else {
            return Ok(());
        };
        let cases = cases_to(inv, host, dst, dests, self.migration.as_ref());
        for band in [Band::Remote, Band::Open] {
            let of_band: Vec<Policy> = cases
                .iter()
                .filter(|c| c.band == band)
                .map(|c| c.pol.clone())
                .collect();
            let unit = if of_band.is_empty() {
                None
            } else {
                Some(self.unit(host.datapath_id, dst, 32, band, of_band)?)
            };
            units.push((dst, band, unit));
        }
        Ok(())
    }

    /// Recompiles (or finds compiled) the route on `host`'s switch to the VM
    /// prefix that starts at `net`, or removes it when no other host has it.
    fn set_prefix(
        &self,
        table: &mut SwitchTable,
        host: &Host,
        net: u32,
        dests: &Destinations,
    ) -> Result<(), ProgramError> {
        let unit = self.prefix_unit(host, net, dests)?;
        table.set_unit(net, Band::Prefix, unit);
        Ok(())
    }

    /// The route on `host`'s switch to the VM prefix that starts at `net`,
    /// recompiled or found compiled; `None` when no other host has it.
    fn prefix_unit(
        &self,
        host: &Host,
        net: u32,
        dests: &Destinations,
    ) -> Result<Option<Unit>, ProgramError> {
        let case = dests
            .home(net)
            .filter(|owner| owner.vm_prefix.is_some_and(|(n, _)| u32::from(n) == net))
            .and_then(|owner| prefix_case(host, owner));
        Ok(match case {
            Some(c) => Some(self.unit(host.datapath_id, net, c.len, Band::Prefix, vec![c.pol])?),
            None => None,
        })
    }

    /// The compiled unit of these cases, from the cache when it has it.
    fn unit(
        &self,
        switch: u64,
        dst: u32,
        len: u8,
        band: Band,
        cases: Vec<Policy>,
    ) -> Result<Unit, ProgramError> {
        let form = self
            .policy
            .as_ref()
            .ok_or_else(|| ProgramError::Routing("a unit compiled without a policy".to_string()))?;
        let key = UnitKey {
            switch: form.per_switch.then_some(switch),
            dst,
            dst6: None,
            len,
            band,
            layered: self.layered,
            cases,
        };
        let cache = || self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(unit) = cache().by_key.get(&key) {
            return Ok(unit.clone());
        }
        let unit = compile_unit(form, switch, &key)?;
        cache().by_key.insert(key, unit.clone());
        Ok(unit)
    }

    /// The flows of `host`'s switch outside the IPv4 units: the plain flows and
    /// the IPv6 routes, composed with the policy.
    fn plain_of(
        &self,
        host: &Host,
        public_vms: &PublicVms<'_>,
    ) -> Result<Vec<FlowSpec>, ProgramError> {
        let Some(inv) = self.inventory.as_deref() else {
            return Ok(Vec::new());
        };
        let mut flows = plain_flows(inv, host, self.migration.as_ref(), public_vms);
        flows.extend(self.ipv6_units(host)?);
        Ok(flows)
    }

    /// The IPv6 routes of `host`'s switch composed with the policy: one unit
    /// per address and band, from the cache when compiled before.
    fn ipv6_units(&self, host: &Host) -> Result<Vec<FlowSpec>, ProgramError> {
        let (Some(inv), Some(form)) = (self.inventory.as_deref(), self.policy.as_ref()) else {
            return Ok(Vec::new());
        };
        let mut by_unit: BTreeMap<(u128, Band), Vec<Policy>> = BTreeMap::new();
        for case in crate::routing6::ipv6_cases(inv, host, self.migration.as_ref()) {
            by_unit
                .entry((case.dst, case.band))
                .or_default()
                .push(case.pol);
        }
        let mut flows = Vec::new();
        for ((dst, band), cases) in by_unit {
            let key = UnitKey {
                switch: form.per_switch.then_some(host.datapath_id),
                dst: 0,
                dst6: Some(dst),
                len: 0,
                band,
                layered: self.layered,
                cases,
            };
            let cache = || self.cache.lock().unwrap_or_else(|e| e.into_inner());
            let known = cache().by_key.get(&key).cloned();
            let unit = match known {
                Some(unit) => unit,
                None => {
                    let unit = compile_unit(form, host.datapath_id, &key)?;
                    cache().by_key.insert(key, unit.clone());
                    unit
                }
            };
            flows.extend(unit.iter().cloned());
        }
        Ok(flows)
    }

    /// Drops compiled units no table uses any more, once they are many: looked
    /// for when the units doubled since the last look.
    fn forget_unused(&self) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let units = cache.by_key.len();
        if units <= 1024 || units <= 2 * cache.looked_at {
            return;
        }
        let live: usize = self
            .tables
            .values()
            .map(|t| t.chunks.values().map(|c| c.len()).sum::<usize>())
            .sum();
        if units > 2 * live {
            cache.by_key.retain(|_, unit| Arc::strong_count(unit) > 1);
        }
        cache.looked_at = cache.by_key.len();
    }
}

/// What a change touches.
#[derive(Debug, Default)]
struct Touched {
    addresses: BTreeSet<u32>,
    /// First addresses of the VM prefixes whose routes may differ.
    prefixes: BTreeSet<u32>,
    /// Plain flows (gateway NAT, IPv6 routes) may differ.
    plain: bool,
}

/// `policy; filter ethTyp = 0x800; (case + …)` (0x86dd for an IPv6 unit)
/// compiled, its rules narrowed to the unit's address and placed in its band.
fn compile_unit(form: &PolicyForm, switch: u64, key: &UnitKey) -> Result<Unit, ProgramError> {
    let family = if key.dst6.is_some() {
        ethertype::IPV6
    } else {
        ethertype::IPV4
    };
    let routing = Policy::seq_all(vec![
        Policy::filter(Pred::test(
            HeaderField::EthTyp,
            Value::Int(u64::from(family)),
        )),
        Policy::union_all(key.cases.clone()),
    ]);
    let program = form.before(&routing)?;
    let (base, levels) = match (key.band, key.layered) {
        (Band::Prefix, _) => (REMOTE_BASE, PREFIX_LEVELS),
        (Band::Remote, true) => (REMOTE_BASE + PREFIX_LEVELS, BAND_LEVELS - PREFIX_LEVELS),
        (Band::Remote, false) => (REMOTE_BASE, BAND_LEVELS),
        (Band::Open, _) => (OPEN_BASE, BAND_LEVELS),
    };
    let table = netkat::compile(&program)?.table(
        switch,
        TableOptions {
            table_id: 0,
            cookie: SCC_COOKIE,
            base_priority: base,
        },
    )?;
    let top = table.flows.iter().map(|f| f.priority).max().unwrap_or(base);
    if top - base >= levels {
        let levels = usize::from(top - base) + 1;
        return Err(CompileError::Local(LocalError::TooManyPriorities(levels)).into());
    }
    let ipv4 = u128::from(family);
    let (dst, unit_mask) = (
        u128::from(key.dst),
        u128::from(config_support::prefix_mask(key.len)),
    );
    let mut seen = FxHashSet::default();
    let flows: Vec<FlowSpec> = table
        .flows
        .into_iter()
        .filter_map(|mut f| {
            // A drop rule that hides the unit's route may match more than the
            // unit's address (the policy's test decided it first): other units
            // must not be hidden by it.
            if f.matcher
                .get(Field::EthType)
                .is_some_and(|(v, _)| v != ipv4)
                || f.matcher
                    .get(Field::Ipv4Dst)
                    .is_some_and(|(v, mask)| dst & mask & unit_mask != v & unit_mask)
                || key.dst6.is_some_and(|dst6| {
                    f.matcher
                        .get(Field::Ipv6Dst)
                        .is_some_and(|(v, mask)| dst6 & mask != v)
                })
            {
                return None;
            }
            // Below the guard, a rule for packets from a tunnel never matches (and
            // no switch has a tunnel to itself): such as the hairpin the compiler
            // adds for a route into the tunnel the packet came from.
            let from_tunnel = f
                .matcher
                .exact(Field::InPort)
                .is_some_and(|p| p >= u128::from(TUNNEL_PORT_BASE));
            if key.band != Band::Open && from_tunnel {
                return None;
            }
            f.matcher = f.matcher.with(Field::EthType, ipv4);
            if let Some(dst6) = key.dst6 {
                f.matcher = f.matcher.with(Field::Ipv6Dst, dst6);
                return seen.insert((f.priority, f.matcher)).then_some(f);
            }
            f.matcher = match f.matcher.get(Field::Ipv4Dst) {
                // The policy's test of an address inside the prefix stays.
                Some((v, mask)) if key.len < 32 => {
                    let narrowed = (v & mask) | (dst & unit_mask);
                    f.matcher
                        .with_masked(Field::Ipv4Dst, narrowed, mask | unit_mask)
                }
                _ if key.len < 32 => f.matcher.with_masked(Field::Ipv4Dst, dst, unit_mask),
                _ => f.matcher.with(Field::Ipv4Dst, dst),
            };
            seen.insert((f.priority, f.matcher)).then_some(f)
        })
        .collect();
    Ok(flows.into())
}

/// The program of a policy that does more than filter: compiled whole, as one
/// program, every switch's table a set of plain flows.
fn whole(
    inv: &Arc<Inventory>,
    form: Arc<PolicyForm>,
    migration: Option<&Migration>,
) -> Result<NetworkProgram, ProgramError> {
    let routing = Policy::union_all(vec![
        routing_program_during(inv, migration),
        crate::routing6::ipv6_routing_program(inv, migration),
    ]);
    let program = form.before(&routing)?;
    let mut compiled = netkat::compile(&program)?;
    let mut tables = BTreeMap::new();
    let public_vms = crate::gateway::public_vms_of(inv);
    for host in &inv.hosts {
        let table = compiled.table(
            host.datapath_id,
            TableOptions {
                table_id: 0,
                cookie: SCC_COOKIE,
                base_priority: 1,
            },
        )?;
        let mut flows = plain_flows_above(inv, host, migration, &public_vms);
        flows.extend(table.flows);
        tables.insert(host.datapath_id, Arc::new(SwitchTable::from_flows(flows)));
    }
    Ok(NetworkProgram {
        policy: Some(form),
        inventory: Some(inv.clone()),
        migration: migration.cloned(),
        tables,
        cache: UnitCache::default(),
        layered: inv.has_vm_prefixes(),
        dests: None,
    })
}

/// The flows of `host`'s switch outside the units: those above every compiled
/// rule, and the guard between the bands.
fn plain_flows(
    inv: &Inventory,
    host: &Host,
    migration: Option<&Migration>,
    public_vms: &PublicVms<'_>,
) -> Vec<FlowSpec> {
    let mut flows = plain_flows_above(inv, host, migration, public_vms);
    let families: &[u16] = if inv.overlay_ipv6.is_some() {
        &[ethertype::IPV4, ethertype::IPV6]
    } else {
        &[ethertype::IPV4]
    };
    for &family in families {
        for other in inv.hosts.iter().filter(|h| h.name != host.name) {
            // Never from one tunnel into another: the mesh is direct, no transit.
            let mut guard = FlowSpec::new(
                0,
                GUARD_PRIORITY,
                FlowMatch::any()
                    .with(Field::InPort, u128::from(other.tunnel_port()))
                    .with(Field::EthType, u128::from(family)),
                Vec::new(),
            );
            guard.cookie = SCC_COOKIE;
            flows.push(guard);
        }
    }
    flows
}

/// A migration's announcement flows, a gateway's NAT and its counted drops.
fn plain_flows_above(
    inv: &Inventory,
    host: &Host,
    migration: Option<&Migration>,
    public_vms: &PublicVms<'_>,
) -> Vec<FlowSpec> {
    let mut flows = Vec::new();
    if let Some(m) = migration.filter(|m| m.phase == Phase::Prepared && m.to_host == host.name) {
        for eth_type in [ethertype::ARP, ethertype::RARP] {
            flows.push(FlowSpec::new(
                0,
                ANNOUNCE_PRIORITY,
                FlowMatch::any()
                    .with(Field::InPort, u128::from(m.to_port))
                    .with(Field::EthType, u128::from(eth_type)),
                vec![Action::output(openflow::flow::port::CONTROLLER)],
            ));
        }
    }
    flows.extend(crate::gateway::outbound_flows(
        inv, host, migration, public_vms,
    ));
    flows.extend(crate::gateway::counted_drops(inv, host, public_vms));
    flows.extend(crate::routing6::ipv6_plain_flows(inv, host));
    flows.extend(crate::gateway6::public_ipv6_flows(inv, host, migration));
    for f in &mut flows {
        f.cookie = SCC_COOKIE;
    }
    flows
}

/// True when `p` only filters packets (it changes no field and has no scope).
fn filters_only(p: &CPol) -> bool {
    let mut stack = vec![p];
    while let Some(q) = stack.pop() {
        match q {
            CPol::Filter(_) | CPol::Dup => {}
            CPol::Union(a, b) | CPol::Seq(a, b) => stack.extend([&**a, &**b]),
            CPol::Star(a) => stack.push(a),
            CPol::Mod(..) | CPol::Link { .. } | CPol::Let { .. } => return false,
        }
    }
    true
}

/// True when `p` tests the switch anywhere.
fn tests_switch(p: &CPol) -> bool {
    let (mut pols, mut preds) = (vec![p], Vec::<&CPred>::new());
    while let Some(q) = pols.pop() {
        match q {
            CPol::Filter(a) => preds.push(a),
            CPol::Union(a, b) | CPol::Seq(a, b) => pols.extend([&**a, &**b]),
            CPol::Star(a) | CPol::Let { body: a, .. } => pols.push(a),
            CPol::Mod(..) | CPol::Link { .. } | CPol::Dup => {}
        }
    }
    while let Some(a) = preds.pop() {
        match a {
            CPred::Test(t) if t.field == HField::Switch => return true,
            CPred::Not(a) => preds.push(a),
            CPred::And(a, b) | CPred::Or(a, b) => preds.extend([&**a, &**b]),
            CPred::True | CPred::False | CPred::Test(_) => {}
        }
    }
    false
}

/// Compiles `policy ; routing` and returns each host switch's flows, keyed by
/// datapath id. `policy_name` is used in error messages.
pub fn compile_network(
    inv: &Inventory,
    policy: &str,
    policy_name: &str,
) -> Result<BTreeMap<u64, Vec<FlowSpec>>, ProgramError> {
    compile_network_during(inv, policy, policy_name, None)
}

/// [`compile_network`] with a migration in progress: the phase's routing, plus, while
/// prepared, a flow at the destination that sends the VM's announcement (QEMU's
/// RARP, or a gratuitous ARP) from its new port to the controller.
pub fn compile_network_during(
    inv: &Inventory,
    policy: &str,
    policy_name: &str,
    migration: Option<&Migration>,
) -> Result<BTreeMap<u64, Vec<FlowSpec>>, ProgramError> {
    Ok(NetworkProgram::compile(inv, policy, policy_name, migration)?.flat_tables())
}
