//! Fused float32 kernels for the GPT-2 forward pass and its first-order backward: layer norm,
//! `gelu_new`, the masked causal softmax of attention, target log-probs (log-softmax and gather
//! in one pass), and the head split/merge copy. Each is a candle `CustomOp` that works on
//! contiguous slices, splits rows across rayon's threads and keeps its inner loops simple
//! enough to vectorise; its backward is another custom op. They are first-order only: a second
//! backward through them fails with candle's `BackwardNotSupported`, and exact second
//! derivatives are the hand-written pass's (`pass`, in dual numbers).
//! This module owns the arithmetic of these kernels; `ops` decides when they are used.

mod gelu;
mod heads;
mod layer_norm;
mod math;
mod softmax;
mod xent;

pub use gelu::gelu_new;
pub use heads::swap_middle;
pub use layer_norm::layer_norm;
pub(in crate::model) use math::exp as fast_exp;
pub use softmax::masked_causal_softmax;
pub(in crate::model) use softmax::softmax_vjp_rows;
pub use xent::target_logprobs;

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, Layout, Result};

/// Rows handed to one rayon task at least: fewer makes scheduling cost more than the work.
const MIN_ROWS_PER_TASK: usize = 8;

/// The float32 values of a contiguous tensor.
fn f32s<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        bail!("{op}: expected float32, got {:?}", s.dtype())
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => bail!("{op}: input must be contiguous"),
    }
}

/// The u32 values of a contiguous tensor.
fn u32s<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [u32]> {
    let CpuStorage::U32(v) = s else {
        bail!("{op}: expected u32, got {:?}", s.dtype())
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => bail!("{op}: input must be contiguous"),
    }
}
