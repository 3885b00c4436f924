//! Layer norm over the last dimension (biased variance, as `torch.nn.LayerNorm`), fused:
//! one pass per row forward; backward gives the gradients of x, weight and bias together from
//! one op (weight and bias gradients are sums over rows, accumulated per rayon task). Mean and
//! 1/σ are recomputed in the backward rather than kept.

use super::{f32s, MIN_ROWS_PER_TASK};
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// `(x − mean)/√(var + eps) · w + b` over the last dimension of `x`; `w`, `b` are `[C]`.
pub fn layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    x.contiguous()?
        .apply_op3(w, b, LayerNorm { eps: eps as f32 })
}

struct LayerNorm {
    eps: f32,
}

/// Inputs `x, w, grad`; output `[dx (N·C) | dw (C) | db (C)]`, flat.
struct LayerNormBackward {
    eps: f32,
}

/// Mean and 1/σ of one row (two passes: the centred sum of squares keeps precision).
fn moments(x: &[f32], eps: f32) -> (f32, f32) {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    (mean, 1.0 / (var + eps).sqrt())
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "layer-norm-f32"
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
        let (w, b) = (f32s(s2, l2, self.name())?, f32s(s3, l3, self.name())?);
        let c = w.len();
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(c)
            .zip(x.par_chunks(c))
            .with_min_len(MIN_ROWS_PER_TASK)
            .for_each(|(y, x)| {
                let (mean, rstd) = moments(x, self.eps);
                for (((y, &x), &w), &b) in y.iter_mut().zip(x).zip(w).zip(b) {
                    *y = (x - mean) * rstd * w + b;
                }
            });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, c) = (x.elem_count(), w.elem_count());
        let eps = self.eps;
        let all = x.apply_op3(w, &grad.contiguous()?, LayerNormBackward { eps })?;
        let dx = all.narrow(0, 0, n)?.reshape(x.shape())?;
        let dw = all.narrow(0, n, c)?;
        let db = all.narrow(0, n + c, c)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// dx of one row, and this row's terms of dw and db added to `dw`, `db`:
/// x̂ = (x−μ)/σ, dx = (w·g − mean(w·g) − x̂·mean(w·g·x̂))/σ, dw += g·x̂, db += g.
fn backward_row(x: &[f32], w: &[f32], g: &[f32], eps: f32, dx: &mut [f32], acc: &mut [f32]) {
    let (mean, rstd) = moments(x, eps);
    let n = x.len() as f32;
    let (mut sum_gw, mut sum_gwx) = (0f32, 0f32);
    for ((&x, &w), &g) in x.iter().zip(w).zip(g) {
        let xhat = (x - mean) * rstd;
        sum_gw += g * w;
        sum_gwx += g * w * xhat;
    }
    let (mean_gw, mean_gwx) = (sum_gw / n, sum_gwx / n);
    let (dw, db) = acc.split_at_mut(x.len());
    for i in 0..x.len() {
        let xhat = (x[i] - mean) * rstd;
        dx[i] = (g[i] * w[i] - mean_gw - xhat * mean_gwx) * rstd;
        dw[i] += g[i] * xhat;
        db[i] += g[i];
    }
}

impl CustomOp3 for LayerNormBackward {
    fn name(&self) -> &'static str {
        "layer-norm-backward-f32"
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
        let (w, g) = (f32s(s2, l2, self.name())?, f32s(s3, l3, self.name())?);
        let c = w.len();
        let rows = x.len() / c;
        let per_task = rows.div_ceil(rayon::current_num_threads()).max(1) * c;
        let mut out = vec![0f32; x.len() + 2 * c];
        let (dx, _) = out.split_at_mut(x.len());
        let acc = dx
            .par_chunks_mut(per_task)
            .zip(x.par_chunks(per_task).zip(g.par_chunks(per_task)))
            .map(|(dx, (x, g))| {
                let mut acc = vec![0f32; 2 * c];
                for ((dx, x), g) in dx.chunks_mut(c).zip(x.chunks(c)).zip(g.chunks(c)) {
                    backward_row(x, w, g, self.eps, dx, &mut acc);
                }
                acc
            })
            .reduce(
                || vec![0f32; 2 * c],
                |mut a, b| {
                    a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                    a
                },
            );
        out[x.len()..].copy_from_slice(&acc);
        Ok((CpuStorage::F32(out), Shape::from(x.len() + 2 * c)))
    }
}
