//! Ports at run time, from the host: the local management socket (`[control]
//! socket`, a Unix stream socket of mode 0600) through which `scd port add`,
//! `scd port del` and `scd port list` change and show the ports of the running
//! switch, one JSON request and one JSON reply per line.
//!
//! This module owns the request and reply types, opening a port's device (the
//! same way for the host configuration's ports at start and for added ones), and
//! the client side. Opening happens on the connection's thread, never on the
//! forwarding thread, which only takes the open device between two rounds
//! ([`SwitchHandle::add_port`]). After start `scd` holds `CAP_NET_ADMIN` and
//! `CAP_NET_RAW` only, so a port can be added in its own namespace (TAPs and raw
//! ports alike) but not inside another one, which needs `CAP_SYS_ADMIN`: that is
//! refused with the way around it. It never changes the tables.

mod server;

pub use server::{serve, ControlServer, MAX_CONTROL_CONNECTIONS};

use crate::config::PortKind;
use crate::io::rawport::RawPort;
use crate::io::tap::{LinkProbe, Tap};
use crate::switch::{LocalPort, NewPort, SwitchHandle};
use dataplane_core::port_security::PortBinding;
use openflow::flow::{Mac, PortNo};
use serde::{Deserialize, Serialize};
use std::io::{self, BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Longest request or reply line, in bytes.
pub const MAX_LINE: u64 = 64 * 1024;

/// A request to the management socket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Open a device and add it as a port.
    Add(PortSpec),
    /// Remove a port, by number or by name.
    Del {
        /// Its OpenFlow number.
        #[serde(default)]
        ofport: Option<PortNo>,
        /// Its interface name.
        #[serde(default)]
        name: Option<String>,
    },
    /// Every port and its state.
    List,
}

/// A port to add, as `[[port]]` in the host configuration describes one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    /// Interface name (at most 15 bytes).
    pub name: String,
    /// `tap` or `raw`.
    pub kind: String,
    /// OpenFlow port number.
    pub ofport: PortNo,
    /// TAP only: create the device (removed when the port is), or attach to an
    /// existing persistent one.
    #[serde(default = "yes")]
    pub create: bool,
    /// MTU to set on a TAP.
    #[serde(default)]
    pub mtu: Option<u32>,
    /// The namespace the interface lives in, when not `scd`'s.
    #[serde(default)]
    pub netns: Option<String>,
    /// The VM's MAC: binds the port to it (port security).
    #[serde(default)]
    pub vm_mac: Option<String>,
    /// The VM's addresses (with `vm_mac`).
    #[serde(default)]
    pub vm_ips: Vec<Ipv4Addr>,
}

fn yes() -> bool {
    true
}

/// A reply from the management socket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Reply {
    /// Done; the ports as they are now.
    Ok {
        /// Every port of the switch.
        ports: Vec<PortRow>,
    },
    /// Refused; nothing changed.
    Error {
        /// Why, in words for the operator.
        error: String,
    },
}

/// One port as `scd port list` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRow {
    /// OpenFlow number.
    pub ofport: PortNo,
    /// Interface (or tunnel) name.
    pub name: String,
    /// `up`, or `down` when the interface is down or has no carrier.
    pub link: String,
    /// `OFPPC_*` bits (administratively down, or set by port-mod).
    pub config: u32,
    /// Frames received.
    pub rx_packets: u64,
    /// Frames sent.
    pub tx_packets: u64,
}

/// Opens the device of a local port (in namespace `netns` when given), with one
/// queue per forwarding worker of this process, and a probe of its link. A
/// probe that cannot be made leaves the port reported up.
pub fn open_local(
    name: &str,
    kind: PortKind,
    netns: Option<&str>,
    create: bool,
    mtu: Option<u32>,
) -> anyhow::Result<(LocalPort, Option<LinkProbe>)> {
    let queues = crate::scheduling::chosen().workers;
    let local = match kind {
        PortKind::Tap => LocalPort::Tap(Tap::open_port(name, netns, create, mtu, queues)?),
        PortKind::Raw => LocalPort::Raw(RawPort::open(name, netns, queues)?),
    };
    let probe = match LinkProbe::open(name, netns) {
        Ok(probe) => Some(probe),
        Err(e) => {
            tracing::warn!(port = name, "link state not watched (reported up): {e}");
            None
        }
    };
    Ok((local, probe))
}

/// Turns a request's port into an open one, or says why not.
pub fn open_spec(spec: &PortSpec) -> Result<NewPort, String> {
    let kind = match spec.kind.as_str() {
        "tap" => PortKind::Tap,
        "raw" => PortKind::Raw,
        other => return Err(format!("kind `{other}`: a port is `tap` or `raw`")),
    };
    let binding = match &spec.vm_mac {
        None if !spec.vm_ips.is_empty() => {
            return Err("vm_ips without vm_mac: a binding needs the VM's MAC".into())
        }
        None => None,
        Some(mac) => {
            let mac: Mac = mac.parse().map_err(|e| format!("vm_mac `{mac}`: {e}"))?;
            Some(PortBinding::new(mac, &spec.vm_ips).map_err(|e| format!("vm_ips: {e}"))?)
        }
    };
    let create = spec.create && kind == PortKind::Tap;
    let (local, probe) = open_local(&spec.name, kind, spec.netns.as_deref(), create, spec.mtu)
        .map_err(|e| {
            let denied = e
                .chain()
                .filter_map(|c| c.downcast_ref::<io::Error>())
                .any(|io| io.kind() == io::ErrorKind::PermissionDenied);
            match &spec.netns {
                Some(ns) if denied => format!(
                    "port {} ({}): entering namespace {ns} needs CAP_SYS_ADMIN, which scd gave up \
                     after start; add the port in scd's namespace and move the device \
                     (`ip link set {} netns {ns}`), or list it in the host configuration",
                    spec.ofport, spec.name, spec.name
                ),
                _ => format!("port {} ({}): {e:#}", spec.ofport, spec.name),
            }
        })?;
    Ok(NewPort {
        number: spec.ofport,
        local,
        probe,
        binding,
    })
}

/// The ports of the running switch, as `list` shows them.
pub fn port_rows(handle: &SwitchHandle) -> Vec<PortRow> {
    handle
        .shared
        .ports()
        .iter()
        .map(|p| {
            let state = p.link.state();
            PortRow {
                ofport: p.number,
                name: p.name.clone(),
                link: if state.link_down { "down" } else { "up" }.into(),
                config: state.config,
                rx_packets: p.counters.rx_packets.get(),
                tx_packets: p.counters.tx_packets.get(),
            }
        })
        .collect()
}

/// Sends one request to the management socket at `path` and returns its reply.
pub fn ask(path: &Path, request: &Request) -> io::Result<Reply> {
    let mut stream = UnixStream::connect(path)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    let mut reply = String::new();
    BufReader::new(io::Read::take(&stream, MAX_LINE)).read_line(&mut reply)?;
    serde_json::from_str(&reply).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_read_as_documented() {
        let add: Request = serde_json::from_str(
            r#"{"op":"add","name":"vm-web1","kind":"tap","ofport":3,"vm_mac":"02:00:00:00:00:01","vm_ips":["100.64.0.10"]}"#,
        )
        .unwrap();
        let Request::Add(spec) = add else {
            panic!("not an add")
        };
        assert!(spec.create && spec.netns.is_none());
        assert_eq!(spec.vm_ips, vec![Ipv4Addr::new(100, 64, 0, 10)]);
        let del: Request = serde_json::from_str(r#"{"op":"del","ofport":3}"#).unwrap();
        assert_eq!(
            del,
            Request::Del {
                ofport: Some(3),
                name: None
            }
        );
        assert!(serde_json::from_str::<Request>(r#"{"op":"add","name":"x"}"#).is_err());
    }

    #[test]
    fn a_bad_spec_is_refused_before_any_device_is_opened() {
        let spec = |kind: &str, mac: Option<&str>, ips: Vec<Ipv4Addr>| PortSpec {
            name: "never-opened".into(),
            kind: kind.into(),
            ofport: 3,
            create: true,
            mtu: None,
            netns: None,
            vm_mac: mac.map(Into::into),
            vm_ips: ips,
        };
        let err = |s: PortSpec| open_spec(&s).err().unwrap_or_default();
        assert!(err(spec("veth", None, vec![])).contains("`tap` or `raw`"));
        assert!(err(spec("tap", None, vec![Ipv4Addr::new(100, 64, 0, 1)])).contains("vm_mac"));
        assert!(err(spec("tap", Some("nope"), vec![])).contains("vm_mac `nope`"));
    }
}
