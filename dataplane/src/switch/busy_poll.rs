//! Adaptive busy-polling of the forwarding thread: for a short window after it
//! moved packets it asks epoll without sleeping, so the next packet (the answer
//! to the one just forwarded, the next of a burst) is taken without a wake-up;
//! once the window passes without traffic it sleeps in `epoll_wait` again, so an
//! idle switch costs no CPU.
//!
//! A sleeping thread is woken by the kernel through the scheduler (and on an
//! idle core, out of the CPU's idle state): several microseconds per packet that
//! a request/response exchange pays twice per hop. The window
//! (`[scheduling] busy_poll_us`) is what a round trip on this host takes to come
//! back through the switch; zero turns busy-polling off.
//!
//! Spinning only pays on a core nothing else wants. A spinning thread gives
//! its core to any other runnable thread at each empty poll (`sched_yield`),
//! and once it has lost the core that way, or been preempted, it stops
//! spinning for [`BACK_OFF`]: on a host without a core to spare a spinning
//! thread would otherwise run out its share of the core and then wait behind
//! the others for milliseconds, where a sleeping thread is woken ahead of
//! them.

use std::time::{Duration, Instant};

/// How often an empty spin still runs the loop's housekeeping (tables swapped
/// in, jobs, timers), which a spin otherwise skips.
const HOUSEKEEPING: Duration = Duration::from_millis(10);

/// How long a forwarding thread that lost its core while spinning sleeps
/// between rounds instead.
pub(super) const BACK_OFF: Duration = Duration::from_millis(100);

/// The busy-poll window of one forwarding thread.
#[derive(Debug)]
pub(super) struct BusyPoll {
    window: Duration,
    /// Spin (wait without sleeping) until then.
    until: Option<Instant>,
    last_housekeeping: Instant,
    /// The thread's involuntary context switches at the first empty poll of
    /// the current window (`None`: no empty poll in this window yet).
    baseline: Option<u64>,
    /// No window starts before then: the thread lost its core while spinning.
    backing_off_until: Option<Instant>,
}

impl BusyPoll {
    /// Polls for `window` after each round that moved packets (zero: never).
    pub(super) fn new(window: Duration) -> BusyPoll {
        BusyPoll {
            window,
            until: None,
            last_housekeeping: Instant::now(),
            baseline: None,
            backing_off_until: None,
        }
    }

    /// The `epoll_wait` timeout: 0 inside the window, `idle_ms` after it.
    pub(super) fn timeout_ms(&mut self, idle_ms: i32) -> i32 {
        match self.until {
            Some(until) if Instant::now() < until => 0,
            _ => {
                self.until = None;
                idle_ms
            }
        }
    }

    /// The round that ended at `at` moved packets: the window starts again,
    /// unless the thread is backing off.
    pub(super) fn traffic(&mut self, at: Instant) {
        if self.window.is_zero() {
            return;
        }
        match self.backing_off_until {
            Some(until) if at < until => {}
            _ => {
                if self.until.is_none() {
                    // A new window: only preemptions from its first empty poll
                    // on say that spinning costs another thread its core.
                    self.baseline = None;
                }
                self.backing_off_until = None;
                self.until = Some(at + self.window);
            }
        }
    }

    /// Whether the thread is inside a window.
    #[cfg(test)]
    fn spinning(&self) -> bool {
        self.until.is_some()
    }

    /// An empty poll of the window ended at `now`, when the thread had been
    /// switched out involuntarily `preemptions` times in all: if that count
    /// grew since the window's first empty poll, another thread wanted the
    /// core while this one spun, so the window ends and no other starts for
    /// [`BACK_OFF`].
    pub(super) fn spun(&mut self, now: Instant, preemptions: u64) {
        if self.until.is_none() {
            return;
        }
        match self.baseline {
            None => self.baseline = Some(preemptions),
            Some(at_first) if preemptions > at_first => {
                self.until = None;
                self.backing_off_until = Some(now + BACK_OFF);
            }
            Some(_) => {}
        }
    }

    /// Gives the core to any other runnable thread before the next empty poll.
    ///
    /// Without it a spinning thread keeps its core until the scheduler's time
    /// slice ends (hundreds of microseconds to milliseconds): a thread woken on
    /// that core, such as the other end of the very round trip the window waits
    /// for, would wait that long, and the window would make round trips slower
    /// on a host without a core to spare.
    pub(super) fn yield_core(&self) {
        // SAFETY: sched_yield has no preconditions.
        unsafe { libc::sched_yield() };
    }

    /// Involuntary context switches of the calling thread so far: a yield
    /// that gave the core away counts, a sleep does not.
    pub(super) fn preemptions_of_this_thread() -> u64 {
        // SAFETY: rusage is plain data; all-zero is valid, and getrusage fills it.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `usage` is a live rusage for getrusage to write.
        let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
        if rc == 0 {
            u64::try_from(usage.ru_nivcsw).unwrap_or(0)
        } else {
            0
        }
    }

    /// Whether a round with no events should still do the loop's housekeeping:
    /// always after a sleep, every [`HOUSEKEEPING`] while spinning.
    pub(super) fn housekeeping_due(&mut self, now: Instant) -> bool {
        if self.until.is_some() && now.duration_since(self.last_housekeeping) < HOUSEKEEPING {
            return false;
        }
        self.last_housekeeping = now;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spins_only_inside_the_window_after_traffic() {
        let mut off = BusyPoll::new(Duration::ZERO);
        off.traffic(Instant::now());
        assert_eq!(off.timeout_ms(100), 100);

        let mut poll = BusyPoll::new(Duration::from_secs(3600));
        assert_eq!(poll.timeout_ms(100), 100, "no traffic yet: sleep");
        let start = Instant::now();
        assert!(poll.housekeeping_due(start));
        poll.traffic(start);
        assert_eq!(poll.timeout_ms(100), 0);
        assert!(!poll.housekeeping_due(start));
        assert!(poll.housekeeping_due(start + HOUSEKEEPING));

        // Preempted while spinning: the window ends, and traffic does not
        // start another until the back-off has passed.
        let mut contended = BusyPoll::new(Duration::from_secs(3600));
        let t0 = Instant::now();
        contended.traffic(t0);
        contended.spun(t0, 5);
        assert!(
            contended.spinning(),
            "preemptions before the window's first empty poll do not count"
        );
        contended.spun(t0, 5);
        assert!(contended.spinning(), "an unchanged count keeps spinning");
        contended.spun(t0, 6);
        assert!(!contended.spinning());
        assert_eq!(contended.timeout_ms(100), 100);
        contended.traffic(t0 + BACK_OFF / 2);
        assert!(!contended.spinning(), "backing off");
        contended.traffic(t0 + BACK_OFF);
        assert!(contended.spinning(), "the back-off has passed");
        // Preempted between windows (while forwarding, or asleep): the new
        // window judges from its own first empty poll.
        contended.spun(t0 + BACK_OFF, 9);
        assert!(contended.spinning());
        contended.spun(t0 + BACK_OFF, 9);
        assert!(contended.spinning());

        // A window that has passed: back to sleeping.
        let mut short = BusyPoll::new(Duration::from_nanos(1));
        short.traffic(Instant::now() - Duration::from_millis(1));
        assert_eq!(short.timeout_ms(100), 100);
        assert!(short.housekeeping_due(Instant::now()));
    }
}
