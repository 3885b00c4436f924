//! `lethe verify --recompute`: re-runs the measurements a verified report records — the same
//! model and data files (their digests checked against the signed ones), the same settings and
//! seeds — and compares every per-record value (losses, attack scores' inputs, answers' figures,
//! gradient norms, the influence analysis) with the signed ones at float32's resolution
//! ([`MEASURED`]); then judges the signed spec on the signed evidence and on the re-measured
//! evidence (every verdict must be the signed one, and keep its status). Every verification has
//! already checked that the file's statistics follow from its per-record values
//! (`report::figures`), so the three together say: the models give these values, these values
//! give these statistics, and these statistics give these verdicts. Statistics are not compared
//! after re-measuring: an attack score that is the difference of two nearly equal losses, or an
//! ROC curve through near-ties, moves far more than its inputs when another CPU sums float32 in
//! another order. It lives in the CLI because it joins the certifier to the report layer, which
//! must not depend on the ML stack; it never changes a model or a file.

use crate::evidence::oracle::ModelOracle;
use crate::evidence::{certify, load_inputs, CertifyError, Request};
use crate::judge::evidence::{AttackScores, Evidence};
use crate::judge::spec::{Spec, BUNDLED_SPECS};
use crate::judge::verdict::{judge_spec, Verdict};
use crate::report::figures::{same_figures, DERIVED, MEASURED};
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
    let mut checks = vec![
        same_inputs(signed, &fresh),
        same_figures(
            "recompute measurements",
            "per-record values",
            &measurements(signed),
            &measurements(&fresh),
            MEASURED,
        ),
    ];
    let oracle =
        ModelOracle::open(&inputs.unlearned.model, &inputs.tokenizer).map_err(|e| e.to_string())?;
    let baseline = signed_baseline(report, root)?;
    // The spec judged twice: on the signed evidence (whose statistics `verify` checked follow
    // from its per-record values: the verdicts must be the signed ones), and on the re-measured
    // evidence (each must keep its status: values nudged within the tolerance above cannot have
    // bought a verdict). The property checks' answers are decoded once and kept by the oracle.
    let mut judged = Vec::new();
    for evidence in [signed, &fresh] {
        let value = serde_json::to_value(evidence).map_err(|e| e.to_string())?;
        judged.push(
            judge_spec(
                &spec,
                &value,
                baseline.as_ref(),
                &|s| inputs.splits.get(s).map(|(_, r)| r.as_slice()),
                &oracle,
            )
            .map_err(|e| e.to_string())?,
        );
    }
    checks.extend(same_verdicts(&report.verdicts, &judged[0], &judged[1]));
    Ok(checks)
}

/// What an evidence file measured, as opposed to what it derived (`judge::derive::Measured`):
/// the per-record evaluations, the gradient norms (as the `grad_norm` attack's scores) and the
/// influence analysis.
fn measurements(e: &Evidence) -> Value {
    let norms: BTreeMap<&String, Option<&AttackScores>> = e
        .mia
        .iter()
        .map(|(role, m)| (role, m.scores.get("grad_norm")))
        .collect();
    serde_json::json!({
        "records": e.records,
        "grad_norm": norms,
        "influence": e.influence,
    })
}

/// Every verdict of the whole spec, re-judged: one check per requirement or property, failing
/// when the signed report changed, dropped or added one (`rejudged`, from the signed evidence:
/// same status, same value), or when re-measuring changed its status (`remeasured`).
fn same_verdicts(signed: &[Verdict], rejudged: &[Verdict], remeasured: &[Verdict]) -> Vec<Check> {
    let mut checks = Vec::new();
    let value = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.6}"));
    for new in rejudged {
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
        let again = remeasured.iter().find(|v| v.requirement == new.requirement);
        let same_value = match (old.value, new.value) {
            (Some(a), Some(b)) => DERIVED.close(a, b),
            (a, b) => a == b,
        };
        let detail = format!(
            "{:?} {} (signed: {:?} {}; re-measured: {})",
            new.status,
            value(new.value),
            old.status,
            value(old.value),
            again.map_or("not judged".into(), |v| format!(
                "{:?} {}",
                v.status,
                value(v.value)
            )),
        );
        let kept = again.is_some_and(|v| v.status == old.status);
        checks.push(if new.status == old.status && same_value && kept {
            Check::pass(name, detail)
        } else {
            Check::fail(name, detail)
        });
    }
    for old in signed {
        if !rejudged.iter().any(|v| v.requirement == old.requirement) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
        use crate::judge::verdict::Status::{Fail, Inconclusive, Pass};
        use crate::report::verify::Outcome;
        let fresh = vec![verdict("a", Pass), verdict("b", Inconclusive)];
        let fails = |signed: &[Verdict]| {
            same_verdicts(signed, &fresh, &fresh)
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
        // Judged on the re-measured evidence, a verdict changed its status: per-record values
        // nudged within the measurement tolerance bought it.
        let remeasured = vec![verdict("a", Fail), verdict("b", Inconclusive)];
        let checks = same_verdicts(&fresh, &fresh, &remeasured);
        assert_eq!(checks[0].outcome, Outcome::Fail);
        assert!(
            checks[0].detail.contains("re-measured: Fail"),
            "{}",
            checks[0].detail
        );
        assert_eq!(checks[1].outcome, Outcome::Pass);
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
}
