//! Statistics at the level of the unit that was sampled (DESIGN.md, "Honesty of a certificate",
//! rule 3): records of one person are correlated, so an AUC, a mean or a proportion over records
//! gets its variance from sums within each cluster (a subject, a document) and the spread of those
//! sums across clusters, and a sample floor counts clusters.
//!
//! This module owns Obuchowski's clustered DeLong variance of an AUC (Obuchowski 1997,
//! "Nonparametric analysis of clustered ROC curve data", Biometrics 53:567–578), the
//! cluster-robust (CR1) mean, and the cluster-robust proportion with Clopper–Pearson bounds on its
//! design-effect-adjusted effective sample size (Korn & Graubard 1998). Each takes the per-record
//! scores and, alongside, one cluster label per record (any `Ord` type: a subject string, an
//! index); a record with no subject of its own should be labelled by its own id, which makes it a
//! cluster of one. With every cluster a singleton, the clustered AUC variance is DeLong's and the
//! CR1 standard error is the ordinary s/√n.
//! Like `stats`, it knows no models and decides no verdicts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::judge::stats::{
    beta_quantile, check_sample, finite, placements, AucEstimate, Interval, Sample, StatsError,
};

/// Checks that every score has a label, and maps the labels of both samples to dense indices
/// (one index space, so a cluster holding members and non-members is one cluster).
fn cluster_indices<C: Ord>(
    samples: [(Sample, usize, &[C]); 2],
) -> Result<([Vec<usize>; 2], usize), StatsError> {
    let mut index: BTreeMap<&C, usize> = BTreeMap::new();
    let mut out: [Vec<usize>; 2] = Default::default();
    for (slot, (sample, scores, labels)) in out.iter_mut().zip(samples) {
        if labels.len() != scores {
            return Err(StatsError::ClusterLabels {
                sample,
                scores,
                labels: labels.len(),
            });
        }
        for label in labels {
            let next = index.len();
            slot.push(*index.entry(label).or_insert(next));
        }
    }
    let clusters = index.len();
    Ok((out, clusters))
}

/// The number of distinct clusters among `indices`, refused below `need`.
fn distinct(
    sample: Sample,
    indices: &[usize],
    need: usize,
    what: &'static str,
) -> Result<usize, StatsError> {
    let got = indices
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    if got < need {
        return Err(StatsError::TooFewClusters {
            sample,
            got,
            need,
            what,
        });
    }
    Ok(got)
}

/// An AUC with Obuchowski's clustered variance and the cluster counts behind it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClusteredAuc {
    /// The AUC (the same point estimate as `stats::roc_auc`), the clustered variance, and the
    /// record counts `m` members and `n` non-members.
    pub estimate: AucEstimate,
    /// Clusters holding at least one member (I₁₀ in the paper).
    pub member_clusters: usize,
    /// Clusters holding at least one non-member (I₀₁).
    pub nonmember_clusters: usize,
    /// All clusters (I); a cluster may hold members and non-members.
    pub clusters: usize,
}

/// AUC of `members` against `nonmembers` with Obuchowski's (1997) clustered variance; the labels
/// give each score's cluster. With the DeLong components V₁₀(X) (the share of non-members below
/// member X, ties one half) and V₀₁(Y) (the share of members above non-member Y), summed per
/// cluster i over its mᵢ members and nᵢ non-members, and M, N the record totals:
///
/// ```text
/// S₁₀ = I₁₀ / ((I₁₀ − 1)·M) · Σᵢ (V₁₀ᵢ − mᵢθ)²
/// S₀₁ = I₀₁ / ((I₀₁ − 1)·N) · Σᵢ (V₀₁ᵢ − nᵢθ)²
/// S₁₁ = I / (I − 1) · Σᵢ (V₁₀ᵢ − mᵢθ)(V₀₁ᵢ − nᵢθ)
/// Var θ = S₁₀/M + S₀₁/N + 2·S₁₁/(M·N)
/// ```
///
/// S₁₁ is zero unless some cluster holds both members and non-members; it is negative when a
/// subject's members and non-members move together (it then *narrows* the interval, as a paired
/// design does). Needs two clusters with members and two with non-members; a variance that comes
/// out negative (possible with very few, very unequal clusters) is an error, never a zero width.
pub fn clustered_delong<C: Ord>(
    members: &[f64],
    member_clusters: &[C],
    nonmembers: &[f64],
    nonmember_clusters: &[C],
) -> Result<ClusteredAuc, StatsError> {
    let what = "the clustered AUC variance";
    check_sample(Sample::Members, members, 1, what)?;
    check_sample(Sample::Nonmembers, nonmembers, 1, what)?;
    let ([of_member, of_nonmember], clusters) = cluster_indices([
        (Sample::Members, members.len(), member_clusters),
        (Sample::Nonmembers, nonmembers.len(), nonmember_clusters),
    ])?;
    let i10 = distinct(Sample::Members, &of_member, 2, what)?;
    let i01 = distinct(Sample::Nonmembers, &of_nonmember, 2, what)?;
    let (m, n) = (members.len() as f64, nonmembers.len() as f64);
    let member_placements = placements(members, nonmembers);
    let theta = member_placements.iter().sum::<f64>() / (m * n);
    // Per cluster: Σ (V − θ) over its records = Vᵢ − (count)·θ.
    let (mut a, mut b) = (vec![0.0; clusters], vec![0.0; clusters]);
    for (&c, p) in of_member.iter().zip(&member_placements) {
        a[c] += p / n - theta;
    }
    for (&c, p) in of_nonmember.iter().zip(placements(nonmembers, members)) {
        b[c] += 1.0 - p / m - theta;
    }
    let (i10f, i01f, i) = (i10 as f64, i01 as f64, clusters as f64);
    let s10 = i10f / ((i10f - 1.0) * m) * a.iter().map(|x| x * x).sum::<f64>();
    let s01 = i01f / ((i01f - 1.0) * n) * b.iter().map(|x| x * x).sum::<f64>();
    let s11 = i / (i - 1.0) * a.iter().zip(&b).map(|(x, y)| x * y).sum::<f64>();
    let variance = finite(what, s10 / m + s01 / n + 2.0 * s11 / (m * n))?;
    if variance < 0.0 {
        return Err(StatsError::NegativeVariance {
            what,
            value: variance,
        });
    }
    Ok(ClusteredAuc {
        estimate: AucEstimate {
            auc: theta,
            variance,
            m: members.len(),
            n: nonmembers.len(),
        },
        member_clusters: i10,
        nonmember_clusters: i01,
        clusters,
    })
}

/// A mean of per-record values with its cluster-robust standard error.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClusteredMean {
    pub mean: f64,
    pub std_error: f64,
    pub records: usize,
    pub clusters: usize,
}

/// The mean of `values` with the CR1 sandwich standard error of an intercept-only regression:
/// residuals summed within each cluster, uᵍ = Σ (xᵢ − x̄), then Var x̄ = G/(G−1) · Σ uᵍ² / N²
/// (statsmodels' `cov_type="cluster"`, whose other factor (N−1)/(N−K) is 1 for K = 1). Needs two
/// clusters.
pub fn clustered_mean<C: Ord>(values: &[f64], clusters: &[C]) -> Result<ClusteredMean, StatsError> {
    let what = "a cluster-robust standard error";
    check_sample(Sample::Values, values, 1, what)?;
    let ([of_value, _], g) = cluster_indices([
        (Sample::Values, values.len(), clusters),
        (Sample::Values, 0, &[]),
    ])?;
    distinct(Sample::Values, &of_value, 2, what)?;
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let mut sums = vec![0.0; g];
    for (&c, x) in of_value.iter().zip(values) {
        sums[c] += x - mean;
    }
    let gf = g as f64;
    let variance = gf / (gf - 1.0) * sums.iter().map(|u| u * u).sum::<f64>() / (n * n);
    Ok(ClusteredMean {
        mean,
        std_error: finite(what, variance.sqrt())?,
        records: values.len(),
        clusters: g,
    })
}

/// A proportion of records with its cluster-robust standard error.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClusteredProportion {
    pub successes: u64,
    pub trials: u64,
    pub clusters: usize,
    /// The CR1 standard error of `successes / trials` ([`clustered_mean`] of the 0/1 outcomes).
    pub std_error: f64,
}

impl ClusteredProportion {
    pub fn value(&self) -> f64 {
        self.successes as f64 / self.trials as f64
    }

    /// The effective sample size n* = p(1−p)/se², at most `trials` (a design effect below one is
    /// not credited). When p is 0 or 1 the standard error is 0 and carries no design effect;
    /// n* is then `trials`, Korn & Graubard's (1998) convention. Counting each cluster once
    /// instead would make the bound non-monotone: 0 hits in 10 people would bound at 0.26 while
    /// 1 hit among 90 records bounds at 0.05 (measured on the bundled world), so a model with a
    /// leak would pass where a model without one fails.
    pub fn effective_n(&self) -> f64 {
        let p = self.value();
        let se2 = self.std_error * self.std_error;
        if p > 0.0 && p < 1.0 && se2 > 0.0 {
            (p * (1.0 - p) / se2).min(self.trials as f64)
        } else {
            self.trials as f64
        }
    }

    /// One-sided Clopper–Pearson bounds at tail mass `alpha` on the effective sample (Korn &
    /// Graubard 1998, without their degrees-of-freedom factor): k* = p·n*, lower =
    /// Beta(k*, n*−k*+1) quantile α, upper = Beta(k*+1, n*−k*) quantile 1−α; exactly 0 and 1 at
    /// the ends.
    pub fn tails(&self, alpha: f64) -> Result<Interval, StatsError> {
        let n = self.effective_n();
        let k = self.value() * n;
        let lower = if self.successes == 0 {
            0.0
        } else {
            beta_quantile(k, n - k + 1.0, alpha)?
        };
        let upper = if self.successes == self.trials {
            1.0
        } else {
            beta_quantile(k + 1.0, n - k, 1.0 - alpha)?
        };
        Ok(Interval { lower, upper })
    }
}

/// The share of `outcomes` that are true, with its cluster-robust standard error.
pub fn clustered_proportion<C: Ord>(
    outcomes: &[bool],
    clusters: &[C],
) -> Result<ClusteredProportion, StatsError> {
    let values: Vec<f64> = outcomes.iter().map(|&o| f64::from(u8::from(o))).collect();
    let mean = clustered_mean(&values, clusters)?;
    Ok(ClusteredProportion {
        successes: outcomes.iter().filter(|&&o| o).count() as u64,
        trials: outcomes.len() as u64,
        clusters: mean.clusters,
        std_error: mean.std_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::stats::delong;
    use serde::Deserialize;

    // Reference values: tests/oracles/stats/clustered.json, made by make_clustered.py beside it
    // (numpy 2.4.6, scipy 1.17.1, statsmodels 0.15.0; its "notes" name each formula's source).
    const ORACLE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/oracles/stats/clustered.json"
    );
    const DELONG_ORACLE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/oracles/stats/expected.json"
    );

    #[derive(Deserialize)]
    struct Oracle {
        auc_cases: Vec<AucCase>,
        mean_cases: Vec<MeanCase>,
    }

    #[derive(Deserialize)]
    struct AucCase {
        name: String,
        members: Vec<f64>,
        member_clusters: Vec<String>,
        nonmembers: Vec<f64>,
        nonmember_clusters: Vec<String>,
        auc: f64,
        variance: f64,
        delong_variance: f64,
        bootstrap_variance: f64,
        member_cluster_count: usize,
        nonmember_cluster_count: usize,
        cluster_count: usize,
    }

    #[derive(Deserialize)]
    struct MeanCase {
        name: String,
        values: Vec<f64>,
        clusters: Vec<String>,
        mean: f64,
        std_error: f64,
        clusters_count: usize,
        effective_n: Option<f64>,
        lower_95: Option<f64>,
        upper_95: Option<f64>,
        lower_99: Option<f64>,
        upper_99: Option<f64>,
    }

    fn oracle() -> Oracle {
        serde_json::from_str(&std::fs::read_to_string(ORACLE).expect("read")).expect("parse")
    }

    fn close(what: &str, got: f64, want: f64) {
        let rel = (got - want).abs() / want.abs().max(1e-300);
        assert!(rel <= 1e-9, "{what}: got {got}, want {want}");
    }

    #[test]
    fn clustered_auc_matches_the_obuchowski_oracle() {
        for c in oracle().auc_cases {
            let got = clustered_delong(
                &c.members,
                &c.member_clusters,
                &c.nonmembers,
                &c.nonmember_clusters,
            )
            .expect("clustered DeLong");
            close(&format!("{} auc", c.name), got.estimate.auc, c.auc);
            close(
                &format!("{} var", c.name),
                got.estimate.variance,
                c.variance,
            );
            assert_eq!(
                (got.member_clusters, got.nonmember_clusters, got.clusters),
                (
                    c.member_cluster_count,
                    c.nonmember_cluster_count,
                    c.cluster_count
                ),
                "{}",
                c.name
            );
            // The record-level DeLong variance of the same scores (the oracle's delong_variance)
            // is what the clustering corrects.
            let flat = delong(&c.members, &c.nonmembers).expect("DeLong");
            close(
                &format!("{} delong", c.name),
                flat.variance,
                c.delong_variance,
            );
            // A subject-level bootstrap (4000 resamples of whole clusters, numpy) agrees with the
            // formula to within its own noise; it is an outside check of size, not of digits.
            let ratio = got.estimate.variance / c.bootstrap_variance;
            assert!((0.85..1.2).contains(&ratio), "{}: ratio {ratio}", c.name);
        }
    }

    #[test]
    fn person_clustering_widens_the_bundled_worlds_shape_and_mixed_clusters_can_narrow() {
        let cases = oracle().auc_cases;
        // "people": 10 × 11 members vs 40 × 11 non-members with a person effect: the clustered
        // variance is 4.79× DeLong's (0.004477 vs 0.000935, clustered.json).
        let people = &cases[0];
        assert!(people.variance / people.delong_variance > 4.0);
        // "mixed": subjects with members and non-members that move together: S₁₁ < 0, and the
        // clustered variance is below DeLong's (0.002003 vs 0.006300).
        let mixed = &cases[1];
        assert!(mixed.variance < mixed.delong_variance);
    }

    #[test]
    fn singleton_clusters_reduce_to_delong_on_the_scipy_oracle_cases() {
        #[derive(Deserialize)]
        struct Cases {
            auc_cases: Vec<DelongCase>,
        }
        #[derive(Deserialize)]
        struct DelongCase {
            members: Vec<f64>,
            nonmembers: Vec<f64>,
            delong_var: f64,
        }
        let text = std::fs::read_to_string(DELONG_ORACLE).expect("read");
        let cases: Cases = serde_json::from_str(&text).expect("parse");
        for (i, c) in cases.auc_cases.iter().enumerate() {
            let own = |prefix: &str, k: usize| -> Vec<String> {
                (0..k).map(|j| format!("{prefix}{j}")).collect()
            };
            let got = clustered_delong(
                &c.members,
                &own("m", c.members.len()),
                &c.nonmembers,
                &own("n", c.nonmembers.len()),
            )
            .expect("clustered");
            // expected.json's delong_var: fast DeLong (Sun & Xu 2014) in numpy.
            close(&format!("case {i}"), got.estimate.variance, c.delong_var);
            assert_eq!(
                got.clusters,
                c.members.len() + c.nonmembers.len(),
                "case {i}"
            );
        }
    }

    #[test]
    fn cluster_robust_means_and_proportions_match_statsmodels() {
        for c in oracle().mean_cases {
            let got = clustered_mean(&c.values, &c.clusters).expect("mean");
            close(&format!("{} mean", c.name), got.mean, c.mean);
            // statsmodels OLS(values, 1).fit(cov_type="cluster").bse[0].
            close(&format!("{} se", c.name), got.std_error, c.std_error);
            assert_eq!(got.clusters, c.clusters_count, "{}", c.name);
            let Some(effective_n) = c.effective_n else {
                continue;
            };
            let outcomes: Vec<bool> = c.values.iter().map(|&v| v == 1.0).collect();
            let p = clustered_proportion(&outcomes, &c.clusters).expect("proportion");
            close(&format!("{} n*", c.name), p.effective_n(), effective_n);
            // scipy.stats.beta.ppf on the effective counts (make_clustered.py).
            let t95 = p.tails(0.05).expect("95");
            let t99 = p.tails(0.01).expect("99");
            close("lower 95", t95.lower, c.lower_95.expect("lower_95"));
            close("upper 95", t95.upper, c.upper_95.expect("upper_95"));
            close("lower 99", t99.lower, c.lower_99.expect("lower_99"));
            close("upper 99", t99.upper, c.upper_99.expect("upper_99"));
        }
    }

    #[test]
    fn a_proportion_with_no_successes_has_no_design_effect() {
        // 0 hits in 90 records of 10 people: se = 0 carries no design effect, so n* = 90 (Korn &
        // Graubard 1998) and the one-sided 95% upper bound is 1 − 0.05^(1/90) (Clopper–Pearson
        // with k = 0, by hand) — below the bound of one hit among them, so the bound is monotone.
        let people: Vec<usize> = (0..90).map(|i| i / 9).collect();
        let p = clustered_proportion(&[false; 90], &people).expect("proportion");
        assert_eq!((p.effective_n(), p.clusters, p.std_error), (90.0, 10, 0.0));
        let upper = p.tails(0.05).expect("tails").upper;
        assert!(
            (upper - (1.0 - 0.05f64.powf(1.0 / 90.0))).abs() < 1e-12,
            "{upper}"
        );
        let mut one = [false; 90];
        one[0] = true;
        let q = clustered_proportion(&one, &people).expect("proportion");
        assert!(q.tails(0.05).expect("tails").upper > upper);
    }

    #[test]
    fn bad_cluster_inputs_are_errors() {
        use StatsError::*;
        assert!(matches!(
            clustered_delong(&[1.0, 2.0], &["a"], &[0.0, 1.0], &["b", "c"]),
            Err(ClusterLabels {
                sample: Sample::Members,
                scores: 2,
                labels: 1
            })
        ));
        assert!(matches!(
            clustered_delong(&[1.0, 2.0], &["a", "a"], &[0.0, 1.0], &["b", "c"]),
            Err(TooFewClusters {
                sample: Sample::Members,
                got: 1,
                need: 2,
                ..
            })
        ));
        assert!(matches!(
            clustered_mean(&[1.0, 2.0], &[7, 7]),
            Err(TooFewClusters { got: 1, .. })
        ));
        assert!(matches!(
            clustered_mean(&[f64::NAN, 2.0], &[1, 2]),
            Err(NonFiniteScore { .. })
        ));
        assert!(matches!(
            clustered_proportion(&[], &[0u8; 0]),
            Err(EmptySample(Sample::Values))
        ));
    }
}
