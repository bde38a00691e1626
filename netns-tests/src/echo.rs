//! A checked stream through a VM's echo server: a known byte pattern written in
//! small paced chunks, what comes back compared offset by offset, and the longest
//! silence between reads recorded (printed by the migration tests, never bounded).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Byte `i` of the stream.
fn pattern(i: u64) -> u8 {
    // `% 251` is below 256.
    (((i ^ (i >> 9)).wrapping_mul(31)) % 251) as u8
}

/// What the receiving side saw.
#[derive(Debug, Default, Clone)]
pub struct StreamStats {
    /// Bytes echoed back.
    pub received: u64,
    /// The first offset whose byte was not the pattern's.
    pub corrupt_at: Option<u64>,
    /// Longest time between two reads.
    pub max_gap: Duration,
    /// When that longest gap ended.
    pub max_gap_ended: Option<Instant>,
    /// Why the reader stopped early, if it did.
    pub error: Option<String>,
}

/// Writes 64 bytes of the pattern every 5 ms to an echo server and checks what
/// comes back, until [`EchoStream::finish`].
#[derive(Debug)]
pub struct EchoStream {
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    stats: Arc<Mutex<StreamStats>>,
    writer: Option<JoinHandle<Result<(), String>>>,
    reader: Option<JoinHandle<()>>,
}

fn lock(stats: &Mutex<StreamStats>) -> MutexGuard<'_, StreamStats> {
    stats
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl EchoStream {
    /// Starts writing to and reading from `conn`.
    pub fn start(conn: TcpStream) -> std::io::Result<EchoStream> {
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let stats = Arc::new(Mutex::new(StreamStats::default()));
        let mut rconn = conn.try_clone()?;
        rconn.set_read_timeout(Some(Duration::from_millis(200)))?;
        let mut wconn = conn;
        let (stop_w, written_w) = (Arc::clone(&stop), Arc::clone(&written));
        let writer = std::thread::spawn(move || {
            let mut off = 0u64;
            let mut chunk = [0u8; 64];
            while !stop_w.load(Ordering::Relaxed) {
                for (k, b) in chunk.iter_mut().enumerate() {
                    *b = pattern(off + k as u64);
                }
                wconn.write_all(&chunk).map_err(|e| format!("write: {e}"))?;
                off += chunk.len() as u64;
                written_w.store(off, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(())
        });
        let (stop_r, written_r, stats_r) =
            (Arc::clone(&stop), Arc::clone(&written), Arc::clone(&stats));
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut last = Instant::now();
            let mut drain_until: Option<Instant> = None;
            loop {
                if stop_r.load(Ordering::Relaxed) {
                    let end = *drain_until
                        .get_or_insert_with(|| Instant::now() + Duration::from_secs(15));
                    let done = lock(&stats_r).received >= written_r.load(Ordering::Relaxed);
                    if done || Instant::now() > end {
                        return;
                    }
                }
                match rconn.read(&mut buf) {
                    Ok(0) => {
                        lock(&stats_r).error = Some("connection closed".into());
                        return;
                    }
                    Ok(n) => {
                        let now = Instant::now();
                        let mut s = lock(&stats_r);
                        let gap = now - last;
                        if gap > s.max_gap {
                            s.max_gap = gap;
                            s.max_gap_ended = Some(now);
                        }
                        last = now;
                        for (k, &b) in buf[..n].iter().enumerate() {
                            let at = s.received + k as u64;
                            if s.corrupt_at.is_none() && b != pattern(at) {
                                s.corrupt_at = Some(at);
                            }
                        }
                        s.received += n as u64;
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => {
                        lock(&stats_r).error = Some(format!("read: {e}"));
                        return;
                    }
                }
            }
        });
        Ok(EchoStream {
            stop,
            written,
            stats,
            writer: Some(writer),
            reader: Some(reader),
        })
    }

    /// What the reader has seen so far.
    pub fn snapshot(&self) -> StreamStats {
        lock(&self.stats).clone()
    }

    /// Waits until `bytes` more than now have come back (the stream flows), at
    /// most `within`; what the reader had seen then.
    pub fn wait_echoed(&self, bytes: u64, within: Duration) -> anyhow::Result<StreamStats> {
        let until = self.snapshot().received + bytes;
        crate::wait_for(within, &format!("{bytes} bytes echoed"), || {
            let s = self.snapshot();
            Ok((s.received >= until).then_some(s))
        })
    }

    /// Stops writing, waits for the echo of every byte written, returns
    /// (bytes written, what was received, how the writer ended).
    pub fn finish(mut self) -> (u64, StreamStats, Result<(), String>) {
        self.stop.store(true, Ordering::Relaxed);
        let w = self.writer.take().map_or(Ok(()), |h| {
            h.join()
                .unwrap_or_else(|_| Err("writer thread panicked".into()))
        });
        if let Some(h) = self.reader.take() {
            if h.join().is_err() {
                lock(&self.stats).error = Some("reader thread panicked".into());
            }
        }
        (self.written.load(Ordering::Relaxed), self.snapshot(), w)
    }
}

impl Drop for EchoStream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
