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

/// A valid certificate exits 0 when it says CERTIFIED and 3 when it says NOT CERTIFIED (the
/// outcome printed first must say which); 1 would mean a check failed.
fn assert_valid(code: Option<i32>, text: &str) {
    let certified = text
        .lines()
        .next()
        .is_some_and(|l| l.contains(" CERTIFIED (valid"));
    let not_certified = text
        .lines()
        .next()
        .is_some_and(|l| l.contains("NOT CERTIFIED (a valid"));
    match code {
        Some(0) => assert!(certified, "{text}"),
        Some(3) => assert!(not_certified, "{text}"),
        other => panic!("exit {other:?}, a valid certificate exits 0 or 3:\n{text}"),
    }
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
    assert_valid(out.status.code(), &text);
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
    assert_valid(out.status.code(), &text);
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
