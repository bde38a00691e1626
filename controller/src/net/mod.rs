//! All of the controller's network I/O: the OpenFlow sessions with the hosts'
//! switches (`listener` accepts them, `session` runs the protocol and keeps a
//! switch equal to the program, `sampling` absorbs what placement measures).
//! The sessions call the daemon (`crate::daemon`); the daemon never calls them:
//! it publishes program versions, which each session follows.

mod listener;
mod sampling;
mod session;

pub use listener::serve_openflow;
