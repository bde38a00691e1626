//! The controller's local control API: HTTP/1.1 with JSON bodies, on a local address.
//!
//! | request | does |
//! |---|---|
//! | `GET /status` | clouds, hosts, switch state (connected, synced version, flows), VMs |
//! | `POST /policy?name=FILE` (body: NetKAT text) | compile and apply; 422 with the rendered error if it does not compile |
//! | `GET /vm/NAME` | one VM |
//! | `POST /vm` (body: VM JSON) | add or replace a VM |
//! | `DELETE /vm/NAME` | remove a VM |
//! | `POST /host` (body: host JSON) | add or replace a host |
//! | `DELETE /host/NAME` | remove a host that runs no VM |
//! | `POST /migrate` (body: `{"vm", "to_host", "to_port"}`) | start a migration (make before break) |
//! | `POST /migrate/arrived` | the hypervisor says the VM runs at its destination |
//! | `POST /migrate/abort` | the hypervisor's migration failed: restore the program |
//! | `GET /placement` | the placement engine's decisions from the live measurements |
//! | `POST /placement/run` | the same, then start the best move through `[placement] migrate` |
//! | `GET /placement/snapshot[?vm=NAME]` | the measurements, as a snapshot `scc placement plan --measurements` reads (with `vm`, only that VM's traffic) |
//! | `GET /placement/moves` | the move running and the last ones, with how they ended |
//!
//! This module owns the HTTP framing and the mapping of requests onto `Controller`
//! calls; it never changes state on its own. The matching client lives here too, for
//! the `scc` verbs.

use crate::daemon::{ChangeError, Controller};
use crate::model::Vm;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// Largest request body accepted (a policy file).
pub const MAX_BODY: usize = 4 << 20;

struct Response {
    status: u16,
    body: serde_json::Value,
}

fn reply(status: u16, body: serde_json::Value) -> Response {
    Response { status, body }
}

fn json(value: &impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }))
}

/// Runs `f`, which may take a while, without holding up the runtime's other
/// tasks (on a multi-threaded runtime, the worker hands its tasks over first).
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

fn change(result: Result<u64, ChangeError>) -> Response {
    match result {
        Ok(version) => reply(200, serde_json::json!({ "version": version })),
        Err(e @ ChangeError::Store(_)) => reply(500, serde_json::json!({ "error": e.to_string() })),
        Err(e) => reply(422, serde_json::json!({ "error": e.to_string() })),
    }
}

fn route(ctl: &Arc<Controller>, method: &str, target: &str, body: &[u8]) -> Response {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match (method, path) {
        ("GET", "/status") => reply(200, ctl.status()),
        ("POST", "/policy") => {
            let name = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("name="))
                .unwrap_or("policy");
            match std::str::from_utf8(body) {
                Ok(text) => change(ctl.apply_policy(text, name)),
                Err(_) => reply(
                    400,
                    serde_json::json!({ "error": "the policy is not UTF-8" }),
                ),
            }
        }
        ("POST", "/vm") => match serde_json::from_slice::<Vm>(body) {
            Ok(vm) => change(ctl.add_vm(vm)),
            Err(e) => reply(400, serde_json::json!({ "error": format!("bad VM: {e}") })),
        },
        ("GET", p) if p.starts_with("/vm/") => match ctl.vm(&p[4..]) {
            Some(vm) => reply(200, serde_json::json!(vm)),
            None => reply(
                404,
                serde_json::json!({ "error": format!("no VM `{}`", &p[4..]) }),
            ),
        },
        ("DELETE", p) if p.starts_with("/vm/") => change(ctl.remove_vm(&p[4..])),
        ("POST", "/host") => match serde_json::from_slice::<crate::model::Host>(body) {
            Ok(h) => change(ctl.add_host(h)),
            Err(e) => reply(
                400,
                serde_json::json!({ "error": format!("bad host: {e}") }),
            ),
        },
        ("DELETE", p) if p.starts_with("/host/") => change(ctl.remove_host(&p[6..])),
        ("POST", "/migrate") => match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(v) => match (
                v["vm"].as_str(),
                v["to_host"].as_str(),
                v["to_port"].as_u64().and_then(|p| u32::try_from(p).ok()),
            ) {
                (Some(vm), Some(host), Some(port)) => change(ctl.start_migration(vm, host, port)),
                _ => reply(
                    400,
                    serde_json::json!({ "error": "need vm, to_host and to_port" }),
                ),
            },
            Err(e) => reply(
                400,
                serde_json::json!({ "error": format!("bad request: {e}") }),
            ),
        },
        ("POST", "/migrate/arrived") => change(ctl.arrived(None, "hypervisor")),
        ("POST", "/migrate/abort") => change(ctl.abort_migration()),
        // Planning takes a while at scale: off the async workers.
        ("GET", "/placement") => reply(200, json(&blocking(|| ctl.placement_round(false)))),
        ("POST", "/placement/run") => reply(200, json(&blocking(|| ctl.placement_round(true)))),
        ("GET", "/placement/snapshot") => {
            let vm = query.split('&').find_map(|kv| kv.strip_prefix("vm="));
            reply(200, json(&blocking(|| ctl.placement_snapshot(vm))))
        }
        ("GET", "/placement/moves") => reply(200, ctl.placement_moves()),
        _ => reply(
            404,
            serde_json::json!({ "error": format!("no such endpoint: {method} {path}") }),
        ),
    }
}

/// Serves the API forever.
pub async fn serve(listener: TcpListener, ctl: Arc<Controller>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let ctl = ctl.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            if reader.read_line(&mut line).await.is_err() {
                return;
            }
            let mut parts = line.split_whitespace();
            let (method, target) = (
                parts.next().unwrap_or("").to_string(),
                parts.next().unwrap_or("/").to_string(),
            );
            let mut length = 0usize;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).await.unwrap_or(0) <= 2 {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
            }
            let response = if length > MAX_BODY {
                reply(413, serde_json::json!({ "error": "body too large" }))
            } else {
                let mut body = vec![0u8; length];
                if reader.read_exact(&mut body).await.is_err() {
                    return;
                }
                route(&ctl, &method, &target, &body)
            };
            let text = serde_json::to_string_pretty(&response.body).unwrap_or_default();
            let head = format!(
                "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                response.status,
                if response.status < 400 { "OK" } else { "Error" },
                text.len() + 1
            );
            let mut stream = reader.into_inner();
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(text.as_bytes()).await;
            let _ = stream.write_all(b"\n").await;
        });
    }
}

/// A blocking request to the API, for the CLI: returns status and JSON body.
pub fn request(
    api: SocketAddr,
    method: &str,
    target: &str,
    body: &[u8],
) -> std::io::Result<(u16, serde_json::Value)> {
    let mut s = std::net::TcpStream::connect_timeout(&api, std::time::Duration::from_secs(5))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(60)))?;
    write!(s, "{method} {target} HTTP/1.1\r\nHost: scc\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())?;
    s.write_all(body)?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let json = serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
    Ok((status, json))
}
