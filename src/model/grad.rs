//! Exact first and second derivatives of the loss with respect to the trainable parameters.
//! Gradients, in float32 (training, unlearning) and float64 (certification: influence analysis,
//! gradient-norm attacks) alike, and exact float64 Hessian-vector products all come from the
//! hand-written pass (`pass`; the products by running it in dual numbers, one at a time by
//! [`hvp`], many at one point by [`Linearized`]). Shared by training, unlearning and influence
//! analysis.

use super::gpt2::Gpt2;
pub use super::params::ParamTensors;
use super::pass;
pub use super::pass::Linearized;
use crate::data::Batch;
use candle_core::{DType, Result, Tensor};

/// The loss and its gradient with respect to every trainable parameter.
pub fn loss_and_grad(model: &Gpt2, batch: &Batch) -> Result<(f64, ParamTensors)> {
    match model.dtype() {
        DType::F64 => pass::loss_and_grad::<f64>(model, batch),
        DType::F32 => pass::loss_and_grad::<f32>(model, batch),
        other => candle_core::bail!("gradients are computed in float32 or float64, not {other:?}"),
    }
}

/// The exact Hessian-vector product `H v` of the batch loss of a float64 model, with `v` given
/// per trainable parameter (same order and shapes as [`loss_and_grad`]'s gradient).
pub fn hvp(model: &Gpt2, batch: &Batch, v: &[(String, Tensor)]) -> Result<ParamTensors> {
    // `Linearized::new` refuses a model not in float64.
    Ok(pass::loss_grad_hvp(model, batch, v)?.2)
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

/// `grads` (the trainable parameters' gradients, in [`Gpt2::trainable_vars`] order) as the
/// store candle's optimisers step with.
pub fn store(model: &Gpt2, grads: ParamTensors) -> candle_core::backprop::GradStore {
    let mut store = candle_core::backprop::GradStore::default();
    for ((_, var), (_, g)) in model.trainable_vars().into_iter().zip(grads) {
        store.insert(var.as_tensor(), g);
    }
    store
}
