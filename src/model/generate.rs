//! Greedy decoding: the most likely next token, again and again, until a stop token or a length
//! limit. Used to test whether a model still produces a protected answer verbatim.

use super::gpt2::Gpt2;
use candle_core::{Result, Tensor, D};

/// Greedily continues `prompt` with at most `max_new` tokens, stopping after any token in
/// `stop` (which is not included in the result). Returns the new tokens only.
pub fn greedy(model: &Gpt2, prompt: &[u32], max_new: usize, stop: &[u32]) -> Result<Vec<u32>> {
    let ctx = model.config().n_positions;
    let mut ids = prompt.to_vec();
    let mut out = Vec::new();
    while out.len() < max_new && ids.len() < ctx {
        let t = ids.len();
        let input = Tensor::from_slice(&ids, (1, t), model.device())?;
        let att = Tensor::ones((1, t), candle_core::DType::U32, model.device())?;
        let next = model
            .next_logits(&input, &att, &[t - 1])?
            .flatten_all()?
            .argmax(D::Minus1)?
            .to_scalar::<u32>()?;
        if stop.contains(&next) {
            break;
        }
        ids.push(next);
        out.push(next);
    }
    Ok(out)
}
