"""Reference values for lethe's distance to the retrained reference (src/judge/equivalence.rs),
computed outside the Rust code: `python3 make_equivalence.py > equivalence.json`.

- Point KS distance: `scipy.stats.ks_2samp(a, b).statistic` (two-sided, the sup of the absolute
  difference of the two empirical CDFs), for fixed cases with ties and unequal sizes.
- Paired person-level bootstrap: the same records scored by two "models" (first, second), each
  record labelled by its person. A NumPy generator (`default_rng`, not lethe's ChaCha8) draws the
  persons with replacement, `resamples` times, and takes both scores of every record of each drawn
  person; the statistic of a replicate is `ks_2samp(...).statistic`. The upper bounds are the
  0.95 and 0.90 percentiles of the replicates by `numpy.quantile(method="median_unbiased")`
  (Hyndman & Fan type 8, statrs' `quantile`). Another generator draws other persons, so lethe's
  bounds agree only up to Monte-Carlo error: `bootstrap_upper_95_mc_se` is the standard deviation
  of the 0.95 percentile over 40 further NumPy runs of the same size (seeds 1..40).
"""
import json
import sys

import numpy as np
import scipy
import scipy.stats as st


def ks(a, b):
    return float(st.ks_2samp(a, b).statistic)


def ks_fast(a, b):
    # The same statistic as ks_2samp's, by searchsorted on the pooled values (used for the
    # thousands of replicates; checked against ks_2samp below).
    a, b = np.sort(a), np.sort(b)
    x = np.concatenate([a, b])
    fa = np.searchsorted(a, x, side="right") / len(a)
    fb = np.searchsorted(b, x, side="right") / len(b)
    return float(np.max(np.abs(fa - fb)))


def bootstrap(first, second, clusters, resamples, seed):
    rng = np.random.default_rng(seed)
    labels = sorted(set(clusters))
    idx = {c: np.flatnonzero(np.asarray(clusters) == c) for c in labels}
    out = np.empty(resamples)
    for r in range(resamples):
        pick = rng.integers(0, len(labels), size=len(labels))
        rows = np.concatenate([idx[labels[i]] for i in pick])
        out[r] = ks_fast(first[rows], second[rows])
    return out


def q(reps, p):
    return float(np.quantile(reps, p, method="median_unbiased"))


def paired_case(name, first, second, clusters, resamples):
    first, second = np.asarray(first, float), np.asarray(second, float)
    reps = bootstrap(first, second, clusters, resamples, seed=0)
    assert abs(ks_fast(first[:40], second[5:60]) - ks(first[:40], second[5:60])) < 1e-12
    spread = [q(bootstrap(first, second, clusters, resamples, seed=s), 0.95) for s in range(1, 41)]
    return dict(name=name, first=[float(v) for v in first], second=[float(v) for v in second],
                clusters=list(clusters), scipy_ks_statistic=ks(first, second),
                cluster_count=len(set(clusters)), bootstrap_resamples=resamples,
                bootstrap_upper_95=q(reps, 0.95), bootstrap_upper_90=q(reps, 0.90),
                bootstrap_upper_95_mc_se=float(np.std(spread, ddof=1)))


def main():
    rng = np.random.default_rng(20261130)
    small_a = [0.1, 0.4, 0.4, 0.9, 1.3]
    small_b = [0.2, 0.4, 0.5, 1.0]
    grid_a = np.round(rng.normal(0, 1, 30), 1)
    grid_b = np.round(rng.normal(0.4, 1.2, 45), 1)
    tr_a = np.round(rng.lognormal(-0.3, 0.5, 90), 6)
    tr_b = np.round(rng.lognormal(-0.1, 0.4, 90), 6)
    ks_cases = [dict(name=n, a=[float(v) for v in a], b=[float(v) for v in b],
                     scipy_ks_statistic=ks(a, b))
                for n, a, b in [("small_ties", small_a, small_b), ("grid_unequal", grid_a, grid_b),
                                ("truth_ratio_like", tr_a, tr_b)]]
    # The bundled world's forget05 shape: 10 persons x 9 question-answer records, a person
    # effect shared by both models, the second model shifted and with its own record noise.
    people = [f"p{i:02}" for i in np.repeat(np.arange(10), 9)]
    effect = np.repeat(rng.normal(0, 0.6, 10), 9)
    first = np.round(np.exp(effect + rng.normal(-0.4, 0.5, 90)), 6)
    second = np.round(np.exp(0.8 * effect + rng.normal(-0.1, 0.5, 90)), 6)
    # 12 persons with 1-8 records each, scores on a coarse grid (ties within and across models).
    sizes = rng.integers(1, 9, 12)
    uneven = [f"s{i:02}" for i, k in enumerate(sizes) for _ in range(k)]
    e2 = np.repeat(rng.normal(0, 1, 12), sizes)
    u_first = np.round(e2 + rng.normal(0, 1, len(uneven)), 0) / 2
    u_second = np.round(e2 + rng.normal(0.3, 1, len(uneven)), 0) / 2
    paired_cases = [paired_case("people", first, second, people, 2000),
                    paired_case("uneven_ties", u_first, u_second, uneven, 2000)]
    json.dump(dict(made_with=dict(numpy=np.__version__, scipy=scipy.__version__,
                                  python=sys.version.split()[0]),
                   notes=__doc__.strip(), ks_cases=ks_cases, paired_cases=paired_cases),
              sys.stdout, indent=1)


main()
