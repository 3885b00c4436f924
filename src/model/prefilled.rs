//! Everything asked of a set of prompts, each prompt run through the model once: its greedy
//! continuation (`generate`'s loop) and the log-probabilities of given continuations of it
//! (`continuation`'s batches) start from the same prefill, so a question whose greedy answer
//! and wrong answers the certifier both needs costs one prefill, not two. Prompts are grouped by
//! length within the key/value budget (`generate::length_chunks`); after a group's prefill its
//! continuations are scored on copies of the cached rows, then the cache itself is decoded.
//! This module owns the order of that work; it knows nothing of what the answers are for.

use super::continuation;
use super::generate::{decode, greedy_room, length_chunks, right_padded, slot_bytes};
use super::gpt2::Gpt2;
use candle_core::{bail, Result, Tensor};
use std::collections::HashSet;

/// What is asked of each prompt `i`.
pub struct Asks<'a> {
    pub prompts: &'a [Vec<u32>],
    /// At most this many greedy tokens after prompt `i` (0: no greedy continuation).
    pub max_new: &'a [usize],
    /// Tokens that end a greedy continuation (left out of it).
    pub stop: &'a HashSet<u32>,
    /// Continuations of prompt `i` whose tokens' log-probs are wanted (possibly none).
    pub continuations: &'a [Vec<Vec<u32>>],
}

/// The answers, prompt by prompt.
pub struct Answers {
    /// The greedy tokens after prompt `i` (empty where none were asked, and for an empty
    /// prompt or one that fills the context).
    pub greedy: Vec<Vec<u32>>,
    /// `log p(c_j | prompt, c_<j)` of token `j` of continuation `k` of prompt `i`: `[i][k][j]`.
    pub logprobs: Vec<Vec<Vec<f64>>>,
}

/// Runs every prompt something is asked of once and answers it (see [`Asks`]). Continuations
/// are checked first (`continuation_logprobs`' rules), before any work.
pub fn prefilled(model: &Gpt2, asks: &Asks, pad_id: u32) -> Result<Answers> {
    let (prompts, n) = (asks.prompts, asks.prompts.len());
    if asks.max_new.len() != n {
        bail!("{} greedy budgets for {n} prompts", asks.max_new.len());
    }
    let ctx = model.config().n_positions;
    continuation::check(prompts, asks.continuations, ctx)?;
    // The slots each prompt needs after it: its greedy tokens, and every continuation's tokens
    // but the first (scored from the prefill's logits); at least one where there is anything
    // to score, so that it gets a group.
    let greedy: Vec<usize> = (0..n)
        .map(|i| greedy_room(&prompts[i], asks.max_new[i], ctx))
        .collect();
    let extra: Vec<usize> = (0..n)
        .map(|i| {
            let cs = &asks.continuations[i];
            let longest = cs.iter().map(|c| c.len() - 1).max();
            greedy[i].max(longest.map_or(0, |l| l.max(1)))
        })
        .collect();
    let mut out = Answers {
        greedy: vec![Vec::new(); n],
        logprobs: asks
            .continuations
            .iter()
            .map(|cs| vec![Vec::new(); cs.len()])
            .collect(),
    };
    for group in length_chunks(prompts, &extra, slot_bytes(model)) {
        let seqs: Vec<&Vec<u32>> = group.iter().map(|&i| &prompts[i]).collect();
        let (ids, att, last) = right_padded(model, &seqs, pad_id)?;
        let room = group.iter().map(|&i| extra[i]).max().unwrap_or(0);
        let (logits, mut cache) = model.prefill(&ids, &att, &last, room)?;
        continuation::score(
            model,
            (&logits, &cache),
            &group,
            asks.continuations,
            &mut out.logprobs,
        )?;
        // The greedy continuations, on the prefill itself.
        let rows: Vec<usize> = (0..group.len()).filter(|&s| greedy[group[s]] > 0).collect();
        if rows.is_empty() {
            continue;
        }
        let logits = if rows.len() < group.len() {
            cache.retain_rows(&rows)?;
            let at: Vec<u32> = rows.iter().map(|&s| s as u32).collect();
            logits.index_select(&Tensor::from_vec(at, rows.len(), model.device())?, 0)?
        } else {
            logits
        };
        let rows = rows.iter().map(|&s| group[s]).collect();
        decode(
            model,
            logits,
            cache,
            rows,
            prompts,
            asks.max_new,
            asks.stop,
            &mut out.greedy,
        )?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::continuation::continuation_logprobs;
    use crate::model::generate::greedy_batch;
    use crate::model::{init::random_model, Gpt2Config};
    use candle_core::DType;

    /// Asked together, the greedy tokens are those asked apart, and the continuations'
    /// log-probs agree up to summation order (the groups, so the padded shapes, differ):
    /// 1e-5 in float32, as `continuation`'s test against a full pass. Prompts with greedy
    /// tokens only, continuations only, both, and neither.
    #[test]
    fn one_prefill_answers_as_two_do() {
        let cfg = Gpt2Config::new(97, 32, 16, 2, 4);
        let model = random_model(&cfg, 3, DType::F32).unwrap();
        let seq = |n: usize, a: u32, b: u32| (0..n as u32).map(|i| (i * a + b) % 97).collect();
        let prompts: Vec<Vec<u32>> = vec![seq(6, 7, 3), seq(2, 13, 5), seq(9, 29, 1), seq(3, 3, 2)];
        let max_new = [5, 0, 3, 0];
        let conts: Vec<Vec<Vec<u32>>> = vec![
            vec![seq(3, 5, 1), seq(1, 11, 4)],
            vec![seq(4, 19, 2)],
            vec![],
            vec![],
        ];
        let stop = HashSet::from([7u32]);
        let asks = Asks {
            prompts: &prompts,
            max_new: &max_new,
            stop: &stop,
            continuations: &conts,
        };
        let both = prefilled(&model, &asks, 0).unwrap();
        let greedy = greedy_batch(&model, &prompts, &max_new, &stop, 0).unwrap();
        let logprobs = continuation_logprobs(&model, &prompts, &conts, 0).unwrap();
        assert_eq!(both.greedy, greedy);
        let flat = |x: &Vec<Vec<Vec<f64>>>| -> Vec<f64> { x.concat().concat() };
        let (got, want) = (flat(&both.logprobs), flat(&logprobs));
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-5, "{got:?} vs {want:?}");
        }
        assert_eq!(both.greedy[1], Vec::<u32>::new());
        assert!(both.logprobs[2].is_empty() && both.logprobs[0][1].len() == 1);
        assert!(!both.greedy[0].is_empty() && both.logprobs[0][0].len() == 3);
    }
}
