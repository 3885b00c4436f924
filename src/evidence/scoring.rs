//! Per-token quantities of one model on tokenized records, computed in batches by one forward pass
//! each and kept for every later metric and attack: the log-probability of each scored target,
//! whether the teacher-forced argmax hit it, and the Min-K%++ z-score of the target under the
//! model's own next-token distribution. Records are batched by length (the order of the output
//! is the order of the input). This module reads the model; it never changes it.

use crate::data::{Batch, Encoded};
use crate::model::Gpt2;
use candle_core::{DType, Result, Tensor, D};

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
        -self.logprobs.iter().sum::<f64>() / self.logprobs.len() as f64
    }
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
    let lens: Vec<usize> = records.iter().map(|r| r.ids.len()).collect();
    let mut out: Vec<Option<TokenScores>> = vec![None; records.len()];
    for group in length_batches(&lens, model.config().vocab_size) {
        let refs: Vec<&Encoded> = group.iter().map(|&i| &records[i]).collect();
        let scored = score_batch(model, &Batch::new(&refs, pad_id), &refs)?;
        for (i, s) in group.iter().zip(scored) {
            out[*i] = Some(s);
        }
        progress(group.len() as u64);
    }
    Ok(out.into_iter().flatten().collect())
}

fn score_batch(model: &Gpt2, batch: &Batch, records: &[&Encoded]) -> Result<Vec<TokenScores>> {
    let (ids, att) = model.batch_tensors(batch)?;
    let t = batch.cols;
    // Only the scored positions go through the output layer and the vocabulary-wide softmax
    // statistics: target x[tt] is predicted at position tt-1.
    let mut rows = Vec::new();
    let mut targets = Vec::new();
    for (r, rec) in records.iter().enumerate() {
        for tt in rec.score_from.max(1)..rec.ids.len() {
            rows.push((r * t + tt - 1) as u32);
            targets.push(rec.ids[tt]);
        }
    }
    let dev = model.device();
    let n = rows.len();
    let picked = model.logits_at(&ids, &att, &rows)?;
    let lsm = candle_nn::ops::log_softmax(&picked, D::Minus1)?;
    let p = lsm.exp()?;
    let mu = (&p * &lsm)?.sum_keepdim(D::Minus1)?;
    let var = (&p * lsm.broadcast_sub(&mu)?.sqr()?)?.sum(D::Minus1)?;
    let target_ids = Tensor::from_vec(targets.clone(), (n, 1), dev)?;
    let target_lp = lsm.gather(&target_ids, 1)?.squeeze(1)?;
    let argmax = lsm.argmax(D::Minus1)?.to_vec1::<u32>()?;
    let f64s = |x: Tensor| x.to_dtype(DType::F64)?.to_vec1::<f64>();
    let (lp, mu, var) = (f64s(target_lp)?, f64s(mu.squeeze(1)?)?, f64s(var)?);
    let mut out = Vec::with_capacity(records.len());
    let mut k = 0;
    for rec in records {
        let m = rec.ids.len() - rec.score_from.max(1);
        let range = k..k + m;
        k += m;
        out.push(TokenScores {
            logprobs: lp[range.clone()].to_vec(),
            hits: range.clone().map(|i| argmax[i] == targets[i]).collect(),
            z: range
                .map(|i| (lp[i] - mu[i]) / var[i].max(SIGMA2_FLOOR).sqrt())
                .collect(),
        });
    }
    Ok(out)
}
