//! The row-wise layers of the hand-written pass, forward and backward, generic over the float:
//! layer norm and RMS norm, `gelu_new` and `silu`, the masked causal softmax of attention, the
//! target log-prob of a logits row and a scoring row's statistics. Each works on one row (or
//! one element) so that the caller chooses how rows are split across threads. The formulas are
//! transformers'; this module owns no buffers.
//!
//! A row's sums run as [`LANES`] interleaved partial sums folded at the end: one running float
//! sum is a serial chain the compiler may not reorder, so it would not vectorise.

use super::float::Float;

/// How many partial sums a row's reduction keeps (one AVX2 register of float32).
const LANES: usize = 8;

/// `Σ f(x[i])` as [`LANES`] interleaved partial sums.
#[inline(always)]
fn sum_by<T: Float>(x: &[T], f: impl Fn(T) -> T) -> T {
    sum_by3(x, x, x, |x, _, _| f(x))
}

/// `Σ f(x[i], y[i])` over two rows of one length, as [`LANES`] interleaved partial sums.
#[inline(always)]
fn sum_by2<T: Float>(x: &[T], y: &[T], f: impl Fn(T, T) -> T) -> T {
    sum_by3(x, y, y, |x, y, _| f(x, y))
}

/// `Σ f(x[i], y[i], z[i])` over three rows of one length, as [`LANES`] interleaved partial sums.
#[inline(always)]
fn sum_by3<T: Float>(x: &[T], y: &[T], z: &[T], f: impl Fn(T, T, T) -> T) -> T {
    let mut acc = [T::ZERO; LANES];
    let (xs, ys, zs) = (
        x.chunks_exact(LANES),
        y.chunks_exact(LANES),
        z.chunks_exact(LANES),
    );
    let (xt, yt, zt) = (xs.remainder(), ys.remainder(), zs.remainder());
    for ((cx, cy), cz) in xs.zip(ys).zip(zs) {
        for (((a, &x), &y), &z) in acc.iter_mut().zip(cx).zip(cy).zip(cz) {
            *a += f(x, y, z);
        }
    }
    for (((a, &x), &y), &z) in acc.iter_mut().zip(xt).zip(yt).zip(zt) {
        *a += f(x, y, z);
    }
    acc.into_iter().sum()
}

/// The position of a row's largest value, the first of equal ones (a NaN is never picked
/// unless it comes first, as a scan that keeps the first strict maximum does). Lane-wise
/// maxima first, then the first position holding their maximum.
pub fn argmax<T: Float>(row: &[T]) -> usize {
    let Some(&first) = row.first() else {
        return 0;
    };
    let mut lanes = [first; LANES];
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (m, &x) in lanes.iter_mut().zip(c) {
            *m = if x > *m { x } else { *m };
        }
    }
    let mut max = first;
    for &x in lanes.iter().chain(tail) {
        if x > max {
            max = x;
        }
    }
    row.iter().position(|&x| x == max).unwrap_or(0)
}

/// Mean and 1/σ of one row (biased variance, as `torch.nn.LayerNorm`; the centred sum of
/// squares keeps precision); for an RMS norm (`centered` false) 0 and 1/rms, as transformers'
/// `LlamaRMSNorm`.
pub fn moments<T: Float>(x: &[T], eps: T, centered: bool) -> (T, T) {
    let n = T::of(x.len() as f64);
    let mean = if centered {
        sum_by(x, |v| v) / n
    } else {
        T::ZERO
    };
    let var = sum_by(x, |v| (v - mean) * (v - mean)) / n;
    (mean, T::ONE / (var + eps).sqrt())
}

/// `y = (x − mean)·rstd·w (+ b)`; returns `(mean, rstd)` for the backward.
pub fn norm_row<T: Float>(
    x: &[T],
    w: &[T],
    b: Option<&[T]>,
    eps: T,
    centered: bool,
    y: &mut [T],
) -> (T, T) {
    let (mean, rstd) = moments(x, eps, centered);
    for ((y, &x), &w) in y.iter_mut().zip(x).zip(w) {
        *y = (x - mean) * rstd * w;
    }
    if let Some(b) = b {
        y.iter_mut().zip(b).for_each(|(y, &b)| *y += b);
    }
    (mean, rstd)
}

/// The input gradient of a norm row: with x̂ = (x − mean)·rstd,
/// dx = (w·g − mean(w·g) − x̂·mean(w·g·x̂))·rstd for a layer norm, without the `mean(w·g)`
/// term for an RMS norm (`centered` false); `dx` is overwritten, or added to with `add`.
#[allow(clippy::too_many_arguments)] // the row, its statistics, the weight, the gradients
pub fn norm_row_back<T: Float>(
    x: &[T],
    (mean, rstd): (T, T),
    centered: bool,
    w: &[T],
    g: &[T],
    dx: &mut [T],
    add: bool,
) {
    let n = T::of(x.len() as f64);
    let sum_gw = sum_by2(g, w, |g, w| g * w);
    let sum_gwx = sum_by3(g, w, x, |g, w, x| g * w * ((x - mean) * rstd));
    let mean_gw = if centered { sum_gw / n } else { T::ZERO };
    let mean_gwx = sum_gwx / n;
    for (((dx, &x), &w), &g) in dx.iter_mut().zip(x).zip(w).zip(g) {
        let d = (g * w - mean_gw - (x - mean) * rstd * mean_gwx) * rstd;
        *dx = if add { *dx + d } else { d };
    }
}

/// The weight (and, where there is one, bias) gradients of a norm row added to `dw`, `db`.
pub fn norm_row_params<T: Float>(
    x: &[T],
    (mean, rstd): (T, T),
    g: &[T],
    dw: &mut [T],
    db: Option<&mut [T]>,
) {
    for ((dw, &x), &g) in dw.iter_mut().zip(x).zip(g) {
        *dw += g * (x - mean) * rstd;
    }
    if let Some(db) = db {
        db.iter_mut().zip(g).for_each(|(db, &g)| *db += g);
    }
}

/// The exact GELU `x·Φ(x)`, Φ(x) = (1 + erf(x/√2))/2 (transformers' `"gelu"`, GPT-NeoX's).
#[inline(always)]
pub fn gelu_erf<T: Float>(x: T) -> T {
    x * T::of(0.5) * (T::ONE + (x * T::of(std::f64::consts::FRAC_1_SQRT_2)).erf())
}

/// The derivative of [`gelu_erf`]: Φ(x) + x·φ(x), φ the standard normal density.
#[inline(always)]
pub fn gelu_erf_slope<T: Float>(x: T) -> T {
    let phi = T::of(0.5) * (T::ONE + (x * T::of(std::f64::consts::FRAC_1_SQRT_2)).erf());
    let density = T::of(0.398_942_280_401_432_7) * (T::of(-0.5) * x * x).exp();
    phi + x * density
}

/// `silu(x) = x·σ(x)`, the Llama family's gate activation.
#[inline(always)]
pub fn silu<T: Float>(x: T) -> T {
    x / (T::ONE + (-x).exp())
}

/// The derivative of [`silu`]: σ(x)·(1 + x·(1 − σ(x))), with σ and 1 − σ from one exponential.
#[inline(always)]
pub fn silu_slope<T: Float>(x: T) -> T {
    let e = (-x).exp();
    let (s, one_minus_s) = (T::ONE / (T::ONE + e), e / (T::ONE + e));
    s * (T::ONE + x * one_minus_s)
}

const GELU_A: f64 = 0.044715;
/// √(2/π).
const GELU_K: f64 = 0.797_884_560_802_865_4;

/// GPT-2's `gelu_new`, 0.5·x·(1 + tanh(u)) with u = √(2/π)·(x + 0.044715·x³), computed as
/// x·σ(2u) (the same function: 1 + tanh(u) = 2σ(2u)).
#[inline(always)]
pub fn gelu<T: Float>(x: T) -> T {
    let z = T::of(2.0 * GELU_K) * (x + T::of(GELU_A) * x * x * x);
    x / (T::ONE + (-z).exp())
}

/// The derivative of [`gelu`]: σ + 2x·σ(1−σ)·√(2/π)·(1 + 3·0.044715·x²), σ = σ(2u), with σ
/// and 1 − σ from one exponential (1 − σ by subtraction would lose digits).
#[inline(always)]
pub fn gelu_slope<T: Float>(x: T) -> T {
    let e = (-(T::of(2.0 * GELU_K) * (x + T::of(GELU_A) * x * x * x))).exp();
    let (s, one_minus_s) = (T::ONE / (T::ONE + e), e / (T::ONE + e));
    s + T::of(2.0 * GELU_K) * x * s * one_minus_s * (T::ONE + T::of(3.0 * GELU_A) * x * x)
}

/// One attention row in place: scores `s` become `softmax_j(scale·s[j])` over the keys
/// `j ≤ last` whose `keep[j]` is non-zero, 0 elsewhere; a query with no allowed key gets the
/// uniform distribution over every key (as an additive `f32::MIN` bias does).
pub fn softmax_row<T: Float>(s: &mut [T], keep: &[u32], last: usize, scale: T) {
    let mut max = T::NEG_INFINITY;
    for j in 0..=last {
        if keep[j] != 0 {
            max = max.maximum(scale * s[j]);
        }
    }
    if max == T::NEG_INFINITY {
        let u = T::ONE / T::of(s.len() as f64);
        s.fill(u);
        return;
    }
    for (s, &k) in s[..=last].iter_mut().zip(keep) {
        let e = (scale * *s - max).exp();
        *s = if k != 0 { e } else { T::ZERO };
    }
    let inv = T::ONE / sum_by(&s[..=last], |e| e);
    s[..=last].iter_mut().for_each(|p| *p *= inv);
    s[last + 1..].fill(T::ZERO);
}

/// The score gradient of one softmax row, in place over `dp`: ds = scale·p ⊙ (dp − Σ p·dp).
pub fn softmax_row_back<T: Float>(p: &[T], dp: &mut [T], scale: T) {
    let dot = sum_by2(p, dp, |p, d| p * d);
    for (d, &p) in dp.iter_mut().zip(p) {
        *d = scale * p * (*d - dot);
    }
}

/// `log softmax(logits)[target]` of one row, and the position of its largest logit (the first
/// of equal ones); the row is replaced by its probabilities (what the backward needs: no
/// second exponential there).
pub fn logprob_row<T: Float>(row: &mut [T], target: usize) -> (T, usize) {
    let best = argmax(row);
    let max = row[best];
    let shifted = row[target] - max;
    row.iter_mut().for_each(|x| *x = (*x - max).exp());
    // Σ e^y = 1 + rest (the largest term is exactly 1); see `score_row` for why the rest.
    row[best] = T::ZERO;
    let rest = sum_by(row, |e| e);
    row[best] = T::ONE;
    let inv = T::ONE / (T::ONE + rest);
    row.iter_mut().for_each(|p| *p *= inv);
    (shifted - rest.ln_1p(), best)
}

/// What a scoring pass keeps of one logits row: the target's log-prob, the most likely token
/// (the first of equal maxima), and the mean and variance of `log p(·)` under the row's own
/// distribution (Min-K%++'s μ and σ²). The moments are accumulated in float64 from
/// `y = x − max`: μ = E[y] − ln Σe^y and σ² = E[y²] − E[y]², which float64 keeps exact to well
/// below float32's rounding. The row is left as it is.
pub fn score_row<T: Float>(row: &[T], target: usize) -> (T, usize, f64, f64) {
    scan_row::<T, true>(row, target)
}

/// [`score_row`]'s log-prob and most likely token alone, bit for bit the same, without the
/// moments' float64 sums: what evaluation and the unlearning objectives read.
pub fn target_logprob<T: Float>(row: &[T], target: usize) -> (T, usize) {
    let (lp, best, _, _) = scan_row::<T, false>(row, target);
    (lp, best)
}

/// One scan of a logits row for [`score_row`], the moments' sums only `WITH_MOMENTS`.
#[inline(always)]
fn scan_row<T: Float, const WITH_MOMENTS: bool>(row: &[T], target: usize) -> (T, usize, f64, f64) {
    let best = argmax(row);
    let max = row[best];
    // `rest` = Σ e^y over every other token, so Σ e^y = 1 + rest exactly and the log-prob's
    // normaliser is ln_1p(rest): a well-remembered target's loss (≈ rest, often 1e-4 or less)
    // keeps float32's relative precision instead of the absolute 6e-8 left of it in a rounded
    // 1 + rest; so the figures built on such losses come out the same whatever order the
    // sums ran in (on another machine, in another version). The largest term (y = 0) adds
    // nothing to the moments' sums.
    let (mut rest, mut s1, mut s2) = ([T::ZERO; LANES], [0f64; LANES], [0f64; LANES]);
    let mut add = |j: usize, l: usize, x: T| {
        let y = x - max;
        let e = y.exp();
        rest[l] += if j == best { T::ZERO } else { e };
        if WITH_MOMENTS {
            let (e, y) = (e.f64(), y.f64());
            s1[l] += e * y;
            s2[l] += e * y * y;
        }
    };
    let chunks = row.chunks_exact(LANES);
    let (tail, at) = (chunks.remainder(), row.len() - row.len() % LANES);
    for (i, c) in chunks.enumerate() {
        for (l, &x) in c.iter().enumerate() {
            add(i * LANES + l, l, x);
        }
    }
    for (l, &x) in tail.iter().enumerate() {
        add(at + l, l, x);
    }
    let rest: T = rest.into_iter().sum();
    let (s1, s2): (f64, f64) = (s1.into_iter().sum(), s2.into_iter().sum());
    let s0 = 1.0 + rest.f64();
    let (m1, m2) = (s1 / s0, s2 / s0);
    let lp = row[target] - max - rest.ln_1p();
    (lp, best, m1 - rest.f64().ln_1p(), (m2 - m1 * m1).max(0.0))
}

/// The logits gradient of `c · log softmax(logits)[target]` from the row's probabilities, in
/// place: c·(δ_target − p). The target's 1 − p is summed from the other probabilities rather
/// than subtracted from 1, so a well-remembered target (p near 1) keeps its digits in float32.
pub fn logprob_row_back<T: Float>(probs: &mut [T], target: usize, c: T) {
    let mut rest = T::ZERO;
    for (j, p) in probs.iter_mut().enumerate() {
        if j != target {
            rest += *p;
        }
        *p = -c * *p;
    }
    probs[target] = c * rest;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Central differences in f64 check each backward against its forward.
    fn numeric(f: impl Fn(&[f64]) -> f64, x: &[f64]) -> Vec<f64> {
        let h = 1e-6;
        (0..x.len())
            .map(|i| {
                let (mut a, mut b) = (x.to_vec(), x.to_vec());
                a[i] += h;
                b[i] -= h;
                (f(&a) - f(&b)) / (2.0 * h)
            })
            .collect()
    }

    fn close(a: &[f64], b: &[f64], tol: f64) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{x} vs {y}");
        }
    }

    #[test]
    fn layer_and_rms_norm_backwards_are_the_derivatives() {
        let x = [0.3, -1.2, 2.0, 0.7, -0.1];
        let w = [1.1, 0.9, -0.4, 2.0, 0.5];
        let b = [0.1; 5];
        let g = [0.2, -0.3, 0.5, 1.0, -0.7];
        for centered in [true, false] {
            let bias = centered.then_some(&b[..]);
            let f = |x: &[f64]| {
                let mut y = [0.0; 5];
                norm_row(x, &w, bias, 1e-5, centered, &mut y);
                y.iter().zip(&g).map(|(y, g)| y * g).sum()
            };
            let stats = moments(&x, 1e-5, centered);
            let mut dx = [0.0; 5];
            norm_row_back(&x, stats, centered, &w, &g, &mut dx, false);
            close(&dx, &numeric(f, &x), 1e-7);
        }
        // RMS norm as transformers' LlamaRMSNorm: x / sqrt(mean(x²) + eps) · w.
        let mut y = [0.0; 5];
        norm_row(&x, &w, None, 1e-5, false, &mut y);
        let rms = (x.iter().map(|v| v * v).sum::<f64>() / 5.0 + 1e-5).sqrt();
        close(
            &y,
            &x.iter()
                .zip(&w)
                .map(|(x, w)| x / rms * w)
                .collect::<Vec<_>>(),
            1e-15,
        );
    }

    #[test]
    fn exact_gelu_slope_is_the_derivative() {
        for x in [-4.0, -0.7, 0.0, 0.3, 2.5] {
            let d = numeric(|v| gelu_erf(v[0]), &[x])[0];
            assert!((gelu_erf_slope(x) - d).abs() < 1e-8, "{x}");
        }
        // Φ(1) = 0.841344746068543 (standard normal table).
        let v = gelu_erf(1.0f64);
        assert!((v - 0.841_344_746_068_543).abs() < 1e-14, "{v}");
    }

    #[test]
    fn silu_slope_is_the_derivative() {
        for x in [-6.0, -0.5, 0.0, 0.2, 3.7] {
            assert!((silu(x) - x / (1.0 + f64::exp(-x))).abs() < 1e-15);
            let d = numeric(|v| silu(v[0]), &[x])[0];
            assert!((silu_slope(x) - d).abs() < 1e-8);
        }
    }

    #[test]
    fn gelu_slope_is_the_derivative_and_gelu_is_tanh_form() {
        for x in [-3.0, -0.5, 0.0, 0.2, 1.7] {
            let tanh_form = 0.5 * x * (1.0 + (GELU_K * (x + GELU_A * x * x * x)).tanh());
            assert!((gelu(x) - tanh_form).abs() < 1e-15);
            let d = numeric(|v| gelu(v[0]), &[x])[0];
            assert!((gelu_slope(x) - d).abs() < 1e-8);
        }
    }

    /// The lane-wise argmax picks what a scan keeping the first strict maximum picks: across
    /// lane and tail boundaries, among equal maxima, and past a NaN.
    #[test]
    fn argmax_is_the_first_largest() {
        let scan = |r: &[f32]| {
            let mut best = 0;
            for (j, &x) in r.iter().enumerate() {
                if x > r[best] {
                    best = j;
                }
            }
            best
        };
        for len in [1, 7, 8, 9, 16, 17, 41] {
            for at in 0..len {
                let mut r: Vec<f32> = (0..len).map(|i| ((i * 7919) % 13) as f32).collect();
                r[at] = 12.0; // ties with the 12s already there, or the only one
                assert_eq!(argmax(&r), scan(&r), "{r:?}");
                r[at] = f32::NAN;
                assert_eq!(argmax(&r), scan(&r), "{r:?}");
            }
        }
        assert_eq!(argmax(&[1.0f32, 3.0, 3.0, 2.0]), 1);
    }

    /// A scoring row's statistics against the same formulas summed one element at a time in
    /// float64, on rows longer and shorter than the lanes.
    #[test]
    fn score_row_matches_a_float64_scan() {
        for len in [3, 8, 37, 2048] {
            let row: Vec<f32> = (0..len)
                .map(|i| ((i * 2654435761usize) % 1000) as f32 / 97.0 - 5.0)
                .collect();
            let (lp, best, mu, var) = score_row(&row, len / 2);
            let x: Vec<f64> = row.iter().map(|&v| v as f64).collect();
            let max = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = x.iter().map(|v| (v - max).exp()).sum();
            let logp: Vec<f64> = x.iter().map(|v| v - max - z.ln()).collect();
            let want_mu: f64 = logp.iter().map(|l| l.exp() * l).sum();
            let want_var = logp
                .iter()
                .map(|l| l.exp() * (l - want_mu).powi(2))
                .sum::<f64>();
            assert_eq!(best, argmax(&row));
            // Without the moments: the same log-prob and token, bit for bit.
            assert_eq!(target_logprob(&row, len / 2), (lp, best));
            assert!(
                (lp as f64 - logp[len / 2]).abs() < 1e-5,
                "{lp} vs {}",
                logp[len / 2]
            );
            assert!(
                (mu - want_mu).abs() < 1e-5 * (1.0 + want_mu.abs()),
                "{mu} vs {want_mu}"
            );
            assert!(
                (var - want_var).abs() < 1e-5 * (1.0 + want_var),
                "{var} vs {want_var}"
            );
        }
    }

    /// A well-remembered target's log-prob keeps its relative precision in float32: here
    /// −ln(1 + 2047·e⁻²⁰) ≈ −4.2e-6, where a rounded 1 + rest (float32 ulp 1.2e-7 at 1) would
    /// be off by up to 3%.
    #[test]
    fn a_remembered_targets_logprob_keeps_its_digits() {
        let mut row = vec![0f32; 2048];
        row[5] = 20.0;
        let want = -(2047.0 * (-20f64).exp()).ln_1p();
        let (lp, best, mu, _) = score_row(&row, 5);
        assert_eq!(best, 5);
        assert!((lp as f64 / want - 1.0).abs() < 1e-5, "{lp} vs {want}");
        // μ = E[y] − ln(1 + rest), E[y] = −20·rest/(1 + rest).
        let rest = 2047.0 * (-20f64).exp();
        let want_mu = -20.0 * rest / (1.0 + rest) + want;
        assert!((mu / want_mu - 1.0).abs() < 1e-5, "{mu} vs {want_mu}");
        let (lp2, best2) = logprob_row(&mut row, 5);
        assert_eq!((lp2, best2), (lp, 5));
        assert!((row.iter().map(|&p| p as f64).sum::<f64>() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn softmax_and_logprob_backwards_are_derivatives() {
        let s = [0.3, -1.2, 2.0, 0.7];
        let keep = [1, 0, 1, 1];
        let dp = [0.2, -0.3, 0.5, 1.0];
        let f = |s: &[f64]| {
            let mut p = [0.0; 4];
            p.copy_from_slice(s);
            softmax_row(&mut p, &keep, 2, 0.5);
            p.iter().zip(&dp).map(|(p, d)| p * d).sum()
        };
        let mut p = s;
        softmax_row(&mut p, &keep, 2, 0.5);
        assert_eq!((p[1], p[3]), (0.0, 0.0));
        let mut ds = dp;
        softmax_row_back(&p, &mut ds, 0.5);
        close(&ds, &numeric(f, &s), 1e-7);

        let mut g = s;
        let (lp, best) = logprob_row(&mut g, 2);
        assert_eq!(best, 2);
        logprob_row_back(&mut g, 2, 1.5);
        close(
            &g,
            &numeric(|s| 1.5 * logprob_row(&mut s.to_vec(), 2).0, &s),
            1e-7,
        );
        assert!(lp < 0.0);
    }
}
