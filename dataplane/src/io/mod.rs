//! The daemon's syscall wrappers: TAP devices, raw packet sockets on host
//! interfaces, and batched UDP. Everything here that needs `unsafe` (ioctls,
//! `sendmmsg`/`recvmmsg`, `setns`) is confined to these modules; the rest of the
//! daemon sees safe ports and sockets.

use std::io;

pub mod rawport;
pub mod tap;
pub mod udpbatch;

/// The result of a libc call that returns a negative number on failure (with the
/// reason in `errno`) and anything else on success.
pub fn os_result(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}
