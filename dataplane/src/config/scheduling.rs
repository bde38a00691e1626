//! The `[scheduling]` section: the priorities of `scd`'s threads (see
//! [`crate::scheduling`]), validated here.

use super::ConfigError;
use crate::scheduling::{
    ControlPolicy, ForwardingPolicy, Scheduling, MAX_BUSY_POLL_US, MAX_WORKERS, NICE_RANGE,
};
use serde::Deserialize;
use std::ops::Range;
use toml::Spanned;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScheduling {
    control_policy: Option<Spanned<String>>,
    control_nice: Option<Spanned<i32>>,
    forwarding_nice: Option<Spanned<i32>>,
    forwarding_policy: Option<Spanned<String>>,
    busy_poll_us: Option<Spanned<u32>>,
    workers: Option<Spanned<usize>>,
}

type Invalid<'a> = dyn Fn(&Range<usize>, &str, String) -> ConfigError + 'a;

/// Validates `[scheduling]`; what it leaves out keeps its default.
pub(super) fn parse(raw: &RawScheduling, invalid: &Invalid<'_>) -> Result<Scheduling, ConfigError> {
    let default = Scheduling::default();
    let control_policy = match &raw.control_policy {
        None => default.control_policy,
        Some(text) => ControlPolicy::parse(text.get_ref()).ok_or_else(|| {
            invalid(
                &text.span(),
                "scheduling.control_policy",
                format!("`{}` is not one of normal, batch, idle", text.get_ref()),
            )
        })?,
    };
    let forwarding_policy = match &raw.forwarding_policy {
        None => default.forwarding_policy,
        Some(text) => ForwardingPolicy::parse(text.get_ref()).ok_or_else(|| {
            invalid(
                &text.span(),
                "scheduling.forwarding_policy",
                format!("`{}` is not one of normal, fifo", text.get_ref()),
            )
        })?,
    };
    let nice = |value: &Option<Spanned<i32>>, field: &str, default: i32| match value {
        None => Ok(default),
        Some(v) if NICE_RANGE.contains(v.get_ref()) => Ok(*v.get_ref()),
        Some(v) => Err(invalid(
            &v.span(),
            field,
            format!("{} is not a nice value (-20 to 19)", v.get_ref()),
        )),
    };
    let busy_poll_us = match &raw.busy_poll_us {
        None => default.busy_poll_us,
        Some(v) if *v.get_ref() <= MAX_BUSY_POLL_US => *v.get_ref(),
        Some(v) => {
            return Err(invalid(
                &v.span(),
                "scheduling.busy_poll_us",
                format!(
                    "{} is over the longest window ({MAX_BUSY_POLL_US} µs)",
                    v.get_ref()
                ),
            ))
        }
    };
    let workers = match &raw.workers {
        None => default.workers,
        Some(v) if (1..=MAX_WORKERS).contains(v.get_ref()) => *v.get_ref(),
        Some(v) => {
            return Err(invalid(
                &v.span(),
                "scheduling.workers",
                format!(
                    "{} is not a number of forwarding workers (1 to {MAX_WORKERS})",
                    v.get_ref()
                ),
            ))
        }
    };
    Ok(Scheduling {
        busy_poll_us,
        workers,
        control_policy,
        control_nice: nice(
            &raw.control_nice,
            "scheduling.control_nice",
            default.control_nice,
        )?,
        forwarding_nice: nice(
            &raw.forwarding_nice,
            "scheduling.forwarding_nice",
            default.forwarding_nice,
        )?,
        forwarding_policy,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::HostConfig;
    use crate::scheduling::{ControlPolicy, ForwardingPolicy, Scheduling};
    use std::path::Path;

    const BASE: &str = "datapath_id = 1\n[overlay]\nprefix = \"100.64.0.0/10\"\ngateway_mac = \"02:5c:00:00:00:01\"\n";

    fn parsed(section: &str) -> Result<Scheduling, String> {
        HostConfig::parse(&format!("{BASE}{section}"), Path::new("h.toml"))
            .map(|c| c.scheduling)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_then_each_field_then_errors_with_their_line() {
        assert_eq!(parsed(""), Ok(Scheduling::default()));
        assert_eq!(
            parsed("[scheduling]\ncontrol_policy = \"idle\"\ncontrol_nice = 19\nforwarding_nice = -5\nforwarding_policy = \"fifo\"\nbusy_poll_us = 200\nworkers = 4\n"),
            Ok(Scheduling {
                busy_poll_us: 200,
                workers: 4,
                control_policy: ControlPolicy::Idle,
                control_nice: 19,
                forwarding_nice: -5,
                forwarding_policy: ForwardingPolicy::Fifo,
            })
        );
        assert_eq!(
            parsed("[scheduling]\ncontrol_policy = \"fifo\"\n"),
            Err(
                "h.toml:6: `scheduling.control_policy`: `fifo` is not one of normal, batch, idle"
                    .into()
            )
        );
        assert_eq!(
            parsed("[scheduling]\nbusy_poll_us = 200000\n"),
            Err(
                "h.toml:6: `scheduling.busy_poll_us`: 200000 is over the longest window (100000 µs)"
                    .into()
            )
        );
        assert_eq!(
            parsed("[scheduling]\nworkers = 0\n"),
            Err(
                "h.toml:6: `scheduling.workers`: 0 is not a number of forwarding workers (1 to 64)"
                    .into()
            )
        );
        assert_eq!(
            parsed("[scheduling]\ncontrol_nice = 20\n"),
            Err("h.toml:6: `scheduling.control_nice`: 20 is not a nice value (-20 to 19)".into())
        );
    }
}
