//! `bench flowmod-tls`: what OpenFlow over mutual TLS costs the flow-mod path.
//! One `scd` (release) listens on `ptcp:` and on `pssl:` (with a throwaway PKI);
//! `ovs-ofctl add-flows` pushes the same 10,000 flows and a barrier through
//! each, alternating transports round by round and deleting the flows in
//! between, in the same run; the table gives the median of each and the ratio.
//! Each run includes connecting (a TCP handshake, or TCP and TLS handshakes).

use crate::common::GW;
use crate::flowmod::{flow_count, time_add_flows_with, write_flows};
use anyhow::Result;
use netns_tests::{run, unique, Netns, Scd};
use tls_support::pki::{self, Role};

/// The `ovs-ofctl` options presenting `name`'s certificate from PKI `dir`.
fn ssl_options(dir: &std::path::Path, name: &str) -> Vec<String> {
    let (key, cert) = pki::files_of(dir, name);
    vec![
        format!("--private-key={}", key.display()),
        format!("--certificate={}", cert.display()),
        format!("--ca-cert={}", dir.join(pki::CA_CERT).display()),
    ]
}

/// Median of `times` (at least one).
fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Measures both transports `reps` times each and prints the table.
pub fn flowmod_tls(reps: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let flows = dir.path().join("flows");
    write_flows(&flows, 0..10_000)?;
    let pki_dir = dir.path().join("pki");
    pki::init(&pki_dir, "bench CA")?;
    let (key, cert) = pki::issue(&pki_dir, "host0", Role::Host)?;
    pki::issue(&pki_dir, "admin", Role::Host)?;
    let config = format!(
        "datapath_id = 1\n[overlay]\nprefix = \"100.64.0.0/10\"\ngateway_mac = \"{GW}\"\n\
         [metrics]\nlisten = \"127.0.0.1:9464\"\n\
         [openflow]\nlisten = [\"ptcp:6653\", \"pssl:6654:127.0.0.1\"]\n\
         [openflow.tls]\nprivate_key = \"{}\"\ncertificate = \"{}\"\nca_cert = \"{}\"\n\
         [[port]]\nnumber = 1\nname = \"{}\"\n",
        key.display(),
        cert.display(),
        pki_dir.join(pki::CA_CERT).display(),
        unique("bft")
    );
    let ns = Netns::new(&unique("bench-fmtls-"))?;
    let _scd = Scd::start(&ns, &config, None)?;
    let tls = ssl_options(&pki_dir, "admin");
    let transports: [(&str, &str, &[String]); 2] = [
        ("plain TCP (ptcp:)", "tcp:127.0.0.1:6653", &[]),
        ("mutual TLS (pssl:)", "ssl:127.0.0.1:6654", &tls),
    ];
    let mut times = [Vec::new(), Vec::new()];
    for _ in 0..reps.max(1) {
        for (i, (_, target, options)) in transports.iter().enumerate() {
            run(ns.command("ovs-ofctl").args([
                "-O",
                "OpenFlow13",
                "del-flows",
                "tcp:127.0.0.1:6653",
            ]))?;
            times[i].push(time_add_flows_with(&ns, options, target, &flows)?);
            let held = flow_count(&ns, "tcp:127.0.0.1:6653")?;
            anyhow::ensure!(held == 10_000, "{target}: {held} flows after the adds");
        }
    }
    let [tcp, tls] = times.map(median);
    println!(
        "\n### Flow-mods over TLS: 10,000 adds + barrier via `ovs-ofctl add-flows`, median of {} each, alternating\n",
        reps.max(1)
    );
    println!("| transport | seconds | flow-mods/s | x plain TCP (time) |");
    println!("|---|---|---|---|");
    for ((name, ..), t) in transports.iter().zip([tcp, tls]) {
        println!("| {name} | {t:.3} | {:.0} | {:.2} |", 10_000.0 / t, t / tcp);
    }
    println!("\nCommand: `bash scripts/bench.sh flowmod-tls`");
    Ok(())
}
