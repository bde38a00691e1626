//! `scd`: the switch daemon.
fn main() {}
