//! Target log-probs, `log softmax(logits)[target]` per row, in one pass over the vocabulary
//! (max, then Σ exp), never building the `[N, V]` log-softmax. Backward:
//! dlogits = g·(onehot(target) − softmax), where the log-sum-exp is recovered from the forward
//! result (lse = logit[target] − logprob), so the backward is one pass too.

use super::math::exp;
use super::{f32s, u32s, MIN_ROWS_PER_TASK};
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Independent partial sums, so that reductions vectorise (float addition does not reorder).
const LANES: usize = 16;

/// `logits` `[N, V]` (f32), `targets` `[N]` (u32) → `[N]`.
pub fn target_logprobs(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    logits
        .contiguous()?
        .apply_op2(&targets.contiguous()?, TargetLogprobs)
}

struct TargetLogprobs;

/// Inputs: logits, targets, and `[N, 2]` = (forward result, its gradient) per row.
struct TargetLogprobsBackward;

fn max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = a.max(v);
        }
    }
    acc.iter().fold(tail, |m, &v| m.max(v))
}

fn sum_exp(x: &[f32], shift: f32) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().map(|&v| exp(v - shift)).sum();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += exp(v - shift);
        }
    }
    tail + acc.iter().sum::<f32>()
}

/// log-sum-exp of one row.
fn lse(x: &[f32]) -> f32 {
    let m = max(x);
    m + sum_exp(x, m).ln()
}

impl CustomOp2 for TargetLogprobs {
    fn name(&self) -> &'static str {
        "target-logprobs-f32"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32s(s1, l1, self.name())?;
        let targets = u32s(s2, l2, self.name())?;
        let (n, v) = l1.shape().dims2()?;
        if targets.len() != n || targets.iter().any(|&t| t as usize >= v) {
            candle_core::bail!("target log-probs: targets must be {n} ids below {v}");
        }
        let mut out = vec![0f32; n];
        out.par_iter_mut()
            .zip(x.par_chunks(v))
            .zip(targets)
            .with_min_len(MIN_ROWS_PER_TASK.min(4))
            .for_each(|((o, x), &t)| *o = x[t as usize] - lse(x));
        Ok((CpuStorage::F32(out), Shape::from(n)))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        logprobs: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let aux = Tensor::stack(&[logprobs, grad], 1)?;
        let d = logits.apply_op3(targets, &aux, TargetLogprobsBackward)?;
        Ok((Some(d), None))
    }
}

impl CustomOp3 for TargetLogprobsBackward {
    fn name(&self) -> &'static str {
        "target-logprobs-backward-f32"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32s(s1, l1, self.name())?;
        let targets = u32s(s2, l2, self.name())?;
        let aux = f32s(s3, l3, self.name())?;
        let v = l1.dims()[1];
        let mut d = vec![0f32; x.len()];
        d.par_chunks_mut(v)
            .zip(x.par_chunks(v))
            .zip(targets.par_iter().zip(aux.par_chunks(2)))
            .with_min_len(MIN_ROWS_PER_TASK.min(4))
            .for_each(|((d, x), (&t, aux))| {
                let (logprob, g) = (aux[0], aux[1]);
                if g == 0.0 {
                    return; // an unscored target: the row's gradient is zero
                }
                let lse = x[t as usize] - logprob;
                for (d, &x) in d.iter_mut().zip(x) {
                    *d = -g * exp(x - lse);
                }
                d[t as usize] += g;
            });
        Ok((CpuStorage::F32(d), l1.shape().clone()))
    }
}
