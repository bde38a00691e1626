//! When a session's periodic work (the audit, the placement sample) first comes
//! and how often it repeats: a phase and a period spread by datapath id, so a
//! thousand sessions that connected in the same second do not all read their
//! switches' tables back in the same second, every period, for ever.

use std::time::Duration;

/// A fixed scramble of the datapath id (splitmix64's finaliser): neighbouring
/// ids land far apart, and a switch keeps its slot across reconnections.
fn scramble(dpid: u64, salt: u64) -> u64 {
    let mut z = dpid ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A fraction in [0, 1) from 16 bits of `bits`.
fn fraction(bits: u64) -> f64 {
    (bits & 0xffff) as f64 / 65536.0
}

/// The delay before the first run and the period after it for work due every
/// `period` on datapath `dpid` (`salt` tells two kinds of work apart). The
/// period is stretched by up to a tenth, so phases that start together drift
/// apart; the first run waits at least half a period (the flows were just read
/// back at the handshake) and at most one and a half.
pub(super) fn staggered(period: Duration, dpid: u64, salt: u64) -> (Duration, Duration) {
    let mix = scramble(dpid, salt);
    let every = period.mul_f64(1.0 + fraction(mix) / 10.0);
    let first = period / 2 + period.mul_f64(fraction(mix >> 16));
    (first, every)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_of_many_switches_spread_over_the_period() {
        let period = Duration::from_secs(30);
        let mut per_second = [0usize; 30];
        for dpid in 1..=1000 {
            let (first, every) = staggered(period, dpid, 1);
            assert!(first >= period / 2 && first < period * 3 / 2);
            assert!(every >= period && every <= period.mul_f64(1.1));
            let slot = usize::try_from((first - period / 2).as_secs()).unwrap_or(29);
            per_second[slot.min(29)] += 1;
        }
        // 1,000 switches over 30 one-second slots: about 33 each, none empty
        // and none holding a crowd.
        assert!(
            per_second.iter().all(|&n| n > 5 && n < 100),
            "{per_second:?}"
        );
    }

    #[test]
    fn a_switch_keeps_its_slot_and_kinds_of_work_differ() {
        let period = Duration::from_secs(30);
        assert_eq!(staggered(period, 7, 1), staggered(period, 7, 1));
        assert_ne!(staggered(period, 7, 1), staggered(period, 7, 2));
    }
}
