//! The `[openflow]` section of `scd`'s host file: passive listeners (`ptcp:`,
//! `pssl:`, `punix:`), controllers (`tcp:`, `ssl:`), the bounds of every
//! listener, the fail mode, and `[openflow.tls]`, the PEM files of mutual TLS.
//!
//! It owns the rule on plain text: OpenFlow in the clear to or on an address
//! other than loopback is refused unless `insecure_plaintext = true` says the
//! operator means it (then [`OpenflowConfig::exposed_plaintext`] names what
//! `scd` warns about at every start). It never reads the PEM files: the channel
//! loads them when it starts.

use serde::Deserialize;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;
use tls_support::TlsFiles;
use toml::Spanned;

use super::ConfigError;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOpenflow {
    /// One listener as a string, or a list of them.
    listen: Option<Spanned<toml::Value>>,
    max_connections: Option<Spanned<u32>>,
    idle_timeout_s: Option<Spanned<u32>>,
    reconnect_min_ms: Option<Spanned<u32>>,
    reconnect_max_ms: Option<Spanned<u32>>,
    #[serde(default)]
    controllers: Vec<Spanned<String>>,
    fail_mode: Option<Spanned<String>>,
    #[serde(default)]
    insecure_plaintext: bool,
    tls: Option<Spanned<RawTls>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    private_key: String,
    certificate: String,
    ca_cert: String,
    controller_name: Option<String>,
}

/// What `scd` does with its tables when its controllers go away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailMode {
    /// Keep every flow and keep forwarding with them; table-miss packets for the
    /// controller are dropped while none is connected (the default).
    #[default]
    Secure,
    /// Keep forwarding with the flows already installed. Open vSwitch would fall
    /// back to its NORMAL (learning switch) pipeline here; `scd` has no NORMAL
    /// pipeline, so this behaves as `Secure` and is accepted for familiarity.
    Standalone,
}

/// Where a passive OpenFlow listener accepts connections from tools.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ListenAddr {
    /// `ptcp:PORT[:ADDR]`.
    Tcp(SocketAddr),
    /// `pssl:PORT[:ADDR]`: TLS, and only clients with a certificate of the CA.
    Ssl(SocketAddr),
    /// `punix:PATH`: a Unix stream socket with mode 0600, what `ovs-ofctl` uses
    /// on a host.
    Unix(PathBuf),
}

impl std::fmt::Display for ListenAddr {
    /// Open vSwitch's spelling: `ptcp:6653:127.0.0.1`, `pssl:6653:[::1]`,
    /// `punix:/run/scd.mgmt`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, a) = match self {
            ListenAddr::Tcp(a) => ("ptcp", a),
            ListenAddr::Ssl(a) => ("pssl", a),
            ListenAddr::Unix(path) => return write!(f, "punix:{}", path.display()),
        };
        match a {
            SocketAddr::V4(a) => write!(f, "{kind}:{}:{}", a.port(), a.ip()),
            SocketAddr::V6(a) => write!(f, "{kind}:{}:[{}]", a.port(), a.ip()),
        }
    }
}

/// A controller `scd` connects to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControllerAddr {
    /// `tcp:ADDR:PORT`, in the clear.
    Tcp(SocketAddr),
    /// `ssl:ADDR:PORT`: mutual TLS; the controller's certificate must be of the
    /// CA and name [`OpenflowTls::controller_name`].
    Ssl(SocketAddr),
}

impl ControllerAddr {
    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        match self {
            ControllerAddr::Tcp(a) | ControllerAddr::Ssl(a) => *a,
        }
    }
}

impl std::fmt::Display for ControllerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ControllerAddr::Tcp(a) => write!(f, "tcp:{a}"),
            ControllerAddr::Ssl(a) => write!(f, "ssl:{a}"),
        }
    }
}

/// `[openflow.tls]`: this host's key and certificate and the CA's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenflowTls {
    /// The PEM files, resolved against the configuration's directory.
    pub files: TlsFiles,
    /// The name an `ssl:` controller's certificate must carry.
    pub controller_name: String,
}

/// The name a controller's certificate carries unless configured
/// (`scc pki issue scc --controller`).
pub const DEFAULT_CONTROLLER_NAME: &str = "scc";
/// Longest Unix socket path the kernel accepts (`sun_path` less its NUL).
pub const UNIX_PATH_MAX: usize = 107;
/// Connections each passive listener serves at once unless configured.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16;
/// How long a passive connection may stay silent unless configured.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// First delay before calling a lost controller again unless configured.
pub const DEFAULT_RECONNECT_MIN: Duration = Duration::from_millis(100);
/// Longest delay between calls to a lost controller unless configured.
pub const DEFAULT_RECONNECT_MAX: Duration = Duration::from_secs(8);

/// The OpenFlow 1.3 channel: passive listeners for tools and active controllers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenflowConfig {
    /// `ptcp:`, `pssl:` and `punix:` listeners, where tools such as `ovs-ofctl`
    /// connect.
    pub listen: Vec<ListenAddr>,
    /// Connections each listener serves at once; one more is closed as soon as
    /// it is accepted.
    pub max_connections: usize,
    /// A connection to a listener that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// Each controller, connected to actively with reconnect.
    pub controllers: Vec<ControllerAddr>,
    /// What happens when the controllers go away.
    pub fail_mode: FailMode,
    /// First delay before calling a lost controller again; it doubles after
    /// each failed attempt (drawn from the upper half of each step, for jitter).
    pub reconnect_min: Duration,
    /// Longest such delay.
    pub reconnect_max: Duration,
    /// The PEM files of `pssl:` and `ssl:`; required by either.
    pub tls: Option<OpenflowTls>,
    /// Plain text off loopback is allowed (and warned about at every start).
    pub insecure_plaintext: bool,
}

impl Default for OpenflowConfig {
    fn default() -> OpenflowConfig {
        OpenflowConfig {
            listen: Vec::new(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            controllers: Vec::new(),
            fail_mode: FailMode::Secure,
            reconnect_min: DEFAULT_RECONNECT_MIN,
            reconnect_max: DEFAULT_RECONNECT_MAX,
            tls: None,
            insecure_plaintext: false,
        }
    }
}

impl OpenflowConfig {
    /// The plain-text listeners and controllers off loopback, which only
    /// `insecure_plaintext = true` lets through: what `scd` warns about.
    pub fn exposed_plaintext(&self) -> Vec<String> {
        let listeners = self.listen.iter().filter_map(|l| match l {
            ListenAddr::Tcp(a) if !a.ip().is_loopback() => Some(l.to_string()),
            _ => None,
        });
        let controllers = self.controllers.iter().filter_map(|c| match c {
            ControllerAddr::Tcp(a) if !a.ip().is_loopback() => Some(c.to_string()),
            _ => None,
        });
        listeners.chain(controllers).collect()
    }
}

type Invalid<'a> = dyn Fn(&Range<usize>, &str, String) -> ConfigError + 'a;

/// Validates `[openflow]`; `relative` resolves a file against the
/// configuration's directory.
pub(super) fn parse(
    raw: &RawOpenflow,
    invalid: &Invalid<'_>,
    relative: &dyn Fn(&str) -> PathBuf,
) -> Result<OpenflowConfig, ConfigError> {
    let listen = listeners(raw, invalid)?;
    let at_least_one = |value: &Option<Spanned<u32>>, field: &str, default: u64| match value {
        None => Ok(default),
        Some(v) if *v.get_ref() == 0 => Err(invalid(
            &v.span(),
            field,
            if field.starts_with("openflow.reconnect") {
                "must be at least 1: a switch must not call its controller in a busy loop"
            } else {
                "must be at least 1: every listener is bounded"
            }
            .to_string(),
        )),
        Some(v) => Ok(u64::from(*v.get_ref())),
    };
    let max_connections = at_least_one(
        &raw.max_connections,
        "openflow.max_connections",
        DEFAULT_MAX_CONNECTIONS as u64,
    )?;
    let idle_timeout = Duration::from_secs(at_least_one(
        &raw.idle_timeout_s,
        "openflow.idle_timeout_s",
        DEFAULT_IDLE_TIMEOUT.as_secs(),
    )?);
    let reconnect_min = Duration::from_millis(at_least_one(
        &raw.reconnect_min_ms,
        "openflow.reconnect_min_ms",
        100,
    )?);
    let reconnect_max = Duration::from_millis(at_least_one(
        &raw.reconnect_max_ms,
        "openflow.reconnect_max_ms",
        8_000,
    )?);
    if let Some(max) = raw
        .reconnect_max_ms
        .as_ref()
        .filter(|_| reconnect_max < reconnect_min)
    {
        return Err(invalid(
            &max.span(),
            "openflow.reconnect_max_ms",
            format!(
                "{} is below reconnect_min_ms ({} ms)",
                max.get_ref(),
                reconnect_min.as_millis()
            ),
        ));
    }
    let mut controllers = Vec::with_capacity(raw.controllers.len());
    for c in &raw.controllers {
        let addr = parse_controller(c.get_ref()).ok_or_else(|| {
            invalid(
                &c.span(),
                "openflow.controllers",
                format!(
                    "`{}` is not ssl:ADDR:PORT or tcp:ADDR:PORT (such as \"ssl:192.0.2.10:6653\")",
                    c.get_ref()
                ),
            )
        })?;
        if controllers
            .iter()
            .any(|d: &ControllerAddr| d.addr() == addr.addr())
        {
            return Err(invalid(
                &c.span(),
                "openflow.controllers",
                format!("controller {} is listed twice", addr.addr()),
            ));
        }
        controllers.push(addr);
    }
    let fail_mode = match &raw.fail_mode {
        None => FailMode::Secure,
        Some(m) => match m.get_ref().as_str() {
            "secure" => FailMode::Secure,
            "standalone" => FailMode::Standalone,
            other => {
                return Err(invalid(
                    &m.span(),
                    "openflow.fail_mode",
                    format!("unknown fail mode `{other}` (expected \"secure\" or \"standalone\")"),
                ))
            }
        },
    };
    let tls = raw.tls.as_ref().map(|t| {
        let t = t.get_ref();
        OpenflowTls {
            files: TlsFiles {
                private_key: relative(&t.private_key),
                certificate: relative(&t.certificate),
                ca_cert: relative(&t.ca_cert),
            },
            controller_name: t
                .controller_name
                .clone()
                .unwrap_or_else(|| DEFAULT_CONTROLLER_NAME.to_string()),
        }
    });
    let config = OpenflowConfig {
        listen,
        max_connections: usize::try_from(max_connections).unwrap_or(usize::MAX),
        idle_timeout,
        controllers,
        fail_mode,
        reconnect_min,
        reconnect_max: reconnect_max.max(reconnect_min),
        tls,
        insecure_plaintext: raw.insecure_plaintext,
    };
    check_security(&config, raw, invalid)?;
    Ok(config)
}

fn listeners(raw: &RawOpenflow, invalid: &Invalid<'_>) -> Result<Vec<ListenAddr>, ConfigError> {
    let mut listen = Vec::new();
    let Some(l) = &raw.listen else {
        return Ok(listen);
    };
    let texts: Vec<&toml::Value> = match l.get_ref() {
        toml::Value::Array(items) => items.iter().collect(),
        one => vec![one],
    };
    for text in texts {
        let addr = text
            .as_str()
            .ok_or_else(|| format!("`{text}` is not a string"))
            .and_then(parse_passive)
            .map_err(|message| invalid(&l.span(), "openflow.listen", message))?;
        if listen.contains(&addr) {
            return Err(invalid(
                &l.span(),
                "openflow.listen",
                format!("{addr} is listed twice"),
            ));
        }
        listen.push(addr);
    }
    Ok(listen)
}

/// TLS needs its files; plain text off loopback needs `insecure_plaintext`.
fn check_security(
    config: &OpenflowConfig,
    raw: &RawOpenflow,
    invalid: &Invalid<'_>,
) -> Result<(), ConfigError> {
    let wants_tls = config
        .listen
        .iter()
        .any(|l| matches!(l, ListenAddr::Ssl(_)))
        || config
            .controllers
            .iter()
            .any(|c| matches!(c, ControllerAddr::Ssl(_)));
    let field_of = |listener: bool| {
        if listener {
            "openflow.listen"
        } else {
            "openflow.controllers"
        }
    };
    let span = |field: &str| match field {
        "openflow.listen" => raw.listen.as_ref().map_or(0..0, Spanned::span),
        _ => raw.controllers.first().map_or(0..0, Spanned::span),
    };
    if wants_tls && config.tls.is_none() {
        let field = field_of(
            config
                .listen
                .iter()
                .any(|l| matches!(l, ListenAddr::Ssl(_))),
        );
        let message =
            "pssl: and ssl: need [openflow.tls] with private_key, certificate and ca_cert";
        return Err(invalid(&span(field), field, message.into()));
    }
    match config.exposed_plaintext().first() {
        Some(exposed) if !config.insecure_plaintext => {
            let field = field_of(exposed.starts_with("ptcp:"));
            let message = format!(
                "{exposed} is OpenFlow in plain text off loopback: use pssl:/ssl: with \
                 [openflow.tls], or set `insecure_plaintext = true` in [openflow]"
            );
            Err(invalid(&span(field), field, message))
        }
        _ => Ok(()),
    }
}

/// Parses a passive listener, `ptcp:...` (see [`parse_ptcp`]), `pssl:PORT[:ADDR]`
/// (every address unless given) or `punix:PATH` with an absolute path; the
/// error says what is wrong.
pub fn parse_passive(text: &str) -> Result<ListenAddr, String> {
    if let Some(rest) = text.trim().strip_prefix("pssl:") {
        return parse_port_addr(rest, "0.0.0.0")
            .map(ListenAddr::Ssl)
            .ok_or_else(|| format!("`{text}` is not pssl:PORT or pssl:PORT:ADDR"));
    }
    let Some(path) = text.trim().strip_prefix("punix:") else {
        return parse_ptcp(text).map(ListenAddr::Tcp).ok_or_else(|| {
            format!("`{text}` is not ptcp:PORT, ptcp:PORT:ADDR, pssl:PORT[:ADDR] or punix:PATH (such as \"ptcp:6653\" or \"punix:/run/scd.mgmt\")")
        });
    };
    let path = PathBuf::from(path);
    if !path.is_absolute() {
        return Err(format!("`{text}`: the socket path must be absolute"));
    }
    if path.as_os_str().len() > UNIX_PATH_MAX {
        return Err(format!(
            "`{text}`: a Unix socket path has at most {UNIX_PATH_MAX} bytes"
        ));
    }
    Ok(ListenAddr::Unix(path))
}

/// Parses `ptcp:PORT` (on 127.0.0.1) or `ptcp:PORT:ADDR` (IPv6 in brackets or not).
pub fn parse_ptcp(text: &str) -> Option<SocketAddr> {
    parse_port_addr(text.trim().strip_prefix("ptcp:")?, "127.0.0.1")
}

/// `PORT` (on `default`) or `PORT:ADDR`.
fn parse_port_addr(rest: &str, default: &str) -> Option<SocketAddr> {
    let (port, addr) = match rest.split_once(':') {
        None => (rest, default),
        Some((port, addr)) => (port, addr),
    };
    let port: u16 = port.parse().ok()?;
    let addr = addr.trim_start_matches('[').trim_end_matches(']');
    let ip: std::net::IpAddr = addr.parse().ok()?;
    Some(SocketAddr::new(ip, port))
}

/// Parses `tcp:ADDR:PORT` or `ssl:ADDR:PORT` (IPv6 as `[ADDR]:PORT`).
pub fn parse_controller(text: &str) -> Option<ControllerAddr> {
    match text.trim().strip_prefix("ssl:") {
        Some(rest) => parse_addr_port(rest).map(ControllerAddr::Ssl),
        None => parse_tcp(text).map(ControllerAddr::Tcp),
    }
}

/// Parses `tcp:ADDR:PORT` (IPv6 as `tcp:[ADDR]:PORT`); the port defaults to 6653.
pub fn parse_tcp(text: &str) -> Option<SocketAddr> {
    parse_addr_port(text.trim().strip_prefix("tcp:")?)
}

fn parse_addr_port(rest: &str) -> Option<SocketAddr> {
    if let Ok(addr) = rest.parse::<SocketAddr>() {
        return Some(addr);
    }
    let ip: std::net::IpAddr = rest
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    Some(SocketAddr::new(ip, 6653))
}
