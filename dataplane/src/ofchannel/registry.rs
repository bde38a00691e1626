//! Every open connection: its role, its socket for writing, the master/slave
//! generation, and the broadcast of asynchronous messages.

use super::stream::OfStream;
use openflow::wire::{encode_into, ControllerRole, ErrorCode, Message, Role, RoleRequestFailed};
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
    writer: Mutex<Option<OfStream>>,
}

impl Conn {
    /// The connection's current role.
    pub fn role(&self) -> ControllerRole {
        ControllerRole::from_wire(self.role.load(Ordering::Relaxed))
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

    /// Sends `msg` to every ready connection that is not a slave; returns how many
    /// got it.
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
            .filter(|c| c.ready.load(Ordering::Relaxed) && c.role() != ControllerRole::Slave)
            .filter(|c| c.send(&bytes))
            .count()
    }
}
