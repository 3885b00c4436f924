//! lethe makes a language model forget chosen training records and certifies the result.
//!
//! Read the modules in the order data flows through them — one way, left to right:
//!
//! ```text
//!  data ─▶ model ─▶ train ─▶ unlearn ─▶ evidence ─▶ judge ─▶ report
//!  (records,  (GPT-2,   (training,  (calibrated   (measuring:  (verdicts:  (signed
//!   tokens,    loading,  first-epoch gradient      scores,      metrics,    certificate,
//!   batches)   passes)   ledger)    ascent)       attacks,     statistics, verify, pages,
//!                                                 influence)   specs)      diffs)
//! ```
//!
//! - [`data`]: JSONL records, tokenization with a Hugging Face `tokenizer.json`, padded batches,
//!   fuzzy matching of an erasure request against a corpus.
//! - [`model`]: the decoder in Hugging Face names and layout — safe loading and saving, parameter
//!   groups, the float32 forward and backward passes, exact float64 gradients and
//!   Hessian-vector products, per-example gradient norms of a batch, greedy generation with a
//!   key/value cache. Knows nothing of unlearning or certificates.
//! - [`train`]: the training loop (from scratch or fine-tuning) and the first-epoch gradient
//!   ledger the seed paper replays.
//! - [`unlearn`]: the engine — methods, parameter-group selection, calibration and stop rules.
//! - [`evidence`]: the measuring half of the certifier (needs candle): per-record scores,
//!   greedy answers, membership-inference attack scores, influence; writes the typed evidence.
//! - [`judge`]: the judging half (no candle): the typed evidence schema, the metric table,
//!   statistics, the spec language, property checks' runner, verdicts.
//! - [`issue`]: the one issuance path — measure, judge, write the report and pages, sign —
//!   that `lethe certify --spec` and `lethe demo` both call.
//! - [`report`]: report schema, canonical JSON, in-toto/DSSE signing, verification, HTML and
//!   Markdown, diffs. Imports `judge`, never candle, `model` or `evidence`.
//! - [`cli`]: the `lethe` commands, turned into checked requests once.
//!
//! Beside the pipeline: [`world`] makes the bundled synthetic world and its tokenizer (a fixture
//! maker, not a stage), [`digest`] is the one sha256 helper, [`atomic`] the one way files are
//! written, [`machine`] and [`runtime`] describe and set up the process. DESIGN.md (in the team's
//! shared folder) and README.md give the whole picture.
#![deny(unsafe_code)]
#![warn(clippy::unwrap_used)]

pub mod atomic;
pub mod cli;
pub mod data;
pub mod digest;
pub mod evidence;
pub mod issue;
pub mod judge;
pub mod machine;
pub mod model;
pub mod output;
pub mod report;
pub mod runtime;
pub mod train;
pub mod unlearn;
pub mod untrusted;
pub mod world;
