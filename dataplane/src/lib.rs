//! `scd`, the per-host userspace switch of the supercloud overlay: the daemon.
//!
//! The I/O-free core (packet views, the OpenFlow pipeline, the exact-match cache,
//! frame rewriting, the ARP responder) lives in `dataplane_core`; this crate is the
//! shell of ports, sockets and threads around it (the switch loop, tunnels, the
//! OpenFlow channel, metrics) and the host configuration.

pub mod config;
pub mod io;
pub mod keys;
pub mod metrics;
pub mod ofchannel;
pub mod switch;
pub mod tunnel;
