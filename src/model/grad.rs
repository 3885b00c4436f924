//! Exact first and second derivatives of the loss with respect to the trainable parameters:
//! gradients by backward, Hessian-vector products by double backward (Pearlmutter's trick on
//! candle's autograd, which keeps the gradient's graph when the process has
//! `CANDLE_GRAD_DO_NOT_DETACH=1`). Shared by training, unlearning and influence analysis.

use super::gpt2::Gpt2;
use crate::data::Batch;
use candle_core::{Result, Tensor};

/// One tensor per trainable parameter, in state-dict order, paired with its name.
pub type ParamTensors = Vec<(String, Tensor)>;

/// True when candle keeps the graph of gradients, which double backward needs.
pub fn second_order_enabled() -> bool {
    std::env::var("CANDLE_GRAD_DO_NOT_DETACH")
        .is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// The loss and its gradient with respect to every trainable parameter.
pub fn loss_and_grad(model: &Gpt2, batch: &Batch) -> Result<(f64, ParamTensors)> {
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
    Ok((
        loss.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?,
        out,
    ))
}

/// The exact Hessian-vector product `H v` of the batch loss, with `v` given per trainable
/// parameter (same order and shapes as [`loss_and_grad`]'s gradient).
pub fn hvp(model: &Gpt2, batch: &Batch, v: &[(String, Tensor)]) -> Result<ParamTensors> {
    if !second_order_enabled() {
        candle_core::bail!(
            "exact Hessian-vector products need CANDLE_GRAD_DO_NOT_DETACH=1 set at process start"
        );
    }
    let vars = model.trainable_vars();
    if vars.len() != v.len() {
        candle_core::bail!(
            "vector has {} parts, the model {} trainable parameters",
            v.len(),
            vars.len()
        );
    }
    let loss = model.loss(batch)?;
    let grads = loss.backward()?;
    let mut dot: Option<Tensor> = None;
    for ((_, var), (_, vi)) in vars.iter().zip(v) {
        if let Some(g) = grads.get(var.as_tensor()) {
            let term = (g * vi)?.sum_all()?;
            dot = Some(match dot {
                None => term,
                Some(d) => (d + term)?,
            });
        }
    }
    let Some(dot) = dot else {
        candle_core::bail!("no trainable parameter reaches the loss")
    };
    let second = dot.backward()?;
    drop(grads);
    vars.iter()
        .map(|(name, var)| {
            let h = match second.get(var.as_tensor()) {
                Some(h) => h.detach(),
                None => var.as_tensor().zeros_like()?,
            };
            Ok((name.to_string(), h))
        })
        .collect()
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
