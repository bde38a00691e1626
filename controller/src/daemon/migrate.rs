//! The daemon's side of a migration: it drives the state machine of
//! `crate::migration` through the change pipeline (check the transition, compile
//! and commit the program it requires, apply it with the committed version) and
//! does what the machine cannot: compiling the switch step ahead on a thread,
//! waiting out the grace period before the clean-up, announcing a public address
//! at its new gateway, and recording the arrival for placement.

use super::{ChangeError, Controller, GRACE};
use crate::follow::now_ms;
use crate::migration::{Measure, MigrationState, Phase, PortCounts, Refusal, Step};
use crate::program::NetworkProgram;
use std::sync::Arc;
use std::time::Duration;

impl Controller {
    /// Compiles and commits `step`, then applies it to the migration with the
    /// committed version (under the state lock, before any session sees it).
    fn take_step(
        &self,
        step: Step,
        apply: impl Fn(&mut MigrationState, u64, Duration),
    ) -> Result<u64, ChangeError> {
        let (policy, name) = self.policy();
        let program =
            self.program()
                .update(&step.inventory, &policy, &name, step.program.as_ref())?;
        self.commit_step(step, program, apply)
    }

    /// [`Self::take_step`] with the step's tables already compiled.
    fn commit_step(
        &self,
        step: Step,
        program: NetworkProgram,
        apply: impl Fn(&mut MigrationState, u64, Duration),
    ) -> Result<u64, ChangeError> {
        self.commit_phase(step.inventory, program, apply)
    }

    /// Commits `program`, compiled from `inventory`, and applies the phase to
    /// the migration with the committed version.
    fn commit_phase(
        &self,
        inventory: impl Into<Arc<crate::model::Inventory>>,
        program: NetworkProgram,
        apply: impl Fn(&mut MigrationState, u64, Duration),
    ) -> Result<u64, ChangeError> {
        let (policy, name) = self.policy();
        let now = self.clock();
        self.commit(inventory, policy, name, program, |migration, version| {
            if let Some(m) = migration.as_mut() {
                apply(m, version, now);
            }
        })
    }

    fn policy(&self) -> (String, String) {
        let st = self.lock();
        (
            st.persisted.policy.clone(),
            st.persisted.policy_name.clone(),
        )
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
        let inv = self.inventory();
        let (policy, name) = self.policy();
        let (mut started, step) = self.check_start(&self.lock(), &inv, vm, to_host, to_port)?;
        started.to_tap = Some(self.destination_port_exists(&inv, to_host, to_port)?);
        let ahead = started.switch_step(&inv);
        let prepared = self
            .program()
            .update_shared(&inv, &policy, &name, step.program.as_ref())?;
        let now = self.clock();
        let version = self.commit(
            step.inventory,
            policy,
            name,
            prepared,
            |migration, version| {
                let mut m = started.clone();
                m.prepared(version, now);
                *migration = Some(m);
            },
        )?;
        self.compile_switch_ahead(ahead, version);
        Ok(version)
    }

    /// [`Self::start_migration`] by a controller that manages the VM's ports:
    /// a destination port the switch lacks is added first (a TAP named `tap`,
    /// or the VM's inventory TAP name, bound to the VM's MAC and address), and
    /// the migration starts once the switch announced it (port-status); a
    /// refusal starts nothing. With `remove_source`, the source port is removed
    /// after the clean-up: only on request, because a port the host's
    /// configuration declared (a VM's TAP kept on every host it may visit) is not
    /// the controller's to remove.
    pub async fn start_migration_managing_ports(
        self: &Arc<Self>,
        vm: &str,
        to_host: &str,
        to_port: u32,
        tap: Option<String>,
        remove_source: bool,
    ) -> Result<u64, ChangeError> {
        let added = self.add_destination_port(vm, to_host, to_port, tap).await?;
        let ctl = self.clone();
        let (vm, to_host) = (vm.to_string(), to_host.to_string());
        let version = tokio::task::spawn_blocking(move || {
            let version = ctl.start_migration(&vm, &to_host, to_port)?;
            let now = ctl.clock();
            if let Some(m) = ctl.lock().migration.as_mut() {
                m.remove_source_port = remove_source;
                if let Some(name) = added {
                    m.note(&format!("destination port {to_port} added ({name})"), now);
                }
            }
            Ok::<u64, ChangeError>(version)
        })
        .await
        .map_err(|e| ChangeError::Invalid(format!("migration start failed: {e}")))??;
        Ok(version)
    }

    /// Asks the destination switch to add port `to_port` for `vm` unless it has
    /// it; the name of the port added. The migration is checked first, so a
    /// refused one adds nothing.
    async fn add_destination_port(
        &self,
        vm: &str,
        to_host: &str,
        to_port: u32,
        tap: Option<String>,
    ) -> Result<Option<String>, ChangeError> {
        // A standby's sessions claim slave: the switch would refuse the port.
        if !self.mastership.borrow().programs_switches() {
            return Err(ChangeError::Standby);
        }
        let inv = self.inventory();
        let (dpid, request) = {
            let st = self.lock();
            self.check_start(&st, &inv, vm, to_host, to_port)?;
            let host = inv
                .host(to_host)
                .ok_or_else(|| Refusal::NoHost(to_host.to_string()))?;
            let switch = st.switches.get(&host.datapath_id).filter(|s| s.connected);
            let Some(switch) = switch else {
                return Err(Refusal::DestinationOffline(to_host.to_string()).into());
            };
            if switch.ports.contains_key(&to_port) {
                return Ok(None);
            }
            let v = inv.vms.get(vm).ok_or_else(|| Refusal::NoVm(vm.into()))?;
            let request = openflow::wire::AddPort {
                port: to_port,
                raw: false,
                attach: false,
                name: tap.unwrap_or_else(|| v.tap.clone()),
                mac: Some(v.mac),
                ips: vec![v.ip],
            };
            (host.datapath_id, request)
        };
        let name = request.name.clone();
        tracing::info!(vm, host = to_host, port = to_port, %name, "adding the destination port");
        match self.port_requests.add(dpid, request).await {
            Ok(()) => Ok(Some(name)),
            Err(reason) => Err(Refusal::PortNotAdded {
                host: to_host.to_string(),
                port: to_port,
                name,
                vm: vm.to_string(),
                reason,
            }
            .into()),
        }
    }

    /// After the clean-up of a migration whose ports the controller manages:
    /// the source port goes (noted in the timeline, or logged when it cannot).
    async fn remove_source_port(&self) {
        let source = {
            let st = self.lock();
            st.migration
                .as_ref()
                .filter(|m| m.remove_source_port)
                .and_then(|m| {
                    let host = st.persisted.inventory.host(&m.route.from_host)?;
                    Some((
                        host.datapath_id,
                        m.route.from_host.clone(),
                        m.route.from_port,
                    ))
                })
        };
        let Some((dpid, host, port)) = source else {
            return;
        };
        let event = match self.port_requests.delete(dpid, port).await {
            Ok(()) => format!("source port {port} removed"),
            Err(e) => {
                tracing::warn!(host, port, "the source port was not removed: {e}");
                format!("source port {port} not removed: {e}")
            }
        };
        let now = self.clock();
        if let Some(m) = self.lock().migration.as_mut() {
            m.note(&event, now);
        }
    }

    /// Whether `vm` may start moving to port `to_port` of `to_host` now, and
    /// the migration and prepare step if so.
    fn check_start(
        &self,
        st: &super::State,
        inv: &crate::model::Inventory,
        vm: &str,
        to_host: &str,
        to_port: u32,
    ) -> Result<(MigrationState, Step), Refusal> {
        let now = self.clock();
        MigrationState::start(st.migration.as_ref(), inv, vm, to_host, to_port, now)
    }

    /// A migration is refused unless the destination switch is connected and
    /// described port `to_port`: flows to a missing port would be confirmed by
    /// its barrier all the same, and the VM would move into a black hole.
    /// Returns the port's interface name (the VM's TAP after the move).
    fn destination_port_exists(
        &self,
        inv: &crate::model::Inventory,
        to_host: &str,
        to_port: u32,
    ) -> Result<String, ChangeError> {
        let Some(host) = inv.host(to_host) else {
            return Err(Refusal::NoHost(to_host.to_string()).into());
        };
        let st = self.lock();
        let switch = st.switches.get(&host.datapath_id).filter(|s| s.connected);
        let Some(switch) = switch else {
            return Err(Refusal::DestinationOffline(to_host.to_string()).into());
        };
        if let Some(name) = switch.ports.get(&to_port) {
            return Ok(name.clone());
        }
        let known: Vec<String> = switch
            .ports
            .iter()
            .map(|(n, name)| format!("{n} {name}"))
            .collect();
        Err(Refusal::NoSuchPort {
            host: to_host.to_string(),
            port: to_port,
            known: if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            },
        }
        .into())
    }

    /// The switch step does not depend on when the VM arrives: it is compiled
    /// while QEMU copies memory, so the reroute only has to send it. Kept only
    /// while the program is still `version`.
    fn compile_switch_ahead(self: &Arc<Self>, ahead: Step, version: u64) {
        let (policy, name) = self.policy();
        let prepared = self.program();
        let ctl = self.clone();
        std::thread::spawn(move || {
            match prepared.update(&ahead.inventory, &policy, &name, ahead.program.as_ref()) {
                Ok(tables) => {
                    let now = ctl.clock();
                    let mut st = ctl.lock();
                    if st.persisted.version == version {
                        st.switch_ahead = Some((version, tables));
                        if let Some(m) = st.migration.as_mut() {
                            m.note("switch compiled", now);
                        }
                    }
                }
                Err(e) => tracing::warn!("switch step not compiled ahead: {e}"),
            }
        });
    }

    /// Resumes the migration that was in flight when the controller stopped, as
    /// the store holds it (call once after [`Controller::new`], within the async
    /// runtime). The rule (docs/operations.md): every phase goes on from where it
    /// was committed, nothing is rolled back on its own. *Prepared*: the
    /// destination keeps delivering the VM and reporting its announcement, and the
    /// migration waits for the arrival (announcement, `--arrived`) or an abort
    /// (`--abort`), as before the crash: the hypervisor may still be copying the
    /// VM. *Switched*: a public address is announced at its new gateway again,
    /// and the clean-up runs [`GRACE`] after the restart. The switch
    /// sessions send each switch the difference between what it holds and the
    /// committed program, so a phase whose flow-mods were cut short is completed.
    /// Returns what was resumed, for the log.
    pub fn resume(self: &Arc<Self>) -> Option<String> {
        let (route, phase, version) = {
            let now = self.clock();
            let mut st = self.lock();
            let version = st.persisted.version;
            let m = st.migration.as_mut().filter(|m| m.in_progress())?;
            m.note("resumed after restart", now);
            (m.route.clone(), m.phase, version)
        };
        let what = format!(
            "migration of VM `{}` from `{}` to `{}` resumed {:?}",
            route.vm, route.from_host, route.to_host, phase
        );
        match phase {
            Phase::Prepared => {
                let ahead = {
                    let st = self.lock();
                    st.migration
                        .as_ref()
                        .map(|m| m.switch_step(&st.persisted.inventory))
                };
                if let Some(ahead) = ahead {
                    self.compile_switch_ahead(ahead, version);
                }
                Some(format!("{what}: waiting for its arrival or an abort"))
            }
            _ => {
                self.announce_after_move();
                self.clean_up_after_grace();
                Some(format!("{what}: cleaning up after {GRACE:?}"))
            }
        }
    }

    /// Runs the clean-up of the switched migration after [`GRACE`].
    fn clean_up_after_grace(self: &Arc<Self>) {
        let ctl = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(GRACE).await;
            ctl.clean_up().await;
        });
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
    pub(super) fn arrived_vm(
        self: &Arc<Self>,
        at: Option<(u64, u32)>,
        signal: &str,
        vm: Option<&str>,
    ) -> Result<u64, ChangeError> {
        let _serial = self.serialize();
        let inv = self.inventory();
        let (moved, next) = {
            let now = self.clock();
            let mut st = self.lock();
            let current = st.persisted.version;
            let ahead = st
                .switch_ahead
                .take()
                .filter(|(v, _)| *v == current)
                .map(|(_, tables)| tables);
            let m = st
                .migration
                .as_mut()
                .ok_or(crate::migration::Refusal::NotWaiting)?;
            m.check_arrival(&inv, at, vm)?;
            // The step compiled ahead holds the moved inventory: copying it
            // again (100,000 VMs) would delay the reroute.
            let next = match ahead.and_then(|t| Some((t.inventory()?.clone(), t))) {
                Some(ahead) => Ok(ahead),
                None => Err(m.switch_step(&inv)),
            };
            m.note(&format!("arrived ({signal})"), now);
            (m.route.vm.clone(), next)
        };
        self.follower.moved(&moved, now_ms());
        let switched = |m: &mut MigrationState, version, now| m.switched(version, now);
        let version = match next {
            Ok((inventory, tables)) => self.commit_phase(inventory, tables, switched)?,
            Err(step) => self.take_step(step, switched)?,
        };
        self.clean_up_after_grace();
        self.announce_after_move();
        Ok(version)
    }

    /// Gateway hook: a public address whose home gateway changed with the switch
    /// step is announced there (again, after a restart: an announcement replaces
    /// a route, so saying it twice changes nothing).
    fn announce_after_move(self: &Arc<Self>) {
        let announcements = {
            let st = self.lock();
            st.migration.as_ref().and_then(|m| {
                crate::gateway::Announcements::after_move(
                    &st.persisted.inventory,
                    &m.route.vm,
                    &m.route.from_host,
                )
            })
        };
        if let Some(a) = announcements {
            let ctl = self.clone();
            a.spawn(move |event| {
                let now = ctl.clock();
                if let Some(m) = ctl.lock().migration.as_mut() {
                    m.note(&event, now);
                }
            });
        }
    }

    /// Removes the transit of the switched migration. Retried until it lands: a
    /// migration must not stay half done; only a refusal (nothing switched to
    /// clean up) ends it otherwise. Its compile and store write run on a blocking
    /// thread: on an async worker they would stall every switch session there
    /// (a thousand switches' echoes unanswered while a large network compiles).
    pub(super) async fn clean_up(self: &Arc<Self>) {
        loop {
            let ctl = self.clone();
            match tokio::task::spawn_blocking(move || ctl.try_clean_up()).await {
                Ok(Ok(true)) => return self.remove_source_port().await,
                Ok(Ok(false)) => return,
                Ok(Err(e)) => tracing::error!("migration clean-up refused, retrying: {e}"),
                Err(e) => tracing::error!("migration clean-up failed, retrying: {e}"),
            }
            tokio::time::sleep(GRACE).await;
        }
    }

    /// One attempt at the clean-up: true when it cleaned up, false when there
    /// was nothing to clean up, unless the change failed.
    fn try_clean_up(&self) -> Result<bool, ChangeError> {
        let _serial = self.serialize();
        let inv = self.inventory();
        let step = self.lock().migration.as_ref().map(|m| m.clean_up(&inv));
        match step {
            Some(Ok(step)) => self.take_step(step, MigrationState::cleaned).map(|_| true),
            Some(Err(refusal)) => {
                tracing::error!("migration clean-up refused: {refusal}");
                Ok(false)
            }
            None => Ok(false),
        }
    }

    /// Gives up a migration that has not switched yet (the hypervisor's migration
    /// failed): the program goes back to what it was before, the VM stays where it
    /// runs. A migration that has switched cannot be aborted: the VM already moved.
    pub fn abort_migration(&self) -> Result<u64, ChangeError> {
        let _serial = self.serialize();
        let inv = self.inventory();
        let step = match self.lock().migration.as_ref() {
            Some(m) => m.abort(&inv)?,
            None => return Err(crate::migration::Refusal::NothingInProgress.into()),
        };
        self.take_step(step, |m, _, now| m.aborted(now))
    }

    /// Keeps the hypervisor's report of the copy of the migration in progress, for
    /// `scc status`; nothing is committed (the report changes no program). A
    /// report naming a VM (`for_vm`) must name the migrating one.
    pub fn copy_progress(
        &self,
        progress: hypervisor_glue::storage::Progress,
        for_vm: Option<&str>,
    ) -> Result<(), ChangeError> {
        let now = self.clock();
        let mut st = self.lock();
        let m = st.migration.as_mut().ok_or(Refusal::NothingInProgress)?;
        Ok(m.copy_progress(progress, for_vm, now)?)
    }
}

/// Records in `st` that switch `dpid` confirmed `version` at `now`, for the
/// migration timeline.
pub(super) fn note_synced(st: &mut super::State, dpid: u64, version: u64, now: Duration) {
    let Some(m) = st.migration.as_ref() else {
        return;
    };
    let destination = st
        .persisted
        .inventory
        .host(&m.route.to_host)
        .map(|h| h.datapath_id);
    let least_synced = st
        .switches
        .values()
        .filter(|s| s.connected)
        .map(|s| s.synced_version)
        .min()
        .unwrap_or(u64::MAX);
    if let Some(m) = st.migration.as_mut() {
        m.synced(dpid, version, destination, least_synced, now);
    }
}

impl Controller {
    /// What the session of switch `dpid` measures around its synchronisation to
    /// `version` (see [`Measure`]).
    pub(crate) fn measure_for(&self, dpid: u64, version: u64) -> Measure {
        self.lock()
            .migration
            .as_mut()
            .map_or(Measure::Nothing, |m| m.measure_for(dpid, version))
    }

    /// The old port's counters when the old host took the prepare step.
    pub(crate) fn record_baseline(&self, counts: PortCounts) {
        if let Some(m) = self.lock().migration.as_mut() {
            m.record_baseline(counts);
        }
    }

    /// The old port's counters just before and just after the old host switched.
    pub(crate) fn record_switch(&self, before: PortCounts, after: PortCounts) {
        if let Some(m) = self.lock().migration.as_mut() {
            m.record_switch(before, after);
        }
    }

    /// The packets the old host forwarded before its clean-up.
    pub(crate) fn record_forwarded(&self, packets: u64) {
        let now = self.clock();
        if let Some(m) = self.lock().migration.as_mut() {
            m.record_forwarded(packets, now);
        }
    }

    /// True while a migration is in progress.
    pub(crate) fn migrating(&self) -> bool {
        self.lock().in_progress().is_some()
    }

    /// True while `vm`'s migration waits for its arrival.
    pub(super) fn prepared_for(&self, vm: &str) -> bool {
        self.lock()
            .migration
            .as_ref()
            .is_some_and(|m| m.route.vm == vm && m.phase == crate::migration::Phase::Prepared)
    }
}
