//! The inventory file: clouds, hosts, VMs and the controller's own addresses, read
//! from TOML (documented in `docs/controller.md` and `docs/examples/inventory.toml`)
//! into [`crate::model::Inventory`].
//!
//! This module owns parsing and validating the file (every error names the file,
//! line and field; a VM's rules against the rest are `crate::model::validate`,
//! shared with the API) and resolving names for policies (`ip4Dst = vm:web1`). It
//! never talks to a switch.

use crate::model::{
    Announce, Cloud, ControllerTls, Gateway, Host, Invalid, Inventory, PlacementSettings,
    SwitchSettings, Vm, VmClaims, VmPlacement, MAX_INTERFACE_NAME, TUNNEL_PORT_BASE,
};
use crate::netkat::ir::Resolver;
use config_support::{parse_ipv4_prefix, Position};
use openflow::flow::Mac;
use serde::Deserialize;
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInventory {
    #[serde(default = "default_prefix")]
    overlay_prefix: Spanned<String>,
    overlay_ipv6_prefix: Option<Spanned<String>>,
    #[serde(default = "default_gw_mac")]
    gateway_mac: Spanned<String>,
    #[serde(default)]
    dns: Vec<Spanned<String>>,
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
    #[serde(default)]
    insecure_plaintext: bool,
    tls: Option<Spanned<RawControllerTls>>,
    api: Option<Spanned<String>>,
    api_socket: Option<Spanned<String>>,
    api_token_file: Option<Spanned<String>>,
    announce: Option<Spanned<String>>,
    echo_every_s: Option<Spanned<u64>>,
    echo_timeout_s: Option<Spanned<u64>>,
    audit_every_s: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawControllerTls {
    private_key: String,
    certificate: String,
    ca_cert: String,
    name: Option<String>,
}

/// The name of the controller's certificate unless `[controller.tls] name` says.
pub const DEFAULT_CONTROLLER_NAME: &str = "scc";

/// `[controller.tls]` with paths resolved against the inventory's directory, and
/// the rule on plain text: OpenFlow off loopback needs TLS or
/// `insecure_plaintext = true`.
fn openflow_security(
    raw: &RawController,
    openflow: SocketAddr,
    inventory_path: &str,
) -> Result<Option<ControllerTls>, (Range<usize>, &'static str, String)> {
    let Some(tls) = &raw.tls else {
        if !openflow.ip().is_loopback() && !raw.insecure_plaintext {
            return Err((
                raw.openflow.as_ref().map_or(0..0, Spanned::span),
                "controller.openflow",
                format!(
                    "{openflow} is OpenFlow in plain text off loopback: add [controller.tls] \
                     (scc pki), or set `insecure_plaintext = true` in [controller]"
                ),
            ));
        }
        return Ok(None);
    };
    let span = tls.span();
    let tls = tls.get_ref();
    let base = Path::new(inventory_path).parent().unwrap_or(Path::new(""));
    let resolve = |f: &str| base.join(f);
    let name = tls
        .name
        .clone()
        .unwrap_or_else(|| DEFAULT_CONTROLLER_NAME.into());
    if name.is_empty() {
        return Err((span, "controller.tls.name", "must not be empty".into()));
    }
    Ok(Some(ControllerTls {
        private_key: resolve(&tls.private_key),
        certificate: resolve(&tls.certificate),
        ca_cert: resolve(&tls.ca_cert),
        name,
    }))
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
    vm_prefix: Option<Spanned<String>>,
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
    address6: Option<String>,
    public_ipv6_prefix: Option<String>,
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
    ipv6: Option<Spanned<String>>,
    public_ipv6: Option<Spanned<String>>,
    placement: Option<Spanned<VmPlacement>>,
}

/// The `[controller]` keys of [`SwitchSettings`], defaults for those not given;
/// a key out of range is refused with its span and why.
fn switch_settings(
    raw: &RawController,
) -> Result<SwitchSettings, (Range<usize>, &'static str, String)> {
    let default = SwitchSettings::default();
    let value = |v: &Option<Spanned<u64>>, or: u64| v.as_ref().map_or(or, |v| *v.get_ref());
    let span = |v: &Option<Spanned<u64>>| v.as_ref().map_or(0..0, Spanned::span);
    let settings = SwitchSettings {
        echo_every_s: value(&raw.echo_every_s, default.echo_every_s),
        echo_timeout_s: value(&raw.echo_timeout_s, default.echo_timeout_s),
        audit_every_s: value(&raw.audit_every_s, default.audit_every_s),
    };
    if settings.echo_every_s == 0 {
        return Err((
            span(&raw.echo_every_s),
            "controller.echo_every_s",
            "must be at least 1".into(),
        ));
    }
    if settings.echo_timeout_s <= settings.echo_every_s {
        let at = raw.echo_timeout_s.as_ref().or(raw.echo_every_s.as_ref());
        return Err((
            at.map_or(0..0, Spanned::span),
            "controller.echo_timeout_s",
            format!(
                "{}s is not more than `echo_every_s` ({}s): a switch needs time to answer",
                settings.echo_timeout_s, settings.echo_every_s
            ),
        ));
    }
    Ok(settings)
}

/// Reads `[placement]`; unknown keys (in `engine` too) are refused by name.
fn placement_settings(table: &toml::Table) -> Result<PlacementSettings, String> {
    if let Some(engine) = table.get("engine") {
        let known = serde_json::to_value(crate::model::EngineConfig::default())
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

/// The inventory text being read, for errors that name its file and line.
#[derive(Debug, Clone, Copy)]
struct Source<'a> {
    text: &'a str,
    path: &'a str,
}

impl Source<'_> {
    fn invalid(&self, span: &Range<usize>, field: &str, message: String) -> InventoryError {
        InventoryError::Invalid {
            path: self.path.into(),
            line: Position::of_span(self.text, span).line,
            field: field.into(),
            message,
        }
    }
}

/// Reads the `[host.uplink]` of host `host`.
fn uplink(
    source: &Source<'_>,
    host: &str,
    u: &Spanned<RawUplink>,
    overlay: (Ipv4Addr, u8),
    overlay_ipv6: Option<(std::net::Ipv6Addr, u8)>,
) -> Result<Gateway, InventoryError> {
    let bad = |message: String| source.invalid(&u.span(), "host.uplink", message);
    let raw = u.get_ref();
    let mac = |text: &str, what: &str| {
        text.parse::<Mac>()
            .map_err(|e| bad(format!("`{what}`: {e}")))
    };
    let public_prefix = parse_ipv4_prefix(&raw.public_prefix).ok_or_else(|| {
        bad(format!(
            "`public_prefix`: `{}` is not an IPv4 prefix",
            raw.public_prefix
        ))
    })?;
    let gw = Gateway {
        host: host.to_string(),
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
        address6: None,
        public_ipv6_prefix: None,
    };
    let gw = uplink_ipv6(gw, raw, overlay_ipv6).map_err(bad)?;
    if gw.port == 0 || gw.port >= TUNNEL_PORT_BASE {
        return Err(bad(format!(
            "`port`: {} is outside 1..{TUNNEL_PORT_BASE} (tunnel ports start there)",
            gw.port
        )));
    }
    if raw.interface.is_empty() || raw.interface.len() > MAX_INTERFACE_NAME {
        return Err(bad(format!(
            "`interface`: `{}` is not an interface name (1..={MAX_INTERFACE_NAME} bytes)",
            raw.interface
        )));
    }
    let overlaps = |(a, la): (Ipv4Addr, u8), (b, lb): (Ipv4Addr, u8)| {
        let mask = config_support::prefix_mask(la.min(lb));
        u32::from(a) & mask == u32::from(b) & mask
    };
    if overlaps(public_prefix, overlay) {
        return Err(bad("`public_prefix` overlaps the overlay".into()));
    }
    Ok(gw)
}

/// `gw` with the IPv6 side of its uplink (`address6` and
/// `public_ipv6_prefix`, both or neither): a public prefix that never
/// overlaps the overlay's IPv6 prefix, which the overlay must have.
fn uplink_ipv6(
    mut gw: Gateway,
    raw: &RawUplink,
    overlay_ipv6: Option<(std::net::Ipv6Addr, u8)>,
) -> Result<Gateway, String> {
    let (address6, prefix) = match (&raw.address6, &raw.public_ipv6_prefix) {
        (None, None) => return Ok(gw),
        (Some(a), Some(p)) => (a, p),
        _ => return Err("`address6` and `public_ipv6_prefix` go together".into()),
    };
    let address6: std::net::Ipv6Addr = address6
        .parse()
        .map_err(|_| format!("`address6`: `{address6}` is not an IPv6 address"))?;
    let (net, len) = config_support::parse_ipv6_prefix(prefix)
        .filter(|(net, _)| prefix.split_once('/').and_then(|(a, _)| a.parse().ok()) == Some(*net))
        .ok_or_else(|| {
            format!("`public_ipv6_prefix`: `{prefix}` is not an IPv6 prefix with no bits set past its length")
        })?;
    let Some((overlay_net, overlay_len)) = overlay_ipv6 else {
        return Err(
            "`public_ipv6_prefix` needs `overlay_ipv6_prefix`: VMs have no IPv6 without it".into(),
        );
    };
    let mask = config_support::prefix_mask128(len.min(overlay_len));
    if u128::from(net) & mask == u128::from(overlay_net) & mask {
        return Err(format!(
            "`public_ipv6_prefix` {net}/{len} overlaps the overlay {overlay_net}/{overlay_len}"
        ));
    }
    if address6.is_multicast() || address6.is_unspecified() {
        return Err(format!("`address6`: {address6} is not a unicast address"));
    }
    gw.address6 = Some(address6);
    gw.public_ipv6_prefix = Some((net, len));
    Ok(gw)
}

/// The address an optional field `field` holds, parsed; an error saying it is
/// not a `family` address otherwise.
fn optional_address<A: std::str::FromStr>(
    value: &Option<Spanned<String>>,
    field: &str,
    family: &str,
    invalid: &dyn Fn(&Range<usize>, &str, String) -> InventoryError,
) -> Result<Option<A>, InventoryError> {
    value
        .as_ref()
        .map(|p| {
            p.get_ref().parse().map_err(|_| {
                invalid(
                    &p.span(),
                    field,
                    format!("`{}` is not an {family} address", p.get_ref()),
                )
            })
        })
        .transpose()
}

impl RawHost {
    /// Where in the file the value of `field` (as [`Invalid`] names it) is.
    fn span_of(&self, field: &str) -> Range<usize> {
        match field {
            "host.cloud" => self.cloud.span(),
            "host.datapath_id" => self.datapath_id.span(),
            "host.tunnel_endpoint" => self.tunnel_endpoint.span(),
            "host.public_key" => self.public_key.span(),
            "host.vm_prefix" => self
                .vm_prefix
                .as_ref()
                .map_or(self.name.span(), Spanned::span),
            _ => self.name.span(),
        }
    }
}

impl RawVm {
    /// The VM this `[[vm]]` describes, each value parsed; its rules against the
    /// rest of the inventory are [`Inventory::add_vm`]'s.
    fn to_vm(&self, source: &Source<'_>) -> Result<Vm, InventoryError> {
        let name = self.name.get_ref().clone();
        let invalid = |span: &Range<usize>, field: &str, message: String| {
            source.invalid(span, field, message)
        };
        Ok(Vm {
            mac: self
                .mac
                .get_ref()
                .parse()
                .map_err(|e| invalid(&self.mac.span(), "vm.mac", format!("{e}")))?,
            ip: self.ip.get_ref().parse().map_err(|_| {
                invalid(
                    &self.ip.span(),
                    "vm.ip",
                    format!("`{}` is not an IPv4 address", self.ip.get_ref()),
                )
            })?,
            host: self.host.get_ref().clone(),
            port: *self.port.get_ref(),
            tap: self
                .tap
                .as_ref()
                .map_or_else(|| Vm::default_tap(&name), |t| t.get_ref().clone()),
            netns: self.netns.clone(),
            tenant: self.tenant.clone(),
            public_ip: optional_address(&self.public_ip, "vm.public_ip", "IPv4", &invalid)?,
            ipv6: optional_address(&self.ipv6, "vm.ipv6", "IPv6", &invalid)?,
            public_ipv6: optional_address(&self.public_ipv6, "vm.public_ipv6", "IPv6", &invalid)?,
            name,
        })
    }

    /// Where in the file the value of `field` (as [`Invalid`] names it) is.
    fn span_of(&self, field: &str) -> Range<usize> {
        let given = |value: &Option<Spanned<String>>| {
            value.as_ref().map_or(self.name.span(), Spanned::span)
        };
        match field {
            "vm.ip" => self.ip.span(),
            "vm.mac" => self.mac.span(),
            "vm.host" => self.host.span(),
            "vm.port" => self.port.span(),
            "vm.tap" => given(&self.tap),
            "vm.public_ip" => given(&self.public_ip),
            "vm.ipv6" => given(&self.ipv6),
            "vm.public_ipv6" => given(&self.public_ipv6),
            _ => self.name.span(),
        }
    }
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
            let Position { line, column } = Position::of_error(text, &e);
            InventoryError::Syntax {
                path: path.into(),
                line,
                column,
                message: e.message().to_string(),
            }
        })?;
        let source = Source { text, path };
        let invalid = |span: &Range<usize>, field: &str, message: String| {
            source.invalid(span, field, message)
        };
        let overlay = parse_ipv4_prefix(raw.overlay_prefix.get_ref()).ok_or_else(|| {
            invalid(
                &raw.overlay_prefix.span(),
                "overlay_prefix",
                format!("`{}` is not an IPv4 prefix", raw.overlay_prefix.get_ref()),
            )
        })?;
        let overlay_ipv6 = match &raw.overlay_ipv6_prefix {
            None => None,
            Some(p) => Some(
                crate::model::ipv6::overlay_ipv6_prefix(p.get_ref())
                    .map_err(|message| invalid(&p.span(), "overlay_ipv6_prefix", message))?,
            ),
        };
        let gateway_mac: Mac = raw
            .gateway_mac
            .get_ref()
            .parse()
            .map_err(|e| invalid(&raw.gateway_mac.span(), "gateway_mac", format!("{e}")))?;
        let mut dns = Vec::with_capacity(raw.dns.len());
        for d in &raw.dns {
            dns.push(d.get_ref().parse::<Ipv4Addr>().map_err(|_| {
                invalid(
                    &d.span(),
                    "dns",
                    format!("`{}` is not an IPv4 address", d.get_ref()),
                )
            })?);
        }
        if let Some(extra) = raw.dns.get(dataplane_core::dhcp::MAX_DNS_SERVERS) {
            return Err(invalid(
                &extra.span(),
                "dns",
                format!(
                    "at most {} DNS servers",
                    dataplane_core::dhcp::MAX_DNS_SERVERS
                ),
            ));
        }
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
        let api = match &raw.controller.api {
            None => None,
            Some(a) => Some(addr(&raw.controller.api, "controller.api", "")?)
                .filter(|_| raw.controller.api_token_file.is_some())
                .ok_or_else(|| {
                    invalid(
                        &a.span(),
                        "controller.api",
                        "an API on TCP needs `api_token_file`: every request must carry its bearer token (local tools use the Unix socket, `api_socket`)".into(),
                    )
                })
                .map(Some)?,
        };
        let api_socket = match &raw.controller.api_socket {
            None => crate::model::DEFAULT_API_SOCKET.into(),
            Some(p) if !p.get_ref().starts_with('/') || p.get_ref().len() > 107 => {
                return Err(invalid(
                    &p.span(),
                    "controller.api_socket",
                    format!(
                        "`{}`: the socket path must be absolute and at most 107 bytes",
                        p.get_ref()
                    ),
                ))
            }
            Some(p) => std::path::PathBuf::from(p.get_ref()),
        };
        let api_token_file = raw
            .controller
            .api_token_file
            .as_ref()
            .map(|f| std::path::PathBuf::from(f.get_ref()));
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
        let mut inventory = Inventory {
            overlay,
            overlay_ipv6,
            gateway_mac,
            dns,
            openflow,
            api,
            api_socket,
            api_token_file,
            announce,
            clouds,
            hosts: Vec::new(),
            vms: crate::model::Vms::new(),
            placement: BTreeMap::new(),
            gateways: BTreeMap::new(),
            placement_settings: PlacementSettings::default(),
            switch_settings: switch_settings(&raw.controller)
                .map_err(|(span, field, message)| invalid(&span, field, message))?,
            openflow_tls: openflow_security(&raw.controller, openflow, path)
                .map_err(|(span, field, message)| invalid(&span, field, message))?,
            insecure_plaintext: raw.controller.insecure_plaintext,
        };
        for h in raw.hosts {
            let name = h.name.get_ref().clone();
            if inventory.host(&name).is_some() {
                return Err(invalid(
                    &h.name.span(),
                    "host.name",
                    format!("host `{name}` is defined twice"),
                ));
            }
            if inventory
                .openflow_tls
                .as_ref()
                .is_some_and(|t| t.name == name)
            {
                return Err(invalid(
                    &h.name.span(),
                    "host.name",
                    format!(
                        "`{name}` is the controller's certificate name: a switch must not carry it"
                    ),
                ));
            }
            let vm_prefix = match &h.vm_prefix {
                None => None,
                Some(p) => Some(
                    vm_prefix(p.get_ref())
                        .map_err(|message| invalid(&p.span(), "host.vm_prefix", message))?,
                ),
            };
            let host = Host {
                vm_prefix,
                tunnel_endpoint: h.tunnel_endpoint.get_ref().parse().map_err(|_| {
                    invalid(
                        &h.tunnel_endpoint.span(),
                        "host.tunnel_endpoint",
                        format!("`{}` is not address:port", h.tunnel_endpoint.get_ref()),
                    )
                })?,
                name: name.clone(),
                cloud: h.cloud.get_ref().clone(),
                datapath_id: *h.datapath_id.get_ref(),
                public_key: h.public_key.get_ref().trim().to_string(),
            };
            inventory
                .add_host(host)
                .map_err(|Invalid { field, message }| invalid(&h.span_of(field), field, message))?;
            if let Some(u) = &h.uplink {
                let gateway = uplink(&source, &name, u, overlay, overlay_ipv6)?;
                inventory.gateways.insert(name, gateway);
            }
        }
        if let Some(t) = &raw.placement {
            inventory.placement_settings = placement_settings(t.get_ref())
                .map_err(|message| invalid(&t.span(), "placement", message))?;
        }
        let mut claims = VmClaims::of(&inventory);
        for v in raw.vms {
            let name = v.name.get_ref().clone();
            if inventory.vms.contains_key(&name) {
                return Err(invalid(
                    &v.name.span(),
                    "vm.name",
                    format!("VM `{name}` is defined twice"),
                ));
            }
            let vm = v.to_vm(&source)?;
            if let Some(p) = &v.placement {
                let knobs = vm_placement(p.get_ref(), &inventory)
                    .map_err(|message| invalid(&p.span(), "vm.placement", message))?;
                inventory.placement.insert(name.clone(), knobs);
            }
            inventory
                .add_vm_claiming(vm, &mut claims)
                .map_err(|Invalid { field, message }| invalid(&v.span_of(field), field, message))?;
        }
        Ok(inventory)
    }
}

/// A `[[host]] vm_prefix`: a network address and its length, no bits set past it.
fn vm_prefix(text: &str) -> Result<(Ipv4Addr, u8), String> {
    let (net, len) = parse_ipv4_prefix(text)
        .ok_or_else(|| format!("`{text}` is not an IPv4 prefix such as 100.64.1.0/25"))?;
    if text
        .split_once('/')
        .and_then(|(a, _)| a.trim().parse().ok())
        != Some(net)
    {
        return Err(format!(
            "`{text}` has address bits set past its length (the network is {net}/{len})"
        ));
    }
    Ok((net, len))
}

/// Checks a VM's placement knobs against the clouds of `inventory`.
fn vm_placement(knobs: &VmPlacement, inventory: &Inventory) -> Result<VmPlacement, String> {
    if let Some(c) = knobs
        .clouds
        .iter()
        .chain(knobs.price_per_hour.keys())
        .find(|c| !inventory.clouds.contains_key(*c))
    {
        return Err(format!("no [[cloud]] named `{c}`"));
    }
    let numbers = knobs
        .price_per_hour
        .values()
        .chain(&knobs.latency_target_ms);
    if let Some(x) = numbers.into_iter().find(|x| !(x.is_finite() && **x >= 0.0)) {
        return Err(format!("{x} is not a non-negative number"));
    }
    Ok(knobs.clone())
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

    /// Its own address (the primary one) first, then the one SLAAC gives it.
    fn ipv6(&self, kind: &str, name: &str) -> Vec<u128> {
        let Some(vm) = self.vms.get(name).filter(|_| kind == "vm") else {
            return Vec::new();
        };
        let mut addresses: Vec<u128> = self.vm_ipv6_addresses(vm).map(u128::from).collect();
        addresses.reverse();
        addresses
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MAX_DATAPATH_ID;

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

    #[test]
    fn openflow_off_loopback_needs_tls_or_an_explicit_insecure_plaintext() {
        let inv = Inventory::parse(EXAMPLE, "/etc/scc/inventory.toml").unwrap();
        let tls = inv.openflow_tls.as_ref().unwrap();
        assert_eq!(tls.ca_cert, Path::new("/etc/scc/pki/ca-cert.pem"));
        assert_eq!(tls.name, "scc");
        let tls_table = EXAMPLE.find("\n[controller.tls]\n").unwrap();
        let next_table = tls_table + EXAMPLE[tls_table..].find("\n[[").unwrap();
        let plain = format!("{}{}", &EXAMPLE[..tls_table], &EXAMPLE[next_table..]);
        let e = error(&plain);
        assert!(
            e.contains(
                "`controller.openflow`: 192.0.2.250:6653 is OpenFlow in plain text off loopback"
            ),
            "{e}"
        );
        let allowed = plain.replacen(
            "[controller]\n",
            "[controller]\ninsecure_plaintext = true\n",
            1,
        );
        let inv = Inventory::parse(&allowed, "inv.toml").unwrap();
        assert!(inv.openflow_tls.is_none() && inv.insecure_plaintext);
        let config = inv.host_config("host-a", "k").unwrap();
        assert!(
            config.contains("controllers = [\"tcp:192.0.2.250:6653\"]"),
            "{config}"
        );
        assert!(config.contains("insecure_plaintext = true"), "{config}");
        let local = plain.replacen("192.0.2.250:6653", "127.0.0.1:6653", 1);
        assert!(Inventory::parse(&local, "inv.toml").is_ok());
        let e = error_with("name = \"host-b\"", "name = \"scc\"");
        assert!(
            e.contains("`scc` is the controller's certificate name"),
            "{e}"
        );
    }

    fn error(text: &str) -> String {
        Inventory::parse(text, "inv.toml").unwrap_err().to_string()
    }

    /// The error of the example inventory with `from` replaced by `to`.
    fn error_with(from: &str, to: &str) -> String {
        assert!(EXAMPLE.contains(from), "{from}");
        error(&EXAMPLE.replace(from, to))
    }

    #[test]
    fn ipv6_addresses_are_explicit_or_slaac_and_checked() {
        let dual = EXAMPLE.replacen(
            "gateway_mac = ",
            "overlay_ipv6_prefix = \"fd00:5c::/48\"\ngateway_mac = ",
            1,
        );
        let inv = Inventory::parse(&dual, "inv.toml").unwrap();
        // SLAAC's address for 02:00:00:00:01:01: the first /64, EUI-64 of the MAC.
        let web1: std::net::Ipv6Addr = "fd00:5c::ff:fe00:101".parse().unwrap();
        assert_eq!(inv.vm_ipv6(&inv.vms["web1"]), Some(web1));
        let exported = inv.to_file("");
        assert!(
            exported.contains("overlay_ipv6_prefix = \"fd00:5c::/48\""),
            "{exported}"
        );
        assert_eq!(Inventory::parse(&exported, "again.toml").unwrap(), inv);
        let own = dual.replacen(
            "name = \"db1\"\n",
            "name = \"db1\"\nipv6 = \"fd00:5c:0:2::1\"\n",
            1,
        );
        let inv = Inventory::parse(&own, "inv.toml").unwrap();
        assert_eq!(
            inv.vm_ipv6(&inv.vms["db1"]),
            Some("fd00:5c:0:2::1".parse().unwrap())
        );
        assert!(Inventory::parse(&inv.to_file(""), "again.toml").unwrap() == inv);
        for (text, says) in [
            (
                dual.replacen(
                    "name = \"db1\"\n",
                    "name = \"db1\"\nipv6 = \"fd00:5c::ff:fe00:101\"\n",
                    1,
                ),
                "`vm.ipv6`: address fd00:5c::ff:fe00:101 already used by VM `web1`",
            ),
            (
                dual.replacen(
                    "name = \"db1\"\n",
                    "name = \"db1\"\nipv6 = \"fd00:5d::1\"\n",
                    1,
                ),
                "`vm.ipv6`: fd00:5d::1 is outside the overlay fd00:5c::/48",
            ),
            (
                dual.replacen(
                    "name = \"db1\"\n",
                    "name = \"db1\"\nipv6 = \"fd00:5c::\"\n",
                    1,
                ),
                "`vm.ipv6`: fd00:5c:: is not a unicast address a VM can hold",
            ),
            (
                EXAMPLE.replacen(
                    "name = \"db1\"\n",
                    "name = \"db1\"\nipv6 = \"fd00:5c::1\"\n",
                    1,
                ),
                "`vm.ipv6`: fd00:5c::1: the overlay has no IPv6 prefix",
            ),
            (
                dual.replacen(
                    "name = \"db1\"\n",
                    "name = \"db1\"\nipv6 = \"100.64.0.9\"\n",
                    1,
                ),
                "`vm.ipv6`: `100.64.0.9` is not an IPv6 address",
            ),
            (
                dual.replacen("fd00:5c::/48", "2001:db8::/48", 1),
                "`overlay_ipv6_prefix`: 2001:db8::/48 is not a unique local prefix",
            ),
            (
                dual.replacen("fd00:5c::/48", "fd00:5c::/96", 1),
                "`overlay_ipv6_prefix`: fd00:5c::/96 is longer than /64",
            ),
            (
                dual.replacen("fd00:5c::/48", "fd00:5c::1/48", 1),
                "`overlay_ipv6_prefix`: `fd00:5c::1/48` has address bits set past its length",
            ),
        ] {
            let e = error(&text);
            assert!(e.contains(says), "{e}\nwanted: {says}");
            assert!(e.starts_with("inv.toml:"), "{e}");
        }
    }

    #[test]
    fn vm_prefixes_lie_in_the_overlay_and_never_overlap() {
        let with = |a: &str, b: &str| {
            EXAMPLE
                .replacen(
                    "datapath_id = 1\n",
                    &format!("datapath_id = 1\nvm_prefix = \"{a}\"\n"),
                    1,
                )
                .replacen(
                    "datapath_id = 2\n",
                    &format!("datapath_id = 2\nvm_prefix = \"{b}\"\n"),
                    1,
                )
        };
        let inv = Inventory::parse(&with("100.64.1.0/25", "100.64.2.0/24"), "i").unwrap();
        assert_eq!(
            inv.hosts[0].vm_prefix,
            Some((Ipv4Addr::new(100, 64, 1, 0), 25))
        );
        assert!(inv.hosts[1].owns(Ipv4Addr::new(100, 64, 2, 200)));
        assert!(!inv.hosts[0].owns(Ipv4Addr::new(100, 64, 1, 200)));
        // Host-b's prefix is the one refused: host-a comes first.
        let line_of_b = |text: &str| {
            let at = text.find("datapath_id = 2\nvm_prefix").unwrap();
            text[..at].matches('\n').count() + 2
        };
        for (a, b, says) in [
            (
                "100.64.2.0/24",
                "100.64.2.64/26",
                "100.64.2.64/26 overlaps host `host-a`'s VM prefix 100.64.2.0/24",
            ),
            (
                "100.64.1.0/25",
                "100.0.0.0/9",
                "100.0.0.0/9 is not inside the overlay 100.64.0.0/10",
            ),
            (
                "100.64.1.0/25",
                "100.64.2.1/24",
                "has address bits set past its length",
            ),
            ("100.64.1.0/25", "100.64.2.0/33", "is not an IPv4 prefix"),
        ] {
            let text = with(a, b);
            let e = error(&text);
            let at = format!("inv.toml:{}: `host.vm_prefix`", line_of_b(&text));
            assert!(e.contains(&at) && e.contains(says), "{e}");
        }
    }

    #[test]
    fn the_api_is_a_unix_socket_and_tcp_only_with_a_token_file() {
        let inv = Inventory::parse(EXAMPLE, "inventory.toml").unwrap();
        assert_eq!(inv.api_socket, Path::new("/run/scc/api.sock"));
        assert_eq!((inv.api, inv.api_token_file), (None, None));
        let tcp = EXAMPLE
            .replace("# api = ", "api = ")
            .replace("# api_token_file = ", "api_token_file = ");
        let inv = Inventory::parse(&tcp, "inventory.toml").unwrap();
        assert_eq!(inv.api, Some("127.0.0.1:6680".parse().unwrap()));
        assert_eq!(
            inv.api_token_file.as_deref(),
            Some(Path::new("/etc/scc/api.token"))
        );
        let e = error(&EXAMPLE.replace("# api = ", "api = "));
        assert!(
            e.contains("`controller.api`: an API on TCP needs `api_token_file`"),
            "{e}"
        );
        let e = error_with(
            "api_socket = \"/run/scc/api.sock\"",
            "api_socket = \"api.sock\"",
        );
        assert!(e.contains("`controller.api_socket`"), "{e}");
    }

    #[test]
    fn errors_name_field_and_line() {
        for (from, to, says) in [
            (
                "host = \"host-a\"\nport = 1",
                "host = \"host-z\"\nport = 1",
                "`vm.host`: no [[host]] named `host-z`",
            ),
            (
                "100.64.2.1",
                "10.0.0.1",
                "`vm.ip`: 10.0.0.1 is outside the overlay 100.64.0.0/10",
            ),
            (
                "datapath_id = 2",
                "datapath_id = 1",
                "`host.datapath_id`: datapath id 1 is used twice",
            ),
            (
                "ip = \"100.64.3.1\"",
                "ip = \"100.64.1.1\"",
                "`vm.ip`: address 100.64.1.1 already used by VM `web1`",
            ),
            (
                "mac = \"02:00:00:00:03:01\"",
                "mac = \"02:00:00:00:01:01\"",
                // Reported against the duplicate MAC's own field (and so its line).
                "`vm.mac`: MAC 02:00:00:00:01:01 already used by VM `web1`",
            ),
        ] {
            let e = error_with(from, to);
            assert!(e.contains(says), "{e}");
        }
        let e = error(&format!("{EXAMPLE}\n[[vm]]\nname = \"x\"\n"));
        assert!(e.starts_with("inv.toml:"), "{e}");
    }

    /// The example inventory with `hosts` more hosts (`bulk-0`, …) and
    /// `vms` more VMs spread over them, all valid.
    fn bulk_inventory(hosts: u32, vms: u32) -> String {
        use std::fmt::Write;
        let mut text = EXAMPLE.to_owned();
        for h in 0..hosts {
            write!(
                text,
                "\n[[host]]\nname = \"bulk-{h}\"\ncloud = \"aws-us-east\"\n\
                 datapath_id = {}\ntunnel_endpoint = \"192.0.2.9:51820\"\n\
                 public_key = \"3p7bfXt9wbTTW2HC7OQ1Nz+DQ8hbeGdNrfx+FG+IK08=\"\n",
                100 + h
            )
            .unwrap();
        }
        for v in 0..vms {
            let [_, b, c, d] = (0x0010_0000 + v).to_be_bytes();
            write!(
                text,
                "\n[[vm]]\nname = \"bulk{v}\"\nmac = \"02:01:00:{b:02x}:{c:02x}:{d:02x}\"\n\
                 ip = \"100.{}.{c}.{d}\"\nhost = \"bulk-{}\"\nport = {}\n",
                64 + b,
                v % hosts,
                1 + v / hosts
            )
            .unwrap();
        }
        text
    }

    #[test]
    fn a_duplicate_among_many_vms_is_reported_at_its_field_and_line() {
        let text = bulk_inventory(4, 1_000);
        let first_line = text.lines().count();
        for (field, value, says) in [
            (
                "mac",
                "\"02:01:00:10:00:07\"",
                "`vm.mac`: MAC 02:01:00:10:00:07 already used by VM `bulk7`",
            ),
            (
                "ip",
                "\"100.80.0.9\"",
                "`vm.ip`: address 100.80.0.9 already used by VM `bulk9`",
            ),
        ] {
            let mut dup = format!(
                "{text}\n[[vm]]\nname = \"dup\"\nmac = \"02:01:00:20:00:01\"\n\
                 ip = \"100.96.0.1\"\nhost = \"bulk-0\"\nport = 5000\n"
            );
            dup = dup.replace(
                &format!(
                    "{field} = {}",
                    if field == "mac" {
                        "\"02:01:00:20:00:01\""
                    } else {
                        "\"100.96.0.1\""
                    }
                ),
                &format!("{field} = {value}"),
            );
            let line = first_line + if field == "mac" { 4 } else { 5 };
            let e = error(&dup);
            assert!(e.starts_with(&format!("inv.toml:{line}: ")), "{e}");
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn a_hundred_thousand_vms_are_validated() {
        let inv = Inventory::parse(&bulk_inventory(12, 100_000), "inv.toml").unwrap();
        assert_eq!(inv.vms.len(), 100_000 + EXAMPLE.matches("[[vm]]").count());
    }

    #[test]
    fn uplinks_and_public_addresses_are_checked() {
        let inv = Inventory::parse(EXAMPLE, "i").unwrap();
        let gw = &inv.gateways["host-a"];
        assert_eq!(
            (gw.port, gw.public_prefix),
            (100, (Ipv4Addr::new(203, 0, 113, 0), 24))
        );
        for (from, to, says) in [
            (
                "public_ip = \"203.0.113.10\"",
                "public_ip = \"192.0.2.99\"",
                "`vm.public_ip`: no gateway serves 192.0.2.99",
            ),
            (
                "tenant = \"green\"",
                "tenant = \"green\"\npublic_ip = \"203.0.113.10\"",
                "203.0.113.10 is already VM `web1`'s",
            ),
            (
                "port = 100",
                "port = 1",
                "`vm.port`: port 1 of host `host-a` is its uplink",
            ),
            (
                "203.0.113.0/24",
                "100.64.0.0/16",
                "`host.uplink`: `public_prefix` overlaps the overlay",
            ),
            (
                "router_mac = \"02:5c:00:00:0a:fe\"",
                "router_mac = \"x\"",
                "`host.uplink`: `router_mac`",
            ),
        ] {
            let e = error_with(from, to);
            assert!(e.contains(says), "{e}");
        }
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
            crate::model::EngineConfig::default().horizon_s
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
    fn the_switch_watch_settings_have_defaults_and_are_checked() {
        let inv = Inventory::parse(EXAMPLE, "i").unwrap();
        assert_eq!(inv.switch_settings, SwitchSettings::default());
        let with = |keys: &str| {
            Inventory::parse(
                &EXAMPLE.replace("[controller]\n", &format!("[controller]\n{keys}\n")),
                "inv.toml",
            )
        };
        let inv = with("echo_every_s = 1\necho_timeout_s = 3\naudit_every_s = 0").unwrap();
        assert_eq!(
            inv.switch_settings,
            SwitchSettings {
                echo_every_s: 1,
                echo_timeout_s: 3,
                audit_every_s: 0
            }
        );
        for (keys, says) in [
            (
                "echo_every_s = 0",
                "`controller.echo_every_s`: must be at least 1",
            ),
            (
                "echo_every_s = 5\necho_timeout_s = 5",
                "`controller.echo_timeout_s`: 5s is not more than",
            ),
            ("echo_every_s = 20", "`controller.echo_timeout_s`: 15s"),
        ] {
            let e = with(keys).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
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

    /// `vm` as an inventory file's `[[vm]]` table.
    fn vm_table(vm: &Vm) -> String {
        let mut t = format!(
            "\n[[vm]]\nname = \"{}\"\nmac = \"{}\"\nip = \"{}\"\nhost = \"{}\"\nport = {}\ntap = \"{}\"\n",
            vm.name, vm.mac, vm.ip, vm.host, vm.port, vm.tap
        );
        if let Some(public) = vm.public_ip {
            t += &format!("public_ip = \"{public}\"\n");
        }
        t
    }

    #[test]
    fn the_api_refuses_every_vm_the_file_refuses() {
        let inv = Inventory::parse(EXAMPLE, "i").unwrap();
        let fresh = Vm {
            name: "new1".into(),
            mac: "02:00:00:00:09:01".parse().unwrap(),
            ip: Ipv4Addr::new(100, 64, 9, 1),
            host: "host-b".into(),
            port: 7,
            tap: Vm::default_tap("new1"),
            netns: None,
            tenant: None,
            public_ip: None,
            ipv6: None,
            public_ipv6: None,
        };
        let web1 = inv.vms["web1"].clone();
        type Change<'a> = Box<dyn Fn(&mut Vm) + 'a>;
        let cases: [(&str, Change); 11] = [
            (
                "outside the overlay",
                Box::new(|v| v.ip = Ipv4Addr::new(10, 0, 0, 1)),
            ),
            ("already used by VM `web1`", Box::new(|v| v.ip = web1.ip)),
            ("already used by VM `web1`", Box::new(|v| v.mac = web1.mac)),
            (
                "no [[host]] named `host-z`",
                Box::new(|v| v.host = "host-z".into()),
            ),
            ("0 is outside 1..10000", Box::new(|v| v.port = 0)),
            ("10001 is outside 1..10000", Box::new(|v| v.port = 10_001)),
            (
                "port 1 of host `host-a` is used twice",
                Box::new(|v| {
                    v.host = "host-a".into();
                    v.port = 1;
                }),
            ),
            (
                "port 100 of host `host-a` is its uplink",
                Box::new(|v| {
                    v.host = "host-a".into();
                    v.port = 100;
                }),
            ),
            (
                "is not an interface name",
                Box::new(|v| v.tap = "a-very-long-tap-name".into()),
            ),
            (
                "no gateway serves 192.0.2.99",
                Box::new(|v| {
                    v.public_ip = Some(Ipv4Addr::new(192, 0, 2, 99));
                }),
            ),
            (
                "203.0.113.10 is already VM `web1`'s",
                Box::new(|v| {
                    v.public_ip = Some(Ipv4Addr::new(203, 0, 113, 10));
                }),
            ),
        ];
        let mut accepted = inv.clone();
        assert_eq!(accepted.add_vm(fresh.clone()), Ok(None));
        Inventory::parse(&format!("{EXAMPLE}{}", vm_table(&fresh)), "i").unwrap();
        for (says, change) in cases {
            let mut vm = fresh.clone();
            change(&mut vm);
            let from_file = error(&format!("{EXAMPLE}{}", vm_table(&vm)));
            assert!(from_file.contains(says), "{from_file}");
            // What the API's add-VM does with the same VM, arriving as JSON.
            let json = serde_json::to_vec(&vm).unwrap();
            let mut through_api = inv.clone();
            let refused = through_api
                .add_vm(serde_json::from_slice(&json).unwrap())
                .unwrap_err();
            assert!(
                from_file.ends_with(&refused.to_string()),
                "file: {from_file}\napi: {refused}"
            );
            assert_eq!(through_api, inv, "nothing changed");
        }
        // The file refuses a name used twice; the API replaces the VM of that name.
        let e = error(&format!("{EXAMPLE}{}", vm_table(&web1)));
        assert!(e.contains("`vm.name`: VM `web1` is defined twice"), "{e}");
        let mut moved = inv.clone();
        let web1_moved = Vm {
            port: 9,
            ..web1.clone()
        };
        assert_eq!(moved.add_vm(web1_moved), Ok(Some(inv.vms["web1"].clone())));
    }

    /// `host` as an inventory file's `[[host]]` table.
    fn host_table(host: &Host) -> String {
        format!(
            "\n[[host]]\nname = \"{}\"\ncloud = \"{}\"\ndatapath_id = {}\ntunnel_endpoint = \"{}\"\npublic_key = \"{}\"\n",
            host.name, host.cloud, host.datapath_id, host.tunnel_endpoint, host.public_key
        )
    }

    #[test]
    fn the_api_refuses_every_host_the_file_refuses() {
        let inv = Inventory::parse(EXAMPLE, "i").unwrap();
        let fresh = Host {
            name: "host-d".into(),
            datapath_id: 4,
            ..inv.hosts[1].clone()
        };
        type Change = fn(&mut Host);
        let cases: [(&str, Change); 5] = [
            ("`host.cloud`: no [[cloud]] named `mars`", |h| {
                h.cloud = "mars".into()
            }),
            ("`host.datapath_id`: 0 is outside", |h| h.datapath_id = 0),
            ("`host.datapath_id`: 1000001 is outside", |h| {
                h.datapath_id = MAX_DATAPATH_ID + 1
            }),
            (
                "`host.datapath_id`: datapath id 1 is used twice (already used by host `host-a`)",
                |h| h.datapath_id = 1,
            ),
            ("`host.public_key`: not a WireGuard public key", |h| {
                h.public_key = "short=".into()
            }),
        ];
        let mut accepted = inv.clone();
        assert_eq!(accepted.add_host(fresh.clone()), Ok(None));
        // Hosts come before the VMs in the example; a new one may follow them.
        Inventory::parse(&format!("{EXAMPLE}{}", host_table(&fresh)), "i").unwrap();
        for (says, change) in cases {
            let mut host = fresh.clone();
            change(&mut host);
            let from_file = error(&format!("{EXAMPLE}{}", host_table(&host)));
            assert!(from_file.contains(says), "{from_file}");
            let json = serde_json::to_vec(&host).unwrap();
            let mut through_api = inv.clone();
            let refused = through_api
                .add_host(serde_json::from_slice(&json).unwrap())
                .unwrap_err();
            assert!(
                from_file.ends_with(&refused.to_string()),
                "file: {from_file}\napi: {refused}"
            );
            assert_eq!(through_api, inv, "nothing changed");
        }
        // The file refuses a name used twice; the API replaces the host of that name.
        let e = error(&format!("{EXAMPLE}{}", host_table(&inv.hosts[0])));
        assert!(
            e.contains("`host.name`: host `host-a` is defined twice"),
            "{e}"
        );
        let mut replaced = inv.clone();
        let moved = Host {
            cloud: "gcp-europe".into(),
            ..inv.hosts[0].clone()
        };
        assert_eq!(
            replaced.add_host(moved.clone()),
            Ok(Some(inv.hosts[0].clone()))
        );
        assert_eq!(replaced.hosts.last(), Some(&moved));
    }
}
