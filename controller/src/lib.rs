//! The supercloud controller: on top of the NetKAT policy compiler (the `netkat`
//! crate, re-exported as [`netkat`] so `crate::netkat::…` paths keep working), the
//! daemon that programs every host's switch: the inventory ([`inventory`]), the
//! routing it implies composed with the user's policy ([`routing`]), the difference
//! to send to a switch ([`diff`]), the change pipeline and versions of the network
//! program ([`daemon`]), the migration state machine ([`migration`]), the OpenFlow
//! sessions ([`net`]), the placement engine ([`placement`]), the embedded store ([`store`]) or, for replicated controllers, etcd ([`replica`], both behind [`state_store`]), the local API ([`api`]) with its
//! Prometheus metrics ([`metrics`]) and
//! the gateways that serve public addresses by NAT ([`gateway`]).
#![forbid(unsafe_code)]
pub mod api;
pub mod console;
pub mod daemon;
pub mod diff;
pub mod export;
pub mod feed;
pub mod follow;
pub mod gateway;
pub mod gateway6;
pub mod host_config;
pub mod human;
pub mod inventory;
pub mod measure;
pub mod metrics;
pub mod migration;
pub mod model;
pub mod net;
pub use netkat;
pub mod placement;
pub mod port_requests;
pub mod program;
pub mod replica;
pub mod restart;
pub mod routing;
pub mod routing6;
pub mod state_store;
pub mod store;
