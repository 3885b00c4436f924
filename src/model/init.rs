//! A freshly initialised GPT-2, as Hugging Face's `GPT2PreTrainedModel._init_weights` draws
//! one: every weight matrix and embedding normal(0, 0.02), layer-norm weights 1, biases 0.
//! Deterministic from a seed (ChaCha8), so benchmarks and tests need no files. This module
//! only makes tensors; it does not apply GPT-2's residual-projection rescaling, which changes
//! no shape or cost.

use super::config::Gpt2Config;
use super::gpt2::Gpt2;
use super::params::param_shapes;
use candle_core::{DType, Device, Result, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// Standard deviation of GPT-2's initial weights (`initializer_range`).
pub const INIT_STD: f64 = 0.02;

/// A GPT-2 of shape `cfg` with weights drawn from `seed`, all parameters frozen.
pub fn random_model(cfg: &Gpt2Config, seed: u64, dtype: DType) -> Result<Gpt2> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut tensors = BTreeMap::new();
    for (name, shape) in param_shapes(cfg) {
        let n: usize = shape.iter().product();
        let values: Vec<f32> = if name.ends_with(".bias") {
            vec![0.0; n]
        } else if name.contains(".ln_") {
            vec![1.0; n]
        } else {
            (0..n)
                .map(|_| (normal(&mut rng) * INIT_STD) as f32)
                .collect()
        };
        tensors.insert(name, Tensor::from_vec(values, shape, &Device::Cpu)?);
    }
    Gpt2::from_tensors(cfg.clone(), tensors, dtype)
}

/// One standard normal draw (Box–Muller; `rand` 0.8 has no normal distribution of its own).
pub fn normal(rng: &mut impl Rng) -> f64 {
    let u: f64 = 1.0 - rng.gen::<f64>(); // in (0, 1], so the log is finite
    let v: f64 = rng.gen();
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}
