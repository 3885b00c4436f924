//! The report as a short Markdown summary, for pull requests and tickets: the verdict, the
//! honesty sentence, the verdict table, what each property check covered, the key metrics (each attack's AUC on the original and
//! unlearned models, losses, PrivLeak, the KS distances to the retrained model with their upper
//! bounds, forget quality as a diagnostic) and the digests of the model and inputs.
//! Strings from the report are escaped for table cells and for renderers that pass HTML
//! through. This module renders and nothing else.

use crate::judge::evidence::Evidence;
use crate::judge::metric::{Side, ATTACKS, KS_TO_REFERENCE, KS_TO_REFERENCE_SCORES};
use crate::judge::verdict::Verdict;
use crate::report::diff::metric_values;
use crate::report::html::{escape, percent, unbounded_far_attacks, HONESTY};
use crate::report::schema::Report;
use serde_json::Value;

/// Text safe in a Markdown table cell: HTML-escaped, pipes and emphasis markers backslashed,
/// line breaks flattened.
pub fn cell(s: &str) -> String {
    let mut out = String::new();
    for c in escape(s).chars() {
        match c {
            '|' | '*' | '_' | '`' | '[' | ']' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The summary.
pub fn render(report: &Report) -> String {
    let spec = &report.spec;
    let verdict = if report.certified() {
        "CERTIFIED"
    } else {
        "NOT CERTIFIED"
    };
    let method = report
        .method
        .as_ref()
        .and_then(|m| m.get("method"))
        .and_then(Value::as_str)
        .unwrap_or("not recorded");
    let seeds: Vec<String> = report
        .seeds
        .iter()
        .map(|(k, v)| format!("{} {v}", cell(k)))
        .collect();
    let mut out = format!(
        "# lethe certificate: {verdict}\n\n\
         - **Spec:** {} ({} v{}), {}\n- **Date:** {}\n- **Method:** {}\n- **Seeds:** {}\n\
         - **Tool:** {} {} ({})\n\n\
         > What this certifies: {HONESTY}.\n\n## Verdicts\n\n\
         | requirement | status | value | bound @ confidence | threshold | n | reason |\n\
         |---|---|--:|--:|--:|--:|---|\n",
        cell(&spec.title),
        cell(&spec.id),
        cell(&spec.version),
        cell(&spec.regulation),
        cell(&report.created),
        cell(method),
        seeds.join(", "),
        cell(&report.tool.name),
        cell(&report.tool.version),
        cell(&report.tool.commit),
    );
    let num = |x: Option<f64>| x.map_or("–".to_string(), |x| format!("{x:.4}"));
    for v in &report.verdicts {
        let two_sided = v.threshold.is_none() && v.compare.starts_with("within");
        let vs_reference = v.compare.starts_with("within reference");
        let bound = match (v.bound, v.confidence) {
            (Some(b), Some(c)) if two_sided => format!("{b:.4} @ {} (nearer edge)", percent(c)),
            (Some(b), Some(c)) => format!("{b:.4} @ {}", percent(c)),
            _ => "–".into(),
        };
        let threshold = match (v.threshold, v.baseline) {
            (Some(t), _) => format!("{} {t:.4}", cell(&v.compare)),
            (None, Some(r)) if vs_reference => format!("{} (reference {r:.4})", cell(&v.compare)),
            (None, _) => cell(&v.compare),
        };
        let value = match v.value {
            Some(x) if vs_reference => format!("{x:.4} (difference)"),
            x => num(x),
        };
        out.push_str(&format!(
            "| {} | **{}** | {value} | {bound} | {threshold} | {} | {} |\n",
            cell(&v.requirement),
            v.status.as_str(),
            v.samples,
            cell(&v.reason)
        ));
    }
    let unbounded = unbounded_far_attacks(&report.evidence, &report.verdicts);
    if report.certified() && !unbounded.is_empty() {
        let list: Vec<String> = unbounded
            .iter()
            .map(|(a, auc)| format!("{} (AUC {auc:.3})", cell(a)))
            .collect();
        out.push_str(&format!(
            "\n> **Not covered by this certificate:** the unlearned model's curves of {} lie far \
             from chance, and no requirement of the spec bounds these attacks.\n",
            list.join(", ")
        ));
    }
    out.push_str(&property_coverage(&report.verdicts));
    out.push_str(&key_metrics(&report.evidence));
    out.push_str("\n## Digests (sha256)\n\n| role | path | sha256 |\n|---|---|---|\n");
    for a in &report.artifacts {
        out.push_str(&format!(
            "| {} | {} | `{}` |\n",
            cell(&a.role),
            cell(&a.path),
            cell(&a.sha256)
        ));
    }
    out.push_str(&format!(
        "| spec | {} | `{}` |\n",
        cell(&spec.file),
        cell(&spec.sha256)
    ));
    out
}

/// What each property check covered (nothing when the spec has no property).
fn property_coverage(verdicts: &[Verdict]) -> String {
    let rows: Vec<String> = verdicts
        .iter()
        .filter_map(|v| v.coverage.map(|c| (v, c)))
        .map(|(v, c)| {
            format!(
                "| {} | {} of {} | {} | {} |\n",
                cell(&v.requirement),
                c.records_covered,
                c.eligible_records,
                c.prompts,
                c.perturbations
            )
        })
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    format!(
        "\n## Property coverage\n\nEvery eligible record is tried at least once (cases stratified \
         over the records); a failing run counts the cases up to its first leak.\n\n\
         | property | records covered | prompts | perturbations |\n|---|--:|--:|--:|\n{}",
        rows.concat()
    )
}

fn key_metrics(evidence: &Evidence) -> String {
    let values = metric_values(evidence);
    let get = |path: &str| values.get(path).copied();
    let num = |x: Option<f64>| x.map_or("–".to_string(), |x| format!("{x:.4}"));
    let mut out = String::from(
        "\n## Key metrics\n\n| attack | AUC original | AUC unlearned |\n|---|--:|--:|\n",
    );
    let mut any = false;
    for attack in ATTACKS {
        let (o, u) = (
            get(&format!("original.mia.{attack}.auc")),
            get(&format!("mia.{attack}.auc")),
        );
        if o.is_some() || u.is_some() {
            any = true;
            out.push_str(&format!("| {} | {} | {} |\n", cell(attack), num(o), num(u)));
        }
    }
    if !any {
        out.push_str("| (no attacks in the evidence) | – | – |\n");
    }
    out.push_str("\n| metric | value |\n|---|--:|\n");
    for path in [
        "forget.loss",
        "retain.loss",
        "holdout.loss",
        "forget.exact_match",
        "retain.exact_match",
        "privleak",
    ] {
        if let Some(v) = get(path) {
            out.push_str(&format!("| {} | {} |\n", cell(path), num(Some(v))));
        }
    }
    out.push_str(&distances_to_reference(evidence));
    out
}

/// The KS distances to the retrained reference with their upper bounds at the evidence's
/// confidence, and TOFU's forget quality beside them as the diagnostic it is.
fn distances_to_reference(evidence: &Evidence) -> String {
    let confidence = evidence.settings.confidence;
    let mut out = String::new();
    for score in KS_TO_REFERENCE_SCORES {
        let path = format!("{KS_TO_REFERENCE}.{score}");
        let Some(m) = evidence.metrics.get(&path) else {
            continue;
        };
        let upper = m
            .bound(confidence, Side::Upper)
            .map_or("–".to_string(), |b| format!("{b:.4}"));
        out.push_str(&format!(
            "| {} (KS distance to the retrained model, {} persons) | {:.4}, upper bound {upper} @ {} |\n",
            cell(&path),
            m.samples(),
            m.value(),
            percent(confidence)
        ));
    }
    if let Some(m) = evidence.metrics.get("forget_quality") {
        out.push_str(&format!(
            "| forget\\_quality (TOFU: KS-test p-value against the retrained model; higher = \
             closer to it; a diagnostic, not an equivalence test) | {:.4} |\n",
            m.value()
        ));
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::judge::verdict::Status;
    use crate::report::schema::tests::sample;

    #[test]
    fn cells_are_escaped() {
        assert_eq!(cell("a|b\nc"), "a\\|b c");
        assert_eq!(cell("<b>*x*</b>"), "&lt;b&gt;\\*x\\*&lt;/b&gt;");
    }

    #[test]
    fn the_summary_has_the_verdicts_metrics_and_digests() {
        let md = render(&sample());
        assert!(md.starts_with("# lethe certificate: CERTIFIED\n"), "{md}");
        assert!(md.contains(HONESTY));
        assert!(
            md.contains("| mia-auc | **PASS** | 0.5500 | 0.5830 @ 95% | &lt;= 0.6000 | 110 |"),
            "{md}"
        );
        assert!(md.contains("| loss | – | 0.5500 |"), "{md}");
        assert!(md.contains("| privleak | -4.0000 |"), "{md}");
        assert!(md.contains(&format!(
            "| model:unlearned | out/model/model.safetensors | `{}` |",
            "22".repeat(32)
        )));
        assert!(md.contains(&format!(
            "| spec | specs/gdpr-art17.toml | `{}` |",
            "44".repeat(32)
        )));
        let mut r = sample();
        r.verdicts[0].status = Status::Inconclusive;
        r.verdicts[0].reason = "a | b".into();
        let md = render(&r);
        assert!(md.starts_with("# lethe certificate: NOT CERTIFIED\n"));
        assert!(md.contains("| a \\| b |"), "{md}");
    }

    /// The sample report with a property verdict that covered 54 of 54 records, a KS distance to
    /// the reference with replicates 0.00, 0.01, …, 0.99 (type-8 95th percentile 0.9465, NumPy's
    /// `quantile(..., method="median_unbiased")`) and a forget quality.
    pub(crate) fn with_property_and_distance() -> Report {
        let mut r = sample();
        let mut v = r.verdicts[0].clone();
        v.requirement = "no-leak".into();
        v.metric = "property".into();
        v.coverage = Some(crate::judge::property::Coverage {
            eligible_records: 54,
            records_covered: 54,
            prompts: 128,
            perturbations: 197,
        });
        r.verdicts.push(v);
        let replicates: Vec<f64> = (0..100).map(|i| f64::from(i) / 100.0).collect();
        crate::report::schema::tests::edit_evidence(&mut r, |e| {
            e["metrics"]["forget"]["ks_to_reference"] = serde_json::json!({"truth_ratio": {
                "kind": "cluster_bootstrap", "value": 0.2, "records": 90, "clusters": 10,
                "seed": 17, "resamples": 100, "replicates": replicates}});
            e["metrics"]["forget_quality"] =
                serde_json::json!({"kind": "point", "value": 0.0018, "n": 90});
        });
        r
    }

    #[test]
    fn property_coverage_and_distances_to_the_reference_are_said() {
        let md = render(&with_property_and_distance());
        assert!(md.contains("| no-leak | 54 of 54 | 128 | 197 |"), "{md}");
        assert!(
            md.contains(
                "| forget.ks\\_to\\_reference.truth\\_ratio (KS distance to the retrained model, 10 \
                 persons) | 0.2000, upper bound 0.9465 @ 95% |"
            ),
            "{md}"
        );
        assert!(
            md.contains("higher = closer to it; a diagnostic, not an equivalence test) | 0.0018 |"),
            "{md}"
        );
        assert!(!render(&sample()).contains("Property coverage"));
    }

    #[test]
    fn two_sided_verdicts_and_unbounded_attacks_are_said() {
        let mut r = crate::report::html::tests::rich();
        r.verdicts[0].compare = "within [0.3500, 0.6500]".into();
        r.verdicts[0].threshold = None;
        let md = render(&r);
        assert!(
            md.contains("| 0.5500 | 0.5830 @ 95% (nearer edge) | within \\[0.3500, 0.6500\\] |"),
            "{md}"
        );
        assert!(!md.contains("Not covered"), "{md}");
        r.verdicts[0].compare = "within reference ± 0.0500".into();
        r.verdicts[0].baseline = Some(0.52);
        let md = render(&r);
        assert!(
            md.contains("| 0.5500 (difference) | 0.5830 @ 95% (nearer edge) | within reference ± 0.0500 (reference 0.5200) |"),
            "{md}"
        );
        // No requirement on the loss attack while its unlearned curve (AUC 0.526) is near
        // chance: nothing to say. Far from chance under CERTIFIED: said.
        r.verdicts[0].metric = "forget.loss".into();
        assert!(!render(&r).contains("Not covered"));
        crate::report::schema::tests::edit_evidence(&mut r, |e| {
            e["mia"]["unlearned"]["curves"]["loss"] =
                serde_json::json!([{"fpr": 0.0, "tpr": 0.9}, {"fpr": 1.0, "tpr": 1.0}])
        });
        let md = render(&r);
        assert!(
            md.contains("> **Not covered by this certificate:** the unlearned model's curves of loss (AUC 0.950)"),
            "{md}"
        );
    }
}
