//! `scd` driven by real OpenFlow 1.3 controllers, with real traffic between two
//! VM namespaces on one L2 segment (addresses outside the overlay, so `scd`'s
//! anycast ARP stays out of the way and the controller does all the switching):
//! os-ken running a learning switch that behaves as its sample `simple_switch_13`
//! (`apps/learning_switch_13.py`, since the os-ken wheel does not ship the
//! samples: table-miss to the controller unbuffered, learning from packet-ins,
//! packet-out floods) and Faucet with `egress_pipeline: True`
//! (set-async at connect, write-metadata and metadata matches, its egress table).
//!
//! Both come from one Python virtual environment that `scripts/install-faucet.sh`
//! makes (Faucet pulls os-ken in); without it the tests say so loudly and fail
//! under `CI=true`.

use anyhow::{bail, Result};
use netns_tests::two_vms::switch_with_two_vms;
use netns_tests::{require_root, scd_config_head, unique, Netns, Scd, Vm, VmAddress};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where `scripts/install-faucet.sh` puts the environment (`SC_FAUCET_VENV`
/// overrides it).
const DEFAULT_VENV: &str = "/opt/sc-faucet";
const VM1: VmAddress<'static> = VmAddress {
    mac: "02:00:00:00:0c:01",
    ip: "198.51.100.1",
    prefix_len: 24,
};
const VM2: VmAddress<'static> = VmAddress {
    mac: "02:00:00:00:0c:02",
    ip: "198.51.100.2",
    prefix_len: 24,
};

/// The environment's `bin/NAME`, or None (a failure under `CI=true`).
fn venv_program(test: &str, name: &str) -> Option<PathBuf> {
    let venv =
        std::env::var_os("SC_FAUCET_VENV").map_or_else(|| DEFAULT_VENV.into(), PathBuf::from);
    let program = venv.join("bin").join(name);
    if program.is_file() {
        return Some(program);
    }
    let why = format!(
        "{test}: {} is missing: run scripts/install-faucet.sh",
        program.display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{why} (CI=true: not skipping)");
    }
    eprintln!("\n!! SKIPPED {why}\n");
    None
}

/// `PATH` with the environment's `bin` first: `faucet` runs `osken-manager` by
/// name.
fn with_venv_on_path(program: &std::path::Path) -> std::ffi::OsString {
    let bin = program.parent().map(PathBuf::from).unwrap_or_default();
    let rest = std::env::var_os("PATH").unwrap_or_default();
    std::env::join_paths(std::iter::once(bin).chain(std::env::split_paths(&rest))).unwrap_or(rest)
}

/// A controller process in the host namespace, killed (by its own pid) on drop.
struct Controller {
    child: Child,
    log: PathBuf,
}

impl Controller {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Host {
    // Field order is drop order: stop scd and the controller before the namespaces.
    scd: Scd,
    controller: Controller,
    vm1: Vm,
    _vm2: Vm,
    host: Netns,
    _dir: tempfile::TempDir,
}

/// One host whose `scd` (datapath `dpid`) calls the controller `start` runs in
/// its namespace on 127.0.0.1:6653.
fn setup(
    test: &str,
    dpid: &str,
    start: impl FnOnce(&Netns, &std::path::Path) -> Result<Command>,
) -> Result<Host> {
    let host = Netns::new(&unique(&format!("{test}-host-")))?;
    host.ip(&["link", "set", "lo", "up"])?;
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("controller.log");
    let out = std::fs::File::create(&log)?;
    let child = start(&host, dir.path())?
        .stdout(out.try_clone()?)
        .stderr(out)
        .stdin(Stdio::null())
        .spawn()?;
    let controller = Controller { child, log };
    let (scd, vm1, vm2) = switch_with_two_vms(
        test,
        &host,
        &scd_config_head(&format!("\"{dpid}\""), "ctl13-host", false),
        "listen = \"ptcp:6654\"\ncontrollers = [\"tcp:127.0.0.1:6653\"]\nreconnect_max_ms = 500",
        [VM1, VM2],
    )?;
    Ok(Host {
        scd,
        controller,
        vm1,
        _vm2: vm2,
        host,
        _dir: dir,
    })
}

/// Pings VM 2 from VM 1 until one is answered or a minute has passed (the
/// controller needs to start, accept `scd` and learn both hosts).
fn ping_within_a_minute(h: &Host) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if netns_tests::ping(&h.vm1.ns, VM2.ip, 1).is_ok_and(|p| p.answered) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    bail!(
        "no ping answered within a minute\n--- controller log ---\n{}\n--- scd log ---\n{}",
        h.controller.log(),
        h.scd.log()
    )
}

#[test]
fn os_ken_learning_switch_13_switches_real_traffic() -> Result<()> {
    let test = "os_ken_learning_switch_13_switches_real_traffic";
    if !require_root(test) {
        return Ok(());
    }
    let Some(manager) = venv_program(test, "osken-manager") else {
        return Ok(());
    };
    let h = setup("osken", "0x5c15", |host, _| {
        let mut command = host.command(manager.to_str().unwrap_or_default());
        command.args([
            "--ofp-tcp-listen-port",
            "6653",
            concat!(env!("CARGO_MANIFEST_DIR"), "/apps/learning_switch_13.py"),
        ]);
        Ok(command)
    })?;
    ping_within_a_minute(&h)?;
    let log = h.controller.log();
    assert!(log.contains("packet in"), "{log}");
    Ok(())
}

#[test]
fn faucet_with_an_egress_pipeline_switches_real_traffic() -> Result<()> {
    let test = "faucet_with_an_egress_pipeline_switches_real_traffic";
    if !require_root(test) {
        return Ok(());
    }
    let Some(faucet) = venv_program(test, "faucet") else {
        return Ok(());
    };
    let h = setup("faucet", "0x5c14", |host, dir| {
        let config = dir.join("faucet.yaml");
        std::fs::write(
            &config,
            "vlans:\n  office:\n    vid: 100\n\
             dps:\n  scd:\n    dp_id: 0x5c14\n    hardware: \"Open vSwitch\"\n    egress_pipeline: True\n\
             \x20   interfaces:\n      1:\n        native_vlan: office\n      2:\n        native_vlan: office\n",
        )?;
        let mut command = host.command(faucet.to_str().unwrap_or_default());
        command
            .args(["--ryu-ofp-tcp-listen-port=6653"])
            .env("PATH", with_venv_on_path(&faucet))
            .env("FAUCET_CONFIG", &config)
            .env("FAUCET_LOG", dir.join("controller.log"))
            .env("FAUCET_EXCEPTION_LOG", dir.join("controller.log"))
            .env("FAUCET_PROMETHEUS_ADDR", "127.0.0.1")
            .env("FAUCET_PROMETHEUS_PORT", "9302");
        Ok(command)
    })?;
    ping_within_a_minute(&h)?;
    let log = h.controller.log();
    assert!(
        !log.contains("OFPErrorMsg"),
        "scd refused something:\n{log}"
    );
    // The egress pipeline is what ran: metadata written and matched.
    let flows = netns_tests::ofctl::ofctl(&h.host, "tcp:127.0.0.1:6654", &["dump-flows", "{}"])?;
    assert!(flows.contains("write_metadata:"), "{flows}");
    assert!(flows.contains("metadata="), "{flows}");
    Ok(())
}
