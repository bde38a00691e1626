//! The management socket's server side: binding the socket file (mode 0600,
//! as a `punix:` OpenFlow listener), accepting at most
//! [`MAX_CONTROL_CONNECTIONS`] at once (one more is closed at once), each on a
//! thread of its own that closes after [`IDLE`] without a request, and answering
//! each request line with one reply line.

use super::{open_spec, port_rows, Reply, Request, MAX_LINE};
use crate::ofchannel::listener::{bind_unix, SocketFile};
use crate::switch::SwitchHandle;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// Management connections served at once.
pub const MAX_CONTROL_CONNECTIONS: usize = 8;

/// A connection that sends no request for this long is closed.
const IDLE: Duration = Duration::from_secs(60);

/// The running management socket; its file is removed when this is dropped.
#[derive(Debug)]
pub struct ControlServer {
    _file: SocketFile,
}

/// Binds the management socket at `path` and serves it on a thread of its own.
pub fn serve(path: &Path, handle: SwitchHandle) -> io::Result<ControlServer> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let (listener, file) = bind_unix(path)?;
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            // Its connection threads inherit the control priority.
            crate::scheduling::control_thread();
            accept_loop(&listener, &handle);
        })?;
    Ok(ControlServer { _file: file })
}

fn accept_loop(listener: &UnixListener, handle: &SwitchHandle) {
    let open = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        if open.fetch_add(1, Ordering::SeqCst) >= MAX_CONTROL_CONNECTIONS {
            open.fetch_sub(1, Ordering::SeqCst);
            warn!(
                max = MAX_CONTROL_CONNECTIONS,
                "management connection refused: too many open"
            );
            continue;
        }
        let (open, handle) = (open.clone(), handle.clone());
        let spawned = std::thread::Builder::new()
            .name("control-conn".into())
            .spawn(move || {
                let _ = serve_connection(&stream, &handle);
                open.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            warn!("management connection dropped: no thread");
        }
    }
}

fn serve_connection(stream: &UnixStream, handle: &SwitchHandle) -> io::Result<()> {
    stream.set_read_timeout(Some(IDLE))?;
    let mut reader = BufReader::new(stream);
    let mut writer = stream;
    loop {
        let mut line = String::new();
        let n = (&mut reader).take(MAX_LINE).read_line(&mut line)?;
        if n == 0 {
            return Ok(());
        }
        if !line.ends_with('\n') && n as u64 >= MAX_LINE {
            let reply = Reply::Error {
                error: format!("request longer than {MAX_LINE} bytes"),
            };
            writer.write_all(&encode(&reply))?;
            return Ok(());
        }
        let reply = match serde_json::from_str::<Request>(&line) {
            Ok(request) => answer(request, handle),
            Err(e) => Reply::Error {
                error: format!("not a request: {e}"),
            },
        };
        writer.write_all(&encode(&reply))?;
    }
}

fn encode(reply: &Reply) -> Vec<u8> {
    let mut line = serde_json::to_vec(reply).unwrap_or_else(|_| b"{}".to_vec());
    line.push(b'\n');
    line
}

/// Carries out one request.
pub(super) fn answer(request: Request, handle: &SwitchHandle) -> Reply {
    let done = |r: Result<(), String>| match r {
        Ok(()) => Reply::Ok {
            ports: port_rows(handle),
        },
        Err(error) => Reply::Error { error },
    };
    match request {
        Request::List => done(Ok(())),
        Request::Add(spec) => done(open_spec(&spec).and_then(|new| {
            let bound = new.binding.as_ref().map(|b| b.mac().to_string());
            match handle.add_port(new) {
                Ok(Ok(())) => {
                    info!(port = spec.ofport, name = %spec.name, kind = %spec.kind,
                        bound_to = bound.as_deref().unwrap_or("-"), "port added");
                    Ok(())
                }
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        })),
        Request::Del { ofport, name } => {
            let ports = handle.shared.ports();
            let found = ports.iter().find(|p| {
                ofport.is_none_or(|n| n == p.number) && name.as_deref().is_none_or(|n| n == p.name)
            });
            let result = match (found, ofport.is_none() && name.is_none()) {
                (_, true) => Err("say which port: --ofport or --name".to_string()),
                (None, false) => Err(format!(
                    "no port {}",
                    ofport.map_or_else(|| name.clone().unwrap_or_default(), |n| n.to_string())
                )),
                (Some(p), false) => match handle.remove_port(p.number) {
                    Ok(Ok(())) => {
                        info!(port = p.number, name = %p.name, "port removed");
                        Ok(())
                    }
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(e) => Err(e.to_string()),
                },
            };
            done(result)
        }
    }
}
