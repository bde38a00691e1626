//! When a connection is dead: the keepalive of controller connections (echo
//! requests, closed after too many go unanswered) and the idle timeout of
//! connections to a listener (closed after a silence, with an echo request half
//! way through so that a live peer can prove itself).
//!
//! Sans-IO: it is told when bytes arrived and what time it is, and answers what
//! to do; it never reads a clock or touches a socket.

use std::time::{Duration, Instant};

/// How a connection is judged alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Keepalive {
    /// A controller `scd` connected to: an echo request every `interval` once
    /// hellos are exchanged; closed when `missed` in a row went unanswered.
    Probe {
        /// Time between echo requests.
        interval: Duration,
        /// Unanswered requests that close the connection.
        missed: u32,
    },
    /// A client of a passive listener: closed when nothing arrived for this
    /// long; an echo request goes out after half of it.
    Idle(Duration),
}

/// What the connection should do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Nothing.
    Wait,
    /// Send an echo request.
    SendEcho,
    /// Close the connection: it is dead, for the reason given.
    Close(String),
}

/// The liveness of one connection.
#[derive(Debug)]
pub(super) struct Liveness {
    keepalive: Keepalive,
    last_heard: Instant,
    last_echo: Instant,
    /// Echo requests sent since the peer last sent anything.
    unanswered: u32,
}

impl Liveness {
    /// A connection that opened at `now`.
    pub(super) fn new(keepalive: Keepalive, now: Instant) -> Liveness {
        Liveness {
            keepalive,
            last_heard: now,
            last_echo: now,
            unanswered: 0,
        }
    }

    /// Bytes arrived at `now`: any of them shows the peer alive.
    pub(super) fn heard(&mut self, now: Instant) {
        self.last_heard = now;
        self.unanswered = 0;
    }

    /// What to do at `now`; `ready`: hellos are exchanged (an echo request may go
    /// out). A `SendEcho` is taken as sent.
    pub(super) fn poll(&mut self, now: Instant, ready: bool) -> Verdict {
        match self.keepalive {
            Keepalive::Probe { interval, missed } => {
                if !ready || now.saturating_duration_since(self.last_echo) < interval {
                    return Verdict::Wait;
                }
                if self.unanswered >= missed {
                    return Verdict::Close(format!("{missed} echo requests unanswered"));
                }
                self.unanswered += 1;
                self.last_echo = now;
                Verdict::SendEcho
            }
            Keepalive::Idle(timeout) => {
                let silent = now.saturating_duration_since(self.last_heard);
                if silent >= timeout {
                    return Verdict::Close(format!("nothing received for {timeout:?}"));
                }
                if ready && self.unanswered == 0 && silent >= timeout / 2 {
                    self.unanswered = 1;
                    self.last_echo = now;
                    return Verdict::SendEcho;
                }
                Verdict::Wait
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_controller_gets_an_echo_every_interval_and_is_closed_after_the_missed_ones() {
        let t0 = Instant::now();
        let mut l = Liveness::new(
            Keepalive::Probe {
                interval: 5 * S,
                missed: 3,
            },
            t0,
        );
        assert_eq!(l.poll(t0 + 10 * S, false), Verdict::Wait, "before hellos");
        assert_eq!(l.poll(t0 + 4 * S, true), Verdict::Wait);
        assert_eq!(l.poll(t0 + 5 * S, true), Verdict::SendEcho);
        assert_eq!(l.poll(t0 + 6 * S, true), Verdict::Wait);
        // An answer (any bytes) forgives the unanswered ones.
        l.heard(t0 + 7 * S);
        assert_eq!(l.poll(t0 + 10 * S, true), Verdict::SendEcho);
        assert_eq!(l.poll(t0 + 15 * S, true), Verdict::SendEcho);
        assert_eq!(l.poll(t0 + 20 * S, true), Verdict::SendEcho);
        assert!(matches!(l.poll(t0 + 25 * S, true), Verdict::Close(m) if m.contains("3 echo")));
    }

    #[test]
    fn a_silent_client_is_closed_after_the_idle_timeout() {
        let t0 = Instant::now();
        let mut l = Liveness::new(Keepalive::Idle(10 * S), t0);
        // Never said hello: no echo, only the timeout.
        assert_eq!(l.poll(t0 + 9 * S, false), Verdict::Wait);
        assert!(matches!(l.poll(t0 + 10 * S, false), Verdict::Close(_)));
    }

    #[test]
    fn a_client_that_answers_the_half_way_echo_stays() {
        let t0 = Instant::now();
        let mut l = Liveness::new(Keepalive::Idle(10 * S), t0);
        assert_eq!(l.poll(t0 + 4 * S, true), Verdict::Wait);
        assert_eq!(l.poll(t0 + 5 * S, true), Verdict::SendEcho);
        assert_eq!(
            l.poll(t0 + 6 * S, true),
            Verdict::Wait,
            "one echo per silence"
        );
        l.heard(t0 + 7 * S);
        assert_eq!(l.poll(t0 + 11 * S, true), Verdict::Wait);
        assert_eq!(l.poll(t0 + 12 * S, true), Verdict::SendEcho);
        assert_eq!(l.poll(t0 + 16 * S, true), Verdict::Wait);
        assert!(matches!(l.poll(t0 + 17 * S, true), Verdict::Close(_)));
    }
}
