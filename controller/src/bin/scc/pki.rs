//! `scc pki`: the certificates of OpenFlow over TLS (a CA, and a key and
//! certificate per host, tool or controller), made with `tls_support::pki`.

use anyhow::{Context, Result};
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum PkiVerb {
    /// Make a CA in DIR: ca-key.pem (mode 0600) and its self-signed ca-cert.pem.
    Init {
        /// The PKI directory (created, mode 0700).
        #[arg(long)]
        dir: PathBuf,
        /// The CA's common name.
        #[arg(long, default_value = "supercloud CA")]
        name: String,
    },
    /// Issue NAME-key.pem and NAME-cert.pem signed by DIR's CA; the certificate's
    /// identity (DNS name and common name) is NAME: a host's inventory name, a
    /// tool's name, or with --controller the controller's.
    Issue {
        /// A host's inventory name (or the controller's, or a tool's).
        name: String,
        /// The PKI directory made by `scc pki init`.
        #[arg(long)]
        dir: PathBuf,
        /// A certificate for the controller: TLS server only, so it can never be
        /// presented as a switch's.
        #[arg(long)]
        controller: bool,
    },
}

/// Runs one `scc pki` verb.
pub fn pki(verb: PkiVerb) -> Result<ExitCode> {
    use tls_support::pki::{self, Role};
    match verb {
        PkiVerb::Init { dir, name } => {
            let cert = pki::init(&dir, &name)?;
            std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .with_context(|| dir.display().to_string())?;
            println!("{}", cert.display());
        }
        PkiVerb::Issue {
            name,
            dir,
            controller,
        } => {
            let role = if controller {
                Role::Controller
            } else {
                Role::Host
            };
            let (key, cert) = pki::issue(&dir, &name, role)?;
            println!("{}\n{}", key.display(), cert.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
