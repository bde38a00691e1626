//! `scc inventory export`: an inventory as the file `scc run --inventory` reads
//! (docs/inventory.md), so the file can follow the controller's live state
//! (VMs moved, added or removed through the API) instead of drifting from it.
//! Serde structs that mirror the file, written by the `toml` crate; values left
//! at their defaults are left out, as a person would write the file.

use crate::model::{Announce, Inventory, PlacementSettings, SwitchSettings, Vm, VmPlacement};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Serialize)]
struct File<'a> {
    overlay_prefix: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    overlay_ipv6_prefix: Option<String>,
    gateway_mac: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    dns: Vec<String>,
    controller: Controller,
    #[serde(rename = "cloud", skip_serializing_if = "Vec::is_empty")]
    clouds: Vec<Cloud<'a>>,
    #[serde(rename = "host", skip_serializing_if = "Vec::is_empty")]
    hosts: Vec<Host<'a>>,
    #[serde(rename = "vm", skip_serializing_if = "Vec::is_empty")]
    vms: Vec<VmEntry<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    placement: Option<&'a PlacementSettings>,
}

#[derive(Debug, Serialize)]
struct Controller {
    openflow: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    api: Option<String>,
    api_socket: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_token_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    announce: Option<&'static str>,
    echo_every_s: u64,
    echo_timeout_s: u64,
    audit_every_s: u64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    insecure_plaintext: bool,
    /// Last: a table follows the `[controller]` values.
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<ControllerTls>,
}

/// `[controller.tls]`, its paths as resolved when the inventory was read.
#[derive(Debug, Serialize)]
struct ControllerTls {
    private_key: String,
    certificate: String,
    ca_cert: String,
    name: String,
}

#[derive(Debug, Serialize)]
struct Cloud<'a> {
    name: &'a str,
    region: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<[f64; 2]>,
}

#[derive(Debug, Serialize)]
struct Host<'a> {
    name: &'a str,
    cloud: &'a str,
    datapath_id: u64,
    tunnel_endpoint: String,
    public_key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    vm_prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uplink: Option<Uplink<'a>>,
}

#[derive(Debug, Serialize)]
struct Uplink<'a> {
    port: u32,
    interface: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    netns: Option<&'a str>,
    address: String,
    mac: String,
    router_mac: String,
    public_prefix: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    address6: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    public_ipv6_prefix: Option<String>,
}

#[derive(Debug, Serialize)]
struct VmEntry<'a> {
    name: &'a str,
    mac: String,
    ip: String,
    host: &'a str,
    port: u32,
    /// Left out when it is the default `sc-NAME`.
    #[serde(skip_serializing_if = "Option::is_none")]
    tap: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    netns: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    public_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ipv6: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    public_ipv6: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    placement: Option<&'a VmPlacement>,
}

fn vm_entry<'a>(vm: &'a Vm, placement: &'a BTreeMap<String, VmPlacement>) -> VmEntry<'a> {
    VmEntry {
        name: &vm.name,
        mac: vm.mac.to_string(),
        ip: vm.ip.to_string(),
        host: &vm.host,
        port: vm.port,
        tap: (vm.tap != Vm::default_tap(&vm.name)).then_some(vm.tap.as_str()),
        netns: vm.netns.as_deref(),
        tenant: vm.tenant.as_deref(),
        public_ip: vm.public_ip.map(|ip| ip.to_string()),
        ipv6: vm.ipv6.map(|ip| ip.to_string()),
        public_ipv6: vm.public_ipv6.map(|ip| ip.to_string()),
        placement: placement.get(&vm.name),
    }
}

impl Inventory {
    /// This inventory as an inventory file; `header` becomes its first comment
    /// lines (where it came from, when).
    pub fn to_file(&self, header: &str) -> String {
        let SwitchSettings {
            echo_every_s,
            echo_timeout_s,
            audit_every_s,
        } = self.switch_settings;
        let file = File {
            overlay_prefix: format!("{}/{}", self.overlay.0, self.overlay.1),
            overlay_ipv6_prefix: self.overlay_ipv6.map(|(net, len)| format!("{net}/{len}")),
            gateway_mac: self.gateway_mac.to_string(),
            dns: self.dns.iter().map(ToString::to_string).collect(),
            controller: Controller {
                openflow: self.openflow.to_string(),
                api: self.api.map(|a| a.to_string()),
                api_socket: self.api_socket.display().to_string(),
                api_token_file: self
                    .api_token_file
                    .as_ref()
                    .map(|f| f.display().to_string()),
                announce: self.announce.map(|a| match a {
                    Announce::IpRoute => "ip-route",
                }),
                echo_every_s,
                echo_timeout_s,
                audit_every_s,
                insecure_plaintext: self.insecure_plaintext,
                tls: self.openflow_tls.as_ref().map(|tls| ControllerTls {
                    private_key: tls.private_key.display().to_string(),
                    certificate: tls.certificate.display().to_string(),
                    ca_cert: tls.ca_cert.display().to_string(),
                    name: tls.name.clone(),
                }),
            },
            clouds: self
                .clouds
                .values()
                .map(|c| Cloud {
                    name: &c.name,
                    region: &c.region,
                    location: c.location,
                })
                .collect(),
            hosts: self
                .hosts
                .iter()
                .map(|h| Host {
                    name: &h.name,
                    cloud: &h.cloud,
                    datapath_id: h.datapath_id,
                    tunnel_endpoint: h.tunnel_endpoint.to_string(),
                    public_key: &h.public_key,
                    vm_prefix: h.vm_prefix.map(|(net, len)| format!("{net}/{len}")),
                    uplink: self.gateways.get(&h.name).map(|g| Uplink {
                        port: g.port,
                        interface: &g.interface,
                        netns: g.netns.as_deref(),
                        address: g.address.to_string(),
                        mac: g.mac.to_string(),
                        router_mac: g.router_mac.to_string(),
                        public_prefix: format!("{}/{}", g.public_prefix.0, g.public_prefix.1),
                        address6: g.address6.map(|a| a.to_string()),
                        public_ipv6_prefix: g
                            .public_ipv6_prefix
                            .map(|(net, len)| format!("{net}/{len}")),
                    }),
                })
                .collect(),
            vms: self
                .vms
                .values()
                .map(|vm| vm_entry(vm, &self.placement))
                .collect(),
            placement: (self.placement_settings != PlacementSettings::default())
                .then_some(&self.placement_settings),
        };
        let body = toml::to_string(&file).unwrap_or_else(|e| format!("# not written: {e}\n"));
        let mut out: String = header.lines().map(|l| format!("# {l}\n")).collect();
        out.push_str(&body);
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::model::Inventory;

    #[test]
    fn an_exported_inventory_reads_back_as_the_same_inventory() {
        let example = Inventory::parse(
            include_str!("../../docs/examples/inventory.toml"),
            "inventory.toml",
        )
        .unwrap();
        let mut moved = example.clone();
        let web1 = moved.vms.get_mut("web1").unwrap();
        web1.host = "host-b".into();
        web1.port = 7;
        let mut prefixed = example.clone();
        prefixed.hosts[1].vm_prefix = Some(("100.64.2.0".parse().unwrap(), 25));
        for inv in [example, moved, prefixed] {
            let text = inv.to_file("exported by a test");
            assert!(text.starts_with("# exported by a test\n"), "{text}");
            let back =
                Inventory::parse(&text, "exported.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert_eq!(back, inv, "{text}");
        }
    }
}
