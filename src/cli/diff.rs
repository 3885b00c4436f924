//! `lethe diff OLD NEW [--tolerance T]`: metric deltas and verdict changes between two reports;
//! exit 1 on a regression (a verdict got worse, or a metric moved the wrong way by more than
//! the tolerance), 0 otherwise. Reports are `report.json` files or, with `--key`, signed
//! certificates, which are verified before they are read: with `--key` both inputs must be
//! certificates signed with it (an unsigned report is refused, never silently compared).

use crate::report::diff::{diff, render};
use crate::report::dsse::Envelope;
use crate::report::keys::load_verifying_key;
use crate::report::schema::Report;
use crate::report::seal::open_envelope;
use anyhow::{bail, Context, Result};
use ed25519_dalek::VerifyingKey;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct DiffArgs {
    /// The earlier report (report.json, or certificate.dsse.json with --key).
    old: PathBuf,
    /// The later report.
    new: PathBuf,
    /// A metric moving the wrong way by at most this much (absolute) is not a regression.
    #[arg(long, default_value_t = 0.0)]
    tolerance: f64,
    /// Public key (PEM) that signed OLD and NEW, which must then both be signed certificates.
    #[arg(long)]
    key: Option<PathBuf>,
}

pub fn run(args: DiffArgs) -> Result<ExitCode> {
    if !(args.tolerance.is_finite() && args.tolerance >= 0.0) {
        bail!(
            "--tolerance must be a finite non-negative number, got {}",
            args.tolerance
        );
    }
    let key = args.key.as_deref().map(load_verifying_key).transpose()?;
    let old = read_report(&args.old, key.as_ref())?;
    let new = read_report(&args.new, key.as_ref())?;
    let d = diff(&old, &new, args.tolerance);
    print!("{}", render(&d));
    Ok(if d.is_regression() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn read_report(path: &Path, key: Option<&VerifyingKey>) -> Result<Report> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let is_envelope = Envelope::from_json(&bytes).is_ok();
    let Some(key) = key else {
        if is_envelope {
            bail!(
                "{} is a signed certificate: give --key PUB.pem to verify and read it",
                path.display()
            );
        }
        return Report::from_json(&bytes).with_context(|| format!("{}", path.display()));
    };
    if !is_envelope && Report::from_json(&bytes).is_ok() {
        bail!(
            "{} is an unsigned report, but --key asks for certificates signed with that key: \
             give both as signed certificates (certificate.dsse.json), or drop --key",
            path.display()
        );
    }
    let statement = open_envelope(&bytes, key).with_context(|| format!("{}", path.display()))?;
    let predicate = serde_json::to_vec(&statement.predicate)?;
    Report::from_json(&predicate).with_context(|| format!("{}", path.display()))
}
