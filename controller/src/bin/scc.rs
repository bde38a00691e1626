//! `scc`: command-line front end of the supercloud controller.
//!
//! Each subcommand is one variant of [`Command`] and one function; daemon verbs
//! are added the same way. This file owns argument parsing, file reading and
//! printing; the work is done by the `controller` library.

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser, Subcommand};
use controller::human;
use controller::model::Inventory;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[path = "scc/api_args.rs"]
mod api_args;
#[path = "scc/offline.rs"]
mod offline;
#[path = "scc/pki.rs"]
mod pki;
#[path = "scc/run.rs"]
mod run;
use api_args::ApiArgs;
use offline::{check, compile, Format};
use run::{run, ReplicaArgs};

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
        /// Inventory (TOML): resolve `vm:NAME` names and compile the policy with
        /// the inventory's routing, exactly as `scc apply` would.
        #[arg(long)]
        inventory: Option<PathBuf>,
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
        /// Inventory (TOML) whose VMs `vm:NAME` names resolve to.
        #[arg(long)]
        inventory: Option<PathBuf>,
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
        /// The embedded store: a snapshot file, and the journal of the changes since
        /// beside it (`FILE.journal`).
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
        /// Print the API's JSON instead of tables.
        #[arg(long)]
        json: bool,
        /// Leave the VMs out (megabytes at 100,000 VMs), e.g. to poll.
        #[arg(long)]
        no_vms: bool,
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
        /// Show the flows each switch would gain, change and lose; apply nothing.
        #[arg(long)]
        dry_run: bool,
        /// Apply even a policy that cuts every VM off from every other.
        #[arg(long)]
        force: bool,
        /// Print the API's JSON instead of the difference as text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Add, remove or show VMs of the running controller.
    Vm {
        #[command(subcommand)]
        verb: VmVerb,
        #[command(flatten)]
        api: ApiArgs,
        /// Print the API's JSON instead of text.
        #[arg(long, global = true)]
        json: bool,
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
        /// Print the API's JSON instead of text.
        #[arg(long, global = true)]
        json: bool,
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
        /// The operator adds the VM's ports by hand (`scd port add`): a
        /// destination port the switch lacks refuses the migration. By default
        /// the controller asks the destination's scd to add a missing port (a
        /// TAP bound to the VM's MAC and address).
        #[arg(long)]
        no_manage_ports: bool,
        /// After the clean-up, ask the source's scd to remove the VM's old port
        /// (for ports the controller added; a port the host's configuration
        /// declares is left alone unless this is given).
        #[arg(long, conflicts_with = "no_manage_ports")]
        remove_source_port: bool,
        /// The TAP the controller creates for a missing destination port
        /// (default: the VM's `tap` in the inventory).
        #[arg(long, value_name = "NAME", conflicts_with = "no_manage_ports")]
        tap: Option<String>,
        /// Give up a migration that has not switched (the hypervisor's failed): the
        /// tables go back to what they were.
        #[arg(long)]
        abort: bool,
        /// Print the API's JSON instead of text.
        #[arg(long)]
        json: bool,
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
        /// Passive OpenFlow listener for local tools (`ovs-ofctl`), or `none`.
        #[arg(long, default_value = controller::host_config::DEFAULT_OPENFLOW_LISTEN)]
        openflow_listen: String,
    },
    /// Print the routing program generated from an inventory (NetKAT).
    Routing {
        /// Inventory (TOML).
        #[arg(long)]
        inventory: PathBuf,
    },
    /// Print shell completions for scc: `scc completions bash >
    /// /etc/bash_completion.d/scc`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print scc's man page (roff): `scc man > /usr/local/share/man/man1/scc.1`.
    Man,
    /// Placement of VMs from measured client traffic and latency (docs/placement.md).
    Placement {
        #[command(subcommand)]
        verb: PlacementVerb,
    },
    /// The certificates of OpenFlow over TLS (docs/security.md).
    Pki {
        #[command(subcommand)]
        verb: pki::PkiVerb,
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
    /// Write the running controller's inventory (VMs where they run now) as an
    /// inventory file, so the file follows moves instead of drifting.
    Export {
        /// Write it here (replaced whole) instead of printing it.
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[command(flatten)]
        api: ApiArgs,
    },
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
        /// The overlay addresses that live on this host unless placed elsewhere,
        /// e.g. 100.64.1.0/25 (other switches then hold one route for them all).
        #[arg(long, value_parser = vm_prefix)]
        vm_prefix: Option<(std::net::Ipv4Addr, u8)>,
    },
    /// Remove a host that runs no VM.
    Rm {
        /// Name.
        name: String,
    },
}

/// `--vm-prefix`'s value.
fn vm_prefix(text: &str) -> Result<(std::net::Ipv4Addr, u8), String> {
    config_support::parse_ipv4_prefix(text)
        .ok_or_else(|| format!("`{text}` is not an IPv4 prefix such as 100.64.1.0/25"))
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
        /// Its own overlay IPv6 address (default: the one SLAAC gives its MAC).
        #[arg(long)]
        ipv6: Option<std::net::Ipv6Addr>,
        /// Public IPv6 address, routed (no NAT) by the gateway whose
        /// `public_ipv6_prefix` holds it; the guest holds it as a second address.
        #[arg(long)]
        public_ipv6: Option<std::net::Ipv6Addr>,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check { file, inventory } => check(&file, inventory.as_deref()),
        Command::Pki { verb } => pki::pki(verb),
        Command::Compile {
            policy,
            switch,
            format,
            inventory,
        } => compile(&policy, switch, format, inventory.as_deref()),
        Command::Run {
            inventory,
            policy,
            state,
            replicas,
        } => run(inventory.as_deref(), policy.as_deref(), &state, &replicas),
        Command::Status { api, json, no_vms } => {
            let target = if no_vms { "/status?vms=false" } else { "/status" };
            show(&api, "GET", target, b"", json, |s| {
                human::status(s, human::unix_now())
            })
        }
        Command::Metrics { api } => metrics(&api),
        Command::Apply {
            policy,
            dry_run,
            force,
            json,
            api,
        } => read(&policy).and_then(|text| {
            let name = policy.display().to_string();
            // The API takes JSON only: the policy travels as a JSON string.
            let body = serde_json::to_vec(&text)?;
            let target = format!("/policy?name={name}&dry_run={dry_run}&force={force}");
            show(&api, "POST", &target, &body, json, human::policy_change)
        }),
        Command::Vm { verb, api, json } => vm(&api, verb, json),
        Command::Inventory {
            verb: InventoryVerb::Import { file, yes, api },
        } => import_inventory(&api, &file, yes),
        Command::Inventory {
            verb: InventoryVerb::Export { output, api },
        } => export_inventory(&api, output.as_deref()),
        Command::Migrate {
            vm,
            to,
            port,
            arrived,
            no_wait,
            no_manage_ports,
            remove_source_port,
            tap,
            abort,
            json,
            api,
        } => match (vm, to, port, arrived) {
            _ if abort => show(&api, "POST", "/migrate/abort", b"", json, |v| {
                format!(
                    "aborted: the tables are back as before (version {})\n",
                    v["version"]
                )
            }),
            (_, _, _, true) => show(&api, "POST", "/migrate/arrived", b"", json, |v| {
                format!("rerouted to the destination (version {})\n", v["version"])
            }),
            (Some(vm), Some(to), Some(port), false) => {
                let ports = (!no_manage_ports).then_some((tap, remove_source_port));
                migrate(&api, &vm, &to, port, ports, no_wait, json)
            }
            _ => Err(anyhow::anyhow!("give VM --to HOST --port N, or --arrived")),
        },
        Command::Host { verb, api, json } => match verb {
            HostVerb::Add {
                name,
                cloud,
                datapath_id,
                tunnel_endpoint,
                public_key,
                vm_prefix,
            } => {
                let host = controller::model::Host {
                    name,
                    cloud,
                    datapath_id,
                    tunnel_endpoint,
                    public_key,
                    vm_prefix,
                };
                serde_json::to_vec(&host)
                    .map_err(Into::into)
                    .and_then(|b| show(&api, "POST", "/host", &b, json, applied))
            }
            HostVerb::Rm { name } => {
                show(&api, "DELETE", &format!("/host/{name}"), b"", json, applied)
            }
        },
        Command::HostConfig {
            host,
            inventory,
            key_file,
            openflow_listen,
        } => {
            let listen = (openflow_listen != "none").then_some(openflow_listen.as_str());
            host_config(&host, &inventory, &key_file, listen)
        }
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
        Command::Completions { shell } => {
            offline::completions(shell, Cli::command());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => offline::man(Cli::command()),
        Command::Routing { inventory } => {
            Inventory::load(&inventory).map_err(Into::into).map(|inv| {
                println!("(* Generated by scc from the inventory: routed overlay with direct tunnels. *)");
                let mut routing = controller::routing::routing_program(&inv);
                if inv.overlay_ipv6.is_some() {
                    let ipv6 = controller::routing6::ipv6_routing_program(&inv, None);
                    routing = controller::netkat::syntax::Policy::union_all(vec![routing, ipv6]);
                }
                println!("{routing}");
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

/// Prints the metrics text the API serves; exits with 1 if it serves none.
fn metrics(api: &ApiArgs) -> Result<ExitCode> {
    let answer = api.answer("GET", "/metrics", b"")?;
    if !answer.is_success() {
        let error = serde_json::from_slice::<serde_json::Value>(&answer.body).ok();
        let error = error.as_ref().and_then(|e| e["error"].as_str());
        refused(error.unwrap_or(&answer.text()));
        return Ok(ExitCode::from(1));
    }
    print!("{}", answer.text());
    Ok(ExitCode::SUCCESS)
}

/// Calls the API and prints its JSON answer; a refused change exits with 1.
fn call(api: &ApiArgs, method: &str, target: &str, body: &[u8]) -> Result<ExitCode> {
    show(api, method, target, body, true, |_| String::new())
}

/// Calls the API: its JSON answer, or `None` when it refused (said on stderr).
fn answer(
    api: &ApiArgs,
    method: &str,
    target: &str,
    body: &[u8],
) -> Result<Option<serde_json::Value>> {
    let (status, json) = api.json(method, target, body)?;
    if status == 200 {
        return Ok(Some(json));
    }
    let text = json["error"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| json.to_string());
    refused(&text);
    Ok(None)
}

/// Says on stderr what the controller refused, in the one error style.
fn refused(text: &str) {
    // A policy's diagnostic is rendered as rustc does, with its own `error:`.
    if text.starts_with("error") || text.starts_with("warning") {
        eprintln!("{}", text.trim_end());
    } else {
        eprintln!("error: {}", text.trim_end());
    }
}

/// Calls the API and prints its answer as JSON (`json`) or as `human` writes it;
/// a refused change exits with 1.
fn show(
    api: &ApiArgs,
    method: &str,
    target: &str,
    body: &[u8],
    json: bool,
    human: impl FnOnce(&serde_json::Value) -> String,
) -> Result<ExitCode> {
    let Some(value) = answer(api, method, target, body)? else {
        return Ok(ExitCode::from(1));
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", human(&value));
    }
    Ok(ExitCode::SUCCESS)
}

/// A change's answer for people: the version it was applied as.
fn applied(v: &serde_json::Value) -> String {
    format!("applied as version {}\n", v["version"])
}

/// `scc migrate VM --to HOST --port N`: starts the migration, then (unless
/// `no_wait`) waits until the destination switch confirmed its flows. With
/// `managed` (`Some(tap name or default)`) the controller adds a missing
/// destination port and removes the source port after the clean-up.
fn migrate(
    api: &ApiArgs,
    vm: &str,
    to: &str,
    port: u32,
    managed: Option<(Option<String>, bool)>,
    no_wait: bool,
    json: bool,
) -> Result<ExitCode> {
    let mut body = serde_json::json!({
        "vm": vm,
        "to_host": to,
        "to_port": port,
        "manage_ports": managed.is_some(),
    });
    if let Some((tap, remove_source)) = managed {
        if let Some(tap) = tap {
            body["tap"] = tap.into();
        }
        body["remove_source_port"] = remove_source.into();
    }
    let Some(started) = answer(api, "POST", "/migrate", body.to_string().as_bytes())? else {
        return Ok(ExitCode::from(1));
    };
    if no_wait {
        if json {
            println!("{}", serde_json::to_string_pretty(&started)?);
        } else {
            println!(
                "migration of {vm} to {to} port {port} started (version {}); not waiting for \
                 the destination",
                started["version"]
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let timeline = wait_destination_ready(api, vm, to)?;
    if json {
        let both = serde_json::json!({ "version": started["version"], "timeline": timeline });
        println!("{}", serde_json::to_string_pretty(&both)?);
    } else {
        print!("{}", human::timeline(&timeline));
        println!(
            "destination ready: {to} confirmed the flows for port {port} (version {}); move \
             the VM now",
            started["version"]
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn vm(api: &ApiArgs, verb: VmVerb, json: bool) -> Result<ExitCode> {
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
            ipv6,
            public_ipv6,
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
                ipv6,
                public_ipv6,
            };
            show(api, "POST", "/vm", &serde_json::to_vec(&vm)?, json, applied)
        }
        VmVerb::Rm { name } => show(api, "DELETE", &format!("/vm/{name}"), b"", json, applied),
        VmVerb::Show { name } => show(api, "GET", &format!("/vm/{name}"), b"", json, human::vm),
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
/// confirmed the prepare step (make before break: the VM may move now); that
/// timeline.
fn wait_destination_ready(api: &ApiArgs, vm: &str, to: &str) -> Result<serde_json::Value> {
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
            return Ok(timeline.clone());
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
    let Some(body) = answer(api, method, target, b"")? else {
        return Ok(ExitCode::from(1));
    };
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
        refused(answer["error"].as_str().unwrap_or("refused"));
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

/// `scc inventory export`: the live inventory, printed or written to `output`
/// (through a temporary file beside it, so a reader never sees half of it).
fn export_inventory(api: &ApiArgs, output: Option<&Path>) -> Result<ExitCode> {
    let Some(answer) = answer(api, "GET", "/inventory/export", b"")? else {
        return Ok(ExitCode::from(1));
    };
    let text = answer["text"].as_str().unwrap_or_default();
    match output {
        None => print!("{text}"),
        Some(path) => {
            let tmp = path.with_extension("toml.tmp");
            std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "{}: inventory at version {}",
                path.display(),
                answer["version"]
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn host_config(
    host: &str,
    inventory: &Path,
    key_file: &str,
    listen: Option<&str>,
) -> Result<ExitCode> {
    let inv = Inventory::load(inventory)?;
    match inv.host_config_listening(host, key_file, listen) {
        Some(c) => {
            print!("{c}");
            Ok(ExitCode::SUCCESS)
        }
        None => anyhow::bail!("{}: no host `{host}`", inventory.display()),
    }
}
