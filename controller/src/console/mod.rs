//! The read-only web console, served by `scc` on its API listeners (docs/console.md):
//!
//! | request | does |
//! |---|---|
//! | `GET /console` | the page; on TCP, a sign-in form until the browser holds the session cookie |
//! | `POST /console` (form body `token=TOKEN`) | exchanges the API's bearer token for the session cookie (HttpOnly, SameSite=Strict), then redirects to `/console` |
//! | `GET /console/state` | the console's document ([`view`]) as JSON |
//! | `GET /console/events` | the same document as server-sent events, whenever it changes |
//! | `GET /console/app.js`, `/console/style.css` | the page's script and style |
//!
//! This module owns those routes, the console's session cookie and the bounds of
//! its event streams ([`MAX_WATCHERS`], [`EVENT_EVERY`]); the listener's own
//! limits (its exchange timeout ends every stream; the browser reconnects) are the
//! API's. It only reads what the API answers and never changes state: the one
//! route that takes a body is the sign-in, and the token travels in that body,
//! never in an address (which a browser keeps in its history).

pub mod view;

use crate::daemon::Controller;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

const PAGE: &str = include_str!("assets/index.html");
const LOGIN: &str = include_str!("assets/login.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/style.css");

/// Event streams open at once; one more is refused with 503 (each costs a
/// connection of the listener's 64 and a document build a second).
pub const MAX_WATCHERS: usize = 8;

/// How often a stream looks for a change to send.
pub const EVENT_EVERY: Duration = Duration::from_secs(1);

/// A stream with nothing new sends a comment this often, so proxies keep it.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// How long a built document is reused by every reader (the plan and the
/// measurements take a while at scale).
const FRESH_FOR: Duration = Duration::from_millis(900);

/// Above this many VMs the document leaves out the plan and the per-VM traffic,
/// whose cost grows with the fleet (the page says so).
const DETAIL_UP_TO_VMS: usize = 2000;

/// The session cookie's name.
const COOKIE: &str = "scc_console";

/// The console's shared state: the controller, who may read, and the newest
/// document.
#[derive(Debug)]
struct Console {
    ctl: Arc<Controller>,
    /// The API's bearer token, when the listener has one (TCP).
    token: Option<Arc<String>>,
    /// The cookie value a browser receives for the token: random per `scc` run,
    /// so the token itself never sits in a cookie jar and a restart logs out.
    session: String,
    watchers: Arc<Semaphore>,
    newest: Mutex<Option<(Instant, Arc<String>)>>,
    /// Held while the document is rebuilt: one build at a time, and the readers
    /// that waited for it take its result instead of building again.
    building: tokio::sync::Mutex<()>,
}

type Shared = State<Arc<Console>>;

/// 32 random bytes as hex, from the kernel.
fn random_session() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Compares without an early exit, so the time taken says nothing of how much of
/// a guess was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| kv.trim().strip_prefix(name)?.strip_prefix('='))
}

impl Console {
    /// True when the request may read: no token on this listener, or the session
    /// cookie, or the bearer token.
    fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        bearer.is_some_and(|t| same(t.trim().as_bytes(), token.as_bytes()))
            || cookie(headers, COOKIE).is_some_and(|c| same(c.as_bytes(), self.session.as_bytes()))
    }

    /// The newest document, if younger than [`FRESH_FOR`].
    fn fresh(&self) -> Option<Arc<String>> {
        match &*self.newest.lock().unwrap_or_else(|e| e.into_inner()) {
            Some((at, doc)) if at.elapsed() < FRESH_FOR => Some(doc.clone()),
            _ => None,
        }
    }

    /// The console's document, rebuilt when older than [`FRESH_FOR`], by one
    /// reader at a time whatever the number of readers.
    async fn document(self: &Arc<Self>) -> Arc<String> {
        if let Some(doc) = self.fresh() {
            return doc;
        }
        let _building = self.building.lock().await;
        if let Some(doc) = self.fresh() {
            return doc;
        }
        let ctl = self.ctl.clone();
        // A plan and a snapshot take a while at scale: off the async workers.
        let built = tokio::task::spawn_blocking(move || {
            let status = ctl.status();
            let detailed = status["vms"]
                .as_array()
                .is_some_and(|v| v.len() <= DETAIL_UP_TO_VMS);
            let (measurements, decisions) = if detailed {
                let measured = ctl.placement_snapshot(None).measurements;
                let newest = serde_json::json!({
                    "latency_ms": newest_samples(&measured.latency_ms),
                    "traffic": newest_samples(&measured.traffic),
                });
                let plan = serde_json::to_value(ctl.placement_round(false)).unwrap_or_default();
                (newest, plan["decisions"].clone())
            } else {
                (serde_json::Value::Null, serde_json::Value::Null)
            };
            let mut doc = view::build(&status, &measurements, &decisions);
            doc["detailed"] = detailed.into();
            doc.to_string()
        })
        .await
        .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }).to_string());
        let doc = Arc::new(built);
        *self.newest.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), doc.clone()));
        doc
    }
}

/// Measurement series (`a → b → series`) reduced to their newest sample, in the
/// snapshot's form: the console shows nothing older, and a whole series is
/// thousands of samples.
fn newest_samples(
    series: &std::collections::BTreeMap<
        String,
        std::collections::BTreeMap<String, crate::measure::Series>,
    >,
) -> serde_json::Value {
    series
        .iter()
        .map(|(a, to)| {
            let inner: serde_json::Map<String, serde_json::Value> = to
                .iter()
                .map(|(b, s)| {
                    let samples: Vec<_> = s.last().into_iter().collect();
                    (b.clone(), serde_json::json!({ "samples": samples }))
                })
                .collect();
            (a.clone(), serde_json::Value::Object(inner))
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// Refuses with 401 a data request that is not admitted.
async fn require_session(State(console): Shared, request: Request, next: Next) -> Response {
    if console.admits(request.headers()) {
        return next.run(request).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::CONTENT_TYPE, "application/json")],
        "{\"error\": \"the console needs its session cookie (open /console) or Authorization: Bearer <token>\"}\n",
    )
        .into_response()
}

/// The largest sign-in form accepted: a token and its field name, escaped.
const MAX_SIGN_IN: usize = 4096;

/// `POST /console`: the sign-in form's token (`token=…`, form-encoded) exchanged
/// for the session cookie, then back to the page.
async fn sign_in(State(console): Shared, form: String) -> Response {
    let Some(token) = &console.token else {
        // No token on this listener: there is nothing to sign in to.
        return see_other(None);
    };
    let offered = form.split('&').find_map(|kv| kv.strip_prefix("token="));
    // A token has printable ASCII only; a browser's form escapes some of it.
    let offered = offered.map(percent_decoded).unwrap_or_default();
    if !same(offered.trim().as_bytes(), token.as_bytes()) {
        return login(
            StatusCode::UNAUTHORIZED,
            "That is not this controller's token.",
        );
    }
    see_other(Some(format!(
        "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/console; Max-Age=43200",
        console.session
    )))
}

/// 303 to the page (so a reload does not post the form again), setting `cookie`.
fn see_other(cookie: Option<String>) -> Response {
    let mut answer = (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/console".to_string()),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
    )
        .into_response();
    if let Some(value) = cookie.and_then(|c| header::HeaderValue::from_str(&c).ok()) {
        answer.headers_mut().insert(header::SET_COOKIE, value);
    }
    answer
}

/// `GET /console`: the page, or the sign-in form.
async fn page(State(console): Shared, headers: HeaderMap) -> Response {
    if !console.admits(&headers) {
        return login(StatusCode::OK, "");
    }
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, CSP),
        ],
        Html(PAGE),
    )
        .into_response()
}

/// Everything the page loads comes from `scc` itself; no inline script.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; frame-ancestors 'none'; form-action 'self'";

fn login(status: StatusCode, message: &str) -> Response {
    (
        status,
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, CSP),
        ],
        Html(LOGIN.replace("{{message}}", message)),
    )
        .into_response()
}

/// `%XX` escapes and `+` decoded (as a form sends them); anything malformed is
/// kept as is, so it simply fails the comparison.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn state(State(console): Shared) -> Response {
    let doc = console.document().await;
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        doc.to_string(),
    )
        .into_response()
}

/// What a stream remembers between two looks.
struct Watch {
    console: Arc<Console>,
    sent: Option<Arc<String>>,
    sent_at: Instant,
    _permit: OwnedSemaphorePermit,
}

/// `GET /console/events`: the document at once, then whenever it changes.
async fn events(State(console): Shared) -> Response {
    let Ok(permit) = console.watchers.clone().try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "10")],
            format!("at most {MAX_WATCHERS} consoles watch at once\n"),
        )
            .into_response();
    };
    let watch = Watch {
        console,
        sent: None,
        sent_at: Instant::now(),
        _permit: permit,
    };
    let stream = futures_util::stream::unfold(watch, |mut w| async move {
        loop {
            if w.sent.is_some() {
                tokio::time::sleep(EVENT_EVERY).await;
            }
            let doc = w.console.document().await;
            if w.sent.as_deref() != Some(&*doc) {
                let event = Event::default()
                    .event("state")
                    .retry(Duration::from_secs(2))
                    .data(doc.as_str());
                w.sent = Some(doc);
                w.sent_at = Instant::now();
                return Some((Ok::<_, std::convert::Infallible>(event), w));
            }
            if w.sent_at.elapsed() >= KEEP_ALIVE {
                w.sent_at = Instant::now();
                return Some((Ok(Event::default().comment("unchanged")), w));
            }
        }
    });
    ([(header::CACHE_CONTROL, "no-store")], Sse::new(stream)).into_response()
}

fn asset(kind: &'static str, text: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        text,
    )
        .into_response()
}

/// The console's routes over `ctl`. With `token` (a TCP listener), the data
/// routes need the session cookie `POST /console` sets, or the bearer
/// token; the page itself shows a sign-in form until then, and the script and the
/// style, which hold no data, are served to anyone.
pub fn router(ctl: Arc<Controller>, token: Option<Arc<String>>) -> Router {
    // Without a session secret no cookie could be trusted: the console then
    // admits the bearer token alone.
    let session = random_session().unwrap_or_else(|e| {
        tracing::warn!("console: no session secret ({e}); only the bearer token admits");
        String::new()
    });
    let console = Arc::new(Console {
        ctl,
        token,
        session: if session.is_empty() {
            // Never equal to a cookie: a cookie's value has no spaces.
            " ".into()
        } else {
            session
        },
        watchers: Arc::new(Semaphore::new(MAX_WATCHERS)),
        newest: Mutex::new(None),
        building: tokio::sync::Mutex::new(()),
    });
    let data = Router::new()
        .route("/console/state", get(state))
        .route("/console/events", get(events))
        .layer(middleware::from_fn_with_state(
            console.clone(),
            require_session,
        ));
    Router::new()
        .route(
            "/console",
            get(page)
                .post(sign_in)
                .layer(DefaultBodyLimit::max(MAX_SIGN_IN)),
        )
        .route(
            "/console/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/console/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .merge(data)
        .with_state(console)
}

#[cfg(test)]
mod tests;
