//! Equivalence to the retrained reference (issue 16, item 5): how far the unlearned model's
//! per-record scores of the forget records lie from the scores a model retrained without them
//! gives the same records, as a distance with an upper confidence bound — not as a p-value, whose
//! failure to reject is absence of evidence (DESIGN.md, "Honesty of a certificate", rule 1).
//!
//! This module owns the two-sample Kolmogorov–Smirnov distance `D = sup_x |F₁(x) − F₂(x)|`
//! between two empirical distributions (the statistic of `scipy.stats.ks_2samp`, without its
//! p-value) and its seeded person-level (cluster) bootstrap for paired samples: both models scored
//! the same records, and records of one person are correlated, so a replicate draws persons with
//! replacement and takes both models' scores of every record of each drawn person. The bound a
//! spec judges is the percentile of the replicates at its confidence
//! ([`BootstrapDistribution::upper_bound`]). Like `stats`, it knows no models and decides no
//! verdicts.
//!
//! The replicates are reproducible from the per-record scores, the seed and the number of
//! resamples alone: clusters are numbered in ascending order of their labels; one
//! `rand_chacha::ChaCha8Rng::seed_from_u64(seed)` (rand_chacha 0.3, rand 0.8) draws, for each
//! replicate in turn, as many cluster numbers as there are clusters by `gen_range(0..clusters)`;
//! a replicate's two samples are the scores of the drawn clusters' records (every record of a
//! cluster drawn twice counts twice), and its value is `D` between them.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::judge::evidence::RecordEval;
use crate::judge::stats::{check_sample, BootstrapDistribution, Sample, StatsError};

/// The two-sample KS distance `sup_x |F_a(x) − F_b(x)|` of the empirical CDFs of `a` and `b`
/// (ties are stepped over together, as `scipy.stats.ks_2samp` does). Both samples must be
/// non-empty and finite.
pub fn ks_distance(a: &[f64], b: &[f64]) -> Result<f64, StatsError> {
    check_sample(Sample::First, a, 1, "the KS distance")?;
    check_sample(Sample::Second, b, 1, "the KS distance")?;
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    Ok(sorted_ks(&a, &b))
}

/// `ks_distance` of two sorted, finite, non-empty samples.
fn sorted_ks(a: &[f64], b: &[f64]) -> f64 {
    let (m, n) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j, mut d) = (0usize, 0usize, 0f64);
    while i < a.len() || j < b.len() {
        let x = match (a.get(i), b.get(j)) {
            (Some(&x), Some(&y)) => x.min(y),
            (Some(&x), None) | (None, Some(&x)) => x,
            (None, None) => break,
        };
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / m - j as f64 / n).abs());
    }
    d
}

/// A paired KS distance and its person-level bootstrap replicates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedKs {
    /// `D` between the two full samples.
    pub distance: f64,
    /// Records (pairs of scores) behind it.
    pub records: usize,
    /// Distinct clusters (persons) among them: the units each replicate draws.
    pub clusters: usize,
    pub seed: u64,
    /// The replicates, sorted ascending; as many as resamples were asked for.
    pub replicates: Vec<f64>,
}

impl PairedKs {
    /// The replicates as a bootstrap distribution, for its percentile bounds.
    pub fn distribution(&self) -> BootstrapDistribution {
        BootstrapDistribution {
            estimate: self.distance,
            replicates: self.replicates.clone(),
            seed: self.seed,
        }
    }
}

/// The KS distance between `first` and `second` — two models' scores of the same records, one
/// pair per index — with `resamples` person-level bootstrap replicates drawn from `seed` as the
/// module documentation describes. `clusters` labels each record (its subject, or its own id).
/// Needs two clusters (one cannot be resampled) and finite scores.
pub fn paired_cluster_bootstrap_ks<C: Ord>(
    first: &[f64],
    second: &[f64],
    clusters: &[C],
    resamples: usize,
    seed: u64,
) -> Result<PairedKs, StatsError> {
    check_sample(Sample::First, first, 1, "the paired KS distance")?;
    check_sample(Sample::Second, second, 1, "the paired KS distance")?;
    if second.len() != first.len() {
        return Err(StatsError::Unpaired {
            first: first.len(),
            second: second.len(),
        });
    }
    if clusters.len() != first.len() {
        return Err(StatsError::ClusterLabels {
            sample: Sample::Values,
            scores: first.len(),
            labels: clusters.len(),
        });
    }
    if resamples == 0 {
        return Err(StatsError::NoResamples);
    }
    let mut by_label: BTreeMap<&C, Vec<usize>> = BTreeMap::new();
    for (i, label) in clusters.iter().enumerate() {
        by_label.entry(label).or_default().push(i);
    }
    let groups: Vec<Vec<usize>> = by_label.into_values().collect();
    if groups.len() < 2 {
        return Err(StatsError::TooFewClusters {
            sample: Sample::Values,
            got: groups.len(),
            need: 2,
            what: "a person-level bootstrap",
        });
    }
    let distance = ks_distance(first, second)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let mut replicates = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        a.clear();
        b.clear();
        for _ in 0..groups.len() {
            for &i in &groups[rng.gen_range(0..groups.len())] {
                a.push(first[i]);
                b.push(second[i]);
            }
        }
        a.sort_by(f64::total_cmp);
        b.sort_by(f64::total_cmp);
        replicates.push(sorted_ks(&a, &b));
    }
    replicates.sort_by(f64::total_cmp);
    Ok(PairedKs {
        distance,
        records: first.len(),
        clusters: groups.len(),
        seed,
        replicates,
    })
}

/// Resamples the certifier draws for each distance to the reference: the Monte-Carlo error of a
/// 95% percentile of 2000 replicates is about 0.005 in KS units on forget05's shape
/// (tests/oracles/stats/equivalence.json, `bootstrap_upper_95_mc_se`).
pub const KS_RESAMPLES: usize = 2000;

/// Why a distance to the reference could not be computed from two models' evaluations.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EquivalenceError {
    #[error("the two models were scored on different records ({first} and {second})")]
    NotSameRecords { first: String, second: String },
    #[error("the two models were scored on {first} and {second} records")]
    RecordCounts { first: usize, second: usize },
    #[error("no record has a {score} from both models")]
    NoScores { score: String },
    #[error("unknown per-record score `{0}` (known: truth_ratio, loss)")]
    UnknownScore(String),
    #[error(transparent)]
    Stats(#[from] StatsError),
}

/// The per-record score named `score` (one of `metric::KS_TO_REFERENCE_SCORES`): TOFU's raw truth
/// ratio `R` (as forget quality compares it), or the loss.
fn score_of(score: &str, r: &RecordEval) -> Result<Option<f64>, EquivalenceError> {
    match score {
        "truth_ratio" => Ok(r.qa.as_ref().and_then(|q| q.truth_ratio)),
        "loss" => Ok(Some(r.loss)),
        other => Err(EquivalenceError::UnknownScore(other.to_string())),
    }
}

/// The paired KS distance of `score` between two models' evaluations of the same split (the same
/// records in the same order), over the records both scored, with `resamples` person-level
/// bootstrap replicates from `seed`; clusters are the records' subjects (`RecordEval::cluster`).
pub fn ks_to_reference(
    score: &str,
    unlearned: &[RecordEval],
    reference: &[RecordEval],
    resamples: usize,
    seed: u64,
) -> Result<PairedKs, EquivalenceError> {
    if unlearned.len() != reference.len() {
        return Err(EquivalenceError::RecordCounts {
            first: unlearned.len(),
            second: reference.len(),
        });
    }
    let (mut first, mut second, mut clusters) = (Vec::new(), Vec::new(), Vec::new());
    for (u, r) in unlearned.iter().zip(reference) {
        if u.id != r.id {
            return Err(EquivalenceError::NotSameRecords {
                first: u.id.clone(),
                second: r.id.clone(),
            });
        }
        if let (Some(a), Some(b)) = (score_of(score, u)?, score_of(score, r)?) {
            first.push(a);
            second.push(b);
            clusters.push(u.cluster());
        }
    }
    if first.is_empty() {
        return Err(EquivalenceError::NoScores {
            score: score.to_string(),
        });
    }
    Ok(paired_cluster_bootstrap_ks(
        &first, &second, &clusters, resamples, seed,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    // Reference values: tests/oracles/stats/equivalence.json, made by make_equivalence.py beside
    // it (SciPy's `ks_2samp(...).statistic` for the point distances; a NumPy person-level
    // bootstrap with its own generator for the size of the upper bound).
    const ORACLE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/oracles/stats/equivalence.json"
    );

    #[derive(Deserialize)]
    struct Oracle {
        ks_cases: Vec<KsCase>,
        paired_cases: Vec<PairedCase>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct KsCase {
        name: String,
        a: Vec<f64>,
        b: Vec<f64>,
        scipy_ks_statistic: f64,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct PairedCase {
        name: String,
        first: Vec<f64>,
        second: Vec<f64>,
        clusters: Vec<String>,
        scipy_ks_statistic: f64,
        cluster_count: usize,
        bootstrap_resamples: usize,
        bootstrap_upper_95: f64,
        bootstrap_upper_90: f64,
        /// Monte-Carlo standard error of the 95% percentile (binomial order-statistic spread,
        /// in KS units), the tolerance's yardstick.
        bootstrap_upper_95_mc_se: f64,
    }

    fn oracle() -> Oracle {
        serde_json::from_str(&std::fs::read_to_string(ORACLE).unwrap()).unwrap()
    }

    #[test]
    fn ks_distance_matches_scipy() {
        for case in oracle().ks_cases {
            let d = ks_distance(&case.a, &case.b).unwrap();
            assert!(
                (d - case.scipy_ks_statistic).abs() < 1e-12,
                "{}: {d} vs SciPy {}",
                case.name,
                case.scipy_ks_statistic
            );
            // Symmetric in its arguments.
            assert_eq!(ks_distance(&case.b, &case.a).unwrap(), d, "{}", case.name);
        }
    }

    #[test]
    fn ks_distance_by_hand() {
        // F_a steps at 1, 2, 3 (thirds); F_b at 2.5 (all): at x = 2, F_a = 2/3, F_b = 0.
        assert!((ks_distance(&[1.0, 2.0, 3.0], &[2.5]).unwrap() - 2.0 / 3.0).abs() < 1e-15);
        assert_eq!(ks_distance(&[1.0, 2.0], &[2.0, 1.0]).unwrap(), 0.0);
        assert_eq!(ks_distance(&[0.0], &[1.0]).unwrap(), 1.0);
        assert!(matches!(
            ks_distance(&[], &[1.0]),
            Err(StatsError::EmptySample(_))
        ));
        assert!(matches!(
            ks_distance(&[f64::NAN], &[1.0]),
            Err(StatsError::NonFiniteScore { .. })
        ));
    }

    #[test]
    fn paired_bootstrap_agrees_with_an_outside_bootstrap() {
        for case in oracle().paired_cases {
            let got = paired_cluster_bootstrap_ks(
                &case.first,
                &case.second,
                &case.clusters,
                case.bootstrap_resamples,
                7,
            )
            .unwrap();
            assert!(
                (got.distance - case.scipy_ks_statistic).abs() < 1e-12,
                "{}",
                case.name
            );
            assert_eq!(got.clusters, case.cluster_count, "{}", case.name);
            assert_eq!(got.records, case.first.len());
            assert_eq!(got.replicates.len(), case.bootstrap_resamples);
            // Another generator draws other persons: the percentiles agree only up to Monte-Carlo
            // error. Four of the oracle's standard errors (both runs have the same resample
            // count, so the difference's spread is √2 of one) cover any honest run.
            let dist = got.distribution();
            let tolerance = 4.0 * std::f64::consts::SQRT_2 * case.bootstrap_upper_95_mc_se;
            for (confidence, outside) in [
                (0.95, case.bootstrap_upper_95),
                (0.90, case.bootstrap_upper_90),
            ] {
                let upper = dist.upper_bound(confidence).unwrap();
                assert!(
                    (upper - outside).abs() <= tolerance,
                    "{} at {confidence}: {upper} vs NumPy {outside} (± {tolerance})",
                    case.name
                );
            }
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_replicates_and_another_does_not() {
        let case = &oracle().paired_cases[0];
        let run = |seed| {
            paired_cluster_bootstrap_ks(&case.first, &case.second, &case.clusters, 200, seed)
                .unwrap()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3).replicates, run(4).replicates);
        let r = run(3).replicates;
        assert!(r.windows(2).all(|w| w[0] <= w[1]), "sorted");
    }

    #[test]
    fn identical_scores_give_zero_everywhere() {
        // The same scores from both models: every replicate pairs equal samples, D = 0.
        let x = [0.3, 0.1, 0.7, 0.7, 0.2, 0.9];
        let c = ["p", "p", "q", "q", "r", "r"];
        let got = paired_cluster_bootstrap_ks(&x, &x, &c, 50, 1).unwrap();
        assert_eq!(got.distance, 0.0);
        assert!(got.replicates.iter().all(|&r| r == 0.0));
        assert_eq!(got.distribution().upper_bound(0.95).unwrap(), 0.0);
    }

    fn evals(losses: &[f64], truth_ratios: &[(usize, f64)]) -> Vec<RecordEval> {
        // Eight records of four persons, two each.
        (0..losses.len())
            .map(|i| RecordEval {
                id: format!("r{i}"),
                subject: Some(format!("p{}", i / 2)),
                tokens: 5,
                loss: losses[i],
                min_k: 0.0,
                min_k_pp: 0.0,
                zlib_bytes: 10,
                qa: truth_ratios.iter().find(|(at, _)| *at == i).map(|&(_, r)| {
                    crate::judge::evidence::QaEval {
                        exact_memorization: 0.0,
                        extraction_strength: 0.0,
                        greedy: None,
                        truth_ratio: Some(r),
                    }
                }),
            })
            .collect()
    }

    #[test]
    fn distances_to_the_reference_pair_records_and_count_persons() {
        let losses: Vec<f64> = (1..=8).map(f64::from).collect();
        let shifted: Vec<f64> = losses.iter().map(|l| l + 2.5).collect();
        let u = evals(&losses, &[(0, 0.5), (3, 0.7), (5, 0.9)]);
        let r = evals(&shifted, &[(0, 0.6), (3, 0.8), (5, 1.0), (6, 0.1)]);
        // Losses 1..8 against 3.5..10.5: at x = 3, F₁ = 3/8 and F₂ = 0; no gap is wider.
        let loss = ks_to_reference("loss", &u, &r, 100, 1).unwrap();
        assert_eq!((loss.distance, loss.records, loss.clusters), (0.375, 8, 4));
        // Truth ratios where both models have one (records 0, 3, 5 of persons p0, p1, p2):
        // 0.5, 0.7, 0.9 against 0.6, 0.8, 1.0 — at x = 0.5 the CDFs are 1/3 and 0.
        let tr = ks_to_reference("truth_ratio", &u, &r, 100, 1).unwrap();
        assert!((tr.distance - 1.0 / 3.0).abs() < 1e-15);
        assert_eq!((tr.records, tr.clusters), (3, 3));
        let mut other = r.clone();
        other[2].id = "x".into();
        assert!(matches!(
            ks_to_reference("loss", &u, &other, 100, 1),
            Err(EquivalenceError::NotSameRecords { .. })
        ));
        assert!(matches!(
            ks_to_reference("loss", &u, &r[..7], 100, 1),
            Err(EquivalenceError::RecordCounts {
                first: 8,
                second: 7
            })
        ));
        assert!(matches!(
            ks_to_reference("truth_ratio", &evals(&losses, &[]), &r, 100, 1),
            Err(EquivalenceError::NoScores { .. })
        ));
        assert!(matches!(
            ks_to_reference("rouge", &u, &r, 100, 1),
            Err(EquivalenceError::UnknownScore(_))
        ));
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let c = ["p", "q"];
        assert!(matches!(
            paired_cluster_bootstrap_ks(&[1.0, 2.0], &[1.0], &c, 10, 0),
            Err(StatsError::Unpaired {
                first: 2,
                second: 1
            })
        ));
        assert!(matches!(
            paired_cluster_bootstrap_ks(&[1.0, 2.0], &[1.0, 2.0], &["p"], 10, 0),
            Err(StatsError::ClusterLabels { .. })
        ));
        assert!(matches!(
            paired_cluster_bootstrap_ks(&[1.0, 2.0], &[1.0, 2.0], &["p", "p"], 10, 0),
            Err(StatsError::TooFewClusters { got: 1, .. })
        ));
        assert!(matches!(
            paired_cluster_bootstrap_ks(&[1.0, 2.0], &[1.0, 2.0], &c, 0, 0),
            Err(StatsError::NoResamples)
        ));
        assert!(matches!(
            paired_cluster_bootstrap_ks(&[1.0, f64::INFINITY], &[1.0, 2.0], &c, 10, 0),
            Err(StatsError::NonFiniteScore { .. })
        ));
    }
}
