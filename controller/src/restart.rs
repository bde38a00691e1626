//! What a start does with the store and an inventory file, and the difference
//! between two inventories.
//!
//! Once the store exists it is the truth: the inventory file given to `scc run` is
//! imported only into an empty store (the first start); later it is only compared
//! with the store, and the difference logged. An operator who wants the file's
//! hosts and VMs says so with `scc inventory import FILE --yes`, which shows the same
//! difference first. This module owns that rule and the difference ([`InventoryDiff`]);
//! it reads no file and opens no socket.

use crate::model::Inventory;
use crate::store::Persisted;
use serde::Serialize;
use std::fmt;

/// A VM placed elsewhere (host or port) by the newer inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VmMove {
    /// The VM.
    pub vm: String,
    /// Host and port in the older inventory.
    pub from: (String, u32),
    /// Host and port in the newer inventory.
    pub to: (String, u32),
}

/// What changes from one inventory to another, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InventoryDiff {
    /// Hosts only the newer inventory has.
    pub hosts_added: Vec<String>,
    /// Hosts only the older inventory has.
    pub hosts_removed: Vec<String>,
    /// Hosts in both whose cloud, datapath id, endpoint or key differ.
    pub hosts_changed: Vec<String>,
    /// VMs only the newer inventory has.
    pub vms_added: Vec<String>,
    /// VMs only the older inventory has.
    pub vms_removed: Vec<String>,
    /// VMs in both at another host or port.
    pub vms_moved: Vec<VmMove>,
    /// VMs in both, at the same place, with another address, MAC, TAP, tenant or
    /// public address.
    pub vms_changed: Vec<String>,
    /// Other sections that differ (clouds, overlay, listeners, gateways,
    /// placement, switch settings), by name.
    pub settings_changed: Vec<&'static str>,
}

impl InventoryDiff {
    /// What changes from `older` to `newer`.
    pub fn between(older: &Inventory, newer: &Inventory) -> InventoryDiff {
        let host = |inv: &Inventory, name: &str| inv.host(name).cloned();
        let names =
            |inv: &Inventory| -> Vec<String> { inv.hosts.iter().map(|h| h.name.clone()).collect() };
        let mut diff = InventoryDiff::default();
        for name in names(newer) {
            match host(older, &name) {
                None => diff.hosts_added.push(name),
                Some(old) if Some(&old) != newer.host(&name) => diff.hosts_changed.push(name),
                Some(_) => {}
            }
        }
        diff.hosts_removed = names(older)
            .into_iter()
            .filter(|n| newer.host(n).is_none())
            .collect();
        for (name, vm) in &newer.vms {
            match older.vms.get(name) {
                None => diff.vms_added.push(name.clone()),
                Some(old) if (&old.host, old.port) != (&vm.host, vm.port) => {
                    diff.vms_moved.push(VmMove {
                        vm: name.clone(),
                        from: (old.host.clone(), old.port),
                        to: (vm.host.clone(), vm.port),
                    });
                }
                Some(old) if old != vm => diff.vms_changed.push(name.clone()),
                Some(_) => {}
            }
        }
        diff.vms_removed = older
            .vms
            .keys()
            .filter(|n| !newer.vms.contains_key(*n))
            .cloned()
            .collect();
        let sections: [(&'static str, bool); 9] = [
            ("overlay", older.overlay != newer.overlay),
            ("gateway_mac", older.gateway_mac != newer.gateway_mac),
            ("openflow listener", older.openflow != newer.openflow),
            (
                "api listeners",
                older.api != newer.api
                    || older.api_socket != newer.api_socket
                    || older.api_token_file != newer.api_token_file,
            ),
            ("announce", older.announce != newer.announce),
            ("clouds", older.clouds != newer.clouds),
            ("gateways", older.gateways != newer.gateways),
            (
                "placement",
                older.placement != newer.placement
                    || older.placement_settings != newer.placement_settings,
            ),
            (
                "switch settings",
                older.switch_settings != newer.switch_settings,
            ),
        ];
        diff.settings_changed = sections
            .into_iter()
            .filter_map(|(name, differs)| differs.then_some(name))
            .collect();
        diff
    }

    /// True when both inventories are the same.
    pub fn is_empty(&self) -> bool {
        *self == InventoryDiff::default()
    }
}

/// One line per change, `+`, `-`, `~` or `>` first; "no difference" when none.
impl fmt::Display for InventoryDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return writeln!(f, "no difference");
        }
        let lists: [(&str, &str, &Vec<String>); 5] = [
            ("+", "host", &self.hosts_added),
            ("-", "host", &self.hosts_removed),
            ("~", "host", &self.hosts_changed),
            ("+", "vm", &self.vms_added),
            ("-", "vm", &self.vms_removed),
        ];
        for (sign, kind, names) in lists {
            for name in names {
                writeln!(f, "{sign} {kind} {name}")?;
            }
        }
        for m in &self.vms_moved {
            writeln!(
                f,
                "> vm {} moves from {} port {} to {} port {}",
                m.vm, m.from.0, m.from.1, m.to.0, m.to.1
            )?;
        }
        for name in &self.vms_changed {
            writeln!(f, "~ vm {name}")?;
        }
        for section in &self.settings_changed {
            writeln!(f, "~ {section}")?;
        }
        Ok(())
    }
}

/// The state a start begins from, and what the operator should read in the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Start {
    /// The state to run: the store's, or the file's on the first start.
    pub persisted: Persisted,
    /// What was decided, one message each.
    pub notes: Vec<String>,
}

/// Why a start is impossible.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    /// Nothing stored and no inventory given.
    #[error("the store is empty and no --inventory was given: nothing to run")]
    Empty,
}

/// The state to start from: the store's when it has one (the inventory file is
/// only compared with it), else `inventory_file`'s (the first start). `policy`
/// (text, name), when given, replaces the stored policy: the policy file is the
/// policy's source, reloaded on `SIGHUP` as well. A start from the store is a new
/// program version, so a switch that confirmed the previous one still hears from
/// this controller.
pub fn start(
    stored: Option<Persisted>,
    inventory_file: Option<(Inventory, String)>,
    policy: Option<(String, String)>,
) -> Result<Start, StartError> {
    let mut notes = Vec::new();
    let mut persisted = match (stored, inventory_file) {
        (Some(mut stored), file) => {
            if let Some((inv, path)) = file {
                let diff = InventoryDiff::between(&stored.inventory, &inv);
                if diff.is_empty() {
                    notes.push(format!(
                        "the store is used; {path} holds the same inventory"
                    ));
                } else {
                    notes.push(format!(
                        "the store is used, not {path}, which differs from it \
                         (`scc inventory import {path}` applies it):\n{diff}"
                    ));
                }
            }
            stored.version += 1;
            stored
        }
        (None, Some((inv, path))) => {
            notes.push(format!("empty store: inventory imported from {path}"));
            Persisted::first(inv, "id".into(), "(default: id)".into())
        }
        (None, None) => return Err(StartError::Empty),
    };
    if let Some((text, name)) = policy {
        persisted.policy = text;
        persisted.policy_name = name;
    }
    Ok(Start { persisted, notes })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Inventory {
        Inventory::parse(
            include_str!("../../docs/examples/inventory.toml"),
            "inventory.toml",
        )
        .unwrap()
    }

    #[test]
    fn the_difference_names_hosts_and_vms_added_removed_and_moved() {
        let older = example();
        let mut newer = older.clone();
        assert!(InventoryDiff::between(&older, &newer).is_empty());
        let gone = newer.hosts.pop().unwrap().name;
        newer.vms = newer
            .vms
            .into_iter()
            .filter(|(_, v)| v.host != gone)
            .collect();
        let web1 = newer.vms.get_mut("web1").unwrap();
        web1.host = "host-b".into();
        web1.port = 7;
        newer.api = Some("127.0.0.1:1".parse().unwrap());
        let diff = InventoryDiff::between(&older, &newer);
        assert_eq!(diff.hosts_removed, std::slice::from_ref(&gone));
        assert!(diff.hosts_added.is_empty() && diff.vms_added.is_empty());
        assert_eq!(diff.vms_moved.len(), 1);
        assert_eq!(diff.vms_moved[0].to, ("host-b".to_string(), 7));
        assert_eq!(diff.settings_changed, ["api listeners"]);
        let text = diff.to_string();
        assert!(text.contains(&format!("- host {gone}")), "{text}");
        assert!(text.contains("> vm web1 moves from host-a port 1 to host-b port 7"));
        let back = InventoryDiff::between(&newer, &older);
        assert_eq!(back.hosts_added, [gone]);
    }

    #[test]
    fn the_store_wins_over_the_file_once_it_exists() {
        let inv = example();
        let first = start(None, Some((inv.clone(), "f.toml".into())), None).unwrap();
        assert_eq!(*first.persisted.inventory, inv);
        assert!(first.notes[0].contains("imported from f.toml"));

        let mut stored = first.persisted.clone();
        let web1 = std::sync::Arc::make_mut(&mut stored.inventory)
            .vms
            .get_mut("web1")
            .unwrap();
        web1.host = "host-b".into();
        web1.port = 7;
        stored.version = 9;
        let again = start(Some(stored.clone()), Some((inv, "f.toml".into())), None).unwrap();
        assert_eq!(
            again.persisted.inventory, stored.inventory,
            "not the file's"
        );
        assert_eq!(again.persisted.version, 10);
        assert!(again.notes[0].contains("the store is used, not f.toml"));
        assert!(again.notes[0].contains("> vm web1 moves from host-b port 7 to host-a"));

        let policy = start(Some(stored), None, Some(("drop".into(), "p.kat".into()))).unwrap();
        assert_eq!(policy.persisted.policy, "drop");
        assert!(policy.notes.is_empty());
        assert_eq!(start(None, None, None), Err(StartError::Empty));
    }
}
