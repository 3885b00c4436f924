//! Greedy decoding, the one decoder lethe has: the most likely next token, again and again, until
//! a stop token, a token budget or the model's context, for many prompts per forward pass (right
//! padding is masked and causal attention never looks ahead, so a row's tokens do not depend on
//! the other rows). Used for greedy answers (exact match, ROUGE-L) and to test whether a model
//! still produces a protected answer verbatim.

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

/// Prompts continued together in one forward pass.
const ROWS: usize = 32;

/// Greedy continuations of `prompts` (new tokens only, the stop token excluded), at most
/// `max_new[i]` tokens for prompt `i`.
pub fn greedy_batch(
    model: &Gpt2,
    prompts: &[Vec<u32>],
    max_new: &[usize],
    stop: &HashSet<u32>,
    pad_id: u32,
) -> Result<Vec<Vec<u32>>> {
    let ctx = model.config().n_positions;
    let mut out = vec![Vec::new(); prompts.len()];
    let mut order: Vec<usize> = (0..prompts.len()).collect();
    order.sort_by_key(|&i| (prompts[i].len(), i));
    for chunk in order.chunks(ROWS) {
        let mut seqs: Vec<Vec<u32>> = chunk.iter().map(|&i| prompts[i].clone()).collect();
        let mut active: Vec<usize> = (0..chunk.len())
            .filter(|&r| max_new[chunk[r]] > 0 && seqs[r].len() < ctx && !seqs[r].is_empty())
            .collect();
        while !active.is_empty() {
            let next = next_tokens(
                model,
                &active.iter().map(|&r| &seqs[r]).collect::<Vec<_>>(),
                pad_id,
            )?;
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

/// The argmax next token after each sequence.
fn next_tokens(model: &Gpt2, seqs: &[&Vec<u32>], pad_id: u32) -> Result<Vec<u32>> {
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
    let last: Vec<usize> = seqs.iter().map(|s| s.len() - 1).collect();
    model
        .next_logits(&ids, &att, &last)?
        .argmax(D::Minus1)?
        .to_vec1::<u32>()
}
