//! The bundled synthetic world, a fixture maker rather than a pipeline stage: fictitious people
//! with question–answer and biography records split into forget/retain/holdout/utility sets
//! (`generate`), the knobs that vary it into worlds lethe was never tuned on (`knobs`: shared
//! first names and cities, other facts and record counts, other prompt formats), and the
//! byte-level BPE tokenizer trained on them (`bpe`). Same seed, same bytes.
//! It writes JSONL and `tokenizer.json` for the pipeline to read like any user's data; nothing in
//! the pipeline imports it.

pub mod bpe;
pub mod generate;
pub mod knobs;

pub use generate::*;
pub use knobs::PromptFormat;
