//! Traffic that checks itself: TCP transfers and paced streams hashed at both
//! ends, numbered UDP bursts counted at the receiver, and the pseudo-random bytes
//! and running hash they share.

use crate::Netns;
use anyhow::{anyhow, Context, Result};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Gives a socket a receive buffer of `bytes` (beyond the sysctl limit: we are root),
/// so a test's receiver that the scheduler delays does not itself drop what the
/// network delivered.
pub fn big_receive_buffer(socket: &impl AsRawFd, bytes: i32) -> Result<()> {
    let len = u32::try_from(std::mem::size_of::<i32>())?;
    // SAFETY: setsockopt reads one i32 from a live local.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&bytes as *const i32).cast(),
            len,
        )
    };
    anyhow::ensure!(
        rc == 0,
        "SO_RCVBUFFORCE: {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

/// What a checked TCP transfer saw at both ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transfer {
    /// Hash of what the sender wrote.
    pub sent_hash: u64,
    /// Hash of what the receiver read.
    pub received_hash: u64,
    /// Bytes the receiver read.
    pub received: u64,
}

impl Transfer {
    /// True when every byte arrived intact.
    pub fn intact(&self, bytes: u64) -> bool {
        self.received == bytes && self.sent_hash == self.received_hash
    }
}

/// Streams `bytes` pseudo-random bytes over TCP from namespace `from` to a
/// listener on `dst:port` in namespace `to`, and reports both ends' hashes.
pub fn tcp_transfer(
    from: &Netns,
    to: &Netns,
    dst: std::net::IpAddr,
    port: u16,
    bytes: u64,
) -> Result<Transfer> {
    let listener = to.enter(move || std::net::TcpListener::bind((dst, port)))??;
    let server = to.spawn(move || -> Result<(u64, u64)> {
        let (mut s, _) = listener.accept()?;
        let (mut hash, mut buf, mut total) = (Fnv::default(), vec![0u8; 256 * 1024], 0u64);
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                return Ok((hash.value(), total));
            }
            hash.update(&buf[..n]);
            total += n as u64;
        }
    });
    let sent_hash = from.enter(move || -> Result<u64> {
        let mut s = TcpStream::connect_timeout(&(dst, port).into(), Duration::from_secs(10))
            .with_context(|| format!("connect to {dst}:{port}"))?;
        s.set_write_timeout(Some(Duration::from_secs(30)))?;
        let (mut state, mut hash, mut buf) =
            (u64::from(port) | 1, Fnv::default(), vec![0u8; 256 * 1024]);
        let mut left = bytes;
        while left > 0 {
            let n = usize::try_from(left.min(buf.len() as u64))?;
            fill_pseudo_random(&mut state, &mut buf[..n]);
            s.write_all(&buf[..n])?;
            hash.update(&buf[..n]);
            left -= n as u64;
        }
        s.shutdown(std::net::Shutdown::Write)?;
        Ok(hash.value())
    })??;
    let (received_hash, received) = server
        .join()
        .map_err(|_| anyhow!("receiver panicked"))???;
    Ok(Transfer {
        sent_hash,
        received_hash,
        received,
    })
}

/// A paced burst of numbered UDP datagrams: `count` datagrams of `size` bytes (at
/// least 4), sleeping `pause` after every `every` of them.
#[derive(Debug, Clone, Copy)]
pub struct Burst {
    /// Datagrams to send.
    pub count: u32,
    /// Bytes in each.
    pub size: usize,
    /// Datagrams between pauses.
    pub every: u32,
    /// Length of each pause.
    pub pause: Duration,
}

/// Sends `burst` from `src` in namespace `from` to `dst:port` in namespace `to`,
/// and returns how many distinct datagrams arrived (the receiver waits 500 ms after
/// the last one).
pub fn udp_count(
    from: &Netns,
    src: std::net::IpAddr,
    to: &Netns,
    dst: std::net::IpAddr,
    port: u16,
    burst: Burst,
) -> Result<u32> {
    let rx = to.enter(move || std::net::UdpSocket::bind((dst, port)))??;
    rx.set_read_timeout(Some(Duration::from_millis(500)))?;
    big_receive_buffer(&rx, 8 << 20)?;
    let receiver = std::thread::spawn(move || {
        let mut seen = std::collections::HashSet::new();
        let mut buf = vec![0u8; 65_536];
        while let Ok(len) = rx.recv(&mut buf) {
            if len >= 4 {
                seen.insert(u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]));
            }
        }
        u32::try_from(seen.len()).unwrap_or(u32::MAX)
    });
    from.enter(move || -> Result<()> {
        let tx = std::net::UdpSocket::bind((src, 0))?;
        let mut payload = vec![0x5au8; burst.size.max(4)];
        for i in 0..burst.count {
            payload[..4].copy_from_slice(&i.to_be_bytes());
            tx.send_to(&payload, (dst, port))?;
            if (i + 1) % burst.every.max(1) == 0 {
                std::thread::sleep(burst.pause);
            }
        }
        Ok(())
    })??;
    receiver
        .join()
        .map_err(|_| anyhow!("udp receiver panicked"))
}

/// A 64-bit FNV-1a running hash, to compare streams end to end.
#[derive(Debug, Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    /// The hash so far.
    pub fn value(&self) -> u64 {
        self.0
    }
}

/// Deterministic pseudo-random bytes (xorshift), so a stream can be checked.
pub fn fill_pseudo_random(state: &mut u64, buf: &mut [u8]) {
    for chunk in buf.chunks_mut(8) {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        let bytes = state.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

/// What `ping` reported: whether any reply came, and what it printed.
#[derive(Debug, Clone)]
pub struct Pings {
    /// True when at least one echo reply came back.
    pub answered: bool,
    /// ping's standard output, for the failure message.
    pub output: String,
}

/// Sends `count` pings from namespace `ns` to `ip`, 200 ms apart, each answered
/// within a second or lost.
pub fn ping(ns: &Netns, ip: &str, count: u32) -> Result<Pings> {
    let out = ns
        .command("ping")
        .args(["-c", &count.to_string(), "-i", "0.2", "-W", "1", ip])
        .output()?;
    Ok(Pings {
        answered: out.status.success(),
        output: String::from_utf8_lossy(&out.stdout).into_owned(),
    })
}

/// Reads datagrams from `rx` until one is `marker`, which the test sent after
/// everything that must not arrive, on the same path: the proof that `rx` was
/// receiving. Returns how many other datagrams came before it; fails when the
/// marker never came within `rx`'s read timeout.
pub fn datagrams_before_marker(rx: &std::net::UdpSocket, marker: &[u8]) -> Result<u32> {
    let mut buf = vec![0u8; 65_536];
    let mut others = 0;
    loop {
        let n = rx
            .recv(&mut buf)
            .context("the marker never arrived: the receiver saw nothing")?;
        if &buf[..n] == marker {
            return Ok(others);
        }
        others += 1;
    }
}
