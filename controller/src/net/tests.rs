//! Switch sessions against a fake switch: `dataplane_core`'s pipeline behind the
//! OpenFlow codec, on a real loopback connection to the controller's listener.
//! The audit puts back a flow deleted behind the controller's back and sends
//! nothing when the tables match; a switch that stops answering is marked
//! disconnected, its connection closed, and it is welcome back; a migration
//! phase committed but never sent before a crash reaches the switch from the
//! restarted controller.

use super::serve_openflow;
use crate::daemon::tests::example_controller;
use crate::daemon::{Controller, SwitchStatus};
use crate::model::SwitchSettings;
use dataplane_core::pipeline::Pipeline;
use dataplane_core::translate::{apply_flow_mod, flow_stats};
use openflow::flow::port;
use openflow::wire::{
    decode, encode, frame_len, ControllerRole, FlowMod, FlowModCommand, Hello, Message,
    MultipartReply, MultipartReplyBody, MultipartRequestBody, Role, SwitchFeatures,
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
struct FakeSwitch {
    tables: Mutex<Pipeline>,
    /// False: it reads and ignores everything, as a stopped process would.
    answering: AtomicBool,
    flow_mods: AtomicUsize,
    /// The controller closed the connection.
    closed: AtomicBool,
    /// The role requests received, in order.
    roles: Mutex<Vec<Role>>,
}

impl FakeSwitch {
    fn new() -> Arc<FakeSwitch> {
        FakeSwitch::holding(Pipeline::new(4))
    }

    /// A switch whose tables are `tables`, as after a controller's restart.
    fn holding(tables: Pipeline) -> Arc<FakeSwitch> {
        Arc::new(FakeSwitch {
            tables: Mutex::new(tables),
            answering: AtomicBool::new(true),
            flow_mods: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            roles: Mutex::new(Vec::new()),
        })
    }

    fn flows(&self) -> usize {
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
            Message::RoleRequest(r) => {
                self.roles.lock().unwrap().push(r);
                Some(Message::RoleReply(r))
            }
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
        let mut stream = TcpStream::connect(to).await.expect("connect");
        let hello = encode(&Message::Hello(Hello::of13()), 1).unwrap();
        stream.write_all(&hello).await.expect("hello");
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
    tokio::spawn(serve_openflow(listener, ctl.clone()));
    (ctl, addr)
}

fn switch(ctl: &Controller, dpid: u64) -> SwitchStatus {
    let host = ctl.inventory().host_by_dpid(dpid).unwrap().name.clone();
    ctl.switch_report()
        .into_iter()
        .find(|(name, _)| *name == host)
        .map(|(_, s)| s)
        .unwrap()
}

/// Waits until `done` holds, at most [`DEADLINE`]; panics saying `what` otherwise.
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
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

/// A crash after a migration phase was committed and before its flow-mods
/// reached the switch: the controller started again from the store sends the
/// switch that phase's difference, and only that.
#[tokio::test]
async fn a_phase_committed_but_never_sent_reaches_the_switch_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (ctl, addr) = controller(dir.path(), SwitchSettings::default()).await;
    let (version, plain) = ctl.desired(2).unwrap();
    let fake = FakeSwitch::new();
    tokio::spawn(fake.clone().run(addr, 2));
    wait_until("the switch is synchronised", || {
        switch(&ctl, 2).synced_version == version
    })
    .await;
    let held = fake.tables.lock().unwrap().clone();

    // The destination of web1's move: deaf from now on, as if the controller
    // died between its commit and its flow-mods.
    fake.answering.store(false, Ordering::SeqCst);
    ctl.start_migration("web1", "host-b", 7).unwrap();
    let (_, prepared) = ctl.desired(2).unwrap();
    assert_ne!(prepared, plain, "the destination has something to learn");
    assert_eq!(fake.flows(), plain.len(), "and never heard it");

    // Started again from the store, with the switch as it was.
    let store = crate::store::Store::new(&dir.path().join("state.json"));
    let start = crate::restart::start(store.load().unwrap(), None, None).unwrap();
    let again = Controller::new(start.persisted, store).unwrap();
    assert!(again.resume().is_some(), "the prepared migration resumes");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_openflow(listener, again.clone()));
    let (version, desired) = again.desired(2).unwrap();
    assert_eq!(desired, prepared, "the committed phase's table");
    let switch_again = FakeSwitch::holding(held);
    tokio::spawn(switch_again.clone().run(addr, 2));
    wait_until("the switch is synchronised again", || {
        switch(&again, 2).synced_version == version
    })
    .await;
    assert_eq!(switch_again.flows(), desired.len());
    let difference = crate::diff::plan(&plain, &desired, crate::routing::SCC_COOKIE);
    assert!(!difference.is_empty() && difference.len() < desired.len());
    assert_eq!(
        switch_again.flow_mods.load(Ordering::SeqCst),
        difference.len(),
        "the difference, not the whole table"
    );
}

#[tokio::test]
async fn a_standby_claims_slave_and_sends_nothing_and_takes_over_without_flow_mods() {
    use crate::state_store::Mastership;
    let dir = tempfile::tempdir().unwrap();
    let (ctl, addr) = controller(dir.path(), SwitchSettings::default()).await;
    ctl.set_mastership(Mastership::Slave(3));
    let (version, desired) = ctl.desired(1).unwrap();
    let fake = FakeSwitch::new();
    tokio::spawn(fake.clone().run(addr, 1));
    wait_until("the switch accepts the slave", || {
        switch(&ctl, 1).role == Some(Mastership::Slave(3))
    })
    .await;
    // The flows were read back after the role (the last request of the
    // handshake): had the standby sent anything, it would be counted by now.
    wait_until("the standby reads the flows", || {
        switch(&ctl, 1).connected && fake.roles.lock().unwrap().len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        fake.flow_mods.load(Ordering::SeqCst),
        0,
        "a slave sends nothing"
    );
    assert_eq!(switch(&ctl, 1).synced_version, 0);
    assert!(matches!(
        ctl.add_vm(ctl.vm("web1").unwrap()),
        Err(crate::daemon::ChangeError::Standby)
    ));

    ctl.set_mastership(Mastership::Master(4));
    wait_until("the new master programs the switch", || {
        switch(&ctl, 1).synced_version == version
    })
    .await;
    assert_eq!(fake.flows(), desired.len());
    let sent = fake.flow_mods.load(Ordering::SeqCst);
    assert_eq!(sent, desired.len());

    // Deposed, then elected again (a new generation): the audit finds the
    // tables equal and sends nothing.
    ctl.set_mastership(Mastership::Slave(4));
    ctl.set_mastership(Mastership::Master(7));
    wait_until("the switch accepts the new generation", || {
        switch(&ctl, 1).role == Some(Mastership::Master(7))
    })
    .await;
    wait_until("the takeover's audit", || {
        fake.roles.lock().unwrap().last().map(|r| r.generation_id) == Some(7)
            && switch(&ctl, 1).last_flow_mods == 0
    })
    .await;
    assert_eq!(
        fake.flow_mods.load(Ordering::SeqCst),
        sent,
        "equal tables cost nothing"
    );
    let roles: Vec<(ControllerRole, u64)> = fake
        .roles
        .lock()
        .unwrap()
        .iter()
        .map(|r| (r.role, r.generation_id))
        .collect();
    assert_eq!(roles.first(), Some(&(ControllerRole::Slave, 3)));
    assert_eq!(roles.last(), Some(&(ControllerRole::Master, 7)));
}
