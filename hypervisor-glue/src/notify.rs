//! Telling the controller about a migration: `POST /migrate/progress` on `scc`'s
//! API while QEMU copies (what `scc status` shows: bytes, rates, expected
//! downtime, phase), and `POST /migrate/arrived` once the VM runs at its
//! destination, a second arrival signal next to the RARP announce the destination
//! switch sees (whichever comes first wins there).
//!
//! Owns one short-lived connection per notice (`bounded_http`'s client). It never
//! programs the network itself and never retries: the controller's own RARP path
//! covers a lost arrival, and the next progress notice a lost one.

use crate::storage::Progress;
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
    post(api, token, "/migrate/arrived", b"", timeout).await
}

/// Sends `progress` of VM `vm` (when known) to `scc` at `api` (`POST
/// /migrate/progress?vm=VM`, with `token` as bearer token for an API on TCP);
/// the answer's body on success. `scc` refuses a report naming another VM than
/// the one it migrates.
pub async fn migrate_progress(
    api: &Endpoint,
    token: Option<&str>,
    vm: Option<&str>,
    progress: &Progress,
    timeout: Duration,
) -> Result<String, NotifyError> {
    // A struct of numbers and a unit enum: serialising it cannot fail.
    let body = serde_json::to_vec(progress).unwrap_or_default();
    post(api, token, &progress_target(vm), &body, timeout).await
}

/// The request target of a progress report: the VM's name as a query
/// parameter when it needs no escaping (a name QEMU was given by `scvm start`).
fn progress_target(vm: Option<&str>) -> String {
    let plain = |name: &str| {
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    match vm.filter(|name| plain(name)) {
        Some(name) => format!("/migrate/progress?vm={name}"),
        None => "/migrate/progress".to_string(),
    }
}

/// The least time between two notices of progress.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// How long a notice of progress may take: a slow scc must not hold up the
/// arrival notice behind it.
pub const PROGRESS_TIMEOUT: Duration = Duration::from_secs(2);

/// Sends the latest progress in `latest` to `scc` at `api`, at most every
/// [`PROGRESS_EVERY`], until its sender is dropped (the migration ended). A
/// failure is logged once and stops nothing: the controller learns the arrival
/// by the announce anyway.
pub async fn report_progress(
    api: Endpoint,
    token: Option<String>,
    vm: Option<String>,
    mut latest: tokio::sync::watch::Receiver<Option<Progress>>,
) {
    let mut warned = false;
    while latest.changed().await.is_ok() {
        let Some(progress) = latest.borrow_and_update().clone() else {
            continue;
        };
        let sent = migrate_progress(
            &api,
            token.as_deref(),
            vm.as_deref(),
            &progress,
            PROGRESS_TIMEOUT,
        )
        .await;
        if let (Err(e), false) = (sent, warned) {
            tracing::warn!("scc does not take the migration's progress (it goes on): {e}");
            warned = true;
        }
        tokio::time::sleep(PROGRESS_EVERY).await;
    }
}

async fn post(
    api: &Endpoint,
    token: Option<&str>,
    target: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<String, NotifyError> {
    let answer = bounded_http::client::request_to(api, token, "POST", target, body, timeout)
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
    async fn posts_progress_to_its_own_endpoint() {
        let mut scc = Fake::start(200, "{\"ok\": true}\n").expect("fake API");
        let info: crate::MigrationInfo = serde_json::from_value(serde_json::json!({
            "status": "postcopy-active",
            "ram": {"transferred": 5, "remaining": 7, "total": 12, "dirty-pages-rate": 3},
        }))
        .expect("query-migrate answer");
        let progress = Progress::of_memory(&info, Duration::from_millis(1500));
        assert_eq!(progress.phase, crate::storage::Phase::PostCopy);
        assert_eq!(progress.dirty_bytes_rate, 3 * 4096);
        let wire = serde_json::to_value(&progress).expect("json");
        assert_eq!(wire["elapsed_ms"], 1500);
        assert_eq!(wire["phase"], "post-copy");
        let back: Progress = serde_json::from_value(wire).expect("reads back");
        assert_eq!(back, progress);
        let sent = migrate_progress(
            &Endpoint::Tcp(scc.addr),
            None,
            Some("web-1"),
            &progress,
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(sent.expect("accepted"), "{\"ok\": true}");
        let asked = scc.asked.recv().await.expect("asked");
        assert_eq!(asked.target, "/migrate/progress?vm=web-1");
    }

    #[test]
    fn a_name_that_would_need_escaping_is_left_out() {
        assert_eq!(progress_target(None), "/migrate/progress");
        assert_eq!(
            progress_target(Some("db.eu_1")),
            "/migrate/progress?vm=db.eu_1"
        );
        assert_eq!(progress_target(Some("a&b=c")), "/migrate/progress");
        assert_eq!(progress_target(Some("")), "/migrate/progress");
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
