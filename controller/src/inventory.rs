//! The inventory: clouds, hosts, VMs and the controller's own addresses, read from a
//! TOML file (documented in `docs/inventory.md`).
//!
//! This module owns validating the inventory (every error names the file, line and
//! field), resolving names for policies (`ip4Dst = vm:web1`), numbering tunnel ports,
//! and writing a host's `scd` configuration. It never talks to a switch.

use crate::gateway::{Announce, Gateway};
use crate::netkat::ir::Resolver;
use openflow::flow::Mac;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::path::Path;
use toml::Spanned;

/// An inventory that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not TOML, or a field of the wrong name or type.
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A value that is well-formed but wrong.
    #[error("{path}:{line}: `{field}`: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// Tunnel ports are numbered from the peer's datapath id: `TUNNEL_PORT_BASE + dpid`.
pub const TUNNEL_PORT_BASE: u32 = 10_000;
/// Largest datapath id an inventory may use (so tunnel ports stay valid).
pub const MAX_DATAPATH_ID: u64 = 1_000_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInventory {
    #[serde(default = "default_prefix")]
    overlay_prefix: Spanned<String>,
    #[serde(default = "default_gw_mac")]
    gateway_mac: Spanned<String>,
    #[serde(default)]
    controller: RawController,
    #[serde(default, rename = "cloud")]
    clouds: Vec<RawCloud>,
    #[serde(default, rename = "host")]
    hosts: Vec<RawHost>,
    #[serde(default, rename = "vm")]
    vms: Vec<RawVm>,
    placement: Option<Spanned<toml::Table>>,
}

fn default_prefix() -> Spanned<String> {
    Spanned::new(0..0, "100.64.0.0/10".into())
}

fn default_gw_mac() -> Spanned<String> {
    Spanned::new(0..0, "02:5c:00:00:00:01".into())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawController {
    openflow: Option<Spanned<String>>,
    api: Option<Spanned<String>>,
    announce: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCloud {
    name: Spanned<String>,
    #[serde(default)]
    region: String,
    location: Option<[f64; 2]>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    name: Spanned<String>,
    cloud: Spanned<String>,
    datapath_id: Spanned<u64>,
    tunnel_endpoint: Spanned<String>,
    public_key: Spanned<String>,
    uplink: Option<Spanned<RawUplink>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUplink {
    port: u32,
    interface: String,
    netns: Option<String>,
    address: String,
    mac: String,
    router_mac: String,
    public_prefix: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVm {
    name: Spanned<String>,
    mac: Spanned<String>,
    ip: Spanned<String>,
    host: Spanned<String>,
    port: Spanned<u32>,
    tap: Option<Spanned<String>>,
    netns: Option<String>,
    tenant: Option<String>,
    public_ip: Option<Spanned<String>>,
    placement: Option<Spanned<VmPlacement>>,
}

/// A VM's placement knobs (`[vm.placement]`, all optional; see `docs/placement.md`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmPlacement {
    /// Clouds the VM may run in; empty means every cloud.
    #[serde(default)]
    pub clouds: Vec<String>,
    /// What the VM costs per hour in each cloud (a cloud not named costs 0).
    #[serde(default)]
    pub price_per_hour: BTreeMap<String, f64>,
    /// Client latency (traffic-weighted mean, ms) below which lower latency is worth
    /// nothing to this VM.
    #[serde(default)]
    pub latency_target_ms: Option<f64>,
    /// Memory to copy when it moves, MiB.
    #[serde(default)]
    pub ram_mib: Option<u64>,
    /// Disk to copy when it moves, GiB (0 when its disk is shared or remote).
    #[serde(default)]
    pub disk_gib: Option<u64>,
}

/// The daemon's follow-the-sun loop (`[placement]`; see `docs/placement.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlacementSettings {
    /// How often `scc` samples every switch's flow counters and tunnel round trips,
    /// seconds (0: never, and nothing is measured).
    pub sample_every_s: u64,
    /// How often `scc` plans and starts a migration by itself, seconds (0: only
    /// when asked, `scc placement run`).
    pub plan_every_s: u64,
    /// The command that moves a VM, as argv; `{vm}`, `{from_host}`, `{to_host}` and
    /// `{to_cloud}` are replaced. It prepares the destination, calls `scc migrate`
    /// and moves the VM (e.g. with `scvm migrate`). Empty: nothing can move a VM.
    pub migrate: Vec<String>,
    /// A move command still running after this long is stopped (SIGTERM, then
    /// SIGKILL, to everything it started), seconds; its migration, if it has not
    /// switched yet, is left to an operator (`scc migrate --arrived` or `--abort`).
    pub migrate_timeout_s: u64,
    /// The engine's knobs.
    pub engine: crate::placement::EngineConfig,
}

impl Default for PlacementSettings {
    fn default() -> Self {
        PlacementSettings {
            sample_every_s: 60,
            plan_every_s: 0,
            migrate: Vec::new(),
            migrate_timeout_s: 900,
            engine: crate::placement::EngineConfig::default(),
        }
    }
}

/// Reads `[placement]`; unknown keys (in `engine` too) are refused by name.
fn placement_settings(table: &toml::Table) -> Result<PlacementSettings, String> {
    if let Some(engine) = table.get("engine") {
        let known = serde_json::to_value(crate::placement::EngineConfig::default())
            .map_err(|e| e.to_string())?;
        let engine = engine
            .as_table()
            .ok_or("`engine` must be a table of engine knobs")?;
        if let Some(unknown) = engine.keys().find(|k| known.get(k.as_str()).is_none()) {
            return Err(format!("`engine.{unknown}` is not an engine knob"));
        }
    }
    let settings: PlacementSettings = toml::Value::Table(table.clone())
        .try_into()
        .map_err(|e: toml::de::Error| e.message().to_string())?;
    if settings.plan_every_s > 0 && settings.migrate.is_empty() {
        return Err("`plan_every_s` needs `migrate`: the command that moves a VM".into());
    }
    if settings.plan_every_s > 0 && settings.sample_every_s == 0 {
        return Err("`plan_every_s` needs measurements: `sample_every_s` is 0".into());
    }
    Ok(settings)
}

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
}

impl Host {
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
    /// TAP interface name (default `sc-<name>`, cut to 15 bytes).
    pub tap: String,
    /// Namespace the TAP lives in, when not the host's (test harness VMs).
    pub netns: Option<String>,
    /// Tenant, for policies and status.
    pub tenant: Option<String>,
    /// Public address served by a gateway, if any.
    pub public_ip: Option<Ipv4Addr>,
}

/// A validated inventory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    /// Overlay network and prefix length.
    pub overlay: (Ipv4Addr, u8),
    /// Anycast gateway MAC.
    pub gateway_mac: Mac,
    /// Where `scd`s reach the controller over OpenFlow.
    pub openflow: SocketAddr,
    /// Where the controller's HTTP API listens.
    pub api: SocketAddr,
    /// How a public address's new gateway is announced to the internet, if at all.
    #[serde(default)]
    pub announce: Option<Announce>,
    /// Clouds by name.
    pub clouds: BTreeMap<String, Cloud>,
    /// Hosts in file order.
    pub hosts: Vec<Host>,
    /// VMs by name.
    pub vms: BTreeMap<String, Vm>,
    /// Placement knobs of the VMs that have any, by VM name.
    #[serde(default)]
    pub placement: BTreeMap<String, VmPlacement>,
    /// Gateway uplinks, by host name.
    #[serde(default)]
    pub gateways: BTreeMap<String, Gateway>,
    /// The daemon's measurement and placement loop.
    #[serde(default)]
    pub placement_settings: PlacementSettings,
}

fn line_of(text: &str, span: &Range<usize>) -> usize {
    text[..span.start.min(text.len())].matches('\n').count() + 1
}

/// Parses `a.b.c.d/len`.
fn parse_prefix(text: &str) -> Option<(Ipv4Addr, u8)> {
    let (a, l) = text.split_once('/')?;
    let addr: Ipv4Addr = a.trim().parse().ok()?;
    let len: u8 = l.trim().parse().ok().filter(|l| *l <= 32)?;
    Some((
        Ipv4Addr::from(u32::from(addr) & openflow::flow::prefix_mask32(len)),
        len,
    ))
}

impl Inventory {
    /// Reads and validates an inventory file.
    pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
        let text = std::fs::read_to_string(path).map_err(|source| InventoryError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Inventory::parse(&text, &path.display().to_string())
    }

    /// Validates inventory text; `path` is used in errors.
    pub fn parse(text: &str, path: &str) -> Result<Inventory, InventoryError> {
        let raw: RawInventory = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((1, 1), |s| {
                let start = text[..s.start.min(text.len())]
                    .rfind('\n')
                    .map_or(0, |i| i + 1);
                (line_of(text, &s), s.start - start + 1)
            });
            InventoryError::Syntax {
                path: path.into(),
                line,
                column,
                message: e.message().to_string(),
            }
        })?;
        let invalid = |span: &Range<usize>, field: &str, message: String| InventoryError::Invalid {
            path: path.into(),
            line: line_of(text, span),
            field: field.into(),
            message,
        };
        let overlay = parse_prefix(raw.overlay_prefix.get_ref()).ok_or_else(|| {
            invalid(
                &raw.overlay_prefix.span(),
                "overlay_prefix",
                format!("`{}` is not an IPv4 prefix", raw.overlay_prefix.get_ref()),
            )
        })?;
        let gateway_mac: Mac = raw
            .gateway_mac
            .get_ref()
            .parse()
            .map_err(|e| invalid(&raw.gateway_mac.span(), "gateway_mac", format!("{e}")))?;
        let addr = |v: &Option<Spanned<String>>,
                    field: &str,
                    default: &str|
         -> Result<SocketAddr, InventoryError> {
            match v {
                None => Ok(default.parse().expect("valid default address")),
                Some(s) => s.get_ref().parse().map_err(|_| {
                    invalid(
                        &s.span(),
                        field,
                        format!("`{}` is not address:port", s.get_ref()),
                    )
                }),
            }
        };
        let openflow = addr(
            &raw.controller.openflow,
            "controller.openflow",
            "127.0.0.1:6653",
        )?;
        let api = addr(&raw.controller.api, "controller.api", "127.0.0.1:6680")?;
        let announce = match &raw.controller.announce {
            None => None,
            Some(a) => Some(
                a.get_ref()
                    .parse::<Announce>()
                    .map_err(|e| invalid(&a.span(), "controller.announce", e))?,
            ),
        };

        let mut clouds = BTreeMap::new();
        for c in raw.clouds {
            let name = c.name.get_ref().clone();
            if clouds.contains_key(&name) {
                return Err(invalid(
                    &c.name.span(),
                    "cloud.name",
                    format!("cloud `{name}` is defined twice"),
                ));
            }
            clouds.insert(
                name.clone(),
                Cloud {
                    name,
                    region: c.region,
                    location: c.location,
                },
            );
        }
        let mut hosts: Vec<Host> = Vec::new();
        let mut gateways: BTreeMap<String, Gateway> = BTreeMap::new();
        for h in raw.hosts {
            let name = h.name.get_ref().clone();
            if hosts.iter().any(|o| o.name == name) {
                return Err(invalid(
                    &h.name.span(),
                    "host.name",
                    format!("host `{name}` is defined twice"),
                ));
            }
            if !clouds.contains_key(h.cloud.get_ref()) {
                return Err(invalid(
                    &h.cloud.span(),
                    "host.cloud",
                    format!("no [[cloud]] named `{}`", h.cloud.get_ref()),
                ));
            }
            let dpid = *h.datapath_id.get_ref();
            if dpid == 0 || dpid > MAX_DATAPATH_ID {
                return Err(invalid(
                    &h.datapath_id.span(),
                    "host.datapath_id",
                    format!("{dpid} is outside 1..={MAX_DATAPATH_ID}"),
                ));
            }
            if hosts.iter().any(|o| o.datapath_id == dpid) {
                return Err(invalid(
                    &h.datapath_id.span(),
                    "host.datapath_id",
                    format!("datapath id {dpid} is used twice"),
                ));
            }
            let tunnel_endpoint = h.tunnel_endpoint.get_ref().parse().map_err(|_| {
                invalid(
                    &h.tunnel_endpoint.span(),
                    "host.tunnel_endpoint",
                    format!("`{}` is not address:port", h.tunnel_endpoint.get_ref()),
                )
            })?;
            let key = h.public_key.get_ref().trim().to_string();
            if key.len() != 44 || !key.ends_with('=') {
                return Err(invalid(
                    &h.public_key.span(),
                    "host.public_key",
                    "not a WireGuard public key (44 characters of base64)".into(),
                ));
            }
            if let Some(u) = &h.uplink {
                let bad = |message: String| invalid(&u.span(), "host.uplink", message);
                let raw = u.get_ref();
                let mac = |text: &str, what: &str| {
                    text.parse::<Mac>()
                        .map_err(|e| bad(format!("`{what}`: {e}")))
                };
                let public_prefix = parse_prefix(&raw.public_prefix).ok_or_else(|| {
                    bad(format!(
                        "`public_prefix`: `{}` is not an IPv4 prefix",
                        raw.public_prefix
                    ))
                })?;
                let gw = Gateway {
                    host: name.clone(),
                    port: raw.port,
                    interface: raw.interface.clone(),
                    netns: raw.netns.clone(),
                    address: raw.address.parse().map_err(|_| {
                        bad(format!(
                            "`address`: `{}` is not an IPv4 address",
                            raw.address
                        ))
                    })?,
                    mac: mac(&raw.mac, "mac")?,
                    router_mac: mac(&raw.router_mac, "router_mac")?,
                    public_prefix,
                };
                if gw.port == 0 || gw.port >= TUNNEL_PORT_BASE {
                    return Err(bad(format!(
                        "`port`: {} is outside 1..{TUNNEL_PORT_BASE} (tunnel ports start there)",
                        gw.port
                    )));
                }
                if raw.interface.is_empty() || raw.interface.len() > 15 {
                    return Err(bad(format!(
                        "`interface`: `{}` is not an interface name (1..=15 bytes)",
                        raw.interface
                    )));
                }
                let overlaps = |(a, la): (Ipv4Addr, u8), (b, lb): (Ipv4Addr, u8)| {
                    let mask = openflow::flow::prefix_mask32(la.min(lb));
                    u32::from(a) & mask == u32::from(b) & mask
                };
                if overlaps(public_prefix, overlay) {
                    return Err(bad("`public_prefix` overlaps the overlay".into()));
                }
                gateways.insert(name.clone(), gw);
            }
            hosts.push(Host {
                name,
                cloud: h.cloud.get_ref().clone(),
                datapath_id: dpid,
                tunnel_endpoint,
                public_key: key,
            });
        }
        let mut vms: BTreeMap<String, Vm> = BTreeMap::new();
        let mut placement = BTreeMap::new();
        for v in raw.vms {
            let name = v.name.get_ref().clone();
            if vms.contains_key(&name) {
                return Err(invalid(
                    &v.name.span(),
                    "vm.name",
                    format!("VM `{name}` is defined twice"),
                ));
            }
            let mac: Mac = v
                .mac
                .get_ref()
                .parse()
                .map_err(|e| invalid(&v.mac.span(), "vm.mac", format!("{e}")))?;
            let ip: Ipv4Addr = v.ip.get_ref().parse().map_err(|_| {
                invalid(
                    &v.ip.span(),
                    "vm.ip",
                    format!("`{}` is not an IPv4 address", v.ip.get_ref()),
                )
            })?;
            if u32::from(ip) & openflow::flow::prefix_mask32(overlay.1) != u32::from(overlay.0) {
                return Err(invalid(
                    &v.ip.span(),
                    "vm.ip",
                    format!("{ip} is outside the overlay {}/{}", overlay.0, overlay.1),
                ));
            }
            if let Some(o) = vms.values().find(|o| o.ip == ip || o.mac == mac) {
                return Err(invalid(
                    &v.ip.span(),
                    "vm.ip",
                    format!("address or MAC already used by VM `{}`", o.name),
                ));
            }
            let host = v.host.get_ref().clone();
            if !hosts.iter().any(|h| h.name == host) {
                return Err(invalid(
                    &v.host.span(),
                    "vm.host",
                    format!("no [[host]] named `{host}`"),
                ));
            }
            let port = *v.port.get_ref();
            if port == 0 || port >= TUNNEL_PORT_BASE {
                return Err(invalid(
                    &v.port.span(),
                    "vm.port",
                    format!("{port} is outside 1..{TUNNEL_PORT_BASE} (tunnel ports start there)"),
                ));
            }
            if vms.values().any(|o| o.host == host && o.port == port) {
                return Err(invalid(
                    &v.port.span(),
                    "vm.port",
                    format!("port {port} of host `{host}` is used twice"),
                ));
            }
            let tap = match &v.tap {
                Some(t) if t.get_ref().is_empty() || t.get_ref().len() > 15 => {
                    return Err(invalid(
                        &t.span(),
                        "vm.tap",
                        format!("`{}` is not an interface name (1..=15 bytes)", t.get_ref()),
                    ))
                }
                Some(t) => t.get_ref().clone(),
                None => format!("sc-{name}").chars().take(15).collect(),
            };
            if gateways.get(&host).is_some_and(|g| g.port == port) {
                return Err(invalid(
                    &v.port.span(),
                    "vm.port",
                    format!("port {port} of host `{host}` is its uplink"),
                ));
            }
            let public_ip = match &v.public_ip {
                None => None,
                Some(p) => {
                    let bad = |message: String| invalid(&p.span(), "vm.public_ip", message);
                    let public: Ipv4Addr = p
                        .get_ref()
                        .parse()
                        .map_err(|_| bad(format!("`{}` is not an IPv4 address", p.get_ref())))?;
                    if !gateways.values().any(|g| g.serves(public)) {
                        return Err(bad(format!(
                            "no gateway serves {public} (no [host.uplink] has it in its public_prefix)"
                        )));
                    }
                    if let Some(o) = vms.values().find(|o| o.public_ip == Some(public)) {
                        return Err(bad(format!("{public} is already VM `{}`'s", o.name)));
                    }
                    Some(public)
                }
            };
            if let Some(p) = &v.placement {
                let bad = |message: String| invalid(&p.span(), "vm.placement", message);
                let knobs = p.get_ref();
                if let Some(c) = knobs
                    .clouds
                    .iter()
                    .chain(knobs.price_per_hour.keys())
                    .find(|c| !clouds.contains_key(*c))
                {
                    return Err(bad(format!("no [[cloud]] named `{c}`")));
                }
                let numbers = knobs
                    .price_per_hour
                    .values()
                    .chain(&knobs.latency_target_ms);
                if let Some(x) = numbers.into_iter().find(|x| !(x.is_finite() && **x >= 0.0)) {
                    return Err(bad(format!("{x} is not a non-negative number")));
                }
                placement.insert(name.clone(), knobs.clone());
            }
            vms.insert(
                name.clone(),
                Vm {
                    name,
                    mac,
                    ip,
                    host,
                    port,
                    tap,
                    netns: v.netns,
                    tenant: v.tenant,
                    public_ip,
                },
            );
        }
        let placement_settings = match &raw.placement {
            None => PlacementSettings::default(),
            Some(t) => placement_settings(t.get_ref())
                .map_err(|message| invalid(&t.span(), "placement", message))?,
        };
        Ok(Inventory {
            overlay,
            gateway_mac,
            openflow,
            api,
            announce,
            clouds,
            hosts,
            vms,
            placement,
            gateways,
            placement_settings,
        })
    }

    /// The host with this datapath id.
    pub fn host_by_dpid(&self, dpid: u64) -> Option<&Host> {
        self.hosts.iter().find(|h| h.datapath_id == dpid)
    }

    /// The host with this name.
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// The `scd` configuration of one host: its VM ports, its tunnels to every other
    /// host, and the controller connection. The private key file and the listen
    /// address of the tunnels are the host's own (`key_file`, port of its endpoint).
    pub fn host_config(&self, host: &str, key_file: &str) -> Option<String> {
        let h = self.host(host)?;
        let mut c = format!(
            "# scd configuration of {host}, generated by `scc host-config` from the inventory.\n\
             datapath_id = {}\nname = \"{host}\"\n\n[overlay]\nprefix = \"{}/{}\"\ngateway_mac = \"{}\"\n\n\
             [metrics]\nlisten = \"127.0.0.1:9464\"\n\n[openflow]\ncontrollers = [\"tcp:{}\"]\n\n\
             [tunnel]\nprivate_key_file = \"{key_file}\"\nlisten = \"{}\"\n",
            h.datapath_id,
            self.overlay.0,
            self.overlay.1,
            self.gateway_mac,
            self.openflow,
            h.tunnel_endpoint.port(),
        );
        for vm in self.vms.values().filter(|v| v.host == host) {
            c += &format!(
                "\n# VM {}\n[[port]]\nnumber = {}\nname = \"{}\"\n",
                vm.name, vm.port, vm.tap
            );
            if let Some(ns) = &vm.netns {
                c += &format!("netns = \"{ns}\"\ncreate = false\n");
            }
        }
        if let Some(gw) = self.gateways.get(host) {
            c += &gw.port_section();
        }
        for peer in self.hosts.iter().filter(|p| p.name != host) {
            c += &format!(
                "\n[[peer]]\nport = {}\nname = \"{}\"\npublic_key = \"{}\"\nendpoint = \"{}\"\n",
                peer.tunnel_port(),
                peer.name,
                peer.public_key,
                peer.tunnel_endpoint
            );
        }
        Some(c)
    }
}

impl Resolver for Inventory {
    fn ipv4(&self, kind: &str, name: &str) -> Option<u32> {
        match kind {
            "vm" => self.vms.get(name).map(|v| u32::from(v.ip)),
            _ => None,
        }
    }

    fn mac(&self, kind: &str, name: &str) -> Option<u64> {
        match kind {
            "vm" => self.vms.get(name).map(|v| v.mac.to_u64()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const EXAMPLE: &str = include_str!("../../docs/examples/inventory.toml");

    #[test]
    fn the_documented_example_is_valid() {
        let inv = Inventory::parse(EXAMPLE, "inventory.toml").unwrap();
        assert_eq!(inv.hosts.len(), 3);
        assert_eq!(inv.vms["web1"].host, "host-a");
        assert_eq!(
            inv.ipv4("vm", "db1"),
            Some(u32::from(Ipv4Addr::new(100, 64, 2, 1)))
        );
        let cfg = inv.host_config("host-a", "host-a.key").unwrap();
        assert!(
            cfg.contains("[[peer]]\nport = 10002\nname = \"host-b\""),
            "{cfg}"
        );
        assert!(cfg.contains("number = 1\nname = \"sc-web1\""), "{cfg}");
    }

    fn error(text: &str) -> String {
        Inventory::parse(text, "inv.toml").unwrap_err().to_string()
    }

    #[test]
    fn errors_name_field_and_line() {
        let e =
            error(&EXAMPLE.replace("host = \"host-a\"\nport = 1", "host = \"host-z\"\nport = 1"));
        assert!(e.contains("`vm.host`: no [[host]] named `host-z`"), "{e}");
        let e = error(&EXAMPLE.replace("100.64.2.1", "10.0.0.1"));
        assert!(
            e.contains("`vm.ip`: 10.0.0.1 is outside the overlay 100.64.0.0/10"),
            "{e}"
        );
        let e = error(&EXAMPLE.replace("datapath_id = 2", "datapath_id = 1"));
        assert!(
            e.contains("`host.datapath_id`: datapath id 1 is used twice"),
            "{e}"
        );
        let e = error(&EXAMPLE.replace("ip = \"100.64.3.1\"", "ip = \"100.64.1.1\""));
        assert!(
            e.contains("`vm.ip`: address or MAC already used by VM `web1`"),
            "{e}"
        );
        let e =
            error(&EXAMPLE.replace("mac = \"02:00:00:00:03:01\"", "mac = \"02:00:00:00:01:01\""));
        assert!(
            e.contains("address or MAC already used by VM `web1`"),
            "{e}"
        );
        let e = error(&format!("{EXAMPLE}\n[[vm]]\nname = \"x\"\n"));
        assert!(e.starts_with("inv.toml:"), "{e}");
    }

    #[test]
    fn uplinks_and_public_addresses_are_checked() {
        let inv = Inventory::parse(EXAMPLE, "i").unwrap();
        let gw = &inv.gateways["host-a"];
        assert_eq!(
            (gw.port, gw.public_prefix),
            (100, (Ipv4Addr::new(203, 0, 113, 0), 24))
        );
        let e =
            error(&EXAMPLE.replace("public_ip = \"203.0.113.10\"", "public_ip = \"192.0.2.99\""));
        assert!(
            e.contains("`vm.public_ip`: no gateway serves 192.0.2.99"),
            "{e}"
        );
        let e = error(&EXAMPLE.replace(
            "tenant = \"green\"",
            "tenant = \"green\"\npublic_ip = \"203.0.113.10\"",
        ));
        assert!(e.contains("203.0.113.10 is already VM `web1`'s"), "{e}");
        let e = error(&EXAMPLE.replace("port = 100", "port = 1"));
        assert!(
            e.contains("`vm.port`: port 1 of host `host-a` is its uplink"),
            "{e}"
        );
        let e = error(&EXAMPLE.replace("203.0.113.0/24", "100.64.0.0/16"));
        assert!(
            e.contains("`host.uplink`: `public_prefix` overlaps the overlay"),
            "{e}"
        );
        let e = error(&EXAMPLE.replace("router_mac = \"02:5c:00:00:0a:fe\"", "router_mac = \"x\""));
        assert!(e.contains("`host.uplink`: `router_mac`"), "{e}");
    }

    #[test]
    fn the_placement_loop_settings_have_defaults_and_are_checked() {
        let inv = Inventory::parse(EXAMPLE, "i").unwrap();
        assert_eq!(inv.placement_settings, PlacementSettings::default());
        let with = |extra: &str| Inventory::parse(&format!("{EXAMPLE}\n{extra}"), "inv.toml");
        let inv = with(
            "[placement]\nsample_every_s = 5\nplan_every_s = 60\nmigrate = [\"mover\", \"{vm}\"]\n\
             [placement.engine]\nmin_dwell_s = 600.0\n",
        )
        .unwrap();
        assert_eq!(inv.placement_settings.sample_every_s, 5);
        assert_eq!(inv.placement_settings.migrate, ["mover", "{vm}"]);
        assert_eq!(inv.placement_settings.engine.min_dwell_s, 600.0);
        assert_eq!(
            inv.placement_settings.engine.horizon_s,
            crate::placement::EngineConfig::default().horizon_s
        );
        let lines = EXAMPLE.lines().count();
        for (extra, says) in [
            ("[placement]\nplan_every_s = 60\n", "needs `migrate`"),
            (
                "[placement]\n[placement.engine]\nmin_dwel_s = 1.0\n",
                "`engine.min_dwel_s` is not an engine knob",
            ),
            (
                "[placement]\nsample_evry_s = 1\n",
                "unknown field `sample_evry_s`",
            ),
            (
                "[placement]\nsample_every_s = 0\nplan_every_s = 5\nmigrate = [\"m\"]\n",
                "needs measurements",
            ),
        ] {
            let e = with(extra).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
            assert!(
                e.starts_with(&format!("inv.toml:{}: `placement`", lines + 2)),
                "{e}"
            );
        }
    }

    #[test]
    fn placement_knobs_are_optional_and_checked() {
        assert!(Inventory::parse(EXAMPLE, "i").unwrap().placement.is_empty());
        let knobs = "[vm.placement]\nclouds = [\"aws-us-east\", \"gcp-europe\"]\n\
                     price_per_hour = { gcp-europe = 0.12 }\nlatency_target_ms = 60\nram_mib = 2048\n";
        let inv = Inventory::parse(&format!("{EXAMPLE}{knobs}"), "i").unwrap();
        let p = &inv.placement["batch1"];
        assert_eq!(p.clouds, ["aws-us-east", "gcp-europe"]);
        assert_eq!(p.price_per_hour["gcp-europe"], 0.12);
        assert_eq!(
            (p.latency_target_ms, p.ram_mib, p.disk_gib),
            (Some(60.0), Some(2048), None)
        );
        let e = error(&format!(
            "{EXAMPLE}{}",
            knobs.replace("gcp-europe\"]", "mars\"]")
        ));
        assert!(
            e.contains("`vm.placement`: no [[cloud]] named `mars`"),
            "{e}"
        );
        let e = error(&format!("{EXAMPLE}{}", knobs.replace("= 60", "= -1")));
        assert!(e.contains("-1 is not a non-negative number"), "{e}");
    }
}
