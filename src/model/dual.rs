//! Exact gradients and Hessian-vector products of the float64 loss by forward-over-reverse
//! differentiation. The forward pass carries, beside every activation, its directional
//! derivative along the parameter direction `v` (its tangent); a hand-written backward pass
//! carries, beside every gradient, the gradient's tangent; the parameter gradients' tangents
//! are `H v`, exact to rounding. No autograd graph is built or kept: every operation runs on
//! plain tensors, and the work is about twice a gradient's. (Pearlmutter's double backward on
//! candle's autograd, which this replaces, cost 3.2 gradients: candle's backward allocates a
//! zero tensor and a sum for every operand of every node and keeps them for the second pass.)
//! This module owns the derivative formulas of GPT-2's layers; the forward pass it repeats is
//! `gpt2`'s, with `ops`' and `exact`'s float64 kernels, and tests hold the two together and to
//! the oracle. It is for float64 models only, and knows nothing of what the derivatives are for.

use super::params::ParamTensors;
use super::{exact, ops, Gpt2};
use crate::data::Batch;
use candle_core::{bail, DType, Result, Tensor, D};
use std::collections::BTreeMap;

/// A value and its tangent along `v` (`None` where the tangent is zero).
#[derive(Clone)]
struct Dual {
    x: Tensor,
    t: Option<Tensor>,
}

impl Dual {
    /// `self·b` with the product rule's tangent `ȧ·b + a·ḃ`.
    fn matmul(&self, b: &Dual) -> Result<Dual> {
        Ok(Dual {
            x: self.x.matmul(&b.x)?,
            t: sum(vec![
                map(&self.t, |at| at.matmul(&b.x))?,
                map(&b.t, |bt| self.x.matmul(bt))?,
            ])?,
        })
    }

    /// The transpose of the last two dimensions (a view), tangent likewise.
    fn tr(&self) -> Result<Dual> {
        self.linear(|x| x.t())
    }

    /// `f(self)` for a linear `f`: the tangent goes through `f` as the value does.
    fn linear(&self, f: impl Fn(&Tensor) -> Result<Tensor>) -> Result<Dual> {
        Ok(Dual {
            x: f(&self.x)?,
            t: map(&self.t, &f)?,
        })
    }
}

/// The sum of the non-zero tangent terms (`None` when there are none).
fn sum(terms: Vec<Option<Tensor>>) -> Result<Option<Tensor>> {
    let mut acc: Option<Tensor> = None;
    for t in terms.into_iter().flatten() {
        acc = Some(match acc {
            None => t,
            Some(a) => (a + t)?,
        });
    }
    Ok(acc)
}

/// `f(t)` for a tangent that may be zero.
fn map(t: &Option<Tensor>, f: impl FnOnce(&Tensor) -> Result<Tensor>) -> Result<Option<Tensor>> {
    t.as_ref().map(f).transpose()
}

/// The loss and its gradient, and with `v` also `H v`, on the model's trainable parameters
/// (in [`Gpt2::trainable_vars`] order; `v` in the same order and shapes).
pub fn loss_grad_hvp(
    model: &Gpt2,
    batch: &Batch,
    v: Option<&[(String, Tensor)]>,
) -> Result<(f64, ParamTensors, Option<ParamTensors>)> {
    if model.dtype() != DType::F64 {
        bail!("forward-over-reverse derivatives are implemented for float64 models only");
    }
    let trainable: Vec<String> = model
        .trainable_vars()
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    let mut tangent = BTreeMap::new();
    if let Some(v) = v {
        if v.len() != trainable.len() {
            bail!(
                "vector has {} parts, the model {} trainable parameters",
                v.len(),
                trainable.len()
            );
        }
        for ((_, t), name) in v.iter().zip(&trainable) {
            let want = model.get(name).map(|p| p.dims().to_vec());
            if want.as_deref() != Some(t.dims()) {
                bail!(
                    "vector part for {name} has shape {:?}, the parameter {want:?}",
                    t.dims()
                );
            }
            tangent.insert(name.clone(), t.to_dtype(DType::F64)?);
        }
    }
    let mut pass = Pass {
        model,
        tangent,
        trainable,
        grads: BTreeMap::new(),
    };
    let loss = pass.run(batch)?;
    let mut grad = Vec::new();
    let mut hv = Vec::new();
    for name in &pass.trainable {
        let shape = model
            .get(name)
            .ok_or_else(|| candle_core::Error::Msg(format!("no parameter {name}")))?;
        let (g, t) = match pass.grads.remove(name) {
            Some(d) => (d.x, d.t),
            None => (shape.zeros_like()?, None),
        };
        grad.push((name.clone(), g));
        if v.is_some() {
            let t = match t {
                Some(t) => t,
                None => shape.zeros_like()?,
            };
            hv.push((name.clone(), t));
        }
    }
    Ok((loss, grad, v.map(|_| hv)))
}

/// One forward and backward pass: the parameters with their tangents, and the gradients (with
/// theirs) of the trainable ones as they accumulate.
struct Pass<'a> {
    model: &'a Gpt2,
    tangent: BTreeMap<String, Tensor>,
    trainable: Vec<String>,
    grads: BTreeMap<String, Dual>,
}

/// What a layer norm's backward needs of its forward: the normalised input, the standard
/// deviation `[N, 1]`, and their tangents.
struct Norm {
    n: Tensor,
    sigma: Tensor,
    n_t: Option<Tensor>,
    sigma_t: Option<Tensor>,
}

/// What a block's backward needs of its forward.
struct BlockCache {
    ln1: Norm,
    a: Dual,
    q: Dual,
    k: Dual,
    v: Dual,
    p: Dual,
    o: Dual,
    ln2: Norm,
    m: Dual,
    f: Dual,
    /// `gelu_new`'s first derivative at `f`, and its second when `f` has a tangent.
    d1: Tensor,
    d2: Option<Tensor>,
    act: Dual,
}

impl Pass<'_> {
    fn param(&self, name: &str) -> Result<Dual> {
        let x = self
            .model
            .get(name)
            .ok_or_else(|| candle_core::Error::Msg(format!("no parameter {name}")))?;
        Ok(Dual {
            x,
            t: self.tangent.get(name).cloned(),
        })
    }

    fn block_param(&self, layer: usize, s: &str) -> Result<Dual> {
        self.param(&format!("transformer.h.{layer}.{s}"))
    }

    fn wants(&self, name: &str) -> bool {
        self.trainable.iter().any(|n| n == name)
    }

    /// Adds `g` to the gradient accumulated for `name` (callers check [`Self::wants`]).
    fn put(&mut self, name: &str, g: Dual) -> Result<()> {
        let acc = match self.grads.remove(name) {
            None => g,
            Some(a) => Dual {
                x: (a.x + g.x)?,
                t: sum(vec![a.t, g.t])?,
            },
        };
        self.grads.insert(name.to_string(), acc);
        Ok(())
    }

    /// The loss, forward then backward through every stage; the trainable parameters'
    /// gradients (with tangents) accumulate in `self.grads`.
    fn run(&mut self, batch: &Batch) -> Result<f64> {
        let (ids, geo) = self.geometry(batch)?;
        let wte = self.param("transformer.wte.weight")?;
        let wpe = self.param("transformer.wpe.weight")?;
        let mut h = embed_fwd(&wte, &wpe, &geo)?;
        let mut caches = Vec::with_capacity(self.model.config().n_layer);
        for layer in 0..self.model.config().n_layer {
            let (next, cache) = self.block_fwd(layer, &h, &geo)?;
            h = next;
            caches.push(cache);
        }
        let (loss, mut g) = self.head(&h, &wte, &ids, batch, &geo)?;
        for (layer, cache) in caches.iter().enumerate().rev() {
            g = self.block_bwd(layer, cache, &g, &geo)?;
        }
        self.embed_bwd(&g, &wte, &geo)?;
        Ok(loss)
    }

    /// Checks the batch against the model and returns its token ids `[B, T]` with the sizes
    /// and tensors every stage shares.
    fn geometry(&self, batch: &Batch) -> Result<(Tensor, Geometry)> {
        let cfg = self.model.config();
        let (b, t, c) = (batch.rows, batch.cols, cfg.n_embd);
        if t > cfg.n_positions {
            bail!(
                "sequence of {t} tokens is longer than the model's context ({})",
                cfg.n_positions
            );
        }
        if t < 2 {
            bail!("a batch of {t}-token rows has nothing to predict");
        }
        let (ids, att) = self.model.batch_tensors(batch)?;
        let geo = Geometry {
            b,
            t,
            c,
            heads: cfg.n_head,
            positions: cfg.n_positions,
            eps: cfg.layer_norm_epsilon,
            scale: 1.0 / (cfg.head_dim() as f64).sqrt(),
            flat_ids: ids.flatten_all()?,
            bias: ops::attention_bias(&att, DType::F64)?,
        };
        Ok((ids, geo))
    }

    /// One block forward, `h + attention(ln_1 h)` then `mid + mlp(ln_2 mid)`, and what its
    /// backward needs.
    fn block_fwd(&self, layer: usize, h: &Dual, geo: &Geometry) -> Result<(Dual, BlockCache)> {
        let p = |s: &str| self.block_param(layer, s);
        let (a, ln1) = norm_fwd(h, &p("ln_1.weight")?, &p("ln_1.bias")?, geo.eps)?;
        let qkv = linear_fwd(&a, &p("attn.c_attn.weight")?, &p("attn.c_attn.bias")?)?;
        let (q, k, v, probs, o) = attention_fwd(&qkv, geo)?;
        let y = linear_fwd(&o, &p("attn.c_proj.weight")?, &p("attn.c_proj.bias")?)?;
        let mid = add(h, &y)?;
        let (m, ln2) = norm_fwd(&mid, &p("ln_2.weight")?, &p("ln_2.bias")?, geo.eps)?;
        let f = linear_fwd(&m, &p("mlp.c_fc.weight")?, &p("mlp.c_fc.bias")?)?;
        let mut gelu = exact::gelu_new_and_derivatives(&f.x, f.t.is_some())?.into_iter();
        let (act_x, d1, d2) = match (gelu.next(), gelu.next()) {
            (Some(y), Some(d1)) => (y, d1, gelu.next()),
            _ => bail!("gelu_new: derivatives missing"),
        };
        let act = Dual {
            x: act_x,
            t: map(&f.t, |ft| ft * &d1)?,
        };
        let y2 = linear_fwd(&act, &p("mlp.c_proj.weight")?, &p("mlp.c_proj.bias")?)?;
        let cache = BlockCache {
            ln1,
            a,
            q,
            k,
            v,
            p: probs,
            o,
            ln2,
            m,
            f,
            d1,
            d2,
            act,
        };
        Ok((add(&mid, &y2)?, cache))
    }

    /// The final norm and the tied output layer at the positions that predict a token, forward
    /// and back: the loss, and its gradient (with tangent) at the last block's output.
    fn head(
        &mut self,
        h: &Dual,
        wte: &Dual,
        ids: &Tensor,
        batch: &Batch,
        geo: &Geometry,
    ) -> Result<(f64, Dual)> {
        let (b, t, c) = (geo.b, geo.t, geo.c);
        let lnf_w = self.param("transformer.ln_f.weight")?;
        let lnf_b = self.param("transformer.ln_f.bias")?;
        let (hf_all, lnf) = norm_fwd(h, &lnf_w, &lnf_b, geo.eps)?;
        let rows = b * (t - 1);
        let predicting = |x: &Tensor| {
            x.reshape((b, t, c))?
                .narrow(1, 0, t - 1)?
                .reshape((rows, c))
        };
        let hf = hf_all.linear(predicting)?;
        // The output layer's `wte`, with no tangent when it is read detached.
        let wte_out = Dual {
            x: wte.x.clone(),
            t: wte.t.clone().filter(|_| self.model.output_grad()),
        };
        let logits = hf.matmul(&wte_out.tr()?)?;
        let targets: Vec<u32> = ids.narrow(1, 1, t - 1)?.flatten_all()?.to_vec1()?;
        let (loss, g_logits) = self.loss_bwd(&logits, &targets, batch)?;
        let g_hf = g_logits.matmul(&wte_out)?;
        let wte_name = "transformer.wte.weight";
        if self.model.output_grad() && self.wants(wte_name) {
            self.put(wte_name, g_logits.tr()?.matmul(&hf)?)?;
        }
        // Back to every position (the last one predicts nothing).
        let widen = |x: &Tensor| -> Result<Tensor> {
            let zero = Tensor::zeros((b, 1, c), DType::F64, x.device())?;
            Tensor::cat(&[&x.reshape((b, t - 1, c))?, &zero], 1)?.reshape((b * t, c))
        };
        let g_hf = g_hf.linear(widen)?;
        let g = self.norm_bwd(&lnf, &lnf_w, &g_hf, "transformer.ln_f")?;
        Ok((loss, g))
    }

    /// The batch's weighted mean negative log-likelihood of its targets, and its gradient at
    /// the logits: `coef·(softmax − one-hot)`, with tangent `coef·J l̇`.
    fn loss_bwd(&self, logits: &Dual, targets: &[u32], batch: &Batch) -> Result<(f64, Dual)> {
        let Dual {
            x: logits,
            t: logits_t,
        } = logits;
        let total: f64 = batch.target_weight.iter().map(|&w| f64::from(w)).sum();
        if total <= 0.0 {
            bail!("batch has no target tokens to score");
        }
        let coef: Vec<f64> = batch
            .target_weight
            .iter()
            .map(|&w| f64::from(w) / total)
            .collect();
        let lp: Vec<f64> = exact::target_logprobs(logits, targets)?.to_vec1()?;
        let loss = -lp.iter().zip(&coef).map(|(l, w)| l * w).sum::<f64>();
        let rows = coef.len();
        let coef = Tensor::from_vec(coef, rows, self.model.device())?;
        let g_logits = Dual {
            x: exact::target_logprob_vjp(logits, targets, &coef.neg()?)?,
            t: map(logits_t, |lt| {
                let probs = exact::softmax_values(logits)?;
                exact::softmax_vjp(&probs, lt, 1.0)?.broadcast_mul(&coef.unsqueeze(1)?)
            })?,
        };
        Ok((loss, g_logits))
    }

    /// One block backward: from the gradient at the block's output to the gradient at its
    /// input, recording the block's parameter gradients.
    fn block_bwd(
        &mut self,
        layer: usize,
        cache: &BlockCache,
        g: &Dual,
        geo: &Geometry,
    ) -> Result<Dual> {
        let prefix = format!("transformer.h.{layer}");
        // h = mid + mlp(mid): the residual passes g through.
        let g_act = self.linear_bwd(
            &cache.act,
            &self.block_param(layer, "mlp.c_proj.weight")?,
            g,
            &format!("{prefix}.mlp.c_proj"),
        )?;
        let g_f = gelu_bwd(cache, &g_act)?;
        let g_m = self.linear_bwd(
            &cache.m,
            &self.block_param(layer, "mlp.c_fc.weight")?,
            &g_f,
            &format!("{prefix}.mlp.c_fc"),
        )?;
        let g_mid = add(
            g,
            &self.norm_bwd(
                &cache.ln2,
                &self.block_param(layer, "ln_2.weight")?,
                &g_m,
                &format!("{prefix}.ln_2"),
            )?,
        )?;
        // mid = h + attention(h).
        let g_o = self.linear_bwd(
            &cache.o,
            &self.block_param(layer, "attn.c_proj.weight")?,
            &g_mid,
            &format!("{prefix}.attn.c_proj"),
        )?;
        let g_qkv = attention_bwd(cache, &g_o, geo.scale, (geo.b, geo.t, geo.c))?;
        let g_a = self.linear_bwd(
            &cache.a,
            &self.block_param(layer, "attn.c_attn.weight")?,
            &g_qkv,
            &format!("{prefix}.attn.c_attn"),
        )?;
        add(
            &g_mid,
            &self.norm_bwd(
                &cache.ln1,
                &self.block_param(layer, "ln_1.weight")?,
                &g_a,
                &format!("{prefix}.ln_1"),
            )?,
        )
    }

    /// Embeddings backward: token rows gather their positions' gradients; positions sum over
    /// rows.
    fn embed_bwd(&mut self, g: &Dual, wte: &Dual, geo: &Geometry) -> Result<()> {
        let (b, t, c) = (geo.b, geo.t, geo.c);
        let wte_name = "transformer.wte.weight";
        if self.wants(wte_name) {
            let scatter = |x: &Tensor| wte.x.zeros_like()?.index_add(&geo.flat_ids, x, 0);
            self.put(wte_name, g.linear(scatter)?)?;
        }
        let wpe_name = "transformer.wpe.weight";
        if self.wants(wpe_name) {
            let fold = |x: &Tensor| -> Result<Tensor> {
                let per = x.reshape((b, t, c))?.sum(0)?;
                if t == geo.positions {
                    return Ok(per);
                }
                let rest = Tensor::zeros((geo.positions - t, c), DType::F64, x.device())?;
                Tensor::cat(&[&per, &rest], 0)
            };
            self.put(wpe_name, g.linear(fold)?)?;
        }
        Ok(())
    }

    /// Backward of `y = x·W + b` (Conv1D): returns the input's gradient and records `W`'s and
    /// `b`'s (under `prefix.weight`, `prefix.bias`) when they are trainable.
    fn linear_bwd(&mut self, x: &Dual, w: &Dual, g: &Dual, prefix: &str) -> Result<Dual> {
        let gx = g.matmul(&w.tr()?)?;
        let (wn, bn) = (format!("{prefix}.weight"), format!("{prefix}.bias"));
        if self.wants(&wn) {
            self.put(&wn, x.tr()?.matmul(g)?)?;
        }
        if self.wants(&bn) {
            self.put(&bn, g.linear(|x| x.sum(0))?)?;
        }
        Ok(gx)
    }

    /// Backward of `y = γ⊙n + β`, `n = (x − μ)/σ` over the last dimension: the input's gradient
    /// `(gₙ − mean gₙ − n·mean(gₙ⊙n))/σ` with `gₙ = g⊙γ`, and its tangent; records `γ`'s and
    /// `β`'s gradients when trainable.
    fn norm_bwd(&mut self, c: &Norm, gamma: &Dual, g: &Dual, prefix: &str) -> Result<Dual> {
        let (wn, bn) = (format!("{prefix}.weight"), format!("{prefix}.bias"));
        if self.wants(&wn) {
            let d = Dual {
                x: (&g.x * &c.n)?.sum(0)?,
                t: sum(vec![
                    map(&g.t, |gt| (gt * &c.n)?.sum(0))?,
                    map(&c.n_t, |nt| (&g.x * nt)?.sum(0))?,
                ])?,
            };
            self.put(&wn, d)?;
        }
        if self.wants(&bn) {
            self.put(&bn, g.linear(|x| x.sum(0))?)?;
        }
        let gn = g.x.broadcast_mul(&gamma.x)?;
        let gn_t = sum(vec![
            map(&g.t, |gt| gt.broadcast_mul(&gamma.x))?,
            map(&gamma.t, |gam_t| g.x.broadcast_mul(gam_t))?,
        ])?;
        let mean = |x: &Tensor| x.mean_keepdim(D::Minus1);
        let m2 = mean(&(&gn * &c.n)?)?;
        let a = gn
            .broadcast_sub(&mean(&gn)?)?
            .sub(&c.n.broadcast_mul(&m2)?)?;
        let gx = a.broadcast_div(&c.sigma)?;
        // Tangent of a, then of a/σ: (ȧ − gx·σ̇)/σ.
        let a_t = sum(vec![
            map(&gn_t, |gnt| {
                gnt.broadcast_sub(&mean(gnt)?)?
                    .sub(&c.n.broadcast_mul(&mean(&(gnt * &c.n)?)?)?)
            })?,
            map(&c.n_t, |nt| {
                (nt.broadcast_mul(&m2)? + c.n.broadcast_mul(&mean(&(&gn * nt)?)?)?)?.neg()
            })?,
            map(&c.sigma_t, |st| gx.broadcast_mul(st)?.neg())?,
        ])?;
        let gx_t = map(&a_t, |at| at.broadcast_div(&c.sigma))?;
        Ok(Dual { x: gx, t: gx_t })
    }
}

/// The batch's sizes (`B` rows of `T` tokens, width `C`) and what every stage shares: the
/// flattened token ids, the attention bias and scale, the layer norms' epsilon.
struct Geometry {
    b: usize,
    t: usize,
    c: usize,
    heads: usize,
    positions: usize,
    eps: f64,
    scale: f64,
    flat_ids: Tensor,
    bias: Tensor,
}

/// Token plus position embeddings `[B·T, C]`, with their tangent.
fn embed_fwd(wte: &Dual, wpe: &Dual, geo: &Geometry) -> Result<Dual> {
    let (b, t, c) = (geo.b, geo.t, geo.c);
    let embed = |w: &Tensor, p: &Tensor| -> Result<Tensor> {
        w.index_select(&geo.flat_ids, 0)?
            .reshape((b, t, c))?
            .broadcast_add(&p.narrow(0, 0, t)?)?
            .reshape((b * t, c))
    };
    let tok_t = map(&wte.t, |w| w.index_select(&geo.flat_ids, 0))?;
    let pos_t = map(&wpe.t, |p| {
        p.narrow(0, 0, t)?
            .unsqueeze(0)?
            .broadcast_as((b, t, c))?
            .reshape((b * t, c))
    })?;
    Ok(Dual {
        x: embed(&wte.x, &wpe.x)?,
        t: sum(vec![tok_t, pos_t])?,
    })
}

/// The attention core of the fused query–key–value projection `qkv` `[N, 3C]`: the heads'
/// queries, keys and values `[B, H, T, C/H]`, the probabilities `softmax(c·QKᵀ + bias)`, and
/// the merged output `[N, C]`, with tangents.
fn attention_fwd(qkv: &Dual, geo: &Geometry) -> Result<(Dual, Dual, Dual, Dual, Dual)> {
    let (b, t, c, heads) = (geo.b, geo.t, geo.c, geo.heads);
    let split = |k: usize| -> Result<Dual> {
        let part = |x: &Tensor| -> Result<Tensor> {
            x.reshape((b, t, 3, heads, c / heads))?
                .narrow(2, k, 1)?
                .squeeze(2)?
                .transpose(1, 2)?
                .contiguous()
        };
        qkv.linear(part)
    };
    let (q, k, v) = (split(0)?, split(1)?, split(2)?);
    let z = q.matmul(&k.tr()?)?;
    let probs = exact::masked_softmax(&z.x, &geo.bias, geo.scale)?;
    let probs = Dual {
        t: map(&z.t, |zt| exact::softmax_vjp(&probs, zt, geo.scale))?,
        x: probs,
    };
    let o_heads = probs.matmul(&v)?;
    let merge = |x: &Tensor| x.transpose(1, 2)?.contiguous()?.reshape((b * t, c));
    let o = o_heads.linear(merge)?;
    Ok((q, k, v, probs, o))
}

/// Backward of `act = gelu_new(f)`: `g_f = g_act⊙gelu′(f)`, with tangent
/// `ġ_act⊙gelu′(f) + g_act⊙gelu″(f)⊙ḟ`.
fn gelu_bwd(cache: &BlockCache, g_act: &Dual) -> Result<Dual> {
    let d1 = &cache.d1;
    Ok(Dual {
        x: (&g_act.x * d1)?,
        t: sum(vec![
            map(&g_act.t, |gt| gt * d1)?,
            match (&cache.f.t, &cache.d2) {
                (Some(ft), Some(d2)) => Some(((&g_act.x * d2)? * ft)?),
                _ => None,
            },
        ])?,
    })
}

/// `a + b` with tangents.
fn add(a: &Dual, b: &Dual) -> Result<Dual> {
    Ok(Dual {
        x: (&a.x + &b.x)?,
        t: sum(vec![a.t.clone(), b.t.clone()])?,
    })
}

/// `y = x·W + b` (Conv1D, `W` `[in, out]`) with its tangent `ẋW + xẆ + ḃ`.
fn linear_fwd(x: &Dual, w: &Dual, b: &Dual) -> Result<Dual> {
    let xw = x.matmul(w)?;
    let y = xw.x.broadcast_add(&b.x)?;
    let t = sum(vec![xw.t, map(&b.t, |bt| bt.broadcast_as(y.shape()))?])?;
    Ok(Dual { x: y, t })
}

/// Layer norm over the last dimension (biased variance, `eps` inside the root, as `ops`) with
/// its tangent: `σ̇ = mean(n⊙ẋ)`, `ṅ = (ẋ − mean ẋ − n σ̇)/σ`, `ẏ = ṅ⊙γ + n⊙γ̇ + β̇`.
fn norm_fwd(x: &Dual, gamma: &Dual, beta: &Dual, eps: f64) -> Result<(Dual, Norm)> {
    let mean = |x: &Tensor| x.mean_keepdim(D::Minus1);
    let centred = x.x.broadcast_sub(&mean(&x.x)?)?;
    let sigma = (mean(&centred.sqr()?)? + eps)?.sqrt()?;
    let n = centred.broadcast_div(&sigma)?;
    let (n_t, sigma_t) = match &x.t {
        Some(xt) => {
            let st = mean(&(&n * xt)?)?;
            let nt = xt
                .broadcast_sub(&mean(xt)?)?
                .sub(&n.broadcast_mul(&st)?)?
                .broadcast_div(&sigma)?;
            (Some(nt), Some(st))
        }
        None => (None, None),
    };
    let y = n.broadcast_mul(&gamma.x)?.broadcast_add(&beta.x)?;
    let t = sum(vec![
        map(&n_t, |nt| nt.broadcast_mul(&gamma.x))?,
        map(&gamma.t, |gt| n.broadcast_mul(gt))?,
        map(&beta.t, |bt| bt.broadcast_as(y.shape()))?,
    ])?;
    Ok((
        Dual { x: y, t },
        Norm {
            n,
            sigma,
            n_t,
            sigma_t,
        },
    ))
}

/// Backward of the attention core `O = softmax(c·QKᵀ + bias)·V` for the merged output's
/// gradient `g_o` `[N, C]`: the gradient of the fused `[N, 3C]` query–key–value projection,
/// with tangents. With `Z = QKᵀ` and `P` the probabilities: `g_P = g_O Vᵀ`, `g_V = Pᵀ g_O`,
/// `g_Z = c·J_P g_P`, `g_Q = g_Z K`, `g_K = g_Zᵀ Q`; the tangent of `c·J_P g_P` adds
/// `c·(Ṗ⊙(g_P − Σ P⊙g_P) − P⊙Σ Ṗ⊙g_P)` to `c·J_P ġ_P`.
fn attention_bwd(
    cache: &BlockCache,
    g_o: &Dual,
    scale: f64,
    (b, t, c): (usize, usize, usize),
) -> Result<Dual> {
    let (q, k, v, p) = (&cache.q, &cache.k, &cache.v, &cache.p);
    let heads = q.x.dim(1)?;
    let split = |x: &Tensor| -> Result<Tensor> {
        x.reshape((b, t, heads, c / heads))?
            .transpose(1, 2)?
            .contiguous()
    };
    let go = g_o.linear(split)?;
    let g_p = go.matmul(&v.tr()?)?;
    let g_v = p.tr()?.matmul(&go)?;
    let g_z = Dual {
        x: exact::softmax_vjp(&p.x, &g_p.x, scale)?,
        t: sum(vec![
            map(&g_p.t, |gpt| exact::softmax_vjp(&p.x, gpt, scale))?,
            map(&p.t, |ptan| {
                let r = (&p.x * &g_p.x)?.sum_keepdim(D::Minus1)?;
                let rt = (ptan * &g_p.x)?.sum_keepdim(D::Minus1)?;
                let a = (ptan * g_p.x.broadcast_sub(&r)?)?;
                (a - p.x.broadcast_mul(&rt)?)? * scale
            })?,
        ])?,
    };
    let g_q = g_z.matmul(k)?;
    let g_k = g_z.tr()?.matmul(q)?;
    // [B, H, T, D] × 3 → [B, T, 3, H, D] → [N, 3C], the layout `c_attn` produced.
    let merge = |parts: [&Tensor; 3]| -> Result<Tensor> {
        let parts: Vec<Tensor> = parts
            .iter()
            .map(|x| x.transpose(1, 2))
            .collect::<Result<_>>()?;
        Tensor::stack(&parts, 2)?.reshape((b * t, 3 * c))
    };
    let x = merge([&g_q.x, &g_k.x, &g_v.x])?;
    let t_all = if g_q.t.is_none() && g_k.t.is_none() && g_v.t.is_none() {
        None
    } else {
        let z = g_q.x.zeros_like()?;
        let pick = |t: &Option<Tensor>| t.clone().unwrap_or_else(|| z.clone());
        Some(merge([&pick(&g_q.t), &pick(&g_k.t), &pick(&g_v.t)])?)
    };
    Ok(Dual { x, t: t_all })
}

#[cfg(test)]
mod tests {
    //! The hand-written backward pass against candle's autograd on the same float64 forward
    //! (the oracle tests hold both gradients and HVPs to PyTorch's; these add a padded batch,
    //! non-trivial biases and norms, a sequence one short of the context, and the output layer
    //! detached).
    use super::*;
    use crate::model::init::random_gpt2;
    use crate::model::{Gpt2Config, ParamGroups};

    fn model() -> Gpt2 {
        let m = random_gpt2(&Gpt2Config::new(50, 9, 16, 2, 2), 3, DType::F64).unwrap();
        for name in m.names().to_vec() {
            let p = m.get(&name).unwrap();
            let noise = p.randn_like(0.0, 0.3).unwrap();
            m.set_param(&name, &(p + noise).unwrap()).unwrap();
        }
        m
    }

    /// Two rows of 8 tokens, the second padded after 5, every real target scored.
    fn batch() -> Batch {
        let ids: Vec<u32> = (0..16).map(|i| (i * 7 + 3) % 50).collect();
        let attention: Vec<u32> = (0..16).map(|i| u32::from(i < 8 || i % 8 < 5)).collect();
        let target_weight = (0..2)
            .flat_map(|r| (1..8).map(move |t| if r == 0 || t < 5 { 1.0 } else { 0.0 }))
            .collect();
        Batch {
            ids,
            attention,
            target_weight,
            rows: 2,
            cols: 8,
            record_ids: vec!["a".into(), "b".into()],
        }
    }

    fn autograd(m: &Gpt2, b: &Batch) -> (f64, ParamTensors) {
        let loss = m.loss(b).unwrap();
        let grads = loss.backward().unwrap();
        let out = m
            .trainable_vars()
            .iter()
            .map(|(n, v)| {
                let g = grads.get(v.as_tensor()).cloned();
                (
                    n.to_string(),
                    g.unwrap_or(v.as_tensor().zeros_like().unwrap()),
                )
            })
            .collect();
        (loss.to_scalar().unwrap(), out)
    }

    fn assert_same(m: &Gpt2, b: &Batch) {
        let (l0, g0) = autograd(m, b);
        let (l1, g1, _) = loss_grad_hvp(m, b, None).unwrap();
        assert!((l0 - l1).abs() <= 1e-12 * l0.abs(), "loss {l1} vs {l0}");
        for ((name, a), (_, b)) in g1.iter().zip(&g0) {
            let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap();
            let scale = b.abs().unwrap().max_all().unwrap();
            let (d, s): (f64, f64) = (diff.to_scalar().unwrap(), scale.to_scalar().unwrap());
            assert!(d <= 1e-10 * s.max(1e-12), "{name}: {d:e} off (scale {s:e})");
        }
    }

    #[test]
    fn gradients_equal_candles_autograd_on_every_parameter() {
        let mut m = model();
        m.set_trainable(&ParamGroups::all()).unwrap();
        assert_same(&m, &batch());
    }

    #[test]
    fn a_detached_output_layer_leaves_only_the_input_side_of_wte() {
        let mut m = model();
        m.set_trainable(&ParamGroups::parse("embedding").unwrap())
            .unwrap();
        m.set_output_grad(false);
        assert_same(&m, &batch());
    }

    #[test]
    fn hvp_is_the_derivative_of_the_gradient() {
        // Central differences of the gradient along v: truncation error ~h², rounding ~1e-16/h.
        let mut m = model();
        m.set_trainable(&ParamGroups::all()).unwrap();
        let b = batch();
        let v: ParamTensors = m
            .trainable_vars()
            .iter()
            .map(|(n, var)| (n.to_string(), var.as_tensor().randn_like(0.0, 1.0).unwrap()))
            .collect();
        let (_, _, hv) = loss_grad_hvp(&m, &b, Some(&v)).unwrap();
        let h = 1e-5;
        let shifted = |s: f64| {
            let moved = m.duplicate().unwrap();
            for (name, d) in &v {
                let p = m.get(name).unwrap();
                moved
                    .set_param(name, &(p + (d * s).unwrap()).unwrap())
                    .unwrap();
            }
            loss_grad_hvp(&moved, &b, None).unwrap().1
        };
        let (plus, minus) = (shifted(h), shifted(-h));
        for (((name, hv), (_, p)), (_, q)) in hv.unwrap().iter().zip(&plus).zip(&minus) {
            let fd = ((p - q).unwrap() / (2.0 * h)).unwrap();
            let diff: f64 = (hv - &fd)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar()
                .unwrap();
            let scale: f64 = fd.abs().unwrap().max_all().unwrap().to_scalar().unwrap();
            assert!(
                diff <= 1e-5 * scale.max(1e-9),
                "{name}: {diff:e} off (scale {scale:e})"
            );
        }
    }
}
