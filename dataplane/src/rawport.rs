//! Raw ports: an `AF_PACKET` socket on an existing network interface that `scd`
//! does not own, such as the host side of a TAP that QEMU holds, a veth end, or a
//! gateway's uplink.
//!
//! This module owns one packet socket per port: opening it (`SOCK_RAW`, every
//! protocol, bound to the interface, promiscuous, non-blocking, optionally inside
//! another network namespace), and reading and writing whole Ethernet frames on it.
//! Frames the socket itself sent come back as `PACKET_OUTGOING` and are skipped.
//! The socket reads the virtio-net header (`PACKET_VNET_HDR`) so that frames whose
//! TCP/UDP checksum the sender left to offload (`CHECKSUM_PARTIAL`, as from a veth
//! or a virtio-net guest with checksum offload on) are finished in software here;
//! GSO/TSO super-frames are refused (turn segmentation offload off on the interface
//! or in the guest), never forwarded half-done.
//!
//! It never creates, configures, brings up or removes the interface (whoever owns
//! it does), never parses a frame beyond the checksum it finishes, and allocates
//! nothing per frame.

use crate::packet::{checksum_add, checksum_finish};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// `ETH_P_ALL`: every protocol.
const ETH_P_ALL: u16 = 0x0003;
/// The virtio-net header's "checksum needs finishing" flag.
const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_NONE`.
const VIRTIO_NET_HDR_GSO_NONE: u8 = 0;
/// Size of `struct virtio_net_hdr` (the legacy header `PACKET_VNET_HDR` uses).
pub const VNET_HDR_LEN: usize = 10;
/// Size of `struct sockaddr_ll` (20 bytes, far below `socklen_t::MAX`).
#[allow(clippy::cast_possible_truncation)] // checked by the assertion
const SOCKADDR_LL_LEN: libc::socklen_t = {
    let n = std::mem::size_of::<libc::sockaddr_ll>();
    assert!(n < 256);
    n as libc::socklen_t
};
/// Receive buffer asked for each raw port's socket (bytes of frames in flight).
const RCVBUF: libc::c_int = 8 << 20;
/// Offset of the checksum inside a UDP header (a UDP checksum of 0 is sent as 0xffff).
const UDP_CSUM_OFFSET: u16 = 6;

/// Why a raw port could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum RawPortError {
    /// The interface name is not one Linux accepts.
    #[error("`{0}` is not an interface name (1..=15 bytes, no NUL)")]
    BadName(String),
    /// No interface of that name exists (where it was looked for).
    #[error("no interface `{name}`{where_}: a raw port attaches to an existing interface (create it first, e.g. the TAP of a QEMU or a veth end)")]
    NoInterface {
        /// Interface name.
        name: String,
        /// " in namespace X", or empty.
        where_: String,
    },
    /// A system call failed.
    #[error("{what} on `{name}`: {source}")]
    Sys {
        /// Which step.
        what: &'static str,
        /// Interface name.
        name: String,
        /// The kernel's answer.
        source: io::Error,
    },
    /// The network namespace could not be entered.
    #[error("raw port `{name}`: {source}")]
    Netns {
        /// Interface name.
        name: String,
        /// Why.
        source: io::Error,
    },
}

/// What one read from a raw port gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawRecv {
    /// A frame of this length is in the buffer (its checksum finished if needed).
    Frame(usize),
    /// A frame this socket (or the host) sent out of the interface: not input.
    Outgoing,
    /// A frame that cannot be forwarded as is: a GSO super-frame, or a checksum
    /// request pointing outside the frame. Count it and go on.
    Refused,
}

/// The legacy `struct virtio_net_hdr`, as bytes in host order.
#[derive(Debug, Default, Clone, Copy)]
struct VnetHdr {
    flags: u8,
    gso_type: u8,
    csum_start: u16,
    csum_offset: u16,
}

impl VnetHdr {
    fn parse(b: &[u8; VNET_HDR_LEN]) -> VnetHdr {
        VnetHdr {
            flags: b[0],
            gso_type: b[1],
            csum_start: u16::from_ne_bytes([b[6], b[7]]),
            csum_offset: u16::from_ne_bytes([b[8], b[9]]),
        }
    }
}

/// Finishes a checksum the sender left to offload: the ones'-complement sum from
/// `start` to the end of the frame (the field at `start + offset` already holds
/// the pseudo-header sum), stored at `start + offset`. False when the header points
/// outside the frame.
pub fn finish_partial_checksum(frame: &mut [u8], start: u16, offset: u16) -> bool {
    let (start, at) = (usize::from(start), usize::from(start) + usize::from(offset));
    if start >= frame.len() || at + 2 > frame.len() {
        return false;
    }
    let mut sum = checksum_finish(checksum_add(0, &frame[start..]));
    if sum == 0 && offset == UDP_CSUM_OFFSET {
        sum = 0xffff;
    }
    frame[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    true
}

fn sys<'a>(what: &'static str, name: &'a str) -> impl FnOnce(io::Error) -> RawPortError + 'a {
    move |source| RawPortError::Sys {
        what,
        name: name.to_string(),
        source,
    }
}

fn sockopt<T>(fd: &OwnedFd, level: i32, opt: i32, value: &T) -> io::Result<()> {
    let len = libc::socklen_t::try_from(std::mem::size_of::<T>())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `value` is a live `T` of `len` bytes; the kernel only reads it.
    let rc =
        unsafe { libc::setsockopt(fd.as_raw_fd(), level, opt, (value as *const T).cast(), len) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// An open raw port.
#[derive(Debug)]
pub struct RawPort {
    fd: OwnedFd,
    name: String,
}

impl RawPort {
    /// Opens a raw port on interface `name`, inside namespace `netns` (a name under
    /// `/run/netns`) when given. The socket keeps working from any thread.
    pub fn open(name: &str, netns: Option<&str>) -> Result<RawPort, RawPortError> {
        match netns {
            None => RawPort::open_here(name, ""),
            Some(ns) => {
                let (owned, where_) = (name.to_string(), format!(" in namespace {ns}"));
                crate::tap::in_netns(ns, move || Ok(RawPort::open_here(&owned, &where_))).map_err(
                    |source| RawPortError::Netns {
                        name: name.to_string(),
                        source,
                    },
                )?
            }
        }
    }

    fn open_here(name: &str, where_: &str) -> Result<RawPort, RawPortError> {
        let c = CString::new(name).map_err(|_| RawPortError::BadName(name.to_string()))?;
        if name.is_empty() || c.as_bytes_with_nul().len() > libc::IFNAMSIZ {
            return Err(RawPortError::BadName(name.to_string()));
        }
        // SAFETY: `c` is a valid NUL-terminated string.
        let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
        if index == 0 {
            return Err(RawPortError::NoInterface {
                name: name.to_string(),
                where_: where_.to_string(),
            });
        }
        let ifindex = i32::try_from(index).map_err(|_| RawPortError::BadName(name.to_string()))?;
        // Protocol 0: the socket receives nothing until it is bound to one interface.
        // SAFETY: plain socket(2); the result is checked below.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if raw < 0 {
            return Err(sys("socket(AF_PACKET)", name)(io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a freshly opened descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let one: libc::c_int = 1;
        sockopt(&fd, libc::SOL_PACKET, libc::PACKET_VNET_HDR, &one)
            .map_err(sys("PACKET_VNET_HDR", name))?;
        // A TAP queues 1000 frames for its reader; a packet socket only its receive
        // buffer: give it room for a burst (beyond rmem_max when allowed to).
        if sockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &RCVBUF).is_err() {
            let _ = sockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &RCVBUF);
        }
        // Our own sends need not even be queued back to us (Linux 4.20+); where the
        // option is missing, `recv` skips them by their packet type instead.
        let _ = sockopt(&fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &one);
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid start.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::sa_family_t::try_from(libc::AF_PACKET)
            .map_err(|_| sys("AF_PACKET", name)(io::ErrorKind::InvalidInput.into()))?;
        addr.sll_protocol = ETH_P_ALL.to_be();
        addr.sll_ifindex = ifindex;
        let len = SOCKADDR_LL_LEN;
        // SAFETY: `addr` is a valid sockaddr_ll of `len` bytes.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                len,
            )
        };
        if rc < 0 {
            return Err(sys("bind", name)(io::Error::last_os_error()));
        }
        let mreq = libc::packet_mreq {
            mr_ifindex: ifindex,
            mr_type: libc::c_ushort::try_from(libc::PACKET_MR_PROMISC)
                .map_err(|_| sys("PACKET_MR_PROMISC", name)(io::ErrorKind::InvalidInput.into()))?,
            mr_alen: 0,
            mr_address: [0; 8],
        };
        sockopt(&fd, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mreq)
            .map_err(sys("PACKET_ADD_MEMBERSHIP (promiscuous)", name))?;
        Ok(RawPort {
            fd,
            name: name.to_string(),
        })
    }

    /// Interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads one frame into `buf`; `WouldBlock` when none is waiting.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<RawRecv> {
        let mut hdr = [0u8; VNET_HDR_LEN];
        let mut iov = [
            libc::iovec {
                iov_base: hdr.as_mut_ptr().cast(),
                iov_len: hdr.len(),
            },
            libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            },
        ];
        // SAFETY: sockaddr_ll and msghdr are plain data; all-zero is a valid start.
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&mut from as *mut libc::sockaddr_ll).cast();
        msg.msg_namelen = SOCKADDR_LL_LEN;
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = iov.len();
        // SAFETY: `msg` points at `from` and at two iovecs over `hdr` and `buf`, all
        // live and writable for their stated lengths for the duration of the call.
        let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, libc::MSG_TRUNC) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if from.sll_pkttype == libc::PACKET_OUTGOING {
            return Ok(RawRecv::Outgoing);
        }
        let n = n.unsigned_abs();
        if n < VNET_HDR_LEN || msg.msg_flags & libc::MSG_TRUNC != 0 {
            return Ok(RawRecv::Refused);
        }
        let len = n - VNET_HDR_LEN;
        let h = VnetHdr::parse(&hdr);
        if h.gso_type != VIRTIO_NET_HDR_GSO_NONE {
            return Ok(RawRecv::Refused);
        }
        if h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0
            && !finish_partial_checksum(&mut buf[..len], h.csum_start, h.csum_offset)
        {
            return Ok(RawRecv::Refused);
        }
        Ok(RawRecv::Frame(len))
    }

    /// Sends one frame out of the interface; `WouldBlock` when its queue is full.
    pub fn send(&self, frame: &[u8]) -> io::Result<usize> {
        let hdr = [0u8; VNET_HDR_LEN];
        let iov = [
            libc::iovec {
                iov_base: hdr.as_ptr().cast_mut().cast(),
                iov_len: hdr.len(),
            },
            libc::iovec {
                iov_base: frame.as_ptr().cast_mut().cast(),
                iov_len: frame.len(),
            },
        ];
        // SAFETY: both iovecs point at live buffers of their stated lengths, which
        // writev only reads.
        let n = unsafe { libc::writev(self.fd.as_raw_fd(), iov.as_ptr(), 2) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n.unsigned_abs().saturating_sub(VNET_HDR_LEN))
        }
    }
}

impl AsRawFd for RawPort {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finishes_a_partial_tcp_checksum() {
        // IPv4 + TCP, checksum field holding the pseudo-header sum as a sender with
        // offload leaves it.
        let mut f = vec![0u8; 14 + 20 + 20 + 4];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&44u16.to_be_bytes());
        ip[8] = 64;
        ip[9] = 6;
        ip[12..16].copy_from_slice(&[100, 64, 1, 1]);
        ip[16..20].copy_from_slice(&[100, 64, 2, 1]);
        f[34 + 12] = 0x50;
        f[54..58].copy_from_slice(b"abcd");
        let pseudo = checksum_add(
            checksum_add(0, &f[26..34]),
            &[0, 6, 0, 24], // zero, protocol, TCP length
        );
        let mut folded = pseudo;
        while folded >> 16 != 0 {
            folded = (folded & 0xffff) + (folded >> 16);
        }
        let partial = u16::try_from(folded).unwrap_or(0);
        f[34 + 16..34 + 18].copy_from_slice(&partial.to_be_bytes());
        assert!(finish_partial_checksum(&mut f, 34, 16));
        // A correct checksum sums (with the pseudo-header) to all ones.
        let check = checksum_finish(checksum_add(pseudo, &f[34..]));
        assert_eq!(check, 0);
        assert!(!finish_partial_checksum(&mut f, 57, 16));
        assert!(!finish_partial_checksum(&mut f, 200, 0));
    }

    #[test]
    fn opening_a_missing_interface_says_so() {
        let e = RawPort::open("no-such-if0", None).unwrap_err();
        assert!(e.to_string().contains("no interface `no-such-if0`"), "{e}");
        let e = RawPort::open("a-name-that-is-too-long", None).unwrap_err();
        assert!(matches!(e, RawPortError::BadName(_)), "{e}");
    }
}
