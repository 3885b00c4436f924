"""Reference values for lethe's subject-clustered statistics (src/judge/stats.rs), written from the
papers' formulas independently of the Rust code: `python3 make_clustered.py > clustered.json`.

- Clustered AUC variance: Obuchowski (1997), "Nonparametric analysis of clustered ROC curve
  data", Biometrics 53:567-578, eqs. for S10, S01, S11 computed from the full m x n matrix of
  psi(X, Y) (1 if X > Y, 1/2 if tied, else 0), not from midranks as the Rust code does.
  A subject-level bootstrap (clusters drawn with replacement, B resamples) is given beside it as
  an outside plausibility check of the variance's size.
- Cluster-robust mean: statsmodels OLS of the values on an intercept, cov_type='cluster' (CR1,
  small-sample factor G/(G-1) * (N-1)/(N-K), K = 1).
- Cluster-robust proportion bounds: Clopper-Pearson on the design-effect-adjusted effective sample
  (Korn & Graubard 1998, without their t-degrees-of-freedom factor): n* = p(1-p)/se^2 capped at
  N, k* = p n*; one-sided bounds beta.ppf(alpha, k*, n*-k*+1) and beta.ppf(1-alpha, k*+1, n*-k*).
"""
import json
import sys

import numpy as np
import scipy
import scipy.stats as st
import statsmodels
import statsmodels.api as sm


def psi_matrix(x, y):
    x = np.asarray(x)[:, None]
    y = np.asarray(y)[None, :]
    return (x > y) + 0.5 * (x == y)


def obuchowski(x, xc, y, yc):
    x, y = np.asarray(x, float), np.asarray(y, float)
    xc, yc = np.asarray(xc), np.asarray(yc)
    M, N = len(x), len(y)
    psi = psi_matrix(x, y)
    theta = psi.sum() / (M * N)
    v10 = psi.sum(axis=1) / N  # per member
    v01 = psi.sum(axis=0) / M  # per non-member
    clusters = sorted(set(xc.tolist()) | set(yc.tolist()))
    I10 = len(set(xc.tolist()))
    I01 = len(set(yc.tolist()))
    I = len(clusters)
    a = np.array([v10[xc == c].sum() - (xc == c).sum() * theta for c in clusters])
    b = np.array([v01[yc == c].sum() - (yc == c).sum() * theta for c in clusters])
    s10 = I10 / ((I10 - 1) * M) * (a**2).sum()
    s01 = I01 / ((I01 - 1) * N) * (b**2).sum()
    s11 = I / (I - 1) * (a * b).sum()
    var = s10 / M + s01 / N + 2 * s11 / (M * N)
    # DeLong, records independent (for the ratio only).
    delong = v10.var(ddof=1) / M + v01.var(ddof=1) / N
    return dict(auc=theta, variance=var, s10=s10, s01=s01, s11=s11,
                member_cluster_count=I10, nonmember_cluster_count=I01, cluster_count=I, delong_variance=delong)


def cluster_bootstrap(x, xc, y, yc, B, seed):
    rng = np.random.default_rng(seed)
    x, y, xc, yc = map(np.asarray, (x, y, xc, yc))
    clusters = sorted(set(xc.tolist()) | set(yc.tolist()))
    by = {c: (x[xc == c], y[yc == c]) for c in clusters}
    aucs = []
    while len(aucs) < B:
        pick = rng.choice(len(clusters), size=len(clusters), replace=True)
        xs = np.concatenate([by[clusters[i]][0] for i in pick])
        ys = np.concatenate([by[clusters[i]][1] for i in pick])
        if len(xs) == 0 or len(ys) == 0:
            continue
        aucs.append(psi_matrix(xs, ys).mean())
    return float(np.var(aucs, ddof=1))


def people_case(rng):
    # The bundled world's shape: 10 forget people x 11 records vs 40 holdout people x 11 records,
    # a person effect (sd 1) plus record noise (sd 1), members shifted by 0.3.
    xc = np.repeat([f"f{i:02}" for i in range(10)], 11)
    yc = np.repeat([f"h{i:02}" for i in range(40)], 11)
    x = np.repeat(rng.normal(0.3, 1.0, 10), 11) + rng.normal(0, 1, 110)
    y = np.repeat(rng.normal(0.0, 1.0, 40), 11) + rng.normal(0, 1, 440)
    return np.round(x, 6), xc, np.round(y, 6), yc


def mixed_case(rng):
    # 12 subjects, each with 0-4 members and 0-4 non-members, scores on a coarse grid (ties).
    xs, xcs, ys, ycs = [], [], [], []
    for i in range(12):
        effect = rng.normal(0, 1)
        for _ in range(rng.integers(0, 5) if i > 1 else 2):
            xs.append(np.round(effect + rng.normal(0.5, 1) , 0) / 2); xcs.append(f"s{i:02}")
        for _ in range(rng.integers(0, 5) if i > 1 else 2):
            ys.append(np.round(effect + rng.normal(0, 1), 0) / 2); ycs.append(f"s{i:02}")
    return np.array(xs), np.array(xcs), np.array(ys), np.array(ycs)


def auc_case(name, x, xc, y, yc, seed):
    r = obuchowski(x, xc, y, yc)
    r["bootstrap_variance"] = cluster_bootstrap(x, xc, y, yc, 4000, seed)
    return dict(name=name, members=[float(v) for v in x], member_clusters=[str(c) for c in xc],
                nonmembers=[float(v) for v in y], nonmember_clusters=[str(c) for c in yc],
                **{k: (float(v) if isinstance(v, (float, np.floating)) else int(v)) for k, v in r.items()})


def mean_case(name, values, clusters):
    values, clusters = np.asarray(values, float), np.asarray(clusters)
    codes = np.unique(clusters, return_inverse=True)[1]
    fit = sm.OLS(values, np.ones((len(values), 1))).fit(cov_type="cluster", cov_kwds={"groups": codes})
    out = dict(name=name, values=[float(v) for v in values], clusters=[str(c) for c in clusters],
               mean=float(fit.params[0]), std_error=float(fit.bse[0]),
               clusters_count=int(len(set(clusters.tolist()))))
    if set(np.unique(values)) <= {0.0, 1.0}:
        p, se, n = out["mean"], out["std_error"], len(values)
        n_eff = min(n, p * (1 - p) / se**2) if 0 < p < 1 and se > 0 else out["clusters_count"]
        k = p * n_eff
        for conf in (0.95, 0.99):
            a = 1 - conf
            lo = 0.0 if k == 0 else float(st.beta.ppf(a, k, n_eff - k + 1))
            hi = 1.0 if k == n_eff else float(st.beta.ppf(1 - a, k + 1, n_eff - k))
            out[f"effective_n"] = float(n_eff)
            out[f"lower_{int(conf * 100)}"] = lo
            out[f"upper_{int(conf * 100)}"] = hi
    return out


def main():
    rng = np.random.default_rng(20261130)
    auc_cases = [auc_case("people", *people_case(rng), seed=1),
                 auc_case("mixed", *mixed_case(rng), seed=2)]
    # Means: a per-record score with a person effect; proportions: exact-match hits of 10 people.
    g = np.repeat([f"p{i}" for i in range(10)], 9)
    loss = np.round(np.repeat(rng.normal(2, 0.5, 10), 9) + rng.normal(0, 0.3, 90), 6)
    hits = (np.repeat(rng.uniform(0, 0.4, 10), 9) > rng.uniform(0, 1, 90)).astype(float)
    uneven = np.array(["a"] * 7 + ["b"] * 2 + ["c"] * 5 + ["d"])
    mean_cases = [mean_case("loss", loss, g), mean_case("hits", hits, g),
                  mean_case("uneven", np.round(rng.normal(0, 1, 15), 6), uneven),
                  mean_case("uneven_hits", np.array([1, 0, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1.0]), uneven)]
    json.dump(dict(made_with=dict(numpy=np.__version__, scipy=scipy.__version__,
                                  statsmodels=statsmodels.__version__,
                                  python=sys.version.split()[0]),
                   notes=__doc__.strip(), auc_cases=auc_cases, mean_cases=mean_cases),
              sys.stdout, indent=1)


main()
