//! Per-example gradient norms of the embedding parameters (`wte`, `wpe`; a Llama-family
//! model's `embed_tokens`, tied to the output layer or not) for a whole batch in
//! one forward and one backward pass, instead of one pass per record. Rows of a batch never
//! interact (causal attention, padding masked), so the gradient of the sum of the per-record
//! losses with respect to the embedding output `h₀` `[B, T, C]` holds each record's own
//! `∂loss_r/∂h₀` in its row; the backward runs through frozen blocks only (input gradients,
//! no weight-gradient work; the hand-written pass's `embedding_backward`). From it, with
//! `dl_i = ∂loss_r/∂logits_i` and `hn_i` the final layer norm's output at scored position i of
//! record r:
//!
//! - `wpe`: the rows `de_t` at distinct positions, so ‖∇‖² = Σ_t ‖de_t‖²;
//! - `wte`, input side B = Σ_t e_{id_t} de_tᵀ: ‖B‖² = Σ_{t,s: id_t = id_s} de_t·de_s;
//! - `wte`, tied output layer A = Σ_i dl_i hn_iᵀ: ‖A‖² = Σ_{i,j} (dl_i·dl_j)(hn_i·hn_j) and
//!   ⟨A, B⟩ = Σ_{i,t} dl_i[id_t] (hn_i·de_t); the norm of wte's gradient is ‖A + B‖.
//!
//! None of the `[V, C]` per-record gradients is materialised; the Gram sums are in float64.
//! [`scores_and_grad_norms`] also hands back what the forward scored (`pass::score_targets`'
//! values, bit for bit), so that the certifier scores a record and takes its norm in one
//! forward pass.
//! Any other trainable parameter (a block, the final norm) is not handled here: the caller
//! falls back to one backward pass per record. This module owns that arithmetic; which records
//! are scored and what the norms mean is the caller's.

use super::config::Family;
use super::gpt2::Gpt2;
use super::pass::{self, TargetScore};
use crate::data::Batch;
use candle_core::{DType, Result, Tensor};

/// Which embedding parameters a model's trainable set holds, or `None` when it holds anything
/// else (or nothing).
fn embedding_only(model: &Gpt2) -> Option<(bool, bool)> {
    // The token embedding is every family's first parameter; GPT-2's learned positions its
    // second.
    let names = model.names();
    let wte = names[0].as_str();
    let wpe = (model.config().arch.family == Family::Gpt2).then(|| names[1].as_str());
    let trainable: Vec<&str> = model.trainable_vars().iter().map(|(n, _)| *n).collect();
    if trainable.is_empty() || trainable.iter().any(|&n| n != wte && Some(n) != wpe) {
        return None;
    }
    Some((
        trainable.contains(&wte),
        wpe.is_some_and(|p| trainable.contains(&p)),
    ))
}

/// Whether [`grad_norms`] handles the model's trainable set (embedding parameters only).
pub fn supported(model: &Gpt2) -> bool {
    embedding_only(model).is_some()
}

/// ‖∇_θ loss_r‖₂ for each row r of `batch`, θ the model's trainable parameters (which must be
/// embedding parameters: see [`supported`]), loss_r the row's mean negative log-likelihood over
/// its weighted targets — the norm of the gradient `grad::loss_and_grad` gives for the row
/// alone.
pub fn grad_norms(model: &Gpt2, batch: &Batch) -> Result<Vec<f64>> {
    Ok(norms(model, batch, false)?.norms)
}

/// [`grad_norms`] and every target's scores from the same forward pass: the scores are
/// `pass::score_targets`' bit for bit, so a certifier that needs both runs the forward once.
pub fn scores_and_grad_norms(model: &Gpt2, batch: &Batch) -> Result<ScoredNorms> {
    norms(model, batch, true)
}

/// What [`scores_and_grad_norms`] measures of a batch.
pub struct ScoredNorms {
    /// Every scored target, row by row, position by position (`pass::score_targets`' order).
    pub scores: Vec<TargetScore>,
    /// ‖∇_θ loss_r‖₂ of each row.
    pub norms: Vec<f64>,
    /// Seconds the forward pass took (the scoring's share of the work).
    pub forward_seconds: f64,
}

fn norms(model: &Gpt2, batch: &Batch, score: bool) -> Result<ScoredNorms> {
    let Some((with_wte, with_wpe)) = embedding_only(model) else {
        candle_core::bail!("per-example gradient norms need embedding parameters only");
    };
    // The output layer's part, where the token embedding is also the output layer.
    let with_out = with_wte && model.config().tied() && model.output_grad();
    let (b, t, c) = (batch.rows, batch.cols, model.config().n_embd);
    let width = t.saturating_sub(1);
    // Each scored target's coefficient in its record's mean loss, record by record (the
    // pass's target order), and each record's count of scored targets.
    let (mut coef, mut count) = (vec![], vec![0; b]);
    for (r, n) in count.iter_mut().enumerate() {
        let w = &batch.target_weight[r * width..(r + 1) * width];
        let total: f64 = w.iter().map(|&x| f64::from(x)).sum();
        if total <= 0.0 {
            candle_core::bail!("record {r} of the batch has no target tokens to score");
        }
        for &wp in w.iter().filter(|&&wp| wp != 0.0) {
            coef.push(-f64::from(wp) / total);
            *n += 1;
        }
    }
    let dev = model.device();
    let n = coef.len();
    let Pieces {
        de,
        hn,
        dl,
        scores,
        forward_seconds,
    } = match model.dtype() {
        DType::F32 => pieces::<f32>(model, batch, &coef, score)?,
        DType::F64 => pieces::<f64>(model, batch, &coef, score)?,
        other => candle_core::bail!("gradient norms in float32 or float64, not {other:?}"),
    };
    let de = Tensor::from_vec(de, (b, t, c), dev)?;
    let hn = Tensor::from_vec(hn, (n, c), dev)?;
    let mut out = Vec::with_capacity(b);
    let mut off = 0;
    for (r, &n_r) in count.iter().enumerate() {
        let len = batch.attention[r * t..(r + 1) * t]
            .iter()
            .filter(|&&a| a != 0)
            .count();
        let de_r = de.get(r)?.narrow(0, 0, len)?;
        let id_r = &batch.ids[r * t..r * t + len];
        let mut sq = 0.0;
        if with_wpe {
            sq += de_r.sqr()?.sum_all()?.to_scalar::<f64>()?;
        }
        if with_wte {
            sq += same_token_gram(&de_r, id_r)?;
        }
        if with_out {
            // One record's rows of the logits' gradient in float64 at a time: the whole
            // batch's `[S, V]` in float64 would be the largest buffer of the certification.
            let dl = dl.narrow(0, off, n_r)?.to_dtype(DType::F64)?;
            let hn_r = hn.narrow(0, off, n_r)?;
            let gram = |x: &Tensor| x.matmul(&x.t()?);
            sq += (gram(&dl)? * gram(&hn_r)?)?.sum_all()?.to_scalar::<f64>()?;
            let at_ids = dl.index_select(&Tensor::from_slice(id_r, len, dev)?, 1)?;
            let cross = (at_ids * hn_r.matmul(&de_r.t()?)?)?.sum_all()?;
            sq += 2.0 * cross.to_scalar::<f64>()?;
        }
        out.push(sq.max(0.0).sqrt());
        off += n_r;
    }
    Ok(ScoredNorms {
        scores,
        norms: out,
        forward_seconds,
    })
}

/// The hand-written pass's backward as far as the embedding output, and what its forward
/// scored.
struct Pieces {
    /// The gradient at the embedding output `[B·T, C]`, in float64.
    de: Vec<f64>,
    /// The final norm's output at the scored positions `[S, C]`, in float64.
    hn: Vec<f64>,
    /// The logits' gradient `[S, V]` in the model's own float (converted a record at a time by
    /// the caller).
    dl: Tensor,
    /// The targets' scores (empty unless asked for).
    scores: Vec<TargetScore>,
    forward_seconds: f64,
}

fn pieces<T: pass::Real>(model: &Gpt2, batch: &Batch, coef: &[f64], score: bool) -> Result<Pieces> {
    let started = std::time::Instant::now();
    let (fwd, scores) = if score {
        let fwd = pass::Forward::<T>::run_scored(model, batch)?;
        let scores = fwd.target_scores();
        (fwd, scores)
    } else {
        (pass::Forward::<T>::run(model, batch)?, Vec::new())
    };
    let forward_seconds = started.elapsed().as_secs_f64();
    let [de, hn, dl] = fwd.embedding_backward(model, coef)?;
    let wide = |v: Vec<T>| v.iter().map(|x| x.f64()).collect::<Vec<f64>>();
    let s = coef.len();
    let dl = Tensor::from_vec(dl, (s, model.config().vocab_size), model.device())?;
    Ok(Pieces {
        de: wide(de),
        hn: wide(hn),
        dl,
        scores,
        forward_seconds,
    })
}

/// `Σ_{t,s: ids_t = ids_s} de_t·de_s`: the squared norm of the input embedding's row gradient
/// (rows of one token summed).
fn same_token_gram(de: &Tensor, ids: &[u32]) -> Result<f64> {
    let gram = de.matmul(&de.t()?)?.to_vec2::<f64>()?;
    let mut sq = 0.0;
    for (t, row) in gram.iter().enumerate() {
        for (s, &g) in row.iter().enumerate() {
            if ids[t] == ids[s] {
                sq += g;
            }
        }
    }
    Ok(sq)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Encoded;
    use crate::model::grad::loss_and_grad;
    use crate::model::{init::random_model, Gpt2Config};

    /// Records of different lengths with repeated tokens (so rows of `wte` collect several
    /// positions), two of them scored on an answer only (`score_from` > 0).
    fn records() -> Vec<Encoded> {
        let lens = [12usize, 5, 9, 12, 3];
        lens.iter()
            .enumerate()
            .map(|(r, &n)| Encoded {
                id: r.to_string(),
                ids: (0..n).map(|i| ((i * (r + 3) + r) % 11) as u32).collect(),
                score_from: if r % 2 == 1 { n / 2 } else { 0 },
            })
            .collect()
    }

    /// The reference: `grad::loss_and_grad` on each record alone, ‖·‖ summed over parameters.
    fn one_at_a_time(model: &Gpt2, recs: &[Encoded]) -> Vec<f64> {
        recs.iter()
            .map(|rec| {
                let (_, grads) = loss_and_grad(model, &Batch::new(&[rec], 0)).unwrap();
                let sq: f64 = grads
                    .iter()
                    .map(|(_, g)| {
                        let g = g.to_dtype(DType::F64).unwrap();
                        g.sqr()
                            .unwrap()
                            .sum_all()
                            .unwrap()
                            .to_scalar::<f64>()
                            .unwrap()
                    })
                    .sum();
                sq.sqrt()
            })
            .collect()
    }

    #[test]
    fn batched_norms_equal_one_backward_per_record() {
        // Every combination the batched path takes: wte and/or wpe, with and without the tied
        // output layer's part of wte's gradient. Float32 on both sides, so agreement is to
        // float32 rounding (1e-5 relative).
        let cfg = Gpt2Config::new(53, 16, 16, 2, 2);
        let mut model = random_model(&cfg, 3, DType::F32).unwrap();
        let recs = records();
        let batch = Batch::new(&recs.iter().collect::<Vec<_>>(), 0);
        let (wte, wpe) = (model.names()[0].clone(), model.names()[1].clone());
        for (names, output_grad) in [
            (vec![wte.clone(), wpe.clone()], true),
            (vec![wte.clone(), wpe.clone()], false),
            (vec![wte.clone()], true),
            (vec![wpe.clone()], true),
        ] {
            model.set_trainable_names(&names);
            model.set_output_grad(output_grad);
            let got = grad_norms(&model, &batch).unwrap();
            let want = one_at_a_time(&model, &recs);
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() <= 1e-5 * w,
                    "{names:?} output_grad {output_grad}: {got:?} vs {want:?}"
                );
            }
        }
        model.set_trainable_names(&[model.names()[2].clone()]);
        assert!(!supported(&model), "a block parameter is not handled here");
        // The Llama family: the token embedding with an untied head (no output part) and tied
        // (the output part included).
        for tied in [false, true] {
            let mut cfg = Gpt2Config::new_llama(53, 16, 16, 2, 2, 1, 24).unwrap();
            cfg.tie_word_embeddings = tied;
            let mut model = random_model(&cfg, 5, DType::F32).unwrap();
            model.set_trainable_names(&[model.names()[0].clone()]);
            assert!(supported(&model));
            let (got, want) = (
                grad_norms(&model, &batch).unwrap(),
                one_at_a_time(&model, &recs),
            );
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() <= 1e-5 * w,
                    "llama, tied {tied}: {got:?} vs {want:?}"
                );
            }
        }
    }
}
