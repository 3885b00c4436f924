//! The contract between evidence and specifications: what a metric value in an evidence file is,
//! which metric paths exist, and how a one-sided confidence bound is taken from a value at any
//! confidence a spec asks for.
//!
//! This module owns the `Metric` type (a JSON object tagged by `kind`), the table of known
//! metric paths with their valid ranges and "better" directions (`KNOWN_METRICS`, the one place
//! that lists them), and `lookup`, which walks an evidence document's `"metrics"` object. It
//! computes bounds through `certify::stats` and never decides a verdict (that is `verdict`); it
//! never measures anything (that is the evidence producer) and never imports `unlearn`.

use std::fmt;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use statrs::distribution::{ContinuousCDF, Normal};

use crate::judge::clustered::{ClusteredAuc, ClusteredMean, ClusteredProportion};
use crate::judge::equivalence::PairedKs;
use crate::judge::stats::{self, AucEstimate, BootstrapDistribution, StatsError};

/// One measured statistic, with what is needed to bound it at any confidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Metric {
    /// ROC AUC of a membership attack with its DeLong variance (members = forget records,
    /// non-members = holdout records); bounds by the normal approximation, clamped to [0, 1].
    Auc {
        value: f64,
        variance: f64,
        members: usize,
        nonmembers: usize,
    },
    /// `successes` of `trials` (exact-match rate, TPR at a fixed FPR): Clopper–Pearson bounds.
    Proportion {
        value: f64,
        successes: u64,
        trials: u64,
    },
    /// A mean or a ratio with a standard error: bounds `value ± z·std_error`.
    Normal {
        value: f64,
        std_error: f64,
        n: usize,
    },
    /// A statistic without a sampling model (a p-value, PrivLeak): its bound is the value itself.
    Point { value: f64, n: usize },
    /// ROC AUC with Obuchowski's subject-clustered variance (`judge::clustered`); bounds as for
    /// `Auc`, and the sample floor counts clusters (the smaller of the two cluster counts).
    ClusteredAuc {
        value: f64,
        variance: f64,
        members: usize,
        nonmembers: usize,
        member_clusters: usize,
        nonmember_clusters: usize,
    },
    /// `successes` of `trials` correlated within `clusters`: the CR1 standard error, and
    /// Clopper–Pearson bounds on the design-effect-adjusted effective sample.
    ClusteredProportion {
        value: f64,
        successes: u64,
        trials: u64,
        clusters: usize,
        std_error: f64,
    },
    /// A mean of `records` per-record values from `clusters` subjects with its CR1 standard
    /// error: bounds `value ± z·std_error`.
    ClusteredMean {
        value: f64,
        std_error: f64,
        records: usize,
        clusters: usize,
    },
    /// A statistic of `records` records from `clusters` subjects with its seeded subject-level
    /// bootstrap replicates, sorted (`judge::equivalence`: the KS distance between two models'
    /// scores of the same records, persons resampled): bounds are percentiles of the replicates
    /// (Hyndman & Fan type 8) at the confidence asked for, and the sample floor counts clusters.
    /// `seed` and `resamples` redraw the replicates exactly from the per-record scores.
    ClusterBootstrap {
        value: f64,
        records: usize,
        clusters: usize,
        seed: u64,
        resamples: usize,
        replicates: Vec<f64>,
    },
}

impl From<ClusteredAuc> for Metric {
    fn from(c: ClusteredAuc) -> Metric {
        Metric::ClusteredAuc {
            value: c.estimate.auc,
            variance: c.estimate.variance,
            members: c.estimate.m,
            nonmembers: c.estimate.n,
            member_clusters: c.member_clusters,
            nonmember_clusters: c.nonmember_clusters,
        }
    }
}

impl From<PairedKs> for Metric {
    fn from(k: PairedKs) -> Metric {
        Metric::ClusterBootstrap {
            value: k.distance,
            records: k.records,
            clusters: k.clusters,
            seed: k.seed,
            resamples: k.replicates.len(),
            replicates: k.replicates,
        }
    }
}

impl From<ClusteredMean> for Metric {
    fn from(c: ClusteredMean) -> Metric {
        Metric::ClusteredMean {
            value: c.mean,
            std_error: c.std_error,
            records: c.records,
            clusters: c.clusters,
        }
    }
}

impl From<ClusteredProportion> for Metric {
    fn from(c: ClusteredProportion) -> Metric {
        Metric::ClusteredProportion {
            value: c.value(),
            successes: c.successes,
            trials: c.trials,
            clusters: c.clusters,
            std_error: c.std_error,
        }
    }
}

/// Which one-sided bound: `Upper` for a `<=` requirement, `Lower` for `>=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Upper,
    Lower,
}

impl Metric {
    pub fn value(&self) -> f64 {
        match *self {
            Metric::Auc { value, .. }
            | Metric::Proportion { value, .. }
            | Metric::Normal { value, .. }
            | Metric::Point { value, .. }
            | Metric::ClusteredAuc { value, .. }
            | Metric::ClusteredProportion { value, .. }
            | Metric::ClusteredMean { value, .. }
            | Metric::ClusterBootstrap { value, .. } => value,
        }
    }

    /// The `kind` tag the metric carries in the evidence JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            Metric::Auc { .. } => "auc",
            Metric::Proportion { .. } => "proportion",
            Metric::Normal { .. } => "normal",
            Metric::Point { .. } => "point",
            Metric::ClusteredAuc { .. } => "clustered_auc",
            Metric::ClusteredProportion { .. } => "clustered_proportion",
            Metric::ClusteredMean { .. } => "clustered_mean",
            Metric::ClusterBootstrap { .. } => "cluster_bootstrap",
        }
    }

    /// What `samples` counts: `clusters` for the clustered kinds, `samples` otherwise.
    pub fn unit(&self) -> &'static str {
        match self {
            Metric::ClusteredAuc { .. }
            | Metric::ClusteredProportion { .. }
            | Metric::ClusteredMean { .. }
            | Metric::ClusterBootstrap { .. } => "clusters",
            _ => "samples",
        }
    }

    /// The sample size a `min_samples` floor is checked against: the smaller of the two samples
    /// of an AUC, the trials of a proportion, `n` otherwise; for the clustered kinds, clusters
    /// (the smaller of the member and non-member cluster counts of an AUC).
    pub fn samples(&self) -> usize {
        match *self {
            Metric::Auc {
                members,
                nonmembers,
                ..
            } => members.min(nonmembers),
            Metric::Proportion { trials, .. } => usize::try_from(trials).unwrap_or(usize::MAX),
            Metric::Normal { n, .. } | Metric::Point { n, .. } => n,
            Metric::ClusteredAuc {
                member_clusters,
                nonmember_clusters,
                ..
            } => member_clusters.min(nonmember_clusters),
            Metric::ClusteredProportion { clusters, .. }
            | Metric::ClusteredMean { clusters, .. }
            | Metric::ClusterBootstrap { clusters, .. } => clusters,
        }
    }

    /// Whether the metric has a sampling model (every kind but `Point`).
    pub fn has_bound(&self) -> bool {
        !matches!(self, Metric::Point { .. })
    }

    /// The one-sided bound at `confidence` ∈ [0.5, 1): the metric lies below the `Upper` bound
    /// (above the `Lower` one) with that confidence. A `Point` metric's bound is its value.
    pub fn bound(&self, confidence: f64, side: Side) -> Result<f64, StatsError> {
        match *self {
            Metric::Auc {
                value,
                variance,
                members,
                nonmembers,
            }
            | Metric::ClusteredAuc {
                value,
                variance,
                members,
                nonmembers,
                ..
            } => {
                let est = AucEstimate {
                    auc: value,
                    variance,
                    m: members,
                    n: nonmembers,
                };
                match side {
                    Side::Upper => est.upper_bound(confidence),
                    Side::Lower => est.lower_bound(confidence),
                }
            }
            Metric::Proportion {
                successes, trials, ..
            } => match side {
                Side::Upper => stats::clopper_pearson_upper(successes, trials, confidence),
                Side::Lower => stats::clopper_pearson_lower(successes, trials, confidence),
            },
            Metric::Normal {
                value, std_error, ..
            }
            | Metric::ClusteredMean {
                value, std_error, ..
            } => {
                let z = z_score(confidence)?;
                Ok(match side {
                    Side::Upper => value + z * std_error,
                    Side::Lower => value - z * std_error,
                })
            }
            Metric::Point { value, .. } => Ok(value),
            Metric::ClusterBootstrap {
                value,
                seed,
                ref replicates,
                ..
            } => {
                let dist = BootstrapDistribution {
                    estimate: value,
                    replicates: replicates.clone(),
                    seed,
                };
                match side {
                    Side::Upper => dist.upper_bound(confidence),
                    Side::Lower => dist.lower_bound(confidence),
                }
            }
            Metric::ClusteredProportion {
                successes,
                trials,
                clusters,
                std_error,
                ..
            } => {
                let p = ClusteredProportion {
                    successes,
                    trials,
                    clusters,
                    std_error,
                };
                let tails = p.tails(stats::one_sided_alpha(confidence)?)?;
                Ok(match side {
                    Side::Upper => tails.upper,
                    Side::Lower => tails.lower,
                })
            }
        }
    }

    /// The standard error behind the bound (the clustered proportion's CR1 one, though its bound
    /// is Clopper–Pearson on the effective sample; a bootstrap's is the standard deviation of its
    /// replicates, though its bound is their percentile); `None` for the exact (`Proportion`) and
    /// model-free (`Point`) kinds.
    pub fn std_error(&self) -> Option<f64> {
        match *self {
            Metric::Auc { variance, .. } | Metric::ClusteredAuc { variance, .. } => {
                Some(variance.sqrt())
            }
            Metric::Normal { std_error, .. }
            | Metric::ClusteredMean { std_error, .. }
            | Metric::ClusteredProportion { std_error, .. } => Some(std_error),
            Metric::ClusterBootstrap { ref replicates, .. } => Some(spread(replicates)),
            Metric::Proportion { .. } | Metric::Point { .. } => None,
        }
    }

    /// Internal consistency: finite numbers, non-negative spreads, counts that add up.
    fn check(&self) -> Result<(), Inconsistency> {
        let value = self.value();
        if !value.is_finite() {
            return Err(Inconsistency::NotFinite(value));
        }
        match *self {
            Metric::Auc {
                variance,
                members,
                nonmembers,
                ..
            } => {
                check_spread("variance", variance)?;
                if members < 2 || nonmembers < 2 {
                    return Err(Inconsistency::TooFewScores {
                        members,
                        nonmembers,
                    });
                }
            }
            Metric::Proportion {
                successes, trials, ..
            } => check_binomial(value, successes, trials)?,
            Metric::Normal { std_error, n, .. } => {
                check_spread("std_error", std_error)?;
                if n == 0 {
                    return Err(Inconsistency::NoSamples);
                }
            }
            Metric::Point { .. } => {}
            Metric::ClusteredAuc {
                variance,
                members,
                nonmembers,
                member_clusters,
                nonmember_clusters,
                ..
            } => {
                check_spread("variance", variance)?;
                if member_clusters < 2 || nonmember_clusters < 2 {
                    return Err(Inconsistency::TooFewClusters {
                        member_clusters,
                        nonmember_clusters,
                    });
                }
                if member_clusters > members || nonmember_clusters > nonmembers {
                    return Err(Inconsistency::MoreClustersThanRecords);
                }
            }
            Metric::ClusteredProportion {
                successes,
                trials,
                clusters,
                std_error,
                ..
            } => {
                check_binomial(value, successes, trials)?;
                check_clustered(std_error, trials, clusters)?;
            }
            Metric::ClusteredMean {
                std_error,
                records,
                clusters,
                ..
            } => check_clustered(std_error, records as u64, clusters)?,
            Metric::ClusterBootstrap {
                records,
                clusters,
                resamples,
                ref replicates,
                ..
            } => {
                check_clustered(0.0, records as u64, clusters)?;
                check_replicates(resamples, replicates)?;
            }
        }
        Ok(())
    }
}

/// Why a metric's numbers disagree with each other; each names the numbers.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Inconsistency {
    #[error("value {0} is not finite")]
    NotFinite(f64),
    /// A variance or standard error (named) that is negative or not finite.
    #[error("{name} {value} is not a finite non-negative")]
    BadSpread { name: &'static str, value: f64 },
    #[error(
        "DeLong needs two scores per sample, has {members} members and {nonmembers} non-members"
    )]
    TooFewScores { members: usize, nonmembers: usize },
    #[error("{successes} of {trials} is not a binomial count")]
    NotBinomial { successes: u64, trials: u64 },
    #[error("value {value} is not {successes}/{trials} = {rate}")]
    NotTheRate {
        value: f64,
        successes: u64,
        trials: u64,
        rate: f64,
    },
    #[error("n is 0")]
    NoSamples,
    #[error(
        "the clustered variance needs two clusters per sample, has {member_clusters} member \
         and {nonmember_clusters} non-member clusters"
    )]
    TooFewClusters {
        member_clusters: usize,
        nonmember_clusters: usize,
    },
    #[error("more clusters than records")]
    MoreClustersThanRecords,
    #[error(
        "{clusters} clusters of {records} records (a cluster-robust error needs 2 or more, \
         at most one per record)"
    )]
    BadClusters { clusters: usize, records: u64 },
    #[error(
        "{replicates} bootstrap replicates for {resamples} resamples (they must match, be 1 or \
         more, finite and sorted)"
    )]
    BadReplicates { resamples: usize, replicates: usize },
}

/// A variance or standard error must be finite and non-negative.
fn check_spread(name: &'static str, value: f64) -> Result<(), Inconsistency> {
    if !(value.is_finite() && value >= 0.0) {
        return Err(Inconsistency::BadSpread { name, value });
    }
    Ok(())
}

/// `successes` of `trials` is a binomial count and `value` is its rate.
fn check_binomial(value: f64, successes: u64, trials: u64) -> Result<(), Inconsistency> {
    if trials == 0 || successes > trials {
        return Err(Inconsistency::NotBinomial { successes, trials });
    }
    let rate = successes as f64 / trials as f64;
    if (value - rate).abs() > 1e-9 {
        return Err(Inconsistency::NotTheRate {
            value,
            successes,
            trials,
            rate,
        });
    }
    Ok(())
}

/// A cluster-robust standard error needs two clusters, no more clusters than records, and a
/// finite non-negative spread.
fn check_clustered(std_error: f64, records: u64, clusters: usize) -> Result<(), Inconsistency> {
    check_spread("std_error", std_error)?;
    if clusters < 2 || clusters as u64 > records {
        return Err(Inconsistency::BadClusters { clusters, records });
    }
    Ok(())
}

/// The sample standard deviation (n − 1) of `xs`; 0 for fewer than two values.
fn spread(xs: &[f64]) -> f64 {
    let n = xs.len() as f64;
    if xs.len() < 2 {
        return 0.0;
    }
    let mean = xs.iter().sum::<f64>() / n;
    (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
}

/// As many replicates as resamples (one or more), finite and in ascending order.
fn check_replicates(resamples: usize, replicates: &[f64]) -> Result<(), Inconsistency> {
    let ordered =
        replicates.iter().all(|r| r.is_finite()) && replicates.windows(2).all(|w| w[0] <= w[1]);
    if resamples == 0 || replicates.len() != resamples || !ordered {
        return Err(Inconsistency::BadReplicates {
            resamples,
            replicates: replicates.len(),
        });
    }
    Ok(())
}

/// Φ⁻¹(confidence), the one-sided normal quantile; confidence must lie in [0.5, 1).
pub fn z_score(confidence: f64) -> Result<f64, StatsError> {
    if !(0.5..1.0).contains(&confidence) {
        return Err(StatsError::OutOfRange {
            what: "one-sided confidence",
            range: "[0.5, 1)",
            value: confidence,
        });
    }
    Normal::standard()
        .try_inverse_cdf(confidence)
        .map_err(|e| StatsError::Statrs(format!("normal quantile: {e}")))
}

// ---------------------------------------------------------------------------------------------
// Known metric paths.

/// Which way a metric moves when unlearning improves (or utility is kept). `Neither` marks
/// contrast values and statistics with no good direction; they cannot be baseline-compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    Lower,
    Higher,
    Neither,
}

impl fmt::Display for Better {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Better::Lower => "lower",
            Better::Higher => "higher",
            Better::Neither => "neither",
        })
    }
}

/// The closed range a metric's values lie in (infinite ends for unbounded sides).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    pub min: f64,
    pub max: f64,
}

impl Range {
    pub fn contains(&self, x: f64) -> bool {
        self.min <= x && x <= self.max
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let end = |x: f64| match x {
            f64::INFINITY => "∞".to_string(),
            f64::NEG_INFINITY => "-∞".to_string(),
            x => x.to_string(),
        };
        write!(f, "[{}, {}]", end(self.min), end(self.max))
    }
}

const UNIT: Range = Range { min: 0.0, max: 1.0 };
const SIGNED_UNIT: Range = Range {
    min: -1.0,
    max: 1.0,
};
const NON_NEGATIVE: Range = Range {
    min: 0.0,
    max: f64::INFINITY,
};
const REAL: Range = Range {
    min: f64::NEG_INFINITY,
    max: f64::INFINITY,
};

/// What a metric's number is, for judging (DESIGN.md, "Honesty of a certificate", rule 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricClass {
    /// An estimate with a sampling model: a requirement is judged on its confidence bounds.
    Estimate,
    /// A statistic without a sampling model (PrivLeak): compared by value, and the verdict says so.
    Point,
    /// Shown, never gated on; `why` says what the number is not.
    Diagnostic { why: &'static str },
}

/// One metric path the evidence may hold and a spec may name.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricInfo {
    pub path: String,
    pub range: Range,
    pub better: Better,
    pub class: MetricClass,
}

/// Why the influence figures are diagnostics.
pub const INFLUENCE_IS_DIAGNOSTIC: &str =
    "an influence figure (distance bound, self-influence ratio, Lanczos extremes) of a non-convex \
     model has no sampling model and no guarantee behind it: the certified-removal bound it \
     resembles (Guo et al. 2020) needs a convex loss and added noise, which lethe does not claim";

/// Metric paths under this prefix are influence diagnostics, known to the table or not.
pub const INFLUENCE_PREFIX: &str = "influence.";

/// Per-split statistics: (name, range, better on `forget`, better on `retain`/`utility`,
/// better on `holdout`). Forgetting wants the forget split to look unseen; utility wants the
/// others to stay as they were; the holdout split is only a yardstick.
const SPLIT_STATS: [(&str, Range, Better, Better, Better); 9] = [
    (
        "loss",
        NON_NEGATIVE,
        Better::Higher,
        Better::Lower,
        Better::Lower,
    ),
    // Unlearned minus original per-record loss, nats per token, paired on the same records.
    (
        "loss_increase",
        REAL,
        Better::Higher,
        Better::Lower,
        Better::Neither,
    ),
    // Original minus unlearned greedy exact match, paired on the same records.
    (
        "exact_match_drop",
        SIGNED_UNIT,
        Better::Higher,
        Better::Lower,
        Better::Neither,
    ),
    (
        "loss_ratio",
        NON_NEGATIVE,
        Better::Higher,
        Better::Lower,
        Better::Lower,
    ),
    (
        "exact_match",
        UNIT,
        Better::Lower,
        Better::Higher,
        Better::Neither,
    ),
    (
        "exact_memorization",
        UNIT,
        Better::Lower,
        Better::Higher,
        Better::Neither,
    ),
    (
        "extraction_strength",
        UNIT,
        Better::Lower,
        Better::Higher,
        Better::Neither,
    ),
    (
        "rouge_l",
        UNIT,
        Better::Lower,
        Better::Higher,
        Better::Neither,
    ),
    (
        "truth_ratio",
        NON_NEGATIVE,
        Better::Neither,
        Better::Neither,
        Better::Neither,
    ),
];
/// The splits an evidence file evaluates, in evidence order.
pub const SPLITS: [&str; 4] = ["forget", "retain", "holdout", "utility"];
/// The membership-inference attacks the evidence runs.
pub const ATTACKS: [&str; 7] = [
    "loss",
    "zlib",
    "min_k",
    "min_k_pp",
    "ref_original",
    "ref_reference",
    "grad_norm",
];
/// The attacks whose AUC is 0.5 on a model that never saw the members (forget and holdout
/// records are then exchangeable): every attack but the reference ones, whose scores compare two
/// models and have no such null (`ref_original` reaches 0.03 on an exact retrain, issue 16).
pub const CHANCE_NULL_ATTACKS: [&str; 5] = ["loss", "zlib", "min_k", "min_k_pp", "grad_norm"];

/// The prefix of the KS distances to the retrained reference, one per per-record score.
pub const KS_TO_REFERENCE: &str = "forget.ks_to_reference";
/// The per-record scores whose distance to the reference is bounded: TOFU's truth ratio `R` (of
/// the question–answer records with perturbed answers) and the loss (of every record).
pub const KS_TO_REFERENCE_SCORES: [&str; 2] = ["truth_ratio", "loss"];
const ATTACK_STATS: [&str; 3] = ["auc", "tpr_at_1pct_fpr", "tpr_at_5pct_fpr"];

fn known_metrics() -> Vec<MetricInfo> {
    let info = |path: String, range, better, class| MetricInfo {
        path,
        range,
        better,
        class,
    };
    let estimate = MetricClass::Estimate;
    let mut all = Vec::new();
    for split in SPLITS {
        for (stat, range, forget, kept, holdout) in SPLIT_STATS {
            let better = match split {
                "forget" => forget,
                "holdout" => holdout,
                _ => kept,
            };
            all.push(info(format!("{split}.{stat}"), range, better, estimate));
        }
    }
    // The unlearned model's attacks (a weaker attack is better) and, for contrast, the same
    // attacks on the original model (no direction: they show the attack has power) and on the
    // retrained reference model against the same non-members (no direction: the level a model
    // that never saw the forget set reaches; `within_reference` compares with it).
    for (prefix, better) in [
        ("", Better::Lower),
        ("original.", Better::Neither),
        (REFERENCE_PREFIX, Better::Neither),
    ] {
        for attack in ATTACKS {
            for stat in ATTACK_STATS {
                let path = format!("{prefix}mia.{attack}.{stat}");
                all.push(info(path, UNIT, better, estimate));
            }
        }
    }
    // MUSE's PrivLeak: relative AUC gap to the retrained model, 0 is ideal, either sign is bad.
    all.push(info(
        "privleak".into(),
        REAL,
        Better::Neither,
        MetricClass::Point,
    ));
    // TOFU's forget quality: the two-sided KS test's p-value between the unlearned and the
    // retrained model's truth ratios on the forget records. Higher = the two samples are less
    // distinguishable (closer to the retrained model); a high p-value is absence of evidence of a
    // difference, not evidence of equivalence, so it is shown and never gated on.
    all.push(info(
        "forget_quality".into(),
        UNIT,
        Better::Higher,
        MetricClass::Diagnostic {
            why: "a p-value (higher = closer to the retrained model): failing to reject is \
                  absence of evidence, not evidence of forgetting; gate on \
                  `forget.ks_to_reference.*` instead",
        },
    ));
    // The equivalence figures: the KS distance between the unlearned and the retrained model's
    // per-record scores of the forget records, bounded by a person-level bootstrap
    // (`judge::equivalence`). 0 = the same distribution; a spec requires the upper bound below δ.
    for score in KS_TO_REFERENCE_SCORES {
        all.push(info(
            format!("{KS_TO_REFERENCE}.{score}"),
            UNIT,
            Better::Lower,
            estimate,
        ));
    }
    for stat in ["self_influence_ratio", "distance_bound"] {
        all.push(info(
            format!("{INFLUENCE_PREFIX}{stat}"),
            NON_NEGATIVE,
            Better::Lower,
            MetricClass::Diagnostic {
                why: INFLUENCE_IS_DIAGNOSTIC,
            },
        ));
    }
    all
}

/// The prefix of the reference model's metrics: `reference.<path>` is `<path>` measured on the
/// model retrained without the forget set.
pub const REFERENCE_PREFIX: &str = "reference.";

/// Every metric path a spec may name, with its range and direction (documented in
/// `specs/README.md`).
pub static KNOWN_METRICS: LazyLock<Vec<MetricInfo>> = LazyLock::new(known_metrics);

/// The entry for `path`, if it is a known metric.
pub fn known_metric(path: &str) -> Option<&'static MetricInfo> {
    KNOWN_METRICS.iter().find(|m| m.path == path)
}

// ---------------------------------------------------------------------------------------------
// Reading metrics out of an evidence document.

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricError {
    #[error("the evidence has no `metrics` object")]
    NoMetrics,
    #[error("the evidence has no metric `{path}` (nothing at `{missing}`)")]
    Missing { path: String, missing: String },
    #[error("the evidence's metric `{path}` is malformed: {message}")]
    Malformed { path: String, message: String },
    #[error("the evidence's metric `{path}` = {value} lies outside its range {range}")]
    OutOfRange {
        path: String,
        value: f64,
        range: String,
    },
}

/// The metric at `path` (dot-separated) under the evidence's top-level `"metrics"` object,
/// checked for consistency and, for a known path, for its range. A missing path is an error.
pub fn lookup(evidence: &Value, path: &str) -> Result<Metric, MetricError> {
    let mut node = evidence.get("metrics").ok_or(MetricError::NoMetrics)?;
    let mut walked = String::new();
    for segment in path.split('.') {
        if !walked.is_empty() {
            walked.push('.');
        }
        walked.push_str(segment);
        node = node.get(segment).ok_or_else(|| MetricError::Missing {
            path: path.to_string(),
            missing: walked.clone(),
        })?;
    }
    let malformed = |message: String| MetricError::Malformed {
        path: path.to_string(),
        message,
    };
    let metric = Metric::deserialize(node).map_err(|e| malformed(e.to_string()))?;
    metric.check().map_err(|e| malformed(e.to_string()))?;
    if let Some(info) = known_metric(path) {
        if !info.range.contains(metric.value()) {
            return Err(MetricError::OutOfRange {
                path: path.to_string(),
                value: metric.value(),
                range: info.range.to_string(),
            });
        }
    }
    Ok(metric)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn known_metrics_hold_the_documented_paths_once_each() {
        for path in [
            "mia.loss.auc",
            "mia.min_k_pp.tpr_at_1pct_fpr",
            "original.mia.grad_norm.tpr_at_5pct_fpr",
            "forget.exact_match",
            "retain.loss_ratio",
            "retain.loss_increase",
            "utility.exact_match_drop",
            "utility.truth_ratio",
            "influence.self_influence_ratio",
            "influence.distance_bound",
            "privleak",
            "forget_quality",
            "forget.ks_to_reference.truth_ratio",
            "forget.ks_to_reference.loss",
        ] {
            assert!(known_metric(path).is_some(), "{path}");
        }
        // 4 splits × 9 + 3 models × 7 attacks × 3 + 4 top-level + 2 distances to the reference.
        assert_eq!(KNOWN_METRICS.len(), 36 + 63 + 4 + 2);
        let class = |path: &str| known_metric(path).map(|m| m.class);
        assert_eq!(class("mia.loss.auc"), Some(MetricClass::Estimate));
        assert_eq!(class("privleak"), Some(MetricClass::Point));
        assert_eq!(
            class("forget.ks_to_reference.truth_ratio"),
            Some(MetricClass::Estimate)
        );
        for diagnostic in [
            "forget_quality",
            "influence.distance_bound",
            "influence.self_influence_ratio",
        ] {
            assert!(
                matches!(class(diagnostic), Some(MetricClass::Diagnostic { .. })),
                "{diagnostic}"
            );
        }
        assert!(known_metric("reference.mia.min_k.auc").is_some());
        let mut paths: Vec<_> = KNOWN_METRICS.iter().map(|m| &m.path).collect();
        paths.sort();
        paths.dedup();
        assert_eq!(paths.len(), KNOWN_METRICS.len());
        let em = |split: &str| known_metric(&format!("{split}.exact_match")).map(|m| m.better);
        assert_eq!(em("forget"), Some(Better::Lower));
        assert_eq!(em("retain"), Some(Better::Higher));
    }

    #[test]
    fn bounds_by_kind() {
        // Φ⁻¹(0.95) = 1.6448536269514722 (standard tables).
        let z95 = 1.6448536269514722;
        let normal = Metric::Normal {
            value: 1.0,
            std_error: 0.1,
            n: 50,
        };
        assert!((normal.bound(0.95, Side::Upper).unwrap() - (1.0 + 0.1 * z95)).abs() < 1e-12);
        assert!((normal.bound(0.95, Side::Lower).unwrap() - (1.0 - 0.1 * z95)).abs() < 1e-12);
        let auc = Metric::Auc {
            value: 0.6,
            variance: 0.0004,
            members: 100,
            nonmembers: 400,
        };
        assert!((auc.bound(0.95, Side::Upper).unwrap() - (0.6 + 0.02 * z95)).abs() < 1e-12);
        assert_eq!(auc.samples(), 100);
        // 0 of n: the one-sided upper bound is 1 − α^(1/n) = 1 − 0.05^(1/90).
        let zero = Metric::Proportion {
            value: 0.0,
            successes: 0,
            trials: 90,
        };
        let expected = 1.0 - 0.05f64.powf(1.0 / 90.0);
        assert!((zero.bound(0.95, Side::Upper).unwrap() - expected).abs() < 1e-9);
        assert_eq!(zero.bound(0.95, Side::Lower).unwrap(), 0.0);
        let point = Metric::Point { value: 0.3, n: 10 };
        assert_eq!(point.bound(0.99, Side::Upper).unwrap(), 0.3);
        // Replicates 0.00, 0.01, …, 0.99: the type-8 percentiles are NumPy's
        // `quantile(x, q, method="median_unbiased")`, 0.9465 at 0.95 and 0.0435 at 0.05; the
        // standard error is `np.std(x, ddof=1)` = 0.2901149197588202.
        let replicates: Vec<f64> = (0..100).map(|i| f64::from(i) / 100.0).collect();
        let boot = Metric::ClusterBootstrap {
            value: 0.4,
            records: 90,
            clusters: 10,
            seed: 7,
            resamples: 100,
            replicates,
        };
        assert!((boot.bound(0.95, Side::Upper).unwrap() - 0.9465).abs() < 1e-12);
        assert!((boot.bound(0.95, Side::Lower).unwrap() - 0.0435).abs() < 1e-12);
        assert!((boot.std_error().unwrap() - 0.2901149197588202).abs() < 1e-12);
        assert_eq!((boot.samples(), boot.unit()), (10, "clusters"));
        assert!(boot.check().is_ok());
        let unsorted = Metric::ClusterBootstrap {
            value: 0.4,
            records: 90,
            clusters: 10,
            seed: 7,
            resamples: 2,
            replicates: vec![0.5, 0.4],
        };
        assert!(matches!(
            unsorted.check(),
            Err(Inconsistency::BadReplicates { .. })
        ));
        assert!(normal.bound(0.3, Side::Upper).is_err());
    }

    #[test]
    fn lookup_walks_nested_objects_and_names_what_is_missing() {
        let evidence = json!({"metrics": {
            "mia": {"loss": {"auc": {"kind": "auc", "value": 0.5, "variance": 0.001,
                                      "members": 90, "nonmembers": 440}}},
            "forget": {"exact_match": {"kind": "proportion", "value": 0.5,
                                        "successes": 45, "trials": 90}},
        }});
        assert_eq!(lookup(&evidence, "mia.loss.auc").unwrap().value(), 0.5);
        assert_eq!(
            lookup(&evidence, "forget.exact_match").unwrap().samples(),
            90
        );
        assert_eq!(
            lookup(&evidence, "mia.zlib.auc"),
            Err(MetricError::Missing {
                path: "mia.zlib.auc".into(),
                missing: "mia.zlib".into()
            })
        );
        assert_eq!(lookup(&json!({}), "privleak"), Err(MetricError::NoMetrics));
    }

    #[test]
    fn lookup_refuses_malformed_inconsistent_and_out_of_range_values() {
        let with = |m: Value| json!({"metrics": {"forget": {"exact_match": m}}});
        let cases = [
            json!({"kind": "proportion", "value": 0.5, "successes": 40, "trials": 90}),
            json!({"kind": "proportion", "value": 0.5, "successes": 1, "trials": 2, "x": 1}),
            json!({"kind": "gaussian", "value": 0.5}),
            json!({"kind": "normal", "value": 0.5, "std_error": -1.0, "n": 5}),
            json!({"value": 0.5}),
        ];
        for case in cases {
            let got = lookup(&with(case.clone()), "forget.exact_match");
            assert!(
                matches!(got, Err(MetricError::Malformed { .. })),
                "{case}: {got:?}"
            );
        }
        let high = json!({"kind": "normal", "value": 1.5, "std_error": 0.1, "n": 5});
        assert!(matches!(
            lookup(&with(high), "forget.exact_match"),
            Err(MetricError::OutOfRange { .. })
        ));
    }
}
