//! A program version as the switch sessions receive it: published once, shared
//! by all of them (`Arc`), read without the state lock. It carries every
//! switch's table and, for each switch whose table changed since the version
//! before, the flow-mods that take it there, worked out once at publication:
//! a session that holds the version before takes its delta and sends it; one
//! that fell behind (it was busy, reconnected, or was audited) diffs its own
//! table against the version's. It must never hold anything a session may
//! change: it is immutable once published.

use super::port_bindings::ByDpid;
use crate::diff::{plan, Plan};
use crate::host_config::PortBinding;
use crate::program::SwitchTable;
use crate::routing::SCC_COOKIE;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

/// One published program version (see the module's doc).
#[derive(Debug, Default)]
pub(crate) struct Published {
    /// The version.
    pub version: u64,
    /// The version published before it, which [`Self::delta`] starts from.
    pub after: u64,
    /// Every inventory host's table, by datapath id; a datapath missing here
    /// left the inventory.
    pub tables: BTreeMap<u64, Arc<SwitchTable>>,
    /// The flow-mods from `after`'s table to this version's for each switch
    /// that had a table then (`None`: the same table; shared, not copied per
    /// session).
    deltas: HashMap<u64, Option<Arc<Plan>>>,
    /// The switch whose session takes a migration's measurements (the
    /// migration's old host): the only one that asks the state for them.
    pub measured: Option<u64>,
    /// Every switch's port bindings, worked out by the first session that
    /// needs them (from the state then) and read by the others without a lock.
    bindings: OnceLock<Arc<ByDpid>>,
}

impl Published {
    /// Version `version` with `tables`, following `before` (the version
    /// published until now): each changed switch's delta is worked out here,
    /// once.
    pub(crate) fn new(
        version: u64,
        tables: BTreeMap<u64, Arc<SwitchTable>>,
        before: &Published,
        measured: Option<u64>,
    ) -> Published {
        let deltas = tables
            .iter()
            .filter_map(|(dpid, now)| Some((*dpid, delta(before.tables.get(dpid)?, now))))
            .collect();
        Published {
            version,
            after: before.version,
            tables,
            deltas,
            measured,
            bindings: OnceLock::new(),
        }
    }

    /// Switch `dpid`'s port bindings, from `work_out` the first time.
    pub(crate) fn bindings(
        &self,
        dpid: u64,
        work_out: impl FnOnce() -> Arc<ByDpid>,
    ) -> Arc<Vec<PortBinding>> {
        let all = self.bindings.get_or_init(work_out);
        all.get(&dpid).cloned().unwrap_or_default()
    }

    /// The flow-mods that take switch `dpid` from `installed`, the table of
    /// version `installed_version`, to this version's `desired`: its shared
    /// delta when it holds the version before, its own difference otherwise.
    pub(crate) fn plan_for(
        &self,
        dpid: u64,
        installed: &SwitchTable,
        installed_version: Option<u64>,
        desired: &SwitchTable,
    ) -> Plan {
        if installed_version == Some(self.version) {
            return Plan::default();
        }
        if installed_version == Some(self.after) && self.after != 0 {
            if let Some(delta) = self.deltas.get(&dpid) {
                return delta.as_deref().cloned().unwrap_or_default();
            }
        }
        difference(installed, desired)
    }
}

/// The flow-mods from `was` to `now` (`None`: the same table).
fn delta(was: &Arc<SwitchTable>, now: &Arc<SwitchTable>) -> Option<Arc<Plan>> {
    (!Arc::ptr_eq(was, now)).then(|| Arc::new(difference(was, now)))
}

/// The flow-mods that take a switch holding `was` to `now`, found from the
/// rules that differ between them (units they share cost nothing).
fn difference(was: &SwitchTable, now: &SwitchTable) -> Plan {
    let (was, now) = now.changed_since(was);
    plan(&was, &now, SCC_COOKIE)
}

#[cfg(test)]
mod tests {
    use crate::daemon::tests::example_controller;
    use crate::routing::SCC_COOKIE;
    use fake_switch::FakeSwitch;
    use openflow::wire::Message;

    /// Sorted, to compare tables whatever their order.
    fn sorted(mut flows: Vec<openflow::FlowSpec>) -> Vec<String> {
        let mut text: Vec<String> = flows.drain(..).map(|f| format!("{f:?}")).collect();
        text.sort();
        text
    }

    /// Sorted, to compare plans whatever their order.
    fn mods(plan: &crate::diff::Plan) -> Vec<String> {
        let mut text: Vec<String> = plan
            .first
            .iter()
            .chain(&plan.then)
            .map(|m| format!("{m:?}"))
            .collect();
        text.sort();
        text
    }

    #[test]
    fn a_switch_at_any_earlier_version_reaches_the_latest_by_its_delta_or_its_own_diff() {
        let dir = tempfile::tempdir().unwrap();
        let ctl = example_controller(dir.path(), |_| {});
        let versions = ctl.versions();
        let mut published = vec![versions.borrow().clone()];
        for vm in ["batch1", "db1"] {
            ctl.remove_vm(vm).unwrap();
            published.push(versions.borrow().clone());
        }
        let latest = published.last().unwrap().clone();
        assert_eq!(latest.after, published[published.len() - 2].version);
        let mut changed = 0;
        for (dpid, desired) in &latest.tables {
            for earlier in &published {
                let held = &earlier.tables[dpid];
                let fake = FakeSwitch::new(*dpid);
                for flow in held.flows() {
                    fake.insert(flow.clone());
                }
                let plan = latest.plan_for(*dpid, held, Some(earlier.version), desired);
                changed += usize::from(!plan.is_empty());
                let whole = crate::diff::plan(&held.to_vec(), &desired.to_vec(), SCC_COOKIE);
                assert_eq!(
                    mods(&plan),
                    mods(&whole),
                    "switch {dpid} from version {}: the delta is a full diff's",
                    earlier.version
                );
                for fm in plan.first.into_iter().chain(plan.then) {
                    fake.answer(Message::FlowMod(fm));
                }
                assert_eq!(
                    sorted(fake.flows()),
                    sorted(desired.to_vec()),
                    "switch {dpid} from version {}",
                    earlier.version
                );
            }
            // Flows read back (no version known) converge too.
            let fake = FakeSwitch::new(*dpid);
            let read_back = crate::program::SwitchTable::default();
            let plan = latest.plan_for(*dpid, &read_back, None, desired);
            for fm in plan.first.into_iter().chain(plan.then) {
                fake.answer(Message::FlowMod(fm));
            }
            assert_eq!(sorted(fake.flows()), sorted(desired.to_vec()));
        }
        assert!(changed > 0, "the removals changed some switch");
    }
}
