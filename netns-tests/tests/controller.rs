//! The controller alone programs the overlay: three clouds, one `scd` per host with
//! no static flows, `scc` in the emulated internet. Every VM pair talks over its
//! direct tunnel; a bad policy is refused with the tables untouched; a tenant policy
//! blocks exactly the cross-tenant pairs; a restarted controller re-learns the
//! switches without sending a single flow-mod and without interrupting traffic.

use anyhow::{Context, Result};
mod common;

use common::{ping, reaches, scc, start_scc, wait_synced, VmSpec};
use netns_tests::{require_root, unique, wait_until, Internet, KeyPair, Vm, VmAddress};
use std::time::Duration;

const VMS: [VmSpec; 4] = [
    VmSpec::new("a1", 0, 1, "100.64.1.1", "02:00:00:00:01:01").in_tenant("blue"),
    VmSpec::new("a2", 0, 2, "100.64.1.2", "02:00:00:00:01:02").in_tenant("green"),
    VmSpec::new("b1", 1, 1, "100.64.2.1", "02:00:00:00:02:01").in_tenant("blue"),
    VmSpec::new("c1", 2, 1, "100.64.3.1", "02:00:00:00:03:01").in_tenant("green"),
];

fn inventory(keys: &[KeyPair], vms: &[Vm]) -> String {
    common::inventory(keys, &common::entries(&VMS, vms))
}

/// Streams `n` numbered datagrams from `from` to `to`, 5 ms apart, in the
/// background; the handle yields (sent, distinct received).
fn udp_stream(
    from: &Vm,
    to: &Vm,
    port: u16,
    n: u32,
) -> Result<std::thread::JoinHandle<Result<(u32, u32)>>> {
    let (src, dst): (std::net::IpAddr, std::net::IpAddr) = (from.ip.parse()?, to.ip.parse()?);
    let rx = to
        .ns
        .enter(move || std::net::UdpSocket::bind((dst, port)))??;
    rx.set_read_timeout(Some(Duration::from_secs(2)))?;
    netns_tests::big_receive_buffer(&rx, 8 << 20)?;
    let tx = from
        .ns
        .enter(move || std::net::UdpSocket::bind((src, 0)))??;
    Ok(std::thread::spawn(move || -> Result<(u32, u32)> {
        let sender = std::thread::spawn(move || -> Result<()> {
            for i in 0..n {
                tx.send_to(&i.to_be_bytes(), (dst, port))?;
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(())
        });
        let mut seen = std::collections::HashSet::new();
        let mut buf = [0u8; 64];
        while let Ok(len) = rx.recv(&mut buf) {
            if len >= 4 {
                seen.insert(u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]));
            }
            if seen.len() == n as usize {
                break;
            }
        }
        sender
            .join()
            .map_err(|_| anyhow::anyhow!("sender panicked"))??;
        Ok((n, u32::try_from(seen.len())?))
    }))
}

#[test]
fn the_controller_alone_programs_every_switch() -> Result<()> {
    if !require_root("the_controller_alone_programs_every_switch") {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    // Cloud 3 is far away: 20 ms each way.
    let net = Internet::with_hosts("sccnet", &[None, None, Some(20)])?;
    let keys = common::key_pairs(3)?;
    let vms = common::create_vms("sccnet", &VMS)?;
    std::fs::write(dir.path().join("inventory.toml"), inventory(&keys, &vms))?;
    // A VM the inventory does not know yet, on a port host1's switch already has.
    let d1 = Vm::with_tap(
        &unique("sccnet-d1-"),
        &unique("sct"),
        VmAddress::overlay("02:00:00:00:02:02", "100.64.2.2"),
        1420,
    )?;
    let scc_proc = start_scc(&net, dir.path(), true)?;

    // Every host's scd configuration comes from the inventory; no static flows.
    let inventory = dir.path().join("inventory.toml");
    let scds = common::start_switches_edited(&net, &inventory, &keys, |i, config| {
        assert!(!config.contains("[flows]"));
        Ok(match i {
            1 => config + &d1.port_section(2),
            _ => config,
        })
    })?;
    let s = scc_proc.wait_synced(&net)?;
    eprintln!("all switches synchronised at version {}", s["version"]);

    // Every pair talks, each over the direct tunnel between its hosts.
    for (i, a) in VMS.iter().enumerate() {
        for b in VMS.iter().filter(|b| b.name != a.name) {
            assert!(
                reaches(&vms[i], b.ip, 10)?,
                "{} -> {} with the controller's tables",
                a.name,
                b.name
            );
        }
    }
    for scd in &scds {
        assert_eq!(scd.metric("scd_tunnel_spoofed_total", &[])?, 0);
    }
    // scc status reports each switch's tunnels, all up once traffic has flowed.
    let all_up = wait_until(Duration::from_secs(30), "every tunnel reported up", || {
        let s = common::status(&net)?;
        let hosts = s["hosts"].as_array().context("hosts")?.clone();
        Ok(hosts.iter().all(|h| {
            h["switch"]["tunnels_up"]
                .as_object()
                .is_some_and(|t| t.len() == 2 && t.values().all(|v| v == true))
        }))
    });
    all_up.with_context(|| format!("{:#}", common::status(&net).unwrap_or_default()))?;

    // Adding and removing a VM sends only the flows about it, and traffic between
    // other VMs flows on without a single loss meanwhile.
    let stream = udp_stream(&vms[0], &vms[2], 7100, 600)?;
    let flow_mods = |s: &serde_json::Value| -> Vec<u64> {
        s["hosts"]
            .as_array()
            .map(|hs| {
                hs.iter()
                    .map(|h| h["switch"]["last_flow_mods"].as_u64().unwrap_or(99))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (ok, text) = scc(
        &net,
        &[
            "vm",
            "add",
            "--name",
            "d1",
            "--mac",
            "02:00:00:00:02:02",
            "--ip",
            "100.64.2.2",
            "--host",
            "host1",
            "--port",
            "2",
            "--tap",
            &d1.ifname,
            "--netns",
            d1.ns.name(),
        ],
    )?;
    assert!(ok, "scc vm add: {text}");
    let added = flow_mods(&wait_synced(&net)?);
    assert!(
        reaches(&vms[0], "100.64.2.2", 10)?,
        "a1 -> d1 once d1 is added"
    );
    let (ok, text) = scc(&net, &["vm", "rm", "d1"])?;
    assert!(ok, "scc vm rm: {text}");
    let removed = flow_mods(&wait_synced(&net)?);
    assert!(
        !ping(&vms[0], "100.64.2.2")?,
        "a1 -> d1 after d1 is removed"
    );
    eprintln!("flow-mods per switch: vm add {added:?}, vm rm {removed:?}");
    // On d1's host: delivery (from anywhere, above the no-transit guard) and its
    // hairpin; elsewhere: the route into the tunnel to host1.
    assert_eq!(added, vec![1, 2, 1], "only d1's flows are added");
    assert_eq!(removed, vec![1, 2, 1], "only d1's flows are removed");
    let (sent, got) = stream.join().expect("stream")?;
    assert_eq!(got, sent, "a1 -> b1 lost nothing while d1 came and went");

    // A policy that does not compile is refused; the tables stay as they were.
    let flows_before: Vec<u64> = scds
        .iter()
        .map(|s| s.metric("scd_table_flows", &[]))
        .collect::<Result<_>>()?;
    let bad = dir.path().join("bad.kat");
    std::fs::write(&bad, "filter ip4Dst = vm:nosuch")?;
    let (ok, text) = scc(&net, &["apply", bad.to_str().context("path")?])?;
    assert!(!ok, "a bad policy must be refused");
    assert!(
        text.contains("bad.kat:1:"),
        "the error is positioned: {text}"
    );
    let flows_after: Vec<u64> = scds
        .iter()
        .map(|s| s.metric("scd_table_flows", &[]))
        .collect::<Result<_>>()?;
    assert_eq!(
        flows_before, flows_after,
        "tables untouched by a refused policy"
    );

    // Tenant isolation: blue talks to blue, green to green, never across.
    let tenants = dir.path().join("tenants.kat");
    std::fs::write(
        &tenants,
        "(* blue: a1, b1; green: a2, c1 *)\n\
         filter not (((ip4Src = vm:a1 or ip4Src = vm:b1) and (ip4Dst = vm:a2 or ip4Dst = vm:c1)) or\n\
                     ((ip4Src = vm:a2 or ip4Src = vm:c1) and (ip4Dst = vm:a1 or ip4Dst = vm:b1)))\n",
    )?;
    let (ok, text) = scc(&net, &["apply", tenants.to_str().context("path")?])?;
    assert!(ok, "tenant policy applied: {text}");
    wait_synced(&net)?;
    for (i, a) in VMS.iter().enumerate() {
        for b in VMS.iter().filter(|b| b.name != a.name) {
            let same = a.tenant == b.tenant;
            let got = if same {
                reaches(&vms[i], b.ip, 10)?
            } else {
                ping(&vms[i], b.ip)?
            };
            assert_eq!(
                got, same,
                "{} ({}) -> {} ({})",
                a.name, a.tenant, b.name, b.tenant
            );
        }
    }

    // The controller restarts from its store: it reads the switches' flows back and
    // sends nothing, and traffic never stops meanwhile.
    drop(scc_proc);
    assert!(
        ping(&vms[0], VMS[2].ip)?,
        "switches keep forwarding without a controller"
    );
    let again = common::start_scc_with(&net, dir.path(), false, Some(&tenants))?;
    let s = again.wait_synced(&net)?;
    for h in s["hosts"].as_array().context("hosts")? {
        assert_eq!(
            h["switch"]["last_flow_mods"], 0,
            "nothing re-sent to {}: {h:#}",
            h["name"]
        );
    }
    assert!(ping(&vms[0], VMS[2].ip)?);
    assert!(
        !ping(&vms[0], VMS[3].ip)?,
        "the stored policy still isolates tenants"
    );

    // SIGHUP reloads the policy file: lifting the isolation lets a1 reach c1.
    let version = common::status(&net)?["version"].as_u64();
    std::fs::write(&tenants, "id\n")?;
    again.signal(libc::SIGHUP)?;
    // The switches may still be synchronised at the old version when the first
    // status is read: the reload is asynchronous.
    netns_tests::wait_for(
        Duration::from_secs(60),
        "SIGHUP applied a new version",
        || {
            let s = wait_synced(&net)?;
            Ok((s["version"].as_u64() > version).then_some(()))
        },
    )?;
    assert!(
        reaches(&vms[0], VMS[3].ip, 10)?,
        "a1 -> c1 once the policy is lifted"
    );
    for log in [&dir.path().join("scc-first.log"), &again.log] {
        let text = std::fs::read_to_string(log)?;
        for line in text.lines().filter(|l| l.contains("switch synchronised")) {
            eprintln!(
                "{}",
                line.split_once("switch synchronised")
                    .map_or(line, |(_, r)| r)
                    .trim()
            );
        }
    }
    Ok(())
}
