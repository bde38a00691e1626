//! QEMU's migration stream over TLS, with the deployment's CA: the directory of
//! PEM files a `tls-creds-x509` object reads (`ca-cert.pem` and the end's
//! `server-*` or `client-*` files, made from a host's `scc pki` key and
//! certificate), the `-object` arguments that load it, and the migration
//! parameters that make the stream use it. The destination (server) demands
//! the source's certificate (`verify-peer=on`); the source checks that the
//! destination's certificate names the destination host (`tls-hostname`).
//!
//! It only writes files and builds arguments: starting QEMU and sending the
//! parameters belong to [`crate::qemu`] and [`crate::migration`].

use crate::commands::MigrationParameters;
use std::fs;
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The id of the credentials object on both ends.
pub const CREDS_ID: &str = "sc-migration-tls";

/// Which end of the migration stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// The source: it connects.
    Client,
    /// The destination: it listens.
    Server,
}

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Endpoint::Client => "client",
            Endpoint::Server => "server",
        }
    }
}

/// A host's PEM files from the deployment's PKI.
#[derive(Debug, Clone)]
pub struct HostCredentials {
    /// The CA's certificate.
    pub ca_cert: PathBuf,
    /// The host's certificate (naming the host).
    pub certificate: PathBuf,
    /// The host's private key.
    pub private_key: PathBuf,
}

/// Writes the credentials directory of `endpoint` in `dir` (created, mode
/// 0700): `ca-cert.pem`, `ENDPOINT-cert.pem` and `ENDPOINT-key.pem` (0600),
/// copied from `host`. Returns `dir`.
pub fn creds_dir(dir: &Path, endpoint: Endpoint, host: &HostCredentials) -> io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    let end = endpoint.name();
    for (from, to, mode) in [
        (&host.ca_cert, "ca-cert.pem".to_string(), 0o644),
        (&host.certificate, format!("{end}-cert.pem"), 0o644),
        (&host.private_key, format!("{end}-key.pem"), 0o600),
    ] {
        let text = fs::read(from)?;
        let path = dir.join(to);
        let _ = fs::remove_file(&path);
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)?;
        io::Write::write_all(&mut file, &text)?;
    }
    Ok(dir.to_path_buf())
}

/// QEMU's arguments that load the credentials of `dir` as [`CREDS_ID`]; a
/// server demands a client certificate of the CA.
pub fn object_args(dir: &Path, endpoint: Endpoint) -> [String; 2] {
    let verify = match endpoint {
        Endpoint::Server => ",verify-peer=on",
        Endpoint::Client => "",
    };
    [
        "-object".to_string(),
        format!(
            "tls-creds-x509,id={CREDS_ID},dir={},endpoint={}{verify}",
            dir.display(),
            endpoint.name()
        ),
    ]
}

/// `parameters` with the migration stream over [`CREDS_ID`]; on the source,
/// `destination_host` is the name the destination's certificate must carry.
pub fn with_tls(
    parameters: MigrationParameters,
    destination_host: Option<&str>,
) -> MigrationParameters {
    MigrationParameters {
        tls_creds: Some(CREDS_ID.to_string()),
        tls_hostname: destination_host.map(str::to_string),
        ..parameters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_directory_has_qemus_names_and_the_key_is_private() {
        let src = tempfile::tempdir().unwrap();
        let write = |name: &str| {
            let p = src.path().join(name);
            fs::write(&p, name).unwrap();
            p
        };
        let host = HostCredentials {
            ca_cert: write("ca"),
            certificate: write("cert"),
            private_key: write("key"),
        };
        let dir = src.path().join("creds");
        creds_dir(&dir, Endpoint::Server, &host).unwrap();
        assert_eq!(
            fs::read_to_string(dir.join("server-cert.pem")).unwrap(),
            "cert"
        );
        let mode = fs::metadata(dir.join("server-key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let [flag, object] = object_args(&dir, Endpoint::Server);
        assert_eq!(flag, "-object");
        assert!(
            object.ends_with("endpoint=server,verify-peer=on"),
            "{object}"
        );
        let p = with_tls(MigrationParameters::default(), Some("host2"));
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["tls-creds"], CREDS_ID);
        assert_eq!(json["tls-hostname"], "host2");
    }
}
