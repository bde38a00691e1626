//! `scd`, the per-host userspace switch of the supercloud overlay.
//!
//! The I/O-free core (packet views, the OpenFlow pipeline, the exact-match cache,
//! frame rewriting, the ARP responder) is usable on its own, which is how the
//! controller's tests run compiled tables through the very classifier `scd` uses.
//! The daemon parts (ports, the switch loop, metrics) are thin shells around it.

pub mod arp;
pub mod cache;
pub mod classifier;
pub mod config;
pub mod exec;
pub mod keys;
pub mod metrics;
pub mod ofchannel;
pub mod offload;
pub mod packet;
pub mod rawport;
pub mod switch;
pub mod table;
pub mod tap;
pub mod tunnel;
pub mod udpbatch;
