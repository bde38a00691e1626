//! The migration state machine, pure: where one VM's make-before-break move
//! stands (prepared, switched, cleaned up or aborted), which transitions are
//! allowed from there, and what each one requires of the daemon: the inventory and
//! migration to compile the next program version with, the timeline entries, and
//! what the old host's switch session must measure (its port's counters around the
//! switch, the packets it forwarded before the clean-up).
//!
//! No tokio, no sockets, no clock reads: time is passed in as a [`Duration`] on a
//! clock whose epoch the caller chooses (the daemon's is Unix time, so that a
//! migration resumed after a restart keeps its timeline), and program versions are those
//! the daemon committed. The whole state is serde-serialisable, so that it can be
//! stored with every phase before the daemon acts on it. The daemon
//! (`crate::daemon`) drives it: it checks a transition, compiles and commits the
//! program it requires, then applies it with the committed version.

mod measure;
#[cfg(test)]
mod tests;

pub use measure::{Measure, OldHost, PortCounts};

use crate::model::Inventory;
use crate::model::{self, Migration};
use hypervisor_glue::storage::{Phase as CopyPhase, Progress};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Where a migration stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// The destination delivers the VM and reports its announcement; everyone
    /// else still sends to the old host.
    Prepared,
    /// Every switch sends to the new host; the old host forwards stragglers.
    Switched,
    /// The transit is removed: the migration is over.
    Cleaned,
    /// Given up before the switch: the program is what it was before.
    Aborted,
}

/// Why a transition is refused. The texts are what the API answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Another migration has not finished.
    #[error("VM `{0}` is already migrating")]
    AlreadyMigrating(String),
    /// The VM is not in the inventory.
    #[error("no VM `{0}`")]
    NoVm(String),
    /// The destination host is not in the inventory.
    #[error("no host `{0}`")]
    NoHost(String),
    /// The VM already runs on the destination.
    #[error("VM `{vm}` already runs on `{host}`")]
    SameHost { vm: String, host: String },
    /// The destination port belongs to another VM.
    #[error("port {port} of `{host}` is VM `{vm}`'s")]
    PortTaken { port: u32, host: String, vm: String },
    /// The destination switch is not connected: its ports are unknown.
    #[error(
        "the switch of `{0}` is not connected, so its ports are unknown; start its scd \
         (`scc status` shows it connected) before migrating to it"
    )]
    DestinationOffline(String),
    /// The destination switch refused (or never announced) the port the
    /// controller asked it to add.
    #[error(
        "the switch of `{host}` did not add port {port} (`{name}`) for VM `{vm}`: {reason}; \
         nothing changed (add the port by hand and migrate with --no-manage-ports, or fix \
         the cause)"
    )]
    PortNotAdded {
        host: String,
        port: u32,
        name: String,
        vm: String,
        reason: String,
    },
    /// The destination switch has no such port.
    #[error(
        "the switch of `{host}` has no port {port} (its ports: {known}); add the VM's \
         port to its scd first (docs/inventory.md)"
    )]
    NoSuchPort {
        host: String,
        port: u32,
        known: String,
    },
    /// An arrival with no migration prepared for it (or for another VM).
    #[error("no migration is waiting for its VM")]
    NotWaiting,
    /// An announcement from another switch or port than the destination's.
    #[error("announcement from elsewhere")]
    Elsewhere,
    /// An abort after the switch: the VM already moved.
    #[error("VM `{vm}` already switched to `{to_host}`; migrate it back instead")]
    AlreadySwitched { vm: String, to_host: String },
    /// An abort with nothing in progress.
    #[error("no migration in progress")]
    NothingInProgress,
    /// A clean-up of a migration that is not switched.
    #[error("no switched migration to clean up")]
    NotSwitched,
    /// A hypervisor's report about another VM than the one migrating.
    #[error("the report is about VM `{reported}`, but the migration in progress moves `{moving}`")]
    OtherVm { reported: String, moving: String },
}

/// What the migration's timeline shows (`scc status`): events in milliseconds
/// from its start, and the old host's counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
    /// The hypervisor's last report of the copy (`scvm migrate --scc-api`):
    /// bytes copied, rates, expected downtime, phase. Not committed on its own:
    /// it is stored with the next phase, or lost with a restart until the next
    /// report.
    #[serde(default)]
    pub copy: Option<Progress>,
}

impl Timeline {
    /// True once `event` happened.
    pub fn has(&self, event: &str) -> bool {
        self.events.iter().any(|(e, _)| e == event)
    }

    /// Milliseconds between two events, when both happened.
    pub fn between(&self, from: &str, to: &str) -> Option<f64> {
        let at = |e: &str| self.events.iter().find(|(n, _)| n == e).map(|(_, t)| *t);
        Some(at(to)? - at(from)?)
    }
}

/// A transition that was checked against the state and is not applied yet: what
/// the daemon compiles and commits before applying it.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The inventory of the next program version.
    pub inventory: Inventory,
    /// The migration to compile it with; `None` is the plain program.
    pub program: Option<Migration>,
}

/// One migration, from its start to its end (kept once ended, for the timeline).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationState {
    /// The VM, where it goes from and to, and the program's phase of the last
    /// step that compiled it in.
    pub route: Migration,
    /// Where it stands.
    pub phase: Phase,
    /// What happened so far.
    pub timeline: Timeline,
    /// When it started, on the caller's clock.
    pub started_at: Duration,
    /// Program version of the prepare step.
    pub prepare_version: u64,
    /// Program version of the switch step (0 before it).
    pub switch_version: u64,
    /// What the old host's session measures for the timeline.
    pub old_host: Option<OldHost>,
    /// The destination port's interface name as its switch described it: the
    /// VM's TAP once it has moved.
    #[serde(default)]
    pub to_tap: Option<String>,
    /// The controller manages the VM's ports: once cleaned up, it asks the old
    /// host's switch to remove the source port.
    #[serde(default)]
    pub remove_source_port: bool,
}

impl MigrationState {
    /// Checks a start at `now` of `vm`'s move to port `to_port` of `to_host` while
    /// `current` is the current or last migration; the step is the prepare step,
    /// applied with [`Self::prepared`].
    pub fn start(
        current: Option<&MigrationState>,
        inv: &Inventory,
        vm: &str,
        to_host: &str,
        to_port: u32,
        now: Duration,
    ) -> Result<(MigrationState, Step), Refusal> {
        if let Some(m) = current.filter(|m| m.in_progress()) {
            return Err(Refusal::AlreadyMigrating(m.route.vm.clone()));
        }
        let v = inv.vms.get(vm).ok_or_else(|| Refusal::NoVm(vm.into()))?;
        let to = inv
            .host(to_host)
            .ok_or_else(|| Refusal::NoHost(to_host.into()))?;
        if v.host == to_host {
            return Err(Refusal::SameHost {
                vm: vm.into(),
                host: to_host.into(),
            });
        }
        if let Some(o) = inv
            .vms
            .values()
            .find(|o| o.host == to_host && o.port == to_port)
        {
            return Err(Refusal::PortTaken {
                port: to_port,
                host: to_host.into(),
                vm: o.name.clone(),
            });
        }
        let old_host = inv
            .host(&v.host)
            .map(|from| OldHost::new(from.datapath_id, v.port, v.ip, to.tunnel_port()));
        let state = MigrationState {
            route: Migration {
                vm: vm.into(),
                from_host: v.host.clone(),
                from_port: v.port,
                to_host: to_host.into(),
                to_port,
                phase: model::Phase::Prepared,
            },
            phase: Phase::Prepared,
            timeline: Timeline {
                vm: vm.into(),
                ..Timeline::default()
            },
            started_at: now,
            prepare_version: 0,
            switch_version: 0,
            old_host,
            to_tap: None,
            remove_source_port: false,
        };
        let step = Step {
            inventory: inv.clone(),
            program: state.program(),
        };
        Ok((state, step))
    }

    /// The prepare step committed as `version` at `now`.
    pub fn prepared(&mut self, version: u64, now: Duration) {
        self.prepare_version = version;
        self.note("prepare sent", now);
    }

    /// The switch step, compiled ahead of the arrival: it does not depend on when
    /// the VM arrives.
    pub fn switch_step(&self, inv: &Inventory) -> Step {
        let mut inventory = inv.clone();
        if let Some(vm) = inventory.vms.get_mut(&self.route.vm) {
            vm.host = self.route.to_host.clone();
            vm.port = self.route.to_port;
            if let Some(tap) = &self.to_tap {
                vm.tap.clone_from(tap);
            }
        }
        let program = Migration {
            phase: model::Phase::Switched,
            ..self.route.clone()
        };
        Step {
            inventory,
            program: Some(program),
        }
    }

    /// Checks an arrival (of `vm` when given) announced on `in_port` of switch
    /// `dpid`, or signalled by the hypervisor when `at` is `None`; the step is
    /// the switch step, applied with [`Self::switched`].
    pub fn arrive(
        &self,
        inv: &Inventory,
        at: Option<(u64, u32)>,
        vm: Option<&str>,
    ) -> Result<Step, Refusal> {
        self.check_arrival(inv, at, vm)?;
        Ok(self.switch_step(inv))
    }

    /// [`Self::arrive`]'s checks alone, for a switch step compiled ahead.
    pub fn check_arrival(
        &self,
        inv: &Inventory,
        at: Option<(u64, u32)>,
        vm: Option<&str>,
    ) -> Result<(), Refusal> {
        if self.phase != Phase::Prepared || vm.is_some_and(|vm| vm != self.route.vm) {
            return Err(Refusal::NotWaiting);
        }
        if let Some((dpid, in_port)) = at {
            let to = inv.host(&self.route.to_host).map(|h| h.datapath_id);
            if to != Some(dpid) || in_port != self.route.to_port {
                return Err(Refusal::Elsewhere);
            }
        }
        Ok(())
    }

    /// The switch step committed as `version` at `now`.
    pub fn switched(&mut self, version: u64, now: Duration) {
        self.phase = Phase::Switched;
        self.route.phase = model::Phase::Switched;
        self.switch_version = version;
        self.note("switch sent", now);
    }

    /// Checks the clean-up after the grace period; applied with [`Self::cleaned`].
    pub fn clean_up(&self, inv: &Inventory) -> Result<Step, Refusal> {
        if self.phase != Phase::Switched {
            return Err(Refusal::NotSwitched);
        }
        Ok(Step {
            inventory: inv.clone(),
            program: None,
        })
    }

    /// The clean-up committed as `version` at `now`: the old host's session
    /// counts what it forwarded before it applies it.
    pub fn cleaned(&mut self, version: u64, now: Duration) {
        self.phase = Phase::Cleaned;
        if let Some(o) = self.old_host.as_mut() {
            o.cleanup_version = version;
        }
        self.note("cleaned up", now);
    }

    /// Checks an abort (the hypervisor's migration failed): only before the
    /// switch; applied with [`Self::aborted`].
    pub fn abort(&self, inv: &Inventory) -> Result<Step, Refusal> {
        match self.phase {
            Phase::Prepared => Ok(Step {
                inventory: inv.clone(),
                program: None,
            }),
            Phase::Switched => Err(Refusal::AlreadySwitched {
                vm: self.route.vm.clone(),
                to_host: self.route.to_host.clone(),
            }),
            Phase::Cleaned | Phase::Aborted => Err(Refusal::NothingInProgress),
        }
    }

    /// The abort committed at `now`: the program is what it was before.
    pub fn aborted(&mut self, now: Duration) {
        self.phase = Phase::Aborted;
        self.note("aborted", now);
    }

    /// Takes the hypervisor's report of the copy at `now`, for `scc status`; the
    /// first report of each copy phase is a timeline event. A report that names a
    /// VM (`for_vm`) must name the one this migration moves.
    pub fn copy_progress(
        &mut self,
        progress: Progress,
        for_vm: Option<&str>,
        now: Duration,
    ) -> Result<(), Refusal> {
        if !self.in_progress() {
            return Err(Refusal::NothingInProgress);
        }
        if let Some(vm) = for_vm.filter(|vm| *vm != self.route.vm) {
            return Err(Refusal::OtherVm {
                reported: vm.to_string(),
                moving: self.route.vm.clone(),
            });
        }
        let event = match progress.phase {
            CopyPhase::Disk => "disk copy",
            CopyPhase::Memory => "memory copy",
            CopyPhase::PostCopy => "post-copy",
        };
        // Once per phase, however the reports alternate: the timeline stays
        // bounded whatever a token holder sends.
        if !self.timeline.events.iter().any(|(e, _)| e == event) {
            self.note(event, now);
        }
        self.timeline.copy = Some(progress);
        Ok(())
    }

    /// True until it is cleaned up or aborted.
    pub fn in_progress(&self) -> bool {
        matches!(self.phase, Phase::Prepared | Phase::Switched)
    }

    /// The migration the current program is compiled with: `None` once it ended.
    pub fn program(&self) -> Option<Migration> {
        self.in_progress().then(|| self.route.clone())
    }

    /// Notes `event` at `now` in the timeline.
    pub fn note(&mut self, event: &str, now: Duration) {
        let ms = now.saturating_sub(self.started_at).as_secs_f64() * 1000.0;
        tracing::info!(vm = %self.route.vm, event, ms, "migration");
        self.timeline.events.push((event.to_string(), ms));
    }

    /// Notes what a switch's confirmation of `version` means for the timeline:
    /// the destination is ready once it has the prepare step; every switch is
    /// rerouted once the least version confirmed among the connected switches
    /// (`least_synced`) is the switch step's.
    pub fn synced(
        &mut self,
        dpid: u64,
        version: u64,
        destination: Option<u64>,
        least_synced: u64,
        now: Duration,
    ) {
        if !self.in_progress() {
            return;
        }
        if self.prepare_version != 0
            && version >= self.prepare_version
            && Some(dpid) == destination
            && !self.timeline.has("destination ready")
        {
            self.note("destination ready", now);
        }
        if self.switch_version != 0
            && !self.timeline.has("rerouted")
            && least_synced >= self.switch_version
        {
            self.note("rerouted", now);
        }
    }
}

/// The old host's measurements (see [`OldHost`]), kept with the migration.
impl MigrationState {
    /// What the session of switch `dpid` measures around its synchronisation to
    /// `version`; each measurement is taken once per migration.
    pub fn measure_for(&mut self, dpid: u64, version: u64) -> Measure {
        let (prepare, switch) = (self.prepare_version, self.switch_version);
        self.old_host
            .as_mut()
            .filter(|o| o.dpid == dpid)
            .map_or(Measure::Nothing, |o| {
                o.measure_for(version, prepare, switch)
            })
    }

    /// The old port's counters when the old host took the prepare step.
    pub fn record_baseline(&mut self, counts: PortCounts) {
        if let Some(o) = self.old_host.as_mut() {
            o.baseline = Some(counts);
        }
    }

    /// The old port's counters just before and just after the old host switched.
    pub fn record_switch(&mut self, before: PortCounts, after: PortCounts) {
        let baseline = self.old_host.as_ref().and_then(|o| o.baseline);
        self.timeline.lost_at_old_host = Some(measure::lost(baseline, before, after));
    }

    /// The packets the old host forwarded, counted at `now` before its clean-up.
    pub fn record_forwarded(&mut self, packets: u64, now: Duration) {
        self.timeline.forwarded_by_old_host = Some(packets);
        self.note("old host drained", now);
    }
}
