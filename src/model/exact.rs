//! Float64 operations of the forward pass as single graph nodes with hand-written first
//! derivatives: the attention softmax (scale and additive mask inside), the target
//! log-probability (log-softmax and pick), and `gelu_new`, for the candle float64 forward
//! (`Gpt2::forward`, generation, the autograd reference of the tests). The values are the same
//! functions as composed from candle's primitives, to rounding (the oracle tests hold the model
//! to 1e-8 and 1e-9). Second derivatives are the hand-written pass's (`pass`, in dual numbers):
//! differentiating these operations' backward passes is refused with an error rather than
//! computed wrong. This module owns these float64 formulas; `ops` decides when they are used.

use super::kernels::softmax_vjp_rows;
use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Why a derivative of a backward pass is refused here.
const SECOND_ORDER: &str = "second derivatives of the float64 model are computed by model::pass, \
not by differentiating candle's backward pass";

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

/// Softmax over the last dimension of `scale·scores + bias`: the attention probabilities, with
/// `scores` `[B, H, T, T]` and the additive attention bias `bias` `[B, 1, T, T]` (a constant,
/// shared by the heads) applied inside one node.
pub fn masked_softmax(scores: &Tensor, bias: &Tensor, scale: f64) -> Result<Tensor> {
    let (b, heads, t, k) = scores.dims4()?;
    if bias.dims() != [b, 1, t, k] {
        bail!(
            "masked_softmax: bias {:?} for scores {:?}",
            bias.dims(),
            scores.dims()
        );
    }
    if bias.track_op() {
        bail!("masked_softmax: the attention bias must be a constant");
    }
    scores
        .contiguous()?
        .apply_op2(&bias.contiguous()?, MaskedSoftmax { heads, scale })
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

/// Softmax of `scale·x + bias` over the last dimension (see [`masked_softmax`]).
struct MaskedSoftmax {
    heads: usize,
    scale: f64,
}

/// The softmax of one row into `y` (`y` holds the row's logits on entry).
fn softmax_in_place(y: &mut [f64]) {
    let max = y.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for y in y.iter_mut() {
        *y = (*y - max).exp();
        sum += *y;
    }
    for y in y.iter_mut() {
        *y /= sum;
    }
}

impl CustomOp2 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "masked-softmax-f64"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, bias) = (f64s(s1, l1, self.name())?, f64s(s2, l2, self.name())?);
        let (_, _, t, k) = l1.shape().dims4()?;
        let (heads, scale) = (self.heads, self.scale);
        let mut y = vec![0f64; x.len()];
        y.par_chunks_mut(k)
            .zip(x.par_chunks(k))
            .enumerate()
            .with_min_len(MIN_ROWS)
            .for_each(|(r, (y, x))| {
                // Row r is query r % t of batch row r / (heads·t); the bias is per batch row.
                let at = (r / (heads * t) * t + r % t) * k;
                for ((y, &x), &m) in y.iter_mut().zip(x).zip(&bias[at..at + k]) {
                    *y = scale * x + m;
                }
                softmax_in_place(y);
            });
        Ok((CpuStorage::F64(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        _bias: &Tensor,
        s: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let vjp = SoftmaxVjp { scale: self.scale };
        Ok((Some(s.apply_op2(&g.contiguous()?, vjp)?), None))
    }
}

/// `scale · s ⊙ (g − Σ g⊙s)` row-wise: the vector-Jacobian product of `softmax(scale·x + c)`,
/// `scale · J g` with `J = diag(s) − s sᵀ` (symmetric), from the softmax output `s` and the
/// incoming `g`.
struct SoftmaxVjp {
    scale: f64,
}

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
        let y = softmax_vjp_rows(s, g, last_dim(l1)?, self.scale, MIN_ROWS);
        Ok((CpuStorage::F64(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _: &Tensor,
        _: &Tensor,
        _: &Tensor,
        _: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        bail!("{SECOND_ORDER}")
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
        let pick = PickVjp {
            targets: self.targets.clone(),
        };
        Ok(Some(logits.apply_op2(&g.contiguous()?, pick)?))
    }
}

/// `g_i·([j = t_i] − softmax(logits_i)_j)`: the target log-probability's vector-Jacobian
/// product, `[N, V]` from the logits `[N, V]` and the incoming `g` `[N]`, as one node.
struct PickVjp {
    targets: Vec<u32>,
}

impl CustomOp2 for PickVjp {
    fn name(&self) -> &'static str {
        "target-logprob-vjp-f64"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, g) = (f64s(s1, l1, self.name())?, f64s(s2, l2, self.name())?);
        let v = last_dim(l1)?;
        let mut y = x.to_vec();
        y.par_chunks_mut(v)
            .zip(self.targets.par_iter().zip(g.par_iter()))
            .with_min_len(MIN_ROWS)
            .for_each(|(y, (&t, &g))| {
                softmax_in_place(y);
                for y in y.iter_mut() {
                    *y *= -g;
                }
                y[t as usize] += g;
            });
        Ok((CpuStorage::F64(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _: &Tensor,
        _: &Tensor,
        _: &Tensor,
        _: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        bail!("{SECOND_ORDER}")
    }
}

/// `gelu_new` (order 0) and its first and second derivatives (orders 1 and 2), element-wise.
struct Gelu(u8);

const A: f64 = 0.044715;

/// `gelu_new` and its first two derivatives at `x`, from one `tanh`.
fn gelu_all(x: f64) -> [f64; 3] {
    let k = (2.0 / std::f64::consts::PI).sqrt();
    let u = k * (x + A * x * x * x);
    let t = u.tanh();
    let sech2 = 1.0 - t * t;
    let du = k * (1.0 + 3.0 * A * x * x);
    let d2u = 6.0 * A * k * x;
    [
        0.5 * x * (1.0 + t),
        0.5 * (1.0 + t) + 0.5 * x * sech2 * du,
        sech2 * du + 0.5 * x * sech2 * (d2u - 2.0 * t * du * du),
    ]
}

/// `gelu_new` or one of its first two derivatives at `x`.
fn gelu(order: u8, x: f64) -> f64 {
    gelu_all(x)[usize::from(order.min(2))]
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
        if self.0 >= 1 {
            bail!("{SECOND_ORDER}");
        }
        Ok(Some((g * x.apply_op1(Gelu(1))?)?))
    }
}

#[cfg(test)]
mod tests {
    //! Each operation against the same function composed from candle's primitives: values and
    //! gradients on random float64 inputs; and the kernels `dual` uses against candle's
    //! backward of those functions.
    use super::*;
    use candle_core::{Device, Var, D};

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

    /// (value, gradient of `Σ f(x)⊙r`) of `f` at `x`, with `r` random.
    fn derivatives(x: &Tensor, f: &dyn Fn(&Tensor) -> Tensor) -> [Tensor; 2] {
        let var = Var::from_tensor(x).unwrap();
        let y = f(var.as_tensor());
        let r = randn(y.dims(), 7);
        let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let g = grads.get(var.as_tensor()).unwrap().detach();
        [y.detach(), g]
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

    /// The additive bias of 2 batch rows × 4 positions: the future masked, and key 0 of row 1.
    fn bias() -> Tensor {
        let mut bias = vec![0f64; 2 * 16];
        for r in 0..2 {
            for i in 0..4 {
                for j in 0..4 {
                    if j > i || (r == 1 && j == 0) {
                        bias[(r * 4 + i) * 4 + j] = f64::from(f32::MIN);
                    }
                }
            }
        }
        Tensor::from_vec(bias, (2, 1, 4, 4), &Device::Cpu).unwrap()
    }

    #[test]
    fn masked_softmax_matches_the_composed_function() {
        let bias = bias();
        agree(
            &randn(&[2, 3, 4, 4], 1),
            &|x| masked_softmax(x, &bias, 0.37).unwrap(),
            &|x| composed_softmax(&(x * 0.37).unwrap().broadcast_add(&bias).unwrap()),
        );
    }

    #[test]
    fn target_logprobs_match_the_composed_function() {
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
    fn gelu_and_its_derivatives_match_the_composed_function() {
        let k = (2.0 / std::f64::consts::PI).sqrt();
        let composed = |x: &Tensor| {
            let inner = ((x + (x.powf(3.0).unwrap() * A).unwrap()).unwrap() * k).unwrap();
            (((inner.tanh().unwrap() + 1.0).unwrap() * x).unwrap() * 0.5).unwrap()
        };
        let x = randn(&[5, 9], 3);
        agree(&x, &|x| gelu_new(x).unwrap(), &composed);
    }

    #[test]
    fn second_derivatives_through_the_backward_passes_are_refused() {
        let x = Var::from_tensor(&randn(&[4, 7], 4)).unwrap();
        let t = x.as_tensor();
        assert!(Gelu(1).bwd(t, t, t).is_err());
        assert!(SoftmaxVjp { scale: 1.0 }.bwd(t, t, t, t).is_err());
        let pick = PickVjp {
            targets: vec![0; 4],
        };
        assert!(pick.bwd(t, t, t, t).is_err());
    }
}
