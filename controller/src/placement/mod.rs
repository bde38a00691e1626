//! The placement engine: which cloud each VM should run in, from measured client
//! traffic and latency ("follow the sun").
//!
//! [`plan`] is a pure function of the VMs' knobs and current clouds, the
//! [`Measurements`], the engine's [`EngineConfig`] and the clock; it returns one
//! [`Decision`] per VM with the numbers and the reason behind it. Applying a decision
//! (the migration procedure) is the caller's business; this module never does I/O.
//!
//! The model, in short (the full text is `docs/placement.md`):
//! - Clients enter the overlay at a cloud (their *region*); the latency they see at
//!   a candidate cloud is the measured latency between the two clouds. A VM's
//!   expected latency at a cloud is the mean over regions weighted by forecast
//!   traffic (exponentially weighted recent rates).
//! - The *score* of a cloud is that latency, floored at the VM's latency target
//!   (being faster than the target is worth nothing), plus an optional price
//!   penalty. Clouds whose scores are within `tie_ms` are equal; the current one wins
//!   a tie, then the cheapest.
//! - A move costs the time to copy RAM and disk over the measured bandwidth plus the
//!   expected downtime. The *gain* is the score difference times the traffic over the
//!   horizon left once the move is done; the *cost* charges the traffic for the
//!   slowdown during the copy and the stall of the downtime. Both are in
//!   latency-weighted traffic (ms × bytes, shown as ms·GB).
//! - Hysteresis: a VM moves only when the gain beats the cost by `gain_margin`, the
//!   score improves by at least `min_improvement_ms` and `min_improvement_ratio`, and
//!   it has stayed `min_dwell_s` since its last move, so it never ping-pongs.
//! - Budget: at most `max_migrations_per_day` moves of one VM, and
//!   `max_fleet_migrations_per_vm_day` × VMs moves of the fleet, in any 24 hours. A
//!   move the rules above allow is made only while the budgets have room, and only
//!   if the day ahead (forecast from the same hours a season ago) is served better
//!   by spending a move now than by keeping it for a later, larger gain: a small
//!   dynamic program over the day's slots, with the budget each slot has left as old
//!   moves leave the window. The same plans share the fleet's budget out among the
//!   VMs (a knapsack), and may send a VM to a cloud between two regions' daytimes
//!   rather than the one best right now.

mod budget;
mod cost;
mod day_ahead;
mod decision;
mod plan;
mod site;
mod table;
#[cfg(test)]
mod tests;

pub use decision::{Decision, Why};
pub use plan::plan;
pub use site::{candidate_clouds, sites, Snapshot, VmSite};
pub use table::table;
