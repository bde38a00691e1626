//! TAP devices: the ports through which VMs (or test namespaces) attach to `scd`.
//!
//! This module owns the file descriptor of each TAP: creating or attaching the device
//! through `/dev/net/tun`, bringing it up, and non-blocking frame reads and writes.
//! Every frame travels behind a virtio-net header (`IFF_VNET_HDR`, no packet-info
//! header), and the device is told that `scd` takes checksum and segmentation
//! offloads (`TUNSETOFFLOAD`: CSUM, TSO4/6 with ECN, USO4/6 where the kernel has
//! them), so the VM's kernel hands over TCP/UDP super-frames of up to 64 KB with
//! unfinished checksums, and accepts them back. Reads and writes move the header
//! and the frame in one system call; what the header means is `offload`'s business.
//! Offloads are switched off again when `scd` lets go of the device, so a later
//! reader without the header is not handed super-frames.

use super::os_result;
use dataplane_core::offload::{VnetHdr, VNET_HDR_LEN};
use libc::{
    TUNSETIFF, TUNSETOFFLOAD, TUNSETPERSIST, TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_TSO_ECN,
    TUN_F_USO4, TUN_F_USO6,
};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// The `ifr_flags` `TUNSETIFF` is given: a TAP, frames behind a virtio-net header,
/// no packet-info header. libc declares the flags as ints; the field is a short,
/// and they fit in it.
#[allow(clippy::cast_possible_truncation)]
const TAP_FLAGS: libc::c_short =
    (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short;

/// [`TAP_FLAGS`] for a TAP with one queue per forwarding worker: each queue is
/// its own descriptor, and the kernel spreads the frames the device transmits
/// over them by flow hash, so one flow's frames stay on one queue.
#[allow(clippy::cast_possible_truncation)]
const MULTI_QUEUE_FLAGS: libc::c_short = TAP_FLAGS | libc::IFF_MULTI_QUEUE as libc::c_short;

#[repr(C)]
struct IfReqFlags {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

#[repr(C)]
struct IfReqInt {
    name: [libc::c_char; libc::IFNAMSIZ],
    value: libc::c_int,
    _pad: [u8; 20],
}

/// A layout of the kernel's `struct ifreq` (40 bytes on Linux): what
/// [`ifreq_ioctl`] may hand the kernel.
trait IfReq {}
impl IfReq for IfReqFlags {}
impl IfReq for IfReqInt {}
const _: () =
    assert!(std::mem::size_of::<IfReqFlags>() == 40 && std::mem::size_of::<IfReqInt>() == 40);

/// The ioctls this module makes on a `struct ifreq`. Naming them, rather than
/// taking any request number, is what makes [`ifreq_ioctl`] safe to call.
#[derive(Clone, Copy, Debug)]
enum IfReqIoctl {
    /// `TUNSETIFF`, on `/dev/net/tun`: binds the descriptor to a named device.
    TunSetIff,
    /// `SIOCSIFMTU`: sets the MTU.
    SetMtu,
    /// `SIOCGIFFLAGS`: reads the interface flags.
    GetFlags,
    /// `SIOCSIFFLAGS`: writes the interface flags.
    SetFlags,
}

/// Runs `request` on `fd` with `req`.
fn ifreq_ioctl(fd: &OwnedFd, request: IfReqIoctl, req: &mut impl IfReq) -> io::Result<()> {
    let code = match request {
        IfReqIoctl::TunSetIff => TUNSETIFF,
        IfReqIoctl::SetMtu => libc::SIOCSIFMTU,
        IfReqIoctl::GetFlags => libc::SIOCGIFFLAGS,
        IfReqIoctl::SetFlags => libc::SIOCSIFFLAGS,
    };
    let req: *mut _ = req;
    // SAFETY: each of these requests reads or writes at most one `struct ifreq`
    // behind its pointer, and `req` points at a live, exclusively borrowed
    // `#[repr(C)]` value of exactly that size (`IfReq`, checked above). On a
    // descriptor of the wrong kind the kernel fails the call; it touches no other
    // memory.
    os_result(unsafe { libc::ioctl(fd.as_raw_fd(), code, req.cast::<libc::c_void>()) }).map(drop)
}

fn ifname(name: &str) -> io::Result<[libc::c_char; libc::IFNAMSIZ]> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let bytes = c.as_bytes_with_nul();
    if bytes.len() > libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface name `{name}` is longer than 15 bytes"),
        ));
    }
    let mut out = [0 as libc::c_char; libc::IFNAMSIZ];
    for (o, b) in out.iter_mut().zip(bytes) {
        *o = *b as libc::c_char;
    }
    Ok(out)
}

/// Runs `f` on a short-lived thread that has entered network namespace `netns`
/// (a name under `/run/netns`), so a TAP can be created or attached where its VM
/// lives. A file descriptor opened there keeps working from any thread.
pub fn in_netns<R: Send + 'static>(
    netns: &str,
    f: impl FnOnce() -> io::Result<R> + Send + 'static,
) -> io::Result<R> {
    let path = std::path::Path::new("/run/netns").join(netns);
    let file = std::fs::File::open(&path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("network namespace {}: {e}", path.display()),
        )
    })?;
    std::thread::spawn(move || {
        // SAFETY: setns on an open namespace file; it changes only this thread.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        f()
    })
    .join()
    .map_err(|_| io::Error::other("namespace thread panicked"))?
}

/// True when a network interface of this name exists in the calling thread's
/// network namespace (asked of the kernel: `/sys` may show another namespace).
pub fn interface_exists(name: &str) -> bool {
    let Ok(c) = CString::new(name) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated string.
    unsafe { libc::if_nametoindex(c.as_ptr()) != 0 }
}

fn set_offload(fd: &OwnedFd, flags: libc::c_uint) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes an unsigned int by value; the fd is a TAP.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETOFFLOAD, libc::c_ulong::from(flags)) };
    os_result(rc).map(drop)
}

/// An open TAP device (one queue of it, with the device's other queues, if
/// it has several, until [`Tap::take_queues`] hands them out).
#[derive(Debug)]
pub struct Tap {
    fd: OwnedFd,
    name: String,
    /// Queues 1 and up of a multi-queue TAP.
    more_queues: Vec<Tap>,
}

impl Tap {
    /// Creates the TAP `name` (or attaches to it if it exists) with `queues`
    /// queues and makes it non-persistent, so it disappears when `scd` closes it.
    pub fn create(name: &str, queues: usize) -> io::Result<Tap> {
        let tap = Tap::open_queues(name, queues)?;
        // SAFETY: TUNSETPERSIST takes an integer argument by value; the fd is a TAP.
        let rc = unsafe { libc::ioctl(tap.fd.as_raw_fd(), TUNSETPERSIST, 0 as libc::c_ulong) };
        os_result(rc)?;
        Ok(tap)
    }

    /// Attaches `queues` queues to an existing (persistent) TAP, leaving its
    /// persistence alone. More than one needs a TAP made with `multi_queue`.
    pub fn attach(name: &str, queues: usize) -> io::Result<Tap> {
        if !interface_exists(name) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no interface `{name}` to attach to (create it with `ip tuntap add dev {name} mode tap`, or set create = true)"),
            ));
        }
        Tap::open_queues(name, queues).map_err(|e| {
            if queues > 1 && e.raw_os_error() == Some(libc::EINVAL) {
                io::Error::new(
                    e.kind(),
                    format!("`{name}` has one queue and [scheduling] workers = {queues} needs {queues}: create it with `ip tuntap add dev {name} mode tap multi_queue`"),
                )
            } else {
                e
            }
        })
    }

    /// Opens `queues` queues of the TAP `name`: one as before when `queues` is
    /// 1, else every one with `IFF_MULTI_QUEUE`.
    fn open_queues(name: &str, queues: usize) -> io::Result<Tap> {
        if queues <= 1 {
            return Tap::open(name, TAP_FLAGS);
        }
        let mut first = Tap::open(name, MULTI_QUEUE_FLAGS)?;
        for _ in 1..queues {
            let queue = Tap::open(name, MULTI_QUEUE_FLAGS)?;
            first.more_queues.push(queue);
        }
        Ok(first)
    }

    /// Takes queues 1 and up away from this one (empty for a single queue), one
    /// for each forwarding worker after the first.
    pub fn take_queues(&mut self) -> Vec<Tap> {
        std::mem::take(&mut self.more_queues)
    }

    fn open(name: &str, flags: libc::c_short) -> io::Result<Tap> {
        let path = c"/dev/net/tun";
        // SAFETY: `path` is a valid NUL-terminated string; open has no other inputs.
        let raw = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a freshly opened descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut req = IfReqFlags {
            name: ifname(name)?,
            flags,
            _pad: [0; 22],
        };
        ifreq_ioctl(&fd, IfReqIoctl::TunSetIff, &mut req)?;
        // USO arrived in Linux 6.2; without it, TCP offloads alone.
        let tcp = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;
        if set_offload(&fd, tcp | TUN_F_USO4 | TUN_F_USO6).is_err() {
            set_offload(&fd, tcp)?;
        }
        Ok(Tap {
            fd,
            name: name.to_string(),
            more_queues: Vec::new(),
        })
    }

    /// Creates or attaches the TAP `name` with `queues` queues (one per
    /// forwarding worker), inside namespace `netns` when given, and brings it up
    /// there.
    pub fn open_port(
        name: &str,
        netns: Option<&str>,
        create: bool,
        mtu: Option<u32>,
        queues: usize,
    ) -> io::Result<Tap> {
        let owned = name.to_string();
        let open = move || {
            let tap = if create {
                Tap::create(&owned, queues)
            } else {
                Tap::attach(&owned, queues)
            }?;
            tap.configure(mtu)?;
            Ok(tap)
        };
        match netns {
            None => open(),
            Some(ns) => in_netns(ns, open),
        }
    }

    /// Interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Brings the interface up and sets its MTU, when it is in our namespace. A TAP
    /// that was moved into a VM's namespace is configured from there instead, so
    /// "no such device" is not an error here.
    pub fn configure(&self, mtu: Option<u32>) -> io::Result<()> {
        if !interface_exists(&self.name) {
            return Ok(());
        }
        // SAFETY: plain socket(2) call; the result is checked below.
        let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if sock < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `sock` was just created and is owned here only.
        let sock = unsafe { OwnedFd::from_raw_fd(sock) };
        if let Some(mtu) = mtu {
            let mut req = IfReqInt {
                name: ifname(&self.name)?,
                value: libc::c_int::try_from(mtu).unwrap_or(libc::c_int::MAX),
                _pad: [0; 20],
            };
            ifreq_ioctl(&sock, IfReqIoctl::SetMtu, &mut req)?;
        }
        let mut req = IfReqFlags {
            name: ifname(&self.name)?,
            flags: 0,
            _pad: [0; 22],
        };
        ifreq_ioctl(&sock, IfReqIoctl::GetFlags, &mut req)?;
        req.flags |= libc::c_short::try_from(libc::IFF_UP).unwrap_or(1);
        ifreq_ioctl(&sock, IfReqIoctl::SetFlags, &mut req)?;
        Ok(())
    }

    /// Reads one frame and its virtio-net header; `WouldBlock` when none is waiting.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, VnetHdr)> {
        let mut hdr = [0u8; VNET_HDR_LEN];
        let iov = vnet_hdr_iovecs(&mut hdr, buf);
        // SAFETY: both iovecs point at live, writable buffers of their stated lengths.
        let n = unsafe { libc::readv(self.fd.as_raw_fd(), iov.as_ptr(), 2) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n.unsigned_abs();
        if n < VNET_HDR_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "TAP read shorter than its virtio-net header",
            ));
        }
        Ok((n - VNET_HDR_LEN, VnetHdr::parse(&hdr)))
    }

    /// Writes one frame behind `hdr`; `WouldBlock` when the device queue is full.
    pub fn send(&self, hdr: &VnetHdr, frame: &[u8]) -> io::Result<usize> {
        write_with_vnet_hdr(self.fd.as_raw_fd(), hdr, frame)
    }
}

/// The two iovecs that read a virtio-net header into `hdr` and the frame behind it
/// into `buf` with one call.
pub(crate) fn vnet_hdr_iovecs(hdr: &mut [u8; VNET_HDR_LEN], buf: &mut [u8]) -> [libc::iovec; 2] {
    [
        libc::iovec {
            iov_base: hdr.as_mut_ptr().cast(),
            iov_len: hdr.len(),
        },
        libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        },
    ]
}

/// Writes a virtio-net header and a frame with one `writev` (TAP and packet
/// sockets alike); the frame bytes written.
pub(crate) fn write_with_vnet_hdr(fd: RawFd, hdr: &VnetHdr, frame: &[u8]) -> io::Result<usize> {
    let hdr = hdr.to_bytes();
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
    let n = unsafe { libc::writev(fd, iov.as_ptr(), 2) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n.unsigned_abs().saturating_sub(VNET_HDR_LEN))
    }
}

/// Reads the up/running flags of one interface, from the namespace it was opened
/// in: a datagram socket made there, asked with `SIOCGIFFLAGS` (one system call,
/// no allocation), so a watcher can poll every port's link cheaply.
#[derive(Debug)]
pub struct LinkProbe {
    sock: OwnedFd,
    name: String,
}

/// An interface's state as a [`LinkProbe`] reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkFlags {
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Carrier present and up (`IFF_RUNNING`).
    pub running: bool,
}

impl LinkProbe {
    /// A probe for interface `name` inside namespace `netns` (ours when `None`).
    pub fn open(name: &str, netns: Option<&str>) -> io::Result<LinkProbe> {
        let owned = name.to_string();
        let open = move || {
            // SAFETY: plain socket(2) call; the result is checked below.
            let sock =
                unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
            let sock = os_result(sock)?;
            Ok(LinkProbe {
                // SAFETY: `sock` was just created and is owned here only.
                sock: unsafe { OwnedFd::from_raw_fd(sock) },
                name: owned,
            })
        };
        match netns {
            None => open(),
            Some(ns) => in_netns(ns, open),
        }
    }

    /// The interface's flags now; an error when it is gone from the namespace
    /// (removed, or moved elsewhere).
    pub fn flags(&self) -> io::Result<LinkFlags> {
        let mut req = IfReqFlags {
            name: ifname(&self.name)?,
            flags: 0,
            _pad: [0; 22],
        };
        ifreq_ioctl(&self.sock, IfReqIoctl::GetFlags, &mut req)?;
        let flags = i32::from(req.flags);
        Ok(LinkFlags {
            up: flags & libc::IFF_UP != 0,
            running: flags & libc::IFF_RUNNING != 0,
        })
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        // A persistent TAP outlives us: leave it without offloads for its next reader.
        let _ = set_offload(&self.fd, 0);
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::LinkProbe;

    /// What one round of the link watcher costs per port: run with
    /// `cargo test -p dataplane --release link_probe_cost -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, not a check"]
    fn link_probe_cost() {
        let probe = LinkProbe::open("lo", None).unwrap();
        let n = 100_000u32;
        let start = std::time::Instant::now();
        for _ in 0..n {
            assert!(probe.flags().unwrap().up);
        }
        let each = start.elapsed() / n;
        println!("SIOCGIFFLAGS on lo: {each:?} per call ({n} calls)");
    }
}
