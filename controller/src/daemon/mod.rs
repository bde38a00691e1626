//! The controller daemon: keeps every host switch's table equal to the compiled
//! network program, and carries out the changes to it.
//!
//! A change (a policy applied, a host or VM added or removed, a step of a
//! migration) goes through one pipeline: compile the inventory and policy from the
//! program in force, recompiling only what the change touches (`program`),
//! persist the new version with the migration phase it compiles (`store`, its
//! fsync under no lock a switch session takes), swap in its tables and publish
//! the version, which every switch session (`crate::net`) follows by sending its
//! switch the difference (`diff`, of the rules that changed): nothing reaches a
//! switch that the store does not hold, so a restarted controller resumes from
//! the last committed phase (`resume`). A policy or inventory that does not
//! compile is refused and nothing changes. Every change runs on a blocking
//! thread, never on the async workers that serve the switches. This module owns
//! the [`Controller`] state, the
//! program's versions and that pipeline; it drives the migration state machine
//! (`crate::migration`, in `migrate`) and the placement loop (in
//! `follow_the_sun`). It holds no socket: the OpenFlow sessions and the API
//! call it.

mod activity;
#[cfg(test)]
mod crash_tests;
mod follow_the_sun;
mod migrate;
mod port_bindings;
mod preview;
mod published;
mod sync_phases;
#[cfg(test)]
pub(crate) mod tests;

use crate::feed::VmAddresses;
use crate::follow::Follower;
use crate::migration::{MigrationState, Refusal};
use crate::model::{Inventory, Vm, VmClaims};
use crate::program::{NetworkProgram, SwitchTable};
use crate::restart::InventoryDiff;
use crate::routing::ProgramError;
use crate::state_store::{Mastership, StateStore};
use crate::store::Persisted;
pub use activity::SessionActivity;
pub use preview::{PolicyChange, Reach, SwitchChange};
pub(crate) use published::Published;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
pub(crate) use sync_phases::SessionPhases;
use sync_phases::SyncPhases;
pub use sync_phases::{PhaseSummary, Spread};
use tokio::sync::watch;

/// What the controller reports about one switch.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SwitchStatus {
    /// Connected now.
    pub connected: bool,
    /// Remote address of the connection.
    pub peer: String,
    /// Program version the switch confirmed (barrier) last.
    pub synced_version: u64,
    /// Flows the controller installed there.
    pub flows: usize,
    /// Flow-mods sent in the last synchronisation.
    pub last_flow_mods: usize,
    /// Errors the switch reported, or why its session ended (it stopped
    /// answering), last one.
    pub last_error: Option<String>,
    /// Audits of its flows (periodic and after a reconnect).
    pub audits: u64,
    /// Flow-mods the audits sent to repair flows that differed from the program
    /// (deleted, added or changed behind the controller's back).
    pub repairs: u64,
    /// The OpenFlow role the switch last accepted from this controller (none
    /// asked for as the sole controller).
    pub role: Option<Mastership>,
    /// Tunnel ports by name, true while their WireGuard session is live.
    pub tunnels_up: BTreeMap<String, bool>,
    /// Every port by OpenFlow number, with its name, as the switch described them
    /// when it connected and announced since (port-status).
    pub ports: BTreeMap<u32, String>,
    /// Unix time of the last change.
    pub updated: u64,
}

/// The controller's whole state.
#[derive(Debug)]
pub struct State {
    /// Persisted part.
    pub persisted: Persisted,
    /// The compiled program (each switch's table) of `persisted.version`.
    pub program: NetworkProgram,
    /// Switches by datapath id.
    pub switches: BTreeMap<u64, SwitchStatus>,
    /// The current or last migration (with its timeline).
    pub migration: Option<MigrationState>,
    /// The switch step of the migration in progress, compiled while the VM is
    /// still on its way, for the program version it was compiled against.
    switch_ahead: Option<(u64, NetworkProgram)>,
}

impl State {
    /// Every switch's flows in force, copied.
    pub fn tables(&self) -> BTreeMap<u64, Vec<openflow::FlowSpec>> {
        self.program.flat_tables()
    }

    /// The migration in progress, if any.
    fn in_progress(&self) -> Option<&MigrationState> {
        self.migration.as_ref().filter(|m| m.in_progress())
    }
}

/// How long the old host forwards a migrated VM's in-flight packets.
pub const GRACE: Duration = Duration::from_secs(2);

/// Why a change was refused.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// The new program does not compile; nothing changed.
    #[error("{0}")]
    Program(#[from] ProgramError),
    /// The change is not valid for the inventory.
    #[error("{0}")]
    Invalid(String),
    /// The store could not be written; nothing changed.
    #[error("state not saved, nothing changed: {0}")]
    Store(#[from] std::io::Error),
    /// This replica does not lead: only the leader changes the network.
    #[error(
        "this scc is not the leader (a standby replica, or a leader cut off from the \
         etcd quorum): changes go to the replica whose `scc status` says \"role\": \
         \"master\"; nothing changed, the switches keep forwarding"
    )]
    Standby,
}

impl From<Refusal> for ChangeError {
    fn from(refusal: Refusal) -> ChangeError {
        ChangeError::Invalid(refusal.to_string())
    }
}

/// State shared by the OpenFlow sessions and the API.
#[derive(Debug)]
pub struct Controller {
    state: Mutex<State>,
    /// Held by each change from reading the state to committing it, so two changes
    /// (an API call, a VM's arrival, a clean-up) never overwrite each other.
    changes: Mutex<()>,
    store: Box<dyn StateStore>,
    /// The version in force as the switch sessions take it: its tables and
    /// each switch's delta from the version before.
    version: watch::Sender<Arc<Published>>,
    /// Leader, standby or sole controller: the role the switch sessions claim.
    mastership: watch::Sender<Mastership>,
    /// Measurements and the follow-the-sun loop.
    follower: Follower,
    /// Switches refused at the OpenFlow listener, by reason.
    switch_refusals: Mutex<BTreeMap<&'static str, u64>>,
    /// Where the last version's distribution spent its time.
    sync_phases: SyncPhases,
    /// What each switch session is doing now.
    pub(crate) activities: activity::Activities,
    /// The connected switches' sessions that take add-port and del-port.
    pub(crate) port_requests: crate::port_requests::PortRequests,
    /// Every switch's port bindings for the version in force, shared by the
    /// sessions.
    port_bindings: Mutex<port_bindings::BindingsByDpid>,
    /// The VMs' addresses of the inventory they were indexed from, shared by
    /// the sessions' traffic samples.
    vm_addresses: Mutex<Option<(Arc<Inventory>, Arc<VmAddresses>)>>,
    /// What the VMs of an inventory hold (addresses, MACs, ports), so that a VM
    /// added is checked against an index rather than every VM.
    vm_claims: Mutex<Option<(Arc<Inventory>, VmClaims)>>,
}

/// The tables of a stored state, with the migration it holds if one is in
/// progress (the phase the store committed is the one the switches get).
fn compile_persisted(p: &Persisted) -> Result<NetworkProgram, ProgramError> {
    let migration = p.migration.as_ref().and_then(MigrationState::program);
    NetworkProgram::compile_shared(&p.inventory, &p.policy, &p.policy_name, migration.as_ref())
}

/// Version `version` of `program` for the sessions, after `before`: every
/// inventory host's table (a host without flows gets an empty one) and the
/// deltas from `before`'s; the migration's old host takes its measurements.
fn publication(
    version: u64,
    program: &NetworkProgram,
    inventory: &Inventory,
    migration: Option<&MigrationState>,
    before: &Published,
) -> Published {
    let tables = inventory
        .hosts
        .iter()
        .map(|h| {
            let table = program.table(h.datapath_id).cloned().unwrap_or_default();
            (h.datapath_id, table)
        })
        .collect();
    let measured = migration
        .and_then(|m| inventory.host(&m.route.from_host))
        .map(|h| h.datapath_id);
    Published::new(version, tables, before, measured)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Controller {
    /// A controller for this state, compiled now (with the migration it holds, if
    /// one is in progress) and saved; fails if it does not compile or cannot be
    /// saved.
    pub fn new(
        persisted: Persisted,
        store: impl StateStore + 'static,
    ) -> Result<Arc<Controller>, ChangeError> {
        let ctl = Controller::replica(persisted, store, Mastership::Sole)?;
        ctl.store.save(&ctl.lock().persisted)?;
        Ok(ctl)
    }

    /// A controller for state read from a shared store, compiled now with the
    /// migration it holds and not written back (a standby may not write),
    /// starting as `mastership`.
    pub fn replica(
        persisted: Persisted,
        store: impl StateStore + 'static,
        mastership: Mastership,
    ) -> Result<Arc<Controller>, ChangeError> {
        let program = compile_persisted(&persisted)?;
        let migration = persisted.migration.clone();
        let first = publication(
            persisted.version,
            &program,
            &persisted.inventory,
            migration.as_ref(),
            &Published::default(),
        );
        let (version, _) = watch::channel(Arc::new(first));
        let (mastership, _) = watch::channel(mastership);
        let moves_ms = persisted.moves_ms.clone();
        // Indexed at the start, so that the first VM added is no slower than
        // the next ones.
        let claims = (
            persisted.inventory.clone(),
            VmClaims::of(&persisted.inventory),
        );
        Ok(Arc::new(Controller {
            state: Mutex::new(State {
                persisted,
                program,
                switches: BTreeMap::new(),
                migration,
                switch_ahead: None,
            }),
            changes: Mutex::new(()),
            store: Box::new(store),
            version,
            mastership,
            follower: Follower::with_moves(&moves_ms),
            switch_refusals: Mutex::new(BTreeMap::new()),
            sync_phases: SyncPhases::default(),
            activities: Default::default(),
            port_requests: Default::default(),
            port_bindings: Mutex::default(),
            vm_addresses: Mutex::default(),
            vm_claims: Mutex::new(Some(claims)),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Now on the migration state machine's clock: Unix time, so that the
    /// timeline of a migration resumed after a restart goes on from where it was.
    fn clock(&self) -> Duration {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
    }

    /// Compiles `inventory` with `policy` and the migration in progress; on
    /// success persists, swaps in the new tables and tells every switch session.
    /// On failure nothing changes.
    fn change(
        &self,
        inventory: impl Into<Arc<Inventory>>,
        policy: String,
        policy_name: String,
    ) -> Result<u64, ChangeError> {
        let inventory = inventory.into();
        let (base, migration) = {
            let st = self.lock();
            let migration = st.in_progress().and_then(MigrationState::program);
            (st.program.clone(), migration)
        };
        let program = base.update_shared(&inventory, &policy, &policy_name, migration.as_ref())?;
        self.commit(inventory, policy, policy_name, program, |_, _| {})
    }

    /// The program in force, to compile the next one from.
    fn program(&self) -> NetworkProgram {
        self.lock().program.clone()
    }

    /// Persists and swaps in a compiled program. `on_commit` takes the migration
    /// to the phase the program is compiled for, with the new version; the store
    /// holds that phase with the program, written before any switch session can
    /// see either. If the store refuses, the migration stays as it was. The
    /// caller holds `changes`, so no other commit runs meanwhile; the store is
    /// written without the state lock, which every switch session takes.
    /// `on_commit` runs twice: on a copy of the migration for the store, then on
    /// the migration in force under the lock, which the sessions may have told
    /// more (synchronised versions, counters, timeline events) during the write.
    fn commit(
        &self,
        inventory: impl Into<Arc<Inventory>>,
        policy: String,
        policy_name: String,
        program: NetworkProgram,
        on_commit: impl Fn(&mut Option<MigrationState>, u64),
    ) -> Result<u64, ChangeError> {
        // Read before the state lock: locks are taken state, then follower.
        let moves_ms = self.follower.recent_moves();
        let (version, mut migration) = {
            let st = self.lock();
            if !self.mastership.borrow().programs_switches() {
                return Err(ChangeError::Standby);
            }
            (st.persisted.version + 1, st.migration.clone())
        };
        on_commit(&mut migration, version);
        let inventory: Arc<Inventory> = inventory.into();
        // Changes are serialised: the version published now is the one before.
        let working_out = std::time::Instant::now();
        let before = self.version.borrow().clone();
        let published = publication(version, &program, &inventory, migration.as_ref(), &before);
        drop(before);
        let deltas = working_out.elapsed();
        let next = Persisted {
            inventory,
            policy,
            policy_name,
            version,
            moves_ms,
            migration,
        };
        let saving = std::time::Instant::now();
        self.store.save(&next)?;
        let save = saving.elapsed();
        let mut st = self.lock();
        st.persisted = next;
        on_commit(&mut st.migration, version);
        st.program = program;
        // Whatever was compiled ahead was compiled against an older version.
        st.switch_ahead = None;
        let v = st.persisted.version;
        self.sync_phases.published(v, save, deltas);
        // Published under the lock, so versions only ever go up.
        self.version.send_replace(Arc::new(published));
        Ok(v)
    }

    /// Takes the state another replica committed to the shared store: compiled
    /// (with the migration phase it holds) and swapped in as if committed here,
    /// without writing it back. Versions not
    /// newer than the one in force (this replica's own writes, read back) change
    /// nothing; one that does not compile is refused and nothing changes.
    pub fn adopt(&self, persisted: Persisted) -> Result<Option<u64>, ChangeError> {
        let _serial = self.serialize();
        if persisted.version <= self.lock().persisted.version {
            return Ok(None);
        }
        let program = compile_persisted(&persisted)?;
        let before = self.version.borrow().clone();
        let published = publication(
            persisted.version,
            &program,
            &persisted.inventory,
            persisted.migration.as_ref(),
            &before,
        );
        drop(before);
        let mut st = self.lock();
        let v = persisted.version;
        st.migration = persisted.migration.clone();
        st.persisted = persisted;
        st.program = program;
        st.switch_ahead = None;
        self.sync_phases
            .published(v, Duration::ZERO, Duration::ZERO);
        self.version.send_replace(Arc::new(published));
        Ok(Some(v))
    }

    /// Becomes leader, standby or sole controller; the switch sessions claim the
    /// matching OpenFlow role.
    pub fn set_mastership(&self, m: Mastership) {
        self.mastership
            .send_if_modified(|old| std::mem::replace(old, m) != m);
    }

    /// Leader, standby or sole controller, now.
    pub fn mastership(&self) -> Mastership {
        *self.mastership.borrow()
    }

    /// The mastership as it changes, for a switch session to follow.
    pub(crate) fn masterships(&self) -> watch::Receiver<Mastership> {
        self.mastership.subscribe()
    }

    /// Serialises changes (see `changes`).
    fn serialize(&self) -> std::sync::MutexGuard<'_, ()> {
        self.changes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the policy.
    pub fn apply_policy(&self, policy: &str, name: &str) -> Result<u64, ChangeError> {
        let _serial = self.serialize();
        let inv = self.lock().persisted.inventory.clone();
        self.change(inv, policy.to_string(), name.to_string())
    }

    /// Adds (or replaces) a VM.
    pub fn add_vm(&self, vm: Vm) -> Result<u64, ChangeError> {
        let _serial = self.serialize();
        let (mut inv, policy, name) = self.snapshot();
        // Checked against an index of what the VMs claim, not every VM; the
        // copy of the inventory shares every VM (a persistent map).
        let mut claims = self.vm_claims(&inv);
        Arc::make_mut(&mut inv)
            .add_vm_claiming(vm, &mut claims)
            .map_err(|e| ChangeError::Invalid(e.to_string()))?;
        let version = self.change(inv.clone(), policy, name)?;
        *self.vm_claims.lock().unwrap_or_else(|e| e.into_inner()) = Some((inv, claims));
        Ok(version)
    }

    /// Adds (or replaces) a host.
    pub fn add_host(&self, host: crate::model::Host) -> Result<u64, ChangeError> {
        let _serial = self.serialize();
        let (mut inv, policy, name) = self.snapshot();
        Arc::make_mut(&mut inv)
            .add_host(host)
            .map_err(|e| ChangeError::Invalid(e.to_string()))?;
        self.change(inv, policy, name)
    }

    /// Removes a host that runs no VM.
    pub fn remove_host(&self, name: &str) -> Result<u64, ChangeError> {
        let _serial = self.serialize();
        let (mut inv, policy, pname) = self.snapshot();
        if let Some(vm) = inv.vms.values().find(|v| v.host == name) {
            return Err(ChangeError::Invalid(format!(
                "host `{name}` still runs VM `{}`: move or remove it first",
                vm.name
            )));
        }
        let before = inv.hosts.len();
        Arc::make_mut(&mut inv).hosts.retain(|h| h.name != name);
        if inv.hosts.len() == before {
            return Err(ChangeError::Invalid(format!("no host `{name}`")));
        }
        self.change(inv, policy, pname)
    }

    /// Removes a VM.
    pub fn remove_vm(&self, name: &str) -> Result<u64, ChangeError> {
        let _serial = self.serialize();
        let (mut inv, policy, pname) = self.snapshot();
        if Arc::make_mut(&mut inv).vms.remove(name).is_none() {
            return Err(ChangeError::Invalid(format!("no VM `{name}`")));
        }
        self.change(inv, policy, pname)
    }

    /// The difference from the inventory in force to `inventory`, and, when
    /// `apply`, the version that puts `inventory` in force (`scc inventory
    /// import`). Refused while a migration is in progress: it would move the VM
    /// under the migration's feet.
    pub fn import_inventory(
        &self,
        inventory: Inventory,
        apply: bool,
    ) -> Result<(InventoryDiff, Option<u64>), ChangeError> {
        let _serial = self.serialize();
        let (current, policy, name) = self.snapshot();
        let diff = InventoryDiff::between(&current, &inventory);
        if !apply || diff.is_empty() {
            return Ok((diff, None));
        }
        if let Some(m) = self.lock().in_progress() {
            return Err(ChangeError::Invalid(format!(
                "VM `{}` is migrating: finish or abort it before importing an inventory",
                m.route.vm
            )));
        }
        let version = self.change(inventory, policy, name)?;
        Ok((diff, Some(version)))
    }

    fn snapshot(&self) -> (Arc<Inventory>, String, String) {
        let st = self.lock();
        (
            st.persisted.inventory.clone(),
            st.persisted.policy.clone(),
            st.persisted.policy_name.clone(),
        )
    }

    /// A JSON view of everything, for `scc status`.
    pub fn status(&self) -> serde_json::Value {
        let (mut status, inv) = self.status_without_vms();
        // Megabytes at 100,000 VMs: written after the lock every session takes.
        status["vms"] = if inv.overlay_ipv6.is_some() {
            serde_json::json!(inv
                .vms
                .values()
                .map(|vm| inv.vm_json(vm))
                .collect::<Vec<_>>())
        } else {
            serde_json::json!(inv.vms.values().collect::<Vec<_>>())
        };
        status
    }

    /// [`Self::status`] without its list of VMs (cheap to poll at 100,000
    /// VMs), and the inventory it describes.
    pub fn status_without_vms(&self) -> (serde_json::Value, Arc<Inventory>) {
        let st = self.lock();
        let inv = st.persisted.inventory.clone();
        let hosts: Vec<_> = inv
            .hosts
            .iter()
            .map(|h| {
                let s = st.switches.get(&h.datapath_id).cloned().unwrap_or_default();
                serde_json::json!({
                    "name": h.name, "cloud": h.cloud, "datapath_id": h.datapath_id,
                    "tunnel_endpoint": h.tunnel_endpoint.to_string(),
                    "desired_flows": st.program.table(h.datapath_id).map_or(0, |t| t.len()),
                    "switch": s,
                    "session": self.activities.of(h.datapath_id),
                })
            })
            .collect();
        let repairs: u64 = st.switches.values().map(|s| s.repairs).sum();
        let status = serde_json::json!({
            "version": st.persisted.version,
            "mastership": *self.mastership.borrow(),
            "repairs": repairs,
            "policy": st.persisted.policy_name,
            "migration": st.in_progress().and_then(MigrationState::program),
            "timeline": st.migration.as_ref().map(|m| &m.timeline).cloned().unwrap_or_default(),
            "clouds": inv.clouds.values().collect::<Vec<_>>(),
            "hosts": hosts,
            "placement": self.follower.moves(),
            "sync_phases": self.sync_phases.summary(),
            "sessions": self.activities.counts(),
        });
        drop(st);
        (status, inv)
    }

    /// The inventory in force (shared: a reader copies nothing).
    pub fn inventory(&self) -> Arc<Inventory> {
        self.lock().persisted.inventory.clone()
    }

    /// The inventory in force and its VMs' addresses, indexed once per
    /// inventory for all the switches' traffic samples.
    pub(crate) fn vm_addresses(&self) -> (Arc<Inventory>, Arc<VmAddresses>) {
        let inv = self.inventory();
        let mut cached = self.vm_addresses.lock().unwrap_or_else(|e| e.into_inner());
        match &*cached {
            Some((of, addresses)) if Arc::ptr_eq(of, &inv) => (inv, addresses.clone()),
            _ => {
                let addresses = Arc::new(VmAddresses::new(&inv));
                *cached = Some((inv.clone(), addresses.clone()));
                (inv, addresses)
            }
        }
    }

    /// What the VMs of `inv` hold, from the claims indexed for an earlier
    /// inventory when there are some (only the VMs that changed since are
    /// looked at).
    fn vm_claims(&self, inv: &Arc<Inventory>) -> VmClaims {
        let cached = self.vm_claims.lock().unwrap_or_else(|e| e.into_inner());
        match &*cached {
            Some((of, claims)) if Arc::ptr_eq(of, inv) => claims.clone(),
            Some((of, claims)) => claims.updated(of, inv),
            None => VmClaims::of(inv),
        }
    }

    /// One VM, for `scc vm show`.
    pub fn vm(&self, name: &str) -> Option<Vm> {
        self.lock().persisted.inventory.vms.get(name).cloned()
    }

    /// The program version in force and switch `dpid`'s table in it; `None` when
    /// `dpid` is not an inventory host's.
    pub(crate) fn desired(&self, dpid: u64) -> Option<(u64, Arc<SwitchTable>)> {
        let st = self.lock();
        st.persisted.inventory.host_by_dpid(dpid)?;
        Some((
            st.persisted.version,
            st.program.table(dpid).cloned().unwrap_or_default(),
        ))
    }

    /// The bindings of every switch's VM ports (port security), by datapath
    /// id: its VMs, and the VM a migration in progress brings there; worked
    /// out once per version.
    pub(crate) fn all_port_bindings(&self) -> Arc<port_bindings::ByDpid> {
        let st = self.lock();
        let arriving = st.in_progress().map(|m| &m.route);
        let mut bindings = self.port_bindings.lock().unwrap_or_else(|e| e.into_inner());
        bindings.all(st.persisted.version, arriving, &st.persisted.inventory)
    }

    /// The program version switch `dpid` confirmed last, if it ever did since
    /// this controller started.
    pub(crate) fn confirmed_version(&self, dpid: u64) -> Option<u64> {
        let st = self.lock();
        let s = st.switches.get(&dpid)?;
        (s.synced_version > 0).then_some(s.synced_version)
    }

    /// What is reported about every inventory host's switch, by host name.
    pub fn switch_report(&self) -> Vec<(String, SwitchStatus)> {
        let st = self.lock();
        st.persisted
            .inventory
            .hosts
            .iter()
            .map(|h| {
                let s = st.switches.get(&h.datapath_id).cloned().unwrap_or_default();
                (h.name.clone(), s)
            })
            .collect()
    }

    /// Changes what is reported about switch `dpid`.
    pub(crate) fn update_switch(&self, dpid: u64, f: impl FnOnce(&mut SwitchStatus)) {
        let mut st = self.lock();
        let s = st.switches.entry(dpid).or_default();
        f(s);
        s.updated = now_secs();
    }

    /// Counts a switch refused at the OpenFlow listener for `reason`.
    pub(crate) fn note_switch_refused(&self, reason: &'static str) {
        let mut refusals = self
            .switch_refusals
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *refusals.entry(reason).or_default() += 1;
    }

    /// Switches refused at the OpenFlow listener so far, by reason.
    pub fn switch_refusals(&self) -> BTreeMap<&'static str, u64> {
        self.switch_refusals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The program versions as they are committed, for a switch session to follow.
    pub(crate) fn versions(&self) -> watch::Receiver<Arc<Published>> {
        self.version.subscribe()
    }

    /// Records that switch `dpid` confirmed `version` (holding `flows` flows,
    /// after `flow_mods`), for `scc status` and the migration timeline: one
    /// trip to the state lock per synchronisation.
    pub(crate) fn note_confirmed(&self, dpid: u64, version: u64, flows: usize, flow_mods: usize) {
        let now = self.clock();
        let mut st = self.lock();
        let s = st.switches.entry(dpid).or_default();
        s.synced_version = version;
        s.flows = flows;
        s.last_flow_mods = flow_mods;
        s.updated = now.as_secs();
        migrate::note_synced(&mut st, dpid, version, now);
    }

    /// Records that a session confirmed `version` through `phases`.
    pub(crate) fn note_sync_phases(&self, version: u64, phases: SessionPhases) {
        self.sync_phases.confirmed(version, phases);
    }

    /// Where the last version's distribution spent its time (see
    /// `sync_phases`).
    pub fn sync_phases(&self) -> PhaseSummary {
        self.sync_phases.summary()
    }

    /// The measurements and the follow-the-sun loop, which the switch sessions
    /// feed.
    pub(crate) fn follower(&self) -> &Follower {
        &self.follower
    }
}
