//! How `scd`'s threads share the CPU: the forwarding thread first, everything else
//! (the tables' control thread, the OpenFlow channel, the metrics server, signal
//! handling) behind it.
//!
//! On a host with few cores the control plane does not make forwarding wait by
//! holding a lock (it holds none the forwarding thread takes), it makes it wait by
//! holding the core: 100,000 flow-mods, a dump of 100,000 flows or a metrics
//! scrape keep a thread busy for seconds, and a packet that arrives meanwhile
//! waits for the scheduler. So every thread but the forwarding one runs at a
//! lower priority ([`Scheduling::control_policy`] and [`Scheduling::control_nice`],
//! by default `SCHED_BATCH` at nice 10): a woken forwarding thread preempts it at
//! once, and it still gets the CPU the forwarding thread leaves. The forwarding
//! thread may in turn be raised above the host's other work
//! ([`Scheduling::forwarding_nice`], needs `CAP_SYS_NICE`, so it is applied before
//! privileges are dropped). Settings are chosen once per process ([`choose`]) and
//! each thread applies them to itself when it starts: Linux threads inherit
//! policy and nice value from the thread that made them, and an unprivileged
//! thread may lower its priority but never raise it again.

use std::io;
use std::sync::OnceLock;

/// The scheduling policy of the control-plane threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlPolicy {
    /// `SCHED_OTHER`: the same footing as forwarding (only the nice value differs).
    Normal,
    /// `SCHED_BATCH`: never preempts a woken thread; the default.
    Batch,
    /// `SCHED_IDLE`: runs only on CPU time nothing else wants. Lowest jitter, but
    /// on a host busy with other work flow-mods and barriers may starve.
    Idle,
}

impl ControlPolicy {
    /// The policy as written in the configuration file.
    pub fn parse(text: &str) -> Option<ControlPolicy> {
        match text {
            "normal" => Some(ControlPolicy::Normal),
            "batch" => Some(ControlPolicy::Batch),
            "idle" => Some(ControlPolicy::Idle),
            _ => None,
        }
    }

    fn raw(self) -> libc::c_int {
        match self {
            ControlPolicy::Normal => libc::SCHED_OTHER,
            ControlPolicy::Batch => libc::SCHED_BATCH,
            ControlPolicy::Idle => libc::SCHED_IDLE,
        }
    }
}

/// The scheduling policy of the forwarding thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardingPolicy {
    /// `SCHED_OTHER` at [`Scheduling::forwarding_nice`]; the default.
    Normal,
    /// `SCHED_FIFO` at priority 1: a woken forwarding thread preempts every
    /// normal thread on the host, whatever its session or cgroup (nice values
    /// only order threads within one autogroup). Needs `CAP_SYS_NICE` (applied
    /// before privileges drop); the kernel's real-time throttling
    /// (`kernel.sched_rt_runtime_us`) still leaves other work 5 % of each core
    /// under a flood.
    Fifo,
}

impl ForwardingPolicy {
    /// The policy as written in the configuration file.
    pub fn parse(text: &str) -> Option<ForwardingPolicy> {
        match text {
            "normal" => Some(ForwardingPolicy::Normal),
            "fifo" => Some(ForwardingPolicy::Fifo),
            _ => None,
        }
    }
}

/// Nice values Linux accepts.
pub const NICE_RANGE: std::ops::RangeInclusive<i32> = -20..=19;

/// Where each kind of thread runs (the `[scheduling]` section of the configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scheduling {
    /// Policy of every thread but the forwarding one.
    pub control_policy: ControlPolicy,
    /// Nice value of every thread but the forwarding one (ignored by `SCHED_IDLE`).
    pub control_nice: i32,
    /// Nice value of the forwarding thread; below 0 needs `CAP_SYS_NICE`.
    pub forwarding_nice: i32,
    /// Policy of the forwarding thread.
    pub forwarding_policy: ForwardingPolicy,
    /// How long the forwarding thread keeps polling without sleeping after it
    /// moved packets, in microseconds (0: never; see `switch::busy_poll`).
    pub busy_poll_us: u32,
    /// Forwarding workers: copies of the forwarding loop, each with its own queue
    /// of every local port (see `switch::workers`); 1, the default, is one
    /// forwarding thread as before there were several.
    pub workers: usize,
}

/// Most forwarding workers accepted (a TAP has at most 256 queues; a host with
/// more cores than this has other limits first).
pub const MAX_WORKERS: usize = 64;

/// Longest busy-poll window accepted (100 ms). A window up to about a
/// millisecond catches the answer to what was just forwarded; a longer one
/// also catches the next request of periodic traffic (a probe every few
/// milliseconds), at the cost of a core for as long as such traffic flows.
/// Beyond 100 ms the window is "always" in all but name: more likely a value
/// meant in another unit, so it is refused.
pub const MAX_BUSY_POLL_US: u32 = 100_000;

impl Scheduling {
    /// The busy-poll window.
    pub fn busy_poll(&self) -> std::time::Duration {
        std::time::Duration::from_micros(u64::from(self.busy_poll_us))
    }
}

impl Default for Scheduling {
    fn default() -> Self {
        Scheduling {
            // Not lowered by default: nice values alone measured no gain, and a
            // control plane lowered behind a host's busy VMs answers the
            // controller late (a 252-flow add-flows timed out at 20 s under a
            // loaded CI run).
            control_policy: ControlPolicy::Normal,
            control_nice: 0,
            forwarding_nice: 0,
            forwarding_policy: ForwardingPolicy::Normal,
            busy_poll_us: DEFAULT_BUSY_POLL_US,
            workers: 1,
        }
    }
}

/// The default busy-poll window: off. A window saves the forwarding thread's
/// wake-up, which only a host with a core to spare for forwarding gets for
/// free; on the 2-core development machines, where two switches and their VMs
/// share two cores, it helped some rows and not others (bench/RESULTS.md,
/// "Data path, all targets"), so it is the operator's choice.
pub const DEFAULT_BUSY_POLL_US: u32 = 0;

static CHOSEN: OnceLock<Scheduling> = OnceLock::new();

/// Sets this process's scheduling, before any thread applies it; false when it
/// was already chosen (or already read, which fixes the default).
pub fn choose(scheduling: Scheduling) -> bool {
    CHOSEN.set(scheduling).is_ok()
}

/// This process's scheduling: what [`choose`] set, else the default.
pub fn chosen() -> Scheduling {
    *CHOSEN.get_or_init(Scheduling::default)
}

fn set_nice(nice: i32) -> io::Result<()> {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    let who = libc::id_t::try_from(tid).map_err(|_| io::Error::other("negative thread id"))?;
    // SAFETY: PRIO_PROCESS with a thread id sets that thread's nice value only.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, who, nice) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Puts the calling thread behind the forwarding thread, as [`chosen`] says.
pub fn as_control_thread() -> io::Result<()> {
    let s = chosen();
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param.
    if unsafe { libc::sched_setscheduler(0, s.control_policy.raw(), &param) } != 0 {
        return Err(io::Error::last_os_error());
    }
    set_nice(s.control_nice)
}

/// [`as_control_thread`], with a failure logged rather than returned: a thread
/// left at the forwarding thread's priority still works, only with more jitter.
pub fn control_thread() {
    if let Err(e) = as_control_thread() {
        tracing::warn!(thread = ?std::thread::current().name(), "could not lower this thread's priority: {e}");
    }
}

/// Gives the calling (forwarding) thread its policy and nice value, as
/// [`chosen`] says.
pub fn as_forwarding_thread() -> io::Result<()> {
    let s = chosen();
    set_nice(s.forwarding_nice)?;
    if s.forwarding_policy == ForwardingPolicy::Fifo {
        let param = libc::sched_param { sched_priority: 1 };
        // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy_and_nice() -> (libc::c_int, i32) {
        // SAFETY: pid 0 is the calling thread.
        let policy = unsafe { libc::sched_getscheduler(0) };
        // SAFETY: as in set_nice.
        let tid = unsafe { libc::gettid() };
        // SAFETY: reads the calling thread's nice value.
        let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid.unsigned_abs()) };
        (policy, nice)
    }

    #[test]
    fn a_control_thread_is_lowered_and_its_children_inherit_it() {
        let (policy, nice, child) = std::thread::spawn(|| {
            as_control_thread().unwrap();
            let (policy, nice) = policy_and_nice();
            let child = std::thread::spawn(policy_and_nice).join().unwrap();
            (policy, nice, child)
        })
        .join()
        .unwrap();
        let expected = chosen();
        assert_eq!(policy, expected.control_policy.raw());
        assert_eq!(nice, expected.control_nice);
        assert_eq!(child, (policy, nice));
    }

    #[test]
    fn policies_parse_from_their_names() {
        for (text, policy) in [
            ("normal", ControlPolicy::Normal),
            ("batch", ControlPolicy::Batch),
            ("idle", ControlPolicy::Idle),
        ] {
            assert_eq!(ControlPolicy::parse(text), Some(policy));
        }
        assert_eq!(ControlPolicy::parse("fifo"), None);
        assert_eq!(
            ForwardingPolicy::parse("fifo"),
            Some(ForwardingPolicy::Fifo)
        );
        assert_eq!(
            ForwardingPolicy::parse("normal"),
            Some(ForwardingPolicy::Normal)
        );
        assert_eq!(ForwardingPolicy::parse("batch"), None);
    }
}
