//! The hand-written pass: every family's forward and backward over plain buffers, one
//! description for float32 (training, unlearning, scoring, decoding), float64 (exact gradients)
//! and dual numbers (exact Hessian-vector products: [`loss_grad_hvp`] for one, [`Linearized`]
//! for many at one point); lethe has no other.
//! The model's parameters are read in place from their candle storage; gradients, logits and
//! hidden states come back as candle tensors. A caller runs [`Forward::run`], reads the target log-probs, and asks for
//! the gradient of any weighted sum of them ([`Forward::gradient`], [`gradient_of`]), so that a
//! mean loss, per-record losses, a capped ascent or NPO's weights are all one backward.
//! This module owns that interface; the layers are `decoder`'s, cached decoding `cache`'s, the
//! arithmetic `rows`', `float`'s, `exp`'s and `tangent`'s. It knows nothing of what the
//! derivatives are for.

mod cache;
mod decoder;
mod exp;
mod float;
mod linearized;
mod primal;
mod rows;
mod tangent;

pub use cache::Cache;
pub use float::{Float, Real};
pub use linearized::Linearized;

use super::params::ParamTensors;
use super::Gpt2;
use crate::data::Batch;
use candle_core::backend::BackendStorage;
use candle_core::{bail, DType, Result, Storage, Tensor};
use decoder::{Keep, Net, Tape, Target};

/// Calls the generic function `$f::<T>($args)` with `T` the model's float (float32 or
/// float64); `$what` names the work in the error for any other.
macro_rules! in_model_float {
    ($model:expr, $what:literal, $f:ident($($arg:expr),*)) => {
        match $model.dtype() {
            DType::F32 => $f::<f32>($($arg),*),
            DType::F64 => $f::<f64>($($arg),*),
            other => bail!(concat!($what, " runs in float32 or float64, not {:?}"), other),
        }
    };
}
pub(super) use in_model_float;

/// A forward pass over a batch and what it kept: everything a backward needs
/// ([`Forward::run`]) or the scores alone ([`Forward::score`], [`Forward::logprobs_only`]).
pub struct Forward<T> {
    tape: Tape<T>,
    keep: Keep,
}

impl<T: Real> Forward<T> {
    /// Runs the model over `batch`, scoring the targets the batch weights (non-zero weight),
    /// and keeps what a backward needs.
    pub fn run(model: &Gpt2, batch: &Batch) -> Result<Forward<T>> {
        Self::pass(model, batch, Keep::Backward)
    }

    /// [`Forward::run`] for scoring alone: each block's activations are dropped as soon as
    /// the next block has them, each scored position's log-prob moments are kept
    /// ([`Forward::moments`]), and [`Forward::gradient`] is refused.
    pub fn score(model: &Gpt2, batch: &Batch) -> Result<Forward<T>> {
        Self::pass(model, batch, Keep::Moments)
    }

    /// [`Forward::run`] that also scores as [`Forward::score`] does (the same values, bit for
    /// bit): one forward for a record's scores and its gradient.
    pub fn run_scored(model: &Gpt2, batch: &Batch) -> Result<Forward<T>> {
        Self::pass(model, batch, Keep::ScoredBackward)
    }

    /// [`Forward::score`] without the moments: the scored targets' log-probs and most likely
    /// tokens alone.
    pub fn logprobs_only(model: &Gpt2, batch: &Batch) -> Result<Forward<T>> {
        Self::pass(model, batch, Keep::LogProbs)
    }

    fn pass(model: &Gpt2, batch: &Batch, keep: Keep) -> Result<Forward<T>> {
        check_batch(model, batch)?;
        let targets = targets(batch);
        with_net(model, |net| {
            net.forward(
                &batch.ids,
                &batch.attention,
                (batch.rows, batch.cols),
                targets,
                keep,
            )
        })
        .map(|tape| Forward { tape, keep })
    }

    /// [`Forward::logprobs_only`]'s scores taken again from the trunk output this pass kept,
    /// under the model's current final norm and output layer: bit for bit what a fresh
    /// [`Forward::logprobs_only`] gives while nothing the trunk reads has changed since (its
    /// blocks, the position embedding, the token embedding's rows of the batch's tokens), which
    /// is the caller's to know. What a run that changes only the output layer, or embedding
    /// rows a batch never reads, pays to score that batch again: the output layer alone.
    pub fn rescore(&mut self, model: &Gpt2) -> Result<()> {
        if self.keep != Keep::LogProbs {
            bail!("only a log-probs pass is scored again from its trunk output");
        }
        let (c, v) = (model.config().n_embd, model.config().vocab_size);
        if self.tape.top.len() != self.tape.rows * self.tape.cols * c
            || self.tape.targets.iter().any(|t| t.token >= v)
        {
            bail!("a kept pass is scored again by a model of its own width and vocabulary");
        }
        with_net(model, |net| net.rescore(&mut self.tape))
    }

    /// The scored targets' log-probs, in batch order (row by row, position by position).
    pub fn logprobs(&self) -> &[T] {
        &self.tape.logprobs
    }

    /// Whether each scored target is its position's most likely next token.
    pub fn hits(&self) -> Vec<bool> {
        self.tape.hits()
    }

    /// A scoring pass's mean and variance of `log p(·)` under the model at each scored
    /// position (empty unless the pass was [`Forward::score`] or [`Forward::run_scored`]).
    pub fn moments(&self) -> &[(f64, f64)] {
        &self.tape.moments
    }

    /// Every scored target's scores, in batch order (the pass must have scored: see
    /// [`Forward::moments`]).
    pub fn target_scores(&self) -> Vec<TargetScore> {
        self.logprobs()
            .iter()
            .zip(self.hits())
            .zip(self.moments())
            .map(|((lp, hit), &(mean, var))| TargetScore {
                logprob: lp.f64(),
                hit,
                mean,
                var,
            })
            .collect()
    }

    /// Each scored target's slot `r·(T−1) + t` in a `[B, T−1]` log-prob table.
    pub fn slots(&self) -> impl Iterator<Item = usize> + '_ {
        let cols = self.tape.cols;
        self.tape
            .targets
            .iter()
            .map(move |t| t.pos / cols * (cols - 1) + t.pos % cols)
    }

    /// The row each scored target belongs to, and its weight in the batch.
    pub fn target_rows(&self) -> impl Iterator<Item = (usize, f64)> + '_ {
        let cols = self.tape.cols;
        self.tape
            .targets
            .iter()
            .map(move |t| (t.pos / cols, t.weight))
    }

    /// `coef` in `T`, refused unless this pass kept its activations and `coef` holds one
    /// coefficient per scored target.
    fn coefficients(&self, coef: &[f64]) -> Result<Vec<T>> {
        if !self.keep.tapes() {
            bail!("a scoring pass keeps no activations to differentiate");
        }
        if coef.len() != self.tape.logprobs.len() {
            bail!(
                "{} coefficients for {} scored targets",
                coef.len(),
                self.tape.logprobs.len()
            );
        }
        Ok(coef.iter().map(|&c| T::of(c)).collect())
    }

    /// The gradient of `Σ_s coef[s]·logprob[s]` on the model's trainable parameters, by name in
    /// state-dict order (zeros where nothing reaches).
    pub fn gradient(self, model: &Gpt2, coef: &[f64]) -> Result<ParamTensors> {
        let coef = self.coefficients(coef)?;
        let grads = with_net(model, |net| net.backward(self.tape, &coef))?;
        let mut out = Vec::new();
        for ((name, var), g) in model.names().iter().zip(model.vars()).zip(grads) {
            if let Some(g) = g {
                out.push((
                    name.clone(),
                    Tensor::from_vec(g, var.shape(), var.device())?,
                ));
            }
        }
        Ok(out)
    }
}

/// One scored target as an objective sees it: the batch row it belongs to, its weight in the
/// batch and its log-probability under the model.
#[derive(Debug, Clone, Copy)]
pub struct ScoredTarget {
    pub row: usize,
    pub weight: f64,
    pub logprob: f64,
}

/// One scored target under a model, as evaluation sees it.
#[derive(Debug, Clone, Copy)]
pub struct TargetScore {
    /// `log p(target)`.
    pub logprob: f64,
    /// Whether the target is its position's most likely next token.
    pub hit: bool,
    /// The mean and variance of `log p(·)` under the model's next-token distribution there.
    pub mean: f64,
    pub var: f64,
}

/// Every target `batch` scores (row by row, position by position), by one scoring pass in the
/// model's float (float32 or float64); nothing is kept for a backward.
pub fn score_targets(model: &Gpt2, batch: &Batch) -> Result<Vec<TargetScore>> {
    fn run<T: Real>(model: &Gpt2, batch: &Batch) -> Result<Vec<TargetScore>> {
        Ok(Forward::<T>::score(model, batch)?.target_scores())
    }
    in_model_float!(model, "scoring", run(model, batch))
}

/// The gradient, on the model's trainable parameters, of an objective of the batch's target
/// log-probs: `derivative` receives the scored targets (row by row, position by position) and
/// returns the objective's derivative with respect to each log-prob. Float32 and float64
/// models alike.
pub fn gradient_of(
    model: &Gpt2,
    batch: &Batch,
    derivative: impl FnOnce(&[ScoredTarget]) -> Vec<f64>,
) -> Result<ParamTensors> {
    Ok(differentiate(model, batch, Keep::Backward, derivative)?.1)
}

/// [`gradient_of`] from a scored backward ([`Forward::run_scored`]): the targets `derivative`
/// receives, and that come back with the gradient, carry a scoring pass's log-probs bit for
/// bit (what [`score_targets`] and `Gpt2::token_logprobs` give), so that one forward serves an
/// objective's value at these parameters and its gradient.
pub fn scored_gradient_of(
    model: &Gpt2,
    batch: &Batch,
    derivative: impl FnOnce(&[ScoredTarget]) -> Vec<f64>,
) -> Result<(Vec<ScoredTarget>, ParamTensors)> {
    differentiate(model, batch, Keep::ScoredBackward, derivative)
}

fn differentiate(
    model: &Gpt2,
    batch: &Batch,
    keep: Keep,
    derivative: impl FnOnce(&[ScoredTarget]) -> Vec<f64>,
) -> Result<(Vec<ScoredTarget>, ParamTensors)> {
    fn run<T: Real>(
        model: &Gpt2,
        batch: &Batch,
        keep: Keep,
        derivative: impl FnOnce(&[ScoredTarget]) -> Vec<f64>,
    ) -> Result<(Vec<ScoredTarget>, ParamTensors)> {
        let fwd = Forward::<T>::pass(model, batch, keep)?;
        let scored: Vec<ScoredTarget> = fwd
            .target_rows()
            .zip(fwd.logprobs())
            .map(|((row, weight), lp)| ScoredTarget {
                row,
                weight,
                logprob: lp.f64(),
            })
            .collect();
        let coef = derivative(&scored);
        Ok((scored, fwd.gradient(model, &coef)?))
    }
    in_model_float!(model, "a gradient", run(model, batch, keep, derivative))
}

impl<T: Real> Forward<T> {
    /// The backward of `Σ_s coef[s]·logprob[s]` as far as the embedding output, for
    /// per-record gradients: the gradient at the embedding output `[B·T, C]`, the final norm's
    /// output at the scored positions `[S, C]` and the logits' gradient there `[S, V]`.
    pub fn embedding_backward(self, model: &Gpt2, coef: &[f64]) -> Result<[Vec<T>; 3]> {
        let coef = self.coefficients(coef)?;
        with_net(model, |net| net.embedding_backward(self.tape, &coef))
    }
}

/// The weighted mean loss `−Σ w·log p / Σ w` over the batch's scored targets and its gradient
/// on the trainable parameters, computed in `T`.
pub fn loss_and_grad<T: Real>(model: &Gpt2, batch: &Batch) -> Result<(f64, ParamTensors)> {
    let fwd = Forward::<T>::run(model, batch)?;
    let total: f64 = fwd.target_rows().map(|(_, w)| w).sum();
    if total <= 0.0 {
        bail!("batch has no target tokens to score");
    }
    let loss = -fwd
        .logprobs()
        .iter()
        .zip(fwd.target_rows())
        .map(|(lp, (_, w))| lp.f64() * w)
        .sum::<f64>()
        / total;
    let coef: Vec<f64> = fwd.target_rows().map(|(_, w)| -w / total).collect();
    Ok((loss, fwd.gradient(model, &coef)?))
}

/// Refuses a batch longer than the model's context or with a token outside its vocabulary.
fn check_batch(model: &Gpt2, batch: &Batch) -> Result<()> {
    check_tokens(model, &batch.ids, batch.cols)
}

/// Refuses rows of `cols` tokens longer than the model's context, or a token outside its
/// vocabulary.
pub(super) fn check_tokens(model: &Gpt2, ids: &[u32], cols: usize) -> Result<()> {
    let cfg = model.config();
    if cols > cfg.n_positions {
        bail!(
            "sequence of {cols} tokens is longer than the model's context ({})",
            cfg.n_positions
        );
    }
    if let Some(&id) = ids.iter().find(|&&i| i as usize >= cfg.vocab_size) {
        bail!(
            "token id {id} is outside the vocabulary ({})",
            cfg.vocab_size
        );
    }
    Ok(())
}

/// `log softmax(row)[targets[s]]` of each row `s` of the logits `[S, V]` (float32 or
/// float64), by the scan the scoring pass uses on its own rows.
pub fn row_logprobs(logits: &Tensor, targets: &[u32]) -> Result<Vec<f64>> {
    fn run<T: Real>(logits: &Tensor, targets: &[u32]) -> Result<Vec<f64>> {
        let (s, v) = logits.dims2()?;
        if targets.len() != s || targets.iter().any(|&t| t as usize >= v) {
            bail!("{} targets for {s} logits rows of {v}", targets.len());
        }
        let flat = logits.flatten_all()?.to_vec1::<T>()?;
        Ok(flat
            .chunks(v.max(1))
            .zip(targets)
            .map(|(row, &t)| rows::target_logprob(row, t as usize).0.f64())
            .collect())
    }
    in_model_float!(logits, "scoring", run(logits, targets))
}

/// Token ids and an attention mask as plain rows, with their shape `(B, T)`.
type TokenRows = (Vec<u32>, Vec<u32>, (usize, usize));

/// Token ids and an attention mask `[B, T]` (u32) as plain rows, checked against each other
/// and against the model's context and vocabulary.
pub(super) fn token_rows(model: &Gpt2, ids: &Tensor, attention: &Tensor) -> Result<TokenRows> {
    let shape = ids.dims2()?;
    if attention.dims() != ids.dims() {
        bail!(
            "attention mask {:?} for token ids {:?}",
            attention.dims(),
            ids.dims()
        );
    }
    let flat = ids.flatten_all()?.to_vec1::<u32>()?;
    check_tokens(model, &flat, shape.1)?;
    Ok((flat, attention.flatten_all()?.to_vec1::<u32>()?, shape))
}

/// The logits `[S, V]` at the flat positions `at` (`r·T + t`) of the batch `ids`, `attention`
/// `[B, T]`: the trunk runs over the batch, the output layer only at those positions.
pub fn logits_at(model: &Gpt2, ids: &Tensor, attention: &Tensor, at: &[usize]) -> Result<Tensor> {
    fn run<T: Real>(model: &Gpt2, ids: &Tensor, att: &Tensor, at: &[usize]) -> Result<Tensor> {
        let (ids, att, (b, t)) = token_rows(model, ids, att)?;
        if let Some(&p) = at.iter().find(|&&p| p >= b * t) {
            bail!("position {p} is outside a batch of {b}×{t} tokens");
        }
        let logits = with_net::<T, _>(model, |n| n.logits_at(&ids, &att, (b, t), at))?;
        Tensor::from_vec(
            logits,
            (at.len(), model.config().vocab_size),
            model.device(),
        )
    }
    in_model_float!(model, "a forward pass", run(model, ids, attention, at))
}

/// Every layer's hidden states `[B, T, C]` (the embedding output, then each block's output,
/// the last before the final norm) over the batch `ids`, `attention` `[B, T]`.
pub fn hidden_states(model: &Gpt2, ids: &Tensor, attention: &Tensor) -> Result<Vec<Tensor>> {
    fn run<T: Real>(model: &Gpt2, ids: &Tensor, att: &Tensor) -> Result<Vec<Tensor>> {
        let (ids, att, (b, t)) = token_rows(model, ids, att)?;
        let layers = with_net::<T, _>(model, |n| n.hidden_states(&ids, &att, (b, t)))?;
        let c = model.config().n_embd;
        layers
            .into_iter()
            .map(|h| Tensor::from_vec(h, (b, t, c), model.device()))
            .collect()
    }
    in_model_float!(model, "a forward pass", run(model, ids, attention))
}

/// The targets a batch scores: position `r·T + t` predicts `ids[r, t+1]` with weight
/// `target_weight[r, t]`, where that weight is non-zero.
fn targets(batch: &Batch) -> Vec<Target> {
    let (t, width) = (batch.cols, batch.cols.saturating_sub(1));
    let mut out = Vec::new();
    for r in 0..batch.rows {
        for p in 0..width {
            let w = batch.target_weight[r * width + p];
            if w != 0.0 {
                out.push(Target {
                    pos: r * t + p,
                    token: batch.ids[r * t + p + 1] as usize,
                    weight: w as f64,
                });
            }
        }
    }
    out
}

/// Calls `f` with the model's parameters read in place from their storage (read-locked for
/// the call).
pub(super) fn with_net<T: Real, R>(model: &Gpt2, f: impl FnOnce(&Net<'_, T>) -> R) -> Result<R> {
    let vars = model.vars();
    let guards: Vec<_> = vars
        .iter()
        .map(|v| v.as_tensor().storage_and_layout())
        .collect();
    let mut p = Vec::with_capacity(vars.len());
    for ((storage, layout), name) in guards.iter().zip(model.names()) {
        let Storage::Cpu(cpu) = &**storage else {
            bail!("the hand-written pass runs on the CPU; {name} is elsewhere");
        };
        let Some(all) = T::of_storage(cpu) else {
            bail!(
                "{name} is {:?}, the pass runs in {:?}",
                cpu.dtype(),
                T::DTYPE
            );
        };
        let Some((a, b)) = layout.contiguous_offsets() else {
            bail!("{name} is not contiguous");
        };
        p.push(&all[a..b]);
    }
    let net = Net::new(
        model.config(),
        p,
        None,
        model.trainable_flags(),
        model.output_grad(),
    );
    Ok(f(&net))
}

/// The mean loss, its gradient and the exact Hessian-vector product `H v` on the trainable
/// parameters of a float64 model, by one pass in dual numbers (`tangent`): `v` holds one
/// tensor per trainable parameter, in state-dict order. One product at one point; for many at
/// one point, [`Linearized`] keeps what they share.
pub fn loss_grad_hvp(
    model: &Gpt2,
    batch: &Batch,
    v: &[(String, Tensor)],
) -> Result<(f64, ParamTensors, ParamTensors)> {
    Linearized::new(model, &[(batch, 1.0)], 0)?.loss_grad_hvp(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::init::random_model;
    use crate::model::{Gpt2Config, ParamGroups};
    use candle_core::DType;

    /// Two rows, the second right-padded, the first scored from its fourth token only (an
    /// answer-only record), weights not all one; token ids below 50.
    pub(super) fn batch() -> Batch {
        let (rows, cols) = (2, 9);
        let ids: Vec<u32> = (0..rows * cols).map(|i| (i * 7 % 50) as u32).collect();
        let mut attention = vec![1u32; rows * cols];
        attention[cols + 6..].fill(0);
        let mut target_weight = vec![0f32; rows * (cols - 1)];
        target_weight[3..cols - 1].fill(1.0);
        for t in 0..5 {
            target_weight[cols - 1 + t] = 0.5 + t as f32;
        }
        Batch {
            ids,
            attention,
            target_weight,
            rows,
            cols,
            record_ids: vec!["a".into(), "b".into()],
        }
    }

    /// Normwise relative difference of two gradients.
    fn rel(g: &Tensor, w: &Tensor) -> f64 {
        let err = (g - w).unwrap().abs().unwrap().max_all().unwrap();
        let scale = w.abs().unwrap().max_all().unwrap();
        let scale = scale.to_scalar::<f64>().unwrap().max(1e-300);
        err.to_scalar::<f64>().unwrap() / scale
    }

    /// Every group's gradient is the whole model's gradient on that group's parameters (the
    /// whole gradient is checked against transformers' in `tests/oracle.rs` and
    /// `tests/families.rs`), the loss is the same, and only the trainable parameters get one:
    /// freezing saves work without changing a digit that matters.
    #[test]
    fn every_groups_gradient_is_its_part_of_the_whole() {
        let cfg = Gpt2Config::new(50, 16, 16, 3, 2);
        let mut m = random_model(&cfg, 7, DType::F64).unwrap();
        let b = batch();
        m.set_trainable(&ParamGroups::all()).unwrap();
        let (whole_loss, whole) = loss_and_grad::<f64>(&m, &b).unwrap();
        let whole: std::collections::HashMap<String, Tensor> = whole.into_iter().collect();
        for group in [
            "embedding",
            "block:1",
            "blocks:1-2,final_norm",
            "final_norm",
        ] {
            let names = m
                .set_trainable(&ParamGroups::parse(group).unwrap())
                .unwrap();
            let (loss, got) = loss_and_grad::<f64>(&m, &b).unwrap();
            assert!((loss - whole_loss).abs() < 1e-14, "{group}: loss {loss}");
            let got_names: Vec<&String> = got.iter().map(|(n, _)| n).collect();
            assert_eq!(got_names, names.iter().collect::<Vec<_>>(), "{group}");
            for (n, g) in &got {
                let err = rel(g, &whole[n]);
                assert!(err < 1e-12, "{group}, {n}: {err:e} relative");
            }
        }
    }

    /// A scored backward's forward scores exactly as a scoring pass does (log-probs, hits and
    /// moments, bit for bit), and its gradient is a plain backward's, bit for bit: sharing the
    /// forward changes no figure. Float32, where a different summation would show.
    #[test]
    fn a_scored_backward_is_a_scoring_pass_and_a_backward() {
        let cfg = Gpt2Config::new(50, 16, 16, 2, 2);
        let mut m = random_model(&cfg, 5, DType::F32).unwrap();
        m.set_trainable(&ParamGroups::parse("embedding").unwrap())
            .unwrap();
        let b = batch();
        let scored = Forward::<f32>::run_scored(&m, &b).unwrap();
        let plain = Forward::<f32>::score(&m, &b).unwrap();
        assert_eq!(scored.logprobs(), plain.logprobs());
        assert_eq!(scored.hits(), plain.hits());
        assert_eq!(scored.moments(), plain.moments());
        assert_eq!(scored.moments().len(), scored.logprobs().len());
        let coef: Vec<f64> = (0..scored.logprobs().len())
            .map(|i| 0.3 - 0.1 * i as f64)
            .collect();
        let got = scored.gradient(&m, &coef).unwrap();
        let want = Forward::<f32>::run(&m, &b)
            .unwrap()
            .gradient(&m, &coef)
            .unwrap();
        assert_eq!(got.len(), want.len());
        for ((n, g), (_, w)) in got.iter().zip(&want) {
            let (g, w) = (
                g.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                w.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            );
            assert_eq!(g, w, "{n}");
        }
        // A scoring pass keeps nothing to differentiate.
        assert!(plain.gradient(&m, &coef).is_err());
    }

    /// With `output_grad` off, the token embedding's gradient is that of the loss with the tied
    /// output layer held constant: checked by central differences of that loss along a random
    /// direction, the output layer a separate frozen copy of the embedding.
    #[test]
    fn output_grad_off_is_the_derivative_with_the_output_layer_held() {
        let cfg = Gpt2Config::new(50, 16, 16, 2, 2);
        let mut m = random_model(&cfg, 11, DType::F64).unwrap();
        let b = batch();
        m.set_trainable(&ParamGroups::parse("embedding").unwrap())
            .unwrap();
        m.set_output_grad(false);
        let (_, got) = loss_and_grad::<f64>(&m, &b).unwrap();
        let g = got[0].1.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let params: Vec<Vec<f64>> = m
            .vars()
            .iter()
            .map(|v| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
            .collect();
        let head = params[0].clone();
        let targets = targets(&b);
        let total: f64 = targets.iter().map(|t| t.weight).sum();
        let loss_at = |wte: &[f64]| -> f64 {
            let mut p: Vec<&[f64]> = params.iter().map(Vec::as_slice).collect();
            p[0] = wte;
            let net = Net::new(&cfg, p, Some(&head), m.trainable_flags(), false);
            let tape = net.forward(
                &b.ids,
                &b.attention,
                (b.rows, b.cols),
                targets.clone(),
                Keep::LogProbs,
            );
            -tape
                .logprobs
                .iter()
                .zip(&targets)
                .map(|(lp, t)| lp * t.weight)
                .sum::<f64>()
                / total
        };
        let v: Vec<f64> = (0..g.len())
            .map(|i| ((i * 7919 % 1000) as f64 / 500.0) - 1.0)
            .collect();
        let h = 1e-5;
        let shift =
            |s: f64| -> Vec<f64> { params[0].iter().zip(&v).map(|(x, v)| x + s * v).collect() };
        let numeric = (loss_at(&shift(h)) - loss_at(&shift(-h))) / (2.0 * h);
        let exact: f64 = g.iter().zip(&v).map(|(g, v)| g * v).sum();
        assert!(
            (numeric - exact).abs() <= 1e-7 * exact.abs().max(1e-3),
            "directional derivative {exact} vs central difference {numeric}"
        );
        // And it is not the tied gradient: the output layer's part is really left out.
        m.set_output_grad(true);
        let (_, tied) = loss_and_grad::<f64>(&m, &b).unwrap();
        assert!(rel(&got[0].1, &tied[0].1) > 1e-3);
    }
}
