//! OpenFlow durations: whole seconds and the nanoseconds beyond them.

use std::time::Instant;

/// Whole seconds and the nanoseconds beyond them from `since` to `now`, as OpenFlow
/// durations are written.
pub(super) fn duration(since: Instant, now: Instant) -> (u32, u32) {
    let d = now.saturating_duration_since(since);
    (
        u32::try_from(d.as_secs()).unwrap_or(u32::MAX),
        d.subsec_nanos(),
    )
}
