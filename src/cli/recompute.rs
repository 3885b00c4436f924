//! `lethe verify --recompute`: re-runs the certification a verified report records — the same
//! model and data files (their digests checked against the signed ones), the same settings and
//! seeds, the same spec — and compares every number of the evidence and every verdict with the
//! signed ones; the KS distances to the reference are also redrawn from the signed per-record
//! scores with the seed and resample count they record. It lives in the CLI because it joins the
//! certifier to the report layer, which must not depend on the ML stack; it never changes a model
//! or a file.

use crate::evidence::oracle::ModelOracle;
use crate::evidence::{certify, load_inputs, CertifyError, Request};
use crate::judge::equivalence::ks_to_reference;
use crate::judge::evidence::Evidence;
use crate::judge::metric::{Metric, KS_TO_REFERENCE, KS_TO_REFERENCE_SCORES};
use crate::judge::spec::{Spec, BUNDLED_SPECS};
use crate::judge::verdict::{judge_spec, Verdict};
use crate::report::schema::Report;
use crate::report::verify::Check;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// A spec file is a few kB; anything past this is not one.
const MAX_SPEC_BYTES: u64 = 1 << 20;
/// The largest baseline (an evidence file or a report) a recomputation reads: the demo's
/// evidence, on about 3 000 records, is 3.9 MB.
const MAX_BASELINE_BYTES: u64 = 256 << 20;

/// Relative difference two recomputed figures may have: the same bytes and seeds give the same
/// figures on one machine, but `gemm` picks its kernels by the CPU's features at run time, so
/// another CPU sums float32 products in another order. Measured: the golden certificate made on
/// an AVX-512 machine recomputed on one without AVX-512 moved a standard error by 2.4e-6
/// relative (0.0008021506 → 0.0008021487); 1e-6 refused that, 1e-5 allows four times it.
pub const TOLERANCE: f64 = 1e-5;

/// The checks of a recomputation; paths in the report are resolved against `root` (the
/// directory the certification ran in), and only there.
pub fn recompute(report: &Report, root: &Path) -> Vec<Check> {
    match rerun(report, root) {
        Ok(checks) => checks,
        Err(e) => vec![Check::fail("recompute", e)],
    }
}

/// A path named inside a signed report, resolved under `root`: relative, no `..`, and — after
/// symbolic links are followed — still inside `root`. A hostile signer's paths go nowhere else.
pub fn confine(root: &Path, named: &str) -> Result<PathBuf, String> {
    let rel = Path::new(named);
    let plain = rel
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if named.is_empty() || !plain {
        return Err(format!(
            "the report names {named:?}: only relative paths without `..` are followed"
        ));
    }
    let root = root
        .canonicalize()
        .map_err(|e| format!("--root {}: {e}", root.display()))?;
    let path = root
        .join(rel)
        .canonicalize()
        .map_err(|e| format!("{named} (under {}): {e}", root.display()))?;
    if !path.starts_with(&root) {
        return Err(format!(
            "{named} leads outside --root {} (to {})",
            root.display(),
            path.display()
        ));
    }
    Ok(path)
}

fn rerun(report: &Report, root: &Path) -> Result<Vec<Check>, String> {
    let signed = &report.evidence;
    let resolve = |named: &str| confine(root, named).map_err(CertifyError::Setting);
    let req = Request::from_evidence(signed, &resolve).map_err(|e| e.to_string())?;
    let spec = signed_spec(report, root)?;
    let mut inputs = load_inputs(&req).map_err(|e| e.to_string())?;
    let (fresh, _) = certify(&req, &mut inputs, &mut |_, _| {}).map_err(|e| e.to_string())?;
    let mut checks = vec![same_inputs(signed, &fresh)];
    let signed_value = serde_json::to_value(signed).map_err(|e| e.to_string())?;
    let fresh_value = serde_json::to_value(&fresh).map_err(|e| e.to_string())?;
    checks.push(same_numbers(&signed_value, &fresh_value));
    checks.extend(same_distances(signed));
    let oracle =
        ModelOracle::open(&inputs.unlearned.model, &inputs.tokenizer).map_err(|e| e.to_string())?;
    let baseline = signed_baseline(report, root)?;
    let verdicts = judge_spec(
        &spec,
        &fresh_value,
        baseline.as_ref(),
        &|s| inputs.splits.get(s).map(|(_, r)| r.as_slice()),
        &oracle,
    )
    .map_err(|e| e.to_string())?;
    checks.extend(same_verdicts(&report.verdicts, &verdicts));
    Ok(checks)
}

/// Every verdict of the whole spec, re-judged: one check per requirement or property, failing
/// when the signed report changed, dropped or added one.
fn same_verdicts(signed: &[Verdict], fresh: &[Verdict]) -> Vec<Check> {
    let mut checks = Vec::new();
    for new in fresh {
        let name = format!("recompute {}", new.requirement);
        let Some(old) = signed.iter().find(|v| v.requirement == new.requirement) else {
            checks.push(Check::fail(
                name,
                format!(
                    "{:?} when re-judged, but missing from the signed report",
                    new.status
                ),
            ));
            continue;
        };
        let same_value = match (old.value, new.value) {
            (Some(a), Some(b)) => close(a, b),
            (a, b) => a == b,
        };
        let detail = format!(
            "{:?} {} (signed: {:?} {})",
            new.status,
            new.value.map_or("-".into(), |v| format!("{v:.6}")),
            old.status,
            old.value.map_or("-".into(), |v| format!("{v:.6}"))
        );
        checks.push(if new.status == old.status && same_value {
            Check::pass(name, detail)
        } else {
            Check::fail(name, detail)
        });
    }
    for old in signed {
        if !fresh.iter().any(|v| v.requirement == old.requirement) {
            checks.push(Check::fail(
                format!("recompute {}", old.requirement),
                "in the signed report, but not a requirement or property of the spec",
            ));
        }
    }
    checks
}

/// The baseline the report was judged against (its artifact of role `baseline`), read from
/// under `root` and checked by the sha256 of its bytes; `None` when the run had none.
fn signed_baseline(report: &Report, root: &Path) -> Result<Option<Value>, String> {
    let Some(artifact) = report
        .artifacts
        .iter()
        .find(|a| a.role == crate::issue::BASELINE_ROLE)
    else {
        return Ok(None);
    };
    let named = format!("baseline {}", artifact.path);
    let bytes = read_under(root, &artifact.path, MAX_BASELINE_BYTES, "baseline")?;
    same_digest(&named, &bytes, &artifact.sha256)?;
    crate::issue::baseline_evidence(&bytes)
        .map(Some)
        .map_err(|e| format!("{named}: {e}"))
}

/// The spec the report was judged against — a bundled one by name or a file under `root` —
/// checked by the sha256 of its bytes either way.
fn signed_spec(report: &Report, root: &Path) -> Result<Spec, String> {
    let file = &report.spec.file;
    let text: Vec<u8> = match file.strip_prefix("bundled:") {
        Some(name) => BUNDLED_SPECS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| t.as_bytes().to_vec())
            .ok_or_else(|| format!("no bundled spec {name}"))?,
        None => read_under(root, file, MAX_SPEC_BYTES, "spec")?,
    };
    same_digest(file, &text, &report.spec.sha256)?;
    Spec::parse(&String::from_utf8_lossy(&text), file).map_err(|e| e.to_string())
}

/// A file a signed report names, read from under `root` ([`confine`]), at most `cap` bytes.
fn read_under(root: &Path, named: &str, cap: u64, what: &'static str) -> Result<Vec<u8>, String> {
    let path = confine(root, named)?;
    crate::untrusted::read_regular_file_capped(&path, cap, what).map_err(|e| e.to_string())
}

/// The bytes read for `named` hash to the sha256 the signed report recorded.
fn same_digest(named: &str, bytes: &[u8], signed: &str) -> Result<(), String> {
    let digest = crate::digest::sha256_hex(bytes);
    if digest != signed {
        return Err(format!(
            "{named} has sha256 {digest}, the report was judged against {signed}"
        ));
    }
    Ok(())
}

/// Every model file and data split was read with the digest the signed evidence records.
fn same_inputs(signed: &Evidence, fresh: &Evidence) -> Check {
    let digests = |e: &Evidence| {
        let mut out = BTreeMap::new();
        for (role, m) in &e.models {
            for f in &m.files {
                out.insert(format!("model:{role}/{}", f.name), f.sha256.clone());
            }
        }
        for (split, d) in &e.data {
            out.insert(format!("data:{split}"), d.sha256.clone());
        }
        out
    };
    let (a, b) = (digests(signed), digests(fresh));
    let differing: Vec<&String> = a
        .keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .collect();
    if differing.is_empty() {
        Check::pass(
            "recompute inputs",
            format!("{} files, same sha256", a.len()),
        )
    } else {
        Check::fail(
            "recompute inputs",
            format!("differ from the signed digests: {differing:?}"),
        )
    }
}

/// Every number of the evidence (metrics, attacks, per-record scores, influence) agrees within
/// [`TOLERANCE`]; the file locations, which depend on where the run was made, are not compared.
fn same_numbers(signed: &Value, fresh: &Value) -> Check {
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    flatten(signed, String::new(), &mut a);
    flatten(fresh, String::new(), &mut b);
    // Every figure that differs, the one furthest apart (relative to its size) named.
    let mut differing = 0;
    let mut worst: Option<(String, f64, f64)> = None;
    let mut missing = Vec::new();
    for (k, &x) in &a {
        match b.get(k) {
            None => missing.push(k.clone()),
            Some(&y) if !close(x, y) => {
                differing += 1;
                if worst
                    .as_ref()
                    .is_none_or(|(_, wx, wy)| apart(x, y) > apart(*wx, *wy))
                {
                    worst = Some((k.clone(), x, y));
                }
            }
            Some(_) => {}
        }
    }
    missing.extend(b.keys().filter(|k| !a.contains_key(*k)).cloned());
    match (worst, missing.first()) {
        (None, None) => Check::pass(
            "recompute evidence",
            format!("{} figures agree within {TOLERANCE:e}", a.len()),
        ),
        (Some((k, x, y)), _) => Check::fail(
            "recompute evidence",
            format!(
                "{differing} of {} figures differ by more than {TOLERANCE:e}; furthest apart \
                 {k}: recomputed {y}, signed {x}",
                a.len()
            ),
        ),
        (None, Some(k)) => Check::fail(
            "recompute evidence",
            format!("{k} is in only one of the signed and recomputed evidence"),
        ),
    }
}

/// The most resamples a signed distance may ask the recomputation to redraw.
const MAX_RESAMPLES: usize = 1_000_000;

/// Each KS distance to the reference the signed evidence holds, redrawn from the signed
/// per-record scores with the seed and resample count it records: the distance and every
/// bootstrap replicate must agree (the bound a verdict took follows from them).
fn same_distances(signed: &Evidence) -> Vec<Check> {
    let forget = |role: &str| signed.records.get(role).and_then(|m| m.get("forget"));
    let mut checks = Vec::new();
    for score in KS_TO_REFERENCE_SCORES {
        let path = format!("{KS_TO_REFERENCE}.{score}");
        let name = format!("recompute {path}");
        let Some(metric) = signed.metrics.get(&path) else {
            continue;
        };
        let Metric::ClusterBootstrap {
            value,
            seed,
            resamples,
            replicates,
            ..
        } = metric
        else {
            checks.push(Check::fail(name, format!("is a {} metric", metric.kind())));
            continue;
        };
        if *resamples > MAX_RESAMPLES {
            checks.push(Check::fail(
                name,
                format!("{resamples} resamples (at most {MAX_RESAMPLES} are redrawn)"),
            ));
            continue;
        }
        let (Some(u), Some(r)) = (forget("unlearned"), forget("reference")) else {
            checks.push(Check::fail(
                name,
                "the evidence lacks the per-record scores of the forget records",
            ));
            continue;
        };
        checks.push(match ks_to_reference(score, u, r, *resamples, *seed) {
            Err(e) => Check::fail(name, e.to_string()),
            Ok(ks) => {
                let agree = close(ks.distance, *value)
                    && ks.replicates.len() == replicates.len()
                    && ks
                        .replicates
                        .iter()
                        .zip(replicates)
                        .all(|(a, b)| close(*a, *b));
                let detail = format!(
                    "D {:.6} (signed {value:.6}), {resamples} replicates from seed {seed}",
                    ks.distance
                );
                if agree {
                    Check::pass(name, format!("{detail} redrawn from the per-record scores"))
                } else {
                    Check::fail(name, format!("{detail}: the replicates differ"))
                }
            }
        });
    }
    checks
}

fn flatten(v: &Value, path: String, out: &mut BTreeMap<String, f64>) {
    match v {
        Value::Number(n) => {
            out.insert(path, n.as_f64().unwrap_or(f64::NAN));
        }
        Value::Bool(b) => {
            out.insert(path, f64::from(u8::from(*b)));
        }
        Value::Array(items) => {
            for (i, x) in items.iter().enumerate() {
                flatten(x, format!("{path}[{i}]"), out);
            }
        }
        Value::Object(map) => {
            for (k, x) in map {
                if path.is_empty() && (k == "models" || k == "data") {
                    continue;
                }
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                flatten(x, p, out);
            }
        }
        Value::Null | Value::String(_) => {}
    }
}

fn close(a: f64, b: f64) -> bool {
    a == b || apart(a, b) <= TOLERANCE
}

/// How far apart two figures are, relative to the larger (NaN when either is NaN).
fn apart(a: f64, b: f64) -> f64 {
    (a - b).abs() / a.abs().max(b.abs()).max(1e-12)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn verdict(id: &str, status: crate::judge::verdict::Status) -> Verdict {
        Verdict {
            requirement: id.into(),
            metric: "mia.loss.auc".into(),
            status,
            compare: "<=".into(),
            value: Some(0.5),
            bound: Some(0.55),
            confidence: Some(0.95),
            threshold: Some(0.6),
            baseline: None,
            samples: 10,
            reason: String::new(),
            needed_samples: None,
            counterexample: None,
            coverage: None,
        }
    }

    #[test]
    fn dropped_added_or_changed_verdicts_fail_the_recomputation() {
        // Issue 15: a report relabelled with the inconclusive verdicts deleted verified.
        use crate::judge::verdict::Status::{Inconclusive, Pass};
        use crate::report::verify::Outcome;
        let fresh = vec![verdict("a", Pass), verdict("b", Inconclusive)];
        let fails = |signed: &[Verdict]| {
            same_verdicts(signed, &fresh)
                .iter()
                .filter(|c| c.outcome == Outcome::Fail)
                .count()
        };
        assert_eq!(fails(&fresh), 0);
        assert_eq!(fails(&[verdict("a", Pass)]), 1, "dropped");
        assert_eq!(
            fails(&[verdict("a", Pass), verdict("b", Pass)]),
            1,
            "changed"
        );
        let mut extra = fresh.clone();
        extra.push(verdict("c", Pass));
        assert_eq!(fails(&extra), 1, "added");
    }

    #[test]
    fn distances_are_redrawn_from_the_signed_scores() {
        use crate::report::verify::Outcome;
        // Six forget records of three people; the reference's losses are the unlearned's + 1.
        let recs = |shift: f64| {
            let rs: Vec<Value> = (0..6)
                .map(|i| {
                    json!({"id": format!("r{i}"), "subject": format!("p{}", i / 2), "tokens": 5,
                        "loss": f64::from(i) + shift, "min_k": 0.0, "min_k_pp": 0.0,
                        "zlib_bytes": 10})
                })
                .collect();
            Value::Array(rs)
        };
        let mut r = crate::report::schema::tests::sample();
        crate::report::schema::tests::edit_evidence(&mut r, |e| {
            e["records"] = json!({"unlearned": {"forget": recs(0.0)},
                                  "reference": {"forget": recs(1.0)}});
        });
        let ks = ks_to_reference(
            "loss",
            &r.evidence.records["unlearned"]["forget"],
            &r.evidence.records["reference"]["forget"],
            50,
            17,
        )
        .unwrap();
        // Losses 0..5 against 1..6: at x = 0, F₁ = 1/6 and F₂ = 0.
        assert!((ks.distance - 1.0 / 6.0).abs() < 1e-15);
        let mut signed = r.evidence.clone();
        signed
            .metrics
            .insert("forget.ks_to_reference.loss", Metric::from(ks.clone()));
        let checks = same_distances(&signed);
        assert_eq!(checks.len(), 1);
        assert_eq!(checks[0].outcome, Outcome::Pass, "{}", checks[0].detail);
        // A replicate moved (the bound a verdict took would move with it): refused.
        let mut moved = ks;
        moved.replicates[49] += 0.01;
        signed
            .metrics
            .insert("forget.ks_to_reference.loss", Metric::from(moved));
        let checks = same_distances(&signed);
        assert_eq!(checks[0].outcome, Outcome::Fail);
        assert!(
            checks[0].detail.contains("replicates differ"),
            "{}",
            checks[0].detail
        );
    }

    #[test]
    fn named_paths_stay_under_the_root() {
        // Issue 15: `--recompute` read model and data paths outside `--root`.
        let root = std::env::temp_dir().join(format!("lethe-confine-{}", std::process::id()));
        std::fs::create_dir_all(root.join("data")).unwrap();
        std::fs::write(root.join("data/x.jsonl"), b"{}").unwrap();
        assert!(confine(&root, "data/x.jsonl").is_ok());
        for bad in ["../etc/hostname", "/etc/hostname", "data/../../x", ""] {
            assert!(confine(&root, bad).is_err(), "{bad}");
        }
        std::os::unix::fs::symlink("/etc", root.join("out")).unwrap();
        let err = confine(&root, "out/hostname").unwrap_err();
        assert!(err.contains("outside --root"), "{err}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn numbers_are_compared_everywhere_but_locations() {
        let a = json!({"models": {"x": 1}, "metrics": {"auc": 0.5, "v": [1.0, 2.0]}, "ok": true});
        let same = json!({"models": {"x": 9}, "metrics": {"auc": 0.5 + 1e-9, "v": [1.0, 2.0]}, "ok": true});
        assert_eq!(
            same_numbers(&a, &same).outcome,
            crate::report::verify::Outcome::Pass
        );
        let moved =
            json!({"models": {"x": 1}, "metrics": {"auc": 0.6, "v": [1.0, 2.0]}, "ok": true});
        let c = same_numbers(&a, &moved);
        assert!(c.detail.contains("metrics.auc"), "{}", c.detail);
        // Every differing figure is counted, and the one furthest apart relative to its size
        // is named, not the first in order (`metrics.auc` sorts before `metrics.v`).
        let two =
            json!({"models": {"x": 1}, "metrics": {"auc": 0.50001, "v": [1.5, 2.0]}, "ok": true});
        let c = same_numbers(&a, &two);
        assert!(
            c.detail.starts_with("2 of 4 figures differ") && c.detail.contains("metrics.v[0]"),
            "{}",
            c.detail
        );
        let fewer = json!({"models": {"x": 1}, "metrics": {"auc": 0.5, "v": [1.0]}, "ok": true});
        assert!(same_numbers(&a, &fewer).detail.contains("metrics.v[1]"));
    }
}
