//! Raw ports: an `AF_PACKET` socket on an existing network interface that `scd`
//! does not own, such as the host side of a TAP that QEMU holds, a veth end, or a
//! gateway's uplink.
//!
//! This module owns one packet socket per port: opening it (`SOCK_RAW`, every
//! protocol, bound to the interface, promiscuous, non-blocking, optionally inside
//! another network namespace), and reading and writing whole Ethernet frames on it.
//! Frames the socket itself sent come back as `PACKET_OUTGOING` and are skipped.
//! The socket moves every frame behind a virtio-net header (`PACKET_VNET_HDR`), as
//! a TAP port does: frames whose TCP/UDP checksum the sender left to offload
//! (`CHECKSUM_PARTIAL`, as from a veth or a virtio-net guest with checksum offload
//! on) and GSO/TSO super-frames come with the header that says so, and the switch
//! (with `offload`) checks, finishes or segments them; frames sent out carry their
//! header, so the kernel segments a super-frame if the interface cannot.
//!
//! It never creates, configures, brings up or removes the interface (whoever owns
//! it does), never parses a frame, and allocates nothing per frame.

use super::os_result;
use dataplane_core::offload::{VnetHdr, VNET_HDR_LEN};
use dataplane_core::vlan_tag;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// `ETH_P_ALL`: every protocol.
const ETH_P_ALL: u16 = 0x0003;
/// Size of `struct sockaddr_ll` (20 bytes, far below `socklen_t::MAX`).
#[allow(clippy::cast_possible_truncation)] // checked by the assertion
const SOCKADDR_LL_LEN: libc::socklen_t = {
    let n = std::mem::size_of::<libc::sockaddr_ll>();
    assert!(n < 256);
    n as libc::socklen_t
};
/// Receive buffer asked for each raw port's socket (bytes of frames in flight).
const RCVBUF: libc::c_int = 8 << 20;

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

/// Room for one `tpacket_auxdata` control message, aligned as cmsg headers are.
#[repr(C, align(8))]
struct AuxSpace([u8; 64]);

impl Default for AuxSpace {
    fn default() -> Self {
        AuxSpace([0; 64])
    }
}

/// The 802.1Q tag (TPID, TCI) the kernel took off the frame `msg` received, if any.
fn stripped_tag(msg: &libc::msghdr) -> Option<(u16, u16)> {
    // SAFETY: `msg` was filled by recvmsg; CMSG_FIRSTHDR/CMSG_NXTHDR stay within
    // `msg_control`/`msg_controllen`, and a PACKET_AUXDATA message carries a
    // `tpacket_auxdata`, read unaligned.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_PACKET && (*cmsg).cmsg_type == libc::PACKET_AUXDATA {
                let aux: libc::tpacket_auxdata =
                    std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                if aux.tp_status & libc::TP_STATUS_VLAN_VALID == 0 && aux.tp_vlan_tci == 0 {
                    return None;
                }
                let tpid = if aux.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                    aux.tp_vlan_tpid
                } else {
                    VLAN_TPID
                };
                return Some((tpid, aux.tp_vlan_tci));
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    None
}

/// The TPID of an 802.1Q tag, for kernels that do not report it.
const VLAN_TPID: u16 = 0x8100;

/// What one read from a raw port gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawRecv {
    /// A frame of this length is in the buffer, with its virtio-net header.
    Frame(usize, VnetHdr),
    /// A frame this socket (or the host) sent out of the interface: not input.
    Outgoing,
    /// A frame cut short by the buffer or without its header. Count it and go on.
    Refused,
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
    os_result(rc).map(drop)
}

/// The fanout group a packet socket is in, as `PACKET_FANOUT` reads it (id and
/// type, in the form another socket joins it with).
fn fanout_group(fd: &OwnedFd) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `value` and `len` are live locals; the kernel writes at most `len`
    // bytes to `value` and the length it wrote to `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_FANOUT,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    os_result(rc).map(|_| value)
}

/// An open raw port (one socket, with the port's other sockets, if it has one
/// per forwarding worker, until [`RawPort::take_queues`] hands them out).
#[derive(Debug)]
pub struct RawPort {
    fd: OwnedFd,
    name: String,
    /// Sockets 1 and up of a port read by several workers.
    more_queues: Vec<RawPort>,
}

impl RawPort {
    /// Opens a raw port on interface `name` with `queues` sockets (one per
    /// forwarding worker), inside namespace `netns` (a name under `/run/netns`)
    /// when given. The sockets keep working from any thread.
    pub fn open(name: &str, netns: Option<&str>, queues: usize) -> Result<RawPort, RawPortError> {
        match netns {
            None => RawPort::open_queues(name, "", queues),
            Some(ns) => {
                let (owned, where_) = (name.to_string(), format!(" in namespace {ns}"));
                crate::io::tap::in_netns(ns, move || {
                    Ok(RawPort::open_queues(&owned, &where_, queues))
                })
                .map_err(|source| RawPortError::Netns {
                    name: name.to_string(),
                    source,
                })?
            }
        }
    }

    /// One socket as before when `queues` is 1; else `queues` sockets joined in
    /// one `PACKET_FANOUT_HASH` group, so the kernel hands each flow's frames to
    /// one of them by flow hash (a flow stays on one worker, in order).
    fn open_queues(name: &str, where_: &str, queues: usize) -> Result<RawPort, RawPortError> {
        let mut first = RawPort::open_here(name, where_)?;
        if queues <= 1 {
            return Ok(first);
        }
        // The kernel picks a group id no other group of this namespace has.
        let unique = (libc::PACKET_FANOUT_HASH | libc::PACKET_FANOUT_FLAG_UNIQUEID) << 16;
        let unique = libc::c_int::try_from(unique)
            .map_err(|_| sys("PACKET_FANOUT", name)(io::ErrorKind::InvalidInput.into()))?;
        sockopt(&first.fd, libc::SOL_PACKET, libc::PACKET_FANOUT, &unique)
            .map_err(sys("PACKET_FANOUT", name))?;
        let group = fanout_group(&first.fd).map_err(sys("PACKET_FANOUT (read)", name))?;
        for _ in 1..queues {
            let queue = RawPort::open_here(name, where_)?;
            sockopt(&queue.fd, libc::SOL_PACKET, libc::PACKET_FANOUT, &group)
                .map_err(sys("PACKET_FANOUT (join)", name))?;
            first.more_queues.push(queue);
        }
        Ok(first)
    }

    /// Takes sockets 1 and up away from this one (empty for a single socket),
    /// one for each forwarding worker after the first.
    pub fn take_queues(&mut self) -> Vec<RawPort> {
        std::mem::take(&mut self.more_queues)
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
        // The kernel takes a received frame's 802.1Q tag off (receive VLAN offload)
        // and reports it beside the frame; without it a tagged trunk carries nothing.
        sockopt(&fd, libc::SOL_PACKET, libc::PACKET_AUXDATA, &one)
            .map_err(sys("PACKET_AUXDATA", name))?;
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
            more_queues: Vec::new(),
        })
    }

    /// Interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads one frame into `buf`; `WouldBlock` when none is waiting.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<RawRecv> {
        let mut hdr = [0u8; VNET_HDR_LEN];
        let mut iov = crate::io::tap::vnet_hdr_iovecs(&mut hdr, buf);
        // SAFETY: sockaddr_ll and msghdr are plain data; all-zero is a valid start.
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        let mut control = AuxSpace::default();
        msg.msg_name = (&mut from as *mut libc::sockaddr_ll).cast();
        msg.msg_namelen = SOCKADDR_LL_LEN;
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = iov.len();
        msg.msg_control = (&mut control as *mut AuxSpace).cast();
        msg.msg_controllen = std::mem::size_of::<AuxSpace>();
        // SAFETY: `msg` points at `from`, at two iovecs over `hdr` and `buf` and at
        // `control`, all live and writable for their stated lengths for the
        // duration of the call.
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
        let (len, mut vnet) = (n - VNET_HDR_LEN, VnetHdr::parse(&hdr));
        match stripped_tag(&msg) {
            None => Ok(RawRecv::Frame(len, vnet)),
            Some((tpid, tci)) => match vlan_tag::reinsert(buf, len, tpid, tci, &mut vnet) {
                Ok(len) => Ok(RawRecv::Frame(len, vnet)),
                Err(_) => Ok(RawRecv::Refused),
            },
        }
    }

    /// Sends one frame behind `hdr` out of the interface; `WouldBlock` when its
    /// queue is full.
    pub fn send(&self, hdr: &VnetHdr, frame: &[u8]) -> io::Result<usize> {
        crate::io::tap::write_with_vnet_hdr(self.fd.as_raw_fd(), hdr, frame)
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
    fn opening_a_missing_interface_says_so() {
        let e = RawPort::open("no-such-if0", None, 1).unwrap_err();
        assert!(e.to_string().contains("no interface `no-such-if0`"), "{e}");
        let e = RawPort::open("a-name-that-is-too-long", None, 1).unwrap_err();
        assert!(matches!(e, RawPortError::BadName(_)), "{e}");
    }
}
