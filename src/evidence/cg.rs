//! Conjugate gradients for `(H + λI) x = b` with a symmetric `H` given as matrix–vector products
//! (the inverse-HVP of influence functions). It reports the relative residual it reached and
//! stops, rather than dividing by it, when it meets non-positive curvature (then `H + λI` is not
//! positive definite and the damping is too small). Plain `f64` vectors; it knows nothing of
//! models.

use super::lanczos::{axpy, dot, norm};
use crate::judge::evidence::CgResult;

/// Solves `(op + damping·I) x = b` from x = 0 until the relative residual is at most `tol` or
/// `max_iter` iterations have run.
pub fn conjugate_gradients<E>(
    op: &mut super::lanczos::Operator<'_, E>,
    b: &[f64],
    damping: f64,
    tol: f64,
    max_iter: usize,
) -> Result<CgResult, E> {
    let bn = norm(b);
    let mut x = vec![0.0; b.len()];
    if bn == 0.0 {
        return Ok(CgResult {
            x,
            iterations: 0,
            relative_residual: 0.0,
            converged: true,
            negative_curvature: false,
        });
    }
    let mut r = b.to_vec();
    let mut p = r.clone();
    let mut rr = dot(&r, &r);
    let mut it = 0;
    let mut negative_curvature = false;
    while it < max_iter && rr.sqrt() > tol * bn {
        let mut ap = op(&p)?;
        axpy(&mut ap, damping, &p);
        let pap = dot(&p, &ap);
        if pap <= 0.0 {
            negative_curvature = true;
            break;
        }
        let a = rr / pap;
        axpy(&mut x, a, &p);
        axpy(&mut r, -a, &ap);
        let rr_new = dot(&r, &r);
        let beta = rr_new / rr;
        for (pi, ri) in p.iter_mut().zip(&r) {
            *pi = ri + beta * *pi;
        }
        rr = rr_new;
        it += 1;
    }
    let relative_residual = rr.sqrt() / bn;
    Ok(CgResult {
        x,
        iterations: it,
        relative_residual,
        converged: relative_residual <= tol && !negative_curvature,
        negative_curvature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solves_a_known_spd_system() {
        // A = MᵀM (positive semi-definite, rank-deficient) + λI with λ = 0.5; b = (A + λI)x*
        // for a chosen x*, so the exact answer is x*.
        let n = 30;
        let m: Vec<Vec<f64>> = (0..20)
            .map(|i| {
                (0..n)
                    .map(|j| (((i * 31 + j * 17) % 13) as f64 - 6.0) / 6.0)
                    .collect()
            })
            .collect();
        let apply = |x: &[f64]| -> Vec<f64> {
            let mx: Vec<f64> = m.iter().map(|row| dot(row, x)).collect();
            (0..n)
                .map(|j| m.iter().zip(&mx).map(|(row, v)| row[j] * v).sum())
                .collect()
        };
        let lambda = 0.5;
        let xstar: Vec<f64> = (0..n).map(|j| (j as f64).sin()).collect();
        let mut b = apply(&xstar);
        axpy(&mut b, lambda, &xstar);
        let mut op = |x: &[f64]| Ok::<_, ()>(apply(x));
        let res = conjugate_gradients(&mut op, &b, lambda, 1e-12, 200).unwrap();
        assert!(res.converged, "{res:?}");
        let err = res
            .x
            .iter()
            .zip(&xstar)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-9, "max error {err}");
    }

    #[test]
    fn reports_negative_curvature_instead_of_dividing() {
        // op = −I, λ = 0.5: op + λI = −0.5·I is negative definite.
        let mut op = |x: &[f64]| Ok::<_, ()>(x.iter().map(|v| -v).collect());
        let res = conjugate_gradients(&mut op, &[1.0, 2.0], 0.5, 1e-10, 10).unwrap();
        assert!(res.negative_curvature && !res.converged);
    }
}
