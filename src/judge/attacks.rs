//! The membership-inference attacks' scores, from per-record measurements. Members are the
//! forget records, non-members the holdout records, and every attack turns a record into a
//! score where **higher means more member-like** (so the ROC AUC counts members as positives; 0.5
//! is chance). Where a paper's score runs the other way (lower loss = member) the evidence stores
//! its negation:
//!
//! | attack | score | source |
//! |---|---|---|
//! | `loss` | −mean NLL | Yeom et al. 2018 |
//! | `zlib` | −mean NLL / zlib bytes of the scored text | Carlini et al. 2021 |
//! | `min_k` | mean of the lowest 20 % token log-probs | Shi et al. 2024 (Min-K% Prob) |
//! | `min_k_pp` | mean of the lowest 20 % z-scores, z = (log p − μ)/σ, σ² ≥ 1e-6 (issue 5's −score) | Zhang et al. 2024 (Min-K%++) |
//! | `ref_original` | NLL under the original − NLL under the target | reference attack, Carlini et al. 2021 |
//! | `ref_reference` | NLL under the reference − NLL under the target | same, against the retrained model |
//! | `grad_norm` | −‖∇ loss‖ over the chosen parameter group | Maini et al. 2024 / OpenUnlearning |
//!
//! This module is arithmetic on what measuring recorded; the per-record quantities themselves
//! (losses, Min-K% scores, gradient norms) are measured by `crate::evidence`. What is derived
//! from the scores (AUCs, TPRs, curves) is `derive`'s.

/// The per-record quantities of one model that the score-based attacks read.
pub struct Side<'a> {
    pub loss: &'a [f64],
    pub zlib_bytes: &'a [usize],
    pub min_k: &'a [f64],
    pub min_k_pp: &'a [f64],
}

/// Score of `attack` for each record of one side; `reference` is the per-record loss under the
/// reference model of a reference attack, `grad_norms` the gradient norms. `None` when the
/// attack needs one of them and it was not given, or the attack is unknown.
pub fn scores(
    attack: &str,
    side: &Side,
    reference: Option<&[f64]>,
    grad_norms: Option<&[f64]>,
) -> Option<Vec<f64>> {
    let loss = side.loss;
    Some(match attack {
        "loss" => loss.iter().map(|l| -l).collect(),
        "zlib" => loss
            .iter()
            .zip(side.zlib_bytes)
            .map(|(l, z)| -l / (*z).max(1) as f64)
            .collect(),
        "min_k" => side.min_k.to_vec(),
        "min_k_pp" => side.min_k_pp.to_vec(),
        "ref_original" | "ref_reference" => {
            let r = reference?;
            r.iter().zip(loss).map(|(r, l)| r - l).collect()
        }
        "grad_norm" => grad_norms?.iter().map(|g| -g).collect(),
        _ => return None,
    })
}
