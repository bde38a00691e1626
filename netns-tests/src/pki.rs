//! The throwaway PKI of a test cloud: made with `scc pki` in `pki/` beside the
//! test's inventory (the CA, `scc`'s controller certificate, one certificate per
//! host named `host0`, `host1`, … as the inventory names them, and one for a
//! tool, `admin`), so that `scc` and every `scd` talk OpenFlow over mutual TLS
//! as in production. Also the `[controller.tls]` lines of such an inventory and
//! the `ovs-ofctl` options of a certificate. It never touches files outside the
//! test's directory.

use crate::{run, scc_binary};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The PKI's directory name, beside the inventory.
pub const DIR: &str = "pki";
/// The name of the controller's certificate (scd's default `controller_name`).
pub const CONTROLLER: &str = "scc";
/// The name of the tools' certificate (`ovs-ofctl`).
pub const TOOL: &str = "admin";

/// The `[controller.tls]` table of an inventory whose PKI is [`DIR`] beside it.
pub const INVENTORY_TLS: &str = "[controller.tls]\nprivate_key = \"pki/scc-key.pem\"\n\
    certificate = \"pki/scc-cert.pem\"\nca_cert = \"pki/ca-cert.pem\"\n";

/// The key, certificate and CA files of one name.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The private key.
    pub key: PathBuf,
    /// The certificate.
    pub cert: PathBuf,
    /// The CA's certificate.
    pub ca: PathBuf,
}

impl Identity {
    /// `name`'s files in PKI directory `pki`.
    pub fn of(pki: &Path, name: &str) -> Identity {
        Identity {
            key: pki.join(format!("{name}-key.pem")),
            cert: pki.join(format!("{name}-cert.pem")),
            ca: pki.join("ca-cert.pem"),
        }
    }

    /// `ovs-ofctl`'s options presenting this identity.
    pub fn ofctl_args(&self) -> [String; 3] {
        [
            format!("--private-key={}", self.key.display()),
            format!("--certificate={}", self.cert.display()),
            format!("--ca-cert={}", self.ca.display()),
        ]
    }
}

fn scc_pki(args: &[&str], dir: &Path) -> Result<String> {
    run(Command::new(scc_binary()?)
        .arg("pki")
        .args(args)
        .arg("--dir")
        .arg(dir))
}

/// Makes a PKI in `pki` with a CA, the controller's certificate, the tool's and
/// those of `host0`..`host{hosts-1}`; a PKI already there is kept (so `scc` and
/// the switches of one test share it, whichever starts first). Returns `pki`.
pub fn ensure(pki: &Path, hosts: usize) -> Result<PathBuf> {
    if !pki.join("ca-cert.pem").exists() {
        scc_pki(&["init"], pki).context("scc pki init")?;
        scc_pki(&["issue", CONTROLLER, "--controller"], pki)?;
        scc_pki(&["issue", TOOL], pki)?;
    }
    for i in 0..hosts {
        let name = format!("host{i}");
        if !Identity::of(pki, &name).cert.exists() {
            scc_pki(&["issue", &name], pki)?;
        }
    }
    Ok(pki.to_path_buf())
}

/// A second, unrelated CA in `dir` with a certificate for each of `names`: what
/// an attacker who made their own certificates holds.
pub fn foreign(dir: &Path, names: &[&str]) -> Result<PathBuf> {
    scc_pki(&["init", "--name", "another CA"], dir)?;
    for name in names {
        scc_pki(&["issue", name], dir)?;
    }
    Ok(dir.to_path_buf())
}
