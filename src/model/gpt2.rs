//! The GPT-2 network on candle: embeddings, pre-norm transformer blocks with causal
//! self-attention and a `gelu_new` MLP, final layer norm and the output layer tied to `wte`,
//! computed exactly as Hugging Face transformers' `GPT2LMHeadModel` does. This module owns the
//! parameters (as candle `Var`s, by Hugging Face name) and the forward pass; loading and saving
//! files is `load`/`save`, the fast kernels are `ops`, and it knows nothing of training.

use super::config::Gpt2Config;
use super::params::{param_shapes, ParamGroups};
use super::{constant, ops, pass};
use crate::data::batch::Batch;
use candle_core::{DType, Device, Result, Tensor, Var, D};
use std::collections::BTreeMap;

/// Parameters per block, in state-dict order (see [`param_shapes`]).
const PER_BLOCK: usize = 12;

/// A GPT-2 language model. Every parameter is a `Var`; only the parameters selected with
/// [`Gpt2::set_trainable`] enter the autograd graph, and the layers read the others through
/// `constant`'s operations, so no weight-gradient work is done for them.
pub struct Gpt2 {
    cfg: Gpt2Config,
    names: Vec<String>,
    vars: Vec<Var>,
    trainable: Vec<bool>,
    /// When false, the tied output layer reads `wte` detached, so `wte`'s gradient is its
    /// input-embedding part only (non-zero on the rows of the tokens present).
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

    /// Parameter `i` as it enters the graph: tracked when trainable, detached otherwise.
    pub(super) fn p(&self, i: usize) -> Tensor {
        let t = self.vars[i].as_tensor();
        if self.trainable[i] {
            t.clone()
        } else {
            t.detach()
        }
    }

    fn block_param(&self, layer: usize, k: usize) -> Tensor {
        self.p(2 + layer * PER_BLOCK + k)
    }

    /// Hidden states before the final layer norm, `[B, T, C]`, on candle's operations.
    fn trunk(&self, ids: &Tensor, attention: &Tensor) -> Result<Tensor> {
        let mask = ops::attention_mask(attention, self.dtype)?;
        let mut h = self.embed(ids)?;
        for layer in 0..self.cfg.n_layer {
            h = self.block(layer, &h, &mask)?;
        }
        Ok(h)
    }

    /// Token plus position embeddings `[B, T, C]` of ids `[B, T]` at positions `0..T`.
    fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        if t > self.cfg.n_positions {
            candle_core::bail!(
                "sequence of {t} tokens is longer than the model's context ({})",
                self.cfg.n_positions
            );
        }
        let tok =
            self.p(0)
                .index_select(&ids.flatten_all()?, 0)?
                .reshape((b, t, self.cfg.n_embd))?;
        tok.broadcast_add(&self.p(1).narrow(0, 0, t)?)
    }

    /// Block `layer` on `x` `[B, T, C]`.
    fn block(&self, layer: usize, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let w = |k| self.block_param(layer, k);
        let eps = self.cfg.layer_norm_epsilon;
        let a = ops::layer_norm(x, &w(0), &w(1), eps)?;
        let [q, k, v] = ops::qkv_heads(&a, &w(2), &w(3), self.cfg.n_head)?;
        let a = ops::merge_heads(&self.attend(&q, &k, &v, mask)?)?; // [B, H, T, D] → [B, T, C]
        let a = ops::linear(&a, &w(4), &w(5))?;
        let x = (x + a)?;
        let m = ops::layer_norm(&x, &w(6), &w(7), eps)?;
        let m = ops::gelu_new(&ops::linear(&m, &w(8), &w(9))?)?;
        let m = ops::linear(&m, &w(10), &w(11))?;
        x + m
    }

    /// `softmax(q·kᵀ/√D, masked)·v`, `[B, H, T, D]`, for queries, keys and values
    /// `[B, H, T, D]` and `mask` from [`ops::attention_mask`].
    fn attend(&self, q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let scale = 1.0 / (self.cfg.head_dim() as f64).sqrt();
        let probs = ops::masked_softmax(&q.matmul(&k.t()?)?, mask, scale)?;
        probs.matmul(v)
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

    /// [`Gpt2::logits_at`] on candle's operations, recording the autograd graph of the
    /// trainable parameters (the reference [`Gpt2::loss`] is built on).
    fn graph_logits_at(&self, ids: &Tensor, attention: &Tensor, rows: &[u32]) -> Result<Tensor> {
        let h = self.trunk(ids, attention)?;
        let (b, t, c) = h.dims3()?;
        if let Some(&r) = rows.iter().find(|&&r| r as usize >= b * t) {
            candle_core::bail!("logits_at: position {r} outside a batch of {b}×{t} tokens");
        }
        let n = rows.len();
        let idx = Tensor::from_slice(rows, n, &self.device)?;
        let picked = h.reshape((b * t, c))?.index_select(&idx, 0)?;
        let picked = self.final_norm(&picked)?;
        let wte = if self.output_grad {
            self.p(0)
        } else {
            self.p(0).detach()
        };
        constant::matmul(&picked, &wte.t()?)
    }

    /// The final layer norm `ln_f` of hidden states `[.., C]`.
    fn final_norm(&self, h: &Tensor) -> Result<Tensor> {
        let n = self.vars.len();
        let eps = self.cfg.layer_norm_epsilon;
        ops::layer_norm(h, &self.p(n - 2), &self.p(n - 1), eps)
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
        match self.dtype {
            DType::F32 => self.pass_positions::<f32>(batch, hits),
            DType::F64 => self.pass_positions::<f64>(batch, hits),
            _ => self.graph_positions(batch, hits),
        }
    }

    /// [`Gpt2::scored_positions`] by the hand-written pass (`pass`): no autograd graph.
    fn pass_positions<T: pass::Real>(
        &self,
        batch: &Batch,
        hits: bool,
    ) -> Result<(Tensor, Option<Vec<bool>>)> {
        let (b, width) = (batch.rows, batch.cols.saturating_sub(1));
        let fwd = pass::Forward::<T>::score(self, batch)?;
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

    /// [`Gpt2::scored_positions`] on candle's operations, recording the autograd graph of the
    /// trainable parameters ([`Gpt2::loss`]).
    fn graph_positions(&self, batch: &Batch, hits: bool) -> Result<(Tensor, Option<Vec<bool>>)> {
        let (ids, att) = self.batch_tensors(batch)?;
        let (b, t) = (batch.rows, batch.cols);
        let width = t.saturating_sub(1);
        let (mut rows, mut targets, mut slots) = (Vec::new(), Vec::new(), Vec::new());
        for r in 0..b {
            for p in 0..width {
                if batch.target_weight[r * width + p] != 0.0 {
                    rows.push((r * t + p) as u32);
                    targets.push(batch.ids[r * t + p + 1]);
                    slots.push((r * width + p) as u32);
                }
            }
        }
        let zeros = Tensor::zeros(b * width, self.dtype, &self.device)?;
        if rows.is_empty() {
            return Ok((zeros.reshape((b, width))?, hits.then(|| vec![true; b])));
        }
        let n = rows.len();
        let logits = self.graph_logits_at(&ids, &att, &rows)?;
        let row_hits = if hits {
            let best = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
            let mut per = vec![true; b];
            for ((slot, best), target) in slots.iter().zip(&best).zip(&targets) {
                per[*slot as usize / width] &= best == target;
            }
            Some(per)
        } else {
            None
        };
        let lp = ops::target_logprobs(&logits, &Tensor::from_vec(targets, n, &self.device)?)?;
        let lp = zeros
            .index_add(&Tensor::from_vec(slots, n, &self.device)?, &lp, 0)?
            .reshape((b, width))?;
        Ok((lp, row_hits))
    }

    /// Mean negative log-likelihood over the batch's weighted target positions (all real
    /// tokens of a text record, the answer tokens of a question–answer record), on candle's
    /// operations with the autograd graph of the trainable parameters: the reference the
    /// hand-written pass is tested against. Training and unlearning take their gradients from
    /// `grad::loss_and_grad` (the pass) instead.
    pub fn loss(&self, batch: &Batch) -> Result<Tensor> {
        let lp = self.graph_positions(batch, false)?.0;
        weighted_mean_nll(&lp, batch)
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
