//! Switch sessions against a fake switch: `dataplane_core`'s pipeline behind the
//! OpenFlow codec, on a real loopback connection to the controller's listener.
//! The audit puts back a flow deleted behind the controller's back and sends
//! nothing when the tables match; a switch that stops answering is marked
//! disconnected, its connection closed, and it is welcome back.

use super::serve_openflow;
use crate::daemon::tests::example_controller;
use crate::daemon::{Controller, SwitchStatus};
use crate::model::SwitchSettings;
use dataplane_core::pipeline::Pipeline;
use dataplane_core::translate::{apply_flow_mod, flow_stats};
use openflow::flow::port;
use openflow::wire::{
    decode, encode, frame_len, FlowMod, FlowModCommand, Hello, Message, MultipartReply,
    MultipartReplyBody, MultipartRequestBody, SwitchFeatures,
};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A deadline no loaded machine reaches; the tests wait for conditions.
const DEADLINE: Duration = Duration::from_secs(120);

/// The fake switch's state, shared with the test.
#[derive(Debug)]
pub(super) struct FakeSwitch {
    tables: Mutex<Pipeline>,
    /// False: it reads and ignores everything, as a stopped process would.
    answering: AtomicBool,
    pub(super) flow_mods: AtomicUsize,
    /// The controller closed the connection.
    pub(super) closed: AtomicBool,
}

impl FakeSwitch {
    pub(super) fn new() -> Arc<FakeSwitch> {
        Arc::new(FakeSwitch {
            tables: Mutex::new(Pipeline::new(4)),
            answering: AtomicBool::new(true),
            flow_mods: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
        })
    }

    pub(super) fn flows(&self) -> usize {
        self.tables.lock().unwrap().len()
    }

    /// The answer to one message, having applied it.
    fn answer(&self, dpid: u64, m: Message) -> Option<Message> {
        let now = Instant::now();
        match m {
            Message::FeaturesRequest => Some(Message::FeaturesReply(SwitchFeatures {
                datapath_id: dpid,
                n_buffers: 0,
                n_tables: 4,
                auxiliary_id: 0,
                capabilities: 0,
                reserved: 0,
            })),
            Message::EchoRequest(data) => Some(Message::EchoReply(data)),
            Message::BarrierRequest => Some(Message::BarrierReply),
            Message::FlowMod(fm) => {
                apply_flow_mod(&mut self.tables.lock().unwrap(), &fm, now)
                    .expect("the controller's flow-mods apply");
                self.flow_mods.fetch_add(1, Ordering::SeqCst);
                None
            }
            Message::MultipartRequest(r) => {
                let body = match r.body {
                    MultipartRequestBody::Flow(req) => MultipartReplyBody::Flow(
                        flow_stats(&self.tables.lock().unwrap(), &req, now).ok()?,
                    ),
                    MultipartRequestBody::PortDesc => MultipartReplyBody::PortDesc(Vec::new()),
                    MultipartRequestBody::TunnelStats => {
                        MultipartReplyBody::TunnelStats(Vec::new())
                    }
                    _ => return None,
                };
                Some(Message::MultipartReply(MultipartReply { flags: 0, body }))
            }
            _ => None,
        }
    }

    /// Connects to the controller at `to` as datapath `dpid` and serves it until
    /// the connection closes.
    async fn run(self: Arc<Self>, to: SocketAddr, dpid: u64) {
        let stream = TcpStream::connect(to).await.expect("connect");
        self.serve(stream, dpid).await;
    }

    /// Serves the controller on `stream` as datapath `dpid` until it closes.
    pub(super) async fn serve(
        self: Arc<Self>,
        mut stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
        dpid: u64,
    ) {
        let hello = encode(&Message::Hello(Hello::of13()), 1).unwrap();
        if stream.write_all(&hello).await.is_err() {
            self.closed.store(true, Ordering::SeqCst);
            return;
        }
        let mut inbox = Vec::new();
        let mut chunk = vec![0u8; 65536];
        loop {
            let n = match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            inbox.extend_from_slice(&chunk[..n]);
            while let Ok(Some(len)) = frame_len(&inbox) {
                let frame: Vec<u8> = inbox.drain(..len).collect();
                let Ok((xid, m)) = decode(&frame) else {
                    continue;
                };
                if !self.answering.load(Ordering::SeqCst) {
                    continue;
                }
                if let Some(reply) = self.answer(dpid, m) {
                    let bytes = encode(&reply, xid).unwrap();
                    if stream.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
            }
        }
        self.closed.store(true, Ordering::SeqCst);
    }
}

/// A controller over the example inventory with these settings, listening for
/// switches on a loopback port.
async fn controller(
    dir: &std::path::Path,
    settings: SwitchSettings,
) -> (Arc<Controller>, SocketAddr) {
    let ctl = example_controller(dir, |inventory| inventory.switch_settings = settings);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_openflow(listener, ctl.clone(), None));
    (ctl, addr)
}

pub(super) fn switch(ctl: &Controller, dpid: u64) -> SwitchStatus {
    let host = ctl.inventory().host_by_dpid(dpid).unwrap().name.clone();
    ctl.switch_report()
        .into_iter()
        .find(|(name, _)| *name == host)
        .map(|(_, s)| s)
        .unwrap()
}

/// Waits until `done` holds, at most [`DEADLINE`]; panics saying `what` otherwise.
pub(super) async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < DEADLINE, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn deleted(spec: openflow::FlowSpec) -> FlowMod {
    FlowMod {
        command: FlowModCommand::DeleteStrict,
        out_port: port::ANY,
        ..FlowMod::add(spec)
    }
}

#[tokio::test]
async fn the_audit_restores_a_flow_deleted_behind_the_controller_s_back() {
    let dir = tempfile::tempdir().unwrap();
    let settings = SwitchSettings {
        audit_every_s: 1,
        ..SwitchSettings::default()
    };
    let (ctl, addr) = controller(dir.path(), settings).await;
    let (version, desired) = ctl.desired(1).unwrap();
    assert!(desired.len() > 1);
    let fake = FakeSwitch::new();
    tokio::spawn(fake.clone().run(addr, 1));
    wait_until("the switch is synchronised", || {
        switch(&ctl, 1).synced_version == version
    })
    .await;
    assert_eq!(fake.flows(), desired.len());
    let sent = fake.flow_mods.load(Ordering::SeqCst);
    assert_eq!(sent, desired.len(), "one add per flow");

    // Audits of equal tables send nothing.
    wait_until("two audits", || switch(&ctl, 1).audits >= 2).await;
    assert_eq!(fake.flow_mods.load(Ordering::SeqCst), sent);
    assert_eq!(switch(&ctl, 1).repairs, 0);

    // A flow deleted behind the controller's back comes back, with one flow-mod.
    let victim = desired[desired.len() / 2].clone();
    apply_flow_mod(
        &mut fake.tables.lock().unwrap(),
        &deleted(victim),
        Instant::now(),
    )
    .unwrap();
    assert_eq!(fake.flows(), desired.len() - 1);
    wait_until("the deleted flow is repaired", || {
        switch(&ctl, 1).repairs == 1
    })
    .await;
    assert_eq!(fake.flows(), desired.len());
    assert_eq!(fake.flow_mods.load(Ordering::SeqCst), sent + 1);
    assert_eq!(ctl.status()["repairs"], 1);
    let audits = switch(&ctl, 1).audits;
    wait_until("another audit", || switch(&ctl, 1).audits > audits).await;
    assert_eq!(switch(&ctl, 1).repairs, 1, "nothing more to repair");
}

#[tokio::test]
async fn a_switch_that_stops_answering_is_disconnected_and_welcome_back() {
    let dir = tempfile::tempdir().unwrap();
    let settings = SwitchSettings {
        echo_every_s: 1,
        echo_timeout_s: 3,
        audit_every_s: 0,
    };
    let (ctl, addr) = controller(dir.path(), settings).await;
    let (version, desired) = ctl.desired(2).unwrap();
    let fake = FakeSwitch::new();
    tokio::spawn(fake.clone().run(addr, 2));
    wait_until("the switch is synchronised", || {
        let s = switch(&ctl, 2);
        s.connected && s.synced_version == version
    })
    .await;

    fake.answering.store(false, Ordering::SeqCst);
    wait_until("the silent switch is disconnected", || {
        !switch(&ctl, 2).connected
    })
    .await;
    let s = switch(&ctl, 2);
    let error = s.last_error.unwrap_or_default();
    assert!(error.contains("stopped answering"), "{error}");
    wait_until("the controller closes the connection", || {
        fake.closed.load(Ordering::SeqCst)
    })
    .await;

    // It reconnects with its tables intact: audited, nothing to repair.
    let again = FakeSwitch::new();
    for flow in desired {
        again
            .tables
            .lock()
            .unwrap()
            .add(flow, Instant::now())
            .unwrap();
    }
    tokio::spawn(again.clone().run(addr, 2));
    wait_until("the switch is back and audited", || {
        let s = switch(&ctl, 2);
        s.connected && s.audits == 1
    })
    .await;
    assert_eq!(switch(&ctl, 2).repairs, 0);
    assert_eq!(again.flow_mods.load(Ordering::SeqCst), 0);
}
