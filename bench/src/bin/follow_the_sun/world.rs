//! The simulated world of `follow_the_sun`: three clouds with their client
//! latencies, the VMs and their audiences, and the seeded trace of a day's traffic
//! and path jitter (with the warm-up in front of it).

/// Clouds, one per client region; clients enter the overlay at their region's cloud.
pub(crate) const CLOUDS: [&str; 3] = ["americas", "europe", "asia"];
/// Each region's offset from UTC, hours.
const UTC_OFFSET_H: [f64; 3] = [-5.0, 1.0, 9.0];
/// Client latency from a region (row) to a VM in a cloud (column), ms.
pub(crate) const LATENCY_MS: [[f64; 3]; 3] = [
    [10.0, 80.0, 150.0],
    [80.0, 10.0, 150.0],
    [150.0, 150.0, 10.0],
];
/// Minutes simulated before the day measured with the engine's first day: the day
/// before it (the engine's history for its day-ago forecast) and an hour. The engine
/// starts from the static placement with an hour of history, so its first move is
/// not counted against the day measured. `--days-before` adds whole days in front.
const WARM_UP_MIN: usize = DAY_MIN + 60;
/// Minute of the trace at which the engine starts planning.
pub(crate) const ENGINE_START_MIN: usize = 60;
pub(crate) const DAY_MIN: usize = 24 * 60;
/// Decisions (engine and oracle) happen on 5-minute slots.
pub(crate) const SLOT_MIN: usize = 5;
/// Bandwidth between clouds the migrations see, bytes per second.
pub(crate) const BANDWIDTH: f64 = 50e6;

/// splitmix64: a small, seeded generator so the trace is the same on every machine.
#[derive(Debug)]
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in 0..n (n > 0).
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next_u64() % n as u64).expect("less than n")
    }

    /// Standard normal (Box–Muller).
    pub(crate) fn normal(&mut self) -> f64 {
        let u = self.unit().max(f64::MIN_POSITIVE);
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * self.unit()).cos()
    }
}

/// A simulated VM: how big its audience is in each region, and its size.
#[derive(Debug, Clone)]
pub(crate) struct SimVm {
    pub(crate) name: &'static str,
    /// Peak traffic from each region, bytes per second.
    pub(crate) peak: [f64; 3],
    pub(crate) ram_mib: u64,
}

pub(crate) fn vms() -> Vec<SimVm> {
    let vm = |name, peak: [f64; 3], ram_mib| SimVm {
        name,
        peak: peak.map(|p| p * 1e6),
        ram_mib,
    };
    vec![
        vm("global-even", [1.0, 1.0, 1.0], 4096),
        vm("global-am", [2.0, 1.0, 1.0], 2048),
        vm("global-as", [1.0, 1.0, 2.0], 8192),
        vm("atlantic", [1.0, 1.0, 0.1], 2048),
        vm("eurasia", [0.1, 1.0, 1.0], 1024),
        vm("asia-local", [0.05, 0.05, 1.0], 4096),
    ]
}

/// Share of a region's peak load at a UTC minute: peak at 15:00 local time, a trough
/// of 10% at 03:00.
fn diurnal(region: usize, utc_min: f64) -> f64 {
    let local_h = utc_min / 60.0 + UTC_OFFSET_H[region];
    let bump = (1.0 + (std::f64::consts::TAU * (local_h - 15.0) / 24.0).cos()) / 2.0;
    0.1 + 0.9 * bump * bump
}

/// The trace: traffic (bytes per second) of every VM from every region at every
/// minute, and the latency multiplier (jitter) of every region-cloud path.
#[derive(Debug)]
pub(crate) struct Trace {
    /// `[vm][minute][region]`, minute 0 is the start of the warm-up.
    pub(crate) traffic: Vec<Vec<[f64; 3]>>,
    /// `[minute][region][cloud]`.
    pub(crate) jitter: Vec<[[f64; 3]; 3]>,
    /// Minute at which the day measured starts.
    pub(crate) day_start: usize,
}

impl Trace {
    /// The traffic of VM `i` over the day measured, by minute.
    pub(crate) fn day(&self, i: usize) -> &[[f64; 3]] {
        &self.traffic[i][self.day_start..]
    }
}

/// The trace of seed `seed` with `days_before` days in front of the day measured
/// (at least one: the warm-up day and hour). The warm-up and the day measured come
/// from `seed` alone; earlier days from a seed of their own.
pub(crate) fn trace(vms: &[SimVm], seed: u64, days_before: usize) -> Trace {
    let mut main = trace_part(vms, &mut Rng(seed), WARM_UP_MIN + DAY_MIN, WARM_UP_MIN);
    let early_min = days_before.saturating_sub(1) * DAY_MIN;
    if early_min == 0 {
        return main;
    }
    let mut early = trace_part(
        vms,
        &mut Rng(seed ^ 0xea51),
        early_min,
        early_min + WARM_UP_MIN,
    );
    for (e, m) in early.traffic.iter_mut().zip(&mut main.traffic) {
        e.append(m);
    }
    early.jitter.append(&mut main.jitter);
    early.day_start = early_min + WARM_UP_MIN;
    early
}

/// `minutes` of trace, the first `day_start` minutes before the day measured.
fn trace_part(vms: &[SimVm], rng: &mut Rng, minutes: usize, day_start: usize) -> Trace {
    let traffic = vms
        .iter()
        .map(|vm| {
            // Two flash crowds per VM: one region at 3× for 10-30 minutes.
            let crowds: Vec<(usize, usize, usize)> = (0..2)
                .map(|_| {
                    let start = rng.below(minutes);
                    let length = 10 + rng.below(21);
                    (start, start + length, rng.below(3))
                })
                .collect();
            (0..minutes)
                .map(|m| {
                    let utc = m as f64 - day_start as f64;
                    std::array::from_fn(|r| {
                        let crowd = crowds
                            .iter()
                            .any(|&(a, b, cr)| cr == r && (a..b).contains(&m));
                        let noise = (0.2 * rng.normal()).exp();
                        vm.peak[r] * diurnal(r, utc) * noise * if crowd { 3.0 } else { 1.0 }
                    })
                })
                .collect()
        })
        .collect();
    let jitter = (0..minutes)
        .map(|_| {
            std::array::from_fn(|_| std::array::from_fn(|_| (1.0 + 0.05 * rng.normal()).max(0.5)))
        })
        .collect();
    Trace {
        traffic,
        jitter,
        day_start,
    }
}
