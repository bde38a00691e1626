//! TAP devices: the ports through which VMs (or test namespaces) attach to `scd`.
//!
//! This module owns the file descriptor of each TAP: creating or attaching the device
//! through `/dev/net/tun`, bringing it up, and non-blocking frame reads and writes.
//! Frames are plain Ethernet (no packet-info or virtio-net header), and no offloads
//! are requested, so the kernel hands over frames with complete checksums. It never
//! parses a frame.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;

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

/// An open TAP device.
#[derive(Debug)]
pub struct Tap {
    fd: OwnedFd,
    name: String,
}

impl Tap {
    /// Creates the TAP `name` (or attaches to it if it exists) and makes it
    /// non-persistent, so it disappears when `scd` closes it.
    pub fn create(name: &str) -> io::Result<Tap> {
        let tap = Tap::open(name)?;
        // SAFETY: TUNSETPERSIST takes an integer argument by value; the fd is a TAP.
        let rc = unsafe { libc::ioctl(tap.fd.as_raw_fd(), TUNSETPERSIST, 0 as libc::c_ulong) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(tap)
    }

    /// Attaches to an existing (persistent) TAP, leaving its persistence alone.
    pub fn attach(name: &str) -> io::Result<Tap> {
        if !interface_exists(name) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no interface `{name}` to attach to (create it with `ip tuntap add dev {name} mode tap`, or set create = true)"),
            ));
        }
        Tap::open(name)
    }

    fn open(name: &str) -> io::Result<Tap> {
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
            flags: IFF_TAP | IFF_NO_PI,
            _pad: [0; 22],
        };
        // SAFETY: TUNSETIFF reads and writes a `struct ifreq`, which `IfReqFlags`
        // lays out (name, then the flags short, padded to the kernel's 40 bytes).
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &mut req as *mut IfReqFlags) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Tap {
            fd,
            name: name.to_string(),
        })
    }

    /// Creates or attaches the TAP `name`, inside namespace `netns` when given, and
    /// brings it up there.
    pub fn open_port(
        name: &str,
        netns: Option<&str>,
        create: bool,
        mtu: Option<u32>,
    ) -> io::Result<Tap> {
        let owned = name.to_string();
        let open = move || {
            let tap = if create {
                Tap::create(&owned)
            } else {
                Tap::attach(&owned)
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
            // SAFETY: SIOCSIFMTU reads a `struct ifreq` with the MTU in its union.
            if unsafe {
                libc::ioctl(
                    sock.as_raw_fd(),
                    libc::SIOCSIFMTU,
                    &mut req as *mut IfReqInt,
                )
            } < 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        let mut req = IfReqFlags {
            name: ifname(&self.name)?,
            flags: 0,
            _pad: [0; 22],
        };
        // SAFETY: SIOCGIFFLAGS fills the flags of a `struct ifreq`.
        if unsafe {
            libc::ioctl(
                sock.as_raw_fd(),
                libc::SIOCGIFFLAGS,
                &mut req as *mut IfReqFlags,
            )
        } < 0
        {
            return Err(io::Error::last_os_error());
        }
        req.flags |= libc::c_short::try_from(libc::IFF_UP).unwrap_or(1);
        // SAFETY: SIOCSIFFLAGS reads the flags of a `struct ifreq`.
        if unsafe {
            libc::ioctl(
                sock.as_raw_fd(),
                libc::SIOCSIFFLAGS,
                &mut req as *mut IfReqFlags,
            )
        } < 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Reads one frame; `WouldBlock` when none is waiting.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n.unsigned_abs())
        }
    }

    /// Writes one frame; `WouldBlock` when the device queue is full.
    pub fn send(&self, frame: &[u8]) -> io::Result<usize> {
        // SAFETY: `frame` is valid for reads of `frame.len()` bytes.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n.unsigned_abs())
        }
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
