//! What the engine decides for one VM and why: the plain output types of
//! [`super::plan`], shown by `scc placement plan` and the API.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why the engine decided what it did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum Why {
    /// Too little traffic to tell where its clients are.
    Idle,
    /// A latency needed to compare clouds was never measured.
    Unmeasured {
        /// Client region.
        region: String,
        /// Cloud.
        cloud: String,
    },
    /// No allowed cloud could be scored.
    NoCandidate,
    /// It already runs in the best cloud (or one as good).
    AlreadyBest,
    /// It moved too recently.
    Dwell {
        /// Seconds since the last move.
        since_s: f64,
        /// Seconds it must stay.
        min_s: f64,
    },
    /// The improvement is smaller than the hysteresis asks.
    SmallImprovement {
        /// Score improvement, ms.
        improvement_ms: f64,
        /// Least improvement worth a move, ms.
        needed_ms: f64,
    },
    /// The move would not finish within the horizon.
    MoveTooLong {
        /// Seconds the move takes.
        move_s: f64,
    },
    /// The gain does not beat the cost by the margin.
    CostExceedsGain,
    /// The fleet used its migration budget: as many moves of all VMs in the last 24
    /// hours as allowed.
    FleetBudgetSpent {
        /// Moves of all VMs in the last 24 hours.
        moves: usize,
        /// The fleet's budget.
        max: usize,
    },
    /// It used its migration budget: as many moves in the last 24 hours as allowed.
    BudgetSpent {
        /// Moves in the last 24 hours.
        moves: u32,
        /// The budget.
        max: u32,
    },
    /// The day ahead (forecast from a season ago) is served better keeping a move
    /// of the budget for later than spending it now.
    BudgetKeptForLater {
        /// Moves in the last 24 hours.
        moves: u32,
        /// The budget.
        max: u32,
        /// How much worse moving now serves the day ahead, ms·GB of client traffic.
        worse_by: f64,
    },
    /// Move: the gain beats the cost by the margin.
    Gain,
    /// Move: its cloud is not one it may use.
    NotAllowed,
    /// Move, to a cloud the present measurements rank below another: the day ahead,
    /// within the migration budget, is served best from there (the gain still beats
    /// the cost by the margin).
    BudgetPlan {
        /// The cloud best right now.
        instead_of: String,
    },
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::Idle => write!(f, "idle: too little traffic"),
            Why::Unmeasured { region, cloud } => {
                write!(f, "no latency measured between {region} and {cloud}")
            }
            Why::NoCandidate => write!(f, "no allowed cloud can be scored"),
            Why::AlreadyBest => write!(f, "already in the best cloud"),
            Why::Dwell { since_s, min_s } => write!(
                f,
                "moved {:.0} min ago, stays at least {:.0} min",
                since_s / 60.0,
                min_s / 60.0
            ),
            Why::SmallImprovement {
                improvement_ms,
                needed_ms,
            } => write!(
                f,
                "improves {improvement_ms:.1} ms, hysteresis needs {needed_ms:.1} ms"
            ),
            Why::MoveTooLong { move_s } => {
                write!(f, "the move takes {move_s:.0} s, longer than the horizon")
            }
            Why::CostExceedsGain => write!(f, "gain does not beat cost by the margin"),
            Why::FleetBudgetSpent { moves, max } => {
                write!(f, "the fleet moved {moves} times in 24 h, budget {max}")
            }
            Why::BudgetSpent { moves, max } => {
                write!(f, "moved {moves} times in 24 h, budget {max}")
            }
            Why::BudgetKeptForLater {
                moves,
                max,
                worse_by,
            } => write!(
                f,
                "keeps move {} of {max} in 24 h for later: the day ahead is {worse_by:.3} ms·GB worse moving now",
                moves + 1
            ),
            Why::Gain => write!(f, "migrate: gain beats cost by the margin"),
            Why::NotAllowed => write!(f, "migrate: current cloud is not allowed"),
            Why::BudgetPlan { instead_of } => write!(
                f,
                "migrate: gain beats cost by the margin, and within the budget the day ahead is served best here, not from {instead_of}"
            ),
        }
    }
}

/// The engine's decision for one VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// VM name.
    pub vm: String,
    /// The cloud it runs in now.
    pub now: String,
    /// The best allowed cloud (equal to `now` when it stays for lack of a better one).
    pub best: String,
    /// Whether to migrate to `best`.
    pub migrate: bool,
    /// Expected client latency where it runs, ms (traffic-weighted).
    pub latency_now_ms: Option<f64>,
    /// Expected client latency at `best`, ms.
    pub latency_best_ms: Option<f64>,
    /// Gain of moving over the horizon, ms·GB of client traffic.
    pub gain: f64,
    /// Cost of moving, ms·GB of client traffic.
    pub cost: f64,
    /// Seconds the move takes (copy plus downtime).
    pub move_s: f64,
    /// Why.
    pub why: Why,
}
