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
//! A spinning thread gives its core to any other runnable thread at each
//! empty poll (`sched_yield`): without it, a thread woken on that core (the
//! other end of the very round trip the window waits for) waited until the
//! spinner's time slice ran out, and the window made round trips slower on a
//! host without a core to spare. A back-off after preemptions was tried and
//! dropped: the yields it must allow count as preemptions too, so it turned
//! spinning off exactly where the yields made it pay (bench/RESULTS.md). So
//! was dropping the spinning thread to `SCHED_IDLE` until its next packet: it
//! helped round trips at p99 and cost one TCP stream through a switch a
//! fifth to a quarter of its rate, for reasons not found (bench/RESULTS.md, "Busy-polling
//! at `SCHED_IDLE`").

use std::time::{Duration, Instant};

/// How often an empty spin still runs the loop's housekeeping (tables swapped
/// in, jobs, timers), which a spin otherwise skips.
const HOUSEKEEPING: Duration = Duration::from_millis(10);

/// The busy-poll window of one forwarding thread.
#[derive(Debug)]
pub(super) struct BusyPoll {
    window: Duration,
    /// Spin (wait without sleeping) until then.
    until: Option<Instant>,
    last_housekeeping: Instant,
}

impl BusyPoll {
    /// Polls for `window` after each round that moved packets (zero: never).
    pub(super) fn new(window: Duration) -> BusyPoll {
        BusyPoll {
            window,
            until: None,
            last_housekeeping: Instant::now(),
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

    /// The round that ended at `at` moved packets: the window starts again.
    pub(super) fn traffic(&mut self, at: Instant) {
        if !self.window.is_zero() {
            self.until = Some(at + self.window);
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

        // A window that has passed: back to sleeping.
        let mut short = BusyPoll::new(Duration::from_nanos(1));
        short.traffic(Instant::now() - Duration::from_millis(1));
        assert_eq!(short.timeout_ms(100), 100);
        assert!(short.housekeeping_due(Instant::now()));
    }
}
