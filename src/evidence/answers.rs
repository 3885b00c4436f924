//! Greedy answers to question prompts: which tokens end an answer, and the answer text of a
//! generation. The decoding itself is `model::generate::greedy_batch`, the one greedy decoder.
//! This module reads the tokenizer; it never changes a model.

use crate::data::{DataError, TextTokenizer};
use std::collections::HashSet;

/// The ids that end an answer: `<|endoftext|>` and every token whose text contains a newline.
pub fn answer_stops(tok: &TextTokenizer) -> Result<HashSet<u32>, DataError> {
    let mut stop = HashSet::new();
    for id in 0..tok.vocab_size() as u32 {
        let text = tok.decode(&[id])?;
        if text.contains('\n') {
            stop.insert(id);
        }
    }
    stop.extend(tok.eos_id);
    Ok(stop)
}

/// The answer text of a generation: decoded, cut at the first newline, trimmed.
pub fn answer_text(tok: &TextTokenizer, ids: &[u32]) -> Result<String, DataError> {
    let text = tok.decode(ids)?;
    Ok(text.split('\n').next().unwrap_or("").trim().to_string())
}
