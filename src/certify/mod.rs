//! The certifier: evidence about a model measured against the original and, where one exists, a
//! model retrained without the forget set — utility and memorisation metrics, membership
//! inference, statistics with confidence intervals, influence — and the specifications that turn
//! evidence into verdicts. It reads models and data and never changes them; it never imports
//! `unlearn` (it judges a model, whoever made it). `README.md` beside this file says, for every
//! metric in the evidence, which direction is good and against what reference.

pub mod activation;
pub mod aggregate;
pub mod answers;
pub mod certifier;
pub mod cg;
pub mod evidence;
pub mod influence;
pub mod lanczos;
pub mod metric;
pub mod metrics;
pub mod mia;
pub mod oracle;
pub mod property;
pub mod records;
pub mod scoring;
pub mod spec;
pub mod stats;
pub mod verdict;

pub use certifier::{certify, load_inputs, min_records, Inputs, Request, RunSummary};
pub use evidence::Evidence;
pub use metric::Metric;

use std::path::PathBuf;

/// Why a certification could not run. Every variant names what to fix; none is a verdict.
#[derive(Debug, thiserror::Error)]
pub enum CertifyError {
    #[error(transparent)]
    Load(#[from] crate::model::LoadError),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error("model computation failed: {0}")]
    Model(#[from] candle_core::Error),
    #[error("statistics: {0}")]
    Stats(#[from] stats::StatsError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("the models do not belong together: {0}")]
    Mismatch(String),
    #[error(
        "the {split} split has {got} records, but {what} needs at least {need}; \
         add {more} more record(s) or lower the confidence"
    )]
    TooSmall {
        split: &'static str,
        got: usize,
        need: usize,
        more: usize,
        what: String,
    },
    #[error("invalid setting: {0}")]
    Setting(String),
}
