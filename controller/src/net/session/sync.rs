//! A session's synchronisation of its switch to a published version: the
//! flow-mods (its shared delta, or its own difference when it fell behind),
//! the barriers, the migration's measurements around them, and recording the
//! confirmation. It never takes the state lock but to record.

use super::{Session, SessionError};
use crate::daemon::{Published, SessionPhases};
use crate::diff::Plan;
use crate::migration::Measure;
use crate::program::SwitchTable;
use openflow::flow::{ethertype, Field, FlowMatch};
use openflow::FlowSpec;
use std::sync::Arc;

/// What the switch holds, as far as its session knows: a table, and its
/// version when the switch confirmed a version's (none for flows read back).
pub(super) struct Held {
    pub(super) table: Arc<SwitchTable>,
    pub(super) version: Option<u64>,
}

impl Held {
    pub(super) fn read_back(flows: Vec<FlowSpec>) -> Held {
        Held {
            table: Arc::new(SwitchTable::from_flows(flows)),
            version: None,
        }
    }
}

impl Session {
    /// Synchronises to `published` (`desired`, this switch's table in it), taking the
    /// migration timeline's measurement for this switch around it (see
    /// [`Measure`]). The port counters before the switch are requested ahead of
    /// the flow-mods, in the same stream, so they do not delay the reroute.
    pub(super) async fn sync_measured(
        &mut self,
        installed: &Held,
        published: &Published,
        desired: Arc<SwitchTable>,
    ) -> Result<Held, SessionError> {
        let dpid = self.dpid.unwrap_or_default();
        let version = published.version;
        // Only the migration's old host measures: the others ask no lock.
        let measure = match published.measured == Some(dpid) {
            true => {
                self.doing("measuring for the migration");
                self.ctl.measure_for(dpid, version)
            }
            false => Measure::Nothing,
        };
        match measure {
            Measure::Nothing => self.sync(installed, published, desired).await,
            Measure::Baseline { port } => {
                // Ahead of the flow-mods too: the prepare step is not held up either.
                let xid = self.request_port_counts(port).await?;
                let installed = self.sync(installed, published, desired).await?;
                if let Some(c) = self.port_counts(xid).await? {
                    self.ctl.record_baseline(c);
                }
                Ok(installed)
            }
            Measure::AroundSwitch { port } => {
                let before = self.request_port_counts(port).await?;
                let installed = self.sync(installed, published, desired).await?;
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
                self.sync(installed, published, desired).await
            }
        }
    }

    /// Sends the difference between `installed` and `desired` (found from the
    /// rules that changed), waits for the switch to confirm it, and returns the
    /// new installed set.
    async fn sync(
        &mut self,
        installed: &Held,
        published: &Published,
        desired: Arc<SwitchTable>,
    ) -> Result<Held, SessionError> {
        let dpid = self.dpid.unwrap_or_default();
        let version = published.version;
        self.doing("computing the difference");
        let p = published.plan_for(dpid, &installed.table, installed.version, &desired);
        let diffed = std::time::Instant::now();
        let n = p.len();
        let sent = self.send_plan(p).await?;
        let (woke, confirmed) = (self.woke, std::time::Instant::now());
        let phases = SessionPhases {
            woke,
            diffed,
            sent,
            confirmed,
        };
        self.doing("noting the confirmation");
        self.ctl.note_sync_phases(version, phases);
        tracing::info!(
            dpid,
            version,
            flow_mods = n,
            flows = desired.len(),
            "switch synchronised"
        );
        self.ctl.note_confirmed(dpid, version, desired.len(), n);
        Ok(Held {
            table: desired,
            version: Some(version),
        })
    }

    /// Sends `p` (its adds and modifications, a barrier, its deletions if any, a
    /// barrier) and waits for the switch to confirm it; nothing for an empty
    /// plan. When the first part and its barrier were written.
    pub(super) async fn send_plan(&mut self, p: Plan) -> Result<std::time::Instant, SessionError> {
        if p.is_empty() {
            return Ok(std::time::Instant::now());
        }
        self.plan_xids.clear();
        self.plan_refused = None;
        // Nothing to make before the break, or to break after the make: one
        // barrier round trip, not two.
        let (make, then) = match p.first.is_empty() {
            true => (p.then, Vec::new()),
            false => (p.first, p.then),
        };
        let b = self.send_with_barrier(make).await?;
        let sent = std::time::Instant::now();
        self.doing("waiting for a barrier");
        self.reply_to(b).await?;
        if !then.is_empty() {
            let b = self.send_with_barrier(then).await?;
            self.doing("waiting for the deletions' barrier");
            self.reply_to(b).await?;
        }
        self.plan_xids.clear();
        // The barrier is answered after the errors of the flow-mods before it: a
        // refused flow-mod means the switch does not hold the version, and it must
        // never be reported as confirmed (a migration's "destination ready").
        match self.plan_refused.take() {
            Some(e) => Err(SessionError::Refused(format!("flow-mod: {e}"))),
            None => Ok(sent),
        }
    }
}
