//! What the tests that migrate a real QEMU guest between `scd` hosts share: the
//! QEMUs' migration TLS directories from the cloud's PKI (host1 the source,
//! host2 the destination), the persistent TAPs the QEMUs attach to, the
//! switches with a raw port on those TAPs, a client's TCP connection to the
//! guest, and the tails of the QEMUs' logs for failure messages. It starts no
//! QEMU itself.

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
