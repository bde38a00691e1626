//! The daemon's placement loop: a round plans every VM from what the switches
//! measured (`crate::follow`), and with `apply` starts the best move through the
//! inventory's `[placement] migrate` command, then settles how it ended (arrival,
//! abort, or left to an operator). The loop runs a round every `plan_every_s`.

use super::Controller;
use crate::follow::{now_ms, MoveFailure, Round};
use std::sync::Arc;
use std::time::Duration;

/// How long after a move command's success the controller waits for the VM's own
/// announcement before taking the command's exit as the arrival.
const ARRIVAL_AFTER_MOVE: Duration = Duration::from_secs(5);

impl Controller {
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
        let migrating = self.lock().in_progress().map(|m| m.route.vm.clone());
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
            let result = crate::follow::run_move(argv, &record, &inv.api_socket, timeout).await;
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
                        let aborting = ctl.clone();
                        let aborted =
                            tokio::task::spawn_blocking(move || aborting.abort_migration()).await;
                        match aborted {
                            Ok(Ok(_)) => {}
                            Ok(Err(e)) => {
                                tracing::error!("placement: abort after a failed move: {e}")
                            }
                            Err(e) => tracing::error!("placement: abort after a failed move: {e}"),
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
                // A compile and a store write: off the async workers.
                let (ctl, moved) = (self.clone(), vm.to_string());
                let arrived = tokio::task::spawn_blocking(move || {
                    ctl.arrived_vm(None, "move command", Some(&moved))
                        .map_err(|e| e.to_string())
                })
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
                return match arrived {
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
}
