//! The QMP client: one connection to one QEMU monitor socket.
//!
//! Owns the wire protocol: the greeting, `qmp_capabilities` negotiation, command
//! ids and their correlation with replies, and the fan-out of asynchronous events
//! to subscribers. It knows nothing of what a command means (see
//! [`crate::commands`]) nor of migration (see [`crate::migration`]).
//! It must never block on a reply without a timeout, never leave a caller waiting
//! after the connection is gone, and never start, stop or signal QEMU itself.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;

use crate::commands::{Command, MigrationStatus};

/// How many events a slow subscriber may lag behind before it loses some.
const EVENT_BUFFER: usize = 1024;

/// Default time allowed for connecting, the greeting, and each command.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// What can go wrong talking to QMP.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// The socket could not be opened, read or written.
    #[error("QMP I/O error on {context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The peer did not speak QMP (bad greeting, unparsable JSON, odd reply).
    #[error("QMP protocol error: {0}")]
    Protocol(String),
    /// QEMU answered the command with an `error` object.
    #[error("QMP command {command} failed: {class}: {desc}")]
    Command {
        /// The command that failed.
        command: String,
        /// QEMU's error class, e.g. `GenericError`, `CommandNotFound`.
        class: String,
        /// QEMU's human-readable description.
        desc: String,
    },
    /// The connection closed (QEMU exited or the socket was shut).
    #[error("QMP connection closed{}", detail_suffix(.0))]
    Disconnected(Option<String>),
    /// No reply in time.
    #[error("QMP {what} timed out after {after:?}")]
    Timeout {
        /// What was waited for (a command name, "greeting", "connect").
        what: String,
        /// How long we waited.
        after: Duration,
    },
    /// A reply arrived but did not have the shape the typed command expects.
    #[error("QMP reply to {command} has an unexpected shape: {source}")]
    Decode {
        /// The command whose reply failed to decode.
        command: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
}

fn detail_suffix(detail: &Option<String>) -> String {
    detail
        .as_ref()
        .map(|d| format!(": {d}"))
        .unwrap_or_default()
}

impl QmpError {
    /// True when the error came from QEMU itself (an `error` reply), as opposed
    /// to the transport.
    pub fn is_command_error(&self) -> bool {
        matches!(self, QmpError::Command { .. })
    }
}

/// QEMU's version as announced in the greeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QemuVersion {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Micro version.
    pub micro: u32,
    /// Distribution package string, e.g. `Debian 1:10.0.2+ds-2`.
    pub package: String,
}

/// The server's greeting (`{"QMP": {...}}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QmpGreeting {
    /// The QEMU version.
    pub version: QemuVersion,
    /// Capabilities the server offers (e.g. `oob`); we enable none.
    pub capabilities: Vec<String>,
}

impl QmpGreeting {
    fn parse(line: &str) -> Result<Self, QmpError> {
        let v: Value = serde_json::from_str(line)
            .map_err(|e| QmpError::Protocol(format!("greeting is not JSON ({e}): {line}")))?;
        let qmp = v
            .get("QMP")
            .ok_or_else(|| QmpError::Protocol(format!("no QMP greeting: {line}")))?;
        let ver = &qmp["version"];
        let num = |k: &str| {
            ver["qemu"][k]
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0)
        };
        Ok(QmpGreeting {
            version: QemuVersion {
                major: num("major"),
                minor: num("minor"),
                micro: num("micro"),
                package: ver["package"].as_str().unwrap_or_default().to_owned(),
            },
            capabilities: qmp["capabilities"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|c| c.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }
}

/// When QEMU emitted an event (its own clock, not ours).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct QmpTimestamp {
    /// Seconds since the epoch.
    pub seconds: i64,
    /// Microseconds within the second.
    pub microseconds: i64,
}

impl QmpTimestamp {
    /// The timestamp in microseconds since the epoch.
    pub fn as_micros(&self) -> i64 {
        self.seconds
            .saturating_mul(1_000_000)
            .saturating_add(self.microseconds)
    }
}

/// One asynchronous event, as QEMU sent it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QmpEvent {
    /// Event name, e.g. `MIGRATION`, `RESUME`.
    pub event: String,
    /// Event payload (`null` when absent).
    #[serde(default)]
    pub data: Value,
    /// QEMU's timestamp.
    #[serde(default)]
    pub timestamp: QmpTimestamp,
}

/// The events this crate reads, typed; everything else is [`EventKind::Other`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// `MIGRATION`: the migration state changed (needs the `events` capability).
    Migration(MigrationStatus),
    /// `MIGRATION_PASS`: a new RAM pass began.
    MigrationPass(u64),
    /// `RESUME`: the guest's vCPUs run again.
    Resume,
    /// `STOP`: the guest's vCPUs stopped.
    Stop,
    /// `SHUTDOWN`: the guest or the host shut QEMU down.
    Shutdown {
        /// True when the guest asked for it.
        guest: bool,
        /// QEMU's reason string.
        reason: String,
    },
    /// `RESET`: the guest reset.
    Reset,
    /// `POWERDOWN`: a powerdown request was sent to the guest.
    Powerdown,
    /// Any other event (see [`QmpEvent::event`]).
    Other,
}

impl QmpEvent {
    /// The event, typed for the names this crate knows.
    pub fn kind(&self) -> EventKind {
        match self.event.as_str() {
            "MIGRATION" => serde_json::from_value::<MigrationStatus>(self.data["status"].clone())
                .map_or(EventKind::Other, EventKind::Migration),
            "MIGRATION_PASS" => self.data["pass"]
                .as_u64()
                .map_or(EventKind::Other, EventKind::MigrationPass),
            "RESUME" => EventKind::Resume,
            "STOP" => EventKind::Stop,
            "SHUTDOWN" => EventKind::Shutdown {
                guest: self.data["guest"].as_bool().unwrap_or(false),
                reason: self.data["reason"].as_str().unwrap_or_default().to_owned(),
            },
            "RESET" => EventKind::Reset,
            "POWERDOWN" => EventKind::Powerdown,
            _ => EventKind::Other,
        }
    }
}

type Reply = Result<Value, QmpError>;

/// Replies still awaited, and why the connection ended once it has.
#[derive(Debug, Default)]
struct Pending {
    waiting: HashMap<u64, (String, oneshot::Sender<Reply>)>,
    closed: Option<Option<String>>,
}

#[derive(Debug)]
struct Shared {
    pending: Mutex<Pending>,
    events: broadcast::Sender<QmpEvent>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        // A panic while holding this lock cannot leave `Pending` inconsistent
        // (each operation is a single map insert/remove), so poisoning is ignored.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks the connection closed and fails every waiter.
    fn close(&self, why: Option<String>) {
        let waiting = {
            let mut p = self.lock();
            if p.closed.is_none() {
                p.closed = Some(why.clone());
            }
            std::mem::take(&mut p.waiting)
        };
        for (_, (_, tx)) in waiting {
            let _ = tx.send(Err(QmpError::Disconnected(why.clone())));
        }
    }
}

type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// A negotiated QMP connection.
///
/// Commands may be issued concurrently from several tasks (`&self`); each
/// carries its own `id`. Events go to every [`QmpClient::subscribe`]r.
/// Dropping the client closes the connection.
pub struct QmpClient {
    writer: tokio::sync::Mutex<Writer>,
    shared: Arc<Shared>,
    next_id: AtomicU64,
    greeting: QmpGreeting,
    timeout: Duration,
    reader: JoinHandle<()>,
}

impl std::fmt::Debug for QmpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QmpClient")
            .field("greeting", &self.greeting)
            .field("timeout", &self.timeout)
            .field("next_id", &self.next_id)
            .finish_non_exhaustive()
    }
}

impl Drop for QmpClient {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl QmpClient {
    /// Connects to a QMP Unix socket, reads the greeting and negotiates
    /// capabilities. `timeout` bounds the connect, the greeting, and later
    /// every command (see [`QmpClient::execute_with_timeout`] to override).
    pub async fn connect(path: impl AsRef<Path>, timeout: Duration) -> Result<Self, QmpError> {
        let path = path.as_ref();
        let stream = tokio::time::timeout(timeout, UnixStream::connect(path))
            .await
            .map_err(|_| QmpError::Timeout {
                what: format!("connect to {}", path.display()),
                after: timeout,
            })?
            .map_err(|source| QmpError::Io {
                context: format!("connect to {}", path.display()),
                source,
            })?;
        Self::from_stream(stream, timeout).await
    }

    /// Runs the protocol over any byte stream (tests use this with a socket pair).
    pub async fn from_stream<S>(stream: S, timeout: Duration) -> Result<Self, QmpError>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read, write) = tokio::io::split(stream);
        let mut lines = BufReader::new(read).lines();
        let first = tokio::time::timeout(timeout, lines.next_line())
            .await
            .map_err(|_| QmpError::Timeout {
                // A QMP chardev serves one client at a time: a second one is
                // accepted by the kernel but never greeted.
                what: "greeting (QEMU serves one QMP client at a time: is another connected?)"
                    .into(),
                after: timeout,
            })?
            .map_err(|source| QmpError::Io {
                context: "reading the greeting".into(),
                source,
            })?
            .ok_or(QmpError::Disconnected(Some("before the greeting".into())))?;
        let greeting = QmpGreeting::parse(&first)?;

        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            events,
        });
        let reader = tokio::spawn(read_loop(lines, Arc::clone(&shared)));
        let client = QmpClient {
            writer: tokio::sync::Mutex::new(Box::new(write)),
            shared,
            next_id: AtomicU64::new(1),
            greeting,
            timeout,
            reader,
        };
        client.execute_raw("qmp_capabilities", None).await?;
        Ok(client)
    }

    /// The greeting QEMU sent.
    pub fn greeting(&self) -> &QmpGreeting {
        &self.greeting
    }

    /// The default per-command timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A new receiver of every event QEMU sends from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<QmpEvent> {
        self.shared.events.subscribe()
    }

    /// True once the connection is gone.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed.is_some()
    }

    /// Runs a typed command with the default timeout.
    pub async fn execute<C: Command>(&self, command: &C) -> Result<C::Response, QmpError> {
        self.execute_with_timeout(command, self.timeout).await
    }

    /// Runs a typed command with an explicit timeout.
    pub async fn execute_with_timeout<C: Command>(
        &self,
        command: &C,
        timeout: Duration,
    ) -> Result<C::Response, QmpError> {
        let name = command.name();
        let args = command.arguments().map_err(|source| QmpError::Decode {
            command: name.to_owned(),
            source,
        })?;
        let value = self.request(name, args, timeout).await?;
        serde_json::from_value(value).map_err(|source| QmpError::Decode {
            command: name.to_owned(),
            source,
        })
    }

    /// The escape hatch: any command by name with JSON arguments (an object or
    /// `None`); returns QEMU's `return` value untouched.
    pub async fn execute_raw(
        &self,
        command: &str,
        arguments: Option<Value>,
    ) -> Result<Value, QmpError> {
        self.request(command, arguments, self.timeout).await
    }

    async fn request(&self, command: &str, arguments: Option<Value>, timeout: Duration) -> Reply {
        if let Some(args) = &arguments {
            if !args.is_object() {
                return Err(QmpError::Protocol(format!(
                    "arguments of {command} must be a JSON object, got {args}"
                )));
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut p = self.shared.lock();
            if let Some(why) = &p.closed {
                return Err(QmpError::Disconnected(why.clone()));
            }
            p.waiting.insert(id, (command.to_owned(), tx));
        }
        let mut msg = Map::new();
        msg.insert("execute".into(), Value::String(command.to_owned()));
        if let Some(args) = arguments {
            msg.insert("arguments".into(), args);
        }
        msg.insert("id".into(), json!(id));
        let mut line = Value::Object(msg).to_string();
        line.push('\n');
        tracing::debug!(target: "qmp", "-> {}", line.trim_end());

        let outcome = tokio::time::timeout(timeout, async {
            {
                let mut w = self.writer.lock().await;
                let written = async {
                    w.write_all(line.as_bytes()).await?;
                    w.flush().await
                };
                if let Err(source) = written.await {
                    return Err(QmpError::Io {
                        context: format!("sending {command}"),
                        source,
                    });
                }
            }
            rx.await.unwrap_or(Err(QmpError::Disconnected(None)))
        })
        .await;
        match outcome {
            Ok(reply) => {
                if reply.is_err() {
                    self.shared.lock().waiting.remove(&id);
                }
                reply
            }
            Err(_) => {
                self.shared.lock().waiting.remove(&id);
                Err(QmpError::Timeout {
                    what: command.to_owned(),
                    after: timeout,
                })
            }
        }
    }
}

/// Reads lines until EOF: replies complete their waiter, events are broadcast.
async fn read_loop<R>(mut lines: tokio::io::Lines<BufReader<R>>, shared: Arc<Shared>)
where
    R: AsyncRead + Unpin,
{
    let why = loop {
        let line = match lines.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) => break None,
            Err(e) => break Some(e.to_string()),
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        tracing::debug!(target: "qmp", "<- {line}");
        let msg: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(target: "qmp", "ignoring non-JSON line ({e}): {line}");
                continue;
            }
        };
        dispatch(&shared, msg);
    };
    shared.close(why);
}

fn dispatch(shared: &Shared, msg: Value) {
    if msg.get("event").is_some() {
        match serde_json::from_value::<QmpEvent>(msg) {
            // No subscriber is fine: events are then simply not kept.
            Ok(ev) => drop(shared.events.send(ev)),
            Err(e) => tracing::warn!(target: "qmp", "malformed event: {e}"),
        }
        return;
    }
    let Some(id) = msg.get("id").and_then(Value::as_u64) else {
        tracing::warn!(target: "qmp", "reply without a known id: {msg}");
        return;
    };
    let Some((command, tx)) = shared.lock().waiting.remove(&id) else {
        tracing::debug!(target: "qmp", "late reply for id {id} (caller gave up)");
        return;
    };
    let reply = if let Some(ret) = msg.get("return") {
        Ok(ret.clone())
    } else if let Some(err) = msg.get("error") {
        Err(QmpError::Command {
            command,
            class: err["class"].as_str().unwrap_or("Unknown").to_owned(),
            desc: err["desc"].as_str().unwrap_or_default().to_owned(),
        })
    } else {
        Err(QmpError::Protocol(format!(
            "reply to {command} has neither return nor error: {msg}"
        )))
    };
    let _ = tx.send(reply);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::{QueryStatus, RunState};
    use crate::fake::{FakeQmp, Out};

    const T: Duration = Duration::from_secs(2);

    #[tokio::test]
    async fn negotiates_and_runs_a_typed_command() {
        let fake = FakeQmp::start(|cmd, _args| match cmd {
            "query-status" => vec![Out::ret(json!({"running": true, "status": "running"}))],
            _ => vec![Out::ret(json!({}))],
        });
        let client = QmpClient::connect(fake.path(), T).await.unwrap();
        assert_eq!(client.greeting().version.major, 10);
        assert_eq!(client.greeting().capabilities, vec!["oob".to_string()]);
        let st = client.execute(&QueryStatus).await.unwrap();
        assert!(st.running);
        assert_eq!(st.status, RunState::Running);
        let log = fake.commands();
        assert_eq!(log[0].0, "qmp_capabilities");
        assert_eq!(log[1].0, "query-status");
    }

    #[tokio::test]
    async fn error_reply_becomes_a_command_error() {
        let fake = FakeQmp::start(|cmd, _| match cmd {
            "qmp_capabilities" => vec![Out::ret(json!({}))],
            _ => vec![Out::err(
                "CommandNotFound",
                "The command nope has not been found",
            )],
        });
        let client = QmpClient::connect(fake.path(), T).await.unwrap();
        let err = client.execute_raw("nope", None).await.unwrap_err();
        assert!(err.is_command_error(), "{err}");
        match err {
            QmpError::Command {
                command,
                class,
                desc,
            } => {
                assert_eq!(command, "nope");
                assert_eq!(class, "CommandNotFound");
                assert!(desc.contains("nope"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn raw_command_passes_arguments_and_returns_value() {
        let fake = FakeQmp::start(|cmd, args| match cmd {
            "echo-me" => vec![Out::ret(args.clone())],
            _ => vec![Out::ret(json!({}))],
        });
        let client = QmpClient::connect(fake.path(), T).await.unwrap();
        let v = client
            .execute_raw("echo-me", Some(json!({"a": 1, "b": "x"})))
            .await
            .unwrap();
        assert_eq!(v, json!({"a": 1, "b": "x"}));
        let bad = client.execute_raw("echo-me", Some(json!([1]))).await;
        assert!(matches!(bad, Err(QmpError::Protocol(_))));
    }

    #[tokio::test]
    async fn events_reach_subscribers_and_are_typed() {
        let fake = FakeQmp::start(|cmd, _| match cmd {
            "stop" => vec![
                Out::event("STOP", json!(null)),
                Out::ret(json!({})),
                Out::event("MIGRATION", json!({"status": "active"})),
                Out::event(
                    "SHUTDOWN",
                    json!({"guest": true, "reason": "guest-shutdown"}),
                ),
                Out::event("SOMETHING_NEW", json!({"x": 1})),
            ],
            _ => vec![Out::ret(json!({}))],
        });
        let client = QmpClient::connect(fake.path(), T).await.unwrap();
        let mut rx = client.subscribe();
        client.execute_raw("stop", None).await.unwrap();
        let mut kinds = Vec::new();
        for _ in 0..4 {
            let ev = tokio::time::timeout(T, rx.recv()).await.unwrap().unwrap();
            kinds.push(ev.kind());
        }
        assert_eq!(
            kinds,
            vec![
                EventKind::Stop,
                EventKind::Migration(MigrationStatus::Active),
                EventKind::Shutdown {
                    guest: true,
                    reason: "guest-shutdown".into()
                },
                EventKind::Other,
            ]
        );
    }

    #[tokio::test]
    async fn replies_are_matched_by_id_even_out_of_order() {
        // The fake answers "slow" only after "fast" has been answered.
        let fake = FakeQmp::start(|cmd, _| match cmd {
            "slow" => vec![
                Out::Delay(Duration::from_millis(200)),
                Out::ret(json!("slow")),
            ],
            "fast" => vec![Out::ret(json!("fast"))],
            _ => vec![Out::ret(json!({}))],
        });
        let client = Arc::new(QmpClient::connect(fake.path(), T).await.unwrap());
        let c2 = Arc::clone(&client);
        let slow = tokio::spawn(async move { c2.execute_raw("slow", None).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let fast = client.execute_raw("fast", None).await.unwrap();
        assert_eq!(fast, json!("fast"));
        assert_eq!(slow.await.unwrap().unwrap(), json!("slow"));
    }

    #[tokio::test]
    async fn a_missing_reply_times_out() {
        let fake = FakeQmp::start(|cmd, _| match cmd {
            "hang" => vec![],
            _ => vec![Out::ret(json!({}))],
        });
        let client = QmpClient::connect(fake.path(), T).await.unwrap();
        let err = client
            .execute_with_timeout(
                &crate::commands::Raw::new("hang"),
                Duration::from_millis(100),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, QmpError::Timeout { ref what, .. } if what == "hang"),
            "{err}"
        );
        // The connection is still usable afterwards.
        client.execute_raw("ok", None).await.unwrap();
    }

    #[tokio::test]
    async fn disconnect_fails_pending_and_later_commands() {
        let fake = FakeQmp::closing_on("quit");
        let client = QmpClient::connect(fake.path(), T).await.unwrap();
        let err = client.execute_raw("quit", None).await.unwrap_err();
        assert!(matches!(err, QmpError::Disconnected(_)), "{err}");
        assert!(client.is_closed());
        let err = client.execute_raw("query-status", None).await.unwrap_err();
        assert!(matches!(err, QmpError::Disconnected(_)), "{err}");
    }

    #[tokio::test]
    async fn a_non_qmp_peer_is_rejected() {
        let (a, mut b) = tokio::io::duplex(1024);
        b.write_all(b"SSH-2.0-OpenSSH\n").await.unwrap();
        let err = QmpClient::from_stream(a, T).await.unwrap_err();
        assert!(matches!(err, QmpError::Protocol(_)), "{err}");
    }

    #[tokio::test]
    async fn a_silent_peer_times_out_on_the_greeting() {
        let (a, _b) = tokio::io::duplex(1024);
        let err = QmpClient::from_stream(a, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(err, QmpError::Timeout { ref what, .. } if what.starts_with("greeting")));
    }

    #[tokio::test]
    async fn connecting_to_a_missing_socket_is_an_io_error() {
        let err = QmpClient::connect("/nonexistent/qmp.sock", T)
            .await
            .unwrap_err();
        assert!(matches!(err, QmpError::Io { .. }), "{err}");
    }
}
