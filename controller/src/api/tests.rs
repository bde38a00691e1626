//! The API over a real socket: its routes, and its limits tried as a careless or
//! hostile client would (an oversized body, a cross-origin form's `text/plain`,
//! idle connections past the cap).

use super::*;
use crate::model::Inventory;
use crate::store::{Persisted, Store};
use bounded_http::client::Answer;
use std::net::SocketAddr;
use std::time::Instant;
use tokio::io::AsyncWriteExt;

/// A controller over the example inventory, its API on a loopback port.
async fn started(dir: &std::path::Path, limits: Limits) -> (SocketAddr, Arc<Controller>) {
    serving(dir, None, limits).await
}

/// A controller over the example inventory, its API on a loopback port, with
/// `token` when given.
pub(crate) async fn serving(
    dir: &std::path::Path,
    token: Option<String>,
    limits: Limits,
) -> (SocketAddr, Arc<Controller>) {
    let inventory = Inventory::parse(
        include_str!("../../../docs/examples/inventory.toml"),
        "inventory.toml",
    )
    .unwrap();
    let ctl = Controller::new(
        Persisted::first(inventory, "id".into(), "start.kat".into()),
        Store::new(&dir.join("state.json")),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_within(listener, ctl.clone(), token, limits));
    (addr, ctl)
}

async fn call(
    addr: SocketAddr,
    method: &str,
    target: &str,
    body: &[u8],
) -> (u16, serde_json::Value) {
    let a: Answer =
        bounded_http::client::request(addr, method, target, body, Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("{method} {target}: {e}"));
    let json = serde_json::from_slice(&a.body).unwrap_or_else(|e| panic!("{e}: {}", a.text()));
    (a.status, json)
}

fn policy_name(ctl: &Controller) -> serde_json::Value {
    ctl.status()["policy"].clone()
}

#[tokio::test]
async fn the_routes_answer_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let (api, ctl) = started(dir.path(), LIMITS).await;
    let vm_name = ctl.inventory().vms.keys().next().cloned().unwrap();

    let (code, status) = call(api, "GET", "/status", b"").await;
    assert_eq!(
        (code, &status["policy"]),
        (200, &serde_json::json!("start.kat"))
    );
    let (code, vm) = call(api, "GET", &format!("/vm/{vm_name}"), b"").await;
    assert_eq!((code, vm["name"].as_str()), (200, Some(vm_name.as_str())));
    for (method, target, body, code, says) in [
        ("GET", "/vm/nobody", "", 404, "no VM `nobody`"),
        ("GET", "/nowhere", "", 404, "no such endpoint: GET /nowhere"),
        // A known path with another method is no endpoint either.
        ("DELETE", "/status", "", 404, "no such endpoint: DELETE"),
        ("POST", "/vm", "{", 400, "bad VM"),
        ("POST", "/host", "{}", 400, "bad host"),
        ("POST", "/migrate", "{}", 400, "need vm, to_host and"),
        ("POST", "/migrate/abort", "", 422, ""),
        ("POST", "/migrate/progress", "{}", 400, "bad progress"),
        (
            "POST",
            "/migrate/progress",
            r#"{"phase": "disk", "disk_copied": 1, "disk_total": 2, "disk_rate": 1,
                "ram_transferred": 0, "ram_remaining": 0, "ram_total": 0, "ram_mbps": 0,
                "dirty_pages_rate": 0, "expected_downtime_ms": null, "elapsed_ms": 5}"#,
            422,
            "no migration in progress",
        ),
        ("POST", "/policy?name=bad", "\"filter !\"", 422, "bad:1:"),
        // The policy travels as a JSON string.
        ("POST", "/policy?name=raw.kat", "id", 400, "JSON string"),
    ] {
        let (got, e) = call(api, method, target, body.as_bytes()).await;
        let error = e["error"].as_str().unwrap_or_default();
        assert!(
            got == code && error.contains(says),
            "{method} {target}: {got} {e}"
        );
    }
    let good = serde_json::to_vec("id").unwrap();
    let (code, v) = call(api, "POST", "/policy?name=next.kat", &good).await;
    assert!(code == 200 && v["version"].as_u64() == Some(2), "{v}");
    assert_eq!(policy_name(&ctl), "next.kat");

    let (code, _) = call(api, "DELETE", &format!("/vm/{vm_name}"), b"").await;
    assert_eq!(code, 200);
    assert!(ctl.vm(&vm_name).is_none());
    let (code, moves) = call(api, "GET", "/placement/moves", b"").await;
    assert_eq!((code, moves), (200, ctl.placement_moves()));
    let (code, round) = call(api, "GET", "/placement", b"").await;
    assert!(code == 200 && round["decisions"].is_array(), "{round}");
}

#[tokio::test]
async fn metrics_count_each_switch_s_repairs() {
    let dir = tempfile::tempdir().unwrap();
    let (api, ctl) = started(dir.path(), LIMITS).await;
    let dpid = ctl.inventory().hosts[0].datapath_id;
    let host = ctl.inventory().hosts[0].name.clone();
    ctl.update_switch(dpid, |s| s.repairs = 2);
    let a = bounded_http::client::request(api, "GET", "/metrics", b"", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(a.status, 200);
    let text = a.text();
    let line = format!("scc_switch_repairs_total{{switch=\"{host}\"}} 2");
    assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
    assert_eq!(ctl.status()["repairs"], 2, "the total in scc status");
}

#[tokio::test]
async fn an_oversized_body_gets_413_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (api, ctl) = started(dir.path(), LIMITS).await;
    let huge = serde_json::to_vec(&"x".repeat(MAX_BODY)).unwrap();
    // Said up front, so the server answers before it reads the body.
    let mut s = tokio::net::TcpStream::connect(api).await.unwrap();
    let head = format!(
        "POST /policy?name=huge.kat HTTP/1.1\r\nHost: scc\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        huge.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::io::AsyncReadExt::read(&mut s, &mut answer)
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("body too large"), "{answer}");
    drop(s);
    // Sent whole, as the CLI does (the server may close before it has read it all).
    let sent =
        bounded_http::client::request(api, "POST", "/policy", &huge, Duration::from_secs(30)).await;
    match sent {
        Ok(a) => assert_eq!(a.status, 413, "{}", a.text()),
        // The server closed while the rest was on its way: refused all the same.
        Err(bounded_http::ClientError::Http(e)) => eprintln!("refused mid-body: {e}"),
        Err(e) => panic!("{e}"),
    }
    assert_eq!(call(api, "GET", "/status", b"").await.0, 200);
    assert_eq!(policy_name(&ctl), "start.kat");
}

#[tokio::test]
async fn a_text_plain_post_gets_415_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (api, ctl) = started(dir.path(), LIMITS).await;
    let version = ctl.status()["version"].clone();
    // What a cross-origin form may send without asking first.
    let mut s = tokio::net::TcpStream::connect(api).await.unwrap();
    let body = serde_json::to_vec("id").unwrap();
    let head = format!(
        "POST /policy?name=evil.kat HTTP/1.1\r\nHost: scc\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body).await.unwrap();
    let mut answer = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut s, &mut answer)
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 415"), "{answer}");
    assert_eq!(policy_name(&ctl), "start.kat");
    assert_eq!(ctl.status()["version"], version);
}

#[tokio::test]
async fn idle_connections_past_the_cap_leave_it_serving_once_they_close() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_connections: 8,
        ..LIMITS
    };
    let (api, _ctl) = started(dir.path(), limits).await;
    let mut idle = Vec::new();
    for _ in 0..3 * limits.max_connections {
        idle.push(tokio::net::TcpStream::connect(api).await.unwrap());
    }
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match bounded_http::client::request(api, "GET", "/status", b"", Duration::from_secs(5))
            .await
        {
            Ok(a) if a.status == 200 => break,
            other => assert!(Instant::now() < deadline, "not serving again: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_inventory_import_shows_the_difference_and_applies_it_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let (api, ctl) = started(dir.path(), LIMITS).await;
    let text = include_str!("../../../docs/examples/inventory.toml")
        .replace(
            "ip = \"100.64.2.1\"\nhost = \"host-b\"",
            "ip = \"100.64.2.1\"\nhost = \"host-c\"",
        )
        .replace(
            "port = 1\ntenant = \"blue\"\n\n[[vm]]\nname = \"batch1\"",
            "port = 5\ntenant = \"blue\"\n\n[[vm]]\nname = \"batch1\"",
        );
    let body = serde_json::to_vec(&text).unwrap();
    let version = ctl.status()["version"].clone();

    let (code, shown) = call(api, "POST", "/inventory/import?name=new.toml", &body).await;
    assert_eq!(code, 200, "{shown}");
    assert_eq!(shown["applied"], false);
    assert_eq!(
        shown["text"],
        "> vm db1 moves from host-b port 1 to host-c port 5\n"
    );
    assert_eq!(ctl.status()["version"], version, "nothing changed");
    assert_eq!(ctl.vm("db1").unwrap().host, "host-b");

    let target = "/inventory/import?name=new.toml&apply=true";
    let (code, applied) = call(api, "POST", target, &body).await;
    assert_eq!(
        (code, &applied["applied"]),
        (200, &serde_json::json!(true)),
        "{applied}"
    );
    assert_eq!(ctl.vm("db1").unwrap().host, "host-c");
    let (code, again) = call(api, "POST", target, &body).await;
    assert_eq!(
        (code, &again["same"]),
        (200, &serde_json::json!(true)),
        "{again}"
    );

    let (code, bad) = call(api, "POST", target, b"\"overlay_prefix = 3\"").await;
    assert!(
        code == 422
            && bad["error"]
                .as_str()
                .unwrap_or_default()
                .contains("new.toml"),
        "{bad}"
    );
}

const TOKEN: &str = "0123456789abcdef-secret";

#[tokio::test]
async fn on_tcp_only_requests_with_the_token_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let (_, ctl) = started(dir.path(), LIMITS).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = Endpoint::Tcp(listener.local_addr().unwrap());
    tokio::spawn(serve(listener, ctl.clone(), Some(TOKEN.to_string())));
    let ask = |token: Option<&'static str>, method: &'static str, target: &'static str| {
        let api = api.clone();
        async move {
            let body = serde_json::to_vec("id").unwrap();
            bounded_http::client::request_to(
                &api,
                token,
                method,
                target,
                &body,
                Duration::from_secs(30),
            )
            .await
            .unwrap()
        }
    };
    let version = ctl.status()["version"].clone();
    for token in [None, Some("0123456789abcdef-wrong!"), Some("")] {
        let a = ask(token, "POST", "/policy?name=evil.kat").await;
        assert_eq!(a.status, 401, "{token:?}: {}", a.text());
        let a = ask(token, "GET", "/status").await;
        assert_eq!(a.status, 401, "{token:?}: {}", a.text());
    }
    assert_eq!(policy_name(&ctl), "start.kat");
    assert_eq!(ctl.status()["version"], version);
    assert_eq!(ask(Some(TOKEN), "GET", "/status").await.status, 200);
    let a = ask(Some(TOKEN), "POST", "/policy?name=good.kat").await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(policy_name(&ctl), "good.kat");
}

#[tokio::test]
async fn the_unix_socket_is_its_owners_alone_and_serves_without_a_token() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (_, ctl) = started(dir.path(), LIMITS).await;
    let path = dir.path().join("run/api.sock");
    let listener = access::bind_unix(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let parent = std::fs::metadata(path.parent().unwrap()).unwrap();
    assert_eq!(parent.permissions().mode() & 0o777, 0o700);
    tokio::spawn(serve(listener, ctl, None));
    let api = Endpoint::Unix(path.clone());
    let a = bounded_http::client::request_to(
        &api,
        None,
        "GET",
        "/status",
        b"",
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    assert_eq!(a.status, 200, "{}", a.text());
    // A second scc on the same path is refused; a socket nobody listens on is
    // replaced.
    assert!(matches!(
        access::bind_unix(&path),
        Err(access::AccessError::PathTaken(_))
    ));
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(access::bind_unix(&stale).is_ok());
}

#[test]
fn a_token_file_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("api.token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    for mode in [0o644, 0o640, 0o604] {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        assert!(matches!(
            access::read_token(&file),
            Err(access::AccessError::TokenFileOpen(_))
        ));
    }
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(access::read_token(&file).unwrap(), TOKEN);
    std::fs::write(&file, "short\n").unwrap();
    assert!(matches!(
        access::read_token(&file),
        Err(access::AccessError::BadToken(_))
    ));
}

/// The field paths documented in docs/json.md's section `heading`, split at
/// `.` and `[]` (`hosts[].name` is `["hosts", "[]", "name"]`).
fn documented_fields(heading: &str) -> Vec<Vec<String>> {
    let doc = include_str!("../../../docs/json.md");
    let start = doc
        .find(&format!("### {heading}\n"))
        .unwrap_or_else(|| panic!("docs/json.md has no section `### {heading}`"));
    let section = &doc[start..];
    let section = &section[..section[4..].find("\n#").map_or(section.len(), |e| e + 4)];
    let fields: Vec<Vec<String>> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `")?.split('`').next())
        .map(|path| {
            path.replace("[]", ".[]")
                .split('.')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .collect();
    assert!(!fields.is_empty(), "section `{heading}` documents no field");
    fields
}

/// Checks that `value` has exactly the documented keys at every level the
/// documentation breaks down.
fn matches_documented(value: &serde_json::Value, fields: &[Vec<String>], at: &str) {
    let heads: std::collections::BTreeSet<&str> = fields
        .iter()
        .filter_map(|f| f.first())
        .map(String::as_str)
        .collect();
    if heads.is_empty() || value.is_null() {
        return;
    }
    let tails = |head: &str| -> Vec<Vec<String>> {
        fields
            .iter()
            .filter(|f| f.len() > 1 && f[0] == head)
            .map(|f| f[1..].to_vec())
            .collect()
    };
    if heads == ["[]"].into() {
        let elements = value
            .as_array()
            .unwrap_or_else(|| panic!("{at}: not an array: {value}"));
        assert!(!elements.is_empty(), "{at}: an empty array proves nothing");
        for e in elements {
            matches_documented(e, &tails("[]"), &format!("{at}[]"));
        }
        return;
    }
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("{at}: not an object: {value}"));
    let keys: std::collections::BTreeSet<&str> = object.keys().map(String::as_str).collect();
    assert_eq!(keys, heads, "{at}: the keys differ from docs/json.md");
    for head in heads {
        let below = tails(head);
        if !below.is_empty() {
            matches_documented(&object[head], &below, &format!("{at}.{head}"));
        }
    }
}

#[tokio::test]
async fn the_json_outputs_have_the_fields_docs_json_md_documents() {
    let dir = tempfile::tempdir().unwrap();
    let (api, ctl) = started(dir.path(), LIMITS).await;
    let check = |heading: &str, value: &serde_json::Value| {
        matches_documented(value, &documented_fields(heading), heading);
    };
    let (_, status) = call(api, "GET", "/status", b"").await;
    check("`scc status --json`", &status);
    let (_, vm) = call(api, "GET", "/vm/web1", b"").await;
    check("`scc vm show NAME --json`", &vm);

    // A policy that changes every table and cuts every VM off: every list filled.
    let policy = serde_json::to_vec("drop").unwrap();
    let (code, dry) = call(api, "POST", "/policy?name=p.kat&dry_run=true", &policy).await;
    assert_eq!(code, 200, "{dry}");
    check("`scc apply --dry-run --json`", &dry);
    let (code, applied) = call(api, "POST", "/policy?name=p.kat&force=true", &policy).await;
    assert_eq!(code, 200, "{applied}");
    check("`scc apply --json`", &applied);

    let mut host = ctl.inventory().hosts.last().cloned().unwrap();
    host.name = "host-json".into();
    host.datapath_id = 9_999;
    host.tunnel_endpoint = "203.0.113.99:51820".parse().unwrap();
    let (code, added) = call(api, "POST", "/host", &serde_json::to_vec(&host).unwrap()).await;
    assert_eq!(code, 200, "{added}");
    check("`scc vm add|rm --json`, `scc host add|rm --json`", &added);

    // A migration needs connected switches: its timeline as the status shows it.
    let timeline = crate::migration::Timeline {
        vm: "web1".into(),
        events: vec![("prepared".into(), 0.0), ("destination ready".into(), 4.2)],
        ..Default::default()
    };
    // What `scc migrate --json` prints once the destination is ready.
    let printed = serde_json::json!({ "version": added["version"], "timeline": timeline });
    check("`scc migrate --json`", &printed);
    // A timeline with the hypervisor's report of the copy, as the status shows it.
    let info: hypervisor_glue::MigrationInfo = serde_json::from_value(serde_json::json!({
        "status": "active", "expected-downtime": 30,
        "ram": {"transferred": 5, "remaining": 7, "total": 12, "dirty-pages-rate": 3},
    }))
    .unwrap();
    let copying = crate::migration::Timeline {
        copy: Some(hypervisor_glue::storage::Progress::of_memory(
            &info,
            Duration::from_millis(1500),
        )),
        ..timeline
    };
    let in_status: Vec<Vec<String>> = documented_fields("`scc status --json`")
        .into_iter()
        .filter(|f| f[0] == "timeline" && f.len() > 1)
        .map(|f| f[1..].to_vec())
        .collect();
    matches_documented(&serde_json::json!(copying), &in_status, "status timeline");

    let snapshot: crate::placement::Snapshot = serde_json::from_str(include_str!(
        "../../../docs/examples/placement-snapshot.json"
    ))
    .unwrap();
    let decisions = serde_json::json!(snapshot.plan(&ctl.inventory()));
    check(
        "`scc placement plan --inventory FILE --measurements FILE --json`",
        &decisions,
    );
    let (code, round) = call(api, "GET", "/placement", b"").await;
    assert_eq!(code, 200, "{round}");
    check(
        "`scc placement plan --json` and `scc placement run --json` (running controller)",
        &round,
    );
}
