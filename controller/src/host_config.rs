//! `scc host-config`: a host's `scd` configuration (`docs/scd-config.md`) generated
//! from the inventory, as serde structs that mirror the file scd reads, written by
//! the `toml` crate so every name is quoted and escaped as TOML requires; and the
//! bindings of a host's VM ports (port security) that the file starts `scd` with
//! and the OpenFlow session keeps up to date.

use crate::model::{Gateway, Inventory, Migration};
use openflow::flow::Mac;
use serde::Serialize;
use std::net::Ipv4Addr;

/// A VM port of a host bound to its VM's MAC and addresses: `scd` drops every
/// other frame the port receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortBinding {
    /// The port's OpenFlow number.
    pub port: u32,
    /// The VM's MAC.
    pub mac: Mac,
    /// The VM's addresses.
    pub ips: Vec<Ipv4Addr>,
    /// The VM's own and public IPv6 addresses, when the inventory gives it
    /// any (`scd` admits the addresses a MAC gives a VM by itself).
    pub ipv6: Vec<std::net::Ipv6Addr>,
}

/// Where every generated configuration has `scd` serve its metrics.
const METRICS_LISTEN: &str = "127.0.0.1:9464";

/// The configuration file of one `scd`.
#[derive(Debug, Serialize)]
struct ScdConfig<'a> {
    datapath_id: u64,
    name: &'a str,
    overlay: Overlay,
    metrics: Metrics,
    openflow: Openflow,
    tunnel: Tunnel<'a>,
    dhcp: Dhcp,
    #[serde(rename = "port", skip_serializing_if = "Vec::is_empty")]
    ports: Vec<Port<'a>>,
    #[serde(rename = "peer", skip_serializing_if = "Vec::is_empty")]
    peers: Vec<Peer<'a>>,
}

#[derive(Debug, Serialize)]
struct Overlay {
    prefix: String,
    gateway_mac: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    ipv6_prefix: Option<String>,
}

/// `[dhcp]`: every VM port's client gets its address, the gateway and the
/// inventory's DNS servers; the MTU is left to scd (the tunnels').
#[derive(Debug, Serialize)]
struct Dhcp {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    dns: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Metrics {
    listen: &'static str,
}

#[derive(Debug, Serialize)]
struct Openflow {
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<String>,
    controllers: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    insecure_plaintext: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<OpenflowTls>,
}

/// `[openflow.tls]`: the host's files beside the CA's certificate, as
/// `scc pki issue HOST` names them.
#[derive(Debug, Serialize)]
struct OpenflowTls {
    private_key: String,
    certificate: String,
    ca_cert: String,
    controller_name: String,
}

/// The local OpenFlow listener `scc host-config` gives every `scd` by default, in
/// the runtime directory of its systemd unit: `ovs-ofctl -O OpenFlow13
/// dump-flows unix:/run/scd/scd.mgmt` works on the host with no edit.
pub const DEFAULT_OPENFLOW_LISTEN: &str = "punix:/run/scd/scd.mgmt";

#[derive(Debug, Serialize)]
struct Tunnel<'a> {
    private_key_file: &'a str,
    /// The port of the host's own tunnel endpoint, on every address.
    listen: String,
}

/// A `[[port]]`: a VM's TAP, or a gateway's uplink (a raw port).
#[derive(Debug, Serialize)]
struct Port<'a> {
    number: u32,
    name: &'a str,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    netns: Option<&'a str>,
    /// False for a TAP in a namespace of its own: someone else made it there.
    #[serde(skip_serializing_if = "Option::is_none")]
    create: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    answer_arp: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    answer_nd: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mac: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vm_mac: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    vm_ips: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Peer<'a> {
    port: u32,
    name: &'a str,
    public_key: &'a str,
    endpoint: String,
}

impl<'a> Port<'a> {
    fn uplink(gw: &'a Gateway) -> Port<'a> {
        let (network, len) = gw.public_prefix;
        Port {
            number: gw.port,
            name: &gw.interface,
            kind: Some("raw"),
            netns: gw.netns.as_deref(),
            create: None,
            answer_arp: vec![gw.address.to_string(), format!("{network}/{len}")],
            answer_nd: gw
                .address6
                .zip(gw.public_ipv6_prefix)
                .map(|(address, (net, len))| vec![address.to_string(), format!("{net}/{len}")])
                .unwrap_or_default(),
            mac: Some(gw.mac.to_string()),
            vm_mac: None,
            vm_ips: Vec::new(),
        }
    }
}

/// VM `vm` bound on `port`.
fn bind(vm: &crate::model::Vm, port: u32) -> PortBinding {
    PortBinding {
        port,
        mac: vm.mac,
        ips: vec![vm.ip],
        ipv6: vm.ipv6.into_iter().chain(vm.public_ipv6).collect(),
    }
}

impl Inventory {
    /// The bindings of `host`'s VM ports: each VM placed there on its port, and
    /// the VM `arriving` there (a migration in progress) on its destination port
    /// already, so that its first frames there pass.
    pub fn port_bindings(&self, host: &str, arriving: Option<&Migration>) -> Vec<PortBinding> {
        let placed = self.vms.values().filter(|v| v.host == host);
        self.port_bindings_among(host, placed, arriving)
    }

    /// [`Self::port_bindings`] of `host` given the VMs placed there, in name
    /// order (from an index of the VMs by host).
    pub fn port_bindings_among<'a>(
        &self,
        host: &str,
        placed: impl Iterator<Item = &'a crate::model::Vm>,
        arriving: Option<&Migration>,
    ) -> Vec<PortBinding> {
        let mut bindings: Vec<PortBinding> = placed.map(|vm| bind(vm, vm.port)).collect();
        self.bind_arrival(host, &mut bindings, arriving);
        bindings
    }

    /// Binds the VM `arriving` at `host` on its destination port, in place of
    /// what that port had.
    fn bind_arrival(
        &self,
        host: &str,
        bindings: &mut Vec<PortBinding>,
        arriving: Option<&Migration>,
    ) {
        let arrival = arriving
            .filter(|m| m.to_host == host)
            .and_then(|m| Some(bind(self.vms.get(&m.vm)?, m.to_port)));
        if let Some(arrival) = arrival {
            bindings.retain(|b| b.port != arrival.port);
            bindings.push(arrival);
        }
    }

    /// The controller connection of `host`'s `scd`: `ssl:` with the host's
    /// files when the controller has `[controller.tls]`, else `tcp:`; and the
    /// passive listener for local tools, if any.
    fn openflow_section(&self, host: &str, listen: Option<&str>) -> Openflow {
        let Some(tls) = &self.openflow_tls else {
            return Openflow {
                listen: listen.map(str::to_string),
                controllers: vec![format!("tcp:{}", self.openflow)],
                insecure_plaintext: self.insecure_plaintext,
                tls: None,
            };
        };
        let dir = tls.ca_cert.parent().unwrap_or(std::path::Path::new(""));
        let file = |suffix: &str| {
            dir.join(format!("{host}-{suffix}.pem"))
                .display()
                .to_string()
        };
        Openflow {
            listen: listen.map(str::to_string),
            controllers: vec![format!("ssl:{}", self.openflow)],
            insecure_plaintext: false,
            tls: Some(OpenflowTls {
                private_key: file("key"),
                certificate: file("cert"),
                ca_cert: tls.ca_cert.display().to_string(),
                controller_name: tls.name.clone(),
            }),
        }
    }

    /// The `scd` configuration of one host: its VM ports, its uplink if it is a
    /// gateway, its tunnels to every other host, and the controller connection.
    /// The private key file and the listen address of the tunnels are the host's
    /// own (`key_file`, port of its endpoint). `None` when there is no such host.
    pub fn host_config(&self, host: &str, key_file: &str) -> Option<String> {
        self.host_config_listening(host, key_file, None)
    }

    /// [`Inventory::host_config`] with a passive OpenFlow listener for local
    /// tools (`openflow.listen`, e.g. [`DEFAULT_OPENFLOW_LISTEN`]).
    pub fn host_config_listening(
        &self,
        host: &str,
        key_file: &str,
        listen: Option<&str>,
    ) -> Option<String> {
        let h = self.host(host)?;
        let vm_ports = self.vms.values().filter(|v| v.host == host).map(|vm| Port {
            number: vm.port,
            name: &vm.tap,
            kind: None,
            netns: vm.netns.as_deref(),
            create: vm.netns.as_ref().map(|_| false),
            answer_arp: Vec::new(),
            answer_nd: Vec::new(),
            mac: None,
            vm_mac: Some(vm.mac.to_string()),
            vm_ips: vec![vm.ip.to_string()],
        });
        let config = ScdConfig {
            datapath_id: h.datapath_id,
            name: &h.name,
            overlay: Overlay {
                prefix: format!("{}/{}", self.overlay.0, self.overlay.1),
                gateway_mac: self.gateway_mac.to_string(),
                ipv6_prefix: self.overlay_ipv6.map(|(net, len)| format!("{net}/{len}")),
            },
            metrics: Metrics {
                listen: METRICS_LISTEN,
            },
            openflow: self.openflow_section(host, listen),
            dhcp: Dhcp {
                dns: self.dns.iter().map(ToString::to_string).collect(),
            },
            tunnel: Tunnel {
                private_key_file: key_file,
                listen: h.tunnel_endpoint.port().to_string(),
            },
            ports: vm_ports
                .chain(self.gateways.get(host).map(Port::uplink))
                .collect(),
            peers: self
                .hosts
                .iter()
                .filter(|p| p.name != host)
                .map(|peer| Peer {
                    port: peer.tunnel_port(),
                    name: &peer.name,
                    public_key: &peer.public_key,
                    endpoint: peer.tunnel_endpoint.to_string(),
                })
                .collect(),
        };
        let body = toml::to_string(&config).expect("plain strings and numbers serialize");
        // scd routes by the controller's tables, not by prefix: the host's VM
        // prefix is for people and the tools that give its VMs addresses.
        let prefix = h.vm_prefix.map_or(String::new(), |(net, len)| {
            format!("# vm_prefix = \"{net}/{len}\": addresses for the VMs placed on this host.\n")
        });
        Some(format!(
            "# scd configuration generated by `scc host-config` from the inventory.\n{prefix}{body}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::config::{HostConfig, PortKind};
    use std::net::Ipv4Addr;
    use std::path::Path;

    const EXAMPLE: &str = include_str!("../../docs/examples/inventory.toml");

    fn inventory(text: &str) -> Inventory {
        Inventory::parse(text, "inventory.toml").unwrap()
    }

    /// What `scd` reads from a configuration text.
    fn scd_reads(config: &str) -> HostConfig {
        HostConfig::parse(config, Path::new("host.toml"))
            .unwrap_or_else(|e| panic!("{e}\n{config}"))
    }

    /// What `scd` reads, but for the `[dhcp]` section the earlier generator did
    /// not write (checked present, then left out).
    fn scd_reads_without_dhcp(config: &str) -> HostConfig {
        let mut parsed = scd_reads(config);
        assert!(parsed.dhcp.take().is_some(), "no [dhcp]:\n{config}");
        parsed
    }

    #[test]
    fn ipv6_reaches_scd_as_its_prefix_and_a_vms_own_address_as_its_binding() {
        let mut inv = inventory(EXAMPLE);
        inv.overlay_ipv6 = Some(("fd00:5c::".parse().unwrap(), 48));
        let own: std::net::Ipv6Addr = "fd00:5c:0:2::1".parse().unwrap();
        inv.vms.get_mut("db1").unwrap().ipv6 = Some(own);
        let parsed = scd_reads(&inv.host_config("host-b", "k").unwrap());
        assert_eq!(parsed.overlay_ipv6, inv.overlay_ipv6);
        assert_eq!(inv.port_bindings("host-b", None)[0].ipv6, [own]);
        assert!(inv.port_bindings("host-a", None)[0].ipv6.is_empty());
    }

    /// The example inventory with a VM's TAP and the uplink in namespaces.
    fn with_namespaces() -> String {
        EXAMPLE
            .replacen(
                "interface = \"eth1\"\n",
                "interface = \"eth1\"\nnetns = \"internet\"\n",
                1,
            )
            .replacen("port = 1\n", "port = 1\nnetns = \"vm-web1\"\n", 1)
    }

    #[test]
    fn the_hosts_vm_prefix_is_a_comment_scd_ignores() {
        let mut inv = inventory(EXAMPLE);
        inv.hosts[0].vm_prefix = Some((Ipv4Addr::new(100, 64, 1, 0), 25));
        let config = inv.host_config("host-a", "k").unwrap();
        assert!(
            config.contains("\n# vm_prefix = \"100.64.1.0/25\": addresses for the VMs"),
            "{config}"
        );
        scd_reads(&config);
        assert!(!inv
            .host_config("host-b", "k")
            .unwrap()
            .contains("vm_prefix"));
    }

    #[test]
    fn scd_reads_what_the_string_formatted_generator_wrote() {
        // The files the earlier generator (string formatting) wrote for the example.
        let earlier = [
            (
                "host-a",
                include_str!("../tests/data/host-config-host-a.toml"),
            ),
            (
                "host-b",
                include_str!("../tests/data/host-config-host-b.toml"),
            ),
            (
                "host-c",
                include_str!("../tests/data/host-config-host-c.toml"),
            ),
        ];
        let inv = inventory(EXAMPLE);
        for (host, file) in earlier {
            let key_file = format!("/etc/scd/{host}.key");
            let config = inv.host_config(host, &key_file).unwrap();
            assert_eq!(
                scd_reads_without_dhcp(&config),
                scd_reads(file),
                "{host}:\n{config}"
            );
        }
        let inv = inventory(&with_namespaces());
        let config = inv.host_config("host-a", "k").unwrap();
        let earlier = include_str!("../tests/data/host-config-netns-host-a.toml");
        assert_eq!(
            scd_reads_without_dhcp(&config),
            scd_reads(earlier),
            "{config}"
        );
        assert!(inv.host_config("host-z", "k").is_none());
    }

    #[test]
    fn vm_ports_get_dhcp_with_the_inventorys_dns_and_the_tunnels_mtu() {
        let with_dns = EXAMPLE.replacen(
            "gateway_mac",
            "dns = [\"192.0.2.53\", \"198.51.100.53\"]\ngateway_mac",
            1,
        );
        let inv = inventory(&with_dns);
        let config = inv.host_config("host-a", "k").unwrap();
        let dhcp = scd_reads(&config).dhcp.expect("a [dhcp] section");
        assert_eq!(
            dhcp.dns,
            [
                Ipv4Addr::new(192, 0, 2, 53),
                Ipv4Addr::new(198, 51, 100, 53)
            ]
        );
        assert_eq!(
            usize::from(dhcp.mtu),
            scd_reads(&config).tunnel.unwrap().mtu
        );
        let exported = Inventory::parse(&inv.to_file("# test"), "again.toml").unwrap();
        assert_eq!(exported.dns, inv.dns);
    }

    #[test]
    fn a_host_config_may_have_a_local_openflow_listener() {
        let inv = inventory(EXAMPLE);
        let config = inv
            .host_config_listening("host-a", "k", Some(DEFAULT_OPENFLOW_LISTEN))
            .unwrap();
        let parsed = scd_reads(&config);
        assert_eq!(parsed.openflow.listen.len(), 1, "{config}");
        assert_eq!(
            parsed.openflow.controllers.len(),
            1,
            "and the controller still: {config}"
        );
    }

    #[test]
    fn the_host_config_of_a_gateway_has_its_uplink_port() {
        let inv = inventory(EXAMPLE);
        let parsed = scd_reads(&inv.host_config("host-a", "k").unwrap());
        let uplink = parsed.ports.iter().find(|p| p.number == 100).unwrap();
        assert_eq!(uplink.kind, PortKind::Raw);
        assert_eq!(uplink.mac, Some(inv.gateways["host-a"].mac));
        let public = u32::from(Ipv4Addr::new(203, 0, 113, 0));
        assert!(uplink.answer_arp.contains(&(public, 24)));
    }

    #[test]
    fn quotes_and_backslashes_in_names_round_trip() {
        let awkward = r#"a"b\c"#;
        let text = EXAMPLE
            .replace("name = \"host-a\"", &format!("name = '{awkward}'"))
            .replace("host = \"host-a\"", &format!("host = '{awkward}'"));
        let inv = inventory(&text);
        let key_file = r#"C:\keys\"wg".key"#;
        let config = inv.host_config(awkward, key_file).unwrap();
        let parsed = scd_reads(&config);
        assert_eq!(parsed.name, awkward, "{config}");
        let tunnel = parsed.tunnel.unwrap();
        assert_eq!(tunnel.private_key_file, Path::new(key_file), "{config}");
        // The other hosts' peer entries name it the same way.
        let peer = scd_reads(&inv.host_config("host-b", "k").unwrap());
        let peers = &peer.tunnel.unwrap().peers;
        assert!(peers.iter().any(|p| p.name == awkward), "{peers:?}");
    }

    #[test]
    fn vm_ports_are_bound_and_an_arriving_vm_at_its_destination_already() {
        let inv = inventory(EXAMPLE);
        let parsed = scd_reads(&inv.host_config("host-a", "k").unwrap());
        let web1 = &inv.vms["web1"];
        let bound = parsed.ports.iter().find(|p| p.number == 1).unwrap();
        let binding = bound.binding.as_ref().expect("the VM port is bound");
        assert_eq!(binding.mac(), web1.mac);
        assert_eq!(binding.ips().collect::<Vec<_>>(), [web1.ip]);
        let uplink = parsed.ports.iter().find(|p| p.number == 100).unwrap();
        assert_eq!(uplink.binding, None, "an uplink keeps its own rules");

        let db1 = &inv.vms["db1"];
        let at = |port, vm: &crate::model::Vm| PortBinding {
            port,
            mac: vm.mac,
            ips: vec![vm.ip],
            ipv6: Vec::new(),
        };
        assert_eq!(inv.port_bindings("host-b", None), [at(1, db1)]);
        let moving = Migration {
            vm: "web1".into(),
            from_host: "host-a".into(),
            from_port: 1,
            to_host: "host-b".into(),
            to_port: 7,
            phase: crate::model::Phase::Prepared,
        };
        assert_eq!(
            inv.port_bindings("host-b", Some(&moving)),
            [at(1, db1), at(7, web1)]
        );
        assert_eq!(inv.port_bindings("host-a", Some(&moving)), [at(1, web1)]);
    }
}
