//! The handle/call mechanism: other threads hand closures over the tables to the
//! control thread, packet-outs and status requests to the forwarding thread, and
//! read the published tables themselves.

use super::counters::SwitchShared;
use super::guards::BindRefused;
use super::ports::{NewPort, Port, PortSetError};
use super::tables::{Job, Published, Visibility};
use dataplane_core::packet_io::{PacketOutError, PacketOutJob};
use dataplane_core::pipeline::Pipeline;
use dataplane_core::port::PeerStatus;
use dataplane_core::port_security::PortBinding;
use openflow::flow::PortNo;
use openflow::wire::AddPort;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender, SyncSender};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Work for the forwarding thread, run in the order it was sent.
pub(super) enum Work {
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
    /// A local port to add, with where to send the outcome.
    AddPort(Box<NewPort>, SyncSender<Result<(), PortSetError>>),
    /// A local port to remove (closed once removed), with where to send the outcome.
    RemovePort(PortNo, SyncSender<Result<(), PortSetError>>),
    /// This worker's queue of a port worker 0 added, and its binding (workers
    /// after the first only).
    AddQueue(
        Box<Port>,
        Option<PortBinding>,
        SyncSender<Result<(), PortSetError>>,
    ),
    /// Worker 0 removed this port: this worker closes its queue of it.
    RemoveQueue(PortNo, SyncSender<Result<(), PortSetError>>),
}

impl std::fmt::Debug for Work {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Work::PacketOut(p, _) => p.fmt(f),
            Work::TunnelStatus(_) => f.write_str("TunnelStatus"),
            Work::Bind(port, binding, _) => write!(f, "Bind({port}, {binding:?})"),
            Work::AddPort(new, _) => write!(f, "AddPort({})", new.number),
            Work::RemovePort(port, _) => write!(f, "RemovePort({port})"),
            Work::AddQueue(port, _, _) => write!(f, "AddQueue({})", port.number),
            Work::RemoveQueue(port, _) => write!(f, "RemoveQueue({port})"),
        }
    }
}

/// Opens the device of a port a controller asks for (`scd` installs one that
/// does what the management socket's `add` does); the error says why not.
pub type PortOpener = Arc<dyn Fn(&AddPort) -> Result<NewPort, String> + Send + Sync>;

/// Where the [`PortOpener`] goes once the daemon has one.
#[derive(Default)]
pub struct PortOpenerSlot(OnceLock<PortOpener>);

impl std::fmt::Debug for PortOpenerSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "PortOpener(set)"
        } else {
            "PortOpener(none)"
        })
    }
}

/// A cloneable handle to talk to the switch thread.
#[derive(Debug, Clone)]
pub struct SwitchHandle {
    /// Work for the forwarding thread, with when it was queued.
    pub(super) jobs: Sender<(Instant, Work)>,
    pub(super) tables: Sender<(Job, Visibility)>,
    /// The published tables and their publish counters.
    pub published: Arc<Published>,
    pub(super) wake: Arc<OwnedFd>,
    pub(super) stop: Arc<AtomicBool>,
    /// Counters and port list.
    pub shared: Arc<SwitchShared>,
    /// How ports a controller asks for are opened (none: such requests are refused).
    pub(super) opener: Arc<PortOpenerSlot>,
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
        self.jobs
            .send((Instant::now(), make(tx)))
            .map_err(|_| SwitchGone)?;
        self.wake();
        rx.recv_timeout(Duration::from_secs(10))
            .map_err(|_| SwitchGone)
    }

    /// Queues the work `make` builds and wakes the switch thread, without
    /// waiting for its reply (which goes nowhere): for taking back what a
    /// worker that did not answer in time may still do once it resumes.
    pub(super) fn tell<R>(&self, make: impl FnOnce(SyncSender<R>) -> Work) {
        let (tx, _) = mpsc::sync_channel(1);
        if self.jobs.send((Instant::now(), make(tx))).is_ok() {
            self.wake();
        }
    }

    /// Runs `f` on the control thread with the master tables and waits for its
    /// result, which comes once what `f` changed is visible to packets.
    pub fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Pipeline, Instant) -> R + Send + 'static,
    ) -> Result<R, SwitchGone> {
        self.call_with(Visibility::Published, f)
    }

    /// [`Self::call`] for flow-mods: the result comes as soon as `f` ran, and its
    /// changes reach packets with the next publish (within milliseconds, and
    /// before the reply to any later [`Self::call`], such as a barrier).
    pub fn call_deferred<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Pipeline, Instant) -> R + Send + 'static,
    ) -> Result<R, SwitchGone> {
        self.call_with(Visibility::Deferred, f)
    }

    fn call_with<R: Send + 'static>(
        &self,
        visibility: Visibility,
        f: impl FnOnce(&mut Pipeline, Instant) -> R + Send + 'static,
    ) -> Result<R, SwitchGone> {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |p, now| {
            let result = f(p, now);
            Box::new(move || {
                let _ = tx.send(result);
            })
        });
        self.tables
            .send((job, visibility))
            .map_err(|_| SwitchGone)?;
        rx.recv_timeout(Duration::from_secs(10))
            .map_err(|_| SwitchGone)
    }

    /// Waits until every change sent before is visible to packets.
    pub fn sync(&self) -> Result<(), SwitchGone> {
        self.call(|_, _| ())
    }

    /// The tables as last published, read without asking any switch thread:
    /// for metrics, which need no ordering with flow-mods.
    pub fn snapshot(&self) -> Arc<Pipeline> {
        self.published.snapshot()
    }

    /// The tables with every change sent before this call in them (a flow-stats
    /// request after flow-mods sees them), read on the caller's thread.
    pub fn synced_snapshot(&self) -> Result<Arc<Pipeline>, SwitchGone> {
        self.sync()?;
        Ok(self.snapshot())
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

    /// Adds a local port between two rounds of the forwarding thread: the other
    /// ports' traffic and the tables are untouched, and a port-status (add) is
    /// queued for the controllers.
    pub fn add_port(&self, port: NewPort) -> Result<Result<(), PortSetError>, SwitchGone> {
        self.ask(|tx| Work::AddPort(Box::new(port), tx))
    }

    /// Removes a local port (its device is closed: a TAP `scd` created goes
    /// away) and queues a port-status (delete); flows naming it stay and match
    /// nothing, as for any absent port.
    pub fn remove_port(&self, port: PortNo) -> Result<Result<(), PortSetError>, SwitchGone> {
        self.ask(|tx| Work::RemovePort(port, tx))
    }

    /// Lets controllers add ports (experimenter add-port), opened by `opener`;
    /// the first one set stays.
    pub fn set_port_opener(&self, opener: PortOpener) {
        let _ = self.opener.0.set(opener);
    }

    /// The port opener, if the daemon set one.
    pub fn port_opener(&self) -> Option<&PortOpener> {
        self.opener.0.get()
    }

    /// Asks the switch thread to stop after the current batch.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake();
    }
}
