//! What each method ascends or descends: the step direction over the trainable parameters.
//! Every direction is returned as a *descent* direction `D` (the update is `θ ← θ − lr·D/‖D‖`).

use super::method::Method;
use crate::data::{Batch, Encoded};
use crate::model::gpt2::{add_scaled, KeptPass};
use crate::model::grad::{loss_and_grad, ParamTensors};
use crate::model::pass::{gradient_of, scored_gradient_of, ScoredTarget};
use crate::model::Gpt2;
use candle_core::{Result, Tensor, D};
use std::collections::BTreeMap;

/// Per-record sequence log-likelihood of the scored tokens, `[B]`.
pub fn sequence_logprob(model: &Gpt2, batch: &Batch) -> Result<Tensor> {
    let lp = model.token_logprobs(batch)?;
    let w = batch.weight_tensor(lp.dtype(), lp.device())?;
    (lp * w)?.sum(D::Minus1)
}

/// Each row's mean loss `−Σ w·log p / Σ w` over its scored targets, and `Σ w`.
fn row_losses(scored: &[ScoredTarget], rows: usize) -> (Vec<f64>, Vec<f64>) {
    let (mut nll, mut weight) = (vec![0.0; rows], vec![0.0; rows]);
    for s in scored {
        nll[s.row] -= s.weight * s.logprob;
        weight[s.row] += s.weight;
    }
    let mean = nll.iter().zip(&weight).map(|(n, w)| n / w).collect();
    (mean, weight)
}

/// The derivative, by target log-prob, of minus the mean of the per-record losses of the
/// forget records still below `ceiling` (the holdout level): a record already as unlikely as
/// never-seen data contributes nothing, so ascent is not spent pushing it further past the
/// point of looking unseen ("overexposure"). Zero when every record is above the ceiling.
fn capped_ascent(scored: &[ScoredTarget], rows: usize, ceiling: f64) -> Vec<f64> {
    let (loss, weight) = row_losses(scored, rows);
    let below: Vec<bool> = loss.iter().map(|&l| l < ceiling).collect();
    let n = below.iter().filter(|&&b| b).count().max(1) as f64;
    scored
        .iter()
        .map(|s| {
            if below[s.row] {
                s.weight / (weight[s.row] * n)
            } else {
                0.0
            }
        })
        .collect()
}

/// The derivative, by target log-prob, of NPO's loss `(2/β)·mean_r softplus(β·(s_r − ref_r))`
/// with `s_r` row r's sequence log-likelihood: `(2/B)·σ(β·(s_r − ref_r))·w`.
fn npo(scored: &[ScoredTarget], rows: usize, reference: &[f64], beta: f64) -> Vec<f64> {
    let mut seq = vec![0.0; rows];
    for s in scored {
        seq[s.row] += s.weight * s.logprob;
    }
    let sigma: Vec<f64> = seq
        .iter()
        .zip(reference)
        .map(|(s, r)| 1.0 / (1.0 + (-beta * (s - r)).exp()))
        .collect();
    scored
        .iter()
        .map(|s| 2.0 / rows as f64 * sigma[s.row] * s.weight)
        .collect()
}

/// Adds `g` into the direction `sum` under `name`.
pub fn add_into(sum: &mut BTreeMap<String, Tensor>, name: &str, g: &Tensor) -> Result<()> {
    let acc = match sum.remove(name) {
        Some(a) => (a + g)?,
        None => g.clone(),
    };
    sum.insert(name.to_string(), acc);
    Ok(())
}

/// Adds every part of `g` into the direction `sum` by name.
fn add_all(sum: &mut BTreeMap<String, Tensor>, g: ParamTensors) -> Result<()> {
    for (name, g) in &g {
        add_into(sum, name, g)?;
    }
    Ok(())
}

/// The descent direction of a loss-based method on one forget batch (and, for gradient
/// difference, one retain batch). `reference` holds NPO's per-record sequence log-likelihoods
/// under the original model; `ceiling` is the per-record loss above which a forget record is
/// no longer ascended.
pub fn objective_gradient(
    model: &Gpt2,
    method: Method,
    forget: &Batch,
    retain: Option<&Batch>,
    reference: &[f64],
    beta: f64,
    ceiling: f64,
) -> Result<BTreeMap<String, Tensor>> {
    let rows = forget.rows;
    let up = match method {
        Method::Ga | Method::Iterative | Method::Graddiff => {
            gradient_of(model, forget, |s| capped_ascent(s, rows, ceiling))?
        }
        Method::Npo => gradient_of(model, forget, |s| npo(s, rows, reference, beta))?,
        Method::Ledger | Method::Profile => {
            candle_core::bail!("method {method:?} has its own direction, not this objective")
        }
    };
    let mut sum = BTreeMap::new();
    add_all(&mut sum, up)?;
    if let (Method::Graddiff, Some(r)) = (method, retain) {
        add_all(&mut sum, loss_and_grad(model, r)?.1)?;
    }
    Ok(sum)
}

/// The gradient of the mean loss of `batch` on the trainable parameters, by name.
pub fn loss_gradient(model: &Gpt2, batch: &Batch) -> Result<BTreeMap<String, Tensor>> {
    Ok(loss_and_grad(model, batch)?.1.into_iter().collect())
}

/// ‖D‖, over every parameter of a direction.
pub fn direction_norm(direction: &BTreeMap<String, Tensor>) -> Result<f64> {
    let mut sq = 0.0;
    for d in direction.values() {
        sq += d
            .sqr()?
            .sum_all()?
            .to_dtype(candle_core::DType::F64)?
            .to_scalar::<f64>()?;
    }
    Ok(sq.sqrt())
}

/// `θ ← θ − lr · D/‖D‖` on the trainable parameters; returns ‖D‖.
pub fn apply_step(model: &Gpt2, direction: &BTreeMap<String, Tensor>, lr: f64) -> Result<f64> {
    let norm = direction_norm(direction)?;
    if !(norm.is_finite() && norm > 0.0) {
        return Ok(norm);
    }
    for (name, var) in model.trainable_vars() {
        if let Some(d) = direction.get(name) {
            add_scaled(var, d, -(lr / norm))?;
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
    let s = scored(model, records, pad, size, false)?;
    Ok((s.mean, s.per_record))
}

/// What one pass over a set of records shows: the mean loss over all scored tokens, each
/// record's own mean loss and, when asked for, whether each record's scored tokens are all the
/// model's most likely next tokens (for a question–answer record: the answer is reproduced).
pub struct Scored {
    pub mean: f64,
    pub per_record: Vec<f64>,
    pub reproduced: Vec<bool>,
}

/// [`mean_loss`], with each record's "reproduced" flag when `hits` is set (empty otherwise).
pub fn scored(
    model: &Gpt2,
    records: &[&Encoded],
    pad: u32,
    size: usize,
    hits: bool,
) -> Result<Scored> {
    let mut tally = Tally::new(records.len(), hits);
    let lens: Vec<usize> = records.iter().map(|e| e.ids.len()).collect();
    for group in crate::data::batch::length_groups(&lens, size, usize::MAX) {
        let chunk: Vec<&Encoded> = group.iter().map(|&i| records[i]).collect();
        let batch = Batch::new(&chunk, pad);
        let (lp, h) = if hits {
            let (lp, h) = model.token_logprobs_and_hits(&batch)?;
            (lp, Some(h))
        } else {
            (model.token_logprobs(&batch)?, None)
        };
        tally.add(&group, &batch, &lp, h)?;
    }
    Ok(tally.done())
}

/// [`scored`] with the flags, of a sample scored again and again (the retain records a run
/// watches, after every step): each batch's pass is kept, and [`KeptSample::rescore`] runs only
/// the output layer again, for a run that changes nothing the sample's trunk reads.
pub struct KeptSample {
    n: usize,
    batches: Vec<(Vec<usize>, Batch, KeptPass)>,
}

impl KeptSample {
    /// Scores `records` as [`scored`] does (with the flags, bit for bit), keeping the passes.
    pub fn new(
        model: &Gpt2,
        records: &[&Encoded],
        pad: u32,
        size: usize,
    ) -> Result<(KeptSample, Scored)> {
        let mut tally = Tally::new(records.len(), true);
        let mut batches = Vec::new();
        let lens: Vec<usize> = records.iter().map(|e| e.ids.len()).collect();
        for group in crate::data::batch::length_groups(&lens, size, usize::MAX) {
            let chunk: Vec<&Encoded> = group.iter().map(|&i| records[i]).collect();
            let batch = Batch::new(&chunk, pad);
            let (lp, h, kept) = model.scores_kept(&batch)?;
            tally.add(&group, &batch, &lp, Some(h))?;
            batches.push((group, batch, kept));
        }
        let n = records.len();
        Ok((KeptSample { n, batches }, tally.done()))
    }

    /// The sample scored again under the model's current output layer and final norm, from the
    /// kept trunk outputs: bit for bit [`scored`] while nothing the trunk reads has changed
    /// (the caller's to know).
    pub fn rescore(&mut self, model: &Gpt2) -> Result<Scored> {
        let mut tally = Tally::new(self.n, true);
        for (group, batch, kept) in &mut self.batches {
            let (lp, h) = model.rescore(kept, batch)?;
            tally.add(group, batch, &lp, Some(h))?;
        }
        Ok(tally.done())
    }
}

/// [`Scored`] accumulated batch by batch.
struct Tally {
    per: Vec<f64>,
    reproduced: Vec<bool>,
    total: f64,
    weight: f64,
}

impl Tally {
    fn new(n: usize, hits: bool) -> Tally {
        Tally {
            per: vec![f64::NAN; n],
            reproduced: vec![false; if hits { n } else { 0 }],
            total: 0.0,
            weight: 0.0,
        }
    }

    /// One batch's `[B, T-1]` log-probs `lp` (and its rows' flags) for the records `group`.
    fn add(
        &mut self,
        group: &[usize],
        batch: &Batch,
        lp: &Tensor,
        hits: Option<Vec<bool>>,
    ) -> Result<()> {
        for (&i, h) in group.iter().zip(hits.into_iter().flatten()) {
            self.reproduced[i] = h;
        }
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
            self.per[i] = n / c;
            self.total += n;
            self.weight += c;
        }
        Ok(())
    }

    fn done(self) -> Scored {
        Scored {
            mean: self.total / self.weight.max(1e-12),
            per_record: self.per,
            reproduced: self.reproduced,
        }
    }
}

/// Each record's scored-token losses (negative log-probabilities, in position order), computed
/// in length-sorted batches of at most `size` records, in the order of `records`.
pub fn token_losses(
    model: &Gpt2,
    records: &[&Encoded],
    pad: u32,
    size: usize,
) -> Result<Vec<Vec<f64>>> {
    let mut out = vec![Vec::new(); records.len()];
    let lens: Vec<usize> = records.iter().map(|e| e.ids.len()).collect();
    for group in crate::data::batch::length_groups(&lens, size, usize::MAX) {
        let chunk: Vec<&Encoded> = group.iter().map(|&i| records[i]).collect();
        let batch = Batch::new(&chunk, pad);
        let lp = model
            .token_logprobs(&batch)?
            .to_dtype(candle_core::DType::F64)?
            .flatten_all()?
            .to_vec1::<f64>()?;
        let width = batch.cols - 1;
        for (r, &i) in group.iter().enumerate() {
            out[i] = (0..width)
                .filter(|&p| batch.target_weight[r * width + p] != 0.0)
                .map(|p| -lp[r * width + p])
                .collect();
        }
    }
    Ok(out)
}

/// The targets of one record's tokens under profile matching: its tokens ranked by their current
/// loss receive the matching quantiles of `profile` (a never-seen record's token losses,
/// ascending), so the record's highest-loss token is asked for the profile's highest loss and
/// so on. `current` holds the record's token losses in position order; the targets come back in
/// the same order.
pub fn profile_targets(current: &[f64], profile: &[f64]) -> Vec<f64> {
    let n = current.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| current[a].total_cmp(&current[b]));
    let mut out = vec![0.0; n];
    for (rank, &i) in order.iter().enumerate() {
        out[i] = quantile_sorted(profile, (rank as f64 + 0.5) / n as f64);
    }
    out
}

/// The `q` quantile of an ascending slice, linearly interpolated between order statistics
/// placed at `(k + 0.5) / m` (so a one-element profile is that element everywhere).
fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let m = sorted.len();
    if m == 0 {
        return 0.0;
    }
    let x = (q * m as f64 - 0.5).clamp(0.0, (m - 1) as f64);
    let (lo, frac) = (x.floor() as usize, x - x.floor());
    let hi = (lo + 1).min(m - 1);
    sorted[lo] * (1.0 - frac) + sorted[hi] * frac
}

/// The profile-matching gap of records whose token losses are `current` against their paired
/// `profiles`: the mean squared difference between each token's loss and its target, over all
/// tokens. Zero when every record's token losses are distributed as its never-seen partner's.
pub fn profile_gap(current: &[Vec<f64>], profiles: &[&[f64]]) -> f64 {
    let (mut sum, mut n) = (0.0, 0usize);
    for (c, p) in current.iter().zip(profiles) {
        for (l, t) in c.iter().zip(profile_targets(c, p)) {
            sum += (l - t) * (l - t);
            n += 1;
        }
    }
    sum / n.max(1) as f64
}

/// The gradient of the profile-matching objective on one batch of forget records
/// (`profiles[r]` paired with row `r`): the squared gap between each scored token's loss and
/// its target, summed over the batch's tokens and divided by `total` (the token count of the
/// whole forget set, so that the gradients of several batches add up to the gradient of
/// [`profile_gap`]). Two-sided: a token below its target is pushed up, a token above it is
/// pulled back down. The targets are taken at the current losses and held fixed. Comes back
/// with each row's scored-token losses, in position order, from the same forward pass: bit for
/// bit what [`token_losses`] measures, so that one pass serves the gap and its gradient.
pub fn profile_gradient(
    model: &Gpt2,
    forget: &Batch,
    profiles: &[&[f64]],
    total: usize,
) -> Result<(Vec<Vec<f64>>, ParamTensors)> {
    let (scored, grads) = scored_gradient_of(model, forget, |scored| {
        let mut targets = vec![0.0; scored.len()];
        let mut start = 0;
        while start < scored.len() {
            let row = scored[start].row;
            let end = start + scored[start..].iter().take_while(|s| s.row == row).count();
            let current: Vec<f64> = scored[start..end].iter().map(|s| -s.logprob).collect();
            if let Some(profile) = profiles.get(row) {
                targets[start..end].copy_from_slice(&profile_targets(&current, profile));
            }
            start = end;
        }
        // d/d log p of w·(−log p − t)² / total.
        scored
            .iter()
            .zip(&targets)
            .map(|(s, t)| -2.0 * s.weight * (-s.logprob - t) / total.max(1) as f64)
            .collect()
    })?;
    let mut losses = vec![Vec::new(); forget.rows];
    for s in &scored {
        losses[s.row].push(-s.logprob);
    }
    Ok((losses, grads))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_follow_the_records_own_ranking() {
        // Three tokens, the middle one currently the least likely: it is asked for the
        // profile's highest loss, the first (most likely) for the lowest.
        let t = profile_targets(&[0.1, 0.9, 0.5], &[1.0, 4.0, 9.0]);
        assert_eq!(t, vec![1.0, 9.0, 4.0]);
        // A longer record than its partner reads the partner's quantiles at (k + 0.5) / n,
        // interpolated between the partner's order statistics (placed at 1/4 and 3/4 here) and
        // held at the ends: 1/8 -> 2, 3/8 -> 3, 5/8 -> 5, 7/8 -> 6.
        assert_eq!(
            profile_targets(&[0.0, 1.0, 2.0, 3.0], &[2.0, 6.0]),
            vec![2.0, 3.0, 5.0, 6.0]
        );
        assert_eq!(quantile_sorted(&[5.0], 0.9), 5.0);
    }

    #[test]
    fn gap_is_zero_only_for_a_matched_profile() {
        let profile = [1.0, 2.0, 7.0];
        assert_eq!(profile_gap(&[vec![7.0, 1.0, 2.0]], &[&profile]), 0.0);
        // One token 1 nat short of its target: (1² + 0 + 0) / 3.
        let g = profile_gap(&[vec![6.0, 1.0, 2.0]], &[&profile]);
        assert!((g - 1.0 / 3.0).abs() < 1e-12);
        // Overshooting costs as much as falling short: the gap is two-sided.
        assert_eq!(g, profile_gap(&[vec![8.0, 1.0, 2.0]], &[&profile]));
    }
}
