//! GPT-2's `gelu_new`, 0.5·x·(1 + tanh(u)) with u = √(2/π)·(x + 0.044715·x³), fused. It is
//! computed as x·σ(2u) (the same function: 1 + tanh(u) = 2σ(2u)), and its derivative exactly:
//! σ + 2x·σ(1−σ)·√(2/π)·(1 + 3·0.044715·x²), with σ = σ(2u) — full-precision constants, unlike
//! candle's built-in gelu backward (DESIGN.md).

use super::math::{exp, sigmoid};
use super::{f32s, MIN_ROWS_PER_TASK};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

const A: f32 = 0.044715;
/// √(2/π).
const K: f32 = 0.797_884_6;
/// Elements per rayon task.
const CHUNK: usize = 4096 * MIN_ROWS_PER_TASK;

/// `gelu_new(x)` element-wise, any shape.
pub fn gelu_new(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Gelu)
}

struct Gelu;
struct GeluBackward;

fn forward(x: f32) -> f32 {
    x * sigmoid(2.0 * K * (x + A * x * x * x))
}

fn derivative(x: f32) -> f32 {
    // σ and 1−σ from the same exponential: 1 − σ computed by subtraction would lose digits.
    let e = exp(-2.0 * K * (x + A * x * x * x));
    let (s, one_minus_s) = (1.0 / (1.0 + e), e / (1.0 + e));
    s + 2.0 * x * s * one_minus_s * K * (1.0 + 3.0 * A * x * x)
}

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "gelu-new-f32"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32s(s, l, self.name())?;
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(|(y, x)| y.iter_mut().zip(x).for_each(|(y, &x)| *y = forward(x)));
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(x.apply_op2(&grad.contiguous()?, GeluBackward)?))
    }
}

impl CustomOp2 for GeluBackward {
    fn name(&self) -> &'static str {
        "gelu-new-backward-f32"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, g) = (f32s(s1, l1, self.name())?, f32s(s2, l2, self.name())?);
        let mut dx = vec![0f32; x.len()];
        dx.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK).zip(g.par_chunks(CHUNK)))
            .for_each(|(d, (x, g))| {
                for ((d, &x), &g) in d.iter_mut().zip(x).zip(g) {
                    *d = g * derivative(x);
                }
            });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}
