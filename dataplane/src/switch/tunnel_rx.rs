//! The receive side of a worker's tunnels: decrypting what its socket holds
//! (or what another worker handed over for a peer this one owns), checking
//! each packet's source, coalescing back-to-back TCP segments and running the
//! result through the tables; a datagram for a peer another worker owns is
//! handed to it unread.

use super::event_loop::{Scratch, Switch};
use super::ports::BATCH;
use crate::tunnel::{Received, SourceCheck};
use dataplane_core::exec::FrameBuf;
use dataplane_core::offload::{self, Coalescer, Push};
use dataplane_core::packet::ETH_HLEN;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

impl Switch {
    /// Decrypts what the tunnel socket holds and runs it through the tables,
    /// coalescing back-to-back TCP segments of one flow into super-frames first.
    pub(super) fn drain_tunnels(
        &mut self,
        frame: &mut FrameBuf,
        coalescer: &mut Coalescer,
        scratch: &mut Scratch,
        now: Instant,
    ) {
        self.decrypt_batch(frame, coalescer, scratch, now);
        self.flush_coalesced(coalescer, scratch, now);
    }

    /// Runs the super-frame the coalescer holds (if any) through the tables.
    pub(super) fn flush_coalesced(
        &mut self,
        coalescer: &mut Coalescer,
        scratch: &mut Scratch,
        now: Instant,
    ) {
        let Some(idx) = coalescer.source() else {
            return;
        };
        let Some((frame, mut hdr)) = coalescer.take() else {
            return;
        };
        if !hdr.is_gso() {
            hdr = offload::reopen_verified_checksum(frame.bytes_mut());
        }
        let port_number = self.egress.ports[idx].number;
        self.process(idx, port_number, frame, hdr, scratch, now);
    }

    pub(super) fn decrypt_batch(
        &mut self,
        frame: &mut FrameBuf,
        coalescer: &mut Coalescer,
        scratch: &mut Scratch,
        now: Instant,
    ) {
        let mut taken = 0;
        loop {
            let Some(tunnels) = self.tunnels.as_mut() else {
                return;
            };
            // After a batch's worth, finish only what was already received: those
            // datagrams left the kernel queue, so epoll would never report them.
            if taken >= BATCH && !tunnels.has_pending() {
                return;
            }
            taken += 1;
            tunnels.refresh_allowed(&self.pipeline);
            // Decrypt straight behind room for the Ethernet header we add.
            let space = frame.recv_space();
            let received = match tunnels.recv(&mut space[ETH_HLEN..]) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            self.admit(received, frame, coalescer, scratch, now);
        }
    }

    /// Handles a datagram another worker received `from` peer `peer`, which
    /// this one owns, as if its own socket had read it (the caller flushes
    /// the coalescer).
    pub(super) fn receive_handed(
        &mut self,
        (peer, from, datagram): (usize, SocketAddr, &[u8]),
        frame: &mut FrameBuf,
        coalescer: &mut Coalescer,
        scratch: &mut Scratch,
        now: Instant,
    ) {
        let Some(tunnels) = self.tunnels.as_mut() else {
            return;
        };
        tunnels.refresh_allowed(&self.pipeline);
        let space = frame.recv_space();
        let received = tunnels.recv_handed(peer, datagram, from, &mut space[ETH_HLEN..]);
        self.admit(received, frame, coalescer, scratch, now);
    }

    /// What a received datagram became, decrypted (if it was a packet) behind
    /// room for an Ethernet header in `frame`: a packet enters the tables, a
    /// datagram for another worker's peer goes to it, or it ends here (counted
    /// by why, except for handshakes and keepalives, which are no loss).
    fn admit(
        &mut self,
        received: Received,
        frame: &mut FrameBuf,
        coalescer: &mut Coalescer,
        scratch: &mut Scratch,
        now: Instant,
    ) {
        let Some(tunnels) = self.tunnels.as_ref() else {
            return;
        };
        let c = &self.egress.shared.counters;
        let space = frame.recv_space();
        let verdict = match received {
            Received::Data { peer, len } => {
                match tunnels.check_source(peer, &space[ETH_HLEN..ETH_HLEN + len]) {
                    SourceCheck::Allowed(eth_type) => Ok((peer, len, eth_type)),
                    SourceCheck::NotIp => Err(Some(&c.tunnel_not_ip)),
                    SourceCheck::Spoofed => Err(Some(&c.tunnel_spoofed)),
                }
            }
            Received::Foreign { peer, from, len } => {
                let datagram = &space[ETH_HLEN..ETH_HLEN + len];
                let handed = self
                    .crew
                    .ring_to_owner(peer)
                    .is_some_and(|ring| ring.hand_datagram(peer, from, datagram));
                Err(Some(if handed {
                    &c.tunnel_datagrams_handed
                } else {
                    &c.tunnel_handoff_dropped
                }))
            }
            Received::Control => Err(None),
            Received::Invalid => Err(Some(&c.tunnel_invalid)),
            Received::Replayed => Err(Some(&c.tunnel_replayed)),
        };
        let (peer, len, eth_type) = match verdict {
            Ok(packet) => packet,
            Err(counter) => {
                if let Some(counter) = counter {
                    counter.add(1);
                }
                return;
            }
        };
        let port_number = tunnels.peers()[peer].config.port;
        space[0..6].copy_from_slice(&self.egress.gateway_mac.0);
        space[6..12].copy_from_slice(&self.egress.gateway_mac.0);
        space[12..14].copy_from_slice(&eth_type.to_be_bytes());
        frame.set_len(ETH_HLEN + len);
        let Some(idx) = self
            .egress
            .ports
            .iter()
            .position(|p| p.number == port_number)
        else {
            return;
        };
        let counters = &self.egress.ports[idx].info.counters;
        counters.rx_packets.add(1);
        counters.rx_bytes.add((ETH_HLEN + len) as u64);
        loop {
            match coalescer.push(idx, frame.bytes()) {
                Push::Taken => break,
                Push::FlushFirst => self.flush_coalesced(coalescer, scratch, now),
                Push::Refused => {
                    self.flush_coalesced(coalescer, scratch, now);
                    // Verified here, and handed on with its checksum reopened, so
                    // the receiving kernel neither dissects nor sums it again.
                    let hdr = offload::reopen_verified_checksum(frame.bytes_mut());
                    self.process(idx, port_number, frame, hdr, scratch, now);
                    break;
                }
            }
        }
    }
}
