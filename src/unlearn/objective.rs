//! What each method ascends or descends: the step direction over the trainable parameters.
//! Every direction is returned as a *descent* direction `D` (the update is `θ ← θ − lr·D/‖D‖`).

use super::method::Method;
use crate::data::{Batch, Encoded};
use crate::model::Gpt2;
use candle_core::{Result, Tensor, D};
use std::collections::BTreeMap;

/// Per-record sequence log-likelihood of the scored tokens, `[B]`.
pub fn sequence_logprob(model: &Gpt2, batch: &Batch) -> Result<Tensor> {
    let lp = model.token_logprobs(batch)?;
    let w = batch.weight_tensor(lp.dtype(), lp.device())?;
    (lp * w)?.sum(D::Minus1)
}

/// Minus the mean of the per-record losses of the forget records still below `ceiling` (the
/// holdout level): a record already as unlikely as never-seen data contributes nothing, so
/// ascent is not spent pushing it further past the point of looking unseen ("overexposure").
/// Zero (no direction) when every record of the batch is above the ceiling.
pub fn capped_ascent(model: &Gpt2, forget: &Batch, ceiling: f64) -> Result<Tensor> {
    let per = model.record_losses(forget)?;
    let below = per.detach().lt(ceiling)?.to_dtype(per.dtype())?;
    let n = below
        .sum_all()?
        .to_dtype(candle_core::DType::F64)?
        .to_scalar::<f64>()?;
    (per * below)?.sum_all()? * (-1.0 / n.max(1.0))
}

/// The objective whose gradient is the descent direction, for the loss-based methods.
/// `reference` holds NPO's per-record sequence log-likelihoods under the original model;
/// `ceiling` is the per-record loss above which a forget record is no longer ascended.
pub fn objective(
    model: &Gpt2,
    method: Method,
    forget: &Batch,
    retain: Option<&Batch>,
    reference: &[f64],
    beta: f64,
    ceiling: f64,
) -> Result<Tensor> {
    match method {
        Method::Ga | Method::Iterative => capped_ascent(model, forget, ceiling),
        Method::Graddiff => {
            let up = capped_ascent(model, forget, ceiling)?;
            match retain {
                Some(r) => up + model.loss(r)?,
                None => Ok(up),
            }
        }
        Method::Npo => {
            let s = sequence_logprob(model, forget)?;
            let r = Tensor::from_slice(reference, s.dims(), s.device())?.to_dtype(s.dtype())?;
            let x = ((s - r)? * beta)?;
            // softplus(x) = max(x, 0) + log(1 + exp(−|x|)), stable for large |x|.
            let sp = (x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
            sp.mean_all()? * (2.0 / beta)
        }
        Method::Ledger => {
            candle_core::bail!("the ledger method has a fixed direction, not an objective")
        }
    }
}

/// The gradient of `loss` on the trainable parameters, by name (zeros where it does not reach).
pub fn gradient(model: &Gpt2, loss: &Tensor) -> Result<BTreeMap<String, Tensor>> {
    let grads = loss.backward()?;
    let mut out = BTreeMap::new();
    for (name, var) in model.trainable_vars() {
        let g = match grads.get(var.as_tensor()) {
            Some(g) => g.detach(),
            None => var.as_tensor().zeros_like()?,
        };
        out.insert(name.to_string(), g);
    }
    Ok(out)
}

/// `θ ← θ − lr · D/‖D‖` on the trainable parameters; returns ‖D‖.
pub fn apply_step(model: &Gpt2, direction: &BTreeMap<String, Tensor>, lr: f64) -> Result<f64> {
    let mut sq = 0.0;
    for d in direction.values() {
        sq += d
            .sqr()?
            .sum_all()?
            .to_dtype(candle_core::DType::F64)?
            .to_scalar::<f64>()?;
    }
    let norm = sq.sqrt();
    if !(norm.is_finite() && norm > 0.0) {
        return Ok(norm);
    }
    for (name, var) in model.trainable_vars() {
        if let Some(d) = direction.get(name) {
            var.set(&(var.as_tensor() - (d * (lr / norm))?)?)?;
        }
    }
    Ok(norm)
}

/// Mean loss over all scored tokens of `records` (the weighting of [`Gpt2::loss`]), computed in
/// length-sorted batches of at most `size` records, and each record's own mean loss (in the
/// order of `records`).
pub fn mean_loss(
    model: &Gpt2,
    records: &[&Encoded],
    pad: u32,
    size: usize,
) -> Result<(f64, Vec<f64>)> {
    let mut per = vec![f64::NAN; records.len()];
    let (mut total, mut weight) = (0.0, 0.0);
    let lens: Vec<usize> = records.iter().map(|e| e.ids.len()).collect();
    for group in crate::data::batch::length_groups(&lens, size, usize::MAX) {
        let chunk: Vec<&Encoded> = group.iter().map(|&i| records[i]).collect();
        let batch = Batch::new(&chunk, pad);
        let lp = model.token_logprobs(&batch)?;
        let w = batch.weight_tensor(lp.dtype(), lp.device())?;
        let nll = (lp * &w)?
            .neg()?
            .sum(D::Minus1)?
            .to_dtype(candle_core::DType::F64)?
            .to_vec1::<f64>()?;
        let counts = w
            .sum(D::Minus1)?
            .to_dtype(candle_core::DType::F64)?
            .to_vec1::<f64>()?;
        for ((&i, n), c) in group.iter().zip(&nll).zip(&counts) {
            per[i] = n / c;
            total += n;
            weight += c;
        }
    }
    Ok((total / weight.max(1e-12), per))
}
