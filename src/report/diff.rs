//! Differences between two reports, for regression-testing unlearning in CI: every metric in
//! either report's evidence with its old and new value and whether it moved the wrong way (by
//! `certify::metric::KNOWN_METRICS`' `better` direction, beyond a tolerance), and every verdict
//! whose status changed. This module owns the comparison and its text table; it reads reports
//! only and never judges a spec itself.

use crate::judge::evidence::Evidence;
use crate::judge::metric::{known_metric, Better};
use crate::judge::verdict::Status;
use crate::report::schema::Report;
use std::collections::BTreeMap;

/// One metric path in either report.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricDelta {
    /// Dot-separated path under `evidence.metrics`.
    pub path: String,
    pub old: Option<f64>,
    pub new: Option<f64>,
    /// The direction that is better, when the path is a known metric that has one.
    pub better: Option<Better>,
    /// Moved the wrong way by more than the tolerance, or disappeared while having a direction.
    pub worse: bool,
}

impl MetricDelta {
    pub fn delta(&self) -> Option<f64> {
        Some(self.new? - self.old?)
    }
}

/// One requirement's status in each report (`None`: absent from that report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerdictChange {
    pub requirement: String,
    pub old: Option<Status>,
    pub new: Option<Status>,
    /// PASS → INCONCLUSIVE → FAIL is worse, and so is a requirement that disappeared or one that
    /// appeared without passing.
    pub worse: bool,
}

/// Everything that differs, and everything that was compared.
#[derive(Debug, Clone, PartialEq)]
pub struct Diff {
    pub tolerance: f64,
    /// Every metric path of either report, sorted by path.
    pub metrics: Vec<MetricDelta>,
    /// Every requirement of either report: the old report's order, then new ones.
    pub verdicts: Vec<VerdictChange>,
}

impl Diff {
    /// True when any verdict got worse or any metric got worse beyond the tolerance.
    pub fn is_regression(&self) -> bool {
        self.metrics.iter().any(|m| m.worse) || self.verdicts.iter().any(|v| v.worse)
    }
}

/// Compares `old` with `new`; a metric moving the wrong way by at most `tolerance` (absolute)
/// is not a regression.
pub fn diff(old: &Report, new: &Report, tolerance: f64) -> Diff {
    let (old_m, new_m) = (metric_values(&old.evidence), metric_values(&new.evidence));
    let mut paths: Vec<&String> = old_m.keys().chain(new_m.keys()).collect();
    paths.sort();
    paths.dedup();
    let metrics = paths
        .into_iter()
        .map(|path| {
            let (o, n) = (old_m.get(path).copied(), new_m.get(path).copied());
            let better = known_metric(path)
                .map(|m| m.better)
                .filter(|b| *b != Better::Neither);
            let worse = match (better, o, n) {
                (Some(Better::Lower), Some(o), Some(n)) => n - o > tolerance,
                (Some(Better::Higher), Some(o), Some(n)) => o - n > tolerance,
                (Some(_), Some(_), None) => true,
                _ => false,
            };
            MetricDelta {
                path: path.clone(),
                old: o,
                new: n,
                better,
                worse,
            }
        })
        .collect();
    let status = |r: &Report, id: &str| {
        r.verdicts
            .iter()
            .find(|v| v.requirement == id)
            .map(|v| v.status)
    };
    let mut ids: Vec<&str> = old
        .verdicts
        .iter()
        .map(|v| v.requirement.as_str())
        .collect();
    for v in &new.verdicts {
        if !ids.contains(&v.requirement.as_str()) {
            ids.push(&v.requirement);
        }
    }
    let verdicts = ids
        .into_iter()
        .map(|id| {
            let (o, n) = (status(old, id), status(new, id));
            let worse = match (o, n) {
                (Some(o), Some(n)) => rank(n) < rank(o),
                (Some(_), None) => true,
                (None, Some(n)) => n != Status::Pass,
                (None, None) => false,
            };
            VerdictChange {
                requirement: id.to_string(),
                old: o,
                new: n,
                worse,
            }
        })
        .collect();
    Diff {
        tolerance,
        metrics,
        verdicts,
    }
}

fn rank(s: Status) -> u8 {
    match s {
        Status::Fail => 0,
        Status::Inconclusive => 1,
        Status::Pass => 2,
    }
}

/// The `value` of every metric under the evidence's `metrics`, by dot-separated path.
pub fn metric_values(evidence: &Evidence) -> BTreeMap<String, f64> {
    evidence
        .metrics
        .leaves()
        .into_iter()
        .map(|(path, m)| (path, m.value()))
        .collect()
}

/// The diff as text: the verdicts, then the metrics, then one summary line.
pub fn render(diff: &Diff) -> String {
    let status = |s: Option<Status>| s.map_or("-", Status::as_str);
    let num = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.4}"));
    let flag = |worse: bool, same: bool| match (worse, same) {
        (true, _) => "WORSE",
        (false, true) => "",
        (false, false) => "changed",
    };
    let mut rows = vec![["requirement", "old", "new", ""].map(String::from).to_vec()];
    for v in &diff.verdicts {
        let row = [
            v.requirement.clone(),
            status(v.old).into(),
            status(v.new).into(),
            flag(v.worse, v.old == v.new).into(),
        ];
        rows.push(row.to_vec());
    }
    let mut out = table(&rows, &[]);
    out.push('\n');
    let mut rows = vec![["metric", "old", "new", "delta", "better", ""]
        .map(String::from)
        .to_vec()];
    for m in &diff.metrics {
        let delta = m.delta().map_or("-".to_string(), |d| format!("{d:+.4}"));
        let better = m.better.map_or("-".to_string(), |b| b.to_string());
        let row = [
            m.path.clone(),
            num(m.old),
            num(m.new),
            delta,
            better,
            flag(m.worse, m.old == m.new).into(),
        ];
        rows.push(row.to_vec());
    }
    out.push_str(&table(&rows, &[1, 2, 3]));
    let worse_v = diff.verdicts.iter().filter(|v| v.worse).count();
    let worse_m = diff.metrics.iter().filter(|m| m.worse).count();
    out.push('\n');
    out.push_str(&if diff.is_regression() {
        format!(
            "REGRESSION: {worse_v} verdict(s) and {worse_m} metric(s) got worse \
             (tolerance {})\n",
            diff.tolerance
        )
    } else {
        format!(
            "no regression: no verdict got worse and no metric moved the wrong way by more \
             than {}\n",
            diff.tolerance
        )
    });
    out
}

/// Fixed-width columns, the `right` ones right-aligned.
fn table(rows: &[Vec<String>], right: &[usize]) -> String {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let w = widths[c];
            if right.contains(&c) {
                line.push_str(&format!("{cell:>w$}  "));
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::schema::tests::sample;
    use proptest::prelude::*;
    use serde_json::json;

    fn with(auc: f64, forget_loss: f64, status: Status) -> Report {
        let mut r = sample();
        crate::report::schema::tests::edit_evidence(&mut r, |e| {
            e["metrics"]["mia"]["loss"]["auc"]["value"] = json!(auc)
        });
        crate::report::schema::tests::edit_evidence(&mut r, |e| {
            e["metrics"]["forget"]["loss"]["value"] = json!(forget_loss)
        });
        r.verdicts[0].status = status;
        r
    }

    fn worse_paths(d: &Diff) -> Vec<&str> {
        d.metrics
            .iter()
            .filter(|m| m.worse)
            .map(|m| m.path.as_str())
            .collect()
    }

    #[test]
    fn a_report_against_itself_shows_no_change() {
        let d = diff(&sample(), &sample(), 0.0);
        assert!(!d.is_regression());
        let paths: Vec<&str> = d.metrics.iter().map(|m| m.path.as_str()).collect();
        assert_eq!(paths, ["forget.loss", "mia.loss.auc", "privleak"]);
        assert!(d.metrics.iter().all(|m| m.delta() == Some(0.0)));
        assert!(render(&d).ends_with("more than 0\n"), "{}", render(&d));
    }

    #[test]
    fn metrics_moving_the_wrong_way_beyond_the_tolerance_regress() {
        let old = with(0.55, 3.2, Status::Pass);
        // AUC (lower is better) up by 0.03, forget loss (higher is better) down by 0.2.
        let new = with(0.58, 3.0, Status::Pass);
        let d = diff(&old, &new, 0.01);
        assert_eq!(worse_paths(&d), ["forget.loss", "mia.loss.auc"]);
        assert!(d.is_regression());
        let auc = &d.metrics[1];
        assert_eq!(auc.better, Some(Better::Lower));
        assert!((auc.delta().unwrap() - 0.03).abs() < 1e-12);
        // Within a tolerance of 0.05 only the forget loss (0.2) still counts.
        assert_eq!(worse_paths(&diff(&old, &new, 0.05)), ["forget.loss"]);
        // The better way is never a regression; PrivLeak has no direction.
        let better = with(0.50, 4.0, Status::Pass);
        let mut better = better;
        crate::report::schema::tests::edit_evidence(&mut better, |e| {
            e["metrics"]["privleak"]["value"] = json!(-40.0)
        });
        assert!(!diff(&old, &better, 0.0).is_regression());
        let text = render(&d);
        assert!(
            text.contains("REGRESSION: 0 verdict(s) and 2 metric(s)"),
            "{text}"
        );
        let line = text
            .lines()
            .find(|l| l.starts_with("mia.loss.auc"))
            .unwrap();
        assert!(
            line.contains("0.5500") && line.contains("+0.0300"),
            "{line}"
        );
        assert!(
            line.contains(" lower ") && line.ends_with(" WORSE"),
            "{line}"
        );
    }

    #[test]
    fn verdicts_getting_worse_regress() {
        let pass = with(0.55, 3.2, Status::Pass);
        let inconclusive = with(0.55, 3.2, Status::Inconclusive);
        let fail = with(0.55, 3.2, Status::Fail);
        assert!(diff(&pass, &inconclusive, 1.0).is_regression());
        assert!(diff(&inconclusive, &fail, 1.0).is_regression());
        assert!(!diff(&fail, &pass, 1.0).is_regression());
        let d = diff(&pass, &fail, 1.0);
        assert_eq!(d.verdicts[0].old, Some(Status::Pass));
        assert_eq!(d.verdicts[0].new, Some(Status::Fail));
        let text = render(&d);
        assert!(text.contains("mia-auc      PASS  FAIL  WORSE"), "{text}");
        // A requirement that disappears, or appears failing, is worse; one that appears
        // passing is not.
        let mut dropped = pass.clone();
        dropped.verdicts.clear();
        assert!(diff(&pass, &dropped, 1.0).is_regression());
        assert!(diff(&dropped, &fail, 1.0).is_regression());
        assert!(!diff(&dropped, &pass, 1.0).is_regression());
    }

    #[test]
    fn metrics_present_in_one_report_only() {
        let old = sample();
        let mut new = sample();
        crate::report::schema::tests::edit_evidence(&mut new, |e| {
            e["metrics"]["mia"]["loss"]
                .as_object_mut()
                .unwrap()
                .remove("auc");
        });
        crate::report::schema::tests::edit_evidence(&mut new, |e| {
            e["metrics"]["retain"] = json!({"loss": {"kind": "point", "value": 2.0, "n": 5}})
        });
        let d = diff(&old, &new, 0.0);
        assert_eq!(worse_paths(&d), ["mia.loss.auc"]);
        let retain = d.metrics.iter().find(|m| m.path == "retain.loss").unwrap();
        assert_eq!(
            (retain.old, retain.new, retain.worse),
            (None, Some(2.0), false)
        );
        // An unknown path is compared but never judged.
        let mut odd = sample();
        crate::report::schema::tests::edit_evidence(&mut odd, |e| {
            e["metrics"]["custom"] = json!({"kind": "point", "value": 1.0, "n": 1})
        });
        let mut odd2 = odd.clone();
        crate::report::schema::tests::edit_evidence(&mut odd2, |e| {
            e["metrics"]["custom"]["value"] = json!(100.0)
        });
        assert!(!diff(&odd, &odd2, 0.0).is_regression());
    }

    proptest! {
        #[test]
        fn prop_diff_with_itself_is_no_regression(
            auc in 0.0f64..1.0, loss in 0.0f64..20.0, privleak in -100.0f64..100.0,
            status in prop::sample::select(vec![Status::Pass, Status::Fail, Status::Inconclusive]),
            tolerance in 0.0f64..0.1,
        ) {
            let mut r = with(auc, loss, status);
            crate::report::schema::tests::edit_evidence(&mut r, |e| e["metrics"]["privleak"]["value"] = json!(privleak));
            let d = diff(&r, &r, tolerance);
            prop_assert!(!d.is_regression());
            prop_assert!(d.metrics.iter().all(|m| m.delta() == Some(0.0)));
        }
    }
}
