//! The statistics of an evidence file, derived from its per-record measurements: sample sizes,
//! every aggregate under `metrics`, the membership-inference attacks' scores and ROC curves, and
//! what could not be computed and why (`omitted`). Certification measures (`crate::evidence`) and
//! then calls [`derive`]; verification calls it again on a signed file's own per-record values
//! ([`Measured::signed`]) and checks that every statistic the file states follows from them. One
//! function serves both, so what is signed and what is checked cannot drift apart. Everything
//! here is float64 arithmetic in a fixed order on the values as the file holds them, so a
//! signed file re-derives to the same figures on any machine, up to how the platform's `exp` and
//! `ln` round (`report::figures::DERIVED`). It reads nothing but its arguments and never imports
//! candle.

use super::aggregate::{independent_ratio, mean_of, paired_ratio};
use super::attacks::{scores, Side};
use super::clustered::{clustered_delong, clustered_mean, clustered_proportion};
use super::equivalence::{ks_to_reference, KS_RESAMPLES};
use super::evidence::{
    AttackScores, DataInput, Evidence, GreedyEval, InfluenceEvidence, Metrics, MiaEvidence,
    Omitted, QaEval, RecordEval, Records,
};
use super::metric::{Metric, ATTACKS, KS_TO_REFERENCE, KS_TO_REFERENCE_SCORES, REFERENCE_PREFIX};
use super::stats::{
    ks_two_sample, roc_auc, roc_curve, tpr_at_fpr_held_out, StatsError, TprAtLowFpr,
};
use std::collections::BTreeMap;

/// The model roles whose attacks are derived, in the order the evidence lists their omissions.
const ROLES: [&str; 3] = ["unlearned", "original", "reference"];

/// Everything the statistics are computed from: what measuring recorded.
#[derive(Debug, Clone)]
pub struct Measured<'a> {
    /// The run's seed (the held-out TPR split and the distances' bootstrap draw from it).
    pub seed: u64,
    /// The splits as read (record counts).
    pub data: &'a BTreeMap<String, DataInput>,
    /// Per model role, per split, one evaluation per record in file order.
    pub records: &'a Records,
    /// Per model role: ‖∇ loss‖ of each forget record, then of each holdout record.
    pub grad_norms: BTreeMap<String, Vec<f64>>,
    /// The influence analysis, when it was run.
    pub influence: Option<&'a InfluenceEvidence>,
}

impl<'a> Measured<'a> {
    /// The measurements a signed evidence file holds: its records and influence analysis as they
    /// are, and the gradient norms its `grad_norm` attack scores are the negation of.
    pub fn signed(e: &'a Evidence) -> Measured<'a> {
        let grad_norms = e
            .mia
            .iter()
            .filter_map(|(role, m)| {
                let s = m.scores.get("grad_norm")?;
                let norms = s.members.iter().chain(&s.nonmembers).map(|x| -x).collect();
                Some((role.clone(), norms))
            })
            .collect();
        Measured {
            seed: e.seed,
            data: &e.data,
            records: &e.records,
            grad_norms,
            influence: e.influence.as_ref(),
        }
    }
}

/// What [`derive`] computes: the evidence file's fields of the same names.
#[derive(Debug, Clone, PartialEq)]
pub struct Derived {
    pub sample_sizes: BTreeMap<String, usize>,
    pub metrics: Metrics,
    pub omitted: Vec<Omitted>,
    pub mia: BTreeMap<String, MiaEvidence>,
}

/// Why the statistics could not be derived from a set of measurements.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeriveError {
    #[error(transparent)]
    Stats(#[from] StatsError),
    #[error("the measurements lack {0}")]
    Missing(String),
    #[error("{what}: {got} values for {want} records")]
    Length {
        what: String,
        got: usize,
        want: usize,
    },
}

/// Every statistic of the evidence, from the measurements alone.
pub fn derive(m: &Measured) -> Result<Derived, DeriveError> {
    let mut d = Deriving {
        m,
        metrics: Metrics::default(),
        omitted: Vec::new(),
    };
    let mut mia = BTreeMap::new();
    for role in ROLES {
        let Some(norms) = m.grad_norms.get(role) else {
            continue;
        };
        let prefix = match role {
            "original" => "original.",
            "reference" => REFERENCE_PREFIX,
            _ => "",
        };
        mia.insert(role.to_string(), d.mia(role, prefix, norms)?);
    }
    for split in m.data.keys() {
        let unlearned = d.split("unlearned", split)?;
        let original = d.split("original", split)?;
        d.split_metrics("", split, unlearned, Some(original));
        d.split_metrics("original.", split, original, None);
    }
    d.reference_metrics()?;
    match m.influence {
        Some(inf) => d.influence(inf),
        None => d.omit("influence".into(), "not requested (--no-influence)"),
    }
    Ok(Derived {
        sample_sizes: sample_sizes(m)?,
        metrics: d.metrics,
        omitted: d.omitted,
        mia,
    })
}

/// TOFU's per-record transform of a truth ratio for the forget split (closer to 1 is better)
/// or any other split (higher is better).
pub fn truth_ratio_score(r: f64, forget: bool) -> f64 {
    if forget {
        r.min(1.0 / r)
    } else {
        (1.0 - r).max(0.0)
    }
}

/// The bound on the distance from the unlearned parameters to the retain loss's minimiser:
/// ‖∇L_retain‖ / (λ_min + damping); `None` when λ_min + damping ≤ 0 (the local-convexity
/// assumption fails).
pub fn distance_bound(gradient_norm: f64, lambda_min: f64, damping: f64) -> Option<f64> {
    let denom = lambda_min + damping;
    (denom > 0.0).then(|| gradient_norm / denom)
}

/// Per layer (`layers` of them), the mean over records of one side's activation cosines; none
/// when the side has no records.
pub fn layer_means(records: &[Vec<f64>], layers: usize) -> Vec<Metric> {
    (0..layers)
        .filter_map(|l| {
            let col: Vec<f64> = records
                .iter()
                .map(|r| r.get(l).copied().unwrap_or(f64::NAN))
                .collect();
            mean_of(&col)
        })
        .collect()
}

fn sample_sizes(m: &Measured) -> Result<BTreeMap<String, usize>, DeriveError> {
    let mut out = BTreeMap::new();
    let unlearned = m
        .records
        .get("unlearned")
        .ok_or_else(|| DeriveError::Missing("records.unlearned".into()))?;
    for (split, e) in unlearned {
        let generated = e
            .iter()
            .filter(|r| r.qa.as_ref().is_some_and(|q| q.greedy.is_some()))
            .count();
        out.insert(format!("{split}_generated"), generated);
    }
    for (k, d) in m.data {
        out.insert(k.clone(), d.records);
        out.insert(format!("{k}_question_answer"), d.question_answer_records);
    }
    if let Some(i) = m.influence {
        out.insert("hessian".into(), i.hessian_records);
        out.insert("influence_forget".into(), i.self_influence_forget.len());
        out.insert("influence_holdout".into(), i.self_influence_holdout.len());
    }
    Ok(out)
}

struct Deriving<'a> {
    m: &'a Measured<'a>,
    metrics: Metrics,
    omitted: Vec<Omitted>,
}

impl<'a> Deriving<'a> {
    fn omit(&mut self, path: String, reason: &str) {
        self.omitted.push(Omitted {
            path,
            reason: reason.to_string(),
        });
    }

    /// The evaluations of `role` on `split`.
    fn split(&self, role: &str, split: &str) -> Result<&'a [RecordEval], DeriveError> {
        self.m
            .records
            .get(role)
            .and_then(|r| r.get(split))
            .map(Vec::as_slice)
            .ok_or_else(|| DeriveError::Missing(format!("records.{role}.{split}")))
    }

    fn mia(&mut self, role: &str, prefix: &str, norms: &[f64]) -> Result<MiaEvidence, DeriveError> {
        let (f, h) = (self.split(role, "forget")?, self.split(role, "holdout")?);
        if norms.len() != f.len() + h.len() {
            return Err(DeriveError::Length {
                what: format!("the gradient norms of {role}"),
                got: norms.len(),
                want: f.len() + h.len(),
            });
        }
        let (member_norms, nonmember_norms) = norms.split_at(f.len());
        let col = |e: &[RecordEval], pick: fn(&RecordEval) -> f64| {
            e.iter().map(pick).collect::<Vec<f64>>()
        };
        // Per side: losses, zlib lengths, Min-K% and Min-K%++ scores.
        type Columns = (Vec<f64>, Vec<usize>, Vec<f64>, Vec<f64>);
        let sides: Vec<Columns> = [f, h]
            .iter()
            .map(|e| {
                (
                    col(e, |r| r.loss),
                    e.iter().map(|r| r.zlib_bytes).collect(),
                    col(e, |r| r.min_k),
                    col(e, |r| r.min_k_pp),
                )
            })
            .collect();
        let mut out = MiaEvidence::default();
        for attack in ATTACKS {
            let reference_role = match attack {
                "ref_original" if role == "original" => {
                    self.omit(
                        format!("{prefix}mia.{attack}"),
                        "the original model cannot be its own reference",
                    );
                    continue;
                }
                "ref_reference" if role == "reference" => {
                    self.omit(
                        format!("{prefix}mia.{attack}"),
                        "the reference model cannot be its own reference",
                    );
                    continue;
                }
                "ref_original" => Some("original"),
                "ref_reference" => Some("reference"),
                _ => None,
            };
            let mut two = Vec::new();
            for (k, (split, norms)) in [("forget", member_norms), ("holdout", nonmember_norms)]
                .into_iter()
                .enumerate()
            {
                let (loss, zlib, min_k, min_k_pp) = &sides[k];
                let side = Side {
                    loss,
                    zlib_bytes: zlib,
                    min_k,
                    min_k_pp,
                };
                let reference = match reference_role.map(|r| (r, self.split(r, split))) {
                    Some((_, Ok(e))) if e.len() != loss.len() => {
                        return Err(DeriveError::Length {
                            what: format!("records.{}.{split}", reference_role.unwrap_or("")),
                            got: e.len(),
                            want: loss.len(),
                        })
                    }
                    Some((_, Ok(e))) => Some(col(e, |r| r.loss)),
                    _ => None,
                };
                two.push(scores(attack, &side, reference.as_deref(), Some(norms)));
            }
            let (Some(members), Some(nonmembers)) = (two[0].take(), two[1].take()) else {
                self.omit(
                    format!("{prefix}mia.{attack}"),
                    "no reference model was given (--reference)",
                );
                continue;
            };
            let s = AttackScores {
                members,
                nonmembers,
            };
            let p = format!("{prefix}mia.{attack}");
            // The AUC's variance clustered by subject (records of one person are not
            // independent draws); a record without a subject is its own cluster.
            let (fc, hc): (Vec<&str>, Vec<&str>) = (
                f.iter().map(RecordEval::cluster).collect(),
                h.iter().map(RecordEval::cluster).collect(),
            );
            let auc = clustered_delong(&s.members, &fc, &s.nonmembers, &hc)?;
            self.metrics.insert(&format!("{p}.auc"), Metric::from(auc));
            // TPR at a low FPR: the threshold fitted on one seeded half of the non-members and
            // judged on the other, so the bound is not flattered by fitting on what it tests.
            for (name, fpr) in [("tpr_at_1pct_fpr", 0.01), ("tpr_at_5pct_fpr", 0.05)] {
                match tpr_at_fpr_held_out(&s.members, &s.nonmembers, fpr, self.m.seed)? {
                    TprAtLowFpr::Measured(t) => self.metrics.insert(
                        &format!("{p}.{name}"),
                        Metric::Proportion {
                            value: t.tpr(),
                            successes: t.true_positives,
                            trials: t.members,
                        },
                    ),
                    TprAtLowFpr::NeedsNonmembers { have, need, .. } => self.omit(
                        format!("{p}.{name}"),
                        &format!("needs ≥ {need} non-members to fit and test a threshold at this FPR; the holdout has {have}"),
                    ),
                }
            }
            out.curves
                .insert(attack.to_string(), roc_curve(&s.members, &s.nonmembers)?);
            out.scores.insert(attack.to_string(), s);
        }
        Ok(out)
    }

    fn split_metrics(
        &mut self,
        prefix: &str,
        split: &str,
        e: &[RecordEval],
        original: Option<&[RecordEval]>,
    ) {
        let p = format!("{prefix}{split}");
        let clusters: Vec<&str> = e.iter().map(RecordEval::cluster).collect();
        let loss: Vec<f64> = e.iter().map(|r| r.loss).collect();
        self.insert_mean(&format!("{p}.loss"), &loss, &clusters);
        let tokens: usize = e.iter().map(|r| r.tokens).sum();
        let nll: f64 = e.iter().map(|r| r.loss * r.tokens as f64).sum();
        self.metrics.insert(
            &format!("{p}.perplexity"),
            Metric::Point {
                value: (nll / tokens.max(1) as f64).exp(),
                n: e.len(),
            },
        );
        if let Some(o) = original {
            let ol: Vec<f64> = o.iter().map(|r| r.loss).collect();
            match paired_ratio(&loss, &ol) {
                Some(m) => self.metrics.insert(&format!("{p}.loss_ratio"), m),
                None => self.omit(
                    format!("{p}.loss_ratio"),
                    "the original's mean loss is zero",
                ),
            }
            // The same comparison in absolute terms, meaningful at any loss scale: the mean
            // per-record loss change in nats per token (a ratio of two losses near zero, as on a
            // memorised retain set, is noise).
            let rise: Vec<f64> = loss.iter().zip(&ol).map(|(u, o)| u - o).collect();
            self.insert_mean(&format!("{p}.loss_increase"), &rise, &clusters);
            self.answers_lost(&p, e, o);
        }
        let qa: Vec<(&str, &QaEval)> = e
            .iter()
            .filter_map(|r| r.qa.as_ref().map(|q| (r.cluster(), q)))
            .collect();
        if qa.is_empty() {
            for m in [
                "exact_memorization",
                "extraction_strength",
                "exact_match",
                "rouge_l",
                "truth_ratio",
            ] {
                self.omit(
                    format!("{p}.{m}"),
                    "the split has no question–answer records",
                );
            }
            return;
        }
        let qa_clusters: Vec<&str> = qa.iter().map(|(c, _)| *c).collect();
        let em: Vec<f64> = qa.iter().map(|(_, q)| q.exact_memorization).collect();
        let es: Vec<f64> = qa.iter().map(|(_, q)| q.extraction_strength).collect();
        self.insert_mean(&format!("{p}.exact_memorization"), &em, &qa_clusters);
        self.insert_mean(&format!("{p}.extraction_strength"), &es, &qa_clusters);
        let greedy: Vec<(&str, &GreedyEval)> = qa
            .iter()
            .filter_map(|(c, q)| q.greedy.as_ref().map(|g| (*c, g)))
            .collect();
        if !greedy.is_empty() {
            let g_clusters: Vec<&str> = greedy.iter().map(|(c, _)| *c).collect();
            let hits: Vec<bool> = greedy.iter().map(|(_, g)| g.exact_match).collect();
            match clustered_proportion(&hits, &g_clusters) {
                Ok(m) => self
                    .metrics
                    .insert(&format!("{p}.exact_match"), Metric::from(m)),
                Err(e) => self.omit(format!("{p}.exact_match"), &e.to_string()),
            }
            let rouge: Vec<f64> = greedy.iter().map(|(_, g)| g.rouge_l).collect();
            self.insert_mean(&format!("{p}.rouge_l"), &rouge, &g_clusters);
        }
        let tr: Vec<(&str, f64)> = qa
            .iter()
            .filter_map(|(c, q)| {
                q.truth_ratio
                    .map(|r| (*c, truth_ratio_score(r, split == "forget")))
            })
            .collect();
        if tr.is_empty() {
            if !greedy.is_empty() {
                self.omit(
                    format!("{p}.truth_ratio"),
                    "no record has perturbed answers",
                );
            }
        } else {
            let (c, v): (Vec<&str>, Vec<f64>) = tr.into_iter().unzip();
            self.insert_mean(&format!("{p}.truth_ratio"), &v, &c);
        }
    }

    /// `<p>.exact_match_drop`: the original's greedy exact-match rate minus the unlearned
    /// model's, paired on the records both answered (the same seeded sample): the share of
    /// answers the unlearning took away (negative: gained), clustered by subject.
    fn answers_lost(&mut self, p: &str, unlearned: &[RecordEval], original: &[RecordEval]) {
        let hit = |r: &RecordEval| {
            r.qa.as_ref()
                .and_then(|q| q.greedy.as_ref())
                .map(|g| f64::from(u8::from(g.exact_match)))
        };
        let paired: Vec<(&str, f64)> = unlearned
            .iter()
            .zip(original)
            .filter_map(|(u, o)| Some((u.cluster(), hit(o)? - hit(u)?)))
            .collect();
        if paired.is_empty() {
            return;
        }
        let (c, d): (Vec<&str>, Vec<f64>) = paired.into_iter().unzip();
        let path = format!("{p}.exact_match_drop");
        if d.iter().all(|&x| x == 0.0) {
            // No answer changed: a clustered mean would have a zero standard error and claim the
            // drop is exactly 0. The rate of lost answers bounds the net drop from above, and
            // with none lost its Clopper–Pearson bound (0 of n, on the design-effect-adjusted
            // sample) is the honest upper bound: the same sample could have missed a rare loss.
            match clustered_proportion(&vec![false; d.len()], &c) {
                Ok(m) => self.metrics.insert(&path, Metric::from(m)),
                Err(e) => self.omit(path, &e.to_string()),
            }
        } else {
            self.insert_mean(&path, &d, &c);
        }
    }

    /// A mean of per-record values with a standard error clustered by subject (CR1); a split
    /// with fewer than two subjects gets the record-level standard error instead, which says so
    /// by its kind (`normal`).
    fn insert_mean(&mut self, path: &str, values: &[f64], clusters: &[&str]) {
        match clustered_mean(values, clusters) {
            Ok(m) => self.metrics.insert(path, Metric::from(m)),
            Err(_) => match mean_of(values) {
                Some(m) => self.metrics.insert(path, m),
                None => self.omit(path.to_string(), "no values to average"),
            },
        }
    }

    fn reference_metrics(&mut self) -> Result<(), DeriveError> {
        if !self.m.records.contains_key("reference") {
            let distances = KS_TO_REFERENCE_SCORES.map(|s| format!("{KS_TO_REFERENCE}.{s}"));
            for p in ["privleak", "forget_quality"]
                .into_iter()
                .chain(distances.iter().map(String::as_str))
            {
                self.omit(p.to_string(), "no reference model was given (--reference)");
            }
            return Ok(());
        }
        let (forget, holdout) = (
            self.split("reference", "forget")?,
            self.split("reference", "holdout")?,
        );
        let unlearned = self.split("unlearned", "forget")?;
        // MUSE's PrivLeak on the Min-K% attack, with MUSE's AUC orientation (1 − ours).
        let a_u = self.metrics.get("mia.min_k.auc").map(Metric::value);
        let members: Vec<f64> = forget.iter().map(|r| r.min_k).collect();
        let nonmembers: Vec<f64> = holdout.iter().map(|r| r.min_k).collect();
        let a_r = roc_auc(&members, &nonmembers)?;
        if let Some(a_u) = a_u {
            let (u, r) = (1.0 - a_u, 1.0 - a_r);
            if r > 0.0 {
                self.metrics.insert(
                    "privleak",
                    Metric::Point {
                        value: (u - r) / r,
                        n: members.len(),
                    },
                );
            } else {
                self.omit("privleak".into(), "the reference model's Min-K% AUC is 1");
            }
        }
        let tr = |e: &[RecordEval]| -> Vec<f64> {
            e.iter()
                .filter_map(|r| r.qa.as_ref().and_then(|q| q.truth_ratio))
                .collect()
        };
        let (tu, trf) = (tr(unlearned), tr(forget));
        if tu.is_empty() || trf.is_empty() {
            self.omit(
                "forget_quality".into(),
                "the forget split has no question–answer records with perturbed answers",
            );
        } else {
            let ks = ks_two_sample(&tu, &trf)?;
            self.metrics.insert(
                "forget_quality",
                Metric::Point {
                    value: ks.p_value,
                    n: tu.len(),
                },
            );
        }
        // The equivalence figures: the KS distance between the unlearned and the reference
        // model's per-record scores of the forget records, with a person-level bootstrap drawn
        // from the run's seed (`judge::equivalence`).
        for score in KS_TO_REFERENCE_SCORES {
            let path = format!("{KS_TO_REFERENCE}.{score}");
            match ks_to_reference(score, unlearned, forget, KS_RESAMPLES, self.m.seed) {
                Ok(ks) => self.metrics.insert(&path, Metric::from(ks)),
                Err(e) => self.omit(path, &e.to_string()),
            }
        }
        Ok(())
    }

    /// The influence analysis's aggregates: the self-influence ratio of forget to holdout
    /// records, the distance bound, and the per-layer mean activation cosines.
    fn influence(&mut self, inf: &InfluenceEvidence) {
        let values =
            |v: &[super::evidence::SelfInfluence]| v.iter().map(|s| s.value).collect::<Vec<f64>>();
        match independent_ratio(
            &values(&inf.self_influence_forget),
            &values(&inf.self_influence_holdout),
        ) {
            Some(m) => self.metrics.insert("influence.self_influence_ratio", m),
            None => self.omit(
                "influence.self_influence_ratio".into(),
                "no self-influence could be computed (zero mean)",
            ),
        }
        match distance_bound(
            inf.retain_gradient_norm,
            inf.spectrum.lambda_min,
            inf.damping,
        ) {
            Some(b) => self.metrics.insert(
                "influence.distance_bound",
                Metric::Point {
                    value: b,
                    n: inf.retain_records,
                },
            ),
            None => self.omit(
                "influence.distance_bound".into(),
                "λ_min + damping ≤ 0: the local-convexity assumption fails",
            ),
        }
        let layers = inf.activation_forget_records.first().map_or(0, Vec::len);
        for (side, records) in [
            ("forget", &inf.activation_forget_records),
            ("retain", &inf.activation_retain_records),
        ] {
            for (l, m) in layer_means(records, layers).into_iter().enumerate() {
                self.metrics
                    .insert(&format!("influence.activation.layer_{l}.{side}"), m);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(split: &str, i: usize, x: f64, qa: bool) -> RecordEval {
        RecordEval {
            id: format!("{split}{i}"),
            subject: (i % 3 != 0).then(|| format!("p{}", i / 2)),
            tokens: i % 4,
            loss: x,
            min_k: -x,
            min_k_pp: x / 3.0,
            zlib_bytes: i % 5,
            qa: qa.then(|| QaEval {
                exact_memorization: x.abs().min(1.0),
                extraction_strength: 0.5,
                greedy: (i % 2 == 0).then(|| GreedyEval {
                    answer: "a".into(),
                    exact_match: i % 4 == 0,
                    rouge_l: 0.25,
                }),
                truth_ratio: (i % 3 == 0).then_some(x.abs()),
            }),
        }
    }

    /// Per split a record count; values; per role whether its forget split has one record more
    /// than the others' and whether its gradient norms are one short; whether there is a
    /// reference model: what a hostile evidence file may hold (any lengths, ties, zeros, huge
    /// values; JSON carries no NaN or infinity).
    #[allow(clippy::type_complexity)]
    fn measurements() -> impl Strategy<Value = (Vec<usize>, Vec<f64>, Vec<(bool, bool)>, bool, bool)>
    {
        let value = prop_oneof![
            4 => (-8i32..8).prop_map(|v| f64::from(v) / 2.0),
            1 => Just(0.0),
            1 => Just(1e308),
            1 => Just(-1e308)
        ];
        let skew = (prop::bool::weighted(0.1), prop::bool::weighted(0.1));
        (
            prop::collection::vec(0usize..9, 4),
            prop::collection::vec(value, 64),
            prop::collection::vec(skew, 3),
            any::<bool>(),
            any::<bool>(),
        )
    }

    proptest! {
        #[test]
        fn prop_derive_never_panics_on_hostile_measurements(
            (counts, values, skew, reference, qa) in measurements()
        ) {
            let splits = ["forget", "holdout", "retain", "utility"];
            let roles = if reference { &ROLES[..] } else { &ROLES[..2] };
            let mut records = Records::new();
            let mut k = 0;
            for (role, (more, _)) in roles.iter().zip(&skew) {
                let mut m = BTreeMap::new();
                for (j, split) in splits.iter().enumerate() {
                    let n = counts[j] + usize::from(*more && j == 0);
                    let rs = (0..n)
                        .map(|i| {
                            k += 1;
                            record(split, i, values[k % values.len()], qa)
                        })
                        .collect();
                    m.insert(split.to_string(), rs);
                }
                records.insert(role.to_string(), m);
            }
            let data = splits
                .iter()
                .map(|s| {
                    (s.to_string(), DataInput {
                        path: format!("{s}.jsonl"),
                        sha256: String::new(),
                        bytes: 0,
                        records: 3,
                        question_answer_records: 1,
                    })
                })
                .collect();
            let grad_norms = roles
                .iter()
                .zip(&skew)
                .map(|(r, &(more, short))| {
                    let n = (counts[0] + counts[1] + usize::from(more))
                        .saturating_sub(usize::from(short));
                    (r.to_string(), values.iter().cycle().take(n).map(|x| x.abs()).collect())
                })
                .collect();
            let m = Measured { seed: 3, data: &data, records: &records, grad_norms, influence: None };
            // Whatever the file holds, an answer or an error: never a panic.
            let _ = derive(&m);
        }
    }

    #[test]
    fn truth_ratio_scores_by_hand() {
        // TOFU's transform: min(R, 1/R) on the forget split, max(0, 1 − R) elsewhere.
        let r = 0.375;
        assert!((truth_ratio_score(r, true) - 0.375).abs() < 1e-15);
        assert!((truth_ratio_score(r, false) - 0.625).abs() < 1e-15);
        assert!((truth_ratio_score(2.0, true) - 0.5).abs() < 1e-15);
    }

    #[test]
    fn the_distance_bound_needs_positive_curvature() {
        assert_eq!(distance_bound(3.0, 0.5, 1.0), Some(2.0));
        assert_eq!(distance_bound(3.0, -2.0, 1.0), None);
        assert_eq!(distance_bound(3.0, -1.0, 1.0), None);
    }
}
