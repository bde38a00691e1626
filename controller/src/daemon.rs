//! The controller daemon: keeps every host switch's table equal to the compiled
//! network program, over OpenFlow 1.3.
//!
//! Each `scd` connects to the controller. On connect the controller learns the
//! datapath id (features), reads the flows the switch already holds (flow stats:
//! a restarted controller does not wipe working tables), and sends only the
//! difference (adds and modifies, barrier, deletes, barrier; see `diff`). When the
//! program changes (a policy applied, a VM added or removed) every connected switch
//! gets its own difference the same way. A policy or inventory that does not compile
//! is refused and nothing changes. This module owns the network program, its
//! versions and the switch connections; it does not parse policies (`netkat`) or
//! decide routes (`routing`).

use crate::diff::plan;
use crate::feed::TrafficSampler;
use crate::follow::{now_ms, Follower, MoveFailure, Round};
use crate::inventory::{Inventory, Vm};
use crate::routing::{compile_network_during, Migration, Phase, ProgramError, SCC_COOKIE};
use crate::store::{Persisted, Store};
use openflow::flow::{ethertype, port, Field, FlowMatch};
use openflow::wire::{
    decode, encode, frame_len, port_state, FlowStatsEntry, FlowStatsRequest, Hello, Message,
    MultipartReply, MultipartReplyBody, MultipartRequest, MultipartRequestBody, TunnelStatsEntry,
    GROUP_ANY, MORE, TABLE_ALL,
};
use openflow::FlowSpec;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
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
    /// Errors the switch reported, last one.
    pub last_error: Option<String>,
    /// Tunnel ports by name, true while their WireGuard session is live.
    pub tunnels_up: BTreeMap<String, bool>,
    /// Unix time of the last change.
    pub updated: u64,
}

/// The controller's whole state.
#[derive(Debug)]
pub struct State {
    /// Persisted part.
    pub persisted: Persisted,
    /// Compiled tables by datapath id, for `persisted.version`.
    pub tables: BTreeMap<u64, Vec<FlowSpec>>,
    /// Switches by datapath id.
    pub switches: BTreeMap<u64, SwitchStatus>,
    /// The migration in progress, if any.
    pub migration: Option<Migration>,
    /// Timeline of the current or last migration.
    pub timeline: Timeline,
    /// The switch step of the migration in progress, compiled while the VM is
    /// still on its way, for the program version it was compiled against.
    switch_ahead: Option<(u64, BTreeMap<u64, Vec<FlowSpec>>)>,
}

/// What happened during a migration, in milliseconds from its start.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timeline {
    /// The VM.
    pub vm: String,
    /// Events in order: (name, ms since start).
    pub events: Vec<(String, f64)>,
    /// Packets the old host sent on to the new host during the grace period: the
    /// counters of its forwarding flows, read just before the clean-up removes them.
    pub forwarded_by_old_host: Option<u64>,
    /// Packets lost at the old host: those it could not deliver to the VM's old
    /// port (transmit drops from the prepare to the switch), plus those it still
    /// delivered there after the VM had announced itself at its destination.
    pub lost_at_old_host: Option<u64>,
    /// What the old host's session measures for the two counts above.
    #[serde(skip)]
    old_host: Option<OldHost>,
    /// Program version of the prepare step.
    #[serde(skip)]
    prepare_version: u64,
    /// Program version of the switch step.
    #[serde(skip)]
    switch_version: u64,
    #[serde(skip)]
    started: Option<std::time::Instant>,
}

impl Timeline {
    fn note(&mut self, event: &str) {
        let ms = self
            .started
            .map_or(0.0, |t| t.elapsed().as_secs_f64() * 1000.0);
        tracing::info!(vm = %self.vm, event, ms, "migration");
        self.events.push((event.to_string(), ms));
    }

    fn has(&self, event: &str) -> bool {
        self.events.iter().any(|(e, _)| e == event)
    }

    /// Milliseconds between two events, when both happened.
    pub fn between(&self, from: &str, to: &str) -> Option<f64> {
        let at = |e: &str| self.events.iter().find(|(n, _)| n == e).map(|(_, t)| *t);
        Some(at(to)? - at(from)?)
    }
}

/// The migrating VM's old host, as its session measures it for the timeline.
#[derive(Debug, Clone)]
struct OldHost {
    dpid: u64,
    /// The VM's port there.
    port: u32,
    vm_ip: std::net::Ipv4Addr,
    /// The old host's tunnel port towards the new host.
    tunnel_port: u32,
    /// Program version of the clean-up, once committed.
    cleanup_version: u64,
    /// The old port's counters when the old host confirmed the prepare step.
    baseline: Option<PortCounts>,
    baseline_taken: bool,
    switch_taken: bool,
    cleanup_taken: bool,
}

/// The transmit counters of one switch port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PortCounts {
    tx_packets: u64,
    tx_dropped: u64,
}

/// What a switch session measures around one synchronisation, for the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Measure {
    Nothing,
    /// The old port's counters before the prepare step (the baseline of drops).
    Baseline {
        port: u32,
    },
    /// The old port's counters before and after the switch step.
    AroundSwitch {
        port: u32,
    },
    /// The forwarding flows' counters before the clean-up.
    Forwarded {
        vm_ip: std::net::Ipv4Addr,
        tunnel_port: u32,
    },
}

/// The inventory and migration of `m`'s switch step: the VM placed at its
/// destination, every switch sending there.
fn switched(inv: &Inventory, m: &Migration) -> (Inventory, Migration) {
    let mut inv = inv.clone();
    if let Some(vm) = inv.vms.get_mut(&m.vm) {
        vm.host = m.to_host.clone();
        vm.port = m.to_port;
    }
    let m = Migration {
        phase: Phase::Switched,
        ..m.clone()
    };
    (inv, m)
}

/// How long a switch may take to answer a request (barrier, flow stats).
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long after a move command's success the controller waits for the VM's own
/// announcement before taking the command's exit as the arrival.
const ARRIVAL_AFTER_MOVE: Duration = Duration::from_secs(5);

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
}

/// State shared by the OpenFlow sessions and the API.
#[derive(Debug)]
pub struct Controller {
    state: Mutex<State>,
    /// Held by each change from reading the state to committing it, so two changes
    /// (an API call, a VM's arrival, a clean-up) never overwrite each other.
    changes: Mutex<()>,
    store: Store,
    version: watch::Sender<u64>,
    /// Measurements and the follow-the-sun loop.
    follower: Follower,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Controller {
    /// A controller for this state, compiled now; fails if it does not compile.
    pub fn new(persisted: Persisted, store: Store) -> Result<Arc<Controller>, ChangeError> {
        let tables = compile_network_during(
            &persisted.inventory,
            &persisted.policy,
            &persisted.policy_name,
            None,
        )?;
        store.save(&persisted)?;
        let (version, _) = watch::channel(persisted.version);
        let moves_ms = persisted.moves_ms.clone();
        Ok(Arc::new(Controller {
            state: Mutex::new(State {
                persisted,
                tables,
                switches: BTreeMap::new(),
                migration: None,
                timeline: Timeline::default(),
                switch_ahead: None,
            }),
            changes: Mutex::new(()),
            store,
            version,
            follower: Follower::with_moves(&moves_ms),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Compiles `inventory` with `policy`; on success persists, swaps in the new
    /// tables and tells every switch session. On failure nothing changes.
    fn change(
        &self,
        inventory: Inventory,
        policy: String,
        policy_name: String,
    ) -> Result<u64, ChangeError> {
        let migration = self.lock().migration.clone();
        self.change_with(inventory, policy, policy_name, migration)
    }

    /// [`Self::change`] with the migration state to compile with (and keep).
    fn change_with(
        &self,
        inventory: Inventory,
        policy: String,
        policy_name: String,
        migration: Option<Migration>,
    ) -> Result<u64, ChangeError> {
        self.change_then(inventory, policy, policy_name, migration, |_, _| {})
    }

    /// [`Self::change_with`], running `on_commit` with the new version under the
    /// state lock, before any switch session can see the new version.
    fn change_then(
        &self,
        inventory: Inventory,
        policy: String,
        policy_name: String,
        migration: Option<Migration>,
        on_commit: impl FnOnce(&mut State, u64),
    ) -> Result<u64, ChangeError> {
        let tables = compile_network_during(&inventory, &policy, &policy_name, migration.as_ref())?;
        self.commit(inventory, policy, policy_name, migration, tables, on_commit)
    }

    /// Persists and swaps in a compiled program (see [`Self::change_then`]).
    fn commit(
        &self,
        inventory: Inventory,
        policy: String,
        policy_name: String,
        migration: Option<Migration>,
        tables: BTreeMap<u64, Vec<FlowSpec>>,
        on_commit: impl FnOnce(&mut State, u64),
    ) -> Result<u64, ChangeError> {
        // Read before the state lock: locks are taken state, then follower.
        let moves_ms = self.follower.recent_moves();
        let mut st = self.lock();
        let next = Persisted {
            inventory,
            policy,
            policy_name,
            version: st.persisted.version + 1,
            moves_ms,
        };
        self.store.save(&next)?;
        st.migration = migration;
        st.persisted = next;
        st.tables = tables;
        // Whatever was compiled ahead was compiled against an older version.
        st.switch_ahead = None;
        let v = st.persisted.version;
        on_commit(&mut st, v);
        // Published under the lock, so versions only ever go up.
        self.version.send_replace(v);
        Ok(v)
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
        inv.add_vm(vm)
            .map_err(|e| ChangeError::Invalid(e.to_string()))?;
        self.change(inv, policy, name)
    }

    /// Starts moving `vm` to port `to_port` of `to_host` (make before break): the
    /// destination learns to deliver it and to report its arrival.
    pub fn start_migration(
        self: &Arc<Self>,
        vm: &str,
        to_host: &str,
        to_port: u32,
    ) -> Result<u64, ChangeError> {
        let _serial = self.serialize();
        let (inv, policy, name) = self.snapshot();
        if let Some(m) = &self.lock().migration {
            return Err(ChangeError::Invalid(format!(
                "VM `{}` is already migrating",
                m.vm
            )));
        }
        let v = inv
            .vms
            .get(vm)
            .ok_or_else(|| ChangeError::Invalid(format!("no VM `{vm}`")))?;
        if inv.host(to_host).is_none() {
            return Err(ChangeError::Invalid(format!("no host `{to_host}`")));
        }
        if v.host == to_host {
            return Err(ChangeError::Invalid(format!(
                "VM `{vm}` already runs on `{to_host}`"
            )));
        }
        if let Some(o) = inv
            .vms
            .values()
            .find(|o| o.host == to_host && o.port == to_port)
        {
            return Err(ChangeError::Invalid(format!(
                "port {to_port} of `{to_host}` is VM `{}`'s",
                o.name
            )));
        }
        let m = Migration {
            vm: vm.to_string(),
            from_host: v.host.clone(),
            from_port: v.port,
            to_host: to_host.to_string(),
            to_port,
            phase: Phase::Prepared,
        };
        let started = std::time::Instant::now();
        let vm_name = vm.to_string();
        let old_host = match (inv.host(&m.from_host), inv.host(to_host)) {
            (Some(from), Some(to)) => Some(OldHost {
                dpid: from.datapath_id,
                port: m.from_port,
                vm_ip: v.ip,
                tunnel_port: to.tunnel_port(),
                cleanup_version: 0,
                baseline: None,
                baseline_taken: false,
                switch_taken: false,
                cleanup_taken: false,
            }),
            _ => None,
        };
        let switched = switched(&inv, &m);
        let version = self.change_then(
            inv,
            policy.clone(),
            name.clone(),
            Some(m.clone()),
            move |st, version| {
                st.timeline = Timeline {
                    vm: vm_name,
                    started: Some(started),
                    prepare_version: version,
                    old_host,
                    ..Timeline::default()
                };
                st.timeline.note("prepare sent");
            },
        )?;
        // The switch step does not depend on when the VM arrives: compile it now,
        // while QEMU copies memory, so the reroute only has to send it.
        let ctl = self.clone();
        std::thread::spawn(move || {
            let (inv, m) = switched;
            match compile_network_during(&inv, &policy, &name, Some(&m)) {
                Ok(tables) => {
                    let mut st = ctl.lock();
                    if st.persisted.version == version {
                        st.switch_ahead = Some((version, tables));
                        st.timeline.note("switch compiled");
                    }
                }
                Err(e) => tracing::warn!("switch step not compiled ahead: {e}"),
            }
        });
        Ok(version)
    }

    /// The migrating VM is live at its destination (its announcement arrived on
    /// `in_port` of switch `dpid`, or the hypervisor said so when `dpid` is `None`):
    /// every switch is told to send to the new host, at once; the old host forwards
    /// stragglers for [`GRACE`], then the transit is removed.
    pub fn arrived(
        self: &Arc<Self>,
        at: Option<(u64, u32)>,
        signal: &str,
    ) -> Result<u64, ChangeError> {
        self.arrived_vm(at, signal, None)
    }

    /// [`Self::arrived`], only if the migration waiting is `vm`'s when given.
    fn arrived_vm(
        self: &Arc<Self>,
        at: Option<(u64, u32)>,
        signal: &str,
        vm: Option<&str>,
    ) -> Result<u64, ChangeError> {
        let _serial = self.serialize();
        let (inv, policy, name) = self.snapshot();
        let Some(m) = self
            .lock()
            .migration
            .clone()
            .filter(|m| m.phase == Phase::Prepared && vm.is_none_or(|vm| vm == m.vm))
        else {
            return Err(ChangeError::Invalid(
                "no migration is waiting for its VM".into(),
            ));
        };
        if let Some((dpid, in_port)) = at {
            let to = inv.host(&m.to_host).map(|h| h.datapath_id);
            if to != Some(dpid) || in_port != m.to_port {
                return Err(ChangeError::Invalid("announcement from elsewhere".into()));
            }
        }
        let ahead = {
            let mut st = self.lock();
            st.timeline.note(&format!("arrived ({signal})"));
            let current = st.persisted.version;
            st.switch_ahead
                .take()
                .filter(|(v, _)| *v == current)
                .map(|(_, tables)| tables)
        };
        self.follower.moved(&m.vm, now_ms());
        let (inv, m) = switched(&inv, &m);
        let on_commit = |st: &mut State, version| {
            st.timeline.switch_version = version;
            st.timeline.note("switch sent");
        };
        let version = match ahead {
            Some(tables) => self.commit(inv, policy, name, Some(m), tables, on_commit)?,
            None => self.change_then(inv, policy, name, Some(m), on_commit)?,
        };
        let ctl = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(GRACE).await;
            // Retried until it lands: a migration must not stay half done.
            loop {
                let result = {
                    let _serial = ctl.serialize();
                    let (inv, policy, name) = ctl.snapshot();
                    ctl.change_then(inv, policy, name, None, |st, version| {
                        st.timeline.note("cleaned up");
                        if let Some(o) = st.timeline.old_host.as_mut() {
                            o.cleanup_version = version;
                        }
                    })
                };
                match result {
                    Ok(_) => break,
                    Err(e) => {
                        tracing::error!("migration clean-up refused, retrying: {e}");
                        tokio::time::sleep(GRACE).await;
                    }
                }
            }
        });
        // Gateway hook: a public address whose home gateway changed with this
        // switch step is announced there.
        let announcements = {
            let st = self.lock();
            st.migration.as_ref().and_then(|m| {
                crate::gateway::Announcements::after_move(
                    &st.persisted.inventory,
                    &m.vm,
                    &m.from_host,
                )
            })
        };
        if let Some(a) = announcements {
            let ctl = self.clone();
            a.spawn(move |event| ctl.lock().timeline.note(&event));
        }
        Ok(version)
    }

    /// Gives up a migration that has not switched yet (the hypervisor's migration
    /// failed): the program goes back to what it was before, the VM stays where it
    /// runs. A migration that has switched cannot be aborted: the VM already moved.
    pub fn abort_migration(&self) -> Result<u64, ChangeError> {
        let _serial = self.serialize();
        let (inv, policy, name) = self.snapshot();
        match self.lock().migration.clone() {
            Some(m) if m.phase == Phase::Prepared => {}
            Some(m) => {
                return Err(ChangeError::Invalid(format!(
                    "VM `{}` already switched to `{}`; migrate it back instead",
                    m.vm, m.to_host
                )))
            }
            None => return Err(ChangeError::Invalid("no migration in progress".into())),
        }
        self.change_then(inv, policy, name, None, |st, _| st.timeline.note("aborted"))
    }

    /// Records that a switch confirmed `version`, for the migration timeline.
    fn note_synced(&self, dpid: u64, version: u64) {
        let mut st = self.lock();
        let Some(m) = st.migration.clone() else {
            return;
        };
        let to = st
            .persisted
            .inventory
            .host(&m.to_host)
            .map(|h| h.datapath_id);
        let t = &st.timeline;
        if t.prepare_version != 0
            && version >= t.prepare_version
            && Some(dpid) == to
            && !t.has("destination ready")
        {
            st.timeline.note("destination ready");
        }
        let switch_version = st.timeline.switch_version;
        if switch_version != 0 && !st.timeline.has("rerouted") {
            let all = st
                .switches
                .values()
                .filter(|s| s.connected)
                .all(|s| s.synced_version >= switch_version);
            if all {
                st.timeline.note("rerouted");
            }
        }
    }

    /// What the session of switch `dpid` measures around its synchronisation to
    /// `version`; each measurement is taken once per migration.
    fn measure_for(&self, dpid: u64, version: u64) -> Measure {
        let mut st = self.lock();
        let (prepare, switch) = (st.timeline.prepare_version, st.timeline.switch_version);
        let Some(o) = st.timeline.old_host.as_mut().filter(|o| o.dpid == dpid) else {
            return Measure::Nothing;
        };
        if o.cleanup_version != 0 && version >= o.cleanup_version && !o.cleanup_taken {
            // A session that skipped the switch step (slow, or reconnected after the
            // grace period) must not measure it later around some other change.
            o.cleanup_taken = true;
            o.switch_taken = true;
            o.baseline_taken = true;
            return Measure::Forwarded {
                vm_ip: o.vm_ip,
                tunnel_port: o.tunnel_port,
            };
        }
        if switch != 0 && version >= switch && !o.switch_taken {
            o.switch_taken = true;
            return Measure::AroundSwitch { port: o.port };
        }
        if prepare != 0 && version >= prepare && switch == 0 && !o.baseline_taken {
            o.baseline_taken = true;
            return Measure::Baseline { port: o.port };
        }
        Measure::Nothing
    }

    fn record_baseline(&self, counts: PortCounts) {
        if let Some(o) = self.lock().timeline.old_host.as_mut() {
            o.baseline = Some(counts);
        }
    }

    /// The old port's counters just before and just after the old host switched.
    fn record_switch(&self, before: PortCounts, after: PortCounts) {
        let mut st = self.lock();
        let t = &mut st.timeline;
        let dropped_since = t
            .old_host
            .as_ref()
            .and_then(|o| o.baseline)
            .unwrap_or(before)
            .tx_dropped;
        let lost = after.tx_dropped.saturating_sub(dropped_since)
            + after.tx_packets.saturating_sub(before.tx_packets);
        t.lost_at_old_host = Some(lost);
    }

    fn record_forwarded(&self, packets: u64) {
        let mut st = self.lock();
        st.timeline.forwarded_by_old_host = Some(packets);
        st.timeline.note("old host drained");
    }

    /// Adds (or replaces) a host.
    pub fn add_host(&self, host: crate::inventory::Host) -> Result<u64, ChangeError> {
        let _serial = self.serialize();
        let (mut inv, policy, name) = self.snapshot();
        inv.add_host(host)
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
        inv.hosts.retain(|h| h.name != name);
        if inv.hosts.len() == before {
            return Err(ChangeError::Invalid(format!("no host `{name}`")));
        }
        self.change(inv, policy, pname)
    }

    /// Removes a VM.
    pub fn remove_vm(&self, name: &str) -> Result<u64, ChangeError> {
        let _serial = self.serialize();
        let (mut inv, policy, pname) = self.snapshot();
        if inv.vms.remove(name).is_none() {
            return Err(ChangeError::Invalid(format!("no VM `{name}`")));
        }
        self.change(inv, policy, pname)
    }

    fn snapshot(&self) -> (Inventory, String, String) {
        let st = self.lock();
        (
            st.persisted.inventory.clone(),
            st.persisted.policy.clone(),
            st.persisted.policy_name.clone(),
        )
    }

    /// A JSON view of everything, for `scc status`.
    pub fn status(&self) -> serde_json::Value {
        let st = self.lock();
        let inv = &st.persisted.inventory;
        let hosts: Vec<_> = inv
            .hosts
            .iter()
            .map(|h| {
                let s = st.switches.get(&h.datapath_id).cloned().unwrap_or_default();
                serde_json::json!({
                    "name": h.name, "cloud": h.cloud, "datapath_id": h.datapath_id,
                    "tunnel_endpoint": h.tunnel_endpoint.to_string(),
                    "desired_flows": st.tables.get(&h.datapath_id).map_or(0, Vec::len),
                    "switch": s,
                })
            })
            .collect();
        serde_json::json!({
            "version": st.persisted.version,
            "policy": st.persisted.policy_name,
            "migration": st.migration,
            "timeline": st.timeline,
            "clouds": inv.clouds.values().collect::<Vec<_>>(),
            "hosts": hosts,
            "vms": inv.vms.values().collect::<Vec<_>>(),
            "placement": self.follower.moves(),
        })
    }

    /// The placement engine's decisions from what the switches measured so far;
    /// with `apply`, the best move among them is started through the inventory's
    /// `[placement] migrate` command (one at a time, never during a migration).
    pub fn placement_round(self: &Arc<Self>, apply: bool) -> Round {
        let inv = self.inventory();
        let now = now_ms();
        let decisions = self.follower.plan(&inv, now);
        let mut round = Round {
            now_ms: now,
            decisions,
            started: None,
            note: None,
        };
        if !apply {
            return round;
        }
        let settings = inv.placement_settings.clone();
        if settings.migrate.is_empty() {
            round.note = Some(
                "nothing can move a VM: the inventory's [placement] has no `migrate` command"
                    .into(),
            );
            return round;
        }
        let migrating = self.lock().migration.as_ref().map(|m| m.vm.clone());
        let record = match self
            .follower
            .claim(&inv, &round.decisions, migrating.as_deref(), now)
        {
            Ok(r) => r,
            Err(note) => {
                round.note = Some(note);
                return round;
            }
        };
        let argv = match crate::follow::move_command(&settings, &record) {
            Ok(argv) => argv,
            Err(why) => {
                self.follower.release(why.clone());
                round.note = Some(why);
                return round;
            }
        };
        tracing::info!(vm = %record.vm, to = %record.to_host, "placement: moving");
        round.started = Some(record.clone());
        let ctl = self.clone();
        let timeout = Duration::from_secs(settings.migrate_timeout_s.max(1));
        tokio::spawn(async move {
            let result = crate::follow::run_move(argv, &record, inv.api, timeout).await;
            let outcome = match result {
                Ok(stdout) => {
                    let from = inv.host(&record.from_host).map(|h| h.cloud.clone());
                    if let (Some(from), Some(bps)) =
                        (from, crate::follow::reported_throughput(&stdout))
                    {
                        let to = &record.to_cloud;
                        ctl.follower
                            .record_bandwidth(&inv, &from, to, now_ms(), bps);
                    }
                    ctl.arrival_of(&record.vm, &record.to_host).await
                }
                // By the command's contract the VM runs where it was: back out.
                Err(MoveFailure::Failed(why)) => {
                    if ctl.prepared_for(&record.vm) {
                        if let Err(e) = ctl.abort_migration() {
                            tracing::error!("placement: abort after a failed move: {e}");
                        }
                    }
                    why
                }
                // Where the VM runs is unknown: an abort could cut it off at its
                // destination, an arrival at its source. An operator decides.
                Err(MoveFailure::TimedOut(why)) => {
                    let left = if ctl.prepared_for(&record.vm) {
                        "; its migration is left prepared: `scc migrate --arrived` if the VM \
                         runs at the destination, `scc migrate --abort` if at its source"
                    } else {
                        ""
                    };
                    tracing::error!(vm = %record.vm, "placement: {why}{left}");
                    format!("{why}{left}")
                }
            };
            tracing::info!(vm = %record.vm, outcome, "placement: move command ended");
            ctl.follower.release(outcome);
        });
        round
    }

    /// True while a migration is in progress.
    fn migrating(&self) -> bool {
        self.lock().migration.is_some()
    }

    /// True while `vm`'s migration waits for its arrival.
    fn prepared_for(&self, vm: &str) -> bool {
        self.lock()
            .migration
            .as_ref()
            .is_some_and(|m| m.vm == vm && m.phase == Phase::Prepared)
    }

    /// How a move command that exited 0 ended. By its contract the VM then runs at
    /// `to_host`: its announcement usually switched the network already; if none
    /// came within [`ARRIVAL_AFTER_MOVE`], the command's exit is taken as the
    /// arrival signal (as `scvm --scc-api` would give).
    async fn arrival_of(self: &Arc<Self>, vm: &str, to_host: &str) -> String {
        let start = std::time::Instant::now();
        loop {
            if self.vm(vm).is_some_and(|v| v.host == to_host) {
                return "moved".into();
            }
            if !self.prepared_for(vm) {
                return "the command succeeded but the VM did not move".into();
            }
            if start.elapsed() > ARRIVAL_AFTER_MOVE {
                return match self.arrived_vm(None, "move command", Some(vm)) {
                    Ok(_) => {
                        "moved (no announcement seen: arrival taken from the command's exit)".into()
                    }
                    // The announcement came in between.
                    Err(_) if self.vm(vm).is_some_and(|v| v.host == to_host) => "moved".into(),
                    Err(e) => format!("the command succeeded but the arrival was refused: {e}"),
                };
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What the switches measured, as a placement snapshot (`docs/placement.md`).
    /// With `vm`, only that VM's traffic (the whole store is large: about 32 KB
    /// per VM and region).
    pub fn placement_snapshot(&self, vm: Option<&str>) -> crate::placement::Snapshot {
        self.follower.snapshot(&self.inventory(), now_ms(), vm)
    }

    /// The move running now and the last ones.
    pub fn placement_moves(&self) -> serde_json::Value {
        self.follower.moves()
    }

    /// Runs [`Self::placement_round`] with `apply` every `[placement] plan_every_s`
    /// seconds, for as long as the controller runs; returns at once when it is 0.
    /// `[placement]` comes with the inventory `scc run` starts from: the API
    /// changes hosts and VMs, never it.
    pub async fn follow_the_sun(self: Arc<Self>) {
        let every = self.inventory().placement_settings.plan_every_s;
        if every == 0 {
            return;
        }
        loop {
            tokio::time::sleep(Duration::from_secs(every)).await;
            // Planning takes a while at scale: off the async workers.
            let ctl = self.clone();
            match tokio::task::spawn_blocking(move || ctl.placement_round(true)).await {
                Ok(Round {
                    note: Some(note), ..
                }) => tracing::debug!("placement: no move: {note}"),
                Ok(_) => {}
                Err(e) => tracing::error!("placement round failed: {e}"),
            }
        }
    }

    /// The inventory in force.
    pub fn inventory(&self) -> Inventory {
        self.lock().persisted.inventory.clone()
    }

    /// One VM, for `scc vm show`.
    pub fn vm(&self, name: &str) -> Option<Vm> {
        self.lock().persisted.inventory.vms.get(name).cloned()
    }

    fn desired(&self, dpid: u64) -> Option<(u64, Vec<FlowSpec>)> {
        let st = self.lock();
        st.persisted.inventory.host_by_dpid(dpid)?;
        Some((
            st.persisted.version,
            st.tables.get(&dpid).cloned().unwrap_or_default(),
        ))
    }

    fn update_switch(&self, dpid: u64, f: impl FnOnce(&mut SwitchStatus)) {
        let mut st = self.lock();
        let s = st.switches.entry(dpid).or_default();
        f(s);
        s.updated = now_secs();
    }
}

/// Accepts switch connections forever.
pub async fn serve_openflow(listener: TcpListener, ctl: Arc<Controller>) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        // Flow-mods and barriers are small writes answered by small replies: without
        // this, Nagle's algorithm and delayed ACKs add tens of ms per round trip.
        let _ = stream.set_nodelay(true);
        let ctl = ctl.clone();
        tokio::spawn(async move {
            let result = Session::new(stream, ctl.clone()).run().await;
            if let Err(e) = &result {
                tracing::warn!(%peer, "switch session ended: {e}");
            }
        });
    }
}

/// A flow-stats request for the controller's flows that match at least `matcher`
/// and output to `out_port`.
fn our_flows(matcher: FlowMatch, out_port: u32) -> MultipartRequestBody {
    MultipartRequestBody::Flow(FlowStatsRequest {
        table_id: TABLE_ALL,
        out_port,
        out_group: GROUP_ANY,
        cookie: SCC_COOKIE,
        cookie_mask: u64::MAX,
        matcher,
    })
}

struct Session {
    stream: TcpStream,
    inbox: Vec<u8>,
    xid: u32,
    ctl: Arc<Controller>,
    dpid: Option<u64>,
    /// Requests sent ahead whose replies are kept when they arrive while another
    /// reply is awaited (a measurement pipelined with a synchronisation).
    ahead: std::collections::HashSet<u32>,
    replies: std::collections::HashMap<u32, Message>,
    /// The placement measurement in flight, and the flow counters seen so far.
    sampling: Option<Sampling>,
    sampler: TrafficSampler,
    /// False once the switch refused the tunnel statistics (it is not `scd`).
    tunnel_stats: bool,
}

/// One measurement of a switch for placement: flow counters and tunnel stats,
/// requested together and absorbed as their replies arrive.
struct Sampling {
    t_ms: u64,
    flows_xid: u32,
    flows: Vec<FlowStatsEntry>,
    tunnels_xid: u32,
    tunnels: Vec<TunnelStatsEntry>,
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol: {0}")]
    Protocol(String),
    /// The switch answered a request with an OpenFlow error.
    #[error("switch refused the request: {0}")]
    Refused(String),
}

impl Session {
    fn new(stream: TcpStream, ctl: Arc<Controller>) -> Session {
        Session {
            stream,
            inbox: Vec::with_capacity(65536),
            xid: 0,
            ctl,
            dpid: None,
            ahead: std::collections::HashSet::new(),
            replies: std::collections::HashMap::new(),
            sampling: None,
            sampler: TrafficSampler::default(),
            tunnel_stats: true,
        }
    }

    async fn send(&mut self, m: &Message) -> Result<u32, SessionError> {
        self.xid = self.xid.wrapping_add(1);
        let bytes = encode(m, self.xid).map_err(|e| SessionError::Protocol(e.to_string()))?;
        self.stream.write_all(&bytes).await?;
        Ok(self.xid)
    }

    /// Sends a multipart request; its xid.
    async fn multipart(&mut self, body: MultipartRequestBody) -> Result<u32, SessionError> {
        self.send(&Message::MultipartRequest(MultipartRequest {
            flags: 0,
            body,
        }))
        .await
    }

    /// The next message; answers echo requests and records errors on the way.
    async fn recv(&mut self) -> Result<(u32, Message), SessionError> {
        loop {
            if let Some(m) = self.next_buffered().await? {
                return Ok(m);
            }
            // Read into the inbox itself: a buffer on the stack would make every
            // future awaiting a reply 64 KiB larger.
            self.inbox.reserve(65536);
            let n = self.stream.read_buf(&mut self.inbox).await?;
            if n == 0 {
                return Err(SessionError::Protocol(
                    "switch closed the connection".into(),
                ));
            }
        }
    }

    /// The next complete message already in the inbox, if any. Echo requests and
    /// packet-ins are handled here and not returned; errors are recorded and
    /// returned (one may answer a request). A stream that cannot be framed is an
    /// error, never buffered forever; a frame that cannot be decoded is skipped.
    async fn next_buffered(&mut self) -> Result<Option<(u32, Message)>, SessionError> {
        loop {
            let n = match frame_len(&self.inbox) {
                Err(_) => return Err(SessionError::Protocol("bad OpenFlow framing".into())),
                Ok(None) => return Ok(None),
                Ok(Some(n)) => n,
            };
            let frame: Vec<u8> = self.inbox.drain(..n).collect();
            match decode(&frame) {
                Ok((xid, Message::EchoRequest(data))) => {
                    let bytes = encode(&Message::EchoReply(data), xid)
                        .map_err(|e| SessionError::Protocol(e.to_string()))?;
                    self.stream.write_all(&bytes).await?;
                }
                Ok((xid, Message::Error(e))) => {
                    // A measurement the switch cannot answer is not the switch's
                    // error: `absorb` notes it.
                    let measuring = self
                        .sampling
                        .as_ref()
                        .is_some_and(|s| xid == s.flows_xid || xid == s.tunnels_xid);
                    if !measuring {
                        let text = format!("{e:?}");
                        tracing::warn!(dpid = ?self.dpid, xid, "switch reported an error: {text}");
                        if let Some(dpid) = self.dpid {
                            self.ctl.update_switch(dpid, |s| s.last_error = Some(text));
                        }
                    }
                    return Ok(Some((xid, Message::Error(e))));
                }
                Ok((_, Message::PacketIn(pin))) => self.packet_in(&pin),
                Ok(m) => return Ok(Some(m)),
                // Something we cannot read is skipped, not fatal: the stream stays in step.
                Err(e) => tracing::debug!("undecodable message from switch: {e}"),
            }
        }
    }

    /// Waits for the reply to `xid`, passing over unrelated messages (and keeping
    /// the replies to requests sent ahead). An error reply is [`SessionError::Refused`].
    async fn reply_to(&mut self, xid: u32) -> Result<Message, SessionError> {
        let wait = async {
            if let Some(m) = self.replies.remove(&xid) {
                return Ok(m);
            }
            loop {
                let (got, m) = self.recv().await?;
                if got == xid {
                    self.ahead.remove(&xid);
                    return Ok(m);
                }
                if self.ahead.remove(&got) {
                    self.replies.insert(got, m);
                } else {
                    self.absorb(got, m);
                }
            }
        };
        // A switch that never answers (or answered with an error) ends the session;
        // it reconnects and is resynchronised from what it then holds.
        match tokio::time::timeout(REPLY_TIMEOUT, wait).await {
            Err(_) => Err(SessionError::Protocol(format!(
                "no reply to xid {xid} within {REPLY_TIMEOUT:?}"
            ))),
            Ok(Ok(Message::Error(e))) => Err(SessionError::Refused(format!("{e:?}"))),
            Ok(other) => other,
        }
    }

    /// A packet-in: the announcement (RARP or gratuitous ARP) of a migrating VM.
    fn packet_in(&self, pin: &openflow::wire::PacketIn) {
        let Some(dpid) = self.dpid else { return };
        let eth_type = pin
            .data
            .get(12..14)
            .map(|b| u16::from_be_bytes([b[0], b[1]]));
        let in_port = pin
            .matcher
            .get(openflow::flow::Field::InPort)
            .map(|(v, _)| v);
        if let (Some(0x8035 | 0x0806), Some(in_port)) = (eth_type, in_port) {
            let kind = if eth_type == Some(0x8035) {
                "RARP"
            } else {
                "ARP"
            };
            match self
                .ctl
                .arrived(Some((dpid, u32::try_from(in_port).unwrap_or(0))), kind)
            {
                Ok(v) => tracing::info!(
                    dpid,
                    version = v,
                    "migrating VM announced itself: rerouting"
                ),
                Err(e) => tracing::debug!(dpid, "announcement ignored: {e}"),
            }
        }
    }

    /// Asks for what placement measures (every flow's counters, the tunnels'
    /// statistics) without waiting: the replies are absorbed whenever they arrive,
    /// so a reroute is never queued behind a measurement. A measurement still
    /// unanswered is given up.
    async fn request_sample(&mut self) -> Result<(), SessionError> {
        let t_ms = now_ms();
        let flows_xid = self
            .multipart(our_flows(FlowMatch::any(), port::ANY))
            .await?;
        let tunnels_xid = if self.tunnel_stats {
            self.multipart(MultipartRequestBody::TunnelStats).await?
        } else {
            0
        };
        self.sampling = Some(Sampling {
            t_ms,
            flows_xid,
            flows: Vec::new(),
            tunnels_xid,
            tunnels: Vec::new(),
        });
        Ok(())
    }

    /// A message that answers the measurement in flight, if it does; anything else
    /// is passed over.
    fn absorb(&mut self, xid: u32, m: Message) {
        let Some(s) = self.sampling.as_mut() else {
            return;
        };
        let dpid = self.dpid.unwrap_or_default();
        match m {
            Message::MultipartReply(r) if xid == s.flows_xid => {
                if let MultipartReplyBody::Flow(entries) = r.body {
                    s.flows.extend(entries);
                }
                if r.flags & MORE == 0 {
                    let (t_ms, flows) = (s.t_ms, std::mem::take(&mut s.flows));
                    s.flows_xid = 0;
                    let inv = self.ctl.inventory();
                    let host = inv.host_by_dpid(dpid).map(|h| h.name.clone());
                    let rates = host.and_then(|h| self.sampler.sample(&inv, &h, t_ms, &flows));
                    if let Some(rates) = rates {
                        self.ctl.follower.record_traffic(&inv, dpid, t_ms, rates);
                    }
                }
            }
            Message::MultipartReply(r) if xid == s.tunnels_xid => {
                if let MultipartReplyBody::TunnelStats(entries) = r.body {
                    s.tunnels.extend(entries);
                }
                if r.flags & MORE == 0 {
                    let (t_ms, tunnels) = (s.t_ms, std::mem::take(&mut s.tunnels));
                    s.tunnels_xid = 0;
                    let inv = self.ctl.inventory();
                    self.ctl.follower.record_tunnels(&inv, dpid, t_ms, tunnels);
                }
            }
            Message::Error(e) if xid == s.tunnels_xid => {
                // A switch without the Supercloud experimenter (OVS, say) still
                // gives traffic; only the latency is missing. Asked once.
                s.tunnels_xid = 0;
                self.tunnel_stats = false;
                tracing::info!(
                    dpid,
                    "switch has no tunnel statistics ({e:?}): no latency measured from it"
                );
            }
            Message::Error(e) if xid == s.flows_xid => {
                s.flows_xid = 0;
                tracing::warn!(
                    dpid,
                    "switch refused the flow counters placement samples: {e:?}"
                );
            }
            _ => {}
        }
    }

    async fn installed_flows(&mut self) -> Result<Vec<FlowSpec>, SessionError> {
        let entries = self.flow_stats(FlowMatch::any(), port::ANY).await?;
        Ok(entries.into_iter().map(|e| e.spec).collect())
    }

    /// Our flows that match at least `matcher` and output to `out_port`, with their
    /// counters.
    async fn flow_stats(
        &mut self,
        matcher: FlowMatch,
        out_port: u32,
    ) -> Result<Vec<FlowStatsEntry>, SessionError> {
        let xid = self.multipart(our_flows(matcher, out_port)).await?;
        let mut flows = Vec::new();
        loop {
            match self.reply_to(xid).await? {
                Message::MultipartReply(r) => {
                    if let MultipartReplyBody::Flow(entries) = r.body {
                        flows.extend(entries);
                    }
                    if r.flags & MORE == 0 {
                        return Ok(flows);
                    }
                }
                other => {
                    return Err(SessionError::Protocol(format!(
                        "expected flow stats, got {other:?}"
                    )))
                }
            }
        }
    }

    /// Asks for the transmit counters of `port` without waiting for them.
    async fn request_port_counts(&mut self, port: u32) -> Result<u32, SessionError> {
        let xid = self
            .multipart(MultipartRequestBody::PortStats(port))
            .await?;
        self.ahead.insert(xid);
        Ok(xid)
    }

    /// The answer to [`Self::request_port_counts`]; `None` if the port is gone.
    async fn port_counts(&mut self, xid: u32) -> Result<Option<PortCounts>, SessionError> {
        match self.reply_to(xid).await {
            Ok(Message::MultipartReply(r)) => match r.body {
                MultipartReplyBody::PortStats(ports) => Ok(ports.first().map(|p| PortCounts {
                    tx_packets: p.tx_packets,
                    tx_dropped: p.tx_dropped,
                })),
                _ => Ok(None),
            },
            Ok(_) => Ok(None),
            Err(SessionError::Refused(e)) => {
                tracing::debug!("port counters unavailable: {e}");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Synchronises to `version`, taking the migration timeline's measurement for
    /// this switch around it (see [`Measure`]). The port counters before the switch
    /// are requested ahead of the flow-mods, in the same stream, so they do not
    /// delay the reroute.
    async fn sync_measured(
        &mut self,
        installed: &[FlowSpec],
        desired: Vec<FlowSpec>,
        version: u64,
    ) -> Result<Vec<FlowSpec>, SessionError> {
        let dpid = self.dpid.unwrap_or_default();
        match self.ctl.measure_for(dpid, version) {
            Measure::Nothing => self.sync(installed, desired, version).await,
            Measure::Baseline { port } => {
                // Ahead of the flow-mods too: the prepare step is not held up either.
                let xid = self.request_port_counts(port).await?;
                let installed = self.sync(installed, desired, version).await?;
                if let Some(c) = self.port_counts(xid).await? {
                    self.ctl.record_baseline(c);
                }
                Ok(installed)
            }
            Measure::AroundSwitch { port } => {
                let before = self.request_port_counts(port).await?;
                let installed = self.sync(installed, desired, version).await?;
                let before = self.port_counts(before).await?;
                let after = self.request_port_counts(port).await?;
                if let (Some(b), Some(a)) = (before, self.port_counts(after).await?) {
                    self.ctl.record_switch(b, a);
                }
                Ok(installed)
            }
            Measure::Forwarded { vm_ip, tunnel_port } => {
                let matcher = FlowMatch::any()
                    .with(Field::EthType, u128::from(ethertype::IPV4))
                    .with(Field::Ipv4Dst, u128::from(u32::from(vm_ip)));
                match self.flow_stats(matcher, tunnel_port).await {
                    Ok(flows) => self
                        .ctl
                        .record_forwarded(flows.iter().map(|f| f.stats.packet_count).sum()),
                    Err(SessionError::Refused(e)) => {
                        tracing::warn!(dpid, "forwarded packets not counted: {e}");
                    }
                    Err(e) => return Err(e),
                }
                self.sync(installed, desired, version).await
            }
        }
    }

    /// Sends the difference between `installed` and `desired`, waits for the switch
    /// to confirm it, and returns the new installed set.
    async fn sync(
        &mut self,
        installed: &[FlowSpec],
        desired: Vec<FlowSpec>,
        version: u64,
    ) -> Result<Vec<FlowSpec>, SessionError> {
        let dpid = self.dpid.unwrap_or_default();
        let p = plan(installed, &desired, SCC_COOKIE);
        let n = p.len();
        if !p.is_empty() {
            for m in p.first {
                self.send(&Message::FlowMod(m)).await?;
            }
            let b = self.send(&Message::BarrierRequest).await?;
            self.reply_to(b).await?;
            for m in p.then {
                self.send(&Message::FlowMod(m)).await?;
            }
            let b = self.send(&Message::BarrierRequest).await?;
            self.reply_to(b).await?;
        }
        tracing::info!(
            dpid,
            version,
            flow_mods = n,
            flows = desired.len(),
            "switch synchronised"
        );
        let flows = desired.len();
        self.ctl.update_switch(dpid, |s| {
            s.synced_version = version;
            s.flows = flows;
            s.last_flow_mods = n;
        });
        self.ctl.note_synced(dpid, version);
        Ok(desired)
    }

    async fn run(mut self) -> Result<(), SessionError> {
        let peer = self
            .stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        self.send(&Message::Hello(Hello::of13())).await?;
        let features = self.send(&Message::FeaturesRequest).await?;
        let dpid = loop {
            match self.reply_to(features).await? {
                Message::FeaturesReply(f) => break f.datapath_id,
                _ => continue,
            }
        };
        self.dpid = Some(dpid);
        if self.ctl.desired(dpid).is_none() {
            return Err(SessionError::Protocol(format!(
                "datapath {dpid} is not in the inventory"
            )));
        }
        self.ctl.update_switch(dpid, |s| {
            s.connected = true;
            s.peer = peer.clone();
        });
        tracing::info!(dpid, %peer, "switch connected");
        let result = self.serve(dpid).await;
        self.ctl.update_switch(dpid, |s| s.connected = false);
        result
    }

    async fn serve(&mut self, dpid: u64) -> Result<(), SessionError> {
        let mut versions = self.ctl.version.subscribe();
        let mut installed = self.installed_flows().await?;
        let mut echo = tokio::time::interval(Duration::from_secs(5));
        let sample_every = self.ctl.inventory().placement_settings.sample_every_s;
        // Off (0) is an interval that never fires within the session's life. The
        // first sample waits a period: the flows were just read back.
        let period = Duration::from_secs(if sample_every == 0 {
            u64::from(u32::MAX)
        } else {
            sample_every
        });
        let mut sample = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        sample.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            // Marked seen before reading: a change committed while this sync runs
            // wakes the loop again instead of being lost.
            versions.borrow_and_update();
            let Some((version, desired)) = self.ctl.desired(dpid) else {
                return Err(SessionError::Protocol(format!(
                    "datapath {dpid} left the inventory"
                )));
            };
            installed = self.sync_measured(&installed, desired, version).await?;
            // Wait for a new program, keeping the connection alive meanwhile.
            loop {
                self.inbox.reserve(65536);
                tokio::select! {
                    changed = versions.changed() => {
                        if changed.is_err() { return Ok(()); }
                        break;
                    }
                    _ = sample.tick(), if sample_every > 0 => {
                        // A migration's flow-mods must not queue behind a dump of
                        // the switch's flows: the interval is skipped.
                        if !self.ctl.migrating() {
                            self.request_sample().await?;
                        }
                    }
                    _ = echo.tick() => {
                        self.send(&Message::EchoRequest(Vec::new())).await?;
                        // Port states tell which tunnels have a live session.
                        self.multipart(MultipartRequestBody::PortDesc).await?;
                    }
                    n = self.stream.read_buf(&mut self.inbox) => {
                        let n = n?;
                        if n == 0 { return Err(SessionError::Protocol("switch closed the connection".into())); }
                        // Drain whatever is complete (echo replies, port status, errors).
                        while let Some((xid, m)) = self.next_buffered().await? {
                            match m {
                                Message::MultipartReply(MultipartReply {
                                    body: MultipartReplyBody::PortDesc(ports),
                                    ..
                                }) => {
                                    let tunnels = ports
                                        .iter()
                                        .filter(|p| p.name.starts_with("wg-"))
                                        .map(|p| (p.name.clone(), p.state & port_state::LINK_DOWN == 0))
                                        .collect();
                                    self.ctl.update_switch(dpid, |s| s.tunnels_up = tunnels);
                                }
                                other => self.absorb(xid, other),
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Host;

    fn controller(dir: &std::path::Path) -> Arc<Controller> {
        let inventory = Inventory::parse(
            include_str!("../../docs/examples/inventory.toml"),
            "inventory.toml",
        )
        .unwrap();
        let persisted = Persisted {
            inventory,
            policy: "id".into(),
            policy_name: "p".into(),
            version: 1,
            moves_ms: Default::default(),
        };
        Controller::new(persisted, Store::new(&dir.join("state.json"))).unwrap()
    }

    #[test]
    fn a_refused_change_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let ctl = controller(dir.path());
        let before = ctl.lock().tables.clone();
        let err = ctl.apply_policy("filter ip4Dst = ", "bad.kat").unwrap_err();
        assert!(err.to_string().contains("bad.kat:1:"), "{err}");
        assert_eq!(ctl.lock().tables, before);
        assert_eq!(ctl.lock().persisted.version, 1);
        assert_eq!(
            Store::new(&dir.path().join("state.json"))
                .load()
                .unwrap()
                .unwrap()
                .version,
            1
        );
    }

    #[tokio::test]
    async fn an_aborted_migration_restores_the_tables() {
        let dir = tempfile::tempdir().unwrap();
        let ctl = controller(dir.path());
        let before = ctl.lock().tables.clone();
        ctl.start_migration("web1", "host-b", 7).unwrap();
        assert_ne!(
            ctl.lock().tables,
            before,
            "prepared: the destination learned the VM"
        );
        ctl.abort_migration().unwrap();
        assert_eq!(
            ctl.lock().tables,
            before,
            "aborted: the tables are as they were"
        );
        assert!(ctl.abort_migration().is_err(), "nothing left to abort");
        ctl.start_migration("web1", "host-b", 7).unwrap();
        ctl.arrived(None, "test").unwrap();
        let err = ctl.abort_migration().unwrap_err().to_string();
        assert!(err.contains("already switched"), "{err}");
    }

    #[tokio::test]
    async fn the_switch_step_is_compiled_ahead_and_equals_a_fresh_compile() {
        let dir = tempfile::tempdir().unwrap();
        let ctl = controller(dir.path());
        ctl.start_migration("web1", "host-b", 7).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !ctl.lock().timeline.has("switch compiled") {
            assert!(std::time::Instant::now() < deadline, "never compiled ahead");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        ctl.arrived(None, "test").unwrap();
        let st = ctl.lock();
        let fresh = compile_network_during(
            &st.persisted.inventory,
            &st.persisted.policy,
            &st.persisted.policy_name,
            st.migration.as_ref(),
        )
        .unwrap();
        assert_eq!(
            st.migration.as_ref().map(|m| m.phase),
            Some(Phase::Switched)
        );
        assert_eq!(st.tables, fresh, "the tables sent are the switch step's");
        assert!(st.switch_ahead.is_none(), "used once");
    }

    #[test]
    fn arrivals_by_migration_survive_a_restart_through_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let ctl = controller(dir.path());
        ctl.follower.moved("web1", 1_000);
        ctl.follower.moved("web1", 5_000);
        // Any change persists them; a controller started from the store has them.
        ctl.apply_policy("id", "p").unwrap();
        let stored = Store::new(&dir.path().join("state.json"))
            .load()
            .unwrap()
            .unwrap();
        assert_eq!(stored.moves_ms["web1"], [1_000, 5_000]);
        let again = Controller::new(stored, Store::new(&dir.path().join("state.json"))).unwrap();
        let snapshot = again.placement_snapshot(None);
        assert_eq!(snapshot.last_moved_ms["web1"], 5_000);
        assert_eq!(snapshot.recent_moves_ms["web1"], [1_000, 5_000]);
    }

    #[test]
    fn a_round_without_a_move_command_says_so_and_starts_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let ctl = controller(dir.path());
        let round = ctl.placement_round(true);
        assert!(round.started.is_none());
        assert!(round.note.unwrap().contains("no `migrate` command"));
        assert_eq!(round.decisions.len(), ctl.inventory().vms.len());
    }

    #[test]
    fn hosts_come_and_go_with_checks() {
        let dir = tempfile::tempdir().unwrap();
        let ctl = controller(dir.path());
        let host = Host {
            name: "host-d".into(),
            cloud: "gcp-europe".into(),
            datapath_id: 4,
            tunnel_endpoint: "198.51.100.3:51820".parse().unwrap(),
            public_key: "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=".into(),
        };
        assert!(ctl
            .add_host(Host {
                cloud: "nowhere".into(),
                ..host.clone()
            })
            .is_err());
        assert!(ctl
            .add_host(Host {
                datapath_id: 1,
                ..host.clone()
            })
            .unwrap_err()
            .to_string()
            .contains("already used by host `host-a`"));
        assert_eq!(ctl.add_host(host).unwrap(), 2);
        assert!(
            ctl.lock().tables.contains_key(&4),
            "the new host gets a table"
        );
        let err = ctl.remove_host("host-a").unwrap_err().to_string();
        assert!(err.contains("still runs VM `web1`"), "{err}");
        assert_eq!(ctl.remove_host("host-d").unwrap(), 3);
        assert!(!ctl.lock().tables.contains_key(&4));
        assert_eq!(
            Store::new(&dir.path().join("state.json"))
                .load()
                .unwrap()
                .unwrap()
                .version,
            3
        );
    }
}
