//! The membership-inference suite's one measurement that needs a backward pass: each record's
//! gradient norm over the chosen parameter group (the `grad_norm` attack; the attacks and their
//! scores are `judge::attacks`, the AUCs, TPRs and curves `judge::derive`). This module reads
//! models only to take gradients (the parameter group is made trainable and then frozen again);
//! it never changes their values. Gradient norms of the embedding group come a batch at a time
//! from one backward pass (`model::per_example`), other groups' one record at a time.

use super::scoring::length_batches;
use crate::data::{Batch, Encoded};
use crate::model::grad::loss_and_grad;
use crate::model::per_example;
use crate::model::{Gpt2, ParamGroups};
use candle_core::DType;

/// ‖∇ loss(record)‖₂ over the parameters of `params`; the model's trainable set is restored to
/// nothing afterwards. Embedding parameters (the default group) are done a batch at a time,
/// one backward pass per batch (`model::per_example`); any other group one record at a time.
pub fn grad_norms(
    model: &mut Gpt2,
    records: &[Encoded],
    pad_id: u32,
    params: &ParamGroups,
    progress: &mut dyn FnMut(u64),
) -> candle_core::Result<Vec<f64>> {
    with_trainable(model, params, |model| {
        if !per_example::supported(model) {
            return each_record(model, records, pad_id, progress);
        }
        let lens: Vec<usize> = records.iter().map(|r| r.ids.len()).collect();
        let mut out = vec![0.0; records.len()];
        for group in length_batches(&lens, model.config().vocab_size) {
            let refs: Vec<&Encoded> = group.iter().map(|&i| &records[i]).collect();
            let norms = per_example::grad_norms(model, &Batch::new(&refs, pad_id))?;
            for (&i, g) in group.iter().zip(norms) {
                out[i] = g;
            }
            progress(group.len() as u64);
        }
        Ok(out)
    })
}

/// [`grad_norms`] by one backward pass per record, whatever the group (the reference the
/// batched path is tested against).
pub fn grad_norms_per_record(
    model: &mut Gpt2,
    records: &[Encoded],
    pad_id: u32,
    params: &ParamGroups,
    progress: &mut dyn FnMut(u64),
) -> candle_core::Result<Vec<f64>> {
    with_trainable(model, params, |model| {
        each_record(model, records, pad_id, progress)
    })
}

/// Runs `f` with exactly `params` trainable, then freezes everything again.
fn with_trainable<T>(
    model: &mut Gpt2,
    params: &ParamGroups,
    f: impl FnOnce(&Gpt2) -> candle_core::Result<T>,
) -> candle_core::Result<T> {
    model
        .set_trainable(params)
        .map_err(candle_core::Error::Msg)?;
    let result = f(model);
    model
        .set_trainable(&ParamGroups(Vec::new()))
        .map_err(candle_core::Error::Msg)?;
    result
}

fn each_record(
    model: &Gpt2,
    records: &[Encoded],
    pad_id: u32,
    progress: &mut dyn FnMut(u64),
) -> candle_core::Result<Vec<f64>> {
    let mut out = Vec::with_capacity(records.len());
    for rec in records {
        let (_, grads) = loss_and_grad(model, &Batch::new(&[rec], pad_id))?;
        let mut sq = 0.0;
        for (_, g) in &grads {
            sq += g
                .to_dtype(DType::F64)?
                .sqr()?
                .sum_all()?
                .to_scalar::<f64>()?;
        }
        out.push(sq.sqrt());
        progress(1);
    }
    Ok(out)
}
