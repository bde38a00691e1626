//! The OpenFlow listener: accepts every switch's connection and runs its session.

use super::session::Session;
use crate::daemon::Controller;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Accepts switch connections forever.
pub async fn serve_openflow(listener: TcpListener, ctl: Arc<Controller>) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        // Flow-mods and barriers are small writes answered by small replies: without
        // this, Nagle's algorithm and delayed ACKs add tens of ms per round trip.
        let _ = stream.set_nodelay(true);
        let ctl = ctl.clone();
        tokio::spawn(async move {
            let result = Session::new(stream, ctl.clone()).run().await;
            if let Err(e) = &result {
                tracing::warn!(%peer, "switch session ended: {e}");
            }
        });
    }
}
