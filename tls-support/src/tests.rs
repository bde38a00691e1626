use super::pki::{self, Role};
use super::*;
use rustls::{ClientConnection, ServerConnection};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn pki_with(dir: &Path, names: &[(&str, Role)]) -> PathBuf {
    let ca = pki::init(dir, "test CA").unwrap();
    for (name, role) in names {
        pki::issue(dir, name, *role).unwrap();
    }
    ca
}

use pki::files;

/// A handshake refused the other end's certificate.
fn assert_untrusted(result: Result<(), rustls::Error>) {
    assert!(
        matches!(result, Err(rustls::Error::InvalidCertificate(_))),
        "{result:?}"
    );
}

/// Runs a handshake between the two ends in memory; the first error of either.
fn handshake(server: &TlsFiles, client: &TlsFiles, server_name: &str) -> Result<(), rustls::Error> {
    let mut s = ServerConnection::new(server_config(server).unwrap())?;
    let name = ServerName::try_from(server_name.to_string()).unwrap();
    let mut c = ClientConnection::new(client_config(client).unwrap(), name)?;
    for _ in 0..10 {
        let mut wire = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut wire).unwrap();
        }
        s.read_tls(&mut wire.as_slice()).unwrap();
        s.process_new_packets()?;
        let mut back = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut back).unwrap();
        }
        c.read_tls(&mut back.as_slice()).unwrap();
        c.process_new_packets()?;
        if !s.is_handshaking() && !c.is_handshaking() {
            return Ok(());
        }
    }
    panic!("handshake did not finish");
}

#[test]
fn issued_files_make_a_mutual_handshake_and_name_their_host() {
    let dir = tempfile::tempdir().unwrap();
    pki_with(
        dir.path(),
        &[("host1", Role::Host), ("scc", Role::Controller)],
    );
    let key_mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(key_mode(&dir.path().join(pki::CA_KEY)), 0o600);
    assert_eq!(key_mode(&files(dir.path(), "host1").private_key), 0o600);

    handshake(
        &files(dir.path(), "scc"),
        &files(dir.path(), "host1"),
        "scc",
    )
    .unwrap();
    let der = read_certificates(&files(dir.path(), "host1").certificate).unwrap();
    assert!(names_host(&der[0], "host1"));
    assert!(!names_host(&der[0], "host2"));
    assert!(!names_host(&der[0], "not a dns name"));
}

#[test]
fn a_server_refuses_another_cas_client_and_a_client_the_wrong_name_or_a_controllers() {
    let (ours, theirs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    pki_with(
        ours.path(),
        &[("host1", Role::Host), ("scc", Role::Controller)],
    );
    pki_with(theirs.path(), &[("host1", Role::Host)]);
    let stranger = TlsFiles {
        ca_cert: ours.path().join(pki::CA_CERT),
        ..files(theirs.path(), "host1")
    };
    let refused = handshake(&files(ours.path(), "scc"), &stranger, "scc").unwrap_err();
    assert!(
        matches!(refused, rustls::Error::InvalidCertificate(_)),
        "{refused:?}"
    );
    let io = io::Error::new(io::ErrorKind::InvalidData, refused);
    assert_eq!(refusal(&io), "untrusted_certificate");

    // A server named otherwise than asked; a controller's certificate as a client's.
    let (host1, scc) = (files(ours.path(), "host1"), files(ours.path(), "scc"));
    for (server, client, name) in [(&host1, &host1, "scc"), (&host1, &scc, "host1")] {
        assert_untrusted(handshake(server, client, name));
    }
}

#[test]
fn nothing_is_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    pki_with(dir.path(), &[("host1", Role::Host)]);
    assert!(pki::init(dir.path(), "again").is_err());
    assert!(pki::issue(dir.path(), "host1", Role::Host).is_err());
    assert!(pki::issue(dir.path(), "../x", Role::Host).is_err());
}

/// Skips with a loud message when `tool` is missing, failing under `CI=true`.
fn have(tool: &str) -> bool {
    if Command::new(tool).arg("version").output().is_ok() {
        return true;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    eprintln!("SKIPPED: `{tool}` is not installed (apt-get install openssl)");
    assert!(!ci, "`{tool}` is missing under CI=true");
    false
}

#[test]
fn openssl_verifies_what_is_issued_and_reads_the_keys() {
    if !have("openssl") {
        return;
    }
    let (dir, other) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ca = pki_with(
        dir.path(),
        &[("host1", Role::Host), ("scc", Role::Controller)],
    );
    let other_ca = pki_with(other.path(), &[]);
    let openssl = |args: &[&std::ffi::OsStr]| {
        let out = Command::new("openssl").args(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    for name in ["host1", "scc"] {
        let f = files(dir.path(), name);
        let (ok, text) = openssl(&[
            "verify".as_ref(),
            "-CAfile".as_ref(),
            ca.as_os_str(),
            f.certificate.as_os_str(),
        ]);
        assert!(ok, "{text}");
        let (ok, text) = openssl(&[
            "verify".as_ref(),
            "-CAfile".as_ref(),
            other_ca.as_os_str(),
            f.certificate.as_os_str(),
        ]);
        assert!(!ok, "another CA verified {name}: {text}");
        let (ok, text) = openssl(&[
            "pkey".as_ref(),
            "-noout".as_ref(),
            "-in".as_ref(),
            f.private_key.as_os_str(),
        ]);
        assert!(ok, "{text}");
        let (ok, text) = openssl(&[
            "x509".as_ref(),
            "-noout".as_ref(),
            "-subject".as_ref(),
            "-ext".as_ref(),
            "subjectAltName".as_ref(),
            "-in".as_ref(),
            f.certificate.as_os_str(),
        ]);
        assert!(
            ok && text.contains(&format!("CN = {name}")) && text.contains(&format!("DNS:{name}")),
            "{text}"
        );
    }
}
