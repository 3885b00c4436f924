//! Float64 operations with hand-written derivatives whose backward passes are again
//! differentiable operations: softmax over the last dimension, the target log-probability
//! (log-softmax and pick), and `gelu_new`. Composed from candle's primitives each was 5 to 12
//! graph nodes, and candle's backward allocates a zero tensor and an accumulated copy per node
//! and keeps them alive while a Hessian-vector product differentiates that backward again; here
//! each is one node forward and two or three in its backward. The values are the same
//! functions to rounding (the oracle tests hold them to 1e-8 and 1e-9). Derivatives up to second
//! order are exact, which is what exact Hessian-vector products need; a third derivative
//! through `gelu_new` is refused with an error rather than computed wrong.
//! This module owns these float64 formulas; `ops` decides when they are used.

use super::constant;
use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

/// Rows handed to one rayon task at least.
const MIN_ROWS: usize = 16;

fn f64s<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f64]> {
    let CpuStorage::F64(v) = s else {
        bail!("{op}: expected float64, got {:?}", s.dtype())
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => bail!("{op}: input must be contiguous"),
    }
}

fn last_dim(l: &Layout) -> Result<usize> {
    match l.dims().last() {
        Some(&n) if n > 0 => Ok(n),
        _ => bail!("softmax over an empty last dimension"),
    }
}

/// Softmax over the last dimension.
pub fn softmax(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Softmax)
}

/// `log softmax(logits)[target]` per row: `logits` `[N, V]`, one target per row.
pub fn target_logprobs(logits: &Tensor, targets: &[u32]) -> Result<Tensor> {
    let (n, v) = logits.dims2()?;
    if targets.len() != n || targets.iter().any(|&t| t as usize >= v) {
        bail!(
            "target_logprobs: {} targets for {n} rows of {v}",
            targets.len()
        );
    }
    logits.contiguous()?.apply_op1(PickLogSoftmax {
        targets: targets.to_vec(),
    })
}

/// GPT-2's `gelu_new`: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
pub fn gelu_new(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Gelu(0))
}

struct Softmax;

fn softmax_row(x: &[f64], y: &mut [f64]) {
    let max = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for (y, &x) in y.iter_mut().zip(x) {
        *y = (x - max).exp();
        sum += *y;
    }
    for y in y.iter_mut() {
        *y /= sum;
    }
}

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "softmax-f64"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f64s(s, l, self.name())?;
        let n = last_dim(l)?;
        let mut y = vec![0f64; x.len()];
        y.par_chunks_mut(n)
            .zip(x.par_chunks(n))
            .with_min_len(MIN_ROWS)
            .for_each(|(y, x)| softmax_row(x, y));
        Ok((CpuStorage::F64(y), l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, s: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(s.apply_op2(&g.contiguous()?, SoftmaxVjp)?))
    }
}

/// `s ⊙ (g − Σ g⊙s)` row-wise: the softmax's vector-Jacobian product, `J g` with
/// `J = diag(s) − s sᵀ` (symmetric), from the softmax output `s` and the incoming `g`.
struct SoftmaxVjp;

impl CustomOp2 for SoftmaxVjp {
    fn name(&self) -> &'static str {
        "softmax-vjp-f64"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (s, g) = (f64s(s1, l1, self.name())?, f64s(s2, l2, self.name())?);
        if s.len() != g.len() {
            bail!("{}: operands of different sizes", self.name());
        }
        let n = last_dim(l1)?;
        let mut y = vec![0f64; s.len()];
        y.par_chunks_mut(n)
            .zip(s.par_chunks(n).zip(g.par_chunks(n)))
            .with_min_len(MIN_ROWS)
            .for_each(|(y, (s, g))| {
                let dot: f64 = s.iter().zip(g).map(|(s, g)| s * g).sum();
                for ((y, &s), &g) in y.iter_mut().zip(s).zip(g) {
                    *y = s * (g - dot);
                }
            });
        Ok((CpuStorage::F64(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        s: &Tensor,
        g: &Tensor,
        _y: &Tensor,
        u: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // y = s⊙g − s·(sᵀg): ∂(uᵀy)/∂g = J u (J symmetric); ∂(uᵀy)/∂s = u⊙(g − sᵀg) − g·(sᵀu).
        let u = u.contiguous()?;
        let dg = s.apply_op2(&u, SoftmaxVjp)?;
        let sg = (s * g)?.sum_keepdim(D::Minus1)?;
        let su = (s * &u)?.sum_keepdim(D::Minus1)?;
        let ds = ((&u * g.broadcast_sub(&sg)?)? - g.broadcast_mul(&su)?)?;
        Ok((Some(ds), Some(dg)))
    }
}

struct PickLogSoftmax {
    targets: Vec<u32>,
}

impl CustomOp1 for PickLogSoftmax {
    fn name(&self) -> &'static str {
        "target-logprob-f64"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f64s(s, l, self.name())?;
        let v = last_dim(l)?;
        let lp: Vec<f64> = x
            .par_chunks(v)
            .zip(self.targets.par_iter())
            .with_min_len(MIN_ROWS)
            .map(|(row, &t)| {
                let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = row.iter().map(|&z| (z - max).exp()).sum();
                row[t as usize] - max - sum.ln()
            })
            .collect();
        let n = lp.len();
        Ok((CpuStorage::F64(lp), Shape::from(n)))
    }

    fn bwd(&self, logits: &Tensor, _lp: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        // ∂ lp_i / ∂ logits_ij = [j = t_i] − softmax(logits_i)_j.
        let (n, v) = logits.dims2()?;
        let mut hot = vec![0f64; n * v];
        for (row, &t) in self.targets.iter().enumerate() {
            hot[row * v + t as usize] = 1.0;
        }
        let hot = Tensor::from_vec(hot, (n, v), logits.device())?;
        let d = constant::add(&softmax(logits)?.neg()?, &hot)?;
        Ok(Some(d.broadcast_mul(&g.unsqueeze(1)?)?))
    }
}

/// `gelu_new` (order 0) and its first and second derivatives (orders 1 and 2), element-wise.
struct Gelu(u8);

const A: f64 = 0.044715;

/// `gelu_new` or one of its first two derivatives at `x`.
fn gelu(order: u8, x: f64) -> f64 {
    let k = (2.0 / std::f64::consts::PI).sqrt();
    let u = k * (x + A * x * x * x);
    let t = u.tanh();
    let sech2 = 1.0 - t * t;
    let du = k * (1.0 + 3.0 * A * x * x);
    match order {
        0 => 0.5 * x * (1.0 + t),
        1 => 0.5 * (1.0 + t) + 0.5 * x * sech2 * du,
        _ => {
            let d2u = 6.0 * A * k * x;
            sech2 * du + 0.5 * x * sech2 * (d2u - 2.0 * t * du * du)
        }
    }
}

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        match self.0 {
            0 => "gelu-new-f64",
            1 => "gelu-new-derivative-f64",
            _ => "gelu-new-second-derivative-f64",
        }
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f64s(s, l, self.name())?;
        let order = self.0;
        let y: Vec<f64> = x
            .par_iter()
            .with_min_len(4096)
            .map(|&x| gelu(order, x))
            .collect();
        Ok((CpuStorage::F64(y), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        if self.0 >= 2 {
            bail!("gelu_new: derivatives beyond the second are not implemented");
        }
        Ok(Some((g * x.apply_op1(Gelu(self.0 + 1))?)?))
    }
}

#[cfg(test)]
mod tests {
    //! Each operation against the same function composed from candle's primitives (whose
    //! derivatives candle's autograd gives to any order): values, gradients, and the gradient
    //! of `⟨∇f, r⟩` (the second-order path an HVP takes), on random float64 inputs. Second
    //! derivatives need `CANDLE_GRAD_DO_NOT_DETACH=1`, which `.cargo/config.toml` sets for tests.
    use super::*;
    use candle_core::{Device, Var};

    fn randn(shape: &[usize], seed: u64) -> Tensor {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let n: usize = shape.iter().product();
        let v: Vec<f64> = (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 11) as f64 / (1u64 << 53) as f64 * 4.0 - 2.0
            })
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn max_rel(a: &Tensor, b: &Tensor) -> f64 {
        let a: Vec<f64> = a.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f64> = b.flatten_all().unwrap().to_vec1().unwrap();
        let scale = b.iter().fold(1e-300f64, |m, v| m.max(v.abs()));
        a.iter()
            .zip(&b)
            .fold(0f64, |m, (x, y)| m.max((x - y).abs()))
            / scale
    }

    /// (value, gradient, second-order gradient) of `f` at `x` with random weights.
    fn derivatives(x: &Tensor, f: &dyn Fn(&Tensor) -> Tensor) -> [Tensor; 3] {
        let var = Var::from_tensor(x).unwrap();
        let y = f(var.as_tensor());
        let r = randn(y.dims(), 7);
        let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let g = grads.get(var.as_tensor()).unwrap().clone();
        let s = randn(g.dims(), 11);
        let second = (&g * &s).unwrap().sum_all().unwrap().backward().unwrap();
        let h = second.get(var.as_tensor()).unwrap().detach();
        [y.detach(), g.detach(), h]
    }

    fn agree(x: &Tensor, mine: &dyn Fn(&Tensor) -> Tensor, composed: &dyn Fn(&Tensor) -> Tensor) {
        let (a, b) = (derivatives(x, mine), derivatives(x, composed));
        for (order, (a, b)) in a.iter().zip(&b).enumerate() {
            let e = max_rel(a, b);
            assert!(e < 1e-12, "derivative of order {order} differs by {e:e}");
        }
    }

    fn composed_softmax(x: &Tensor) -> Tensor {
        let e = x.exp().unwrap();
        e.broadcast_div(&e.sum_keepdim(D::Minus1).unwrap()).unwrap()
    }

    #[test]
    fn softmax_matches_the_composed_function_to_second_order() {
        agree(
            &randn(&[3, 5, 7], 1),
            &|x| softmax(x).unwrap(),
            &composed_softmax,
        );
    }

    #[test]
    fn target_logprobs_match_the_composed_function_to_second_order() {
        let targets = [3u32, 0, 6, 2];
        let mut hot = vec![0f64; 4 * 7];
        for (r, &t) in targets.iter().enumerate() {
            hot[r * 7 + t as usize] = 1.0;
        }
        let hot = Tensor::from_vec(hot, (4, 7), &Device::Cpu).unwrap();
        agree(
            &randn(&[4, 7], 2),
            &|x| target_logprobs(x, &targets).unwrap(),
            &|x| {
                let lse = x.exp().unwrap().sum(D::Minus1).unwrap().log().unwrap();
                ((x * &hot).unwrap().sum(D::Minus1).unwrap() - lse).unwrap()
            },
        );
    }

    #[test]
    fn gelu_matches_the_composed_function_to_second_order_and_refuses_the_third() {
        let k = (2.0 / std::f64::consts::PI).sqrt();
        agree(&randn(&[5, 9], 3), &|x| gelu_new(x).unwrap(), &|x| {
            let inner = ((x + (x.powf(3.0).unwrap() * A).unwrap()).unwrap() * k).unwrap();
            (((inner.tanh().unwrap() + 1.0).unwrap() * x).unwrap() * 0.5).unwrap()
        });
        let x = Var::from_tensor(&randn(&[4], 4)).unwrap();
        let third = Gelu(2).bwd(x.as_tensor(), x.as_tensor(), x.as_tensor());
        assert!(
            third.is_err(),
            "a third derivative must be refused, not computed"
        );
    }
}
