//! Report schema v1: what a lethe certificate says — the tool and commit that wrote it, when, on
//! what machine, every artifact it read with its sha256, the unlearning method and parameters,
//! the seeds, the spec, the evidence, the verdicts and the unlearning trajectory. This module
//! owns the report's shape, its strict reading (unknown fields anywhere are errors, including
//! inside verdicts) and its canonical bytes, and the RFC 3339 clock it stamps reports with.
//! Evidence, method and trajectory are kept as JSON values, so a report reads and verifies
//! without the ML stack: it imports only `certify`'s plain-data verdict and spec types and never
//! candle.

use crate::digest::is_sha256_hex;
use crate::judge::evidence::Evidence;
use crate::judge::spec::Spec;
use crate::judge::verdict::{self, Verdict};
use crate::report::jcs::{self, JcsError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The report schema this code writes and reads.
pub const SCHEMA_VERSION: u32 = 1;
/// The `tool.name` of every lethe report.
pub const TOOL_NAME: &str = "lethe";

/// Why bytes are not a v1 report, or a report cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("report: {0}")]
    Json(#[from] JcsError),
    #[error("report does not match schema v1: {0}")]
    Schema(#[source] serde_json::Error),
    #[error("report field `{0}` is not in schema v1 or not in the form lethe writes it")]
    NotInSchema(String),
    #[error("report schema_version is {0}; this lethe reads version {SCHEMA_VERSION}")]
    Version(u32),
    #[error("report `tool.name` is {0:?}, expected \"lethe\"")]
    Tool(String),
    #[error("report `created` {0:?} is not an RFC 3339 UTC time (YYYY-MM-DDTHH:MM:SSZ)")]
    Created(String),
    #[error("report artifact {role} {path:?}: sha256 {sha256:?} is not 64 lower-case hex digits")]
    Digest {
        role: String,
        path: String,
        sha256: String,
    },
    #[error("cannot hash {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A lethe report, schema v1. Field order is the canonical (JCS) order's concern, not this one's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub schema_version: u32,
    pub tool: Tool,
    /// When the report was made, RFC 3339 in UTC to the second (`2026-11-03T14:05:09Z`).
    pub created: String,
    pub machine: Machine,
    /// Every file the run read, with the digest of the bytes read.
    pub artifacts: Vec<Artifact>,
    /// The unlearning configuration (`unlearn.json`'s `outcome.config`: method, parameters,
    /// learning rate, seed, ...), or null when the model was not unlearned by lethe.
    pub method: Option<Value>,
    /// Every seed the run used, by what it seeded (`evidence`, `spec`, `unlearn`).
    pub seeds: BTreeMap<String, u64>,
    pub spec: SpecRef,
    /// The certifier's evidence document (metrics, per-record scores, attack curves), in the
    /// one typed schema the certifier writes it in.
    pub evidence: Evidence,
    pub verdicts: Vec<Verdict>,
    /// The unlearning record's `outcome` (levels, steps, stop reason), or null.
    pub trajectory: Option<Value>,
    /// Whether the audit's non-members were checked against the records the unlearning
    /// calibrated on (absent: not checked, no unlearning record was given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout_check: Option<HoldoutCheck>,
}

/// The audit holdout checked against the unlearning's calibration holdout (by record id and by
/// file digest): certification refuses any overlap, so a written check is always disjoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldoutCheck {
    pub calibration_file: String,
    pub calibration_records: usize,
    pub audit_records: usize,
    pub disjoint: bool,
}

/// The program that wrote the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tool {
    pub name: String,
    pub version: String,
    /// The source commit the binary was built from (`build.rs`), or "unknown".
    pub commit: String,
}

impl Tool {
    /// This build of lethe.
    pub fn current() -> Self {
        Tool {
            name: TOOL_NAME.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            commit: env!("LETHE_COMMIT").into(),
        }
    }
}

/// The machine the evidence was measured on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Machine {
    pub cpu_model: String,
    /// Threads the computation used.
    pub threads: usize,
    /// `std::env::consts::OS` and `ARCH` of the build.
    pub os: String,
    pub arch: String,
}

impl Machine {
    /// This machine, given the CPU model and thread count the caller measured.
    pub fn new(cpu_model: impl Into<String>, threads: usize) -> Self {
        Machine {
            cpu_model: cpu_model.into(),
            threads,
            os: std::env::consts::OS.into(),
            arch: std::env::consts::ARCH.into(),
        }
    }
}

/// One file the run read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// What the file was to the run: `model:unlearned`, `data:forget`, `spec`, ...
    pub role: String,
    pub path: String,
    /// Lower-case hex sha256 of the bytes read.
    pub sha256: String,
    pub bytes: u64,
}

impl Artifact {
    /// Hashes the file at `path` as a stream.
    pub fn of_file(role: impl Into<String>, path: &Path) -> Result<Self, ReportError> {
        let io_err = |source| ReportError::Io {
            path: path.to_owned(),
            source,
        };
        let (sha256, bytes) = crate::digest::file_sha256_hex(path).map_err(io_err)?;
        Ok(Artifact {
            role: role.into(),
            path: path.display().to_string(),
            sha256,
            bytes,
        })
    }

    /// The artifacts an evidence document records: each model file (`models.<name>.files`,
    /// role `model:<name>`, path `<dir>/<file>`) and each data file (`data.<split>`, role
    /// `data:<split>`).
    pub fn from_evidence(evidence: &Evidence) -> Vec<Artifact> {
        let mut out = Vec::new();
        for (model, entry) in &evidence.models {
            for file in &entry.files {
                out.push(Artifact {
                    role: format!("model:{model}"),
                    path: Path::new(&entry.dir).join(&file.name).display().to_string(),
                    sha256: file.sha256.clone(),
                    bytes: file.bytes,
                });
            }
        }
        for (split, entry) in &evidence.data {
            out.push(Artifact {
                role: format!("data:{split}"),
                path: entry.path.clone(),
                sha256: entry.sha256.clone(),
                bytes: entry.bytes,
            });
        }
        out
    }
}

/// The specification the verdicts were judged against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecRef {
    pub id: String,
    pub version: String,
    pub title: String,
    pub regulation: String,
    /// The file it was read from (`bundled:<name>` for a spec built into lethe).
    pub file: String,
    /// sha256 of the spec's bytes.
    pub sha256: String,
}

impl SpecRef {
    /// The reference to `spec`, parsed from `text`.
    pub fn new(spec: &Spec, text: &[u8]) -> Self {
        SpecRef {
            id: spec.id.clone(),
            version: spec.version.clone(),
            title: spec.title.clone(),
            regulation: spec.regulation.clone(),
            file: spec.file.clone(),
            sha256: crate::digest::sha256_hex(text),
        }
    }
}

impl Report {
    /// Parses and checks a report: strict JSON (no duplicate keys), schema v1 with no unknown
    /// fields at any depth of the typed part, and the checks of [`Report::validate`].
    pub fn from_json(bytes: &[u8]) -> Result<Self, ReportError> {
        let value = jcs::parse(bytes)?;
        if let Some(v) = value.get("schema_version").and_then(Value::as_u64) {
            if v != u64::from(SCHEMA_VERSION) {
                return Err(ReportError::Version(u32::try_from(v).unwrap_or(u32::MAX)));
            }
        }
        let report: Report = serde_json::from_value(value.clone()).map_err(ReportError::Schema)?;
        // Nested types that tolerate unknown fields (verdicts) or default missing ones must still
        // read back to exactly the document given: compare canonical forms.
        let written = serde_json::to_value(&report).map_err(ReportError::Schema)?;
        if jcs::to_vec(&written)? != jcs::to_vec(&value)? {
            return Err(ReportError::NotInSchema(first_difference(&value, &written)));
        }
        report.validate()?;
        Ok(report)
    }

    /// The canonical (RFC 8785) bytes of the report.
    pub fn to_jcs(&self) -> Result<Vec<u8>, ReportError> {
        let value = serde_json::to_value(self).map_err(ReportError::Schema)?;
        Ok(jcs::to_vec(&value)?)
    }

    /// Checks what serde cannot: the version, the tool name, the time stamp, the digests.
    pub fn validate(&self) -> Result<(), ReportError> {
        if self.schema_version != SCHEMA_VERSION {
            return Err(ReportError::Version(self.schema_version));
        }
        if self.tool.name != TOOL_NAME {
            return Err(ReportError::Tool(self.tool.name.clone()));
        }
        if parse_rfc3339_utc(&self.created).is_none() {
            return Err(ReportError::Created(self.created.clone()));
        }
        let bad = |role: &str, path: &str, sha256: &str| ReportError::Digest {
            role: role.into(),
            path: path.into(),
            sha256: sha256.into(),
        };
        for a in &self.artifacts {
            if !is_sha256_hex(&a.sha256) {
                return Err(bad(&a.role, &a.path, &a.sha256));
            }
        }
        if !is_sha256_hex(&self.spec.sha256) {
            return Err(bad("spec", &self.spec.file, &self.spec.sha256));
        }
        Ok(())
    }

    /// Whether every verdict passed (and there was at least one).
    pub fn certified(&self) -> bool {
        verdict::exit_code(&self.verdicts) == 0
    }
}

/// The first path (`verdicts[0].extra`) where `given` and `written` differ.
fn first_difference(given: &Value, written: &Value) -> String {
    fn walk(a: &Value, b: &Value, path: &str) -> Option<String> {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let keys = x.keys().chain(y.keys());
                for k in keys {
                    let sub = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    match (x.get(k), y.get(k)) {
                        (Some(p), Some(q)) => {
                            if let Some(found) = walk(p, q, &sub) {
                                return Some(found);
                            }
                        }
                        _ => return Some(sub),
                    }
                }
                None
            }
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
                .iter()
                .zip(y)
                .enumerate()
                .find_map(|(i, (p, q))| walk(p, q, &format!("{path}[{i}]"))),
            (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() => None,
            _ if a == b => None,
            _ => Some(path.to_string()),
        }
    }
    walk(given, written, "").unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// RFC 3339 UTC time stamps without a date crate.

const SECONDS_PER_DAY: i64 = 86_400;

/// `time` as RFC 3339 UTC to the second, e.g. `2026-11-03T14:05:09Z`. Times before the epoch
/// are written as they are (proleptic Gregorian calendar); sub-seconds are truncated.
pub fn rfc3339_utc(time: SystemTime) -> String {
    let seconds = match time.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        // Round towards the past, so that 0.5 s before the epoch is 23:59:59.
        Err(e) => {
            let d = e.duration();
            let whole = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            -whole - i64::from(d.subsec_nanos() > 0)
        }
    };
    format_unix(seconds)
}

/// Seconds since 1970-01-01T00:00:00Z as RFC 3339 UTC.
pub fn format_unix(seconds: i64) -> String {
    let days = seconds.div_euclid(SECONDS_PER_DAY);
    let in_day = seconds.rem_euclid(SECONDS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (in_day / 3600, in_day / 60 % 60, in_day % 60);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

/// Seconds since the epoch of a time stamp in exactly the form [`format_unix`] writes (four-digit
/// year, `Z`), or `None` for anything else, including impossible dates such as 02-30.
pub fn parse_rfc3339_utc(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let shape = b"dddd-dd-ddTdd:dd:ddZ";
    if b.len() != shape.len() {
        return None;
    }
    for (&c, &s) in b.iter().zip(shape) {
        let ok = if s == b'd' {
            c.is_ascii_digit()
        } else {
            c == s
        };
        if !ok {
            return None;
        }
    }
    let num = |range: std::ops::Range<usize>| -> i64 {
        b[range]
            .iter()
            .fold(0, |n, &c| n * 10 + i64::from(c - b'0'))
    };
    let (y, m, d) = (num(0..4), num(5..7), num(8..10));
    let (hh, mm, ss) = (num(11..13), num(14..16), num(17..19));
    if !(1..=12).contains(&m) || hh > 23 || mm > 59 || ss > 59 {
        return None;
    }
    let days = days_from_civil(y, m as u32, d as u32);
    // An out-of-range day (Feb 30) lands in another month: reading it back exposes it.
    if civil_from_days(days) != (y, m as u32, d as u32) {
        return None;
    }
    Some(days * SECONDS_PER_DAY + hh * 3600 + mm * 60 + ss)
}

/// Days are counted in 400-year eras of 146 097 days, each starting on 1 March so that the leap
/// day ends the year; within an era, the year of the era (0..=399) follows from the day of the
/// era by removing the leap days of each 4, 100 and 400 years, and the month from the day of the
/// March-based year by the 153-days-per-5-months rhythm of the Gregorian month lengths.
/// 1970-01-01 is day 0.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365], from 1 March
    let mp = (5 * doy + 2) / 153; // [0, 11], 0 = March
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The inverse of [`civil_from_days`] for a valid date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = year - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::judge::verdict::Status;
    use proptest::prelude::*;
    use serde_json::json;
    use std::time::Duration;

    /// A small but complete report, shared with the other report modules' tests.
    /// Edits a report's evidence as JSON (tests build odd evidence this way); the result must
    /// still be valid evidence.
    pub(crate) fn edit_evidence(r: &mut Report, f: impl FnOnce(&mut Value)) {
        let mut v = serde_json::to_value(&r.evidence).expect("evidence as JSON");
        f(&mut v);
        r.evidence = serde_json::from_value(v).expect("edited evidence stays valid");
    }

    pub(crate) fn sample() -> Report {
        let evidence = json!({
            "schema_version": 1, "tool": "lethe", "seed": 17,
            "models": {"unlearned": {"dir": "out/model", "files": [
                {"name": "config.json", "sha256": "11".repeat(32), "bytes": 120},
                {"name": "model.safetensors", "sha256": "22".repeat(32), "bytes": 4096},
            ]}},
            "data": {"forget": {"path": "world/forget05.jsonl", "sha256": "33".repeat(32),
                "bytes": 900, "records": 20, "question_answer_records": 10}},
            "metrics": {
                "forget": {"loss": {"kind": "normal", "value": 3.2, "std_error": 0.1, "n": 20}},
                "mia": {"loss": {"auc": {"kind": "auc", "value": 0.55, "variance": 0.0004,
                    "members": 110, "nonmembers": 440}}},
                "privleak": {"kind": "point", "value": -4.0, "n": 110},
            },
            "settings": {"confidence": 0.95, "params": "embedding", "min_k": 0.2,
                "min_k_pp_sigma2_floor": 1e-6, "greedy_slack_tokens": 8, "hessian_records": 16,
                "influence_records": 4, "lanczos_steps": 12, "cg_tolerance": 1e-3,
                "cg_max_iterations": 30, "damping": null, "generated_records": 200},
            "sample_sizes": {"forget": 20}, "omitted": [], "records": {}, "mia": {},
            "influence": null,
        });
        let evidence: Evidence = serde_json::from_value(evidence).expect("sample evidence");
        Report {
            schema_version: SCHEMA_VERSION,
            tool: Tool::current(),
            created: format_unix(1_793_000_000),
            machine: Machine::new("Test CPU @ 2.0GHz", 2),
            artifacts: Artifact::from_evidence(&evidence),
            method: Some(json!({"method": "ga", "lr": 1e-4, "seed": 3})),
            seeds: BTreeMap::from([("evidence".into(), 17), ("unlearn".into(), 3)]),
            spec: SpecRef {
                id: "gdpr-art17".into(),
                version: "1".into(),
                title: "GDPR Article 17".into(),
                regulation: "GDPR Art. 17".into(),
                file: "specs/gdpr-art17.toml".into(),
                sha256: "44".repeat(32),
            },
            evidence,
            verdicts: vec![Verdict {
                requirement: "mia-auc".into(),
                metric: "mia.loss.auc".into(),
                status: Status::Pass,
                compare: "<=".into(),
                value: Some(0.55),
                bound: Some(0.583),
                confidence: Some(0.95),
                threshold: Some(0.6),
                baseline: None,
                samples: 110,
                reason: "95% upper bound 0.5830 <= 0.6000".into(),
                needed_samples: None,
                counterexample: None,
                coverage: None,
            }],
            trajectory: None,
            holdout_check: None,
        }
    }

    #[test]
    fn known_timestamps() {
        // Reference values: `date -u -d @N +%Y-%m-%dT%H:%M:%SZ` (GNU coreutils).
        let cases = [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_234_567_890, "2009-02-13T23:31:30Z"),
            (4_107_542_399, "2100-02-28T23:59:59Z"),
            (4_107_542_400, "2100-03-01T00:00:00Z"),
            (-1, "1969-12-31T23:59:59Z"),
            (-2_208_988_800, "1900-01-01T00:00:00Z"),
            (253_402_300_799, "9999-12-31T23:59:59Z"),
        ];
        for (seconds, text) in cases {
            assert_eq!(format_unix(seconds), text);
            assert_eq!(parse_rfc3339_utc(text), Some(seconds), "{text}");
        }
        let t = UNIX_EPOCH + Duration::from_millis(1_234_567_890_999);
        assert_eq!(rfc3339_utc(t), "2009-02-13T23:31:30Z");
        let before = UNIX_EPOCH - Duration::from_millis(500);
        assert_eq!(rfc3339_utc(before), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn malformed_timestamps_are_refused() {
        for bad in [
            "2023-02-29T00:00:00Z",
            "2100-02-29T00:00:00Z",
            "2024-04-31T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:00+00:00",
            "2024-01-01 00:00:00Z",
            "2024-1-01T00:00:00Z",
            "",
        ] {
            assert_eq!(parse_rfc3339_utc(bad), None, "{bad}");
        }
        assert!(parse_rfc3339_utc("2024-02-29T12:00:00Z").is_some());
    }

    #[test]
    fn canonical_bytes_read_back() {
        // Compared in canonical form: evidence is a JSON value, and the -4.0 written reads back
        // as the integer -4, which is the same JSON number.
        let report = sample();
        let bytes = report.to_jcs().unwrap();
        assert_eq!(Report::from_json(&bytes).unwrap().to_jcs().unwrap(), bytes);
        let pretty = serde_json::to_vec_pretty(&report).unwrap();
        assert_eq!(Report::from_json(&pretty).unwrap().to_jcs().unwrap(), bytes);
        assert!(report.certified());
        assert_eq!(report.artifacts.len(), 3);
        assert_eq!(report.artifacts[1].path, "out/model/model.safetensors");
        assert_eq!(report.artifacts[2].role, "data:forget");
    }

    #[test]
    fn unknown_fields_anywhere_are_refused() {
        let base = serde_json::to_value(sample()).unwrap();
        let reject = |edit: &dyn Fn(&mut Value)| {
            let mut v = base.clone();
            edit(&mut v);
            Report::from_json(v.to_string().as_bytes()).unwrap_err()
        };
        let err = reject(&|v| v["extra"] = json!(1));
        assert!(err.to_string().contains("unknown field `extra`"), "{err}");
        let err = reject(&|v| v["spec"]["line"] = json!(1));
        assert!(matches!(err, ReportError::Schema(_)), "{err}");
        // `Verdict` itself tolerates unknown fields; the report does not.
        let err = reject(&|v| v["verdicts"][0]["note"] = json!("x"));
        match err {
            ReportError::NotInSchema(path) => assert_eq!(path, "verdicts[0].note"),
            other => panic!("{other}"),
        }
        let err = reject(&|v| v["schema_version"] = json!(2));
        assert!(matches!(err, ReportError::Version(2)), "{err}");
        let err = reject(&|v| v["tool"]["name"] = json!("forgetter"));
        assert!(matches!(err, ReportError::Tool(_)), "{err}");
        let err = reject(&|v| v["created"] = json!("yesterday"));
        assert!(matches!(err, ReportError::Created(_)), "{err}");
        let err = reject(&|v| v["artifacts"][0]["sha256"] = json!("AB".repeat(32)));
        assert!(matches!(err, ReportError::Digest { .. }), "{err}");
    }

    #[test]
    fn missing_and_duplicate_keys_are_refused() {
        // A null method is allowed; a missing key is not (every field is always written).
        let mut v = serde_json::to_value(sample()).unwrap();
        v["method"] = Value::Null;
        assert!(Report::from_json(v.to_string().as_bytes()).is_ok());
        v.as_object_mut().unwrap().remove("trajectory");
        let err = Report::from_json(v.to_string().as_bytes()).unwrap_err();
        assert!(err.to_string().contains("trajectory"), "{err}");
        let text = sample().to_jcs().unwrap();
        let dup = [b"{\"created\":\"x\",".as_slice(), &text[1..]].concat();
        assert!(matches!(Report::from_json(&dup), Err(ReportError::Json(_))));
    }

    #[test]
    fn artifact_of_file_hashes_bytes() {
        let path = std::env::temp_dir().join(format!("lethe-artifact-{}", std::process::id()));
        std::fs::write(&path, b"abc").unwrap();
        let a = Artifact::of_file("spec", &path).unwrap();
        std::fs::remove_file(&path).unwrap();
        // sha256("abc"), FIPS 180-2 appendix B.1.
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!((a.sha256.as_str(), a.bytes), (abc, 3));
        assert!(Artifact::of_file("spec", &path).is_err());
    }

    proptest! {
        #[test]
        fn prop_from_json_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = Report::from_json(&bytes);
        }

        #[test]
        fn prop_from_json_never_panics_on_mutated_reports(
            at in 0usize..4000, byte in any::<u8>()
        ) {
            let mut bytes = sample().to_jcs().unwrap();
            let at = at % bytes.len();
            bytes[at] = byte;
            let _ = Report::from_json(&bytes);
        }

        #[test]
        fn prop_timestamps_round_trip(seconds in -62_135_596_800i64..253_402_300_800) {
            prop_assert_eq!(parse_rfc3339_utc(&format_unix(seconds)), Some(seconds));
        }
    }
}
