//! `scd`'s local management listener as `punix:PATH`, the way an operator uses it
//! on a host: `ovs-ofctl -O OpenFlow13 ... unix:PATH` works for root; the socket
//! file is mode 0600, so user `nobody` is refused by the file system; a stale
//! socket left by a crash is replaced and the file goes away when `scd` stops;
//! connections over the listener's cap are closed at once and counted, and the
//! listener serves again once they are gone; a silent connection is closed after
//! the idle timeout.

use anyhow::{bail, Result};
use netns_tests::ofctl::ofctl;
use netns_tests::{require_program, require_root, scd_config_head, unique, wait_until};
use netns_tests::{Netns, Scd};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Connections the listener serves at once in these tests.
const CAP: usize = 4;
/// Longest any wait may take on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(30);

fn ready(test: &str) -> bool {
    require_root(test) && require_program(test, "ovs-ofctl")
}

/// A host namespace with an `scd` (no ports) listening on `punix:` in a directory
/// every user may enter, so that only the socket's own mode keeps others out.
struct Host {
    // Field order is drop order: stop scd before removing its directory and
    // namespace.
    scd: Scd,
    socket: PathBuf,
    _dir: tempfile::TempDir,
    host: Netns,
}

impl Host {
    fn start(test: &str, idle_timeout_s: u64, before_start: impl FnOnce(&Path)) -> Result<Host> {
        let host = Netns::new(&unique(&format!("{test}-")))?;
        let dir = tempfile::Builder::new().prefix("punix").tempdir()?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let socket = dir.path().join("scd.mgmt");
        before_start(&socket);
        let config = format!(
            "{}[openflow]\nlisten = \"punix:{}\"\nmax_connections = {CAP}\nidle_timeout_s = {idle_timeout_s}\n",
            scd_config_head("\"0x5c0d\"", "punix-host", false),
            socket.display()
        );
        let scd = Scd::start(&host, &config, None)?;
        Ok(Host {
            scd,
            socket,
            _dir: dir,
            host,
        })
    }

    /// `ovs-ofctl -O OpenFlow13 ARGS unix:PATH`, as root.
    fn ofctl(&self, args: &[&str]) -> Result<String> {
        ofctl(&self.host, &format!("unix:{}", self.socket.display()), args)
    }

    /// The listener's label in the metrics.
    fn listener(&self) -> String {
        format!("listener=\"punix:{}\"", self.socket.display())
    }

    /// A sample of this listener's metric `name`.
    fn metric(&self, name: &str) -> Result<u64> {
        self.scd.metric(name, &[&self.listener()])
    }
}

/// The switch's hello, then nothing more to read: true when the switch served
/// the connection and later closed it.
fn served_then_closed(s: &mut UnixStream) -> Result<bool> {
    s.set_read_timeout(Some(PATIENCE))?;
    let mut hello = vec![0u8; 8];
    s.read_exact(&mut hello)?;
    let Some(header) = openflow::wire::peek_header(&hello) else {
        bail!("no OpenFlow header: {hello:?}");
    };
    hello.resize(usize::from(header.length), 0);
    s.read_exact(&mut hello[8..])?;
    let mut byte = [0u8; 1];
    Ok(header.msg_type == 0 && matches!(s.read(&mut byte), Ok(0)))
}

#[test]
fn ovs_ofctl_talks_to_scd_over_punix_and_other_users_cannot() -> Result<()> {
    if !ready("ovs_ofctl_talks_to_scd_over_punix_and_other_users_cannot") {
        return Ok(());
    }
    // A socket file nobody listens on, as a crashed scd leaves it.
    let h = Host::start("punix-ofctl", 60, |path| {
        drop(UnixListener::bind(path).expect("stale socket"));
    })?;
    let meta = std::fs::symlink_metadata(&h.socket)?;
    assert!(std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()));
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{meta:?}");
    assert_eq!(meta.uid(), 0);

    let show = h.ofctl(&["show", "{}"])?;
    assert!(show.contains("dpid:0000000000005c0d"), "{show}");
    h.ofctl(&[
        "add-flow",
        "{}",
        "priority=7,ip,nw_dst=100.64.0.9,actions=drop",
    ])?;
    let dump = h.ofctl(&["dump-flows", "{}"])?;
    assert!(dump.contains("priority=7,ip,nw_dst=100.64.0.9"), "{dump}");

    // `nobody` sees the socket (the directory lets it in) but may not connect.
    let as_nobody = |program: &str, args: &[&str]| {
        Command::new("runuser")
            .args(["-u", "nobody", "--", program])
            .args(args)
            .output()
    };
    let socket = h.socket.to_string_lossy().into_owned();
    let seen = as_nobody("test", &["-S", &socket])?;
    assert!(seen.status.success(), "nobody cannot even see {socket}");
    let target = format!("unix:{socket}");
    let refused = as_nobody(
        "ovs-ofctl",
        &["-O", "OpenFlow13", "--timeout=20", "dump-flows", &target],
    )?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "nobody dumped the flows");
    assert!(stderr.contains("Permission denied"), "{stderr}");

    // A clean stop removes the socket file.
    let mut h = h;
    let status = h.scd.stop()?;
    assert!(status.success(), "{status}:\n{}", h.scd.log());
    assert!(!h.socket.exists(), "the socket file outlived scd");
    Ok(())
}

#[test]
fn connections_over_the_cap_are_refused_until_the_open_ones_close() -> Result<()> {
    if !ready("connections_over_the_cap_are_refused_until_the_open_ones_close") {
        return Ok(());
    }
    let h = Host::start("punix-cap", 60, |_| {})?;
    assert_eq!(h.metric("scd_ofp_refused_total")?, 0);

    let mut held = Vec::new();
    for _ in 0..CAP + 10 {
        held.push(UnixStream::connect(&h.socket)?);
    }
    wait_until(PATIENCE, "the connections over the cap refused", || {
        Ok(h.metric("scd_ofp_refused_total")? >= 10)
    })?;
    assert_eq!(h.metric("scd_ofp_refused_total")?, 10);
    assert_eq!(h.metric("scd_ofp_listener_connections")?, CAP as u64);
    // The ones over the cap were closed without a hello.
    let mut closed_at_once = 0;
    for s in &mut held {
        s.set_read_timeout(Some(PATIENCE))?;
        let mut byte = [0u8; 1];
        if matches!(s.read(&mut byte), Ok(0)) {
            closed_at_once += 1;
        }
    }
    assert_eq!(closed_at_once, 10);

    // While they are held, ovs-ofctl is refused too, and counted.
    assert!(h.ofctl(&["show", "{}"]).is_err(), "served over the cap");
    assert_eq!(h.metric("scd_ofp_refused_total")?, 11);

    drop(held);
    wait_until(PATIENCE, "the held connections closed", || {
        Ok(h.metric("scd_ofp_listener_connections")? == 0)
    })?;
    let show = h.ofctl(&["show", "{}"])?;
    assert!(show.contains("dpid:0000000000005c0d"), "{show}");
    assert_eq!(h.metric("scd_ofp_refused_total")?, 11);
    Ok(())
}

#[test]
fn a_silent_connection_is_closed_after_the_idle_timeout() -> Result<()> {
    if !ready("a_silent_connection_is_closed_after_the_idle_timeout") {
        return Ok(());
    }
    let h = Host::start("punix-idle", 2, |_| {})?;
    let mut silent = UnixStream::connect(&h.socket)?;
    if !served_then_closed(&mut silent)? {
        bail!("the silent connection was not closed:\n{}", h.scd.log());
    }
    wait_until(PATIENCE, "the idle close counted", || {
        Ok(h.metric("scd_ofp_idle_closed_total")? == 1)
    })?;
    assert_eq!(h.metric("scd_ofp_refused_total")?, 0);
    // Tools are served as before.
    let show = h.ofctl(&["show", "{}"])?;
    assert!(show.contains("dpid:0000000000005c0d"), "{show}");
    Ok(())
}
