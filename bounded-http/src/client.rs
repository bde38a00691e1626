//! The one-shot client for the project's HTTP endpoints: one connection, one
//! request, the whole answer, within a deadline.
//!
//! Owns connecting (TCP or a Unix socket, [`Endpoint`]) and the exchange; the
//! caller owns what the body means. Every request other than GET and HEAD says
//! `Content-Type: application/json`, which is what `scc`'s API requires of them;
//! a bearer token, when given, goes in `Authorization`.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONNECTION, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::path::PathBuf;
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

/// Where a server listens: `unix:PATH`, or `http://HOST:PORT` (also written
/// plain `HOST:PORT`) with an IP address for HOST.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix stream socket's path.
    Unix(PathBuf),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp(addr) => write!(f, "http://{addr}"),
            Endpoint::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl std::str::FromStr for Endpoint {
    type Err = String;
    fn from_str(text: &str) -> Result<Endpoint, String> {
        let text = text.trim();
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(format!("`{text}`: a Unix socket needs a path"));
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        let addr = text.strip_prefix("http://").unwrap_or(text);
        addr.trim_end_matches('/')
            .parse()
            .map(Endpoint::Tcp)
            .map_err(|_| {
                format!("`{text}` is not unix:PATH or http://ADDR:PORT (such as unix:/run/scc/api.sock)")
            })
    }
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
    request_to(&Endpoint::Tcp(addr), None, method, target, body, timeout).await
}

/// Sends `method target` with `body` (and `Authorization: Bearer TOKEN` when a
/// token is given) to the server at `endpoint` and reads the whole answer, all
/// within `timeout` (connecting within 5 s of it).
pub async fn request_to(
    endpoint: &Endpoint,
    token: Option<&str>,
    method: &str,
    target: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<Answer, ClientError> {
    let headers = Extra { token };
    let exchanged = match endpoint {
        Endpoint::Tcp(addr) => {
            let stream = connect(endpoint, tokio::net::TcpStream::connect(addr)).await?;
            tokio::time::timeout(timeout, send(stream, method, target, body, headers)).await
        }
        Endpoint::Unix(path) => {
            let stream = connect(endpoint, tokio::net::UnixStream::connect(path)).await?;
            tokio::time::timeout(timeout, send(stream, method, target, body, headers)).await
        }
    };
    exchanged.map_err(|_| ClientError::Timeout(timeout))?
}

/// Waits for `connecting` to `endpoint` at most [`CONNECT_TIMEOUT`].
async fn connect<S>(
    endpoint: &Endpoint,
    connecting: impl std::future::Future<Output = std::io::Result<S>>,
) -> Result<S, ClientError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(connected) => connected.map_err(ClientError::Connect),
        Err(_) => Err(ClientError::Connect(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("{endpoint}: no connection within {CONNECT_TIMEOUT:?}"),
        ))),
    }
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
    send(io, method, target, body, Extra { token: None }).await
}

/// Headers a request may add to the fixed ones.
#[derive(Clone, Copy)]
struct Extra<'a> {
    token: Option<&'a str>,
}

async fn send<S>(
    io: S,
    method: &str,
    target: &str,
    body: &[u8],
    extra: Extra<'_>,
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
    if let Some(token) = extra.token {
        builder = builder.header(AUTHORIZATION, format!("Bearer {token}"));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_unix_paths_or_http_addresses_and_print_as_parsed() {
        let unix: Endpoint = "unix:/run/scc/api.sock".parse().unwrap();
        assert_eq!(unix, Endpoint::Unix("/run/scc/api.sock".into()));
        let tcp: Endpoint = "http://127.0.0.1:6680".parse().unwrap();
        assert_eq!(tcp, Endpoint::Tcp("127.0.0.1:6680".parse().unwrap()));
        assert_eq!("127.0.0.1:6680".parse::<Endpoint>().unwrap(), tcp);
        for e in [&unix, &tcp] {
            assert_eq!(&e.to_string().parse::<Endpoint>().unwrap(), e);
        }
        for bad in ["unix:", "localhost:6680", "http://", "6680"] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad}");
        }
    }
}
