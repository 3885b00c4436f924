//! Greedy decoding, the one decoder lethe has: the most likely next token, again and again, until
//! a stop token, a token budget or the model's context, for many prompts at once. Each group of
//! prompts is run through the model once (`cache`'s prefill) and then one token per row per step
//! against the key/value cache; a row that stops leaves the cache. Right padding is masked and
//! causal attention never looks ahead, so a row's tokens do not depend on the other rows. Used
//! for greedy answers (exact match, ROUGE-L) and to test whether a model still produces a
//! protected answer verbatim. [`greedy_batch_uncached`], which re-runs every prefix at every
//! step, is kept as the reference the cached decoder is tested and benchmarked against.

use super::gpt2::Gpt2;
use candle_core::{Result, Tensor, D};
use std::collections::HashSet;

/// Greedily continues one `prompt` with at most `max_new` tokens, stopping before any token in
/// `stop`. Returns the new tokens only.
pub fn greedy(
    model: &Gpt2,
    prompt: &[u32],
    max_new: usize,
    stop: &HashSet<u32>,
) -> Result<Vec<u32>> {
    let pad = prompt.first().copied().unwrap_or(0);
    let mut out = greedy_batch(model, &[prompt.to_vec()], &[max_new], stop, pad)?;
    Ok(out.pop().unwrap_or_default())
}

/// Prompts decoded together (one prefill, one cache).
const ROWS: usize = 32;

/// Greedy continuations of `prompts` (new tokens only, the stop token excluded), at most
/// `max_new[i]` tokens for prompt `i`, decoded with a key/value cache.
pub fn greedy_batch(
    model: &Gpt2,
    prompts: &[Vec<u32>],
    max_new: &[usize],
    stop: &HashSet<u32>,
    pad_id: u32,
) -> Result<Vec<Vec<u32>>> {
    let ctx = model.config().n_positions;
    let mut out = vec![Vec::new(); prompts.len()];
    for chunk in length_chunks(prompts, max_new, ctx) {
        let seqs: Vec<&Vec<u32>> = chunk.iter().map(|&i| &prompts[i]).collect();
        let (ids, att, last) = right_padded(model, &seqs, pad_id)?;
        // Tokens fed after the prompt: at most the budget, at most up to the context.
        let extra = chunk
            .iter()
            .map(|&i| max_new[i].min(ctx - prompts[i].len()))
            .max()
            .unwrap_or(0);
        let (mut logits, mut cache) = model.prefill(&ids, &att, &last, extra)?;
        let mut active = chunk;
        loop {
            let next = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
            let (mut keep, mut feed) = (Vec::new(), Vec::new());
            for (slot, (&i, tok)) in active.iter().zip(next).enumerate() {
                if stop.contains(&tok) {
                    continue;
                }
                out[i].push(tok);
                if out[i].len() < max_new[i] && prompts[i].len() + out[i].len() < ctx {
                    keep.push(slot);
                    feed.push(tok);
                }
            }
            if keep.is_empty() {
                break;
            }
            if keep.len() < active.len() {
                cache.retain_rows(&keep)?;
                active = keep.iter().map(|&s| active[s]).collect();
            }
            logits = model.step(&mut cache, &feed)?;
        }
    }
    Ok(out)
}

/// The same continuations as [`greedy_batch`], computed without a cache: every step runs the
/// whole prefix of every unfinished row again (the reference for the cached decoder).
pub fn greedy_batch_uncached(
    model: &Gpt2,
    prompts: &[Vec<u32>],
    max_new: &[usize],
    stop: &HashSet<u32>,
    pad_id: u32,
) -> Result<Vec<Vec<u32>>> {
    let ctx = model.config().n_positions;
    let mut out = vec![Vec::new(); prompts.len()];
    for chunk in length_chunks(prompts, max_new, ctx) {
        let mut seqs: Vec<Vec<u32>> = chunk.iter().map(|&i| prompts[i].clone()).collect();
        let mut active: Vec<usize> = (0..chunk.len()).collect();
        while !active.is_empty() {
            let rows: Vec<&Vec<u32>> = active.iter().map(|&r| &seqs[r]).collect();
            let (ids, att, last) = right_padded(model, &rows, pad_id)?;
            let next = model
                .next_logits(&ids, &att, &last)?
                .argmax(D::Minus1)?
                .to_vec1::<u32>()?;
            let mut still = Vec::new();
            for (&r, tok) in active.iter().zip(next) {
                let i = chunk[r];
                if stop.contains(&tok) {
                    continue;
                }
                seqs[r].push(tok);
                out[i].push(tok);
                if out[i].len() < max_new[i] && seqs[r].len() < ctx {
                    still.push(r);
                }
            }
            active = still;
        }
    }
    Ok(out)
}

/// The prompts that get any token (non-empty, shorter than the context, a budget above zero),
/// sorted by length and cut into groups of [`ROWS`].
fn length_chunks(prompts: &[Vec<u32>], max_new: &[usize], ctx: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..prompts.len())
        .filter(|&i| max_new[i] > 0 && !prompts[i].is_empty() && prompts[i].len() < ctx)
        .collect();
    order.sort_by_key(|&i| (prompts[i].len(), i));
    order.chunks(ROWS).map(<[usize]>::to_vec).collect()
}

/// Ids `[B, T]` padded on the right with `pad_id`, the attention mask `[B, T]` and each row's
/// last real position.
pub(super) fn right_padded(
    model: &Gpt2,
    seqs: &[&Vec<u32>],
    pad_id: u32,
) -> Result<(Tensor, Tensor, Vec<usize>)> {
    let cols = seqs.iter().map(|s| s.len()).max().unwrap_or(1);
    let mut ids = vec![pad_id; seqs.len() * cols];
    let mut att = vec![0u32; seqs.len() * cols];
    for (r, s) in seqs.iter().enumerate() {
        ids[r * cols..r * cols + s.len()].copy_from_slice(s);
        att[r * cols..r * cols + s.len()].fill(1);
    }
    let dev = model.device();
    let ids = Tensor::from_vec(ids, (seqs.len(), cols), dev)?;
    let att = Tensor::from_vec(att, (seqs.len(), cols), dev)?;
    let last = seqs.iter().map(|s| s.len() - 1).collect();
    Ok((ids, att, last))
}
