//! A paced TCP stream between two namespace VMs, as the migration tests run one
//! across a move: pseudo-random 1 KiB chunks, one per millisecond, hashed at
//! both ends so a test can tell every byte arrived in order, with the longest
//! gap between two reads at the server. It only runs sockets in namespaces.

use crate::{fill_pseudo_random, Fnv, Vm};
use anyhow::Result;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the server end of a [`PacedStream`] returns: hash, bytes, longest gap
/// between reads, the client's address.
type ServerEnd = (u64, u64, Duration, SocketAddr);

/// A TCP stream of pseudo-random 1 KiB chunks, one per millisecond, running until
/// [`PacedStream::finish`].
#[derive(Debug)]
pub struct PacedStream {
    running: Arc<AtomicBool>,
    ends: Arc<Ends>,
    client: JoinHandle<Result<Result<(u64, u64)>>>,
    server: JoinHandle<Result<Result<ServerEnd>>>,
}

/// How far each end of a [`PacedStream`] got.
#[derive(Debug, Default)]
struct Ends {
    /// The client's connect returned.
    connected: AtomicBool,
    /// The server's accept returned.
    accepted: AtomicBool,
    /// Bytes the server has read so far.
    received: AtomicU64,
}

/// What a [`PacedStream`] saw at both ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamReport {
    /// Bytes the client wrote.
    pub sent: u64,
    /// Bytes the server read.
    pub received: u64,
    /// True when the server read exactly what the client wrote.
    pub intact: bool,
    /// Longest time between two reads at the server.
    pub gap: Duration,
    /// The client's address as the server saw it.
    pub peer: SocketAddr,
}

/// `N bytes sent, M received, longest gap G ms`, as the tests print it.
impl std::fmt::Display for StreamReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} bytes sent, {} received, longest gap {:.0} ms",
            self.sent,
            self.received,
            self.gap.as_secs_f64() * 1000.0
        )
    }
}

/// Starts a [`PacedStream`] from VM `client` to `to_ip:port`, served by a
/// listener on `server`'s own address and `port` (`to_ip` is that address, or
/// one translated to it on the way, such as a public address).
pub fn paced_stream(server: &Vm, client: &Vm, to_ip: &str, port: u16) -> Result<PacedStream> {
    paced_stream_at(server, &server.ip, client, to_ip, port)
}

/// [`paced_stream`] with the listener on `listen_ip`, another of `server`'s
/// addresses (its IPv6 one).
pub fn paced_stream_at(
    server: &Vm,
    listen_ip: &str,
    client: &Vm,
    to_ip: &str,
    port: u16,
) -> Result<PacedStream> {
    let listen = SocketAddr::new(listen_ip.parse()?, port);
    let connect = SocketAddr::new(to_ip.parse()?, port);
    let (server, client) = (&server.ns, &client.ns);
    let listener = server.enter(move || TcpListener::bind(listen))??;
    let ends = Arc::new(Ends::default());
    let progress = ends.clone();
    let server = server.spawn(move || -> Result<ServerEnd> {
        let (mut s, peer) = listener.accept()?;
        progress.accepted.store(true, Ordering::Relaxed);
        let (mut hash, mut total, mut gap) = (Fnv::default(), 0u64, Duration::ZERO);
        let mut buf = vec![0u8; 65536];
        let mut last = Instant::now();
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                return Ok((hash.value(), total, gap, peer));
            }
            gap = gap.max(last.elapsed());
            last = Instant::now();
            hash.update(&buf[..n]);
            total += n as u64;
            progress.received.store(total, Ordering::Relaxed);
        }
    });
    let running = Arc::new(AtomicBool::new(true));
    let (keep, client_end) = (running.clone(), ends.clone());
    let client = client.spawn(move || -> Result<(u64, u64)> {
        let mut s = TcpStream::connect(connect)?;
        client_end.connected.store(true, Ordering::Relaxed);
        let (mut state, mut hash, mut total) = (5u64, Fnv::default(), 0u64);
        let mut chunk = [0u8; 1024];
        while keep.load(Ordering::Relaxed) {
            fill_pseudo_random(&mut state, &mut chunk);
            s.write_all(&chunk)?;
            hash.update(&chunk);
            total += chunk.len() as u64;
            std::thread::sleep(Duration::from_millis(1));
        }
        s.shutdown(std::net::Shutdown::Write)?;
        Ok((hash.value(), total))
    });
    Ok(PacedStream {
        running,
        ends,
        client,
        server,
    })
}

impl PacedStream {
    /// Bytes the server has read so far.
    pub fn received(&self) -> u64 {
        self.ends.received.load(Ordering::Relaxed)
    }

    /// Waits until the server has read `bytes` (the stream is connected and
    /// flowing), at most `within`.
    pub fn wait_flowing(&self, bytes: u64, within: Duration) -> Result<()> {
        crate::wait_until(within, "the paced stream to flow", || {
            Ok(self.received() >= bytes)
        })
        .map_err(|e| e.context(self.ends()))?;
        Ok(())
    }

    /// Which end is stuck: a client that gave up (refused, unreachable) stopped,
    /// one still connecting never had its SYN answered (or the answer lost).
    fn ends(&self) -> String {
        let state = |stopped: bool, done: &AtomicBool, yes: &'static str, not_yet| match (
            stopped,
            done.load(Ordering::Relaxed),
        ) {
            (true, _) => "stopped",
            (false, true) => yes,
            (false, false) => not_yet,
        };
        format!(
            "server read {} bytes; client {}, server {}",
            self.received(),
            state(
                self.client.is_finished(),
                &self.ends.connected,
                "connected",
                "connecting"
            ),
            state(
                self.server.is_finished(),
                &self.ends.accepted,
                "accepted",
                "accepting"
            ),
        )
    }

    /// Stops the client, closes the stream and reports both ends.
    pub fn finish(self) -> Result<StreamReport> {
        self.running.store(false, Ordering::Relaxed);
        let joined = |what: &str| anyhow::anyhow!("{what} thread panicked");
        let (sent_hash, sent) = self.client.join().map_err(|_| joined("client"))???;
        let (got_hash, received, gap, peer) =
            self.server.join().map_err(|_| joined("server"))???;
        Ok(StreamReport {
            sent,
            received,
            intact: received == sent && got_hash == sent_hash,
            gap,
            peer,
        })
    }
}
