//! The controller's data model: clouds, hosts, their uplinks, VMs with their
//! addresses, ports and public addresses, the placement settings and a migration
//! in progress, as plain types with no behaviour that needs another controller
//! module. Everything else (the inventory file's parser, the routing, gateways,
//! placement, the daemon) builds on these; nothing here imports them.
//!
//! [`validate`] holds the rules a host or a VM must satisfy against the rest of
//! the inventory, shared by the inventory file and the API.

pub mod ipv6;
pub mod migration;
pub mod placement;
pub mod uplink;
pub mod validate;

pub use migration::{Migration, Phase};
pub use placement::{EngineConfig, PlacementSettings, VmPlacement};
pub use uplink::{Announce, Gateway};
pub use validate::Invalid;
pub(crate) use validate::VmClaims;

use openflow::flow::Mac;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

/// Tunnel ports are numbered from the peer's datapath id: `TUNNEL_PORT_BASE + dpid`.
pub const TUNNEL_PORT_BASE: u32 = 10_000;
/// Largest datapath id an inventory may use (so tunnel ports stay valid).
pub const MAX_DATAPATH_ID: u64 = 1_000_000;
/// Longest interface name Linux accepts, bytes.
pub const MAX_INTERFACE_NAME: usize = 15;

/// A cloud (provider region).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cloud {
    /// Name.
    pub name: String,
    /// Provider region.
    pub region: String,
    /// Latitude and longitude, for placement.
    pub location: Option<[f64; 2]>,
}

/// A host running `scd`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    /// Name.
    pub name: String,
    /// Its cloud.
    pub cloud: String,
    /// Datapath id of its switch.
    pub datapath_id: u64,
    /// Where its tunnels listen (public address).
    pub tunnel_endpoint: SocketAddr,
    /// Its WireGuard public key (base64).
    pub public_key: String,
    /// The overlay addresses that live on this host unless the inventory puts
    /// their VM elsewhere (as Kubernetes' per-node pod CIDR): other switches
    /// reach them through one route instead of one per VM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_prefix: Option<(Ipv4Addr, u8)>,
}

impl Host {
    /// True when `ip` lies in this host's VM prefix.
    pub fn owns(&self, ip: Ipv4Addr) -> bool {
        self.vm_prefix.is_some_and(|(net, len)| {
            u32::from(ip) & config_support::prefix_mask(len) == u32::from(net)
        })
    }

    /// The OpenFlow port number every other host uses for its tunnel to this host.
    pub fn tunnel_port(&self) -> u32 {
        TUNNEL_PORT_BASE + u32::try_from(self.datapath_id).unwrap_or(0)
    }
}

/// A VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vm {
    /// Name.
    pub name: String,
    /// MAC of its interface.
    pub mac: Mac,
    /// Overlay address.
    pub ip: Ipv4Addr,
    /// The host it runs on now.
    pub host: String,
    /// OpenFlow port of its TAP on that host.
    pub port: u32,
    /// TAP interface name (default [`Vm::default_tap`]).
    pub tap: String,
    /// Namespace the TAP lives in, when not the host's (test harness VMs).
    pub netns: Option<String>,
    /// Tenant, for policies and status.
    pub tenant: Option<String>,
    /// Public address served by a gateway, if any.
    pub public_ip: Option<Ipv4Addr>,
    /// Its own overlay IPv6 address; `None`: the one SLAAC gives its MAC
    /// ([`Inventory::vm_ipv6`]), when the overlay has an IPv6 prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Addr>,
    /// Public IPv6 address routed to it (no NAT) by the gateways whose
    /// `public_ipv6_prefix` holds it; the guest holds it as a second address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_ipv6: Option<Ipv6Addr>,
}

impl Vm {
    /// The TAP name of a VM that names none: `sc-<name>`, cut to the longest
    /// interface name Linux accepts (whole characters only).
    pub fn default_tap(name: &str) -> String {
        let mut tap = String::from("sc-");
        for c in name.chars() {
            if tap.len() + c.len_utf8() > MAX_INTERFACE_NAME {
                break;
            }
            tap.push(c);
        }
        tap
    }
}

/// The VMs by name (a persistent B-tree: cloning it is one reference count).
pub type Vms = imbl::OrdMap<String, Vm>;

/// Where the API's Unix socket is unless the inventory says otherwise.
pub const DEFAULT_API_SOCKET: &str = "/run/scc/api.sock";

fn default_api_socket() -> std::path::PathBuf {
    DEFAULT_API_SOCKET.into()
}

/// A validated inventory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    /// Overlay network and prefix length.
    pub overlay: (Ipv4Addr, u8),
    /// The overlay's IPv6 unique local prefix, if it carries IPv6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay_ipv6: Option<(Ipv6Addr, u8)>,
    /// Anycast gateway MAC.
    pub gateway_mac: Mac,
    /// DNS servers every VM is told by DHCP.
    #[serde(default)]
    pub dns: Vec<Ipv4Addr>,
    /// Where `scd`s reach the controller over OpenFlow.
    pub openflow: SocketAddr,
    /// Where the controller's HTTP API also listens on TCP, if anywhere (only
    /// with [`Inventory::api_token_file`]).
    #[serde(default)]
    pub api: Option<SocketAddr>,
    /// The API's Unix socket (mode 0600), always served.
    #[serde(default = "default_api_socket")]
    pub api_socket: std::path::PathBuf,
    /// The file holding the bearer token every TCP request must carry.
    #[serde(default)]
    pub api_token_file: Option<std::path::PathBuf>,
    /// How a public address's new gateway is announced to the internet, if at all.
    #[serde(default)]
    pub announce: Option<Announce>,
    /// Clouds by name.
    pub clouds: BTreeMap<String, Cloud>,
    /// Hosts in file order.
    pub hosts: Vec<Host>,
    /// VMs by name, in a persistent map: a copy shares every VM, a change
    /// copies only its path, and two versions' difference skips what they share.
    pub vms: Vms,
    /// Placement knobs of the VMs that have any, by VM name.
    #[serde(default)]
    pub placement: BTreeMap<String, VmPlacement>,
    /// Gateway uplinks, by host name.
    #[serde(default)]
    pub gateways: BTreeMap<String, Gateway>,
    /// The daemon's measurement and placement loop.
    #[serde(default)]
    pub placement_settings: PlacementSettings,
    /// How the controller watches and audits its switches.
    #[serde(default)]
    pub switch_settings: SwitchSettings,
    /// OpenFlow over mutual TLS (`[controller.tls]`); `None`: plain TCP.
    #[serde(default)]
    pub openflow_tls: Option<ControllerTls>,
    /// Plain-text OpenFlow off loopback is allowed (and warned about at every
    /// start).
    #[serde(default)]
    pub insecure_plaintext: bool,
}

/// `[controller.tls]`: the controller's key and certificate, the CA's, and the
/// name its certificate carries (what every `scd` checks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerTls {
    /// The controller's private key (PEM).
    pub private_key: std::path::PathBuf,
    /// The controller's certificate (PEM), naming [`ControllerTls::name`].
    pub certificate: std::path::PathBuf,
    /// The CA's certificate (PEM); the hosts' key and certificate files are
    /// expected beside it on each host (`HOST-key.pem`, `HOST-cert.pem`).
    pub ca_cert: std::path::PathBuf,
    /// The controller's name in its certificate.
    pub name: String,
}

/// How `scc` keeps its switches in step (`[controller]`'s `echo_every_s`,
/// `echo_timeout_s` and `audit_every_s`; see docs/controller.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SwitchSettings {
    /// How often each switch is sent an echo request, seconds (at least 1).
    pub echo_every_s: u64,
    /// A switch from which nothing (echo reply or any other message) arrived for
    /// this long is marked disconnected and its connection closed, so that it
    /// reconnects; seconds, more than `echo_every_s`.
    pub echo_timeout_s: u64,
    /// How often each switch's controller flows are read back and repaired,
    /// seconds (0: only after a reconnect).
    pub audit_every_s: u64,
}

impl Default for SwitchSettings {
    fn default() -> Self {
        SwitchSettings {
            echo_every_s: 5,
            // Three echoes unanswered: one lost reply is not a dead switch.
            echo_timeout_s: 15,
            audit_every_s: 30,
        }
    }
}

impl Inventory {
    /// The host with this datapath id.
    pub fn host_by_dpid(&self, dpid: u64) -> Option<&Host> {
        self.hosts.iter().find(|h| h.datapath_id == dpid)
    }

    /// The host with this name.
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// True when some host has a VM prefix (its switches then hold prefix routes
    /// below the routes to single VMs).
    pub fn has_vm_prefixes(&self) -> bool {
        self.hosts.iter().any(|h| h.vm_prefix.is_some())
    }

    /// True when `ip` lies in the overlay prefix.
    pub fn in_overlay(&self, ip: Ipv4Addr) -> bool {
        let mask = config_support::prefix_mask(self.overlay.1);
        u32::from(ip) & mask == u32::from(self.overlay.0)
    }

    /// The VMs that differ from this inventory to `newer`, each as what it was
    /// (`None`: added) and what it is (`None`: removed). Only the parts of the
    /// two VM maps that they do not share are visited.
    pub fn vm_changes<'a>(
        &'a self,
        newer: &'a Inventory,
    ) -> impl Iterator<Item = (Option<&'a Vm>, Option<&'a Vm>)> + 'a {
        self.vms.diff(&newer.vms).map(|change| match change {
            imbl::ordmap::DiffItem::Add(_, vm) => (None, Some(vm)),
            imbl::ordmap::DiffItem::Remove(_, vm) => (Some(vm), None),
            imbl::ordmap::DiffItem::Update { old, new } => (Some(old.1), Some(new.1)),
        })
    }
}

/// An index of an inventory's VMs that follows the inventory's changes
/// instead of being built again.
pub trait VmIndex {
    /// Takes `vm` out of the index.
    fn forget(&mut self, vm: &Vm);
    /// Puts `vm` in the index.
    fn record(&mut self, vm: &Vm);
    /// Follows the change from `old`'s VMs to `new`'s.
    fn follow(&mut self, old: &Inventory, new: &Inventory) {
        for (was, is) in old.vm_changes(new) {
            was.into_iter().for_each(|vm| self.forget(vm));
            is.into_iter().for_each(|vm| self.record(vm));
        }
    }
}
