//! The OpenFlow 1.3 channel of `scd`: passive listeners for tools (`ptcp:`, and
//! `punix:` with mode 0600), each with a connection cap and an idle timeout, and
//! active connections to controllers (`tcp:`), each served by its own thread.
//!
//! This module owns the per-connection session (hello and version negotiation,
//! roles, keepalive, the answers to every request `scd` understands) and the
//! translation between OpenFlow messages and the switch: flow-mods become
//! [`Pipeline`] changes run on the switch thread through [`SwitchHandle::call`]
//! (consecutive flow-mods of one connection in one call; a group-mod in its own
//! call, in order with them), statistics and group descriptions are read the
//! same way, the Supercloud tunnel statistics (an experimenter multipart) through
//! [`SwitchHandle::tunnel_status`], packet-outs go through
//! [`SwitchHandle::packet_out`], and packet-ins and
//! flow-removed messages arrive from the switch thread through bounded channels and
//! are written to every connection that is not a slave. Replies of one connection
//! are written in the order of its requests, which is what makes a barrier reply
//! mean "everything before it is applied". A malformed or unsupported message gets
//! its OpenFlow error reply and the connection lives on; only a framing error
//! (header length below 8) closes that one connection.
//!
//! It never touches the tables except through the switch handle, never blocks the
//! switch thread (it only ever waits for it), and never panics on any input.

mod backend;
mod backoff;
mod info;
pub(crate) mod listener;
mod liveness;
mod net;
mod registry;
mod session;
mod stream;
mod tls_stream;

pub use backend::{Backend, FlowModResults, SwitchBackend};
pub use info::DatapathInfo;
pub use net::{Channel, ChannelError, ChannelTls, ECHO_INTERVAL, MISSED_ECHOES, PACKET_IN_DEPTH};
pub use registry::{Conn, Registry};
pub use session::{Outcome, Session};
pub use stream::OfStream;
pub use tls_stream::TlsStream;

#[cfg(test)]
mod listen_tests;
#[cfg(test)]
mod running_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;
