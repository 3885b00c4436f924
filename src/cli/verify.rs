//! `lethe verify ENVELOPE --key PUB.pem [--artifacts MODEL_DIR] [--recompute]`: every check of a certificate
//! printed as PASS/FAIL with its detail; exit 0 only when all pass. The HTML and Markdown pages,
//! when asked for, are rendered from the verified report only.

use crate::atomic::write_atomic;
use crate::report::keys::load_verifying_key;
use crate::report::verify::{render_checks, verify, Options, Recompute};
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
    /// The directory the report's relative paths are resolved against (where it was made).
    #[arg(long, default_value = ".")]
    root: PathBuf,
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
    let key = load_verifying_key(&args.key)?;
    let bytes = std::fs::read(&args.envelope)
        .with_context(|| format!("cannot read {}", args.envelope.display()))?;
    let options = Options {
        artifacts: args.artifacts.as_deref(),
        recompute,
    };
    let verification = verify(&bytes, &key, &options);
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
    println!(
        "{}",
        if verification.passed() {
            "verified: every check passed"
        } else {
            "NOT verified: a check failed"
        }
    );
    Ok(ExitCode::from(verification.exit_code()))
}
