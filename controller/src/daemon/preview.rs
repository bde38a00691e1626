//! What a policy changes on each switch, flow by flow: before it is applied
//! (`scc apply --dry-run`: compiled against the inventory and migration in force,
//! nothing committed) and as it was applied (`scc apply`). The differences are
//! the ones the switch sessions send (`crate::diff`), in `ovs-ofctl` text.

use super::{ChangeError, Controller};
use crate::diff::plan;
use crate::migration::MigrationState;
use crate::model::Inventory;
use crate::routing::{compile_network_during, SCC_COOKIE};
use openflow::FlowSpec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One switch's part of a policy change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchChange {
    /// The host whose switch it is.
    pub host: String,
    /// Its datapath id.
    pub datapath_id: u64,
    /// Flows added.
    pub added: Vec<String>,
    /// Flows whose actions or timeouts change.
    pub changed: Vec<String>,
    /// Flows removed.
    pub removed: Vec<String>,
}

/// Each inventory host's switch whose table differs between `before` and `after`.
fn differences(
    inv: &Inventory,
    before: &BTreeMap<u64, Vec<FlowSpec>>,
    after: &BTreeMap<u64, Vec<FlowSpec>>,
) -> Vec<SwitchChange> {
    inv.hosts
        .iter()
        .filter_map(|h| {
            let dpid = h.datapath_id;
            let old = before.get(&dpid).map_or(&[][..], Vec::as_slice);
            let new = after.get(&dpid).map_or(&[][..], Vec::as_slice);
            let d = plan(old, new, SCC_COOKIE).difference();
            let same = d.missing.is_empty() && d.changed.is_empty() && d.extra.is_empty();
            (!same).then(|| SwitchChange {
                host: h.name.clone(),
                datapath_id: dpid,
                added: d.missing,
                changed: d.changed,
                removed: d.extra,
            })
        })
        .collect()
}

impl Controller {
    /// What applying `policy` would change on each switch; nothing is committed.
    /// A policy that does not compile is the same error as when applied.
    pub fn preview_policy(
        &self,
        policy: &str,
        name: &str,
    ) -> Result<Vec<SwitchChange>, ChangeError> {
        let (inv, program, before) = {
            let st = self.lock();
            (
                st.persisted.inventory.clone(),
                st.in_progress().and_then(MigrationState::program),
                st.tables.clone(),
            )
        };
        let after = compile_network_during(&inv, policy, name, program.as_ref())?;
        Ok(differences(&inv, &before, &after))
    }

    /// Applies `policy` (as [`Controller::apply_policy`]) and returns the new
    /// version with what it changed on each switch.
    pub fn apply_policy_showing(
        &self,
        policy: &str,
        name: &str,
    ) -> Result<(u64, Vec<SwitchChange>), ChangeError> {
        let _serial = self.serialize();
        let (inv, before) = {
            let st = self.lock();
            (st.persisted.inventory.clone(), st.tables.clone())
        };
        let version = self.change(inv.clone(), policy.to_string(), name.to_string())?;
        let after = self.lock().tables.clone();
        Ok((version, differences(&inv, &before, &after)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::example_controller;

    #[test]
    fn a_dry_run_shows_the_difference_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let ctl = example_controller(dir.path(), |_| {});
        let before = ctl.lock().tables.clone();
        let policy = "filter not ip4Dst = 100.64.2.1";
        let preview = ctl.preview_policy(policy, "p.kat").unwrap();
        assert_eq!(ctl.lock().tables, before, "a dry run changes nothing");
        assert_eq!(ctl.lock().persisted.version, 1);
        let json = serde_json::json!({ "dry_run": true, "switches": preview });
        insta::assert_snapshot!(crate::human::policy_change(&json));
        let (version, applied) = ctl.apply_policy_showing(policy, "p.kat").unwrap();
        assert_eq!(version, 2);
        assert_eq!(applied, preview, "applied what the dry run showed");
        let again = ctl.preview_policy(policy, "p.kat").unwrap();
        assert!(again.is_empty(), "nothing left to change: {again:?}");
    }
}
