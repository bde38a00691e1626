//! The one hop between forwarding workers: frames a worker must send into a
//! tunnel whose WireGuard session another worker owns, and datagrams it
//! received for such a peer (handshake initiations: the kernel's steering
//! sends them all to worker 0), handed to that owner over a bounded
//! single-producer, single-consumer ring per ordered pair of workers.
//!
//! A WireGuard session (its send counter, its replay window) is one worker's
//! alone, so a frame for it that another worker classified crosses over whole:
//! copied into a buffer of the ring's pool with its virtio-net header, and
//! encrypted and sent by the owner on its next round (a datagram with its
//! source address, and handled by the owner as if its socket had read it). The ring never blocks:
//! when all its buffers are in flight the frame is dropped and counted, as a
//! full socket buffer would drop it. Buffers are made as the ring first fills
//! and then reused, so a steady flow allocates nothing.

use super::handle::SwitchHandle;
use crate::tunnel::steering::owner_of;
use dataplane_core::offload::VnetHdr;
use openflow::flow::PortNo;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::sync::Arc;

/// Frames in flight from one worker to another at most.
pub(super) const HANDOFF_DEPTH: usize = 128;

/// What ties a forwarding worker to the others.
#[derive(Debug, Default)]
pub(super) struct Crew {
    /// Which worker this is: 0 runs the packet-outs and the jobs other threads
    /// send; tunnel peer `i` is worker `i mod N`'s.
    pub(super) worker: usize,
    /// With several workers: the ring to each worker, by worker (`None` for
    /// this one); empty with one.
    pub(super) to_workers: Vec<Option<HandoffSender>>,
    /// The rings from every other worker.
    pub(super) from_workers: Vec<HandoffReceiver>,
    /// Worker 0: the other workers' job queues (port changes and bindings
    /// reach every worker, in the order worker 0 took them).
    pub(super) helper_handles: Vec<SwitchHandle>,
}

impl Crew {
    /// The end of a round: each owner this worker handed anything is woken.
    pub(super) fn end_round(&mut self) {
        for ring in self.to_workers.iter_mut().flatten() {
            ring.end_round();
        }
    }

    /// The ring to the worker owning tunnel peer `peer`; `None` when this
    /// worker owns it (always, with one worker).
    pub(super) fn ring_to_owner(&mut self, peer: usize) -> Option<&mut HandoffSender> {
        let owner = owner_of(peer, self.to_workers.len());
        self.to_workers.get_mut(owner)?.as_mut()
    }
}

/// What crosses to the owner of a tunnel peer.
#[derive(Debug, Clone, Copy)]
pub(super) enum Cargo {
    /// A frame to send into the tunnel.
    Frame {
        /// The tunnel's port number (indices differ while a port is being
        /// removed).
        port: PortNo,
        /// Where the frame came in (answers such as "fragmentation needed" go
        /// there).
        in_port: PortNo,
        /// Its virtio-net header: a super-frame is cut by the owner, as it
        /// would have been by the worker that classified it.
        offload: VnetHdr,
    },
    /// A datagram from the peer, received by another worker's socket.
    Datagram {
        /// Its source address.
        from: SocketAddr,
    },
}

/// A frame or datagram on its way to the worker that owns its tunnel peer.
#[derive(Debug)]
pub(super) struct Handed {
    /// The tunnel peer (index into the owner's `Tunnels`).
    pub(super) peer: usize,
    pub(super) cargo: Cargo,
    /// The bytes: `buf[..len]`.
    pub(super) len: usize,
    pub(super) buf: Vec<u8>,
}

impl Handed {
    /// The frame's (or datagram's) bytes.
    pub(super) fn frame(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// The sending side of a ring: the worker that classified the frames.
#[derive(Debug)]
pub(super) struct HandoffSender {
    full: SyncSender<Handed>,
    free: Receiver<Vec<u8>>,
    /// Buffers made so far (at most the ring's depth).
    made: usize,
    depth: usize,
    /// Buffer size: the largest frame a port reads.
    frame_len: usize,
    /// The owner's wake-up eventfd, written once per round that handed frames.
    owner_wake: Arc<OwnedFd>,
    handed_this_round: bool,
}

/// The receiving side of a ring: the worker that owns the tunnels.
#[derive(Debug)]
pub(super) struct HandoffReceiver {
    full: Receiver<Handed>,
    free: SyncSender<Vec<u8>>,
}

/// A ring of `depth` buffers of `frame_len` bytes towards the worker woken
/// through `owner_wake`.
pub(super) fn handoff_ring(
    depth: usize,
    frame_len: usize,
    owner_wake: Arc<OwnedFd>,
) -> (HandoffSender, HandoffReceiver) {
    let (full_tx, full_rx) = mpsc::sync_channel(depth);
    let (free_tx, free_rx) = mpsc::sync_channel(depth);
    (
        HandoffSender {
            full: full_tx,
            free: free_rx,
            made: 0,
            depth,
            frame_len,
            owner_wake,
            handed_this_round: false,
        },
        HandoffReceiver {
            full: full_rx,
            free: free_tx,
        },
    )
}

impl HandoffSender {
    /// Hands `frame` over; false (the frame dropped) when every buffer is in
    /// flight, the frame is larger than a buffer, or the owner is gone.
    pub(super) fn hand(
        &mut self,
        (peer, port, in_port): (usize, PortNo, PortNo),
        offload: VnetHdr,
        frame: &[u8],
    ) -> bool {
        let cargo = Cargo::Frame {
            port,
            in_port,
            offload,
        };
        self.hand_cargo(peer, cargo, frame)
    }

    /// Hands over a datagram `from` peer `peer`; false (dropped) as for
    /// [`Self::hand`].
    pub(super) fn hand_datagram(&mut self, peer: usize, from: SocketAddr, datagram: &[u8]) -> bool {
        self.hand_cargo(peer, Cargo::Datagram { from }, datagram)
    }

    fn hand_cargo(&mut self, peer: usize, cargo: Cargo, frame: &[u8]) -> bool {
        if frame.len() > self.frame_len {
            return false;
        }
        let mut buf = match self.free.try_recv() {
            Ok(buf) => buf,
            Err(TryRecvError::Empty) if self.made < self.depth => {
                self.made += 1;
                vec![0u8; self.frame_len]
            }
            Err(_) => return false,
        };
        buf[..frame.len()].copy_from_slice(frame);
        let handed = Handed {
            peer,
            cargo,
            len: frame.len(),
            buf,
        };
        // Never full while this side holds a buffer: there are only `depth`.
        if self.full.try_send(handed).is_err() {
            return false;
        }
        self.handed_this_round = true;
        true
    }

    /// Wakes the owner if this round handed it anything (once per round, not
    /// per frame: one eventfd write covers the batch).
    pub(super) fn end_round(&mut self) {
        if std::mem::take(&mut self.handed_this_round) {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live u64 to an eventfd the owner reads.
            unsafe { libc::write(self.owner_wake.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
    }
}

impl HandoffReceiver {
    /// The next frame handed over, if any.
    pub(super) fn take(&self) -> Option<Handed> {
        self.full.try_recv().ok()
    }

    /// Gives a frame's buffer back to the sender's pool.
    pub(super) fn give_back(&self, handed: Handed) {
        let _ = self.free.try_send(handed.buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::FromRawFd;

    fn eventfd() -> Arc<OwnedFd> {
        // SAFETY: plain eventfd; checked below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        assert!(fd >= 0);
        // SAFETY: fresh descriptor, owned here only.
        Arc::new(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    fn read_wakes(fd: &OwnedFd) -> u64 {
        let mut buf = 0u64;
        // SAFETY: reads 8 bytes into a live u64 from our eventfd.
        let n = unsafe { libc::read(fd.as_raw_fd(), (&mut buf as *mut u64).cast(), 8) };
        if n == 8 {
            buf
        } else {
            0
        }
    }

    #[test]
    fn frames_arrive_in_order_and_a_full_ring_drops_without_blocking() {
        let wake = eventfd();
        let (mut tx, rx) = handoff_ring(4, 16, wake.clone());
        for i in 0..4u8 {
            assert!(tx.hand((1, 10, 2), VnetHdr::NONE, &[i; 8]), "frame {i}");
        }
        // Every buffer in flight: dropped at once, never waited for.
        assert!(!tx.hand((1, 10, 2), VnetHdr::NONE, &[9; 8]));
        // Larger than a buffer: dropped.
        assert!(!tx.hand((1, 10, 2), VnetHdr::NONE, &[0; 17]));
        assert_eq!(
            read_wakes(&wake),
            0,
            "the owner is woken at the round's end"
        );
        tx.end_round();
        assert_eq!(read_wakes(&wake), 1, "one wake-up for the round");
        tx.end_round();
        assert_eq!(read_wakes(&wake), 0, "nothing handed, nobody woken");
        for i in 0..4u8 {
            let handed = rx.take().expect("a frame");
            assert_eq!(handed.peer, 1);
            assert!(matches!(
                handed.cargo,
                Cargo::Frame {
                    port: 10,
                    in_port: 2,
                    ..
                }
            ));
            assert_eq!(handed.frame(), &[i; 8]);
            rx.give_back(handed);
        }
        assert!(rx.take().is_none());
        // The buffers came back: the ring takes frames again, with no new ones made.
        for i in 0..4u8 {
            assert!(tx.hand((0, 11, 3), VnetHdr::NONE, &[i; 3]));
        }
        assert_eq!(tx.made, 4);
        assert_eq!(rx.take().map(|h| h.frame().to_vec()), Some(vec![0; 3]));
    }

    #[test]
    fn datagrams_cross_with_their_source_and_peers_reach_their_owner() {
        let from: SocketAddr = "192.0.2.7:51820".parse().unwrap();
        let (tx, rx) = handoff_ring(2, 64, eventfd());
        let mut crew = Crew {
            worker: 1,
            to_workers: vec![Some(tx), None, None],
            ..Crew::default()
        };
        assert!(crew.ring_to_owner(1).is_none(), "peer 1 is worker 1's own");
        assert!(crew.ring_to_owner(5).is_none(), "peer 5 is worker 2's");
        let ring = crew.ring_to_owner(3).expect("peer 3 is worker 0's");
        assert!(ring.hand_datagram(3, from, &[1, 0, 0, 0, 9]));
        let handed = rx.take().expect("the datagram");
        assert_eq!((handed.peer, handed.frame()), (3, &[1u8, 0, 0, 0, 9][..]));
        assert!(matches!(handed.cargo, Cargo::Datagram { from: f } if f == from));
        let mut alone = Crew::default();
        assert!(
            alone.ring_to_owner(3).is_none(),
            "one worker owns every peer"
        );
    }

    #[test]
    fn a_ring_works_across_threads() {
        let (mut tx, rx) = handoff_ring(8, 8, eventfd());
        let sender = std::thread::spawn(move || {
            let mut sent = Vec::new();
            for i in 0..10_000u32 {
                if tx.hand((0, 1, 1), VnetHdr::NONE, &i.to_be_bytes()) {
                    sent.push(i);
                }
                tx.end_round();
            }
            sent
        });
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !sender.is_finished() {
            if let Some(h) = rx.take() {
                got.push(u32::from_be_bytes(h.frame().try_into().unwrap()));
                rx.give_back(h);
            }
            assert!(std::time::Instant::now() < deadline);
        }
        while let Some(h) = rx.take() {
            got.push(u32::from_be_bytes(h.frame().try_into().unwrap()));
            rx.give_back(h);
        }
        let sent = sender.join().unwrap();
        assert_eq!(got, sent, "what was handed arrives, in order");
    }
}
