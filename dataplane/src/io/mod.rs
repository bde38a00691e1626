//! The daemon's syscall wrappers: TAP devices, raw packet sockets on host
//! interfaces, batched UDP, and the epoll sets and eventfds the forwarding
//! workers wait on. Everything here that needs `unsafe` (ioctls,
//! `sendmmsg`/`recvmmsg`, `setns`) is confined to these modules; the rest of the
//! daemon sees safe ports and sockets.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

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

/// A new epoll set.
pub fn epoll_new() -> io::Result<OwnedFd> {
    // SAFETY: plain epoll_create1; checked below.
    let epoll = os_result(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
    // SAFETY: fresh descriptor, owned here only.
    Ok(unsafe { OwnedFd::from_raw_fd(epoll) })
}

/// A new non-blocking eventfd (a wake-up another thread writes).
pub fn eventfd_new() -> io::Result<OwnedFd> {
    // SAFETY: plain eventfd; checked below.
    let fd = os_result(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
    // SAFETY: fresh descriptor, owned here only.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds (`EPOLL_CTL_ADD`), re-tokens (`MOD`) or removes (`DEL`) `fd`'s
/// readability in `epoll`, reported with `token`.
pub fn epoll_ctl(epoll: &OwnedFd, op: i32, fd: RawFd, token: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: token,
    };
    // SAFETY: `ev` is a valid epoll_event; the kernel checks both descriptors.
    os_result(unsafe { libc::epoll_ctl(epoll.as_raw_fd(), op, fd, &mut ev) }).map(drop)
}
