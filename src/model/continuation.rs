//! Log-probabilities of several continuations of one prompt with the prompt run once: the
//! prompts go through the model in a prefill that keeps their keys and values, each cached row
//! is repeated once per continuation, and every continuation's tokens are fed in one pass
//! against its prompt's cache. The result is what a full scoring pass over `prompt ++
//! continuation` gives at the continuation's tokens, up to summation order, at a fraction of
//! the work when the prompt is long and the continuations short (TOFU's truth ratio scores
//! five wrong answers to each question). This module owns the grouping; the arithmetic is the
//! cache's (`model::cache`) and the scoring pass's row scan (`pass::row_logprobs`).

use super::generate::right_padded;
use super::gpt2::Gpt2;
use super::pass::row_logprobs;
use candle_core::{bail, Result, Tensor};

/// Most continuations scored together (cached rows of one prefill).
const ROWS: usize = 64;
/// Most logits elements (`tokens × vocabulary`) one group produces (64 MiB in float32).
const MAX_LOGITS: usize = 16 << 20;

/// `log p(c_j | prompt, c_<j)` of every token of every continuation: `out[i][k][j]` for token
/// `j` of continuation `k` of prompt `i`. Prompts must be non-empty, continuations non-empty,
/// and each prompt with its continuation inside the model's context.
pub fn continuation_logprobs(
    model: &Gpt2,
    prompts: &[Vec<u32>],
    continuations: &[Vec<Vec<u32>>],
    pad_id: u32,
) -> Result<Vec<Vec<Vec<f64>>>> {
    if prompts.len() != continuations.len() {
        bail!(
            "{} prompts with {} lists of continuations",
            prompts.len(),
            continuations.len()
        );
    }
    let ctx = model.config().n_positions;
    for (i, (p, cs)) in prompts.iter().zip(continuations).enumerate() {
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
    let mut out: Vec<Vec<Vec<f64>>> = continuations
        .iter()
        .map(|cs| vec![Vec::new(); cs.len()])
        .collect();
    let lens: Vec<Vec<usize>> = continuations
        .iter()
        .map(|cs| cs.iter().map(Vec::len).collect())
        .collect();
    for group in groups(prompts, &lens, model.config().vocab_size) {
        for ((i, k), lp) in
            group
                .iter()
                .zip(score_group(model, prompts, continuations, &group, pad_id)?)
        {
            out[*i][*k] = lp;
        }
    }
    Ok(out)
}

/// The (prompt, continuation) pairs, prompts in order of length, cut into groups of at most
/// [`ROWS`] pairs whose logits stay under [`MAX_LOGITS`] elements (a group holds at least one
/// pair).
fn groups(prompts: &[Vec<u32>], lens: &[Vec<usize>], vocab: usize) -> Vec<Vec<(usize, usize)>> {
    let mut order: Vec<usize> = (0..prompts.len()).collect();
    order.sort_by_key(|&i| (prompts[i].len(), i));
    let budget = (MAX_LOGITS / vocab.max(1)).max(1);
    let (mut out, mut cur, mut tokens) = (Vec::new(), Vec::new(), 0);
    for i in order {
        for (k, &n) in lens[i].iter().enumerate() {
            if !cur.is_empty() && (cur.len() == ROWS || tokens + n > budget) {
                out.push(std::mem::take(&mut cur));
                tokens = 0;
            }
            cur.push((i, k));
            tokens += n;
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// One group's log-probs, pair by pair: its distinct prompts prefilled once, the first token of
/// each continuation scored from the prefill's logits, the rest fed in one pass.
fn score_group(
    model: &Gpt2,
    prompts: &[Vec<u32>],
    continuations: &[Vec<Vec<u32>>],
    group: &[(usize, usize)],
    pad_id: u32,
) -> Result<Vec<Vec<f64>>> {
    // The distinct prompts (a prompt's pairs are adjacent) and each pair's prefill row.
    let mut distinct: Vec<usize> = Vec::new();
    let mut from = Vec::with_capacity(group.len());
    for &(i, _) in group {
        if distinct.last() != Some(&i) {
            distinct.push(i);
        }
        from.push(distinct.len() - 1);
    }
    let conts: Vec<&Vec<u32>> = group.iter().map(|&(i, k)| &continuations[i][k]).collect();
    let longest = conts.iter().map(|c| c.len()).max().unwrap_or(1);
    let seqs: Vec<&Vec<u32>> = distinct.iter().map(|&i| &prompts[i]).collect();
    let (ids, att, last) = right_padded(model, &seqs, pad_id)?;
    let (logits, mut cache) = model.prefill(&ids, &att, &last, longest - 1)?;
    let rows = Tensor::from_vec(
        from.iter().map(|&r| r as u32).collect::<Vec<_>>(),
        from.len(),
        model.device(),
    )?;
    let first: Vec<u32> = conts.iter().map(|c| c[0]).collect();
    let firsts = row_logprobs(&logits.index_select(&rows, 0)?, &first)?;
    let mut out: Vec<Vec<f64>> = firsts.into_iter().map(|lp| vec![lp]).collect();
    if longest > 1 {
        cache.retain_rows(&from)?;
        let feeds: Vec<Vec<u32>> = conts.iter().map(|c| c[..c.len() - 1].to_vec()).collect();
        let targets: Vec<u32> = conts.iter().flat_map(|c| c[1..].iter().copied()).collect();
        let lps = row_logprobs(&model.extend(&mut cache, &feeds)?, &targets)?;
        let mut rest = lps.as_slice();
        for (o, c) in out.iter_mut().zip(&conts) {
            let (mine, after) = rest.split_at(c.len() - 1);
            o.extend_from_slice(mine);
            rest = after;
        }
    }
    Ok(out)
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
    fn groups_hold_at_most_the_cached_rows() {
        let prompts: Vec<Vec<u32>> = (0..30).map(|i| vec![1; 1 + i % 7]).collect();
        let lens: Vec<Vec<usize>> = (0..30).map(|i| vec![2 + i % 3; 5]).collect();
        let gs = groups(&prompts, &lens, 97);
        let pairs: usize = gs.iter().map(Vec::len).sum();
        assert_eq!(pairs, 150);
        assert!(gs.iter().all(|g| !g.is_empty() && g.len() <= ROWS));
        // A vocabulary so large that one continuation fills the logits budget: one per group.
        let gs = groups(&prompts, &lens, MAX_LOGITS);
        assert!(gs.iter().all(|g| g.len() == 1));
        assert_eq!(gs.len(), 150);
    }
}
