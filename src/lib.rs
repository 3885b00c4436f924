//! lethe makes a GPT-2 language model forget chosen training records and certifies the result.
//! The modules are the stages of its pipeline: `data` (records, tokens, batches), `model`
//! (GPT-2 in candle, Hugging Face layout), and `cli` (the commands). See DESIGN.md in the
//! shared folder and README.md for the whole picture.
#![deny(unsafe_code)]
#![warn(clippy::unwrap_used)]

pub mod atomic;
pub mod certify;
pub mod cli;
pub mod data;
pub mod machine;
pub mod model;
pub mod output;
pub mod report;
pub mod runtime;
pub mod train;
pub mod unlearn;
