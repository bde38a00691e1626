//! An OpenFlow connection over TLS (`pssl:` and `ssl:`): a rustls connection
//! on a blocking TCP socket, shared by the session's reader and the registry's
//! writers the way a TCP socket is.
//!
//! It owns the handshake (under a deadline, before the connection is served)
//! and the record layer: a read waits for bytes on the socket without holding
//! the connection's lock, so a writer never waits for a silent peer; a write
//! encrypts and sends under the lock. It never interprets the OpenFlow bytes.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tls_support::rustls::{self, ClientConfig, ClientConnection, ServerConfig, ServerConnection};
use tls_support::ServerName;

/// A handshake that takes longer fails.
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Shared {
    conn: rustls::Connection,
    tcp: TcpStream,
}

/// One end of a TLS connection; [`TlsStream::try_clone`] makes another handle
/// on the same connection.
#[derive(Debug)]
pub struct TlsStream {
    shared: Arc<Mutex<Shared>>,
    /// This handle's own descriptor of the socket, to wait for bytes on it.
    tcp: TcpStream,
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl TlsStream {
    /// Accepts a client on `tcp`: it must present a certificate of the CA.
    pub(super) fn accept(tcp: TcpStream, config: Arc<ServerConfig>) -> io::Result<TlsStream> {
        let conn = ServerConnection::new(config).map_err(tls_error)?;
        TlsStream::handshake(tcp, conn.into())
    }

    /// Connects to a server on `tcp`: its certificate must be of the CA and
    /// name `name`.
    pub(super) fn connect(
        tcp: TcpStream,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> io::Result<TlsStream> {
        let conn = ClientConnection::new(config, name).map_err(tls_error)?;
        TlsStream::handshake(tcp, conn.into())
    }

    fn handshake(mut tcp: TcpStream, mut conn: rustls::Connection) -> io::Result<TlsStream> {
        tcp.set_read_timeout(Some(HANDSHAKE_DEADLINE))?;
        tcp.set_write_timeout(Some(HANDSHAKE_DEADLINE))?;
        let deadline = std::time::Instant::now() + HANDSHAKE_DEADLINE;
        while conn.is_handshaking() {
            if std::time::Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "TLS handshake took too long",
                ));
            }
            conn.complete_io(&mut tcp)?;
        }
        // The last flight (a TLS 1.3 client's Finished) may still be queued.
        while conn.wants_write() {
            conn.write_tls(&mut tcp)?;
        }
        let own = tcp.try_clone()?;
        Ok(TlsStream {
            shared: Arc::new(Mutex::new(Shared { conn, tcp })),
            tcp: own,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The peer's certificate (first of its chain), once verified.
    pub fn peer_certificate(&self) -> Option<tls_support::CertificateDer<'static>> {
        let shared = self.lock();
        shared
            .conn
            .peer_certificates()?
            .first()
            .map(|c| c.clone().into_owned())
    }

    /// Another handle on the same connection.
    pub fn try_clone(&self) -> io::Result<TlsStream> {
        Ok(TlsStream {
            shared: self.shared.clone(),
            tcp: self.tcp.try_clone()?,
        })
    }

    /// The socket, for its options (timeouts apply to every handle).
    pub fn socket(&self) -> &TcpStream {
        &self.tcp
    }

    /// Says goodbye (close_notify) and shuts the socket down.
    pub fn shutdown(&self) -> io::Result<()> {
        let mut shared = self.lock();
        let Shared { conn, tcp } = &mut *shared;
        conn.send_close_notify();
        let _ = send_pending(conn, tcp);
        tcp.shutdown(Shutdown::Both)
    }
}

/// Writes every record rustls has queued.
fn send_pending(conn: &mut rustls::Connection, tcp: &mut TcpStream) -> io::Result<()> {
    while conn.wants_write() {
        conn.write_tls(tcp)?;
    }
    Ok(())
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.lock().conn.reader().read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                done => return done,
            }
            // Waits (up to the socket's read timeout) with the lock released.
            self.tcp.peek(&mut [0u8; 1])?;
            let mut shared = self.lock();
            let Shared { conn, tcp } = &mut *shared;
            conn.read_tls(tcp)?;
            conn.process_new_packets().map_err(tls_error)?;
            send_pending(conn, tcp)?;
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut shared = self.lock();
        let Shared { conn, tcp } = &mut *shared;
        conn.writer().write_all(buf)?;
        send_pending(conn, tcp)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut shared = self.lock();
        let Shared { conn, tcp } = &mut *shared;
        send_pending(conn, tcp)
    }
}
