//! The threads and sockets of the channel: the passive listeners with their
//! connection caps and idle timeouts, the active connections with reconnect
//! backoff and keepalive (over TLS to an `ssl:` controller, which must present
//! a certificate of the CA naming the configured controller name), and the
//! fan-out of packet-ins and flow-removed messages from the switch thread.

use super::backend::SwitchBackend;
use super::backoff::Backoff;
use super::info::DatapathInfo;
use super::listener::{Listener, SocketFile};
use super::liveness::{Keepalive, Liveness, Verdict};
use super::registry::{Conn, Registry};
use super::session::Session;
use super::stream::OfStream;
use super::tls_stream::TlsStream;
use crate::config::{ControllerAddr, FailMode, ListenAddr, OpenflowConfig};
use crate::switch::{PacketInReceiver, RemovedHook, SwitchHandle, SwitchShared};
use dataplane_core::pipeline::RemovedFlow;
use dataplane_core::translate::{flow_removed_message, packet_in_message};
use openflow::flow::flags;
use openflow::wire::{encode_into, frame_len, Hello, Message};
use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tls_support::rustls::{ClientConfig, ServerConfig};
use tls_support::{ServerName, TlsError};
use tracing::{debug, info, warn};

/// An echo request goes to each controller this often.
pub const ECHO_INTERVAL: Duration = Duration::from_secs(5);
/// Unanswered echo requests after which a controller connection is closed.
pub const MISSED_ECHOES: u32 = 3;
/// Packet-ins in flight between the switch thread and the channel.
pub const PACKET_IN_DEPTH: usize = 1024;
/// Flow-removed notifications of expired entries in flight.
const REMOVED_DEPTH: usize = 4096;
/// A socket write that takes longer closes the connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The channel could not start.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// A passive listener could not bind.
    #[error("cannot listen for OpenFlow on {addr}: {source}")]
    Listen {
        /// The listener.
        addr: ListenAddr,
        /// Why.
        source: io::Error,
    },
    /// A thread could not be started.
    #[error("cannot start an OpenFlow thread: {0}")]
    Thread(io::Error),
    /// The TLS files of `pssl:` or `ssl:` are missing or unusable.
    #[error("OpenFlow over TLS: {0}")]
    Tls(#[from] TlsError),
    /// The controller name is not a DNS name a certificate can carry.
    #[error("OpenFlow over TLS: `{0}` is not a valid controller name")]
    ControllerName(String),
}

/// What an `ssl:` controller connection is made with.
#[derive(Debug, Clone)]
struct ClientTls {
    config: Arc<ClientConfig>,
    controller_name: ServerName<'static>,
}

/// The TLS configurations of a channel, read from its PEM files: `scd` loads
/// them before it drops its privileges (the files may be readable by root
/// only), and starts the channel with them afterwards.
#[derive(Debug, Clone, Default)]
pub struct ChannelTls {
    /// For `pssl:` listeners.
    server: Option<Arc<ServerConfig>>,
    /// For `ssl:` controller connections.
    client: Option<ClientTls>,
}

impl ChannelTls {
    /// Reads `[openflow.tls]`'s files if a `pssl:` listener or an `ssl:`
    /// controller needs them.
    pub fn load(cfg: &OpenflowConfig) -> Result<ChannelTls, ChannelError> {
        let server = match &cfg.tls {
            Some(tls) if cfg.listen.iter().any(|l| matches!(l, ListenAddr::Ssl(_))) => {
                Some(tls_support::server_config(&tls.files)?)
            }
            _ => None,
        };
        let client = match &cfg.tls {
            Some(tls)
                if cfg
                    .controllers
                    .iter()
                    .any(|c| matches!(c, ControllerAddr::Ssl(_))) =>
            {
                let controller_name = ServerName::try_from(tls.controller_name.clone())
                    .map_err(|_| ChannelError::ControllerName(tls.controller_name.clone()))?;
                Some(ClientTls {
                    config: tls_support::client_config(&tls.files)?,
                    controller_name,
                })
            }
            _ => None,
        };
        Ok(ChannelTls { server, client })
    }
}

/// The running channel. Dropping it removes the `punix:` socket files (the
/// threads go with the process).
#[derive(Debug)]
pub struct Channel {
    registry: Arc<Registry>,
    listening: Vec<ListenAddr>,
    _socket_files: Vec<SocketFile>,
}

impl Channel {
    /// Starts the listeners, the controller connections and the dispatcher of
    /// packet-ins and flow-removed messages. Returns the channel and the hook to
    /// install with `Switch::on_removed`.
    pub fn start(
        cfg: &OpenflowConfig,
        handle: SwitchHandle,
        info: DatapathInfo,
        packet_in: PacketInReceiver,
    ) -> Result<(Channel, RemovedHook), ChannelError> {
        let tls = ChannelTls::load(cfg)?;
        Channel::start_with_tls(cfg, tls, handle, info, packet_in)
    }

    /// [`Channel::start`] with TLS configurations loaded beforehand.
    pub fn start_with_tls(
        cfg: &OpenflowConfig,
        tls: ChannelTls,
        handle: SwitchHandle,
        info: DatapathInfo,
        packet_in: PacketInReceiver,
    ) -> Result<(Channel, RemovedHook), ChannelError> {
        let registry = Arc::new(Registry::default());
        let backend = SwitchBackend::new(handle.clone(), info);
        let (removed_tx, removed_rx) = mpsc::sync_channel::<RemovedFlow>(REMOVED_DEPTH);
        let hook: RemovedHook = Box::new(move |r: &RemovedFlow| {
            if r.entry.spec.flags & flags::SEND_FLOW_REM != 0 {
                let _ = removed_tx.try_send(r.clone());
            }
        });
        {
            let registry = registry.clone();
            let shared = handle.shared.clone();
            std::thread::Builder::new()
                .name("of-dispatch".into())
                .spawn(move || {
                    crate::scheduling::control_thread();
                    dispatch(&registry, &shared, &packet_in, &removed_rx);
                })
                .map_err(ChannelError::Thread)?;
        }
        let ChannelTls {
            server: server_tls,
            client: client_tls,
        } = tls;
        let (mut listening, mut socket_files) = (Vec::new(), Vec::new());
        for addr in &cfg.listen {
            let (listener, file) = Listener::bind(
                addr,
                cfg.max_connections,
                &handle.shared.channel,
                server_tls.as_ref(),
            )
            .map_err(|source| ChannelError::Listen {
                addr: addr.clone(),
                source,
            })?;
            let listener = Arc::new(listener);
            socket_files.extend(file);
            listening.push(listener.addr().clone());
            info!(listener = %listener.addr(), max_connections = cfg.max_connections,
                idle_timeout = ?cfg.idle_timeout, "OpenFlow listener ready");
            let (registry, backend, idle) = (registry.clone(), backend.clone(), cfg.idle_timeout);
            std::thread::Builder::new()
                .name("of-listen".into())
                .spawn(move || {
                    // Its connections' threads inherit the lower priority.
                    crate::scheduling::control_thread();
                    accept_loop(&listener, &registry, &backend, idle);
                })
                .map_err(ChannelError::Thread)?;
        }
        for &addr in &cfg.controllers {
            let (registry, backend, fail_mode) = (registry.clone(), backend.clone(), cfg.fail_mode);
            let backoff = Backoff::new(cfg.reconnect_min, cfg.reconnect_max);
            let tls = match addr {
                ControllerAddr::Ssl(_) => client_tls.clone(),
                ControllerAddr::Tcp(_) => None,
            };
            std::thread::Builder::new()
                .name(format!("of-ctl-{}", addr.addr()))
                .spawn(move || {
                    crate::scheduling::control_thread();
                    controller_loop(addr, tls.as_ref(), fail_mode, backoff, &registry, &backend);
                })
                .map_err(ChannelError::Thread)?;
        }
        let channel = Channel {
            registry,
            listening,
            _socket_files: socket_files,
        };
        Ok((channel, hook))
    }

    /// Where the passive listeners are bound (a `ptcp:` port 0 resolved).
    pub fn listeners(&self) -> &[ListenAddr] {
        &self.listening
    }

    /// Open connections now.
    pub fn connections(&self) -> usize {
        self.registry.len()
    }
}

fn dispatch(
    registry: &Registry,
    shared: &SwitchShared,
    packet_in: &PacketInReceiver,
    removed: &Receiver<RemovedFlow>,
) {
    loop {
        match packet_in.events.recv_timeout(Duration::from_millis(100)) {
            Ok(ev) => {
                let msg = Message::PacketIn(packet_in_message(&ev));
                packet_in.recycle(ev.data);
                let n = registry.broadcast(&msg);
                shared
                    .channel
                    .packet_ins_sent
                    .fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        for change in shared.port_changes.take() {
            registry.broadcast(&Message::PortStatus(change));
        }
        let now = Instant::now();
        while let Ok(r) = removed.try_recv() {
            if let Some(m) = flow_removed_message(&r, now) {
                registry.broadcast(&Message::FlowRemoved(m));
            }
        }
    }
}

/// Accepts connections on `listener` for ever: each on a thread of its own
/// while the listener is below its cap, closed at once above it.
fn accept_loop(
    listener: &Arc<Listener>,
    registry: &Arc<Registry>,
    backend: &SwitchBackend,
    idle_timeout: Duration,
) {
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!(listener = %listener.addr(), "OpenFlow accept: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let Some(admitted) = listener.admit() else {
            debug!(listener = %listener.addr(), %peer, "OpenFlow connection refused: at the connection cap");
            continue;
        };
        let (registry, backend) = (registry.clone(), backend.clone());
        let listener = listener.clone();
        let spawned = std::thread::Builder::new()
            .name("of-conn".into())
            .spawn(move || {
                let _admitted = admitted;
                let counters = listener.counters();
                let stream = match listener.secure(stream) {
                    Ok(stream) => stream,
                    Err(e) => {
                        warn!(listener = %listener.addr(), %peer, "OpenFlow connection refused: TLS handshake failed: {e}");
                        return;
                    }
                };
                let keepalive = Keepalive::Idle(idle_timeout);
                match serve(stream, peer, &registry, &backend, keepalive) {
                    Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                        counters.idle_closed.fetch_add(1, Ordering::Relaxed);
                        debug!("OpenFlow connection closed: {e}");
                    }
                    Err(e) => debug!("OpenFlow connection ended: {e}"),
                    Ok(()) => {}
                }
            });
        if let Err(e) = spawned {
            warn!("OpenFlow connection thread: {e}");
        }
    }
}

/// Connects to `addr`, over TLS when `tls` is given (the controller's
/// certificate verified).
fn connect(addr: SocketAddr, tls: Option<&ClientTls>) -> io::Result<OfStream> {
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    match tls {
        None => Ok(OfStream::Tcp(tcp)),
        Some(tls) => TlsStream::connect(tcp, tls.config.clone(), tls.controller_name.clone())
            .map(OfStream::Tls),
    }
}

fn controller_loop(
    controller: ControllerAddr,
    tls: Option<&ClientTls>,
    fail_mode: FailMode,
    mut backoff: Backoff,
    registry: &Arc<Registry>,
    backend: &SwitchBackend,
) {
    let addr = controller.addr();
    loop {
        match connect(addr, tls) {
            Ok(stream) => {
                info!(%controller, "connected to controller");
                backoff.reset();
                let keepalive = Keepalive::Probe {
                    interval: ECHO_INTERVAL,
                    missed: MISSED_ECHOES,
                };
                let result = serve(stream, addr.to_string(), registry, backend, keepalive);
                let mode = match fail_mode {
                    FailMode::Secure => "secure: tables kept",
                    FailMode::Standalone => {
                        "standalone: forwarding with the installed tables (scd has no NORMAL pipeline)"
                    }
                };
                warn!(controller = %addr, fail_mode = mode, "controller connection lost: {}",
                    result.err().map_or_else(|| "closed".to_string(), |e| e.to_string()));
            }
            Err(e) => match tls {
                // A certificate refused either way is not a network hiccup.
                Some(_) if e.kind() == io::ErrorKind::InvalidData => {
                    warn!(%controller, "TLS connection to the controller failed: {e}");
                }
                _ => debug!(%controller, "connect failed: {e}"),
            },
        }
        std::thread::sleep(backoff.next_delay(rand::random::<f64>()));
    }
}

/// Serves one connection until it closes or `keepalive` finds it dead (an
/// error of kind `TimedOut`).
fn serve(
    stream: OfStream,
    peer: String,
    registry: &Arc<Registry>,
    backend: &SwitchBackend,
    keepalive: Keepalive,
) -> io::Result<()> {
    let counters = &backend.handle.shared.channel;
    stream.set_nodelay()?;
    stream.set_read_timeout(Some(Duration::from_millis(500)))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let conn = registry.add(peer.clone(), Some(stream.try_clone()?));
    counters.connections.fetch_add(1, Ordering::Relaxed);
    debug!(%peer, ?keepalive, "OpenFlow connection open");
    let liveness = Liveness::new(keepalive, Instant::now());
    let result = session_loop(stream, &conn, registry, backend, liveness);
    registry.remove(conn.id);
    counters.connections.fetch_sub(1, Ordering::Relaxed);
    result
}

fn session_loop(
    mut stream: OfStream,
    conn: &Arc<Conn>,
    registry: &Arc<Registry>,
    backend: &SwitchBackend,
    mut liveness: Liveness,
) -> io::Result<()> {
    let counters = &backend.handle.shared.channel;
    let mut session = Session::new(conn.clone(), registry.clone());
    let mut out = Vec::with_capacity(4096);
    encode_into(&Message::Hello(Hello::of13()), 0, &mut out).map_err(io::Error::other)?;
    if !conn.send(&out) {
        return Err(io::Error::other("cannot send hello"));
    }
    let mut inbox: Vec<u8> = Vec::with_capacity(65_536);
    let mut chunk = vec![0u8; 65_536];
    let mut echo_xid = 0x5c00_0000u32;
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                inbox.extend_from_slice(&chunk[..n]);
                liveness.heard(Instant::now());
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
        match liveness.poll(Instant::now(), session.ready()) {
            Verdict::Wait => {}
            Verdict::Close(why) => return Err(io::Error::new(io::ErrorKind::TimedOut, why)),
            Verdict::SendEcho => {
                out.clear();
                echo_xid = echo_xid.wrapping_add(1);
                encode_into(&Message::EchoRequest(Vec::new()), echo_xid, &mut out)
                    .map_err(io::Error::other)?;
                if !conn.send(&out) {
                    return Err(io::Error::other("write failed"));
                }
            }
        }
        // Cut whole frames; a header length below 8 ends this connection only.
        let mut frames: Vec<&[u8]> = Vec::new();
        let mut at = 0;
        let mut fatal = None;
        loop {
            match frame_len(&inbox[at..]) {
                Ok(Some(n)) => {
                    frames.push(&inbox[at..at + n]);
                    at += n;
                }
                Ok(None) => break,
                Err(e) => {
                    fatal = Some(e);
                    break;
                }
            }
        }
        if !frames.is_empty() {
            counters
                .messages_in
                .fetch_add(frames.len() as u64, Ordering::Relaxed);
            let outcome = session.handle(&frames, backend);
            out.clear();
            for (xid, msg) in &outcome.replies {
                if matches!(msg, Message::Error(_)) {
                    counters.errors_sent.fetch_add(1, Ordering::Relaxed);
                }
                if let Err(e) = encode_into(msg, *xid, &mut out) {
                    warn!(peer = %conn.peer, "reply not sent: {e}");
                }
            }
            if !out.is_empty() && !conn.send(&out) {
                return Err(io::Error::other("write failed"));
            }
            for m in &outcome.broadcast {
                registry.broadcast(m);
            }
            if outcome.close {
                return Ok(());
            }
        }
        inbox.drain(..at);
        if let Some(e) = fatal {
            warn!(peer = %conn.peer, "closing OpenFlow connection: {e}");
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
    }
}
