//! The I/O-free core of `scd`, the per-host userspace switch of the supercloud
//! overlay: packet views, the OpenFlow pipeline with its classifier, its exact-match
//! and wildcard (megaflow) caches, frame rewriting, the software side of segmentation offloads, the ARP
//! responder, IPv6 neighbour discovery (`nd`), the DHCP server of VM ports and the OpenFlow translation.
//!
//! Nothing here opens a socket, starts a thread or reads a clock: time is passed
//! in (the `wall-clock` feature adds `Pipeline::from_flows`, a convenience for
//! tests and tools that installs at the current time). That is how the
//! controller's tests run compiled tables through the very classifier `scd` uses,
//! and how the daemon's logic is tested without a kernel. The daemon (`dataplane`) is a thin shell of ports, sockets and
//! threads around it.

#![forbid(unsafe_code)]

pub mod arp;
pub mod cache;
pub mod classifier;
pub mod cow;
pub mod dhcp;
pub mod exec;
pub mod flow_id;
pub mod icmp6;
pub mod megaflow;
pub mod nd;
pub mod offload;
pub mod packet;
pub mod packet_io;
pub mod pipeline;
pub mod port;
pub mod port_security;
pub mod translate;
pub mod vlan_tag;
