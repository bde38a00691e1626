//! Batched UDP I/O for the tunnel socket: many datagrams per system call.
//!
//! `SendBatch` gathers encrypted datagrams (each with its destination) in one buffer
//! and hands them to the kernel with one `sendmmsg`; `RecvBatch` takes up to a
//! batch of waiting datagrams with one `recvmmsg` and yields them one by one. This
//! module owns the buffers and the `mmsghdr` plumbing; it never looks inside a
//! datagram, and after construction it never allocates.

use std::io;
use std::mem::size_of;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Datagrams per system call.
pub const BATCH: usize = 64;

/// Room for one datagram: an inner packet up to 65,535 bytes would not fit, but the
/// tunnel MTU is enforced before encryption, so a slot holds the largest allowed
/// packet plus WireGuard's 32 bytes of overhead.
pub const SLOT: usize = 9216;

// Small constants of the C API; the casts cannot truncate.
#[allow(clippy::cast_possible_truncation)]
const FAMILY_V4: libc::sa_family_t = libc::AF_INET as libc::sa_family_t;
#[allow(clippy::cast_possible_truncation)]
const FAMILY_V6: libc::sa_family_t = libc::AF_INET6 as libc::sa_family_t;
#[allow(clippy::cast_possible_truncation)]
const LEN_V4: libc::socklen_t = size_of::<libc::sockaddr_in>() as libc::socklen_t;
#[allow(clippy::cast_possible_truncation)]
const LEN_V6: libc::socklen_t = size_of::<libc::sockaddr_in6>() as libc::socklen_t;
#[allow(clippy::cast_possible_truncation)]
const LEN_STORAGE: libc::socklen_t = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
#[allow(clippy::cast_possible_truncation)]
const BATCH_C: libc::c_uint = BATCH as libc::c_uint;

fn to_storage(addr: &SocketAddr, out: &mut libc::sockaddr_storage) -> libc::socklen_t {
    // SAFETY: sockaddr_storage is plain data; all-zero is valid.
    *out = unsafe { std::mem::zeroed() };
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
            let sin =
                unsafe { &mut *(out as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = FAMILY_V4;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            LEN_V4
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in6.
            let sin6 =
                unsafe { &mut *(out as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = FAMILY_V6;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_scope_id = a.scope_id();
            LEN_V6
        }
    }
}

fn from_storage(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(s.ss_family) {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in when the family is AF_INET.
            let sin = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the kernel wrote a sockaddr_in6 when the family is AF_INET6.
            let sin6 =
                unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Datagrams waiting to be sent.
pub struct SendBatch {
    buf: Box<[u8]>,
    lens: [usize; BATCH],
    addrs: Box<[libc::sockaddr_storage; BATCH]>,
    addr_lens: [libc::socklen_t; BATCH],
    n: usize,
}

impl std::fmt::Debug for SendBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBatch")
            .field("queued", &self.n)
            .finish()
    }
}

impl Default for SendBatch {
    fn default() -> Self {
        SendBatch {
            buf: vec![0u8; SLOT * BATCH].into_boxed_slice(),
            lens: [0; BATCH],
            // SAFETY: sockaddr_storage is plain data; all-zero is valid.
            addrs: Box::new(unsafe { std::mem::zeroed() }),
            addr_lens: [0; BATCH],
            n: 0,
        }
    }
}

impl SendBatch {
    /// True when no slot is left.
    pub fn is_full(&self) -> bool {
        self.n == BATCH
    }

    /// Number of queued datagrams.
    pub fn len(&self) -> usize {
        self.n
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The next free slot, to write a datagram into (`None` when full).
    pub fn slot(&mut self) -> Option<&mut [u8]> {
        (self.n < BATCH).then(|| &mut self.buf[self.n * SLOT..(self.n + 1) * SLOT])
    }

    /// Queues the `len` bytes just written into [`Self::slot`] for `to`.
    pub fn commit(&mut self, len: usize, to: &SocketAddr) {
        if self.n < BATCH {
            self.lens[self.n] = len.min(SLOT);
            self.addr_lens[self.n] = to_storage(to, &mut self.addrs[self.n]);
            self.n += 1;
        }
    }

    /// Sends everything queued with `sendmmsg`; returns how many datagrams the
    /// kernel refused (the batch is empty afterwards either way).
    pub fn flush(&mut self, fd: RawFd) -> usize {
        let mut iovecs: [libc::iovec; BATCH] = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; BATCH];
        // SAFETY: mmsghdr is plain data; all-zero is valid.
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        let mut sent = 0usize;
        let mut failed = 0usize;
        while sent < self.n {
            let count = self.n - sent;
            for i in 0..count {
                let k = sent + i;
                iovecs[i] = libc::iovec {
                    iov_base: self.buf[k * SLOT..].as_mut_ptr().cast(),
                    iov_len: self.lens[k],
                };
                msgs[i].msg_hdr.msg_name =
                    (&mut self.addrs[k] as *mut libc::sockaddr_storage).cast();
                msgs[i].msg_hdr.msg_namelen = self.addr_lens[k];
                msgs[i].msg_hdr.msg_iov = &mut iovecs[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: `msgs[..count]` point into live buffers of this batch for the
            // duration of the call.
            let rc = unsafe {
                libc::sendmmsg(
                    fd,
                    msgs.as_mut_ptr(),
                    libc::c_uint::try_from(count).unwrap_or(BATCH_C),
                    libc::MSG_DONTWAIT,
                )
            };
            if rc <= 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // The first datagram left is refused; skip it and go on.
                failed += 1;
                sent += 1;
            } else {
                sent += rc.unsigned_abs() as usize;
            }
        }
        self.n = 0;
        failed
    }
}

/// Datagrams received and not yet handed out.
pub struct RecvBatch {
    buf: Box<[u8]>,
    lens: [usize; BATCH],
    froms: [Option<SocketAddr>; BATCH],
    count: usize,
    next: usize,
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("pending", &(self.count - self.next))
            .finish()
    }
}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch {
            buf: vec![0u8; SLOT * BATCH].into_boxed_slice(),
            lens: [0; BATCH],
            froms: [None; BATCH],
            count: 0,
            next: 0,
        }
    }
}

impl RecvBatch {
    fn refill(&mut self, fd: RawFd) -> io::Result<()> {
        let mut iovecs: [libc::iovec; BATCH] = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; BATCH];
        // SAFETY: sockaddr_storage and mmsghdr are plain data; all-zero is valid.
        let mut addrs: [libc::sockaddr_storage; BATCH] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for i in 0..BATCH {
            iovecs[i] = libc::iovec {
                iov_base: self.buf[i * SLOT..].as_mut_ptr().cast(),
                iov_len: SLOT,
            };
            msgs[i].msg_hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_storage).cast();
            msgs[i].msg_hdr.msg_namelen = LEN_STORAGE;
            msgs[i].msg_hdr.msg_iov = &mut iovecs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every message points into this batch's live buffers.
        let rc = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                BATCH_C,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = rc.unsigned_abs() as usize;
        for i in 0..n {
            self.lens[i] = usize::try_from(msgs[i].msg_len).unwrap_or(SLOT).min(SLOT);
            self.froms[i] = from_storage(&addrs[i]);
        }
        self.count = n;
        self.next = 0;
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(())
    }

    /// Datagrams received and not yet handed out.
    pub fn pending(&self) -> usize {
        self.count - self.next
    }

    /// The next datagram and its sender, receiving a new batch when the last one is
    /// used up; `WouldBlock` when nothing waits.
    pub fn next(&mut self, fd: RawFd) -> io::Result<(&[u8], SocketAddr)> {
        loop {
            if self.next == self.count {
                self.refill(fd)?;
            }
            let i = self.next;
            self.next += 1;
            if let Some(from) = self.froms[i] {
                return Ok((&self.buf[i * SLOT..i * SLOT + self.lens[i]], from));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn many_datagrams_per_call_both_ways() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = b.local_addr().unwrap();
        let mut tx = SendBatch::default();
        for i in 0..100u8 {
            if tx.is_full() {
                assert_eq!(tx.flush(a.as_raw_fd()), 0);
            }
            let slot = tx.slot().unwrap();
            slot[..3].copy_from_slice(&[i, i, i]);
            tx.commit(3, &to);
        }
        assert_eq!(tx.flush(a.as_raw_fd()), 0);
        assert!(tx.is_empty());
        let mut rx = RecvBatch::default();
        let mut got = Vec::new();
        while let Ok((d, from)) = rx.next(b.as_raw_fd()) {
            assert_eq!(from, a.local_addr().unwrap());
            got.push(d[0]);
        }
        assert_eq!(got, (0..100).collect::<Vec<u8>>());
    }
}
