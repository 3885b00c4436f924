//! Verification of a certificate as a list of named checks, each passed, failed or not run, with
//! a detail line: the envelope's form, its payload type, the Ed25519 signature, the in-toto
//! statement, the report schema, the signed subjects against the measured model, the statistics
//! re-derived from the evidence's per-record values (`figures`), and, given the model directory,
//! the digest of every subject file. Re-running the evaluation (`--recompute`) needs the ML stack, so it is a hook the
//! caller supplies; this module never measures anything and never imports candle. A check that
//! depends on a failed one is listed as not run: nothing unsigned is ever trusted.

use crate::report::certificate::{model_files, subjects_from_evidence};
use crate::report::dsse::{self, Envelope, IN_TOTO_PAYLOAD_TYPE};
use crate::report::figures::{statistics_check, STATISTICS};
use crate::report::schema::Report;
use crate::report::statement::{Statement, Subject};
use ed25519_dalek::VerifyingKey;
use std::path::Path;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    /// Skipped because a check it depends on failed.
    NotRun,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::Fail => "FAIL",
            Outcome::NotRun => "NOT RUN",
        }
    }
}

/// One named check and what it found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub outcome: Outcome,
    pub detail: String,
}

impl Check {
    pub fn pass(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Check {
            name: name.into(),
            outcome: Outcome::Pass,
            detail: detail.into(),
        }
    }

    pub fn fail(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Check {
            name: name.into(),
            outcome: Outcome::Fail,
            detail: detail.into(),
        }
    }

    fn not_run(name: &str) -> Self {
        Check {
            name: name.into(),
            outcome: Outcome::NotRun,
            detail: "an earlier check failed".into(),
        }
    }
}

/// Re-runs the evaluation recorded in a verified report and returns one check per verdict and
/// figure compared (supplied by the certifier, which has the ML stack).
pub type Recompute<'a> = &'a dyn Fn(&Report) -> Vec<Check>;

/// What the caller asks to verify beyond the signature and schema.
#[derive(Default)]
pub struct Options<'a> {
    /// The unlearned model's directory: every subject file must be there with its digest.
    pub artifacts: Option<&'a Path>,
    /// Re-runs the evaluation from the verified report and compares; its checks are appended.
    pub recompute: Option<Recompute<'a>>,
}

/// The checks' results and, when the signature and schema held, the verified report (the one
/// from which HTML and Markdown may be rendered).
#[derive(Debug)]
pub struct Verification {
    pub checks: Vec<Check>,
    pub report: Option<Report>,
}

impl Verification {
    /// True only when there is at least one check and every check passed.
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.outcome == Outcome::Pass)
    }

    /// The outcome as an exit code: 0 a valid certificate whose verdict is CERTIFIED,
    /// [`EXIT_NOT_CERTIFIED`] a valid certificate whose verdict is NOT CERTIFIED, 1 a check
    /// failed (2, could not run, is the caller's). A CI gate on `verify` passes only on 0.
    pub fn exit_code(&self) -> u8 {
        match (&self.report, self.passed()) {
            (Some(r), true) if r.certified() => 0,
            (Some(_), true) => EXIT_NOT_CERTIFIED,
            _ => 1,
        }
    }
}

/// `verify`'s exit code for a valid certificate that says NOT CERTIFIED.
pub const EXIT_NOT_CERTIFIED: u8 = 3;

const ENVELOPE: &str = "envelope";
const PAYLOAD_TYPE: &str = "payload type";
const SIGNATURE: &str = "signature";
const STATEMENT: &str = "statement";
const SCHEMA: &str = "report schema";
const BINDING: &str = "subjects = measured model";
const ARTIFACTS: &str = "artifacts";
const RECOMPUTE: &str = "recompute";

/// Verifies the envelope bytes against `key` and the options, check by check.
pub fn verify(envelope: &[u8], key: &VerifyingKey, options: &Options) -> Verification {
    let mut checks = Vec::new();
    let report = verify_signed(envelope, key, &mut checks);
    let Some((statement, report)) = report else {
        // Fill in what could not run, in order.
        let all = [
            ENVELOPE,
            PAYLOAD_TYPE,
            SIGNATURE,
            STATEMENT,
            SCHEMA,
            BINDING,
            STATISTICS,
        ];
        for name in &all[checks.len()..] {
            checks.push(Check::not_run(name));
        }
        if options.artifacts.is_some() {
            checks.push(Check::not_run(ARTIFACTS));
        }
        if options.recompute.is_some() {
            checks.push(Check::not_run(RECOMPUTE));
        }
        return Verification {
            checks,
            report: None,
        };
    };
    let bound = binding_check(&statement, &report);
    let bound_ok = bound.outcome == Outcome::Pass;
    checks.push(bound);
    checks.push(statistics_check(&report.evidence));
    if !bound_ok {
        // Digests of files the certificate does not legitimately cover are never computed.
        if options.artifacts.is_some() {
            checks.push(Check::not_run(ARTIFACTS));
        }
        if options.recompute.is_some() {
            checks.push(Check::not_run(RECOMPUTE));
        }
        return Verification {
            checks,
            report: Some(report),
        };
    }
    if let Some(dir) = options.artifacts {
        checks.extend(artifact_checks(&statement.subject, dir));
    }
    if let Some(recompute) = options.recompute {
        checks.extend(recompute(&report));
    }
    Verification {
        checks,
        report: Some(report),
    }
}

/// The envelope, payload type, signature, statement and schema checks, stopping at the first
/// failure; the statement and report when all held.
fn verify_signed(
    bytes: &[u8],
    key: &VerifyingKey,
    checks: &mut Vec<Check>,
) -> Option<(Statement, Report)> {
    let envelope = record(checks, ENVELOPE, envelope_check(bytes))?;
    record(checks, PAYLOAD_TYPE, payload_type_check(&envelope))?;
    let payload = record(checks, SIGNATURE, signature_check(&envelope, key))?;
    let statement = record(checks, STATEMENT, statement_check(&payload))?;
    let report = record(checks, SCHEMA, schema_check(&statement))?;
    Some((statement, report))
}

/// Records the check `name`: passed with its detail (giving what it read), or failed with why.
fn record<T>(
    checks: &mut Vec<Check>,
    name: &str,
    result: Result<(T, String), String>,
) -> Option<T> {
    match result {
        Ok((value, detail)) => {
            checks.push(Check::pass(name, detail));
            Some(value)
        }
        Err(detail) => {
            checks.push(Check::fail(name, detail));
            None
        }
    }
}

fn envelope_check(bytes: &[u8]) -> Result<(Envelope, String), String> {
    let e = Envelope::from_json(bytes).map_err(|e| e.to_string())?;
    let detail = format!("DSSE envelope, {} signature(s)", e.signatures.len());
    Ok((e, detail))
}

fn payload_type_check(envelope: &Envelope) -> Result<((), String), String> {
    let detail = format!("{:?}", envelope.payload_type);
    if envelope.payload_type == IN_TOTO_PAYLOAD_TYPE {
        Ok(((), detail))
    } else {
        Err(detail)
    }
}

/// The signed payload, when a signature by `key` verifies; malformed signatures beside it are
/// named in the detail.
fn signature_check(envelope: &Envelope, key: &VerifyingKey) -> Result<(Vec<u8>, String), String> {
    let v =
        dsse::verify_signatures(envelope, key, IN_TOTO_PAYLOAD_TYPE).map_err(|e| e.to_string())?;
    let mut detail = format!("Ed25519, key id {}", dsse::key_id(key));
    if !v.malformed.is_empty() {
        let skipped = v.malformed.join("; ");
        detail.push_str(&format!(
            "; skipped {} malformed: {skipped}",
            v.malformed.len()
        ));
    }
    Ok((v.payload, detail))
}

/// The in-toto statement of the payload, which must be in canonical form.
fn statement_check(payload: &[u8]) -> Result<(Statement, String), String> {
    let s = Statement::from_json(payload).map_err(|e| e.to_string())?;
    match s.to_jcs() {
        Ok(canonical) if canonical == payload => {
            let detail = format!("in-toto Statement v1, {} subject(s)", s.subject.len());
            Ok((s, detail))
        }
        Ok(_) => Err("signed payload is not in canonical (RFC 8785) form".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// The statement's predicate read as a report of the current schema.
fn schema_check(statement: &Statement) -> Result<(Report, String), String> {
    let predicate = serde_json::to_vec(&statement.predicate).unwrap_or_default();
    let report = Report::from_json(&predicate).map_err(|e| e.to_string())?;
    let detail = format!(
        "schema v{}, written by {} {} ({}) at {}",
        report.schema_version,
        report.tool.name,
        report.tool.version,
        report.tool.commit,
        report.created
    );
    Ok((report, detail))
}

/// The signed subjects are exactly the files of the model the evidence measured as unlearned
/// (same names, same digests, same order): what `--artifacts` checks is what `--recompute`
/// re-runs and what the verdicts are about.
fn binding_check(statement: &Statement, report: &Report) -> Check {
    match subjects_from_evidence(&report.evidence) {
        Ok(measured) if measured == statement.subject => {
            Check::pass(BINDING, format!("{} file(s), as measured", measured.len()))
        }
        Ok(measured) => {
            let names = |s: &[Subject]| {
                s.iter()
                    .map(|x| {
                        format!(
                            "{} {}",
                            x.name,
                            &x.digest.sha256[..x.digest.sha256.len().min(12)]
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            Check::fail(
                BINDING,
                format!(
                    "the certificate signs [{}] but the evidence measured [{}]",
                    names(&statement.subject),
                    names(&measured)
                ),
            )
        }
        Err(e) => Check::fail(BINDING, e.to_string()),
    }
}

/// A subject name is a plain file name: one path component, no `..`, nothing absolute.
fn plain_file_name(name: &str) -> bool {
    let mut parts = Path::new(name).components();
    matches!(
        (parts.next(), parts.next()),
        (Some(std::path::Component::Normal(_)), None)
    )
}

/// One check per subject (the file exists and its sha256 matches), then one that lists the
/// directory's files the certificate does not cover (listed, not failed: a model directory may
/// hold `unlearn.json` and other records beside the model).
fn artifact_checks(subjects: &[Subject], dir: &Path) -> Vec<Check> {
    let mut checks = Vec::new();
    for s in subjects {
        let name = format!("artifact {}", s.name);
        if !plain_file_name(&s.name) {
            checks.push(Check::fail(
                name,
                "not a plain file name inside the model folder; not followed",
            ));
            continue;
        }
        let path = dir.join(&s.name);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_file() => {}
            Ok(_) => {
                checks.push(Check::fail(name, "not a regular file; not read"));
                continue;
            }
            Err(e) => {
                checks.push(Check::fail(name, e.to_string()));
                continue;
            }
        }
        checks.push(match Subject::of_file(s.name.clone(), &path) {
            Ok(found) if found.digest == s.digest => {
                Check::pass(name, format!("sha256 {}", s.digest.sha256))
            }
            Ok(found) => Check::fail(
                name,
                format!(
                    "sha256 {} but the certificate says {}",
                    found.digest.sha256, s.digest.sha256
                ),
            ),
            Err(e) => Check::fail(name, e.to_string()),
        });
    }
    match model_files(dir) {
        Ok(files) => {
            let extra: Vec<&str> = files
                .iter()
                .map(String::as_str)
                .filter(|f| !subjects.iter().any(|s| s.name == *f))
                .collect();
            let detail = if extra.is_empty() {
                "none".to_string()
            } else {
                format!("not covered by the certificate: {}", extra.join(", "))
            };
            checks.push(Check::pass("unsigned files", detail));
        }
        Err(e) => checks.push(Check::fail(ARTIFACTS, e.to_string())),
    }
    checks
}

/// The checks as aligned lines: `PASS  name  detail`.
pub fn render_checks(checks: &[Check]) -> String {
    let width = checks.iter().map(|c| c.name.chars().count()).max();
    let width = width.unwrap_or(0);
    let mut out = String::new();
    for c in checks {
        let line = format!(
            "{:<7}  {:<width$}  {}",
            c.outcome.as_str(),
            c.name,
            c.detail
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::certificate::seal;
    use crate::report::figures::tests::measured_sample as sample;
    use ed25519_dalek::SigningKey;
    use proptest::prelude::*;
    use std::fs;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[3; 32])
    }

    fn envelope() -> Vec<u8> {
        seal(&sample(), &key()).unwrap().to_json().into_bytes()
    }

    fn outcomes(v: &Verification) -> Vec<(&str, Outcome)> {
        v.checks
            .iter()
            .map(|c| (c.name.as_str(), c.outcome))
            .collect()
    }

    /// A certificate signed by a hostile signer (a key of the test's own making) whose subjects
    /// are not the model its evidence measured.
    fn swapped_subjects() -> Vec<u8> {
        let report = sample();
        let mut statement = crate::report::certificate::statement(&report).unwrap();
        statement.subject[1].digest.sha256 = "99".repeat(32);
        crate::report::seal::sign_statement(&statement, &key())
            .unwrap()
            .to_json()
            .into_bytes()
    }

    #[test]
    fn subjects_that_are_not_the_measured_model_fail_and_are_never_hashed() {
        // Issue 15: the golden report re-signed with its subjects swapped for another model
        // passed every check. Now the binding fails and artifact digests are not computed.
        let dir = std::env::temp_dir().join(format!("lethe-bind-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let pk = key().verifying_key();
        let v = verify(
            &swapped_subjects(),
            &pk,
            &Options {
                artifacts: Some(&dir),
                recompute: None,
            },
        );
        let o = outcomes(&v);
        assert!(o.contains(&(BINDING, Outcome::Fail)), "{o:?}");
        assert!(o.contains(&(ARTIFACTS, Outcome::NotRun)), "{o:?}");
        assert_eq!(v.exit_code(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_valid_not_certified_certificate_has_its_own_exit_code() {
        // Issue 15: `verify` exited 0 on a valid NOT CERTIFIED report.
        let mut report = sample();
        report.verdicts[0].status = crate::judge::verdict::Status::Fail;
        let bytes = seal(&report, &key()).unwrap().to_json().into_bytes();
        let v = verify(&bytes, &key().verifying_key(), &Options::default());
        assert!(v.passed());
        assert_eq!(v.exit_code(), EXIT_NOT_CERTIFIED);
        let ok = verify(&envelope(), &key().verifying_key(), &Options::default());
        assert_eq!(ok.exit_code(), 0);
    }

    #[test]
    fn subject_names_that_leave_the_model_folder_are_not_followed() {
        // Issue 15: `../../../../etc/hostname` and `/etc/hostname` as subject names passed.
        let dir = std::env::temp_dir().join(format!("lethe-names-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        for name in ["../../../../etc/hostname", "/etc/hostname", "a/b", ".."] {
            let s = Subject {
                name: name.into(),
                digest: crate::report::statement::DigestSet {
                    sha256: "00".repeat(32),
                },
            };
            let checks = artifact_checks(&[s], &dir);
            assert_eq!(checks[0].outcome, Outcome::Fail, "{name}");
            assert!(
                checks[0].detail.contains("not followed"),
                "{name}: {}",
                checks[0].detail
            );
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_good_certificate_passes_every_check() {
        let v = verify(&envelope(), &key().verifying_key(), &Options::default());
        assert!(v.passed(), "{}", render_checks(&v.checks));
        assert_eq!(v.exit_code(), 0);
        let canonical = v.report.map(|r| r.to_jcs().unwrap());
        assert_eq!(canonical, Some(sample().to_jcs().unwrap()));
        let names: Vec<&str> = v.checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                ENVELOPE,
                PAYLOAD_TYPE,
                SIGNATURE,
                STATEMENT,
                SCHEMA,
                BINDING,
                STATISTICS
            ]
        );
        let text = render_checks(&v.checks);
        assert!(
            text.starts_with("PASS     envelope                   DSSE envelope, 1 signature(s)\n"),
            "{text}"
        );
    }

    #[test]
    fn another_key_fails_the_signature_and_skips_the_rest() {
        let other = SigningKey::from_bytes(&[4; 32]).verifying_key();
        let dir = Path::new("/nonexistent");
        let recompute = |_: &Report| vec![Check::pass("x", "")];
        let options = Options {
            artifacts: Some(dir),
            recompute: Some(&recompute),
        };
        let v = verify(&envelope(), &other, &options);
        assert_eq!(
            outcomes(&v),
            [
                (ENVELOPE, Outcome::Pass),
                (PAYLOAD_TYPE, Outcome::Pass),
                (SIGNATURE, Outcome::Fail),
                (STATEMENT, Outcome::NotRun),
                (SCHEMA, Outcome::NotRun),
                (BINDING, Outcome::NotRun),
                (STATISTICS, Outcome::NotRun),
                (ARTIFACTS, Outcome::NotRun),
                (RECOMPUTE, Outcome::NotRun),
            ]
        );
        assert_eq!((v.exit_code(), v.report.is_none()), (1, true));
    }

    #[test]
    fn a_malformed_signature_is_reported_not_fatal() {
        let mut env = seal(&sample(), &key()).unwrap();
        let mut broken = env.signatures[0].clone();
        broken.sig = "AAAA".into();
        env.signatures.insert(0, broken);
        let v = verify(
            env.to_json().as_bytes(),
            &key().verifying_key(),
            &Options::default(),
        );
        assert!(v.passed(), "{}", render_checks(&v.checks));
        let detail = &v.checks[2].detail;
        assert!(
            detail.contains("skipped 1 malformed: signature 0"),
            "{detail}"
        );
        env.signatures.remove(1);
        let v = verify(
            env.to_json().as_bytes(),
            &key().verifying_key(),
            &Options::default(),
        );
        assert_eq!(v.checks[2].outcome, Outcome::Fail);
        assert!(v.checks[2].detail.contains("malformed"), "{v:?}");
    }

    #[test]
    fn a_valid_signature_over_another_payload_type_fails() {
        let statement = crate::report::certificate::statement(&sample()).unwrap();
        let env = dsse::sign(&statement.to_jcs().unwrap(), "application/json", &key());
        let v = verify(
            env.to_json().as_bytes(),
            &key().verifying_key(),
            &Options::default(),
        );
        assert_eq!(v.checks[1].outcome, Outcome::Fail);
        assert!(v.checks[1].detail.contains("application/json"));
        assert!(!v.passed());
    }

    #[test]
    fn a_signed_statement_without_a_valid_report_fails_the_schema() {
        let mut statement = crate::report::certificate::statement(&sample()).unwrap();
        statement.predicate["verdicts"][0]["extra"] = serde_json::json!(1);
        let env = crate::report::seal::sign_statement(&statement, &key()).unwrap();
        let v = verify(
            env.to_json().as_bytes(),
            &key().verifying_key(),
            &Options::default(),
        );
        assert_eq!(v.checks[4].name, SCHEMA);
        assert_eq!(v.checks[4].outcome, Outcome::Fail);
        assert!(v.checks[4].detail.contains("verdicts[0].extra"), "{v:?}");
    }

    #[test]
    fn flipping_any_byte_fails() {
        let bytes = envelope();
        let vk = key().verifying_key();
        for i in 0..bytes.len() {
            let mut tampered = bytes.clone();
            tampered[i] ^= 0x01;
            let v = verify(&tampered, &vk, &Options::default());
            assert!(!v.passed(), "flipping byte {i} still verified");
        }
    }

    #[test]
    fn artifacts_are_checked_file_by_file() {
        let dir = std::env::temp_dir().join(format!("lethe-verify-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        // sha256 of "abc" (FIPS 180-2 B.1) and of the empty string.
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let mut report = sample();
        crate::report::schema::tests::edit_evidence(&mut report, |e| {
            e["models"]["unlearned"]["files"] = serde_json::json!([
                {"name": "config.json", "sha256": abc, "bytes": 3},
                {"name": "model.safetensors", "sha256": empty, "bytes": 0},
            ])
        });
        let bytes = seal(&report, &key()).unwrap().to_json().into_bytes();
        fs::write(dir.join("config.json"), b"abc").unwrap();
        fs::write(dir.join("model.safetensors"), b"").unwrap();
        fs::write(dir.join("unlearn.json"), b"{}").unwrap();
        let options = Options {
            artifacts: Some(&dir),
            recompute: None,
        };
        let vk = key().verifying_key();
        let v = verify(&bytes, &vk, &options);
        assert!(v.passed(), "{}", render_checks(&v.checks));
        let last = v.checks.last().unwrap();
        assert_eq!(last.detail, "not covered by the certificate: unlearn.json");
        // Changed after signing, then removed.
        fs::write(dir.join("model.safetensors"), b"x").unwrap();
        let v = verify(&bytes, &vk, &options);
        let failed: Vec<&str> = v
            .checks
            .iter()
            .filter(|c| c.outcome == Outcome::Fail)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(failed, ["artifact model.safetensors"]);
        fs::remove_file(dir.join("config.json")).unwrap();
        let v = verify(&bytes, &vk, &options);
        assert_eq!(
            v.checks
                .iter()
                .filter(|c| c.outcome == Outcome::Fail)
                .count(),
            2
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn recompute_checks_join_the_list() {
        let recompute = |r: &Report| {
            vec![
                Check::pass("recompute mia-auc", r.verdicts[0].requirement.clone()),
                Check::fail("recompute privleak", "0.1 vs 0.2"),
            ]
        };
        let options = Options {
            artifacts: None,
            recompute: Some(&recompute),
        };
        let v = verify(&envelope(), &key().verifying_key(), &options);
        assert_eq!(v.checks.len(), 9);
        assert_eq!(v.checks[7].detail, "mia-auc");
        assert_eq!(v.exit_code(), 1);
    }

    proptest! {
        #[test]
        fn prop_verify_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let v = verify(&bytes, &key().verifying_key(), &Options::default());
            prop_assert!(!v.passed());
        }
    }
}
