//! The OpenFlow listener over mutual TLS against fake switches: the host's own
//! certificate announcing its own datapath id is served; no certificate,
//! another CA's, another host's certificate announcing this datapath id, and a
//! second session of a live datapath are refused before any flow-mod, counted
//! by reason, and leave the live switch connected.

use super::tests::{switch, wait_until};
use super::{serve_openflow, OpenflowTls};
use crate::daemon::tests::example_controller;
use crate::daemon::Controller;
use crate::model::{ControllerTls, SwitchSettings};
use fake_switch::FakeSwitch;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tls_support::pki::{self, Role};
use tls_support::rustls::{ClientConfig, RootCertStore};
use tls_support::{ServerName, TlsFiles};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

use pki::files;

/// A client configuration trusting `ca` that presents no certificate.
fn anonymous(ca: &Path) -> Arc<ClientConfig> {
    use tls_support::rustls::pki_types::pem::PemObject;
    let mut roots = RootCertStore::empty();
    roots
        .add(tls_support::CertificateDer::from_pem_file(ca).unwrap())
        .unwrap();
    let config = ClientConfig::builder_with_provider(tls_support::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

async fn tls_controller(pki_dir: &Path, ctl_dir: &Path) -> (Arc<Controller>, SocketAddr) {
    let (private_key, certificate) = pki::files_of(pki_dir, "scc");
    let tls = ControllerTls {
        private_key,
        certificate,
        ca_cert: pki_dir.join(pki::CA_CERT),
        name: "scc".into(),
    };
    let acceptor = OpenflowTls::load(&tls).unwrap();
    let ctl = example_controller(ctl_dir, |inventory| {
        inventory.switch_settings = SwitchSettings::default();
        inventory.openflow_tls = Some(tls);
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_openflow(listener, ctl.clone(), Some(acceptor)));
    (ctl, addr)
}

/// A fake switch announcing `dpid` over TLS with `config`.
fn connect(addr: SocketAddr, config: Arc<ClientConfig>, dpid: u64) -> Arc<FakeSwitch> {
    let fake = FakeSwitch::new(dpid);
    let switch = fake.clone();
    tokio::spawn(async move {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("scc").unwrap();
        match TlsConnector::from(config).connect(name, tcp).await {
            Ok(stream) => {
                let _ = switch.run_on(stream).await;
            }
            Err(_) => switch.set_closed(),
        }
    });
    fake
}

fn refused(ctl: &Controller, reason: &str) -> u64 {
    ctl.switch_refusals().get(reason).copied().unwrap_or(0)
}

#[tokio::test]
async fn only_the_host_named_by_its_certificate_gets_its_datapaths_program() {
    let (pki_dir, other_ca, ctl_dir) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    pki::init(pki_dir.path(), "CA").unwrap();
    for (name, role) in [
        ("host-a", Role::Host),
        ("host-b", Role::Host),
        ("scc", Role::Controller),
    ] {
        pki::issue(pki_dir.path(), name, role).unwrap();
    }
    pki::init(other_ca.path(), "another CA").unwrap();
    pki::issue(other_ca.path(), "host-a", Role::Host).unwrap();
    let (ctl, addr) = tls_controller(pki_dir.path(), ctl_dir.path()).await;
    let client = |dir: &Path, name: &str, ca: &Path| {
        tls_support::client_config(&TlsFiles {
            ca_cert: ca.join(pki::CA_CERT),
            ..files(dir, name)
        })
        .unwrap()
    };
    let ca = pki_dir.path();

    let real = connect(addr, client(ca, "host-a", ca), 1);
    let (version, desired) = ctl.desired(1).unwrap();
    wait_until("host-a is synchronised", || {
        let s = switch(&ctl, 1);
        s.connected && s.synced_version == version
    })
    .await;
    assert_eq!(real.flow_count(), desired.len());

    let rogues = [
        (
            "no_certificate",
            connect(addr, anonymous(&ca.join(pki::CA_CERT)), 1),
        ),
        (
            "untrusted_certificate",
            connect(addr, client(other_ca.path(), "host-a", ca), 1),
        ),
        ("wrong_datapath", connect(addr, client(ca, "host-b", ca), 1)),
        ("duplicate", connect(addr, client(ca, "host-a", ca), 1)),
    ];
    for (reason, rogue) in &rogues {
        wait_until(&format!("a refusal for {reason}"), || {
            refused(&ctl, reason) == 1
        })
        .await;
        wait_until(&format!("the {reason} rogue is closed"), || {
            rogue.is_closed()
        })
        .await;
        assert_eq!(rogue.flow_mods(), 0, "{reason}");
        assert_eq!(rogue.flow_count(), 0, "{reason}");
    }
    let s = switch(&ctl, 1);
    assert!(s.connected, "the real host-a was disconnected");
    assert_eq!(s.synced_version, version);
    assert!(!real.is_closed());
    let metrics = crate::metrics::render(&ctl.switch_report(), &ctl.switch_refusals());
    assert!(
        metrics.contains("scc_switch_refused_total{reason=\"wrong_datapath\"} 1"),
        "{metrics}"
    );
}
