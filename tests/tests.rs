//! lethe's integration tests, one binary (candle links slowly). Each module tests one stage.

/// Bad input: model files and JSONL data that must give a clear error naming the file/line.
mod bad_input;
/// The certifier end to end: evidence contract, reproducibility, run-time HVP checks, bad input.
mod certify;
mod common;
/// GPT-2 against the Hugging Face oracle in ../shared/oracles/tiny-gpt2 (logits, grads, HVPs).
mod oracle;
/// Saving a model: round trip to the same tensors, parameter groups, the CLI.
mod roundtrip;
/// The GPT-2 tokenizer against the ids in ../shared/oracles/gpt2-tokenizer.
mod tokenizer;
