//! A freshly initialised model of any family, as transformers initialises it: weights normal
//! with standard deviation 0.02 (GPT-2's residual projections `c_proj` scaled by
//! 1/√(2·n_layer)), biases zero, norm weights one. Deterministic for a seed.

use super::config::Gpt2Config;
use super::gpt2::Gpt2;
use super::params::param_shapes;
use candle_core::{DType, Device, Result, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr_free::normal;
use std::collections::BTreeMap;

/// Standard normal samples by the Box–Muller transform (rand 0.8 has no normal distribution
/// without the extra `rand_distr` crate; this is the one place lethe needs one).
mod rand_distr_free {
    use rand::Rng;
    pub fn normal(rng: &mut impl Rng) -> f64 {
        let u1: f64 = 1.0 - rng.gen::<f64>(); // (0, 1]
        let u2: f64 = rng.gen();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// A model with fresh weights for `cfg`, reproducible from `seed`.
pub fn random_model(cfg: &Gpt2Config, seed: u64, dtype: DType) -> Result<Gpt2> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let proj_std = 0.02 / ((2 * cfg.n_layer) as f64).sqrt();
    let mut tensors = BTreeMap::new();
    for (name, shape) in param_shapes(cfg) {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = if name.ends_with(".bias") {
            vec![0.0; n]
        } else if name.contains(".ln_") || name.ends_with("norm.weight") {
            vec![1.0; n]
        } else {
            let std = if name.ends_with("c_proj.weight") {
                proj_std
            } else {
                0.02
            };
            (0..n).map(|_| (normal(&mut rng) * std) as f32).collect()
        };
        tensors.insert(name, Tensor::from_vec(data, shape, &Device::Cpu)?);
    }
    Gpt2::from_tensors(cfg.clone(), tensors, dtype)
}
