//! Stochastic gradient descent with heavy-ball momentum and weight decay, the trainer's
//! alternative to AdamW (`--optimizer sgd`). It is written by hand over candle `Var`s because
//! candle_nn's `SGD` has neither momentum nor weight decay. The rule is PyTorch's
//! `torch.optim.SGD` with dampening 0 and no Nesterov step:
//!
//! ```text
//! g ← ∇θ + λ·θ        (weight decay added to the gradient, as PyTorch's SGD does)
//! v ← μ·v + g         (v starts at 0, so the first v is g)
//! θ ← θ − η·v
//! ```
//!
//! With μ = 0 and λ = 0 this is candle_nn's `SGD` exactly. It owns the velocities only; the
//! learning rate is set from outside every step, as the trainer does for AdamW.

use candle_core::backprop::GradStore;
use candle_core::{Result, Var};
use candle_nn::optim::Optimizer;

/// The settings of [`MomentumSgd`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParamsSgd {
    pub lr: f64,
    /// μ: the share of the previous step kept (0 = plain SGD).
    pub momentum: f64,
    /// λ: the L2 penalty's coefficient, added to the gradient.
    pub weight_decay: f64,
}

/// SGD with heavy-ball momentum over the floating-point `Var`s it was given.
#[derive(Debug)]
pub struct MomentumSgd {
    /// Each parameter with its velocity (zeros until its first step).
    vars: Vec<(Var, Var)>,
    params: ParamsSgd,
}

impl Optimizer for MomentumSgd {
    type Config = ParamsSgd;

    fn new(vars: Vec<Var>, params: ParamsSgd) -> Result<Self> {
        let vars = vars
            .into_iter()
            .filter(|v| v.dtype().is_float())
            .map(|v| {
                let velocity = Var::zeros(v.shape(), v.dtype(), v.device())?;
                Ok((v, velocity))
            })
            .collect::<Result<_>>()?;
        Ok(MomentumSgd { vars, params })
    }

    fn step(&mut self, grads: &GradStore) -> Result<()> {
        let ParamsSgd {
            lr,
            momentum,
            weight_decay,
        } = self.params;
        for (theta, velocity) in &self.vars {
            let Some(grad) = grads.get(theta) else {
                continue;
            };
            let grad = if weight_decay == 0.0 {
                grad.clone()
            } else {
                (grad + (theta.as_tensor() * weight_decay)?)?
            };
            let next = ((velocity.as_tensor() * momentum)? + grad)?;
            theta.set(&theta.sub(&(&next * lr)?)?)?;
            velocity.set(&next)?;
        }
        Ok(())
    }

    fn learning_rate(&self) -> f64 {
        self.params.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.params.lr = lr;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Batch, Encoded};
    use crate::model::{init::random_model, Gpt2, Gpt2Config, ParamGroups};
    use candle_core::{DType, Tensor};
    use candle_nn::optim::SGD;

    /// A 1-layer GPT-2 of width 8 over 13 tokens, all parameters trainable.
    fn tiny() -> Gpt2 {
        let mut model = random_model(&Gpt2Config::new(13, 16, 8, 1, 2), 3, DType::F32).unwrap();
        model.set_trainable(&ParamGroups::all()).unwrap();
        model
    }

    /// Three short records with a pattern worth learning: each token is its predecessor + 1.
    fn batch() -> Batch {
        let recs: Vec<Encoded> = (0..3)
            .map(|r| Encoded {
                id: r.to_string(),
                ids: (0..8).map(|i| ((i + 2 * r) % 12) as u32).collect(),
                score_from: 0,
            })
            .collect();
        Batch::new(&recs.iter().collect::<Vec<_>>(), 12)
    }

    fn vars(model: &Gpt2) -> Vec<Var> {
        let vars = model.trainable_vars().into_iter();
        vars.map(|(_, v)| v.clone()).collect()
    }

    fn loss(model: &Gpt2, batch: &Batch) -> f64 {
        model.loss(batch).unwrap()
    }

    /// The batch's mean-loss gradient on the trainable parameters, by the hand-written pass.
    fn gradients(model: &Gpt2, batch: &Batch) -> GradStore {
        let (_, grads) = crate::model::grad::loss_and_grad(model, batch).unwrap();
        crate::model::grad::store(model, grads)
    }

    #[test]
    fn momentum_lowers_the_loss_of_a_tiny_model() {
        let (model, batch) = (tiny(), batch());
        let params = ParamsSgd {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 1e-4,
        };
        let mut opt = MomentumSgd::new(vars(&model), params).unwrap();
        let before = loss(&model, &batch);
        for _ in 0..30 {
            opt.step(&gradients(&model, &batch)).unwrap();
        }
        let after = loss(&model, &batch);
        assert!(after < 0.8 * before, "loss {before} → {after}");
    }

    #[test]
    fn without_momentum_one_step_is_candle_nn_sgd() {
        let (a, b, batch) = (tiny(), tiny(), batch());
        let params = ParamsSgd {
            lr: 0.05,
            momentum: 0.0,
            weight_decay: 0.0,
        };
        let mut ours = MomentumSgd::new(vars(&a), params).unwrap();
        let mut plain = SGD::new(vars(&b), 0.05).unwrap();
        ours.step(&gradients(&a, &batch)).unwrap();
        plain.step(&gradients(&b, &batch)).unwrap();
        let (fresh, moved) = (tiny(), vars(&a));
        assert!(
            max_diff(&moved[0], &vars(&fresh)[0]) > 0.0,
            "the step moved θ"
        );
        for ((name, x), (_, y)) in a.trainable_vars().into_iter().zip(b.trainable_vars()) {
            assert_eq!(max_diff(x, y), 0.0, "{name}");
        }
    }

    fn max_diff(x: &Var, y: &Var) -> f32 {
        let diff = (x.as_tensor() - y.as_tensor()).unwrap().abs().unwrap();
        diff.flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    #[test]
    fn the_velocity_carries_the_previous_step() {
        // θ = 1 and the loss θ²/2, so ∇ = θ. With η = 0.1, μ = 0.5: v₁ = 1, θ₁ = 0.9;
        // v₂ = 0.5 + 0.9 = 1.4, θ₂ = 0.9 − 0.14 = 0.76 (PyTorch's SGD gives the same).
        let theta =
            Var::from_tensor(&Tensor::new(&[1f64], &candle_core::Device::Cpu).unwrap()).unwrap();
        let params = ParamsSgd {
            lr: 0.1,
            momentum: 0.5,
            weight_decay: 0.0,
        };
        let mut opt = MomentumSgd::new(vec![theta.clone()], params).unwrap();
        for _ in 0..2 {
            let loss = (theta.as_tensor().sqr().unwrap() * 0.5).unwrap().sum_all();
            opt.backward_step(&loss.unwrap()).unwrap();
        }
        let value: Vec<f64> = theta.as_tensor().to_vec1().unwrap();
        assert!((value[0] - 0.76).abs() < 1e-12, "{value:?}");
    }
}
