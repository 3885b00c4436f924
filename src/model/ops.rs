//! The numerical kernels of the GPT-2 forward pass: linear (Conv1D) layers, layer norm,
//! `gelu_new`, the attention head split and merge, masked softmax and target log-probs. In
//! float64 softmax, target log-probs and `gelu_new` are the single-node operations of `exact`
//! and the rest is composed from candle's primitives (the candle path's derivatives are first-order; training, unlearning and exact derivatives use the hand-written `pass`); in
//! float32 each goes to a fused first-order kernel of `kernels`, for speed. Frozen weights and
//! masks enter through `constant`. This module owns that choice; it knows nothing of parameter
//! names.

use super::{constant, exact, kernels};
use candle_core::{DType, Result, Tensor, D};

/// True where the fused float32 kernels are used (float64 goes to `exact` and composed ops).
fn fused(t: &Tensor) -> bool {
    t.dtype() == DType::F32
}

/// `x @ w + b` for a Conv1D weight stored `[in, out]`; `x` is `[.., in]`.
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    constant::linear(x, w, b)
}

/// Queries, keys and values `[B, H, T, D]` each, for `x` `[B, T, C]` and the attention's
/// Conv1D `w` `[C, 3C]`, `b` `[3C]`. Fused: one matmul per part on a column slice of `w`, then
/// one head-split copy each.
pub fn qkv_heads(x: &Tensor, w: &Tensor, b: &Tensor, heads: usize) -> Result<[Tensor; 3]> {
    let (bs, t, c) = x.dims3()?;
    let hd = c / heads;
    let part = |k: usize| -> Result<Tensor> {
        if fused(x) {
            let y = linear(x, &w.narrow(1, k * c, c)?, &b.narrow(0, k * c, c)?)?;
            return kernels::swap_middle(&y.reshape((bs, t, heads, hd))?);
        }
        let qkv = linear(x, w, b)?.reshape((bs, t, 3, heads, hd))?;
        qkv.narrow(2, k, 1)?
            .squeeze(2)?
            .transpose(1, 2)?
            .contiguous()
    };
    Ok([part(0)?, part(1)?, part(2)?])
}

/// `[B, H, T, D]` → `[B, T, H·D]`.
pub fn merge_heads(y: &Tensor) -> Result<Tensor> {
    let (bs, h, t, d) = y.dims4()?;
    let y = if fused(y) {
        kernels::swap_middle(y)?
    } else {
        y.transpose(1, 2)?
    };
    y.reshape((bs, t, h * d))
}

/// Layer norm over the last dimension with the biased variance, as `torch.nn.LayerNorm`.
pub fn layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    if fused(x) {
        return kernels::layer_norm(x, w, b, eps);
    }
    let mean = x.mean_keepdim(D::Minus1)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = centred.broadcast_div(&(var + eps)?.sqrt()?)?;
    constant::add(&constant::mul(&normed, w)?, b)
}

/// GPT-2's `gelu_new`: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), with full-precision
/// derivatives (candle's built-in gelu backward uses 6-digit constants; DESIGN.md).
pub fn gelu_new(x: &Tensor) -> Result<Tensor> {
    if fused(x) {
        return kernels::gelu_new(x);
    }
    exact::gelu_new(x)
}

/// What the attention softmax masks with, from the attention mask `[B, T]` (u32): for the
/// fused kernel the mask itself; otherwise the additive bias of [`attention_bias`].
pub fn attention_mask(attention: &Tensor, dtype: DType) -> Result<Tensor> {
    let (_, t) = attention.dims2()?;
    cache_mask(attention, t, dtype)
}

/// The mask for the last `queries` of `K` tokens attending to all `K` (a key/value cache):
/// the attention mask `[B, K]` itself for the fused kernel, otherwise the additive bias
/// `[B, 1, queries, K]` of [`attention_bias`]'s rule with query i at key position
/// i + K − queries.
pub fn cache_mask(attention: &Tensor, queries: usize, dtype: DType) -> Result<Tensor> {
    match dtype {
        DType::F32 => Ok(attention.clone()),
        _ => queries_bias(attention, queries, dtype),
    }
}

/// The additive attention bias `[B, 1, T, T]`: 0 where query `i` may attend key `j` (`j ≤ i` and
/// key `j` is a real token), a large negative number elsewhere.
pub fn attention_bias(attention: &Tensor, dtype: DType) -> Result<Tensor> {
    let (_, t) = attention.dims2()?;
    queries_bias(attention, t, dtype)
}

/// [`attention_bias`] for the last `q` of `K` positions as queries: `[B, 1, q, K]`.
fn queries_bias(attention: &Tensor, q: usize, dtype: DType) -> Result<Tensor> {
    let (b, k) = attention.dims2()?;
    if q > k {
        candle_core::bail!("attention bias: {q} queries for {k} keys");
    }
    let keep = attention.to_vec2::<u32>()?;
    let mut bias = vec![0f64; b * q * k];
    for (r, row) in keep.iter().enumerate() {
        for i in 0..q {
            for (j, &kept) in row.iter().enumerate() {
                if j > i + (k - q) || kept == 0 {
                    bias[(r * q + i) * k + j] = f64::from(f32::MIN);
                }
            }
        }
    }
    Tensor::from_vec(bias, (b, 1, q, k), attention.device())?.to_dtype(dtype)
}

/// Softmax over the last dimension of `scale·scores` masked by `mask` (from
/// [`attention_mask`]).
pub fn masked_softmax(scores: &Tensor, mask: &Tensor, scale: f64) -> Result<Tensor> {
    if fused(scores) {
        return kernels::masked_causal_softmax(scores, mask, scale);
    }
    exact::masked_softmax(scores, mask, scale)
}

/// `log softmax(logits)[target]` for each row: `logits` `[N, V]`, `targets` `[N]` (u32).
/// Float32 uses the fused kernel; float64 the hand-derived operation of `exact` (not `gather`:
/// candle's backward of the scatter-add behind it is wrong, so second derivatives cannot go
/// through it).
pub fn target_logprobs(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    if fused(logits) {
        return kernels::target_logprobs(logits, targets);
    }
    exact::target_logprobs(logits, &targets.to_vec1::<u32>()?)
}
