//! `lethe verify ENVELOPE --key PUB.pem [--artifacts MODEL_DIR] [--recompute]`: first what a
//! regulator asks — the outcome, who signed (key id), which model (digests), which spec (id,
//! version, digest), when, the verdict summary — then every check as PASS/FAIL with its detail.
//! Exit 0 only for a valid certificate that says CERTIFIED; 3 for a valid one that says NOT
//! CERTIFIED; 1 when a check failed; 2 when it could not run. The HTML and Markdown pages, when
//! asked for, are rendered from the verified report only, and never over an input.

use crate::atomic::write_atomic;
use crate::judge::verdict::Status;
use crate::report::keys::load_verifying_key;
use crate::report::verify::{render_checks, verify, Options, Recompute, Verification};
use crate::report::{html, markdown};
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The signed certificate (a DSSE envelope, `certificate.dsse.json`).
    envelope: PathBuf,
    /// The signer's public key (PEM, `signer.pub.pem`).
    #[arg(long)]
    key: PathBuf,
    /// The unlearned model's directory: each file the certificate names must match its sha256.
    #[arg(long)]
    artifacts: Option<PathBuf>,
    /// Write the verified report as a self-contained HTML page here.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Write the verified report as a Markdown summary here.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Re-run the certification from the recorded inputs, settings and seeds, and compare every
    /// figure and verdict with the signed ones (minutes; needs the models and data it names).
    #[arg(long)]
    recompute: bool,
    /// The directory the report's relative paths are resolved against (where it was made);
    /// paths that lead outside it are refused.
    #[arg(long, default_value = ".")]
    root: PathBuf,
    /// Replace existing --html / --markdown files.
    #[arg(long)]
    force: bool,
}

pub fn run(args: VerifyArgs) -> Result<ExitCode> {
    if args.recompute {
        let root = args.root.clone();
        let recompute = move |r: &crate::report::Report| super::recompute::recompute(r, &root);
        return run_with(args, Some(&recompute));
    }
    run_with(args, None)
}

/// `run`, with the evaluation re-run by `recompute` (supplied by the certifier) when given.
pub fn run_with(args: VerifyArgs, recompute: Option<Recompute<'_>>) -> Result<ExitCode> {
    let mut inputs = vec![args.envelope.as_path(), args.key.as_path()];
    inputs.extend(args.artifacts.as_deref());
    for page in [&args.html, &args.markdown].into_iter().flatten() {
        crate::output::check_output(page, &inputs, args.force)?;
    }
    let key = load_verifying_key(&args.key)?;
    let bytes = std::fs::read(&args.envelope)
        .with_context(|| format!("cannot read {}", args.envelope.display()))?;
    let options = Options {
        artifacts: args.artifacts.as_deref(),
        recompute,
    };
    let verification = verify(&bytes, &key, &options);
    print!("{}", summary(&verification, &key));
    print!("{}", render_checks(&verification.checks));
    if let Some(report) = &verification.report {
        let pages = [
            (&args.html, html::render(report)),
            (&args.markdown, markdown::render(report)),
        ];
        for (path, text) in pages {
            if let Some(path) = path {
                write_atomic(path, text.as_bytes())
                    .with_context(|| format!("cannot write {}", path.display()))?;
                println!("wrote {}", path.display());
            }
        }
    }
    println!("{}", outcome_line(&verification));
    Ok(ExitCode::from(verification.exit_code()))
}

fn outcome_line(v: &Verification) -> &'static str {
    match (v.passed(), v.report.as_ref().map(|r| r.certified())) {
        (true, Some(true)) => "outcome     CERTIFIED (valid certificate, every check passed)",
        (true, _) => {
            "outcome     NOT CERTIFIED (a valid certificate of a failed or inconclusive audit)"
        }
        (false, _) => {
            "outcome     INVALID (a check failed: nothing this certificate says can be relied on)"
        }
    }
}

/// The answers a regulator wants first: outcome, signer, model, spec, time, verdicts.
fn summary(v: &Verification, key: &ed25519_dalek::VerifyingKey) -> String {
    let mut out = format!("{}\n", outcome_line(v));
    out.push_str(&format!(
        "signer      key id {} (sha256 of the Ed25519 public key; compare it out of band)\n",
        crate::report::dsse::key_id(key)
    ));
    let Some(r) = &v.report else {
        return out + "\n";
    };
    for f in r.evidence.model_files("unlearned") {
        out.push_str(&format!("model       {} sha256 {}\n", f.name, f.sha256));
    }
    out.push_str(&format!(
        "spec        {} {} ({}, sha256 {})\n",
        r.spec.id, r.spec.version, r.spec.file, r.spec.sha256
    ));
    out.push_str(&format!(
        "signed at   {} by {} {}\n",
        r.created, r.tool.name, r.tool.version
    ));
    out.push_str(&match &r.holdout_check {
        Some(h) => format!(
            "holdout     audit non-members ({} records) disjoint from the {} records the unlearning calibrated on ({})\n",
            h.audit_records, h.calibration_records, h.calibration_file
        ),
        None => "holdout     not checked against the unlearning's calibration records (no unlearning record was bound)\n".into(),
    });
    let count = |s: Status| r.verdicts.iter().filter(|x| x.status == s).count();
    out.push_str(&format!(
        "verdicts    {} pass, {} fail, {} inconclusive\n\n",
        count(Status::Pass),
        count(Status::Fail),
        count(Status::Inconclusive)
    ));
    out
}
