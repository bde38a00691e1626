//! What `scd` and `scc` share for OpenFlow over mutual TLS: reading the PEM files
//! of a host (its key, its certificate, the CA's certificate) into rustls
//! configurations that demand a certificate from the same CA on both sides
//! ([`server_config`], [`client_config`]), the identity check that binds a
//! certificate to an inventory host's name ([`names_host`]), the reason a peer
//! was refused as a metric label ([`refusal`]), and the PKI that issues those
//! files (`pki`).
//!
//! It never opens a socket and never decides who may connect: the daemons do,
//! with what this crate reads and checks. The cryptography is rustls' with the
//! `ring` provider (already the tunnels' crypto library).

#![forbid(unsafe_code)]

pub mod pki;

pub use rustls;
pub use rustls::pki_types::{CertificateDer, ServerName};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The three PEM files of one end of a TLS channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// This end's private key (PKCS#8, SEC1 or PKCS#1).
    pub private_key: PathBuf,
    /// This end's certificate, optionally followed by intermediates.
    pub certificate: PathBuf,
    /// The CA that signs every certificate of the deployment; the peer's must
    /// chain to it.
    pub ca_cert: PathBuf,
}

/// The TLS material could not be read or is not usable.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file is missing, unreadable or holds no PEM block of the kind needed.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// rustls refused the material (a key that does not match its certificate,
    /// a CA certificate it cannot use).
    #[error("TLS configuration: {0}")]
    Config(String),
    /// Making or signing a key or certificate failed.
    #[error("PKI: {0}")]
    Pki(String),
    /// Writing a file of the PKI failed.
    #[error("{path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

fn file_error(path: &Path, message: impl ToString) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// The crypto provider every configuration of the project uses: `ring`, already
/// the tunnels' crypto library; rustls deprecates it only because it has no
/// post-quantum key exchange, and aws-lc-rs would add a C toolchain to the build.
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A key, its certificate chain and the CA, read from [`TlsFiles`].
#[derive(Debug)]
struct Material {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    roots: Arc<RootCertStore>,
}

impl Material {
    fn load(files: &TlsFiles) -> Result<Material, TlsError> {
        let chain = read_certificates(&files.certificate)?;
        let key = PrivateKeyDer::from_pem_file(&files.private_key)
            .map_err(|e| file_error(&files.private_key, format!("no private key: {e}")))?;
        let mut roots = RootCertStore::empty();
        for ca in read_certificates(&files.ca_cert)? {
            roots
                .add(ca)
                .map_err(|e| file_error(&files.ca_cert, format!("unusable CA certificate: {e}")))?;
        }
        Ok(Material {
            chain,
            key,
            roots: Arc::new(roots),
        })
    }
}

/// Every certificate in a PEM file; at least one.
fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no CERTIFICATE block"));
    }
    Ok(certs)
}

fn config_error(e: impl ToString) -> TlsError {
    TlsError::Config(e.to_string())
}

/// The configuration of a listener that accepts only peers presenting a
/// certificate of the CA (mutual authentication), and presents `files`'
/// certificate.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let m = Material::load(files)?;
    let verifier = WebPkiClientVerifier::builder_with_provider(m.roots, provider())
        .build()
        .map_err(config_error)?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(config_error)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(m.chain, m.key)
        .map_err(config_error)?;
    Ok(Arc::new(config))
}

/// The configuration of a connection that presents `files`' certificate and
/// accepts only a server whose certificate is of the CA and names the server
/// name given at connect time.
pub fn client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>, TlsError> {
    let m = Material::load(files)?;
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(config_error)?
        .with_root_certificates(m.roots)
        .with_client_auth_cert(m.chain, m.key)
        .map_err(config_error)?;
    Ok(Arc::new(config))
}

/// Whether `cert` (already verified against the CA) names `host`: a DNS subject
/// alternative name equal to it, as `scc pki issue HOST` writes. A host name that
/// is not a valid DNS name is named by no certificate.
pub fn names_host(cert: &CertificateDer<'_>, host: &str) -> bool {
    let Ok(name) = ServerName::try_from(host) else {
        return false;
    };
    webpki::EndEntityCert::try_from(cert)
        .is_ok_and(|ee| ee.verify_is_valid_for_subject_name(&name).is_ok())
}

/// Why a TLS handshake failed, as a metric label: `no_certificate` (the peer
/// presented none), `untrusted_certificate` (not of our CA, expired, or not for
/// this use), or `handshake` (anything else, such as a peer speaking plain
/// OpenFlow or an I/O error).
pub fn refusal(e: &io::Error) -> &'static str {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::NoCertificatesPresented) => "no_certificate",
        Some(rustls::Error::InvalidCertificate(_)) => "untrusted_certificate",
        _ => "handshake",
    }
}

#[cfg(test)]
mod tests;
