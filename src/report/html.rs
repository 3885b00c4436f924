//! The report as one self-contained HTML page for people: the verdict summary with the honesty
//! sentence, the verdict table, ROC curves of the membership attacks, forget-vs-holdout loss
//! histograms, the unlearning trajectory, every metric and every input with its digest. Charts
//! are inline SVG drawn here and the style is inline CSS: no scripts, fonts or images are
//! fetched, so the page opens offline and shows exactly what was signed. Every string taken from
//! the report goes through [`escape`]. This module renders a report and nothing else; it never
//! reads files and never judges.

use crate::judge::evidence::Evidence;
use crate::judge::metric::known_metric;
use crate::judge::verdict::{Status, Verdict};
use crate::report::schema::Report;
use serde_json::Value;

/// The sentence every human-readable rendering carries (DESIGN.md, "Honesty of a certificate").
pub const HONESTY: &str =
    "measured indistinguishability under the stated attacks, not proof of erasure";

/// The models whose attacks and losses are charted, with their colours.
const MODELS: [(&str, &str); 3] = [
    ("original", "#c2410c"),
    ("unlearned", "#1d4ed8"),
    ("reference", "#15803d"),
];
const FORGET_COLOUR: &str = "#c2410c";
const HOLDOUT_COLOUR: &str = "#1d4ed8";

/// `s` with the five HTML-special characters replaced by entities: safe in text and in quoted
/// attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The whole page.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    out.push_str(&format!(
        "<title>lethe certificate: {}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n",
        escape(&report.spec.id)
    ));
    out.push_str(&header(report));
    out.push_str(&verdict_section(&report.verdicts));
    out.push_str(&roc_section(
        &report.evidence,
        &report.verdicts,
        report.certified(),
    ));
    out.push_str(&histogram_section(&report.evidence));
    out.push_str(&trajectory_section(report.trajectory.as_ref()));
    out.push_str(&metrics_section(&report.evidence));
    out.push_str(&inputs_section(report));
    out.push_str(&format!(
        "<footer>Written by {} {} ({}). Check the signature with <code>lethe verify \
         certificate.dsse.json --key signer.pub.pem --artifacts MODEL_DIR</code>; this page is \
         a rendering of the signed report, not the certificate itself.</footer>\n",
        escape(&report.tool.name),
        escape(&report.tool.version),
        escape(&report.tool.commit)
    ));
    out.push_str("</main>\n</body>\n</html>\n");
    out
}

const CSS: &str = "
:root{--pass:#166534;--pass-bg:#dcfce7;--fail:#991b1b;--fail-bg:#fee2e2;--inc:#854d0e;
--inc-bg:#fef9c3;--ink:#1f2937;--muted:#6b7280;--rule:#e5e7eb}
*{box-sizing:border-box}
body{margin:0;background:#f3f4f6;color:var(--ink);
font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif}
main{max-width:1120px;margin:0 auto;padding:24px}
section,header.summary{background:#fff;border:1px solid var(--rule);border-radius:8px;
padding:18px 22px;margin-bottom:18px;overflow-x:auto}
h1{margin:0 0 4px;font-size:28px;letter-spacing:.02em}
h2{margin:0 0 10px;font-size:18px}
h3{margin:0 0 4px;font-size:14px;font-weight:600}
.note{color:var(--muted);font-size:13px}
p.note{margin:4px 0 10px}
header.summary{border-left:8px solid var(--fail)}
header.summary.certified{border-left-color:var(--pass)}
header.summary h1{color:var(--fail)}
header.summary.certified h1{color:var(--pass)}
.honesty{font-style:italic;margin:6px 0 12px}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:3px 16px;margin:0}
dl.facts dt{color:var(--muted)}
dl.facts dd{margin:0}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
.digest{word-break:break-all}
table{border-collapse:collapse;width:100%;font-size:13.5px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid var(--rule);vertical-align:top}
th{font-weight:600;color:var(--muted);white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-weight:700;font-size:12px}
.badge.pass{color:var(--pass);background:var(--pass-bg)}
.badge.fail{color:var(--fail);background:var(--fail-bg)}
.badge.inconclusive{color:var(--inc);background:var(--inc-bg)}
tr.fail td{background:#fff8f8}
tr.inconclusive td{background:#fffdf0}
.cx{margin-top:4px;font-size:12.5px;color:var(--fail)}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:14px}
.charts.wide{grid-template-columns:repeat(auto-fill,minmax(330px,1fr))}
figure{margin:0}
figcaption{font-size:12.5px;color:var(--muted)}
svg{display:block;width:100%;height:auto}
svg text{font:11px system-ui,-apple-system,'Segoe UI',Roboto,Arial,sans-serif;fill:#374151}
.charts.attacks{grid-template-columns:repeat(auto-fill,minmax(470px,1fr));gap:20px}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:6px}
ul.verdicts{list-style:none;margin:6px 0 0;padding:0;font-size:12.5px}
ul.verdicts li{margin:0 0 5px}
.warn{color:var(--inc);background:var(--inc-bg);border-left:4px solid var(--inc);
padding:6px 10px;margin:6px 0;font-size:13px}
td.reason{min-width:12em}
td.mono{overflow-wrap:anywhere;min-width:11em}
td.num .note{display:block;white-space:normal}
.legend{display:flex;gap:16px;flex-wrap:wrap;font-size:13px;margin:0 0 10px}
.legend span::before{content:'';display:inline-block;width:14px;height:4px;margin-right:6px;
vertical-align:middle;background:var(--c)}
details pre{white-space:pre-wrap;word-break:break-all;font-size:12px;background:#f9fafb;
padding:8px;border-radius:6px}
footer{color:var(--muted);font-size:12.5px;margin:8px 2px 30px}
";

fn status_class(s: Status) -> &'static str {
    match s {
        Status::Pass => "pass",
        Status::Fail => "fail",
        Status::Inconclusive => "inconclusive",
    }
}

fn num(x: f64) -> String {
    format!("{x:.4}")
}

pub(crate) fn percent(c: f64) -> String {
    let p = c * 100.0;
    if (p - p.round()).abs() < 1e-9 {
        format!("{p:.0}%")
    } else {
        format!("{p}%")
    }
}

/// A JSON value as short text: strings bare, everything else compact JSON.
fn json_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn header(report: &Report) -> String {
    let certified = report.certified();
    let counts = [Status::Pass, Status::Fail, Status::Inconclusive].map(|s| {
        let n = report.verdicts.iter().filter(|v| v.status == s).count();
        format!("{n} {}", s.as_str().to_lowercase())
    });
    let spec = &report.spec;
    let mut out = format!(
        "<header class=\"summary{}\">\n<h1>{}</h1>\n<p><strong>{}</strong> ({} v{}) &middot; {} \
         &middot; {} requirement(s): {}</p>\n<p class=\"honesty\">What this certifies: {HONESTY}.\
         </p>\n<dl class=\"facts\">\n",
        if certified { " certified" } else { "" },
        if certified {
            "CERTIFIED"
        } else {
            "NOT CERTIFIED"
        },
        escape(&spec.title),
        escape(&spec.id),
        escape(&spec.version),
        escape(&spec.regulation),
        report.verdicts.len(),
        counts.join(", ")
    );
    let method = report
        .method
        .as_ref()
        .map(|m| m.get("method").map_or_else(|| json_text(m), json_text))
        .unwrap_or_else(|| "not recorded (model not unlearned by lethe)".into());
    let seeds: Vec<String> = report
        .seeds
        .iter()
        .map(|(k, v)| format!("{} {v}", escape(k)))
        .collect();
    let facts = [
        ("date", escape(&report.created)),
        ("method", escape(&method)),
        ("seeds", seeds.join(", ")),
        (
            "machine",
            format!(
                "{}, {} thread(s), {}/{}",
                escape(&report.machine.cpu_model),
                report.machine.threads,
                escape(&report.machine.os),
                escape(&report.machine.arch)
            ),
        ),
    ];
    for (k, v) in facts {
        out.push_str(&format!("<dt>{k}</dt><dd>{v}</dd>\n"));
    }
    for f in report.evidence.model_files("unlearned") {
        out.push_str(&format!(
            "<dt>{}</dt><dd class=\"mono digest\">sha256 {}</dd>\n",
            escape(&f.name),
            escape(&f.sha256)
        ));
    }
    out.push_str("</dl>\n");
    let unbounded = unbounded_far_attacks(&report.evidence, &report.verdicts);
    if certified && !unbounded.is_empty() {
        let list: Vec<String> = unbounded
            .iter()
            .map(|(a, auc)| format!("<code>{}</code> (AUC {auc:.3})", escape(a)))
            .collect();
        out.push_str(&format!(
            "<p class=\"warn\">Not covered by this certificate: the unlearned model's curves \
             of {} lie far from chance, and no requirement of the spec bounds these attacks \
             (see the ROC curves).</p>\n",
            list.join(", ")
        ));
    }
    out.push_str("</header>\n");
    out
}

/// A verdict's figures as page text (escaped), each with the words a two-sided or reference
/// comparison needs beside it.
struct VerdictCells {
    value: String,
    /// For `within reference`: the value is the difference to the reference model's.
    value_note: Option<&'static str>,
    /// `bound @ confidence`.
    bound: String,
    /// For the two-sided forms: which of the two bounds is shown.
    bound_note: Option<&'static str>,
    /// The threshold (`<= 0.1200`) or the interval (`within [0.3500, 0.6500]`).
    required: String,
    /// The baseline's or the reference model's value.
    required_note: Option<String>,
}

fn verdict_cells(v: &Verdict) -> VerdictCells {
    let two_sided = v.threshold.is_none() && v.compare.starts_with("within");
    let vs_reference = v.compare.starts_with("within reference");
    let bound = match (v.bound, v.confidence) {
        (Some(b), Some(c)) => format!("{} @ {}", num(b), percent(c)),
        _ => "&ndash;".into(),
    };
    let required = match v.threshold {
        Some(t) => format!("{} {}", escape(&v.compare), num(t)),
        None => escape(&v.compare),
    };
    let baseline = if vs_reference {
        "reference"
    } else {
        "baseline"
    };
    VerdictCells {
        value: v.value.map_or("&ndash;".to_string(), num),
        value_note: vs_reference.then_some("difference to the reference model"),
        bound_note: (two_sided && v.bound.is_some()).then_some("nearer edge"),
        bound,
        required,
        required_note: v.baseline.map(|b| format!("{baseline} {}", num(b))),
    }
}

fn verdict_section(verdicts: &[Verdict]) -> String {
    let mut out = String::from(
        "<section>\n<h2>Verdicts</h2>\n<p class=\"note\">A requirement passes only when its \
         one-sided confidence bound lies inside the threshold, or, for a two-sided \
         <em>within</em> requirement, when both one-sided bounds lie inside the interval (the \
         table shows the bound nearer its edge, the reason both); too few samples is \
         inconclusive.</p>\n<table>\n<thead><tr><th>requirement</th><th>metric</th>\
         <th>status</th><th>value</th><th>bound @ confidence</th><th>threshold or interval</th>\
         <th>n</th><th>reason</th></tr></thead>\n<tbody>\n",
    );
    let note = |n: Option<&str>| {
        n.map_or(String::new(), |n| {
            format!("<span class=\"note\">{n}</span>")
        })
    };
    for v in verdicts {
        let class = status_class(v.status);
        let c = verdict_cells(v);
        let cx = v.counterexample.as_ref().map_or(String::new(), |cx| {
            let perturbed = if cx.perturbations.is_empty() {
                "unperturbed".to_string()
            } else {
                cx.perturbations.join(" + ")
            };
            format!(
                "<div class=\"cx\">counterexample: record <code>{}</code> ({}): <code>{}</code> \
                 &rarr; <code>{}</code></div>",
                escape(&cx.record_id),
                escape(&perturbed),
                escape(&cx.prompt),
                escape(&cx.completion)
            )
        });
        out.push_str(&format!(
            "<tr class=\"{class}\"><td><strong>{}</strong></td><td class=\"mono\">{}</td>\
             <td><span class=\"badge {class}\">{}</span></td><td class=\"num\">{}{}</td>\
             <td class=\"num\">{}{}</td><td class=\"num\">{}{}</td>\
             <td class=\"num\">{}</td><td class=\"reason\">{}{cx}</td></tr>\n",
            escape(&v.requirement),
            escape(&v.metric),
            v.status.as_str(),
            c.value,
            note(c.value_note),
            c.bound,
            note(c.bound_note),
            c.required,
            note(c.required_note.as_deref()),
            v.samples,
            escape(&v.reason),
        ));
    }
    out.push_str("</tbody>\n</table>\n");
    out.push_str(&coverage_table(verdicts));
    out.push_str("</section>\n");
    out
}

/// What each property check covered: its eligible records, how many its cases tried, and the
/// prompts and perturbations behind them (empty when the spec has no property).
fn coverage_table(verdicts: &[Verdict]) -> String {
    let rows: Vec<String> = verdicts
        .iter()
        .filter_map(|v| v.coverage.map(|c| (v, c)))
        .map(|(v, c)| {
            format!(
                "<tr><td><strong>{}</strong></td><td class=\"num\">{} of {}</td>\
                 <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\n",
                escape(&v.requirement),
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
        "<h3>Property coverage</h3>\n<p class=\"note\">Every eligible record is tried at least \
         once (cases stratified over the records); a failing run counts the cases up to its first \
         leak.</p>\n<table>\n<thead><tr><th>property</th><th>records covered</th>\
         <th>prompts</th><th>perturbations</th></tr></thead>\n<tbody>\n{}</tbody>\n</table>\n",
        rows.concat()
    )
}

// ---------------------------------------------------------------------------------------------
// Charts.

/// A chart's pixel frame and data ranges; the x axis is linear or, with `x_log`, logarithmic
/// (then `x` must be positive).
struct Plot {
    width: f64,
    height: f64,
    margin: (f64, f64, f64, f64), // left, right, top, bottom
    x: (f64, f64),
    y: (f64, f64),
    x_log: bool,
}

impl Plot {
    fn px(&self, x: f64) -> f64 {
        let (l, r) = (self.margin.0, self.width - self.margin.1);
        let t = |v: f64| if self.x_log { v.log10() } else { v };
        l + (t(x) - t(self.x.0)) / (t(self.x.1) - t(self.x.0)) * (r - l)
    }

    fn py(&self, y: f64) -> f64 {
        let (t, b) = (self.margin.2, self.height - self.margin.3);
        b - (y - self.y.0) / (self.y.1 - self.y.0) * (b - t)
    }

    /// The opening `<svg>` with a frame, grid lines, tick labels and axis labels.
    fn open(&self, label: &str, x_label: &str, y_label: &str) -> String {
        let (l, r) = (self.margin.0, self.width - self.margin.1);
        let (t, b) = (self.margin.2, self.height - self.margin.3);
        let mut s = format!(
            "<svg viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"{}\">\n",
            self.width,
            self.height,
            escape(label)
        );
        let x_ticks: Vec<(f64, Option<String>)> = if self.x_log {
            log_ticks(self.x.0, self.x.1)
        } else {
            let ticks = nice_ticks(self.x.0, self.x.1).into_iter();
            ticks.map(|x| (x, Some(tick_label(x)))).collect()
        };
        for (x, label) in x_ticks {
            let p = self.px(x);
            let (colour, text) = match label {
                Some(text) => ("#eef0f3", text),
                None => ("#f5f6f8", String::new()),
            };
            s.push_str(&format!(
                "<line x1=\"{p:.1}\" y1=\"{t:.1}\" x2=\"{p:.1}\" y2=\"{b:.1}\" stroke=\"{colour}\"/>"
            ));
            if !text.is_empty() {
                s.push_str(&format!(
                    "<text x=\"{p:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{text}</text>",
                    b + 14.0
                ));
            }
            s.push('\n');
        }
        for y in nice_ticks(self.y.0, self.y.1) {
            let p = self.py(y);
            s.push_str(&format!(
                "<line x1=\"{l:.1}\" y1=\"{p:.1}\" x2=\"{r:.1}\" y2=\"{p:.1}\" stroke=\"#eef0f3\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
                l - 5.0,
                p + 3.5,
                tick_label(y)
            ));
        }
        s.push_str(&format!(
            "<rect x=\"{l:.1}\" y=\"{t:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"none\" \
             stroke=\"#9ca3af\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n\
             <text transform=\"translate(12 {:.1}) rotate(-90)\" text-anchor=\"middle\">{}</text>\n",
            r - l,
            b - t,
            (l + r) / 2.0,
            self.height - 4.0,
            escape(x_label),
            (t + b) / 2.0,
            escape(y_label)
        ));
        s
    }

    fn polyline(&self, points: &[(f64, f64)], colour: &str, extra: &str) -> String {
        let pts: Vec<String> = points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", self.px(x), self.py(y)))
            .collect();
        format!(
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.8\" \
             stroke-linejoin=\"round\"{extra}/>\n",
            pts.join(" ")
        )
    }

    /// A horizontal reference line across the frame with a label at its right end.
    fn level(&self, y: f64, colour: &str, label: &str) -> String {
        let (l, r) = (self.margin.0, self.width - self.margin.1);
        let p = self.py(y);
        format!(
            "<line x1=\"{l:.1}\" y1=\"{p:.1}\" x2=\"{r:.1}\" y2=\"{p:.1}\" stroke=\"{colour}\" \
             stroke-dasharray=\"5 4\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" \
             style=\"fill:{colour}\">{}</text>\n",
            r - 4.0,
            p - 4.0,
            escape(label)
        )
    }

    /// Lines of legend text at the frame's lower-right corner, each in its colour.
    fn legend(&self, lines: &[(String, &str)]) -> String {
        let (r, b) = (self.width - self.margin.1, self.height - self.margin.3);
        let mut s = String::new();
        for (i, (text, colour)) in lines.iter().rev().enumerate() {
            s.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" style=\"fill:{colour}\">{}</text>\n",
                r - 6.0,
                b - 7.0 - 14.0 * i as f64,
                escape(text)
            ));
        }
        s
    }
}

/// About five round tick values covering [lo, hi].
fn nice_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = hi - lo;
    if !(span.is_finite() && span > 0.0) {
        return vec![lo];
    }
    let raw = span / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| span / s <= 6.0)
        .unwrap_or(10.0 * magnitude);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

/// Ticks of a log axis over [lo, hi] (0 < lo < hi): each power of ten inside, labelled, and
/// the unlabelled minor ticks 2·10^k … 9·10^k between them.
fn log_ticks(lo: f64, hi: f64) -> Vec<(f64, Option<String>)> {
    if !(lo > 0.0 && hi > lo && hi.is_finite()) {
        return Vec::new();
    }
    let (first, last) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let mut ticks = Vec::new();
    for k in first..=last {
        let decade = 10f64.powi(k);
        for m in 1..=9 {
            let x = m as f64 * decade;
            if x >= lo * (1.0 - 1e-9) && x <= hi * (1.0 + 1e-9) {
                let label = (m == 1).then(|| log_tick_label(k));
                ticks.push((x, label));
            }
        }
    }
    ticks
}

/// 10^k as a plain decimal: `0.001`, `0.1`, `1`, `100`.
fn log_tick_label(k: i32) -> String {
    if k >= 0 {
        format!("{}", 10u64.pow(k.unsigned_abs()))
    } else {
        format!("{:.*}", k.unsigned_abs() as usize, 10f64.powi(k))
    }
}

fn tick_label(x: f64) -> String {
    let text = format!("{:.3}", x);
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".into()
    } else {
        text.into()
    }
}

fn as_f64(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64).filter(|x| x.is_finite())
}

/// A ROC curve from `evidence.mia.<model>.curves.<attack>`, sorted by FPR, with (0,0) and (1,1).
fn roc_points(evidence: &Evidence, model: &str, attack: &str) -> Option<Vec<(f64, f64)>> {
    let mut pts: Vec<(f64, f64)> = evidence
        .curve(model, attack)?
        .iter()
        .map(|p| (p.fpr, p.tpr))
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    if pts.is_empty() {
        return None;
    }
    pts.push((0.0, 0.0));
    pts.push((1.0, 1.0));
    pts.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    Some(pts)
}

/// The area under a ROC polyline (trapezoids).
fn area(points: &[(f64, f64)]) -> f64 {
    points
        .windows(2)
        .map(|w| (w[1].0 - w[0].0) * (w[0].1 + w[1].1) / 2.0)
        .sum()
}

/// Attack names that have a drawable curve for some model: the known order first, then the rest.
fn attacks(evidence: &Evidence) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (model, _) in MODELS {
        let curves = evidence.mia.get(model).map(|m| &m.curves);
        for name in curves.into_iter().flat_map(|c| c.keys()) {
            if !names.contains(name) && roc_points(evidence, model, name).is_some() {
                names.push(name.clone());
            }
        }
    }
    let known = crate::judge::metric::ATTACKS;
    let position = |n: &String| known.iter().position(|k| k == n).unwrap_or(known.len());
    names.sort_by_key(position);
    names
}

/// The models with a curve for some attack, in chart order: exactly what the ROC legend names.
fn charted_models(evidence: &Evidence) -> Vec<(&'static str, &'static str)> {
    let names = attacks(evidence);
    MODELS
        .into_iter()
        .filter(|(m, _)| names.iter().any(|a| roc_points(evidence, m, a).is_some()))
        .collect()
}

/// How far from chance (|AUC − 0.5|) the unlearned model's curve may lie before the page warns
/// that no requirement bounds its attack.
const FAR_FROM_CHANCE: f64 = 0.1;

/// Whether `v` bounds the unlearned model under `attack` (its metric is `mia.<attack>.…`).
fn bounds_attack(v: &Verdict, attack: &str) -> bool {
    v.metric.starts_with(&format!("mia.{attack}."))
}

/// Whether `v` concerns `attack` on the unlearned or the original model.
fn concerns_attack(v: &Verdict, attack: &str) -> bool {
    bounds_attack(v, attack) || v.metric.starts_with(&format!("original.mia.{attack}."))
}

/// The attacks whose unlearned-model curve lies far from chance although no verdict bounds
/// them, each with that curve's AUC: what the page must not leave a reader to infer from a
/// CERTIFIED banner.
pub(crate) fn unbounded_far_attacks(
    evidence: &Evidence,
    verdicts: &[Verdict],
) -> Vec<(String, f64)> {
    attacks(evidence)
        .into_iter()
        .filter(|a| !verdicts.iter().any(|v| bounds_attack(v, a)))
        .filter_map(|a| {
            let auc = area(&roc_points(evidence, "unlearned", &a)?);
            ((auc - 0.5).abs() > FAR_FROM_CHANCE).then_some((a, auc))
        })
        .collect()
}

/// The left edge of the log-FPR axis and how to say it: 1/(non-members), the smallest false
/// positive rate the attack can show, but not below 10⁻³.
fn lowest_fpr(evidence: &Evidence, attack: &str) -> (f64, String) {
    let nonmembers = MODELS
        .iter()
        .filter_map(|(m, _)| evidence.mia.get(*m)?.scores.get(attack))
        .map(|s| s.nonmembers.len())
        .max()
        .filter(|n| *n > 0);
    match nonmembers {
        Some(n) if n < 1000 => (1.0 / n as f64, format!("1/{n} (one non-member)")),
        _ => (1e-3, "0.001".into()),
    }
}

/// The part of a ROC polyline at FPR ≥ `lo`, for a log-FPR axis: entered by interpolation at
/// `lo`, each sloped segment (tied scores, or the chance line TPR = FPR) subdivided so that it
/// keeps its linear-FPR meaning on the log axis.
fn log_view(points: &[(f64, f64)], lo: f64) -> Vec<(f64, f64)> {
    const PIECES: usize = 24;
    let mut out = Vec::new();
    for w in points.windows(2) {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        if x1 < lo {
            continue;
        }
        let at = |x: f64| y0 + (y1 - y0) * (x - x0) / (x1 - x0);
        let start = if x0 < lo { (lo, at(lo)) } else { (x0, y0) };
        if out.is_empty() {
            out.push(start);
        }
        if y1 != y0 && x1 > start.0 {
            for i in 1..PIECES {
                let x = start.0 * (x1 / start.0).powf(i as f64 / PIECES as f64);
                out.push((x, at(x)));
            }
        }
        out.push((x1, y1));
    }
    out
}

fn roc_section(evidence: &Evidence, verdicts: &[Verdict], certified: bool) -> String {
    let mut out = String::from(
        "<section>\n<h2>Membership-inference ROC curves</h2>\n<p class=\"note\">Each attack \
         scores forget records (members) against holdout records (non-members). Left: linear \
         axes, the areas (AUC) at the lower right; a curve on the dashed diagonal means the \
         attack cannot tell members from non-members. Right: the same curves with the false \
         positive rate on a log axis, the low-FPR region where membership auditors look; the \
         dashed curve is chance (TPR = FPR). Under each attack, the verdicts of the spec that \
         concern it.</p>\n",
    );
    let charted = charted_models(evidence);
    out.push_str(&legend_html(
        &charted
            .iter()
            .map(|(m, c)| (m.to_string(), *c))
            .collect::<Vec<_>>(),
    ));
    let missing: Vec<&str> = MODELS
        .iter()
        .map(|(m, _)| *m)
        .filter(|m| evidence.models.contains_key(*m) && !charted.iter().any(|(c, _)| c == m))
        .collect();
    for model in missing {
        out.push_str(&format!(
            "<p class=\"note\">The {model} model was measured, but its attack curves are not in \
             the evidence: none is drawn for it.</p>\n"
        ));
    }
    let names = attacks(evidence);
    if names.is_empty() {
        out.push_str("<p>The evidence holds no attack curves.</p>\n</section>\n");
        return out;
    }
    out.push_str("<div class=\"charts attacks\">\n");
    for attack in names {
        out.push_str(&roc_figure(evidence, &attack));
        let auc = roc_points(evidence, "unlearned", &attack).map(|p| area(&p));
        out.push_str(&attack_verdicts(verdicts, &attack, auc, certified));
        out.push_str("</figure>\n");
    }
    out.push_str("</div>\n</section>\n");
    out
}

/// One attack's opened `<figure>`: its title and its curves on linear and log-FPR axes.
fn roc_figure(evidence: &Evidence, attack: &str) -> String {
    let (lo, lo_text) = lowest_fpr(evidence, attack);
    let frame = |x: (f64, f64), x_log: bool| Plot {
        width: 260.0,
        height: 250.0,
        margin: (40.0, 10.0, 10.0, 34.0),
        x,
        y: (0.0, 1.0),
        x_log,
    };
    let (linear, log) = (frame((0.0, 1.0), false), frame((lo, 1.0), true));
    let mut left = linear.open(
        &format!("ROC curve of the {attack} attack"),
        "false positive rate",
        "true positive rate",
    );
    let mut right = log.open(
        &format!("ROC curve of the {attack} attack, false positive rate on a log axis"),
        "false positive rate (log scale)",
        "true positive rate",
    );
    let chance = [(0.0, 0.0), (1.0, 1.0)];
    let dashed = " stroke-dasharray=\"4 4\" stroke-width=\"1\"";
    left.push_str(&linear.polyline(&chance, "#9ca3af", dashed));
    right.push_str(&log.polyline(&log_view(&chance, lo), "#9ca3af", dashed));
    let mut legend = Vec::new();
    for (model, colour) in MODELS {
        if let Some(points) = roc_points(evidence, model, attack) {
            left.push_str(&linear.polyline(&points, colour, ""));
            right.push_str(&log.polyline(&log_view(&points, lo), colour, ""));
            legend.push((format!("{model} {:.3}", area(&points)), colour));
        }
    }
    left.push_str(&linear.legend(&legend));
    format!(
        "<figure>\n<h3>{}</h3>\n<div class=\"pair\">\n{left}</svg>\n{right}</svg>\n</div>\n\
         <figcaption>right: false positive rate on a log axis from {lo_text} to 1</figcaption>\n",
        escape(attack)
    )
}

/// The verdicts that concern `attack`, and what the page must say when none bounds it: a plain
/// note, or a warning when the unlearned model's curve (area `auc`) lies far from chance.
fn attack_verdicts(
    verdicts: &[Verdict],
    attack: &str,
    auc: Option<f64>,
    certified: bool,
) -> String {
    let mut out = String::new();
    let concern: Vec<&Verdict> = verdicts
        .iter()
        .filter(|v| concerns_attack(v, attack))
        .collect();
    if !concern.is_empty() {
        out.push_str("<ul class=\"verdicts\">\n");
        for v in concern {
            let class = status_class(v.status);
            let c = verdict_cells(v);
            let mut parts = vec![format!("value {}", c.value)];
            parts.extend(c.value_note.map(str::to_string));
            parts.push(format!("bound {}", c.bound));
            parts.extend(c.bound_note.map(str::to_string));
            parts.push(format!("required {}", c.required));
            parts.extend(c.required_note);
            out.push_str(&format!(
                "<li><span class=\"badge {class}\">{}</span> <strong>{}</strong> \
                 <code>{}</code><br>{}</li>\n",
                v.status.as_str(),
                escape(&v.requirement),
                escape(&v.metric),
                parts.join(" &middot; ")
            ));
        }
        out.push_str("</ul>\n");
    }
    if verdicts.iter().any(|v| bounds_attack(v, attack)) {
        return out;
    }
    let far = auc.filter(|a| (a - 0.5).abs() > FAR_FROM_CHANCE);
    match far {
        Some(a) => out.push_str(&format!(
            "<p class=\"warn\">No requirement of the spec bounds this attack on the unlearned \
             model, yet its curve is far from chance (AUC {a:.3}, more than {FAR_FROM_CHANCE} \
             from 0.5){}.</p>\n",
            if certified {
                ": the CERTIFIED verdict says nothing about it"
            } else {
                ""
            }
        )),
        None => out.push_str(
            "<p class=\"note\">No requirement of the spec bounds this attack on the unlearned \
             model.</p>\n",
        ),
    }
    out
}

fn legend_html(items: &[(String, &str)]) -> String {
    let spans: Vec<String> = items
        .iter()
        .map(|(label, colour)| format!("<span style=\"--c:{colour}\">{}</span>", escape(label)))
        .collect();
    format!("<div class=\"legend\">{}</div>\n", spans.join(""))
}

/// Fractions of `values` in `bins` equal bins over [lo, hi].
fn histogram(values: &[f64], lo: f64, hi: f64, bins: usize) -> Vec<f64> {
    let mut counts = vec![0.0; bins];
    let width = (hi - lo) / bins as f64;
    for &v in values {
        let i = ((v - lo) / width).floor() as usize;
        counts[i.min(bins - 1)] += 1.0;
    }
    let n = values.len().max(1) as f64;
    counts.iter().map(|c| c / n).collect()
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

fn histogram_section(evidence: &Evidence) -> String {
    const BINS: usize = 24;
    let mut out = String::from(
        "<section>\n<h2>Loss distributions: forget vs holdout</h2>\n<p class=\"note\">Per-record \
         loss (mean next-token negative log-likelihood) as a fraction of each split, on one \
         scale for all models. Forgetting moves the forget records' losses onto the holdout \
         records'.</p>\n",
    );
    out.push_str(&legend_html(&[
        ("forget records".to_string(), FORGET_COLOUR),
        ("holdout records".to_string(), HOLDOUT_COLOUR),
    ]));
    let data: Vec<(&str, Vec<f64>, Vec<f64>)> = MODELS
        .iter()
        .map(|(m, _)| {
            (
                *m,
                evidence.losses(m, "forget"),
                evidence.losses(m, "holdout"),
            )
        })
        .filter(|(_, f, h)| !f.is_empty() && !h.is_empty())
        .collect();
    let all = data.iter().flat_map(|(_, f, h)| f.iter().chain(h));
    let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
        (lo.min(x), hi.max(x))
    });
    if data.is_empty() {
        out.push_str("<p>The evidence holds no per-record losses.</p>\n</section>\n");
        return out;
    }
    let (lo, hi) = if hi > lo {
        (lo, hi)
    } else {
        (lo - 0.5, hi + 0.5)
    };
    let hists: Vec<(Vec<f64>, Vec<f64>)> = data
        .iter()
        .map(|(_, f, h)| (histogram(f, lo, hi, BINS), histogram(h, lo, hi, BINS)))
        .collect();
    let top = hists
        .iter()
        .flat_map(|(f, h)| f.iter().chain(h))
        .fold(0.0f64, |m, &x| m.max(x));
    out.push_str("<div class=\"charts wide\">\n");
    for ((model, f, h), (fh, hh)) in data.iter().zip(&hists) {
        let plot = Plot {
            width: 340.0,
            height: 210.0,
            margin: (40.0, 10.0, 10.0, 34.0),
            x: (lo, hi),
            y: (0.0, top * 1.1),
            x_log: false,
        };
        let mut svg = plot.open(
            &format!("loss histogram of the {model} model"),
            "loss",
            "fraction",
        );
        let width = (hi - lo) / BINS as f64;
        for (counts, colour) in [(hh, HOLDOUT_COLOUR), (fh, FORGET_COLOUR)] {
            for (i, &c) in counts.iter().enumerate() {
                if c == 0.0 {
                    continue;
                }
                let (x0, x1) = (
                    plot.px(lo + i as f64 * width),
                    plot.px(lo + (i + 1) as f64 * width),
                );
                let (y0, y1) = (plot.py(c), plot.py(0.0));
                svg.push_str(&format!(
                    "<rect x=\"{x0:.1}\" y=\"{y0:.1}\" width=\"{:.1}\" height=\"{:.1}\" \
                     fill=\"{colour}\" fill-opacity=\"0.35\" stroke=\"{colour}\" \
                     stroke-width=\"0.8\"/>\n",
                    x1 - x0,
                    y1 - y0
                ));
            }
        }
        svg.push_str("</svg>\n");
        out.push_str(&format!(
            "<figure>\n<h3>{}</h3>\n{svg}<figcaption>forget: {} records, mean {:.3} &middot; \
             holdout: {} records, mean {:.3}</figcaption>\n</figure>\n",
            escape(model),
            f.len(),
            mean(f),
            h.len(),
            mean(h)
        ));
    }
    out.push_str("</div>\n</section>\n");
    out
}

fn trajectory_section(trajectory: Option<&Value>) -> String {
    let mut out = String::from("<section>\n<h2>Unlearning trajectory</h2>\n");
    let steps = trajectory
        .and_then(|t| t.get("steps"))
        .and_then(Value::as_array)
        .filter(|s| !s.is_empty());
    let Some(steps) = steps else {
        out.push_str(
            "<p>No unlearning record: the model was not unlearned by lethe, or its record was \
             not given.</p>\n</section>\n",
        );
        return out;
    };
    let series = |key: &str| -> Vec<(f64, f64)> {
        steps
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((as_f64(s, "step").unwrap_or(i as f64), as_f64(s, key)?)))
            .collect()
    };
    let forget = series("forget_loss");
    let retain = series("retain_loss");
    let levels = trajectory.and_then(|t| t.get("levels"));
    let level = |k: &str| levels.and_then(|l| as_f64(l, k));
    let (holdout, target) = (level("holdout"), level("target"));
    let ys = forget.iter().chain(&retain).map(|p| p.1);
    let ys = ys.chain(holdout).chain(target);
    let (lo, hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), y| {
        (lo.min(y), hi.max(y))
    });
    let xs = forget.iter().chain(&retain).map(|p| p.0);
    let (x0, x1) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
        (lo.min(x), hi.max(x))
    });
    if !(lo.is_finite() && x0.is_finite()) {
        out.push_str("<p>The unlearning record has no losses to plot.</p>\n</section>\n");
        return out;
    }
    let pad = ((hi - lo) * 0.08).max(0.05);
    let plot = Plot {
        width: 720.0,
        height: 280.0,
        margin: (46.0, 14.0, 12.0, 34.0),
        x: (x0, if x1 > x0 { x1 } else { x0 + 1.0 }),
        y: (lo - pad, hi + pad),
        x_log: false,
    };
    out.push_str(&legend_html(&[
        ("forget loss".to_string(), FORGET_COLOUR),
        ("retain loss".to_string(), "#15803d"),
        ("holdout level (the stop)".to_string(), HOLDOUT_COLOUR),
    ]));
    let mut svg = plot.open("unlearning trajectory", "step", "loss");
    if let Some(h) = holdout {
        svg.push_str(&plot.level(h, HOLDOUT_COLOUR, &format!("holdout {h:.3}")));
    }
    if let Some(t) = target.filter(|t| Some(*t) != holdout) {
        svg.push_str(&plot.level(t, "#6b7280", &format!("target {t:.3}")));
    }
    svg.push_str(&plot.polyline(&retain, "#15803d", ""));
    svg.push_str(&plot.polyline(&forget, FORGET_COLOUR, ""));
    svg.push_str("</svg>\n");
    out.push_str(&format!("<figure>\n{svg}"));
    let t = trajectory.unwrap_or(&Value::Null);
    let mut caption = vec![format!("{} step(s)", steps.len())];
    if let Some(reason) = t.get("stop_reason") {
        caption.push(format!("stopped: {}", escape(&json_text(reason))));
    }
    if let Some(s) = as_f64(t, "seconds") {
        caption.push(format!("{s:.1} s"));
    }
    out.push_str(&format!(
        "<figcaption>{}</figcaption>\n</figure>\n",
        caption.join(" &middot; ")
    ));
    if let Some(config) = t.get("config") {
        let pretty = serde_json::to_string_pretty(config).unwrap_or_default();
        out.push_str(&format!(
            "<details><summary>Method and parameters</summary><pre>{}</pre></details>\n",
            escape(&pretty)
        ));
    }
    out.push_str("</section>\n");
    out
}

fn metrics_section(evidence: &Evidence) -> String {
    let leaves = evidence.metrics.leaves();
    let mut out = String::from(
        "<section>\n<h2>Metrics</h2>\n<table>\n<thead><tr><th>metric</th><th>kind</th>\
         <th>value</th><th>better</th><th>sampling</th></tr></thead>\n<tbody>\n",
    );
    for (path, metric) in leaves {
        let metric = serde_json::to_value(metric).unwrap_or(Value::Null);
        let kind = metric.get("kind").map(json_text).unwrap_or_default();
        let value = as_f64(&metric, "value").map_or("&ndash;".to_string(), num);
        let better = known_metric(&path).map_or("&ndash;".to_string(), |m| m.better.to_string());
        let details: Vec<String> = metric
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| *k != "kind" && *k != "value")
            .map(|(k, v)| match v {
                // A bootstrap's replicates are in the evidence; the page says how many.
                Value::Array(items) => format!("{} ({} values)", escape(k), items.len()),
                _ => format!("{} {}", escape(k), escape(&json_text(v))),
            })
            .collect();
        out.push_str(&format!(
            "<tr><td class=\"mono\">{}</td><td>{}</td><td class=\"num\">{value}</td>\
             <td>{better}</td><td>{}</td></tr>\n",
            escape(&path),
            escape(&kind),
            details.join(", ")
        ));
    }
    out.push_str("</tbody>\n</table>\n");
    {
        let omitted = &evidence.omitted;
        if !omitted.is_empty() {
            let items: Vec<String> = omitted
                .iter()
                .map(|o| {
                    format!(
                        "<li><code>{}</code>: {}</li>",
                        escape(&o.path),
                        escape(&o.reason)
                    )
                })
                .collect();
            out.push_str(&format!(
                "<p class=\"note\">Not measured:</p>\n<ul>{}</ul>\n",
                items.join("")
            ));
        }
    }
    out.push_str("</section>\n");
    out
}

fn inputs_section(report: &Report) -> String {
    let mut out = String::from(
        "<section>\n<h2>Inputs</h2>\n<p class=\"note\">Every file the run read, with the sha256 \
         of the bytes read.</p>\n<table>\n<thead><tr><th>role</th><th>path</th><th>bytes</th>\
         <th>sha256</th></tr></thead>\n<tbody>\n",
    );
    let spec = &report.spec;
    let spec_row = (
        format!("spec {} v{}", spec.id, spec.version),
        spec.file.clone(),
        None,
        spec.sha256.clone(),
    );
    let rows = report
        .artifacts
        .iter()
        .map(|a| {
            (
                a.role.clone(),
                a.path.clone(),
                Some(a.bytes),
                a.sha256.clone(),
            )
        })
        .chain(std::iter::once(spec_row));
    for (role, path, bytes, sha) in rows {
        out.push_str(&format!(
            "<tr><td>{}</td><td class=\"mono\">{}</td><td class=\"num\">{}</td>\
             <td class=\"mono digest\">{}</td></tr>\n",
            escape(&role),
            escape(&path),
            bytes.map_or("&ndash;".to_string(), |b| b.to_string()),
            escape(&sha)
        ));
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::report::schema::tests::sample;
    use serde_json::json;

    const VOID: [&str; 6] = ["meta", "br", "hr", "img", "input", "col"];

    /// Checks that every tag is closed in order (void and self-closing tags excepted); returns
    /// the first problem.
    pub(crate) fn check_balanced(html: &str) -> Result<(), String> {
        let mut stack: Vec<String> = Vec::new();
        let mut rest = html;
        while let Some(start) = rest.find('<') {
            rest = &rest[start + 1..];
            let end = rest.find('>').ok_or("a `<` is never closed by `>`")?;
            let tag = &rest[..end];
            rest = &rest[end + 1..];
            if tag.starts_with('!') {
                continue;
            }
            if let Some(name) = tag.strip_prefix('/') {
                let open = stack.pop().ok_or(format!("</{name}> closes nothing"))?;
                if open != name.trim() {
                    return Err(format!("<{open}> closed by </{name}>"));
                }
                continue;
            }
            let name: String = tag
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            if name.is_empty() {
                return Err(format!("bad tag <{tag}>"));
            }
            if !(tag.ends_with('/') || VOID.contains(&name.as_str())) {
                stack.push(name);
            }
        }
        match stack.pop() {
            Some(open) => Err(format!("<{open}> is never closed")),
            None => Ok(()),
        }
    }

    /// No fetches: no URLs, no external sources, no scripts or stylesheets links.
    pub(crate) fn check_self_contained(html: &str) -> Result<(), String> {
        for bad in [
            "http://", "https://", "src=", "<script", "<link", "url(", "@import",
        ] {
            if html.to_lowercase().contains(bad) {
                return Err(format!("page contains {bad:?}"));
            }
        }
        Ok(())
    }

    /// The sample report with curves, records and a trajectory: everything the page draws.
    pub(crate) fn rich() -> Report {
        let mut r = sample();
        let curve = |bow: f64| {
            let pts: Vec<Value> = (0..=20)
                .map(|i| {
                    let f = i as f64 / 20.0;
                    json!({"threshold": 1.0 - f, "fpr": f, "tpr": f.powf(bow)})
                })
                .collect();
            Value::Array(pts)
        };
        crate::report::schema::tests::edit_evidence(&mut r, |e| {
            e["mia"] = json!({
                "original": {"scores": {}, "curves": {"loss": curve(0.2), "zlib": curve(0.3)}},
                "unlearned": {"scores": {}, "curves": {"loss": curve(0.9), "zlib": curve(0.95)}},
                "reference": {"scores": {}, "curves": {"loss": curve(1.0), "zlib": curve(1.0)}},
            })
        });
        let recs = |centre: f64, n: usize| {
            let rs: Vec<Value> = (0..n)
                .map(|i| {
                    json!({"id": format!("r{i}"), "tokens": 12, "loss": centre + (i % 7) as f64 * 0.1,
                        "min_k": -1.0, "min_k_pp": -1.0, "zlib_bytes": 40})
                })
                .collect();
            Value::Array(rs)
        };
        crate::report::schema::tests::edit_evidence(&mut r, |e| {
            e["records"] = json!({
                "original": {"forget": recs(1.0, 30), "holdout": recs(3.0, 60)},
                "unlearned": {"forget": recs(2.9, 30), "holdout": recs(3.0, 60)},
            })
        });
        let steps: Vec<Value> = (0..12)
            .map(|i| {
                json!({"step": i, "round": 0, "lr": 1e-4, "forget_loss": 1.0 + 0.2 * i as f64,
                    "retain_loss": 2.0 + 0.01 * i as f64, "holdout_loss": 3.0,
                    "action": "keep", "active": 30})
            })
            .collect();
        r.trajectory = Some(json!({
            "config": {"method": "ga", "lr": 1e-4},
            "levels": {"forget_start": 1.0, "retain_start": 2.0, "holdout": 3.0, "target": 3.0},
            "steps": steps, "stop_reason": "reached_holdout", "seconds": 12.5,
        }));
        r
    }

    #[test]
    fn escape_replaces_the_special_characters() {
        assert_eq!(
            escape(r#"<a href="x">Tom & 'Jerry'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;"
        );
        assert_eq!(escape("plain ü"), "plain ü");
        assert_eq!(escape("&amp;"), "&amp;amp;");
    }

    #[test]
    fn the_checkers_catch_bad_pages() {
        assert!(check_balanced("<p><b>x</b></p><br><svg><line/></svg>").is_ok());
        assert!(check_balanced("<p><b>x</p></b>").is_err());
        assert!(check_balanced("<div>").is_err());
        assert!(check_balanced("</div>").is_err());
        assert!(check_self_contained("<img src=\"a.png\">").is_err());
        assert!(check_self_contained("<style>@import 'x.css'</style>").is_err());
        assert!(check_self_contained("<p>x</p>").is_ok());
    }

    #[test]
    fn property_coverage_is_a_table_and_replicates_are_counted_not_listed() {
        let page = render(&crate::report::markdown::tests::with_property_and_distance());
        assert!(page.contains("<h3>Property coverage</h3>"), "{page}");
        assert!(
            page.contains(
                "<tr><td><strong>no-leak</strong></td><td class=\"num\">54 of 54</td>\
                 <td class=\"num\">128</td><td class=\"num\">197</td></tr>"
            ),
            "{page}"
        );
        assert!(page.contains("replicates (100 values)"), "{page}");
        assert!(!page.contains("0.98,0.99"), "the replicates are not listed");
        assert!(!render(&sample()).contains("Property coverage"));
    }

    #[test]
    fn the_page_is_well_formed_and_self_contained() {
        for report in [sample(), rich()] {
            let page = render(&report);
            check_balanced(&page).unwrap();
            check_self_contained(&page).unwrap();
            assert!(page.contains(HONESTY));
            assert!(page.contains("CERTIFIED"));
        }
        let page = render(&rich());
        // Two attacks, each on linear and log axes with three curves and the chance line; two
        // histograms; one trajectory.
        assert_eq!(page.matches("<svg").count(), 2 * 2 + 2 + 1);
        assert_eq!(page.matches("<polyline").count(), 2 * 2 * 4 + 2);
        // The area under tpr = fpr is 1/2 (the reference model's loss curve).
        assert!(page.contains(">reference 0.500</text>"), "reference AUC");
        assert!(page.contains("holdout 3.000"));
        assert!(page.contains("stopped: reached_holdout"));
    }

    /// The ROC figure of `attack` in `page`.
    fn figure<'a>(page: &'a str, attack: &str) -> &'a str {
        let start = page
            .find(&format!("<figure>\n<h3>{attack}</h3>"))
            .unwrap_or_else(|| panic!("no figure for {attack}"));
        let end = start + page[start..].find("</figure>").expect("figure closed");
        &page[start..end]
    }

    fn verdict(requirement: &str, metric: &str, status: Status) -> Verdict {
        let mut v = sample().verdicts[0].clone();
        v.requirement = requirement.into();
        v.metric = metric.into();
        v.status = status;
        v
    }

    #[test]
    fn log_axis_ticks_sit_on_decades() {
        let labelled = |lo: f64| -> Vec<(f64, String)> {
            let ticks = log_ticks(lo, 1.0).into_iter();
            ticks.filter_map(|(x, l)| Some((x, l?))).collect()
        };
        let decades = [(0.001, "0.001"), (0.01, "0.01"), (0.1, "0.1"), (1.0, "1")];
        let want: Vec<(f64, String)> = decades.iter().map(|(x, l)| (*x, l.to_string())).collect();
        assert_eq!(labelled(1e-3), want);
        // 440 non-members: the axis starts at 1/440, so 0.001 is outside and 0.003 is the
        // first (minor) tick.
        assert_eq!(labelled(1.0 / 440.0), want[1..]);
        assert_eq!(log_ticks(1.0 / 440.0, 1.0)[0], (0.003, None));
        assert_eq!(log_ticks(1e-3, 1.0).len(), 3 * 9 + 1);
        // Decades are equally spaced: the frame runs from x = 40 to x = 250 (210 px, 3 decades).
        let plot = Plot {
            width: 260.0,
            height: 250.0,
            margin: (40.0, 10.0, 10.0, 34.0),
            x: (1e-3, 1.0),
            y: (0.0, 1.0),
            x_log: true,
        };
        for (k, x) in [1e-3, 1e-2, 1e-1, 1.0].into_iter().enumerate() {
            assert!((plot.px(x) - (40.0 + 70.0 * k as f64)).abs() < 1e-9, "{x}");
        }
        assert!((plot.px(0.5) - (250.0 - 70.0 * 2f64.log10())).abs() < 1e-9);
        // The chance line enters at (lo, lo) and stays on TPR = FPR; a step curve is entered
        // by interpolation at lo.
        let chance = log_view(&[(0.0, 0.0), (1.0, 1.0)], 0.01);
        assert_eq!(chance.first(), Some(&(0.01, 0.01)));
        assert_eq!(chance.last(), Some(&(1.0, 1.0)));
        assert!(chance.len() > 10);
        assert!(chance.iter().all(|(x, y)| (x - y).abs() < 1e-12));
        let step = log_view(&[(0.0, 0.0), (0.0, 0.5), (0.02, 0.5), (1.0, 1.0)], 0.01);
        assert_eq!(step[..2], [(0.01, 0.5), (0.02, 0.5)]);
        assert_eq!(log_tick_label(-3), "0.001");
        assert_eq!(log_tick_label(2), "100");
    }

    #[test]
    fn the_log_axis_starts_at_one_non_member() {
        let mut r = rich();
        crate::report::schema::tests::edit_evidence(&mut r, |e| {
            e["mia"]["unlearned"]["scores"]["loss"] =
                json!({"members": vec![1.0; 110], "nonmembers": vec![0.0; 440]})
        });
        let page = render(&r);
        assert!(figure(&page, "loss").contains("log axis from 1/440 (one non-member) to 1"));
        // Without scores (or with more than 1000 non-members) the axis starts at 0.001.
        assert!(figure(&page, "zlib").contains("log axis from 0.001 to 1"));
    }

    #[test]
    fn the_legend_lists_exactly_the_drawn_curves() {
        // As the certifier writes it: curves for the unlearned and original models only,
        // although a reference model was measured.
        let mut r = rich();
        crate::report::schema::tests::edit_evidence(&mut r, |e| {
            e["mia"].as_object_mut().unwrap().remove("reference");
            e["models"]["reference"] = json!({"dir": "ref", "files": []});
        });
        let page = render(&r);
        assert!(page.contains(
            "<div class=\"legend\"><span style=\"--c:#c2410c\">original</span>\
             <span style=\"--c:#1d4ed8\">unlearned</span></div>"
        ));
        assert!(page.contains(
            "The reference model was measured, but its attack curves are not in the evidence"
        ));
        for attack in ["loss", "zlib"] {
            let fig = figure(&page, attack);
            // Per axis: the chance line and one curve per legend line, and nothing else.
            let legend_lines = fig.matches("text-anchor=\"end\" style=\"fill:").count();
            assert_eq!(legend_lines, 2, "{attack}");
            assert_eq!(fig.matches("<polyline").count(), 2 * (legend_lines + 1));
            assert!(!fig.contains("reference"), "{attack}");
        }
        // With reference curves in the evidence, they are drawn and named, and no note is needed.
        let page = render(&rich());
        assert!(page.contains("<span style=\"--c:#15803d\">reference</span>"));
        assert!(!page.contains("its attack curves are not in the evidence"));
        assert!(figure(&page, "loss").contains(">reference 0.500</text>"));
    }

    #[test]
    fn each_attack_shows_the_verdicts_that_concern_it() {
        let mut r = rich();
        let mut two_sided = verdict("mia-zlib-auc", "mia.zlib.auc", Status::Inconclusive);
        two_sided.compare = "within [0.3500, 0.6500]".into();
        two_sided.threshold = None;
        r.verdicts.push(two_sided);
        r.verdicts
            .push(verdict("power", "original.mia.loss.auc", Status::Pass));
        r.verdicts
            .push(verdict("exact", "forget.exact_match", Status::Pass));
        let page = render(&r);
        let (loss, zlib) = (figure(&page, "loss"), figure(&page, "zlib"));
        assert!(loss.contains(
            "<li><span class=\"badge pass\">PASS</span> <strong>mia-auc</strong> \
             <code>mia.loss.auc</code><br>value 0.5500 &middot; bound 0.5830 @ 95% &middot; \
             required &lt;= 0.6000</li>"
        ));
        assert!(loss.contains("<strong>power</strong> <code>original.mia.loss.auc</code>"));
        assert!(!loss.contains("mia-zlib-auc") && !loss.contains("exact"));
        assert!(zlib.contains("<span class=\"badge inconclusive\">INCONCLUSIVE</span>"));
        assert!(zlib.contains(
            "bound 0.5830 @ 95% &middot; nearer edge &middot; required within \
             [0.3500, 0.6500]"
        ));
        assert!(!zlib.contains("mia-auc<") && !zlib.contains("No requirement"));
        // The verdict table names the interval and says which bound it shows.
        assert!(page.contains(
            "<td class=\"num\">0.5830 @ 95%<span class=\"note\">nearer edge</span>\
             </td><td class=\"num\">within [0.3500, 0.6500]</td>"
        ));
        // `within reference`: the value is a difference, the reference's value beside the margin.
        let mut r = sample();
        r.verdicts[0].compare = "within reference ± 0.0500".into();
        r.verdicts[0].threshold = None;
        r.verdicts[0].baseline = Some(0.52);
        let page = render(&r);
        assert!(page.contains("<span class=\"note\">difference to the reference model</span>"));
        assert!(page.contains("within reference ± 0.0500<span class=\"note\">reference 0.5200"));
    }

    #[test]
    fn a_far_curve_that_no_requirement_bounds_is_flagged() {
        // rich(): unlearned AUCs 0.526 (loss, bounded by `mia-auc`) and 0.513 (zlib, unbounded).
        let page = render(&rich());
        assert!(figure(&page, "zlib").contains(
            "<p class=\"note\">No requirement of the spec bounds this attack on the unlearned \
             model.</p>"
        ));
        assert!(!page.contains("class=\"warn\""));
        // The unlearned zlib curve far from chance (AUC 1/1.3 = 0.769) under a CERTIFIED banner.
        let mut r = rich();
        let curve: Vec<Value> = (0..=20)
            .map(|i| json!({"fpr": i as f64 / 20.0, "tpr": (i as f64 / 20.0).powf(0.3)}))
            .collect();
        crate::report::schema::tests::edit_evidence(&mut r, |e| {
            e["mia"]["unlearned"]["curves"]["zlib"] = json!(curve)
        });
        let far = area(&roc_points(&r.evidence, "unlearned", "zlib").unwrap());
        assert!((far - 0.5).abs() > FAR_FROM_CHANCE, "{far}");
        assert!(r.certified());
        let page = render(&r);
        assert!(page.contains("<h1>CERTIFIED</h1>"));
        assert!(figure(&page, "zlib").contains(&format!(
            "<p class=\"warn\">No requirement of the spec bounds this attack on the unlearned \
             model, yet its curve is far from chance (AUC {far:.3}, more than 0.1 from 0.5): the \
             CERTIFIED verdict says nothing about it.</p>"
        )));
        assert!(page.contains(&format!(
            "<p class=\"warn\">Not covered by this certificate: the unlearned model's curves of \
             <code>zlib</code> (AUC {far:.3}) lie far from chance"
        )));
        assert!(!figure(&page, "loss").contains("warn"));
        // A requirement on the attack (any of its metrics) silences the warning.
        r.verdicts.push(verdict(
            "zlib-tpr",
            "mia.zlib.tpr_at_1pct_fpr",
            Status::Pass,
        ));
        let page = render(&r);
        assert!(!page.contains("class=\"warn\""));
        assert!(figure(&page, "zlib").contains("<strong>zlib-tpr</strong>"));
    }

    #[test]
    fn a_failing_report_says_so() {
        let mut r = sample();
        r.verdicts[0].status = Status::Fail;
        let page = render(&r);
        assert!(page.contains("<h1>NOT CERTIFIED</h1>"));
        assert!(page.contains("<span class=\"badge fail\">FAIL</span>"));
    }

    #[test]
    fn every_report_string_is_escaped() {
        let evil = "<script>alert(1)</script>";
        let mut r = rich();
        r.verdicts[0].requirement = evil.into();
        r.verdicts[0].reason = evil.into();
        r.spec.title = evil.into();
        r.spec.regulation = evil.into();
        r.tool.commit = evil.into();
        r.machine.cpu_model = evil.into();
        r.artifacts[0].path = evil.into();
        r.seeds.insert(evil.into(), 1);
        r.method = Some(json!({"method": evil}));
        crate::report::schema::tests::edit_evidence(&mut r, |e| {
            e["metrics"][evil] = json!({evil: {"kind": "point", "value": 1.0, "n": 1}})
        });
        crate::report::schema::tests::edit_evidence(&mut r, |e| {
            e["mia"]["unlearned"]["curves"][evil] = json!([{"fpr": 0.5, "tpr": 0.5}])
        });
        crate::report::schema::tests::edit_evidence(&mut r, |e| {
            e["models"]["unlearned"]["files"][0]["name"] = json!(evil)
        });
        crate::report::schema::tests::edit_evidence(&mut r, |e| {
            e["omitted"] = json!([{"path": evil, "reason": evil}])
        });
        r.trajectory.as_mut().unwrap()["stop_reason"] = json!(evil);
        let page = render(&r);
        assert!(!page.contains("<script"), "unescaped script tag");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        check_balanced(&page).unwrap();
        check_self_contained(&page).unwrap();
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(
            nice_ticks(0.0, 1.0),
            [0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
        );
        assert_eq!(nice_ticks(1.3, 4.2), [1.5, 2.0, 2.5, 3.0, 3.5, 4.0]);
        assert_eq!(tick_label(0.6000000000000001), "0.6");
        assert_eq!(tick_label(-0.0), "0");
        assert_eq!(histogram(&[0.0, 0.5, 1.0, 1.0], 0.0, 1.0, 2), [0.25, 0.75]);
    }
}
