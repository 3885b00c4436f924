//! Measuring: the evidence about a model, taken against the original and, where one exists, a
//! model retrained without the forget set — per-record scores on every split (`records`,
//! `scoring`, `answers`, `metrics`), membership-inference attack scores (`mia`), influence by exact
//! Hessian-vector products (`influence`, `lanczos`, `cg`, `activation`), and the run that
//! assembles them into the typed evidence file (`certifier`, writing `judge::evidence::Evidence`).
//! The model side of property checks lives here too (`oracle`). This is the half of the certifier
//! that needs candle. It reads models and data and never changes them; it never imports
//! `unlearn` (it measures a model, whoever made it), and it decides nothing: verdicts are
//! `judge`'s. `README.md` beside this file says, for every metric in the evidence, which
//! direction is good and against what reference.

pub mod activation;
pub mod answers;
pub mod certifier;
pub mod cg;
pub mod influence;
pub mod lanczos;
pub mod metrics;
pub mod mia;
pub mod oracle;
pub mod records;
pub mod scoring;

pub use crate::judge::evidence::Evidence;
pub use crate::judge::metric::Metric;
pub use certifier::{certify, load_inputs, min_records, Inputs, Request, RunSummary};

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
    Stats(#[from] crate::judge::stats::StatsError),
    #[error("statistics: {0}")]
    Derive(#[from] crate::judge::derive::DeriveError),
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
