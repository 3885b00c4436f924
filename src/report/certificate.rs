//! A report turned into a certificate: the in-toto Statement whose subjects are the unlearned
//! model's files with their sha256 digests and whose predicate is the report, signed into a DSSE
//! envelope and written as `certificate.dsse.json`. This module owns the choice of subjects and
//! the certificate file; canonical form, statement checks and signing belong to `jcs`,
//! `statement`, `dsse` and `seal`.

use crate::atomic;
use crate::judge::evidence::Evidence;
use crate::report::dsse::Envelope;
use crate::report::schema::{Report, ReportError};
use crate::report::seal::{self, SealError};
use crate::report::statement::{DigestSet, Statement, StatementError, Subject};
use ed25519_dalek::SigningKey;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The file name of a signed certificate.
pub const CERTIFICATE_FILE: &str = "certificate.dsse.json";
/// The evidence model whose files are the certificate's subjects.
pub const SUBJECT_MODEL: &str = "unlearned";

/// Why a certificate could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error("the evidence lists no files for the unlearned model (`models.unlearned.files`)")]
    NoSubjects,
    #[error(
        "the evidence's `models.unlearned.files[{0}]` has no name or no lower-case hex sha256"
    )]
    BadSubject(usize),
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error(transparent)]
    Statement(#[from] StatementError),
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error("cannot list or write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The unlearned model's files as the evidence records them (name and the sha256 of the bytes
/// the certifier loaded), in the evidence's order.
pub fn subjects_from_evidence(evidence: &Evidence) -> Result<Vec<Subject>, CertificateError> {
    let files = evidence.model_files(SUBJECT_MODEL);
    if files.is_empty() {
        return Err(CertificateError::NoSubjects);
    }
    files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            if f.name.is_empty() || !crate::digest::is_sha256_hex(&f.sha256) {
                return Err(CertificateError::BadSubject(i));
            }
            Ok(Subject {
                name: f.name.clone(),
                digest: DigestSet {
                    sha256: f.sha256.clone(),
                },
            })
        })
        .collect()
}

/// The regular files directly inside `dir` (hidden files excepted), sorted by name: what a
/// model directory holds.
pub fn model_files(dir: &Path) -> Result<Vec<String>, CertificateError> {
    let io_err = |source| CertificateError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && entry.file_type().map_err(io_err)?.is_file() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Every file of the model directory `dir` hashed now, for a report whose evidence lacks them.
pub fn subjects_of_dir(dir: &Path) -> Result<Vec<Subject>, CertificateError> {
    model_files(dir)?
        .into_iter()
        .map(|name| Subject::of_file(name.clone(), &dir.join(&name)).map_err(Into::into))
        .collect()
}

/// The statement a report is certified as: subjects from the evidence, predicate the report.
pub fn statement(report: &Report) -> Result<Statement, CertificateError> {
    report.validate()?;
    let subjects = subjects_from_evidence(&report.evidence)?;
    let predicate = serde_json::to_value(report).map_err(ReportError::Schema)?;
    let statement = Statement::new(subjects, predicate);
    statement.validate()?;
    Ok(statement)
}

/// Signs `report` as a DSSE envelope.
pub fn seal(report: &Report, key: &SigningKey) -> Result<Envelope, CertificateError> {
    Ok(seal::sign_statement(&statement(report)?, key)?)
}

/// Signs `report` and writes the envelope atomically to `dir/certificate.dsse.json`; returns
/// the path.
pub fn write_certificate(
    report: &Report,
    key: &SigningKey,
    dir: &Path,
) -> Result<PathBuf, CertificateError> {
    let envelope = seal(report, key)?;
    let path = dir.join(CERTIFICATE_FILE);
    atomic::write_atomic(&path, envelope.to_json().as_bytes()).map_err(|source| {
        CertificateError::Io {
            path: path.clone(),
            source,
        }
    })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::schema::tests::sample;
    use crate::report::seal::open_envelope;
    use serde_json::json;

    #[test]
    fn a_written_certificate_opens_to_the_report() {
        let dir = std::env::temp_dir().join(format!("lethe-cert-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let key = SigningKey::from_bytes(&[5; 32]);
        let path = write_certificate(&sample(), &key, &dir).unwrap();
        assert_eq!(path, dir.join(CERTIFICATE_FILE));
        let bytes = fs::read(&path).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        let statement = open_envelope(&bytes, &key.verifying_key()).unwrap();
        let names: Vec<&str> = statement.subject.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["config.json", "model.safetensors"]);
        assert_eq!(statement.subject[1].digest.sha256, "22".repeat(32));
        let predicate = serde_json::to_vec(&statement.predicate).unwrap();
        let report = Report::from_json(&predicate).unwrap();
        assert_eq!(report.to_jcs().unwrap(), sample().to_jcs().unwrap());
    }

    #[test]
    fn subjects_must_be_in_the_evidence() {
        let mut report = sample();
        crate::report::schema::tests::edit_evidence(&mut report, |e| {
            e["models"]["unlearned"]["files"] = json!([])
        });
        assert!(matches!(
            statement(&report),
            Err(CertificateError::NoSubjects)
        ));
        // A file without a digest is not evidence at all (the typed schema refuses it); one
        // whose digest is not lower-case hex is not a subject.
        let mut v = serde_json::to_value(&report.evidence).unwrap();
        v["models"]["unlearned"]["files"] = json!([{"name": "a", "bytes": 1}]);
        assert!(serde_json::from_value::<Evidence>(v).is_err());
        crate::report::schema::tests::edit_evidence(&mut report, |e| {
            e["models"]["unlearned"]["files"] =
                json!([{"name": "a", "sha256": "not hex", "bytes": 1}])
        });
        assert!(matches!(
            statement(&report),
            Err(CertificateError::BadSubject(0))
        ));
    }

    #[test]
    fn a_directory_is_hashed_file_by_file() {
        let dir = std::env::temp_dir().join(format!("lethe-subjects-{}", std::process::id()));
        fs::create_dir_all(dir.join("nested")).unwrap();
        fs::write(dir.join("b.json"), b"abc").unwrap();
        fs::write(dir.join("a.bin"), b"").unwrap();
        fs::write(dir.join(".hidden"), b"x").unwrap();
        let subjects = subjects_of_dir(&dir).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        let names: Vec<&str> = subjects.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a.bin", "b.json"]);
        // sha256 of the empty string and of "abc" (FIPS 180-2 B.1).
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(subjects[0].digest.sha256, empty);
        assert_eq!(subjects[1].digest.sha256, abc);
    }
}
