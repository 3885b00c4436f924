//! Lanczos iteration with full re-orthogonalisation for the extreme eigenvalues of a symmetric
//! operator given only as matrix–vector products (here: exact Hessian-vector products), and the
//! eigen-decomposition of the resulting tridiagonal matrix with `faer`. Plain `f64` vectors; it
//! knows nothing of models.

use faer::{Mat, Side};

/// `a · b`.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// `y ← y + s·x`.
pub fn axpy(y: &mut [f64], s: f64, x: &[f64]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += s * xi;
    }
}

/// The outcome of `steps` Lanczos steps.
#[derive(Debug, Clone, PartialEq)]
pub struct Lanczos {
    /// Ritz values (eigenvalues of the tridiagonal), ascending.
    pub ritz_values: Vec<f64>,
    /// Diagonal and off-diagonal of the tridiagonal matrix.
    pub alpha: Vec<f64>,
    pub beta: Vec<f64>,
    /// Steps taken (fewer than asked when an invariant subspace was found).
    pub steps: usize,
}

/// A symmetric linear operator on flat vectors (a Hessian-vector product), fallible.
pub type Operator<'a, E> = dyn FnMut(&[f64]) -> Result<Vec<f64>, E> + 'a;

/// Runs at most `steps` Lanczos steps on the symmetric operator `op` from `start`. Every new
/// vector is orthogonalised twice against all earlier ones (full re-orthogonalisation, so the
/// Ritz values carry no spurious copies).
pub fn lanczos<E>(op: &mut Operator<'_, E>, start: &[f64], steps: usize) -> Result<Lanczos, E> {
    let mut q = start.to_vec();
    let n0 = norm(&q);
    q.iter_mut().for_each(|x| *x /= n0);
    let mut basis: Vec<Vec<f64>> = Vec::new();
    let (mut alpha, mut beta): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
    for _ in 0..steps {
        let mut w = op(&q)?;
        let a = dot(&q, &w);
        axpy(&mut w, -a, &q);
        if let (Some(prev), Some(&b)) = (basis.last(), beta.last()) {
            axpy(&mut w, -b, prev);
        }
        basis.push(q);
        for _ in 0..2 {
            for v in &basis {
                let c = dot(v, &w);
                axpy(&mut w, -c, v);
            }
        }
        alpha.push(a);
        let b = norm(&w);
        let scale = alpha
            .iter()
            .map(|x| x.abs())
            .fold(0.0, f64::max)
            .max(1e-300);
        if b <= 1e-12 * scale || basis.len() == start.len() {
            break;
        }
        beta.push(b);
        q = w.into_iter().map(|x| x / b).collect();
    }
    beta.truncate(alpha.len().saturating_sub(1));
    let ritz_values = tridiagonal_eigenvalues(&alpha, &beta);
    Ok(Lanczos {
        steps: alpha.len(),
        ritz_values,
        alpha,
        beta,
    })
}

/// Eigenvalues (ascending) of the symmetric tridiagonal matrix with diagonal `alpha` and
/// off-diagonal `beta`, by faer's self-adjoint eigen-decomposition.
pub fn tridiagonal_eigenvalues(alpha: &[f64], beta: &[f64]) -> Vec<f64> {
    let n = alpha.len();
    let t = Mat::<f64>::from_fn(n, n, |i, j| {
        if i == j {
            alpha[i]
        } else if i == j + 1 {
            beta[j]
        } else if j == i + 1 {
            beta[i]
        } else {
            0.0
        }
    });
    let mut ev = t
        .self_adjoint_eigenvalues(Side::Lower)
        .unwrap_or_else(|_| alpha.to_vec());
    ev.sort_by(f64::total_cmp);
    ev
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A symmetric operator with known eigenvalues: Q·diag(λ)·Qᵀ for a Householder reflection Q.
    fn operator(eigs: &[f64]) -> impl FnMut(&[f64]) -> Result<Vec<f64>, ()> + '_ {
        let n = eigs.len();
        let u: Vec<f64> = (0..n).map(|i| ((i * 7 + 3) % 11) as f64 - 5.0).collect();
        let uu = dot(&u, &u);
        let reflect = move |x: &[f64]| -> Vec<f64> {
            let c = 2.0 * dot(&u, x) / uu;
            x.iter().zip(&u).map(|(xi, ui)| xi - c * ui).collect()
        };
        move |x: &[f64]| {
            let y = reflect(x);
            let y: Vec<f64> = y.iter().zip(eigs).map(|(a, l)| a * l).collect();
            Ok(reflect(&y))
        }
    }

    #[test]
    fn full_lanczos_recovers_every_eigenvalue() {
        // Eigenvalues chosen by hand, one negative; n steps on an n-dimensional operator span
        // the whole space, so the Ritz values are the eigenvalues.
        let eigs: Vec<f64> = (0..24).map(|i| i as f64 * 0.5 - 2.0).collect();
        let mut op = operator(&eigs);
        let start = vec![1.0; eigs.len()];
        let res = lanczos(&mut op, &start, 24).unwrap();
        assert_eq!(res.steps, 24);
        for (r, e) in res.ritz_values.iter().zip(&eigs) {
            assert!((r - e).abs() < 1e-10, "{r} vs {e}");
        }
    }

    #[test]
    fn partial_lanczos_finds_the_isolated_top_eigenvalue() {
        // 1..=40 plus an isolated 1000: the top Ritz value converges in a few steps, and every
        // Ritz value lies inside the spectrum (Cauchy interlacing).
        let mut eigs: Vec<f64> = (1..=40).map(f64::from).collect();
        eigs.push(1000.0);
        let mut op = operator(&eigs);
        let start: Vec<f64> = (0..eigs.len()).map(|i| 1.0 + (i % 3) as f64).collect();
        let res = lanczos(&mut op, &start, 10).unwrap();
        let top = *res.ritz_values.last().unwrap();
        assert!((top - 1000.0).abs() < 1e-8, "top Ritz value {top}");
        assert!(res
            .ritz_values
            .iter()
            .all(|&r| (1.0 - 1e-9..=1000.0 + 1e-9).contains(&r)));
    }
}
