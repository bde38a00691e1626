//! The overlay's IPv6 side: the deployment's unique local prefix
//! (`overlay_ipv6_prefix`) and each VM's IPv6 addresses: the one SLAAC derives
//! from its MAC (the prefix's first /64 plus the MAC's EUI-64), which a guest
//! that autoconfigures from `scd`'s router advertisements ends up with, the
//! VM's own address when the inventory gives one (its primary address then),
//! and its public IPv6 address, which a gateway's public IPv6 prefix holds and
//! which is routed like the others, no NAT (docs/gateway.md#ipv6). Only rules
//! and derivations; no I/O.

use std::net::Ipv6Addr;

use super::{Inventory, Vm};

/// Longest overlay IPv6 prefix: SLAAC needs a /64 inside it.
pub const MAX_OVERLAY_IPV6_LEN: u8 = 64;

/// An `overlay_ipv6_prefix`: a unique local (`fc00::/7`) network of length at
/// most 64, no bits set past its length.
pub fn overlay_ipv6_prefix(text: &str) -> Result<(Ipv6Addr, u8), String> {
    let (net, len) = config_support::parse_ipv6_prefix(text)
        .ok_or_else(|| format!("`{text}` is not an IPv6 prefix such as fd00:5c::/48"))?;
    if text
        .split_once('/')
        .and_then(|(a, _)| a.trim().parse::<Ipv6Addr>().ok())
        != Some(net)
    {
        return Err(format!(
            "`{text}` has address bits set past its length (the network is {net}/{len})"
        ));
    }
    if len > MAX_OVERLAY_IPV6_LEN {
        return Err(format!(
            "{net}/{len} is longer than /{MAX_OVERLAY_IPV6_LEN} (SLAAC needs a /64 inside it)"
        ));
    }
    if len < 7 || u128::from(net) >> 121 != 0xfc >> 1 {
        return Err(format!(
            "{net}/{len} is not a unique local prefix (inside fc00::/7)"
        ));
    }
    Ok((net, len))
}

impl Inventory {
    /// True when `ip` lies in the overlay's IPv6 prefix (never without one).
    pub fn in_overlay_ipv6(&self, ip: Ipv6Addr) -> bool {
        self.overlay_ipv6.is_some_and(|(net, len)| {
            u128::from(ip) & config_support::prefix_mask128(len) == u128::from(net)
        })
    }

    /// The primary IPv6 address of `vm`: its own, or the one SLAAC gives its
    /// MAC in the overlay's first /64; `None` when the overlay has no IPv6
    /// prefix.
    pub fn vm_ipv6(&self, vm: &Vm) -> Option<Ipv6Addr> {
        vm_ipv6_addresses(self.overlay_ipv6, vm)
            .take_while(|ip| Some(*ip) != vm.public_ipv6)
            .last()
    }

    /// Every IPv6 address of `vm`, each routed to it: the one SLAAC gives its
    /// MAC, then its own if it has one, then its public one if it has one; none
    /// when the overlay has no IPv6 prefix.
    pub fn vm_ipv6_addresses(&self, vm: &Vm) -> impl Iterator<Item = Ipv6Addr> {
        vm_ipv6_addresses(self.overlay_ipv6, vm)
    }

    /// `vm` as the API shows it: its fields and, when the overlay carries
    /// IPv6, its primary overlay address as `overlay_ipv6` (its public one is
    /// the field `public_ipv6`).
    pub fn vm_json(&self, vm: &Vm) -> serde_json::Value {
        let mut json = serde_json::to_value(vm).unwrap_or_default();
        if let Some(ip) = self.vm_ipv6(vm) {
            json["overlay_ipv6"] = serde_json::Value::String(ip.to_string());
        }
        json
    }

    /// Why `vm`'s own IPv6 address (if it has one) cannot be used: the
    /// overlay has no IPv6 prefix, the address lies outside it, or it is not a
    /// unicast address a VM can hold.
    pub(super) fn ipv6_refusal(&self, vm: &Vm) -> Option<String> {
        let ip = vm.ipv6?;
        let Some((net, len)) = self.overlay_ipv6 else {
            return Some(format!(
                "{ip}: the overlay has no IPv6 prefix (set `overlay_ipv6_prefix`)"
            ));
        };
        if !self.in_overlay_ipv6(ip) {
            return Some(format!("{ip} is outside the overlay {net}/{len}"));
        }
        if u128::from(ip) == u128::from(net) || ip.is_multicast() {
            return Some(format!("{ip} is not a unicast address a VM can hold"));
        }
        None
    }

    /// Why `vm`'s public IPv6 address (if it has one) cannot be used: the
    /// overlay has no IPv6 prefix (VMs then have no IPv6 at all), no gateway's
    /// `public_ipv6_prefix` holds it, or it is not a unicast address.
    pub(super) fn public_ipv6_refusal(&self, vm: &Vm) -> Option<String> {
        let ip = vm.public_ipv6?;
        if self.overlay_ipv6.is_none() {
            return Some(format!(
                "{ip}: the overlay has no IPv6 prefix (set `overlay_ipv6_prefix`)"
            ));
        }
        if ip.is_multicast() || ip.is_unspecified() || ip.is_loopback() {
            return Some(format!("{ip} is not a unicast address a VM can hold"));
        }
        let serving: Vec<_> = self
            .gateways
            .values()
            .filter(|g| g.serves_ipv6(ip))
            .collect();
        if serving.is_empty() {
            return Some(format!("{ip} lies in no gateway's `public_ipv6_prefix`"));
        }
        if serving.iter().any(|g| {
            g.public_ipv6_prefix.is_some_and(|(net, _)| net == ip) || g.address6 == Some(ip)
        }) {
            return Some(format!(
                "{ip} is a gateway's own address or its prefix's network address"
            ));
        }
        None
    }
}

/// Every IPv6 address of `vm` in an overlay with IPv6 prefix `overlay` (see
/// [`Inventory::vm_ipv6_addresses`]): for indexes that keep the prefix rather
/// than the inventory.
pub(crate) fn vm_ipv6_addresses(
    overlay: Option<(Ipv6Addr, u8)>,
    vm: &Vm,
) -> impl Iterator<Item = Ipv6Addr> + use<> {
    let slaac = overlay.map(|(net, _)| dataplane_core::nd::slaac_address(net, vm.mac));
    let own = vm.ipv6.filter(|ip| slaac.is_some_and(|s| s != *ip));
    let public = vm.public_ipv6.filter(|_| slaac.is_some());
    slaac.into_iter().chain(own).chain(public)
}
