//! The host configuration file of `scd` (TOML), documented in `docs/scd-config.md`.
//!
//! This module owns reading and validating the file: every error names the field and
//! the line it is on, and a file that fails validation is never half-applied. It does
//! not open devices or sockets.

mod binding;
mod dhcp;

pub use self::dhcp::{DhcpConfig, UNTUNNELLED_MTU};

use config_support::{parse_ipv4_prefix, Position};
use dataplane_core::port_security::PortBinding;
use openflow::flow::{Mac, PortNo};
use serde::Deserialize;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

mod channel;
mod scheduling;

use self::channel::RawOpenflow;
pub use self::channel::{
    parse_controller, parse_passive, parse_ptcp, parse_tcp, ControllerAddr, FailMode, ListenAddr,
    OpenflowConfig, OpenflowTls, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, UNIX_PATH_MAX,
};

/// A configuration error, with its position when it has one.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has a field of the wrong type or name.
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A field has a value that is well-formed but not acceptable.
    #[error("{path}:{line}: `{field}`: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The field, as written in the file.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// A datapath id, written as an integer or as a hex string such as `"0x1"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum DatapathIdText {
    Number(u64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    datapath_id: Spanned<DatapathIdText>,
    name: Option<String>,
    overlay: RawOverlay,
    #[serde(default)]
    metrics: RawMetrics,
    #[serde(default)]
    flows: RawFlows,
    #[serde(default, rename = "port")]
    ports: Vec<RawPort>,
    tunnel: Option<RawTunnel>,
    #[serde(default, rename = "peer")]
    peers: Vec<RawPeer>,
    #[serde(default)]
    openflow: RawOpenflow,
    dhcp: Option<dhcp::RawDhcp>,
    #[serde(default)]
    control: RawControl,
    #[serde(default)]
    scheduling: self::scheduling::RawScheduling,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawControl {
    socket: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTunnel {
    private_key_file: String,
    listen: Spanned<String>,
    mtu: Option<Spanned<u32>>,
    latency_probe_s: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    port: Spanned<u32>,
    name: Spanned<String>,
    public_key: Spanned<String>,
    endpoint: Option<Spanned<String>>,
    keepalive: Option<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOverlay {
    prefix: Spanned<String>,
    gateway_mac: Spanned<String>,
    gateway_ip: Option<Spanned<String>>,
    ipv6_prefix: Option<Spanned<String>>,
    #[serde(default = "yes")]
    arp_responder: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlows {
    file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPort {
    number: Spanned<u32>,
    name: Spanned<String>,
    #[serde(rename = "type", default = "tap")]
    kind: Spanned<String>,
    create: Option<Spanned<bool>>,
    mtu: Option<Spanned<u32>>,
    netns: Option<Spanned<String>>,
    #[serde(default)]
    answer_arp: Vec<Spanned<String>>,
    #[serde(default)]
    answer_nd: Vec<Spanned<String>>,
    mac: Option<Spanned<String>>,
    vm_mac: Option<Spanned<String>>,
    #[serde(default)]
    vm_ips: Vec<Spanned<String>>,
}

fn yes() -> bool {
    true
}

fn tap() -> Spanned<String> {
    Spanned::new(0..0, "tap".to_string())
}

/// How a port is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortKind {
    /// A TAP device whose other end is a VM (or a test namespace).
    Tap,
    /// A packet socket (`AF_PACKET`) on an existing interface that someone else
    /// owns: the host side of a QEMU TAP, a veth end, an uplink.
    Raw,
}

/// One configured port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    /// OpenFlow port number.
    pub number: PortNo,
    /// Interface name (at most 15 bytes).
    pub name: String,
    /// Kind of port.
    pub kind: PortKind,
    /// True: `scd` creates the device and removes it on exit. False: attach to an
    /// existing persistent device and leave it in place. Always false for raw ports.
    pub create: bool,
    /// MTU to set, if any.
    pub mtu: Option<u32>,
    /// Network namespace the interface lives in (its VM's), when not scd's own.
    pub netns: Option<String>,
    /// Prefixes (network, length) whose ARP requests arriving on this port `scd`
    /// answers with [`PortConfig::mac`]: a gateway's uplink address and the public
    /// addresses it serves.
    pub answer_arp: Vec<(u32, u8)>,
    /// IPv6 prefixes whose neighbour solicitations arriving on this port `scd`
    /// answers with [`PortConfig::mac`]: a gateway's uplink IPv6 address and
    /// the public IPv6 prefix it routes.
    pub answer_nd: Vec<(Ipv6Addr, u8)>,
    /// The MAC this port answers ARP and ND with (required with either).
    pub mac: Option<Mac>,
    /// The VM this port is bound to (`vm_mac`, `vm_ips`): none, no port security.
    pub binding: Option<PortBinding>,
}

/// Seconds between two latency probes of a tunnel peer, unless configured.
pub const DEFAULT_LATENCY_PROBE_S: u32 = 10;

/// The tunnel side of a host: its WireGuard identity, socket and peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelConfig {
    /// File holding the private key (WireGuard base64; mode 600).
    pub private_key_file: PathBuf,
    /// UDP address the tunnels listen on.
    pub listen: SocketAddr,
    /// Largest inner IP packet; larger ones get ICMP "fragmentation needed".
    pub mtu: usize,
    /// Remote hosts, one OpenFlow port each.
    pub peers: Vec<crate::tunnel::PeerConfig>,
    /// How often the latency to each peer is probed with a handshake this side
    /// initiates (`latency_probe_s`, default 10; 0: never).
    pub latency_probe: Option<std::time::Duration>,
}

/// A validated host configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConfig {
    /// OpenFlow datapath id.
    pub datapath_id: u64,
    /// Human name of the host (for logs and metrics).
    pub name: String,
    /// Overlay network address.
    pub overlay_network: Ipv4Addr,
    /// Overlay prefix length.
    pub overlay_prefix_len: u8,
    /// The anycast gateway MAC every host answers ARP with.
    pub gateway_mac: Mac,
    /// The gateway's overlay address, used as the source of ICMP errors.
    pub gateway_ip: Ipv4Addr,
    /// Whether the ARP responder runs.
    pub arp_responder: bool,
    /// The overlay's IPv6 prefix, when it carries IPv6: VM ports are then
    /// answered neighbour discovery and sent router advertisements of its
    /// first /64, and may send from the address SLAAC gives them there.
    pub overlay_ipv6: Option<(Ipv6Addr, u8)>,
    /// Where the Prometheus endpoint listens, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// Static flows file (ovs-ofctl syntax), resolved against the config's directory.
    pub flows_file: Option<PathBuf>,
    /// Ports.
    pub ports: Vec<PortConfig>,
    /// Tunnels to other hosts, if any.
    pub tunnel: Option<TunnelConfig>,
    /// The OpenFlow channel.
    pub openflow: OpenflowConfig,
    /// The DHCP server of the VM ports (`[dhcp]`), if it runs.
    pub dhcp: Option<DhcpConfig>,
    /// The local management socket (`[control] socket`, mode 0600) through which
    /// `scd port add/del/list` change the ports of the running switch.
    pub control_socket: Option<PathBuf>,
    /// The priorities of scd's threads.
    pub scheduling: crate::scheduling::Scheduling,
}

/// Longest interface name Linux accepts.
pub const IFNAMSIZ_MAX: usize = 15;

impl HostConfig {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<HostConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        HostConfig::parse(&text, path)
    }

    /// Validates configuration text; `path` is used in errors and to resolve the
    /// flows file.
    pub fn parse(text: &str, path: &Path) -> Result<HostConfig, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let Position { line, column } = Position::of_error(text, &e);
            ConfigError::Syntax {
                path: path.to_path_buf(),
                line,
                column,
                message: e.message().to_string(),
            }
        })?;
        let invalid = |span: &Range<usize>, field: &str, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            line: Position::of_span(text, span).line,
            field: field.to_string(),
            message,
        };

        let datapath_id = match raw.datapath_id.get_ref() {
            DatapathIdText::Number(n) => *n,
            DatapathIdText::Text(t) => {
                let digits = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X"));
                let parsed = match digits {
                    Some(hex) => u64::from_str_radix(&hex.replace(':', ""), 16),
                    None => t.parse(),
                };
                parsed.map_err(|_| {
                    invalid(
                        &raw.datapath_id.span(),
                        "datapath_id",
                        format!("`{t}` is not a 64-bit number (write 42 or \"0x2a\")"),
                    )
                })?
            }
        };

        let prefix = raw.overlay.prefix.get_ref();
        let (net, len) = parse_prefix(prefix).ok_or_else(|| {
            invalid(
                &raw.overlay.prefix.span(),
                "overlay.prefix",
                format!("`{prefix}` is not an IPv4 prefix such as 100.64.0.0/10"),
            )
        })?;
        let gateway_mac: Mac = raw.overlay.gateway_mac.get_ref().parse().map_err(|e| {
            invalid(
                &raw.overlay.gateway_mac.span(),
                "overlay.gateway_mac",
                format!("{e}"),
            )
        })?;
        if gateway_mac.is_multicast() {
            return Err(invalid(
                &raw.overlay.gateway_mac.span(),
                "overlay.gateway_mac",
                format!("{gateway_mac} is a group address; use a unicast, locally administered MAC such as 02:5c:00:00:00:01"),
            ));
        }

        let metrics_listen = match &raw.metrics.listen {
            None => None,
            Some(listen) => Some(listen.get_ref().parse::<SocketAddr>().map_err(|_| {
                invalid(
                    &listen.span(),
                    "metrics.listen",
                    format!(
                        "`{}` is not an address:port such as 127.0.0.1:9464",
                        listen.get_ref()
                    ),
                )
            })?),
        };

        let mut ports = Vec::with_capacity(raw.ports.len());
        for p in &raw.ports {
            let number = *p.number.get_ref();
            if number == 0 || number > openflow::flow::port::MAX {
                return Err(invalid(
                    &p.number.span(),
                    "port.number",
                    format!("{number} is not a valid OpenFlow port number (1..=0xffffff00)"),
                ));
            }
            if ports.iter().any(|q: &PortConfig| q.number == number) {
                return Err(invalid(
                    &p.number.span(),
                    "port.number",
                    format!("port number {number} is used twice"),
                ));
            }
            let name = p.name.get_ref();
            if name.is_empty() || name.len() > IFNAMSIZ_MAX || name.contains(['/', ' ', '\0']) {
                return Err(invalid(
                    &p.name.span(),
                    "port.name",
                    format!("`{name}` is not an interface name (1..=15 bytes, no '/' or spaces)"),
                ));
            }
            if ports.iter().any(|q: &PortConfig| &q.name == name) {
                return Err(invalid(
                    &p.name.span(),
                    "port.name",
                    format!("interface `{name}` is used twice"),
                ));
            }
            let kind = match p.kind.get_ref().as_str() {
                "tap" => PortKind::Tap,
                "raw" => PortKind::Raw,
                other => {
                    return Err(invalid(
                        &p.kind.span(),
                        "port.type",
                        format!("unknown port type `{other}` (expected \"tap\" or \"raw\")"),
                    ))
                }
            };
            let create = match (&p.create, kind) {
                (None, PortKind::Tap) => true,
                (None, PortKind::Raw) => false,
                (Some(c), PortKind::Raw) if *c.get_ref() => {
                    return Err(invalid(
                        &c.span(),
                        "port.create",
                        format!("a raw port attaches to an existing interface and never creates `{name}`: set create = false or leave it out"),
                    ))
                }
                (Some(c), _) => *c.get_ref(),
            };
            if let (Some(m), PortKind::Raw) = (&p.mtu, kind) {
                return Err(invalid(
                    &m.span(),
                    "port.mtu",
                    format!("scd does not configure the interface of a raw port; set the MTU of `{name}` where it is owned"),
                ));
            }
            let mtu = match &p.mtu {
                Some(m) if !(68..=65_535).contains(m.get_ref()) => {
                    return Err(invalid(
                        &m.span(),
                        "port.mtu",
                        format!("{} is outside 68..=65535", m.get_ref()),
                    ))
                }
                Some(m) => Some(*m.get_ref()),
                None => None,
            };
            let netns = match &p.netns {
                Some(ns) if ns.get_ref().is_empty() || ns.get_ref().contains(['/', '\0']) => {
                    return Err(invalid(
                        &ns.span(),
                        "port.netns",
                        format!(
                            "`{}` is not a namespace name (as in /run/netns/NAME)",
                            ns.get_ref()
                        ),
                    ))
                }
                Some(ns) => Some(ns.get_ref().clone()),
                None => None,
            };
            let mut answer_arp = Vec::with_capacity(p.answer_arp.len());
            for a in &p.answer_arp {
                let text = a.get_ref();
                let parsed = parse_prefix(text)
                    .or_else(|| text.parse::<Ipv4Addr>().ok().map(|ip| (u32::from(ip), 32)));
                answer_arp.push(parsed.ok_or_else(|| {
                    invalid(
                        &a.span(),
                        "port.answer_arp",
                        format!("`{text}` is not an IPv4 address or prefix"),
                    )
                })?);
            }
            let mac = match &p.mac {
                None => None,
                Some(m) => Some(
                    m.get_ref()
                        .parse::<Mac>()
                        .map_err(|e| invalid(&m.span(), "port.mac", format!("{e}")))?,
                ),
            };
            if let (Some(a), None) = (p.answer_arp.first(), mac) {
                return Err(invalid(
                    &a.span(),
                    "port.answer_arp",
                    "answering ARP needs the port's own `mac`".into(),
                ));
            }
            let mut answer_nd = Vec::with_capacity(p.answer_nd.len());
            for a in &p.answer_nd {
                let text = a.get_ref();
                let parsed = config_support::parse_ipv6_prefix(text)
                    .or_else(|| text.parse::<Ipv6Addr>().ok().map(|ip| (ip, 128)));
                answer_nd.push(parsed.ok_or_else(|| {
                    invalid(
                        &a.span(),
                        "port.answer_nd",
                        format!("`{text}` is not an IPv6 address or prefix"),
                    )
                })?);
                if mac.is_none() {
                    return Err(invalid(
                        &a.span(),
                        "port.answer_nd",
                        "answering neighbour solicitations needs the port's own `mac`".into(),
                    ));
                }
            }
            ports.push(PortConfig {
                number,
                name: name.clone(),
                kind,
                create,
                mtu,
                netns,
                answer_arp,
                answer_nd,
                mac,
                binding: binding::parse(p, &invalid)?,
            });
        }

        let relative = |f: &str| {
            let f = PathBuf::from(f);
            if f.is_absolute() {
                f
            } else {
                path.parent().unwrap_or(Path::new(".")).join(f)
            }
        };
        let flows_file = raw.flows.file.as_deref().map(relative);

        let gateway_ip = match &raw.overlay.gateway_ip {
            None => Ipv4Addr::from(net.wrapping_add(1)),
            Some(ip) => {
                let addr: Ipv4Addr = ip.get_ref().parse().map_err(|_| {
                    invalid(
                        &ip.span(),
                        "overlay.gateway_ip",
                        format!("`{}` is not an IPv4 address", ip.get_ref()),
                    )
                })?;
                if u32::from(addr) & openflow::flow::prefix_mask32(len) != net {
                    return Err(invalid(
                        &ip.span(),
                        "overlay.gateway_ip",
                        format!("{addr} is outside the overlay prefix {prefix}"),
                    ));
                }
                addr
            }
        };

        let overlay_ipv6 = match &raw.overlay.ipv6_prefix {
            None => None,
            Some(p) => Some(
                config_support::parse_ipv6_prefix(p.get_ref())
                    .filter(|(_, len)| *len <= 64)
                    .ok_or_else(|| {
                        invalid(
                            &p.span(),
                            "overlay.ipv6_prefix",
                            format!(
                                "`{}` is not an IPv6 prefix of length 64 or less",
                                p.get_ref()
                            ),
                        )
                    })?,
            ),
        };

        if raw.tunnel.is_none() && !raw.peers.is_empty() {
            return Err(invalid(
                &raw.peers[0].port.span(),
                "peer",
                "peers need a [tunnel] section (private_key_file, listen)".to_string(),
            ));
        }
        let tunnel = match &raw.tunnel {
            None => None,
            Some(t) => {
                let listen = parse_listen(t.listen.get_ref()).ok_or_else(|| {
                    invalid(
                        &t.listen.span(),
                        "tunnel.listen",
                        format!(
                            "`{}` is not address:port or a port number",
                            t.listen.get_ref()
                        ),
                    )
                })?;
                let mtu = match &t.mtu {
                    Some(m) if !(576..=crate::tunnel::MAX_TUNNEL_MTU).contains(m.get_ref()) => {
                        return Err(invalid(
                            &m.span(),
                            "tunnel.mtu",
                            format!("{} is outside 576..={} (one encrypted datagram must fit a batch slot)", m.get_ref(), crate::tunnel::MAX_TUNNEL_MTU),
                        ))
                    }
                    // IPv6 is never fragmented on the way: a tunnel carrying it must
                    // pass its minimum MTU whole (refused rather than fragmenting
                    // the tunnel's datagrams).
                    Some(m) if overlay_ipv6.is_some() && usize::try_from(*m.get_ref()).is_ok_and(|m| m < dataplane_core::icmp6::MIN_IPV6_MTU) => {
                        return Err(invalid(
                            &m.span(),
                            "tunnel.mtu",
                            format!("{} is below 1280, the least IPv6 (`overlay.ipv6_prefix`) allows", m.get_ref()),
                        ))
                    }
                    Some(m) => {
                        usize::try_from(*m.get_ref()).unwrap_or(crate::tunnel::DEFAULT_TUNNEL_MTU)
                    }
                    None => crate::tunnel::DEFAULT_TUNNEL_MTU,
                };
                let mut peers: Vec<crate::tunnel::PeerConfig> = Vec::with_capacity(raw.peers.len());
                for p in &raw.peers {
                    let number = *p.port.get_ref();
                    if number == 0 || number > openflow::flow::port::MAX {
                        return Err(invalid(
                            &p.port.span(),
                            "peer.port",
                            format!(
                                "{number} is not a valid OpenFlow port number (1..=0xffffff00)"
                            ),
                        ));
                    }
                    if ports.iter().any(|q| q.number == number)
                        || peers.iter().any(|q| q.port == number)
                    {
                        return Err(invalid(
                            &p.port.span(),
                            "peer.port",
                            format!("port number {number} is used twice"),
                        ));
                    }
                    let public_key = crate::keys::decode(p.public_key.get_ref()).map_err(|e| {
                        invalid(&p.public_key.span(), "peer.public_key", e.to_string())
                    })?;
                    if peers.iter().any(|q| q.public_key == public_key) {
                        return Err(invalid(
                            &p.public_key.span(),
                            "peer.public_key",
                            "the same key is given to two peers".to_string(),
                        ));
                    }
                    let endpoint = match &p.endpoint {
                        None => None,
                        Some(e) => Some(e.get_ref().parse::<SocketAddr>().map_err(|_| {
                            invalid(
                                &e.span(),
                                "peer.endpoint",
                                format!(
                                    "`{}` is not address:port such as 198.51.100.2:51820",
                                    e.get_ref()
                                ),
                            )
                        })?),
                    };
                    peers.push(crate::tunnel::PeerConfig {
                        port: number,
                        name: p.name.get_ref().clone(),
                        public_key,
                        endpoint,
                        keepalive: p.keepalive.filter(|k| *k > 0),
                    });
                }
                Some(TunnelConfig {
                    private_key_file: relative(&t.private_key_file),
                    listen,
                    mtu,
                    peers,
                    latency_probe: match t.latency_probe_s.unwrap_or(DEFAULT_LATENCY_PROBE_S) {
                        0 => None,
                        s => Some(std::time::Duration::from_secs(u64::from(s))),
                    },
                })
            }
        };

        let openflow = channel::parse(&raw.openflow, &invalid, &relative)?;
        let dhcp = raw
            .dhcp
            .as_ref()
            .map(|d| dhcp::parse(d, tunnel.as_ref().map(|t| t.mtu), &invalid))
            .transpose()?;
        let scheduling = scheduling::parse(&raw.scheduling, &invalid)?;

        Ok(HostConfig {
            datapath_id,
            name: raw.name.unwrap_or_else(|| format!("dp{datapath_id:x}")),
            overlay_network: Ipv4Addr::from(net),
            overlay_prefix_len: len,
            gateway_mac,
            gateway_ip,
            arp_responder: raw.overlay.arp_responder,
            overlay_ipv6,
            metrics_listen,
            flows_file,
            ports,
            tunnel,
            openflow,
            dhcp,
            control_socket: raw.control.socket.as_deref().map(relative),
            scheduling,
        })
    }
}

/// Parses a listen address: `addr:port`, or a bare port for every IPv4 address.
fn parse_listen(text: &str) -> Option<SocketAddr> {
    if let Ok(port) = text.trim().parse::<u16>() {
        return Some(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    text.trim().parse().ok()
}

/// Parses `a.b.c.d/len` into the masked network, as a number, and its length.
fn parse_prefix(text: &str) -> Option<(u32, u8)> {
    parse_ipv4_prefix(text).map(|(network, len)| (u32::from(network), len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const GOOD: &str = r#"
datapath_id = "0x2a"
name = "host-a"

[overlay]
prefix = "100.64.0.0/10"
gateway_mac = "02:5c:00:00:00:01"

[metrics]
listen = "127.0.0.1:9464"

[flows]
file = "static.flows"

[[port]]
number = 1
name = "tap-web1"

[[port]]
number = 2
name = "tap-db1"
create = false
mtu = 1420
"#;

    #[test]
    fn parses_the_annotated_example_shape() {
        let c = HostConfig::parse(GOOD, Path::new("/etc/scd/host.toml")).unwrap();
        assert_eq!(c.datapath_id, 42);
        assert_eq!(c.overlay_network, Ipv4Addr::new(100, 64, 0, 0));
        assert_eq!(c.overlay_prefix_len, 10);
        assert_eq!(c.ports.len(), 2);
        assert!(c.ports[0].create && !c.ports[1].create);
        assert_eq!(c.ports[1].mtu, Some(1420));
        assert_eq!(c.flows_file, Some(PathBuf::from("/etc/scd/static.flows")));
    }

    #[test]
    fn the_documented_example_is_valid() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/examples/host-a.toml");
        HostConfig::load(Path::new(path)).unwrap();
    }

    #[test]
    fn an_ipv6_prefix_turns_neighbour_discovery_on() {
        let c = HostConfig::parse(GOOD, Path::new("h.toml")).unwrap();
        assert_eq!(c.overlay_ipv6, None);
        let with = |prefix: &str| {
            GOOD.replacen(
                "gateway_mac = ",
                &format!("ipv6_prefix = \"{prefix}\"\ngateway_mac = "),
                1,
            )
        };
        let c = HostConfig::parse(&with("fd00:5c::/48"), Path::new("h.toml")).unwrap();
        assert_eq!(c.overlay_ipv6, Some(("fd00:5c::".parse().unwrap(), 48)));
        for bad in ["fd00:5c::/96", "100.64.0.0/10", "fd00::"] {
            let e = error_of(&with(bad));
            assert!(e.contains("`overlay.ipv6_prefix`"), "{e}");
        }
        // IPv6 needs a tunnel MTU of at least 1280; IPv4 alone does not.
        let tunnel = |mtu: u32| {
            format!("\n[tunnel]\nprivate_key_file = \"k\"\nlisten = \"51820\"\nmtu = {mtu}\n")
        };
        let e = error_of(&format!("{}{}", with("fd00:5c::/48"), tunnel(1279)));
        assert!(e.contains("`tunnel.mtu`: 1279 is below 1280"), "{e}");
        HostConfig::parse(
            &format!("{}{}", with("fd00:5c::/48"), tunnel(1280)),
            Path::new("h.toml"),
        )
        .unwrap();
        HostConfig::parse(&format!("{GOOD}{}", tunnel(1000)), Path::new("h.toml")).unwrap();
    }

    fn error_of(text: &str) -> String {
        HostConfig::parse(text, Path::new("h.toml"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn the_latency_probe_defaults_to_ten_seconds_and_zero_turns_it_off() {
        let with = |extra: &str| {
            let text =
                format!("{GOOD}\n[tunnel]\nprivate_key_file = \"k\"\nlisten = \"51820\"\n{extra}");
            HostConfig::parse(&text, Path::new("h.toml"))
                .unwrap()
                .tunnel
                .unwrap()
                .latency_probe
        };
        assert_eq!(with(""), Some(std::time::Duration::from_secs(10)));
        assert_eq!(
            with("latency_probe_s = 3\n"),
            Some(std::time::Duration::from_secs(3))
        );
        assert_eq!(with("latency_probe_s = 0\n"), None);
    }

    #[test]
    fn openflow_section() {
        let text = format!(
            "{GOOD}\n[openflow]\nlisten = \"ptcp:6653\"\ncontrollers = [\"tcp:192.0.2.10:6653\", \"tcp:[2001:db8::1]:6633\"]\nfail_mode = \"standalone\"\ninsecure_plaintext = true\n"
        );
        let c = HostConfig::parse(&text, Path::new("h.toml")).unwrap();
        assert_eq!(
            c.openflow.listen,
            [ListenAddr::Tcp("127.0.0.1:6653".parse().unwrap())]
        );
        assert_eq!(
            c.openflow.controllers,
            vec![
                ControllerAddr::Tcp("192.0.2.10:6653".parse().unwrap()),
                ControllerAddr::Tcp("[2001:db8::1]:6633".parse().unwrap())
            ]
        );
        assert_eq!(
            c.openflow.exposed_plaintext(),
            ["tcp:192.0.2.10:6653", "tcp:[2001:db8::1]:6633"]
        );
        assert_eq!(c.openflow.fail_mode, FailMode::Standalone);
        let c = HostConfig::parse(GOOD, Path::new("h.toml")).unwrap();
        assert_eq!(c.openflow, OpenflowConfig::default());
        assert_eq!(
            (c.openflow.reconnect_min, c.openflow.reconnect_max),
            (Duration::from_millis(100), Duration::from_secs(8))
        );
        let c = HostConfig::parse(
            &format!("{GOOD}\n[openflow]\nreconnect_min_ms = 20\nreconnect_max_ms = 500\n"),
            Path::new("h.toml"),
        )
        .unwrap();
        assert_eq!(
            (c.openflow.reconnect_min, c.openflow.reconnect_max),
            (Duration::from_millis(20), Duration::from_millis(500))
        );
        for (bad, says) in [
            (
                "reconnect_min_ms = 0",
                "h.toml:26: `openflow.reconnect_min_ms`: must be at least 1",
            ),
            (
                "reconnect_min_ms = 300\nreconnect_max_ms = 200",
                "h.toml:27: `openflow.reconnect_max_ms`: 200 is below reconnect_min_ms (300 ms)",
            ),
        ] {
            let e = error_of(&format!("{GOOD}\n[openflow]\n{bad}\n"));
            assert!(e.starts_with(says), "{e}");
        }
        assert_eq!(
            parse_ptcp("ptcp:6633:0.0.0.0"),
            Some("0.0.0.0:6633".parse().unwrap())
        );
        assert_eq!(
            parse_ptcp("ptcp:6633:[::1]"),
            Some("[::1]:6633".parse().unwrap())
        );
        assert_eq!(
            parse_tcp("tcp:10.0.0.1"),
            Some("10.0.0.1:6653".parse().unwrap())
        );
        for bad in [
            "6653",
            "ptcp:",
            "ptcp:x",
            "ptcp:70000",
            "tcp:6653",
            "ptcp:1:nope",
        ] {
            assert!(parse_ptcp(bad).is_none(), "{bad}");
        }
        let e = error_of(&format!("{GOOD}\n[openflow]\nlisten = \"tcp:6653\"\n"));
        assert!(e.starts_with("h.toml:26: `openflow.listen`"), "{e}");
        let e = error_of(&format!(
            "{GOOD}\n[openflow]\ncontrollers = [\n  \"tcp:1.2.3.4:1\",\n  \"ptcp:1\",\n]\n"
        ));
        assert!(e.starts_with("h.toml:28: `openflow.controllers`"), "{e}");
        let e = error_of(&format!("{GOOD}\n[openflow]\nfail_mode = \"open\"\n"));
        assert!(
            e.contains(":26: `openflow.fail_mode`: unknown fail mode"),
            "{e}"
        );
    }

    #[test]
    fn tls_needs_its_files_and_plain_text_stays_on_loopback() {
        let tls = "[openflow.tls]\nprivate_key = \"pki/host1-key.pem\"\ncertificate = \"pki/host1-cert.pem\"\nca_cert = \"/etc/sc/ca-cert.pem\"\n";
        let c = HostConfig::parse(
            &format!("{GOOD}\n[openflow]\nlisten = [\"pssl:6653\", \"ptcp:6654\"]\ncontrollers = [\"ssl:192.0.2.10:6653\", \"tcp:127.0.0.1:6633\"]\n{tls}"),
            Path::new("/etc/scd/h.toml"),
        )
        .unwrap();
        assert_eq!(
            c.openflow.listen,
            [
                ListenAddr::Ssl("0.0.0.0:6653".parse().unwrap()),
                ListenAddr::Tcp("127.0.0.1:6654".parse().unwrap())
            ]
        );
        assert_eq!(c.openflow.listen[0].to_string(), "pssl:6653:0.0.0.0");
        assert_eq!(
            c.openflow.controllers,
            [
                ControllerAddr::Ssl("192.0.2.10:6653".parse().unwrap()),
                ControllerAddr::Tcp("127.0.0.1:6633".parse().unwrap())
            ]
        );
        assert!(c.openflow.exposed_plaintext().is_empty());
        let tls = c.openflow.tls.unwrap();
        assert_eq!(
            tls.files.private_key,
            Path::new("/etc/scd/pki/host1-key.pem")
        );
        assert_eq!(tls.files.ca_cert, Path::new("/etc/sc/ca-cert.pem"));
        assert_eq!(tls.controller_name, "scc");
        assert_eq!(
            parse_passive("pssl:6653:192.0.2.1"),
            Ok(ListenAddr::Ssl("192.0.2.1:6653".parse().unwrap()))
        );

        let e = error_of(&format!("{GOOD}\n[openflow]\nlisten = \"pssl:6653\"\n"));
        assert!(
            e.contains("`openflow.listen`: pssl: and ssl: need [openflow.tls]"),
            "{e}"
        );
        let e = error_of(&format!(
            "{GOOD}\n[openflow]\ncontrollers = [\"ssl:192.0.2.10:6653\"]\n"
        ));
        assert!(
            e.contains("`openflow.controllers`: pssl: and ssl: need"),
            "{e}"
        );
        let e = error_of(&format!(
            "{GOOD}\n[openflow]\nlisten = \"ptcp:6653:0.0.0.0\"\n"
        ));
        assert!(e.contains("h.toml:26: `openflow.listen`: ptcp:6653:0.0.0.0 is OpenFlow in plain text off loopback"), "{e}");
        let e = error_of(&format!(
            "{GOOD}\n[openflow]\ncontrollers = [\"tcp:192.0.2.10:6653\"]\n"
        ));
        assert!(
            e.contains("`openflow.controllers`: tcp:192.0.2.10:6653 is OpenFlow in plain text"),
            "{e}"
        );
    }

    #[test]
    fn listeners_are_a_list_of_ptcp_and_punix_each_bounded() {
        let c = HostConfig::parse(
            &format!("{GOOD}\n[openflow]\nlisten = [\"ptcp:6653\", \"punix:/run/scd/of.sock\"]\nmax_connections = 4\nidle_timeout_s = 5\n"),
            Path::new("h.toml"),
        )
        .unwrap();
        let unix = ListenAddr::Unix(PathBuf::from("/run/scd/of.sock"));
        assert_eq!(
            c.openflow.listen,
            [
                ListenAddr::Tcp("127.0.0.1:6653".parse().unwrap()),
                unix.clone()
            ]
        );
        assert_eq!(c.openflow.max_connections, 4);
        assert_eq!(c.openflow.idle_timeout, std::time::Duration::from_secs(5));
        assert_eq!(unix.to_string(), "punix:/run/scd/of.sock");
        assert_eq!(c.openflow.listen[0].to_string(), "ptcp:6653:127.0.0.1");
        assert_eq!(
            ListenAddr::Tcp("[::1]:6633".parse().unwrap()).to_string(),
            "ptcp:6633:[::1]"
        );
        let one = HostConfig::parse(
            &format!("{GOOD}\n[openflow]\nlisten = \"punix:/run/scd/of.sock\"\n"),
            Path::new("h.toml"),
        )
        .unwrap();
        assert_eq!(one.openflow.listen, [unix]);
        assert_eq!(one.openflow.max_connections, DEFAULT_MAX_CONNECTIONS);
        assert_eq!(one.openflow.idle_timeout, DEFAULT_IDLE_TIMEOUT);

        let long = format!("punix:/{}", "s".repeat(UNIX_PATH_MAX));
        for (body, expected) in [
            ("listen = \"punix:of.sock\"", "must be absolute"),
            (&format!("listen = \"{long}\"")[..], "at most 107 bytes"),
            (
                "listen = [\"ptcp:1\", \"ptcp:1:127.0.0.1\"]",
                "ptcp:1:127.0.0.1 is listed twice",
            ),
            ("listen = [\"ptcp:1\", 2]", "`2` is not a string"),
            (
                "listen = \"unix:/x\"",
                "is not ptcp:PORT, ptcp:PORT:ADDR, pssl:PORT[:ADDR] or punix:PATH",
            ),
            (
                "max_connections = 0",
                "`openflow.max_connections`: must be at least 1",
            ),
            (
                "idle_timeout_s = 0",
                "`openflow.idle_timeout_s`: must be at least 1",
            ),
        ] {
            let e = error_of(&format!("{GOOD}\n[openflow]\n{body}\n"));
            assert!(e.starts_with("h.toml:26: `openflow."), "{e}");
            assert!(e.contains(expected), "{body}: {e}");
        }
    }

    #[test]
    fn raw_ports() {
        let text = format!(
            "{GOOD}\n[[port]]\nnumber = 3\nname = \"tap-qemu\"\ntype = \"raw\"\nnetns = \"host-b\"\n"
        );
        let c = HostConfig::parse(&text, Path::new("h.toml")).unwrap();
        let p = &c.ports[2];
        assert_eq!(p.kind, PortKind::Raw);
        assert!(!p.create);
        assert_eq!(p.netns.as_deref(), Some("host-b"));
        assert_eq!(c.ports[0].kind, PortKind::Tap);
        let explicit = text.replace("type = \"raw\"", "type = \"raw\"\ncreate = false");
        assert!(
            !HostConfig::parse(&explicit, Path::new("h.toml"))
                .unwrap()
                .ports[2]
                .create
        );
        let e = error_of(&text.replace("type = \"raw\"", "type = \"raw\"\ncreate = true"));
        assert!(
            e.starts_with("h.toml:29: `port.create`: a raw port attaches to an existing interface"),
            "{e}"
        );
        let e = error_of(&text.replace("type = \"raw\"", "type = \"raw\"\nmtu = 1420"));
        assert!(e.starts_with("h.toml:29: `port.mtu`"), "{e}");
        let uplink = text.replace(
            "type = \"raw\"",
            "type = \"raw\"\nanswer_arp = [\"198.51.100.130\", \"203.0.113.0/24\"]\nmac = \"02:5c:00:00:0a:01\"",
        );
        let p = &HostConfig::parse(&uplink, Path::new("h.toml"))
            .unwrap()
            .ports[2];
        assert_eq!(
            p.answer_arp,
            [(0xc633_6482, 32), (0xcb00_7100, 24)],
            "an address is a /32"
        );
        assert_eq!(p.mac, Some(Mac([2, 0x5c, 0, 0, 0x0a, 1])));
        let e = error_of(&uplink.replace("mac = \"02:5c:00:00:0a:01\"", ""));
        assert!(e.contains("`port.answer_arp`: answering ARP needs"), "{e}");
        let uplink6 = uplink.replace(
            "\nmac = \"02:5c",
            "\nanswer_nd = [\"2001:db8:ff::1\", \"2001:db8:100::/48\"]\nmac = \"02:5c",
        );
        let p = &HostConfig::parse(&uplink6, Path::new("h.toml"))
            .unwrap()
            .ports[2];
        let nd: Vec<(Ipv6Addr, u8)> = vec![
            ("2001:db8:ff::1".parse().unwrap(), 128),
            ("2001:db8:100::".parse().unwrap(), 48),
        ];
        assert_eq!(p.answer_nd, nd, "an address is a /128");
        let e = error_of(&uplink6.replace("2001:db8:ff::1", "198.51.100.1"));
        assert!(
            e.contains("`port.answer_nd`: `198.51.100.1` is not an IPv6"),
            "{e}"
        );
        let e = error_of(&uplink.replace("203.0.113.0/24", "203.0.113.0/40"));
        assert!(
            e.contains("`port.answer_arp`: `203.0.113.0/40` is not"),
            "{e}"
        );
        let e = error_of(&text.replace("\"raw\"", "\"socket\""));
        assert!(
            e.starts_with(
                "h.toml:28: `port.type`: unknown port type `socket` (expected \"tap\" or \"raw\")"
            ),
            "{e}"
        );
    }

    #[test]
    fn errors_name_field_and_line() {
        let e = error_of(&GOOD.replace("100.64.0.0/10", "100.64.0.0/33"));
        assert!(e.starts_with("h.toml:6: `overlay.prefix`"), "{e}");
        let e = error_of(&GOOD.replace("number = 2", "number = 1"));
        assert!(
            e.contains(":20: `port.number`: port number 1 is used twice"),
            "{e}"
        );
        let e = error_of(&GOOD.replace("name = \"host-a\"", "nmae = \"host-a\""));
        assert!(e.starts_with("h.toml:3:1: unknown field `nmae`"), "{e}");
        let e = error_of(&GOOD.replace("mtu = 1420", "mtu = \"big\""));
        assert!(e.starts_with("h.toml:23:7: invalid type"), "{e}");
        let e = error_of(&GOOD.replace("02:5c:00:00:00:01", "03:5c:00:00:00:01"));
        assert!(
            e.contains("`overlay.gateway_mac`: 03:5c:00:00:00:01 is a group address"),
            "{e}"
        );
        let e = error_of(&GOOD.replace("tap-db1", "a-name-that-is-too-long"));
        assert!(e.contains(":21: `port.name`"), "{e}");
    }

    #[test]
    fn a_vm_port_is_bound_to_its_mac_and_addresses() {
        let bound = GOOD.replace(
            "name = \"tap-web1\"",
            "name = \"tap-web1\"\nvm_mac = \"02:00:00:00:00:0a\"\nvm_ips = [\"100.64.0.10\", \"100.64.0.11\"]",
        );
        let c = HostConfig::parse(&bound, Path::new("h.toml")).unwrap();
        let b = c.ports[0].binding.as_ref().expect("bound");
        assert_eq!(b.mac(), Mac([2, 0, 0, 0, 0, 0x0a]));
        assert_eq!(
            b.ips().collect::<Vec<_>>(),
            [Ipv4Addr::new(100, 64, 0, 10), Ipv4Addr::new(100, 64, 0, 11)]
        );
        assert_eq!(c.ports[1].binding, None, "no vm_mac: unbound, as before");
        let e = error_of(&bound.replace("vm_mac = \"02:00:00:00:00:0a\"\n", ""));
        assert!(e.contains(":18: `port.vm_ips`: a port is bound"), "{e}");
        let e = error_of(&bound.replace("100.64.0.11", "100.64.0.300"));
        assert!(e.contains("`port.vm_ips`: `100.64.0.300` is not"), "{e}");
        let e = error_of(&bound.replace("02:00:00:00:00:0a", "ff:ff:ff:ff:ff:ff"));
        assert!(
            e.contains("`port.vm_mac`: ff:ff:ff:ff:ff:ff is not a unicast"),
            "{e}"
        );
        let uplink = bound.replace(
            "vm_ips = [",
            "answer_arp = [\"198.51.100.130\"]\nmac = \"02:5c:00:00:0a:01\"\nvm_ips = [",
        );
        let e = error_of(&uplink);
        assert!(
            e.contains("`port.answer_arp`: a gateway's uplink keeps its own rules"),
            "{e}"
        );
    }
}
