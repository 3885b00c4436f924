//! Issuing a certificate: the one path from a certification request to the files an auditor
//! hands over — `evidence.json`, `report.json`, `report.html`, `report.md` and, with a signing
//! key, `certificate.dsse.json` — for CERTIFIED and NOT CERTIFIED alike (a failed audit is a
//! result worth signing). `lethe certify --out DIR` and `lethe demo` both call [`issue`]; no
//! command builds a report by hand.
//!
//! Everything that can be checked without the models is checked first (the spec, the baseline,
//! the signing key, the unlearning record, the output folder), so a typo fails in a second, not
//! after minutes of measuring. The unlearning record (`--unlearn-log`) is bound by digest and
//! checked against the models as soon as they are loaded, before measuring: it must name the
//! original model as the model it started from and the unlearned model as the model it wrote.
//! This module orchestrates measuring (`evidence`), judging (`judge`) and reporting (`report`);
//! it computes no figure of its own.

use crate::digest::sha256_hex;
use crate::evidence::oracle::ModelOracle;
use crate::evidence::{certify, load_inputs, CertifyError, Inputs, Request, RunSummary};
use crate::judge::evidence::Evidence;
use crate::judge::spec::{Spec, SpecError};
use crate::judge::verdict::{judge_spec, JudgeError};
use crate::report::certificate::{write_certificate, CertificateError, CERTIFICATE_FILE};
use crate::report::keys::{load_signing_key, KeyError};
use crate::report::schema::{
    rfc3339_utc, Artifact, HoldoutCheck, Machine, Report, ReportError, SpecRef, Tool,
};
use crate::report::{html, markdown};
use crate::unlearn::UnlearnLog;
use ed25519_dalek::SigningKey;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The files [`issue`] writes into its output folder.
pub const EVIDENCE_FILE: &str = "evidence.json";
pub const REPORT_FILE: &str = "report.json";
pub const HTML_FILE: &str = "report.html";
pub const MARKDOWN_FILE: &str = "report.md";

/// What to measure, what to judge it against, where to write, and whether to sign.
#[derive(Debug, Clone)]
pub struct IssueRequest {
    pub certify: Request,
    /// The specification (TOML) the verdicts are judged against.
    pub spec: PathBuf,
    /// Evidence (or a report holding it) of an earlier run, for specs relative to a baseline.
    pub baseline: Option<PathBuf>,
    /// `unlearn.json` of the run that made the unlearned model.
    pub unlearn_log: Option<PathBuf>,
    /// A PKCS#8 PEM Ed25519 private key; without one nothing is signed.
    pub signing_key: Option<PathBuf>,
    pub out: PathBuf,
    /// Replace another run's report or certificate in `out`.
    pub force: bool,
}

/// What [`issue`] wrote, and the report it wrote.
#[derive(Debug)]
pub struct Issued {
    pub report: Report,
    pub evidence: PathBuf,
    pub report_json: PathBuf,
    pub html: PathBuf,
    pub markdown: PathBuf,
    pub certificate: Option<PathBuf>,
    pub summary: RunSummary,
    /// Things the user should know that do not stop the run (a key others can read).
    pub warnings: Vec<String>,
}

/// Why a certificate could not be issued. Each names the file or setting to fix.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error(transparent)]
    Certify(#[from] CertifyError),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Judge(#[from] JudgeError),
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error(transparent)]
    Certificate(#[from] CertificateError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {msg}")]
    Input { path: PathBuf, msg: String },
    #[error(
        "{0} already holds another run's report or certificate; pass --force to replace it, or pick another --out"
    )]
    OutputExists(PathBuf),
    #[error("the model's property oracle: {0}")]
    Oracle(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> IssueError + '_ {
    move |source| IssueError::Io {
        path: path.to_owned(),
        source,
    }
}

fn input(path: &Path, msg: impl Into<String>) -> IssueError {
    IssueError::Input {
        path: path.to_owned(),
        msg: msg.into(),
    }
}

/// What is read and checked before any model is loaded.
struct Prepared {
    spec: Spec,
    spec_text: Vec<u8>,
    baseline: Option<(serde_json::Value, Artifact)>,
    log: Option<(UnlearnLog, Artifact)>,
    key: Option<SigningKey>,
    warnings: Vec<String>,
}

/// Measures, judges, reports and (with a key) signs; see the module doc.
pub fn issue(
    req: &IssueRequest,
    progress: &mut dyn FnMut(&str, u64),
) -> Result<Issued, IssueError> {
    let prepared = prepare(req)?;
    let mut inputs = load_inputs(&req.certify)?;
    // Before measuring: a record of another run fails in seconds, not after minutes.
    let mut holdout_check = None;
    if let (Some((log, _)), Some(path)) = (&prepared.log, &req.unlearn_log) {
        check_log(log, path, &inputs)?;
        holdout_check = Some(check_holdouts(log, path, &inputs)?);
    }
    let (evidence, summary) = certify(&req.certify, &mut inputs, progress)?;
    let oracle = ModelOracle::open(&inputs.unlearned.model, &inputs.tokenizer)
        .map_err(|e| IssueError::Oracle(e.to_string()))?;
    let evidence_value =
        serde_json::to_value(&evidence).map_err(|e| input(&req.out, e.to_string()))?;
    let verdicts = judge_spec(
        &prepared.spec,
        &evidence_value,
        prepared.baseline.as_ref().map(|(b, _)| b),
        &|s| inputs.splits.get(s).map(|(_, r)| r.as_slice()),
        &oracle,
    )?;
    let mut report = build_report(req, &prepared, evidence, verdicts)?;
    report.holdout_check = holdout_check;
    write_outputs(req, &prepared, report, summary)
}

fn prepare(req: &IssueRequest) -> Result<Prepared, IssueError> {
    check_output_folder(&req.out, req.force)?;
    let spec_text = std::fs::read(&req.spec).map_err(io(&req.spec))?;
    let spec = Spec::parse(
        &String::from_utf8_lossy(&spec_text),
        &req.spec.display().to_string(),
    )?;
    check_splits_given(&spec, req)?;
    let baseline = req.baseline.as_deref().map(read_baseline).transpose()?;
    let log = req.unlearn_log.as_deref().map(read_log).transpose()?;
    let mut warnings = Vec::new();
    let key = match &req.signing_key {
        Some(path) => {
            warnings.extend(crate::report::keys::private_key_exposure(path));
            Some(read_signing_key(path)?)
        }
        None => None,
    };
    Ok(Prepared {
        spec,
        spec_text,
        baseline,
        log,
        key,
        warnings,
    })
}

/// An output folder may be new, or hold this command's own earlier outputs only with `force`.
fn check_output_folder(out: &Path, force: bool) -> Result<(), IssueError> {
    if out.exists() && !out.is_dir() {
        return Err(input(out, "the output must be a folder"));
    }
    let taken = [CERTIFICATE_FILE, REPORT_FILE]
        .iter()
        .any(|f| out.join(f).exists());
    if taken && !force {
        return Err(IssueError::OutputExists(out.to_owned()));
    }
    Ok(())
}

/// A requirement on the utility split needs `--utility`: refused now, not after measuring.
fn check_splits_given(spec: &Spec, req: &IssueRequest) -> Result<(), IssueError> {
    let on_utility = |r: &&crate::judge::spec::Requirement| r.metric.starts_with("utility.");
    match spec.requirements.iter().find(on_utility) {
        Some(r) if req.certify.utility.is_none() => Err(input(
            &req.spec,
            format!(
                "line {}: requirement `{}` judges `{}`, which needs the utility split: give \
                 --utility (general records, JSONL), or use a spec without it",
                r.line, r.id, r.metric
            ),
        )),
        _ => Ok(()),
    }
}

/// A signing key file: a private key, not the public half (a common mix-up).
fn read_signing_key(path: &Path) -> Result<SigningKey, IssueError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    if text.contains("PUBLIC KEY") {
        return Err(input(
            path,
            "this is a public key; signing needs the private key (`lethe keygen` writes it as signer.key.pem)",
        ));
    }
    Ok(load_signing_key(path)?)
}

/// A baseline: an evidence file, or a report (its `evidence`), read strictly, and its digest
/// (recorded among the report's artifacts, role `baseline`, so that `lethe verify
/// --recompute` can re-judge against the same bytes).
fn read_baseline(path: &Path) -> Result<(serde_json::Value, Artifact), IssueError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    let evidence = baseline_evidence(&bytes).map_err(|e| input(path, e))?;
    let artifact = Artifact {
        role: BASELINE_ROLE.into(),
        path: path.display().to_string(),
        sha256: sha256_hex(&bytes),
        bytes: bytes.len() as u64,
    };
    Ok((evidence, artifact))
}

/// The report artifact role of a baseline file.
pub const BASELINE_ROLE: &str = "baseline";

/// A baseline's evidence, from the bytes of an evidence file or of a report (its `evidence`),
/// read strictly: what certification and `lethe verify --recompute` both judge against.
pub fn baseline_evidence(bytes: &[u8]) -> Result<serde_json::Value, String> {
    let evidence = match Report::from_json(bytes) {
        Ok(report) => report.evidence,
        Err(_) => serde_json::from_slice::<Evidence>(bytes)
            .map_err(|e| format!("neither a lethe report nor lethe evidence: {e}"))?,
    };
    serde_json::to_value(&evidence).map_err(|e| e.to_string())
}

fn read_log(path: &Path) -> Result<(UnlearnLog, Artifact), IssueError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    let log = UnlearnLog::from_bytes(&bytes).map_err(|e| {
        input(
            path,
            format!("not an unlearning record (unlearn.json): {e}"),
        )
    })?;
    let artifact = Artifact {
        role: "unlearn-log".into(),
        path: path.display().to_string(),
        sha256: sha256_hex(&bytes),
        bytes: bytes.len() as u64,
    };
    Ok((log, artifact))
}

/// The unlearning record must describe the models that are measured: it started from the
/// original's weights and wrote the unlearned model's (the digests of the files loaded, which
/// are the ones the evidence records).
fn check_log(log: &UnlearnLog, path: &Path, inputs: &Inputs) -> Result<(), IssueError> {
    // Every file that holds weights or says where they are: `model.safetensors`, or a sharded
    // checkpoint's index and every shard.
    let weights = |files: &[crate::digest::FileDigest]| -> Vec<(String, String)> {
        files
            .iter()
            .filter(|f| crate::model::load::is_weights_file(&f.name))
            .map(|f| (f.name.clone(), f.sha256.clone()))
            .collect()
    };
    let show = |w: &[(String, String)]| {
        if w.is_empty() {
            return "none".to_string();
        }
        w.iter()
            .map(|(name, sha)| format!("{name} sha256 {sha}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (role, model, recorded, what) in [
        (
            "original",
            &inputs.original,
            &log.model.files,
            "started from",
        ),
        ("unlearned", &inputs.unlearned, &log.output.files, "wrote"),
    ] {
        let (recorded, given) = (weights(recorded), weights(&model.files));
        if recorded.is_empty() || recorded != given {
            return Err(input(
                path,
                format!(
                    "the unlearning record {what} a model with weights [{}], but the {role} model given has [{}]: it is the record of another run",
                    show(&recorded),
                    show(&given)
                ),
            ));
        }
    }
    Ok(())
}

/// The audit's non-members must not be records the unlearning calibrated its stop rule on
/// (DESIGN.md, rule 4): refused on any shared record id or the same file bytes.
fn check_holdouts(
    log: &UnlearnLog,
    path: &Path,
    inputs: &Inputs,
) -> Result<HoldoutCheck, IssueError> {
    let holdout = inputs.splits.get("holdout");
    let audit: Vec<&str> = holdout
        .map(|(_, rs)| rs.iter().map(|r| r.id.as_str()).collect())
        .unwrap_or_default();
    let calibration: std::collections::BTreeSet<&str> =
        log.holdout.ids.iter().map(String::as_str).collect();
    let shared: Vec<&str> = audit
        .iter()
        .copied()
        .filter(|id| calibration.contains(id))
        .collect();
    let same_file = holdout.is_some_and(|(d, _)| d.sha256 == log.holdout.sha256);
    if same_file || !shared.is_empty() {
        return Err(input(
            path,
            format!(
                "the audit holdout shares {} record(s) with the holdout the unlearning calibrated on ({}; e.g. {}): \
                 records used to tune the unlearning cannot serve as the audit's non-members; certify with a holdout of other people",
                shared.len().max(usize::from(same_file)),
                log.holdout.file,
                shared.first().copied().unwrap_or("the same file")
            ),
        ));
    }
    Ok(HoldoutCheck {
        calibration_file: log.holdout.file.clone(),
        calibration_records: log.holdout.records,
        audit_records: audit.len(),
        disjoint: true,
    })
}

fn build_report(
    req: &IssueRequest,
    prepared: &Prepared,
    evidence: Evidence,
    verdicts: Vec<crate::judge::verdict::Verdict>,
) -> Result<Report, IssueError> {
    let mut artifacts = Artifact::from_evidence(&evidence);
    artifacts.push(Artifact::of_file("spec", &req.spec)?);
    if let Some((_, artifact)) = &prepared.baseline {
        artifacts.push(artifact.clone());
    }
    let mut seeds = BTreeMap::from([
        ("evidence".to_string(), req.certify.seed),
        ("spec".to_string(), prepared.spec.seed),
    ]);
    let (mut method, mut trajectory) = (None, None);
    if let Some((log, artifact)) = &prepared.log {
        artifacts.push(artifact.clone());
        seeds.insert("unlearn".into(), log.outcome.config.seed);
        let path = PathBuf::from(&artifact.path);
        let err = |e: serde_json::Error| input(&path, e.to_string());
        method = Some(serde_json::to_value(&log.outcome.config).map_err(err)?);
        trajectory = Some(serde_json::to_value(&log.outcome).map_err(err)?);
    }
    Ok(Report {
        schema_version: crate::report::schema::SCHEMA_VERSION,
        tool: Tool::current(),
        created: rfc3339_utc(SystemTime::now()),
        machine: Machine::new(crate::machine::cpu_model(), crate::machine::threads()),
        artifacts,
        method,
        seeds,
        spec: SpecRef::new(&prepared.spec, &prepared.spec_text),
        evidence,
        verdicts,
        trajectory,
        holdout_check: None,
    })
}

fn write_outputs(
    req: &IssueRequest,
    prepared: &Prepared,
    report: Report,
    summary: RunSummary,
) -> Result<Issued, IssueError> {
    let out = &req.out;
    std::fs::create_dir_all(out).map_err(io(out))?;
    let write = |name: &str, bytes: &[u8]| -> Result<PathBuf, IssueError> {
        let path = out.join(name);
        crate::atomic::write_atomic(&path, bytes).map_err(io(&path))?;
        Ok(path)
    };
    let evidence_bytes = report
        .evidence
        .to_bytes()
        .map_err(|e| input(out, e.to_string()))?;
    let evidence = write(EVIDENCE_FILE, &evidence_bytes)?;
    let report_json = write(REPORT_FILE, &report.to_jcs()?)?;
    let html = write(HTML_FILE, html::render(&report).as_bytes())?;
    let markdown = write(MARKDOWN_FILE, markdown::render(&report).as_bytes())?;
    let certificate = match &prepared.key {
        Some(key) => Some(write_certificate(&report, key, out)?),
        None => None,
    };
    Ok(Issued {
        report,
        evidence,
        report_json,
        html,
        markdown,
        certificate,
        summary,
        warnings: prepared.warnings.clone(),
    })
}
