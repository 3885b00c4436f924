//! Means and ratios of per-record values as [`Metric`]s with their standard errors (the normal
//! approximation the spec evaluator bounds them under): mean ± se, and ratios of means by the
//! delta method, for paired and for independent samples. Used by the evidence producer.

use super::metric::Metric;

/// The mean of `xs` with its standard error (sample standard deviation / √n; 0 when n = 1).
/// `None` for an empty sample.
pub fn mean_of(xs: &[f64]) -> Option<Metric> {
    let (mean, se) = mean_and_se(xs)?;
    Some(Metric::Normal {
        value: mean,
        std_error: se,
        n: xs.len(),
    })
}

/// Mean and standard error of the mean; `None` when `xs` is empty.
pub fn mean_and_se(xs: &[f64]) -> Option<(f64, f64)> {
    if xs.is_empty() {
        return None;
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return Some((mean, 0.0));
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    Some((mean, (var / n).sqrt()))
}

/// The ratio of means `mean(a) / mean(b)` of paired samples with its delta-method standard
/// error: Var(ā/b̄) ≈ (s²_a − 2r·s_ab + r²·s²_b) / (n·b̄²). `None` when the samples are empty,
/// of different lengths, or `mean(b)` is zero.
pub fn paired_ratio(a: &[f64], b: &[f64]) -> Option<Metric> {
    if a.is_empty() || a.len() != b.len() {
        return None;
    }
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    if mb == 0.0 {
        return None;
    }
    let r = ma / mb;
    let se = if a.len() < 2 {
        0.0
    } else {
        let cov = |x: &[f64], mx: f64, y: &[f64], my: f64| {
            x.iter()
                .zip(y)
                .map(|(p, q)| (p - mx) * (q - my))
                .sum::<f64>()
                / (n - 1.0)
        };
        let var = cov(a, ma, a, ma) - 2.0 * r * cov(a, ma, b, mb) + r * r * cov(b, mb, b, mb);
        (var.max(0.0) / (n * mb * mb)).sqrt()
    };
    Some(Metric::Normal {
        value: r,
        std_error: se,
        n: a.len(),
    })
}

/// The ratio of means of two independent samples with its delta-method standard error:
/// Var(ā/b̄) ≈ r²·(s²_a/(n_a·ā²) + s²_b/(n_b·b̄²)). `n` is the smaller sample size.
pub fn independent_ratio(a: &[f64], b: &[f64]) -> Option<Metric> {
    let (ma, sa) = mean_and_se(a)?;
    let (mb, sb) = mean_and_se(b)?;
    if mb == 0.0 || ma == 0.0 {
        return None;
    }
    let r = ma / mb;
    let se = r.abs() * ((sa / ma).powi(2) + (sb / mb).powi(2)).sqrt();
    Some(Metric::Normal {
        value: r,
        std_error: se,
        n: a.len().min(b.len()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_standard_error_by_hand() {
        // xs = 1, 2, 3, 4: mean 2.5, sample variance 5/3, se = sqrt(5/3 / 4).
        let (m, se) = mean_and_se(&[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(m, 2.5);
        assert!((se - (5.0f64 / 12.0).sqrt()).abs() < 1e-15);
        assert!(mean_and_se(&[]).is_none());
    }

    #[test]
    fn paired_ratio_of_proportional_samples_has_no_error() {
        // a = 2·b exactly: the ratio is 2 and the delta-method variance vanishes.
        let b = [1.0, 2.0, 4.0, 7.0];
        let a: Vec<f64> = b.iter().map(|x| 2.0 * x).collect();
        let Some(Metric::Normal {
            value, std_error, ..
        }) = paired_ratio(&a, &b)
        else {
            panic!("expected a normal metric")
        };
        assert!((value - 2.0).abs() < 1e-15);
        assert!(std_error < 1e-12);
    }
}
