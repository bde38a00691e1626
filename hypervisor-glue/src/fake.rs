//! A scripted fake QMP server on a Unix socket, for unit tests only.
//!
//! Owns a temporary socket path and a task that greets, reads commands and
//! answers what the test's handler says. It must never be compiled outside
//! tests, and never pretend to be more than a script (no QEMU semantics).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

/// What the fake sends in answer to one command, in order.
#[derive(Debug, Clone)]
pub enum Out {
    /// A reply object (`{"return": ..}` or `{"error": ..}`); the id is added.
    Reply(Value),
    /// An event with this name and data.
    Event(&'static str, Value),
    /// Wait before the next item.
    Delay(Duration),
    /// Close the connection.
    Close,
}

impl Out {
    pub fn ret(v: Value) -> Out {
        Out::Reply(json!({ "return": v }))
    }
    pub fn err(class: &str, desc: &str) -> Out {
        Out::Reply(json!({ "error": { "class": class, "desc": desc } }))
    }
    pub fn event(name: &'static str, data: Value) -> Out {
        Out::Event(name, data)
    }
}

type Handler = Box<dyn FnMut(&str, &Value) -> Vec<Out> + Send>;

/// The fake server; dropping it stops accepting and removes the socket.
pub struct FakeQmp {
    path: PathBuf,
    log: Arc<Mutex<Vec<(String, Value)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FakeQmp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeQmp").field("path", &self.path).finish()
    }
}

static NEXT: AtomicU64 = AtomicU64::new(0);

impl FakeQmp {
    /// Starts the server; `handler(command, arguments)` scripts each answer.
    pub fn start<F>(handler: F) -> FakeQmp
    where
        F: FnMut(&str, &Value) -> Vec<Out> + Send + 'static,
    {
        let path = std::env::temp_dir().join(format!(
            "hvglue-fake-{}-{}.sock",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).expect("bind fake QMP socket");
        let log = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<tokio::sync::Mutex<Handler>> =
            Arc::new(tokio::sync::Mutex::new(Box::new(handler)));
        let log2 = Arc::clone(&log);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let handler = Arc::clone(&handler);
                let log = Arc::clone(&log2);
                tokio::spawn(async move {
                    let _ = serve(stream, handler, log).await;
                });
            }
        });
        FakeQmp { path, log, task }
    }

    /// A server that answers `{}` to everything but `command`, on which it
    /// closes the connection (QEMU quitting, or crashing mid-migration).
    pub fn closing_on(command: &'static str) -> FakeQmp {
        FakeQmp::start(move |cmd, _| {
            if cmd == command {
                vec![Out::Close]
            } else {
                vec![Out::ret(json!({}))]
            }
        })
    }

    /// The socket path to connect to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every command received so far, with its arguments (`null` when none).
    pub fn commands(&self) -> Vec<(String, Value)> {
        self.log.lock().expect("fake log").clone()
    }

    /// Just the command names received so far.
    pub fn names(&self) -> Vec<String> {
        self.commands().into_iter().map(|(n, _)| n).collect()
    }
}

impl Drop for FakeQmp {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn serve(
    stream: tokio::net::UnixStream,
    handler: Arc<tokio::sync::Mutex<Handler>>,
    log: Arc<Mutex<Vec<(String, Value)>>>,
) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let greeting = json!({"QMP": {"version": {"qemu": {"major": 10, "minor": 0, "micro": 2},
        "package": "fake"}, "capabilities": ["oob"]}});
    w.write_all(format!("{greeting}\r\n").as_bytes()).await?;
    let mut lines = BufReader::new(r).lines();
    while let Some(line) = lines.next_line().await? {
        let Ok(msg) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let name = msg["execute"].as_str().unwrap_or_default().to_owned();
        let args = msg.get("arguments").cloned().unwrap_or(Value::Null);
        let id = msg.get("id").cloned();
        log.lock()
            .expect("fake log")
            .push((name.clone(), args.clone()));
        let outs = (handler.lock().await)(&name, &args);
        for out in outs {
            match out {
                Out::Reply(mut v) => {
                    if let (Some(id), Some(obj)) = (&id, v.as_object_mut()) {
                        obj.insert("id".into(), id.clone());
                    }
                    w.write_all(format!("{v}\r\n").as_bytes()).await?;
                }
                Out::Event(ev, data) => {
                    let v = json!({"event": ev, "data": data,
                        "timestamp": {"seconds": 1_700_000_000, "microseconds": 1}});
                    w.write_all(format!("{v}\r\n").as_bytes()).await?;
                }
                Out::Delay(d) => tokio::time::sleep(d).await,
                Out::Close => return Ok(()),
            }
        }
    }
    Ok(())
}

/// Migration options for scripted sources: short timeouts and fast polls.
pub fn fast_options() -> crate::migration::MigrationOptions {
    crate::migration::MigrationOptions {
        timeout: Duration::from_secs(3),
        poll_interval: Duration::from_millis(10),
        recovery_timeout: Duration::from_secs(2),
        ..Default::default()
    }
}
