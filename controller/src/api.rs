//! The controller's control API: HTTP/1.1 with JSON bodies, on a Unix socket
//! (mode 0600: only `scc`'s user) and, when the inventory asks, on TCP, where
//! every request must carry the bearer token of `api_token_file` (401 otherwise;
//! `access`).
//!
//! | request | does |
//! |---|---|
//! | `GET /status[?vms=false]` | clouds, hosts, switch state (connected, synced version, flows, audits, repairs), VMs (left out with `vms=false`) |
//! | `GET /metrics` | Prometheus metrics (OpenMetrics text): per switch, connected, audits, repairs (`crate::metrics`) |
//! | `POST /policy?name=FILE[&dry_run=true][&force=true]` (body: the NetKAT text as a JSON string) | compile and apply: `{"version", "switches": [{"host", "datapath_id", "added", "changed", "removed"}], "reach": {"pairs", "before", "after", "newly_cut_off": [[src, dst]]}}`, the flows each switch gains, changes and loses in `ovs-ofctl` text and which VMs reach each other (`reach` null above 256 VMs); with `dry_run=true` nothing is applied and `"dry_run": true` replaces the version; 422 with the rendered error if it does not compile, or if it cuts every VM off from every other without `force=true` |
//! | `GET /vm/NAME` | one VM |
//! | `POST /vm` (body: VM JSON) | add or replace a VM |
//! | `DELETE /vm/NAME` | remove a VM |
//! | `GET /inventory/export` | `{"version", "text"}`: the inventory in force as an inventory file |
//! | `POST /host` (body: host JSON) | add or replace a host |
//! | `DELETE /host/NAME` | remove a host that runs no VM |
//! | `POST /migrate` (body: `{"vm", "to_host", "to_port"}`) | start a migration (make before break) |
//! | `POST /migrate/progress[?vm=NAME]` (body: `hypervisor_glue::storage::Progress`) | the hypervisor's copy so far, shown by `scc status`; refused for another VM than the migrating one |
//! | `POST /migrate/arrived` | the hypervisor says the VM runs at its destination |
//! | `POST /migrate/abort` | the hypervisor's migration failed: restore the program |
//! | `GET /placement` | the placement engine's decisions from the live measurements |
//! | `POST /placement/run` | the same, then start the best move through `[placement] migrate` |
//! | `GET /placement/snapshot[?vm=NAME]` | the measurements, as a snapshot `scc placement plan --measurements` reads (with `vm`, only that VM's traffic) |
//! | `GET /placement/moves` | the move running and the last ones, with how they ended |
//! | `GET /console`, `/console/…` | the read-only web console (`crate::console`, docs/console.md) |
//!
//! Every request but GET and HEAD must say `Content-Type: application/json` (415
//! otherwise), which no cross-origin form can send. The listener's limits are
//! [`LIMITS`] and [`MAX_BODY`] (docs/controller.md).
//!
//! This module owns the routes and the mapping of requests onto `Controller` calls
//! (on axum; the connection handling is `bounded_http`'s); it never changes state
//! on its own. The matching client lives here too, for the `scc` verbs.

use crate::daemon::{ChangeError, Controller};
use crate::model::{Host, Vm};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, RawQuery, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bounded_http::{Endpoint, Limits, Listener};
use std::sync::Arc;

pub mod access;
use std::time::Duration;

/// Largest request body accepted (a policy file); 413 past it.
pub const MAX_BODY: usize = 4 << 20;

/// What the API listener tolerates: at most 64 clients at once (64 bodies of
/// [`MAX_BODY`] is 256 MiB at worst), 16 KiB of request line and headers, the
/// headers within 10 s, the whole exchange within 120 s (a placement round at
/// scale takes a while).
pub const LIMITS: Limits = Limits {
    max_connections: 64,
    max_head_bytes: 16 << 10,
    header_timeout: Duration::from_secs(10),
    exchange_timeout: Duration::from_secs(120),
};

/// How long the CLI waits for an answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

type Ctl = State<Arc<Controller>>;

/// A JSON answer, pretty-printed for people reading it with curl.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    body: serde_json::Value,
}

fn reply(status: StatusCode, body: serde_json::Value) -> Reply {
    Reply { status, body }
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Reply {
    reply(status, serde_json::json!({ "error": message.to_string() }))
}

fn ok(value: &impl serde::Serialize) -> Reply {
    reply(
        StatusCode::OK,
        serde_json::to_value(value)
            .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() })),
    )
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut text = serde_json::to_string_pretty(&self.body).unwrap_or_default();
        text.push('\n');
        (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            text,
        )
            .into_response()
    }
}

/// A request body within [`MAX_BODY`]; a refused one answers in the API's JSON.
struct Body(Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = Reply;

    async fn from_request(req: Request, state: &S) -> Result<Self, Reply> {
        // Said up front: refused before a byte of it is read.
        let announced = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if announced.is_some_and(|n| n > MAX_BODY as u64) {
            return Err(error(StatusCode::PAYLOAD_TOO_LARGE, "body too large"));
        }
        match Bytes::from_request(req, state).await {
            Ok(bytes) => Ok(Body(bytes)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(error(e.status(), "body too large"))
            }
            Err(e) => Err(error(e.status(), e.body_text())),
        }
    }
}

/// The body as a `T`; a 400 saying `what` is wrong with it otherwise.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, Reply> {
    serde_json::from_slice(body).map_err(|e| error(StatusCode::BAD_REQUEST, format!("{what}: {e}")))
}

/// The value of `key` in a query string, as sent.
fn param<'q>(query: &'q Option<String>, key: &str) -> Option<&'q str> {
    query
        .as_deref()?
        .split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

fn change(result: Result<u64, ChangeError>) -> Reply {
    match result {
        Ok(version) => reply(StatusCode::OK, serde_json::json!({ "version": version })),
        // The store lost its quorum or leadership: retry later or elsewhere.
        Err(e @ ChangeError::Store(_)) => error(StatusCode::SERVICE_UNAVAILABLE, e),
        Err(e @ ChangeError::Standby) => error(StatusCode::SERVICE_UNAVAILABLE, e),
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, e),
    }
}

/// Runs `f`, which may take a while (a compile, an fsync), off the runtime's
/// workers; a panic in it answers 500.
async fn off_workers<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Reply> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e))
}

/// Runs the change `f` off the runtime's workers.
async fn changing(f: impl FnOnce() -> Result<u64, ChangeError> + Send + 'static) -> Reply {
    off_workers(f).await.map_or_else(|e| e, change)
}

/// Runs `f`, which may take a while, off the runtime's workers.
async fn blocking<T>(f: impl FnOnce() -> T + Send + 'static) -> Reply
where
    T: serde::Serialize + Send + 'static,
{
    off_workers(f).await.map_or_else(|e| e, |value| ok(&value))
}

/// Megabytes at 100,000 VMs: built and printed off the workers that run the
/// switch sessions; `?vms=false` leaves the VM list out, for pollers.
async fn status(State(ctl): Ctl, RawQuery(query): RawQuery) -> Response {
    let vms = param(&query, "vms") != Some("false");
    off_workers(move || {
        let status = match vms {
            true => ctl.status(),
            false => ctl.status_without_vms().0,
        };
        reply(StatusCode::OK, status).into_response()
    })
    .await
    .unwrap_or_else(IntoResponse::into_response)
}

async fn metrics(State(ctl): Ctl) -> Response {
    let text = crate::metrics::render(&ctl.switch_report(), &ctl.switch_refusals());
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, crate::metrics::OPENMETRICS)],
        text,
    )
        .into_response()
}

async fn policy(
    State(ctl): Ctl,
    RawQuery(query): RawQuery,
    Body(body): Body,
) -> Result<Reply, Reply> {
    let name = param(&query, "name").unwrap_or("policy").to_string();
    let text: String = parse(&body, "the policy must be a JSON string")?;
    let refused = |e: ChangeError| match e {
        ChangeError::Store(_) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        e => error(StatusCode::UNPROCESSABLE_ENTITY, e),
    };
    if param(&query, "dry_run") == Some("true") {
        let change = off_workers(move || ctl.preview_policy(&text, &name))
            .await?
            .map_err(refused)?;
        let mut answer = serde_json::json!(change);
        answer["dry_run"] = true.into();
        return Ok(ok(&answer));
    }
    let force = param(&query, "force") == Some("true");
    let (version, change) = off_workers(move || ctl.apply_policy_showing(&text, &name, force))
        .await?
        .map_err(refused)?;
    let mut answer = serde_json::json!(change);
    answer["version"] = version.into();
    Ok(ok(&answer))
}

/// `GET /inventory/export`: the inventory in force as an inventory file.
async fn export_inventory(State(ctl): Ctl) -> Reply {
    let version = ctl.versions().borrow().version;
    let header = format!(
        "The live inventory of scc at program version {version} (`scc inventory export`).\n\
         `scc inventory import` or `scc run --inventory` read it back (docs/inventory.md)."
    );
    ok(&serde_json::json!({ "version": version, "text": ctl.inventory().to_file(&header) }))
}

/// `POST /inventory/import?name=FILE[&apply=true]` with the inventory's TOML as
/// a JSON string: the difference from the inventory in force, applied only with
/// `apply=true`.
async fn import_inventory(
    State(ctl): Ctl,
    RawQuery(query): RawQuery,
    Body(body): Body,
) -> Result<Reply, Reply> {
    let name = param(&query, "name").unwrap_or("inventory");
    let apply = param(&query, "apply") == Some("true");
    let text: String = parse(&body, "the inventory must be a JSON string")?;
    let inventory = crate::model::Inventory::parse(&text, name)
        .map_err(|e| error(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    Ok(
        match off_workers(move || ctl.import_inventory(inventory, apply)).await? {
            Ok((diff, version)) => reply(
                StatusCode::OK,
                serde_json::json!({
                    "difference": diff,
                    "text": diff.to_string(),
                    "same": diff.is_empty(),
                    "applied": version.is_some(),
                    "version": version,
                }),
            ),
            Err(e) => change(Err(e)),
        },
    )
}

async fn show_vm(State(ctl): Ctl, Path(name): Path<String>) -> Reply {
    match ctl.vm(&name) {
        Some(vm) => ok(&ctl.inventory().vm_json(&vm)),
        None => error(StatusCode::NOT_FOUND, format!("no VM `{name}`")),
    }
}

async fn add_vm(State(ctl): Ctl, Body(body): Body) -> Result<Reply, Reply> {
    let vm = parse::<Vm>(&body, "bad VM")?;
    Ok(changing(move || ctl.add_vm(vm)).await)
}

async fn remove_vm(State(ctl): Ctl, Path(name): Path<String>) -> Reply {
    changing(move || ctl.remove_vm(&name)).await
}

async fn add_host(State(ctl): Ctl, Body(body): Body) -> Result<Reply, Reply> {
    let host = parse::<Host>(&body, "bad host")?;
    Ok(changing(move || ctl.add_host(host)).await)
}

async fn remove_host(State(ctl): Ctl, Path(name): Path<String>) -> Reply {
    changing(move || ctl.remove_host(&name)).await
}

async fn migrate(State(ctl): Ctl, Body(body): Body) -> Result<Reply, Reply> {
    let v: serde_json::Value = parse(&body, "bad request")?;
    Ok(
        match (
            v["vm"].as_str(),
            v["to_host"].as_str(),
            v["to_port"].as_u64().and_then(|p| u32::try_from(p).ok()),
        ) {
            // The controller adds a missing destination port unless the
            // operator manages ports by hand (`"manage_ports": false`).
            (Some(vm), Some(host), Some(port)) if v["manage_ports"].as_bool() != Some(false) => {
                let tap = v["tap"].as_str().map(str::to_string);
                let remove_source = v["remove_source_port"].as_bool() == Some(true);
                change(
                    ctl.start_migration_managing_ports(vm, host, port, tap, remove_source)
                        .await,
                )
            }
            (Some(vm), Some(host), Some(port)) => {
                let (vm, host) = (vm.to_string(), host.to_string());
                changing(move || ctl.start_migration(&vm, &host, port)).await
            }
            _ => error(StatusCode::BAD_REQUEST, "need vm, to_host and to_port"),
        },
    )
}

async fn progress(
    State(ctl): Ctl,
    RawQuery(query): RawQuery,
    Body(body): Body,
) -> Result<Reply, Reply> {
    let progress = parse(&body, "bad progress")?;
    Ok(match ctl.copy_progress(progress, param(&query, "vm")) {
        Ok(()) => reply(StatusCode::OK, serde_json::json!({ "ok": true })),
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, e),
    })
}

async fn arrived(State(ctl): Ctl) -> Reply {
    changing(move || ctl.arrived(None, "hypervisor")).await
}

async fn abort(State(ctl): Ctl) -> Reply {
    changing(move || ctl.abort_migration()).await
}

// Planning takes a while at scale: off the async workers.
async fn placement(State(ctl): Ctl) -> Reply {
    blocking(move || ctl.placement_round(false)).await
}

async fn placement_run(State(ctl): Ctl) -> Reply {
    blocking(move || ctl.placement_round(true)).await
}

async fn placement_snapshot(State(ctl): Ctl, RawQuery(query): RawQuery) -> Reply {
    let vm = param(&query, "vm").map(str::to_string);
    blocking(move || ctl.placement_snapshot(vm.as_deref())).await
}

async fn placement_moves(State(ctl): Ctl) -> Reply {
    reply(StatusCode::OK, ctl.placement_moves())
}

async fn no_such_endpoint(method: Method, uri: axum::http::Uri) -> Reply {
    error(
        StatusCode::NOT_FOUND,
        format!("no such endpoint: {method} {}", uri.path()),
    )
}

/// Refuses a request that may change state unless it is labelled JSON: a
/// browser sends that label cross-origin only after asking, and we never say yes.
async fn require_json(request: Request, next: Next) -> Response {
    let read_only = matches!(*request.method(), Method::GET | Method::HEAD);
    let json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if read_only || json {
        next.run(request).await
    } else {
        error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("{} needs Content-Type: application/json", request.method()),
        )
        .into_response()
    }
}

/// The API's routes over `ctl`.
pub fn router(ctl: Arc<Controller>) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/policy", post(policy))
        .route("/vm", post(add_vm))
        .route("/vm/{*name}", get(show_vm).delete(remove_vm))
        .route("/inventory/import", post(import_inventory))
        .route("/inventory/export", get(export_inventory))
        .route("/host", post(add_host))
        .route("/host/{*name}", axum::routing::delete(remove_host))
        .route("/migrate", post(migrate))
        .route("/migrate/progress", post(progress))
        .route("/migrate/arrived", post(arrived))
        .route("/migrate/abort", post(abort))
        .route("/placement", get(placement))
        .route("/placement/run", post(placement_run))
        .route("/placement/snapshot", get(placement_snapshot))
        .route("/placement/moves", get(placement_moves))
        .fallback(no_such_endpoint)
        .method_not_allowed_fallback(no_such_endpoint)
        .layer(middleware::from_fn(require_json))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(ctl)
}

/// Serves the API on `listener` forever, within [`LIMITS`]; with a token, only
/// to requests that carry it (`Authorization: Bearer TOKEN`).
pub async fn serve(listener: impl Listener, ctl: Arc<Controller>, token: Option<String>) {
    serve_within(listener, ctl, token, LIMITS).await
}

/// Serves the API on `listener` forever, within `limits`; with a token, only to
/// requests that carry it.
pub async fn serve_within(
    listener: impl Listener,
    ctl: Arc<Controller>,
    token: Option<String>,
    limits: Limits,
) {
    let token = token.map(Arc::new);
    let mut routes = router(ctl.clone());
    if let Some(token) = &token {
        routes = routes.layer(middleware::from_fn_with_state(
            token.clone(),
            access::require_token,
        ));
    }
    // The console admits a browser by its session cookie as well as by the token.
    let routes = crate::console::router(ctl, token).merge(routes);
    let service = hyper_util::service::TowerToHyperService::new(routes);
    bounded_http::serve(listener, service, limits).await
}

/// A blocking request to the API at `api` (with `token` as bearer token, for
/// TCP), for the CLI: returns status and JSON body (`null` when the body is not
/// JSON).
pub fn request(
    api: &Endpoint,
    token: Option<&str>,
    method: &str,
    target: &str,
    body: &[u8],
) -> Result<(u16, serde_json::Value), bounded_http::ClientError> {
    use bounded_http::client;
    let answer = client::blocking(client::request_to(
        api,
        token,
        method,
        target,
        body,
        CLIENT_TIMEOUT,
    ))?;
    let json = serde_json::from_slice(&answer.body).unwrap_or(serde_json::Value::Null);
    Ok((answer.status, json))
}

#[cfg(test)]
pub(crate) mod tests;
