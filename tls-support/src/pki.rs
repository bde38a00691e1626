//! The deployment's PKI as files in one directory: a CA (`ca-key.pem`,
//! `ca-cert.pem`) made by [`init`], and for each name a key and a certificate
//! signed by it (`NAME-key.pem`, `NAME-cert.pem`) made by [`issue`]. All PEM,
//! ECDSA P-256, accepted by OpenSSL (`openssl verify -CAfile`, `ovs-ofctl
//! --private-key --certificate --ca-cert`), GnuTLS (QEMU's `tls-creds-x509`)
//! and rustls.
//!
//! A certificate's identity is its name, as a DNS subject alternative name and
//! as the subject's common name: for a switch, the host's inventory name, which
//! `scc` checks against the datapath id the switch announces. Keys are written
//! with mode 0600 and never overwritten: rotating is issuing again after the
//! operator moved the old files away. It never reads the inventory.

use super::TlsError;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// The CA's key, in the PKI directory.
pub const CA_KEY: &str = "ca-key.pem";
/// The CA's certificate, in the PKI directory: what every end trusts.
pub const CA_CERT: &str = "ca-cert.pem";
/// How long the CA is valid.
const CA_VALIDITY: Duration = Duration::days(10 * 365);
/// How long an issued certificate is valid: rotate before.
pub const VALIDITY_DAYS: i64 = 825;
/// Mode of every private key file.
const KEY_MODE: u32 = 0o600;

/// What an issued certificate may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A switch (or a tool such as `ovs-ofctl`): a TLS client towards the
    /// controller and a TLS server on its `pssl:` listener.
    Host,
    /// The controller: a TLS server only, so that its certificate can never be
    /// presented as a switch's.
    Controller,
}

/// The files of name `name` in PKI directory `dir`: (key, certificate).
pub fn files_of(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{name}-key.pem")),
        dir.join(format!("{name}-cert.pem")),
    )
}

/// The [`TlsFiles`](super::TlsFiles) of name `name` in PKI directory `dir`,
/// with the CA's certificate.
pub fn files(dir: &Path, name: &str) -> super::TlsFiles {
    let (private_key, certificate) = files_of(dir, name);
    super::TlsFiles {
        private_key,
        certificate,
        ca_cert: dir.join(CA_CERT),
    }
}

fn pki_error(e: impl ToString) -> TlsError {
    TlsError::Pki(e.to_string())
}

/// Writes `text` to a new file `path` (never replacing one) with `mode`.
fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), TlsError> {
    let write_error = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(write_error)?;
    file.write_all(text.as_bytes()).map_err(write_error)?;
    file.sync_all().map_err(write_error)
}

/// The name as both the common name and the only DNS subject alternative name.
fn params_for(name: &str, valid_for: Duration) -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::new(vec![name.to_string()]).map_err(pki_error)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    // An hour back: a peer whose clock is a little behind accepts it at once.
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + valid_for;
    Ok(params)
}

/// Makes the CA in `dir` (created if needed, mode 0700): its key and its
/// self-signed certificate with common name `name`. Refused if a CA is there.
pub fn init(dir: &Path, name: &str) -> Result<PathBuf, TlsError> {
    fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let key = KeyPair::generate().map_err(pki_error)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + CA_VALIDITY;
    let cert = params.self_signed(&key).map_err(pki_error)?;
    write_new(&dir.join(CA_KEY), &key.serialize_pem(), KEY_MODE)?;
    let cert_path = dir.join(CA_CERT);
    write_new(&cert_path, &cert.pem(), 0o644)?;
    Ok(cert_path)
}

/// Issues a key and a certificate for `name` signed by the CA in `dir`; returns
/// their paths (key, certificate). Refused if `name`'s files exist.
pub fn issue(dir: &Path, name: &str, role: Role) -> Result<(PathBuf, PathBuf), TlsError> {
    if name.is_empty() || name.contains(['/', '\0']) || name.starts_with('.') {
        return Err(pki_error(format!("`{name}` cannot name a file")));
    }
    let read = |file: &str| {
        let path = dir.join(file);
        fs::read_to_string(&path).map_err(|e| super::file_error(&path, e))
    };
    let ca_key = KeyPair::from_pem(&read(CA_KEY)?).map_err(pki_error)?;
    let issuer = Issuer::from_ca_cert_pem(&read(CA_CERT)?, ca_key).map_err(pki_error)?;
    let key = KeyPair::generate().map_err(pki_error)?;
    let mut params = params_for(name, Duration::days(VALIDITY_DAYS))?;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = match role {
        Role::Host => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
        Role::Controller => vec![ExtendedKeyUsagePurpose::ServerAuth],
    };
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, &issuer).map_err(pki_error)?;
    let (key_path, cert_path) = files_of(dir, name);
    write_new(&key_path, &key.serialize_pem(), KEY_MODE)?;
    write_new(&cert_path, &cert.pem(), 0o644)?;
    Ok((key_path, cert_path))
}
