//! Every switch's VM port bindings for one program version, worked out once
//! and shared by all sessions, instead of each session scanning every VM for
//! its own switch under the state lock. From one version to the next only the
//! switches whose VMs changed are worked out again, from an index of the VMs'
//! names by host that follows the inventory's changes.

use crate::host_config::PortBinding;
use crate::model::{Inventory, Migration, Vm, VmIndex};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// The bindings of one version (and the migration in progress then), by
/// datapath id.
#[derive(Debug, Default)]
pub(super) struct BindingsByDpid {
    key: Option<(u64, Option<Migration>)>,
    by_dpid: Arc<ByDpid>,
    /// The inventory `by_dpid` was worked out from.
    of: Option<Arc<Inventory>>,
    /// Its VMs' names by host, in name order.
    names_by_host: HashMap<String, BTreeSet<String>>,
}

/// Every switch's bindings, by datapath id.
pub(crate) type ByDpid = HashMap<u64, Arc<Vec<PortBinding>>>;

impl BindingsByDpid {
    /// Every switch's bindings at `version` with `arriving` in progress.
    pub(super) fn all(
        &mut self,
        version: u64,
        arriving: Option<&Migration>,
        inventory: &Arc<Inventory>,
    ) -> Arc<ByDpid> {
        let fresh = self
            .key
            .as_ref()
            .is_some_and(|(v, m)| *v == version && m.as_ref() == arriving);
        if fresh {
            return self.by_dpid.clone();
        }
        let was_arriving = self.key.take().and_then(|(_, m)| m);
        let by_dpid = match self.of.take() {
            Some(old) if old.hosts == inventory.hosts => {
                let mut hosts: BTreeSet<String> = old
                    .vm_changes(inventory)
                    .flat_map(|(was, is)| was.into_iter().chain(is))
                    .map(|vm| vm.host.clone())
                    .collect();
                self.follow(&old, inventory);
                let moving = [was_arriving.as_ref(), arriving].into_iter().flatten();
                hosts.extend(moving.map(|m| m.to_host.clone()));
                let mut by_dpid = (*self.by_dpid).clone();
                for host in hosts.iter().filter_map(|h| inventory.host(h)) {
                    let bindings = self.bindings_of(inventory, &host.name, arriving);
                    by_dpid.insert(host.datapath_id, Arc::new(bindings));
                }
                by_dpid
            }
            _ => {
                self.names_by_host.clear();
                for vm in inventory.vms.values() {
                    self.record(vm);
                }
                inventory
                    .hosts
                    .iter()
                    .map(|h| {
                        let bindings = self.bindings_of(inventory, &h.name, arriving);
                        (h.datapath_id, Arc::new(bindings))
                    })
                    .collect()
            }
        };
        self.by_dpid = Arc::new(by_dpid);
        self.of = Some(inventory.clone());
        self.key = Some((version, arriving.cloned()));
        self.by_dpid.clone()
    }

    /// `host`'s bindings in `inventory`, from the index.
    fn bindings_of(
        &self,
        inventory: &Inventory,
        host: &str,
        arriving: Option<&Migration>,
    ) -> Vec<PortBinding> {
        let names = self.names_by_host.get(host).into_iter().flatten();
        let placed = names.filter_map(|n| inventory.vms.get(n));
        inventory.port_bindings_among(host, placed, arriving)
    }
}

impl VmIndex for BindingsByDpid {
    fn record(&mut self, vm: &Vm) {
        self.names_by_host
            .entry(vm.host.clone())
            .or_default()
            .insert(vm.name.clone());
    }

    fn forget(&mut self, vm: &Vm) {
        if let Some(names) = self.names_by_host.get_mut(&vm.host) {
            names.remove(&vm.name);
            if names.is_empty() {
                self.names_by_host.remove(&vm.host);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_switch_gets_what_its_host_alone_would_through_versions_and_changes() {
        let text = include_str!("../../../docs/examples/inventory.toml");
        let mut inv = Arc::new(Inventory::parse(text, "inventory.toml").unwrap());
        let moving: Migration = serde_json::from_value(serde_json::json!({
            "vm": "web1", "from_host": "host-a", "from_port": 1,
            "to_host": "host-b", "to_port": 7, "phase": "Prepared",
        }))
        .unwrap();
        let mut cache = BindingsByDpid::default();
        for (version, arriving) in [(1, None), (1, Some(&moving)), (2, None), (3, Some(&moving))] {
            if version == 3 {
                // A VM added, one moved and one removed: worked out from the
                // index, as from scratch.
                let inv = Arc::make_mut(&mut inv);
                let mut added = inv.vms["web1"].clone();
                added.name = "added".into();
                added.ip = "100.64.1.99".parse().unwrap();
                added.mac = "02:00:00:00:01:99".parse().unwrap();
                added.port = 42;
                inv.vms.insert(added.name.clone(), added);
                let db1 = inv.vms.get_mut("db1").unwrap();
                db1.host = "host-a".into();
                db1.port = 43;
                let gone = inv
                    .vms
                    .keys()
                    .find(|n| *n != "web1" && *n != "db1" && *n != "added");
                let gone = gone.cloned().unwrap();
                inv.vms.remove(&gone);
            }
            for host in &inv.hosts {
                let all = cache.all(version, arriving, &inv);
                let shared = all.get(&host.datapath_id).cloned().unwrap_or_default();
                assert_eq!(
                    *shared,
                    inv.port_bindings(&host.name, arriving),
                    "{} at version {version}",
                    host.name
                );
            }
        }
        assert!(
            !cache.all(3, Some(&moving), &inv).contains_key(&0xdead),
            "not a host"
        );
    }
}
