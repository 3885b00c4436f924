//! Figure-by-figure comparison of two JSON trees (a signed evidence file's fields against the
//! same fields computed again), and the check every verification runs with it: the statistics
//! a signed evidence file states follow from its own per-record measurements
//! (`judge::derive`). `verify --recompute` compares re-measured per-record values with the same
//! routine at [`MEASURED`]. Nothing here measures; it never imports candle.

use super::verify::Check;
use crate::judge::derive::{derive, Measured};
use crate::judge::evidence::Evidence;
use serde_json::Value;
use std::collections::BTreeMap;

/// How far apart two figures may be: `|a − b| ≤ absolute + relative · max(|a|, |b|)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    pub relative: f64,
    pub absolute: f64,
}

impl Tolerance {
    /// How many times the tolerance `a` and `b` are apart (≤ 1: close enough; a NaN is
    /// infinitely far from everything).
    fn excess(self, a: f64, b: f64) -> f64 {
        if a == b {
            return 0.0;
        }
        let allowed = self.absolute + self.relative * a.abs().max(b.abs());
        let e = (a - b).abs() / allowed.max(f64::MIN_POSITIVE);
        if e.is_nan() {
            f64::INFINITY
        } else {
            e
        }
    }

    pub fn close(self, a: f64, b: f64) -> bool {
        self.excess(a, b) <= 1.0
    }
}

/// Statistics re-derived from the values a file holds: the same float64 operations in the same
/// order give the same bits, except that the platform's `exp` and `ln` may round differently by
/// an ulp; these tolerances are a million times that and far below any figure's meaning.
pub const DERIVED: Tolerance = Tolerance {
    relative: 1e-9,
    absolute: 1e-12,
};

/// Per-record values measured again from the model files. float32 sums in another order
/// (another CPU's kernels, another library) move them: the golden certificate, made with faer's
/// kernels on an AMD EPYC and re-measured with the `gemm` crate's on an Intel Xeon, moved its
/// losses and Min-K% scores by up to 7.6e-6 nats, its Min-K%++ z-scores by up to 9.4e-5 (a small
/// σ divides the error), its truth ratios (exponentials of loss differences) by 7.9e-6 relative
/// and its gradient norms by 5.7e-6 relative; a GPT-2-small-shaped model's losses moved by
/// 1.9e-6. The error of a loss or a score is absolute (the ulp of the logits it is a difference
/// of), not relative to the result, so small values get the absolute floor. Values nudged within
/// this tolerance cannot buy a verdict: `--recompute` also judges the re-measured evidence and
/// requires every verdict to keep its status.
pub const MEASURED: Tolerance = Tolerance {
    relative: 1e-4,
    absolute: 1e-4,
};

/// One check comparing every number of `signed` with the same path in `fresh` (booleans as 0/1;
/// strings are not figures), naming the figure furthest outside `tol` and any in only one.
pub fn same_figures(
    name: &str,
    what: &str,
    signed: &Value,
    fresh: &Value,
    tol: Tolerance,
) -> Check {
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    flatten(signed, String::new(), &mut a);
    flatten(fresh, String::new(), &mut b);
    let mut differing = 0;
    let mut worst: Option<(String, f64, f64, f64)> = None;
    let mut missing = Vec::new();
    for (k, &x) in &a {
        match b.get(k) {
            None => missing.push(k.clone()),
            Some(&y) => {
                let e = tol.excess(x, y);
                if e > 1.0 {
                    differing += 1;
                    if worst.as_ref().is_none_or(|w| e > w.3) {
                        worst = Some((k.clone(), x, y, e));
                    }
                }
            }
        }
    }
    missing.extend(b.keys().filter(|k| !a.contains_key(*k)).cloned());
    let bound = format!("{:e} + {:e}·|x|", tol.absolute, tol.relative);
    match (worst, missing.first()) {
        (None, None) => Check::pass(name, format!("{} {what} agree within {bound}", a.len())),
        (Some((k, x, y, _)), _) => Check::fail(
            name,
            format!(
                "{differing} of {} {what} differ by more than {bound}; furthest apart {k}: \
                 recomputed {y}, signed {x}",
                a.len()
            ),
        ),
        (None, Some(k)) => Check::fail(
            name,
            format!("{k} is in only one of the signed and recomputed {what}"),
        ),
    }
}

/// Every number in `v` by its path (`a.b[2].c`).
fn flatten(v: &Value, path: String, out: &mut BTreeMap<String, f64>) {
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
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
                flatten(x, join(k), out);
            }
        }
        Value::Null | Value::String(_) => {}
    }
}

/// The name of the statistics check.
pub const STATISTICS: &str = "statistics";

/// The statistics a signed evidence file states (sample sizes, metrics, attack scores and ROC
/// curves, omissions) are what its per-record measurements give (`judge::derive`): no model is
/// needed to see that a figure was not edited or tuned after measuring.
pub fn statistics_check(signed: &Evidence) -> Check {
    let derived = match derive(&Measured::signed(signed)) {
        Ok(d) => d,
        Err(e) => return Check::fail(STATISTICS, format!("cannot be derived: {e}")),
    };
    if derived.omitted != signed.omitted {
        let first = derived
            .omitted
            .iter()
            .zip(&signed.omitted)
            .find(|(a, b)| a != b)
            .map_or_else(
                || {
                    format!(
                        "{} omitted when derived, {} signed",
                        derived.omitted.len(),
                        signed.omitted.len()
                    )
                },
                |(a, b)| format!("omitted {:?} when derived, {:?} signed", a.path, b.path),
            );
        return Check::fail(STATISTICS, first);
    }
    let stated = serde_json::json!({
        "sample_sizes": &signed.sample_sizes,
        "metrics": &signed.metrics,
        "mia": &signed.mia,
    });
    let derived = serde_json::json!({
        "sample_sizes": derived.sample_sizes,
        "metrics": derived.metrics,
        "mia": derived.mia,
    });
    same_figures(
        STATISTICS,
        "statistics re-derived from the per-record values",
        &stated,
        &derived,
        DERIVED,
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::report::schema::tests::{edit_evidence, sample};
    use crate::report::schema::{Artifact, Report};
    use crate::report::verify::Outcome;
    use serde_json::json;

    /// The schema's sample report with per-record measurements (six forget and six holdout
    /// records of three people each, under the unlearned and the original model, with gradient
    /// norms) and the statistics derived from them, as certification writes them.
    pub(crate) fn measured_sample() -> Report {
        let mut r = sample();
        let records = |shift: f64| {
            let side = |split: &str, offset: f64| -> Vec<Value> {
                (0..6)
                    .map(|i| {
                        let x = f64::from(i) * 0.37 + offset + shift;
                        json!({"id": format!("{split}{i}"), "subject": format!("{split}-p{}", i / 2),
                            "tokens": 5 + i, "loss": x, "min_k": -x - 0.5, "min_k_pp": -x / 2.0,
                            "zlib_bytes": 20 + i})
                    })
                    .collect()
            };
            json!({"forget": side("f", 1.0), "holdout": side("h", 1.5)})
        };
        let norms = |shift: f64| {
            json!({"scores": {"grad_norm": {
                "members": (0..6).map(|i| -(f64::from(i) + shift)).collect::<Vec<_>>(),
                "nonmembers": (0..6).map(|i| -(f64::from(i) * 1.3 + shift)).collect::<Vec<_>>()}},
                "curves": {}})
        };
        edit_evidence(&mut r, |e| {
            let split = |n: usize| {
                json!({"path": "world/x.jsonl", "sha256": "33".repeat(32),
                "bytes": 900, "records": n, "question_answer_records": 0})
            };
            e["data"] = json!({"forget": split(6), "holdout": split(6)});
            e["records"] = json!({"unlearned": records(0.0), "original": records(-0.25)});
            e["mia"] = json!({"unlearned": norms(1.0), "original": norms(0.5)});
        });
        let d = derive(&Measured::signed(&r.evidence)).expect("the sample derives");
        r.evidence.sample_sizes = d.sample_sizes;
        r.evidence.metrics = d.metrics;
        r.evidence.omitted = d.omitted;
        r.evidence.mia = d.mia;
        r.artifacts = Artifact::from_evidence(&r.evidence);
        r
    }

    #[test]
    fn a_statistic_edited_after_measuring_fails_the_check() {
        let r = measured_sample();
        let c = statistics_check(&r.evidence);
        assert_eq!(c.outcome, Outcome::Pass, "{}", c.detail);
        // A hostile signer nudges one AUC towards chance, re-signs, and keeps the records.
        let mut edited = r.clone();
        edit_evidence(&mut edited, |e| {
            let auc = &mut e["metrics"]["mia"]["loss"]["auc"]["value"];
            *auc = json!(auc.as_f64().unwrap() - 1e-6);
        });
        let c = statistics_check(&edited.evidence);
        assert_eq!(c.outcome, Outcome::Fail);
        assert!(
            c.detail.contains("metrics.mia.loss.auc.value"),
            "{}",
            c.detail
        );
        // One per-record loss edited: the scores, AUCs and means built on it no longer follow.
        let mut edited = r.clone();
        edit_evidence(&mut edited, |e| {
            e["records"]["unlearned"]["forget"][0]["loss"] = json!(9.0);
        });
        let c = statistics_check(&edited.evidence);
        assert_eq!(c.outcome, Outcome::Fail, "{}", c.detail);
        // An omission dropped (a metric that could not be computed, hidden).
        let mut edited = r.clone();
        edited.evidence.omitted.pop();
        assert_eq!(statistics_check(&edited.evidence).outcome, Outcome::Fail);
        // Measurements that cannot give statistics at all are named, not a panic.
        let mut edited = r;
        edit_evidence(&mut edited, |e| {
            e["records"]["original"] = json!({});
        });
        let c = statistics_check(&edited.evidence);
        assert!(c.detail.contains("records.original.forget"), "{}", c.detail);
    }

    #[test]
    fn every_differing_figure_is_counted_and_the_furthest_named() {
        let tol = Tolerance {
            relative: 1e-5,
            absolute: 0.0,
        };
        let a = json!({"metrics": {"auc": 0.5, "v": [1.0, 2.0]}, "ok": true, "id": "x"});
        let same = json!({"metrics": {"auc": 0.5 + 1e-9, "v": [1.0, 2.0]}, "ok": true, "id": "y"});
        assert_eq!(
            same_figures("c", "figures", &a, &same, tol).outcome,
            Outcome::Pass
        );
        let moved = json!({"metrics": {"auc": 0.6, "v": [1.0, 2.0]}, "ok": true});
        let c = same_figures("c", "figures", &a, &moved, tol);
        assert!(c.detail.contains("metrics.auc"), "{}", c.detail);
        // The one furthest outside its tolerance is named, not the first in order
        // (`metrics.auc` sorts before `metrics.v`).
        let two = json!({"metrics": {"auc": 0.50001, "v": [1.5, 2.0]}, "ok": true});
        let c = same_figures("c", "figures", &a, &two, tol);
        assert!(
            c.detail.starts_with("2 of 4 figures differ") && c.detail.contains("metrics.v[0]"),
            "{}",
            c.detail
        );
        let fewer = json!({"metrics": {"auc": 0.5, "v": [1.0]}, "ok": true});
        assert!(same_figures("c", "figures", &a, &fewer, tol)
            .detail
            .contains("metrics.v[1]"));
    }

    #[test]
    fn the_absolute_floor_decides_near_zero_and_the_relative_part_above_one() {
        // A score that is a difference of two nearly equal losses (2e-6 nats) moved by 1e-6:
        // 50 % relative, but well inside float32's resolution of the losses themselves.
        assert!(MEASURED.close(2e-6, 1e-6));
        assert!(!MEASURED.close(0.0, 2e-4));
        assert!(MEASURED.close(1000.0, 1000.0 * (1.0 + 9e-5)));
        assert!(!MEASURED.close(1000.0, 1000.0 * (1.0 + 3e-4)));
        assert!(!DERIVED.close(0.5, 0.5 + 1e-6));
        assert!(!MEASURED.close(f64::NAN, f64::NAN));
    }
}
