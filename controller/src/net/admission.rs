//! Who may be a switch: the identity check of a switch's TLS certificate
//! against the datapath id it announces, and the one live session per datapath.
//!
//! A switch is admitted when its certificate (verified against the CA during
//! the handshake) names the inventory host whose `datapath_id` it announced in
//! FEATURES_REPLY, and no live session holds that datapath: a second session
//! replaces nothing until the first is gone (closed, or silent past the echo
//! timeout, which ends it). Every refusal has a [`Refusal`] reason, counted by
//! the daemon for `scc_switch_refused_total{reason}`. Without TLS (loopback or
//! `insecure_plaintext`) there is no certificate and only the datapath rules
//! apply. It never sends anything to a switch.

use crate::model::Inventory;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use tls_support::CertificateDer;

/// Why a switch was refused: the `reason` label of `scc_switch_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The TLS client presented no certificate.
    NoCertificate,
    /// Its certificate is not of the CA (or expired, or not for a client).
    UntrustedCertificate,
    /// The TLS handshake failed otherwise (plain OpenFlow, a timeout, a reset).
    Handshake,
    /// The announced datapath id is no inventory host's.
    UnknownDatapath,
    /// The certificate names no inventory host.
    UnknownHost,
    /// The certificate names an inventory host, not the one of the announced
    /// datapath id.
    WrongDatapath,
    /// A live session holds the datapath already.
    Duplicate,
}

impl Refusal {
    /// Every reason, for metrics that show each from the start.
    pub const ALL: [Refusal; 7] = [
        Refusal::NoCertificate,
        Refusal::UntrustedCertificate,
        Refusal::Handshake,
        Refusal::UnknownDatapath,
        Refusal::UnknownHost,
        Refusal::WrongDatapath,
        Refusal::Duplicate,
    ];

    /// Its label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::NoCertificate => "no_certificate",
            Refusal::UntrustedCertificate => "untrusted_certificate",
            Refusal::Handshake => "handshake",
            Refusal::UnknownDatapath => "unknown_datapath",
            Refusal::UnknownHost => "unknown_host",
            Refusal::WrongDatapath => "wrong_datapath",
            Refusal::Duplicate => "duplicate",
        }
    }

    /// The reason of a failed TLS handshake.
    pub(super) fn of_handshake(e: &std::io::Error) -> Refusal {
        match tls_support::refusal(e) {
            "no_certificate" => Refusal::NoCertificate,
            "untrusted_certificate" => Refusal::UntrustedCertificate,
            _ => Refusal::Handshake,
        }
    }
}

/// Whether the switch announcing `dpid`, with `certificate` if it came over
/// TLS, is that datapath's host.
pub(super) fn check_identity(
    inventory: &Inventory,
    dpid: u64,
    certificate: Option<&CertificateDer<'_>>,
) -> Result<(), Refusal> {
    let host = inventory.host_by_dpid(dpid);
    let Some(cert) = certificate else {
        return host.map(|_| ()).ok_or(Refusal::UnknownDatapath);
    };
    if host.is_some_and(|h| tls_support::names_host(cert, &h.name)) {
        return Ok(());
    }
    let names_some_host = inventory
        .hosts
        .iter()
        .any(|h| tls_support::names_host(cert, &h.name));
    Err(match (host, names_some_host) {
        (_, false) => Refusal::UnknownHost,
        (None, true) => Refusal::UnknownDatapath,
        (Some(_), true) => Refusal::WrongDatapath,
    })
}

/// The datapaths that have a live session, shared by the listener's sessions.
#[derive(Debug, Default)]
pub(super) struct Claims(Mutex<BTreeSet<u64>>);

/// A datapath held by one session; dropping it (the session ended) frees it.
#[derive(Debug)]
pub(super) struct Claim {
    claims: Arc<Claims>,
    dpid: u64,
}

impl Claims {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<u64>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Holds `dpid` for the caller; `None` while another session holds it.
    pub(super) fn claim(self: &Arc<Self>, dpid: u64) -> Option<Claim> {
        self.lock().insert(dpid).then(|| Claim {
            claims: self.clone(),
            dpid,
        })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.claims.lock().remove(&self.dpid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tls_support::pki::{self, Role};

    #[test]
    fn a_datapath_has_one_claim_until_it_is_dropped() {
        let claims = Arc::new(Claims::default());
        let first = claims.claim(1).unwrap();
        assert!(claims.claim(1).is_none());
        let _other = claims.claim(2).unwrap();
        drop(first);
        assert!(claims.claim(1).is_some());
    }

    #[test]
    fn a_certificate_must_name_the_announced_datapaths_host() {
        let inv = Inventory::parse(
            include_str!("../../../docs/examples/inventory.toml"),
            "inventory.toml",
        )
        .unwrap();
        let (a, b) = (&inv.hosts[0], &inv.hosts[1]);
        let dir = tempfile::tempdir().unwrap();
        pki::init(dir.path(), "CA").unwrap();
        let cert_of = |name: &str| {
            let (_, path) = pki::issue(dir.path(), name, Role::Host).unwrap();
            let pem = std::fs::read(path).unwrap();
            use tls_support::rustls::pki_types::pem::PemObject;
            CertificateDer::from_pem_slice(&pem).unwrap()
        };
        let (cert_a, stranger) = (cert_of(&a.name), cert_of("stranger"));
        assert_eq!(check_identity(&inv, a.datapath_id, Some(&cert_a)), Ok(()));
        assert_eq!(
            check_identity(&inv, b.datapath_id, Some(&cert_a)),
            Err(Refusal::WrongDatapath)
        );
        assert_eq!(
            check_identity(&inv, 0xdead, Some(&cert_a)),
            Err(Refusal::UnknownDatapath)
        );
        assert_eq!(
            check_identity(&inv, a.datapath_id, Some(&stranger)),
            Err(Refusal::UnknownHost)
        );
        assert_eq!(check_identity(&inv, b.datapath_id, None), Ok(()));
        assert_eq!(
            check_identity(&inv, 0xdead, None),
            Err(Refusal::UnknownDatapath)
        );
    }
}
