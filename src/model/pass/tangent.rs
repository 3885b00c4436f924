//! Exact Hessian-vector products by running the hand-written pass on dual numbers: a float64
//! value and its directional derivative along the parameter direction `v` (its tangent). Every
//! operation of the pass — forward and backward alike — carries the tangent by the chain rule,
//! so the backward's parameter gradients come back as `∇L + ε·Hv` (forward-over-reverse
//! differentiation, Pearlmutter 1994), exact to rounding, from the same description of the
//! network as the gradient. A matrix product of duals is two or three float64 products on the
//! value and tangent planes; a plane that is all zero (a frozen weight's tangent) is skipped,
//! so a product with a frozen weight costs two; a value plane a pass before kept (`primal`,
//! for many products at one point) is read back, not multiplied. This module owns the dual
//! arithmetic; it knows nothing of layers.

use super::float::{real_mm, Float, View};
use super::primal::{Plane as KeptPlane, Primal, Site};
use std::cell::OnceCell;
use std::cmp::Ordering;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};
use std::sync::Arc;

/// `x + ε·t` with ε² = 0.
#[derive(Debug, Clone, Copy, Default)]
pub struct Dual {
    pub x: f64,
    pub t: f64,
}

impl Dual {
    pub fn new(x: f64, t: f64) -> Dual {
        Dual { x, t }
    }
}

/// Duals compare by value: the tangent follows whichever value a comparison picks.
impl PartialEq for Dual {
    fn eq(&self, o: &Self) -> bool {
        self.x == o.x
    }
}

impl PartialOrd for Dual {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        self.x.partial_cmp(&o.x)
    }
}

impl Add for Dual {
    type Output = Dual;
    #[inline(always)]
    fn add(self, o: Dual) -> Dual {
        Dual::new(self.x + o.x, self.t + o.t)
    }
}

impl Sub for Dual {
    type Output = Dual;
    #[inline(always)]
    fn sub(self, o: Dual) -> Dual {
        Dual::new(self.x - o.x, self.t - o.t)
    }
}

impl Mul for Dual {
    type Output = Dual;
    #[inline(always)]
    fn mul(self, o: Dual) -> Dual {
        Dual::new(self.x * o.x, self.t * o.x + self.x * o.t)
    }
}

impl Div for Dual {
    type Output = Dual;
    #[inline(always)]
    fn div(self, o: Dual) -> Dual {
        let q = self.x / o.x;
        Dual::new(q, (self.t - q * o.t) / o.x)
    }
}

impl Neg for Dual {
    type Output = Dual;
    #[inline(always)]
    fn neg(self) -> Dual {
        Dual::new(-self.x, -self.t)
    }
}

impl AddAssign for Dual {
    #[inline(always)]
    fn add_assign(&mut self, o: Dual) {
        *self = *self + o;
    }
}

impl SubAssign for Dual {
    #[inline(always)]
    fn sub_assign(&mut self, o: Dual) {
        *self = *self - o;
    }
}

impl MulAssign for Dual {
    #[inline(always)]
    fn mul_assign(&mut self, o: Dual) {
        *self = *self * o;
    }
}

impl Sum for Dual {
    fn sum<I: Iterator<Item = Dual>>(iter: I) -> Dual {
        iter.fold(Dual::default(), |a, b| a + b)
    }
}

/// One plane (values or tangents) of a matrix of duals, stored as the matrix was.
struct Plane {
    data: Vec<f64>,
    rows: usize,
    cols: usize,
    t: bool,
}

impl Plane {
    fn of(v: View<'_, Dual>, f: fn(Dual) -> f64) -> Plane {
        Plane {
            data: v.map(f),
            rows: v.rows,
            cols: v.cols,
            t: v.t,
        }
    }

    fn view(&self) -> View<'_, f64> {
        View {
            data: &self.data,
            rows: self.rows,
            cols: self.cols,
            stride: self.cols,
            t: self.t,
        }
    }

    fn zero(&self) -> bool {
        self.data.iter().all(|&x| x == 0.0)
    }
}

impl Float for Dual {
    const ZERO: Self = Dual { x: 0.0, t: 0.0 };
    const ONE: Self = Dual { x: 1.0, t: 0.0 };
    const NEG_INFINITY: Self = Dual {
        x: f64::NEG_INFINITY,
        t: 0.0,
    };
    fn of(x: f64) -> Self {
        Dual::new(x, 0.0)
    }
    fn f64(self) -> f64 {
        self.x
    }
    #[inline(always)]
    fn exp(self) -> Self {
        let e = self.x.exp();
        Dual::new(e, e * self.t)
    }
    #[inline(always)]
    fn ln(self) -> Self {
        Dual::new(self.x.ln(), self.t / self.x)
    }
    #[inline(always)]
    fn ln_1p(self) -> Self {
        Dual::new(self.x.ln_1p(), self.t / (1.0 + self.x))
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        let r = self.x.sqrt();
        Dual::new(r, self.t / (2.0 * r))
    }
    fn erf(self) -> Self {
        let slope = std::f64::consts::FRAC_2_SQRT_PI * (-self.x * self.x).exp();
        Dual::new(libm::erf(self.x), slope * self.t)
    }
    #[inline(always)]
    fn maximum(self, o: Self) -> Self {
        if o.x > self.x {
            o
        } else {
            self
        }
    }

    /// `dst (+)= a·b` as `x = aₓ·bₓ`, `t = aₜ·bₓ + aₓ·bₜ`: float64 products on the value and
    /// tangent planes (each as parallel as [`real_mm`]), an all-zero tangent plane skipped.
    fn mm(dst: &mut [Self], ds: usize, a: View<'_, Self>, b: View<'_, Self>, add: bool) {
        dual_mm(dst, ds, a, b, add, None)
    }

    /// [`Dual::mm`] with the value plane `aₓ·bₓ` read from `primal` when a pass before kept
    /// it (then only the tangent planes are multiplied).
    fn mm_at(
        primal: &Primal,
        site: Site,
        dst: &mut [Self],
        ds: usize,
        a: View<'_, Self>,
        b: View<'_, Self>,
        add: bool,
    ) {
        dual_mm(dst, ds, a, b, add, Some((primal, site)))
    }
}

/// The product of dual matrices, its value plane from `kept`'s store where it has it.
fn dual_mm(
    dst: &mut [Dual],
    ds: usize,
    a: View<'_, Dual>,
    b: View<'_, Dual>,
    add: bool,
    kept: Option<(&Primal, Site)>,
) {
    let ((m, _), (_, n)) = (a.shape(), b.shape());
    let (at, bt) = (Plane::of(a, |d| d.t), Plane::of(b, |d| d.t));
    let (a_moves, b_moves) = (!at.zero(), !bt.zero());
    // A value plane is made only where a product reads it: the value product (unless kept)
    // and the tangent product across from a moving plane.
    let (ax, bx) = (OnceCell::new(), OnceCell::new());
    let ax = || ax.get_or_init(|| Plane::of(a, |d| d.x));
    let bx = || bx.get_or_init(|| Plane::of(b, |d| d.x));
    let values = || {
        let mut x = vec![0.0; m * n];
        real_mm(&mut x, n, ax().view(), bx().view(), false);
        x
    };
    let x = match kept {
        Some((primal, site)) => primal.plane(site, m, n, values),
        None => Arc::new(KeptPlane {
            rows: m,
            cols: n,
            values: values(),
        }),
    };
    let mut t = vec![0.0; m * n];
    if a_moves {
        real_mm(&mut t, n, at.view(), bx().view(), true);
    }
    if b_moves {
        real_mm(&mut t, n, ax().view(), bt.view(), true);
    }
    for (r, (x, t)) in x.values.chunks(n).zip(t.chunks(n)).enumerate() {
        let row = &mut dst[r * ds..][..n];
        for ((d, &x), &t) in row.iter_mut().zip(x).zip(t) {
            let v = Dual::new(x, t);
            *d = if add { *d + v } else { v };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The product of dual matrices against the product rule written out.
    #[test]
    fn dual_products_carry_the_product_rule() {
        let a: Vec<Dual> = (0..6)
            .map(|i| Dual::new(i as f64, 1.0 - i as f64))
            .collect();
        let b: Vec<Dual> = (0..6).map(|i| Dual::new(2.0 - i as f64, 0.0)).collect();
        let mut d = vec![Dual::default(); 4];
        Dual::mm(&mut d, 2, View::new(&a, 2, 3), View::new(&b, 3, 2), false);
        for i in 0..2 {
            for j in 0..2 {
                let want: Dual = (0..3).map(|k| a[i * 3 + k] * b[k * 2 + j]).sum();
                assert_eq!((d[i * 2 + j].x, d[i * 2 + j].t), (want.x, want.t));
            }
        }
    }

    #[test]
    fn elementary_functions_carry_their_derivatives() {
        let x = Dual::new(0.7, 1.0);
        assert!((x.exp().t - 0.7f64.exp()).abs() < 1e-15);
        assert!((x.ln().t - 1.0 / 0.7).abs() < 1e-15);
        assert!((x.ln_1p().t - 1.0 / 1.7).abs() < 1e-15);
        assert!((x.sqrt().t - 0.5 / 0.7f64.sqrt()).abs() < 1e-15);
        assert!(((Dual::ONE / x).t + 1.0 / 0.49).abs() < 1e-14);
    }
}
