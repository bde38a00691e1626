//! Serving a hyper service with limits no client can push past.
//!
//! Owns the accept loop and each connection's life: a connection cap (a semaphore
//! taken at accept; a connection over the cap is closed at once, never queued), a
//! bound on the request line and headers, a deadline for the headers and one for
//! the whole exchange, and one request per connection. What a request means is the
//! service's business; a body's size is bounded by the service (axum's
//! `DefaultBodyLimit`, or a service that reads no body at all).

use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;

/// What one listener tolerates from its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// Bytes of request line and headers; past it the answer is 431 and the
    /// connection closes. At least 8 KiB (hyper's smallest read buffer).
    pub max_head_bytes: usize,
    /// From accept to the end of the headers: a client that sends nothing, or
    /// half a request line, is closed then.
    pub header_timeout: Duration,
    /// From accept to the end of the response: bounds a slow body and a slow
    /// handler alike.
    pub exchange_timeout: Duration,
}

impl Default for Limits {
    /// A local endpoint's: 64 clients at once, 16 KiB of head, the head within
    /// 10 s, the whole exchange within 60 s.
    fn default() -> Limits {
        Limits {
            max_connections: 64,
            max_head_bytes: 16 << 10,
            header_timeout: Duration::from_secs(10),
            exchange_timeout: Duration::from_secs(60),
        }
    }
}

/// hyper's read buffer never shrinks below this.
const SMALLEST_BUFFER: usize = 8 << 10;

/// A source of byte-stream connections: a TCP listener today; a Unix socket is
/// the same few lines.
pub trait Listener: Send + 'static {
    /// One accepted connection.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// Waits for the next connection.
    fn accept(&mut self) -> impl Future<Output = std::io::Result<Self::Io>> + Send;
}

impl Listener for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;
    async fn accept(&mut self) -> std::io::Result<Self::Io> {
        tokio::net::TcpListener::accept(self).await.map(|(s, _)| s)
    }
}

impl Listener for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;
    async fn accept(&mut self) -> std::io::Result<Self::Io> {
        tokio::net::UnixListener::accept(self).await.map(|(s, _)| s)
    }
}

/// Serves `service` on `listener` forever within `limits`; each connection is
/// its own task, so a slow client holds up nobody but itself.
pub async fn serve<L, S, B>(mut listener: L, service: S, limits: Limits)
where
    L: Listener,
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let io = match listener.accept().await {
            Ok(io) => io,
            Err(e) => {
                // Out of descriptors or memory: give the open connections time to
                // finish instead of spinning on the same error.
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::debug!(
                max = limits.max_connections,
                "connection cap reached: closing a new connection"
            );
            drop(io);
            continue;
        };
        let service = service.clone();
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size(limits.max_head_bytes.max(SMALLEST_BUFFER))
                .max_header_size(limits.max_head_bytes)
                .keep_alive(false)
                .serve_connection(TokioIo::new(io), service);
            match tokio::time::timeout(limits.exchange_timeout, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!("connection: {e}"),
                Err(_) => tracing::debug!("connection closed after {:?}", limits.exchange_timeout),
            }
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests;
