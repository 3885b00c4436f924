//! Decoder language models with Hugging Face names and layout (GPT-2 and the Llama family):
//! configuration, safe loading and saving of HF directories, parameter groups, the
//! hand-written forward, backward and tangent pass, per-token log-probs, per-example gradient
//! norms, greedy generation with a key/value cache and continuations scored against one (both
//! from one prefill of each prompt).
//! Parameters live in candle tensors; the arithmetic is `pass`'s. This module owns everything
//! about the network itself; it knows nothing of training, unlearning or certification, which
//! use it through this interface.

pub mod cache;
pub mod config;
pub mod continuation;
pub mod generate;
pub mod gpt2;
pub mod grad;
pub mod init;
pub mod load;
pub mod params;
pub mod pass;
pub mod per_example;
pub mod prefilled;
pub mod save;

pub use config::{ConfigError, Gpt2Config};
pub use gpt2::Gpt2;
pub use load::{load_model, FileDigest, LoadError, LoadedModel};
pub use params::{Group, GroupError, ParamGroups};
pub use save::save_model;
