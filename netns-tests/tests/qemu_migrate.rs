//! End-to-end live migration of a real QEMU guest (TCG) between two "hosts"
//! (network namespaces), with a TCP connection from a third namespace that must
//! survive with its bytes intact; and a migration whose destination dies midway,
//! after which the source VM must still run and answer.
//!
//! Owns only its own namespaces (named after the test, deleted in `Drop`, also on
//! panic), the QEMU processes it starts (stopped by PID), and a temp dir. It must
//! never route toward the machine's real interfaces nor send traffic to outside
//! addresses: VMs and the client use 100.64.0.0/16 on an isolated bridge, the
//! migration stream uses 192.0.2.0/24 (TEST-NET-1) on a veth between the two hosts.
//!
//! Needs root, `qemu-system-x86_64` (scripts/install-qemu.sh) and the guest
//! (scripts/build-guest.sh). Without them it says so loudly and fails when CI=true.
//!
//! Topology (one set per test):
//!
//! ```text
//!   P-cli: cli0 100.64.2.20/16 ── sw-cli ┐
//!   P-sw:  br0 ─ sw-cli, sw-a (attached), sw-b (attached after the move)
//!   P-a:   br0 ─ tap0 (QEMU source), up0 ── sw-a;   ul0 192.0.2.1/24 ┐
//!   P-b:   br0 ─ tap0 (QEMU dest),   up0 ── sw-b;   ul0 192.0.2.2/24 ┘
//! ```

use netns_tests::{guest_migration, low_downtime_guest_migration, EchoStream, Guest};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hypervisor_glue::commands::{QueryStatus, Quit};
use hypervisor_glue::migration;
use hypervisor_glue::{
    EventKind, Incoming, MigrationError, MigrationParameters, MigrationStatus, QemuConfig,
    QemuProcess, QmpClient, RunState, TapNic,
};

const GUEST_IP: &str = "100.64.1.10";
const GUEST_MAC: &str = "52:54:00:64:01:0a";
const CLIENT_IP: &str = "100.64.2.20/16";
const ECHO_PORT: u16 = 7;
const SRC_UL: &str = "192.0.2.1";
const DST_UL: &str = "192.0.2.2";
const MIGRATION_PORT: u16 = 4444;
const READY: &str = "SC-GUEST-READY";
const QMP_T: Duration = Duration::from_secs(10);

/// The QEMU tests share 2 cores with everything else: run them one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---------------------------------------------------------------- namespaces

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn ip(ns: &str, args: &str) {
    let mut v = vec!["ip", "-n", ns];
    v.extend(args.split_whitespace());
    run(&v).unwrap_or_else(|e| panic!("{e}"));
}

/// A network namespace deleted on drop (also when the test panics).
struct Netns(String);

impl Netns {
    fn new(name: String) -> Netns {
        // A leftover from a crashed run with the same name goes first.
        let _ = run(&["ip", "netns", "del", &name]);
        run(&["ip", "netns", "add", &name]).unwrap_or_else(|e| panic!("{e}"));
        let ns = Netns(name);
        ip(&ns.0, "link set lo up");
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = run(&["ip", "netns", "del", &self.0]) {
            eprintln!("cleanup: {e}");
        }
    }
}

/// A temp dir removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The namespaces of one test. Field order is drop order: nothing here
/// outlives the QEMUs, which the tests declare after it.
struct Topology {
    cli: Netns,
    sw: Netns,
    a: Netns,
    b: Netns,
    dir: TempDir,
}

impl Topology {
    fn new(test: &str) -> Topology {
        let p = format!("{test}-{}", std::process::id());
        let dir = std::env::temp_dir().join(&p);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let t = Topology {
            cli: Netns::new(format!("{p}-cli")),
            sw: Netns::new(format!("{p}-sw")),
            a: Netns::new(format!("{p}-a")),
            b: Netns::new(format!("{p}-b")),
            dir: TempDir(dir),
        };
        let (cli, sw) = (&t.cli.0, &t.sw.0);
        // The overlay L2 segment: a bridge in the switch namespace.
        ip(sw, "link add br0 type bridge");
        ip(sw, "link set br0 type bridge forward_delay 0 stp_state 0");
        ip(sw, "link set br0 up");
        ip(
            cli,
            &format!("link add cli0 type veth peer name sw-cli netns {sw}"),
        );
        ip(cli, &format!("addr add {CLIENT_IP} dev cli0"));
        ip(cli, "link set cli0 up");
        ip(sw, "link set sw-cli master br0 up");
        for (host, port) in [(&t.a.0, "sw-a"), (&t.b.0, "sw-b")] {
            ip(host, "tuntap add dev tap0 mode tap");
            ip(host, "link add br0 type bridge");
            ip(host, "link set br0 type bridge forward_delay 0 stp_state 0");
            ip(
                host,
                &format!("link add up0 type veth peer name {port} netns {sw}"),
            );
            ip(host, "link set tap0 master br0 up");
            ip(host, "link set up0 master br0 up");
            ip(host, "link set br0 up");
            ip(sw, &format!("link set {port} up"));
        }
        // The guest starts on host a.
        ip(sw, "link set sw-a master br0");
        // Underlay between the hosts, for the migration stream only.
        ip(
            &t.a.0,
            &format!("link add ul0 type veth peer name ul0 netns {}", t.b.0),
        );
        ip(&t.a.0, &format!("addr add {SRC_UL}/24 dev ul0"));
        ip(&t.b.0, &format!("addr add {DST_UL}/24 dev ul0"));
        ip(&t.a.0, "link set ul0 up");
        ip(&t.b.0, "link set ul0 up");
        t
    }

    /// Moves the guest's attachment from host a to host b in one batch.
    fn move_guest_to_b(&self) {
        let mut child = Command::new("ip")
            .args(["-n", &self.sw.0, "-batch", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("ip -batch");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(b"link set sw-a nomaster\nlink set sw-b master br0\n")
            .expect("write batch");
        assert!(child.wait().expect("wait ip").success(), "moving the port");
    }

    fn qemu(&self, guest: &Guest, host: &Netns, role: &str) -> QemuConfig {
        let mut c = QemuConfig::new(
            format!("{}-{role}", host.0),
            &guest.kernel,
            &guest.initrd,
            self.dir.0.join(format!("{role}.qmp")),
            self.dir.0.join(format!("{role}.serial")),
        );
        c.stderr_log = Some(self.dir.0.join(format!("{role}.stderr")));
        c.append = format!("quiet sc.ip={GUEST_IP}/16 sc.port={ECHO_PORT}");
        c.memory_mib = 128;
        c.netns = Some(host.0.clone());
        c.nic = Some(TapNic {
            ifname: "tap0".into(),
            mac: GUEST_MAC.into(),
        });
        c
    }

    fn logs(&self) -> String {
        let mut s = String::new();
        for f in ["src.serial", "src.stderr", "dst.serial", "dst.stderr"] {
            let text = std::fs::read_to_string(self.dir.0.join(f)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(12)..].join("\n    ");
            s.push_str(&format!("--- {f}:\n    {tail}\n"));
        }
        s
    }
}

/// Opens a TCP connection from inside namespace `ns` (the socket stays there).
fn connect_from(ns: &str, to: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    let path = format!("/run/netns/{ns}");
    std::thread::scope(|s| {
        s.spawn(|| {
            let f = std::fs::File::open(&path)?;
            rustix::thread::move_into_link_name_space(
                f.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )?;
            let end = Instant::now() + timeout;
            loop {
                match TcpStream::connect_timeout(&to, Duration::from_secs(1)) {
                    Ok(c) => return Ok(c),
                    Err(e) if Instant::now() >= end => return Err(e),
                    Err(_) => std::thread::sleep(Duration::from_millis(200)),
                }
            }
        })
        .join()
        .expect("connect thread")
    })
}

/// Watches host namespace `ns` for the first RARP frame from `mac` (QEMU's
/// self-announce of the guest after migration) and sends the moment it was seen.
/// A raw `AF_PACKET` socket for ETH_P_RARP only, opened inside that namespace.
fn watch_rarp(
    ns: &str,
    mac: [u8; 6],
    stop: Arc<AtomicBool>,
) -> tokio::sync::oneshot::Receiver<Instant> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let watch = || -> std::io::Result<Option<Instant>> {
            let f = std::fs::File::open(&path)?;
            rustix::thread::move_into_link_name_space(
                f.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )?;
            let fd = rustix::net::socket(
                rustix::net::AddressFamily::PACKET,
                rustix::net::SocketType::RAW,
                Some(rustix::net::eth::RARP),
            )?;
            rustix::net::sockopt::set_socket_timeout(
                &fd,
                rustix::net::sockopt::Timeout::Recv,
                Some(Duration::from_millis(100)),
            )?;
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                match rustix::io::read(&fd, &mut buf) {
                    Ok(n) if n >= 14 && buf[6..12] == mac => return Ok(Some(Instant::now())),
                    Ok(_) | Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(None)
        };
        match watch() {
            Ok(Some(t)) => drop(tx.send(t)),
            Ok(None) => {}
            Err(e) => eprintln!("RARP watcher: {e}"),
        }
    });
    rx
}

fn mac_bytes(mac: &str) -> [u8; 6] {
    let mut out = [0u8; 6];
    for (o, part) in out.iter_mut().zip(mac.split(':')) {
        *o = u8::from_str_radix(part, 16).expect("hex MAC");
    }
    out
}

fn guest_addr() -> SocketAddr {
    SocketAddr::new(GUEST_IP.parse().expect("ip"), ECHO_PORT)
}

async fn boot_source(topo: &Topology, guest: &Guest) -> (QemuProcess, QmpClient) {
    let mut src = QemuProcess::spawn(topo.qemu(guest, &topo.a, "src")).expect("start source");
    let src_qmp = src.connect_qmp(QMP_T).await.expect("source QMP");
    let booted = Instant::now();
    if let Err(e) = src.wait_for_serial(READY, Duration::from_secs(90)).await {
        panic!("guest did not boot: {e}\n{}", topo.logs());
    }
    eprintln!("guest booted under TCG in {:?}", booted.elapsed());
    (src, src_qmp)
}

async fn start_destination(topo: &Topology, guest: &Guest) -> (QemuProcess, QmpClient) {
    let mut cfg = topo.qemu(guest, &topo.b, "dst");
    cfg.incoming = Some(Incoming::Tcp(format!("{DST_UL}:{MIGRATION_PORT}")));
    let mut dst = QemuProcess::spawn(cfg).expect("start destination");
    let dst_qmp = dst.connect_qmp(QMP_T).await.expect("destination QMP");
    let st = dst_qmp.execute(&QueryStatus).await.expect("dst status");
    assert_eq!(
        st.status,
        RunState::Inmigrate,
        "destination waits for migration"
    );
    (dst, dst_qmp)
}

async fn quit(p: &mut QemuProcess, c: &QmpClient) {
    let _ = c.execute(&Quit).await;
    let _ = p.terminate(Duration::from_secs(3)).await;
}

// ---------------------------------------------------------------- the tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_migrate_keeps_tcp_connection() {
    const TEST: &str = "qemu_migrate_keeps_tcp_connection";
    let Some(guest) = netns_tests::require_qemu_guest(TEST) else {
        return;
    };
    let _one_at_a_time = SERIAL.lock().await;
    let t0 = Instant::now();
    let topo = Topology::new(TEST);
    let (mut src, src_qmp) = boot_source(&topo, &guest).await;
    let (mut dst, dst_qmp) = start_destination(&topo, &guest).await;

    let conn = connect_from(&topo.cli.0, guest_addr(), Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("connect to the guest: {e}\n{}", topo.logs()));
    let stream = EchoStream::start(conn).expect("start the echo stream");
    let before = tokio::task::block_in_place(|| stream.wait_echoed(4096, Duration::from_secs(30)))
        .unwrap_or_else(|e| panic!("echo works before migration: {e:#}\n{}", topo.logs()));
    assert!(
        before.received > 0 && before.corrupt_at.is_none(),
        "echo works before migration: {before:?}\n{}",
        topo.logs()
    );

    // Move the network the moment the guest is live at the destination: its
    // RARP self-announce seen on host b, or QEMU's RESUME event there, whichever
    // comes first (both are recorded).
    let mut dst_events = dst_qmp.subscribe();
    let rarp_stop = Arc::new(AtomicBool::new(false));
    let mut rarp = watch_rarp(&topo.b.0, mac_bytes(GUEST_MAC), Arc::clone(&rarp_stop));
    let started = Instant::now();
    let mover = async {
        let resume = migration::wait_for_event(&mut dst_events, Duration::from_secs(60), |e| {
            e.kind() == EventKind::Resume
        });
        tokio::pin!(resume);
        let (mut resumed, mut rarp_at, signal) = tokio::select! {
            ev = &mut resume => {
                (Some(ev.map(|_| started.elapsed()).unwrap_or_else(|e| panic!("no RESUME at the destination: {e}"))), None, "RESUME")
            }
            t = &mut rarp => (None, t.ok().map(|t| t - started), "RARP"),
        };
        topo.move_guest_to_b();
        let moved = started.elapsed();
        // Wait (briefly) for the other signal too, to report both.
        if resumed.is_none() {
            resumed = tokio::time::timeout(Duration::from_secs(5), resume)
                .await
                .ok()
                .and_then(Result::ok)
                .map(|_| started.elapsed());
        }
        if rarp_at.is_none() {
            rarp_at = tokio::time::timeout(Duration::from_secs(2), rarp)
                .await
                .ok()
                .and_then(Result::ok)
                .map(|t| t - started);
        }
        (signal, resumed, rarp_at, moved)
    };
    let opts = low_downtime_guest_migration();
    let uri = format!("tcp:{DST_UL}:{MIGRATION_PORT}");
    let (result, (signal, resumed, rarp_at, moved)) =
        tokio::join!(migration::migrate(&src_qmp, &uri, &opts), mover);
    rarp_stop.store(true, Ordering::Relaxed);
    let report = result.unwrap_or_else(|e| panic!("migration failed: {e}\n{}", topo.logs()));

    // Keep the stream going a while at the new place (3 s of it echoed), then
    // check every byte.
    let flowing =
        tokio::task::block_in_place(|| stream.wait_echoed(38_400, Duration::from_secs(60)));
    if let Err(e) = flowing {
        eprintln!("{e:#}");
    }
    let (written, stats, wres) = stream.finish();
    let gap_at = stats
        .max_gap_ended
        .map(|t| t.saturating_duration_since(started));

    let dst_status = dst_qmp.execute(&QueryStatus).await.expect("dst status");
    let src_status = src_qmp.execute(&QueryStatus).await.expect("src status");

    eprintln!(
        "\n=== qemu live migration (TCG, {} MiB guest) ===\n\
         {}\n\
         QEMU total time   : {} ms\n\
         QEMU downtime     : {} ms\n\
         transferred       : {} bytes\n\
         RESUME at dst     : +{:?} after migrate\n\
         RARP on host b    : +{:?} after migrate\n\
         network moved     : +{:?} after migrate (on {})\n\
         TCP stream gap    : {:?} (max inter-arrival, ended +{:?} after migrate)\n\
         TCP bytes echoed  : {} of {} written, first corrupt byte: {:?}\n\
         whole test        : {:?}\n",
        128,
        report.summary(),
        report.total_time_ms.unwrap_or(-1),
        report.downtime_ms.unwrap_or(-1),
        report.transferred_bytes.unwrap_or(0),
        resumed,
        rarp_at,
        moved,
        signal,
        stats.max_gap,
        gap_at,
        stats.received,
        written,
        stats.corrupt_at,
        t0.elapsed(),
    );

    assert_eq!(report.status, MigrationStatus::Completed);
    assert!(resumed.is_some(), "RESUME seen at the destination");
    assert!(
        rarp_at.is_some(),
        "QEMU announced the guest with RARP on host b"
    );
    assert!(dst_status.running, "destination runs: {dst_status:?}");
    assert_eq!(src_status.status, RunState::Postmigrate);
    assert!(wres.is_ok(), "writer: {wres:?}");
    assert_eq!(stats.error, None, "stream error\n{}", topo.logs());
    assert_eq!(stats.corrupt_at, None, "bytes intact");
    assert_eq!(stats.received, written, "every byte echoed back");

    quit(&mut dst, &dst_qmp).await;
    quit(&mut src, &src_qmp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_migrate_destination_killed_leaves_source_running() {
    const TEST: &str = "qemu_migrate_destination_killed_leaves_source_running";
    let Some(guest) = netns_tests::require_qemu_guest(TEST) else {
        return;
    };
    let _one_at_a_time = SERIAL.lock().await;
    let topo = Topology::new(TEST);
    let (mut src, src_qmp) = boot_source(&topo, &guest).await;
    let (mut dst, dst_qmp) = start_destination(&topo, &guest).await;
    drop(dst_qmp);

    let conn = connect_from(&topo.cli.0, guest_addr(), Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("connect to the guest: {e}\n{}", topo.logs()));
    let stream = EchoStream::start(conn).expect("start the echo stream");
    tokio::task::block_in_place(|| stream.wait_echoed(4096, Duration::from_secs(30)))
        .unwrap_or_else(|e| panic!("echo works before migration: {e:#}\n{}", topo.logs()));

    // A slow migration (capped bandwidth) so that it is surely midway when the
    // destination is killed.
    let opts = guest_migration(MigrationParameters {
        max_bandwidth: Some(2 * 1024 * 1024),
        ..Default::default()
    });
    let mut src_events = src_qmp.subscribe();
    let uri = format!("tcp:{DST_UL}:{MIGRATION_PORT}");
    let dst_pid = dst.pid();
    let killer = async {
        migration::wait_for_event(&mut src_events, Duration::from_secs(30), |e| {
            e.kind() == EventKind::Migration(MigrationStatus::Active)
        })
        .await
        .expect("migration becomes active");
        tokio::time::sleep(Duration::from_millis(700)).await;
        eprintln!("killing the destination QEMU (pid {dst_pid}) mid-migration");
        dst.kill().await.expect("kill destination");
    };
    let (result, ()) = tokio::join!(migration::migrate(&src_qmp, &uri, &opts), killer);
    let err = match result {
        Ok(r) => panic!("migration should have failed: {}", r.summary()),
        Err(e) => e,
    };
    eprintln!("migration failed as expected: {err}");
    let report = match &err {
        MigrationError::Failed { report } => report,
        other => panic!("expected a failed migration, got {other}"),
    };
    assert_eq!(report.status, MigrationStatus::Failed);
    assert!(
        report.transferred_bytes.unwrap_or(0) > 0,
        "it was midway: {}",
        report.summary()
    );
    assert_eq!(report.source_running, Some(true), "{}", report.summary());

    // The source still runs and still answers, on the same connection and a new one.
    let st = src_qmp.execute(&QueryStatus).await.expect("src status");
    assert!(st.running, "source runs: {st:?}");
    let flowing = tokio::task::block_in_place(|| stream.wait_echoed(4096, Duration::from_secs(30)));
    if let Err(e) = flowing {
        eprintln!("{e:#}");
    }
    let (written, stats, wres) = stream.finish();
    eprintln!(
        "after the failed migration: {} of {} bytes echoed, max gap {:?}",
        stats.received, written, stats.max_gap
    );
    assert!(wres.is_ok(), "writer: {wres:?}");
    assert_eq!(stats.error, None, "stream error\n{}", topo.logs());
    assert_eq!(stats.corrupt_at, None, "bytes intact");
    assert_eq!(stats.received, written, "every byte echoed back");
    let mut fresh = connect_from(&topo.cli.0, guest_addr(), Duration::from_secs(10))
        .expect("new connection to the source VM");
    fresh
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    fresh.write_all(b"still here\n").expect("write");
    let mut buf = [0u8; 11];
    fresh.read_exact(&mut buf).expect("echo");
    assert_eq!(&buf, b"still here\n");

    quit(&mut src, &src_qmp).await;
}
