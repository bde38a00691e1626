//! The `[dhcp]` section: the DHCP server `scd` runs on its VM ports (DNS servers,
//! lease time, the MTU it tells clients). This module only reads and checks it;
//! each lease itself comes from the port's binding (`vm_mac`, `vm_ips`), and the
//! switch answers (`dataplane_core::dhcp`).

use super::ConfigError;
use dataplane_core::dhcp::{DEFAULT_LEASE_SECS, MAX_DNS_SERVERS};
use serde::Deserialize;
use std::net::Ipv4Addr;
use std::ops::Range;
use toml::Spanned;

/// MTU told to clients on a host without tunnels.
pub const UNTUNNELLED_MTU: u16 = 1500;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDhcp {
    #[serde(default)]
    dns: Vec<Spanned<String>>,
    lease_s: Option<Spanned<u32>>,
    mtu: Option<Spanned<u32>>,
}

/// What the DHCP server of the VM ports gives every client besides its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpConfig {
    /// DNS servers (option 6), at most `MAX_DNS_SERVERS`.
    pub dns: Vec<Ipv4Addr>,
    /// Lease time, seconds.
    pub lease_secs: u32,
    /// Interface MTU (option 26): `mtu` when given, else the tunnel's inner MTU
    /// (so that a VM never sends what a tunnel must refuse), else 1500.
    pub mtu: u16,
}

/// The section, checked; `tunnel_mtu` is the tunnels' inner MTU when the host
/// has tunnels.
pub(super) fn parse(
    raw: &RawDhcp,
    tunnel_mtu: Option<usize>,
    invalid: &dyn Fn(&Range<usize>, &str, String) -> ConfigError,
) -> Result<DhcpConfig, ConfigError> {
    let mut dns = Vec::with_capacity(raw.dns.len());
    for d in &raw.dns {
        let ip: Ipv4Addr = d.get_ref().parse().map_err(|_| {
            invalid(
                &d.span(),
                "dhcp.dns",
                format!("`{}` is not an IPv4 address", d.get_ref()),
            )
        })?;
        dns.push(ip);
    }
    if let Some(extra) = raw.dns.get(MAX_DNS_SERVERS) {
        return Err(invalid(
            &extra.span(),
            "dhcp.dns",
            format!("at most {MAX_DNS_SERVERS} DNS servers"),
        ));
    }
    let lease_secs = match &raw.lease_s {
        Some(l) if *l.get_ref() < 60 => {
            return Err(invalid(
                &l.span(),
                "dhcp.lease_s",
                format!("{} s is too short a lease (at least 60)", l.get_ref()),
            ))
        }
        Some(l) => *l.get_ref(),
        None => DEFAULT_LEASE_SECS,
    };
    let default_mtu = tunnel_mtu
        .and_then(|m| u16::try_from(m).ok())
        .unwrap_or(UNTUNNELLED_MTU);
    let mtu = match &raw.mtu {
        Some(m) if !(576..=65_535).contains(m.get_ref()) => {
            return Err(invalid(
                &m.span(),
                "dhcp.mtu",
                format!("{} is outside 576..=65535", m.get_ref()),
            ))
        }
        Some(m) if tunnel_mtu.is_some_and(|t| *m.get_ref() as usize > t) => {
            return Err(invalid(
                &m.span(),
                "dhcp.mtu",
                format!(
                "{} is larger than the tunnels' MTU {}: VMs would send packets the tunnels refuse",
                m.get_ref(),
                tunnel_mtu.unwrap_or_default()
            ),
            ))
        }
        Some(m) => u16::try_from(*m.get_ref()).unwrap_or(UNTUNNELLED_MTU),
        None => default_mtu,
    };
    Ok(DhcpConfig {
        dns,
        lease_secs,
        mtu,
    })
}
