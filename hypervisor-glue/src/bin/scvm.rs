//! `scvm`: the operator's CLI over the hypervisor glue.
//!
//! Owns argument parsing and printing only; every action is a library call.
//! It must never signal a process other than the PID it is given or starts,
//! and never touch the network.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use hypervisor_glue::commands::{
    CapabilityState, MigrateSetCapabilities, QueryMigrate, QueryStatus, Quit, Raw,
};
use hypervisor_glue::migration::{self, MigrationOptions};
use hypervisor_glue::notify;
use hypervisor_glue::qemu::signal_pid;
use hypervisor_glue::storage::{self, NbdTarget, Progress, StorageError};
use hypervisor_glue::tls::Endpoint;

#[path = "scvm/progress.rs"]
mod progress;
use hypervisor_glue::{Incoming, MigrationParameters, QemuConfig, QmpClient, TapNic};

#[derive(Debug, Parser)]
#[command(
    name = "scvm",
    version,
    about = "Start, watch and live-migrate QEMU VMs over QMP"
)]
struct Cli {
    /// Per-command QMP timeout, in seconds.
    #[arg(long, global = true, default_value_t = 10)]
    qmp_timeout: u64,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Start a TCG guest in the background and print its PID.
    Start(Box<StartArgs>),
    /// Live-migrate the VM behind a QMP socket to a listening destination, with
    /// its disk when --disk-to names the destination's NBD export. Ctrl-C
    /// aborts: the VM keeps running here.
    Migrate(Box<MigrateArgs>),
    /// On a destination started with `--incoming defer`: listen on URI.
    Incoming {
        /// The destination QEMU's QMP socket.
        qmp: PathBuf,
        /// e.g. tcp:0.0.0.0:4444.
        uri: String,
        /// Also export the VM's (empty) disk over NBD on HOST:PORT, for the
        /// source's mirror (`scvm migrate --disk-to`).
        #[arg(long, value_name = "HOST:PORT")]
        export_disk: Option<String>,
        /// The NBD export and the migration stream over TLS (the QEMU was started
        /// with --tls-server).
        #[arg(long)]
        tls: bool,
        /// Accept post-copy (`scvm migrate --postcopy`).
        #[arg(long)]
        postcopy: bool,
    },
    /// On a destination: stop exporting the disk (after the move, or to clean
    /// up after an aborted one).
    Unexport {
        /// The destination QEMU's QMP socket.
        qmp: PathBuf,
    },
    /// Show run state and migration state.
    Status {
        /// QMP socket.
        qmp: PathBuf,
    },
    /// Print events as JSON lines (this holds the QMP socket: QEMU serves one
    /// client at a time, so other scvm commands on it wait until this ends).
    Events {
        /// QMP socket.
        qmp: PathBuf,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<usize>,
        /// Stop after this many seconds.
        #[arg(long)]
        duration: Option<u64>,
    },
    /// Run any QMP command; prints its return value as JSON.
    Qmp {
        /// QMP socket.
        qmp: PathBuf,
        /// Command name, e.g. query-version.
        command: String,
        /// Arguments as a JSON object.
        args: Option<String>,
    },
    /// Stop a VM: `quit` over QMP, or SIGTERM (then SIGKILL) to a PID.
    Stop {
        /// QMP socket to send `quit` to.
        #[arg(long, conflicts_with = "pid", required_unless_present = "pid")]
        qmp: Option<PathBuf>,
        /// PID to signal.
        #[arg(long)]
        pid: Option<u32>,
        /// Seconds to wait after SIGTERM before SIGKILL.
        #[arg(long, default_value_t = 5)]
        grace: u64,
    },
}

#[derive(Debug, clap::Args)]
struct MigrateArgs {
    /// The source QEMU's QMP socket.
    #[arg(long)]
    from: PathBuf,
    /// Destination, e.g. tcp:100.64.0.2:4444.
    #[arg(long)]
    to_uri: String,
    /// Move the disk too, into the destination's NBD export at HOST:PORT
    /// (`scvm incoming --export-disk`).
    #[arg(long, value_name = "HOST:PORT")]
    disk_to: Option<String>,
    /// Both streams over TLS (the QEMU was started with --tls-client); the
    /// destination's certificate must name NAME.
    #[arg(long, value_name = "NAME")]
    tls_hostname: Option<String>,
    /// Maximum tolerated downtime, in ms.
    #[arg(long)]
    downtime_ms: Option<u64>,
    /// Bandwidth cap of memory and disk copy, in bytes per second.
    #[arg(long)]
    max_bandwidth: Option<u64>,
    /// Throttle the guest's vCPUs when it dirties memory faster than the link
    /// copies it (QEMU's auto-converge).
    #[arg(long)]
    auto_converge: bool,
    /// Switch to post-copy after the first pass of RAM (the destination needs
    /// `scvm incoming --postcopy`).
    #[arg(long)]
    postcopy: bool,
    /// Give up and cancel after this many seconds.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// Print the report as JSON (and no progress bar).
    #[arg(long)]
    json: bool,
    /// Tell the controller how the copy goes (`POST /migrate/progress`, shown by
    /// `scc status`) and when the migration completes (`POST /migrate/arrived`,
    /// besides the RARP announce), on scc's API at API (`unix:/run/scc/api.sock`,
    /// or `http://ADDR:PORT` with --scc-token-file).
    #[arg(long, value_name = "API")]
    scc_api: Option<bounded_http::Endpoint>,
    /// File holding the bearer token of scc's API on TCP.
    #[arg(long, value_name = "FILE")]
    scc_token_file: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct StartArgs {
    /// VM name.
    #[arg(long)]
    name: String,
    /// Kernel image.
    #[arg(long, default_value = "target/guest/vmlinuz")]
    kernel: PathBuf,
    /// Initramfs.
    #[arg(long, default_value = "target/guest/initramfs.cpio.gz")]
    initrd: PathBuf,
    /// Kernel command line, e.g. "sc.ip=100.64.1.10/16 sc.gw=100.64.0.1".
    #[arg(long, default_value = "")]
    append: String,
    /// Guest RAM in MiB.
    #[arg(long, default_value_t = 128)]
    memory: u32,
    /// Existing TAP to attach a virtio-net NIC to.
    #[arg(long, requires = "mac")]
    tap: Option<String>,
    /// Guest MAC.
    #[arg(long)]
    mac: Option<String>,
    /// QMP socket path to create.
    #[arg(long)]
    qmp: PathBuf,
    /// Serial console log.
    #[arg(long)]
    serial: PathBuf,
    /// QEMU's stdout/stderr log.
    #[arg(long)]
    log: Option<PathBuf>,
    /// Destination mode: tcp:HOST:PORT or defer.
    #[arg(long)]
    incoming: Option<String>,
    /// Network namespace to run in.
    #[arg(long)]
    netns: Option<String>,
    /// The guest's disk, a qcow2 image (virtio-blk).
    #[arg(long)]
    disk: Option<PathBuf>,
    /// TLS credentials directory for the source end of a migration
    /// (ca-cert.pem, client-cert.pem, client-key.pem).
    #[arg(long, value_name = "DIR", conflicts_with = "tls_server")]
    tls_client: Option<PathBuf>,
    /// TLS credentials directory for the destination end (ca-cert.pem,
    /// server-cert.pem, server-key.pem); it demands the source's certificate.
    #[arg(long, value_name = "DIR")]
    tls_server: Option<PathBuf>,
    /// Emulator binary.
    #[arg(long, default_value = "qemu-system-x86_64")]
    qemu: PathBuf,
}

fn split_host_port(s: &str) -> Result<(String, u16)> {
    let (host, port) = s
        .rsplit_once(':')
        .with_context(|| format!("{s:?} is not HOST:PORT"))?;
    Ok((
        host.to_owned(),
        port.parse().with_context(|| format!("port of {s:?}"))?,
    ))
}

fn parse_incoming(s: &str) -> Result<Incoming> {
    if s == "defer" {
        return Ok(Incoming::Defer);
    }
    match s.strip_prefix("tcp:") {
        Some(addr) if addr.contains(':') => Ok(Incoming::Tcp(addr.to_owned())),
        _ => bail!("--incoming must be tcp:HOST:PORT or defer, got {s:?}"),
    }
}

async fn connect(path: &PathBuf, timeout: Duration) -> Result<QmpClient> {
    QmpClient::connect(path, timeout)
        .await
        .with_context(|| format!("connecting to QMP at {}", path.display()))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    config_support::logging::init_stderr_logging("RUST_LOG", "warn");
    let cli = Cli::parse();
    let t = Duration::from_secs(cli.qmp_timeout);
    match cli.cmd {
        Cmd::Start(a) => start(*a, t).await,
        Cmd::Migrate(a) => migrate_cmd(*a, t).await,
        Cmd::Incoming {
            qmp,
            uri,
            export_disk,
            tls,
            postcopy,
        } => {
            let client = connect(&qmp, t).await?;
            if tls {
                client
                    .execute(&hypervisor_glue::tls::with_tls(
                        MigrationParameters::default(),
                        None,
                    ))
                    .await
                    .context("migration over TLS")?;
            }
            if postcopy {
                client
                    .execute(&MigrateSetCapabilities {
                        capabilities: vec![CapabilityState {
                            capability: "postcopy-ram".into(),
                            state: true,
                        }],
                    })
                    .await
                    .context("post-copy")?;
            }
            if let Some(export) = export_disk {
                let (host, port) = split_host_port(&export)?;
                storage::export_disk(&client, &host, port, tls)
                    .await
                    .with_context(|| format!("exporting the disk on {export}"))?;
                println!("exporting the disk over NBD on {export}");
            }
            migration::start_incoming(&client, &uri)
                .await
                .with_context(|| format!("migrate-incoming {uri}"))?;
            println!("listening for the incoming migration on {uri}");
            Ok(())
        }
        Cmd::Unexport { qmp } => {
            let client = connect(&qmp, t).await?;
            storage::unexport_disk(&client).await?;
            println!("disk export removed");
            Ok(())
        }
        Cmd::Status { qmp } => {
            let client = connect(&qmp, t).await?;
            let st = client.execute(&QueryStatus).await?;
            let mig = client.execute(&QueryMigrate).await?;
            let g = &client.greeting().version;
            println!("qemu {}.{}.{}", g.major, g.minor, g.micro);
            println!("running {} ({:?})", st.running, st.status);
            match mig.status {
                None => println!("migration none"),
                Some(s) => {
                    let ms = |v: Option<i64>| v.map_or("-".into(), |v| format!("{v} ms"));
                    println!(
                        "migration {s} total={} downtime={} transferred={}",
                        ms(mig.total_time),
                        ms(mig.downtime),
                        mig.ram
                            .as_ref()
                            .map_or("-".into(), |r| format!("{} B", r.transferred))
                    );
                    if let Some(e) = mig.error_desc {
                        println!("migration error: {e}");
                    }
                }
            }
            Ok(())
        }
        Cmd::Events {
            qmp,
            count,
            duration,
        } => {
            let client = connect(&qmp, t).await?;
            let mut rx = client.subscribe();
            let end = duration.map(|d| Instant::now() + Duration::from_secs(d));
            let mut seen = 0usize;
            while count.is_none_or(|c| seen < c) {
                let left = end.map(|e| e.saturating_duration_since(Instant::now()));
                let next = match left {
                    Some(l) => match tokio::time::timeout(l, rx.recv()).await {
                        Ok(r) => r,
                        Err(_) => break,
                    },
                    None => rx.recv().await,
                };
                match next {
                    Ok(ev) => {
                        println!("{}", serde_json::to_string(&ev)?);
                        seen += 1;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        eprintln!("scvm: missed {n} events");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        bail!("QMP connection closed")
                    }
                }
                if client.is_closed() {
                    bail!("QMP connection closed");
                }
            }
            Ok(())
        }
        Cmd::Qmp { qmp, command, args } => {
            let client = connect(&qmp, t).await?;
            let raw = match args {
                Some(a) => Raw::with_args(
                    &command,
                    serde_json::from_str(&a).context("arguments must be a JSON object")?,
                ),
                None => Raw::new(&command),
            };
            let v = client.execute(&raw).await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(())
        }
        Cmd::Stop { qmp, pid, grace } => {
            if let Some(qmp) = qmp {
                let client = connect(&qmp, t).await?;
                match client.execute(&Quit).await {
                    // QEMU may close the socket before or right after the reply.
                    Ok(_) | Err(hypervisor_glue::QmpError::Disconnected(_)) => {}
                    Err(e) => return Err(e).context("quit"),
                }
                println!("quit sent");
                return Ok(());
            }
            let pid = pid.context("--pid or --qmp is required")?;
            stop_pid(pid, Duration::from_secs(grace)).await
        }
    }
}

async fn migrate_cmd(a: MigrateArgs, t: Duration) -> Result<()> {
    let client = connect(&a.from, t).await?;
    let mut parameters = MigrationParameters {
        downtime_limit: a.downtime_ms,
        max_bandwidth: a.max_bandwidth,
        ..Default::default()
    };
    if let Some(name) = &a.tls_hostname {
        parameters = hypervisor_glue::tls::with_tls(parameters, Some(name));
    }
    let mut opts = MigrationOptions {
        parameters,
        timeout: Duration::from_secs(a.timeout),
        postcopy: a.postcopy,
        ..Default::default()
    };
    if a.auto_converge {
        opts = opts.with_auto_converge(None);
    }
    let abort = opts.abort.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("scvm: aborting; the VM stays here");
            abort.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let token = match &a.scc_token_file {
        Some(file) => Some(
            std::fs::read_to_string(file)
                .with_context(|| format!("{}", file.display()))?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let bar = progress::Bar::new(a.json);
    let (progress_tx, progress_rx) = tokio::sync::watch::channel(None);
    // The name QEMU was started with (`scvm start --name`) is the inventory's:
    // scc refuses a report about another VM than the one it migrates.
    let vm = match &a.scc_api {
        Some(_) => client
            .execute_raw("query-name", None)
            .await
            .ok()
            .and_then(|answer| Some(answer.get("name")?.as_str()?.to_string())),
        None => None,
    };
    let reporter = a
        .scc_api
        .clone()
        .map(|api| tokio::spawn(notify::report_progress(api, token.clone(), vm, progress_rx)));
    let started = Instant::now();
    let report = match &a.disk_to {
        None => migration::migrate_observed(&client, &a.to_uri, &opts, &mut |info| {
            bar.memory(info);
            progress_tx.send_replace(Some(Progress::of_memory(info, started.elapsed())));
        })
        .await
        .map_err(StorageError::from),
        Some(disk) => {
            let (host, port) = split_host_port(disk)?;
            let target = NbdTarget {
                host,
                port,
                tls_hostname: a.tls_hostname.clone(),
            };
            storage::migrate_with_disk(&client, &a.to_uri, &target, &opts, &mut |p| {
                bar.storage(p);
                progress_tx.send_replace(Some(p.clone()));
            })
            .await
            .map(|r| {
                eprintln!(
                    "disk: {} B copied in {:?}, whole move {:?}",
                    r.disk_bytes, r.disk_copy_time, r.total_time
                );
                r.migration
            })
        }
    };
    bar.finish();
    // The move is over: its arrival (or failure) is the news now, and it must not
    // wait behind a progress notice in flight or the reporter's pause.
    drop(progress_tx);
    if let Some(reporter) = reporter {
        reporter.abort();
    }
    match report {
        Ok(report) => {
            if a.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{}", report.summary());
            }
            if let Some(api) = a.scc_api {
                let answer = notify::migrate_arrived(&api, token.as_deref(), t)
                    .await
                    .context("the migration completed, but telling scc failed")?;
                eprintln!("scc told of the arrival: {answer}");
            }
            Ok(())
        }
        Err(e) => {
            if let (true, StorageError::Memory(m)) = (a.json, &e) {
                if let Some(r) = m.report() {
                    println!("{}", serde_json::to_string_pretty(r)?);
                }
            }
            if a.disk_to.is_some() {
                eprintln!(
                    "scvm: the VM runs here on its own disk; remove the destination's export with `scvm unexport` and stop that QEMU"
                );
            }
            Err(e).context("migration did not complete")
        }
    }
}

async fn stop_pid(pid: u32, grace: Duration) -> Result<()> {
    use rustix::process::Signal;
    signal_pid(pid, Signal::TERM).with_context(|| format!("SIGTERM to {pid}"))?;
    let end = Instant::now() + grace;
    let alive = || std::path::Path::new(&format!("/proc/{pid}")).exists();
    while alive() && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if alive() {
        signal_pid(pid, Signal::KILL).with_context(|| format!("SIGKILL to {pid}"))?;
        println!("killed {pid}");
    } else {
        println!("stopped {pid}");
    }
    Ok(())
}

async fn start(a: StartArgs, t: Duration) -> Result<()> {
    let mut cfg = QemuConfig::new(&a.name, a.kernel, a.initrd, a.qmp.clone(), a.serial);
    cfg.binary = a.qemu;
    cfg.append = a.append;
    cfg.memory_mib = a.memory;
    cfg.stderr_log = a.log;
    cfg.netns = a.netns;
    cfg.incoming = a.incoming.as_deref().map(parse_incoming).transpose()?;
    if let (Some(ifname), Some(mac)) = (a.tap, a.mac) {
        cfg.nic = Some(TapNic { ifname, mac });
    }
    cfg.disk = a.disk;
    if let Some(dir) = &a.tls_client {
        cfg.extra_args
            .extend(hypervisor_glue::tls::object_args(dir, Endpoint::Client));
    }
    if let Some(dir) = &a.tls_server {
        cfg.extra_args
            .extend(hypervisor_glue::tls::object_args(dir, Endpoint::Server));
    }
    for f in [&cfg.kernel, &cfg.initrd] {
        if !f.exists() {
            bail!(
                "{} does not exist (build the guest with scripts/build-guest.sh)",
                f.display()
            );
        }
    }
    let _ = std::fs::remove_file(&cfg.qmp_socket);
    let mut child = cfg
        .std_command()?
        .spawn()
        .with_context(|| format!("starting {}", cfg.binary.display()))?;
    let pid = child.id();
    // Confirm QMP comes up, so a bad command line fails here and not later.
    let end = Instant::now() + t;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("QEMU (pid {pid}) exited at once with {status}; see its log");
        }
        if QmpClient::connect(&a.qmp, t).await.is_ok() {
            break;
        }
        if Instant::now() >= end {
            bail!(
                "QEMU (pid {pid}) started but QMP at {} did not answer",
                a.qmp.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("pid={pid} qmp={}", a.qmp.display());
    Ok(())
}
