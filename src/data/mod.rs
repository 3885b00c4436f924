//! Records and everything that turns them into model input: JSONL files read line by line with
//! checked errors, tokenization with a Hugging Face `tokenizer.json` (vetted first, as every
//! input file may be hostile), padded batches with masks.
//! This module knows nothing of models beyond token ids.

pub mod batch;
pub mod chat;
pub mod fuzzy;
pub mod jsonl;
pub mod record;
pub mod tokenize;
pub mod vet;

pub use batch::Batch;
pub use jsonl::{read_records, read_records_hashed, DataError, JsonlReader};
pub use record::Record;
pub use tokenize::{Encoded, TextTokenizer};
