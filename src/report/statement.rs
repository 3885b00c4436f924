//! The in-toto Statement v1 that a lethe certificate is: the files it speaks about (subjects with
//! sha256 digests) and the predicate (the report, opaque JSON here). This module owns the
//! statement's shape and its checks on read; it does not sign, and it does not interpret the
//! predicate — the report schema does.

use crate::digest::is_sha256_hex;
use crate::report::jcs::{self, JcsError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

/// The `_type` of every in-toto Statement v1.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The `predicateType` of a lethe certificate.
pub const PREDICATE_TYPE: &str = "https://lethe.dev/certificate/v1";

/// Why bytes are not a lethe statement, or a statement cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum StatementError {
    #[error("statement: {0}")]
    Json(#[from] JcsError),
    #[error("statement does not match in-toto Statement v1: {0}")]
    Schema(#[source] serde_json::Error),
    #[error("statement field `_type` is {0:?}, expected {STATEMENT_TYPE:?}")]
    StatementType(String),
    #[error("statement field `predicateType` is {0:?}, expected {PREDICATE_TYPE:?}")]
    PredicateType(String),
    #[error("statement field `subject` is empty: a certificate must name the files it covers")]
    NoSubject,
    #[error(
        "statement subject {name:?}: `digest.sha256` {digest:?} is not 64 lower-case hex digits"
    )]
    BadDigest { name: String, digest: String },
    #[error("statement subject name {0:?} is empty or appears twice")]
    BadName(String),
    #[error("cannot hash subject file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// An in-toto Statement v1 with lethe's predicate type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    #[serde(rename = "_type")]
    statement_type: String,
    pub subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    predicate_type: String,
    pub predicate: Value,
}

/// One file the statement covers: its name (a path relative to the model directory) and digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subject {
    pub name: String,
    pub digest: DigestSet,
}

/// The digests of a subject; lethe uses sha256 only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestSet {
    /// Lower-case hex.
    pub sha256: String,
}

impl Subject {
    pub fn new(name: impl Into<String>, sha256: [u8; 32]) -> Self {
        let digest = DigestSet {
            sha256: hex::encode(sha256),
        };
        Subject {
            name: name.into(),
            digest,
        }
    }

    /// The subject `name` for the file at `path`, hashed as a stream (model files are large).
    pub fn of_file(name: impl Into<String>, path: &Path) -> Result<Self, StatementError> {
        let io_err = |source| StatementError::Io {
            path: path.to_owned(),
            source,
        };
        let (sha256, _) = crate::digest::file_sha256(path).map_err(io_err)?;
        Ok(Subject::new(name, sha256))
    }
}

impl Statement {
    pub fn new(subject: Vec<Subject>, predicate: Value) -> Self {
        Statement {
            statement_type: STATEMENT_TYPE.to_owned(),
            subject,
            predicate_type: PREDICATE_TYPE.to_owned(),
            predicate,
        }
    }

    /// Parses and checks a statement: strict JSON (no duplicate keys), no unknown fields,
    /// lethe's types, and well-formed subjects.
    pub fn from_json(bytes: &[u8]) -> Result<Self, StatementError> {
        let value = jcs::parse(bytes)?;
        let statement: Statement = serde_json::from_value(value).map_err(StatementError::Schema)?;
        statement.validate()?;
        Ok(statement)
    }

    /// The canonical (RFC 8785) bytes of the statement: what gets signed.
    pub fn to_jcs(&self) -> Result<Vec<u8>, StatementError> {
        let value = serde_json::to_value(self).map_err(StatementError::Schema)?;
        Ok(jcs::to_vec(&value)?)
    }

    /// Checks what serde cannot: the two type URIs, and non-empty, uniquely named subjects with
    /// lower-case hex sha256 digests.
    pub fn validate(&self) -> Result<(), StatementError> {
        if self.statement_type != STATEMENT_TYPE {
            return Err(StatementError::StatementType(self.statement_type.clone()));
        }
        if self.predicate_type != PREDICATE_TYPE {
            return Err(StatementError::PredicateType(self.predicate_type.clone()));
        }
        if self.subject.is_empty() {
            return Err(StatementError::NoSubject);
        }
        let mut names = BTreeSet::new();
        for s in &self.subject {
            if s.name.is_empty() || !names.insert(s.name.as_str()) {
                return Err(StatementError::BadName(s.name.clone()));
            }
            if !is_sha256_hex(&s.digest.sha256) {
                let (name, digest) = (s.name.clone(), s.digest.sha256.clone());
                return Err(StatementError::BadDigest { name, digest });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn sample() -> Statement {
        let subject = vec![Subject::new("model.safetensors", [7; 32])];
        Statement::new(subject, json!({"schema_version": 1, "verdicts": []}))
    }

    #[test]
    fn canonical_bytes_read_back() {
        let bytes = sample().to_jcs().unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with(r#"{"_type":"https://in-toto.io/Statement/v1","predicate":{"#));
        assert!(text.contains(&format!(r#""digest":{{"sha256":"{}"}}"#, "07".repeat(32))));
        assert_eq!(Statement::from_json(&bytes).unwrap(), sample());
    }

    #[test]
    fn unknown_fields_and_wrong_types_are_refused() {
        let mut value = serde_json::to_value(sample()).unwrap();
        value["extra"] = json!(1);
        let err = Statement::from_json(value.to_string().as_bytes()).unwrap_err();
        assert!(err.to_string().contains("unknown field `extra`"), "{err}");

        let mut value = serde_json::to_value(sample()).unwrap();
        value["subject"][0]["digest"]["sha512"] = json!("00");
        assert!(matches!(
            Statement::from_json(value.to_string().as_bytes()),
            Err(StatementError::Schema(_))
        ));

        let mut value = serde_json::to_value(sample()).unwrap();
        value["predicateType"] = json!("https://slsa.dev/provenance/v1");
        assert!(matches!(
            Statement::from_json(value.to_string().as_bytes()),
            Err(StatementError::PredicateType(_))
        ));

        let mut value = serde_json::to_value(sample()).unwrap();
        value["_type"] = json!("https://in-toto.io/Statement/v0.1");
        assert!(matches!(
            Statement::from_json(value.to_string().as_bytes()),
            Err(StatementError::StatementType(_))
        ));
    }

    #[test]
    fn subjects_are_checked() {
        let mut s = sample();
        s.subject.clear();
        assert!(matches!(s.validate(), Err(StatementError::NoSubject)));
        let mut s = sample();
        s.subject[0].digest.sha256 = "AB".repeat(32);
        assert!(matches!(
            s.validate(),
            Err(StatementError::BadDigest { .. })
        ));
        let mut s = sample();
        s.subject.push(s.subject[0].clone());
        assert!(matches!(s.validate(), Err(StatementError::BadName(_))));
    }

    #[test]
    fn of_file_hashes_the_file() {
        let path = std::env::temp_dir().join(format!("lethe-subject-{}.bin", std::process::id()));
        std::fs::write(&path, b"abc").unwrap();
        let subject = Subject::of_file("abc.bin", &path).unwrap();
        std::fs::remove_file(&path).unwrap();
        // sha256("abc"), FIPS 180-2 appendix B.1.
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(subject.digest.sha256, abc);
        let err = Subject::of_file("x", &path).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
    }

    proptest! {
        #[test]
        fn prop_from_json_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = Statement::from_json(&bytes);
        }
    }
}
