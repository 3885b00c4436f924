//! The attention softmax with its scale and mask applied inside: for query i of row b,
//! softmax_j(scale·s_ij) over the keys j ≤ i whose attention-mask entry is 1, zero elsewhere,
//! so no `[B, 1, T, T]` bias tensor is built. With fewer queries than keys (`[B, H, Q, K]`,
//! Q ≤ K: the last Q tokens querying a key/value cache of K) query i sits at key position
//! i + K − Q. A query with no allowed key gets the uniform distribution over all K keys, as
//! the composed version with its f32::MIN bias does.
//! Backward: dS = scale · P ⊙ (dP − Σ_j P·dP), which is zero wherever P is.

use super::math::exp;
use super::{f32s, u32s, MIN_ROWS_PER_TASK};
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::iter::Sum;
use std::ops::{Mul, Sub};

/// Probabilities `[B, H, Q, K]` from raw scores `[B, H, Q, K]` (f32, Q ≤ K; Q = K in a full
/// forward pass) and the attention mask `[B, K]` (u32, 1 for a real token).
pub fn masked_causal_softmax(scores: &Tensor, attention: &Tensor, scale: f64) -> Result<Tensor> {
    let scale = scale as f32;
    scores
        .contiguous()?
        .apply_op2(&attention.contiguous()?, MaskedSoftmax { scale })
}

struct MaskedSoftmax {
    scale: f32,
}

/// Inputs: probabilities and their gradient; output: the gradient of the scores.
struct MaskedSoftmaxBackward {
    scale: f32,
}

/// One query row: `p` gets the probabilities, `keep[j]` says whether key j is a real token.
fn softmax_row(s: &[f32], keep: &[u32], query: usize, scale: f32, p: &mut [f32]) {
    let allowed = |j: usize| keep[j] != 0;
    let mut max = f32::NEG_INFINITY;
    for j in (0..=query).filter(|&j| allowed(j)) {
        max = max.max(scale * s[j]);
    }
    if max == f32::NEG_INFINITY {
        p.fill(1.0 / p.len() as f32);
        return;
    }
    let mut sum = 0f32;
    // exp for every key then a select, so the loop has no branch and vectorises.
    for ((p, &s), &k) in p[..=query].iter_mut().zip(s).zip(keep) {
        let e = exp(scale * s - max);
        *p = if k != 0 { e } else { 0.0 };
        sum += *p;
    }
    let inv = 1.0 / sum;
    p[..=query].iter_mut().for_each(|p| *p *= inv);
}

impl CustomOp2 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "masked-causal-softmax-f32"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let s = f32s(s1, l1, self.name())?;
        let keep = u32s(s2, l2, self.name())?;
        let (b, h, t, k) = l1.shape().dims4()?;
        if t > k || l2.shape().dims2()? != (b, k) {
            candle_core::bail!(
                "masked softmax: scores {:?}, mask {:?}",
                l1.dims(),
                l2.dims()
            );
        }
        let mut p = vec![0f32; s.len()];
        p.par_chunks_mut(k)
            .zip(s.par_chunks(k))
            .with_min_len(MIN_ROWS_PER_TASK)
            .enumerate()
            .for_each(|(row, (p, s))| {
                let (batch, query) = (row / (h * t), row % t + (k - t));
                softmax_row(s, &keep[batch * k..(batch + 1) * k], query, self.scale, p);
            });
        Ok((CpuStorage::F32(p), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _scores: &Tensor,
        _attention: &Tensor,
        probs: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let scale = self.scale;
        let ds = probs.apply_op2(&grad.contiguous()?, MaskedSoftmaxBackward { scale })?;
        Ok((Some(ds), None))
    }
}

impl CustomOp2 for MaskedSoftmaxBackward {
    fn name(&self) -> &'static str {
        "masked-causal-softmax-backward-f32"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (p, g) = (f32s(s1, l1, self.name())?, f32s(s2, l2, self.name())?);
        let t = l1.dims()[l1.dims().len() - 1];
        let ds = softmax_vjp_rows(p, g, t, self.scale, MIN_ROWS_PER_TASK);
        Ok((CpuStorage::F32(ds), l1.shape().clone()))
    }
}

/// `scale · p ⊙ (g − Σ p⊙g)` for each row of `n`: the vector-Jacobian product of a softmax
/// whose output is `p`, at any float precision (this float32 kernel's backward and `exact`'s
/// float64 one), rows split across rayon's threads `min_rows` at least at a time.
pub(in crate::model) fn softmax_vjp_rows<T>(
    p: &[T],
    g: &[T],
    n: usize,
    scale: T,
    min_rows: usize,
) -> Vec<T>
where
    T: Copy + Default + Send + Sync + Mul<Output = T> + Sub<Output = T> + Sum<T>,
{
    let mut out = vec![T::default(); p.len()];
    out.par_chunks_mut(n)
        .zip(p.par_chunks(n).zip(g.par_chunks(n)))
        .with_min_len(min_rows)
        .for_each(|(out, (p, g))| {
            let dot: T = p.iter().zip(g).map(|(&p, &g)| p * g).sum();
            for ((o, &p), &g) in out.iter_mut().zip(p).zip(g) {
                *o = scale * p * (g - dot);
            }
        });
    out
}
