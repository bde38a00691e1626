//! Batched UDP I/O for the tunnel socket: many datagrams per system call.
//!
//! `SendBatch` gathers encrypted datagrams (each with its destination) in one buffer
//! and hands them to the kernel with one `sendmmsg`; where the kernel offers UDP
//! segmentation offload (`UDP_SEGMENT`), each run of equal-sized datagrams to one
//! destination goes as a single message that the kernel (or the NIC) cuts up, so a
//! 64 KB super-frame's worth of datagrams costs one trip through the UDP stack.
//! `RecvBatch` takes up to a batch of waiting messages with one `recvmmsg` and yields
//! the datagrams one by one; with `UDP_GRO` on, the kernel hands over runs of
//! datagrams of one sender coalesced into one buffer with their size in a control
//! message, and they are split here. This module owns the buffers and the `mmsghdr`
//! and control-message plumbing; it never looks inside a datagram, and after
//! construction it never allocates.

use super::os_result;
use std::io;
use std::mem::size_of;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Messages per receive call.
pub const BATCH: usize = 64;

/// Datagrams queued for one send call (two super-frames' worth of segments).
pub const SEND_SLOTS: usize = 128;

/// `UDP_SEGMENT` (linux/udp.h): the segment size of a UDP GSO send.
const UDP_SEGMENT: libc::c_int = 103;
/// `UDP_GRO` (linux/udp.h): deliver coalesced datagrams with their segment size.
const UDP_GRO: libc::c_int = 104;
/// Most segments the kernel takes in one GSO send (`UDP_MAX_SEGMENTS` of older
/// kernels; newer ones allow more).
const MAX_GSO_SEGMENTS: usize = 64;
/// Most payload bytes in one GSO send (an IP packet's 65,535 minus IPv6 and UDP
/// headers, rounded down).
const MAX_GSO_BYTES: usize = 65_000;
/// Room for one received message with GRO: a whole coalesced run.
const GRO_SLOT: usize = 65_536;
/// Bytes of the `UDP_SEGMENT` control message's value (a `__u16`).
const SEGMENT_SIZE_LEN: u32 = 2;
/// Control-message buffer, 8-byte aligned: `CMSG_SPACE` of one int (the GRO
/// segment size or the GSO one) and of a `timespec` (the receive timestamp).
type CmsgBuf = [u64; 8];

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
#[allow(clippy::cast_possible_truncation)]
const CMSG_BUF_LEN: usize = size_of::<CmsgBuf>();

fn set_udp_option(fd: RawFd, option: libc::c_int, value: libc::c_int) -> io::Result<()> {
    set_socket_option(fd, libc::SOL_UDP, option, &value)
}

/// Sets socket option `option` of `level` on `fd` to `value` (a plain C value
/// or struct the kernel copies: an int, a `sock_fprog`).
pub fn set_socket_option<T>(
    fd: RawFd,
    level: libc::c_int,
    option: libc::c_int,
    value: &T,
) -> io::Result<()> {
    let len = libc::socklen_t::try_from(size_of::<T>())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: setsockopt reads `len` bytes from `value`, a live reference.
    let rc = unsafe { libc::setsockopt(fd, level, option, (value as *const T).cast(), len) };
    os_result(rc).map(drop)
}

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

/// The message headers of one `sendmmsg`/`recvmmsg` call, allocated once: zeroing
/// them on every call (about 14 KB) was a third to a half of the tunnel paths'
/// instructions at low packet rates. Every field a call uses is rewritten before
/// the call.
struct Headers<const N: usize> {
    iovecs: [libc::iovec; N],
    msgs: [libc::mmsghdr; N],
    cmsgs: [CmsgBuf; N],
    /// Senders' addresses (receive only).
    addrs: [libc::sockaddr_storage; N],
}

// SAFETY: the raw pointers inside only ever point into the owning batch's own heap
// buffers, are rewritten before every call, and are never dereferenced by Rust
// code outside those calls; moving the batch to another thread moves them along.
unsafe impl<const N: usize> Send for Headers<N> {}

impl<const N: usize> Headers<N> {
    fn boxed() -> Box<Self> {
        // SAFETY: iovec, mmsghdr, cmsg buffers and sockaddr_storage are plain data
        // for which all-zero is valid (null pointers, zero lengths).
        Box::new(unsafe { std::mem::zeroed() })
    }
}

/// Datagrams waiting to be sent.
pub struct SendBatch {
    headers: Option<Box<Headers<SEND_SLOTS>>>,
    buf: Box<[u8]>,
    lens: [usize; SEND_SLOTS],
    addrs: Box<[libc::sockaddr_storage; SEND_SLOTS]>,
    addr_lens: [libc::socklen_t; SEND_SLOTS],
    n: usize,
    /// Whether runs of equal datagrams go as one `UDP_SEGMENT` message.
    gso: bool,
    /// GSO sends refused in a row (reset by one that goes through).
    gso_refusals: u32,
}

/// Consecutive refused GSO sends after which a batch stops trying.
const GSO_REFUSALS_BEFORE_OFF: u32 = 16;

impl std::fmt::Debug for SendBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBatch")
            .field("queued", &self.n)
            .field("gso", &self.gso)
            .finish()
    }
}

impl Default for SendBatch {
    fn default() -> Self {
        SendBatch {
            headers: Some(Headers::boxed()),
            buf: vec![0u8; SLOT * SEND_SLOTS].into_boxed_slice(),
            lens: [0; SEND_SLOTS],
            // SAFETY: sockaddr_storage is plain data; all-zero is valid.
            addrs: Box::new(unsafe { std::mem::zeroed() }),
            addr_lens: [0; SEND_SLOTS],
            n: 0,
            gso: false,
            gso_refusals: 0,
        }
    }
}

/// One message of a send call: `count` queued datagrams from `first`, sent as one
/// GSO message of `segment`-byte datagrams when `count > 1`.
#[derive(Debug, Clone, Copy, Default)]
struct Run {
    first: usize,
    count: usize,
    segment: usize,
}

impl SendBatch {
    /// Sends runs of equal datagrams to one destination as one message with UDP
    /// segmentation offload, if the socket `fd` supports it. True when on.
    pub fn enable_gso(&mut self, fd: RawFd) -> bool {
        self.gso = set_udp_option(fd, UDP_SEGMENT, 0).is_ok();
        self.gso
    }

    /// True when no slot is left.
    pub fn is_full(&self) -> bool {
        self.n == SEND_SLOTS
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
        (self.n < SEND_SLOTS).then(|| &mut self.buf[self.n * SLOT..(self.n + 1) * SLOT])
    }

    /// Queues the `len` bytes just written into [`Self::slot`] for `to`.
    pub fn commit(&mut self, len: usize, to: &SocketAddr) {
        if self.n < SEND_SLOTS {
            self.lens[self.n] = len.min(SLOT);
            self.addr_lens[self.n] = to_storage(to, &mut self.addrs[self.n]);
            self.n += 1;
        }
    }

    fn same_destination(&self, a: usize, b: usize) -> bool {
        let len = self.addr_lens[a] as usize;
        if self.addr_lens[b] as usize != len {
            return false;
        }
        // SAFETY: both are live sockaddr_storage values, at least `len` bytes each.
        let (x, y) = unsafe {
            (
                std::slice::from_raw_parts(
                    (&self.addrs[a] as *const libc::sockaddr_storage).cast::<u8>(),
                    len,
                ),
                std::slice::from_raw_parts(
                    (&self.addrs[b] as *const libc::sockaddr_storage).cast::<u8>(),
                    len,
                ),
            )
        };
        x == y
    }

    /// The message starting at queued datagram `first`: with GSO, the datagrams
    /// after it to the same destination and of the same size (a last shorter one
    /// included, as UDP GSO allows), within the kernel's limits.
    fn run_at(&self, first: usize) -> Run {
        let segment = self.lens[first];
        let mut count = 1;
        let mut bytes = segment;
        if self.gso {
            while first + count < self.n && count < MAX_GSO_SEGMENTS {
                let k = first + count;
                let len = self.lens[k];
                if len > segment
                    || len == 0
                    || bytes + len > MAX_GSO_BYTES
                    || !self.same_destination(first, k)
                {
                    break;
                }
                count += 1;
                bytes += len;
                if len < segment {
                    break;
                }
            }
        }
        Run {
            first,
            count,
            segment,
        }
    }

    /// Sends everything queued with `sendmmsg`; returns how many datagrams the
    /// kernel refused (the batch is empty afterwards either way).
    pub fn flush(&mut self, fd: RawFd) -> usize {
        let Some(mut h) = self.headers.take() else {
            return 0;
        };
        let failed = self.flush_with(fd, &mut h);
        self.headers = Some(h);
        failed
    }

    fn flush_with(&mut self, fd: RawFd, h: &mut Headers<SEND_SLOTS>) -> usize {
        let Headers {
            iovecs,
            msgs,
            cmsgs,
            ..
        } = h;
        let mut runs = [Run::default(); SEND_SLOTS];
        let mut sent = 0usize;
        let mut failed = 0usize;
        // Datagrams before this index go one per message: their run's GSO send was
        // refused.
        let mut single_until = 0usize;
        while sent < self.n {
            let mut count = 0;
            let mut at = sent;
            while at < self.n {
                let run = if at < single_until {
                    Run {
                        first: at,
                        count: 1,
                        segment: self.lens[at],
                    }
                } else {
                    self.run_at(at)
                };
                for i in 0..run.count {
                    let k = run.first + i;
                    iovecs[k] = libc::iovec {
                        iov_base: self.buf[k * SLOT..].as_mut_ptr().cast(),
                        iov_len: self.lens[k],
                    };
                }
                msgs[count].msg_len = 0;
                let m = &mut msgs[count].msg_hdr;
                // SAFETY: msghdr is plain data; all-zero is valid.
                *m = unsafe { std::mem::zeroed() };
                m.msg_name = (&mut self.addrs[run.first] as *mut libc::sockaddr_storage).cast();
                m.msg_namelen = self.addr_lens[run.first];
                m.msg_iov = &mut iovecs[run.first];
                m.msg_iovlen = run.count;
                if run.count > 1 {
                    write_cmsg(
                        m,
                        &mut cmsgs[count],
                        UDP_SEGMENT,
                        u16::try_from(run.segment).unwrap_or(u16::MAX),
                    );
                }
                runs[count] = run;
                count += 1;
                at += run.count;
            }
            // SAFETY: `msgs[..count]` point into live buffers of this batch and of
            // this frame for the duration of the call.
            let rc = unsafe {
                libc::sendmmsg(
                    fd,
                    msgs.as_mut_ptr(),
                    libc::c_uint::try_from(count).unwrap_or(BATCH_C),
                    libc::MSG_DONTWAIT,
                )
            };
            if rc > 0 {
                let done = &runs[..rc.unsigned_abs() as usize];
                if done.iter().any(|r| r.count > 1) {
                    self.gso_refusals = 0;
                }
                sent += done.iter().map(|r| r.count).sum::<usize>();
                continue;
            }
            let e = io::Error::last_os_error();
            let refused_offload = matches!(
                e.raw_os_error(),
                Some(libc::EIO | libc::EINVAL | libc::EOPNOTSUPP)
            );
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                // A full buffer refuses the message whatever its form.
                io::ErrorKind::WouldBlock => {}
                // This path cannot take segmentation offload (a device without it,
                // a smaller path MTU): send this run datagram by datagram. Only a
                // kernel that keeps refusing gets GSO switched off for good; one
                // odd peer must not cost every other peer its offload.
                _ if refused_offload && runs[0].count > 1 => {
                    single_until = runs[0].first + runs[0].count;
                    self.gso_refusals += 1;
                    if self.gso_refusals >= GSO_REFUSALS_BEFORE_OFF {
                        tracing::info!(error = %e, "UDP segmentation offload refused again and again; sending datagrams one by one");
                        self.gso = false;
                    }
                    continue;
                }
                _ => {}
            }
            // The first message left is refused; skip it and go on.
            failed += runs[0].count;
            sent += runs[0].count;
        }
        self.n = 0;
        failed
    }
}

/// Puts one control message (level `SOL_UDP`) carrying `value` into `buf` and
/// points `m` at it.
fn write_cmsg(m: &mut libc::msghdr, buf: &mut CmsgBuf, kind: libc::c_int, value: u16) {
    *buf = [0; 8];
    m.msg_control = buf.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is a pure size computation.
    m.msg_controllen = unsafe { libc::CMSG_SPACE(SEGMENT_SIZE_LEN) } as usize;
    // SAFETY: `m` points at `buf`, which is large and aligned enough for one
    // cmsghdr with two bytes of data (checked by CMSG_FIRSTHDR against the length).
    unsafe {
        let c = libc::CMSG_FIRSTHDR(m);
        if c.is_null() {
            m.msg_control = std::ptr::null_mut();
            m.msg_controllen = 0;
            return;
        }
        (*c).cmsg_level = libc::SOL_UDP;
        (*c).cmsg_type = kind;
        (*c).cmsg_len = libc::CMSG_LEN(SEGMENT_SIZE_LEN) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), value);
    }
}

/// The `UDP_GRO` segment size in a received message's control data (0: none).
fn gro_segment(m: &libc::msghdr) -> usize {
    if m.msg_control.is_null() || m.msg_controllen == 0 {
        return 0;
    }
    // SAFETY: the kernel wrote `msg_controllen` bytes of well-formed control
    // messages into the buffer `m` points at; CMSG_NXTHDR stays within them.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(m);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == UDP_GRO {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                return usize::try_from(v).unwrap_or(0);
            }
            c = libc::CMSG_NXTHDR(m, c);
        }
    }
    0
}

/// The kernel's receive timestamp (`SO_TIMESTAMPNS`, `CLOCK_REALTIME`) in a
/// received message's control data.
fn receive_timestamp(m: &libc::msghdr) -> Option<libc::timespec> {
    if m.msg_control.is_null() || m.msg_controllen == 0 {
        return None;
    }
    // SAFETY: as in `gro_segment`.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(m);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                return Some(std::ptr::read_unaligned(
                    libc::CMSG_DATA(c).cast::<libc::timespec>(),
                ));
            }
            c = libc::CMSG_NXTHDR(m, c);
        }
    }
    None
}

/// How long ago the kernel received a datagram stamped `stamp`, by the real-time
/// clock read now (a clock step makes one sample wrong, never an error).
fn age_of(stamp: &libc::timespec) -> Option<std::time::Duration> {
    let secs = u64::try_from(stamp.tv_sec).ok()?;
    let nanos = u32::try_from(stamp.tv_nsec).ok()?;
    let at = std::time::UNIX_EPOCH + std::time::Duration::new(secs, nanos);
    std::time::SystemTime::now().duration_since(at).ok()
}

/// Datagrams received and not yet handed out.
pub struct RecvBatch {
    headers: Box<Headers<BATCH>>,
    buf: Box<[u8]>,
    /// Bytes per message slot: one datagram, or a coalesced run with GRO.
    slot: usize,
    lens: [usize; BATCH],
    /// Size of the datagrams coalesced in each message (0: one datagram).
    segments: [usize; BATCH],
    froms: [Option<SocketAddr>; BATCH],
    count: usize,
    /// Message being handed out, and how far into it.
    next: usize,
    offset: usize,
    gro: bool,
    /// Whether the kernel stamps each datagram with its arrival time.
    stamps: bool,
    /// How long the last batch's first datagram had waited, until taken.
    age: Option<std::time::Duration>,
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("pending", &self.pending())
            .field("gro", &self.gro)
            .finish()
    }
}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch {
            headers: Headers::boxed(),
            buf: vec![0u8; SLOT * BATCH].into_boxed_slice(),
            slot: SLOT,
            lens: [0; BATCH],
            segments: [0; BATCH],
            froms: [None; BATCH],
            count: 0,
            next: 0,
            offset: 0,
            gro: false,
            stamps: false,
            age: None,
        }
    }
}

impl RecvBatch {
    /// Asks the kernel to coalesce datagrams of one sender (`UDP_GRO`) on socket
    /// `fd`, and makes each slot large enough for a coalesced run. True when on.
    pub fn enable_gro(&mut self, fd: RawFd) -> bool {
        if set_udp_option(fd, UDP_GRO, 1).is_err() {
            return false;
        }
        self.buf = vec![0u8; GRO_SLOT * BATCH].into_boxed_slice();
        self.slot = GRO_SLOT;
        self.count = 0;
        self.next = 0;
        self.offset = 0;
        self.gro = true;
        true
    }

    /// Asks the kernel for each datagram's arrival time (`SO_TIMESTAMPNS`), so
    /// [`Self::take_age`] can tell how long a batch waited. True when on.
    pub fn enable_timestamps(&mut self, fd: RawFd) -> bool {
        let one: libc::c_int = 1;
        self.stamps = set_socket_option(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, &one).is_ok();
        self.stamps
    }

    /// How long the first datagram of the first batch read since the last take
    /// had waited in the kernel when that batch was read; `None` once taken, or
    /// without timestamps.
    pub fn take_age(&mut self) -> Option<std::time::Duration> {
        self.age.take()
    }

    fn refill(&mut self, fd: RawFd) -> io::Result<()> {
        let Headers {
            iovecs,
            msgs,
            cmsgs,
            addrs,
        } = &mut *self.headers;
        for i in 0..BATCH {
            iovecs[i] = libc::iovec {
                iov_base: self.buf[i * self.slot..].as_mut_ptr().cast(),
                iov_len: self.slot,
            };
            // The kernel wrote lengths and flags into these on the last call: every
            // field it reads or writes is set again.
            msgs[i].msg_len = 0;
            let m = &mut msgs[i].msg_hdr;
            m.msg_name = (&mut addrs[i] as *mut libc::sockaddr_storage).cast();
            m.msg_namelen = LEN_STORAGE;
            m.msg_iov = &mut iovecs[i];
            m.msg_iovlen = 1;
            m.msg_flags = 0;
            if self.gro || self.stamps {
                m.msg_control = cmsgs[i].as_mut_ptr().cast();
                m.msg_controllen = CMSG_BUF_LEN;
            } else {
                m.msg_control = std::ptr::null_mut();
                m.msg_controllen = 0;
            }
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
        os_result(rc)?;
        let n = rc.unsigned_abs() as usize;
        for i in 0..n {
            self.lens[i] = usize::try_from(msgs[i].msg_len)
                .unwrap_or(self.slot)
                .min(self.slot);
            self.segments[i] = if self.gro {
                gro_segment(&msgs[i].msg_hdr)
            } else {
                0
            };
            self.froms[i] = from_storage(&addrs[i]);
        }
        // The first batch since the last take is the one whose wait is the
        // wake-up; later batches of the same round waited for the round itself.
        if self.stamps && n > 0 && self.age.is_none() {
            self.age = receive_timestamp(&msgs[0].msg_hdr).and_then(|t| age_of(&t));
        }
        self.count = n;
        self.next = 0;
        self.offset = 0;
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(())
    }

    /// Messages received and not yet (fully) handed out.
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
            let (len, segment) = (self.lens[i], self.segments[i]);
            let start = self.offset;
            let end = if segment == 0 {
                len
            } else {
                (start + segment).min(len)
            };
            if end >= len {
                self.next += 1;
                self.offset = 0;
            } else {
                self.offset = end;
            }
            if let Some(from) = self.froms[i] {
                if end > start || len == 0 {
                    let base = i * self.slot;
                    return Ok((&self.buf[base + start..base + end], from));
                }
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

    /// Runs of equal datagrams leave as one GSO message and arrive coalesced; they
    /// are split back into the same datagrams, in order, short last ones included,
    /// and a second destination is never merged into a run.
    #[test]
    fn the_age_taken_is_the_first_batch_s_since_the_last_take() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = b.local_addr().unwrap();
        let mut rx = RecvBatch::default();
        assert!(rx.enable_timestamps(b.as_raw_fd()));
        // The kernel turns receive timestamps on asynchronously, and until then
        // stamps a datagram when it is read: wait for one stamped on arrival.
        let probe_wait = std::time::Duration::from_millis(20);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            a.send_to(&[0], to).unwrap();
            std::thread::sleep(probe_wait);
            while rx.next(b.as_raw_fd()).is_ok() {}
            if rx.take_age().is_some_and(|age| age >= probe_wait) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no receive timestamps"
            );
        }
        // A full batch that waits, then one datagram that the second batch reads.
        for _ in 0..BATCH {
            a.send_to(&[1], to).unwrap();
        }
        let waited = std::time::Duration::from_millis(200);
        std::thread::sleep(waited);
        a.send_to(&[2], to).unwrap();
        let mut got = Vec::new();
        while let Ok((d, _)) = rx.next(b.as_raw_fd()) {
            got.push(d[0]);
        }
        assert_eq!(got.len(), BATCH + 1, "{got:?}");
        assert_eq!(got.last(), Some(&2));
        let age = rx.take_age().expect("an age");
        assert!(
            age >= waited,
            "{age:?}: the second batch's, not the first's"
        );
        assert_eq!(rx.take_age(), None);
    }

    #[test]
    fn gso_runs_and_gro_splitting_keep_every_datagram() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut tx = SendBatch::default();
        let mut rx_b = RecvBatch::default();
        let mut rx_c = RecvBatch::default();
        if !tx.enable_gso(a.as_raw_fd()) || !rx_b.enable_gro(b.as_raw_fd()) {
            eprintln!("no UDP GSO/GRO on this kernel: nothing to test");
            return;
        }
        let (to_b, to_c) = (b.local_addr().unwrap(), c.local_addr().unwrap());
        let mut want_b = Vec::new();
        let mut want_c = Vec::new();
        for i in 0..120u16 {
            // Runs of 1200-byte datagrams, every tenth one short, every 25th to `c`.
            let len: usize = if i % 10 == 9 { 300 } else { 1200 };
            let to = if i % 25 == 24 { &to_c } else { &to_b };
            let slot = tx.slot().unwrap();
            let body: Vec<u8> = (0..len)
                .map(|k| (usize::from(i) + k).to_le_bytes()[0])
                .collect();
            slot[..len].copy_from_slice(&body);
            tx.commit(len, to);
            if to == &to_c {
                want_c.push(body);
            } else {
                want_b.push(body);
            }
        }
        assert_eq!(tx.flush(a.as_raw_fd()), 0);
        let mut got_b = Vec::new();
        while let Ok((d, from)) = rx_b.next(b.as_raw_fd()) {
            assert_eq!(from, a.local_addr().unwrap());
            got_b.push(d.to_vec());
        }
        let mut got_c = Vec::new();
        while let Ok((d, _)) = rx_c.next(c.as_raw_fd()) {
            got_c.push(d.to_vec());
        }
        assert_eq!(got_b, want_b);
        assert_eq!(got_c, want_c);
    }
}
