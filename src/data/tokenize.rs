//! Tokenization of records with a Hugging Face `tokenizer.json` (the `tokenizers` crate): text
//! without added special tokens, as transformers does for `labels = input_ids`. A
//! question–answer record is the prompt's tokens followed by the answer's, and only the
//! answer's tokens are scored.

use super::jsonl::DataError;
use super::record::Record;
use std::path::{Path, PathBuf};

/// A tokenized record: its ids and the first position whose token is scored.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub id: String,
    pub ids: Vec<u32>,
    /// Tokens at positions `>= score_from` are targets; 0 scores every predicted token.
    pub score_from: usize,
}

pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
    /// The `<|endoftext|>` id when the vocabulary has it.
    pub eos_id: Option<u32>,
}

impl TextTokenizer {
    pub fn load(path: &Path) -> Result<Self, DataError> {
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| DataError::Tokenizer {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        let eos_id = inner.token_to_id("<|endoftext|>");
        Ok(TextTokenizer {
            inner,
            path: path.to_path_buf(),
            eos_id,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Token ids of `text`, no special tokens added.
    pub fn encode_text(&self, text: &str) -> Result<Vec<u32>, DataError> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| DataError::Tokenizer {
                path: self.path.clone(),
                msg: e.to_string(),
            })?;
        Ok(enc.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String, DataError> {
        self.inner
            .decode(ids, false)
            .map_err(|e| DataError::Tokenizer {
                path: self.path.clone(),
                msg: e.to_string(),
            })
    }

    /// Encodes a record. With `answer_only` a question–answer record scores its answer tokens
    /// only; otherwise (and for plain records) every predicted token is scored.
    /// `max_len` is the model's context; a longer record is an error, never silently cut.
    pub fn encode(
        &self,
        rec: &Record,
        answer_only: bool,
        max_len: usize,
    ) -> Result<Encoded, DataError> {
        let bad = |msg: String| DataError::Record {
            path: self.path.clone(),
            id: rec.id.clone(),
            msg,
        };
        let (ids, score_from) = match (&rec.prompt, &rec.answer, answer_only) {
            (Some(p), Some(a), true) => {
                let mut ids = self.encode_text(p)?;
                let n = ids.len();
                let ans = self.encode_text(a)?;
                if ans.is_empty() {
                    return Err(bad("the answer has no tokens".into()));
                }
                ids.extend(ans);
                (ids, n)
            }
            _ => (self.encode_text(&rec.text)?, 0),
        };
        if ids.len() < 2 {
            return Err(bad(format!(
                "{} token(s): a record needs at least two to score",
                ids.len()
            )));
        }
        if ids.len() > max_len {
            return Err(bad(format!(
                "{} tokens, more than the model's context of {max_len}",
                ids.len()
            )));
        }
        Ok(Encoded {
            id: rec.id.clone(),
            ids,
            score_from,
        })
    }

    /// Encodes every record (see [`TextTokenizer::encode`]); the first bad record is the error.
    pub fn encode_all(
        &self,
        records: &[Record],
        answer_only: bool,
        max_len: usize,
    ) -> Result<Vec<Encoded>, DataError> {
        records
            .iter()
            .map(|r| self.encode(r, answer_only, max_len))
            .collect()
    }

    /// Refuses a tokenizer that can emit ids the model has no embedding for.
    pub fn check_vocab(&self, model_vocab: usize) -> Result<(), DataError> {
        let n = self.vocab_size();
        if n > model_vocab {
            return Err(DataError::Tokenizer {
                path: self.path.clone(),
                msg: format!("the tokenizer has {n} ids but the model's vocabulary only {model_vocab}: they do not belong together"),
            });
        }
        Ok(())
    }

    /// The padding id: `<|endoftext|>` where it exists (padding is masked out anyway).
    pub fn pad_id(&self) -> u32 {
        self.eos_id.unwrap_or(0)
    }
}
