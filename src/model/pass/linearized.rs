//! The loss of a float64 model on some weighted batches, linearized at its parameters: the
//! loss, its gradient and exact Hessian-vector products `H v` for as many directions as asked,
//! each a pass per batch in dual numbers (forward-over-reverse, `tangent`) over one copy of the
//! parameters taken once. A batch's passes share one [`Primal`] store, so the value planes of
//! the pass's matrix products — the same for every direction — are multiplied by the first pass
//! and read back by the others, up to a byte budget: what conjugate gradients and Lanczos,
//! dozens of products at one point, pay per product is then the tangents' work alone. This
//! module owns that reuse; the layers are `decoder`'s, the dual arithmetic `tangent`'s.

use super::decoder::{Keep, Net, Target};
use super::primal::Primal;
use super::tangent::Dual;
use super::{check_batch, targets};
use crate::data::Batch;
use crate::model::params::ParamTensors;
use crate::model::Gpt2;
use candle_core::{bail, DType, Result, Tensor};

/// The weighted loss `Σ w_b · loss_b` of some batches at one point, ready for Hessian-vector
/// products.
pub struct Linearized<'a> {
    model: &'a Gpt2,
    parts: Vec<Part<'a>>,
    /// Every parameter as duals, in the pass's order: the values taken when this was made, the
    /// tangents those of the last direction (zero on frozen parameters). One copy for all the
    /// batches.
    params: Vec<Vec<Dual>>,
    /// A tied output layer read as a constant (with `output_grad` off): the embedding's values
    /// with no tangent.
    head: Option<Vec<Dual>>,
    /// The trainable parameters' indices in the pass's order.
    trainable: Vec<usize>,
}

/// One batch of the loss: its targets, their coefficients in its mean loss, its weight, and
/// the value planes its passes keep.
struct Part<'a> {
    batch: &'a Batch,
    targets: Vec<Target>,
    coef: Vec<Dual>,
    weight: f64,
    primal: Primal,
}

impl<'a> Linearized<'a> {
    /// The loss `Σ w_b · (mean loss of batch b)` of `batches` (`(b, w_b)`) at the current
    /// parameters of `model` (float64), each batch's value planes kept in up to `budget` bytes
    /// (0 keeps none: every product recomputes them).
    pub fn new(
        model: &'a Gpt2,
        batches: &[(&'a Batch, f64)],
        budget: usize,
    ) -> Result<Linearized<'a>> {
        if model.dtype() != DType::F64 {
            bail!(
                "exact Hessian-vector products need the model in float64, not {:?}",
                model.dtype()
            );
        }
        let mut parts = Vec::with_capacity(batches.len());
        for &(batch, weight) in batches {
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
            parts.push(Part {
                batch,
                targets,
                coef,
                weight,
                primal: Primal::new(budget),
            });
        }
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
            parts,
            params,
            head,
            trainable,
        })
    }

    /// The weighted loss, its gradient and `H v` on the trainable parameters: `v` holds one
    /// tensor per trainable parameter, in state-dict order (as the gradient comes back).
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
        let mut loss = 0.0;
        let mut sums: Vec<(Vec<f64>, Vec<f64>)> = self
            .trainable
            .iter()
            .map(|&i| {
                (
                    vec![0.0; vars[i].elem_count()],
                    vec![0.0; vars[i].elem_count()],
                )
            })
            .collect();
        for part in &self.parts {
            let net = Net::new(
                self.model.config(),
                self.params.iter().map(Vec::as_slice).collect(),
                self.head.as_deref(),
                self.model.trainable_flags(),
                self.model.output_grad(),
            )
            .keeping(&part.primal);
            let b = part.batch;
            let tape = net.forward(
                &b.ids,
                &b.attention,
                (b.rows, b.cols),
                part.targets.clone(),
                Keep::Backward,
            );
            let batch_loss: f64 = tape
                .logprobs
                .iter()
                .zip(&part.coef)
                .map(|(lp, c)| lp.x * c.x)
                .sum();
            loss += part.weight * batch_loss;
            let grads = net.backward(tape, &part.coef);
            for ((g, h), d) in sums.iter_mut().zip(grads.into_iter().flatten()) {
                for ((g, h), d) in g.iter_mut().zip(h.iter_mut()).zip(d) {
                    *g += part.weight * d.x;
                    *h += part.weight * d.t;
                }
            }
        }
        let (mut grad, mut hv) = (Vec::new(), Vec::new());
        for (&i, (g, h)) in self.trainable.iter().zip(sums) {
            let (name, var) = (&names[i], &vars[i]);
            grad.push((
                name.clone(),
                Tensor::from_vec(g, var.shape(), var.device())?,
            ));
            hv.push((
                name.clone(),
                Tensor::from_vec(h, var.shape(), var.device())?,
            ));
        }
        Ok((loss, grad, hv))
    }

    /// `H v` alone.
    pub fn hvp(&mut self, v: &[(String, Tensor)]) -> Result<ParamTensors> {
        Ok(self.loss_grad_hvp(v)?.2)
    }

    /// How many products' value planes are kept, over all the batches.
    pub fn kept(&self) -> usize {
        self.parts.iter().map(|p| p.primal.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::init::random_model;
    use crate::model::pass::tests::batch;
    use crate::model::{Gpt2Config, ParamGroups};

    fn values(t: &Tensor) -> Vec<f64> {
        t.flatten_all().unwrap().to_vec1::<f64>().unwrap()
    }

    /// Products that read their value planes back are the products that compute them, bit for
    /// bit, direction after direction, and two weighted batches give the weighted sum of their
    /// one-off products: on GPT-2's layout (tied head, fused q·k·v) and Llama's (grouped-query
    /// heads, rotary positions, SwiGLU, untied head), for the embedding alone, a block, and
    /// every parameter. (The one-off product itself is checked against transformers' double
    /// backward in `tests/oracle.rs` and `tests/families.rs`.)
    #[test]
    fn kept_value_planes_change_no_bit_of_a_product() {
        let configs = [
            Gpt2Config::new(50, 16, 16, 2, 2),
            Gpt2Config::new_llama(50, 16, 16, 2, 4, 2, 24).unwrap(),
        ];
        for cfg in configs {
            for group in ["embedding", "block:1", "all"] {
                let mut m = random_model(&cfg, 5, DType::F64).unwrap();
                m.set_trainable(&ParamGroups::parse(group).unwrap())
                    .unwrap();
                let b1 = batch();
                let mut b2 = batch();
                b2.ids.iter_mut().for_each(|i| *i = (*i + 5) % 50);
                let (w1, w2) = (0.25, 0.75);
                let mut kept = Linearized::new(&m, &[(&b1, w1), (&b2, w2)], usize::MAX).unwrap();
                for seed in 0..3 {
                    let v: ParamTensors = m
                        .trainable_vars()
                        .into_iter()
                        .map(|(n, var)| {
                            let t = var.as_tensor().randn_like(0.0, 1.0 + seed as f64);
                            (n.to_string(), t.unwrap())
                        })
                        .collect();
                    let one = |b: &Batch| {
                        Linearized::new(&m, &[(b, 1.0)], 0)
                            .unwrap()
                            .loss_grad_hvp(&v)
                            .unwrap()
                    };
                    let ((l1, g1, h1), (l2, g2, h2)) = (one(&b1), one(&b2));
                    let (l, g, h) = kept.loss_grad_hvp(&v).unwrap();
                    assert_eq!(l.to_bits(), (0.0 + w1 * l1 + w2 * l2).to_bits(), "{group}");
                    let pairs = g.iter().zip(g1.iter().zip(&g2));
                    let pairs = pairs.chain(h.iter().zip(h1.iter().zip(&h2)));
                    for ((n, got), ((_, a), (_, b))) in pairs {
                        let (a, b) = (values(a), values(b));
                        let want = a.iter().zip(b).map(|(a, b)| 0.0 + w1 * a + w2 * b);
                        let got = values(got);
                        let same = got
                            .iter()
                            .zip(want)
                            .all(|(x, y)| x.to_bits() == y.to_bits());
                        assert!(same, "{group}, {n}, direction {seed}");
                    }
                }
                assert!(kept.kept() > 0, "{group}: nothing kept");
            }
        }
    }
}
