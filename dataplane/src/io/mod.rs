//! The daemon's syscall wrappers: TAP devices, raw packet sockets on host
//! interfaces, and batched UDP. Everything here that needs `unsafe` (ioctls,
//! `sendmmsg`/`recvmmsg`, `setns`) is confined to these modules; the rest of the
//! daemon sees safe ports and sockets.

pub mod rawport;
pub mod tap;
pub mod udpbatch;
