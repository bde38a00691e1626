//! The one-shot client for the project's HTTP endpoints: one connection, one
//! request, the whole answer, within a deadline.
//!
//! Owns connecting and the exchange; the caller owns what the body means. Every
//! request other than GET and HEAD says `Content-Type: application/json`, which
//! is what `scc`'s API requires of them. [`exchange`] runs over any byte stream,
//! so a Unix socket (or a bearer token, one more header) is a small step.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONNECTION, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A whole answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status code.
    pub status: u16,
    /// The body, as sent.
    pub body: Bytes,
}

impl Answer {
    /// True for a 2xx status.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Why no answer came.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting failed.
    #[error("connecting: {0}")]
    Connect(#[source] std::io::Error),
    /// The method or target cannot form a request.
    #[error("cannot send {method} {target}: {source}")]
    Request {
        /// The method given.
        method: String,
        /// The target given.
        target: String,
        /// Why.
        source: hyper::http::Error,
    },
    /// The exchange broke off, or the answer was not HTTP.
    #[error("{0}")]
    Http(#[from] hyper::Error),
    /// No whole answer within the time allowed.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// A blocking call could not start its runtime.
    #[error("starting a runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// Sends `method target` with `body` to the server at `addr` over TCP and reads
/// the whole answer, all within `timeout`.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<Answer, ClientError> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| {
            ClientError::Connect(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("{addr}: no connection within {CONNECT_TIMEOUT:?}"),
            ))
        })?
        .map_err(ClientError::Connect)?;
    tokio::time::timeout(timeout, exchange(stream, method, target, body))
        .await
        .map_err(|_| ClientError::Timeout(timeout))?
}

/// Runs a request (e.g. [`request`]) for callers without a runtime (a CLI, a test
/// thread) on a runtime of its own on this thread. Panics inside an async task.
pub fn blocking<T>(
    request: impl std::future::Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ClientError::Runtime)?
        .block_on(request)
}

/// One request and its whole answer over an open connection `io`.
pub async fn exchange<S>(
    io: S,
    method: &str,
    target: &str,
    body: &[u8],
) -> Result<Answer, ClientError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let bad = |source| ClientError::Request {
        method: method.to_string(),
        target: target.to_string(),
        source,
    };
    let method = Method::from_bytes(method.as_bytes()).map_err(|e| bad(e.into()))?;
    let mut builder = Request::builder()
        .method(method.clone())
        .uri(target)
        .header(HOST, "localhost")
        .header(CONNECTION, "close");
    if method != Method::GET && method != Method::HEAD {
        builder = builder.header(CONTENT_TYPE, "application/json");
    }
    let request = builder
        .body(Full::new(Bytes::copy_from_slice(body)))
        .map_err(bad)?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    // The connection's I/O runs beside the request and ends on its own once the
    // answer is read and the sender dropped (or with the runtime): not waited for,
    // so a server that keeps the connection open cannot turn an answer into a timeout.
    tokio::spawn(connection);
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok(Answer { status, body })
}
