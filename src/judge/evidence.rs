//! The evidence file: versioned JSON holding everything a verdict or a report is computed from —
//! the seed and settings, the sha256 of every input file as read, sample sizes, every aggregate
//! (under `"metrics"`, typed [`Metric`] leaves at dotted paths such as `forget.loss` or
//! `mia.loss.auc`), every per-record score, ROC curves and the influence analysis. Maps are
//! ordered and nothing depends on time or thread timing, so the same inputs and seed give the same
//! bytes. Written atomically. This module owns the format; it computes nothing.

use super::metric::Metric;
use super::stats::RocPoint;
use crate::atomic::write_atomic;
use crate::digest::FileDigest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

pub const SCHEMA_VERSION: u32 = 1;

/// A tree of metrics: inner nodes are objects of named children, leaves are [`Metric`]s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MetricNode {
    Leaf(Metric),
    Branch(BTreeMap<String, MetricNode>),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Metrics(pub BTreeMap<String, MetricNode>);

impl Metrics {
    /// Inserts `m` at the dotted `path`, creating branches as needed.
    pub fn insert(&mut self, path: &str, m: Metric) {
        let mut parts: Vec<&str> = path.split('.').collect();
        let last = parts.pop().unwrap_or_default();
        let mut node = &mut self.0;
        for p in parts {
            let child = node
                .entry(p.to_string())
                .or_insert_with(|| MetricNode::Branch(BTreeMap::new()));
            if let MetricNode::Leaf(_) = child {
                *child = MetricNode::Branch(BTreeMap::new());
            }
            let MetricNode::Branch(next) = child else {
                unreachable!("just made a branch")
            };
            node = next;
        }
        node.insert(last.to_string(), MetricNode::Leaf(m));
    }

    /// The metric at a dotted path.
    pub fn get(&self, path: &str) -> Option<&Metric> {
        let mut node = &self.0;
        let mut parts = path.split('.').peekable();
        while let Some(p) = parts.next() {
            match (node.get(p)?, parts.peek()) {
                (MetricNode::Leaf(m), None) => return Some(m),
                (MetricNode::Branch(b), Some(_)) => node = b,
                _ => return None,
            }
        }
        None
    }

    /// Every leaf with its dotted path, in order.
    pub fn leaves(&self) -> Vec<(String, &Metric)> {
        fn walk<'a>(
            prefix: &str,
            node: &'a BTreeMap<String, MetricNode>,
            out: &mut Vec<(String, &'a Metric)>,
        ) {
            for (k, v) in node {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match v {
                    MetricNode::Leaf(m) => out.push((p, m)),
                    MetricNode::Branch(b) => walk(&p, b, out),
                }
            }
        }
        let mut out = Vec::new();
        walk("", &self.0, &mut out);
        out
    }

    /// Every leaf's dotted path, in order.
    pub fn paths(&self) -> Vec<String> {
        fn walk(prefix: &str, node: &BTreeMap<String, MetricNode>, out: &mut Vec<String>) {
            for (k, v) in node {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match v {
                    MetricNode::Leaf(_) => out.push(p),
                    MetricNode::Branch(b) => walk(&p, b, out),
                }
            }
        }
        let mut out = Vec::new();
        walk("", &self.0, &mut out);
        out
    }
}

/// A model directory and the files read from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelInput {
    pub dir: String,
    pub files: Vec<FileDigest>,
}

/// A JSONL split and the digest of its bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataInput {
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
    pub records: usize,
    pub question_answer_records: usize,
}

/// A metric that could not be computed, and why (a spec that names it then cannot pass).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Omitted {
    pub path: String,
    pub reason: String,
}

/// The settings that decide every number in the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub confidence: f64,
    pub params: String,
    pub min_k: f64,
    pub min_k_pp_sigma2_floor: f64,
    pub greedy_slack_tokens: usize,
    pub hessian_records: usize,
    pub influence_records: usize,
    pub lanczos_steps: usize,
    pub cg_tolerance: f64,
    pub cg_max_iterations: usize,
    /// The damping asked for; `None` when it was chosen from the spectrum.
    pub damping: Option<f64>,
    /// Question–answer records per split (a seeded sample) with greedy answers and truth ratios.
    pub generated_records: usize,
}

/// Influence analysis at the unlearned parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfluenceEvidence {
    pub params: String,
    pub parameters: usize,
    pub hessian_records: usize,
    pub hessian_tokens: usize,
    pub hvp_check: HvpCheck,
    pub spectrum: Spectrum,
    pub damping: f64,
    pub damping_rule: String,
    pub self_influence_forget: Vec<SelfInfluence>,
    pub self_influence_holdout: Vec<SelfInfluence>,
    pub retain_records: usize,
    pub retain_loss: f64,
    pub retain_gradient_norm: f64,
    /// `None` when λ_min + damping ≤ 0 (see the assumption).
    pub distance_bound: Option<f64>,
    pub distance_bound_assumption: String,
    /// Per layer (0 = embedding output): mean cosine similarity original vs unlearned.
    pub activation_forget: Vec<f64>,
    pub activation_retain: Vec<f64>,
    pub activation_forget_records: Vec<Vec<f64>>,
    pub activation_retain_ids: Vec<String>,
    pub activation_retain_records: Vec<Vec<f64>>,
}

/// Membership-inference scores and ROC curves of one model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MiaEvidence {
    /// Per attack, members in `records.<model>.forget` order, non-members in holdout order.
    pub scores: BTreeMap<String, AttackScores>,
    pub curves: BTreeMap<String, Vec<RocPoint>>,
}

/// Per model role, per split, one evaluation per record in file order.
pub type Records = BTreeMap<String, BTreeMap<String, Vec<RecordEval>>>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    pub schema_version: u32,
    pub tool: String,
    pub seed: u64,
    pub settings: Settings,
    /// `original`, `unlearned`, `reference`.
    pub models: BTreeMap<String, ModelInput>,
    /// `forget`, `retain`, `holdout`, `utility`.
    pub data: BTreeMap<String, DataInput>,
    pub sample_sizes: BTreeMap<String, usize>,
    pub metrics: Metrics,
    pub omitted: Vec<Omitted>,
    /// Per model, per split, one entry per record in file order.
    pub records: Records,
    /// Per model (`unlearned`, `original`).
    pub mia: BTreeMap<String, MiaEvidence>,
    pub influence: Option<InfluenceEvidence>,
    /// The chat template question–answer prompts were rendered through, when the models ship
    /// one (absent: prompts were tokenized as written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template: Option<ChatTemplateUse>,
}

/// Which chat template rendered the prompts: its file (in the unlearned model's folder, whose
/// digest the model's files list) and the sha256 of its source text. The original's and the
/// reference's templates were checked to be the same text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatTemplateUse {
    pub file: String,
    pub source_sha256: String,
    /// What it was applied to.
    pub applied_to: String,
}

impl Evidence {
    /// The files of the model measured as `role` (`original`, `unlearned`, `reference`).
    pub fn model_files(&self, role: &str) -> &[FileDigest] {
        self.models.get(role).map_or(&[], |m| m.files.as_slice())
    }

    /// Per-record losses of `model` on `split`, in file order.
    pub fn losses(&self, model: &str, split: &str) -> Vec<f64> {
        self.records
            .get(model)
            .and_then(|m| m.get(split))
            .map(|rs| {
                rs.iter()
                    .map(|r| r.loss)
                    .filter(|x| x.is_finite())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The ROC curve of `attack` against `model`, if the evidence has one.
    pub fn curve(&self, model: &str, attack: &str) -> Option<&[RocPoint]> {
        self.mia.get(model)?.curves.get(attack).map(Vec::as_slice)
    }

    /// Pretty JSON with a final newline.
    pub fn to_bytes(&self) -> serde_json::Result<Vec<u8>> {
        let mut v = serde_json::to_vec_pretty(self)?;
        v.push(b'\n');
        Ok(v)
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let bytes = self.to_bytes().map_err(std::io::Error::other)?;
        write_atomic(path, &bytes)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordEval {
    pub id: String,
    /// The person or entity the record is about (JSONL `subject`): the unit of sampling that
    /// clustered statistics group by; a record without one is its own cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Scored target tokens.
    pub tokens: usize,
    /// Mean negative log-likelihood of the scored tokens.
    pub loss: f64,
    /// Mean of the lowest 20 % token log-probs (Min-K%; higher = more member-like).
    pub min_k: f64,
    /// Mean of the lowest 20 % Min-K%++ z-scores (higher = more member-like).
    pub min_k_pp: f64,
    /// zlib length of the scored text (the answer of a question–answer record).
    pub zlib_bytes: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qa: Option<QaEval>,
}

impl RecordEval {
    /// The record's cluster: its subject, or the record itself when it names none.
    pub fn cluster(&self) -> &str {
        self.subject.as_deref().unwrap_or(&self.id)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QaEval {
    pub exact_memorization: f64,
    pub extraction_strength: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub greedy: Option<GreedyEval>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truth_ratio: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GreedyEval {
    pub answer: String,
    /// The greedy tokens begin with the answer's tokens, or the greedy text begins with the
    /// answer not followed by a letter or digit (`evidence::oracle::reproduces`).
    pub exact_match: bool,
    pub rouge_l: f64,
}

/// One attack's scores: members (forget) and non-members (holdout), in record order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttackScores {
    pub members: Vec<f64>,
    pub nonmembers: Vec<f64>,
}

/// How far the exact HVP is from symmetric and from a finite-difference derivative of the
/// gradient, for seeded random unit vectors u and v.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HvpCheck {
    /// |u·Hv − v·Hu| / (‖u‖·‖Hv‖).
    pub symmetry: f64,
    /// max|Hv − (∇L(θ+εv) − ∇L(θ−εv))/(2ε)| / max|Hv|.
    pub finite_difference_relative_error: f64,
    pub finite_difference_step: f64,
}

/// Lanczos summary: the Ritz values and the extremes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spectrum {
    pub steps: usize,
    pub ritz_values: Vec<f64>,
    pub lambda_max: f64,
    pub lambda_min: f64,
}

/// One record's self-influence and the solve behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfInfluence {
    pub id: String,
    pub value: f64,
    pub gradient_norm: f64,
    pub cg: CgResult,
}

/// The solution and how well it solves the system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CgResult {
    #[serde(skip)]
    pub x: Vec<f64>,
    pub iterations: usize,
    /// ‖b − (H+λI)x‖ / ‖b‖ at the end (recursively updated).
    pub relative_residual: f64,
    pub converged: bool,
    /// True when a search direction had pᵀ(H+λI)p ≤ 0.
    pub negative_curvature: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_tree_inserts_and_finds_dotted_paths() {
        let mut m = Metrics::default();
        let p = Metric::Point { value: 1.0, n: 3 };
        m.insert("mia.loss.auc", p.clone());
        m.insert("forget.loss", p.clone());
        m.insert("privleak", p.clone());
        assert_eq!(m.get("mia.loss.auc"), Some(&p));
        assert_eq!(m.get("mia.loss"), None);
        assert_eq!(m.paths(), ["forget.loss", "mia.loss.auc", "privleak"]);
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<Metrics>(&json).unwrap(), m);
    }
}
