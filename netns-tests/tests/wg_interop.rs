//! Interoperability: a tunnel between `scd` and Debian's `wireguard-go` (configured
//! with `wg` from wireguard-tools) carries ping and TCP, proving `scd` speaks the real
//! WireGuard protocol and that keys made by `wg genkey`/`scd pubkey` are the same
//! format.

use anyhow::{bail, Context, Result};
use netns_tests::{require_root, run, unique, Scd, Vm, VmAddress};
use netns_tests::{scd_config_head, GATEWAY_MAC};
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const GW_MAC: &str = GATEWAY_MAC;
const A1: &str = "100.64.1.1";
const WG_SIDE: &str = "100.64.9.1";

/// A `wireguard-go` process in the foreground, ended by PID when dropped.
struct WireguardGo {
    child: Child,
}

impl Drop for WireguardGo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// True when `tool` is installed; otherwise says so loudly, and fails under CI.
fn have(tool: &str, package: &str) -> Result<bool> {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()?
        .status
        .success();
    if found {
        return Ok(true);
    }
    let msg = format!("`{tool}` is missing: apt-get install {package} (scripts/test.sh does)");
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        bail!("{msg}");
    }
    eprintln!("\n*** wg_interop: NOT RUN because {msg} (this would fail under CI=true) ***\n");
    Ok(false)
}

fn wg(args: &[&str], input: Option<&str>) -> Result<String> {
    let mut child = Command::new("wg")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(input) = input {
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "wg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

#[test]
fn scd_and_wireguard_go_share_a_tunnel() -> Result<()> {
    if !require_root("scd_and_wireguard_go_share_a_tunnel") {
        return Ok(());
    }
    if !have("wireguard-go", "wireguard-go")? || !have("wg", "wireguard-tools")? {
        return Ok(());
    }

    // Keys: wireguard-go's made by `wg`, scd's by scd; each side reads the other's.
    let wg_private = wg(&["genkey"], None)?;
    let wg_public = wg(&["pubkey"], Some(&wg_private))?;
    let scd_keys = netns_tests::KeyPair::generate()?;
    assert_eq!(
        wg(&["pubkey"], Some(&scd_keys.private))?,
        scd_keys.public,
        "wg and scd derive the same public key"
    );

    let (host, peer) = netns_tests::linked_pair(&unique("wgio-host-"), &unique("wgio-wggo-"))?;

    let a1 = Vm::with_tap(
        &unique("wgio-a1-"),
        &unique("sct"),
        VmAddress::overlay("02:00:00:00:01:01", A1),
        1420,
    )?;
    let config = format!(
        "{}[tunnel]\nprivate_key_file = \"key\"\nlisten = \"51820\"\n{}\
         [[peer]]\nport = 101\nname = \"wggo\"\npublic_key = \"{wg_public}\"\nendpoint = \"192.0.2.2:51821\"\n",
        scd_config_head("1", "host-a", true),
        a1.port_section(1)
    );
    let flows = format!(
        "priority=100,ip,nw_dst={A1},actions=set_field:{GW_MAC}->eth_src,set_field:02:00:00:00:01:01->eth_dst,output:1\n\
         priority=100,ip,nw_dst={WG_SIDE},actions=output:101\n"
    );
    let scd = Scd::start_with_key(&host, &config, Some(&flows), &scd_keys.private)?;

    // wireguard-go in the peer namespace, configured with wg.
    let ifname = unique("wgo");
    let child = peer
        .command("wireguard-go")
        .args(["-f", &ifname])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let _wggo = WireguardGo { child };
    let deadline = Instant::now() + Duration::from_secs(10);
    while peer.ip(&["link", "show", &ifname]).is_err() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "wireguard-go did not create {ifname}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let key_file = scd.dir.path().join("wggo.key");
    std::fs::write(&key_file, &wg_private)?;
    run(peer.command("wg").args([
        "set",
        &ifname,
        "listen-port",
        "51821",
        "private-key",
        key_file.to_str().context("path")?,
        "peer",
        &scd_keys.public,
        "endpoint",
        "192.0.2.1:51820",
        "allowed-ips",
        "100.64.1.0/24",
    ]))?;
    peer.ip(&["addr", "add", &format!("{WG_SIDE}/32"), "dev", &ifname])?;
    peer.ip(&["link", "set", &ifname, "mtu", "1420", "up"])?;
    peer.ip(&["route", "add", "100.64.1.0/24", "dev", &ifname])?;

    // Ping both ways, then a TCP stream from the VM to the wireguard-go side. The
    // handshake scd sent at start went nowhere (wireguard-go was not up yet), so the
    // first packet waits for WireGuard's retry (REKEY_TIMEOUT, 5 s).
    let out = a1
        .ns
        .command("ping")
        .args(["-c", "1", "-w", "15", WG_SIDE])
        .output()?;
    assert!(
        out.status.success(),
        "a1 -> wireguard-go: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        scd.log()
    );
    let out = peer
        .command("ping")
        .args(["-c", "2", "-i", "0.2", "-W", "2", A1])
        .output()?;
    assert!(
        out.status.success(),
        "wireguard-go -> a1: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    const BYTES: u64 = 20 << 20;
    let t = netns_tests::tcp_transfer(&a1.ns, &peer, WG_SIDE.parse()?, 9000, BYTES)?;
    assert_eq!(t.received, BYTES);
    assert!(
        t.intact(BYTES),
        "20 MiB through scd <-> wireguard-go intact"
    );

    let handshakes = peer
        .command("wg")
        .args(["show", &ifname, "latest-handshakes"])
        .output()?;
    let text = String::from_utf8_lossy(&handshakes.stdout);
    let stamp: u64 = text
        .split_whitespace()
        .nth(1)
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    assert!(
        stamp > 0,
        "wireguard-go records a handshake with scd: {text}"
    );
    assert!(scd.metric("scd_port_bytes_total", &["name=\"wg-wggo\"", "dir=\"tx\""])? >= BYTES);
    Ok(())
}
