//! Per-token quantities of one model on tokenized records, computed in batches by one forward pass
//! each and kept for every later metric and attack: the log-probability of each scored target,
//! whether the teacher-forced argmax hit it, and the Min-K%++ z-score of the target under the
//! model's own next-token distribution; where asked, each record's gradient norm from the same
//! forward pass (the `grad_norm` attack's score). Records are batched by length (the order of
//! the output is the order of the input). This module reads the model; it never changes it.

use crate::data::{Batch, Encoded};
use crate::model::pass::{score_targets, TargetScore};
use crate::model::per_example::scores_and_grad_norms;
use crate::model::Gpt2;
use candle_core::Result;

/// Largest `rows × cols × vocab` of one batch's logits (≈ 64 MiB in f32 per temporary).
const MAX_BATCH_ELEMENTS: usize = 16 << 20;
/// Most records per forward pass.
const MAX_ROWS: usize = 32;

/// Min-K%++ floors the variance of `log p` under the model's distribution here (issue 5).
pub const SIGMA2_FLOOR: f64 = 1e-6;

/// The scored targets of one record, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenScores {
    /// `log p(x_t | x_<t)` of each scored target.
    pub logprobs: Vec<f64>,
    /// Whether the teacher-forced argmax at that position equals the target.
    pub hits: Vec<bool>,
    /// `(log p(x_t) − μ_t) / σ_t`, μ_t and σ_t² the mean and variance of `log p(·)` under the
    /// model's next-token distribution, σ_t² floored at [`SIGMA2_FLOOR`].
    pub z: Vec<f64>,
}

impl TokenScores {
    /// Mean negative log-likelihood of the scored targets.
    pub fn loss(&self) -> f64 {
        mean_nll(&self.logprobs)
    }
}

/// Mean negative log-likelihood of scored targets' log-probs.
pub fn mean_nll(logprobs: &[f64]) -> f64 {
    -logprobs.iter().sum::<f64>() / logprobs.len() as f64
}

/// Groups of input indices, sorted by length, each small enough for one forward pass (the
/// logits of a batch, `rows × len × vocab`, stay under a fixed number of elements).
pub fn length_batches(lens: &[usize], vocab: usize) -> Vec<Vec<usize>> {
    crate::data::batch::length_groups(lens, MAX_ROWS, MAX_BATCH_ELEMENTS / vocab.max(1))
}

/// Scores every record; `progress` is called with the number of records done after each batch.
pub fn score(
    model: &Gpt2,
    records: &[Encoded],
    pad_id: u32,
    progress: &mut dyn FnMut(u64),
) -> Result<Vec<TokenScores>> {
    by_length(model, records, pad_id, progress, |batch, refs| {
        token_scores(refs, &score_targets(model, batch)?)
    })
}

/// What [`score_with_grad_norms`] measures.
pub struct ScoredWithNorms {
    /// Each record's scores, as [`score`] gives them (bit for bit).
    pub scores: Vec<TokenScores>,
    /// Each record's ‖∇ loss‖ on the model's trainable parameters (the `grad_norm` attack's
    /// score).
    pub grad_norms: Vec<f64>,
    /// Seconds the forward passes took (the scoring's share of the work).
    pub forward_seconds: f64,
}

/// [`score`] and each record's gradient norm, one forward pass per batch serving both
/// (`per_example::scores_and_grad_norms`): the model's trainable parameters must be embedding
/// parameters only (`per_example::supported`).
pub fn score_with_grad_norms(
    model: &Gpt2,
    records: &[Encoded],
    pad_id: u32,
    progress: &mut dyn FnMut(u64),
) -> Result<ScoredWithNorms> {
    let mut forward_seconds = 0.0;
    let both = by_length(model, records, pad_id, progress, |batch, refs| {
        let got = scores_and_grad_norms(model, batch)?;
        forward_seconds += got.forward_seconds;
        Ok(token_scores(refs, &got.scores)?
            .into_iter()
            .zip(got.norms)
            .collect())
    })?;
    let (scores, grad_norms) = both.into_iter().unzip();
    Ok(ScoredWithNorms {
        scores,
        grad_norms,
        forward_seconds,
    })
}

/// `each(batch, records)` over the records in [`length_batches`], one result per record of
/// the batch, returned in the input's order.
fn by_length<R>(
    model: &Gpt2,
    records: &[Encoded],
    pad_id: u32,
    progress: &mut dyn FnMut(u64),
    mut each: impl FnMut(&Batch, &[&Encoded]) -> Result<Vec<R>>,
) -> Result<Vec<R>> {
    let lens: Vec<usize> = records.iter().map(|r| r.ids.len()).collect();
    let mut out: Vec<Option<R>> = std::iter::repeat_with(|| None)
        .take(records.len())
        .collect();
    for group in length_batches(&lens, model.config().vocab_size) {
        let refs: Vec<&Encoded> = group.iter().map(|&i| &records[i]).collect();
        let got = each(&Batch::new(&refs, pad_id), &refs)?;
        if got.len() != group.len() {
            candle_core::bail!(
                "{} results for a batch of {} records",
                got.len(),
                group.len()
            );
        }
        for (&i, r) in group.iter().zip(got) {
            out[i] = Some(r);
        }
        progress(group.len() as u64);
    }
    Ok(out.into_iter().flatten().collect())
}

/// Each record's scores from one pass's scored targets (batch order: record by record; target
/// `x[tt]` predicted at position `tt-1`, `tt` from the record's `score_from`).
fn token_scores(records: &[&Encoded], scored: &[TargetScore]) -> Result<Vec<TokenScores>> {
    let want: usize = records
        .iter()
        .map(|r| r.ids.len() - r.score_from.max(1))
        .sum();
    if scored.len() != want {
        candle_core::bail!("{} scored targets for {want} record tokens", scored.len());
    }
    let mut rest = scored;
    let mut out = Vec::with_capacity(records.len());
    for rec in records {
        let (mine, after) = rest.split_at(rec.ids.len() - rec.score_from.max(1));
        rest = after;
        out.push(TokenScores {
            logprobs: mine.iter().map(|s| s.logprob).collect(),
            hits: mine.iter().map(|s| s.hit).collect(),
            z: mine
                .iter()
                .map(|s| (s.logprob - s.mean) / s.var.max(SIGMA2_FLOOR).sqrt())
                .collect(),
        });
    }
    Ok(out)
}
