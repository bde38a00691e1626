//! Who can reach a running `scc`'s API, tried as an attacker would: another local
//! user (uid `nobody`) cannot connect to its Unix socket; on TCP a request without
//! the bearer token, or with a wrong one, gets 401 and changes nothing, and with
//! the token it works; 2,000 idle TCP connections leave the socket serving at once
//! and TCP serving again while they are still open. Needs root (to run as
//! `nobody` with `setpriv`).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

const TOKEN: &str = "f00dfeedcafe-0123456789-api-token";
const SCC: &str = env!("CARGO_BIN_EXE_scc");

/// `scc run`, killed by PID when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn scc(args: &[&str]) -> Output {
    Command::new(SCC).args(args).output().unwrap()
}

/// `scc ARGS` as uid/gid 65534 (nobody), without supplementary groups.
fn scc_as_nobody(args: &[&str]) -> Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", SCC])
        .args(args)
        .output()
        .unwrap()
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn start(dir: &Path, tcp: u16) -> Running {
    let example = include_str!("../../docs/examples/inventory.toml");
    let inventory = example
        .replace(
            "openflow = \"192.0.2.250:6653\"",
            &format!("openflow = \"127.0.0.1:{}\"", free_port()),
        )
        .replace(
            "api_socket = \"/run/scc/api.sock\"",
            &format!(
                "api_socket = \"{}\"\napi = \"127.0.0.1:{tcp}\"\napi_token_file = \"{}\"",
                dir.join("api.sock").display(),
                dir.join("api.token").display()
            ),
        );
    assert!(inventory.contains("api_token_file"), "the example changed");
    // The example's [controller.tls] names pki/ beside the inventory (made
    // once: a restart keeps it).
    let pki = dir.join("pki");
    if !pki.exists() {
        tls_support::pki::init(&pki, "api test CA").unwrap();
        tls_support::pki::issue(&pki, "scc", tls_support::pki::Role::Controller).unwrap();
    }
    std::fs::write(dir.join("inventory.toml"), inventory).unwrap();
    let child = Command::new(SCC)
        .args(["run", "--inventory"])
        .arg(dir.join("inventory.toml"))
        .arg("--state")
        .arg(dir.join("state.json"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("scc.log")).unwrap())
        .spawn()
        .unwrap();
    Running(child)
}

#[test]
fn only_scc_s_user_and_token_holders_reach_the_api() {
    if !is_root() {
        eprintln!("SKIPPED: only_scc_s_user_and_token_holders_reach_the_api needs root (setpriv)");
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI runs as root"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Everyone may enter the directory: only the socket's own mode keeps
    // others out.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let token_file = dir.path().join("api.token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let tcp = free_port();

    // A token file others can read: scc refuses to start.
    let mut refused = start(dir.path(), tcp);
    let status = refused.0.wait().unwrap();
    let log = std::fs::read_to_string(dir.path().join("scc.log")).unwrap();
    assert!(!status.success(), "{log}");
    assert!(log.contains("readable by its group or others"), "{log}");
    drop(refused);
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let _ = std::fs::remove_file(dir.path().join("state.json"));
    let _scc = start(dir.path(), tcp);

    let unix = format!("unix:{}", dir.path().join("api.sock").display());
    let http = format!("http://127.0.0.1:{tcp}");
    let token_arg = token_file.to_str().unwrap();
    wait_until("scc serves its socket", || {
        scc(&["status", "--api", &unix]).status.success()
    });
    let socket = dir.path().join("api.sock");
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");

    // Another local user: scc runs for it (the observer works), but the socket
    // refuses it, and TCP without the token answers 401.
    let version = scc_as_nobody(&["--version"]);
    assert!(version.status.success(), "{}", text(&version));
    let denied = scc_as_nobody(&["status", "--api", &unix]);
    assert!(!denied.status.success(), "{}", text(&denied));
    assert!(
        text(&denied).contains("Permission denied"),
        "{}",
        text(&denied)
    );
    let policy = dir.path().join("evil.kat");
    std::fs::write(&policy, "filter false").unwrap();
    std::fs::set_permissions(&policy, std::fs::Permissions::from_mode(0o644)).unwrap();
    let policy_arg = policy.to_str().unwrap();
    for args in [
        vec!["apply", policy_arg, "--api", &unix],
        vec!["apply", policy_arg, "--api", &http],
    ] {
        let out = scc_as_nobody(&args);
        assert!(!out.status.success(), "{args:?}: {}", text(&out));
    }
    // Every command says a refusal the same way: `error:` on stderr, status 1.
    for command in ["status", "metrics", "placement"] {
        let mut args = vec![command, "--api", &http];
        if command == "placement" {
            args.insert(1, "plan");
        }
        let unauthorized = scc(&args);
        let stderr = String::from_utf8_lossy(&unauthorized.stderr);
        assert_eq!(
            unauthorized.status.code(),
            Some(1),
            "{args:?}: {}",
            text(&unauthorized)
        );
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert!(
            stderr.contains("Authorization: Bearer"),
            "{args:?}: {stderr}"
        );
    }
    let wrong = dir.path().join("wrong.token");
    std::fs::write(&wrong, "0000000000000000-not-the-token").unwrap();
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = scc(&[
        "apply",
        policy_arg,
        "--api",
        &http,
        "--token-file",
        wrong.to_str().unwrap(),
    ]);
    assert!(!out.status.success(), "{}", text(&out));
    let status = scc(&[
        "status",
        "--json",
        "--api",
        &http,
        "--token-file",
        token_arg,
    ]);
    assert!(status.status.success(), "{}", text(&status));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["version"], 1, "nothing changed: {status:#}");
    assert_ne!(status["policy"], policy_arg);

    // 2,000 idle connections on TCP, held open.
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let wanted = rustix::process::Rlimit {
        current: limit.maximum.map(|m| m.min(8192)),
        maximum: limit.maximum,
    };
    rustix::process::setrlimit(rustix::process::Resource::Nofile, wanted).unwrap();
    let idle: Vec<_> = (0..2000)
        .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", tcp)).ok())
        .collect();
    assert!(idle.len() >= 1000, "only {} connections", idle.len());
    // The socket has a cap of its own: it serves at once.
    let out = scc(&["status", "--api", &unix]);
    assert!(out.status.success(), "{}", text(&out));
    // TCP serves again once the idle ones time out, while they are still open.
    wait_until("TCP serves again", || {
        scc(&["status", "--api", &http, "--token-file", token_arg])
            .status
            .success()
    });
    drop(idle);
}
