//! The output side of one packet's actions: local ports, tunnels (with path MTU
//! answers), the controller, flooding.

use super::counters::SwitchShared;
use super::handoff::Crew;
use super::packet_in::{packet_in_meta, Classified, PacketInSender};
use super::ports::{send_local, Port, PortIo};
use crate::tunnel::{Sent, Tunnels};
use dataplane_core::icmp6::packet_too_big;
use dataplane_core::offload::{finish_partial_checksum, Segments, VnetHdr};
use dataplane_core::packet::ETH_HLEN;
use openflow::flow::{ethertype, port, Action, Mac, PortNo};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// What every output of the switch thread reaches: the ports, the counters shared
/// with other threads, the overlay gateway's identity (for ICMP answers) and the
/// packet-in channel. Tunnels are apart: sending into one needs them mutably.
#[derive(Debug)]
pub(super) struct Egress {
    pub(super) ports: Vec<Port>,
    pub(super) shared: Arc<SwitchShared>,
    pub(super) gateway_mac: Mac,
    pub(super) gateway_ip: Ipv4Addr,
    pub(super) packet_in: Option<PacketInSender>,
}

/// The output side of one packet's actions.
pub(super) struct Output<'a> {
    pub(super) egress: &'a Egress,
    pub(super) tunnels: &'a mut Option<Tunnels>,
    pub(super) icmp: &'a mut [u8; 14 + 20 + 8 + 60 + 8],
    /// Room for one segment of a super-frame bound for a tunnel.
    pub(super) segment: &'a mut [u8],
    /// The virtio-net header of the frame being output.
    pub(super) offload: VnetHdr,
    /// Index of the input port (`usize::MAX` for none, as in a packet-out).
    pub(super) in_idx: usize,
    /// The tables and what the packet hit (none for a packet-out).
    pub(super) classified: Option<Classified<'a>>,
    pub(super) in_port: PortNo,
    /// With several workers: the rings to the owners of the tunnel peers this
    /// worker does not own (`None`: every frame is for a peer of its own).
    pub(super) to_owner: Option<&'a mut Crew>,
}

impl Output<'_> {
    /// Sends `bytes` to the controller, as the output to the controller at place
    /// `nth` among the actions' (see [`packet_in_meta`]).
    pub(super) fn controller(&mut self, bytes: &[u8], nth: usize) {
        let c = &self.egress.shared.counters;
        c.to_controller.add(1);
        let in_port = self.egress.ports.get(self.in_idx);
        if in_port.is_some_and(|p| p.info.link.no_packet_in()) {
            return;
        }
        let Some(sender) = self.egress.packet_in.as_ref() else {
            c.packet_in_dropped.add(1);
            return;
        };
        // Cold path: only frames for the controller look at the entries again.
        let meta = packet_in_meta(self.classified, self.in_port, nth);
        if sender.send(meta, bytes) {
            c.packet_in_queued.add(1);
        } else {
            c.packet_in_dropped.add(1);
        }
    }

    /// Sends `bytes` out of port `out`; `before` is how many outputs to the
    /// controller come before this one in its action list (the executor's
    /// count, `execute_counted`), which names an output to the controller's
    /// packet-in.
    pub(super) fn output(&mut self, out: PortNo, bytes: &[u8], before: usize) {
        match out {
            port::IN_PORT if self.in_idx < self.egress.ports.len() => self.send(self.in_idx, bytes),
            port::IN_PORT => self.egress.shared.counters.bad_port.add(1),
            port::FLOOD | port::ALL => {
                for i in 0..self.egress.ports.len() {
                    // Floods stay on this host: tunnels carry routed IP only.
                    let local = matches!(self.egress.ports[i].io, PortIo::Tap(_) | PortIo::Raw(_));
                    if i != self.in_idx && local {
                        self.send(i, bytes);
                    }
                }
            }
            port::CONTROLLER => self.controller(bytes, before),
            p => match self.egress.ports.iter().position(|q| q.number == p) {
                // OpenFlow never sends back out of the input port unless asked with IN_PORT.
                Some(i) if i != self.in_idx => self.send(i, bytes),
                Some(_) => {}
                None => self.egress.shared.counters.bad_port.add(1),
            },
        }
    }

    pub(super) fn send(&mut self, idx: usize, bytes: &[u8]) {
        match self.egress.ports[idx].io {
            PortIo::Tap(_) | PortIo::Raw(_) => {
                send_local(&self.egress.ports, idx, &self.offload, bytes)
            }
            PortIo::Tunnel(peer) => match self
                .to_owner
                .as_mut()
                .and_then(|crew| crew.ring_to_owner(peer))
            {
                None => self.send_tunnel(idx, peer, bytes),
                Some(ring) => {
                    let number = self.egress.ports[idx].number;
                    if !ring.hand((peer, number, self.in_port), self.offload, bytes) {
                        self.egress.shared.counters.tunnel_handoff_dropped.add(1);
                    }
                }
            },
        }
    }

    pub(super) fn send_tunnel(&mut self, idx: usize, peer: usize, frame: &[u8]) {
        let c = &self.egress.shared.counters;
        let l2 = l2_len(frame);
        let eth_type = frame
            .get(l2 - 2..l2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]));
        if !matches!(eth_type, Some(ethertype::IPV4) | Some(ethertype::IPV6)) || frame.len() <= l2 {
            c.tunnel_non_ip_dropped.add(1);
            return;
        }
        let Some(tunnels) = self.tunnels.as_mut() else {
            return;
        };
        if !tunnels.owns(peer) {
            // Only its owner may use a session (its counters); reached only by
            // a caller that could not hand the frame over.
            c.tunnel_handoff_dropped.add(1);
            return;
        }
        let segments = if self.offload.is_gso() {
            // Checked when it was received; refused here only if an action broke it.
            let Some(segments) = Segments::new(frame, &self.offload) else {
                c.tunnel_non_ip_dropped.add(1);
                return;
            };
            Some(segments)
        } else {
            None
        };
        let wire_len = segments
            .as_ref()
            .map_or(frame.len() - l2, Segments::max_ip_len);
        if wire_len > tunnels.mtu {
            c.tunnel_too_big.add(1);
            if let Some(len) = frag_needed(
                self.icmp,
                frame,
                l2,
                tunnels.mtu,
                self.egress.gateway_mac,
                self.egress.gateway_ip,
            ) {
                let reply = &self.icmp[..len];
                send_local(&self.egress.ports, self.in_idx, &VnetHdr::NONE, reply);
            } else if let Some(replies) = tunnels.too_big.as_mut() {
                let from = replies.source(self.in_port);
                let mtu = u32::try_from(tunnels.mtu).unwrap_or(u32::MAX);
                let reply = packet_too_big(self.segment, frame, l2, mtu, from);
                // Only a local port can take the answer back (never a tunnel).
                let local = self
                    .egress
                    .ports
                    .get(self.in_idx)
                    .is_some_and(|p| matches!(p.io, PortIo::Tap(_) | PortIo::Raw(_)));
                if let Some(len) = reply.filter(|_| local) {
                    if replies.allow(self.in_port, std::time::Instant::now()) {
                        c.packet_too_big_sent.add(1);
                        let reply = &self.segment[..len];
                        send_local(&self.egress.ports, self.in_idx, &VnetHdr::NONE, reply);
                    } else {
                        c.packet_too_big_limited.add(1);
                    }
                }
            }
            return;
        }
        let counters = &self.egress.ports[idx].info.counters;
        let count = |sent: Sent, len: usize| match sent {
            Sent::Sent => {
                counters.tx_packets.add(1);
                counters.tx_bytes.add(len as u64);
            }
            Sent::Handshaking => c.tunnel_handshaking.add(1),
            Sent::NoEndpoint => c.tunnel_no_endpoint.add(1),
            Sent::SocketError => counters.tx_dropped.add(1),
        };
        match segments {
            // WireGuard carries whole IP packets and the peer cannot tell a partial
            // checksum from a wrong one: finished here, on a copy, because the
            // frame's other outputs (a TAP) may still take it unfinished.
            None if self.offload.needs_csum() => {
                let copy = &mut self.segment[..frame.len()];
                copy.copy_from_slice(frame);
                finish_partial_checksum(copy, self.offload.csum_start, self.offload.csum_offset);
                count(tunnels.send(peer, &copy[l2..]), frame.len())
            }
            None => count(tunnels.send(peer, &frame[l2..]), frame.len()),
            // Each segment leaves as its own datagram and counts as a packet of the
            // tunnel port, as it would have without offloads.
            Some(mut segments) => {
                while let Some(n) = segments.next_into(self.segment) {
                    count(tunnels.send(peer, &self.segment[l2..n]), n);
                }
            }
        }
    }
}

/// Builds an ICMP "fragmentation needed" (type 3, code 4) answer to an IPv4 frame
/// with DF set that is larger than `mtu`. `None` for anything else (IPv6 and
/// DF-less packets are dropped and counted by the caller).
pub(super) fn frag_needed(
    out: &mut [u8],
    frame: &[u8],
    l2: usize,
    mtu: usize,
    gw_mac: Mac,
    gw_ip: Ipv4Addr,
) -> Option<usize> {
    let ip = frame.get(l2..)?;
    if ip.len() < 20 || ip[0] >> 4 != 4 || ip[6] & 0x40 == 0 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let quoted = ip.get(..(ihl + 8).min(ip.len()))?;
    let total = 20 + 8 + quoted.len();
    let buf = out.get_mut(..ETH_HLEN + total)?;
    buf[0..6].copy_from_slice(&frame[6..12]);
    buf[6..12].copy_from_slice(&gw_mac.0);
    buf[12..14].copy_from_slice(&ethertype::IPV4.to_be_bytes());
    let h = &mut buf[ETH_HLEN..];
    h[..20].fill(0);
    h[0] = 0x45;
    h[2..4].copy_from_slice(&u16::try_from(total).ok()?.to_be_bytes());
    h[8] = 64;
    h[9] = 1;
    h[12..16].copy_from_slice(&gw_ip.octets());
    h[16..20].copy_from_slice(&ip[12..16]);
    dataplane_core::packet::fix_ipv4_checksum(h);
    let icmp = &mut h[20..];
    icmp[0] = 3;
    icmp[1] = 4;
    icmp[2..6].fill(0);
    icmp[6..8].copy_from_slice(&u16::try_from(mtu).unwrap_or(u16::MAX).to_be_bytes());
    icmp[8..8 + quoted.len()].copy_from_slice(quoted);
    let sum = dataplane_core::packet::checksum_finish(dataplane_core::packet::checksum_add(
        0,
        &icmp[..8 + quoted.len()],
    ));
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    Some(ETH_HLEN + total)
}

/// Ethernet header length of a frame (14, or 18 with one VLAN tag).
fn l2_len(frame: &[u8]) -> usize {
    match frame.get(12..14) {
        Some([0x81, 0x00]) | Some([0x88, 0xa8]) => 18,
        _ => 14,
    }
}

/// True when `actions` leave a frame's offload header valid (a super-frame's, or
/// a lone frame's unfinished checksum): they touch no byte the header's offsets or
/// the partial checksum depend on (Ethernet addresses, an existing VLAN tag's
/// fields, DSCP and TTL, which the pseudo-header leaves out), and send it nowhere
/// the header cannot follow: a packet-in carries no virtio-net header, so the
/// controller gets complete packets, never a 64 KB frame or an unfinished checksum.
pub(super) fn actions_keep_offload(actions: &[Action]) -> bool {
    use openflow::flow::{port, Field};
    actions.iter().all(|a| match a {
        Action::Output { port: p, .. } => *p != port::CONTROLLER && *p != port::TABLE,
        Action::DecNwTtl => true,
        Action::SetField { field, .. } => matches!(
            field,
            Field::EthSrc | Field::EthDst | Field::VlanVid | Field::VlanPcp | Field::IpDscp
        ),
        // A bucket may do anything; the flows that need groups pay for segmenting.
        Action::PushVlan(_) | Action::PopVlan | Action::Group(_) => false,
    })
}
