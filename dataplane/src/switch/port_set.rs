//! Ports that come and go while the switch runs: adding a local port to the
//! forwarding thread's set and removing one, between two rounds of its loop, so
//! no frame of another port waits and the tables are not touched. The epoll
//! tokens are indices into the port list, so a removal renumbers the ports after
//! it (their registrations and the per-port ARP responders and guards move with
//! them). Each change is queued as a port-status for the OpenFlow channel.

use super::event_loop::Switch;
use super::ports::{LocalPort, NewPort, Port, PortIo, PortSetError};
use super::PortInfo;
use crate::io::os_result;
use openflow::flow::{port, PortNo};
use openflow::wire::PortReason;
use std::os::fd::AsRawFd;
use std::sync::Arc;

impl Switch {
    fn epoll_ctl(&self, op: i32, fd: i32, token: u64) -> std::io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: `ev` is a valid epoll_event; both descriptors are open.
        os_result(unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), op, fd, &mut ev) }).map(drop)
    }

    fn publish_ports(&self) {
        let infos = self.egress.ports.iter().map(|p| p.info.clone()).collect();
        self.egress.shared.ports.store(Arc::new(infos));
    }

    /// Appends `new` to the ports, watched from the next round on.
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
        let idx = self.egress.ports.len();
        self.epoll_ctl(libc::EPOLL_CTL_ADD, new.local.fd(), idx as u64)
            .map_err(|e| PortSetError::Poll(e.to_string()))?;
        let info = Arc::new(PortInfo::new(new.number, name, new.probe));
        let io = match new.local {
            LocalPort::Tap(tap) => PortIo::Tap(tap),
            LocalPort::Raw(raw) => PortIo::Raw(raw),
        };
        self.egress.ports.push(Port {
            number: new.number,
            io,
            info: info.clone(),
        });
        self.guards.push(new.binding);
        self.publish_ports();
        self.egress.shared.announce(PortReason::Add, &info);
        Ok(())
    }

    /// Removes local port `number` and closes its device.
    pub(super) fn remove_port(&mut self, number: PortNo) -> Result<(), PortSetError> {
        let idx = self
            .egress
            .ports
            .iter()
            .position(|p| p.number == number)
            .ok_or(PortSetError::NoSuchPort(number))?;
        let fd = match &self.egress.ports[idx].io {
            PortIo::Tap(tap) => tap.as_raw_fd(),
            PortIo::Raw(raw) => raw.as_raw_fd(),
            PortIo::Tunnel(_) => return Err(PortSetError::NotLocal(number)),
        };
        // Closing the descriptor would drop it from the set too; said explicitly,
        // it cannot outlive the port through a duplicate.
        let _ = self.epoll_ctl(libc::EPOLL_CTL_DEL, fd, 0);
        let removed = self.egress.ports.remove(idx);
        self.guards.remove(idx);
        self.port_arp.retain(|(at, _)| *at != idx);
        for (at, _) in &mut self.port_arp {
            if *at > idx {
                *at -= 1;
            }
        }
        for (at, p) in self.egress.ports.iter().enumerate().skip(idx) {
            let fd = match &p.io {
                PortIo::Tap(tap) => tap.as_raw_fd(),
                PortIo::Raw(raw) => raw.as_raw_fd(),
                PortIo::Tunnel(_) => continue,
            };
            if let Err(e) = self.epoll_ctl(libc::EPOLL_CTL_MOD, fd, at as u64) {
                tracing::error!(port = p.number, "re-registering after a removal: {e}");
            }
        }
        self.publish_ports();
        self.egress
            .shared
            .announce(PortReason::Delete, &removed.info);
        drop(removed);
        Ok(())
    }
}
