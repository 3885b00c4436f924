//! The specification language: a versioned TOML file that says which metrics must lie on which
//! side of which thresholds, at which confidence, with how many samples, and which
//! property-based checks must hold (`specs/README.md` documents it field by field).
//!
//! This module owns parsing a spec strictly (unknown keys are errors), validating it against
//! `metric::KNOWN_METRICS` (unknown metrics, diagnostics named as if they could gate, thresholds
//! outside a metric's range, thresholds that can never fail, confidences outside [0.5, 1), and in
//! an erasure spec a one-sided bound on an AUC that does not say why), and `SpecError`, whose
//! every variant names the file and, where there is one, the line. It knows nothing of models; evaluation is `verdict`,
//! the property runner is `property`. It never imports `unlearn`.

use std::collections::BTreeSet;
use std::ops::Range as Span;
use std::path::Path;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::judge::metric::{self, Better, MetricClass, MetricError, Side};
use crate::judge::property::{PerturbationKind, Property};
use crate::judge::stats::StatsError;

/// The `schema_version` this parser reads.
pub const SCHEMA_VERSION: u32 = 1;
/// The most cases a property may ask for: each case costs a greedy generation.
pub const MAX_CASES: u32 = 10_000;
/// The record splits a property may perturb.
pub use crate::judge::metric::SPLITS;

/// The specs shipped in `specs/`, by name, compiled in so that the binary needs no files.
pub const BUNDLED_SPECS: [(&str, &str); 4] = [
    ("gdpr-art17", include_str!("../../specs/gdpr-art17.toml")),
    ("ccpa-delete", include_str!("../../specs/ccpa-delete.toml")),
    ("regression", include_str!("../../specs/regression.toml")),
    ("strict", include_str!("../../specs/strict.toml")),
];

/// A parsed and validated spec.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Spec {
    /// Where it was read from (a path, or `bundled:<name>`), for messages.
    pub file: String,
    pub id: String,
    pub kind: SpecKind,
    pub version: String,
    pub title: String,
    pub regulation: String,
    pub default_confidence: f64,
    pub seed: u64,
    pub requirements: Vec<Requirement>,
    pub properties: Vec<Property>,
}

/// What a spec is for. An erasure spec judges indistinguishability, which is two-sided (DESIGN.md,
/// "Honesty of a certificate", rule 2): it refuses a one-sided bound on an AUC unless the
/// requirement says why. A spec that does not say is an erasure spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpecKind {
    #[default]
    Erasure,
    /// A quality gate against a baseline (CI), not a claim about erasure.
    Regression,
}

/// How a requirement's bounds are compared.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    /// `<=` (side `Upper`: the upper bound at or below `threshold`) or `>=` (side `Lower`).
    Threshold { side: Side, threshold: f64 },
    /// The baseline evidence's value of the same metric, loosened by `tolerance` in the worse
    /// direction; `side` follows the metric's better direction.
    Baseline { side: Side, tolerance: f64 },
    /// Both one-sided bounds inside `[lower, upper]` (two one-sided tests, each at the
    /// requirement's confidence).
    Within { lower: f64, upper: f64 },
    /// The difference of the metric and the reference model's same metric (`reference`), both
    /// one-sided bounds inside `[-margin, margin]`.
    WithinReference { reference: String, margin: f64 },
}

/// One `[[requirement]]`, with its confidence resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Requirement {
    pub id: String,
    pub description: String,
    pub metric: String,
    pub comparison: Comparison,
    pub confidence: f64,
    pub min_samples: usize,
    /// Why a one-sided bound on an AUC is the right test here (required for one in an erasure
    /// spec).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// The line of the requirement's `id`, for messages.
    pub line: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}{loc}: {message}", loc = location(*line, *column))]
    Parse {
        file: String,
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    },
    #[error("{file}:{line}: {message}")]
    Invalid {
        file: String,
        line: usize,
        message: String,
    },
    // `problem`, not `source`: the message already carries it, and an error chain printed in
    // full would repeat it.
    #[error("{file}:{line}: requirement `{requirement}`: {document}: {problem}")]
    Evidence {
        file: String,
        line: usize,
        requirement: String,
        /// `evidence` or `baseline`.
        document: &'static str,
        problem: Box<MetricError>,
    },
    #[error(
        "{file}:{line}: requirement `{requirement}` compares with a baseline, but no baseline \
         evidence was given"
    )]
    NoBaseline {
        file: String,
        line: usize,
        requirement: String,
    },
    #[error("{file}:{line}: requirement `{requirement}`: {source}")]
    Stats {
        file: String,
        line: usize,
        requirement: String,
        source: StatsError,
    },
}

fn location(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(":{l}:{c}"),
        (Some(l), None) => format!(":{l}"),
        _ => String::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// The file as written. Spans are kept on every field a later check may complain about.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    schema_version: Spanned<u32>,
    id: Spanned<String>,
    #[serde(default)]
    kind: SpecKind,
    version: String,
    title: String,
    regulation: String,
    default_confidence: Spanned<f64>,
    seed: u64,
    #[serde(default)]
    requirement: Vec<RawRequirement>,
    #[serde(default)]
    property: Vec<RawProperty>,
}

#[derive(Deserialize, Clone, Copy, PartialEq)]
enum RawCompare {
    #[serde(rename = "<=")]
    AtMost,
    #[serde(rename = ">=")]
    AtLeast,
    #[serde(rename = "no_worse_than_baseline")]
    NoWorseThanBaseline,
    #[serde(rename = "within")]
    Within,
    #[serde(rename = "within_reference")]
    WithinReference,
}

impl RawCompare {
    fn name(self) -> &'static str {
        match self {
            RawCompare::AtMost => "<=",
            RawCompare::AtLeast => ">=",
            RawCompare::NoWorseThanBaseline => "no_worse_than_baseline",
            RawCompare::Within => "within",
            RawCompare::WithinReference => "within_reference",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequirement {
    id: Spanned<String>,
    description: Spanned<String>,
    metric: Spanned<String>,
    compare: Spanned<RawCompare>,
    threshold: Option<Spanned<f64>>,
    confidence: Option<Spanned<f64>>,
    min_samples: Spanned<u64>,
    baseline_tolerance: Option<Spanned<f64>>,
    interval: Option<Spanned<Vec<f64>>>,
    margin: Option<Spanned<f64>>,
    why: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProperty {
    id: Spanned<String>,
    description: Spanned<String>,
    split: Spanned<String>,
    cases: Spanned<u32>,
    perturbations: Spanned<Vec<PerturbationKind>>,
    min_rank: Option<usize>,
    #[serde(default)]
    forbid_verbatim: bool,
    #[serde(default)]
    id_suffixes: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Parsing and validation.

/// Turns byte spans into "line" for messages about one file.
struct Source<'a> {
    file: &'a str,
    text: &'a str,
}

impl Source<'_> {
    fn line(&self, span: &Span<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn column(&self, span: &Span<usize>) -> usize {
        let end = span.start.min(self.text.len());
        let line_start = self.text.as_bytes()[..end]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        String::from_utf8_lossy(&self.text.as_bytes()[line_start..end])
            .chars()
            .count()
            + 1
    }

    fn invalid(&self, span: &Span<usize>, message: impl Into<String>) -> SpecError {
        SpecError::Invalid {
            file: self.file.to_string(),
            line: self.line(span),
            message: message.into(),
        }
    }
}

/// A one-sided bound below 50% lies on the wrong side of its own estimate.
fn check_confidence(src: &Source, c: &Spanned<f64>, what: &str) -> Result<f64, SpecError> {
    let value = *c.get_ref();
    if (0.5..1.0).contains(&value) {
        Ok(value)
    } else {
        Err(src.invalid(
            &c.span(),
            format!("{what} {value} must lie in [0.5, 1) (a one-sided bound's confidence)"),
        ))
    }
}

fn non_empty(src: &Source, s: &Spanned<String>, what: &str) -> Result<String, SpecError> {
    if s.get_ref().trim().is_empty() {
        Err(src.invalid(&s.span(), format!("{what} is empty")))
    } else {
        Ok(s.get_ref().clone())
    }
}

fn unknown_metric_message(path: &str) -> String {
    let nearest = metric::KNOWN_METRICS
        .iter()
        .map(|m| (strsim::levenshtein(path, &m.path), &m.path))
        .min();
    match nearest {
        Some((d, near)) if d <= 3 => {
            format!("unknown metric `{path}` (did you mean `{near}`? see specs/README.md)")
        }
        _ => format!("unknown metric `{path}` (the known metrics are listed in specs/README.md)"),
    }
}

/// Refuses the metrics no requirement may rest on: unknown paths (with a suggestion) and
/// diagnostics (influence figures, known to the table or not; p-values).
fn gateable_metric(
    src: &Source,
    metric: &Spanned<String>,
) -> Result<&'static metric::MetricInfo, SpecError> {
    let path = metric.get_ref();
    let diagnostic = |why: &str| {
        src.invalid(
            &metric.span(),
            format!(
                "`{path}` is a diagnostic, not an estimate: {why}; it may be shown, never gated \
                 on, so no requirement may name it"
            ),
        )
    };
    match metric::known_metric(path) {
        Some(info) => match info.class {
            MetricClass::Diagnostic { why } => Err(diagnostic(why)),
            MetricClass::Estimate | MetricClass::Point => Ok(info),
        },
        None if path.starts_with(metric::INFLUENCE_PREFIX) => {
            Err(diagnostic(metric::INFLUENCE_IS_DIAGNOSTIC))
        }
        None => Err(src.invalid(&metric.span(), unknown_metric_message(path))),
    }
}

/// The keys each `compare` takes; any other comparison key present is an error on its line.
fn only_keys(src: &Source, raw: &RawRequirement, allowed: &[&str]) -> Result<(), SpecError> {
    let present = [
        ("threshold", raw.threshold.as_ref().map(Spanned::span)),
        (
            "baseline_tolerance",
            raw.baseline_tolerance.as_ref().map(Spanned::span),
        ),
        ("interval", raw.interval.as_ref().map(Spanned::span)),
        ("margin", raw.margin.as_ref().map(Spanned::span)),
        ("why", raw.why.as_ref().map(Spanned::span)),
    ];
    let compare = raw.compare.get_ref().name();
    match present
        .into_iter()
        .find(|(key, span)| span.is_some() && !allowed.contains(key))
    {
        Some((key, Some(span))) => Err(src.invalid(
            &span,
            format!(
                "`{key}` does not go with compare = \"{compare}\" (it takes {})",
                allowed.join(", ")
            ),
        )),
        _ => Ok(()),
    }
}

fn required<'a, T>(
    src: &Source,
    raw: &RawRequirement,
    value: &'a Option<Spanned<T>>,
    key: &str,
) -> Result<&'a Spanned<T>, SpecError> {
    value.as_ref().ok_or_else(|| {
        src.invalid(
            &raw.compare.span(),
            format!(
                "compare = \"{}\" needs `{key}`",
                raw.compare.get_ref().name()
            ),
        )
    })
}

fn threshold_comparison(
    src: &Source,
    raw: &RawRequirement,
    info: &metric::MetricInfo,
    kind: SpecKind,
) -> Result<Comparison, SpecError> {
    only_keys(src, raw, &["threshold", "why"])?;
    let path = &info.path;
    let t = required(src, raw, &raw.threshold, "threshold")?;
    let threshold = *t.get_ref();
    if !(threshold.is_finite() && info.range.contains(threshold)) {
        return Err(src.invalid(
            &t.span(),
            format!(
                "threshold {threshold} lies outside the range {} of `{path}`",
                info.range
            ),
        ));
    }
    let side = if *raw.compare.get_ref() == RawCompare::AtMost {
        Side::Upper
    } else {
        Side::Lower
    };
    let vacuous = match side {
        Side::Upper => threshold >= info.range.max,
        Side::Lower => threshold <= info.range.min,
    };
    if vacuous {
        return Err(src.invalid(
            &t.span(),
            format!(
                "threshold {threshold} can never fail for `{path}` in {}",
                info.range
            ),
        ));
    }
    if kind == SpecKind::Erasure && path.ends_with(".auc") && raw.why.is_none() {
        return Err(src.invalid(
            &raw.compare.span(),
            format!(
                "a one-sided `{}` on the AUC `{path}` in an erasure spec: an AUC far from 0.5 on \
                 either side tells members apart (the attacker flips the sign), so use \
                 compare = \"within\" or \"within_reference\", or say why one side is enough \
                 with `why = \"...\"`",
                raw.compare.get_ref().name()
            ),
        ));
    }
    Ok(Comparison::Threshold { side, threshold })
}

/// The widest baseline tolerance accepted on a metric with no upper end (losses, perplexities).
const MAX_UNBOUNDED_TOLERANCE: f64 = 1e6;

fn baseline_comparison(
    src: &Source,
    raw: &RawRequirement,
    info: &metric::MetricInfo,
) -> Result<Comparison, SpecError> {
    only_keys(src, raw, &["baseline_tolerance"])?;
    let tol = required(src, raw, &raw.baseline_tolerance, "baseline_tolerance")?;
    let tolerance = *tol.get_ref();
    if !(tolerance.is_finite() && tolerance >= 0.0) {
        return Err(src.invalid(
            &tol.span(),
            format!("baseline_tolerance {tolerance} must be finite and at least 0"),
        ));
    }
    // A tolerance as wide as everything the metric can measure makes a comparison that can
    // never fail; unbounded metrics get a ceiling no real regression margin comes near.
    let width = info.range.max - info.range.min;
    let ceiling = if width.is_finite() {
        width
    } else {
        MAX_UNBOUNDED_TOLERANCE
    };
    if tolerance >= ceiling {
        return Err(src.invalid(
            &tol.span(),
            format!(
                "baseline_tolerance {tolerance} is at least {ceiling}, the span of what `{}` can measure: the comparison could never fail",
                info.path
            ),
        ));
    }
    let side = match info.better {
        Better::Lower => Side::Upper,
        Better::Higher => Side::Lower,
        Better::Neither => {
            return Err(src.invalid(
                &raw.metric.span(),
                format!(
                    "`{}` has no better direction to compare with a baseline",
                    info.path
                ),
            ))
        }
    };
    Ok(Comparison::Baseline { side, tolerance })
}

fn within_comparison(
    src: &Source,
    raw: &RawRequirement,
    info: &metric::MetricInfo,
) -> Result<Comparison, SpecError> {
    only_keys(src, raw, &["interval"])?;
    let interval = required(src, raw, &raw.interval, "interval")?;
    let path = &info.path;
    let (lower, upper) = match interval.get_ref()[..] {
        [lower, upper] if lower.is_finite() && upper.is_finite() && lower < upper => (lower, upper),
        _ => {
            return Err(src.invalid(
                &interval.span(),
                "interval must be two finite numbers [lower, upper] with lower < upper",
            ))
        }
    };
    if !(info.range.contains(lower) && info.range.contains(upper)) {
        return Err(src.invalid(
            &interval.span(),
            format!(
                "interval [{lower}, {upper}] leaves the range {} of `{path}`",
                info.range
            ),
        ));
    }
    if lower <= info.range.min && upper >= info.range.max {
        return Err(src.invalid(
            &interval.span(),
            format!(
                "interval [{lower}, {upper}] can never fail for `{path}` in {}",
                info.range
            ),
        ));
    }
    Ok(Comparison::Within { lower, upper })
}

fn reference_comparison(
    src: &Source,
    raw: &RawRequirement,
    info: &metric::MetricInfo,
) -> Result<Comparison, SpecError> {
    only_keys(src, raw, &["margin"])?;
    let m = required(src, raw, &raw.margin, "margin")?;
    let margin = *m.get_ref();
    if !(margin.is_finite() && margin > 0.0) {
        return Err(src.invalid(
            &m.span(),
            format!("margin {margin} must be finite and above 0"),
        ));
    }
    let reference = format!("{}{}", metric::REFERENCE_PREFIX, info.path);
    if metric::known_metric(&reference).is_none() {
        return Err(src.invalid(
            &raw.metric.span(),
            format!(
                "`{}` has no reference-model counterpart to compare with (within_reference \
                 takes a `mia.<attack>.<stat>` metric)",
                info.path
            ),
        ));
    }
    Ok(Comparison::WithinReference { reference, margin })
}

fn validate_requirement(
    src: &Source,
    raw: RawRequirement,
    default_confidence: f64,
    kind: SpecKind,
) -> Result<Requirement, SpecError> {
    let id = non_empty(src, &raw.id, "requirement id")?;
    let description = non_empty(src, &raw.description, "description")?;
    let info = gateable_metric(src, &raw.metric)?;
    let confidence = match &raw.confidence {
        Some(c) => check_confidence(src, c, "confidence")?,
        None => default_confidence,
    };
    let min_samples = usize::try_from(*raw.min_samples.get_ref())
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| src.invalid(&raw.min_samples.span(), "min_samples must be at least 1"))?;
    let why = match &raw.why {
        Some(w) => Some(non_empty(src, w, "why")?),
        None => None,
    };
    let comparison = match *raw.compare.get_ref() {
        RawCompare::AtMost | RawCompare::AtLeast => threshold_comparison(src, &raw, info, kind)?,
        RawCompare::NoWorseThanBaseline => baseline_comparison(src, &raw, info)?,
        RawCompare::Within => within_comparison(src, &raw, info)?,
        RawCompare::WithinReference => reference_comparison(src, &raw, info)?,
    };
    Ok(Requirement {
        line: src.line(&raw.id.span()),
        id,
        description,
        metric: info.path.clone(),
        comparison,
        confidence,
        min_samples,
        why,
    })
}

fn validate_property(src: &Source, raw: RawProperty) -> Result<Property, SpecError> {
    let id = non_empty(src, &raw.id, "property id")?;
    let description = non_empty(src, &raw.description, "description")?;
    let split = raw.split.get_ref();
    if !SPLITS.contains(&split.as_str()) {
        return Err(src.invalid(
            &raw.split.span(),
            format!("unknown split `{split}` (one of {})", SPLITS.join(", ")),
        ));
    }
    let cases = *raw.cases.get_ref();
    if !(1..=MAX_CASES).contains(&cases) {
        return Err(src.invalid(
            &raw.cases.span(),
            format!("cases {cases} must lie in 1..={MAX_CASES}"),
        ));
    }
    let perturbations = raw.perturbations.get_ref().clone();
    let distinct: BTreeSet<_> = perturbations.iter().collect();
    if perturbations.is_empty() || distinct.len() != perturbations.len() {
        return Err(src.invalid(
            &raw.perturbations.span(),
            "perturbations must list at least one kind, each once",
        ));
    }
    let forbid_verbatim = raw.forbid_verbatim;
    if raw.min_rank == Some(0) {
        return Err(src.invalid(
            &raw.id.span(),
            "min_rank = 0 holds for every answer (every rank is at least 0): the check could never fail; use 1 or more",
        ));
    }
    if !forbid_verbatim && raw.min_rank.is_none() {
        return Err(src.invalid(
            &raw.id.span(),
            "the property checks nothing: set forbid_verbatim = true or min_rank",
        ));
    }
    Ok(Property {
        line: src.line(&raw.id.span()),
        id,
        description,
        split: split.clone(),
        cases,
        perturbations,
        min_rank: raw.min_rank,
        forbid_verbatim,
        id_suffixes: raw.id_suffixes,
    })
}

/// Rejects a second use of an id.
fn check_unique<'a>(
    src: &Source,
    ids: impl Iterator<Item = &'a Spanned<String>>,
) -> Result<(), SpecError> {
    let mut seen = BTreeSet::new();
    for id in ids {
        if !seen.insert(id.get_ref().as_str()) {
            return Err(src.invalid(&id.span(), format!("duplicate id `{}`", id.get_ref())));
        }
    }
    Ok(())
}

impl Spec {
    /// Parses and validates spec `text`; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Spec, SpecError> {
        let src = Source { file, text };
        let raw: RawSpec = toml::from_str(text).map_err(|e| {
            let span = e.span();
            SpecError::Parse {
                file: file.to_string(),
                line: span.as_ref().map(|s| src.line(s)),
                column: span.as_ref().map(|s| src.column(s)),
                message: e.message().trim_end().to_string(),
            }
        })?;
        if *raw.schema_version.get_ref() != SCHEMA_VERSION {
            return Err(src.invalid(
                &raw.schema_version.span(),
                format!(
                    "schema_version {} is not supported (this lethe reads {SCHEMA_VERSION})",
                    raw.schema_version.get_ref()
                ),
            ));
        }
        let id = non_empty(&src, &raw.id, "spec id")?;
        let default_confidence =
            check_confidence(&src, &raw.default_confidence, "default_confidence")?;
        if raw.requirement.is_empty() && raw.property.is_empty() {
            return Err(src.invalid(
                &raw.id.span(),
                "the spec checks nothing: add a [[requirement]] or a [[property]]",
            ));
        }
        check_unique(
            &src,
            raw.requirement
                .iter()
                .map(|r| &r.id)
                .chain(raw.property.iter().map(|p| &p.id)),
        )?;
        let requirements = raw
            .requirement
            .into_iter()
            .map(|r| validate_requirement(&src, r, default_confidence, raw.kind))
            .collect::<Result<_, _>>()?;
        let properties = raw
            .property
            .into_iter()
            .map(|p| validate_property(&src, p))
            .collect::<Result<_, _>>()?;
        Ok(Spec {
            file: file.to_string(),
            id,
            kind: raw.kind,
            version: raw.version,
            title: raw.title,
            regulation: raw.regulation,
            default_confidence,
            seed: raw.seed,
            requirements,
            properties,
        })
    }

    /// Reads and parses a spec file.
    pub fn load(path: &Path) -> Result<Spec, SpecError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Io {
            file: file.clone(),
            source,
        })?;
        Spec::parse(&text, &file)
    }

    /// A spec shipped with lethe, by name (`gdpr-art17`, …).
    pub fn bundled(name: &str) -> Option<Result<Spec, SpecError>> {
        BUNDLED_SPECS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(n, text)| Spec::parse(text, &format!("bundled:{n}")))
    }

    /// This spec with only its two-sided membership requirements on the model being certified
    /// (`within` or `within_reference` on one of its `mia.*` metrics) and no properties: the
    /// part of an erasure spec that says whether forget records stand out to an attack, by being
    /// remembered or by being over-unlearned.
    pub fn two_sided_attacks(&self) -> Spec {
        let requirements = self
            .requirements
            .iter()
            .filter(|r| {
                r.metric.starts_with("mia.")
                    && matches!(
                        r.comparison,
                        Comparison::Within { .. } | Comparison::WithinReference { .. }
                    )
            })
            .cloned()
            .collect();
        Spec {
            requirements,
            properties: Vec::new(),
            ..self.clone()
        }
    }

    /// Whether evaluating needs baseline evidence.
    pub fn needs_baseline(&self) -> bool {
        self.requirements
            .iter()
            .any(|r| matches!(r.comparison, Comparison::Baseline { .. }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GOOD: &str = r#"schema_version = 1
id = "test"
version = "1.0.0"
title = "A test spec"
regulation = "none"
default_confidence = 0.95
seed = 7

[[requirement]]
id = "auc"
description = "The loss attack cannot tell forget from holdout records."
metric = "mia.loss.auc"
compare = "within"
interval = [0.35, 0.65]
min_samples = 50

[[requirement]]
id = "utility"
description = "Retain loss stays close to the original's."
metric = "retain.loss_ratio"
compare = "<="
threshold = 1
confidence = 0.9
min_samples = 100

[[property]]
id = "no-leak"
description = "No perturbed prompt leaks."
split = "forget"
cases = 16
perturbations = ["case", "reorder"]
forbid_verbatim = true
"#;

    /// `GOOD` with the first occurrence of `from` replaced by `to`.
    fn variant(from: &str, to: &str) -> String {
        assert!(GOOD.contains(from), "{from}");
        GOOD.replacen(from, to, 1)
    }

    fn error_line(text: &str) -> (usize, String) {
        match Spec::parse(text, "t.toml") {
            Err(SpecError::Invalid { line, message, .. }) => (line, message),
            Err(SpecError::Parse {
                line: Some(line),
                message,
                ..
            }) => (line, message),
            other => panic!("expected a located error, got {other:?}"),
        }
    }

    fn bundled_path(name: &str) -> String {
        format!("{}/specs/{name}.toml", env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn two_sided_attacks_keeps_the_within_forms_on_the_models_own_attacks() {
        let gdpr = Spec::bundled("gdpr-art17").unwrap().unwrap();
        let attacks = gdpr.two_sided_attacks();
        let ids: Vec<&str> = attacks.requirements.iter().map(|r| r.id.as_str()).collect();
        // specs/gdpr-art17.toml: the five reference-free attacks bounded on both sides; not the
        // one-sided TPR bound, not the original model's power check, no property.
        assert_eq!(
            ids,
            [
                "mia-loss-auc",
                "mia-zlib-auc",
                "mia-min-k-auc",
                "mia-min-k-pp-auc",
                "mia-grad-norm-auc"
            ]
        );
        assert!(attacks.properties.is_empty());
        assert_eq!((attacks.id, attacks.seed), (gdpr.id, gdpr.seed));
    }

    #[test]
    fn every_bundled_spec_parses_from_disk_and_from_the_binary() {
        for (name, text) in BUNDLED_SPECS {
            let from_disk = Spec::load(Path::new(&bundled_path(name)))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(from_disk.id, name);
            assert_eq!(std::fs::read_to_string(bundled_path(name)).unwrap(), text);
            let built_in = Spec::bundled(name).unwrap().unwrap();
            assert_eq!(built_in.requirements, from_disk.requirements);
        }
        let gdpr = Spec::bundled("gdpr-art17").unwrap().unwrap();
        assert!(!gdpr.needs_baseline() && !gdpr.properties.is_empty());
        let regression = Spec::bundled("regression").unwrap().unwrap();
        assert!(regression.needs_baseline());
        assert!(Spec::bundled("nope").is_none());
    }

    #[test]
    fn a_good_spec_resolves_confidence_and_sides() {
        let spec = Spec::parse(GOOD, "t.toml").unwrap();
        assert_eq!(spec.requirements.len(), 2);
        let [auc, utility] = &spec.requirements[..] else {
            panic!("two requirements")
        };
        assert_eq!((auc.confidence, auc.line), (0.95, 10));
        assert_eq!(
            auc.comparison,
            Comparison::Within {
                lower: 0.35,
                upper: 0.65
            }
        );
        // An integer threshold reads as a float; the requirement's own confidence wins.
        assert_eq!(
            (utility.confidence, &utility.comparison),
            (
                0.9,
                &Comparison::Threshold {
                    side: Side::Upper,
                    threshold: 1.0
                }
            )
        );
        assert_eq!(spec.kind, SpecKind::Erasure, "the default kind");
        assert_eq!(
            spec.properties[0].perturbations,
            [PerturbationKind::Case, PerturbationKind::Reorder]
        );
    }

    #[test]
    fn a_typo_in_a_field_name_names_its_line() {
        let (line, message) = error_line(&variant("min_samples = 50", "min_sample = 50"));
        assert_eq!(line, 15);
        assert!(message.contains("min_sample"), "{message}");
        let (line, _) = error_line(&variant("seed = 7", "sed = 7"));
        assert_eq!(line, 7);
    }

    #[test]
    fn an_unknown_metric_names_its_line_and_a_suggestion() {
        let (line, message) = error_line(&variant("mia.loss.auc", "mia.los.auc"));
        assert_eq!(line, 12);
        assert!(message.contains("did you mean `mia.loss.auc`"), "{message}");
        let (line, _) = error_line(&variant("retain.loss_ratio", "retain.perplexity_delta"));
        assert_eq!(line, 20);
    }

    #[test]
    fn thresholds_out_of_range_or_vacuous_are_rejected_on_their_line() {
        let interval = |to: &str| variant("interval = [0.35, 0.65]", to);
        let (line, message) = error_line(&interval("interval = [0.35, 1.3]"));
        assert_eq!(line, 14);
        assert!(message.contains("[0, 1]"), "{message}");
        assert_eq!(
            error_line(&variant("threshold = 1\n", "threshold = -0.5\n")).0,
            22
        );
        // AUC in [0, 1] always holds.
        let (line, message) = error_line(&interval("interval = [0, 1]"));
        assert_eq!(line, 14);
        assert!(message.contains("never fail"), "{message}");
        for bad in ["[0.65, 0.35]", "[0.5]", "[0.3, 0.5, 0.7]", "[0.5, 0.5]"] {
            let (line, message) = error_line(&interval(&format!("interval = {bad}")));
            assert_eq!(line, 14, "{bad}");
            assert!(message.contains("lower < upper"), "{bad}: {message}");
        }
    }

    #[test]
    fn confidences_outside_the_unit_interval_are_rejected_on_their_line() {
        assert_eq!(
            error_line(&variant("\nconfidence = 0.9", "\nconfidence = 1.5")).0,
            23
        );
        assert_eq!(
            error_line(&variant("\nconfidence = 0.9", "\nconfidence = 0")).0,
            23
        );
        assert_eq!(
            error_line(&variant("\nconfidence = 0.9", "\nconfidence = 0.3")).0,
            23
        );
        let header = variant("default_confidence = 0.95", "default_confidence = 1.0");
        assert_eq!(error_line(&header).0, 6);
    }

    #[test]
    fn other_semantic_errors_name_their_lines() {
        let cases = [
            (variant("schema_version = 1", "schema_version = 2"), 1),
            (variant("id = \"utility\"", "id = \"auc\""), 18),
            (variant("compare = \"within\"", "compare = \"<\""), 13),
            // The key that does not fit is named on its own line.
            (
                variant("compare = \"within\"", "compare = \"within_reference\""),
                14,
            ),
            (variant("min_samples = 50", "min_samples = 0"), 15),
            (
                variant("interval = [0.35, 0.65]", "baseline_tolerance = 0.1"),
                14,
            ),
            (variant("interval = [0.35, 0.65]", "threshold = 0.65"), 14),
            (
                variant(
                    "interval = [0.35, 0.65]",
                    "interval = [0.35, 0.65]\nwhy = \"x\"",
                ),
                15,
            ),
            (variant("\"reorder\"]", "\"reorder\", \"case\"]"), 31),
            (variant("\"reorder\"]", "\"rot13\"]"), 31),
            (variant("split = \"forget\"", "split = \"train\""), 29),
            (variant("cases = 16", "cases = 0"), 30),
            (
                variant("forbid_verbatim = true", "forbid_verbatim = false"),
                27,
            ),
            (
                variant("metric = \"mia.loss.auc\"", "metric = \"forget_quality\""),
                12,
            ),
            (variant("threshold = 1\n", ""), 21),
        ];
        for (text, want) in cases {
            let (line, message) = error_line(&text);
            assert_eq!(line, want, "{message}");
        }
    }

    #[test]
    fn comparisons_that_can_never_fail_are_refused() {
        // Issue 15: `min_rank = 0` and `baseline_tolerance = 1e300` were accepted.
        let base = "schema_version = 1\nid = \"x\"\nkind = \"regression\"\nversion = \"1\"\ntitle = \"t\"\nregulation = \"r\"\ndefault_confidence = 0.95\nseed = 1\n";
        let tol = format!("{base}[[requirement]]\nid = \"r\"\ndescription = \"d\"\nmetric = \"forget.loss\"\ncompare = \"no_worse_than_baseline\"\nbaseline_tolerance = 1e300\nmin_samples = 10\n");
        let err = Spec::parse(&tol, "t.toml").unwrap_err().to_string();
        assert!(err.contains("could never fail"), "{err}");
        let rank = format!("{base}[[property]]\nid = \"p\"\ndescription = \"d\"\nsplit = \"forget\"\ncases = 4\nperturbations = [\"case\"]\nmin_rank = 0\n");
        let err = Spec::parse(&rank, "t.toml").unwrap_err().to_string();
        assert!(err.contains("could never fail"), "{err}");
    }

    #[test]
    fn baseline_comparisons_need_a_direction_and_a_tolerance() {
        let baseline = variant(
            "compare = \"within\"\ninterval = [0.35, 0.65]",
            "compare = \"no_worse_than_baseline\"\nbaseline_tolerance = 0.05",
        );
        let spec = Spec::parse(&baseline, "t.toml").unwrap();
        assert_eq!(
            spec.requirements[0].comparison,
            Comparison::Baseline {
                side: Side::Upper,
                tolerance: 0.05
            }
        );
        assert!(spec.needs_baseline());
        let no_direction = baseline.replacen("mia.loss.auc", "original.mia.loss.auc", 1);
        let (line, message) = error_line(&no_direction);
        assert_eq!(line, 12);
        assert!(message.contains("no better direction"), "{message}");
        let no_tolerance = baseline.replacen("baseline_tolerance = 0.05\n", "", 1);
        assert_eq!(error_line(&no_tolerance).0, 13);
    }

    #[test]
    fn a_one_sided_auc_in_an_erasure_spec_needs_a_why() {
        let one_sided = variant(
            "compare = \"within\"\ninterval = [0.35, 0.65]",
            "compare = \"<=\"\nthreshold = 0.65",
        );
        let (line, message) = error_line(&one_sided);
        assert_eq!(line, 13, "{message}");
        assert!(message.contains("why"), "{message}");
        // Said why: accepted, and the reason is kept.
        let with_why = one_sided.replacen(
            "threshold = 0.65\n",
            "threshold = 0.65\nwhy = \"the original model, power only\"\n",
            1,
        );
        let spec = Spec::parse(&with_why, "t.toml").unwrap();
        assert_eq!(
            spec.requirements[0].why.as_deref(),
            Some("the original model, power only")
        );
        // A regression spec is not an erasure claim: no why needed.
        let regression =
            one_sided.replacen("id = \"test\"", "id = \"test\"\nkind = \"regression\"", 1);
        let spec = Spec::parse(&regression, "t.toml").unwrap();
        assert_eq!(spec.kind, SpecKind::Regression);
        // An empty why says nothing; an unknown kind is a parse error on its line.
        let empty = one_sided.replacen("threshold = 0.65\n", "threshold = 0.65\nwhy = \" \"\n", 1);
        assert_eq!(error_line(&empty).0, 15);
        let unknown = variant("id = \"test\"", "id = \"test\"\nkind = \"audit\"");
        assert_eq!(error_line(&unknown).0, 3);
    }

    #[test]
    fn diagnostics_cannot_gate() {
        for path in [
            "influence.distance_bound",
            "influence.self_influence_ratio",
            "influence.lanczos.lambda_min",
            "forget_quality",
        ] {
            let text = variant("metric = \"mia.loss.auc\"", &format!("metric = \"{path}\""));
            let err = Spec::parse(&text, "specs/x.toml").unwrap_err().to_string();
            assert!(err.starts_with("specs/x.toml:12: "), "{err}");
            assert!(err.contains(&format!("`{path}` is a diagnostic")), "{err}");
            assert!(err.contains("never gated on"), "{err}");
        }
    }

    #[test]
    fn within_reference_names_the_reference_models_metric() {
        let text = variant(
            "compare = \"within\"\ninterval = [0.35, 0.65]",
            "compare = \"within_reference\"\nmargin = 0.05",
        );
        let spec = Spec::parse(&text, "t.toml").unwrap();
        assert_eq!(
            spec.requirements[0].comparison,
            Comparison::WithinReference {
                reference: "reference.mia.loss.auc".into(),
                margin: 0.05
            }
        );
        let no_reference = text.replacen("mia.loss.auc", "forget.exact_match", 1);
        let (line, message) = error_line(&no_reference);
        assert_eq!(line, 12);
        assert!(
            message.contains("no reference-model counterpart"),
            "{message}"
        );
        assert_eq!(
            error_line(&text.replacen("margin = 0.05", "margin = 0", 1)).0,
            14
        );
    }

    #[test]
    fn a_spec_that_checks_nothing_is_an_error() {
        let empty = "schema_version = 1\nid = \"x\"\nversion = \"1\"\ntitle = \"t\"\n\
                     regulation = \"r\"\ndefault_confidence = 0.95\nseed = 1\n";
        assert_eq!(error_line(empty).0, 2);
    }

    #[test]
    fn errors_display_file_and_line() {
        let err = Spec::parse(&variant("mia.loss.auc", "mia.nope"), "specs/x.toml").unwrap_err();
        assert!(err.to_string().starts_with("specs/x.toml:12: "), "{err}");
        let err = Spec::parse("schema_version = \n", "y.toml").unwrap_err();
        assert!(err.to_string().starts_with("y.toml:1:"), "{err}");
    }

    proptest! {
        #[test]
        fn prop_parser_never_panics_on_arbitrary_text(text in "\\PC{0,400}") {
            let _ = Spec::parse(&text, "fuzz.toml");
        }

        #[test]
        fn prop_parser_never_panics_on_mutated_specs(
            at in 0usize..1000,
            cut in 0usize..40,
            insert in "[\\[\\]=\"a-z0-9.\n #-]{0,12}",
        ) {
            let at = GOOD.char_indices().map(|(i, _)| i).nth(at % GOOD.len()).unwrap_or(0);
            let end = (at + cut).min(GOOD.len());
            let mut text = GOOD.to_string();
            if text.is_char_boundary(end) {
                text.replace_range(at..end, &insert);
            }
            let _ = Spec::parse(&text, "fuzz.toml");
        }
    }
}
