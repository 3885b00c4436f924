//! Statistics on score samples: the numbers the membership-inference suite and the verdicts rest on.
//!
//! This module owns ROC AUC (ties count one half) with DeLong's variance and confidence bounds,
//! ROC curves and TPR at a fixed FPR with Clopper–Pearson intervals (and, honestly, with the
//! threshold fitted on one seeded half of the non-members and measured on the other), the two-sample
//! Kolmogorov–Smirnov and Mann–Whitney tests, and a seeded, stratified bootstrap. Its inputs are
//! plain `f64` scores of two samples: members (records the model was trained on — the positives;
//! a higher score means "more member-like") and non-members. It knows nothing of models, tensors
//! or candle, and never decides a verdict: it returns estimates and bounds, the spec evaluator
//! judges them. Distributions and the two-sample tests come from `statrs`; only what no crate
//! provides (AUC with ties, DeLong's placements, the ROC walk, the bootstrap loop) is written here.

use std::cmp::Ordering;
use std::fmt;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use statrs::distribution::{Beta, ContinuousCDF, Normal};
use statrs::statistics::{Data, OrderStatistics, RankTieBreaker, Statistics};
use statrs::stats_tests::ks_test::{ks_twosample, KSTwoSampleAlternativeMethod};
use statrs::stats_tests::mannwhitneyu::{mannwhitneyu, MannWhitneyUMethod};
use statrs::stats_tests::{Alternative, NaNPolicy};

/// Which of the two score samples an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sample {
    Members,
    Nonmembers,
    /// The per-record values of a mean or a proportion.
    Values,
    /// The first and the second of two paired samples (two models' scores of the same records).
    First,
    Second,
}

impl fmt::Display for Sample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Sample::Members => "member",
            Sample::Nonmembers => "non-member",
            Sample::Values => "value",
            Sample::First => "first",
            Sample::Second => "second",
        })
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatsError {
    #[error("the {0} sample is empty")]
    EmptySample(Sample),
    #[error("the {sample} sample has a non-finite score ({value}) at index {index}")]
    NonFiniteScore {
        sample: Sample,
        index: usize,
        value: f64,
    },
    #[error("the {sample} sample has {got} scores, but {what} needs at least {need}")]
    TooFewScores {
        sample: Sample,
        got: usize,
        need: usize,
        what: &'static str,
    },
    #[error("{what} must lie in {range}, got {value}")]
    OutOfRange {
        what: &'static str,
        range: &'static str,
        value: f64,
    },
    #[error("{successes} successes out of {trials} trials is not a binomial count")]
    InvalidCount { successes: u64, trials: u64 },
    #[error("paired samples differ in length: {first} and {second} scores")]
    Unpaired { first: usize, second: usize },
    #[error("the bootstrap needs at least one resample")]
    NoResamples,
    #[error("{what} came out non-finite ({value})")]
    NonFiniteResult { what: &'static str, value: f64 },
    #[error("the {sample} sample has {scores} scores but {labels} cluster labels")]
    ClusterLabels {
        sample: Sample,
        scores: usize,
        labels: usize,
    },
    #[error("the {sample} sample comes from {got} clusters, but {what} needs at least {need}")]
    TooFewClusters {
        sample: Sample,
        got: usize,
        need: usize,
        what: &'static str,
    },
    #[error("{what} came out negative ({value}): the clusters are too few or too unequal")]
    NegativeVariance { what: &'static str, value: f64 },
    #[error("statrs {0}")]
    Statrs(String),
}

/// A closed interval `[lower, upper]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub lower: f64,
    pub upper: f64,
}

// ---------------------------------------------------------------------------------------------
// Validation shared by every entry point.

pub(crate) fn check_sample(
    sample: Sample,
    scores: &[f64],
    need: usize,
    what: &'static str,
) -> Result<(), StatsError> {
    if scores.is_empty() {
        return Err(StatsError::EmptySample(sample));
    }
    if let Some((index, &value)) = scores.iter().enumerate().find(|(_, s)| !s.is_finite()) {
        return Err(StatsError::NonFiniteScore {
            sample,
            index,
            value,
        });
    }
    if scores.len() < need {
        return Err(StatsError::TooFewScores {
            sample,
            got: scores.len(),
            need,
            what,
        });
    }
    Ok(())
}

/// Both samples must be non-empty, hold `need` scores or more, and be finite. Infinite scores are
/// refused along with NaN: statrs' midranks do not tie `inf` with `inf`.
fn check_samples(
    members: &[f64],
    nonmembers: &[f64],
    need: usize,
    what: &'static str,
) -> Result<(), StatsError> {
    check_sample(Sample::Members, members, need, what)?;
    check_sample(Sample::Nonmembers, nonmembers, need, what)
}

/// The tail mass `α` on each side of a two-sided interval at `level` ∈ (0, 1).
fn two_sided_alpha(level: f64) -> Result<f64, StatsError> {
    if level > 0.0 && level < 1.0 {
        Ok((1.0 - level) / 2.0)
    } else {
        Err(StatsError::OutOfRange {
            what: "confidence level",
            range: "(0, 1)",
            value: level,
        })
    }
}

/// The tail mass `α = 1 − confidence` of a one-sided bound. Confidence below one half is refused:
/// such a "lower bound" would lie above its own estimate.
pub(crate) fn one_sided_alpha(confidence: f64) -> Result<f64, StatsError> {
    if (0.5..1.0).contains(&confidence) {
        Ok(1.0 - confidence)
    } else {
        Err(StatsError::OutOfRange {
            what: "one-sided confidence",
            range: "[0.5, 1)",
            value: confidence,
        })
    }
}

pub(crate) fn finite(what: &'static str, value: f64) -> Result<f64, StatsError> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(StatsError::NonFiniteResult { what, value })
    }
}

fn probability(what: &'static str, value: f64) -> Result<f64, StatsError> {
    Ok(finite(what, value)?.clamp(0.0, 1.0))
}

fn standard_normal_quantile(p: f64) -> Result<f64, StatsError> {
    Normal::standard()
        .try_inverse_cdf(p)
        .map_err(|e| StatsError::Statrs(format!("normal quantile: {e}")))
}

// ---------------------------------------------------------------------------------------------
// ROC AUC and DeLong. Hand-written: no crate computes AUC with ties or DeLong's variance.

/// For each score in `of`, how many scores in `against` lie below it, ties counting one half:
/// DeLong's "placement", computed as Sun & Xu (2014) do from midranks (statrs), as the rank in
/// `of ∪ against` minus the rank in `of`. Midranks are half-integers, so this is exact.
pub(crate) fn placements(of: &[f64], against: &[f64]) -> Vec<f64> {
    let within = Data::new(of.to_vec()).ranks(RankTieBreaker::Average);
    let pooled = Data::new([of, against].concat()).ranks(RankTieBreaker::Average);
    pooled.iter().zip(&within).map(|(p, w)| p - w).collect()
}

/// AUC = Σ member placements / (m·n) = U/(m·n); the sum of half-integers is exact.
fn auc_from_placements(member_placements: &[f64], nonmembers: usize) -> f64 {
    member_placements.iter().sum::<f64>() / (member_placements.len() as f64 * nonmembers as f64)
}

/// ROC AUC with members as positives: the probability that a random member outscores a random
/// non-member, ties counting one half (sklearn's `roc_auc_score`).
pub fn roc_auc(members: &[f64], nonmembers: &[f64]) -> Result<f64, StatsError> {
    check_samples(members, nonmembers, 1, "the ROC AUC")?;
    Ok(auc_from_placements(
        &placements(members, nonmembers),
        nonmembers.len(),
    ))
}

/// An AUC with DeLong's variance estimate, from `m` members and `n` non-members.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AucEstimate {
    pub auc: f64,
    pub variance: f64,
    pub m: usize,
    pub n: usize,
}

impl AucEstimate {
    pub fn std_error(&self) -> f64 {
        self.variance.sqrt()
    }

    /// Two-sided normal-approximation interval at `level` (e.g. 0.95), clamped to [0, 1].
    pub fn interval(&self, level: f64) -> Result<Interval, StatsError> {
        let half_width =
            standard_normal_quantile(1.0 - two_sided_alpha(level)?)? * self.std_error();
        Ok(Interval {
            lower: (self.auc - half_width).clamp(0.0, 1.0),
            upper: (self.auc + half_width).clamp(0.0, 1.0),
        })
    }

    /// One-sided lower bound at `confidence` ∈ [0.5, 1): AUC ≥ bound with that confidence.
    pub fn lower_bound(&self, confidence: f64) -> Result<f64, StatsError> {
        let z = standard_normal_quantile(1.0 - one_sided_alpha(confidence)?)?;
        Ok((self.auc - z * self.std_error()).clamp(0.0, 1.0))
    }

    /// One-sided upper bound at `confidence` ∈ [0.5, 1): AUC ≤ bound with that confidence.
    pub fn upper_bound(&self, confidence: f64) -> Result<f64, StatsError> {
        let z = standard_normal_quantile(1.0 - one_sided_alpha(confidence)?)?;
        Ok((self.auc + z * self.std_error()).clamp(0.0, 1.0))
    }
}

/// AUC and its variance by fast DeLong (DeLong et al. 1988; Sun & Xu 2014): the variance is
/// S₁₀/m + S₀₁/n, the sample variances (n − 1 denominators) of the member and non-member
/// placements. Needs two scores per sample. When the samples are perfectly separated the variance
/// is zero and every bound equals the AUC: the estimate says nothing about its own uncertainty.
pub fn delong(members: &[f64], nonmembers: &[f64]) -> Result<AucEstimate, StatsError> {
    check_samples(members, nonmembers, 2, "DeLong's variance")?;
    let (m, n) = (members.len(), nonmembers.len());
    let member_placements = placements(members, nonmembers);
    let v10: Vec<f64> = member_placements.iter().map(|p| p / n as f64).collect();
    let v01: Vec<f64> = placements(nonmembers, members)
        .iter()
        .map(|p| 1.0 - p / m as f64)
        .collect();
    let variance = v10.iter().variance() / m as f64 + v01.iter().variance() / n as f64;
    let variance = finite("DeLong variance", variance)?;
    Ok(AucEstimate {
        auc: auc_from_placements(&member_placements, n),
        variance,
        m,
        n,
    })
}

// ---------------------------------------------------------------------------------------------
// ROC curve and TPR at a fixed FPR.

/// One step of the ROC walk: flagging every score ≥ `threshold` as a member catches
/// `true_positives` members and `false_positives` non-members. `None` flags nothing.
struct RocStep {
    threshold: Option<f64>,
    true_positives: usize,
    false_positives: usize,
}

/// The ROC walk from the highest threshold down, one step per distinct score (tied scores of
/// both samples enter together, giving a diagonal segment).
fn roc_steps(members: &[f64], nonmembers: &[f64]) -> Vec<RocStep> {
    let mut labelled: Vec<(f64, bool)> = members.iter().map(|&s| (s, true)).collect();
    labelled.extend(nonmembers.iter().map(|&s| (s, false)));
    labelled.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(Ordering::Equal));
    let mut steps = vec![RocStep {
        threshold: None,
        true_positives: 0,
        false_positives: 0,
    }];
    let (mut tp, mut fp) = (0, 0);
    for (i, &(score, is_member)) in labelled.iter().enumerate() {
        if is_member {
            tp += 1;
        } else {
            fp += 1;
        }
        if labelled.get(i + 1).is_none_or(|next| next.0 != score) {
            steps.push(RocStep {
                threshold: Some(score),
                true_positives: tp,
                false_positives: fp,
            });
        }
    }
    steps
}

/// A point of the ROC curve. `threshold` is the score at or above which records are flagged as
/// members; `None` marks the origin, where nothing is flagged.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RocPoint {
    pub threshold: Option<f64>,
    pub fpr: f64,
    pub tpr: f64,
}

/// The empirical ROC curve for plotting, from (0, 0) to (1, 1) in order of falling threshold,
/// one point per distinct score (sklearn's `roc_curve` with `drop_intermediate=False`).
pub fn roc_curve(members: &[f64], nonmembers: &[f64]) -> Result<Vec<RocPoint>, StatsError> {
    check_samples(members, nonmembers, 1, "the ROC curve")?;
    let (m, n) = (members.len() as f64, nonmembers.len() as f64);
    Ok(roc_steps(members, nonmembers)
        .into_iter()
        .map(|s| RocPoint {
            threshold: s.threshold,
            fpr: s.false_positives as f64 / n,
            tpr: s.true_positives as f64 / m,
        })
        .collect())
}

/// The TPR an attack reaches while its FPR stays at or below a target, with the counts behind it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TprAtFpr {
    pub target_fpr: f64,
    /// Scores at or above this are flagged; `None` when no threshold keeps FPR within target.
    pub threshold: Option<f64>,
    /// The FPR reached on the non-members (≤ `target_fpr`).
    pub fpr: f64,
    pub tpr: f64,
    /// Members flagged, out of `members`.
    pub true_positives: u64,
    pub members: u64,
}

impl TprAtFpr {
    /// Clopper–Pearson interval for the TPR at `level`. It covers the randomness of the members
    /// only: the threshold is taken as fixed, though it was chosen on these same non-members.
    pub fn interval(&self, level: f64) -> Result<Interval, StatsError> {
        clopper_pearson(self.true_positives, self.members, level)
    }

    pub fn lower_bound(&self, confidence: f64) -> Result<f64, StatsError> {
        clopper_pearson_lower(self.true_positives, self.members, confidence)
    }

    pub fn upper_bound(&self, confidence: f64) -> Result<f64, StatsError> {
        clopper_pearson_upper(self.true_positives, self.members, confidence)
    }
}

/// TPR at a fixed FPR, without interpolation: records scoring ≥ a threshold are flagged, and the
/// threshold is the lowest observed score at which the empirical FPR on the non-members is still
/// ≤ `target_fpr` — i.e. the highest TPR among ROC points with FPR ≤ target. With n non-members
/// an FPR target below 1/n allows no false positive at all.
pub fn tpr_at_fpr(
    members: &[f64],
    nonmembers: &[f64],
    target_fpr: f64,
) -> Result<TprAtFpr, StatsError> {
    check_samples(members, nonmembers, 1, "TPR at a fixed FPR")?;
    if !(0.0..=1.0).contains(&target_fpr) {
        return Err(StatsError::OutOfRange {
            what: "target FPR",
            range: "[0, 1]",
            value: target_fpr,
        });
    }
    let (m, n) = (members.len(), nonmembers.len());
    // FPR only grows along the walk, so the last step within the target is the best one; the
    // origin (FPR 0) always qualifies.
    let best = roc_steps(members, nonmembers)
        .into_iter()
        .take_while(|s| s.false_positives as f64 / n as f64 <= target_fpr)
        .last();
    let (threshold, tp, fp) = best.map_or((None, 0, 0), |s| {
        (s.threshold, s.true_positives, s.false_positives)
    });
    Ok(TprAtFpr {
        target_fpr,
        threshold,
        fpr: fp as f64 / n as f64,
        tpr: tp as f64 / m as f64,
        true_positives: tp as u64,
        members: m as u64,
    })
}

/// TPR and FPR of a threshold fitted on one seeded half of the non-members and measured on the
/// other half, so that neither rate is judged on the scores that chose it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HeldOutTpr {
    pub target_fpr: f64,
    pub seed: u64,
    /// Scores strictly above this are flagged: the (k+1)-th highest fitting non-member score,
    /// k = ⌊target · fitting⌋, so at most k fitting non-members are flagged.
    pub threshold: f64,
    /// Non-members the threshold was fitted on, and those it was measured on.
    pub fitting: u64,
    pub testing: u64,
    /// Members flagged, out of `members`.
    pub true_positives: u64,
    pub members: u64,
    /// Testing non-members flagged, out of `testing`.
    pub false_positives: u64,
}

impl HeldOutTpr {
    pub fn tpr(&self) -> f64 {
        self.true_positives as f64 / self.members as f64
    }

    pub fn fpr(&self) -> f64 {
        self.false_positives as f64 / self.testing as f64
    }

    /// Clopper–Pearson interval of the TPR at `level`, over the members.
    pub fn tpr_interval(&self, level: f64) -> Result<Interval, StatsError> {
        clopper_pearson(self.true_positives, self.members, level)
    }

    /// Clopper–Pearson interval of the FPR at `level`, over the testing non-members.
    pub fn fpr_interval(&self, level: f64) -> Result<Interval, StatsError> {
        clopper_pearson(self.false_positives, self.testing, level)
    }
}

/// TPR at a low FPR, or why it cannot be reported.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum TprAtLowFpr {
    Measured(HeldOutTpr),
    /// Too few non-members to fit a threshold at `target_fpr` on one half and measure it on the
    /// other: the report says "needs ≥ `need` non-members".
    NeedsNonmembers {
        target_fpr: f64,
        have: usize,
        need: usize,
    },
}

/// The non-members an FPR target needs: each half must hold ⌈1/target⌉ of them, so that the
/// fitting half can allow a false positive at all and the testing half can observe one.
pub fn nonmembers_needed(target_fpr: f64) -> Result<usize, StatsError> {
    if !(target_fpr > 0.0 && target_fpr < 1.0) {
        return Err(StatsError::OutOfRange {
            what: "target FPR",
            range: "(0, 1)",
            value: target_fpr,
        });
    }
    // 1e-9 absorbs the binary representation of targets such as 0.001 (1/0.001 = 1000.0000000000001).
    Ok(2 * (1.0 / target_fpr - 1e-9).ceil() as usize)
}

/// TPR at `target_fpr` with the threshold fitted on half the non-members and both rates measured
/// on held-out scores (members, and the other half of the non-members). The halves come from a
/// `ChaCha8Rng::seed_from_u64(seed)` shuffle of the non-member indices: the first ⌊n/2⌋ fit, the
/// rest test. With fewer than [`nonmembers_needed`] non-members nothing is measured and the answer
/// says how many are needed (0.1% FPR needs 2000, 1% needs 200). Members' scores are not used to
/// fit, so the TPR's Clopper–Pearson interval over the members is honest; records are taken as
/// independent (a clustered bound needs the subjects, as in `judge::clustered`).
pub fn tpr_at_fpr_held_out(
    members: &[f64],
    nonmembers: &[f64],
    target_fpr: f64,
    seed: u64,
) -> Result<TprAtLowFpr, StatsError> {
    check_samples(members, nonmembers, 1, "TPR at a low FPR")?;
    let need = nonmembers_needed(target_fpr)?;
    if nonmembers.len() < need {
        return Ok(TprAtLowFpr::NeedsNonmembers {
            target_fpr,
            have: nonmembers.len(),
            need,
        });
    }
    let mut order: Vec<usize> = (0..nonmembers.len()).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for i in (1..order.len()).rev() {
        order.swap(i, rng.gen_range(0..=i));
    }
    let (fit, test) = order.split_at(nonmembers.len() / 2);
    let mut fitting: Vec<f64> = fit.iter().map(|&i| nonmembers[i]).collect();
    fitting.sort_by(|a, b| b.total_cmp(a));
    let allowed = (target_fpr * fitting.len() as f64 + 1e-9).floor() as usize;
    let threshold = fitting[allowed.min(fitting.len() - 1)];
    let above = |s: &&f64| **s > threshold;
    Ok(TprAtLowFpr::Measured(HeldOutTpr {
        target_fpr,
        seed,
        threshold,
        fitting: fit.len() as u64,
        testing: test.len() as u64,
        true_positives: members.iter().filter(above).count() as u64,
        members: members.len() as u64,
        false_positives: test.iter().map(|&i| &nonmembers[i]).filter(above).count() as u64,
    }))
}

// ---------------------------------------------------------------------------------------------
// Clopper–Pearson exact binomial intervals (Beta quantiles from statrs).

pub(crate) fn beta_quantile(a: f64, b: f64, p: f64) -> Result<f64, StatsError> {
    Beta::new(a, b)
        .map_err(|e| StatsError::Statrs(format!("Beta({a}, {b}): {e}")))?
        .try_inverse_cdf(p)
        .map_err(|e| StatsError::Statrs(format!("Beta({a}, {b}) quantile: {e}")))
}

/// Lower bound at tail mass `alpha` below, upper bound at `alpha` above; exactly 0 when k = 0 and
/// exactly 1 when k = n.
fn clopper_pearson_tails(k: u64, n: u64, alpha: f64) -> Result<Interval, StatsError> {
    if n == 0 || k > n {
        return Err(StatsError::InvalidCount {
            successes: k,
            trials: n,
        });
    }
    let (kf, nf) = (k as f64, n as f64);
    let lower = match k {
        0 => 0.0,
        _ => beta_quantile(kf, nf - kf + 1.0, alpha)?,
    };
    let upper = if k == n {
        1.0
    } else {
        beta_quantile(kf + 1.0, nf - kf, 1.0 - alpha)?
    };
    Ok(Interval { lower, upper })
}

/// Two-sided Clopper–Pearson interval for `successes` out of `trials` at `level`.
pub fn clopper_pearson(successes: u64, trials: u64, level: f64) -> Result<Interval, StatsError> {
    clopper_pearson_tails(successes, trials, two_sided_alpha(level)?)
}

/// One-sided lower bound at `confidence`: the lower end of the two-sided interval at
/// `2·confidence − 1`.
pub fn clopper_pearson_lower(
    successes: u64,
    trials: u64,
    confidence: f64,
) -> Result<f64, StatsError> {
    Ok(clopper_pearson_tails(successes, trials, one_sided_alpha(confidence)?)?.lower)
}

/// One-sided upper bound at `confidence`: the upper end of the two-sided interval at
/// `2·confidence − 1`.
pub fn clopper_pearson_upper(
    successes: u64,
    trials: u64,
    confidence: f64,
) -> Result<f64, StatsError> {
    Ok(clopper_pearson_tails(successes, trials, one_sided_alpha(confidence)?)?.upper)
}

// ---------------------------------------------------------------------------------------------
// Two-sample tests (statrs).

/// How a KS p-value was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KsMethod {
    /// Exact path count (Schröer & Trenkler 1995), as SciPy's `method="exact"`.
    Exact,
    /// Kolmogorov's limiting distribution at √(mn/(m+n))·D.
    Asymptotic,
}

/// Two-sided two-sample Kolmogorov–Smirnov test: the statistic D and its p-value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KsTest {
    pub statistic: f64,
    pub p_value: f64,
    pub method: KsMethod,
}

/// statrs computes exact KS p-values only up to this m·n; SciPy's `method="auto"` switches to
/// its asymptotic formula at the same size.
const KS_EXACT_MAX_PRODUCT: usize = 10_000;

/// True when the two empirical CDFs coincide everywhere (D = 0): at every step of the ROC walk
/// the members' and non-members' survival fractions tp/m and fp/n are equal.
fn ecdfs_coincide(members: &[f64], nonmembers: &[f64]) -> bool {
    let (m, n) = (members.len() as u128, nonmembers.len() as u128);
    roc_steps(members, nonmembers)
        .iter()
        .all(|s| s.true_positives as u128 * n == s.false_positives as u128 * m)
}

/// Two-sided two-sample KS test by `statrs::stats_tests::ks_twosample`: exact when m·n ≤ 10 000,
/// else Kolmogorov's limiting distribution. SciPy's exact p-value is the same; SciPy's asymptotic
/// one is not (it evaluates the one-sample `kstwo` law at n = round(mn/(m+n))), so large-sample
/// p-values differ in their later digits. D = 0 gives p = 1 without asking statrs, whose
/// asymptotic series never terminates at zero.
pub fn ks_two_sample(members: &[f64], nonmembers: &[f64]) -> Result<KsTest, StatsError> {
    check_samples(members, nonmembers, 1, "the KS test")?;
    let method = if members.len().saturating_mul(nonmembers.len()) <= KS_EXACT_MAX_PRODUCT {
        KsMethod::Exact
    } else {
        KsMethod::Asymptotic
    };
    if ecdfs_coincide(members, nonmembers) {
        return Ok(KsTest {
            statistic: 0.0,
            p_value: 1.0,
            method,
        });
    }
    let statrs_method = match method {
        KsMethod::Exact => KSTwoSampleAlternativeMethod::TwoSidedExact,
        KsMethod::Asymptotic => KSTwoSampleAlternativeMethod::TwoSidedAsymptotic,
    };
    let (statistic, p) = ks_twosample(
        members.to_vec(),
        nonmembers.to_vec(),
        statrs_method,
        NaNPolicy::Error,
    )
    .map_err(|e| StatsError::Statrs(format!("ks_twosample: {e}")))?;
    Ok(KsTest {
        statistic,
        p_value: probability("KS p-value", p)?,
        method,
    })
}

/// Two-sided Mann–Whitney U test: U of the members (AUC = U/(m·n)) and its p-value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MannWhitney {
    pub u_members: f64,
    pub p_value: f64,
}

/// Mann–Whitney U by `statrs::stats_tests::mannwhitneyu`, two-sided, normal approximation with
/// tie and continuity corrections — the method of SciPy's `mannwhitneyu(..., method="asymptotic")`.
/// statrs takes the p-value as 2·(1 − Φ(z)), so p-values below about 1e-16 come out as 0 where
/// SciPy's survival function keeps them; statrs also checks comparability pairwise, O((m+n)²).
pub fn mann_whitney(members: &[f64], nonmembers: &[f64]) -> Result<MannWhitney, StatsError> {
    check_samples(members, nonmembers, 1, "the Mann–Whitney test")?;
    let (u, p) = mannwhitneyu(
        members,
        nonmembers,
        MannWhitneyUMethod::AsymptoticInclContinuityCorrection,
        Alternative::TwoSided,
    )
    .map_err(|e| StatsError::Statrs(format!("mannwhitneyu: {e}")))?;
    Ok(MannWhitney {
        u_members: u,
        p_value: probability("Mann–Whitney p-value", p)?,
    })
}

// ---------------------------------------------------------------------------------------------
// Seeded, stratified bootstrap for statistics without a closed-form interval.

/// A statistic on the full samples and its bootstrap replicates (sorted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootstrapDistribution {
    pub estimate: f64,
    pub replicates: Vec<f64>,
    pub seed: u64,
}

impl BootstrapDistribution {
    /// Quantile of the replicates by statrs' `quantile` (Hyndman & Fan type 8).
    fn quantile(&self, tau: f64) -> f64 {
        Data::new(self.replicates.clone()).quantile(tau)
    }

    /// Percentile interval at `level`: the (1−level)/2 and (1+level)/2 quantiles.
    pub fn interval(&self, level: f64) -> Result<Interval, StatsError> {
        let alpha = two_sided_alpha(level)?;
        Ok(Interval {
            lower: self.quantile(alpha),
            upper: self.quantile(1.0 - alpha),
        })
    }

    pub fn lower_bound(&self, confidence: f64) -> Result<f64, StatsError> {
        Ok(self.quantile(one_sided_alpha(confidence)?))
    }

    pub fn upper_bound(&self, confidence: f64) -> Result<f64, StatsError> {
        Ok(self.quantile(1.0 - one_sided_alpha(confidence)?))
    }
}

fn resample_into(rng: &mut ChaCha8Rng, from: &[f64], into: &mut [f64]) {
    for slot in into {
        *slot = from[rng.gen_range(0..from.len())];
    }
}

/// Bootstrap `statistic(members, nonmembers)`: each of `resamples` replicates draws m members
/// from the members and then n non-members from the non-members, with replacement (stratified,
/// so both sample sizes stay fixed), from `ChaCha8Rng::seed_from_u64(seed)`. The same seed, data
/// and rand version give the same replicates.
pub fn bootstrap<F>(
    members: &[f64],
    nonmembers: &[f64],
    resamples: usize,
    seed: u64,
    mut statistic: F,
) -> Result<BootstrapDistribution, StatsError>
where
    F: FnMut(&[f64], &[f64]) -> Result<f64, StatsError>,
{
    check_samples(members, nonmembers, 1, "the bootstrap")?;
    if resamples == 0 {
        return Err(StatsError::NoResamples);
    }
    let estimate = finite("bootstrapped statistic", statistic(members, nonmembers)?)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut drawn_members, mut drawn_nonmembers) = (members.to_vec(), nonmembers.to_vec());
    let mut replicates = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        resample_into(&mut rng, members, &mut drawn_members);
        resample_into(&mut rng, nonmembers, &mut drawn_nonmembers);
        replicates.push(finite(
            "bootstrapped statistic",
            statistic(&drawn_members, &drawn_nonmembers)?,
        )?);
    }
    replicates.sort_by(f64::total_cmp);
    Ok(BootstrapDistribution {
        estimate,
        replicates,
        seed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    // Expected values come from tests/oracles/stats/expected.json, made with SciPy 1.17.1 and
    // scikit-learn 1.9.1 (its "notes"): roc_auc ← sklearn.metrics.roc_auc_score (members labelled
    // 1); delong_* ← fast DeLong (Sun & Xu 2014); mannwhitney_* ← scipy.stats.mannwhitneyu(members,
    // nonmembers, two-sided, asymptotic, continuity correction); ks_* ← scipy.stats.ks_2samp
    // (two-sided, exact where m·n ≤ 10 000); clopper_pearson_* and one_sided_* ←
    // scipy.stats.binomtest(k, n).proportion_ci(method="exact").
    const ORACLE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/oracles/stats/expected.json"
    );

    #[derive(Deserialize)]
    struct Oracle {
        auc_cases: Vec<AucCase>,
        binomial_cases: Vec<BinomialCase>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct AucCase {
        members: Vec<f64>,
        nonmembers: Vec<f64>,
        roc_auc: f64,
        delong_auc: f64,
        delong_var: f64,
        #[serde(rename = "mannwhitney_U_members")]
        mannwhitney_u_members: f64,
        mannwhitney_p_two_sided_asymptotic_continuity: f64,
        ks_d: f64,
        ks_p_two_sided: f64,
        ks_method: String,
        /// SciPy's asymptotic formula, kstwo.sf(D, round(mn/(m+n))); statrs implements a
        /// different one (Kolmogorov's limit), so this value is read but not compared.
        #[allow(dead_code)]
        ks_p_two_sided_asymptotic: f64,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct BinomialCase {
        k: u64,
        n: u64,
        clopper_pearson_95: [f64; 2],
        clopper_pearson_90: [f64; 2],
        one_sided_upper_95: f64,
        one_sided_lower_95: f64,
    }

    fn oracle() -> Oracle {
        let text = std::fs::read_to_string(ORACLE).expect("read the stats oracle");
        // The file spells the KS statistic "ks_D"; serde's rename keeps the struct snake_case.
        serde_json::from_str(&text.replace("\"ks_D\"", "\"ks_d\"")).expect("parse the oracle")
    }

    /// Asserts |got − want| ≤ 1e-9·|want| (exact equality when want is 0) and records the worst
    /// absolute and relative error per quantity, printed with `--nocapture`.
    #[derive(Default)]
    struct Tally(RefCell<BTreeMap<&'static str, (f64, f64)>>);

    impl Tally {
        fn close(&self, what: &'static str, case: usize, got: f64, want: f64) {
            let abs = (got - want).abs();
            let rel = if want == 0.0 { abs } else { abs / want.abs() };
            assert!(rel <= 1e-9, "{what} case {case}: got {got}, want {want}");
            let mut worst = self.0.borrow_mut();
            let entry = worst.entry(what).or_insert((0.0, 0.0));
            *entry = (entry.0.max(abs), entry.1.max(rel));
        }

        fn print(&self) {
            for (what, (abs, rel)) in self.0.borrow().iter() {
                eprintln!("{what:<28} max abs err {abs:.3e}  max rel err {rel:.3e}");
            }
        }
    }

    /// Kolmogorov's limiting two-sided p-value 2 Σ (−1)^(k−1) exp(−2k²x²), x = D·√(mn/(m+n)):
    /// the formula statrs' asymptotic KS method implements, written out here as its reference.
    fn kolmogorov_limit_p(d: f64, m: usize, n: usize) -> f64 {
        let x = d * ((m * n) as f64 / (m + n) as f64).sqrt();
        let sum: f64 = (1..=100)
            .map(|k| {
                let k = k as f64;
                (-1f64).powf(k - 1.0) * (-2.0 * k * k * x * x).exp()
            })
            .sum();
        2.0 * sum
    }

    fn check_ks_case(tally: &Tally, i: usize, case: &AucCase) {
        let ks = ks_two_sample(&case.members, &case.nonmembers).expect("KS");
        tally.close("ks D", i, ks.statistic, case.ks_d);
        match case.ks_method.as_str() {
            "exact" => {
                assert_eq!(ks.method, KsMethod::Exact, "case {i}");
                tally.close("ks p (exact)", i, ks.p_value, case.ks_p_two_sided);
            }
            _ => {
                // SciPy's asymptotic p is kstwo.sf(D, round(mn/(m+n))) (1.24e-31 here); statrs
                // uses Kolmogorov's limit (about 2e-28). Different methods: assert statrs' own
                // formula, and that both p-values are far below any significance level.
                assert_eq!(ks.method, KsMethod::Asymptotic, "case {i}");
                let (m, n) = (case.members.len(), case.nonmembers.len());
                let limit = kolmogorov_limit_p(case.ks_d, m, n);
                tally.close("ks p (Kolmogorov limit)", i, ks.p_value, limit);
                assert!(
                    ks.p_value < 1e-25 && case.ks_p_two_sided < 1e-25,
                    "case {i}"
                );
            }
        }
    }

    fn check_mann_whitney_case(tally: &Tally, i: usize, case: &AucCase) {
        let mw = mann_whitney(&case.members, &case.nonmembers).expect("Mann–Whitney");
        assert_eq!(mw.u_members, case.mannwhitney_u_members, "case {i}");
        let want = case.mannwhitney_p_two_sided_asymptotic_continuity;
        if want > 1e-14 {
            tally.close("mann-whitney p", i, mw.p_value, want);
        } else {
            // Same method, but statrs forms the tail as 1 − Φ(z), which rounds to 0 below about
            // 1e-16 (SciPy's norm.sf gives 3.65e-35 here).
            assert!(mw.p_value <= 1e-15, "case {i}: p {}", mw.p_value);
        }
    }

    #[test]
    fn oracle_auc_cases_match_scipy_and_sklearn() {
        let tally = Tally::default();
        for (i, case) in oracle().auc_cases.iter().enumerate() {
            let (members, nonmembers) = (&case.members, &case.nonmembers);
            tally.close(
                "roc_auc",
                i,
                roc_auc(members, nonmembers).expect("auc"),
                case.roc_auc,
            );
            let est = delong(members, nonmembers).expect("DeLong");
            tally.close("delong auc", i, est.auc, case.delong_auc);
            tally.close("delong variance", i, est.variance, case.delong_var);
            check_mann_whitney_case(&tally, i, case);
            check_ks_case(&tally, i, case);
        }
        tally.print();
    }

    #[test]
    fn oracle_clopper_pearson_cases_match_scipy() {
        let tally = Tally::default();
        for (i, c) in oracle().binomial_cases.iter().enumerate() {
            let ci95 = clopper_pearson(c.k, c.n, 0.95).expect("95% interval");
            let ci90 = clopper_pearson(c.k, c.n, 0.90).expect("90% interval");
            tally.close(
                "clopper-pearson 95 lower",
                i,
                ci95.lower,
                c.clopper_pearson_95[0],
            );
            tally.close(
                "clopper-pearson 95 upper",
                i,
                ci95.upper,
                c.clopper_pearson_95[1],
            );
            tally.close(
                "clopper-pearson 90 lower",
                i,
                ci90.lower,
                c.clopper_pearson_90[0],
            );
            tally.close(
                "clopper-pearson 90 upper",
                i,
                ci90.upper,
                c.clopper_pearson_90[1],
            );
            let lower = clopper_pearson_lower(c.k, c.n, 0.95).expect("lower");
            let upper = clopper_pearson_upper(c.k, c.n, 0.95).expect("upper");
            tally.close("one-sided lower 95", i, lower, c.one_sided_lower_95);
            tally.close("one-sided upper 95", i, upper, c.one_sided_upper_95);
        }
        tally.print();
    }

    #[test]
    fn roc_curve_merges_ties_into_one_diagonal_step() {
        // Two members at 1, one non-member at 1 and one at 0: by hand, flagging ≥ 1 catches both
        // members and one non-member; flagging ≥ 0 catches everything.
        let curve = roc_curve(&[1.0, 1.0], &[1.0, 0.0]).expect("curve");
        let points: Vec<_> = curve.iter().map(|p| (p.threshold, p.fpr, p.tpr)).collect();
        assert_eq!(
            points,
            [
                (None, 0.0, 0.0),
                (Some(1.0), 0.5, 1.0),
                (Some(0.0), 1.0, 1.0)
            ]
        );
        assert_eq!(roc_auc(&[1.0, 1.0], &[1.0, 0.0]), Ok(0.75));
    }

    #[test]
    fn tpr_at_fpr_takes_the_lowest_threshold_within_target() {
        let members = [0.9, 0.8, 0.7, 0.3];
        let nonmembers = [0.85, 0.5, 0.4, 0.2, 0.1];
        // FPR ≤ 0.2 allows one of five non-members: flag ≥ 0.7 → 3 of 4 members, 0.85 wrongly.
        let at = tpr_at_fpr(&members, &nonmembers, 0.2).expect("tpr");
        assert_eq!((at.threshold, at.fpr, at.tpr), (Some(0.7), 0.2, 0.75));
        assert_eq!((at.true_positives, at.members), (3, 4));
        // Below 1/5 no false positive is allowed: only 0.9 is flagged.
        let strict = tpr_at_fpr(&members, &nonmembers, 0.19).expect("tpr");
        assert_eq!(
            (strict.threshold, strict.fpr, strict.tpr),
            (Some(0.9), 0.0, 0.25)
        );
        // A non-member on top leaves nothing to flag at FPR 0.
        let none = tpr_at_fpr(&[0.5], &[0.9], 0.0).expect("tpr");
        assert_eq!((none.threshold, none.tpr), (None, 0.0));
        let ci = at.interval(0.95).expect("ci");
        assert_eq!(ci, clopper_pearson(3, 4, 0.95).expect("cp"));
    }

    #[test]
    fn held_out_tpr_fits_on_one_half_and_measures_on_the_other() {
        // 400 non-members 0, 1, …, 399 and 50 members all at 1000: at 1% FPR the fitting half
        // (200 scores) allows ⌊0.01·200⌋ = 2 false positives, so the threshold is its 3rd highest
        // score; every member is above it; the testing half's flagged count is what lies above.
        let nonmembers: Vec<f64> = (0..400).map(f64::from).collect();
        let members = [1000.0; 50];
        let TprAtLowFpr::Measured(at) =
            tpr_at_fpr_held_out(&members, &nonmembers, 0.01, 7).expect("tpr")
        else {
            panic!("400 ≥ 200 non-members suffice for 1%")
        };
        assert_eq!((at.fitting, at.testing, at.members), (200, 200, 50));
        assert_eq!((at.true_positives, at.tpr()), (50, 1.0));
        let test_above = nonmembers.iter().filter(|&&s| s > at.threshold).count() as u64 - 2;
        assert_eq!(at.false_positives, test_above, "threshold {}", at.threshold);
        assert_eq!(
            at.fpr_interval(0.95),
            clopper_pearson(at.false_positives, 200, 0.95)
        );
        // Same seed, same split; the threshold is a fitting-half score.
        assert_eq!(
            tpr_at_fpr_held_out(&members, &nonmembers, 0.01, 7),
            Ok(TprAtLowFpr::Measured(at))
        );
        // 0.1% needs 2 · ⌈1/0.001⌉ = 2000 non-members; 440 (the bundled holdout) do not allow it.
        assert_eq!(
            tpr_at_fpr_held_out(&members, &[0.0; 440], 0.001, 7),
            Ok(TprAtLowFpr::NeedsNonmembers {
                target_fpr: 0.001,
                have: 440,
                need: 2000
            })
        );
        assert_eq!(nonmembers_needed(0.05), Ok(40));
        assert!(matches!(
            nonmembers_needed(0.0),
            Err(StatsError::OutOfRange { .. })
        ));
    }

    #[test]
    fn ks_identical_samples_give_p_one_in_both_regimes() {
        // 150 × 100 > 10 000 takes the asymptotic path, whose series statrs never ends at D = 0.
        let big = ks_two_sample(&[0.5; 150], &[0.5; 100]).expect("ks");
        assert_eq!(
            (big.statistic, big.p_value, big.method),
            (0.0, 1.0, KsMethod::Asymptotic)
        );
        let small = ks_two_sample(&[1.0, 2.0], &[2.0, 1.0, 1.0, 2.0]).expect("ks");
        assert_eq!(
            (small.statistic, small.p_value, small.method),
            (0.0, 1.0, KsMethod::Exact)
        );
    }

    #[test]
    fn delong_of_separated_samples_has_zero_variance() {
        let est = delong(&[3.0, 4.0], &[1.0, 2.0]).expect("DeLong");
        assert_eq!((est.auc, est.variance), (1.0, 0.0));
        assert_eq!(est.lower_bound(0.99), Ok(1.0));
        assert_eq!(
            est.interval(0.95),
            Ok(Interval {
                lower: 1.0,
                upper: 1.0
            })
        );
    }

    #[test]
    fn delong_bounds_use_the_normal_quantile() {
        let est = AucEstimate {
            auc: 0.6,
            variance: 0.0004,
            m: 10,
            n: 10,
        };
        // Φ⁻¹(0.975) = 1.959963984540054, Φ⁻¹(0.95) = 1.6448536269514722 (standard tables).
        let ci = est.interval(0.95).expect("ci");
        assert!((ci.upper - (0.6 + 0.02 * 1.959963984540054)).abs() < 1e-12);
        assert!((ci.lower - (0.6 - 0.02 * 1.959963984540054)).abs() < 1e-12);
        let upper = est.upper_bound(0.95).expect("upper");
        assert!((upper - (0.6 + 0.02 * 1.6448536269514722)).abs() < 1e-12);
        let wide = AucEstimate {
            auc: 0.9,
            variance: 0.04,
            m: 3,
            n: 3,
        };
        assert_eq!(wide.upper_bound(0.99), Ok(1.0), "clamped to 1");
    }

    #[test]
    fn bad_inputs_are_errors_not_panics() {
        use StatsError::*;
        assert_eq!(roc_auc(&[], &[1.0]), Err(EmptySample(Sample::Members)));
        assert_eq!(roc_auc(&[1.0], &[]), Err(EmptySample(Sample::Nonmembers)));
        assert!(matches!(
            roc_auc(&[1.0], &[0.0, f64::NAN]),
            Err(NonFiniteScore {
                sample: Sample::Nonmembers,
                index: 1,
                ..
            })
        ));
        assert!(matches!(
            mann_whitney(&[f64::INFINITY], &[0.0]),
            Err(NonFiniteScore { .. })
        ));
        assert!(matches!(
            ks_two_sample(&[f64::NAN], &[0.0]),
            Err(NonFiniteScore { .. })
        ));
        assert!(matches!(
            delong(&[1.0], &[0.0, 2.0]),
            Err(TooFewScores { need: 2, .. })
        ));
        let est = delong(&[1.0, 3.0], &[0.0, 2.0]).expect("DeLong");
        for bad in [0.0, 1.0, -0.1, f64::NAN] {
            assert!(
                matches!(est.interval(bad), Err(OutOfRange { .. })),
                "level {bad}"
            );
        }
        for bad in [0.3, 1.0, f64::NAN] {
            assert!(
                matches!(est.upper_bound(bad), Err(OutOfRange { .. })),
                "conf {bad}"
            );
            assert!(matches!(
                clopper_pearson_lower(1, 2, bad),
                Err(OutOfRange { .. })
            ));
        }
        assert!(matches!(
            clopper_pearson(3, 2, 0.95),
            Err(InvalidCount { .. })
        ));
        assert!(matches!(
            clopper_pearson(0, 0, 0.95),
            Err(InvalidCount { .. })
        ));
        assert!(matches!(
            tpr_at_fpr(&[1.0], &[0.0], 1.5),
            Err(OutOfRange { .. })
        ));
        assert_eq!(bootstrap(&[1.0], &[0.0], 0, 7, roc_auc), Err(NoResamples));
        let nan_statistic = |_: &[f64], _: &[f64]| Ok(f64::NAN);
        assert!(matches!(
            bootstrap(&[1.0], &[0.0], 5, 7, nan_statistic),
            Err(NonFiniteResult { .. })
        ));
    }

    #[test]
    fn bootstrap_of_a_constant_statistic_is_degenerate_and_resamples_within_strata() {
        // Members are all 1 and non-members all 0, so every stratified resample separates them.
        let dist = bootstrap(&[1.0; 5], &[0.0; 7], 200, 11, |m, n| {
            assert_eq!((m.len(), n.len()), (5, 7));
            roc_auc(m, n)
        })
        .expect("bootstrap");
        assert_eq!(dist.replicates, vec![1.0; 200]);
        assert_eq!(
            dist.interval(0.9),
            Ok(Interval {
                lower: 1.0,
                upper: 1.0
            })
        );
    }

    fn scores() -> impl Strategy<Value = Vec<f64>> {
        // Quarter steps make ties common, which is where AUC conventions differ.
        prop::collection::vec((-20i32..20).prop_map(|v| f64::from(v) / 4.0), 2..40)
    }

    proptest! {
        #[test]
        fn prop_auc_in_unit_interval(members in scores(), nonmembers in scores()) {
            let auc = roc_auc(&members, &nonmembers).expect("auc");
            prop_assert!((0.0..=1.0).contains(&auc));
        }

        #[test]
        fn prop_auc_of_swapped_samples_is_complement(a in scores(), b in scores()) {
            let ab = roc_auc(&a, &b).expect("auc");
            let ba = roc_auc(&b, &a).expect("auc");
            prop_assert!((ab - (1.0 - ba)).abs() < 1e-12, "{ab} vs 1 - {ba}");
        }

        #[test]
        fn prop_auc_is_area_under_roc_curve(members in scores(), nonmembers in scores()) {
            let curve = roc_curve(&members, &nonmembers).expect("curve");
            let area: f64 = curve
                .windows(2)
                .map(|w| (w[1].fpr - w[0].fpr) * (w[1].tpr + w[0].tpr) / 2.0)
                .sum();
            let auc = roc_auc(&members, &nonmembers).expect("auc");
            prop_assert!((area - auc).abs() < 1e-12, "trapezoid {area} vs {auc}");
        }

        #[test]
        fn prop_auc_is_mann_whitney_u_over_mn(members in scores(), nonmembers in scores()) {
            let u = mann_whitney(&members, &nonmembers).expect("mwu").u_members;
            let mn = (members.len() * nonmembers.len()) as f64;
            let est = delong(&members, &nonmembers).expect("DeLong");
            prop_assert_eq!(est.auc, u / mn);
        }

        #[test]
        fn prop_delong_bounds_are_ordered(
            members in scores(),
            nonmembers in scores(),
            confidence in 0.5f64..0.9999,
        ) {
            let est = delong(&members, &nonmembers).expect("DeLong");
            let (lower, upper) = (est.lower_bound(confidence), est.upper_bound(confidence));
            let (lower, upper) = (lower.expect("lower"), upper.expect("upper"));
            prop_assert!(0.0 <= lower && lower <= est.auc && est.auc <= upper && upper <= 1.0);
            let ci = est.interval(confidence).expect("interval");
            prop_assert!(ci.lower <= est.auc && est.auc <= ci.upper);
        }

        #[test]
        fn prop_clopper_pearson_brackets_the_proportion(
            (k, n) in (1u64..300).prop_flat_map(|n| (0..=n, Just(n))),
            level in 0.5f64..0.999,
        ) {
            let ci = clopper_pearson(k, n, level).expect("interval");
            let p = k as f64 / n as f64;
            prop_assert!(0.0 <= ci.lower && ci.lower <= p && p <= ci.upper && ci.upper <= 1.0);
        }

        #[test]
        fn prop_tpr_at_fpr_respects_target(
            members in scores(),
            nonmembers in scores(),
            target in 0.0f64..=1.0,
        ) {
            let at = tpr_at_fpr(&members, &nonmembers, target).expect("tpr");
            prop_assert!(at.fpr <= target);
            let flagged = members.iter().filter(|&&s| at.threshold.is_some_and(|t| s >= t));
            prop_assert_eq!(flagged.count() as u64, at.true_positives);
        }

        #[test]
        fn prop_bootstrap_is_reproducible_for_a_seed(
            members in scores(),
            nonmembers in scores(),
            seed in any::<u64>(),
        ) {
            let run = || bootstrap(&members, &nonmembers, 50, seed, roc_auc).expect("bootstrap");
            let (first, second) = (run(), run());
            prop_assert_eq!(&first, &second);
            prop_assert_eq!(first.estimate, roc_auc(&members, &nonmembers).expect("auc"));
            let ci = first.interval(0.9).expect("interval");
            prop_assert!(ci.lower <= ci.upper);
        }
    }
}
