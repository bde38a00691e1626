//! The passive side of the channel: binding `ptcp:`, `pssl:` and `punix:`
//! listeners, accepting their connections as [`OfStream`]s (a `pssl:` one after
//! its TLS handshake, which demands a certificate of the CA), and each
//! listener's connection cap with its counters.
//!
//! A `punix:` socket is made mode 0600 before it listens (until `listen` every
//! connect is refused, so there is no moment when another user can connect); a
//! stale socket file left by a crash is replaced, a live one or a file that is not
//! a socket is refused; the file is removed when its [`SocketFile`] is dropped,
//! unless another process has put its own socket there since. It never reads or
//! writes a connection: serving one belongs to the session loop.

use super::stream::OfStream;
use super::tls_stream::TlsStream;
use crate::config::ListenAddr;
use crate::switch::{ChannelCounters, ListenerCounters};
use std::fs;
use std::io;
use std::net::TcpListener;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tls_support::rustls::ServerConfig;

/// Connections the kernel queues before `accept`.
const BACKLOG: i32 = 128;

/// Mode of a `punix:` socket file: its owner only.
const SOCKET_MODE: u32 = 0o600;

/// A bound passive listener.
#[derive(Debug)]
pub(super) struct Listener {
    socket: Socket,
    addr: ListenAddr,
    max_connections: u64,
    counters: Arc<ListenerCounters>,
}

#[derive(Debug)]
enum Socket {
    Tcp(TcpListener),
    Tls(TcpListener, Arc<ServerConfig>),
    Unix(UnixListener),
}

/// The socket file of a `punix:` listener, removed when this is dropped.
#[derive(Debug)]
pub(crate) struct SocketFile {
    path: PathBuf,
    /// What tells the file this process bound from one put there since.
    id: FileId,
}

/// Device, inode and change time: a file system may give a new file the inode
/// of one just removed, not also its change time.
type FileId = (u64, u64, i64, i64);

fn file_id(path: &Path) -> io::Result<FileId> {
    let m = fs::symlink_metadata(path)?;
    Ok((m.dev(), m.ino(), m.ctime(), m.ctime_nsec()))
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if file_id(&self.path).is_ok_and(|id| id == self.id) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A connection admitted below its listener's cap; dropping it frees its place.
#[derive(Debug)]
pub(super) struct Admitted {
    counters: Arc<ListenerCounters>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.counters.open.fetch_sub(1, Relaxed);
    }
}

impl Listener {
    /// Binds `addr`, serving at most `max_connections` at once, and registers
    /// its counters with the channel's. A `pssl:` listener needs `tls`. A
    /// `punix:` listener also returns its socket file, to drop when the daemon
    /// exits.
    pub(super) fn bind(
        addr: &ListenAddr,
        max_connections: usize,
        channel: &ChannelCounters,
        tls: Option<&Arc<ServerConfig>>,
    ) -> io::Result<(Listener, Option<SocketFile>)> {
        let (socket, bound, file) = match addr {
            ListenAddr::Tcp(a) => {
                let listener = TcpListener::bind(a)?;
                let bound = ListenAddr::Tcp(listener.local_addr()?);
                (Socket::Tcp(listener), bound, None)
            }
            ListenAddr::Ssl(a) => {
                let tls = tls.ok_or_else(|| io::Error::other("pssl: without [openflow.tls]"))?;
                let listener = TcpListener::bind(a)?;
                let bound = ListenAddr::Ssl(listener.local_addr()?);
                (Socket::Tls(listener, tls.clone()), bound, None)
            }
            ListenAddr::Unix(path) => {
                let (listener, file) = bind_unix(path)?;
                (Socket::Unix(listener), addr.clone(), Some(file))
            }
        };
        let counters = Arc::new(ListenerCounters {
            listener: bound.to_string(),
            ..ListenerCounters::default()
        });
        channel
            .listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(counters.clone());
        let listener = Listener {
            socket,
            addr: bound,
            max_connections: u64::try_from(max_connections).unwrap_or(u64::MAX),
            counters,
        };
        Ok((listener, file))
    }

    /// Where it listens (a `ptcp:` port 0 resolved to the port bound).
    pub(super) fn addr(&self) -> &ListenAddr {
        &self.addr
    }

    /// Its counters.
    pub(super) fn counters(&self) -> &Arc<ListenerCounters> {
        &self.counters
    }

    /// Waits for the next connection; `peer` describes it for logs. A `pssl:`
    /// connection still has to pass [`Listener::secure`].
    pub(super) fn accept(&self) -> io::Result<(OfStream, String)> {
        match &self.socket {
            Socket::Tcp(l) | Socket::Tls(l, _) => {
                let (stream, peer) = l.accept()?;
                Ok((OfStream::Tcp(stream), peer.to_string()))
            }
            Socket::Unix(l) => {
                let (stream, _) = l.accept()?;
                Ok((OfStream::Unix(stream), self.addr.to_string()))
            }
        }
    }

    /// The stream to serve: on a `pssl:` listener, after a TLS handshake in
    /// which the client proved a certificate of the CA (a failure is counted);
    /// on the others, `stream` itself. Runs on the connection's own thread: a
    /// slow handshake holds up nobody else.
    pub(super) fn secure(&self, stream: OfStream) -> io::Result<OfStream> {
        match (&self.socket, stream) {
            (Socket::Tls(_, config), OfStream::Tcp(tcp)) => TlsStream::accept(tcp, config.clone())
                .map(OfStream::Tls)
                .inspect_err(|_| {
                    self.counters.tls_refused.fetch_add(1, Relaxed);
                }),
            (_, stream) => Ok(stream),
        }
    }

    /// Takes a place for a new connection if the listener is below its cap;
    /// otherwise counts the connection as refused and returns `None`.
    pub(super) fn admit(&self) -> Option<Admitted> {
        let cap = self.max_connections;
        let taken = self
            .counters
            .open
            .fetch_update(Relaxed, Relaxed, |n| (n < cap).then_some(n + 1));
        if taken.is_err() {
            self.counters.refused.fetch_add(1, Relaxed);
            return None;
        }
        Some(Admitted {
            counters: self.counters.clone(),
        })
    }
}

/// Binds a Unix stream socket at `path` with mode 0600, then listens.
pub(crate) fn bind_unix(path: &Path) -> io::Result<(UnixListener, SocketFile)> {
    remove_stale(path)?;
    let socket = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)?;
    socket.bind(&socket2::SockAddr::unix(path)?)?;
    // Not listening yet, so every connect is refused whatever the mode is now.
    let listening = fs::set_permissions(path, fs::Permissions::from_mode(SOCKET_MODE))
        .and_then(|()| socket.listen(BACKLOG))
        .and_then(|()| file_id(path));
    match listening {
        Ok(id) => {
            let file = SocketFile {
                path: path.to_path_buf(),
                id,
            };
            Ok((UnixListener::from(socket), file))
        }
        Err(e) => {
            let _ = fs::remove_file(path);
            Err(e)
        }
    }
}

/// Removes a socket file nobody listens on any more (left by a crash). A live
/// socket, or a file that is not a socket, is an error and stays.
fn remove_stale(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the path exists and is not a socket",
        ));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "another process listens on this socket",
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => fs::remove_file(path),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests;
