//! One switch's OpenFlow session: the handshake (hello, features, the flows it
//! already holds), synchronising it to each program version (the difference,
//! barriers, the migration timeline's measurements around it), echo keep-alive
//! and the verdict on a silent switch ([`super::liveness`]), the audit that reads
//! the controller's flows back and repairs what differs, port states of the
//! tunnels, and the announcements of migrating VMs (packet-ins). The placement
//! measurement it asks for is absorbed by [`super::sampling`].

use super::admission::{check_identity, Claim, Claims, Refusal};
use super::liveness::{Liveness, Verdict};
use super::sampling::{gather, Sampler};
use super::stagger::staggered;
use crate::daemon::Controller;
use crate::diff::plan;
use crate::follow::now_ms;
use crate::host_config::PortBinding;
use crate::model::SwitchSettings;
use crate::routing::SCC_COOKIE;
use crate::state_store::Mastership;
use openflow::flow::{port, FlowMatch};
use openflow::wire::{
    decode, encode, frame_len, ControllerRole, FlowMod, FlowStatsEntry, FlowStatsRequest, Hello,
    Message, MultipartReply, MultipartReplyBody, MultipartRequest, MultipartRequestBody, Role,
    GROUP_ANY, TABLE_ALL,
};
use openflow::FlowSpec;
use std::sync::Arc;
use std::time::Duration;
use tls_support::CertificateDer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

mod announce;
mod ports;
mod sync;

use sync::Held;

/// A switch's byte stream: TCP, or TLS over TCP.
pub(super) trait SwitchIo: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> SwitchIo for T {}

/// How long a switch may take to answer a request (barrier, flow stats), unless
/// the echo timeout is longer: a switch busy with a long queue answers nothing
/// meanwhile, and is given as long as a silent one.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// A period of `secs` seconds; off (0) is one that never comes within a session's
/// life.
fn period(secs: u64) -> Duration {
    Duration::from_secs(if secs == 0 { u64::from(u32::MAX) } else { secs })
}

/// A flow-stats request for the controller's flows that match at least `matcher`
/// and output to `out_port`.
fn our_flows(matcher: FlowMatch, out_port: u32) -> MultipartRequestBody {
    MultipartRequestBody::Flow(FlowStatsRequest {
        table_id: TABLE_ALL,
        out_port,
        out_group: GROUP_ANY,
        cookie: SCC_COOKIE,
        cookie_mask: u64::MAX,
        matcher,
    })
}

/// One switch's connection and what the session remembers of it.
pub(super) struct Session {
    stream: Box<dyn SwitchIo>,
    /// The switch's address, for logs and `scc status`.
    peer: String,
    /// Its certificate, verified against the CA, when it came over TLS.
    certificate: Option<CertificateDer<'static>>,
    /// The datapaths with a live session, and this session's once admitted.
    claims: Arc<Claims>,
    claim: Option<Claim>,
    inbox: Vec<u8>,
    xid: u32,
    ctl: Arc<Controller>,
    dpid: Option<u64>,
    /// Requests sent ahead whose replies are kept when they arrive while another
    /// reply is awaited (a measurement pipelined with a synchronisation).
    ahead: std::collections::HashSet<u32>,
    replies: std::collections::HashMap<u32, Message>,
    /// The placement measurement in flight.
    sampler: Sampler,
    /// The echo interval and timeout, and how often to audit.
    settings: SwitchSettings,
    /// The session's clock starts here.
    started: tokio::time::Instant,
    /// When the switch was last heard and the next echo is due.
    liveness: Liveness,
    /// The port bindings sent on this connection, by port, and the xids of
    /// those not yet known to be taken.
    bound: std::collections::HashMap<u32, PortBinding>,
    bind_xids: std::collections::HashSet<u32>,
    /// The switch answered a binding with bad-experimenter: it is not `scd`
    /// (an Open vSwitch bridge), and gets no more.
    binding_unsupported: bool,
    /// The flow-mods of the plan being sent, and the first error the switch
    /// answered one of them with.
    plan_xids: std::collections::HashSet<u32>,
    plan_refused: Option<String>,
    /// The role this session last claimed.
    mastership: Mastership,
    /// When it last saw a new program version (see [`SessionPhases`]).
    woke: std::time::Instant,
    /// Add-port and del-port requests sent, by xid, awaiting the port-status.
    port_asks: std::collections::HashMap<u32, crate::port_requests::PortRequest>,
    /// What the session is doing now and for which version (`scc status`).
    step: &'static str,
    step_version: u64,
    /// This session's number in `ctl.activities` (a reconnect's is larger).
    session: u64,
}

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
pub(super) enum SessionError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol: {0}")]
    Protocol(String),
    /// The switch answered a request with an OpenFlow error.
    #[error("switch refused the request: {0}")]
    Refused(String),
    /// Nothing arrived from the switch for this long, echo replies included.
    #[error(
        "switch stopped answering: nothing heard for {}s (echo requests unanswered); \
         connection closed so that it reconnects",
        .0.as_secs()
    )]
    Silent(Duration),
}

impl Session {
    pub(super) fn new(
        stream: Box<dyn SwitchIo>,
        peer: String,
        certificate: Option<CertificateDer<'static>>,
        ctl: Arc<Controller>,
        claims: Arc<Claims>,
    ) -> Session {
        let settings = ctl.inventory().switch_settings;
        let session = ctl.activities.begin();
        let liveness = Liveness::new(
            Duration::ZERO,
            Duration::from_secs(settings.echo_every_s),
            Duration::from_secs(settings.echo_timeout_s),
        );
        Session {
            stream,
            peer,
            certificate,
            claims,
            claim: None,
            inbox: Vec::with_capacity(65536),
            xid: 0,
            ctl,
            dpid: None,
            ahead: std::collections::HashSet::new(),
            replies: std::collections::HashMap::new(),
            sampler: Sampler::default(),
            settings,
            started: tokio::time::Instant::now(),
            liveness,
            bound: std::collections::HashMap::new(),
            bind_xids: std::collections::HashSet::new(),
            binding_unsupported: false,
            plan_xids: std::collections::HashSet::new(),
            plan_refused: None,
            mastership: Mastership::Sole,
            woke: std::time::Instant::now(),
            port_asks: Default::default(),
            step: "connecting",
            step_version: 0,
            session,
        }
    }

    /// Notes what the session is doing now, for `scc status`; the step before.
    fn doing(&mut self, step: &'static str) -> &'static str {
        let was = std::mem::replace(&mut self.step, step);
        if let Some(dpid) = self.dpid {
            self.ctl
                .activities
                .set(dpid, self.session, step, self.step_version);
        }
        was
    }

    /// Notes that the switch spoke just now.
    fn heard(&mut self) {
        self.liveness.heard(self.started.elapsed());
    }

    /// Writes `bytes` and flushes them: over TLS a write may leave records
    /// queued in the session until a flush, and the switch would wait for them.
    async fn write(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await?;
        Ok(())
    }

    async fn send(&mut self, m: &Message) -> Result<u32, SessionError> {
        self.xid = self.xid.wrapping_add(1);
        let bytes = encode(m, self.xid).map_err(|e| SessionError::Protocol(e.to_string()))?;
        self.write(&bytes).await?;
        Ok(self.xid)
    }

    /// Sends flow-mods of the plan being sent and a barrier after them, many per
    /// write (a first synchronisation of a large table is tens of thousands of
    /// them; a reroute's few and the barrier are one write), noting their xids
    /// so that a refusal of any is caught (`plan_refused`); the barrier's xid.
    async fn send_with_barrier(&mut self, mods: Vec<FlowMod>) -> Result<u32, SessionError> {
        const BATCH: usize = 1 << 18;
        self.doing("writing flow-mods");
        let mut batch = Vec::with_capacity(BATCH.min(mods.len() * 128 + 8));
        let messages = mods.into_iter().map(Message::FlowMod);
        for m in messages.chain([Message::BarrierRequest]) {
            self.xid = self.xid.wrapping_add(1);
            if matches!(m, Message::FlowMod(_)) {
                self.plan_xids.insert(self.xid);
            }
            let bytes = encode(&m, self.xid).map_err(|e| SessionError::Protocol(e.to_string()))?;
            batch.extend_from_slice(&bytes);
            if batch.len() >= BATCH {
                self.stream.write_all(&batch).await?;
                batch.clear();
            }
        }
        self.write(&batch).await?;
        Ok(self.xid)
    }

    /// Sends a multipart request; its xid.
    async fn multipart(&mut self, body: MultipartRequestBody) -> Result<u32, SessionError> {
        self.send(&Message::MultipartRequest(MultipartRequest {
            flags: 0,
            body,
        }))
        .await
    }

    /// The next message; answers echo requests and records errors on the way.
    async fn recv(&mut self) -> Result<(u32, Message), SessionError> {
        loop {
            if let Some(m) = self.next_buffered().await? {
                return Ok(m);
            }
            // Read into the inbox itself: a buffer on the stack would make every
            // future awaiting a reply 64 KiB larger.
            self.inbox.reserve(65536);
            let n = self.stream.read_buf(&mut self.inbox).await?;
            if n == 0 {
                return Err(SessionError::Protocol(
                    "switch closed the connection".into(),
                ));
            }
            self.heard();
        }
    }

    /// Absorbs what a read of `n` bytes brought: echo replies, port status,
    /// errors, measurements.
    async fn take_read(&mut self, n: usize) -> Result<(), SessionError> {
        if n == 0 {
            return Err(SessionError::Protocol(
                "switch closed the connection".into(),
            ));
        }
        self.heard();
        while let Some((xid, m)) = self.next_buffered().await? {
            self.absorb(xid, m);
        }
        Ok(())
    }

    /// Reads and absorbs what the switch already sent, without waiting for more;
    /// true if anything was there. Before a switch is judged silent: the
    /// session's own lateness is not the switch's silence.
    async fn read_waiting(&mut self) -> Result<bool, SessionError> {
        self.inbox.reserve(65536);
        // A zero timeout still polls the read once, first.
        let read = tokio::time::timeout(Duration::ZERO, self.stream.read_buf(&mut self.inbox));
        match read.await {
            Ok(n) => self.take_read(n?).await.map(|()| true),
            Err(_) => Ok(false),
        }
    }

    /// The next complete message already in the inbox, if any. Echo requests and
    /// packet-ins are handled here and not returned; errors are recorded and
    /// returned (one may answer a request). A stream that cannot be framed is an
    /// error, never buffered forever; a frame that cannot be decoded is skipped.
    async fn next_buffered(&mut self) -> Result<Option<(u32, Message)>, SessionError> {
        loop {
            let n = match frame_len(&self.inbox) {
                Err(_) => return Err(SessionError::Protocol("bad OpenFlow framing".into())),
                Ok(None) => return Ok(None),
                Ok(Some(n)) => n,
            };
            let frame: Vec<u8> = self.inbox.drain(..n).collect();
            match decode(&frame) {
                Ok((xid, Message::EchoRequest(data))) => {
                    let bytes = encode(&Message::EchoReply(data), xid)
                        .map_err(|e| SessionError::Protocol(e.to_string()))?;
                    let was = self.doing("writing an echo reply");
                    self.write(&bytes).await?;
                    self.doing(was);
                }
                Ok((xid, Message::Error(e))) if self.bind_xids.remove(&xid) => {
                    self.binding_refused(&e);
                }
                Ok((xid, Message::Error(e))) => {
                    // A measurement the switch cannot answer is not the switch's
                    // error: `absorb` notes it.
                    if !self.sampler.measuring(xid) {
                        let text = format!("{e:?}");
                        tracing::warn!(dpid = ?self.dpid, xid, "switch reported an error: {text}");
                        if let Some(dpid) = self.dpid {
                            self.ctl.update_switch(dpid, |s| s.last_error = Some(text));
                        }
                    }
                    return Ok(Some((xid, Message::Error(e))));
                }
                Ok((_, Message::PacketIn(pin))) => self.packet_in(&pin),
                Ok(m) => return Ok(Some(m)),
                // Something we cannot read is skipped, not fatal: the stream stays in step.
                Err(e) => tracing::debug!("undecodable message from switch: {e}"),
            }
        }
    }

    /// Waits for the reply to `xid`, passing over unrelated messages (and keeping
    /// the replies to requests sent ahead). An error reply is [`SessionError::Refused`].
    /// A switch that never answers (or answered with an error) ends the session; it
    /// reconnects and is resynchronised from what it then holds. One that falls
    /// silent altogether is [`SessionError::Silent`] as soon as the echo timeout
    /// passes, however long the request may take.
    async fn reply_to(&mut self, xid: u32) -> Result<Message, SessionError> {
        let patience = REPLY_TIMEOUT.max(Duration::from_secs(self.settings.echo_timeout_s));
        let give_up = tokio::time::Instant::now() + patience;
        // The request is a question: silence counts from it at the earliest.
        self.liveness.asked(self.started.elapsed());
        let reply = loop {
            if let Some(m) = self.replies.remove(&xid) {
                break m;
            }
            let silent_at = self.liveness.silent_at().map(|at| self.started + at);
            let until = silent_at.map_or(give_up, |at| at.min(give_up));
            // Cancelling `recv` keeps what it read: the inbox holds partial frames.
            let (got, m) = match tokio::time::timeout_at(until, self.recv()).await {
                Ok(received) => received?,
                Err(_) => {
                    if let Some(silent_for) = self.liveness.silent(self.started.elapsed()) {
                        return Err(SessionError::Silent(silent_for));
                    }
                    if tokio::time::Instant::now() >= give_up {
                        return Err(SessionError::Protocol(format!(
                            "no reply to xid {xid} within {patience:?}"
                        )));
                    }
                    // Part of a long reply arrived meanwhile: the switch is alive.
                    continue;
                }
            };
            if got == xid {
                self.ahead.remove(&xid);
                break m;
            }
            if self.ahead.remove(&got) {
                self.replies.insert(got, m);
            } else {
                self.absorb(got, m);
            }
        };
        match reply {
            Message::Error(e) => Err(SessionError::Refused(format!("{e:?}"))),
            other => Ok(other),
        }
    }

    /// Asks for what placement measures (every flow's counters, the tunnels'
    /// statistics) without waiting: the replies are absorbed whenever they arrive,
    /// so a reroute is never queued behind a measurement. A measurement still
    /// unanswered is given up.
    async fn request_sample(&mut self) -> Result<(), SessionError> {
        let t_ms = now_ms();
        let flows_xid = self
            .multipart(our_flows(FlowMatch::any(), port::ANY))
            .await?;
        let tunnels_xid = if self.sampler.wants_tunnel_stats() {
            self.multipart(MultipartRequestBody::TunnelStats).await?
        } else {
            0
        };
        self.sampler.started(t_ms, flows_xid, tunnels_xid);
        Ok(())
    }

    /// A message no request waits for: port descriptions and port-status changes
    /// update what the controller knows of the switch's ports, an error answering
    /// a flow-mod of the plan being sent is kept for [`Self::send_plan`], and
    /// anything else goes to the measurement in flight (or is passed over).
    fn absorb(&mut self, xid: u32, m: Message) {
        let dpid = self.dpid.unwrap_or_default();
        match m {
            Message::MultipartReply(MultipartReply {
                body: MultipartReplyBody::PortDesc(ports),
                ..
            }) => self.ports_described(dpid, &ports),
            Message::PortStatus(change) => self.port_changed(dpid, &change),
            Message::Error(e) if self.port_asks.contains_key(&xid) => self.port_refused(xid, &e),
            Message::Error(e) if self.plan_xids.contains(&xid) => {
                self.plan_refused.get_or_insert_with(|| format!("{e:?}"));
            }
            other => self.sampler.absorb(&self.ctl, dpid, xid, other),
        }
    }

    async fn installed_flows(&mut self) -> Result<Vec<FlowSpec>, SessionError> {
        let entries = self.flow_stats(FlowMatch::any(), port::ANY).await?;
        Ok(entries.into_iter().map(|e| e.spec).collect())
    }

    /// Our flows that match at least `matcher` and output to `out_port`, with their
    /// counters.
    async fn flow_stats(
        &mut self,
        matcher: FlowMatch,
        out_port: u32,
    ) -> Result<Vec<FlowStatsEntry>, SessionError> {
        self.doing("reading flows back");
        let xid = self.multipart(our_flows(matcher, out_port)).await?;
        let mut flows = Vec::new();
        loop {
            match self.reply_to(xid).await? {
                Message::MultipartReply(MultipartReply { flags, body }) => {
                    let part = match body {
                        MultipartReplyBody::Flow(entries) => Some(entries),
                        _ => None,
                    };
                    if let Some(flows) = gather(&mut flows, part, flags) {
                        return Ok(flows);
                    }
                }
                other => {
                    return Err(SessionError::Protocol(format!(
                        "expected flow stats, got {other:?}"
                    )))
                }
            }
        }
    }

    /// Reads the controller's flows back from the switch and repairs whatever
    /// differs from `expected`, the table of the version it last confirmed.
    async fn audit(&mut self, dpid: u64, expected: &Held) -> Result<(), SessionError> {
        let expected = &expected.table;
        self.doing("auditing");
        let held = self.installed_flows().await?;
        self.repair(dpid, &held, &expected.to_vec(), "periodic")
            .await
    }

    /// Sends the flow-mods that turn `held` (read back from the switch) into
    /// `expected`, logs what was missing, changed or extra, and counts the audit
    /// and the flow-mods as repairs. Equal tables cost no flow-mod.
    async fn repair(
        &mut self,
        dpid: u64,
        held: &[FlowSpec],
        expected: &[FlowSpec],
        occasion: &'static str,
    ) -> Result<(), SessionError> {
        let p = plan(held, expected, SCC_COOKIE);
        let repairs = p.len();
        if repairs == 0 {
            tracing::debug!(dpid, audit = occasion, "switch holds the program's flows");
        } else {
            let d = p.difference();
            tracing::warn!(
                dpid,
                audit = occasion,
                repairs,
                missing = ?d.missing,
                changed = ?d.changed,
                extra = ?d.extra,
                "switch's flows differ from the program: repairing"
            );
            self.send_plan(p).await?;
        }
        let flows = expected.len();
        self.ctl.update_switch(dpid, |s| {
            s.audits += 1;
            s.repairs += repairs as u64;
            s.flows = flows;
        });
        Ok(())
    }

    /// Claims the OpenFlow role of `m` (nothing for the sole controller). A slave
    /// refused as stale is not fatal: a newer leader has claimed the switch, and
    /// this replica changes nothing there anyway.
    async fn claim_role(&mut self, m: Mastership) -> Result<(), SessionError> {
        let (role, generation_id) = match m {
            Mastership::Sole => return Ok(()),
            Mastership::Master(g) => (ControllerRole::Master, g),
            Mastership::Slave(g) => (ControllerRole::Slave, g),
        };
        let xid = self
            .send(&Message::RoleRequest(Role {
                role,
                generation_id,
            }))
            .await?;
        match self.reply_to(xid).await {
            Ok(Message::RoleReply(r)) => {
                tracing::info!(dpid = ?self.dpid, role = ?r.role, generation_id, "switch accepted the role");
                let dpid = self.dpid.unwrap_or_default();
                self.ctl.update_switch(dpid, |s| s.role = Some(m));
                Ok(())
            }
            Err(SessionError::Refused(e)) if role == ControllerRole::Slave => {
                tracing::info!(dpid = ?self.dpid, "slave role refused ({e}): a newer leader holds the switch");
                Ok(())
            }
            Ok(other) => Err(SessionError::Protocol(format!(
                "expected a role reply, got {other:?}"
            ))),
            Err(e) => Err(e),
        }
    }

    /// The flows to synchronise from, right after the handshake: what the switch
    /// holds. A switch that had already confirmed the version in force (it
    /// reconnected, and scc did not restart meanwhile) should hold exactly that
    /// version's table: it is audited first, and what differs is a repair.
    async fn after_connect(&mut self, dpid: u64) -> Result<Held, SessionError> {
        let held = self.installed_flows().await?;
        let Some((version, desired)) = self.ctl.desired(dpid) else {
            return Ok(Held::read_back(held));
        };
        if self.ctl.confirmed_version(dpid) != Some(version)
            || self.ctl.migrating()
            || !self.mastership.programs_switches()
        {
            return Ok(Held::read_back(held));
        }
        self.repair(dpid, &held, &desired.to_vec(), "after reconnect")
            .await?;
        Ok(Held {
            table: desired,
            version: Some(version),
        })
    }

    /// Runs the session until the switch goes or fails.
    /// Admits the switch that announced `dpid` (see [`super::admission`]), or
    /// counts and logs why not: before anything of a host's program is sent.
    fn admit(&mut self, dpid: u64) -> Result<(), SessionError> {
        let admitted = check_identity(&self.ctl.inventory(), dpid, self.certificate.as_ref())
            .and_then(|()| self.claims.claim(dpid).ok_or(Refusal::Duplicate));
        match admitted {
            Ok(claim) => {
                self.claim = Some(claim);
                self.dpid = Some(dpid);
                Ok(())
            }
            Err(reason) => {
                self.ctl.note_switch_refused(reason.label());
                Err(SessionError::Protocol(format!(
                    "switch refused ({}): datapath {dpid:#x}{}",
                    reason.label(),
                    match reason {
                        Refusal::Duplicate =>
                            " has a live session; a new one is accepted once it is gone or silent past the echo timeout",
                        _ if self.certificate.is_some() =>
                            " is not the host its certificate names, or no inventory host's",
                        _ => " is no inventory host's",
                    }
                )))
            }
        }
    }

    pub(super) async fn run(mut self) -> Result<(), SessionError> {
        let peer = self.peer.clone();
        self.send(&Message::Hello(Hello::of13())).await?;
        let features = self.send(&Message::FeaturesRequest).await?;
        let dpid = loop {
            match self.reply_to(features).await? {
                Message::FeaturesReply(f) => break f.datapath_id,
                _ => continue,
            }
        };
        self.admit(dpid)?;
        // Its ports are known before it counts as connected: a migration checks
        // its destination port against them.
        let ports = self.multipart(MultipartRequestBody::PortDesc).await?;
        match self.reply_to(ports).await? {
            Message::MultipartReply(MultipartReply {
                body: MultipartReplyBody::PortDesc(ports),
                ..
            }) => self.ports_described(dpid, &ports),
            other => {
                return Err(SessionError::Protocol(format!(
                    "expected port descriptions, got {other:?}"
                )))
            }
        }
        self.ctl.update_switch(dpid, |s| {
            s.connected = true;
            s.peer = peer.clone();
        });
        tracing::info!(dpid, %peer, "switch connected");
        let mut roles = self.ctl.masterships();
        self.mastership = *roles.borrow_and_update();
        self.claim_role(self.mastership).await?;
        let result = self.serve(dpid, roles).await;
        self.ctl.activities.ended(dpid, self.session);
        self.ctl.update_switch(dpid, |s| {
            // A newer connection of the same switch may be reporting already.
            if s.peer == peer {
                s.connected = false;
                if let Err(e @ SessionError::Silent(_)) = &result {
                    s.last_error = Some(e.to_string());
                }
            }
        });
        result
    }

    async fn serve(
        &mut self,
        dpid: u64,
        mut roles: tokio::sync::watch::Receiver<Mastership>,
    ) -> Result<(), SessionError> {
        let mut versions = self.ctl.versions();
        let mut port_requests = self.ctl.port_requests.register(dpid);
        let mut installed = self.after_connect(dpid).await?;
        let sample_every = self.ctl.inventory().placement_settings.sample_every_s;
        let audit_every = self.settings.audit_every_s;
        // Each switch's own phase and period, so audits do not all come at once.
        let regularly = |secs: u64, salt: u64| {
            let (first, every) = staggered(period(secs), dpid, salt);
            let mut i = tokio::time::interval_at(tokio::time::Instant::now() + first, every);
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            i
        };
        let mut sample = regularly(sample_every, 1);
        let mut audit = regularly(audit_every, 2);
        loop {
            // Marked seen before reading: a change committed while this sync runs
            // wakes the loop again instead of being lost.
            let published = versions.borrow_and_update().clone();
            self.step_version = published.version;
            self.woke = std::time::Instant::now();
            let Some(desired) = published.tables.get(&dpid).cloned() else {
                return Err(SessionError::Protocol(format!(
                    "datapath {dpid} left the inventory"
                )));
            };
            // A standby follows the versions but leaves the switch (its flows
            // and its port bindings) to the leader.
            if self.mastership.programs_switches() {
                self.doing("binding ports");
                self.bind_ports(dpid, &published).await?;
                installed = self.sync_measured(&installed, &published, desired).await?;
            }
            let programs = self.mastership.programs_switches();
            // Wait for a new program, keeping the connection alive meanwhile.
            loop {
                self.doing("waiting for a new version");
                self.inbox.reserve(65536);
                let wake = self.started + self.liveness.next_wake();
                // A new version goes first: a sync never waits behind an audit.
                tokio::select! {
                    biased;
                    changed = versions.changed() => {
                        if changed.is_err() { return Ok(()); }
                        break;
                    }
                    changed = roles.changed() => {
                        if changed.is_err() { return Ok(()); }
                        let m = *roles.borrow_and_update();
                        let was_programming = self.mastership.programs_switches();
                        self.mastership = m;
                        self.claim_role(m).await?;
                        if m.programs_switches() && !was_programming {
                            // Taking over: audit what the switch holds, so tables
                            // that already match cost no flow-mod.
                            installed = Held::read_back(self.installed_flows().await?);
                        }
                        break;
                    }
                    Some(request) = port_requests.recv() => {
                        self.doing("asking for a port");
                        self.ask_port(request).await?;
                    }
                    _ = sample.tick(), if sample_every > 0 && programs => {
                        // A migration's flow-mods must not queue behind a dump of
                        // the switch's flows: the interval is skipped.
                        if versions.has_changed().unwrap_or(false) { break; }
                        if !self.ctl.migrating() {
                            self.doing("requesting a sample");
                            self.request_sample().await?;
                        }
                    }
                    _ = audit.tick(), if audit_every > 0 && programs => {
                        // A migration's steps are timed and its tables change
                        // step by step: it is not audited.
                        if versions.has_changed().unwrap_or(false) { break; }
                        if !self.ctl.migrating() {
                            self.audit(dpid, &installed).await?;
                        }
                    }
                    _ = tokio::time::sleep_until(wake) => {
                        match self.liveness.poll(self.started.elapsed()) {
                            Verdict::Echo => {
                                self.doing("sending an echo");
                                self.send(&Message::EchoRequest(Vec::new())).await?;
                                // Port states tell which tunnels have a live session.
                                self.multipart(MultipartRequestBody::PortDesc).await?;
                            }
                            // A session its workers left unpolled (a
                            // burst elsewhere) may find the answer waiting.
                            Verdict::Silent { silent_for } if !self.read_waiting().await? => {
                                return Err(SessionError::Silent(silent_for));
                            }
                            Verdict::Silent { .. } => {}
                            Verdict::Wait => {}
                        }
                    }
                    n = self.stream.read_buf(&mut self.inbox) => self.take_read(n?).await?,
                }
            }
        }
    }
}
