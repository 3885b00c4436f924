//! Records and everything that turns them into model input: JSONL files read line by line with
//! checked errors, tokenization with a Hugging Face `tokenizer.json`, padded batches with masks.
//! This module knows nothing of models beyond token ids.

pub mod batch;
pub mod fuzzy;
pub mod jsonl;
pub mod record;
pub mod tokenize;

pub use batch::Batch;
pub use jsonl::{read_records, DataError, JsonlReader};
pub use record::Record;
pub use tokenize::{Encoded, TextTokenizer};
