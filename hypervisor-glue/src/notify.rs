//! Telling the controller that a migrated VM runs at its destination: an HTTP
//! `POST /migrate/arrived` on `scc`'s API, a second arrival signal next to the RARP
//! announce the destination switch sees (whichever comes first wins there).
//!
//! Owns one short-lived connection per notice (`bounded_http`'s client). It never
//! programs the network itself and never retries: the controller's own RARP path
//! covers a lost notice.

use bounded_http::{ClientError, Endpoint};
use std::time::Duration;

/// Why the notice did not get through.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// Connecting failed, or the exchange broke off.
    #[error("scc API at {api}: {source}")]
    Io {
        /// The API address.
        api: Endpoint,
        /// Why.
        source: ClientError,
    },
    /// No answer within the time allowed.
    #[error("scc API at {api}: no answer within {timeout:?}")]
    Timeout {
        /// The API address.
        api: Endpoint,
        /// The time allowed.
        timeout: Duration,
    },
    /// The answer was not a success.
    #[error("scc API at {api} answered {status}: {body}")]
    Refused {
        /// The API address.
        api: Endpoint,
        /// HTTP status.
        status: u16,
        /// The answer's body.
        body: String,
    },
}

/// Sends `POST /migrate/arrived` to `scc` at `api` (with `token` as bearer token,
/// for an API on TCP); the answer's body on success.
pub async fn migrate_arrived(
    api: &Endpoint,
    token: Option<&str>,
    timeout: Duration,
) -> Result<String, NotifyError> {
    let answer =
        bounded_http::client::request_to(api, token, "POST", "/migrate/arrived", b"", timeout)
            .await
            .map_err(|source| match source {
                ClientError::Timeout(_) => NotifyError::Timeout {
                    api: api.clone(),
                    timeout,
                },
                source => NotifyError::Io {
                    api: api.clone(),
                    source,
                },
            })?;
    let body = answer.text().trim().to_owned();
    if answer.is_success() {
        Ok(body)
    } else {
        Err(NotifyError::Refused {
            api: api.clone(),
            status: answer.status,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bounded_http::fake::{Asked, Fake};

    #[tokio::test]
    async fn posts_arrived_as_json_and_reads_the_answer() {
        let mut scc = Fake::start(200, "{\"ok\": true}\n").expect("fake API");
        let body = migrate_arrived(&Endpoint::Tcp(scc.addr), None, Duration::from_secs(5)).await;
        assert_eq!(body.expect("accepted"), "{\"ok\": true}");
        let asked = scc.asked.recv().await.expect("asked");
        assert_eq!(
            asked,
            Asked {
                method: "POST".into(),
                target: "/migrate/arrived".into(),
                content_type: Some("application/json".into()),
            }
        );
    }

    #[tokio::test]
    async fn a_refusal_or_no_listener_is_an_error() {
        let scc = Fake::start(409, "{\"error\": \"no migration\"}").expect("fake API");
        let e = migrate_arrived(&Endpoint::Tcp(scc.addr), None, Duration::from_secs(5)).await;
        assert!(
            matches!(e, Err(NotifyError::Refused { status: 409, .. })),
            "{e:?}"
        );
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let gone = closed.local_addr().expect("addr");
        drop(closed);
        let e = migrate_arrived(&Endpoint::Tcp(gone), None, Duration::from_secs(5)).await;
        assert!(matches!(e, Err(NotifyError::Io { .. })), "{e:?}");
    }
}
