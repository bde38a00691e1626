//! Ports that come and go, as an OpenFlow client sees them: `ovs-ofctl monitor`
//! on `scd`'s `punix:` listener gets a port-status (modify) with `PORT_DOWN` and
//! `LINK_DOWN` when a port's link is brought down and one with `LIVE` when it
//! comes back, an add and a delete when `scd port add`/`del` change the running
//! switch, one (modify) when a port-mod changes a port's configuration, and
//! port-desc reports the true state meanwhile. A controller's add-port and
//! del-port (Supercloud experimenter messages) do what `scd port` does, and a
//! clashing add-port is answered with an error. A port that cannot be
//! added (a number taken) is refused with the reason and changes nothing.

use anyhow::{Context, Result};
use netns_tests::ofctl::{ofctl, Monitor};
use netns_tests::{require_program, require_root, scd_config_head, unique};
use netns_tests::{wait_until, Netns, Scd};
use openflow::wire::{
    decode, encode, peek_header, port_mod_failed, AddPort, DelPort, ErrorMsg, Hello, Message,
};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(30);

/// A switch in its own namespace with one TAP port (number 1, made by `scd`),
/// an OpenFlow `punix:` listener and a control socket, watched by
/// `ovs-ofctl monitor`. Fields drop in the order they are declared: the
/// monitor and `scd` stop before the directory of their sockets and the
/// namespace go. Keep it whole (`let sw = ...`, then `sw.field`): a pattern
/// that leaves fields out (`let MonitoredSwitch { scd, .. } = ...`) drops
/// those fields at once, the directory of the sockets with them.
struct MonitoredSwitch {
    monitor: Monitor,
    scd: Scd,
    /// The OpenFlow target of `ovs-ofctl`: `unix:` and the listener's path.
    target: String,
    /// The `punix:` listener's socket.
    of: PathBuf,
    /// The control socket (`scd port`).
    ctl: PathBuf,
    /// The TAP of port 1, in `host`.
    tap: String,
    _dir: tempfile::TempDir,
    host: Netns,
}

/// Starts a [`MonitoredSwitch`]: its namespace, directory and `scd` named after
/// `name`, its TAP after `tap_prefix` (short: an interface name has 15 bytes),
/// `scd`'s datapath id `datapath_id`; returns once the switch counts the
/// monitor's connection.
fn monitored_switch(name: &str, tap_prefix: &str, datapath_id: &str) -> Result<MonitoredSwitch> {
    let host = Netns::new(&unique(&format!("{name}-")))?;
    let dir = tempfile::Builder::new().prefix(name).tempdir()?;
    let of = dir.path().join("scd.mgmt");
    let ctl = dir.path().join("scd.ctl");
    let tap = unique(tap_prefix);
    let config = format!(
        "{}[openflow]\nlisten = \"punix:{}\"\n[control]\nsocket = \"{}\"\n\
         [[port]]\nnumber = 1\nname = \"{tap}\"\n",
        scd_config_head(&format!("\"{datapath_id}\""), name, false),
        of.display(),
        ctl.display()
    );
    let scd = Scd::start(&host, &config, None)?;
    let target = format!("unix:{}", of.display());
    let monitor = Monitor::start(&host, &target, &[])?;
    // The monitor is connected once the switch counts its connection.
    wait_until(PATIENCE, "ovs-ofctl monitor connected", || {
        Ok(scd.metric("scd_openflow_connections", &[])? >= 1)
    })?;
    Ok(MonitoredSwitch {
        monitor,
        scd,
        target,
        of,
        ctl,
        tap,
        _dir: dir,
        host,
    })
}

fn send(stream: &mut UnixStream, msg: &Message, xid: u32) -> Result<()> {
    stream.write_all(&encode(msg, xid)?)?;
    Ok(())
}

/// Sends `msg` then a barrier, and returns the error the switch answered `msg`
/// with, if any (every other message before the barrier's reply is skipped).
fn ask(stream: &mut UnixStream, msg: &Message, xid: u32) -> Result<Option<ErrorMsg>> {
    send(stream, msg, xid)?;
    send(stream, &Message::BarrierRequest, xid + 1)?;
    let mut error = None;
    loop {
        let mut head = vec![0u8; 8];
        stream.read_exact(&mut head)?;
        let header = peek_header(&head).context("an OpenFlow header")?;
        head.resize(usize::from(header.length), 0);
        stream.read_exact(&mut head[8..])?;
        match decode(&head) {
            Ok((x, Message::Error(e))) if x == xid => error = Some(e),
            Ok((x, Message::BarrierReply)) if x == xid + 1 => return Ok(error),
            _ => {}
        }
    }
}

#[test]
fn link_changes_and_ports_added_at_run_time_are_announced_as_port_status() -> Result<()> {
    let test = "link_changes_and_ports_added_at_run_time_are_announced_as_port_status";
    if !require_root(test) || !require_program(test, "ovs-ofctl") {
        return Ok(());
    }
    let sw = monitored_switch("portstatus", "pst", "0x5c05")?;
    let (host, scd, monitor) = (&sw.host, &sw.scd, &sw.monitor);
    let (target, tap) = (sw.target.as_str(), sw.tap.as_str());
    let (of, ctl) = (sw.of.as_path(), sw.ctl.as_path());
    let desc = ofctl(host, target, &["dump-ports-desc", "{}"])?;
    assert!(
        desc.contains(&format!("1({tap})")) && desc.contains("LIVE"),
        "{desc}"
    );

    host.ip(&["link", "set", tap, "down"])?;
    monitor.wait_for(
        "OFPT_PORT_STATUS",
        "a port-status with the link down",
        &["MOD", &format!("1({tap})"), "PORT_DOWN", "LINK_DOWN"],
    )?;
    let desc = ofctl(host, target, &["dump-ports-desc", "{}"])?;
    assert!(
        desc.contains("LINK_DOWN") && desc.contains("PORT_DOWN"),
        "{desc}"
    );

    host.ip(&["link", "set", tap, "up"])?;
    monitor.wait_for(
        "OFPT_PORT_STATUS",
        "a port-status with the link up again",
        &["MOD", &format!("1({tap})"), "LIVE"],
    )?;

    // A controller's port-mod: announced, reported, and undone.
    let monitored = monitor.text().matches("OFPT_PORT_STATUS").count();
    ofctl(host, target, &["mod-port", "{}", tap, "no-forward"])?;
    monitor.wait_for(
        "OFPT_PORT_STATUS",
        "a port-status after port-mod",
        &["MOD", &format!("1({tap})"), "NO_FWD"],
    )?;
    assert!(monitor.text().matches("OFPT_PORT_STATUS").count() > monitored);
    let desc = ofctl(host, target, &["dump-ports-desc", "{}"])?;
    assert!(desc.contains("NO_FWD"), "{desc}");
    ofctl(host, target, &["mod-port", "{}", tap, "forward"])?;
    let desc = ofctl(host, target, &["dump-ports-desc", "{}"])?;
    assert!(!desc.contains("NO_FWD"), "{desc}");

    let scd_port = |args: &[&str]| netns_tests::scd_port(host, ctl, args);
    let added = unique("psa");
    let out = scd_port(&["add", "--name", &added, "--ofport", "7"])?;
    assert!(out.status.success(), "{out:?}\n{}", scd.log());
    monitor.wait_for(
        "OFPT_PORT_STATUS",
        "a port-status (add)",
        &["ADD", &format!("7({added})")],
    )?;

    let clash = scd_port(&["add", "--name", &unique("psc"), "--ofport", "7"])?;
    let stderr = String::from_utf8_lossy(&clash.stderr);
    assert!(!clash.status.success(), "a second port 7 was added");
    assert!(
        stderr.starts_with("scd: error: ") && stderr.contains("clashes with port 7"),
        "{stderr}"
    );

    let out = scd_port(&["del", "--ofport", "7"])?;
    assert!(out.status.success(), "{out:?}");
    monitor.wait_for(
        "OFPT_PORT_STATUS",
        "a port-status (delete)",
        &["DEL", &format!("7({added})")],
    )?;

    // The controller's way in: add-port and del-port over OpenFlow.
    let mut of_client = std::os::unix::net::UnixStream::connect(of)?;
    of_client.set_read_timeout(Some(PATIENCE))?;
    send(&mut of_client, &Message::Hello(Hello::of13()), 1)?;
    let by_controller = unique("psk");
    let add = Message::AddPort(AddPort {
        port: 8,
        raw: false,
        attach: false,
        name: by_controller.clone(),
        mac: None,
        ips: Vec::new(),
    });
    assert_eq!(ask(&mut of_client, &add, 5)?, None, "{}", scd.log());
    monitor.wait_for(
        "OFPT_PORT_STATUS",
        "a port-status (add, by the controller)",
        &["ADD", &format!("8({by_controller})")],
    )?;
    let again = Message::AddPort(AddPort {
        name: unique("psk"),
        ..match add {
            Message::AddPort(a) => a,
            _ => unreachable!(),
        }
    });
    let refused = ask(&mut of_client, &again, 7)?.context("a second port 8 was accepted")?;
    assert_eq!(
        refused.code.to_wire(),
        (port_mod_failed::TYPE, port_mod_failed::BAD_PORT)
    );
    assert_eq!(
        ask(&mut of_client, &Message::DelPort(DelPort { port: 8 }), 9)?,
        None
    );
    monitor.wait_for(
        "OFPT_PORT_STATUS",
        "a port-status (delete, by the controller)",
        &["DEL", &format!("8({by_controller})")],
    )?;

    let listed = String::from_utf8_lossy(&scd_port(&["list"])?.stdout).into_owned();
    assert!(listed.contains(tap) && !listed.contains(&added), "{listed}");
    // A TAP scd created goes away with its port.
    assert!(
        host.ip(&["link", "show", &added]).is_err(),
        "{added} outlived its port"
    );
    Ok(())
}

#[test]
fn a_tap_deleted_under_scd_is_announced_down() -> Result<()> {
    let test = "a_tap_deleted_under_scd_is_announced_down";
    if !require_root(test) || !require_program(test, "ovs-ofctl") {
        return Ok(());
    }
    let sw = monitored_switch("tapgone", "ptg", "0x5c06")?;
    let (host, scd, monitor, tap) = (&sw.host, &sw.scd, &sw.monitor, sw.tap.as_str());
    // The TAP moves into a VM's namespace, out of the link watcher's sight,
    // and goes with it.
    let vm = Netns::new(&unique("tapgone-vm-"))?;
    host.ip(&["link", "set", tap, "netns", vm.name()])?;
    drop(vm);
    monitor.wait_for(
        "OFPT_PORT_STATUS",
        "a port-status with the deleted TAP's link down",
        &["MOD", &format!("1({tap})"), "LINK_DOWN"],
    )?;
    let listed = String::from_utf8_lossy(&netns_tests::scd_port(host, &sw.ctl, &["list"])?.stdout)
        .into_owned();
    assert!(listed.contains("down"), "{listed}");
    assert!(
        scd.log().contains("the port's device is gone"),
        "{}",
        scd.log()
    );
    Ok(())
}
