//! The batch loss of a float64 model linearized at its parameters: the loss, its gradient and
//! exact Hessian-vector products `H v` for as many directions as asked, each a pass in dual
//! numbers (forward-over-reverse, `tangent`) over a copy of the parameters taken once. The
//! passes share one [`Primal`] store, so the value planes of the pass's matrix products — the
//! same for every direction — are multiplied by the first pass and read back by the others, up
//! to a byte budget: what conjugate gradients and Lanczos, dozens of products at one point,
//! pay per product is then the tangents' work alone. This module owns that reuse; the layers
//! are `decoder`'s, the dual arithmetic `tangent`'s.

use super::decoder::{Keep, Net, Target};
use super::primal::Primal;
use super::tangent::Dual;
use super::{check_batch, targets};
use crate::data::Batch;
use crate::model::params::ParamTensors;
use crate::model::Gpt2;
use candle_core::{bail, DType, Result, Tensor};

/// One batch's loss at one point, ready for Hessian-vector products.
pub struct Linearized<'a> {
    model: &'a Gpt2,
    batch: &'a Batch,
    targets: Vec<Target>,
    coef: Vec<Dual>,
    /// Every parameter as duals, in the pass's order: the values taken when this was made, the
    /// tangents those of the last direction (zero on frozen parameters).
    params: Vec<Vec<Dual>>,
    /// A tied output layer read as a constant (with `output_grad` off): the embedding's values
    /// with no tangent.
    head: Option<Vec<Dual>>,
    /// The trainable parameters' indices in the pass's order.
    trainable: Vec<usize>,
    primal: Primal,
}

impl<'a> Linearized<'a> {
    /// The loss of `batch` at the current parameters of `model` (float64), its products' value
    /// planes kept in up to `budget` bytes (0 keeps none: every product recomputes them).
    pub fn new(model: &'a Gpt2, batch: &'a Batch, budget: usize) -> Result<Linearized<'a>> {
        if model.dtype() != DType::F64 {
            bail!(
                "exact Hessian-vector products need the model in float64, not {:?}",
                model.dtype()
            );
        }
        check_batch(model, batch)?;
        let targets = targets(batch);
        let total: f64 = targets.iter().map(|t| t.weight).sum();
        if total <= 0.0 {
            bail!("batch has no target tokens to score");
        }
        let coef = targets
            .iter()
            .map(|t| Dual::new(-t.weight / total, 0.0))
            .collect();
        let mut params: Vec<Vec<Dual>> = Vec::new();
        for var in model.vars() {
            let x = var.as_tensor().flatten_all()?.to_vec1::<f64>()?;
            params.push(x.into_iter().map(|x| Dual::new(x, 0.0)).collect());
        }
        let flags = model.trainable_flags();
        let trainable = (0..flags.len()).filter(|&i| flags[i]).collect();
        // With `output_grad` off a tied output layer reads the embedding as a constant: no
        // tangent there.
        let head = (model.config().tied() && !model.output_grad()).then(|| params[0].clone());
        Ok(Linearized {
            model,
            batch,
            targets,
            coef,
            params,
            head,
            trainable,
            primal: Primal::new(budget),
        })
    }

    /// The mean loss, its gradient and `H v` on the trainable parameters: `v` holds one tensor
    /// per trainable parameter, in state-dict order (as the gradient comes back).
    pub fn loss_grad_hvp(
        &mut self,
        v: &[(String, Tensor)],
    ) -> Result<(f64, ParamTensors, ParamTensors)> {
        if v.len() != self.trainable.len() {
            bail!(
                "vector has {} parts, the model {} trainable parameters",
                v.len(),
                self.trainable.len()
            );
        }
        let vars = self.model.vars();
        let names = self.model.names();
        for ((_, t), &i) in v.iter().zip(&self.trainable) {
            if t.dims() != vars[i].dims() {
                bail!(
                    "vector part for {} has shape {:?}, the parameter {:?}",
                    names[i],
                    t.dims(),
                    vars[i].dims()
                );
            }
            let t = t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
            for (d, t) in self.params[i].iter_mut().zip(t) {
                d.t = t;
            }
        }
        let net = Net::new(
            self.model.config(),
            self.params.iter().map(Vec::as_slice).collect(),
            self.head.as_deref(),
            self.model.trainable_flags(),
            self.model.output_grad(),
        )
        .keeping(&self.primal);
        let b = self.batch;
        let tape = net.forward(
            &b.ids,
            &b.attention,
            (b.rows, b.cols),
            self.targets.clone(),
            Keep::Backward,
        );
        let loss: f64 = tape
            .logprobs
            .iter()
            .zip(&self.coef)
            .map(|(lp, c)| lp.x * c.x)
            .sum();
        let grads = net.backward(tape, &self.coef);
        let (mut grad, mut hv) = (Vec::new(), Vec::new());
        for ((name, var), g) in names.iter().zip(vars).zip(grads) {
            if let Some(g) = g {
                let (x, t): (Vec<f64>, Vec<f64>) = g.iter().map(|d| (d.x, d.t)).unzip();
                grad.push((
                    name.clone(),
                    Tensor::from_vec(x, var.shape(), var.device())?,
                ));
                hv.push((
                    name.clone(),
                    Tensor::from_vec(t, var.shape(), var.device())?,
                ));
            }
        }
        Ok((loss, grad, hv))
    }

    /// `H v` alone.
    pub fn hvp(&mut self, v: &[(String, Tensor)]) -> Result<ParamTensors> {
        Ok(self.loss_grad_hvp(v)?.2)
    }

    /// How many products' value planes are kept.
    pub fn kept(&self) -> usize {
        self.primal.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::init::random_model;
    use crate::model::{Gpt2Config, ParamGroups};

    fn batch(vocab: u32) -> Batch {
        let (rows, cols) = (2, 9);
        let ids: Vec<u32> = (0..rows * cols)
            .map(|i| (i as u32 * 7 + 3) % vocab)
            .collect();
        let mut attention = vec![1u32; rows * cols];
        attention[cols + 7..].fill(0);
        let mut target_weight = vec![1f32; rows * (cols - 1)];
        target_weight[..2].fill(0.0);
        target_weight[cols - 1 + 6..].fill(0.0);
        Batch {
            ids,
            attention,
            target_weight,
            rows,
            cols,
            record_ids: vec!["a".into(), "b".into()],
        }
    }

    /// Products that read their value planes back are the products that compute them, bit for
    /// bit, direction after direction: on GPT-2's layout (tied head, fused q·k·v) and Llama's
    /// (grouped-query heads, rotary positions, SwiGLU, untied head), for the embedding alone, a
    /// block, and every parameter. (The one-off product itself is checked against
    /// transformers' double backward in `tests/oracle.rs` and `tests/families.rs`.)
    #[test]
    fn kept_value_planes_change_no_bit_of_a_product() {
        let configs = [
            Gpt2Config::new(40, 16, 16, 2, 2),
            Gpt2Config::new_llama(40, 16, 16, 2, 4, 2, 24).unwrap(),
        ];
        for cfg in configs {
            for group in ["embedding", "block:1", "all"] {
                let mut m = random_model(&cfg, 5, DType::F64).unwrap();
                m.set_trainable(&ParamGroups::parse(group).unwrap())
                    .unwrap();
                let b = batch(cfg.vocab_size as u32);
                let mut kept = Linearized::new(&m, &b, usize::MAX).unwrap();
                for seed in 0..3 {
                    let v: ParamTensors = m
                        .trainable_vars()
                        .into_iter()
                        .map(|(n, var)| {
                            let t = var.as_tensor().randn_like(0.0, 1.0 + seed as f64);
                            (n.to_string(), t.unwrap())
                        })
                        .collect();
                    let (l0, g0, h0) = Linearized::new(&m, &b, 0)
                        .unwrap()
                        .loss_grad_hvp(&v)
                        .unwrap();
                    let (l1, g1, h1) = kept.loss_grad_hvp(&v).unwrap();
                    assert_eq!(l0.to_bits(), l1.to_bits(), "{group}");
                    for ((n, a), (_, b)) in g0.iter().chain(&h0).zip(g1.iter().chain(&h1)) {
                        let (a, b) = (
                            a.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
                            b.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
                        );
                        assert!(
                            a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
                            "{group}, {n}, direction {seed}"
                        );
                    }
                }
                assert!(kept.kept() > 0, "{group}: nothing kept");
            }
        }
    }
}
