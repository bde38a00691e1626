//! Port security on the switch thread: which local port is bound to which VM
//! (from the host configuration at start, from the controller's bind-port
//! messages at run time) and the check of each frame a bound port receives, before
//! the ARP responder and the tables see it. Refused frames are counted per port
//! and reason and go no further. Tunnel ports and a gateway's uplinks (ports with
//! ARP answers of their own) are never bound: they keep their own rules (the
//! tunnels' allowed sources, the gateway's flows). The verdict itself is
//! `dataplane_core::port_security`'s; this module never forwards anything.

use super::counters::PortCounters;
use super::ports::{Port, PortIo};
use dataplane_core::packet::parse;
use dataplane_core::port_security::PortBinding;
use openflow::flow::PortNo;
use std::net::Ipv6Addr;

/// Why a port cannot take a binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BindRefused {
    /// The switch has no such port.
    #[error("port {0} does not exist")]
    NoSuchPort(PortNo),
    /// A tunnel port or a gateway's uplink: not a VM's port.
    #[error("port {0} is a tunnel or an uplink, not a VM's port")]
    NotAVmPort(PortNo),
    /// Another forwarding worker did not take the binding: every worker went
    /// back to the port's previous one.
    #[error("forwarding worker {worker} did not take the binding of port {port} ({why}); every worker kept the previous one")]
    Worker {
        /// The worker that refused.
        worker: usize,
        /// The port.
        port: PortNo,
        /// Why it refused.
        why: &'static str,
    },
}

/// The binding of every port, by index into the switch's ports (each
/// forwarding worker has its copy, kept the same by worker 0).
#[derive(Clone, Debug, Default)]
pub(super) struct PortGuards {
    bindings: Vec<Option<PortBinding>>,
    bindable: Vec<bool>,
    /// The /64 the overlay's VMs autoconfigure IPv6 addresses from, if it
    /// carries IPv6: each binding admits the address its MAC gets there.
    slaac_prefix: Option<Ipv6Addr>,
}

impl PortGuards {
    /// Guards for `ports`, of which those at `uplinks` are never bound, with the
    /// bindings the configuration gives.
    pub(super) fn new(
        ports: &[Port],
        uplinks: &[usize],
        initial: Vec<(PortNo, PortBinding)>,
    ) -> Result<PortGuards, BindRefused> {
        let mut guards = PortGuards {
            bindings: vec![None; ports.len()],
            bindable: ports
                .iter()
                .enumerate()
                .map(|(i, p)| !matches!(p.io, PortIo::Tunnel(_)) && !uplinks.contains(&i))
                .collect(),
            slaac_prefix: None,
        };
        for (port, binding) in initial {
            guards.bind(ports, port, Some(binding))?;
        }
        Ok(guards)
    }

    /// Binds `port` to `binding` (`None`: unbinds it).
    pub(super) fn bind(
        &mut self,
        ports: &[Port],
        port: PortNo,
        binding: Option<PortBinding>,
    ) -> Result<(), BindRefused> {
        let idx = ports
            .iter()
            .position(|p| p.number == port)
            .ok_or(BindRefused::NoSuchPort(port))?;
        if !self.bindable[idx] {
            return Err(BindRefused::NotAVmPort(port));
        }
        self.bindings[idx] = binding.map(|b| self.with_slaac(b));
        Ok(())
    }

    /// Sets the /64 VMs autoconfigure IPv6 addresses from (`None`: the overlay
    /// carries no IPv6); every binding then admits its MAC's address there.
    pub(super) fn set_slaac_prefix(&mut self, prefix: Option<Ipv6Addr>) {
        self.slaac_prefix = prefix;
        let bindings = std::mem::take(&mut self.bindings);
        self.bindings = bindings
            .into_iter()
            .map(|b| b.map(|b| self.with_slaac(b)))
            .collect();
    }

    /// `binding` admitting the address SLAAC gives its MAC, when the overlay
    /// carries IPv6.
    fn with_slaac(&self, binding: PortBinding) -> PortBinding {
        match self.slaac_prefix {
            Some(prefix) => {
                let slaac = dataplane_core::nd::slaac_address(prefix, binding.mac());
                binding.with_ipv6(&[slaac])
            }
            None => binding,
        }
    }

    /// True when the port at `idx` is a VM's (neither a tunnel nor an uplink).
    #[inline]
    pub(super) fn is_vm_port(&self, idx: usize) -> bool {
        self.bindable.get(idx).copied().unwrap_or(false)
    }

    /// The binding of the port at `idx`, if it is bound.
    #[inline]
    pub(super) fn binding(&self, idx: usize) -> Option<&PortBinding> {
        self.bindings.get(idx)?.as_ref()
    }

    /// Guards a port appended to the switch's ports (a VM port: bindable).
    pub(super) fn push(&mut self, binding: Option<PortBinding>) {
        let binding = binding.map(|b| self.with_slaac(b));
        self.bindings.push(binding);
        self.bindable.push(true);
    }

    /// Forgets the port at `idx`; the ports after it move down by one.
    pub(super) fn remove(&mut self, idx: usize) {
        if idx < self.bindings.len() {
            self.bindings.remove(idx);
            self.bindable.remove(idx);
        }
    }

    /// True when the frame port `idx` received may go on; a refused one is
    /// counted in `counters`. A frame that does not parse goes on: the switch
    /// counts it as malformed and drops it anyway.
    #[inline]
    pub(super) fn admits(
        &self,
        idx: usize,
        in_port: PortNo,
        frame: &[u8],
        counters: &PortCounters,
    ) -> bool {
        let Some(Some(binding)) = self.bindings.get(idx) else {
            return true;
        };
        let Ok((key, layout)) = parse(frame, in_port) else {
            return true;
        };
        match binding.check(&key, &layout, frame) {
            Ok(()) => true,
            Err(reason) => {
                counters.spoofed[reason.index()].add(1);
                false
            }
        }
    }
}
