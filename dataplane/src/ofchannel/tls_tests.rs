//! The channel over mutual TLS, without root: a `pssl:` listener serves a
//! client with a certificate of the CA and refuses (and counts) one without a
//! certificate or with another CA's; an `ssl:` controller connection talks to
//! a controller whose certificate names the configured controller name, and to
//! no other.

use super::listen_tests::next_message;
use super::net::Channel;
use super::running_tests::spawn_switch;
use super::DatapathInfo;
use crate::config::{ControllerAddr, ListenAddr, OpenflowConfig, OpenflowTls};
use crate::switch::packet_in_channel;
use openflow::wire::{decode, encode, peek_header, Message};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tls_support::pki::{self, Role};
use tls_support::rustls::{self, ClientConnection, ServerConnection, StreamOwned};
use tls_support::{ServerName, TlsFiles};

const PATIENCE: Duration = Duration::from_secs(30);

use pki::files;

fn pki_of(names: &[(&str, Role)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    pki::init(dir.path(), "test CA").unwrap();
    for (name, role) in names {
        pki::issue(dir.path(), name, *role).unwrap();
    }
    dir
}

fn start(
    cfg: &OpenflowConfig,
    dpid: u64,
) -> (Channel, (super::SwitchBackend, std::thread::JoinHandle<()>)) {
    let spawned = spawn_switch(dpid, None);
    let info = DatapathInfo {
        datapath_id: dpid,
        name: format!("switch-{dpid}"),
        n_tables: 1,
    };
    let (_tx, rx) = packet_in_channel(16);
    let (channel, _hook) = Channel::start(cfg, spawned.0.handle.clone(), info, rx).unwrap();
    (channel, spawned)
}

/// A TLS client of `addr` with `config`; the switch's hello, if it says one.
fn hello_over_tls(addr: std::net::SocketAddr, config: rustls::ClientConfig) -> Option<Message> {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    let conn =
        ClientConnection::new(Arc::new(config), ServerName::try_from("host1").unwrap()).ok()?;
    let mut s = StreamOwned::new(conn, tcp);
    next_message(&mut s).map(|(_, m)| m)
}

#[test]
fn a_pssl_listener_serves_only_clients_with_a_certificate_of_its_ca() {
    let ours = pki_of(&[("host1", Role::Host), ("admin", Role::Host)]);
    let theirs = pki_of(&[("admin", Role::Host)]);
    let cfg = OpenflowConfig {
        listen: vec![ListenAddr::Ssl("127.0.0.1:0".parse().unwrap())],
        tls: Some(OpenflowTls {
            files: files(ours.path(), "host1"),
            controller_name: "scc".into(),
        }),
        ..OpenflowConfig::default()
    };
    let (channel, (backend, thread)) = start(&cfg, 7);
    let ListenAddr::Ssl(addr) = channel.listeners()[0] else {
        panic!("{:?}", channel.listeners())
    };
    let client = |f: &TlsFiles| {
        let mut c = Arc::unwrap_or_clone(tls_support::client_config(f).unwrap());
        c.resumption = rustls::client::Resumption::disabled();
        c
    };

    let hello = hello_over_tls(addr, client(&files(ours.path(), "admin")));
    assert!(matches!(hello, Some(Message::Hello(_))), "{hello:?}");

    let stranger = TlsFiles {
        ca_cert: ours.path().join(pki::CA_CERT),
        ..files(theirs.path(), "admin")
    };
    assert_eq!(hello_over_tls(addr, client(&stranger)), None);
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(ours.path().join(pki::CA_CERT)).unwrap();
    use tls_support::rustls::pki_types::pem::PemObject;
    roots
        .add(tls_support::CertificateDer::from_pem_slice(&ca).unwrap())
        .unwrap();
    let anonymous = rustls::ClientConfig::builder_with_provider(Arc::new(
        #[allow(deprecated)]
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    assert_eq!(hello_over_tls(addr, anonymous), None);
    // Plain OpenFlow on a pssl: listener hears nothing either.
    let mut plain = TcpStream::connect(addr).unwrap();
    plain.set_read_timeout(Some(PATIENCE)).unwrap();
    plain
        .write_all(&encode(&Message::BarrierRequest, 1).unwrap())
        .unwrap();
    let mut byte = [0u8; 64];
    let heard = plain.read(&mut byte).unwrap_or(0);
    assert!(
        heard == 0 || byte[0] != 4,
        "an OpenFlow answer in the clear"
    );

    let counters = backend.handle.shared.channel.listeners.lock().unwrap()[0].clone();
    let deadline = Instant::now() + PATIENCE;
    while counters.tls_refused.load(Relaxed) < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(counters.tls_refused.load(Relaxed), 3);
    drop(channel);
    backend.handle.stop();
    thread.join().unwrap();
}

/// Accepts one TLS connection with `server` and returns the first message
/// the switch sends, or the handshake's error.
fn controller_hears(server: &TlsFiles, listener: &TcpListener) -> Result<Message, String> {
    let (tcp, _) = listener.accept().unwrap();
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    let conn = ServerConnection::new(tls_support::server_config(server).unwrap()).unwrap();
    let mut s = StreamOwned::new(conn, tcp);
    let mut buf = vec![0u8; 8];
    s.read_exact(&mut buf).map_err(|e| e.to_string())?;
    let len = usize::from(peek_header(&buf).unwrap().length);
    buf.resize(len, 0);
    s.read_exact(&mut buf[8..]).map_err(|e| e.to_string())?;
    decode(&buf).map(|(_, m)| m).map_err(|e| e.to_string())
}

#[test]
fn an_ssl_controller_must_carry_the_controller_name() {
    let dir = pki_of(&[
        ("host1", Role::Host),
        ("host2", Role::Host),
        ("scc", Role::Controller),
    ]);
    for (server, hears) in [("host2", false), ("scc", true)] {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let cfg = OpenflowConfig {
            controllers: vec![ControllerAddr::Ssl(listener.local_addr().unwrap())],
            tls: Some(OpenflowTls {
                files: files(dir.path(), "host1"),
                controller_name: "scc".into(),
            }),
            ..OpenflowConfig::default()
        };
        let (channel, (backend, thread)) = start(&cfg, 9);
        let heard = controller_hears(&files(dir.path(), server), &listener);
        if hears {
            assert!(matches!(heard, Ok(Message::Hello(_))), "{heard:?}");
        } else {
            let e = heard.unwrap_err();
            assert!(
                e.contains("alert") || e.contains("eof") || e.contains("reset"),
                "{e}"
            );
        }
        drop(channel);
        backend.handle.stop();
        thread.join().unwrap();
    }
}
