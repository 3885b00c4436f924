//! The number types the hand-written pass runs in (f32 for training, unlearning and scoring;
//! f64 for exact gradients; `tangent::Dual` for exact Hessian-vector products), and its one
//! matrix product: strided row-major views multiplied by
//! faer's kernels, the destination's rows split across rayon's threads when the product is big
//! enough to pay for it. This module owns the arithmetic primitives; it knows nothing of layers.

use super::primal::{Primal, Site};
use candle_core::{CpuStorage, WithDType};
use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

/// A number the pass computes in.
pub trait Float:
    Copy
    + 'static
    + Send
    + Sync
    + Default
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + Sum
{
    const ZERO: Self;
    const ONE: Self;
    const NEG_INFINITY: Self;
    fn of(x: f64) -> Self;
    fn f64(self) -> f64;
    /// `e^x` (for f32 the vectorising polynomial of `exp`, about 2 ulp).
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    /// `ln(1 + x)`, exact for small `x` (where `1 + x` rounded first would lose it).
    fn ln_1p(self) -> Self;
    fn sqrt(self) -> Self;
    /// The error function (musl's float64 `erf` by `libm`, rounded for f32: transformers'
    /// exact GELU).
    fn erf(self) -> Self;
    fn maximum(self, other: Self) -> Self;
    /// `dst (+)= a·b`, `dst` row-major at row stride `ds` (see [`mm`]).
    fn mm(dst: &mut [Self], ds: usize, a: View<'_, Self>, b: View<'_, Self>, add: bool);
    /// [`Float::mm`] as the product at `site` of a pass whose value planes `primal` keeps
    /// across passes; only dual numbers have a value plane apart from the result, so a float
    /// multiplies as ever.
    fn mm_at(
        _primal: &Primal,
        _site: Site,
        dst: &mut [Self],
        ds: usize,
        a: View<'_, Self>,
        b: View<'_, Self>,
        add: bool,
    ) {
        Self::mm(dst, ds, a, b, add)
    }
}

/// A float that model parameters are stored in (f32, f64): read in place from candle's storage.
pub trait Real: Float + WithDType {
    /// The values of a CPU storage of this type.
    fn of_storage(s: &CpuStorage) -> Option<&[Self]>;
    /// `dst (+)= a·b` on faer views, on the calling thread.
    fn gemm(dst: MatMut<'_, Self>, add: bool, a: MatRef<'_, Self>, b: MatRef<'_, Self>);
}

macro_rules! float {
    ($t:ty, $variant:ident, $exp:expr) => {
        impl Float for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const NEG_INFINITY: Self = <$t>::NEG_INFINITY;
            #[inline(always)]
            fn of(x: f64) -> Self {
                x as $t
            }
            #[inline(always)]
            fn f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn exp(self) -> Self {
                $exp(self)
            }
            #[inline(always)]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline(always)]
            fn ln_1p(self) -> Self {
                <$t>::ln_1p(self)
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            fn erf(self) -> Self {
                libm::erf(self as f64) as $t
            }
            #[inline(always)]
            fn maximum(self, other: Self) -> Self {
                <$t>::max(self, other)
            }
            fn mm(dst: &mut [Self], ds: usize, a: View<'_, Self>, b: View<'_, Self>, add: bool) {
                real_mm(dst, ds, a, b, add)
            }
        }

        impl Real for $t {
            fn of_storage(s: &CpuStorage) -> Option<&[Self]> {
                match s {
                    CpuStorage::$variant(v) => Some(v),
                    _ => None,
                }
            }
            // faer's kernels and not the `gemm` crate's (candle's): timed alone on an Intel Xeon
            // with AVX-512, the `gemm` crate did 10–60% more multiply-adds per second at most of
            // the pass's shapes, but in the benchmark rows (two A/B pairs on the quiet machine,
            // `benches/README.md`) it went both ways, GPT-2's evaluation 273 and 293 ms against
            // faer's 294 and 357, its step on all parameters 899 and 912 against 852 and 1 110.
            // No consistent gain to pay for an unsafe call. (Its other rounding would no longer
            // matter: `verify --recompute` compares per-record values at float32's resolution.)
            fn gemm(dst: MatMut<'_, Self>, add: bool, a: MatRef<'_, Self>, b: MatRef<'_, Self>) {
                let accum = if add { Accum::Add } else { Accum::Replace };
                matmul(dst, accum, a, b, 1.0, Par::Seq);
                zero_upper();
            }
        }
    };
}

/// Clears the upper halves of the vector registers after a product. The product's AVX-512
/// kernels (faer's, from `private-gemm-x86`) leave them dirty, and on Intel CPUs every
/// legacy-SSE instruction after that pays a state-transition penalty until something clears
/// them: glibc's `exp`, which the float64 pass calls per element, took 293 ns instead of 12 ns
/// on an Intel Xeon, and the float64 gradient ran 7× slower (an AMD EPYC pays nothing).
/// `vzeroupper` changes no value: no vector value is live across this call.
#[allow(unsafe_code)]
#[inline]
fn zero_upper() {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: the CPU has AVX (checked just above), all `vzeroupper` needs.
        unsafe { vzeroupper() }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx")]
unsafe fn vzeroupper() {
    std::arch::x86_64::_mm256_zeroupper();
}

float!(f32, F32, super::exp::exp);
float!(f64, F64, f64::exp);

/// A matrix stored row-major in `data` with `stride` between rows, read as itself or (with
/// `t`) as its transpose.
#[derive(Clone, Copy)]
pub struct View<'a, T> {
    pub data: &'a [T],
    pub rows: usize,
    pub cols: usize,
    pub stride: usize,
    pub t: bool,
}

impl<'a, T: Copy> View<'a, T> {
    /// A contiguous `[rows, cols]` matrix.
    pub fn new(data: &'a [T], rows: usize, cols: usize) -> Self {
        View {
            data,
            rows,
            cols,
            stride: cols,
            t: false,
        }
    }

    /// The same storage read transposed.
    pub fn tr(self) -> Self {
        View { t: !self.t, ..self }
    }

    /// Logical `(rows, cols)`.
    pub fn shape(&self) -> (usize, usize) {
        if self.t {
            (self.cols, self.rows)
        } else {
            (self.rows, self.cols)
        }
    }

    /// The stored matrix mapped element-wise into a contiguous one (row stride `cols`).
    pub fn map<U>(&self, f: impl Fn(T) -> U) -> Vec<U> {
        let mut out = Vec::with_capacity(self.rows * self.cols);
        for r in 0..self.rows {
            out.extend(
                self.data[r * self.stride..][..self.cols]
                    .iter()
                    .map(|&x| f(x)),
            );
        }
        out
    }

    fn faer(&self) -> MatRef<'a, T> {
        let m =
            MatRef::from_row_major_slice_with_stride(self.data, self.rows, self.cols, self.stride);
        if self.t {
            m.transpose()
        } else {
            m
        }
    }
}

/// Multiply-adds below which a product runs on one thread.
const PARALLEL_WORK: usize = 1 << 18;

/// `dst (+)= a·b`, with `dst` row-major `[m, n]` at row stride `ds` (`m`, `n` from `a`, `b`).
pub fn mm<T: Float>(dst: &mut [T], ds: usize, a: View<'_, T>, b: View<'_, T>, add: bool) {
    T::mm(dst, ds, a, b, add)
}

/// [`mm`] for a float: a big product is cut once into as many slabs as there are threads,
/// along the longer side of `dst`; each slab is one call to faer's kernels.
pub fn real_mm<T: Real>(dst: &mut [T], ds: usize, a: View<'_, T>, b: View<'_, T>, add: bool) {
    let ((m, k), (k2, n)) = (a.shape(), b.shape());
    assert_eq!(k, k2, "matrix product of {m}×{k} and {k2}×{n}");
    if m == 0 || n == 0 {
        return;
    }
    // The transpose of a column-major view: faer 0.24.4's `from_row_major_slice_with_stride_mut`
    // builds its view with the strides swapped (unit row stride), which writes out of place.
    let d = MatMut::from_column_major_slice_with_stride_mut(&mut dst[..(m - 1) * ds + n], n, m, ds)
        .transpose_mut();
    let (a, b) = (a.faer(), b.faer());
    let threads = rayon::current_num_threads();
    if threads < 2 || m * n * k < PARALLEL_WORK || m.max(n) < 2 * threads {
        return T::gemm(d, add, a, b);
    }
    slabs(d, a, b, add, threads);
}

/// `d (+)= a·b` cut into `parts` slabs along the longer side of `d`, run on rayon's threads.
fn slabs<T: Real>(d: MatMut<'_, T>, a: MatRef<'_, T>, b: MatRef<'_, T>, add: bool, parts: usize) {
    if parts < 2 {
        return T::gemm(d, add, a, b);
    }
    let half = parts / 2;
    if d.nrows() >= d.ncols() {
        let cut = d.nrows() * half / parts;
        let (d0, d1) = d.split_at_row_mut(cut);
        let (a0, a1) = a.split_at_row(cut);
        rayon::join(
            || slabs(d0, a0, b, add, half),
            || slabs(d1, a1, b, add, parts - half),
        );
    } else {
        let cut = d.ncols() * half / parts;
        let (d0, d1) = d.split_at_col_mut(cut);
        let (b0, b1) = b.split_at_col(cut);
        rayon::join(
            || slabs(d0, a, b0, add, half),
            || slabs(d1, a, b1, add, parts - half),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every transpose combination and a strided destination against the triple loop, small
    /// (one call) and big enough to be cut into slabs, along rows (tall) and columns (wide).
    #[test]
    fn products_match_the_definition() {
        for (m, k, n) in [(37, 19, 23), (70, 65, 61), (30, 97, 110)] {
            product_matches(m, k, n);
        }
    }

    fn product_matches(m: usize, k: usize, n: usize) {
        let a: Vec<f64> = (0..m * k).map(|i| ((i * 7) % 11) as f64 - 5.0).collect();
        let b: Vec<f64> = (0..k * n).map(|i| ((i * 5) % 13) as f64 - 6.0).collect();
        let want: Vec<f64> = (0..m * n)
            .map(|i| (0..k).map(|p| a[i / n * k + p] * b[p * n + i % n]).sum())
            .collect();
        // aᵀ stored as [k, m] and bᵀ stored as [n, k].
        let at: Vec<f64> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
        let bt: Vec<f64> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        for (av, bv) in [
            (View::new(&a, m, k), View::new(&b, k, n)),
            (View::new(&at, k, m).tr(), View::new(&bt, n, k).tr()),
        ] {
            let mut dst = vec![1.0; m * (n + 3)];
            mm(&mut dst, n + 3, av, bv, true);
            for i in 0..m * n {
                assert_eq!(dst[i / n * (n + 3) + i % n], want[i] + 1.0);
            }
        }
    }
}
