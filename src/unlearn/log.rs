//! The unlearning record, `unlearn.json`: what a run started from (the model's files by digest),
//! what it wrote (the unlearned model's files by digest), the data it ascended on and calibrated
//! on (files, digests and the record ids of the calibration holdout), the ledger and its
//! alignment, and the outcome (configuration, levels, every step, why it stopped). `lethe unlearn`
//! and `lethe demo` write it through [`UnlearnLog`]; `lethe certify --unlearn-log` reads it back,
//! checks it against the models it measured, and binds it into the report by digest. This
//! module owns the format; it computes nothing.

use super::engine::UnlearnOutcome;
use super::rounding::Rounding;
use crate::data::fuzzy::Match;
use crate::data::Record;
use crate::digest::FileDigest;
use crate::train::ledger::Alignment;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The file name lethe writes beside an unlearned model.
pub const UNLEARN_LOG_FILE: &str = "unlearn.json";

/// A model directory and the digests of its files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFiles {
    pub dir: String,
    pub files: Vec<FileDigest>,
}

impl ModelFiles {
    pub fn new(dir: &Path, files: Vec<FileDigest>) -> Self {
        ModelFiles {
            dir: dir.display().to_string(),
            files,
        }
    }

    /// The digests of a model directory's files as the loader reads them (`config.json`,
    /// `model.safetensors`, and `tokenizer.json` when present), hashed as streams.
    pub fn of_dir(dir: &Path) -> std::io::Result<Self> {
        let mut files = Vec::new();
        for name in ["config.json", "model.safetensors", "tokenizer.json"] {
            let path = dir.join(name);
            if name == "tokenizer.json" && !path.exists() {
                continue;
            }
            let (sha256, bytes) = crate::digest::file_sha256_hex(&path)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            files.push(FileDigest {
                name: name.into(),
                sha256,
                bytes,
            });
        }
        Ok(ModelFiles::new(dir, files))
    }
}

/// A JSONL file the run read: path, digest, and the ids of its records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataFile {
    pub file: String,
    pub sha256: String,
    pub records: usize,
    pub ids: Vec<String>,
}

impl DataFile {
    /// `records` as read from `path`, whose bytes hash to `sha256`.
    pub fn new(path: &Path, sha256: String, records: &[Record]) -> Self {
        DataFile {
            file: path.display().to_string(),
            sha256,
            records: records.len(),
            ids: records.iter().map(|r| r.id.clone()).collect(),
        }
    }
}

/// `unlearn.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnlearnLog {
    pub tool: String,
    pub version: String,
    /// The model unlearning started from.
    pub model: ModelFiles,
    /// The unlearned model as written.
    pub output: ModelFiles,
    /// The records ascended on (after any fuzzy expansion).
    pub forget: DataFile,
    /// Training records added to the request by fuzzy matching, with their scores.
    pub expanded: Vec<Match>,
    pub retain: DataFile,
    /// The never-trained-on records the stop rule was calibrated on: they must never serve as
    /// an audit's non-members.
    pub holdout: DataFile,
    pub ledger: Option<String>,
    pub ledger_alignment: Option<Alignment>,
    pub outcome: UnlearnOutcome,
    /// How much of the update storing the weights in the model's dtype removed (absent in
    /// records written before it was measured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rounding: Option<Rounding>,
}

impl UnlearnLog {
    /// Pretty JSON with a final newline.
    pub fn to_bytes(&self) -> serde_json::Result<Vec<u8>> {
        let mut v = serde_json::to_vec_pretty(self)?;
        v.push(b'\n');
        Ok(v)
    }

    /// Reads `unlearn.json` strictly (unknown fields are errors).
    pub fn from_bytes(bytes: &[u8]) -> serde_json::Result<Self> {
        serde_json::from_slice(bytes)
    }
}
