//! `nsvm`: moves a namespace "VM" of the tests to another TAP, as a hypervisor
//! would resume it on another host: its address leaves the interface that holds
//! it, comes up on the destination TAP (already in the VM's namespace and served
//! by the destination's `scd`), and the VM announces itself with RARP.
//!
//! The tests' placement hook calls it (`netns-tests/tests/placement.rs`); it only
//! touches the namespace it is given.

use anyhow::{bail, Context, Result};
use netns_tests::{cloud, Netns, Vm};
use std::process::ExitCode;

const USAGE: &str = "usage: nsvm move NETNS IP MAC TO_IFNAME";

fn main() -> ExitCode {
    match run(&std::env::args().skip(1).collect::<Vec<_>>()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nsvm: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<()> {
    let [verb, netns, ip, mac, to] = args else {
        bail!("{USAGE}");
    };
    if verb != "move" {
        bail!("{USAGE}");
    }
    let ns = Netns::existing(netns);
    // The interface that holds the address now: `ip -o addr show to IP` prints
    // "N: IFNAME inet ...".
    let holder = ns.ip(&["-o", "addr", "show", "to", ip])?;
    let from = holder
        .split_whitespace()
        .nth(1)
        .with_context(|| format!("no interface in {netns} holds {ip}"))?
        .to_string();
    if &from == to {
        bail!("{ip} is on {to} already");
    }
    let vm = Vm {
        ns,
        ifname: from.clone(),
        mac: mac.clone(),
        ip: ip.clone(),
    };
    cloud::move_vm(&vm, &from, to, &[], || Ok(()))?;
    println!("{ip} moved from {from} to {to} in {netns}, announced with RARP");
    Ok(())
}
