//! The OpenFlow listener: accepts every switch's connection, completes its TLS
//! handshake when the controller has `[controller.tls]` (a client certificate
//! of the CA is required; a failed handshake is a counted refusal), and runs
//! its session.

use super::admission::{Claims, Refusal};
use super::session::Session;
use crate::daemon::Controller;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// A handshake that takes longer is refused: a silent peer holds nothing.
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

/// The TLS side of the listener.
#[derive(Clone)]
pub struct OpenflowTls(TlsAcceptor);

impl std::fmt::Debug for OpenflowTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OpenflowTls")
    }
}

impl OpenflowTls {
    /// Reads the controller's key, certificate and CA.
    pub fn load(tls: &crate::model::ControllerTls) -> Result<OpenflowTls, tls_support::TlsError> {
        let config = tls_support::server_config(&tls_support::TlsFiles {
            private_key: tls.private_key.clone(),
            certificate: tls.certificate.clone(),
            ca_cert: tls.ca_cert.clone(),
        })?;
        Ok(OpenflowTls(TlsAcceptor::from(config)))
    }
}

/// Accepts switch connections forever, over TLS when `tls` is given.
pub async fn serve_openflow(listener: TcpListener, ctl: Arc<Controller>, tls: Option<OpenflowTls>) {
    let claims = Arc::new(Claims::default());
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        // Flow-mods and barriers are small writes answered by small replies: without
        // this, Nagle's algorithm and delayed ACKs add tens of ms per round trip.
        let _ = stream.set_nodelay(true);
        let (ctl, claims, tls) = (ctl.clone(), claims.clone(), tls.clone());
        tokio::spawn(async move {
            let session = match tls {
                None => Session::new(
                    Box::new(stream),
                    peer.to_string(),
                    None,
                    ctl.clone(),
                    claims,
                ),
                Some(OpenflowTls(acceptor)) => {
                    let accepted =
                        tokio::time::timeout(HANDSHAKE_DEADLINE, acceptor.accept(stream))
                            .await
                            .unwrap_or_else(|_| {
                                Err(std::io::Error::new(
                                    std::io::ErrorKind::TimedOut,
                                    "TLS handshake took too long",
                                ))
                            });
                    match accepted {
                        Ok(stream) => {
                            let certificate = stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|c| c.first())
                                .map(|c| c.clone().into_owned());
                            Session::new(
                                Box::new(stream),
                                peer.to_string(),
                                certificate,
                                ctl.clone(),
                                claims,
                            )
                        }
                        Err(e) => {
                            let reason = Refusal::of_handshake(&e);
                            ctl.note_switch_refused(reason.label());
                            tracing::warn!(%peer, reason = reason.label(), "switch refused: TLS handshake failed: {e}");
                            return;
                        }
                    }
                }
            };
            if let Err(e) = session.run().await {
                tracing::warn!(%peer, "switch session ended: {e}");
            }
        });
    }
}
