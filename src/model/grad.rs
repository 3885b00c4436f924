//! Exact first and second derivatives of the loss with respect to the trainable parameters.
//! Float64 models (certification: influence analysis, gradient-norm attacks) get gradients and
//! exact Hessian-vector products by forward-over-reverse differentiation (`dual`); float32
//! models (training, unlearning) get gradients by candle's backward. Shared by training,
//! unlearning and influence analysis.

use super::dual::loss_grad_hvp;
use super::gpt2::Gpt2;
pub use super::params::ParamTensors;
use crate::data::Batch;
use candle_core::{DType, Result, Tensor};

/// The loss and its gradient with respect to every trainable parameter.
pub fn loss_and_grad(model: &Gpt2, batch: &Batch) -> Result<(f64, ParamTensors)> {
    if model.dtype() == DType::F64 {
        let (loss, grad, _) = loss_grad_hvp(model, batch, None)?;
        return Ok((loss, grad));
    }
    let loss = model.loss(batch)?;
    let grads = loss.backward()?;
    let mut out = Vec::new();
    for (name, var) in model.trainable_vars() {
        let g = match grads.get(var.as_tensor()) {
            Some(g) => g.detach(),
            None => var.as_tensor().zeros_like()?,
        };
        out.push((name.to_string(), g));
    }
    Ok((loss.to_dtype(DType::F64)?.to_scalar::<f64>()?, out))
}

/// The exact Hessian-vector product `H v` of the batch loss of a float64 model, with `v` given
/// per trainable parameter (same order and shapes as [`loss_and_grad`]'s gradient).
pub fn hvp(model: &Gpt2, batch: &Batch, v: &[(String, Tensor)]) -> Result<ParamTensors> {
    if model.dtype() != DType::F64 {
        candle_core::bail!(
            "exact Hessian-vector products need the model in float64, not {:?}",
            model.dtype()
        );
    }
    match loss_grad_hvp(model, batch, Some(v))?.2 {
        Some(hv) => Ok(hv),
        None => candle_core::bail!("no Hessian-vector product was computed"),
    }
}

/// `Σ ⟨a_i, b_i⟩` over parameter tensors, in f64.
pub fn dot(a: &[(String, Tensor)], b: &[(String, Tensor)]) -> Result<f64> {
    let mut s = 0.0;
    for ((_, x), (_, y)) in a.iter().zip(b) {
        s += (x.to_dtype(candle_core::DType::F64)? * y.to_dtype(candle_core::DType::F64)?)?
            .sum_all()?
            .to_scalar::<f64>()?;
    }
    Ok(s)
}
