//! Unlearning: removing the influence of forget records from a trained GPT-2 — by profile
//! matching (the default: each record's token losses moved, up or down, to a never-seen
//! record's) or by calibrated gradient ascent (the seed paper's first-epoch ledger replay and the
//! baselines practitioners compare against: gradient ascent, gradient difference, NPO, iterative
//! rounds) — restricted to chosen parameter groups and stopped when the forget records look like
//! data the model never saw. It changes models; it never imports `certify`, which judges the result independently.

pub mod calibrate;
pub mod engine;
pub mod log;
pub mod method;
pub mod objective;
pub mod rounding;

pub use engine::{unlearn, Direction, Losses, Stepper, TrunkReads, UnlearnInputs, UnlearnOutcome};
pub use log::{UnlearnLog, UNLEARN_LOG_FILE};
pub use method::{Method, UnlearnConfig};
