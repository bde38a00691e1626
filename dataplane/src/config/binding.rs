//! The `vm_mac` and `vm_ips` fields of a `[[port]]`: the VM a port is bound to
//! (port security, `dataplane_core::port_security`). This module only reads and
//! checks them; the switch applies the binding.

use super::{ConfigError, RawPort};
use dataplane_core::port_security::PortBinding;
use openflow::flow::Mac;
use std::net::Ipv4Addr;
use std::ops::Range;

/// The binding a port's fields describe: none without `vm_mac`.
pub(super) fn parse(
    p: &RawPort,
    invalid: &dyn Fn(&Range<usize>, &str, String) -> ConfigError,
) -> Result<Option<PortBinding>, ConfigError> {
    let Some(vm_mac) = &p.vm_mac else {
        return match p.vm_ips.first() {
            None => Ok(None),
            Some(ip) => Err(invalid(
                &ip.span(),
                "port.vm_ips",
                "a port is bound to its VM's addresses together with its `vm_mac`".into(),
            )),
        };
    };
    if let Some(a) = p.answer_arp.first() {
        return Err(invalid(
            &a.span(),
            "port.answer_arp",
            "a gateway's uplink keeps its own rules and is not bound to a VM: \
             drop `vm_mac` and `vm_ips` here"
                .into(),
        ));
    }
    let mac: Mac = vm_mac
        .get_ref()
        .parse()
        .map_err(|e| invalid(&vm_mac.span(), "port.vm_mac", format!("{e}")))?;
    let mut ips = Vec::with_capacity(p.vm_ips.len());
    for ip in &p.vm_ips {
        ips.push(ip.get_ref().parse::<Ipv4Addr>().map_err(|_| {
            invalid(
                &ip.span(),
                "port.vm_ips",
                format!("`{}` is not an IPv4 address", ip.get_ref()),
            )
        })?);
    }
    if ips.len() > openflow::wire::MAX_BOUND_IPS {
        return Err(invalid(
            &vm_mac.span(),
            "port.vm_ips",
            format!(
                "at most {} addresses per port",
                openflow::wire::MAX_BOUND_IPS
            ),
        ));
    }
    PortBinding::new(mac, &ips)
        .map(Some)
        .map_err(|e| invalid(&vm_mac.span(), "port.vm_mac", e.to_string()))
}
