//! The web console in a real browser: three clouds in namespaces, `scc` with its
//! API on TCP behind a token, and Debian's headless Chromium in the router's
//! namespace, driven over the DevTools protocol (a websocket). The page signs in
//! with the token and stays open, never reloaded, while a VM migrates from cloud 2
//! to cloud 3; its DOM must then show the VM on its new host, the move as the page
//! saw it live (`host1 → host2`, which only the event stream can tell: the
//! controller keeps no such history) and the migration's timeline with its phases
//! and packet counts. A screenshot of the page is kept as
//! `target/console/console.png` (the path is printed).

mod common;

use anyhow::{Context, Result};
use common::{reaches, wait_timeline, VmSpec};
use netns_tests::{require_program, require_root, Internet, Netns};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

const M1_IP: &str = "100.64.2.1";
/// a1 in cloud 1, m1 (the VM that moves) in cloud 2, c1 in cloud 3.
const VMS: [VmSpec; 3] = [
    VmSpec::new("a1", 0, 1, "100.64.1.1", "02:00:00:00:01:01"),
    VmSpec::new("m1", 1, 1, M1_IP, "02:00:00:00:02:01"),
    VmSpec::new("c1", 2, 1, "100.64.3.1", "02:00:00:00:03:01"),
];
/// The API's TCP address: the router's address in cloud 1, as the controller's.
const API: &str = "192.0.2.1:6680";
const TOKEN: &str = "console-test-token-0123456789";

/// Where Chromium serves the DevTools protocol, inside the router's namespace.
const DEVTOOLS_PORT: u16 = 9222;

/// Headless Chromium in a namespace, driven over the DevTools protocol (a
/// websocket); killed by PID when dropped.
struct Browser {
    child: Child,
    socket: tungstenite::WebSocket<TcpStream>,
    next_id: u64,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP GET to `127.0.0.1:port` inside `ns`: the answer's body, read to its
/// `Content-Length` (Chromium's DevTools server keeps the connection open).
fn get_in(ns: &Netns, port: u16, path: &str) -> Result<String> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    ns.enter(move || -> Result<String> {
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(request.as_bytes())?;
        let (mut seen, mut buf) = (Vec::new(), [0u8; 8192]);
        loop {
            let n = s.read(&mut buf)?;
            anyhow::ensure!(n > 0, "closed early");
            seen.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&seen);
            let Some((head, body)) = text.split_once("\r\n\r\n") else {
                continue;
            };
            let length = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .context("no Content-Length")?;
            if body.len() >= length {
                return Ok(body.to_string());
            }
        }
    })?
}

impl Browser {
    /// Starts Chromium in `ns` (as root, hence without its sandbox) with its
    /// profile in `profile`, and connects to its page.
    fn launch(ns: &Netns, profile: &Path) -> Result<Browser> {
        let child = ns
            .command("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--hide-scrollbars",
                "--window-size=1400,1100",
                "--remote-allow-origins=*",
            ])
            .arg(format!("--remote-debugging-port={DEVTOOLS_PORT}"))
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("chromium")?;
        let mut target = None;
        let found = netns_tests::wait_until(Duration::from_secs(60), "Chromium's page", || {
            let Ok(list) = get_in(ns, DEVTOOLS_PORT, "/json/list") else {
                return Ok(false);
            };
            let list: serde_json::Value = serde_json::from_str(&list).unwrap_or_default();
            target = list.as_array().and_then(|l| {
                l.iter().find(|t| t["type"] == "page")?["webSocketDebuggerUrl"]
                    .as_str()
                    .map(str::to_string)
            });
            Ok(target.is_some())
        });
        let mut child = child;
        if let Err(e) = found {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        let url = target.context("no page")?;
        let stream = ns.enter(|| TcpStream::connect(("127.0.0.1", DEVTOOLS_PORT)))??;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let socket = match tungstenite::client(url.as_str(), stream) {
            Ok((socket, _)) => socket,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                anyhow::bail!("DevTools websocket {url}: {e}");
            }
        };
        Ok(Browser {
            child,
            socket,
            next_id: 1,
        })
    }

    /// Calls DevTools method `method`: its result (events in between are skipped).
    fn call(&mut self, method: &str, params: serde_json::Value) -> Result<serde_json::Value> {
        let id = self.next_id;
        self.next_id += 1;
        let message = serde_json::json!({ "id": id, "method": method, "params": params });
        self.socket
            .send(tungstenite::Message::text(message.to_string()))?;
        loop {
            let text = match self.socket.read()? {
                tungstenite::Message::Text(t) => t.to_string(),
                _ => continue,
            };
            let answer: serde_json::Value = serde_json::from_str(&text)?;
            if answer["id"] == id {
                anyhow::ensure!(answer["error"].is_null(), "{method}: {}", answer["error"]);
                return Ok(answer["result"].clone());
            }
        }
    }

    fn navigate(&mut self, url: &str) -> Result<()> {
        self.call("Page.navigate", serde_json::json!({ "url": url }))?;
        Ok(())
    }

    /// The page's DOM now, as HTML.
    fn dom(&mut self) -> Result<String> {
        let result = self.call(
            "Runtime.evaluate",
            serde_json::json!({
                "expression": "document.documentElement.outerHTML",
                "returnByValue": true,
            }),
        )?;
        Ok(result["result"]["value"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// Saves the page as a PNG at `path`.
    fn screenshot(&mut self, path: &Path) -> Result<()> {
        use base64::Engine;
        let result = self.call(
            "Page.captureScreenshot",
            serde_json::json!({ "format": "png", "captureBeyondViewport": true }),
        )?;
        let data = result["data"].as_str().context("no screenshot data")?;
        std::fs::write(
            path,
            base64::engine::general_purpose::STANDARD.decode(data)?,
        )?;
        Ok(())
    }

    /// Polls the DOM until `ready` holds, at most `within`; returns that DOM.
    fn wait_dom(
        &mut self,
        within: Duration,
        what: &str,
        ready: impl Fn(&str) -> bool,
    ) -> Result<String> {
        let mut dom = String::new();
        netns_tests::wait_until(within, what, || {
            dom = self.dom()?;
            Ok(ready(&dom))
        })
        .with_context(|| format!("the console's DOM: {dom}"))?;
        Ok(dom)
    }
}

/// The row of VM `vm` in a dumped console, as `<tr data-vm="vm" data-host=…>`.
fn vm_row<'d>(dom: &'d str, vm: &str) -> Option<&'d str> {
    let start = dom.find(&format!("<tr data-vm=\"{vm}\""))?;
    let end = start + dom[start..].find("</tr>")?;
    Some(&dom[start..end])
}

/// The timeline entries of VM `vm` in a dumped console.
fn migrations_of<'d>(dom: &'d str, vm: &str) -> Vec<&'d str> {
    let open = format!("<li class=\"migration\" data-vm=\"{vm}\"");
    dom.match_indices(&open)
        .filter_map(|(at, _)| Some(&dom[at..at + dom[at..].find("</li>")?]))
        .collect()
}

/// The tunnels of a dumped console's map coloured by a measured latency.
fn measured_tunnels(dom: &str) -> usize {
    ["good", "mid", "bad"]
        .iter()
        .map(|class| dom.matches(&format!("data-latency=\"{class}\"")).count())
        .sum()
}

fn artefacts() -> Result<PathBuf> {
    // Test executables live in target/<profile>/deps.
    let exe = std::env::current_exe()?;
    let target = exe
        .ancestors()
        .nth(3)
        .context("no target directory above the test")?;
    let dir = target.join("console");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

#[test]
fn the_console_shows_a_migration_live_in_a_headless_browser() -> Result<()> {
    let test = "the_console_shows_a_migration_live_in_a_headless_browser";
    if !require_root(test) || !require_program(test, "chromium") {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let net = Internet::with_hosts("cons", &[None, Some(15), Some(30)])?;
    let keys = common::key_pairs(3)?;
    let vms = common::create_vms("cons", &VMS)?;
    let (a1, m1, c1) = (&vms[0], &vms[1], &vms[2]);
    let tap_c = common::second_tap(m1, common::VM_MTU)?;
    // The switches sample every second, so the map has latencies and traffic.
    let controller =
        common::api_on_tcp(dir.path(), API, TOKEN)? + "\n[placement]\nsample_every_s = 1\n";
    let inventory = common::write_inventory(
        dir.path(),
        &common::inventory_with(&keys, &common::entries(&VMS, &vms), &controller, &[], &[]),
    )?;
    let scc = common::start_scc(&net, dir.path(), true)?;
    let _scds = common::start_switches(
        &net,
        &inventory,
        &keys,
        common::landing_port(2, 2, m1, &tap_c),
    )?;
    scc.wait_synced(&net)?;
    // Every pair of hosts shakes hands: the tunnels are up and their latency known.
    for (from, to) in [(a1, M1_IP), (c1, M1_IP), (a1, "100.64.3.1")] {
        anyhow::ensure!(reaches(from, to, 10)?, "{} cannot reach {to}", from.ip);
    }

    let profile = dir.path().join("chromium");
    let mut browser = Browser::launch(&net.router, &profile)?;
    // The token, typed into the sign-in form, buys the session cookie; the page
    // then loads its data with it.
    browser.navigate(&format!("http://{API}/console"))?;
    browser.wait_dom(Duration::from_secs(30), "the sign-in form", |dom| {
        dom.contains("name=\"token\"")
    })?;
    browser.call(
        "Runtime.evaluate",
        serde_json::json!({
            "expression": format!(
                "document.querySelector('input[name=token]').value = '{TOKEN}'; \
                 document.querySelector('form').submit();"
            ),
        }),
    )?;
    let dom = browser
        .wait_dom(Duration::from_secs(60), "m1 on host1, live", |dom| {
            vm_row(dom, "m1").is_some_and(|r| r.contains("data-host=\"host1\""))
                && dom.contains("data-live=\"yes\"")
        })
        .with_context(|| scc.log_text())?;
    assert!(
        !dom.contains(TOKEN),
        "the token left the address and the page"
    );
    assert!(
        migrations_of(&dom, "m1").is_empty(),
        "no migration of m1 yet"
    );

    // The same page, never reloaded, across the migration.
    common::start_migration(&net, "m1", "host2", 2)?;
    common::move_vm(m1, &m1.ifname, &tap_c, &[], || Ok(()))?;
    let s = wait_timeline(&net, "old host drained")?;
    println!("the controller's timeline: {}", s["timeline"]);
    assert_eq!(common::vm_host(&s, "m1").as_deref(), Some("host2"));
    let dom = browser.wait_dom(
        Duration::from_secs(30),
        "m1 on host2, its drained migration and every tunnel's latency",
        |dom| {
            vm_row(dom, "m1").is_some_and(|r| r.contains("data-host=\"host2\""))
                && migrations_of(dom, "m1")
                    .first()
                    .is_some_and(|m| m.contains("old host drained"))
                // The map colours every tunnel by the latency the switches measured.
                && measured_tunnels(dom) == 3
        },
    )?;
    let row = vm_row(&dom, "m1").context("no m1 row")?;
    println!("the page's row of m1: {row}");
    let entry = migrations_of(&dom, "m1")[0];
    println!("the page's migration entry: {entry}");
    assert!(
        entry.contains("m1: host1 → host2"),
        "the page saw the move live: {entry}"
    );
    for event in [
        "destination ready",
        "arrived",
        "rerouted",
        "old host drained",
    ] {
        assert!(entry.contains(event), "`{event}` in the timeline: {entry}");
    }
    assert!(
        entry.contains("packets forwarded by the old host: ") && !entry.contains("old host: –"),
        "the packet counts: {entry}"
    );

    let shot = artefacts()?.join("console.png");
    browser.screenshot(&shot)?;
    println!(
        "console screenshot: {} ({} bytes)",
        shot.display(),
        std::fs::metadata(&shot)?.len()
    );
    Ok(())
}
