//! IPv6 link control of VM ports on the switch thread: neighbour discovery and
//! multicast listener discovery that a VM port's frame carries are answered here
//! (neighbour and router solicitations, by `dataplane_core::nd`'s responder when
//! the overlay carries IPv6) and never go on to the tables, so they never cross
//! a tunnel; VM ports are also sent unsolicited router advertisements now and
//! then, and their bindings admit the address SLAAC gives their MAC. A
//! gateway's uplink with `answer_nd` answers the router's neighbour
//! solicitations for its own address and public IPv6 prefix here too, and its
//! other link control goes no further; tunnels keep their own rules.

use super::guards::PortGuards;
use super::output::Egress;
use super::ports::send_local;
use dataplane_core::nd::{self, NdResponder, PortNdResponder};
use dataplane_core::offload::VnetHdr;
use openflow::flow::{FlowKey, Mac, PortNo};
use std::time::{Duration, Instant};

/// The all-nodes multicast MAC (`33:33:00:00:00:01`).
const ALL_NODES_MAC: Mac = Mac([0x33, 0x33, 0, 0, 0, 1]);

/// What a switch's IPv6 link control answers with.
#[derive(Debug, Default)]
pub struct LinkParams {
    /// The VM ports' neighbour discovery, when the overlay carries IPv6.
    pub vm: Option<NdResponder>,
    /// Ports that answer neighbour solicitations of their own (a gateway's
    /// uplink), by port number.
    pub ports: Vec<(PortNo, PortNdResponder)>,
}

/// The switch thread's IPv6 link control of its VM ports and uplinks (each
/// forwarding worker answers on its own queues; worker 0 sends the
/// advertisements).
#[derive(Clone, Debug)]
pub(super) struct VmLinkControl {
    responder: Option<NdResponder>,
    ports: Vec<(PortNo, PortNdResponder)>,
    /// When VM ports are next sent an unsolicited router advertisement.
    next_advertisement: Option<Instant>,
    /// The answer being sent (made on the switch thread, never allocated).
    out: [u8; nd::MAX_REPLY_FRAME],
}

impl VmLinkControl {
    /// Link control answering with `responder` (`None`: the overlay carries
    /// no IPv6; link control is then dropped unanswered). `guards` learn the
    /// prefix VMs autoconfigure from.
    pub(super) fn new(params: LinkParams, guards: &mut PortGuards) -> VmLinkControl {
        let responder = params.vm;
        guards.set_slaac_prefix(responder.map(|r| r.slaac_prefix()));
        VmLinkControl {
            responder,
            ports: params.ports,
            next_advertisement: None,
            out: [0; nd::MAX_REPLY_FRAME],
        }
    }

    /// True when `frame`, which the port at `idx` received (parsed into `key`),
    /// is a VM port's or an answering uplink's link control: answered (the
    /// answer sent back out of the port) or dropped; either way it goes no
    /// further.
    #[inline]
    pub(super) fn consumed(
        &mut self,
        (guards, egress, idx, key): (&PortGuards, &Egress, usize, &FlowKey),
        frame: &[u8],
    ) -> bool {
        if !nd::is_link_control(key) {
            return false;
        }
        let out = &mut self.out;
        if !guards.is_vm_port(idx) {
            let number = egress.ports[idx].number;
            let Some((_, uplink)) = self.ports.iter().find(|(port, _)| *port == number) else {
                return false;
            };
            if let Some(len) = uplink.reply(key, frame, out) {
                egress.shared.counters.nd_replies.add(1);
                send_local(&egress.ports, idx, &VnetHdr::NONE, &out[..len]);
            }
            return true;
        }
        if let Some(len) = self.responder.and_then(|r| r.reply(key, frame, out)) {
            egress.shared.counters.nd_replies.add(1);
            send_local(&egress.ports, idx, &VnetHdr::NONE, &out[..len]);
        }
        true
    }

    /// Sends every VM port an unsolicited router advertisement when one is due
    /// (at start, then every [`nd::ADVERTISE_EVERY_S`] seconds).
    pub(super) fn tick(&mut self, now: Instant, guards: &PortGuards, egress: &Egress) {
        let Some(responder) = self.responder else {
            return;
        };
        if self.next_advertisement.is_some_and(|next| now < next) {
            return;
        }
        self.next_advertisement = Some(now + Duration::from_secs(nd::ADVERTISE_EVERY_S));
        let out = &mut self.out;
        let Some(len) = responder.router_advertisement(ALL_NODES_MAC, nd::ALL_NODES, out) else {
            return;
        };
        for idx in (0..egress.ports.len()).filter(|&idx| guards.is_vm_port(idx)) {
            send_local(&egress.ports, idx, &VnetHdr::NONE, &out[..len]);
        }
    }
}
