//! Every open connection: its role, its asynchronous-message masks (set-async),
//! its socket for writing, the master/slave generation, and the broadcast of
//! asynchronous messages, each to the connections whose role and masks want it.

use super::stream::OfStream;
use openflow::wire::{
    encode_into, AsyncConfig, ControllerRole, ErrorCode, Message, Role, RoleRequestFailed,
};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// One connection as the rest of the channel sees it: its role and its socket.
#[derive(Debug)]
pub struct Conn {
    pub(super) id: u64,
    pub(super) peer: String,
    /// `ofp_controller_role` on the wire (equal, master or slave).
    role: AtomicU32,
    /// True once hellos are exchanged: asynchronous messages may go out.
    pub(super) ready: AtomicBool,
    /// Which asynchronous messages it wants, per role (set-async).
    async_config: Mutex<AsyncConfig>,
    writer: Mutex<Option<OfStream>>,
}

impl Conn {
    /// The connection's current role.
    pub fn role(&self) -> ControllerRole {
        ControllerRole::from_wire(self.role.load(Ordering::Relaxed))
    }

    /// Its asynchronous-message masks.
    pub fn async_config(&self) -> AsyncConfig {
        *self.async_config.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces its asynchronous-message masks (set-async).
    pub fn set_async_config(&self, config: AsyncConfig) {
        *self.async_config.lock().unwrap_or_else(|e| e.into_inner()) = config;
    }

    /// True when this connection, in its current role, wants `msg`: packet-in,
    /// port-status and flow-removed go by the masks of its role (OpenFlow 1.3
    /// §6.1.1); any other message goes to every connection but a slave.
    pub fn wants(&self, msg: &Message) -> bool {
        let role = self.role();
        let slave = usize::from(role == ControllerRole::Slave);
        let config = self.async_config();
        let by = |masks: [u32; 2], reason: u8| {
            masks[slave]
                .checked_shr(u32::from(reason))
                .is_some_and(|bits| bits & 1 == 1)
        };
        match msg {
            Message::PacketIn(p) => by(config.packet_in_mask, p.reason.to_wire()),
            Message::PortStatus(p) => by(config.port_status_mask, p.reason.to_wire()),
            Message::FlowRemoved(f) => by(config.flow_removed_mask, f.reason.to_wire()),
            _ => role != ControllerRole::Slave,
        }
    }

    /// Writes bytes; on failure the socket is shut down (its reader then ends).
    pub(super) fn send(&self, bytes: &[u8]) -> bool {
        let Ok(mut guard) = self.writer.lock() else {
            return false;
        };
        let Some(stream) = guard.as_mut() else {
            return false;
        };
        if stream.write_all(bytes).is_ok() {
            return true;
        }
        let _ = stream.shutdown();
        *guard = None;
        false
    }
}

#[derive(Debug, Default)]
struct RegistryInner {
    next_id: u64,
    /// Highest master/slave generation id seen.
    generation: Option<u64>,
    conns: Vec<Arc<Conn>>,
}

/// Every open connection, for roles and for asynchronous messages.
#[derive(Debug, Default)]
pub struct Registry {
    inner: Mutex<RegistryInner>,
}

impl Registry {
    /// Registers a connection (with its socket, or none in tests).
    pub fn add(&self, peer: String, writer: Option<OfStream>) -> Arc<Conn> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.next_id += 1;
        let conn = Arc::new(Conn {
            id: inner.next_id,
            peer,
            role: AtomicU32::new(ControllerRole::Equal.to_wire()),
            ready: AtomicBool::new(false),
            async_config: Mutex::new(AsyncConfig::default()),
            writer: Mutex::new(writer),
        });
        inner.conns.push(conn.clone());
        conn
    }

    /// Forgets a connection.
    pub fn remove(&self, id: u64) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.conns.retain(|c| c.id != id);
    }

    /// Number of connections.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .conns
            .len()
    }

    /// True without connections.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Handles a role request of `conn` (OpenFlow 1.3 section 6.3.5): a stale
    /// generation id is refused; a new master turns the old one into a slave.
    pub fn request_role(&self, conn: &Conn, req: Role) -> Result<Role, ErrorCode> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match req.role {
            ControllerRole::NoChange => {
                return Ok(Role {
                    role: conn.role(),
                    generation_id: inner.generation.unwrap_or(0),
                })
            }
            ControllerRole::Master | ControllerRole::Slave => {
                if let Some(known) = inner.generation {
                    // Compared as a wrapping distance, as the spec asks.
                    if (req.generation_id.wrapping_sub(known) as i64) < 0 {
                        return Err(ErrorCode::RoleRequestFailed(RoleRequestFailed::Stale));
                    }
                }
                inner.generation = Some(req.generation_id);
            }
            ControllerRole::Equal => {}
            ControllerRole::Other(_) => {
                return Err(ErrorCode::RoleRequestFailed(RoleRequestFailed::BadRole))
            }
        }
        if req.role == ControllerRole::Master {
            for other in &inner.conns {
                if other.id != conn.id && other.role() == ControllerRole::Master {
                    other
                        .role
                        .store(ControllerRole::Slave.to_wire(), Ordering::Relaxed);
                }
            }
        }
        conn.role.store(req.role.to_wire(), Ordering::Relaxed);
        Ok(req)
    }

    /// Sends `msg` to every ready connection that wants it (see [`Conn::wants`]);
    /// returns how many got it.
    pub fn broadcast(&self, msg: &Message) -> usize {
        let conns: Vec<Arc<Conn>> = self
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .conns
            .clone();
        let mut bytes = Vec::new();
        if encode_into(msg, 0, &mut bytes).is_err() {
            return 0;
        }
        conns
            .iter()
            .filter(|c| c.ready.load(Ordering::Relaxed) && c.wants(msg))
            .filter(|c| c.send(&bytes))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openflow::wire::{
        FlowRemoved, FlowRemovedReason, PacketIn, PacketInReason, PortDesc, PortReason, PortStatus,
    };

    fn packet_in(reason: PacketInReason) -> Message {
        Message::PacketIn(PacketIn {
            buffer_id: None,
            total_len: 0,
            reason,
            table_id: 0,
            cookie: 0,
            matcher: openflow::FlowMatch::any(),
            data: Vec::new(),
        })
    }

    fn port_status() -> Message {
        Message::PortStatus(PortStatus {
            reason: PortReason::Modify,
            desc: PortDesc::default(),
        })
    }

    fn flow_removed() -> Message {
        Message::FlowRemoved(FlowRemoved {
            cookie: 0,
            priority: 0,
            reason: FlowRemovedReason::IdleTimeout,
            table_id: 0,
            duration_sec: 0,
            duration_nsec: 0,
            idle_timeout: 0,
            hard_timeout: 0,
            packet_count: 0,
            byte_count: 0,
            matcher: openflow::FlowMatch::any(),
        })
    }

    #[test]
    fn asynchronous_messages_follow_the_masks_of_the_role() {
        let registry = Registry::default();
        let conn = registry.add("test".into(), None);
        // Defaults: master/equal get everything but invalid-TTL; a slave only
        // port-status.
        assert!(conn.wants(&packet_in(PacketInReason::NoMatch)));
        assert!(!conn.wants(&packet_in(PacketInReason::InvalidTtl)));
        assert!(conn.wants(&flow_removed()));
        assert!(conn.wants(&port_status()));
        registry
            .request_role(
                &conn,
                Role {
                    role: ControllerRole::Slave,
                    generation_id: 1,
                },
            )
            .unwrap();
        assert!(!conn.wants(&packet_in(PacketInReason::Action)));
        assert!(!conn.wants(&flow_removed()));
        assert!(conn.wants(&port_status()));
        assert!(!conn.wants(&Message::BarrierReply));
        // Set-async: this slave asks for action packet-ins and no port-status.
        conn.set_async_config(AsyncConfig {
            packet_in_mask: [0, 1 << 1],
            port_status_mask: [0b111, 0],
            flow_removed_mask: [0, 0],
        });
        assert!(conn.wants(&packet_in(PacketInReason::Action)));
        assert!(!conn.wants(&packet_in(PacketInReason::NoMatch)));
        assert!(!conn.wants(&port_status()));
        // Back to equal: the master/equal masks apply.
        registry
            .request_role(
                &conn,
                Role {
                    role: ControllerRole::Equal,
                    generation_id: 1,
                },
            )
            .unwrap();
        assert!(!conn.wants(&packet_in(PacketInReason::Action)));
        assert!(conn.wants(&port_status()));
    }
}
