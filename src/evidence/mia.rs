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
//! frozen again); it never changes their values. Gradient norms of the embedding group come a
//! batch at a time from one backward pass (`model::per_example`), other groups' one record at
//! a time.

use super::scoring::length_batches;
use crate::data::{Batch, Encoded};
use crate::judge::evidence::AttackScores;
use crate::judge::stats::{
    delong, roc_curve, tpr_at_fpr, AucEstimate, RocPoint, StatsError, TprAtFpr,
};
use crate::model::grad::loss_and_grad;
use crate::model::per_example;
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

/// ‖∇ loss(record)‖₂ over the parameters of `params`; the model's trainable set is restored to
/// nothing afterwards. Embedding parameters (the default group) are done a batch at a time,
/// one backward pass per batch (`model::per_example`); any other group one record at a time.
pub fn grad_norms(
    model: &mut Gpt2,
    records: &[Encoded],
    pad_id: u32,
    params: &ParamGroups,
    progress: &mut dyn FnMut(u64),
) -> candle_core::Result<Vec<f64>> {
    with_trainable(model, params, |model| {
        if !per_example::supported(model) {
            return each_record(model, records, pad_id, progress);
        }
        let lens: Vec<usize> = records.iter().map(|r| r.ids.len()).collect();
        let mut out = vec![0.0; records.len()];
        for group in length_batches(&lens, model.config().vocab_size) {
            let refs: Vec<&Encoded> = group.iter().map(|&i| &records[i]).collect();
            let norms = per_example::grad_norms(model, &Batch::new(&refs, pad_id))?;
            for (&i, g) in group.iter().zip(norms) {
                out[i] = g;
            }
            progress(group.len() as u64);
        }
        Ok(out)
    })
}

/// [`grad_norms`] by one backward pass per record, whatever the group (the reference the
/// batched path is tested against).
pub fn grad_norms_per_record(
    model: &mut Gpt2,
    records: &[Encoded],
    pad_id: u32,
    params: &ParamGroups,
    progress: &mut dyn FnMut(u64),
) -> candle_core::Result<Vec<f64>> {
    with_trainable(model, params, |model| {
        each_record(model, records, pad_id, progress)
    })
}

/// Runs `f` with exactly `params` trainable, then freezes everything again.
fn with_trainable<T>(
    model: &mut Gpt2,
    params: &ParamGroups,
    f: impl FnOnce(&Gpt2) -> candle_core::Result<T>,
) -> candle_core::Result<T> {
    model
        .set_trainable(params)
        .map_err(candle_core::Error::Msg)?;
    let result = f(model);
    model
        .set_trainable(&ParamGroups(Vec::new()))
        .map_err(candle_core::Error::Msg)?;
    result
}

fn each_record(
    model: &Gpt2,
    records: &[Encoded],
    pad_id: u32,
    progress: &mut dyn FnMut(u64),
) -> candle_core::Result<Vec<f64>> {
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
}
