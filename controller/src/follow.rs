//! The daemon's follow-the-sun loop: the measurement series the switch sessions
//! feed, the plan over them, and the move command that applies a decision.
//!
//! It owns the controller's [`Measurements`] (traffic per VM and client region from
//! `feed::TrafficSampler`, latency between clouds from the tunnels' handshakes),
//! when each VM last moved, the choice of which decision to apply and on which host,
//! and running the inventory's `[placement] migrate` command for it, one at a time.
//! It never changes the network program itself: the command goes through the
//! migration procedure (`scc migrate`, the VM's arrival), like an operator would.

use crate::measure::Measurements;
use crate::model::{EngineConfig, Inventory, PlacementSettings};
use crate::placement::{self, Decision, Snapshot, Why};
use openflow::wire::TunnelStatsEntry;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds on the measurements' clock (Unix time).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One move the loop started, for `scc status` and `scc placement status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MoveRecord {
    /// The VM.
    pub vm: String,
    /// Where it ran.
    pub from_host: String,
    /// Where the command was asked to move it.
    pub to_host: String,
    /// That host's cloud.
    pub to_cloud: String,
    /// The decision behind it.
    pub decision: Decision,
    /// When the command started, ms.
    pub started_ms: u64,
    /// When it ended, ms.
    pub ended_ms: Option<u64>,
    /// How it ended: `moved`, or why not.
    pub outcome: Option<String>,
}

/// What one round of `scc placement run` did.
#[derive(Debug, Clone, Serialize)]
pub struct Round {
    /// The clock of the plan, ms.
    pub now_ms: u64,
    /// Every VM's decision.
    pub decisions: Vec<Decision>,
    /// The move started, if any.
    pub started: Option<MoveRecord>,
    /// Why no move was started, when none was.
    pub note: Option<String>,
}

/// A measurement handed over by a switch session.
#[derive(Debug)]
enum Pending {
    Traffic {
        dpid: u64,
        t_ms: u64,
        rates: BTreeMap<String, f64>,
    },
    Tunnels {
        dpid: u64,
        t_ms: u64,
        tunnels: Vec<TunnelStatsEntry>,
    },
    Bandwidth {
        from: String,
        to: String,
        t_ms: u64,
        bytes_per_s: f64,
    },
}

/// The series and what they are computed from.
#[derive(Debug, Default)]
struct SeriesState {
    measurements: Measurements,
    /// Each switch's latest inbound rates: dpid → (t ms, VM → bytes/s).
    switch_rates: BTreeMap<u64, (u64, BTreeMap<String, f64>)>,
}

/// When VMs moved, and the move command's slot.
#[derive(Debug, Default)]
struct MovesState {
    last_moved_ms: BTreeMap<String, u64>,
    /// Each VM's arrivals by migration over the last [`MOVES_KEPT_MS`], for the
    /// engine's migration budgets.
    recent_moves_ms: BTreeMap<String, Vec<u64>>,
    moving: Option<MoveRecord>,
    history: VecDeque<MoveRecord>,
}

/// Moves kept in the history.
const HISTORY: usize = 32;

/// How far back the engine reads a traffic series: a season, the horizon and the
/// hour before (the day-ago forecast), or else 20 half-lives (the weighted mean).
/// A traffic sample stands for at least this span over the series' capacity, so a
/// series always reaches that far back however often the switches are sampled.
fn span_ms(engine: &EngineConfig) -> u64 {
    let seconds = if engine.seasonal_period_s > 0.0 {
        engine.seasonal_period_s + engine.horizon_s + 3600.0
    } else {
        20.0 * engine.traffic_half_life_s
    };
    // Knobs are seconds of a day or so: far inside u64 milliseconds.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let ms = (seconds.max(0.0) * 1000.0) as u64;
    ms
}

/// How long arrivals are kept for the budgets (which count the last 24 hours).
const MOVES_KEPT_MS: u64 = 48 * 3600 * 1000;

/// The loop's state, shared by the switch sessions, the API and the move command.
///
/// Three locks, never held together except `series` then `pending` (briefly): a
/// plan holds `series` for its whole time, so the sessions hand their samples over
/// through `pending` and never wait, and the migration path only touches `moves`.
#[derive(Debug, Default)]
pub struct Follower {
    pending: Mutex<Vec<Pending>>,
    series: Mutex<SeriesState>,
    moves: Mutex<MovesState>,
}

impl Follower {
    fn series(&self) -> std::sync::MutexGuard<'_, SeriesState> {
        self.series.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn moves_state(&self) -> std::sync::MutexGuard<'_, MovesState> {
        self.moves.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands a measurement over without waiting: a plan may hold the series for a
    /// while, and a switch session must never wait for it. The series take it now
    /// if they are free, else whoever holds them next.
    fn hand_over(&self, inv: &Inventory, sample: Pending) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(sample);
        if let Ok(mut st) = self.series.try_lock() {
            self.apply(&mut st, inv);
        }
    }

    /// Applies every measurement handed over, in order.
    fn apply(&self, st: &mut SeriesState, inv: &Inventory) {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        for sample in pending {
            match sample {
                Pending::Traffic { dpid, t_ms, rates } => st.traffic(inv, dpid, t_ms, rates),
                Pending::Tunnels {
                    dpid,
                    t_ms,
                    tunnels,
                } => st.tunnels(inv, dpid, t_ms, &tunnels),
                Pending::Bandwidth {
                    from,
                    to,
                    t_ms,
                    bytes_per_s,
                } => {
                    st.measurements
                        .record_bandwidth(&from, &to, t_ms, bytes_per_s);
                }
            }
        }
    }

    /// Switch `dpid` counted these inbound rates (VM → bytes/s) over the interval
    /// ending at `t_ms`.
    pub fn record_traffic(
        &self,
        inv: &Inventory,
        dpid: u64,
        t_ms: u64,
        rates: BTreeMap<String, f64>,
    ) {
        self.hand_over(inv, Pending::Traffic { dpid, t_ms, rates });
    }

    /// Switch `dpid`'s tunnels at `t_ms`.
    pub fn record_tunnels(
        &self,
        inv: &Inventory,
        dpid: u64,
        t_ms: u64,
        tunnels: Vec<TunnelStatsEntry>,
    ) {
        self.hand_over(
            inv,
            Pending::Tunnels {
                dpid,
                t_ms,
                tunnels,
            },
        );
    }

    /// A migration between two clouds moved `bytes_per_s` (bandwidth sample).
    pub fn record_bandwidth(
        &self,
        inv: &Inventory,
        from: &str,
        to: &str,
        t_ms: u64,
        bytes_per_s: f64,
    ) {
        let (from, to) = (from.to_string(), to.to_string());
        self.hand_over(
            inv,
            Pending::Bandwidth {
                from,
                to,
                t_ms,
                bytes_per_s,
            },
        );
    }

    /// A follower that remembers these arrivals by migration (from the store).
    pub fn with_moves(moves_ms: &BTreeMap<String, Vec<u64>>) -> Follower {
        let f = Follower::default();
        {
            let mut st = f.moves_state();
            for (vm, moves) in moves_ms {
                if let Some(&last) = moves.iter().max() {
                    st.last_moved_ms.insert(vm.clone(), last);
                }
                st.recent_moves_ms.insert(vm.clone(), moves.clone());
            }
        }
        f
    }

    /// Each VM's arrivals by migration of the last two days, for the store.
    pub fn recent_moves(&self) -> BTreeMap<String, Vec<u64>> {
        self.moves_state().recent_moves_ms.clone()
    }

    /// `vm` arrived somewhere by migration at `t_ms`.
    pub fn moved(&self, vm: &str, t_ms: u64) {
        let mut st = self.moves_state();
        st.last_moved_ms.insert(vm.to_string(), t_ms);
        let moves = st.recent_moves_ms.entry(vm.to_string()).or_default();
        moves.retain(|&t| t_ms.saturating_sub(t) < MOVES_KEPT_MS);
        moves.push(t_ms);
    }

    /// Everything measured, as the snapshot `scc placement plan --measurements`
    /// reads; with `vm`, only that VM's traffic.
    pub fn snapshot(&self, inv: &Inventory, now_ms: u64, vm: Option<&str>) -> Snapshot {
        let (last_moved_ms, recent_moves_ms) = {
            let m = self.moves_state();
            (m.last_moved_ms.clone(), m.recent_moves_ms.clone())
        };
        let measurements = {
            let mut st = self.series();
            self.apply(&mut st, inv);
            match vm {
                None => st.measurements.clone(),
                Some(vm) => {
                    let all = &st.measurements;
                    let mut m = Measurements::new(all.capacity);
                    m.latency_ms = all.latency_ms.clone();
                    m.bandwidth = all.bandwidth.clone();
                    if let Some(t) = all.traffic.get(vm) {
                        m.traffic.insert(vm.to_string(), t.clone());
                    }
                    m
                }
            }
        };
        Snapshot {
            now_ms: Some(now_ms),
            measurements,
            last_moved_ms,
            recent_moves_ms,
            config: inv.placement_settings.engine.clone(),
        }
    }

    /// The engine's decisions now, for every VM at once (the fleet's budget is
    /// shared among them). It holds the series for the plan's time (0.4 s at
    /// 1,000 VMs with the budgets): call it off the async workers.
    pub fn plan(&self, inv: &Inventory, now_ms: u64) -> Vec<Decision> {
        let mut vms = {
            let m = self.moves_state();
            let mut vms = placement::sites(inv, &m.last_moved_ms);
            for vm in &mut vms {
                vm.recent_moves_ms = m.recent_moves_ms.get(&vm.name).cloned().unwrap_or_default();
            }
            vms
        };
        vms.sort_by(|a, b| a.name.cmp(&b.name));
        let mut st = self.series();
        self.apply(&mut st, inv);
        placement::plan(
            &placement::candidate_clouds(inv),
            &vms,
            &st.measurements,
            &inv.placement_settings.engine,
            now_ms,
        )
    }

    /// The move running now and the last ones, newest first.
    pub fn moves(&self) -> serde_json::Value {
        let st = self.moves_state();
        serde_json::json!({
            "moving": st.moving,
            "history": st.history.iter().rev().collect::<Vec<_>>(),
        })
    }

    /// Picks the decision to apply among `decisions` and claims the single move
    /// slot for it; `Err` says why nothing starts. `migrating` is the VM of a
    /// migration in progress, if any.
    pub fn claim(
        &self,
        inv: &Inventory,
        decisions: &[Decision],
        migrating: Option<&str>,
        now_ms: u64,
    ) -> Result<MoveRecord, String> {
        let mut st = self.moves_state();
        if let Some(m) = &st.moving {
            return Err(format!("moving {} to {} already", m.vm, m.to_host));
        }
        if let Some(vm) = migrating {
            return Err(format!("VM {vm} is migrating"));
        }
        let d = choose(decisions).ok_or("no VM gains from a move")?;
        let vm = inv.vms.get(&d.vm).ok_or("VM left the inventory")?;
        let to =
            destination_host(inv, &d.best).ok_or_else(|| format!("no host in cloud {}", d.best))?;
        let record = MoveRecord {
            vm: d.vm.clone(),
            from_host: vm.host.clone(),
            to_host: to.to_string(),
            to_cloud: d.best.clone(),
            decision: d.clone(),
            started_ms: now_ms,
            ended_ms: None,
            outcome: None,
        };
        st.moving = Some(record.clone());
        Ok(record)
    }

    /// The move command ended with `outcome`; the slot is free again.
    pub fn release(&self, outcome: String) {
        let mut st = self.moves_state();
        if let Some(mut m) = st.moving.take() {
            m.ended_ms = Some(now_ms());
            m.outcome = Some(outcome);
            if st.history.len() == HISTORY {
                st.history.pop_front();
            }
            st.history.push_back(m);
        }
    }
}

impl SeriesState {
    /// Switch `dpid`'s inbound rates over the interval ending at `t_ms`: the series
    /// of its cloud gets, for every VM, the sum over the cloud's switches that
    /// reported within three intervals, one sample per bucket of at least a minute
    /// (the mean of the sums reported in it).
    fn traffic(&mut self, inv: &Inventory, dpid: u64, t_ms: u64, rates: BTreeMap<String, f64>) {
        let Some(region) = inv.host_by_dpid(dpid).map(|h| h.cloud.clone()) else {
            return;
        };
        let interval_ms = 1000 * inv.placement_settings.sample_every_s.max(1);
        let fresh_ms = 3 * interval_ms;
        let bucket_ms = interval_ms.max(
            span_ms(&inv.placement_settings.engine) / self.measurements.capacity.max(1) as u64,
        );
        // Series of VMs that left the inventory go with them.
        self.measurements.retain_vms(|vm| inv.vms.contains_key(vm));
        self.switch_rates.insert(dpid, (t_ms, rates));
        let mut sums: BTreeMap<String, f64> = BTreeMap::new();
        for (other, (t, rates)) in &self.switch_rates {
            let same_cloud = inv.host_by_dpid(*other).is_some_and(|h| h.cloud == region);
            if same_cloud && t_ms.saturating_sub(*t) <= fresh_ms {
                for (vm, r) in rates {
                    *sums.entry(vm.clone()).or_default() += r;
                }
            }
        }
        // A VM this region reached before and no longer does decays to zero.
        for (vm, regions) in &self.measurements.traffic {
            if regions.contains_key(&region) {
                sums.entry(vm.clone()).or_default();
            }
        }
        for (vm, rate) in sums {
            if inv.vms.contains_key(&vm) {
                self.measurements
                    .record_region_rate(&vm, &region, t_ms, rate, bucket_ms);
            }
        }
    }

    /// Switch `dpid`'s tunnels at `t_ms`: each handshake round trip it measured is
    /// a latency sample between its cloud and the peer's (the last one, re-sampled:
    /// WireGuard repeats the handshake every two minutes on a tunnel in use).
    fn tunnels(&mut self, inv: &Inventory, dpid: u64, t_ms: u64, tunnels: &[TunnelStatsEntry]) {
        let Some(cloud) = inv.host_by_dpid(dpid).map(|h| h.cloud.clone()) else {
            return;
        };
        for t in tunnels {
            let Some(rtt_us) = t.handshake_rtt_us else {
                continue;
            };
            if let Some((peer, ms)) = crate::feed::tunnel_latency(inv, t.port_no, rtt_us) {
                self.measurements.record_latency(&cloud, peer, t_ms, ms);
            }
        }
    }
}

/// The decision to apply: a VM in a cloud it may not use first, then the largest
/// net gain.
fn choose(decisions: &[Decision]) -> Option<&Decision> {
    let net = |d: &Decision| d.gain - d.cost;
    decisions.iter().filter(|d| d.migrate).max_by(|a, b| {
        (a.why == Why::NotAllowed)
            .cmp(&(b.why == Why::NotAllowed))
            .then(net(a).total_cmp(&net(b)))
            .then(b.vm.cmp(&a.vm))
    })
}

/// The host of `cloud` that runs the fewest VMs (the first in inventory order on a tie).
fn destination_host<'a>(inv: &'a Inventory, cloud: &str) -> Option<&'a str> {
    inv.hosts
        .iter()
        .filter(|h| h.cloud == cloud)
        .min_by_key(|h| inv.vms.values().filter(|v| v.host == h.name).count())
        .map(|h| h.name.as_str())
}

/// The throughput of the migration a move command reports, bytes per second: its
/// output ends with a JSON object with QEMU's `transferred_bytes` and `total_time_ms`
/// (`scvm migrate --json` prints exactly that report). `None` otherwise.
pub fn reported_throughput(stdout: &str) -> Option<f64> {
    // The report is the first object starting a line that parses to the end of the
    // output: it may be pretty-printed over many lines, after lines of other text.
    let starts = stdout
        .char_indices()
        .filter(|&(i, c)| c == '{' && (i == 0 || stdout[..i].ends_with('\n')))
        .map(|(i, _)| i);
    let report = starts
        .filter_map(|i| serde_json::from_str::<serde_json::Value>(stdout[i..].trim_end()).ok())
        .next()?;
    let bytes = report["transferred_bytes"].as_u64()?;
    let ms = report["total_time_ms"].as_f64().filter(|ms| *ms > 0.0)?;
    Some(bytes as f64 * 1000.0 / ms)
}

/// The move command of `settings` for `m`, placeholders replaced in one pass;
/// `Err` when there is none, or a name is not made of letters, digits, `.`, `_` and
/// `-` (the command may be a shell's: a name must never become shell syntax).
pub fn move_command(settings: &PlacementSettings, m: &MoveRecord) -> Result<Vec<String>, String> {
    if settings.migrate.is_empty() {
        return Err(
            "nothing can move a VM: the inventory's [placement] has no `migrate` command".into(),
        );
    }
    let values = [
        ("{vm}", &m.vm),
        ("{from_host}", &m.from_host),
        ("{to_host}", &m.to_host),
        ("{to_cloud}", &m.to_cloud),
    ];
    let plain = |v: &str| {
        !v.is_empty()
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    };
    if let Some((_, bad)) = values.iter().find(|(_, v)| !plain(v)) {
        return Err(format!(
            "`{bad}` is not a plain name (letters, digits, `.`, `_`, `-`): not passed to a command"
        ));
    }
    Ok(settings
        .migrate
        .iter()
        .map(|arg| {
            let mut out = String::with_capacity(arg.len());
            let mut rest = arg.as_str();
            'scan: while let Some(c) = rest.chars().next() {
                for (name, value) in &values {
                    if let Some(after) = rest.strip_prefix(name) {
                        out.push_str(value);
                        rest = after;
                        continue 'scan;
                    }
                }
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
            out
        })
        .collect())
}

/// Why a move command did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoveFailure {
    /// It could not start, or exited non-zero: by the command's contract the VM
    /// still runs where it was.
    Failed(String),
    /// It outlived its time and was stopped: where the VM runs is unknown.
    TimedOut(String),
}

/// Most output kept from a move command, per stream.
const OUTPUT_LIMIT: usize = 1 << 20;

/// Reads a child's stream into `buf` (at most [`OUTPUT_LIMIT`] bytes kept).
fn collect(
    stream: Option<impl tokio::io::AsyncRead + Unpin + Send + 'static>,
    buf: std::sync::Arc<Mutex<Vec<u8>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let Some(mut stream) = stream else { return };
        let mut chunk = [0u8; 4096];
        while let Ok(n) = stream.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            let mut b = buf.lock().unwrap_or_else(|e| e.into_inner());
            let room = OUTPUT_LIMIT.saturating_sub(b.len());
            b.extend_from_slice(&chunk[..n.min(room)]);
        }
    })
}

/// Signals the process group of a move command scc started (its own group, so
/// whatever it started goes too).
fn signal_group(pid: Option<u32>, signal: rustix::process::Signal) {
    let pid = pid
        .and_then(|p| i32::try_from(p).ok())
        .and_then(rustix::process::Pid::from_raw);
    if let Some(pid) = pid {
        // Gone already is fine: that is what we want.
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

/// Runs the move command for `m` and returns its standard output when it exited
/// 0. The command gets the same facts in its environment (`SC_VM`, `SC_FROM_HOST`,
/// `SC_TO_HOST`, `SC_TO_CLOUD`, `SC_API`: `unix:` and the API's socket) and runs in its own process group: when it
/// outlives `timeout`, the group is sent SIGTERM, then SIGKILL 2 s later. Its end is
/// its exit, not the end of its output: something it left running in the
/// background with the pipes open does not hold it up.
pub async fn run_move(
    argv: Vec<String>,
    m: &MoveRecord,
    api: &std::path::Path,
    timeout: Duration,
) -> Result<String, MoveFailure> {
    let Some((program, args)) = argv.split_first() else {
        return Err(MoveFailure::Failed("no move command".into()));
    };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env("SC_VM", &m.vm)
        .env("SC_FROM_HOST", &m.from_host)
        .env("SC_TO_HOST", &m.to_host)
        .env("SC_TO_CLOUD", &m.to_cloud)
        .env("SC_API", format!("unix:{}", api.display()))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| MoveFailure::Failed(format!("cannot run `{program}`: {e}")))?;
    let pid = child.id();
    let (out, err) = (
        std::sync::Arc::new(Mutex::new(Vec::new())),
        std::sync::Arc::new(Mutex::new(Vec::new())),
    );
    let readers = [
        collect(child.stdout.take(), out.clone()),
        collect(child.stderr.take(), err.clone()),
    ];
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => return Err(MoveFailure::Failed(format!("`{program}`: {e}"))),
        Err(_) => {
            // The leader stays unreaped until the end, so its group id cannot be
            // reused: both signals reach only what it started, and the SIGKILL
            // also what survived the SIGTERM after the leader died of it.
            signal_group(pid, rustix::process::Signal::TERM);
            tokio::time::sleep(Duration::from_secs(2)).await;
            signal_group(pid, rustix::process::Signal::KILL);
            let _ = child.wait().await;
            return Err(MoveFailure::TimedOut(format!(
                "`{program}` still running after {timeout:?}: stopped"
            )));
        }
    };
    // What is still in the pipes comes at once; a background process holding them
    // open is not waited for.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        for r in readers {
            let _ = r.await;
        }
    })
    .await;
    let text = |b: &Mutex<Vec<u8>>| {
        String::from_utf8_lossy(&b.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    };
    let (stdout, stderr) = (text(&out), text(&err));
    for line in stderr.lines() {
        tracing::info!(vm = %m.vm, "move command: {line}");
    }
    if status.success() {
        Ok(stdout)
    } else {
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        Err(MoveFailure::Failed(format!(
            "`{program}` failed ({status}): {last}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Host;

    fn inventory() -> Inventory {
        let mut inv = Inventory::parse(
            include_str!("../../docs/examples/inventory.toml"),
            "inventory.toml",
        )
        .unwrap();
        // A second host in gcp-europe, so a cloud has two switches.
        let mut b2: Host = inv.host("host-b").unwrap().clone();
        b2.name = "host-b2".into();
        b2.datapath_id = 4;
        inv.hosts.push(b2);
        inv.placement_settings.sample_every_s = 10;
        // No day-ago forecast: a traffic sample stands for one interval.
        inv.placement_settings.engine.seasonal_period_s = 0.0;
        inv
    }

    fn rates(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(v, r)| (v.to_string(), *r)).collect()
    }

    fn last(f: &Follower, vm: &str, region: &str) -> Option<(u64, f64)> {
        f.series().measurements.traffic.get(vm)?.get(region)?.last()
    }

    #[test]
    fn a_region_sums_its_fresh_switches_and_decays_to_zero() {
        let inv = inventory();
        let f = Follower::default();
        // host-b (dpid 2) and host-b2 (dpid 4) are both in gcp-europe.
        f.record_traffic(&inv, 2, 50_000, rates(&[("web1", 100.0)]));
        assert_eq!(last(&f, "web1", "gcp-europe"), Some((50_000, 100.0)));
        f.record_traffic(&inv, 4, 70_000, rates(&[("web1", 50.0), ("db1", 7.0)]));
        assert_eq!(last(&f, "web1", "gcp-europe"), Some((70_000, 150.0)));
        assert_eq!(last(&f, "db1", "gcp-europe"), Some((70_000, 7.0)));
        // host-b's report is older than three intervals (30 s): no longer counted.
        f.record_traffic(&inv, 4, 130_000, rates(&[]));
        assert_eq!(last(&f, "web1", "gcp-europe"), Some((130_000, 0.0)));
        assert_eq!(last(&f, "db1", "gcp-europe"), Some((130_000, 0.0)));
        // Other regions are untouched; unknown switches and VMs are ignored.
        assert_eq!(last(&f, "web1", "aws-us-east"), None);
        f.record_traffic(&inv, 99, 41_000, rates(&[("web1", 1.0)]));
        f.record_traffic(&inv, 2, 42_000, rates(&[("ghost", 1.0)]));
        assert!(!f.series().measurements.traffic.contains_key("ghost"));
    }

    #[test]
    fn tunnels_give_latency_between_the_switch_cloud_and_the_peer_cloud() {
        let inv = inventory();
        let f = Follower::default();
        let to_c = inv.host("host-c").unwrap().tunnel_port();
        let entry = |port_no, rtt| TunnelStatsEntry {
            port_no,
            handshake_rtt_us: rtt,
            since_handshake_ms: Some(5),
            tx_bytes: 0,
            rx_bytes: 0,
        };
        f.record_tunnels(
            &inv,
            1,
            1_000,
            vec![entry(to_c, Some(60_000)), entry(10_002, None)],
        );
        let m = &f.series().measurements;
        assert_eq!(
            m.latency_between("azure-asia", "aws-us-east", 1_000, 1_000),
            Some(30.0)
        );
        assert_eq!(
            m.latency_between("aws-us-east", "gcp-europe", 1_000, 1_000),
            None
        );
    }

    fn decision(vm: &str, migrate: bool, gain: f64, why: Why) -> Decision {
        Decision {
            vm: vm.into(),
            now: "aws-us-east".into(),
            best: "gcp-europe".into(),
            migrate,
            latency_now_ms: None,
            latency_best_ms: None,
            gain,
            cost: 1.0,
            move_s: 1.0,
            why,
        }
    }

    #[test]
    fn the_move_chosen_is_a_forbidden_cloud_first_then_the_largest_net_gain() {
        let ds = [
            decision("a", true, 10.0, Why::Gain),
            decision("b", true, 30.0, Why::Gain),
            decision("c", false, 99.0, Why::CostExceedsGain),
        ];
        assert_eq!(choose(&ds).unwrap().vm, "b");
        let mut with_forbidden = ds.to_vec();
        with_forbidden.push(decision("d", true, 0.0, Why::NotAllowed));
        assert_eq!(choose(&with_forbidden).unwrap().vm, "d");
        assert!(choose(&ds[2..]).is_none());
    }

    #[test]
    fn one_move_at_a_time_to_the_least_loaded_host_of_the_cloud() {
        let mut inv = inventory();
        let f = Follower::default();
        let ds = [decision("web1", true, 10.0, Why::Gain)];
        assert_eq!(
            f.claim(&inv, &ds, Some("db1"), 0).unwrap_err(),
            "VM db1 is migrating"
        );
        // host-b runs db1; host-b2 runs nothing.
        let m = f.claim(&inv, &ds, None, 7).unwrap();
        assert_eq!(
            (m.vm.as_str(), m.from_host.as_str(), m.to_host.as_str()),
            ("web1", "host-a", "host-b2")
        );
        assert!(f.claim(&inv, &ds, None, 8).unwrap_err().contains("already"));
        f.release("moved".into());
        let moves = f.moves();
        assert_eq!(moves["moving"], serde_json::Value::Null);
        assert_eq!(moves["history"][0]["outcome"], "moved");
        // Placeholders in the command.
        inv.placement_settings.migrate =
            vec!["mv".into(), "{vm}@{from_host}->{to_host}/{to_cloud}".into()];
        assert_eq!(
            move_command(&inv.placement_settings, &m).unwrap(),
            ["mv", "web1@host-a->host-b2/gcp-europe"]
        );
        // One pass: a value that looks like a placeholder is not replaced again,
        // and a name that is not plain never reaches the command.
        let mut odd = m.clone();
        odd.vm = "{to_host}".into();
        let refused = move_command(&inv.placement_settings, &odd).unwrap_err();
        assert!(refused.contains("not a plain name"), "{refused}");
        odd.vm = "web1;reboot".into();
        assert!(move_command(&inv.placement_settings, &odd).is_err());
        inv.placement_settings.migrate = vec!["{vm}{vm}x{to_cloud".into()];
        assert_eq!(
            move_command(&inv.placement_settings, &m).unwrap(),
            ["web1web1x{to_cloud"]
        );
        inv.placement_settings.migrate.clear();
        assert!(move_command(&inv.placement_settings, &m).is_err());
    }

    #[test]
    fn the_throughput_of_scvms_report_is_a_bandwidth_sample() {
        let report = hypervisor_glue::MigrationReport {
            uri: "tcp:192.0.2.66:4444".into(),
            status: hypervisor_glue::MigrationStatus::Completed,
            total_time_ms: Some(2_000),
            downtime_ms: Some(30),
            setup_time_ms: Some(5),
            transferred_bytes: Some(100_000_000),
            ram_total_bytes: Some(128 << 20),
            error_desc: None,
            wall_time: Duration::from_millis(2_100),
            source_running: None,
            timeline: Vec::new(),
        };
        // As `scvm migrate --json` prints it, after other output.
        let out = format!(
            "prepared host-b\n{}\n",
            serde_json::to_string_pretty(&report).unwrap()
        );
        assert_eq!(reported_throughput(&out), Some(50_000_000.0));
        assert_eq!(reported_throughput("moved\n"), None);
        assert_eq!(reported_throughput("{\"transferred_bytes\": 5}"), None);
        assert_eq!(
            reported_throughput("{\"transferred_bytes\": 5, \"total_time_ms\": 0}"),
            None
        );
    }

    /// `f`, which must end within a minute (a deadline no loaded machine reaches,
    /// for what would otherwise take five).
    async fn within_a_minute<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(60), f)
            .await
            .expect("still waiting after a minute")
    }

    /// The pid a process wrote to `path`, once it did.
    async fn pid_in(path: &std::path::Path) -> i32 {
        within_a_minute(async {
            loop {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                if let Ok(pid) = text.trim().parse() {
                    return pid;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
    }

    /// True while process `pid` runs (a zombie has ended).
    fn running(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit(')')
                .next()
                .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
        })
    }

    #[tokio::test]
    async fn the_move_command_gets_the_facts_and_its_failures_are_reported() {
        let m = MoveRecord {
            vm: "web1".into(),
            from_host: "host-a".into(),
            to_host: "host-b".into(),
            to_cloud: "gcp-europe".into(),
            decision: decision("web1", true, 1.0, Why::Gain),
            started_ms: 0,
            ended_ms: None,
            outcome: None,
        };
        let api = std::path::Path::new("/run/scc/api.sock");
        let sh = |script: &str| vec!["sh".to_string(), "-c".into(), script.into()];
        let long = Duration::from_secs(10);
        assert_eq!(
            run_move(
                sh("echo \"$SC_VM $SC_FROM_HOST $SC_TO_HOST $SC_TO_CLOUD $SC_API\""),
                &m,
                api,
                long
            )
            .await,
            Ok("web1 host-a host-b gcp-europe unix:/run/scc/api.sock\n".into())
        );
        let failed = run_move(sh("echo no room >&2; exit 3"), &m, api, long).await;
        let Err(MoveFailure::Failed(failed)) = failed else {
            panic!("a failure: {failed:?}");
        };
        assert!(
            failed.contains("no room") && failed.contains('3'),
            "{failed}"
        );
        // A command that outlives its time is stopped with what it started: its
        // children (one ignores SIGTERM) record their pids and would run for minutes
        // on their own, and the command itself would never end.
        let dir = tempfile::tempdir().unwrap();
        let child_pid = dir.path().join("child.pid");
        let stubborn_pid = dir.path().join("stubborn.pid");
        let script = format!(
            "sh -c 'echo $$ > {}; exec sleep 300' & \
             sh -c 'trap \"\" TERM; echo $$ > {}; exec sleep 300' & \
             exec sleep 300",
            child_pid.display(),
            stubborn_pid.display()
        );
        // The time limit leaves the children ample time to start and say who they are.
        let slow = within_a_minute(run_move(sh(&script), &m, api, Duration::from_secs(3))).await;
        assert!(matches!(slow, Err(MoveFailure::TimedOut(_))), "{slow:?}");
        for (who, pid) in [
            ("background child", &child_pid),
            ("child ignoring SIGTERM", &stubborn_pid),
        ] {
            let pid = pid_in(pid).await;
            within_a_minute(async {
                while running(pid) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await;
            assert!(!running(pid), "the command's {who} was stopped too");
        }
        // A command that exits while something it started keeps the pipes open
        // ends at its exit, not when that ends minutes later.
        let holder_pid = dir.path().join("holder.pid");
        let script = format!(
            "echo done; sh -c 'echo $$ > {}; exec sleep 300' &",
            holder_pid.display()
        );
        let quick = within_a_minute(run_move(sh(&script), &m, api, Duration::from_secs(600))).await;
        assert_eq!(quick, Ok("done\n".into()));
        let holder = pid_in(&holder_pid).await;
        assert!(running(holder), "the pipes were still held open");
        let holder = rustix::process::Pid::from_raw(holder).unwrap();
        rustix::process::kill_process(holder, rustix::process::Signal::KILL).unwrap();
        let missing = run_move(vec!["/nonexistent/mover".into()], &m, api, long).await;
        let Err(MoveFailure::Failed(missing)) = missing else {
            panic!("a failure: {missing:?}");
        };
        assert!(missing.contains("cannot run"), "{missing}");
    }
}
