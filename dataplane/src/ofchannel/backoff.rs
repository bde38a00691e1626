//! The delay before each attempt to reach a controller again: it starts at the
//! configured minimum, doubles after each failed attempt up to the maximum, and
//! is drawn at random from the upper half of that step, so that switches cut off
//! together do not all call back at the same instant. Sans-I/O: the caller sleeps
//! and supplies the randomness.

use std::time::Duration;

/// Reconnect delays for one controller.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    /// Delays from `min` doubling to `max` (a `max` below `min` is taken as `min`).
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            step: min,
        }
    }

    /// After a connection was made: the next failure waits `min` again.
    pub fn reset(&mut self) {
        self.step = self.min;
    }

    /// The delay before the next attempt, with `jitter` in `[0, 1)` choosing
    /// where in `[step/2, step]` it falls; the step then doubles up to the max.
    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        let half = self.step / 2;
        let delay = half + half.mul_f64(jitter.clamp(0.0, 1.0));
        self.step = self.step.saturating_mul(2).min(self.max);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_to_the_cap_with_jitter_in_the_upper_half() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(100), ms(800));
        let steps: Vec<Duration> = (0..6).map(|_| b.next_delay(0.999_999)).collect();
        let rounded: Vec<u128> = steps.iter().map(|d| (d.as_micros() + 500) / 1000).collect();
        assert_eq!(rounded, [100, 200, 400, 800, 800, 800]);
        b.reset();
        assert_eq!(b.next_delay(0.0), ms(50));
        assert_eq!(b.next_delay(0.5), ms(150));
        let mut odd = Backoff::new(ms(500), ms(100));
        assert_eq!(odd.next_delay(1.0), ms(500));
        assert_eq!(odd.next_delay(1.0), ms(500));
    }
}
