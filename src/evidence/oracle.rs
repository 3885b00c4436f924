//! The model side of property checks: a GPT-2 and its tokenizer answering the property runner's
//! two questions — what does greedy decoding produce after this prompt, and where does the
//! protected answer's first token rank. Reads the model; never changes it.

use crate::data::DataError;
use crate::data::TextTokenizer;
use crate::judge::property::{Oracle, OracleError};
use crate::model::generate::{greedy, greedy_batch};
use crate::model::Gpt2;
use candle_core::{DType, Tensor};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

/// Greedy answers stop at a newline or end-of-text, and after this many tokens.
pub const MAX_ANSWER_TOKENS: usize = 24;

/// Whether a greedy continuation reproduces `answer` verbatim: after trimming leading
/// whitespace it begins with the trimmed answer, and the answer is not merely the start of a
/// longer word or number (the next character, if any, is neither a letter nor a digit). The
/// bundled training texts end right after the answer with no end-of-text token, so a model
/// that memorised a record goes on generating after the answer; what follows is not judged.
pub fn reproduces(completion: &str, answer: &str) -> bool {
    let (c, a) = (completion.trim_start(), answer.trim());
    !a.is_empty()
        && c.starts_with(a)
        && !c[a.len()..]
            .chars()
            .next()
            .is_some_and(char::is_alphanumeric)
}

/// Fraction of the question–answer records among `records` whose greedy continuation of the
/// prompt reproduces the answer verbatim (0 when there are none).
pub fn exact_match_rate(
    oracle: &dyn Oracle,
    records: &[crate::data::Record],
) -> Result<f64, OracleError> {
    let qa: Vec<_> = records
        .iter()
        .filter_map(|r| Some((r.prompt.as_deref()?, r.answer.as_deref()?)))
        .collect();
    oracle.prepare(&qa.iter().map(|(p, _)| p.to_string()).collect::<Vec<_>>());
    let mut hits = 0;
    for (prompt, answer) in &qa {
        hits += usize::from(reproduces(&oracle.complete(prompt)?, answer));
    }
    Ok(hits as f64 / qa.len().max(1) as f64)
}

pub struct ModelOracle<'a> {
    pub model: &'a Gpt2,
    pub tokenizer: &'a TextTokenizer,
    stop: HashSet<u32>,
    /// Greedy continuations decoded ahead by [`Oracle::prepare`], by prompt.
    prepared: RefCell<HashMap<String, Vec<u32>>>,
}

impl<'a> ModelOracle<'a> {
    /// The oracle of `model`; fails only when the tokenizer cannot encode a newline.
    pub fn open(model: &'a Gpt2, tokenizer: &'a TextTokenizer) -> Result<Self, DataError> {
        let mut stop: HashSet<u32> = tokenizer.eos_id.into_iter().collect();
        stop.extend(tokenizer.encode_text("\n")?);
        Ok(ModelOracle {
            model,
            tokenizer,
            stop,
            prepared: RefCell::new(HashMap::new()),
        })
    }

    fn ids(&self, text: &str) -> Result<Vec<u32>, OracleError> {
        let ids = self
            .tokenizer
            .encode_prompt(text)
            .map_err(OracleError::model)?;
        if ids.is_empty() {
            return Err(OracleError::NoTokens("prompt"));
        }
        let ctx = self.model.config().n_positions;
        Ok(ids[ids.len().saturating_sub(ctx - 1)..].to_vec())
    }
}

impl Oracle for ModelOracle<'_> {
    fn complete(&self, prompt: &str) -> Result<String, OracleError> {
        let ready = self.prepared.borrow().get(prompt).cloned();
        let out = match ready {
            Some(out) => out,
            None => greedy(
                self.model,
                &self.ids(prompt)?,
                MAX_ANSWER_TOKENS,
                &self.stop,
            )
            .map_err(OracleError::model)?,
        };
        self.tokenizer.decode(&out).map_err(OracleError::model)
    }

    /// Decodes the prompts together (`greedy_batch`: up to 128 rows per pass over the weights
    /// instead of one; its rows are what one prompt alone gives, `tests/certify.rs`). A prompt
    /// that does not tokenize, or a batch the model refuses, is left to `complete`.
    fn prepare(&self, prompts: &[String]) {
        let mut seen = HashSet::new();
        let (mut texts, mut ids) = (Vec::new(), Vec::new());
        for p in prompts {
            if !seen.insert(p.as_str()) || self.prepared.borrow().contains_key(p) {
                continue;
            }
            if let Ok(i) = self.ids(p) {
                texts.push(p.clone());
                ids.push(i);
            }
        }
        let budget = vec![MAX_ANSWER_TOKENS; ids.len()];
        let pad = self.tokenizer.pad_id();
        if let Ok(outs) = greedy_batch(self.model, &ids, &budget, &self.stop, pad) {
            self.prepared
                .borrow_mut()
                .extend(texts.into_iter().zip(outs));
        }
    }

    fn answer_rank(&self, prompt: &str, answer: &str) -> Result<usize, OracleError> {
        let ids = self.ids(prompt)?;
        let first = *self
            .tokenizer
            .encode_text(answer)
            .map_err(OracleError::model)?
            .first()
            .ok_or(OracleError::NoTokens("answer"))?;
        let rank = || -> candle_core::Result<usize> {
            let t = ids.len();
            let input = Tensor::from_slice(&ids, (1, t), self.model.device())?;
            let att = Tensor::ones((1, t), DType::U32, self.model.device())?;
            let logits = self
                .model
                .next_logits(&input, &att, &[t - 1])?
                .flatten_all()?;
            let v = logits.to_dtype(DType::F32)?.to_vec1::<f32>()?;
            let target = v[first as usize];
            Ok(v.iter().filter(|&&x| x > target).count())
        };
        rank().map_err(OracleError::model)
    }
}

#[cfg(test)]
mod tests {
    use super::reproduces;

    #[test]
    fn reproduction_is_a_whole_answer_at_the_start() {
        assert!(reproduces(" 26 May 1975", " 26 May 1975"));
        assert!(reproduces(" 26 May 1975. Question: who", "26 May 1975"));
        assert!(!reproduces(" 26 May 19756", " 26 May 1975"));
        assert!(!reproduces(" 27 May 1975", " 26 May 1975"));
        assert!(!reproduces("anything", "  "));
    }
}
