//! One OpenFlow connection's byte stream, TCP, TLS or Unix: the session code
//! reads and writes it the same way whichever listener or controller it came
//! from.
//!
//! It owns only the socket calls the channel needs (read, write, timeouts,
//! shutdown, a second handle for the writer); it never interprets the bytes.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use super::tls_stream::TlsStream;

/// A connected OpenFlow stream.
#[derive(Debug)]
pub enum OfStream {
    /// From `ptcp:` or to a `tcp:` controller.
    Tcp(TcpStream),
    /// From `punix:`.
    Unix(UnixStream),
    /// From `pssl:` or to an `ssl:` controller.
    Tls(TlsStream),
}

impl OfStream {
    /// A second handle on the same socket (the registry writes through it).
    pub fn try_clone(&self) -> io::Result<OfStream> {
        match self {
            OfStream::Tcp(s) => s.try_clone().map(OfStream::Tcp),
            OfStream::Unix(s) => s.try_clone().map(OfStream::Unix),
            OfStream::Tls(s) => s.try_clone().map(OfStream::Tls),
        }
    }

    /// Sets the longest a read waits (`None`: forever).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            OfStream::Tcp(s) => s.set_read_timeout(timeout),
            OfStream::Unix(s) => s.set_read_timeout(timeout),
            OfStream::Tls(s) => s.socket().set_read_timeout(timeout),
        }
    }

    /// Sets the longest a write waits (`None`: forever).
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            OfStream::Tcp(s) => s.set_write_timeout(timeout),
            OfStream::Unix(s) => s.set_write_timeout(timeout),
            OfStream::Tls(s) => s.socket().set_write_timeout(timeout),
        }
    }

    /// Sends small messages at once on TCP (a Unix socket never delays them).
    pub fn set_nodelay(&self) -> io::Result<()> {
        match self {
            OfStream::Tcp(s) => s.set_nodelay(true),
            OfStream::Tls(s) => s.socket().set_nodelay(true),
            OfStream::Unix(_) => Ok(()),
        }
    }

    /// Shuts both directions down; the reader of the other handle then ends.
    pub fn shutdown(&self) -> io::Result<()> {
        match self {
            OfStream::Tcp(s) => s.shutdown(Shutdown::Both),
            OfStream::Unix(s) => s.shutdown(Shutdown::Both),
            OfStream::Tls(s) => s.shutdown(),
        }
    }
}

impl Read for OfStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            OfStream::Tcp(s) => s.read(buf),
            OfStream::Unix(s) => s.read(buf),
            OfStream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for OfStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            OfStream::Tcp(s) => s.write(buf),
            OfStream::Unix(s) => s.write(buf),
            OfStream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            OfStream::Tcp(s) => s.flush(),
            OfStream::Unix(s) => s.flush(),
            OfStream::Tls(s) => s.flush(),
        }
    }
}
