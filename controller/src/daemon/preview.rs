//! What a policy changes on each switch, flow by flow: before it is applied
//! (`scc apply --dry-run`: compiled against the inventory and migration in force,
//! nothing committed) and as it was applied (`scc apply`). The differences are
//! the ones the switch sessions send (`crate::diff`), in `ovs-ofctl` text. And
//! which VMs a policy cuts off from each other: the policy is evaluated by
//! NetKAT's reference semantics (which the compiled tables are tested against)
//! on a packet from each VM to each other, where it leaves its source and where
//! it arrives; a policy that cuts every VM off from every other needs `force`.

use super::{ChangeError, Controller};
use crate::diff::plan;
use crate::migration::MigrationState;
use crate::model::Inventory;
use crate::routing::SCC_COOKIE;
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

/// Above this many VMs the pairs are not evaluated (a million evaluations).
const MAX_VMS_EVALUATED: usize = 256;

/// Which ordered pairs of VMs (source, destination) `policy` lets an IPv4
/// packet through, at the source's port and at the destination's switch (from
/// the tunnel of the source's host, or the source's port on the same host);
/// `None` when there are too many VMs to evaluate or the policy does not check.
fn reachable_pairs(inv: &Inventory, policy: &str) -> Option<Vec<(String, String)>> {
    use netkat::semantics::{eval, Packet};
    if inv.vms.len() > MAX_VMS_EVALUATED {
        return None;
    }
    let program = netkat::check(policy, inv).ok()?;
    let dpid = |host: &str| inv.host(host).map(|h| h.datapath_id);
    let passes = |switch: u64, port: u64, headers: openflow::flow::FlowKey| {
        eval(
            &program,
            Packet {
                switch,
                port,
                headers,
            },
        )
        .is_ok_and(|out| !out.is_empty())
    };
    let mut pairs = Vec::new();
    for a in inv.vms.values() {
        for b in inv.vms.values().filter(|b| b.name != a.name) {
            let (Some(from), Some(to)) = (dpid(&a.host), dpid(&b.host)) else {
                continue;
            };
            let headers = openflow::flow::FlowKey {
                eth_src: a.mac,
                eth_dst: inv.gateway_mac,
                eth_type: openflow::flow::ethertype::IPV4,
                ip_proto: 1,
                ipv4_src: u32::from(a.ip),
                ipv4_dst: u32::from(b.ip),
                ..Default::default()
            };
            let arrives_on = if from == to {
                u64::from(a.port)
            } else {
                inv.host(&a.host).map_or(0, |h| u64::from(h.tunnel_port()))
            };
            if passes(from, u64::from(a.port), headers) && passes(to, arrives_on, headers) {
                pairs.push((a.name.clone(), b.name.clone()));
            }
        }
    }
    Some(pairs)
}

/// Who reaches whom before and after a policy change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reach {
    /// Ordered pairs of distinct VMs.
    pub pairs: usize,
    /// Pairs the policy in force lets through.
    pub before: usize,
    /// Pairs the new policy lets through.
    pub after: usize,
    /// Pairs let through before and not after (source, destination).
    pub newly_cut_off: Vec<(String, String)>,
}

/// [`Reach`] from the policy in force to `policy`; `None` when not evaluated.
fn reach(inv: &Inventory, old_policy: &str, policy: &str) -> Option<Reach> {
    let before = reachable_pairs(inv, old_policy)?;
    let after = reachable_pairs(inv, policy)?;
    let n = inv.vms.len();
    Some(Reach {
        pairs: n * n.saturating_sub(1),
        before: before.len(),
        after: after.len(),
        newly_cut_off: before.into_iter().filter(|p| !after.contains(p)).collect(),
    })
}

/// What a policy change does: the flows per switch and who it cuts off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyChange {
    /// The switches whose tables change.
    pub switches: Vec<SwitchChange>,
    /// Who reaches whom; `None` with too many VMs to evaluate.
    pub reach: Option<Reach>,
}

/// A policy that lets no VM reach any other, where some did, is refused
/// unless forced: it is valid, and it cuts off all traffic at once.
fn refuse_total_cut(reach: Option<&Reach>, force: bool) -> Result<(), ChangeError> {
    match reach {
        Some(r) if !force && r.pairs > 0 && r.before > 0 && r.after == 0 => {
            Err(ChangeError::Invalid(format!(
                "this policy cuts every VM off from every other ({} pairs reach each other \
                 now, none would); `scc apply --dry-run` shows it, `--force` applies it",
                r.before
            )))
        }
        _ => Ok(()),
    }
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
    pub fn preview_policy(&self, policy: &str, name: &str) -> Result<PolicyChange, ChangeError> {
        let (inv, migration, in_force, old_policy) = {
            let st = self.lock();
            (
                st.persisted.inventory.clone(),
                st.in_progress().and_then(MigrationState::program),
                st.program.clone(),
                st.persisted.policy.clone(),
            )
        };
        let before = in_force.flat_tables();
        let after = in_force
            .update_shared(&inv, policy, name, migration.as_ref())?
            .flat_tables();
        Ok(PolicyChange {
            switches: differences(&inv, &before, &after),
            reach: reach(&inv, &old_policy, policy),
        })
    }

    /// Applies `policy` (as [`Controller::apply_policy`]) and returns the new
    /// version with what it changed. A policy that cuts every VM off from every
    /// other is refused unless `force`.
    pub fn apply_policy_showing(
        &self,
        policy: &str,
        name: &str,
        force: bool,
    ) -> Result<(u64, PolicyChange), ChangeError> {
        let _serial = self.serialize();
        let (inv, before, old_policy) = {
            let st = self.lock();
            (
                st.persisted.inventory.clone(),
                st.tables(),
                st.persisted.policy.clone(),
            )
        };
        let reach = reach(&inv, &old_policy, policy);
        refuse_total_cut(reach.as_ref(), force)?;
        let version = self.change(inv.clone(), policy.to_string(), name.to_string())?;
        let after = self.lock().tables();
        Ok((
            version,
            PolicyChange {
                switches: differences(&inv, &before, &after),
                reach,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::example_controller;

    #[test]
    fn a_dry_run_shows_the_difference_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let ctl = example_controller(dir.path(), |_| {});
        let before = ctl.lock().tables();
        let policy = "filter not ip4Dst = 100.64.2.1";
        let preview = ctl.preview_policy(policy, "p.kat").unwrap();
        assert_eq!(ctl.lock().tables(), before, "a dry run changes nothing");
        assert_eq!(ctl.lock().persisted.version, 1);
        let reach = preview.reach.clone().unwrap();
        assert_eq!((reach.pairs, reach.before, reach.after), (6, 6, 4));
        assert_eq!(
            reach.newly_cut_off,
            vec![
                ("batch1".into(), "db1".into()),
                ("web1".into(), "db1".into())
            ]
        );
        let mut json = serde_json::to_value(&preview).unwrap();
        json["dry_run"] = true.into();
        insta::assert_snapshot!(crate::human::policy_change(&json));
        let (version, applied) = ctl.apply_policy_showing(policy, "p.kat", false).unwrap();
        assert_eq!(version, 2);
        assert_eq!(applied, preview, "applied what the dry run showed");
        let again = ctl.preview_policy(policy, "p.kat").unwrap();
        assert!(
            again.switches.is_empty(),
            "nothing left to change: {again:?}"
        );
    }

    #[test]
    fn a_policy_that_cuts_every_vm_off_needs_force() {
        let dir = tempfile::tempdir().unwrap();
        let ctl = example_controller(dir.path(), |_| {});
        let err = ctl
            .apply_policy_showing("drop", "drop.kat", false)
            .unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
        assert_eq!(ctl.lock().persisted.version, 1, "refused: nothing changed");
        let (version, change) = ctl.apply_policy_showing("drop", "drop.kat", true).unwrap();
        assert_eq!(version, 2);
        assert_eq!(change.reach.unwrap().after, 0);
    }
}
