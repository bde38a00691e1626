//! All of the controller's network I/O: the OpenFlow sessions with the hosts'
//! switches (`listener` accepts them, over mutual TLS when configured;
//! `admission` decides whether a switch is who it says it is and the only
//! session of its datapath; `session` runs the protocol and keeps a
//! switch equal to the program, auditing its flows; `liveness` decides when a
//! silent switch is gone; `sampling` absorbs what placement measures; `stagger`
//! spreads the sessions' periodic audits and samples over their period).
//! The sessions call the daemon (`crate::daemon`); the daemon never calls them:
//! it publishes program versions, which each session follows.

mod admission;
mod listener;
mod liveness;
#[cfg(test)]
mod port_tests;
mod sampling;
mod session;
mod stagger;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;

pub use admission::Refusal;
pub use listener::{serve_openflow, OpenflowTls};
