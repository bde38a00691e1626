//! The ports the switch thread owns (TAP, raw socket, tunnel peer) and sending a
//! frame out of a local one.

use super::counters::SwitchShared;
use crate::io::rawport::RawPort;
use crate::io::tap::Tap;
use dataplane_core::offload::VnetHdr;
use openflow::flow::PortNo;
use std::os::fd::AsRawFd;

/// Largest frame a port reads: a super-frame of 64 KB behind an Ethernet header
/// with one VLAN tag.
pub const MAX_FRAME: usize = 65_535 + 18;

/// Frames read from one port before looking at the others.
pub const BATCH: usize = 64;

/// A port on this host: whole Ethernet frames.
#[derive(Debug)]
pub enum LocalPort {
    /// A TAP device whose file descriptor `scd` holds.
    Tap(Tap),
    /// A packet socket on an interface someone else owns (`type = "raw"`).
    Raw(RawPort),
}

impl LocalPort {
    pub(super) fn name(&self) -> &str {
        match self {
            LocalPort::Tap(t) => t.name(),
            LocalPort::Raw(r) => r.name(),
        }
    }

    pub(super) fn fd(&self) -> i32 {
        match self {
            LocalPort::Tap(t) => t.as_raw_fd(),
            LocalPort::Raw(r) => r.as_raw_fd(),
        }
    }
}

/// How a port moves frames.
#[derive(Debug)]
pub(super) enum PortIo {
    /// A TAP device: whole Ethernet frames.
    Tap(Tap),
    /// A raw packet socket on an existing interface: whole Ethernet frames.
    Raw(RawPort),
    /// A WireGuard peer (index into `Tunnels`): IP packets.
    Tunnel(usize),
}

/// A port owned by the switch thread.
#[derive(Debug)]
pub(super) struct Port {
    pub(super) number: PortNo,
    pub(super) io: PortIo,
}

/// Sends a frame (behind its virtio-net header) out of a local (TAP or raw) port;
/// tunnels are not local. A super-frame counts as one packet.
pub(super) fn send_local(
    ports: &[Port],
    shared: &SwitchShared,
    idx: usize,
    hdr: &VnetHdr,
    bytes: &[u8],
) {
    let (Some(info), Some(port)) = (shared.ports.get(idx), ports.get(idx)) else {
        return;
    };
    let counters = &info.counters;
    let sent = match &port.io {
        PortIo::Tap(tap) => tap.send(hdr, bytes),
        PortIo::Raw(raw) => raw.send(hdr, bytes),
        PortIo::Tunnel(_) => return,
    };
    match sent {
        Ok(_) => {
            counters.tx_packets.add(1);
            counters.tx_bytes.add(bytes.len() as u64);
        }
        Err(_) => counters.tx_dropped.add(1),
    }
}
