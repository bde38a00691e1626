//! Ports that come and go while the switch runs: adding a local port to the
//! forwarding workers' sets and removing one, between two rounds of their loops,
//! so no frame of another port waits and the tables are not touched. Worker 0
//! takes the request, keeps the port's first queue and hands each other worker
//! its own (`workers`). The epoll tokens are indices into the port list, so a
//! removal renumbers the ports after it (their registrations and the per-port
//! ARP responders and guards move with them); every worker's list keeps the same
//! order. Each change is queued as a port-status for the OpenFlow channel.

use super::event_loop::Switch;
use super::ports::{NewPort, Port, PortSetError};
use super::PortInfo;
use dataplane_core::port_security::PortBinding;
use openflow::flow::{port, PortNo};
use openflow::wire::PortReason;
use std::sync::Arc;

impl Switch {
    fn epoll_ctl(&self, op: i32, fd: i32, token: u64) -> std::io::Result<()> {
        crate::io::epoll_ctl(&self.epoll, op, fd, token)
    }

    fn publish_ports(&self) {
        let infos = self.egress.ports.iter().map(|p| p.info.clone()).collect();
        self.egress.shared.ports.store(Arc::new(infos));
    }

    /// Appends `new` to the ports of every worker, watched from the next round on.
    pub(super) fn add_port(&mut self, new: NewPort) -> Result<(), PortSetError> {
        let name = new.local.name().to_string();
        if new.number == 0 || new.number > port::MAX {
            return Err(PortSetError::BadNumber(new.number));
        }
        if let Some(p) = self
            .egress
            .ports
            .iter()
            .find(|p| p.number == new.number || p.info.name == name)
        {
            return Err(PortSetError::Exists {
                number: new.number,
                name,
                existing: p.number,
                existing_name: p.info.name.clone(),
            });
        }
        let mut io = new.local.into_io();
        let workers = self.helpers_count() + 1;
        let queues = io.take_queues(workers);
        if queues.len() + 1 != workers {
            return Err(PortSetError::Queues {
                queues: queues.len() + 1,
                workers,
            });
        }
        let info = Arc::new(PortInfo::new(new.number, name, new.probe));
        let port = Port {
            number: new.number,
            io,
            info: info.clone(),
        };
        self.add_queue(port, new.binding.clone())?;
        self.spread_added(queues, &info, new.binding)?;
        self.publish_ports();
        self.egress.shared.announce(PortReason::Add, &info);
        Ok(())
    }

    /// Appends this worker's queue of a port (every worker does, in the same
    /// order, so a port has one index everywhere).
    pub(super) fn add_queue(
        &mut self,
        port: Port,
        binding: Option<PortBinding>,
    ) -> Result<(), PortSetError> {
        let idx = self.egress.ports.len();
        if let Some(fd) = port.io.fd() {
            self.epoll_ctl(libc::EPOLL_CTL_ADD, fd, idx as u64)
                .map_err(|e| PortSetError::Poll(e.to_string()))?;
        }
        self.egress.ports.push(port);
        self.guards.push(binding);
        Ok(())
    }

    /// Stops watching the port at `idx` on this worker: its device is gone
    /// (`why`: a TAP deleted under `scd`, its namespace removed), so its
    /// descriptor would report an error at every poll and the loop would spin
    /// on it. The port stays listed with its link down (announced as a
    /// port-status: the link watcher cannot see a device that lived in another
    /// namespace, so this is the only one to know) until `scd port del`
    /// removes it; a TAP made again
    /// needs `scd port add` after that, since the old descriptor cannot reach
    /// it.
    pub(super) fn stop_watching_gone_device(&mut self, idx: usize, why: &std::io::Error) {
        let Some(port) = self.egress.ports.get(idx) else {
            return;
        };
        if let Some(fd) = port.io.fd() {
            if self.epoll_ctl(libc::EPOLL_CTL_DEL, fd, 0).is_ok() {
                // Every worker gets here for its own queue; the first one to
                // change the state announces it.
                if port.info.link.set_interface(false, false) {
                    self.egress.shared.announce(PortReason::Modify, &port.info);
                }
                tracing::warn!(
                    port = port.number,
                    name = %port.info.name,
                    worker = self.crew.worker,
                    "the port's device is gone ({why}); no longer read: remove it with `scd port del`, then `scd port add` it once the device is back"
                );
            }
        }
    }

    /// Removes local port `number` from every worker and closes its device.
    pub(super) fn remove_port(&mut self, number: PortNo) -> Result<(), PortSetError> {
        let port = self.egress.ports.iter().find(|p| p.number == number);
        match port {
            None => return Err(PortSetError::NoSuchPort(number)),
            Some(p) if p.io.fd().is_none() => return Err(PortSetError::NotLocal(number)),
            Some(_) => {}
        }
        let removed = self.remove_queue(number)?;
        self.spread_removed(number);
        self.publish_ports();
        self.egress
            .shared
            .announce(PortReason::Delete, &removed.info);
        drop(removed);
        Ok(())
    }

    /// Removes this worker's queue of port `number` and renumbers the ports
    /// after it (callers take only local ports away: tunnels stay).
    pub(super) fn remove_queue(&mut self, number: PortNo) -> Result<Port, PortSetError> {
        let idx = self
            .egress
            .ports
            .iter()
            .position(|p| p.number == number)
            .ok_or(PortSetError::NoSuchPort(number))?;
        if let Some(fd) = self.egress.ports[idx].io.fd() {
            // Closing the descriptor would drop it from the set too; said
            // explicitly, it cannot outlive the port through a duplicate.
            let _ = self.epoll_ctl(libc::EPOLL_CTL_DEL, fd, 0);
        }
        let removed = self.egress.ports.remove(idx);
        self.guards.remove(idx);
        self.port_arp.retain(|(at, _)| *at != idx);
        for (at, _) in &mut self.port_arp {
            if *at > idx {
                *at -= 1;
            }
        }
        for (at, p) in self.egress.ports.iter().enumerate().skip(idx) {
            let Some(fd) = p.io.fd() else {
                continue;
            };
            match self.epoll_ctl(libc::EPOLL_CTL_MOD, fd, at as u64) {
                // A port whose device is gone is no longer watched.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => tracing::error!(port = p.number, "re-registering after a removal: {e}"),
                Ok(()) => {}
            }
        }
        Ok(removed)
    }
}
