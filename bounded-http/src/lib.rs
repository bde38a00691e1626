//! HTTP/1.1 for the supercloud's local endpoints (`scc`'s JSON API, `scd`'s
//! Prometheus metrics), on hyper.
//!
//! It owns the framing and the limits: [`server`] serves any hyper service on any
//! listener with a connection cap, bounded request heads and bodies' time, and read
//! timeouts built in; [`client`] is the matching one-shot client that `scc`'s CLI,
//! the hypervisor glue and the namespace tests use; [`fake`] (feature `fake`) is a
//! stand-in server for tests of clients. It never knows what a route
//! means: routing and bodies belong to the crates that serve them.
#![forbid(unsafe_code)]

pub mod client;
#[cfg(feature = "fake")]
pub mod fake;
pub mod server;

pub use client::{Answer, ClientError, Endpoint};
pub use server::{serve, Limits, Listener};
