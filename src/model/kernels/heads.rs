//! The attention head split and merge as one copy: `[A, B, C, D]` → `[A, C, B, D]`,
//! contiguous (`[batch, time, head, dim]` ↔ `[batch, head, time, dim]`). Its backward is the
//! same swap of the gradient. Multi-threaded over output rows, `D` values copied at a time.

use super::{f32s, MIN_ROWS_PER_TASK};
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// `x.transpose(1, 2).contiguous()` for a 4-D float32 tensor, in one parallel pass.
pub fn swap_middle(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(SwapMiddle)
}

struct SwapMiddle;

impl CustomOp1 for SwapMiddle {
    fn name(&self) -> &'static str {
        "swap-middle-f32"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32s(s, l, self.name())?;
        let (a, b, c, d) = l.shape().dims4()?;
        let mut y = vec![0f32; x.len()];
        // Output row (i, k, j) of length d is input row (i, j, k).
        y.par_chunks_mut(d)
            .with_min_len(MIN_ROWS_PER_TASK * 8)
            .enumerate()
            .for_each(|(row, out)| {
                let (i, k, j) = (row / (c * b), row / b % c, row % b);
                let src = ((i * b + j) * c + k) * d;
                out.copy_from_slice(&x[src..src + d]);
            });
        Ok((CpuStorage::F32(y), Shape::from((a, c, b, d))))
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(swap_middle(grad)?))
    }
}
