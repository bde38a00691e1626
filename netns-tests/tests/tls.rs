//! OpenFlow over mutual TLS, tried as an attacker on the underlay would: from
//! host 1's namespace, "switches" that speak plain OpenFlow, TLS without a
//! certificate, TLS with a certificate of another CA, host 1's own valid
//! certificate announcing host 0's datapath id, and host 1's certificate
//! announcing its own datapath id while host 1 is connected. Each is refused by
//! `scc` before any flow-mod (it learns nothing), counted in
//! `scc_switch_refused_total{reason}`, and `scc status` keeps every real switch
//! connected and synchronised on the same connection. Then `ovs-ofctl` over
//! `ssl:` against `scd`'s `pssl:` listener: it works with a certificate of the
//! CA, and fails with another CA's.

use anyhow::{Context, Result};
mod common;

use common::{scc, start_scc, VmSpec};
use netns_tests::ofctl::{flow_lines, ofctl};
use netns_tests::pki::{self, Identity};
use netns_tests::{require_program, require_root, Internet, Netns};
use openflow::wire::{decode, encode, frame_len, Hello, Message, SwitchFeatures};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tls_support::rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use tls_support::{ServerName, TlsFiles};

const TEST: &str = "tlsof";
const VMS: [VmSpec; 2] = [
    VmSpec::new("a1", 0, 1, "100.64.1.1", "02:00:00:00:01:01"),
    VmSpec::new("b1", 1, 1, "100.64.2.1", "02:00:00:00:02:01"),
];
/// Where `scd`'s `pssl:` listener is, on every host address.
const PSSL_PORT: u16 = 6654;
/// Longest a rogue waits for the controller to close its connection.
const PATIENCE: Duration = Duration::from_secs(30);

/// What a rogue switch got from the controller.
#[derive(Debug)]
struct Learned {
    /// Flow-mods received: the host's program.
    flow_mods: usize,
    /// Every message type it received, for the failure message.
    heard: Vec<String>,
    /// The controller closed the connection (or the handshake failed).
    closed: bool,
}

/// A rogue switch's stream: plain TCP or TLS.
trait Wire: Read + Write + Send {}
impl<T: Read + Write + Send> Wire for T {}

/// Connects from `ns` to the controller, over TLS with `tls` if given, says
/// hello, announces `dpid` when asked, answers echoes, and counts what it
/// receives until the controller closes the connection or [`PATIENCE`] passes.
fn rogue(ns: &Netns, tls: Option<Arc<ClientConfig>>, dpid: u64) -> Result<Learned> {
    ns.enter(move || -> Result<Learned> {
        let tcp = TcpStream::connect(common::CONTROLLER)?;
        tcp.set_read_timeout(Some(Duration::from_millis(500)))?;
        let mut stream: Box<dyn Wire> = match tls {
            None => Box::new(tcp),
            Some(config) => {
                let conn = ClientConnection::new(config, ServerName::try_from("scc")?)?;
                Box::new(StreamOwned::new(conn, tcp))
            }
        };
        let mut learned = Learned {
            flow_mods: 0,
            heard: Vec::new(),
            closed: false,
        };
        if stream
            .write_all(&encode(&Message::Hello(Hello::of13()), 1)?)
            .is_err()
        {
            learned.closed = true;
            return Ok(learned);
        }
        let (mut inbox, mut chunk) = (Vec::new(), vec![0u8; 65536]);
        let started = Instant::now();
        while started.elapsed() < PATIENCE {
            match stream.read(&mut chunk) {
                Ok(0) => {
                    learned.closed = true;
                    break;
                }
                Ok(n) => inbox.extend_from_slice(&chunk[..n]),
                // A read timeout: wait on (the loop's deadline bounds it).
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => {
                    learned.closed = true;
                    break;
                }
            }
            while let Ok(Some(len)) = frame_len(&inbox) {
                let frame: Vec<u8> = inbox.drain(..len).collect();
                let Ok((xid, m)) = decode(&frame) else {
                    continue;
                };
                learned
                    .heard
                    .push(format!("{m:?}").chars().take(40).collect());
                let reply = match m {
                    Message::FeaturesRequest => Some(Message::FeaturesReply(SwitchFeatures {
                        datapath_id: dpid,
                        n_buffers: 0,
                        n_tables: 8,
                        auxiliary_id: 0,
                        capabilities: 0,
                        reserved: 0,
                    })),
                    Message::EchoRequest(data) => Some(Message::EchoReply(data)),
                    Message::FlowMod(_) => {
                        learned.flow_mods += 1;
                        None
                    }
                    _ => None,
                };
                if let Some(r) = reply {
                    let _ = stream.write_all(&encode(&r, xid)?);
                }
            }
        }
        Ok(learned)
    })?
}

/// A TLS client configuration trusting the CA in `ca_dir`, presenting
/// `identity` (or nothing).
fn client(ca_dir: &Path, identity: Option<&Identity>) -> Result<Arc<ClientConfig>> {
    let ca = ca_dir.join("ca-cert.pem");
    Ok(match identity {
        Some(id) => tls_support::client_config(&TlsFiles {
            private_key: id.key.clone(),
            certificate: id.cert.clone(),
            ca_cert: ca,
        })?,
        None => {
            use tls_support::rustls::pki_types::pem::PemObject;
            let mut roots = RootCertStore::empty();
            roots.add(tls_support::CertificateDer::from_pem_file(&ca)?)?;
            Arc::new(
                ClientConfig::builder_with_provider(tls_support::provider())
                    .with_safe_default_protocol_versions()?
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
            )
        }
    })
}

/// Every host's switch as `scc status` reports it: (connected, synced version,
/// peer address).
fn switches(net: &Internet) -> Result<Vec<(bool, u64, String)>> {
    let s = common::status(net)?;
    let hosts = s["hosts"].as_array().context("hosts")?;
    Ok(hosts
        .iter()
        .map(|h| {
            let sw = &h["switch"];
            (
                sw["connected"] == true,
                sw["synced_version"].as_u64().unwrap_or(0),
                sw["peer"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect())
}

/// `scc_switch_refused_total{reason=REASON}` now.
fn refused(net: &Internet, reason: &str) -> Result<u64> {
    let (ok, text) = scc(net, &["metrics"])?;
    anyhow::ensure!(ok, "scc metrics: {text}");
    let needle = format!("scc_switch_refused_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&needle))
        .context(format!("no {needle} in:\n{text}"))?
        .trim()
        .parse()
        .context("a count")
}

#[test]
fn rogue_switches_are_refused_and_learn_nothing_and_ovs_ofctl_needs_a_certificate() -> Result<()> {
    if !require_root(TEST) || !require_program(TEST, "ovs-ofctl") {
        return Ok(());
    }
    let dir = tempfile::Builder::new().prefix(TEST).tempdir()?;
    let net = Internet::with_hosts(TEST, &[None, None])?;
    let keys = common::key_pairs(2)?;
    let vms = common::create_vms(TEST, &VMS)?;
    let entries = common::entries(&VMS, &vms);
    let inventory = common::write_inventory(dir.path(), &common::inventory(&keys, &entries))?;
    let scc_proc = start_scc(&net, dir.path(), true)?;
    let _scds = common::start_switches_edited(&net, &inventory, &keys, |_, config| {
        assert!(config.contains("controllers = [\"ssl:"), "{config}");
        netns_tests::cloud::with_openflow_listener(&config, &format!("pssl:{PSSL_PORT}"))
    })?;
    scc_proc.wait_synced(&net)?;
    let before = switches(&net)?;
    assert!(
        before.iter().all(|(connected, ..)| *connected),
        "{before:?}"
    );

    let ca = dir.path().join(pki::DIR);
    let foreign = pki::foreign(&dir.path().join("foreign"), &["host0"])?;
    let host1 = Identity::of(&ca, "host1");
    let stranger = Identity {
        ca: ca.join("ca-cert.pem"),
        ..Identity::of(&foreign, "host0")
    };
    let attacker = &net.hosts[1];
    let attempts: [(&str, Option<Arc<ClientConfig>>, u64); 5] = [
        ("handshake", None, 1),
        ("no_certificate", Some(client(&ca, None)?), 1),
        (
            "untrusted_certificate",
            Some(client(&ca, Some(&stranger))?),
            1,
        ),
        ("wrong_datapath", Some(client(&ca, Some(&host1))?), 1),
        ("duplicate", Some(client(&ca, Some(&host1))?), 2),
    ];
    for (reason, tls, dpid) in attempts {
        let was = refused(&net, reason)?;
        let learned = rogue(attacker, tls, dpid)?;
        eprintln!("rogue ({reason}): {learned:?}");
        assert_eq!(
            learned.flow_mods, 0,
            "{reason}: the rogue got flow-mods: {learned:?}"
        );
        assert!(
            learned.closed,
            "{reason}: the controller kept the rogue: {learned:?}"
        );
        assert_eq!(refused(&net, reason)?, was + 1, "{reason} not counted");
        let now = switches(&net)?;
        assert_eq!(now, before, "{reason}: scc status changed");
    }
    eprintln!("every rogue refused; scc status unchanged: {before:?}");

    // ovs-ofctl over ssl: against host 0's scd, from host 1 across the underlay.
    let target = format!("ssl:{}:{PSSL_PORT}", Internet::host_addr(0));
    let admin = Identity::of(&ca, pki::TOOL);
    let [k, c, a] = admin.ofctl_args();
    let dump = ofctl(attacker, &target, &[&k, &c, &a, "dump-flows", "{}"])?;
    let flows = flow_lines(&dump);
    assert!(!flows.is_empty(), "no flows over ssl:\n{dump}");
    eprintln!("ovs-ofctl dump-flows {target}: {} flows", flows.len());
    let [k, c, a] = stranger.ofctl_args();
    let refused_dump = ofctl(attacker, &target, &[&k, &c, &a, "dump-flows", "{}"]);
    assert!(
        refused_dump.is_err(),
        "another CA's certificate was served: {refused_dump:?}"
    );
    let plain = ofctl(
        attacker,
        &format!("tcp:{}:{PSSL_PORT}", Internet::host_addr(0)),
        &["dump-flows", "{}"],
    );
    assert!(
        plain.is_err(),
        "plain OpenFlow was served on pssl: {plain:?}"
    );
    drop(scc_proc);
    Ok(())
}
