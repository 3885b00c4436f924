//! The membership-inference suite: members are the forget records, non-members the holdout
//! records, and every attack turns a record into a score where **higher means more
//! member-like** (so the ROC AUC counts members as positives; 0.5 is chance). Where a paper's
//! score runs the other way (lower loss = member) the evidence stores its negation:
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
//! For each: ROC AUC with DeLong's variance (a normal-approximation interval; DeLong, not a
//! bootstrap), TPR at 1 % and 5 % FPR with Clopper–Pearson intervals, and the ROC curve. This
//! module reads models only to take gradients (the parameter group is made trainable and then
//! frozen again); it never changes their values.

use crate::data::{Batch, Encoded};
use crate::judge::evidence::AttackScores;
use crate::judge::stats::{
    delong, roc_curve, tpr_at_fpr, AucEstimate, RocPoint, StatsError, TprAtFpr,
};
use crate::model::grad::loss_and_grad;
use crate::model::{Gpt2, ParamGroups};
use candle_core::DType;

/// What an attack achieves.
#[derive(Debug, Clone, PartialEq)]
pub struct AttackResult {
    pub auc: AucEstimate,
    pub tpr_at_1pct_fpr: TprAtFpr,
    pub tpr_at_5pct_fpr: TprAtFpr,
    pub curve: Vec<RocPoint>,
}

pub fn run_attack(s: &AttackScores) -> Result<AttackResult, StatsError> {
    Ok(AttackResult {
        auc: delong(&s.members, &s.nonmembers)?,
        tpr_at_1pct_fpr: tpr_at_fpr(&s.members, &s.nonmembers, 0.01)?,
        tpr_at_5pct_fpr: tpr_at_fpr(&s.members, &s.nonmembers, 0.05)?,
        curve: roc_curve(&s.members, &s.nonmembers)?,
    })
}

/// The per-record quantities of one model that the score-based attacks read.
pub struct Side<'a> {
    pub loss: &'a [f64],
    pub zlib_bytes: &'a [usize],
    pub min_k: &'a [f64],
    pub min_k_pp: &'a [f64],
}

/// Score of `attack` for each record of one side; `reference` is the per-record loss under the
/// reference model of a reference attack, `grad_norms` the gradient norms.
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

/// ‖∇ loss(record)‖₂ over the parameters of `params`, one record at a time; the model's
/// trainable set is restored to nothing afterwards.
pub fn grad_norms(
    model: &mut Gpt2,
    records: &[Encoded],
    pad_id: u32,
    params: &ParamGroups,
    progress: &mut dyn FnMut(u64),
) -> candle_core::Result<Vec<f64>> {
    model
        .set_trainable(params)
        .map_err(candle_core::Error::Msg)?;
    let result = (|| {
        let mut out = Vec::with_capacity(records.len());
        for rec in records {
            let (_, grads) = loss_and_grad(model, &Batch::new(&[rec], pad_id))?;
            let mut sq = 0.0;
            for (_, g) in &grads {
                sq += g
                    .to_dtype(DType::F64)?
                    .sqr()?
                    .sum_all()?
                    .to_scalar::<f64>()?;
            }
            out.push(sq.sqrt());
            progress(1);
        }
        Ok(out)
    })();
    model
        .set_trainable(&ParamGroups(Vec::new()))
        .map_err(candle_core::Error::Msg)?;
    result
}
