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
        "statistics",
        "recompute measurements",
        "recompute no-verbatim-leak",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("PASS") && l.contains(check)),
            "{check} missing or failed:\n{text}"
        );
    }
}

/// Runs `lethe ARGS` in `dir`.
fn lethe_in(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_lethe"))
        .current_dir(dir)
        .args(args)
        .args(["--progress", "off"])
        .output()
        .unwrap()
}

/// A certificate judged against a baseline (`specs/regression.toml`, `--baseline`) records the
/// baseline among its artifacts, by path and digest, and `verify --recompute` re-judges against
/// those bytes: the same verdicts, and a failed check when the file under `--root` has changed.
/// (Before, the recomputation judged without any baseline and refused every such certificate.)
/// The golden run is the baseline and its unlearned model the one certified, so every
/// regression requirement compares a run with itself.
#[test]
fn a_certificate_against_a_baseline_recomputes_against_the_same_bytes() {
    let root = scratch("baseline-recompute");
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let copy = |from: &str, to: &str| {
        let dest = root.join(to);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(repo.join(from), dest).unwrap();
    };
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        copy(
            &format!("fixtures/models/full/{f}"),
            &format!("original/{f}"),
        );
        copy(
            &format!("reports/golden/model/{f}"),
            &format!("unlearned/{f}"),
        );
    }
    for split in ["forget05", "retain05", "holdout_audit", "utility"] {
        copy(
            &format!("fixtures/world/{split}.jsonl"),
            &format!("{split}.jsonl"),
        );
    }
    copy("specs/regression.toml", "regression.toml");
    copy("reports/golden/report.json", "baseline.json");
    let out = lethe_in(&root, &["keygen", "--out", "keys"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = lethe_in(
        &root,
        &[
            "certify",
            "--original",
            "original",
            "--unlearned",
            "unlearned",
            "--forget",
            "forget05.jsonl",
            "--retain",
            "retain05.jsonl",
            "--holdout",
            "holdout_audit.jsonl",
            "--utility",
            "utility.jsonl",
            "--spec",
            "regression.toml",
            "--baseline",
            "baseline.json",
            "--no-influence",
            "--sign",
            "keys/signer.key.pem",
            "--out",
            "cert",
        ],
    );
    // Exit 1, NOT CERTIFIED: the membership and forget requirements want 50 people and
    // forget05 has 10 (INCONCLUSIVE); the retain and utility ones pass. Either way the
    // certificate is signed, and its recomputation must agree.
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{table}\n{out:?}");
    assert!(
        table.contains("retain-loss-ratio           PASS"),
        "{table}"
    );
    let report: lethe::report::schema::Report =
        serde_json::from_slice(&std::fs::read(root.join("cert/report.json")).unwrap()).unwrap();
    let baseline = report
        .artifacts
        .iter()
        .find(|a| a.role == "baseline")
        .expect("the baseline is among the artifacts");
    assert_eq!(baseline.path, "baseline.json");
    assert_eq!(
        baseline.sha256,
        lethe::digest::sha256_hex(&std::fs::read(root.join("baseline.json")).unwrap())
    );
    let verify = || {
        lethe_in(
            &root,
            &[
                "verify",
                "cert/certificate.dsse.json",
                "--key",
                "keys/signer.pub.pem",
                "--recompute",
                "--root",
                ".",
            ],
        )
    };
    let out = verify();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_valid(out.status.code(), &text);
    for requirement in ["mia-loss-auc", "forget-exact-match", "retain-loss-ratio"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("PASS") && l.contains(&format!("recompute {requirement}"))),
            "{requirement}:\n{text}"
        );
    }
    // One byte more in the baseline under --root: the recomputation refuses it.
    let mut bytes = std::fs::read(root.join("baseline.json")).unwrap();
    bytes.push(b'\n');
    std::fs::write(root.join("baseline.json"), bytes).unwrap();
    let out = verify();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("baseline baseline.json has sha256"), "{text}");
}
