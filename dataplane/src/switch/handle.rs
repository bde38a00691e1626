//! The handle/call mechanism: other threads hand closures, packet-outs and
//! status requests to the switch thread, which runs them between batches.

use super::counters::SwitchShared;
use super::guards::BindRefused;
use dataplane_core::packet_io::{PacketOutError, PacketOutJob};
use dataplane_core::pipeline::{Pipeline, RemovedFlow};
use dataplane_core::port::PeerStatus;
use dataplane_core::port_security::PortBinding;
use openflow::flow::PortNo;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A job run on the switch thread with the tables in hand.
pub type Job = Box<dyn FnOnce(&mut Pipeline, Instant) + Send>;

/// Work for the switch thread, run in the order it was sent.
pub(super) enum Work {
    /// A closure over the tables.
    Job(Job),
    /// A frame to inject (OpenFlow packet-out), with where to send the result.
    PacketOut(PacketOutJob, SyncSender<Result<(), PacketOutError>>),
    /// A fresh status of every tunnel peer (empty without tunnels).
    TunnelStatus(SyncSender<Vec<PeerStatus>>),
    /// A port's new binding (`None`: unbound), with where to send the outcome.
    Bind(
        PortNo,
        Option<PortBinding>,
        SyncSender<Result<(), BindRefused>>,
    ),
}

impl std::fmt::Debug for Work {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Work::Job(_) => f.write_str("Job"),
            Work::PacketOut(p, _) => p.fmt(f),
            Work::TunnelStatus(_) => f.write_str("TunnelStatus"),
            Work::Bind(port, binding, _) => write!(f, "Bind({port}, {binding:?})"),
        }
    }
}

/// A cloneable handle to talk to the switch thread.
#[derive(Debug, Clone)]
pub struct SwitchHandle {
    pub(super) jobs: Sender<Work>,
    pub(super) wake: Arc<OwnedFd>,
    pub(super) stop: Arc<AtomicBool>,
    /// Counters and port list.
    pub shared: Arc<SwitchShared>,
}

/// The switch thread has stopped.
#[derive(Debug, thiserror::Error)]
#[error("the switch thread is not running")]
pub struct SwitchGone;

impl SwitchHandle {
    pub(super) fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd we own.
        unsafe { libc::write(self.wake.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Queues the work `make` builds around a reply sender, wakes the switch thread
    /// and waits for the reply.
    pub(super) fn ask<R>(&self, make: impl FnOnce(SyncSender<R>) -> Work) -> Result<R, SwitchGone> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.jobs.send(make(tx)).map_err(|_| SwitchGone)?;
        self.wake();
        rx.recv_timeout(Duration::from_secs(10))
            .map_err(|_| SwitchGone)
    }

    /// Runs `f` on the switch thread with the pipeline and waits for its result.
    pub fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Pipeline, Instant) -> R + Send + 'static,
    ) -> Result<R, SwitchGone> {
        self.ask(|tx| {
            Work::Job(Box::new(move |p, now| {
                let _ = tx.send(f(p, now));
            }))
        })
    }

    /// Injects a frame (OpenFlow packet-out) on the switch thread, after every job
    /// sent before it, and waits until its actions have run.
    pub fn packet_out(&self, job: PacketOutJob) -> Result<Result<(), PacketOutError>, SwitchGone> {
        self.ask(|tx| Work::PacketOut(job, tx))
    }

    /// The status of every tunnel peer as the switch thread sees it now (handshake
    /// ages and byte counts, unlike [`SwitchShared::tunnels`], which is up to a second
    /// old); empty for a switch without tunnels.
    pub fn tunnel_status(&self) -> Result<Vec<PeerStatus>, SwitchGone> {
        self.ask(Work::TunnelStatus)
    }

    /// Binds a VM port to its VM's addresses (`None`: unbinds it), after every
    /// job sent before; the frames the port receives next are checked against it.
    pub fn bind_port(
        &self,
        port: PortNo,
        binding: Option<PortBinding>,
    ) -> Result<Result<(), BindRefused>, SwitchGone> {
        self.ask(|tx| Work::Bind(port, binding, tx))
    }

    /// Asks the switch thread to stop after the current batch.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake();
    }
}

/// Called with every flow that leaves the tables by timeout.
pub type RemovedHook = Box<dyn FnMut(&RemovedFlow) + Send>;
