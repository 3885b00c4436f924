//! Log-probabilities of several continuations of one prompt with the prompt run once: each
//! prompt's prefill (`prefilled`, which may serve its greedy answer too) is copied once per
//! continuation, and every continuation's tokens are fed in one pass against its copy. The
//! result is what a full scoring pass over `prompt ++ continuation` gives at the
//! continuation's tokens, up to summation order, at a fraction of the work when the prompt is
//! long and the continuations short (TOFU's truth ratio scores four wrong answers to each
//! question). This module owns the continuations' checks and batches; the arithmetic is the
//! cache's (`model::cache`) and the scoring pass's row scan (`pass::row_logprobs`).

use super::cache::KvCache;
use super::gpt2::Gpt2;
use super::pass::row_logprobs;
use super::prefilled::{prefilled, Asks};
use candle_core::{bail, Result, Tensor};
use std::collections::HashSet;

/// Most continuations scored together (copies of prefilled rows).
const ROWS: usize = 64;
/// Most logits elements (`tokens × vocabulary`) one batch produces (64 MiB in float32).
const MAX_LOGITS: usize = 16 << 20;

/// `log p(c_j | prompt, c_<j)` of every token of every continuation: `out[i][k][j]` for token
/// `j` of continuation `k` of prompt `i`. Prompts with continuations must be non-empty, the
/// continuations non-empty, and each prompt with its continuation inside the model's context.
pub fn continuation_logprobs(
    model: &Gpt2,
    prompts: &[Vec<u32>],
    continuations: &[Vec<Vec<u32>>],
    pad_id: u32,
) -> Result<Vec<Vec<Vec<f64>>>> {
    let asks = Asks {
        prompts,
        max_new: &vec![0; prompts.len()],
        stop: &HashSet::new(),
        continuations,
    };
    Ok(prefilled(model, &asks, pad_id)?.logprobs)
}

/// Refuses what [`continuation_logprobs`] cannot score: an empty prompt or continuation, or a
/// continuation that runs past the context `ctx`.
pub(super) fn check(
    prompts: &[Vec<u32>],
    continuations: &[Vec<Vec<u32>>],
    ctx: usize,
) -> Result<()> {
    if prompts.len() != continuations.len() {
        bail!(
            "{} prompts with {} lists of continuations",
            prompts.len(),
            continuations.len()
        );
    }
    for (i, (p, cs)) in prompts.iter().zip(continuations).enumerate() {
        if cs.is_empty() {
            continue;
        }
        if p.is_empty() || cs.iter().any(Vec::is_empty) {
            bail!("prompt {i}: an empty prompt or continuation has nothing to score");
        }
        if let Some(c) = cs.iter().find(|c| p.len() + c.len() - 1 > ctx) {
            bail!(
                "prompt {i}: {} + {} tokens run past the model's context ({ctx})",
                p.len(),
                c.len()
            );
        }
    }
    Ok(())
}

/// The continuations of a prefilled group of prompts (`group[s]` the prompt of prefilled row
/// `s`; `logits` `[B, V]` after each prompt, `cache` one row per prompt), scored into
/// `out[i][k]`: the first token of each from the prefill's logits, the rest fed in batches of
/// copied rows, continuations of like length together.
pub(super) fn score(
    model: &Gpt2,
    (logits, cache): (&Tensor, &KvCache),
    group: &[usize],
    continuations: &[Vec<Vec<u32>>],
    out: &mut [Vec<Vec<f64>>],
) -> Result<()> {
    // Shortest first: a batch's rows are fed as many tokens as its longest continuation, so
    // batches of like lengths feed little padding (the bundled holdout's wrong answers, in
    // question order: three times the real tokens; sorted: 14% more).
    let mut pairs: Vec<(usize, usize, usize)> = group
        .iter()
        .enumerate()
        .flat_map(|(s, &i)| (0..continuations[i].len()).map(move |k| (s, i, k)))
        .collect();
    pairs.sort_by_key(|&(_, i, k)| continuations[i][k].len());
    let lens: Vec<usize> = pairs
        .iter()
        .map(|&(_, i, k)| continuations[i][k].len())
        .collect();
    for batch in batches(&lens, model.config().vocab_size) {
        let pairs: Vec<(usize, usize, usize)> = batch.iter().map(|&p| pairs[p]).collect();
        let conts: Vec<&Vec<u32>> = pairs
            .iter()
            .map(|&(_, i, k)| &continuations[i][k])
            .collect();
        let from: Vec<usize> = pairs.iter().map(|&(s, _, _)| s).collect();
        let rows = Tensor::from_vec(
            from.iter().map(|&r| r as u32).collect::<Vec<_>>(),
            from.len(),
            model.device(),
        )?;
        let first: Vec<u32> = conts.iter().map(|c| c[0]).collect();
        let firsts = row_logprobs(&logits.index_select(&rows, 0)?, &first)?;
        let mut got: Vec<Vec<f64>> = firsts.into_iter().map(|lp| vec![lp]).collect();
        if conts.iter().any(|c| c.len() > 1) {
            let mut copies = cache.select_rows(&from)?;
            let feeds: Vec<Vec<u32>> = conts.iter().map(|c| c[..c.len() - 1].to_vec()).collect();
            let targets: Vec<u32> = conts.iter().flat_map(|c| c[1..].iter().copied()).collect();
            let lps = row_logprobs(&model.extend(&mut copies, &feeds)?, &targets)?;
            let mut rest = lps.as_slice();
            for (o, c) in got.iter_mut().zip(&conts) {
                let (mine, after) = rest.split_at(c.len() - 1);
                o.extend_from_slice(mine);
                rest = after;
            }
        }
        for (&(_, i, k), lp) in pairs.iter().zip(got) {
            out[i][k] = lp;
        }
    }
    Ok(())
}

/// Consecutive batches of continuations (their lengths `lens`, in order) of at most [`ROWS`]
/// whose logits stay under [`MAX_LOGITS`] elements (a batch holds at least one).
fn batches(lens: &[usize], vocab: usize) -> Vec<Vec<usize>> {
    let budget = (MAX_LOGITS / vocab.max(1)).max(1);
    let (mut out, mut cur, mut tokens) = (Vec::new(), Vec::new(), 0);
    for (p, &n) in lens.iter().enumerate() {
        if !cur.is_empty() && (cur.len() == ROWS || tokens + n > budget) {
            out.push(std::mem::take(&mut cur));
            tokens = 0;
        }
        cur.push(p);
        tokens += n;
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Batch, Encoded};
    use crate::model::pass::score_targets;
    use crate::model::{init::random_model, Gpt2Config};
    use candle_core::DType;

    /// Prompts of different lengths with one to three continuations of different lengths.
    fn cases() -> (Vec<Vec<u32>>, Vec<Vec<Vec<u32>>>) {
        let seq = |n: usize, a: u32, b: u32| (0..n as u32).map(|i| (i * a + b) % 97).collect();
        let prompts = vec![seq(6, 7, 3), seq(2, 13, 5), seq(9, 29, 1), seq(1, 3, 2)];
        let conts = vec![
            vec![seq(3, 5, 1), seq(1, 11, 4), seq(5, 17, 9)],
            vec![seq(4, 19, 2)],
            vec![seq(2, 23, 8), seq(7, 31, 6)],
            vec![seq(1, 37, 0), seq(3, 41, 7)],
        ];
        (prompts, conts)
    }

    /// The largest difference between the continuations' log-probs and a full scoring pass
    /// over each `prompt ++ continuation` alone (the reference: `score_targets`, no cache).
    fn cached_vs_scored(dtype: DType) -> f64 {
        let cfg = Gpt2Config::new(97, 32, 16, 2, 4);
        let model = random_model(&cfg, 11, dtype).unwrap();
        let (prompts, conts) = cases();
        let got = continuation_logprobs(&model, &prompts, &conts, 0).unwrap();
        let mut worst = 0f64;
        for (i, cs) in conts.iter().enumerate() {
            for (k, c) in cs.iter().enumerate() {
                let rec = Encoded {
                    id: format!("{i}/{k}"),
                    ids: [prompts[i].clone(), c.clone()].concat(),
                    score_from: prompts[i].len(),
                };
                let want = score_targets(&model, &Batch::new(&[&rec], 0)).unwrap();
                assert_eq!(got[i][k].len(), want.len(), "prompt {i}, continuation {k}");
                for (g, w) in got[i][k].iter().zip(&want) {
                    worst = worst.max((g - w.logprob).abs());
                }
            }
        }
        worst
    }

    #[test]
    fn continuations_score_as_the_full_pass_does() {
        // Same arithmetic up to summation order (masked slots add exact zeros).
        let f32_err = cached_vs_scored(DType::F32);
        assert!(f32_err < 1e-5, "float32: {f32_err}");
        let f64_err = cached_vs_scored(DType::F64);
        assert!(f64_err < 1e-12, "float64: {f64_err}");
    }

    #[test]
    fn batches_hold_at_most_the_copied_rows() {
        let lens: Vec<usize> = (0..150).map(|i| 2 + i % 3).collect();
        let bs = batches(&lens, 97);
        assert_eq!(bs.concat(), (0..150).collect::<Vec<_>>());
        assert!(bs.iter().all(|b| !b.is_empty() && b.len() <= ROWS));
        // A vocabulary so large that one continuation fills the logits budget: one per batch.
        let bs = batches(&lens, MAX_LOGITS);
        assert!(bs.iter().all(|b| b.len() == 1));
        assert_eq!(bs.len(), 150);
    }
}
