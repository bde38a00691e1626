//! `scd`, the per-host userspace switch of the supercloud overlay: the daemon.
//!
//! The I/O-free core (packet views, the OpenFlow pipeline, the exact-match cache,
//! frame rewriting, the ARP responder) lives in `dataplane_core`; this crate is the
//! shell of ports, sockets and threads around it (the switch loop, tunnels, the
//! OpenFlow channel, metrics), the host configuration and the static flows file.

pub mod config;
pub mod io;
pub mod keys;
pub mod metrics;
pub mod ofchannel;
pub mod portctl;
pub mod privileges;
pub mod scheduling;
pub mod static_flows;
pub mod switch;
pub mod tunnel;
