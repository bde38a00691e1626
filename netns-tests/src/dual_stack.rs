//! What the dual-stack tests share: the overlay's IPv6 prefix and anycast
//! gateway address they use, and waiting for a VM's SLAAC address.

use crate::Vm;
use anyhow::Result;
use std::time::Duration;

/// The overlay IPv6 prefix of the dual-stack tests (`overlay_ipv6_prefix`).
pub const OVERLAY_IPV6_PREFIX: &str = "fd00:5c::/48";
/// The anycast gateway's link-local address (from `02:5c:00:00:00:01`): the
/// dual-stack VMs' default router.
pub const GATEWAY_LINK_LOCAL: &str = "fe80::5c:ff:fe00:1";

/// Waits until `ifname` of `vm` holds the IPv6 address `addr`/64 (as SLAAC
/// makes it), past duplicate address detection.
pub fn wait_ipv6_address(vm: &Vm, ifname: &str, addr: &str) -> Result<()> {
    let wanted = format!("{addr}/64");
    crate::wait_until(
        Duration::from_secs(30),
        &format!("{addr} on {ifname}"),
        || {
            let out = vm.ns.ip(&["-6", "addr", "show", "dev", ifname])?;
            Ok(out
                .lines()
                .any(|l| l.contains(&wanted) && !l.contains("tentative")))
        },
    )?;
    Ok(())
}
