//! `scc`: command-line front end of the supercloud controller.
//!
//! Each subcommand is one variant of [`Command`] and one function; daemon verbs
//! are added the same way. This file owns argument parsing, file reading and
//! printing; the work is done by the `controller` library.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use controller::daemon::Controller;
use controller::model::Inventory;
use controller::netkat::{self, diagnostics::Diagnostic, ir::NoNames, Groups, TableOptions};
use controller::store::{Persisted, Store};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "scc", version, about = "The supercloud controller")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Parse and check a NetKAT policy; print errors the way rustc does.
    Check {
        /// The policy file (Frenetic syntax).
        file: PathBuf,
    },
    /// Compile a NetKAT policy to OpenFlow 1.3 flow tables.
    Compile {
        /// The policy file (Frenetic syntax).
        policy: PathBuf,
        /// Only this switch's table.
        #[arg(long)]
        switch: Option<u64>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Run the controller: program every host switch from the inventory and policy.
    Run {
        /// Inventory (TOML); replaces the stored one. Needed on first start.
        #[arg(long)]
        inventory: Option<PathBuf>,
        /// Policy (NetKAT) composed with routing; replaces the stored one. Default `id`.
        #[arg(long)]
        policy: Option<PathBuf>,
        /// The embedded store (one JSON file, replaced atomically).
        #[arg(long, default_value = "/var/lib/scc/state.json")]
        state: PathBuf,
    },
    /// Show clouds, hosts, switches (connected, synced version, flows, audits,
    /// repairs) and VMs.
    Status {
        /// Controller API address.
        #[arg(long, default_value = "127.0.0.1:6680")]
        api: SocketAddr,
    },
    /// Print the controller's Prometheus metrics, as a scraper of `/metrics` sees them.
    Metrics {
        /// Controller API address.
        #[arg(long, default_value = "127.0.0.1:6680")]
        api: SocketAddr,
    },
    /// Compile a policy and apply it to the running controller (refused whole on error).
    Apply {
        /// The policy file.
        policy: PathBuf,
        /// Controller API address.
        #[arg(long, default_value = "127.0.0.1:6680")]
        api: SocketAddr,
    },
    /// Add, remove or show VMs of the running controller.
    Vm {
        #[command(subcommand)]
        verb: VmVerb,
        /// Controller API address.
        #[arg(long, default_value = "127.0.0.1:6680", global = true)]
        api: SocketAddr,
    },
    /// Add or remove hosts of the running controller.
    Host {
        #[command(subcommand)]
        verb: HostVerb,
        /// Controller API address.
        #[arg(long, default_value = "127.0.0.1:6680", global = true)]
        api: SocketAddr,
    },
    /// Move a VM to another host (make before break); the network follows when the
    /// VM announces itself at the destination or `--arrived` is given.
    Migrate {
        /// The VM (omit with --arrived).
        vm: Option<String>,
        /// Destination host.
        #[arg(long)]
        to: Option<String>,
        /// Its port on the destination switch.
        #[arg(long)]
        port: Option<u32>,
        /// Tell the controller the migrating VM now runs at its destination (what
        /// the hypervisor glue does on QEMU's RESUME event).
        #[arg(long)]
        arrived: bool,
        /// Return as soon as the controller accepted the migration, instead of
        /// when the destination switch confirmed it can deliver the VM and report
        /// its arrival (only then may the hypervisor move it).
        #[arg(long)]
        no_wait: bool,
        /// Give up a migration that has not switched (the hypervisor's failed): the
        /// tables go back to what they were.
        #[arg(long)]
        abort: bool,
        /// Controller API address.
        #[arg(long, default_value = "127.0.0.1:6680")]
        api: SocketAddr,
    },
    /// Print the scd configuration of one host, generated from the inventory.
    HostConfig {
        /// Host name.
        host: String,
        /// Inventory (TOML).
        #[arg(long)]
        inventory: PathBuf,
        /// Private key file the host's scd will read.
        #[arg(long, default_value = "/etc/scd/wg.key")]
        key_file: String,
    },
    /// Print the routing program generated from an inventory (NetKAT).
    Routing {
        /// Inventory (TOML).
        #[arg(long)]
        inventory: PathBuf,
    },
    /// Placement of VMs from measured client traffic and latency (docs/placement.md).
    Placement {
        #[command(subcommand)]
        verb: PlacementVerb,
    },
    /// The certificates of OpenFlow over TLS (docs/security.md).
    Pki {
        #[command(subcommand)]
        verb: PkiVerb,
    },
}

#[derive(Debug, Subcommand)]
enum PkiVerb {
    /// Make a CA in DIR: ca-key.pem (mode 0600) and its self-signed ca-cert.pem.
    Init {
        /// The PKI directory (created, mode 0700).
        #[arg(long)]
        dir: PathBuf,
        /// The CA's common name.
        #[arg(long, default_value = "supercloud CA")]
        name: String,
    },
    /// Issue NAME-key.pem and NAME-cert.pem signed by DIR's CA; the certificate's
    /// identity (DNS name and common name) is NAME: a host's inventory name, a
    /// tool's name, or with --controller the controller's.
    Issue {
        /// A host's inventory name (or the controller's, or a tool's).
        name: String,
        /// The PKI directory made by `scc pki init`.
        #[arg(long)]
        dir: PathBuf,
        /// A certificate for the controller: TLS server only, so it can never be
        /// presented as a switch's.
        #[arg(long)]
        controller: bool,
    },
}

#[derive(Debug, Subcommand)]
enum PlacementVerb {
    /// Print the decision table: VM, now, best, gain, cost, why. From the running
    /// controller's measurements, or offline from a snapshot file.
    Plan {
        /// Inventory (TOML): clouds, hosts, VMs and their placement knobs (offline).
        #[arg(long, requires = "measurements")]
        inventory: Option<PathBuf>,
        /// Measurements snapshot (JSON, see docs/examples/placement-snapshot.json);
        /// without it, the running controller plans from what it measured.
        #[arg(long, requires = "inventory")]
        measurements: Option<PathBuf>,
        /// Print the decisions as JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Controller API address.
        #[arg(long, default_value = "127.0.0.1:6680")]
        api: SocketAddr,
    },
    /// Plan and apply: start the best move through the inventory's
    /// `[placement] migrate` command (one at a time; see docs/placement.md).
    Run {
        /// Print the round as JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Controller API address.
        #[arg(long, default_value = "127.0.0.1:6680")]
        api: SocketAddr,
    },
    /// Print what the controller measured as a snapshot for `plan --measurements`.
    Snapshot {
        /// Only this VM's traffic (the whole store is about 32 KB per VM and region).
        #[arg(long)]
        vm: Option<String>,
        /// Controller API address.
        #[arg(long, default_value = "127.0.0.1:6680")]
        api: SocketAddr,
    },
    /// The move running now and the last ones, with how they ended.
    Moves {
        /// Controller API address.
        #[arg(long, default_value = "127.0.0.1:6680")]
        api: SocketAddr,
    },
}

#[derive(Debug, Subcommand)]
enum HostVerb {
    /// Add (or replace) a host.
    Add {
        /// Name.
        #[arg(long)]
        name: String,
        /// Its cloud (from the inventory).
        #[arg(long)]
        cloud: String,
        /// Datapath id of its scd.
        #[arg(long)]
        datapath_id: u64,
        /// Public tunnel endpoint, address:port.
        #[arg(long)]
        tunnel_endpoint: SocketAddr,
        /// WireGuard public key (base64).
        #[arg(long)]
        public_key: String,
    },
    /// Remove a host that runs no VM.
    Rm {
        /// Name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum VmVerb {
    /// Add (or replace) a VM.
    Add {
        /// Name.
        #[arg(long)]
        name: String,
        /// MAC address.
        #[arg(long)]
        mac: String,
        /// Overlay IPv4 address.
        #[arg(long)]
        ip: std::net::Ipv4Addr,
        /// Host it runs on.
        #[arg(long)]
        host: String,
        /// OpenFlow port of its TAP on that host.
        #[arg(long)]
        port: u32,
        /// TAP name (default sc-NAME).
        #[arg(long)]
        tap: Option<String>,
        /// Namespace of the TAP (namespace VMs).
        #[arg(long)]
        netns: Option<String>,
        /// Tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Public address, served by the gateway whose public prefix holds it.
        #[arg(long)]
        public_ip: Option<std::net::Ipv4Addr>,
    },
    /// Remove a VM.
    Rm {
        /// Name.
        name: String,
    },
    /// Show a VM.
    Show {
        /// Name.
        name: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    /// `ovs-ofctl dump-flows` style, one `# switch N` section per switch.
    Text,
    /// JSON: `[{"switch": N, "flows": [FlowSpec…]}]`.
    Json,
}

fn pki(verb: PkiVerb) -> Result<ExitCode> {
    use tls_support::pki::{self, Role};
    match verb {
        PkiVerb::Init { dir, name } => {
            let cert = pki::init(&dir, &name)?;
            std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .with_context(|| dir.display().to_string())?;
            println!("{}", cert.display());
        }
        PkiVerb::Issue {
            name,
            dir,
            controller,
        } => {
            let role = if controller {
                Role::Controller
            } else {
                Role::Host
            };
            let (key, cert) = pki::issue(&dir, &name, role)?;
            println!("{}\n{}", key.display(), cert.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check { file } => check(&file),
        Command::Pki { verb } => pki(verb),
        Command::Compile {
            policy,
            switch,
            format,
        } => compile(&policy, switch, format),
        Command::Run {
            inventory,
            policy,
            state,
        } => run(inventory.as_deref(), policy.as_deref(), &state),
        Command::Status { api } => call(api, "GET", "/status", b""),
        Command::Metrics { api } => metrics(api),
        Command::Apply { policy, api } => read(&policy).and_then(|text| {
            let name = policy.display().to_string();
            // The API takes JSON only: the policy travels as a JSON string.
            let body = serde_json::to_vec(&text)?;
            call(api, "POST", &format!("/policy?name={name}"), &body)
        }),
        Command::Vm { verb, api } => vm(api, verb),
        Command::Migrate {
            vm,
            to,
            port,
            arrived,
            no_wait,
            abort,
            api,
        } => match (vm, to, port, arrived) {
            _ if abort => call(api, "POST", "/migrate/abort", b""),
            (_, _, _, true) => call(api, "POST", "/migrate/arrived", b""),
            (Some(vm), Some(to), Some(port), false) => {
                let body = serde_json::json!({ "vm": vm, "to_host": to, "to_port": port });
                match call(api, "POST", "/migrate", body.to_string().as_bytes()) {
                    Ok(code) if code == ExitCode::SUCCESS && !no_wait => {
                        wait_destination_ready(api, &vm, &to)
                    }
                    other => other,
                }
            }
            _ => Err(anyhow::anyhow!("give VM --to HOST --port N, or --arrived")),
        },
        Command::Host { verb, api } => match verb {
            HostVerb::Add {
                name,
                cloud,
                datapath_id,
                tunnel_endpoint,
                public_key,
            } => {
                let host = controller::model::Host {
                    name,
                    cloud,
                    datapath_id,
                    tunnel_endpoint,
                    public_key,
                };
                serde_json::to_vec(&host)
                    .map_err(Into::into)
                    .and_then(|b| call(api, "POST", "/host", &b))
            }
            HostVerb::Rm { name } => call(api, "DELETE", &format!("/host/{name}"), b""),
        },
        Command::HostConfig {
            host,
            inventory,
            key_file,
        } => host_config(&host, &inventory, &key_file),
        Command::Placement { verb } => match verb {
            PlacementVerb::Plan {
                inventory: Some(inventory),
                measurements: Some(measurements),
                json,
                ..
            } => placement_plan(&inventory, &measurements, json),
            PlacementVerb::Plan { json, api, .. } => {
                placement_round(api, "GET", "/placement", json)
            }
            PlacementVerb::Run { json, api } => {
                placement_round(api, "POST", "/placement/run", json)
            }
            PlacementVerb::Snapshot { vm, api } => match vm {
                Some(vm) => call(api, "GET", &format!("/placement/snapshot?vm={vm}"), b""),
                None => call(api, "GET", "/placement/snapshot", b""),
            },
            PlacementVerb::Moves { api } => call(api, "GET", "/placement/moves", b""),
        },
        Command::Routing { inventory } => {
            Inventory::load(&inventory).map_err(Into::into).map(|inv| {
                print!("{}", controller::routing::routing_program(&inv));
                ExitCode::SUCCESS
            })
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn report(path: &Path, src: &str, d: &Diagnostic) -> ExitCode {
    eprint!("{}", d.render(&path.display().to_string(), src));
    ExitCode::from(1)
}

fn check(path: &Path) -> Result<ExitCode> {
    let src = read(path)?;
    match netkat::check(&src, &NoNames) {
        Ok(_) => {
            println!("{}: ok", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(d) => Ok(report(path, &src, &d)),
    }
}

fn compile(path: &Path, switch: Option<u64>, format: Format) -> Result<ExitCode> {
    let src = read(path)?;
    let prog = match netkat::check(&src, &NoNames) {
        Ok(p) => p,
        Err(d) => return Ok(report(path, &src, &d)),
    };
    let mut compiled = match netkat::compile(&prog) {
        Ok(c) => c,
        Err(e) => return Ok(report(path, &src, &Diagnostic::global(e.to_string()))),
    };
    // Groups appear only where a policy cannot be written without them.
    let opts = TableOptions::default();
    let tables = match switch {
        Some(s) => compiled
            .table_with(s, opts, Groups::Allowed)
            .map(|t| vec![(s, t)]),
        None => compiled.tables_with(opts, Groups::Allowed),
    };
    let tables = match tables {
        Ok(t) => t,
        Err(e) => return Ok(report(path, &src, &Diagnostic::global(e.to_string()))),
    };
    for (_, t) in &tables {
        for w in &t.warnings {
            let d = Diagnostic::global(w.clone()).warning();
            eprint!("{}", d.render(&path.display().to_string(), &src));
        }
    }
    match format {
        Format::Json => {
            let v: Vec<serde_json::Value> = tables
                .iter()
                .map(|(s, t)| {
                    let mut v = serde_json::json!({ "switch": s, "flows": t.flows });
                    if !t.groups.is_empty() {
                        v["groups"] = serde_json::json!(t.groups);
                    }
                    v
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Format::Text => {
            let every = switch.is_none() && compiled.switches().is_empty();
            for (s, t) in &tables {
                if every {
                    println!("# every switch ({} flows)", t.flows.len());
                } else {
                    println!("# switch {s} ({} flows)", t.flows.len());
                }
                if !t.groups.is_empty() {
                    println!(
                        "# {} groups (ovs-ofctl -O OpenFlow13 add-groups, before the flows)",
                        t.groups.len()
                    );
                    for g in &t.groups {
                        println!("{}", openflow::text::format_group(g));
                    }
                    println!("# flows");
                }
                for f in &t.flows {
                    println!("{}", openflow::text::format_flow(f));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the metrics text the API serves; exits with 1 if it serves none.
fn metrics(api: SocketAddr) -> Result<ExitCode> {
    use bounded_http::client;
    let timeout = std::time::Duration::from_secs(60);
    let answer = client::blocking(client::request(api, "GET", "/metrics", b"", timeout))
        .with_context(|| format!("controller API at {api} (is `scc run` up?)"))?;
    print!("{}", answer.text());
    Ok(if answer.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Calls the API and prints its JSON answer; a refused change exits with 1.
fn call(api: SocketAddr, method: &str, target: &str, body: &[u8]) -> Result<ExitCode> {
    let (status, json) = controller::api::request(api, method, target, body)
        .with_context(|| format!("controller API at {api} (is `scc run` up?)"))?;
    if status == 200 {
        println!("{}", serde_json::to_string_pretty(&json)?);
        Ok(ExitCode::SUCCESS)
    } else {
        let text = json["error"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| json.to_string());
        eprintln!("{text}");
        Ok(ExitCode::from(1))
    }
}

fn vm(api: SocketAddr, verb: VmVerb) -> Result<ExitCode> {
    match verb {
        VmVerb::Add {
            name,
            mac,
            ip,
            host,
            port,
            tap,
            netns,
            tenant,
            public_ip,
        } => {
            let vm = controller::model::Vm {
                tap: tap.unwrap_or_else(|| controller::model::Vm::default_tap(&name)),
                name,
                mac: mac.parse()?,
                ip,
                host,
                port,
                netns,
                tenant,
                public_ip,
            };
            call(api, "POST", "/vm", &serde_json::to_vec(&vm)?)
        }
        VmVerb::Rm { name } => call(api, "DELETE", &format!("/vm/{name}"), b""),
        VmVerb::Show { name } => call(api, "GET", &format!("/vm/{name}"), b""),
    }
}

fn placement_plan(inventory: &Path, measurements: &Path, json: bool) -> Result<ExitCode> {
    let inv = Inventory::load(inventory)?;
    let snapshot: controller::placement::Snapshot = serde_json::from_str(&read(measurements)?)
        .with_context(|| format!("{}: not a placement snapshot", measurements.display()))?;
    let decisions = snapshot.plan(&inv);
    if json {
        println!("{}", serde_json::to_string_pretty(&decisions)?);
    } else {
        print!("{}", controller::placement::table(&decisions));
    }
    Ok(ExitCode::SUCCESS)
}

/// Waits until the controller's migration timeline says the destination switch
/// confirmed the prepare step (make before break: the VM may move now).
fn wait_destination_ready(api: SocketAddr, vm: &str, to: &str) -> Result<ExitCode> {
    const WITHIN: std::time::Duration = std::time::Duration::from_secs(30);
    let start = std::time::Instant::now();
    loop {
        let (_, s) = controller::api::request(api, "GET", "/status", b"")
            .with_context(|| format!("controller API at {api}"))?;
        let timeline = &s["timeline"];
        let has = |event: &str| {
            timeline["events"]
                .as_array()
                .is_some_and(|es| es.iter().any(|e| e[0] == event))
        };
        if timeline["vm"] == vm && has("destination ready") {
            return Ok(ExitCode::SUCCESS);
        }
        if timeline["vm"] == vm && has("aborted") {
            anyhow::bail!("the migration of {vm} was aborted before {to} was ready");
        }
        if start.elapsed() > WITHIN {
            anyhow::bail!(
                "{to} did not confirm it can receive {vm} within {WITHIN:?} (is its switch \
                 connected? `scc status`); abort with `scc migrate --abort`"
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// One placement round of the running controller: its decision table, then what
/// it started or why nothing.
fn placement_round(api: SocketAddr, method: &str, target: &str, json: bool) -> Result<ExitCode> {
    let (status, body) = controller::api::request(api, method, target, b"")
        .with_context(|| format!("controller API at {api} (is `scc run` up?)"))?;
    if status != 200 {
        anyhow::bail!("{target}: {}", body["error"].as_str().unwrap_or("refused"));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(ExitCode::SUCCESS);
    }
    let decisions: Vec<controller::placement::Decision> =
        serde_json::from_value(body["decisions"].clone()).context("decisions")?;
    print!("{}", controller::placement::table(&decisions));
    if let Some(m) = body["started"].as_object() {
        let field = |k: &str| m.get(k).and_then(|v| v.as_str()).unwrap_or("?").to_string();
        println!(
            "started: moving {} from {} to {} ({}); `scc placement moves` shows how it ends",
            field("vm"),
            field("from_host"),
            field("to_host"),
            field("to_cloud")
        );
    } else if let Some(note) = body["note"].as_str() {
        println!("no move: {note}");
    }
    Ok(ExitCode::SUCCESS)
}

fn host_config(host: &str, inventory: &Path, key_file: &str) -> Result<ExitCode> {
    let inv = Inventory::load(inventory)?;
    match inv.host_config(host, key_file) {
        Some(c) => {
            print!("{c}");
            Ok(ExitCode::SUCCESS)
        }
        None => anyhow::bail!("{}: no host `{host}`", inventory.display()),
    }
}

fn run(inventory: Option<&Path>, policy: Option<&Path>, state: &Path) -> Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SCC_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let store = Store::new(state);
    let stored = store.load()?;
    let inventory = match (inventory, &stored) {
        (Some(p), _) => Inventory::load(p)?,
        (None, Some(s)) => s.inventory.clone(),
        (None, None) => anyhow::bail!("no stored state at {}: give --inventory", state.display()),
    };
    let (policy_text, policy_name) = match (policy, &stored) {
        (Some(p), _) => (read(p)?, p.display().to_string()),
        (None, Some(s)) => (s.policy.clone(), s.policy_name.clone()),
        (None, None) => ("id".to_string(), "(default: id)".to_string()),
    };
    let persisted = Persisted {
        inventory,
        policy: policy_text,
        policy_name,
        version: stored.as_ref().map_or(1, |s| s.version + 1),
        moves_ms: stored
            .as_ref()
            .map(|s| s.moves_ms.clone())
            .unwrap_or_default(),
    };
    let ctl = match Controller::new(persisted, store) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(1));
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let inv = ctl.inventory();
        let (of, api) = (inv.openflow, inv.api);
        let of_tls = match &inv.openflow_tls {
            Some(tls) => Some(controller::net::OpenflowTls::load(tls).context("[controller.tls]")?),
            None => {
                if !of.ip().is_loopback() {
                    tracing::warn!(%of, "OpenFlow in plain text off loopback (insecure_plaintext = true): anyone who reaches this port can pose as a switch; add [controller.tls]");
                }
                None
            }
        };
        let of_listener = tokio::net::TcpListener::bind(of).await.with_context(|| format!("OpenFlow listener on {of}"))?;
        let api_listener = tokio::net::TcpListener::bind(api).await.with_context(|| format!("API listener on {api}"))?;
        tracing::info!(%of, %api, tls = of_tls.is_some(), "scc running");
        tokio::spawn(controller::net::serve_openflow(of_listener, ctl.clone(), of_tls));
        tokio::spawn(controller::api::serve(api_listener, ctl.clone()));
        tokio::spawn(ctl.clone().follow_the_sun());
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            tokio::select! {
                _ = hup.recv() => match policy {
                    Some(p) => match read(p) {
                        Ok(text) => match ctl.apply_policy(&text, &p.display().to_string()) {
                            Ok(v) => tracing::info!(version = v, "SIGHUP: policy reloaded"),
                            Err(e) => tracing::error!("SIGHUP: policy refused, tables unchanged:\n{e}"),
                        },
                        Err(e) => tracing::error!("SIGHUP: {e:#}"),
                    },
                    None => tracing::warn!("SIGHUP: no --policy file to reload"),
                },
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        tracing::info!("scc stopping; switch tables stay as they are");
        Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
    })
}
