//! The benchmark runner: side-by-side measurements against peers in the same run,
//! printed as Markdown tables with ratios (`scripts/bench.sh` builds and runs it).
//! Each benchmark lives in its own module; this file only parses the command line
//! and dispatches.

mod chart;
mod common;
mod connrate;
mod control_load;
mod cost;
mod failover;
mod flowmod;
mod flowmod_tls;
mod latency;
mod memory;
mod ovs;
mod probes;
mod reroute;
mod sockperf;
mod stages;
mod storage_migration;
mod store_etcd;
mod store_save;
mod switching;
mod targets;
mod tunnel;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "bench", about = "Supercloud benchmarks against their peers")]
struct Cli {
    #[command(subcommand)]
    what: What,
    /// Seconds per throughput measurement.
    #[arg(long, default_value_t = 5, global = true)]
    seconds: u32,
    /// Where to write the SVG chart of the tunnel and switching rows measured in
    /// this run (`bench all` writes bench/chart.svg unless told otherwise).
    #[arg(long, global = true)]
    chart: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum What {
    /// Tunnel throughput and latency: scd vs wireguard-go vs boringtun-cli vs veth.
    Tunnel {
        /// Forwarding workers scd is measured with, one row each.
        #[arg(long, value_delimiter = ',', default_values_t = [1])]
        workers: Vec<usize>,
    },
    /// Flow-mod rate: 10,000 adds and a barrier, scd vs Open vSwitch (netdev).
    Flowmod,
    /// Flow-mod rate over TLS against plain TCP: 10,000 adds and a barrier to one
    /// scd through its pssl: and ptcp: listeners, alternating, same run.
    FlowmodTls {
        /// Runs of each transport (the median is reported).
        #[arg(long, default_value_t = 5)]
        reps: usize,
    },
    /// One-host switching between two VMs' TAPs: scd vs Open vSwitch vs Linux bridge.
    Switching,
    /// Instructions per packet of every scd path, counted by callgrind.
    Cost,
    /// Issue 19's data-path table: round trips at idle (ping and sockperf), one
    /// TCP stream for --seconds with CPU per Gbit/s, and 64-byte packet rate with
    /// CPU per packet, local switching and tunnel, scd (with and without
    /// busy-polling) against its peers (Linux bridge, Open vSwitch with and
    /// without TSO; veth, wireguard-go, boringtun-cli), over several runs; then
    /// the targets judged run by run, and where scd's time went.
    Latency {
        /// An earlier build's scd, measured the same way in the same run (at
        /// each of --windows, one worker).
        #[arg(long)]
        before: Option<PathBuf>,
        /// Runs of every path (reported as min / median / max).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Busy-poll windows (µs) this build's scd is measured with, one row each.
        #[arg(long, value_delimiter = ',', default_values_t = [0, 50])]
        windows: Vec<u32>,
        /// Forwarding workers this build's scd is measured with: one row per
        /// window and count of workers.
        #[arg(long, value_delimiter = ',', default_values_t = [1])]
        workers: Vec<usize>,
        /// The forwarding thread's nice value in this build's rows
        /// (`[scheduling] forwarding_nice`; below 0 needs root, which the
        /// benchmarks have).
        #[arg(long, allow_hyphen_values = true)]
        forwarding_nice: Option<i32>,
        /// Parts of each row's measurement to leave out (the slow ones are tcp
        /// and sockperf).
        #[arg(long, value_delimiter = ',', value_enum)]
        skip: Vec<probes::Part>,
    },
    /// Resident memory per flow and per tunnel peer, scd vs Open vSwitch.
    Memory,
    /// Reroute time of a migration against VM and switch count (scc + fake switches).
    Reroute {
        /// Grid points as SWITCHES:VMS (default: 10, 30 and 100 switches × 1, 100
        /// and 1000 VMs).
        #[arg(long, value_delimiter = ',')]
        grid: Vec<String>,
        /// Migrations per grid point (the median is reported).
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// Measure every grid point over plain TCP and over mutual TLS.
        #[arg(long)]
        tls: bool,
        /// No VM prefixes: every switch holds a route per VM (as before issue 25's
        /// prefixes), for comparison.
        #[arg(long)]
        no_prefixes: bool,
        /// Poll `scc status` with its VM list while waiting (as before the
        /// `distrib` branch), to show what such a poller costs the reroute.
        #[arg(long)]
        poll_vms: bool,
    },
    /// Forwarding under control load: UDP round trips between two VMs while scd
    /// takes 100,000 flow-mods, is scraped and is dumped.
    ControlLoad {
        /// An earlier build's scd, measured first in the same run.
        #[arg(long)]
        before: Option<PathBuf>,
        /// Runs of every setting (reported one by one and as min/median/max).
        #[arg(long, default_value_t = 1)]
        runs: usize,
        /// Nice value of the VMs' threads (prober and echo server); below 0
        /// stands for guests with cores of their own on a loaded machine.
        #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
        vm_nice: i32,
        /// The VMs' threads as SCHED_FIFO (guests that never wait for a core).
        #[arg(long)]
        vm_fifo: bool,
    },
    /// New TCP connections per second through scd against Open vSwitch (same
    /// flows, same run): client/server namespace pairs on one switch.
    Connrate {
        /// Client/server pairs.
        #[arg(long, default_value_t = 8)]
        pairs: usize,
        /// Seconds of connecting per switch and run.
        #[arg(long, default_value_t = 5)]
        seconds: u32,
        /// Runs, alternating the switches.
        #[arg(long, default_value_t = 3)]
        reps: usize,
    },
    /// Replicated controllers: failover time for N switches (3 scc on a 3-member
    /// etcd cluster, fake switches) and the etcd store against the embedded one.
    Failover {
        /// Switch counts (default 10 and 100).
        #[arg(long, value_delimiter = ',', default_values_t = [10, 100])]
        switches: Vec<usize>,
        /// Failovers per switch count (the median is reported).
        #[arg(long, default_value_t = 3)]
        reps: usize,
    },
    /// A TCG guest moved with its disk (256 MiB, 1 GiB, 4 GiB sparse) against a
    /// memory-only move, same run: disk copy, QEMU total time and downtime, the
    /// dirty rates, median [min-max] over the repeats.
    StorageMigration {
        /// Runs of every case.
        #[arg(long, default_value_t = 3)]
        repeats: usize,
    },
    /// One save of scc's embedded store at HOSTS:VMS: the whole state against
    /// the journal record of a VM added, a VM moved and a policy; a load and a
    /// compaction (in process, no network).
    Store {
        /// HOSTS:VMS of the inventory.
        #[arg(long, default_value = "1000:100000")]
        grid: String,
        /// Saves of each record kind (the median is reported).
        #[arg(long, default_value_t = 20)]
        reps: usize,
        /// The etcd store instead (three members on loopback, in a namespace of
        /// its own): first import, a VM added, a VM moved, a read-back.
        #[arg(long)]
        etcd: bool,
    },
    /// Every benchmark, and the chart.
    All,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("benchmarks build network namespaces: run as root");
    }
    // The scd and scc of this build sit next to this binary (the harness's own
    // lookup expects a test executable one directory further down). Every
    // benchmark needs scd; only `reroute` and `failover` need scc, and says so if it is missing.
    for (name, env, package) in [
        ("scd", "SCD_BIN", "dataplane"),
        ("scc", "SCC_BIN", "controller"),
    ] {
        if std::env::var_os(env).is_some() {
            continue;
        }
        let bin = std::env::current_exe()?.with_file_name(name);
        if bin.exists() {
            std::env::set_var(env, bin);
        } else if name == "scd" {
            bail!(
                "{} not found: build it with `cargo build --release -p {package}`",
                bin.display()
            );
        }
    }
    let mut charted = Vec::new();
    match cli.what {
        What::Tunnel { ref workers } => {
            charted.push(("Tunnel, two hosts", tunnel::tunnel(cli.seconds, workers)?))
        }
        What::Flowmod => flowmod::flowmod()?,
        What::FlowmodTls { reps } => flowmod_tls::flowmod_tls(reps)?,
        What::Switching => {
            charted.push(("Switching, one host", switching::switching(cli.seconds)?))
        }
        What::Cost => cost::cost()?,
        What::Latency {
            ref before,
            runs,
            ref windows,
            ref workers,
            forwarding_nice,
            ref skip,
        } => latency::latency_bench(latency::Options {
            before: before.clone(),
            runs,
            windows,
            workers,
            forwarding_nice,
            plan: probes::Plan {
                tcp_seconds: cli.seconds,
                skip: skip.clone(),
                sockperf_installed: common::installed("sockperf"),
            },
        })?,
        What::Connrate {
            pairs,
            seconds,
            reps,
        } => connrate::connrate(pairs, seconds, reps)?,
        What::Memory => memory::memory()?,
        What::ControlLoad {
            ref before,
            runs,
            vm_nice,
            vm_fifo,
        } => control_load::control_load(
            before.clone(),
            runs,
            control_load::VmScheduling {
                nice: vm_nice,
                fifo: vm_fifo,
            },
        )?,
        What::Reroute {
            ref grid,
            reps,
            tls,
            no_prefixes,
            poll_vms,
        } => {
            reroute::POLL_VMS.store(poll_vms, std::sync::atomic::Ordering::Relaxed);
            reroute::reroute(&reroute::parse_grid(grid)?, reps, tls, !no_prefixes)?
        }
        What::Failover { ref switches, reps } => failover::failover(switches, reps)?,
        What::StorageMigration { repeats } => storage_migration::storage_migration(repeats)?,
        What::Store {
            ref grid,
            reps,
            etcd,
        } => {
            for (hosts, vms) in reroute::parse_grid(std::slice::from_ref(grid))? {
                if etcd {
                    store_etcd::store_etcd(hosts, vms, reps)?;
                } else {
                    store_save::store(hosts, vms, reps)?;
                }
            }
        }
        What::All => {
            charted.push(("Tunnel, two hosts", tunnel::tunnel(cli.seconds, &[1])?));
            charted.push(("Switching, one host", switching::switching(cli.seconds)?));
            flowmod::flowmod()?;
            flowmod_tls::flowmod_tls(5)?;
            cost::cost()?;
            memory::memory()?;
            control_load::control_load(
                None,
                1,
                control_load::VmScheduling {
                    nice: 0,
                    fifo: false,
                },
            )?;
            reroute::reroute(&reroute::parse_grid(&[])?, 3, true, true)?;
            failover::failover(&[10, 100], 3)?;
        }
    }
    let chart = match (cli.chart, &cli.what) {
        (Some(path), _) => Some(path),
        (None, What::All) => Some(PathBuf::from("bench/chart.svg")),
        (None, _) => None,
    };
    if let Some(path) = chart {
        chart::write(&path, &charted)?;
        println!("\nChart: {}", path.display());
    }
    Ok(())
}
