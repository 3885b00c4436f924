//! The golden certificate under reports/golden (written by `lethe demo` and committed) still
//! verifies — signature, payload type, schema and every artifact digest — with the committed
//! public key; a changed artifact makes verification fail; and `--recompute` re-runs the
//! certification it records to the same figures and verdicts.

use crate::common::*;
use std::path::PathBuf;

fn golden(rel: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("reports/golden")
        .join(rel)
        .display()
        .to_string()
}

#[test]
fn the_golden_certificate_verifies_with_its_artifacts() {
    let out = lethe(&[
        "verify",
        &golden("certificate.dsse.json"),
        "--key",
        &golden("signer.pub.pem"),
        "--artifacts",
        &golden("model"),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("signature") && !text.contains("FAIL"),
        "{text}"
    );
}

#[test]
fn a_changed_artifact_fails_verification() {
    let dir = scratch("golden-tamper");
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(golden(&format!("model/{f}")), dir.join(f)).unwrap();
    }
    let mut cfg = std::fs::read(dir.join("config.json")).unwrap();
    cfg.push(b'\n');
    std::fs::write(dir.join("config.json"), cfg).unwrap();
    let out = lethe(&[
        "verify",
        &golden("certificate.dsse.json"),
        "--key",
        &golden("signer.pub.pem"),
        "--artifacts",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn the_golden_certificate_recomputes_to_the_same_figures_and_verdicts() {
    // Issue 7's `verify --recompute`: the certification is re-run from the files, settings and
    // seeds the signed report records (paths relative to the repository root, where
    // `lethe demo --out reports/golden` made it) and every figure and verdict must agree.
    let out = lethe(&[
        "verify",
        &golden("certificate.dsse.json"),
        "--key",
        &golden("signer.pub.pem"),
        "--recompute",
        "--root",
        env!("CARGO_MANIFEST_DIR"),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for check in [
        "recompute inputs",
        "recompute evidence",
        "recompute no-verbatim-leak",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("PASS") && l.contains(check)),
            "{check} missing or failed:\n{text}"
        );
    }
}
