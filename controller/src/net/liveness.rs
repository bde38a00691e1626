//! Whether a switch is still there: the echo schedule of one OpenFlow session and
//! the verdict on its silence, as a small pure state on the session's clock (the
//! time since the session started). It never reads a clock and never touches a
//! socket: the session tells it when it heard from the switch, asks it what is due
//! at a given time, and acts on the answer.

use std::time::Duration;

/// What is due at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Nothing until [`Liveness::next_wake`].
    Wait,
    /// Send an echo request now.
    Echo,
    /// Nothing heard for `silent_for`, at least the timeout: the switch stopped
    /// answering.
    Silent { silent_for: Duration },
}

/// The last time the switch was heard, the oldest question (echo or request) it
/// has not answered since, and the next echo due.
#[derive(Debug, Clone)]
pub(super) struct Liveness {
    every: Duration,
    timeout: Duration,
    last_heard: Duration,
    /// When the oldest question sent since the switch was last heard went out.
    /// Silence only counts while a question is pending: a session that was
    /// itself late (its workers busy elsewhere) asked nothing meanwhile, and the
    /// switch is not judged for that.
    asked: Option<Duration>,
    next_echo: Duration,
}

impl Liveness {
    /// A session that started (and heard the switch) at `now`, sending an echo
    /// every `every` and giving up after `timeout` of silence.
    pub(super) fn new(now: Duration, every: Duration, timeout: Duration) -> Liveness {
        Liveness {
            every,
            timeout,
            last_heard: now,
            asked: None,
            next_echo: now + every,
        }
    }

    /// Something (an echo reply or any other message) arrived at `now`: every
    /// question sent before is answered.
    pub(super) fn heard(&mut self, now: Duration) {
        self.last_heard = self.last_heard.max(now);
        if self.asked.is_some_and(|asked| asked <= now) {
            self.asked = None;
        }
    }

    /// A question (a request whose reply is awaited) went out at `now`.
    pub(super) fn asked(&mut self, now: Duration) {
        self.asked.get_or_insert(now);
    }

    /// How long a question may stay unanswered: all but one echo interval of
    /// the timeout (by default three echoes, the last sent 10 s before).
    fn patience(&self) -> Duration {
        self.timeout.saturating_sub(self.every)
    }

    /// What is due at `now`; an echo is due once per interval, whatever else is
    /// heard meanwhile (its reply also refreshes the tunnels' port states).
    pub(super) fn poll(&mut self, now: Duration) -> Verdict {
        if let Some(silent_for) = self.silent(now) {
            return Verdict::Silent { silent_for };
        }
        if now >= self.next_echo {
            // From now, not from when it was due: a late poll does not bunch echoes.
            self.next_echo = now + self.every;
            self.asked(now);
            return Verdict::Echo;
        }
        Verdict::Wait
    }

    /// How long the switch has been silent at `now`, once that is the timeout or
    /// more and a question has waited the patience or more.
    pub(super) fn silent(&self, now: Duration) -> Option<Duration> {
        let silent_at = self.silent_at()?;
        (now >= silent_at).then(|| now.saturating_sub(self.last_heard))
    }

    /// When the switch, if not heard from meanwhile, is declared silent; never
    /// while no question is pending.
    pub(super) fn silent_at(&self) -> Option<Duration> {
        let asked = self.asked?;
        Some((self.last_heard + self.timeout).max(asked + self.patience()))
    }

    /// When the next echo or the timeout is due, whichever comes first.
    pub(super) fn next_wake(&self) -> Duration {
        self.silent_at()
            .map_or(self.next_echo, |at| at.min(self.next_echo))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn an_answering_switch_gets_an_echo_per_interval_and_stays_alive() {
        let mut l = Liveness::new(s(0), s(5), s(15));
        assert_eq!(l.next_wake(), s(5));
        assert_eq!(l.poll(s(4)), Verdict::Wait);
        for t in (5..100).step_by(5) {
            assert_eq!(l.poll(s(t)), Verdict::Echo, "at {t}s");
            assert_eq!(l.poll(s(t)), Verdict::Wait, "once per interval");
            l.heard(s(t) + Duration::from_millis(2));
            assert_eq!(l.next_wake(), s(t + 5));
        }
    }

    #[test]
    fn a_silent_switch_is_declared_after_the_timeout_and_not_before() {
        let mut l = Liveness::new(s(0), s(5), s(15));
        l.heard(s(3));
        let mut verdicts = Vec::new();
        let mut t = s(0);
        while t <= s(20) {
            verdicts.push((t.as_secs(), l.poll(t)));
            t += s(1);
        }
        let first_silent = verdicts
            .iter()
            .find(|(_, v)| matches!(v, Verdict::Silent { .. }))
            .copied();
        assert_eq!(
            first_silent,
            Some((18, Verdict::Silent { silent_for: s(15) })),
            "15 s after it was last heard, at 3 s"
        );
        let echoes: Vec<u64> = verdicts
            .iter()
            .filter(|(_, v)| *v == Verdict::Echo)
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(echoes, [5, 10, 15], "echoes went out meanwhile");
        assert_eq!(
            l.next_wake(),
            s(18),
            "the timeout comes before the next echo"
        );
        assert_eq!(
            (l.silent_at(), l.silent(s(17)), l.silent(s(19))),
            (Some(s(18)), None, Some(s(16)))
        );
    }

    #[test]
    fn hearing_anything_postpones_the_verdict_and_old_news_changes_nothing() {
        let mut l = Liveness::new(s(0), s(5), s(15));
        l.heard(s(14));
        assert_eq!(l.poll(s(20)), Verdict::Echo);
        assert_eq!(l.poll(s(24)), Verdict::Wait);
        // 15 s after it was heard, but the echo of 20 s has waited only 9 s.
        assert_eq!(l.silent(s(29)), None);
        l.heard(s(10));
        assert_eq!(l.poll(s(30)), Verdict::Silent { silent_for: s(16) });
    }

    #[test]
    fn a_late_session_asks_before_it_judges() {
        // Heard at 0, then the session itself was not run until 40 s: it sent no
        // echo meanwhile, so the switch had nothing to answer.
        let mut l = Liveness::new(s(0), s(5), s(15));
        assert_eq!(l.silent_at(), None, "nothing asked yet");
        assert_eq!(l.poll(s(40)), Verdict::Echo, "asked first");
        assert_eq!(l.poll(s(44)), Verdict::Wait, "the echo has 10 s");
        assert_eq!(l.silent_at(), Some(s(50)));
        l.heard(s(41));
        assert_eq!(l.poll(s(50)), Verdict::Echo, "answered: alive");
        // A request awaited counts as a question as well.
        let mut l = Liveness::new(s(0), s(5), s(15));
        l.asked(s(40));
        assert_eq!(l.silent(s(49)), None);
        assert_eq!(l.silent(s(50)), Some(s(50)));
    }
}
