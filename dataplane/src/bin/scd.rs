//! `scd`: the switch daemon. A thin shell: it reads the host configuration, opens the
//! ports, loads static flows, serves metrics and the OpenFlow channel, handles
//! signals, and hands the rest to the switch loop of the `dataplane` library.

use anyhow::{bail, Context, Result};
use clap::{CommandFactory, Parser, Subcommand};
use dataplane::config::{HostConfig, PortKind};
use dataplane::ofchannel::{Channel, ChannelTls, DatapathInfo, PACKET_IN_DEPTH};
use dataplane::portctl;
use dataplane::static_flows::{self, initial_pipeline, StaticFlows};
use dataplane::switch::{
    packet_in_channel, watch_links, LinkParams, Switch, SwitchHandle, SwitchParams, LINK_POLL,
};
use dataplane::tunnel::Tunnels;
use dataplane_core::arp::ArpResponder;
use dataplane_core::dhcp::DhcpServer;
use dataplane_core::icmp6::TooBigReplies;
use dataplane_core::nd::{NdResponder, PortNdResponder};
use dataplane_core::pipeline::Pipeline;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;
use tracing::{error, info, warn};

#[derive(Parser, Debug)]
#[command(name = "scd", version, about = "The supercloud per-host switch daemon")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the switch with a host configuration file.
    Run {
        /// Host configuration (TOML); see docs/scd-config.md.
        #[arg(short, long)]
        config: PathBuf,
        /// Once the ports and the tunnel socket are open, switch to this user (as
        /// `ovs-vswitchd --user` does). Either way only CAP_NET_ADMIN and CAP_NET_RAW
        /// are kept.
        #[arg(long, value_name = "USER")]
        user: Option<String>,
    },
    /// Validate a host configuration file (and its static flows) and exit.
    CheckConfig {
        /// Host configuration (TOML).
        config: PathBuf,
    },
    /// Add, remove or list the ports of a running scd (through its `[control]
    /// socket`).
    Port {
        /// The running scd's management socket (`[control] socket`).
        #[arg(long, global = true, default_value = DEFAULT_CONTROL_SOCKET)]
        socket: PathBuf,
        /// Print the reply as JSON (docs/json.md) instead of a table.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        action: PortAction,
    },
    /// Print a new WireGuard private key (base64, like `wg genkey`).
    Genkey,
    /// Read a private key on stdin and print its public key (like `wg pubkey`).
    Pubkey,
    /// Print shell completions for scd: `scd completions bash >
    /// /etc/bash_completion.d/scd`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print scd's man page (roff): `scd man > /usr/local/share/man/man1/scd.1`.
    Man,
}

/// Where `scd port` looks for the management socket unless told.
const DEFAULT_CONTROL_SOCKET: &str = "/run/scd/scd.ctl";

#[derive(Subcommand, Debug)]
enum PortAction {
    /// Open a device and add it as a port while scd runs; other ports' traffic and
    /// the tables are untouched.
    Add {
        /// Interface name (at most 15 bytes).
        #[arg(long)]
        name: String,
        /// `tap` (scd's own TAP device) or `raw` (a packet socket on an existing
        /// interface).
        #[arg(long, default_value = "tap")]
        kind: String,
        /// OpenFlow port number.
        #[arg(long)]
        ofport: u32,
        /// TAP: attach to an existing persistent device instead of creating one.
        #[arg(long)]
        attach: bool,
        /// TAP: MTU to set.
        #[arg(long)]
        mtu: Option<u32>,
        /// The namespace the interface lives in (needs CAP_SYS_ADMIN, which scd
        /// drops after start: move the device there instead).
        #[arg(long)]
        netns: Option<String>,
        /// The VM's MAC: binds the port to it (port security).
        #[arg(long)]
        vm_mac: Option<String>,
        /// The VM's IPv4 addresses (repeat or separate with commas).
        #[arg(long, value_delimiter = ',')]
        vm_ip: Vec<std::net::Ipv4Addr>,
    },
    /// Remove a port (a TAP scd created goes away with it).
    Del {
        /// By OpenFlow number.
        #[arg(long, required_unless_present = "name")]
        ofport: Option<u32>,
        /// By interface name.
        #[arg(long)]
        name: Option<String>,
    },
    /// List the ports and their link state.
    List,
}

/// Sends one management request and prints its reply.
fn port_command(socket: &Path, json: bool, action: PortAction) -> Result<()> {
    let request = match action {
        PortAction::Add {
            name,
            kind,
            ofport,
            attach,
            mtu,
            netns,
            vm_mac,
            vm_ip,
        } => portctl::Request::Add(portctl::PortSpec {
            name,
            kind,
            ofport,
            create: !attach,
            mtu,
            netns,
            vm_mac,
            vm_ips: vm_ip,
        }),
        PortAction::Del { ofport, name } => portctl::Request::Del { ofport, name },
        PortAction::List => portctl::Request::List,
    };
    let reply = portctl::ask(socket, &request).with_context(|| {
        format!(
            "management socket {} (is scd running with `[control] socket` set to it?)",
            socket.display()
        )
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&reply)?);
    }
    match reply {
        portctl::Reply::Error { error } => bail!("{error}"),
        portctl::Reply::Ok { ports } if !json => {
            println!(
                "{:>6}  {:<16} {:<5} {:>12} {:>12}",
                "OFPORT", "NAME", "LINK", "RX PACKETS", "TX PACKETS"
            );
            for p in ports {
                let link = if p.config & openflow::wire::port_config::PORT_DOWN != 0 {
                    "down".to_string()
                } else {
                    p.link
                };
                println!(
                    "{:>6}  {:<16} {:<5} {:>12} {:>12}",
                    p.ofport, p.name, link, p.rx_packets, p.tx_packets
                );
            }
            Ok(())
        }
        portctl::Reply::Ok { .. } => Ok(()),
    }
}

/// The host configuration and the tables it starts with, static flows checked.
fn load(config: &Path) -> Result<(HostConfig, Pipeline, usize)> {
    let cfg = HostConfig::load(config)?;
    let flows = cfg
        .flows_file
        .as_deref()
        .map(StaticFlows::read)
        .transpose()?;
    let n_flows = flows.as_ref().map_or(0, StaticFlows::len);
    let pipeline = initial_pipeline(flows, Instant::now())?;
    Ok((cfg, pipeline, n_flows))
}

/// Replaces the static flows with the file's; a bad file changes nothing.
fn reload(handle: &SwitchHandle, path: &Path) {
    match static_flows::reload(handle, path) {
        Ok(r) => info!(
            file = %path.display(),
            removed = r.removed,
            added = r.added,
            "static flows reloaded; other flows untouched"
        ),
        Err(e) => error!("static flows not reloaded, tables unchanged: {e}"),
    }
}

fn run(config_path: &Path, user: Option<&str>) -> Result<()> {
    let (cfg, pipeline, n_flows) = load(config_path)?;
    // Before any port opens: each has a queue per forwarding worker. No thread
    // applies it yet (they do so as they start, below).
    dataplane::scheduling::choose(cfg.scheduling);
    let mut ports = Vec::with_capacity(cfg.ports.len());
    let mut probes = Vec::new();
    for p in &cfg.ports {
        let (local, probe) =
            portctl::open_local(&p.name, p.kind, p.netns.as_deref(), p.create, p.mtu)
                .with_context(|| format!("port {} ({})", p.number, p.name))?;
        probes.extend(probe.map(|probe| (p.number, probe)));
        info!(port = p.number, name = %p.name, kind = ?p.kind, created = p.create, netns = p.netns.as_deref().unwrap_or("-"), bound_to = %p.binding.as_ref().map_or("-".to_string(), |b| b.mac().to_string()), "port ready");
        ports.push((p.number, local));
    }
    let arp = cfg.arp_responder.then(|| {
        ArpResponder::new(
            cfg.overlay_network.into(),
            cfg.overlay_prefix_len,
            cfg.gateway_mac,
        )
    });
    let port_arp = cfg
        .ports
        .iter()
        .filter_map(|p| {
            let mac = p.mac?;
            Some(
                p.answer_arp
                    .iter()
                    .map(move |(net, len)| (p.number, ArpResponder::new(*net, *len, mac))),
            )
        })
        .flatten()
        .collect();
    let port_nd: Vec<(u32, PortNdResponder)> = cfg
        .ports
        .iter()
        .filter(|p| !p.answer_nd.is_empty() && cfg.overlay_ipv6.is_some())
        .filter_map(|p| Some((p.number, PortNdResponder::new(p.mac?, &p.answer_nd))))
        .collect();
    // IPv6 too big for the tunnels is answered from the uplink's own address
    // where it came in from the internet, else from the VMs' gateway.
    let too_big = cfg.overlay_ipv6.map(|_| {
        let uplinks = cfg.ports.iter().filter_map(|p| {
            let (address, _) = p.answer_nd.iter().find(|(_, len)| *len == 128)?;
            Some((p.number, *address))
        });
        TooBigReplies::new(
            dataplane_core::nd::link_local(cfg.gateway_mac),
            uplinks.collect(),
        )
    });
    let tunnels = match &cfg.tunnel {
        None => None,
        Some(t) => {
            let private = dataplane::keys::read_private_file(&t.private_key_file)?;
            let mut tunnels = Tunnels::new(t.listen, private, t.peers.clone(), t.mtu)
                .with_context(|| format!("tunnel socket on {}", t.listen))?;
            tunnels.set_latency_probe(t.latency_probe);
            tunnels.too_big = too_big;
            info!(listen = %tunnels.local_addr()?, peers = t.peers.len(), mtu = t.mtu, "tunnels ready");
            Some(tunnels)
        }
    };
    let pipeline_tables = pipeline.n_tables();
    let mut switch = Switch::new(SwitchParams {
        datapath_id: cfg.datapath_id,
        ports,
        probes,
        tunnels,
        arp,
        port_arp,
        bindings: cfg
            .ports
            .iter()
            .filter_map(|p| Some((p.number, p.binding.clone()?)))
            .collect(),
        dhcp: cfg.dhcp.as_ref().map(|d| DhcpServer {
            gateway_mac: cfg.gateway_mac,
            gateway_ip: cfg.gateway_ip,
            prefix_len: cfg.overlay_prefix_len,
            mtu: d.mtu,
            dns: d.dns.clone(),
            lease_secs: d.lease_secs,
        }),
        nd: LinkParams {
            vm: cfg.overlay_ipv6.map(|(net, len)| {
                // The link MTU: what one tunnel datagram carries (at least
                // 1280 with IPv6: the configuration refuses less).
                let mtu = cfg.tunnel.as_ref().map_or(1500, |t| t.mtu);
                NdResponder::new(
                    net,
                    len,
                    cfg.gateway_mac,
                    u32::try_from(mtu).unwrap_or(1280),
                )
            }),
            ports: port_nd,
        },
        gateway_mac: cfg.gateway_mac,
        gateway_ip: cfg.gateway_ip,
        pipeline,
        workers: cfg.scheduling.workers,
    })?;
    // The TLS files may be readable by root only: read before the drop.
    let channel_tls = ChannelTls::load(&cfg.openflow).context("[openflow.tls]")?;
    // Before the drop: a forwarding thread raised above nice 0 or made real-time
    // needs CAP_SYS_NICE.
    // The threads started from here on lower themselves again.
    if let Err(e) = dataplane::scheduling::as_forwarding_thread() {
        warn!(
            nice = cfg.scheduling.forwarding_nice,
            policy = ?cfg.scheduling.forwarding_policy,
            "scheduling.forwarding_* not applied: {e}"
        );
    }
    // Every device is open and no thread has started yet: from here on scd needs
    // only what forwarding and its own TAPs need.
    let dropped = dataplane::privileges::drop_privileges(user)
        .context("dropping privileges (devices are open; refusing to run with more)")?;
    info!(%dropped, "privileges dropped");
    let handle = switch.handle();
    // A controller's add-port opens its device as `scd port add` does.
    handle.set_port_opener(Arc::new(|req: &openflow::wire::AddPort| {
        portctl::open_spec(&portctl::PortSpec {
            name: req.name.clone(),
            kind: if req.raw { "raw" } else { "tap" }.into(),
            ofport: req.port,
            create: !req.attach,
            mtu: None,
            netns: None,
            vm_mac: req.mac.map(|m| m.to_string()),
            vm_ips: req.ips.clone(),
        })
    }));
    let of = &cfg.openflow;
    for exposed in of.exposed_plaintext() {
        warn!(%exposed, "OpenFlow in plain text off loopback (insecure_plaintext = true): anyone on the path can read and program this switch; use pssl:/ssl:");
    }
    let _channel = if !of.listen.is_empty() || !of.controllers.is_empty() {
        let (tx, rx) = packet_in_channel(PACKET_IN_DEPTH);
        switch.set_packet_in(tx);
        let info = DatapathInfo {
            datapath_id: cfg.datapath_id,
            name: cfg.name.clone(),
            n_tables: pipeline_tables,
        };
        let (channel, removed_hook) =
            Channel::start_with_tls(of, channel_tls, handle.clone(), info, rx)?;
        switch.on_removed(removed_hook);
        info!(
            listen = ?channel.listeners().iter().map(ToString::to_string).collect::<Vec<_>>(),
            controllers = ?of.controllers.iter().map(ToString::to_string).collect::<Vec<_>>(),
            fail_mode = ?of.fail_mode,
            "OpenFlow 1.3 channel started"
        );
        Some(channel)
    } else {
        None
    };
    info!(dpid = format_args!("{:016x}", cfg.datapath_id), host = %cfg.name, flows = n_flows, "scd started");

    if let Some(addr) = cfg.metrics_listen {
        let bound = dataplane::metrics::serve(addr, handle.clone(), cfg.name.clone())
            .with_context(|| format!("metrics listener on {addr}"))?;
        info!(%bound, "metrics at http://{bound}/metrics");
    }

    let _control = match &cfg.control_socket {
        Some(path) => {
            let server = portctl::serve(path, handle.clone())
                .with_context(|| format!("management socket {}", path.display()))?;
            info!(socket = %path.display(), "management socket ready (scd port add/del/list)");
            Some(server)
        }
        None => None,
    };
    let watching = Arc::new(AtomicBool::new(false));
    watch_links(handle.shared.clone(), LINK_POLL, watching.clone())?;

    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    let signal_handle = handle.clone();
    let flows_file = cfg.flows_file.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            dataplane::scheduling::control_thread();
            for sig in signals.forever() {
                match sig {
                    SIGHUP => match &flows_file {
                        Some(f) => reload(&signal_handle, f),
                        None => warn!("SIGHUP: no flows file configured, nothing to reload"),
                    },
                    _ => {
                        info!(signal = sig, "shutting down");
                        signal_handle.stop();
                        break;
                    }
                }
            }
        })?;

    switch.run(&AtomicBool::new(false))?;
    watching.store(true, std::sync::atomic::Ordering::Relaxed);
    drop(switch);
    let created = cfg
        .ports
        .iter()
        .filter(|p| p.kind == PortKind::Tap && p.create)
        .count();
    if created > 0 {
        info!(
            removed = created,
            "scd stopped; the TAP devices it created are removed"
        );
    } else {
        info!("scd stopped; it created no device, so none was removed");
    }
    Ok(())
}

fn main() {
    config_support::logging::init_stderr_logging("SCD_LOG", "info");
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config, user } => run(&config, user.as_deref()),
        Command::CheckConfig { config } => load(&config).and_then(|(cfg, _, n_flows)| {
            if cfg.ports.is_empty() {
                bail!("{}: no [[port]] configured", config.display());
            }
            // The key as `run` reads it: a file it would refuse (missing, open to
            // others, not a key) fails the check too.
            if let Some(t) = &cfg.tunnel {
                dataplane::keys::read_private_file(&t.private_key_file)
                    .with_context(|| format!("{}: `tunnel.private_key_file`", config.display()))?;
            }
            println!(
                "{}: ok ({} ports, {} static flows)",
                config.display(),
                cfg.ports.len(),
                n_flows
            );
            Ok(())
        }),
        Command::Port {
            socket,
            json,
            action,
        } => port_command(&socket, json, action),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "scd", &mut std::io::stdout());
            Ok(())
        }
        Command::Man => clap_mangen::Man::new(Cli::command())
            .render(&mut std::io::stdout())
            .map_err(Into::into),
        Command::Genkey => dataplane::keys::generate_private()
            .map(|k| println!("{}", dataplane::keys::encode(&k)))
            .map_err(Into::into),
        Command::Pubkey => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map_err(anyhow::Error::from)
                .and_then(|_| Ok(dataplane::keys::decode(&text)?))
                .map(|k| {
                    println!(
                        "{}",
                        dataplane::keys::encode(&dataplane::keys::public_of(&k))
                    )
                })
        }
    };
    if let Err(e) = result {
        eprintln!("scd: error: {e:#}");
        std::process::exit(2);
    }
}
