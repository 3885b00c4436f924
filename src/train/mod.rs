//! Training: the loop that builds the bundled fixture models and the retrained-from-scratch
//! reference, and the first-epoch gradient ledger recorded while it runs. It uses `model` and
//! `data`; it knows nothing of unlearning or certification.

pub mod ledger;
pub mod schedule;
pub mod sgd;
pub mod trainer;

pub use ledger::{Ledger, LedgerEpochs, LedgerRecorder};
pub use trainer::{train, OptimizerConfig, TrainConfig};
