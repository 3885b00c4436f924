//! lethe's integration tests, one binary (candle links slowly). Each module tests one stage.

/// Bad input: model files and JSONL data that must give a clear error naming the file/line.
mod bad_input;
/// The certifier's batched work (cached greedy decoding, per-example gradient norms) against
/// the one-at-a-time computations on the bundled world.
mod batched;
/// The certifier end to end: evidence contract, reproducibility, run-time HVP checks, bad input.
mod certify;
/// Chat templates against transformers' rendering, hostile templates, and the chain with one.
mod chat_template;
mod common;
/// The Llama family (llama, qwen2, bf16 shards) against the Hugging Face oracles in
/// tests/oracles/tiny-llama, tiny-qwen2 and tiny-llama-bf16-sharded.
mod families;
/// The bundled world and fixture models: determinism and the memorisation bars.
mod fixtures;
/// The committed golden certificate verifies in CI.
mod golden;
/// Hostile model directories, tokenizers and data: refused quickly with the file named.
mod hostile_inputs;
/// The chain (unlearn, certify, sign, verify) on the bundled Llama-family models.
mod llama_chain;
/// GPT-2 against the Hugging Face oracle in tests/oracles/tiny-gpt2 (logits, grads, HVPs).
mod oracle;
/// Saving a model: round trip to the same tensors, parameter groups, the CLI.
mod roundtrip;
/// Safe outputs: no output replaces an input or (without --force) an existing output; diff --key.
mod safe_outputs;
/// Sharded checkpoints (`model.safetensors.index.json`): the oracle split in three, and hostile
/// indexes.
mod sharded;
/// Issue 17: the default unlearning and certification on models trained here, from generated
/// worlds no default was tuned on.
mod strangers;
/// The GPT-2 tokenizer against the ids in tests/oracles/gpt2-tokenizer.
mod tokenizer;
/// Training and the first-epoch gradient ledger on a small generated slice.
mod train;
/// Unlearning forget05 from the bundled full model: the bars of the unlearning issue.
mod unlearn;
/// Specs judged on the bundled world: the original fails gdpr-art17 and strict, the retrains
/// pass gdpr-art17 and strict's attack requirements.
mod verdicts;
/// The README's "Certify your own model" run verbatim on a GPT-2 trained here (issue 14, item 5).
mod walkthrough;
