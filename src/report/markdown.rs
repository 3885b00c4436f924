//! The report as a short Markdown summary, for pull requests and tickets: the verdict, the
//! honesty sentence, the verdict table, the key metrics (each attack's AUC on the original and
//! unlearned models, losses, PrivLeak, forget quality) and the digests of the model and inputs.
//! Strings from the report are escaped for table cells and for renderers that pass HTML
//! through. This module renders and nothing else.

use crate::judge::evidence::Evidence;
use crate::judge::metric::ATTACKS;
use crate::report::diff::metric_values;
use crate::report::html::{escape, percent, HONESTY};
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
        let bound = match (v.bound, v.confidence) {
            (Some(b), Some(c)) => format!("{b:.4} @ {}", percent(c)),
            _ => "–".into(),
        };
        let threshold = match v.threshold {
            Some(t) => format!("{} {t:.4}", cell(&v.compare)),
            None => cell(&v.compare),
        };
        out.push_str(&format!(
            "| {} | **{}** | {} | {bound} | {threshold} | {} | {} |\n",
            cell(&v.requirement),
            v.status.as_str(),
            num(v.value),
            v.samples,
            cell(&v.reason)
        ));
    }
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
        "forget_quality",
    ] {
        if let Some(v) = get(path) {
            out.push_str(&format!("| {} | {} |\n", cell(path), num(Some(v))));
        }
    }
    out
}

#[cfg(test)]
mod tests {
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
}
