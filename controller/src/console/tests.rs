//! The console over a real socket with a token, as a browser meets it: the
//! login form, the token exchanged for the session cookie, the data refused
//! without it, the event stream's first document, and its cap.

use crate::api::LIMITS;
use crate::daemon::Controller;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "0123456789abcdef-console";

async fn started(dir: &std::path::Path) -> (SocketAddr, Arc<Controller>) {
    crate::api::tests::serving(dir, Some(TOKEN.into()), LIMITS).await
}

/// Sends a GET with `headers` and reads the whole answer (the listener closes
/// every connection after one exchange).
async fn get(addr: SocketAddr, target: &str, headers: &str) -> String {
    exchange(
        addr,
        &format!("GET {target} HTTP/1.1\r\nHost: x\r\n{headers}\r\n"),
    )
    .await
}

/// Posts the sign-in form with `token`, as a browser sends it.
async fn sign_in(addr: SocketAddr, token: &str) -> String {
    let body = format!("token={token}");
    exchange(
        addr,
        &format!(
            "POST /console HTTP/1.1\r\nHost: x\r\nContent-Type: \
             application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .await
}

/// Sends `request` and reads the whole answer.
async fn exchange(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_string(&mut answer))
        .await
        .expect("the answer within 30 s")
        .unwrap();
    answer
}

fn status_of(answer: &str) -> &str {
    answer.split(' ').nth(1).unwrap_or_default()
}

/// The session cookie `Set-Cookie` gives, as a `Cookie` header's value.
fn session_cookie(answer: &str) -> String {
    answer
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("no cookie in {answer}"))
        .to_string()
}

#[tokio::test]
async fn the_token_buys_a_cookie_that_reads_the_console_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, _ctl) = started(dir.path()).await;

    let login = get(addr, "/console", "").await;
    assert_eq!(status_of(&login), "200", "{login}");
    assert!(login.contains("name=\"token\""), "a login form: {login}");
    assert!(!login.contains("app.js"), "no console before the token");
    let refused = get(addr, "/console/state", "").await;
    assert_eq!(status_of(&refused), "401", "{refused}");
    assert!(
        login.contains("method=\"post\""),
        "the token travels in a body: {login}"
    );
    let wrong = sign_in(addr, "guess-guess-guess").await;
    assert_eq!(status_of(&wrong), "401", "{wrong}");
    assert!(!wrong.contains("set-cookie"), "{wrong}");
    // A token in the address is not taken: it would stay in the history.
    let in_address = get(addr, &format!("/console?token={TOKEN}"), "").await;
    assert_eq!(status_of(&in_address), "200", "{in_address}");
    assert!(
        in_address.contains("name=\"token\"") && !in_address.contains("set-cookie"),
        "{in_address}"
    );
    let oversized = sign_in(addr, &"x".repeat(super::MAX_SIGN_IN + 1)).await;
    assert_eq!(status_of(&oversized), "413", "{oversized}");

    let exchanged = sign_in(addr, TOKEN).await;
    assert_eq!(status_of(&exchanged), "303", "{exchanged}");
    assert!(exchanged.contains("location: /console\r\n"), "{exchanged}");
    let set = exchanged
        .lines()
        .find(|l| l.starts_with("set-cookie: "))
        .unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(!set.contains(TOKEN), "the cookie is not the token: {set}");
    let cookie = format!("Cookie: {}\r\n", session_cookie(&exchanged));

    let page = get(addr, "/console", &cookie).await;
    assert!(page.contains("/console/app.js"), "{page}");
    let state = get(addr, "/console/state", &cookie).await;
    assert_eq!(status_of(&state), "200", "{state}");
    let body = state.split("\r\n\r\n").nth(1).unwrap();
    let doc: serde_json::Value = serde_json::from_str(body).unwrap();
    assert!(!doc["hosts"].as_array().unwrap().is_empty(), "{doc}");
    assert!(!doc["tunnels"].as_array().unwrap().is_empty(), "{doc}");
    // The bearer token reads it too (curl), the cookie never reaches the API.
    let bearer = format!("Authorization: Bearer {TOKEN}\r\n");
    assert_eq!(
        status_of(&get(addr, "/console/state", &bearer).await),
        "200"
    );
    assert_eq!(status_of(&get(addr, "/status", &cookie).await), "401");
    // The script and the style hold no data: served to anyone.
    assert_eq!(status_of(&get(addr, "/console/app.js", "").await), "200");
}

/// Opens the event stream with `headers` and reads until the first document, or
/// until the server closes (a refusal): what was read, and the open stream.
async fn first_event(addr: SocketAddr, headers: &str) -> (String, Option<TcpStream>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET /console/events HTTP/1.1\r\nHost: x\r\n{headers}\r\n");
    s.write_all(request.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let open = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let n = s.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                return false;
            }
            seen.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&seen);
            if text.contains("event: state") && text.contains("}\n\n") {
                return true;
            }
        }
    })
    .await
    .expect("an answer within 30 s");
    let text = String::from_utf8_lossy(&seen).into_owned();
    (text, open.then_some(s))
}

#[tokio::test]
async fn the_event_stream_sends_the_document_at_once_and_refuses_past_its_cap() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, _ctl) = started(dir.path()).await;
    let bearer = format!("Authorization: Bearer {TOKEN}\r\n");
    let mut open = Vec::new();
    for _ in 0..super::MAX_WATCHERS {
        let (seen, stream) = first_event(addr, &bearer).await;
        assert!(seen.contains("text/event-stream"), "{seen}");
        open.push(stream.unwrap_or_else(|| panic!("closed: {seen}")));
    }
    let (refused, stream) = first_event(addr, &bearer).await;
    assert!(
        stream.is_none() && status_of(&refused) == "503",
        "{refused}"
    );
    drop(open);
    // A closed stream gives its place back once the server notices the close
    // (at its next look for a change).
    for _ in 0..300 {
        if let (_, Some(_)) = first_event(addr, &bearer).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no stream within 30 s after the others closed");
}

#[test]
fn a_form_encoded_token_is_decoded() {
    assert_eq!(super::percent_decoded("a%2Bb+c%zz"), "a+b c%zz");
}
