//! Waiting for a state with a deadline, the one way the tests wait: a condition is
//! polled until it holds or the deadline passes, never slept on for a fixed time.
//! Deadlines are generous (a loaded machine is slow, not wrong); the time taken is
//! returned for the test to print, never to assert an upper bound on.

use anyhow::{bail, Result};
use std::time::{Duration, Instant};

/// How often a condition is polled.
const POLL: Duration = Duration::from_millis(20);

/// Polls `probe` until it returns `Some`, at most `within`; fails naming `what`
/// (and the last error of `probe`, if it failed) when the deadline passes.
pub fn wait_for<T>(
    within: Duration,
    what: &str,
    mut probe: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + within;
    loop {
        let outcome = probe();
        match outcome {
            Ok(Some(value)) => return Ok(value),
            Ok(None) if Instant::now() >= deadline => {
                bail!("waited {within:?} for {what}")
            }
            Err(e) if Instant::now() >= deadline => {
                bail!("waited {within:?} for {what}; last error: {e:#}")
            }
            _ => std::thread::sleep(POLL),
        }
    }
}

/// Polls `cond` until it holds, at most `within`; returns how long that took (to
/// print) and fails naming `what` when the deadline passes.
pub fn wait_until(
    within: Duration,
    what: &str,
    mut cond: impl FnMut() -> Result<bool>,
) -> Result<Duration> {
    let start = Instant::now();
    wait_for(within, what, || Ok(cond()?.then(|| start.elapsed())))
}
