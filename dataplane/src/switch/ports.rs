//! The ports the switch thread owns (TAP, raw socket, tunnel peer) and sending a
//! frame out of a local one.

use super::counters::PortInfo;
use crate::io::rawport::RawPort;
use crate::io::tap::{LinkProbe, Tap};
use dataplane_core::offload::VnetHdr;
use dataplane_core::port_security::PortBinding;
use openflow::flow::PortNo;
use std::os::fd::AsRawFd;
use std::sync::Arc;

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

    pub(super) fn into_io(self) -> PortIo {
        match self {
            LocalPort::Tap(tap) => PortIo::Tap(tap),
            LocalPort::Raw(raw) => PortIo::Raw(raw),
        }
    }
}

/// A local port to add to a running switch.
#[derive(Debug)]
pub struct NewPort {
    /// Its OpenFlow number.
    pub number: PortNo,
    /// The open device.
    pub local: LocalPort,
    /// Reads its link state (none: always reported up).
    pub probe: Option<LinkProbe>,
    /// The VM it is bound to (port security), if any.
    pub binding: Option<PortBinding>,
}

/// Why a port cannot be added or removed; the switch is unchanged then.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PortSetError {
    /// The number is taken, or the name is.
    #[error("port {number} ({name}) clashes with port {existing} ({existing_name}), which the switch has")]
    Exists {
        /// The number asked for.
        number: PortNo,
        /// The name asked for.
        name: String,
        /// The port that has that number or name.
        existing: PortNo,
        /// Its name.
        existing_name: String,
    },
    /// 0 and the reserved numbers (0xffffff00 and up) name no real port.
    #[error("port number {0} is not usable (1 to 4294967040)")]
    BadNumber(PortNo),
    /// No port has that number.
    #[error("port {0} does not exist")]
    NoSuchPort(PortNo),
    /// Tunnel ports belong to the tunnel configuration.
    #[error("port {0} is a tunnel port; tunnels come from the host configuration")]
    NotLocal(PortNo),
    /// The kernel refused to watch the new device.
    #[error("cannot watch the device: {0}")]
    Poll(String),
    /// Another forwarding worker did not take its queue of the port: the
    /// workers that had added it removed it again.
    #[error("forwarding worker {worker} did not take its queue of the port ({why}); the port was not added")]
    Worker {
        /// The worker that refused.
        worker: usize,
        /// Why it refused.
        why: String,
    },
    /// The device was opened with another number of queues than the switch
    /// has forwarding workers.
    #[error("the device has {queues} queues and the switch {workers} forwarding workers")]
    Queues {
        /// Queues opened.
        queues: usize,
        /// Forwarding workers.
        workers: usize,
    },
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

impl PortIo {
    /// What `workers - 1` more forwarding workers use for this port: a local
    /// port's other queues (taken from it), or the same tunnel peer.
    pub(super) fn take_queues(&mut self, workers: usize) -> Vec<PortIo> {
        match self {
            PortIo::Tap(t) => t.take_queues().into_iter().map(PortIo::Tap).collect(),
            PortIo::Raw(r) => r.take_queues().into_iter().map(PortIo::Raw).collect(),
            PortIo::Tunnel(peer) => (1..workers).map(|_| PortIo::Tunnel(*peer)).collect(),
        }
    }

    /// The descriptor epoll watches (none for a tunnel peer: the socket is
    /// watched once for all of them).
    pub(super) fn fd(&self) -> Option<i32> {
        match self {
            PortIo::Tap(tap) => Some(tap.as_raw_fd()),
            PortIo::Raw(raw) => Some(raw.as_raw_fd()),
            PortIo::Tunnel(_) => None,
        }
    }
}

/// A port owned by a forwarding worker (each has its own queue of it).
#[derive(Debug)]
pub(super) struct Port {
    pub(super) number: PortNo,
    pub(super) io: PortIo,
    /// Its counters and link state, shared with the other threads.
    pub(super) info: Arc<PortInfo>,
}

/// Sends a frame (behind its virtio-net header) out of a local (TAP or raw) port;
/// tunnels are not local. A super-frame counts as one packet.
pub(super) fn send_local(ports: &[Port], idx: usize, hdr: &VnetHdr, bytes: &[u8]) {
    let Some(port) = ports.get(idx) else {
        return;
    };
    let counters = &port.info.counters;
    if port.info.link.drops_forwarded() {
        counters.tx_dropped.add(1);
        return;
    }
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
