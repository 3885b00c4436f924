//! The row-wise layers of the hand-written pass, forward and backward, generic over the float:
//! layer norm and RMS norm, `gelu_new` and `silu`, the masked causal softmax of attention, the
//! target log-prob of a logits row and a scoring row's statistics. Each works on one row (or
//! one element) so that the caller chooses how rows are split across threads. The formulas are
//! transformers'; this module owns no buffers.

use super::float::Float;

/// Mean and 1/σ of one row (biased variance, as `torch.nn.LayerNorm`; the centred sum of
/// squares keeps precision); for an RMS norm (`centered` false) 0 and 1/rms, as transformers'
/// `LlamaRMSNorm`.
pub fn moments<T: Float>(x: &[T], eps: T, centered: bool) -> (T, T) {
    let n = T::of(x.len() as f64);
    let mean = if centered {
        x.iter().copied().sum::<T>() / n
    } else {
        T::ZERO
    };
    let var = x.iter().map(|&v| (v - mean) * (v - mean)).sum::<T>() / n;
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
    let (mut sum_gw, mut sum_gwx) = (T::ZERO, T::ZERO);
    for ((&x, &w), &g) in x.iter().zip(w).zip(g) {
        let xhat = (x - mean) * rstd;
        sum_gw += g * w;
        sum_gwx += g * w * xhat;
    }
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
    let mut sum = T::ZERO;
    for (s, &k) in s[..=last].iter_mut().zip(keep) {
        let e = (scale * *s - max).exp();
        *s = if k != 0 { e } else { T::ZERO };
        sum += *s;
    }
    let inv = T::ONE / sum;
    s[..=last].iter_mut().for_each(|p| *p *= inv);
    s[last + 1..].fill(T::ZERO);
}

/// The score gradient of one softmax row, in place over `dp`: ds = scale·p ⊙ (dp − Σ p·dp).
pub fn softmax_row_back<T: Float>(p: &[T], dp: &mut [T], scale: T) {
    let dot: T = p.iter().zip(dp.iter()).map(|(&p, &d)| p * d).sum();
    for (d, &p) in dp.iter_mut().zip(p) {
        *d = scale * p * (*d - dot);
    }
}

/// `log softmax(logits)[target]` of one row, and the position of its largest logit (the first
/// of equal ones); the row is replaced by its probabilities (what the backward needs: no
/// second exponential there).
pub fn logprob_row<T: Float>(row: &mut [T], target: usize) -> (T, usize) {
    let mut best = 0;
    for (j, &x) in row.iter().enumerate() {
        if x > row[best] {
            best = j;
        }
    }
    let max = row[best];
    let shifted = row[target] - max;
    let mut sum = T::ZERO;
    for x in row.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    let inv = T::ONE / sum;
    row.iter_mut().for_each(|p| *p *= inv);
    (shifted - sum.ln(), best)
}

/// What a scoring pass keeps of one logits row: the target's log-prob, the most likely token
/// (the first of equal maxima), and the mean and variance of `log p(·)` under the row's own
/// distribution (Min-K%++'s μ and σ²). The moments are accumulated in float64 from
/// `y = x − max`: μ = E[y] − ln Σe^y and σ² = E[y²] − E[y]², which float64 keeps exact to well
/// below float32's rounding. The row is left as it is.
pub fn score_row<T: Float>(row: &[T], target: usize) -> (T, usize, f64, f64) {
    let mut best = 0;
    for (j, &x) in row.iter().enumerate() {
        if x > row[best] {
            best = j;
        }
    }
    let max = row[best];
    let (mut sum, mut s1, mut s2) = (T::ZERO, 0f64, 0f64);
    for &x in row {
        let y = x - max;
        let e = y.exp();
        sum += e;
        let (e, y) = (e.f64(), y.f64());
        s1 += e * y;
        s2 += e * y * y;
    }
    let s0 = sum.f64();
    let (m1, m2) = (s1 / s0, s2 / s0);
    let lp = row[target] - max - sum.ln();
    (lp, best, m1 - s0.ln(), (m2 - m1 * m1).max(0.0))
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
