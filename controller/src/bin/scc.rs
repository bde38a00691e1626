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
use controller::store::Store;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Where the CLI reaches the running controller unless told otherwise.
const DEFAULT_API: &str = "unix:/run/scc/api.sock";

/// Where the CLI reaches the running controller's API.
#[derive(Debug, Clone, clap::Args)]
struct ApiArgs {
    /// The controller's API: `unix:PATH` (its socket, the inventory's
    /// `api_socket`) or `http://ADDR:PORT` (its `api`, with --token-file).
    #[arg(long, default_value = DEFAULT_API, global = true)]
    api: bounded_http::Endpoint,
    /// File holding the bearer token of an API on TCP (mode 0600).
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
}

impl ApiArgs {
    /// One request and its whole answer.
    fn answer(&self, method: &str, target: &str, body: &[u8]) -> Result<bounded_http::Answer> {
        use bounded_http::client;
        let token = match &self.token_file {
            Some(file) => Some(controller::api::access::read_token(file)?),
            None => None,
        };
        let timeout = std::time::Duration::from_secs(60);
        client::blocking(client::request_to(
            &self.api,
            token.as_deref(),
            method,
            target,
            body,
            timeout,
        ))
        .with_context(|| format!("controller API at {} (is `scc run` up?)", self.api))
    }

    /// One request: the status and the JSON body (`null` when not JSON).
    fn json(&self, method: &str, target: &str, body: &[u8]) -> Result<(u16, serde_json::Value)> {
        let answer = self.answer(method, target, body)?;
        let json = serde_json::from_slice(&answer.body).unwrap_or(serde_json::Value::Null);
        Ok((answer.status, json))
    }
}

#[derive(Debug, Parser)]
#[command(name = "scc", version, about = "The supercloud controller")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `scc run`'s options for replicated controllers (docs/operations.md).
#[derive(Debug, clap::Args)]
struct ReplicaArgs {
    /// `etcd://HOST:PORT,HOST:PORT,…`: share the state with other replicas in etcd
    /// instead of the embedded file (`--state`); one replica leads, elected.
    #[arg(long)]
    store: Option<String>,
    /// Prefix of this network's keys in etcd.
    #[arg(long, default_value = "/supercloud/")]
    store_prefix: String,
    /// This replica's name in the leader key (default: `scc-PID@API`).
    #[arg(long)]
    replica_id: Option<String>,
    /// The leader's etcd lease in seconds: how long a dead leader holds the
    /// network before a standby takes over (etcd's minimum is 2).
    #[arg(long, default_value_t = 2)]
    lease_ttl: i64,
    /// OpenFlow listener, instead of the inventory's (replicas on one machine).
    #[arg(long)]
    openflow: Option<SocketAddr>,
    /// This replica's API socket, instead of the inventory's `api_socket`
    /// (several replicas on one machine need one each).
    #[arg(long)]
    api_socket: Option<PathBuf>,
    /// This replica's API on TCP, instead of the inventory's `api`; it needs the
    /// inventory's `api_token_file` (bearer token) like the inventory's own.
    #[arg(long)]
    api_tcp: Option<SocketAddr>,
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
        /// Inventory (TOML), imported only into an empty store (the first start);
        /// once the store exists it is the truth, and the file is only compared with
        /// it (`scc inventory import` applies a file's changes).
        #[arg(long)]
        inventory: Option<PathBuf>,
        /// Policy (NetKAT) composed with routing; replaces the stored one. Default `id`.
        #[arg(long)]
        policy: Option<PathBuf>,
        /// The embedded store (one JSON file, replaced atomically).
        #[arg(long, default_value = "/var/lib/scc/state.json")]
        state: PathBuf,
        #[command(flatten)]
        replicas: ReplicaArgs,
    },
    /// Show clouds, hosts, switches (connected, synced version, flows, audits,
    /// repairs) and VMs.
    Status {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Print the controller's Prometheus metrics, as a scraper of `/metrics` sees them.
    Metrics {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Compile a policy and apply it to the running controller (refused whole on error).
    Apply {
        /// The policy file.
        policy: PathBuf,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Add, remove or show VMs of the running controller.
    Vm {
        #[command(subcommand)]
        verb: VmVerb,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// The running controller's inventory against a file.
    Inventory {
        #[command(subcommand)]
        verb: InventoryVerb,
    },
    /// Add or remove hosts of the running controller.
    Host {
        #[command(subcommand)]
        verb: HostVerb,
        #[command(flatten)]
        api: ApiArgs,
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
        #[command(flatten)]
        api: ApiArgs,
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
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Plan and apply: start the best move through the inventory's
    /// `[placement] migrate` command (one at a time; see docs/placement.md).
    Run {
        /// Print the round as JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Print what the controller measured as a snapshot for `plan --measurements`.
    Snapshot {
        /// Only this VM's traffic (the whole store is about 32 KB per VM and region).
        #[arg(long)]
        vm: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// The move running now and the last ones, with how they ended.
    Moves {
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Debug, Subcommand)]
enum InventoryVerb {
    /// Show how FILE differs from the running controller's inventory (hosts and
    /// VMs added, removed, moved); with --yes, put FILE in force (one program
    /// version; refused while a migration is in progress).
    Import {
        /// Inventory (TOML).
        file: PathBuf,
        /// Apply the difference; without it nothing changes.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        api: ApiArgs,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check { file } => check(&file),
        Command::Compile {
            policy,
            switch,
            format,
        } => compile(&policy, switch, format),
        Command::Run {
            inventory,
            policy,
            state,
            replicas,
        } => run(inventory.as_deref(), policy.as_deref(), &state, &replicas),
        Command::Status { api } => call(&api, "GET", "/status", b""),
        Command::Metrics { api } => metrics(&api),
        Command::Apply { policy, api } => read(&policy).and_then(|text| {
            let name = policy.display().to_string();
            // The API takes JSON only: the policy travels as a JSON string.
            let body = serde_json::to_vec(&text)?;
            call(&api, "POST", &format!("/policy?name={name}"), &body)
        }),
        Command::Vm { verb, api } => vm(&api, verb),
        Command::Inventory {
            verb: InventoryVerb::Import { file, yes, api },
        } => import_inventory(&api, &file, yes),
        Command::Migrate {
            vm,
            to,
            port,
            arrived,
            no_wait,
            abort,
            api,
        } => match (vm, to, port, arrived) {
            _ if abort => call(&api, "POST", "/migrate/abort", b""),
            (_, _, _, true) => call(&api, "POST", "/migrate/arrived", b""),
            (Some(vm), Some(to), Some(port), false) => {
                let body = serde_json::json!({ "vm": vm, "to_host": to, "to_port": port });
                match call(&api, "POST", "/migrate", body.to_string().as_bytes()) {
                    Ok(code) if code == ExitCode::SUCCESS && !no_wait => {
                        wait_destination_ready(&api, &vm, &to)
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
                    .and_then(|b| call(&api, "POST", "/host", &b))
            }
            HostVerb::Rm { name } => call(&api, "DELETE", &format!("/host/{name}"), b""),
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
                placement_round(&api, "GET", "/placement", json)
            }
            PlacementVerb::Run { json, api } => {
                placement_round(&api, "POST", "/placement/run", json)
            }
            PlacementVerb::Snapshot { vm, api } => match vm {
                Some(vm) => call(&api, "GET", &format!("/placement/snapshot?vm={vm}"), b""),
                None => call(&api, "GET", "/placement/snapshot", b""),
            },
            PlacementVerb::Moves { api } => call(&api, "GET", "/placement/moves", b""),
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
fn metrics(api: &ApiArgs) -> Result<ExitCode> {
    let answer = api.answer("GET", "/metrics", b"")?;
    print!("{}", answer.text());
    Ok(if answer.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Calls the API and prints its JSON answer; a refused change exits with 1.
fn call(api: &ApiArgs, method: &str, target: &str, body: &[u8]) -> Result<ExitCode> {
    let (status, json) = api.json(method, target, body)?;
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

fn vm(api: &ApiArgs, verb: VmVerb) -> Result<ExitCode> {
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
fn wait_destination_ready(api: &ApiArgs, vm: &str, to: &str) -> Result<ExitCode> {
    const WITHIN: std::time::Duration = std::time::Duration::from_secs(30);
    let start = std::time::Instant::now();
    loop {
        let (_, s) = api.json("GET", "/status", b"")?;
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
fn placement_round(api: &ApiArgs, method: &str, target: &str, json: bool) -> Result<ExitCode> {
    let (status, body) = api.json(method, target, b"")?;
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

/// `scc inventory import`: checks FILE here (errors with their position), then
/// has the controller compare it with its inventory and apply it when `yes`.
fn import_inventory(api: &ApiArgs, file: &Path, yes: bool) -> Result<ExitCode> {
    Inventory::load(file)?;
    let name = file.display().to_string();
    let body = serde_json::to_vec(&read(file)?)?;
    let target = format!("/inventory/import?name={name}&apply={yes}");
    let (status, answer) = api.json("POST", &target, &body)?;
    if status != 200 {
        eprintln!("{}", answer["error"].as_str().unwrap_or("refused"));
        return Ok(ExitCode::from(1));
    }
    print!("{}", answer["text"].as_str().unwrap_or_default());
    match answer["version"].as_u64() {
        Some(version) => println!("applied as version {version}"),
        None if answer["same"] == true => {}
        None => println!("nothing changed: run again with --yes to apply"),
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

fn run(
    inventory: Option<&Path>,
    policy: Option<&Path>,
    state: &Path,
    replicas: &ReplicaArgs,
) -> Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SCC_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let inventory_file = match inventory {
        Some(p) => Some((Inventory::load(p)?, p.display().to_string())),
        None => None,
    };
    let policy_file = match policy {
        Some(p) => Some((read(p)?, p.display().to_string())),
        None => None,
    };
    let (ctl, replica) = if let Some(spec) = &replicas.store {
        let options = controller::replica::ReplicaOptions {
            endpoints: controller::replica::parse_endpoints(spec).map_err(anyhow::Error::msg)?,
            prefix: replicas.store_prefix.clone(),
            id: replicas.replica_id.clone().unwrap_or_else(|| {
                let api = replicas.api_socket.as_deref().unwrap_or(Path::new(""));
                format!("scc-{}@{}", std::process::id(), api.display())
            }),
            lease_ttl_s: replicas.lease_ttl,
        };
        // The files are used only on the very first start, by the replica elected
        // then; afterwards etcd holds the state (and the migration in progress).
        let started = controller::replica::start(&options, || {
            let start = controller::restart::start(None, inventory_file, policy_file)
                .map_err(|e| format!("store {spec}: {e}"))?;
            for note in &start.notes {
                tracing::info!("{note}");
            }
            Ok(start.persisted)
        });
        match started {
            Ok(r) => (r.controller.clone(), Some(r)),
            Err(e) => {
                eprintln!("{e}");
                return Ok(ExitCode::from(1));
            }
        }
    } else {
        let store = Store::new(state);
        let start = controller::restart::start(store.load()?, inventory_file, policy_file)
            .with_context(|| format!("store {}", state.display()))?;
        for note in &start.notes {
            tracing::info!("{note}");
        }
        match Controller::new(start.persisted, store) {
            Ok(c) => (c, None),
            Err(e) => {
                eprintln!("{e}");
                return Ok(ExitCode::from(1));
            }
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let inv = ctl.inventory();
        let of = replicas.openflow.unwrap_or(inv.openflow);
        let of_listener = tokio::net::TcpListener::bind(of).await.with_context(|| format!("OpenFlow listener on {of}"))?;
        tokio::spawn(controller::net::serve_openflow(of_listener, ctl.clone()));
        let socket = replicas.api_socket.as_ref().unwrap_or(&inv.api_socket);
        let api_listener = controller::api::access::bind_unix(socket).context("API socket")?;
        tokio::spawn(controller::api::serve(api_listener, ctl.clone(), None));
        if let (Some(tcp), None) = (replicas.api_tcp, &inv.api_token_file) {
            anyhow::bail!("--api-tcp {tcp}: the inventory names no api_token_file (an API on TCP needs a bearer token)");
        }
        match (replicas.api_tcp.or(inv.api), inv.api_token_file.as_deref()) {
            (Some(tcp), None) => {
                // A store written before tokens existed: the socket only.
                tracing::warn!(%tcp, "API on TCP not started: the inventory names no api_token_file");
            }
            (Some(tcp), Some(token_file)) => {
                let token = controller::api::access::read_token(token_file)?;
                let listener = tokio::net::TcpListener::bind(tcp).await.with_context(|| format!("API listener on {tcp}"))?;
                tracing::info!(%tcp, "API on TCP, bearer token required");
                tokio::spawn(controller::api::serve(listener, ctl.clone(), Some(token)));
            }
            (None, _) => {}
        }
        tracing::info!(%of, api = %socket.display(), "scc running");
        // A replica resumes a migration in progress when it is elected
        // (`replica::follow`): a standby changes nothing.
        if replica.is_none() {
            if let Some(resumed) = ctl.resume() {
                tracing::info!("{resumed}");
            }
        }
        tokio::spawn(ctl.clone().follow_the_sun());
        let resign = replica.as_ref().map(|r| r.store.clone());
        if let Some(r) = replica {
            tokio::spawn(controller::replica::follow(r));
        }
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
        if let Some(store) = resign {
            // A standby takes over now rather than when the lease lapses.
            match tokio::task::spawn_blocking(move || store.resign()).await {
                Ok(Ok(())) => tracing::info!("leadership given up"),
                Ok(Err(e)) => tracing::warn!("leadership not given up: {e}"),
                Err(e) => tracing::warn!("leadership not given up: {e}"),
            }
        }
        tracing::info!("scc stopping; switch tables stay as they are");
        Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
    })
}
