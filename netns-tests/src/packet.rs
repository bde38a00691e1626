//! Packet sockets (AF_PACKET) bound to one interface of the calling thread's
//! namespace, for what the tests do below IP: capturing frames, writing a RARP
//! announcement or a forged frame from a VM, the delay line's forwarding.

use anyhow::Result;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The index of interface `ifname` in the calling thread's namespace.
pub fn ifindex(ifname: &str) -> Result<u32> {
    let name = std::ffi::CString::new(ifname)?;
    // SAFETY: `name` is NUL-terminated.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    anyhow::ensure!(index != 0, "no interface {ifname}");
    Ok(index)
}

/// A non-blocking packet socket of `kind` (`libc::SOCK_RAW`: whole frames;
/// `libc::SOCK_DGRAM`: from the network header on) for EtherType `protocol`
/// (`0x0003`, ETH_P_ALL: every frame), bound to `ifname`: it reads that
/// interface's frames and a plain `send` writes out of it.
pub fn packet_socket(ifname: &str, kind: libc::c_int, protocol: u16) -> Result<OwnedFd> {
    // SAFETY: plain socket(2); checked below.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            kind | libc::SOCK_NONBLOCK,
            i32::from(protocol.to_be()),
        )
    };
    anyhow::ensure!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh descriptor owned here only.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid start.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = u16::try_from(libc::AF_PACKET)?;
    addr.sll_protocol = protocol.to_be();
    addr.sll_ifindex = i32::try_from(ifindex(ifname)?)?;
    // SAFETY: `addr` is a valid sockaddr_ll of the given size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            u32::try_from(std::mem::size_of::<libc::sockaddr_ll>())?,
        )
    };
    anyhow::ensure!(rc == 0, "bind: {}", std::io::Error::last_os_error());
    Ok(fd)
}

/// Writes one frame out of the interface `fd` is bound to.
pub fn send_frame(fd: &OwnedFd, frame: &[u8]) -> Result<()> {
    // SAFETY: `frame` is valid for reads of its length.
    let n = unsafe { libc::send(fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
    anyhow::ensure!(
        usize::try_from(n).ok() == Some(frame.len()),
        "send: {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

/// Reads one waiting frame from `fd` into `buf`: its length and packet type
/// (`libc::PACKET_OUTGOING` for a frame this host sent), or `None` when none waits.
pub fn recv_frame(fd: &impl AsRawFd, buf: &mut [u8]) -> Option<(usize, u8)> {
    // SAFETY: sockaddr_ll is plain data; all-zero is valid.
    let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut len = u32::try_from(std::mem::size_of::<libc::sockaddr_ll>()).unwrap_or(0);
    // SAFETY: `buf` and `from` are valid for writes of the given sizes.
    let n = unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            0,
            (&mut from as *mut libc::sockaddr_ll).cast(),
            &mut len,
        )
    };
    usize::try_from(n)
        .ok()
        .filter(|n| *n > 0)
        .map(|n| (n, from.sll_pkttype))
}

/// Writes `frames` out of a namespace VM's TAP, from inside its namespace.
pub fn send_from(vm: &crate::Vm, frames: Vec<Vec<u8>>) -> Result<()> {
    let ifname = vm.ifname.clone();
    vm.ns.enter(move || -> Result<()> {
        let fd = packet_socket(&ifname, libc::SOCK_RAW, 0x0003)?;
        for frame in &frames {
            send_frame(&fd, frame)?;
        }
        Ok(())
    })?
}
