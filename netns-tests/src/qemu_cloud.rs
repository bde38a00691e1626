//! What the tests that migrate a real QEMU guest between `scd` hosts share: the
//! QEMUs' migration TLS directories from the cloud's PKI (host1 the source,
//! host2 the destination), the persistent TAPs the QEMUs attach to, the
//! switches with a raw port on those TAPs, the QEMU at each end of a migration
//! over TLS (spawned from the test's configuration), a client's TCP connection
//! to the guest, and the tails of the QEMUs' logs for failure messages.

use crate::{Internet, KeyPair, Scd, Vm};
use anyhow::{bail, Result};
use hypervisor_glue::tls::{self, Endpoint, HostCredentials};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The name of the persistent TAP each QEMU attaches to, in its host's namespace.
pub const QTAP: &str = "qtap0";

/// The migration TLS directories of the source (host1's certificate, client
/// end) and the destination (host2's, server end), in `dir`, from the cloud's
/// PKI at `dir`/[`crate::pki::DIR`] (made for `hosts` hosts when missing).
pub fn migration_tls(dir: &Path, hosts: usize) -> Result<(PathBuf, PathBuf)> {
    let pki_dir = crate::pki::ensure(&dir.join(crate::pki::DIR), hosts)?;
    let creds = |host: &str| {
        let id = crate::pki::Identity::of(&pki_dir, host);
        HostCredentials {
            ca_cert: id.ca,
            certificate: id.cert,
            private_key: id.key,
        }
    };
    Ok((
        tls::creds_dir(&dir.join("src-tls"), Endpoint::Client, &creds("host1"))?,
        tls::creds_dir(&dir.join("dst-tls"), Endpoint::Server, &creds("host2"))?,
    ))
}

/// Creates [`QTAP`] (MTU `mtu`, up) on hosts 1 and 2: it exists before `scd`
/// opens its raw port on it, and stays when a QEMU goes.
pub fn qemu_taps(net: &Internet, mtu: u32) -> Result<()> {
    for host in [&net.hosts[1], &net.hosts[2]] {
        host.ip(&["tuntap", "add", "dev", QTAP, "mode", "tap"])?;
        host.ip(&["link", "set", QTAP, "mtu", &mtu.to_string(), "up"])?;
    }
    Ok(())
}

/// Starts every host's `scd` from `inventory`, the guest's port on host1 a raw
/// port on [`QTAP`] and host2 with raw port 2 on its [`QTAP`] ready;
/// `more(config)` edits each configuration first.
pub fn start_qemu_switches(
    net: &Internet,
    inventory: &Path,
    keys: &[KeyPair],
    more: impl Fn(String) -> Result<String>,
) -> Result<Vec<Scd>> {
    crate::cloud::start_switches_edited(net, inventory, keys, |i, config| {
        let config = more(config)?;
        Ok(match i {
            1 => {
                let section = format!("name = \"{QTAP}\"\n");
                anyhow::ensure!(config.contains(&section), "the guest's port in {config}");
                config.replace(&section, &format!("{section}type = \"raw\"\n"))
            }
            2 => config + &format!("[[port]]\nnumber = 2\nname = \"{QTAP}\"\ntype = \"raw\"\n"),
            _ => config,
        })
    })
}

/// A TCP connection from `vm`'s namespace to `to`, retried for `within`.
pub fn connect_from(vm: &Vm, to: SocketAddr, within: Duration) -> Result<TcpStream> {
    vm.ns.enter(move || -> Result<TcpStream> {
        let end = Instant::now() + within;
        loop {
            match TcpStream::connect_timeout(&to, Duration::from_secs(1)) {
                Ok(c) => return Ok(c),
                Err(e) if Instant::now() > end => bail!("connect to the guest {to}: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    })?
}

/// The last lines of the source's and destination's serial consoles and QEMU
/// logs in `dir` (`src.serial`, `src.stderr`, `dst.serial`, `dst.stderr`).
pub fn qemu_logs(dir: &Path) -> String {
    let mut s = String::new();
    for f in ["src.serial", "src.stderr", "dst.serial", "dst.stderr"] {
        let text = std::fs::read_to_string(dir.join(f)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(10)..].join("\n    ");
        s += &format!("--- {f}:\n    {tail}\n");
    }
    s
}

/// The guest's overlay address (its inventory entry, [`guest_inventory_entry`]).
pub const GUEST_IP: &str = "100.64.7.10";
/// The guest's MAC, the same at both QEMUs.
pub const GUEST_MAC: &str = "52:54:00:64:07:0a";
/// The client VM's overlay address, on host0.
pub const CLIENT_IP: &str = "100.64.1.1";
/// The client VM's MAC.
pub const CLIENT_MAC: &str = "02:00:00:00:01:01";
/// The guest's TCP echo port (`sc.port`).
pub const ECHO_PORT: u16 = 7;
/// Where the destination QEMU listens for the migration stream.
pub const MIGRATION_PORT: u16 = 4444;
/// The MTU of the QEMUs' TAPs and the one announced to the guest.
pub const QEMU_MTU: u32 = 1420;
/// What the guest prints on its console once it is up.
pub const READY: &str = "SC-GUEST-READY";
/// Time allowed for one QMP command or connection.
pub const QMP_TIMEOUT: Duration = Duration::from_secs(10);

/// The guest's NIC on [`QTAP`]: its MAC, MTU [`QEMU_MTU`] announced (virtio
/// `host_mtu`), and no segmentation offload (a raw port refuses super-frames;
/// checksum offload stays on and the raw port finishes checksums).
pub fn guest_nic_args() -> Vec<String> {
    vec![
        "-netdev".into(),
        format!("tap,id=net0,ifname={QTAP},script=no,downscript=no"),
        "-device".into(),
        format!(
            "virtio-net-pci,netdev=net0,mac={GUEST_MAC},host_mtu={QEMU_MTU},\
             host_tso4=off,host_tso6=off,host_ufo=off,host_uso=off,host_ecn=off"
        ),
    ]
}

/// The guest `vm1` in the inventory: on host1, port 1, on [`QTAP`].
pub fn guest_inventory_entry() -> String {
    format!(
        "[[vm]]\nname = \"vm1\"\nmac = \"{GUEST_MAC}\"\nip = \"{GUEST_IP}\"\nhost = \"host1\"\nport = 1\ntap = \"{QTAP}\"\ntenant = \"t\"\n"
    )
}

/// The source's QEMU from `config`, with the migration TLS credentials of
/// `src_tls` (client end), its QMP connected.
pub async fn spawn_tls_source(
    mut config: hypervisor_glue::QemuConfig,
    src_tls: &Path,
) -> Result<(hypervisor_glue::QemuProcess, hypervisor_glue::QmpClient)> {
    config
        .extra_args
        .extend(tls::object_args(src_tls, Endpoint::Client));
    let mut p = hypervisor_glue::QemuProcess::spawn(config)?;
    let c = p.connect_qmp(QMP_TIMEOUT).await?;
    Ok((p, c))
}

/// The destination's QEMU from `config` on host2: waiting for the migration on
/// host2's underlay address, port [`MIGRATION_PORT`], over TLS only with the
/// credentials of `dst_tls` (server end), its QMP connected.
pub async fn spawn_tls_destination(
    mut config: hypervisor_glue::QemuConfig,
    dst_tls: &Path,
) -> Result<(hypervisor_glue::QemuProcess, hypervisor_glue::QmpClient)> {
    let dst_ul = Internet::host_addr(2);
    config.incoming = Some(hypervisor_glue::Incoming::Tcp(format!(
        "{dst_ul}:{MIGRATION_PORT}"
    )));
    config
        .extra_args
        .extend(tls::object_args(dst_tls, Endpoint::Server));
    let mut p = hypervisor_glue::QemuProcess::spawn(config)?;
    let c = p.connect_qmp(QMP_TIMEOUT).await?;
    // Before the source connects: the destination takes the stream over TLS only.
    c.execute(&tls::with_tls(
        hypervisor_glue::MigrationParameters::default(),
        None,
    ))
    .await?;
    Ok((p, c))
}

/// `quit` over QMP, then the process ended by PID if it is still there.
pub async fn quit(p: &mut hypervisor_glue::QemuProcess, c: &hypervisor_glue::QmpClient) {
    let _ = c.execute(&hypervisor_glue::commands::Quit).await;
    let _ = p.terminate(Duration::from_secs(5)).await;
}

/// Asserts that the client's echo stream survived the move: no error, every
/// byte written came back intact; `logs` is shown when it did not.
pub fn assert_stream_survived(
    written: u64,
    stats: &crate::StreamStats,
    writer: &Result<(), String>,
    logs: &str,
) {
    assert_eq!(stats.error, None, "the stream survives\n{logs}");
    assert!(writer.is_ok(), "writer: {writer:?}");
    assert_eq!(stats.corrupt_at, None, "bytes intact");
    assert_eq!(stats.received, written, "every byte echoed back");
}

/// A 128 MiB TCG guest named `{name}-{role}` whose QMP socket, serial console
/// and QEMU log are `role.qmp`, `role.serial` and `role.stderr` in `dir` (what
/// [`qemu_logs`] reads); the rest is the caller's.
pub fn guest_config(
    guest: &crate::Guest,
    name: &str,
    dir: &Path,
    role: &str,
) -> hypervisor_glue::QemuConfig {
    let mut c = hypervisor_glue::QemuConfig::new(
        format!("{name}-{role}"),
        &guest.kernel,
        &guest.initrd,
        dir.join(format!("{role}.qmp")),
        dir.join(format!("{role}.serial")),
    );
    c.stderr_log = Some(dir.join(format!("{role}.stderr")));
    c.memory_mib = 128;
    c
}
