//! The numerical kernels of the GPT-2 forward pass: linear (Conv1D) layers, layer norm,
//! `gelu_new`, masked softmax and target log-probs. In float64 each is composed from candle's
//! primitive operations, so gradients and Hessian-vector products (double backward) are exact
//! to rounding. This module owns the arithmetic only; it knows nothing of parameter names.

use candle_core::{DType, Result, Tensor, D};

/// `x @ w + b` for a Conv1D weight stored `[in, out]`; `x` is `[.., in]`.
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let (rows, inp) = (x.elem_count() / dims[dims.len() - 1], dims[dims.len() - 1]);
    let y = x.reshape((rows, inp))?.matmul(w)?.broadcast_add(b)?;
    let mut out = dims;
    let last = out.len() - 1;
    out[last] = w.dim(1)?;
    y.reshape(out)
}

/// Layer norm over the last dimension with the biased variance, as `torch.nn.LayerNorm`.
pub fn layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = centred.broadcast_div(&(var + eps)?.sqrt()?)?;
    normed.broadcast_mul(w)?.broadcast_add(b)
}

/// GPT-2's `gelu_new`: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), written from primitives
/// so that its derivatives carry full precision (candle's built-in gelu backward uses
/// 6-digit constants; DESIGN.md).
pub fn gelu_new(x: &Tensor) -> Result<Tensor> {
    let k = (2.0 / std::f64::consts::PI).sqrt();
    let cube = (x.sqr()? * x)?;
    let inner = ((x + (cube * 0.044715)?)? * k)?;
    ((inner.tanh()? + 1.0)? * x)? * 0.5
}

/// The additive attention bias `[B, 1, T, T]`: 0 where query `i` may attend key `j` (`j ≤ i` and
/// key `j` is a real token), a large negative number elsewhere.
pub fn attention_bias(attention: &Tensor, dtype: DType) -> Result<Tensor> {
    let (b, t) = attention.dims2()?;
    let keep = attention.to_vec2::<u32>()?;
    let mut bias = vec![0f64; b * t * t];
    for (r, row) in keep.iter().enumerate() {
        for i in 0..t {
            for (j, &k) in row.iter().enumerate() {
                if j > i || k == 0 {
                    bias[(r * t + i) * t + j] = f64::from(f32::MIN);
                }
            }
        }
    }
    Tensor::from_vec(bias, (b, 1, t, t), attention.device())?.to_dtype(dtype)
}

/// Softmax over the last dimension of `scores + bias`.
pub fn masked_softmax(scores: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let x = scores.broadcast_add(bias)?;
    // Softmax is invariant to the shift, so the max is a constant for differentiation.
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

/// `log softmax(logits)[target]` for each row: `logits` `[N, V]`, `targets` `[N]` (u32).
///
/// The target is picked with `gather` in float32 (its backward is a scatter-add). In float64 it
/// is picked with a one-hot product instead: candle's backward of scatter-add (needed for second
/// derivatives through `gather`) is wrong, and the one-hot product is exact to any order.
pub fn target_logprobs(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?.squeeze(1)?;
    let picked = if logits.dtype() == DType::F64 {
        let (n, v) = logits.dims2()?;
        let mut hot = vec![0f64; n * v];
        for (row, &t) in targets.to_vec1::<u32>()?.iter().enumerate() {
            hot[row * v + t as usize] = 1.0;
        }
        let hot = Tensor::from_vec(hot, (n, v), logits.device())?;
        (shifted * hot)?.sum(D::Minus1)?
    } else {
        shifted.gather(&targets.unsqueeze(1)?, 1)?.squeeze(1)?
    };
    picked - lse
}
