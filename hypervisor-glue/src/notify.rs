//! Telling the controller that a migrated VM runs at its destination: an HTTP
//! `POST /migrate/arrived` on `scc`'s API, a second arrival signal next to the RARP
//! announce the destination switch sees (whichever comes first wins there).
//!
//! Owns one short-lived TCP connection per notice. It never programs the network
//! itself and never retries: the controller's own RARP path covers a lost notice.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Why the notice did not get through.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// Connecting, writing or reading failed.
    #[error("scc API at {api}: {source}")]
    Io {
        /// The API address.
        api: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// No answer within the time allowed.
    #[error("scc API at {api}: no answer within {timeout:?}")]
    Timeout {
        /// The API address.
        api: SocketAddr,
        /// The time allowed.
        timeout: Duration,
    },
    /// The answer was not HTTP, or not a success.
    #[error("scc API at {api} answered {status}: {body}")]
    Refused {
        /// The API address.
        api: SocketAddr,
        /// HTTP status (0 when the answer was not HTTP).
        status: u16,
        /// The answer's body.
        body: String,
    },
}

/// Sends `POST /migrate/arrived` to `scc` at `api`; the answer's body on success.
pub async fn migrate_arrived(api: SocketAddr, timeout: Duration) -> Result<String, NotifyError> {
    let io = |source| NotifyError::Io { api, source };
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(api).await.map_err(io)?;
        s.write_all(
            b"POST /migrate/arrived HTTP/1.1\r\nHost: scc\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .await
        .map_err(io)?;
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await.map_err(io)?;
        Ok(String::from_utf8_lossy(&answer).into_owned())
    };
    let text = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| NotifyError::Timeout { api, timeout })??;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .unwrap_or(0);
    if (200..300).contains(&status) {
        Ok(body.trim().to_owned())
    } else {
        Err(NotifyError::Refused {
            api,
            status,
            body: body.trim().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A one-shot fake API: returns what it was sent, answering with `reply`.
    async fn fake(reply: &'static str) -> (SocketAddr, tokio::task::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.expect("accept");
            let mut buf = vec![0u8; 1024];
            let mut got = Vec::new();
            while !got.ends_with(b"\r\n\r\n") {
                let n = s.read(&mut buf).await.expect("read");
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            s.write_all(reply.as_bytes()).await.expect("write");
            String::from_utf8_lossy(&got).into_owned()
        });
        (addr, task)
    }

    #[tokio::test]
    async fn posts_arrived_and_reads_the_answer() {
        let (addr, task) =
            fake("HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n{\"ok\": true}\n").await;
        let body = migrate_arrived(addr, Duration::from_secs(5))
            .await
            .expect("accepted");
        assert_eq!(body, "{\"ok\": true}");
        let request = task.await.expect("fake");
        assert!(
            request.starts_with("POST /migrate/arrived HTTP/1.1\r\n"),
            "{request}"
        );
    }

    #[tokio::test]
    async fn a_refusal_or_no_listener_is_an_error() {
        let (addr, _task) =
            fake("HTTP/1.1 409 Conflict\r\n\r\n{\"error\": \"no migration\"}").await;
        let e = migrate_arrived(addr, Duration::from_secs(5))
            .await
            .expect_err("refused");
        assert!(matches!(e, NotifyError::Refused { status: 409, .. }), "{e}");
        let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let gone = closed.local_addr().expect("addr");
        drop(closed);
        let e = migrate_arrived(gone, Duration::from_secs(5))
            .await
            .expect_err("nobody listens");
        assert!(matches!(e, NotifyError::Io { .. }), "{e}");
    }
}
