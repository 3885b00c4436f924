//! One training or evaluation record, as it appears on one JSONL line (DESIGN.md, Formats).
//! This module owns the record type only; reading files is `jsonl`, tokenizing is `tokenize`.

use serde::{Deserialize, Serialize};

/// `{"id": ..., "text": ...}`, optionally with `prompt`/`answer` for question–answer records,
/// `subject` for the person or entity the record is about, and `perturbed` answers: plausible
/// wrong answers used by TOFU's truth ratio.
///
/// For a question–answer record `text` is the prompt followed by the answer (`prompt + answer`),
/// and losses are taken over the answer tokens only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub id: String,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub perturbed: Vec<String>,
}
