//! Ports the controller asks a switch to add or remove (the Supercloud
//! add-port/del-port experimenter messages, which `scd` takes while it runs):
//! the registry through which the daemon reaches the session of a connected
//! switch, and the answer a request waits for — the switch's port-status, or
//! the error it refused the request with.

use openflow::wire::{AddPort, DelPort, Message};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How long a switch may take to open or close a device and say so.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// One add-port or del-port for a session to send, and where its answer goes.
#[derive(Debug)]
pub struct PortRequest {
    /// The message: [`Message::AddPort`] or [`Message::DelPort`].
    pub message: Message,
    /// Ok once the switch announced the port added (or removed); its refusal.
    pub answer: oneshot::Sender<Result<(), String>>,
}

impl PortRequest {
    /// The port number the request is about, and whether it adds it.
    pub fn port(&self) -> (u32, bool) {
        match &self.message {
            Message::AddPort(a) => (a.port, true),
            Message::DelPort(d) => (d.port, false),
            _ => (0, false),
        }
    }
}

/// The connected switches' sessions, by datapath id, that take port requests.
#[derive(Debug, Default)]
pub struct PortRequests {
    sessions: Mutex<HashMap<u64, mpsc::UnboundedSender<PortRequest>>>,
}

impl PortRequests {
    /// The session of switch `dpid` takes its requests from the receiver from
    /// now on (a newer connection replaces an older one's).
    pub fn register(&self, dpid: u64) -> mpsc::UnboundedReceiver<PortRequest> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock().insert(dpid, tx);
        rx
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, mpsc::UnboundedSender<PortRequest>>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks switch `dpid` to add `port` and waits until it announced it.
    pub async fn add(&self, dpid: u64, port: AddPort) -> Result<(), String> {
        self.ask(dpid, Message::AddPort(port)).await
    }

    /// Asks switch `dpid` to remove port `port` and waits until it announced it.
    pub async fn delete(&self, dpid: u64, port: u32) -> Result<(), String> {
        self.ask(dpid, Message::DelPort(DelPort { port })).await
    }

    async fn ask(&self, dpid: u64, message: Message) -> Result<(), String> {
        let (answer, answered) = oneshot::channel();
        let sent = self
            .lock()
            .get(&dpid)
            .map(|tx| tx.send(PortRequest { message, answer }).is_ok());
        if sent != Some(true) {
            return Err("its switch is not connected".to_string());
        }
        match tokio::time::timeout(ANSWER_WITHIN, answered).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err("its switch disconnected before answering".to_string()),
            Err(_) => Err(format!(
                "its switch did not announce the port within {ANSWER_WITHIN:?}"
            )),
        }
    }
}
