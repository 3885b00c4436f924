//! The unlearning methods and every parameter that controls them, as recorded in `unlearn.json`.

use crate::train::LedgerEpochs;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Gradient ascent on the forget set.
    Ga,
    /// Ascent along the gradients recorded in the ledger while training (the seed paper).
    Ledger,
    /// Ascent on the forget set plus descent on the retain set.
    Graddiff,
    /// Negative preference optimisation against the original model.
    Npo,
    /// Rounds of gradient ascent; after each, only the forget records still recognised (loss
    /// below the holdout-calibrated threshold) stay.
    Iterative,
    /// Profile matching, two-sided: each forget record is paired with a never-seen (holdout)
    /// record of similar length, and its token losses are moved — up or down — towards that
    /// record's, rank for rank, until no step lowers the gap. The forget records end up with
    /// the loss distribution of records the model never saw, not past it.
    Profile,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnlearnConfig {
    pub method: Method,
    /// Parameter groups that change (`embedding`, `block:N`, `blocks:A-B`, `final_norm`, `all`).
    pub params: String,
    /// Length of one step in parameter space (the update is `lr · direction/‖direction‖`).
    pub lr: f64,
    /// Hard cap on optimisation steps (over all rounds).
    pub max_steps: usize,
    /// Forget records per step.
    pub batch_size: usize,
    /// Each forget record is driven up to `target_ratio ×` the holdout loss, and no further.
    pub target_ratio: f64,
    /// A step that raises the mean retain loss by more than this many nats per token over its
    /// starting value is undone and the step length halved (absolute: a ratio of two losses
    /// near zero, as on a memorised retain set, is noise).
    pub retain_tolerance: f64,
    /// A step that stops more than this share of the retain answers the original reproduced
    /// (in the watched sample) from being reproduced is undone and the step length halved.
    #[serde(default = "default_retain_answers")]
    pub retain_answers: f64,
    /// A step that overshoots the target by more than this factor is undone and halved.
    pub overshoot: f64,
    /// Halvings allowed before giving up.
    pub max_backoffs: usize,
    /// Profile matching: retain descent steps tried after a step that cost the retain records
    /// too much, before the step is judged (0: none; logs written before repair read as 0).
    #[serde(default)]
    pub repair_steps: usize,
    /// Retain records used to watch the retain loss (a fixed, seeded sample).
    pub retain_eval: usize,
    /// NPO's inverse temperature β.
    pub npo_beta: f64,
    /// Which ledger entries to replay: first-epoch or every epoch's.
    pub ledger_epochs: LedgerEpochs,
    /// Iterative: steps per round and the false-positive rate of the holdout threshold.
    pub round_steps: usize,
    pub recognise_fpr: f64,
    /// Restrict embedding updates to the rows of tokens over-represented in the forget set
    /// (relative frequency at least `row_ratio ×` that in the retain set): the rows of the
    /// forgotten people's names and rare answer pieces, not of shared tokens such as digits.
    pub specific_rows: bool,
    pub row_ratio: f64,
    pub seed: u64,
}

fn default_retain_answers() -> f64 {
    UnlearnConfig::default().retain_answers
}

impl UnlearnConfig {
    /// The retain guard these settings describe.
    pub fn retain_guard(&self) -> super::calibrate::RetainGuard {
        super::calibrate::RetainGuard {
            loss_margin: self.retain_tolerance,
            answers: self.retain_answers,
        }
    }
}

impl Default for UnlearnConfig {
    fn default() -> Self {
        UnlearnConfig {
            method: Method::Profile,
            params: "embedding".into(),
            lr: 1.0,
            max_steps: 80,
            batch_size: 32,
            target_ratio: 1.0,
            // 0.005 nats per token: every retained token keeps 99.5% of its probability on
            // average — on the bundled world (retain loss 0.07-0.085) about the 7% the relative
            // guard allowed, on a memorised retain set (0.03) no longer a wall.
            retain_tolerance: 0.005,
            retain_answers: 0.02,
            overshoot: 1.5,
            max_backoffs: 8,
            // On the tuning world w5 (seed 205) the guard stopped 2 of 80 steps and one repair
            // step was enough both times; three leave room on models that drift further.
            repair_steps: 3,
            retain_eval: 256,
            npo_beta: 0.1,
            ledger_epochs: LedgerEpochs::First,
            round_steps: 20,
            recognise_fpr: 0.05,
            specific_rows: true,
            row_ratio: 30.0,
            seed: 17,
        }
    }
}
