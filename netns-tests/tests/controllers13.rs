//! `scd` driven by real OpenFlow 1.3 controllers, with real traffic between two
//! VM namespaces on one L2 segment (addresses outside the overlay, so `scd`'s
//! anycast ARP stays out of the way and the controller does all the switching):
//! os-ken running a learning switch that behaves as its sample `simple_switch_13`
//! (`apps/learning_switch_13.py`, since the os-ken wheel does not ship the
//! samples: table-miss to the controller unbuffered, learning from packet-ins,
//! packet-out floods), Faucet with `egress_pipeline: True`
//! (set-async at connect, write-metadata and metadata matches, its egress table),
//! and Faucet with a tagged trunk on a raw (AF_PACKET) port, whose 802.1Q tags
//! the kernel strips on receive and `scd` must put back.
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
    setup_with(
        test,
        dpid,
        start,
        Box::new(|host, head, openflow| {
            switch_with_two_vms(test, host, head, openflow, [VM1, VM2])
        }),
    )
}

/// The switch and VMs of a [`Host`], from the configuration's head and its
/// `[openflow]` lines.
type SwitchAndVms<'a> = dyn FnOnce(&Netns, &str, &str) -> Result<(Scd, Vm, Vm)> + 'a;

/// [`setup`] with the switch and its two VMs made by `switch` (given the host,
/// the configuration's head and its `[openflow]` lines).
fn setup_with(
    test: &str,
    dpid: &str,
    start: impl FnOnce(&Netns, &std::path::Path) -> Result<Command>,
    switch: Box<SwitchAndVms<'_>>,
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
    let (scd, vm1, vm2) = switch(
        &host,
        &scd_config_head(&format!("\"{dpid}\""), "ctl13-host", false),
        "listen = \"ptcp:6654\"\ncontrollers = [\"tcp:127.0.0.1:6653\"]\nreconnect_max_ms = 500",
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
        faucet_command(
            &faucet,
            host,
            dir,
            "vlans:\n  office:\n    vid: 100\n\
             dps:\n  scd:\n    dp_id: 0x5c14\n    hardware: \"Open vSwitch\"\n    egress_pipeline: True\n\
             \x20   interfaces:\n      1:\n        native_vlan: office\n      2:\n        native_vlan: office\n",
        )
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

/// Faucet (`program`) in `host` with `yaml` as its configuration, logging into
/// `dir`.
fn faucet_command(
    program: &std::path::Path,
    host: &Netns,
    dir: &std::path::Path,
    yaml: &str,
) -> Result<Command> {
    let config = dir.join("faucet.yaml");
    std::fs::write(&config, yaml)?;
    let mut command = host.command(program.to_str().unwrap_or_default());
    command
        .args(["--ryu-ofp-tcp-listen-port=6653"])
        .env("PATH", with_venv_on_path(program))
        .env("FAUCET_CONFIG", &config)
        .env("FAUCET_LOG", dir.join("controller.log"))
        .env("FAUCET_EXCEPTION_LOG", dir.join("controller.log"))
        .env("FAUCET_PROMETHEUS_ADDR", "127.0.0.1")
        .env("FAUCET_PROMETHEUS_PORT", "9302");
    Ok(command)
}

/// The VLAN this test's trunk carries.
const TRUNK_VID: u16 = 100;

/// A tagging relay inside a VM's namespace, for kernels without 802.1Q
/// support: the VM's address moves to a veth `vin` whose peer the relay reads;
/// what the VM sends leaves the trunk interface tagged with [`TRUNK_VID`], and
/// what comes in on the trunk (the receiving kernel has taken the tag off)
/// goes back to `vin`. Stopped and joined on drop.
struct VlanRelay {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<Result<()>>>>,
}

impl VlanRelay {
    fn start(vm: &Vm, addr: VmAddress<'_>) -> Result<VlanRelay> {
        let prefix = format!("{}/{}", addr.ip, addr.prefix_len);
        vm.ns.ip(&["addr", "flush", "dev", &vm.ifname])?;
        vm.ns
            .ip(&["link", "add", "vin", "type", "veth", "peer", "name", "vrel"])?;
        vm.ns.ip(&["link", "set", "vin", "address", addr.mac])?;
        vm.ns.ip(&["addr", "add", &prefix, "dev", "vin"])?;
        for ifname in ["vin", "vrel"] {
            vm.ns.ip(&["link", "set", ifname, "up"])?;
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (ns, trunk, running) = (vm.ns.name().to_string(), vm.ifname.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            netns_tests::Netns::existing(&ns).enter(move || relay(&trunk, &running))
        });
        Ok(VlanRelay {
            stop,
            thread: Some(thread),
        })
    }
}

impl VlanRelay {
    /// Whether the relay still runs, for a failure message.
    fn state(&self) -> &'static str {
        match &self.thread {
            Some(thread) if thread.is_finished() => "the VLAN relay had stopped (an error in it)",
            Some(_) => "the VLAN relay was running",
            None => "the VLAN relay was stopped",
        }
    }
}

impl Drop for VlanRelay {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The relay's loop (see [`VlanRelay`]) until `stop`.
fn relay(trunk: &str, stop: &std::sync::atomic::AtomicBool) -> Result<()> {
    use netns_tests::packet::{packet_socket, recv_frame, send_frame};
    let vm_side = packet_socket("vrel", libc::SOCK_RAW, 0x0003)?;
    let wire = packet_socket(trunk, libc::SOCK_RAW, 0x0003)?;
    let mut buf = vec![0u8; 9216];
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let mut moved = false;
        while let Some((n, kind)) = recv_frame(&vm_side, &mut buf) {
            if kind != libc::PACKET_OUTGOING && n >= 14 {
                let mut tagged = Vec::with_capacity(n + 4);
                tagged.extend_from_slice(&buf[..12]);
                tagged.extend_from_slice(&[0x81, 0x00]);
                tagged.extend_from_slice(&TRUNK_VID.to_be_bytes());
                tagged.extend_from_slice(&buf[12..n]);
                send_frame(&wire, &tagged)?;
                moved = true;
            }
        }
        while let Some((n, kind)) = recv_frame(&wire, &mut buf) {
            if kind != libc::PACKET_OUTGOING {
                send_frame(&vm_side, &buf[..n])?;
                moved = true;
            }
        }
        if !moved {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    Ok(())
}

#[test]
fn faucet_with_a_tagged_trunk_on_a_raw_port_switches_real_traffic() -> Result<()> {
    let test = "faucet_with_a_tagged_trunk_on_a_raw_port_switches_real_traffic";
    if !require_root(test) {
        return Ok(());
    }
    let Some(faucet) = venv_program(test, "faucet") else {
        return Ok(());
    };
    // Port 1: a raw port on the host end of VM 1's veth, a trunk carrying VLAN
    // 100 tagged; port 2: VM 2's TAP, untagged in the same VLAN. Faucet drops
    // untagged frames on a tagged-only port, so without the tag put back
    // nothing crosses.
    let h = setup_with(
        "fctrunk",
        "0x5c16",
        |host, dir| {
            faucet_command(
                &faucet,
                host,
                dir,
                "vlans:\n  office:\n    vid: 100\n\
                 dps:\n  scd:\n    dp_id: 0x5c16\n    hardware: \"Open vSwitch\"\n\
                 \x20   interfaces:\n      1:\n        tagged_vlans: [office]\n      2:\n        native_vlan: office\n",
            )
        },
        Box::new(|host, head, openflow| {
            let trunk = unique("fct");
            let tap = unique("fct");
            let vm1 = Vm::with_veth(&unique("fctrunk-v1-"), host, &trunk, VM1, 1500)?;
            let config = format!(
                "{head}[openflow]\n{openflow}\n[[port]]\nnumber = 1\nname = \"{trunk}\"\n\
                 type = \"raw\"\n[[port]]\nnumber = 2\nname = \"{tap}\"\n"
            );
            let scd = Scd::start(host, &config, None)?;
            let vm2 = Vm::attach(&unique("fctrunk-v2-"), host, &tap, VM2)?;
            Ok((scd, vm1, vm2))
        }),
    )?;
    let relay = VlanRelay::start(&h.vm1, VM1)?;
    ping_within_a_minute(&h).map_err(|e| e.context(relay.state()))?;
    let log = h.controller.log();
    assert!(
        !log.contains("OFPErrorMsg"),
        "scd refused something:\n{log}"
    );
    // The trunk's VLAN is what Faucet switched: tagged on port 1, pushed and
    // popped for port 2.
    let flows = netns_tests::ofctl::ofctl(&h.host, "tcp:127.0.0.1:6654", &["dump-flows", "{}"])?;
    assert!(flows.contains("in_port=1,dl_vlan=100"), "{flows}");
    assert!(flows.contains("pop_vlan"), "{flows}");
    assert!(flows.contains("push_vlan"), "{flows}");
    let tagged_in = h
        .scd
        .metric("scd_flow_packets_total", &["in_port=1", "dl_vlan=100"])?;
    assert!(
        tagged_in > 0,
        "no tagged frame matched on the trunk\n{flows}"
    );
    Ok(())
}
