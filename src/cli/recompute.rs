//! `lethe verify --recompute`: re-runs the certification a verified report records — the same
//! model and data files (their digests checked against the signed ones), the same settings and
//! seeds, the same spec — and compares every number of the evidence and every verdict with the
//! signed ones. It lives in the CLI because it joins the certifier to the report layer, which must
//! not depend on the ML stack; it never changes a model or a file.

use crate::evidence::oracle::ModelOracle;
use crate::evidence::{certify, load_inputs, Request};
use crate::judge::evidence::Evidence;
use crate::judge::spec::Spec;
use crate::judge::verdict::judge_spec;
use crate::model::ParamGroups;
use crate::report::schema::Report;
use crate::report::verify::Check;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// Relative difference two recomputed figures may have: the same bytes and seeds give the same
/// figures on one machine; another CPU may sum in another order (f32 matmuls).
pub const TOLERANCE: f64 = 1e-6;

/// The checks of a recomputation; paths in the report are resolved against `root` (the
/// directory the certification ran in).
pub fn recompute(report: &Report, root: &Path) -> Vec<Check> {
    match rerun(report, root) {
        Ok(checks) => checks,
        Err(e) => vec![Check::fail("recompute", e)],
    }
}

fn rerun(report: &Report, root: &Path) -> Result<Vec<Check>, String> {
    let signed: Evidence = serde_json::from_value(report.evidence.clone())
        .map_err(|e| format!("the report's evidence is not lethe evidence: {e}"))?;
    let dir = |role: &str| signed.models.get(role).map(|m| root.join(&m.dir));
    let data = |split: &str| signed.data.get(split).map(|d| root.join(&d.path));
    let need = |p: Option<std::path::PathBuf>, what: &str| {
        p.ok_or_else(|| format!("the evidence names no {what}"))
    };
    let mut req = Request::new(
        need(dir("original"), "original model")?,
        need(dir("unlearned"), "unlearned model")?,
        need(data("forget"), "forget split")?,
        need(data("retain"), "retain split")?,
        need(data("holdout"), "holdout split")?,
    );
    req.reference = dir("reference");
    req.utility = data("utility");
    req.seed = signed.seed;
    let s = &signed.settings;
    req.confidence = s.confidence;
    req.params = ParamGroups::parse(&s.params)?;
    req.hessian_records = s.hessian_records;
    req.influence_records = s.influence_records;
    req.lanczos_steps = s.lanczos_steps;
    req.cg_tolerance = s.cg_tolerance;
    req.cg_max_iterations = s.cg_max_iterations;
    req.damping = s.damping;
    req.generated_records = s.generated_records;
    req.influence = signed.influence.is_some();
    let spec = signed_spec(report, root)?;

    let mut inputs = load_inputs(&req).map_err(|e| e.to_string())?;
    let (fresh, _) = certify(&req, &mut inputs, &mut |_, _| {}).map_err(|e| e.to_string())?;
    let mut checks = vec![same_inputs(&signed, &fresh)];
    let fresh_value = serde_json::to_value(&fresh).map_err(|e| e.to_string())?;
    checks.push(same_numbers(&report.evidence, &fresh_value));
    let oracle = ModelOracle::new(&inputs.unlearned.model, &inputs.tokenizer)?;
    let verdicts = judge_spec(
        &spec,
        &fresh_value,
        None,
        &|s| inputs.splits.get(s).map(|(_, r)| r.as_slice()),
        &oracle,
    )
    .map_err(|e| e.to_string())?;
    for old in &report.verdicts {
        let name = format!("recompute {}", old.requirement);
        let Some(new) = verdicts.iter().find(|v| v.requirement == old.requirement) else {
            checks.push(Check::fail(name, "not produced by the recomputation"));
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
    Ok(checks)
}

/// The spec the report was judged against, read from the file it names and checked by digest.
fn signed_spec(report: &Report, root: &Path) -> Result<Spec, String> {
    let file = &report.spec.file;
    let text = match file.strip_prefix("bundled:") {
        Some(name) => {
            return Spec::bundled(name)
                .ok_or_else(|| format!("no bundled spec {name}"))?
                .map_err(|e| e.to_string())
        }
        None => std::fs::read(root.join(file)).map_err(|e| format!("{file}: {e}"))?,
    };
    let digest = crate::model::load::digest(file, &text).sha256;
    if digest != report.spec.sha256 {
        return Err(format!(
            "{file} has sha256 {digest}, the report was judged against {}",
            report.spec.sha256
        ));
    }
    Spec::parse(&String::from_utf8_lossy(&text), file).map_err(|e| e.to_string())
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
    let mut worst: Option<(String, f64, f64)> = None;
    let mut missing = Vec::new();
    for (k, &x) in &a {
        match b.get(k) {
            None => missing.push(k.clone()),
            Some(&y) if !close(x, y) => {
                if worst.is_none() {
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
            format!("{k}: recomputed {y}, signed {x}"),
        ),
        (None, Some(k)) => Check::fail(
            "recompute evidence",
            format!("{k} is in only one of the signed and recomputed evidence"),
        ),
    }
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
    a == b || (a - b).abs() <= TOLERANCE * a.abs().max(b.abs()).max(1e-12)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        let fewer = json!({"models": {"x": 1}, "metrics": {"auc": 0.5, "v": [1.0]}, "ok": true});
        assert!(same_numbers(&a, &fewer).detail.contains("metrics.v[1]"));
    }
}
