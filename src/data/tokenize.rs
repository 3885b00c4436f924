//! Tokenization of records with a Hugging Face `tokenizer.json` (the `tokenizers` crate): text
//! without added special tokens, as transformers does for `labels = input_ids`. A
//! question–answer record is the prompt's tokens followed by the answer's, and only the
//! answer's tokens are scored; the prompt is rendered through the model's chat template first
//! when it ships one (`chat`). The file is read once, as an untrusted regular file of capped
//! size, and vetted (`vet`: linear-time regexes, bounded growth) before `tokenizers` builds it;
//! each text tokenized is capped too, so no record can make tokenization run away.

use super::chat::ChatTemplate;
use super::jsonl::{DataError, MAX_LINE_BYTES};
use super::record::Record;
use super::vet::vet_tokenizer_json;
use crate::untrusted::{read_regular_file_capped, StrictJson};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// `tokenizer.json` files larger than this are refused before reading: GPT-2's is 1.4 MB and
/// the 256k-entry vocabularies of recent models stay under 40 MB.
pub const MAX_TOKENIZER_BYTES: u64 = 64 << 20;

/// The longest text tokenized at once: a JSONL line's limit, since a record's text comes from
/// one line; with `vet::MAX_EXPANSION` this bounds the normalized text too.
pub const MAX_TEXT_BYTES: usize = MAX_LINE_BYTES;

/// A tokenized record: its ids and the first position whose token is scored.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub id: String,
    pub ids: Vec<u32>,
    /// Tokens at positions `>= score_from` are targets; 0 scores every predicted token.
    pub score_from: usize,
}

impl Encoded {
    /// The number of tokens scored as targets (those [`crate::data::Batch`] weights).
    pub fn scored_tokens(&self) -> usize {
        self.ids.len().saturating_sub(self.score_from.max(1))
    }
}

pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
    /// The `<|endoftext|>` id when the vocabulary has it.
    pub eos_id: Option<u32>,
    json: Vec<u8>,
    /// The chat template beside `tokenizer.json`, if the model ships one: question–answer
    /// prompts are rendered through it ([`TextTokenizer::encode_prompt`]).
    pub chat_template: Option<ChatTemplate>,
}

impl TextTokenizer {
    /// Reads, vets and builds the tokenizer at `path`.
    pub fn load(path: &Path) -> Result<Self, DataError> {
        let bytes = read_regular_file_capped(path, MAX_TOKENIZER_BYTES, "tokenizer.json")?;
        Self::from_bytes(path, bytes)
    }

    /// Vets and builds a tokenizer from the bytes of `path`, already read (for a caller that
    /// also digests or copies the file, so that it is read once).
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Self, DataError> {
        let bad = |msg: String| DataError::Tokenizer {
            path: path.to_path_buf(),
            msg,
        };
        let (text, json) = StrictJson::of_file(&bytes).map_err(bad)?;
        vet_tokenizer_json(path, &json)?;
        let inner = tokenizers::Tokenizer::from_str(text).map_err(|e| bad(e.to_string()))?;
        let eos_id = inner.token_to_id("<|endoftext|>");
        let dir = path.parent().unwrap_or(Path::new("."));
        Ok(TextTokenizer {
            inner,
            path: path.to_path_buf(),
            eos_id,
            json: bytes,
            chat_template: ChatTemplate::find(dir)?,
        })
    }

    /// The bytes of `tokenizer.json` this tokenizer was built from (to save or digest them
    /// without reading the file again).
    pub fn json(&self) -> &[u8] {
        &self.json
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Token ids of `text`, no special tokens added; a text over [`MAX_TEXT_BYTES`] is refused.
    pub fn encode_text(&self, text: &str) -> Result<Vec<u32>, DataError> {
        if text.len() > MAX_TEXT_BYTES {
            return Err(DataError::Tokenizer {
                path: self.path.clone(),
                msg: format!(
                    "refusing to tokenize a text of {} bytes, more than the {MAX_TEXT_BYTES}-byte limit",
                    text.len()
                ),
            });
        }
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| DataError::Tokenizer {
                path: self.path.clone(),
                msg: e.to_string(),
            })?;
        Ok(enc.get_ids().to_vec())
    }

    /// Token ids of a question–answer record's prompt: rendered through the chat template as
    /// one user turn and the assistant's header when the model has one, the text as is when not.
    pub fn encode_prompt(&self, prompt: &str) -> Result<Vec<u32>, DataError> {
        match &self.chat_template {
            Some(t) => self.encode_text(&t.render_prompt(prompt)?),
            None => self.encode_text(prompt),
        }
    }

    /// The files that describe this tokenizer, by name, to write beside a saved model:
    /// `tokenizer.json`, and the chat template's file when there is one.
    pub fn files(&self) -> Vec<(&str, &[u8])> {
        let mut out = vec![("tokenizer.json", self.json.as_slice())];
        if let Some(t) = &self.chat_template {
            out.push((t.file_name(), t.bytes.as_slice()));
        }
        out
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
                let mut ids = self.encode_prompt(p)?;
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
