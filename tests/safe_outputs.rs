//! Outputs never replace a command's own inputs, never replace an existing output without
//! `--force`, and appear whole; `diff --key` reads signed certificates only.

use crate::common::{lethe, scratch};
use std::fs;
use std::path::{Path, PathBuf};

fn repo(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A copy of the bundled full model, so that a guard that fails harms no fixture.
fn model_copy(dir: &Path) -> PathBuf {
    let model = dir.join("model");
    fs::create_dir_all(&model).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        fs::copy(repo("fixtures/models/full").join(f), model.join(f)).unwrap();
    }
    model
}

fn unlearn(model: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let world = |f: &str| repo("fixtures/world").join(f).to_str().unwrap().to_string();
    let mut args = vec![
        "unlearn".to_string(),
        s(model).into(),
        "--forget".into(),
        world("forget05.jsonl"),
        "--retain".into(),
        world("retain05.jsonl"),
        "--holdout".into(),
        world("holdout.jsonl"),
        "--max-steps".into(),
        "1".into(),
        "--out".into(),
        s(out).into(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    lethe(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn unlearn_refuses_to_write_over_or_into_its_own_model() {
    let dir = scratch("safe-unlearn-self");
    let model = model_copy(&dir);
    let before = fs::read(model.join("model.safetensors")).unwrap();
    for (out, says) in [
        (model.clone(), "is the input"),
        (dir.join("model/../model"), "is the input"),
        (model.join("unlearned"), "inside the input"),
        (dir.clone(), "lies inside the output"),
    ] {
        for force in [&[][..], &["--force"][..]] {
            let run = unlearn(&model, &out, force);
            let err = String::from_utf8_lossy(&run.stderr);
            assert_eq!(run.status.code(), Some(2), "{}: {err}", out.display());
            assert!(err.contains(says), "{}: {err}", out.display());
        }
    }
    assert_eq!(fs::read(model.join("model.safetensors")).unwrap(), before);
    assert_eq!(
        listing(&model),
        ["config.json", "model.safetensors", "tokenizer.json"]
    );
}

#[test]
fn unlearn_replaces_an_existing_output_only_with_force_and_whole() {
    let dir = scratch("safe-unlearn-force");
    let model = model_copy(&dir);
    let out = dir.join("out");
    fs::create_dir(&out).unwrap();
    fs::write(out.join("stale.txt"), b"from an earlier run").unwrap();
    let run = unlearn(&model, &out, &[]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{err}");
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(listing(&out), ["stale.txt"]);

    let run = unlearn(&model, &out, &["--force"]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(0), "{err}");
    assert_eq!(
        listing(&out),
        [
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "unlearn.json"
        ]
    );
    // No temporary folder or file is left beside the output.
    assert_eq!(listing(&dir), ["model", "out"]);
}

#[test]
fn train_refuses_to_write_over_its_init_model() {
    let dir = scratch("safe-train-self");
    let model = model_copy(&dir);
    let data = repo("fixtures/world/forget05.jsonl");
    let tok = repo("fixtures/world/tokenizer.json");
    for (out, says) in [
        (model.clone(), "is the input"),
        (dir.join("world-tokenizer-dir"), ""),
    ] {
        let mut args = vec!["train", "--init", s(&model), "--data", s(&data)];
        args.extend(["--tokenizer", s(&tok), "--out", s(&out), "--epochs", "0"]);
        if says.is_empty() {
            // The ledger folder is an output too: here it names the tokenizer it reads.
            args.extend(["--ledger", s(&tok)]);
        }
        let run = lethe(&args);
        let err = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{err}");
        assert!(err.contains("is the input"), "{err}");
    }
    assert_eq!(
        listing(&model),
        ["config.json", "model.safetensors", "tokenizer.json"]
    );
}

#[test]
fn diff_with_a_key_refuses_an_unsigned_report() {
    let golden = |f: &str| repo("reports/golden").join(f);
    let (report, cert, key) = (
        golden("report.json"),
        golden("certificate.dsse.json"),
        golden("signer.pub.pem"),
    );
    for (old, new) in [(&report, &cert), (&cert, &report)] {
        let run = lethe(&["diff", s(old), s(new), "--key", s(&key)]);
        let err = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{err}");
        assert!(
            err.contains(s(&report)) && err.contains("unsigned"),
            "{err}"
        );
    }
    let run = lethe(&["diff", s(&cert), s(&cert), "--key", s(&key)]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(0), "{err}");
    let run = lethe(&["diff", s(&report), s(&report)]);
    assert_eq!(run.status.code(), Some(0));
}

#[test]
fn verify_pages_never_overwrite_the_certificate_or_an_existing_file() {
    // Issue 15: `verify --html c.json` overwrote the certificate `c.json`.
    let dir = scratch("safe-verify-html");
    let cert = dir.join("c.json");
    fs::copy(repo("reports/golden/certificate.dsse.json"), &cert).unwrap();
    let before = fs::read(&cert).unwrap();
    let key = repo("reports/golden/signer.pub.pem");
    let out = lethe(&["verify", s(&cert), "--key", s(&key), "--html", s(&cert)]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fs::read(&cert).unwrap(), before);
    let page = dir.join("page.html");
    fs::write(&page, b"mine").unwrap();
    let out = lethe(&["verify", s(&cert), "--key", s(&key), "--html", s(&page)]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fs::read(&page).unwrap(), b"mine");
    let out = lethe(&[
        "verify",
        s(&cert),
        "--key",
        s(&key),
        "--html",
        s(&page),
        "--force",
    ]);
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(fs::read_to_string(&page).unwrap().contains("<html"));
}
