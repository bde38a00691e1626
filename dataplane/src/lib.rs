//! `scd`, the per-host userspace switch.
