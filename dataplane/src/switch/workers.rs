//! Several forwarding workers (`[scheduling] workers = N`): building workers 1
//! and up beside worker 0, running them on threads of their own, and keeping
//! what every worker must agree on (its ports and their bindings) the same.
//!
//! Worker `i` is a copy of the forwarding loop with its own epoll set, megaflow
//! cache, scratch buffers, busy-poll window and stage histograms, reading
//! queue `i` of every local port (a multi-queue TAP's queue, or one socket of a
//! raw port's fanout group) and writing through that queue too, so no
//! descriptor is shared between threads. The tables stay one published
//! snapshot that every worker refreshes between rounds. Tunnel peer `i` is
//! worker `i mod N`'s: its session, timers and probes, and the datagrams the
//! kernel steers to that worker's socket of the tunnel's reuseport group; a
//! frame another worker classified for it, or a handshake initiation worker 0
//! received for it, reaches it over a ring (`handoff`). Worker 0 runs
//! packet-outs, gathers tunnel status and takes the jobs other threads send.
//! A port change or a binding is applied by worker 0 and then by every other
//! worker, in the order worker 0 took them, before its answer goes back; an
//! added port or a binding that one worker refuses is taken back from those
//! that took it, so the answer is an error and the workers still agree.

use super::counters::counters_for_several_writers;
use super::event_loop::{Scratch, Switch, TUNNEL_TOKEN, WAKE_TOKEN};
use super::handle::{SwitchGone, SwitchHandle, Work};
use super::handoff::{handoff_ring, Cargo, Crew, HANDOFF_DEPTH};
use super::output::{Egress, Output};
use super::ports::{Port, PortIo, PortSetError, MAX_FRAME};
use super::{BindRefused, PortInfo};
use crate::tunnel::Tunnels;
use dataplane_core::exec::FrameBuf;
use dataplane_core::megaflow::MegaflowCache;
use dataplane_core::offload::Coalescer;
use dataplane_core::port::PeerStatus;
use dataplane_core::port_security::PortBinding;
use openflow::flow::PortNo;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::AtomicBool;
use std::sync::{mpsc, Arc};
use std::thread::{Scope, ScopedJoinHandle};

impl Switch {
    /// The forwarding workers besides this one.
    pub(super) fn helpers_count(&self) -> usize {
        self.crew.helper_handles.len()
    }

    /// Builds workers 1 to `workers - 1` from worker 0 (this switch, just
    /// built): each takes its queue of every local port.
    pub(super) fn build_helpers(&mut self, workers: usize) -> io::Result<()> {
        if workers <= 1 {
            return Ok(());
        }
        counters_for_several_writers();
        let mut queues: Vec<Vec<Port>> = (1..workers).map(|_| Vec::new()).collect();
        for port in &mut self.egress.ports {
            let more = port.io.take_queues(workers);
            if more.len() + 1 != workers {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "port {} ({}) has {} queues for {workers} forwarding workers",
                        port.number,
                        port.info.name,
                        more.len() + 1
                    ),
                ));
            }
            for (ports, io) in queues.iter_mut().zip(more) {
                ports.push(Port {
                    number: port.number,
                    io,
                    info: port.info.clone(),
                });
            }
        }
        let mut tunnels = match self.tunnels.as_mut() {
            Some(tunnels) => tunnels.split(workers)?.into_iter().map(Some).collect(),
            None => Vec::new(),
        };
        tunnels.resize_with(workers - 1, || None);
        for (i, (ports, tunnels)) in queues.into_iter().zip(tunnels).enumerate() {
            let helper = self.helper(i + 1, ports, tunnels)?;
            self.crew.helper_handles.push(helper.handle.clone());
            self.helpers.push(helper);
        }
        self.connect_rings(workers);
        Ok(())
    }

    /// A ring from every worker to every other.
    fn connect_rings(&mut self, workers: usize) {
        for from in 0..workers {
            for to in 0..workers {
                let ring = (from != to).then(|| {
                    let owner_wake = self.crew_of(to).1.clone();
                    let (tx, rx) = handoff_ring(HANDOFF_DEPTH, MAX_FRAME, owner_wake);
                    self.crew_of(to).0.from_workers.push(rx);
                    tx
                });
                self.crew_of(from).0.to_workers.push(ring);
            }
        }
    }

    /// Worker `worker`'s crew and wake-up eventfd.
    fn crew_of(&mut self, worker: usize) -> (&mut Crew, &Arc<std::os::fd::OwnedFd>) {
        let switch = match worker.checked_sub(1) {
            Some(helper) => &mut self.helpers[helper],
            None => self,
        };
        (&mut switch.crew, &switch.handle.wake)
    }

    /// Worker `worker` over its queues `ports` (in worker 0's order) and its
    /// part of the tunnels.
    fn helper(
        &mut self,
        worker: usize,
        ports: Vec<Port>,
        tunnels: Option<Tunnels>,
    ) -> io::Result<Switch> {
        let epoll = crate::io::epoll_new()?;
        let wake = Arc::new(crate::io::eventfd_new()?);
        let add =
            |fd: i32, token: u64| crate::io::epoll_ctl(&epoll, libc::EPOLL_CTL_ADD, fd, token);
        add(wake.as_raw_fd(), WAKE_TOKEN)?;
        for (i, port) in ports.iter().enumerate() {
            if let Some(fd) = port.io.fd() {
                add(fd, i as u64)?;
            }
        }
        if let Some(tunnels) = &tunnels {
            add(tunnels.fd(), TUNNEL_TOKEN)?;
        }
        let (jobs, jobs_rx) = mpsc::channel();
        let handle = SwitchHandle {
            jobs,
            wake,
            ..self.handle.clone()
        };
        Ok(Switch {
            pipeline: self.pipeline.clone(),
            control: None,
            cache: MegaflowCache::default(),
            egress: Egress {
                ports,
                shared: self.egress.shared.clone(),
                gateway_mac: self.egress.gateway_mac,
                gateway_ip: self.egress.gateway_ip,
                packet_in: self.egress.packet_in.clone(),
            },
            tunnels,
            arp: self.arp,
            port_arp: self.port_arp.clone(),
            guards: self.guards.clone(),
            dhcp: self.dhcp.clone(),
            link: self.link.clone(),
            jobs: jobs_rx,
            handle,
            epoll,
            crew: Crew {
                worker,
                ..Crew::default()
            },
            helpers: Vec::new(),
        })
    }

    /// Starts `helpers` on threads of `scope`; each forwards until `stop`.
    /// They inherit the calling (forwarding) thread's scheduling.
    pub(super) fn start_helpers<'scope>(
        helpers: Vec<Switch>,
        scope: &'scope Scope<'scope, '_>,
        stop: &'scope AtomicBool,
    ) -> io::Result<Vec<ScopedJoinHandle<'scope, Switch>>> {
        helpers
            .into_iter()
            .map(|mut helper| {
                std::thread::Builder::new()
                    .name(format!("forward-{}", helper.crew.worker))
                    .spawn_scoped(scope, move || {
                        if let Err(e) = helper.forward(stop) {
                            tracing::error!(
                                worker = helper.crew.worker,
                                "forwarding worker stopped: {e}"
                            );
                        }
                        helper
                    })
            })
            .collect()
    }

    /// The helpers back from their threads (those that panicked are lost).
    pub(super) fn join_helpers(threads: Vec<ScopedJoinHandle<'_, Switch>>) -> Vec<Switch> {
        threads
            .into_iter()
            .filter_map(|thread| thread.join().ok())
            .collect()
    }

    /// Takes what the other workers handed over for this one's tunnel peers:
    /// frames are encrypted and sent, datagrams handled as if read here.
    pub(super) fn send_handed(
        &mut self,
        frame: &mut FrameBuf,
        coalescer: &mut Coalescer,
        scratch: &mut Scratch,
        now: std::time::Instant,
    ) {
        let mut received = false;
        for ring in 0..self.crew.from_workers.len() {
            while let Some(handed) = self.crew.from_workers[ring].take() {
                match handed.cargo {
                    Cargo::Frame {
                        port,
                        in_port,
                        offload,
                    } => {
                        let ports = &self.egress.ports;
                        let tunnel = ports.iter().position(|p| p.number == port);
                        let in_idx = ports.iter().position(|p| p.number == in_port);
                        if let Some(idx) = tunnel {
                            let mut out = Output {
                                egress: &self.egress,
                                tunnels: &mut self.tunnels,
                                icmp: &mut scratch.icmp,
                                segment: &mut scratch.segment,
                                offload,
                                in_idx: in_idx.unwrap_or(usize::MAX),
                                classified: None,
                                in_port,
                                to_owner: None,
                            };
                            out.send_tunnel(idx, handed.peer, handed.frame());
                        }
                    }
                    Cargo::Datagram { from } => {
                        received = true;
                        let datagram = (handed.peer, from, handed.frame());
                        self.receive_handed(datagram, frame, coalescer, scratch, now);
                    }
                }
                self.crew.from_workers[ring].give_back(handed);
            }
        }
        if received {
            self.flush_coalesced(coalescer, scratch, now);
        }
    }

    /// The status of every tunnel peer, from every worker, in configuration
    /// order (the job queue of worker 0 asks the others).
    pub(super) fn tunnel_status_everywhere(&self) -> Vec<PeerStatus> {
        let Some(tunnels) = self.tunnels.as_ref() else {
            return Vec::new();
        };
        let mut status = tunnels.status();
        for helper in &self.crew.helper_handles {
            match helper.ask(Work::TunnelStatus) {
                Ok(theirs) => status.extend(theirs),
                Err(e) => tracing::warn!("a forwarding worker gave no tunnel status: {e}"),
            }
        }
        status.sort_by_key(|s| tunnels.peer_of_port(s.port));
        status
    }

    /// Binds (or unbinds) a port on this worker and then on every other, all
    /// or nothing: when another worker does not take the binding, every worker
    /// that did goes back to the port's previous one and the caller learns
    /// which worker refused, so the workers never check a port's frames
    /// against different VMs.
    pub(super) fn bind_everywhere(
        &mut self,
        port: PortNo,
        binding: Option<PortBinding>,
    ) -> Result<(), BindRefused> {
        let at = self.egress.ports.iter().position(|p| p.number == port);
        let previous = at.and_then(|idx| self.guards.binding(idx).cloned());
        self.guards
            .bind(&self.egress.ports, port, binding.clone())?;
        let refused = self
            .crew
            .helper_handles
            .iter()
            .enumerate()
            .find_map(|(i, helper)| {
                let why = match helper.ask(|tx| Work::Bind(port, binding.clone(), tx)) {
                    Ok(Ok(())) => return None,
                    Ok(Err(BindRefused::NoSuchPort(_))) => "it has no such port",
                    Ok(Err(BindRefused::NotAVmPort(_))) => "it has it as a tunnel or an uplink",
                    Ok(Err(BindRefused::Worker { .. })) => "another worker refused",
                    Err(SwitchGone) => {
                        // Stopped, or stuck: should it resume, it binds and
                        // then finds the previous binding back in its queue.
                        helper.tell(|tx| Work::Bind(port, previous.clone(), tx));
                        "it is not running"
                    }
                };
                Some((i, why))
            });
        let Some((refusing, why)) = refused else {
            return Ok(());
        };
        // Taking back what worker 0 already took cannot fail: the port is
        // there and bindable. Neither can restoring the helpers before the
        // refusing one, short of one stopping now, which is said loudly.
        let _ = self.guards.bind(&self.egress.ports, port, previous.clone());
        for (i, helper) in self.crew.helper_handles[..refusing].iter().enumerate() {
            let undone = helper.ask(|tx| Work::Bind(port, previous.clone(), tx));
            if !matches!(undone, Ok(Ok(()))) {
                tracing::error!(
                    port,
                    worker = i + 1,
                    "a forwarding worker kept a binding the others gave back: {undone:?}"
                );
            }
        }
        let worker = refusing + 1;
        tracing::warn!(
            port,
            worker,
            "a forwarding worker refused a binding ({why}); none kept it"
        );
        Err(BindRefused::Worker { worker, port, why })
    }

    /// Hands each other worker its queue of a port worker 0 just added, all or
    /// nothing: when one does not take it, every worker that did (worker 0
    /// included) removes the port again, closing its queues, and the caller
    /// learns why.
    pub(super) fn spread_added(
        &mut self,
        queues: Vec<PortIo>,
        info: &Arc<PortInfo>,
        binding: Option<PortBinding>,
    ) -> Result<(), PortSetError> {
        // The queues of the workers after a refusing one are closed with the
        // iterator.
        let mut handed = self.crew.helper_handles.iter().zip(queues);
        let refused = handed.by_ref().enumerate().find_map(|(i, (helper, io))| {
            let port = Box::new(Port {
                number: info.number,
                io,
                info: info.clone(),
            });
            match helper.ask(|tx| Work::AddQueue(port, binding.clone(), tx)) {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some((i, e.to_string())),
                Err(gone) => {
                    // Stopped, or stuck: should it resume, it adds its queue
                    // and then finds the removal in its queue.
                    helper.tell(|tx| Work::RemoveQueue(info.number, tx));
                    Some((i, gone.to_string()))
                }
            }
        });
        drop(handed);
        let Some((refusing, why)) = refused else {
            return Ok(());
        };
        for (i, helper) in self.crew.helper_handles[..refusing].iter().enumerate() {
            let undone = helper.ask(|tx| Work::RemoveQueue(info.number, tx));
            if !matches!(undone, Ok(Ok(()))) {
                tracing::error!(
                    port = info.number,
                    worker = i + 1,
                    "a forwarding worker kept a port the others removed: {undone:?}"
                );
            }
        }
        if let Err(e) = self.remove_queue(info.number) {
            tracing::error!(
                port = info.number,
                "worker 0 kept a port it could not add: {e}"
            );
        }
        let worker = refusing + 1;
        tracing::warn!(
            port = info.number,
            worker,
            "a forwarding worker refused a port's queue ({why}); no worker kept it"
        );
        Err(PortSetError::Worker { worker, why })
    }

    /// Has every other worker close its queue of a port worker 0 removed.
    pub(super) fn spread_removed(&self, number: PortNo) {
        for helper in &self.crew.helper_handles {
            let done = helper.ask(|tx| Work::RemoveQueue(number, tx));
            if !matches!(done, Ok(Ok(()))) {
                tracing::error!(
                    port = number,
                    "a forwarding worker kept its queue: {done:?}"
                );
            }
        }
    }
}
