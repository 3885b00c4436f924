//! A decoder model as the rest of lethe holds it: its configuration and its parameters (candle
//! `Var`s by Hugging Face name, in the pass's order), which of them are trainable, and the
//! model-level calls (logits, log-probs, losses, hidden states) in candle tensors. Every one of
//! them is computed by the hand-written pass (`pass`), exactly as Hugging Face transformers'
//! model of the family does. Loading and saving files is `load`/`save`; this module knows
//! nothing of training.

use super::config::Gpt2Config;
use super::params::{param_shapes, ParamGroups};
use super::pass;
use crate::data::batch::Batch;
use candle_core::{CpuStorage, DType, Device, Layout, Result, Tensor, Var, D};
use rayon::prelude::*;
use std::collections::BTreeMap;

/// A log-probs pass over a batch, kept with its trunk output so that [`Gpt2::rescore`] can score
/// the batch again by the output layer alone.
pub struct KeptPass {
    pass: Kept,
    /// The batch's rows and columns.
    shape: (usize, usize),
}

enum Kept {
    F32(pass::Forward<f32>),
    F64(pass::Forward<f64>),
}

/// A decoder language model of any family lethe reads (the name is the first family's).
/// Every parameter is a `Var`; gradients are formed for the parameters selected with
/// [`Gpt2::set_trainable`] only, and no weight-gradient work is done for the others.
pub struct Gpt2 {
    cfg: Gpt2Config,
    names: Vec<String>,
    vars: Vec<Var>,
    trainable: Vec<bool>,
    /// When false, a tied output layer reads the token embedding as a constant, so the
    /// embedding's gradient is its input part only (non-zero on the rows of the tokens present).
    output_grad: bool,
    dtype: DType,
    device: Device,
}

/// Per-layer hidden states of one forward pass: the embedding output and each block's output,
/// `[B, T, C]` each (the last before the final layer norm).
pub struct Hidden {
    pub layers: Vec<Tensor>,
}

impl Gpt2 {
    /// Builds the model from tensors named as in [`param_shapes`]; shapes must already have been
    /// checked (`load` does). All parameters start frozen.
    pub fn from_tensors(
        cfg: Gpt2Config,
        mut tensors: BTreeMap<String, Tensor>,
        dtype: DType,
    ) -> Result<Self> {
        let mut names = Vec::new();
        let mut vars = Vec::new();
        for (name, shape) in param_shapes(&cfg) {
            let t = tensors
                .remove(&name)
                .ok_or_else(|| candle_core::Error::Msg(format!("missing tensor {name}")))?;
            if t.dims() != shape.as_slice() {
                candle_core::bail!("tensor {name} has shape {:?}, expected {shape:?}", t.dims());
            }
            vars.push(Var::from_tensor(&t.to_dtype(dtype)?)?);
            names.push(name);
        }
        let trainable = vec![false; names.len()];
        Ok(Gpt2 {
            cfg,
            names,
            vars,
            trainable,
            output_grad: true,
            dtype,
            device: Device::Cpu,
        })
    }

    pub fn config(&self) -> &Gpt2Config {
        &self.cfg
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Parameter names in state-dict order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The token embedding's parameter name (every family's first parameter; GPT-2's
    /// `transformer.wte.weight`, the Llama family's `model.embed_tokens.weight`, NeoX's
    /// `gpt_neox.embed_in.weight`).
    pub fn token_embedding(&self) -> &str {
        &self.names[0]
    }

    /// The learned position embedding's name: GPT-2's `transformer.wpe.weight`; `None` for the
    /// rotary families.
    pub fn position_embedding(&self) -> Option<&str> {
        (self.config().arch.family == super::config::Family::Gpt2).then(|| self.names[1].as_str())
    }

    /// The current value of parameter `name` (detached: reading it records no graph).
    pub fn get(&self, name: &str) -> Option<Tensor> {
        let i = self.names.iter().position(|n| n == name)?;
        Some(self.vars[i].as_tensor().detach())
    }

    /// All parameters as detached tensors, by name.
    pub fn tensors(&self) -> BTreeMap<String, Tensor> {
        self.names
            .iter()
            .zip(&self.vars)
            .map(|(n, v)| (n.clone(), v.as_tensor().detach()))
            .collect()
    }

    /// Makes exactly the parameters of `groups` trainable. Returns their names.
    pub fn set_trainable(
        &mut self,
        groups: &ParamGroups,
    ) -> std::result::Result<Vec<String>, String> {
        let selected = groups.select(&self.cfg)?;
        for (flag, name) in self.trainable.iter_mut().zip(&self.names) {
            *flag = selected.contains(name);
        }
        Ok(self
            .trainable_vars()
            .into_iter()
            .map(|(n, _)| n.to_string())
            .collect())
    }

    /// Makes exactly the named parameters trainable (unknown names are ignored).
    pub fn set_trainable_names(&mut self, names: &[String]) {
        for (flag, name) in self.trainable.iter_mut().zip(&self.names) {
            *flag = names.contains(name);
        }
    }

    /// Whether gradients flow into `wte` through the tied output layer (default true). With
    /// false, `wte`'s gradient is the input-side part alone: row-sparse, on the tokens present.
    pub fn set_output_grad(&mut self, on: bool) {
        self.output_grad = on;
    }

    /// Whether gradients flow into `wte` through the tied output layer.
    pub fn output_grad(&self) -> bool {
        self.output_grad
    }

    /// The trainable parameters, by name, in state-dict order.
    pub fn trainable_vars(&self) -> Vec<(&str, &Var)> {
        self.names
            .iter()
            .zip(&self.vars)
            .zip(&self.trainable)
            .filter(|(_, t)| **t)
            .map(|((n, v), _)| (n.as_str(), v))
            .collect()
    }

    /// Number of scalar parameters whose name satisfies `pred`.
    pub fn count_params(&self, pred: impl Fn(&str) -> bool) -> usize {
        self.names
            .iter()
            .zip(&self.vars)
            .filter(|(n, _)| pred(n))
            .map(|(_, v)| v.elem_count())
            .sum()
    }

    /// The parameters in state-dict order (the hand-written pass reads them in place).
    pub(super) fn vars(&self) -> &[Var] {
        &self.vars
    }

    /// Which parameters are trainable, in state-dict order.
    pub(super) fn trainable_flags(&self) -> &[bool] {
        &self.trainable
    }

    /// Logits `[B, T, V]` for token ids `[B, T]` (u32) and an attention mask `[B, T]` (1 for
    /// real tokens, 0 for padding), by the hand-written pass.
    pub fn forward(&self, ids: &Tensor, attention: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let every: Vec<usize> = (0..b * t).collect();
        pass::logits_at(self, ids, attention, &every)?.reshape((b, t, self.cfg.vocab_size))
    }

    /// Logits `[B, V]` of the next token after position `last[r]` of row `r` (what greedy
    /// decoding needs).
    pub fn next_logits(&self, ids: &Tensor, attention: &Tensor, last: &[usize]) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        if last.len() != b || last.iter().any(|&p| p >= t) {
            candle_core::bail!(
                "next_logits: {} positions for {b} rows of {t} tokens",
                last.len()
            );
        }
        let at: Vec<usize> = last.iter().enumerate().map(|(r, &p)| r * t + p).collect();
        pass::logits_at(self, ids, attention, &at)
    }

    /// Logits `[n, V]` at chosen positions, given as flat indices `r·T + p` into the `[B, T]`
    /// batch, by the hand-written pass: the trunk runs over the whole batch, the
    /// vocabulary-sized output layer only at those positions.
    pub fn logits_at(&self, ids: &Tensor, attention: &Tensor, rows: &[u32]) -> Result<Tensor> {
        let at: Vec<usize> = rows.iter().map(|&r| r as usize).collect();
        pass::logits_at(self, ids, attention, &at)
    }

    /// Hidden states of every layer (embedding output, then each block's output) for the
    /// seed paper's activation score, by the hand-written pass.
    pub fn hidden_states(&self, ids: &Tensor, attention: &Tensor) -> Result<Hidden> {
        Ok(Hidden {
            layers: pass::hidden_states(self, ids, attention)?,
        })
    }

    /// The batch as tensors: ids `[B, T]` and attention mask `[B, T]`.
    pub fn batch_tensors(&self, batch: &Batch) -> Result<(Tensor, Tensor)> {
        let shape = (batch.rows, batch.cols);
        let ids = Tensor::from_slice(&batch.ids, shape, &self.device)?;
        let att = Tensor::from_slice(&batch.attention, shape, &self.device)?;
        Ok((ids, att))
    }

    /// `log p(x[t+1] | x[..=t])`, `[B, T-1]`, at the positions the batch scores (non-zero
    /// target weight); the others hold 0 and are not computed — the output layer runs only
    /// where a target is scored (an answer-only record scores its answer tokens alone).
    pub fn token_logprobs(&self, batch: &Batch) -> Result<Tensor> {
        Ok(self.scored_positions(batch, false)?.0)
    }

    /// [`Gpt2::token_logprobs`] and, per row, whether every scored target is the model's most
    /// likely next token (teacher-forced: for an answer-only record, whether greedy decoding
    /// from the prompt reproduces the answer), from the same forward pass.
    pub fn token_logprobs_and_hits(&self, batch: &Batch) -> Result<(Tensor, Vec<bool>)> {
        let (lp, hits) = self.scored_positions(batch, true)?;
        Ok((lp, hits.unwrap_or_default()))
    }

    fn scored_positions(&self, batch: &Batch, hits: bool) -> Result<(Tensor, Option<Vec<bool>>)> {
        let mut kept = self.kept_pass(batch)?;
        self.positions(&mut kept, batch, hits, false)
    }

    /// [`Gpt2::token_logprobs_and_hits`], with the pass kept for [`Gpt2::rescore`].
    pub fn scores_kept(&self, batch: &Batch) -> Result<(Tensor, Vec<bool>, KeptPass)> {
        let mut kept = self.kept_pass(batch)?;
        let (lp, hits) = self.positions(&mut kept, batch, true, false)?;
        Ok((lp, hits.unwrap_or_default(), kept))
    }

    /// [`Gpt2::token_logprobs_and_hits`] of the batch `kept` was made from, from the trunk output
    /// it kept under the model's current final norm and output layer: bit for bit a fresh
    /// pass's while nothing the trunk reads has changed since (its blocks, the position
    /// embedding, the token embedding's rows of the batch's tokens; the caller's to know).
    pub fn rescore(&self, kept: &mut KeptPass, batch: &Batch) -> Result<(Tensor, Vec<bool>)> {
        if kept.shape != (batch.rows, batch.cols) {
            candle_core::bail!("a kept pass is scored again with the batch it was made from");
        }
        let (lp, hits) = self.positions(kept, batch, true, true)?;
        Ok((lp, hits.unwrap_or_default()))
    }

    fn kept_pass(&self, batch: &Batch) -> Result<KeptPass> {
        let pass = match self.dtype {
            DType::F32 => Kept::F32(pass::Forward::logprobs_only(self, batch)?),
            DType::F64 => Kept::F64(pass::Forward::logprobs_only(self, batch)?),
            other => candle_core::bail!("scoring runs in float32 or float64, not {other:?}"),
        };
        Ok(KeptPass {
            pass,
            shape: (batch.rows, batch.cols),
        })
    }

    /// The `[B, T-1]` table of the targets' log-probs of `kept`'s pass (zero elsewhere) and,
    /// with `hits`, each row's teacher-forced reproduction; with `again`, the pass is first
    /// scored again from its trunk output.
    fn positions(
        &self,
        kept: &mut KeptPass,
        batch: &Batch,
        hits: bool,
        again: bool,
    ) -> Result<(Tensor, Option<Vec<bool>>)> {
        match &mut kept.pass {
            Kept::F32(fwd) => self.table(fwd, batch, hits, again),
            Kept::F64(fwd) => self.table(fwd, batch, hits, again),
        }
    }

    fn table<T: pass::Real>(
        &self,
        fwd: &mut pass::Forward<T>,
        batch: &Batch,
        hits: bool,
        again: bool,
    ) -> Result<(Tensor, Option<Vec<bool>>)> {
        if again {
            fwd.rescore(self)?;
        }
        let (b, width) = (batch.rows, batch.cols.saturating_sub(1));
        let mut table = vec![T::ZERO; b * width];
        for (slot, &lp) in fwd.slots().zip(fwd.logprobs()) {
            table[slot] = lp;
        }
        let row_hits = hits.then(|| {
            let mut per = vec![true; b];
            for ((r, _), hit) in fwd.target_rows().zip(fwd.hits()) {
                per[r] &= hit;
            }
            per
        });
        Ok((Tensor::from_vec(table, (b, width), &self.device)?, row_hits))
    }

    /// Mean negative log-likelihood over the batch's weighted target positions (all real
    /// tokens of a text record, the answer tokens of a question–answer record), in float64.
    pub fn loss(&self, batch: &Batch) -> Result<f64> {
        weighted_mean_nll(&self.token_logprobs(batch)?, batch)?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()
    }

    /// Per-record mean negative log-likelihood, `[B]`, over each row's weighted targets.
    pub fn record_losses(&self, batch: &Batch) -> Result<Tensor> {
        let lp = self.token_logprobs(batch)?;
        let w = batch.weight_tensor(self.dtype, &self.device)?;
        let per_row = (lp * &w)?.sum(D::Minus1)?.neg()?;
        per_row.div(&w.sum(D::Minus1)?)
    }

    /// Replaces the value of trainable and frozen parameters alike (same shape and dtype).
    pub fn set_param(&self, name: &str, value: &Tensor) -> Result<()> {
        let i = self
            .names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| candle_core::Error::Msg(format!("no parameter {name}")))?;
        self.vars[i].set(&value.to_dtype(self.dtype)?)
    }

    /// Another handle on the same parameters (their storage is shared, not copied) with trainable
    /// flags of its own, for gradient passes that read the weights under other flags while
    /// `self` is borrowed elsewhere. Nothing may write parameters through it ([`Gpt2::set_param`]
    /// would change both); use [`Gpt2::duplicate`] for a copy to modify.
    pub fn sharing(&self) -> Gpt2 {
        Gpt2 {
            cfg: self.cfg.clone(),
            names: self.names.clone(),
            vars: self.vars.clone(),
            trainable: self.trainable.clone(),
            output_grad: self.output_grad,
            dtype: self.dtype,
            device: self.device.clone(),
        }
    }

    /// A deep copy whose parameters do not share storage with `self`.
    pub fn duplicate(&self) -> Result<Gpt2> {
        let tensors = self
            .tensors()
            .into_iter()
            .map(|(n, t)| Ok((n, t.copy()?)))
            .collect::<Result<_>>()?;
        let mut m = Gpt2::from_tensors(self.cfg.clone(), tensors, self.dtype)?;
        m.trainable = self.trainable.clone();
        m.output_grad = self.output_grad;
        Ok(m)
    }

    /// The same model in another dtype (a copy).
    pub fn to_dtype(&self, dtype: DType) -> Result<Gpt2> {
        let mut m = Gpt2::from_tensors(self.cfg.clone(), self.tensors(), dtype)?;
        m.trainable = self.trainable.clone();
        m.output_grad = self.output_grad;
        Ok(m)
    }
}

/// `−Σ w·logp / Σ w` over a batch, as a scalar tensor.
pub fn weighted_mean_nll(logprobs: &Tensor, batch: &Batch) -> Result<Tensor> {
    let w = batch.weight_tensor(logprobs.dtype(), logprobs.device())?;
    let total: f64 = batch.target_weight.iter().map(|&x| x as f64).sum();
    if total <= 0.0 {
        candle_core::bail!("batch has no target tokens to score");
    }
    (logprobs * &w)?.sum_all()?.neg()? / total
}

/// `var ← var + scale·d`, the update of a gradient step. A float32 variable and direction on
/// the CPU are updated in place, in one pass, in the variable's own buffer; candle's
/// `var + d·scale` makes two new buffers, and at a real model's size each is page-faulted
/// afresh (the two took 0.6 GB per step of a 148M-parameter model). Rounding is the same:
/// `scale·d` is rounded to float32, then added. Anything else (another dtype or layout, a
/// direction sharing the variable's storage) takes candle's way.
pub fn add_scaled(var: &Var, d: &Tensor, scale: f64) -> Result<()> {
    // `AddScaled` itself refuses any dtype, device or layout it does not handle.
    let in_place = || var.as_tensor().inplace_op2(d, &AddScaled(scale as f32));
    if var.shape() == d.shape() && in_place().is_ok() {
        return Ok(());
    }
    var.set(&(var.as_tensor() + (d * scale)?)?)
}

/// [`add_scaled`]'s in-place pass: `dst += s·src` on contiguous float32 CPU storages; any other
/// operand is refused before anything is written.
struct AddScaled(f32);

impl candle_core::InplaceOp2 for AddScaled {
    fn name(&self) -> &'static str {
        "add-scaled"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let (CpuStorage::F32(p), CpuStorage::F32(d)) = (s1, s2) else {
            candle_core::bail!("add-scaled: float32 operands only");
        };
        let (Some((pa, pb)), Some((da, db))) = (l1.contiguous_offsets(), l2.contiguous_offsets())
        else {
            candle_core::bail!("add-scaled: contiguous operands only");
        };
        if pb - pa != db - da {
            candle_core::bail!("add-scaled: {} and {} elements", pb - pa, db - da);
        }
        let s = self.0;
        p[pa..pb]
            .par_iter_mut()
            .zip(&d[da..db])
            .for_each(|(p, &d)| *p += s * d);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fused update rounds as candle's `var + d·scale` does, bit for bit; a float64
    /// variable takes candle's way.
    #[test]
    fn add_scaled_is_candles_update_bit_for_bit() {
        let dev = Device::Cpu;
        for dtype in [DType::F32, DType::F64] {
            let p: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.37).sin()).collect();
            let d: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.11).cos() * 1e-3).collect();
            let p = Tensor::from_vec(p, (10, 100), &dev)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            let d = Tensor::from_vec(d, (10, 100), &dev)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            let var = Var::from_tensor(&p).unwrap();
            let scale = -0.123_456_789;
            let want = (&p + (&d * scale).unwrap()).unwrap();
            add_scaled(&var, &d, scale).unwrap();
            let got = var.as_tensor().to_dtype(DType::F64).unwrap();
            let want = want.to_dtype(DType::F64).unwrap();
            let (got, want) = (
                got.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
                want.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
            );
            assert_eq!(got, want, "{dtype:?}");
        }
    }
}
