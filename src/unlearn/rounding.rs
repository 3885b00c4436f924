//! What storing the unlearned weights in the model's own dtype keeps of the update. A model
//! shipped in bfloat16 is unlearned in float32 and saved in bfloat16 again (the layout users
//! expect); bfloat16 keeps 8 bits of mantissa, so a step smaller than half a unit in the last
//! place of a weight is rounded away, and an update small against the weights can vanish from
//! the saved file while the run reported it. This module measures that loss on the updated
//! parameters; the certifier measures the saved bytes either way. It computes on tensors only
//! and writes nothing.

use crate::model::Gpt2;
use candle_core::{DType, Result, Tensor};
use serde::{Deserialize, Serialize};

/// The update the run made and the part of it the saved weights keep, over the updated
/// parameters: `update_norm` = ‖θ_end − θ_start‖ in float32, `rounding_norm` = ‖θ_end −
/// round(θ_end)‖ with round() the storage dtype, and `lost` their ratio (0: every bit kept; 1
/// or more: the saved model is as far from the run's result as the run moved).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rounding {
    /// The dtype the weights are saved in (`float32`, `float16`, `bfloat16`, `float64`).
    pub storage_dtype: String,
    pub update_norm: f64,
    pub rounding_norm: f64,
    pub lost: f64,
}

/// The values of the parameters `params` (a group list, as `UnlearnConfig::params`) will
/// update, copied, to measure the run against; marks them trainable as the run will.
pub fn snapshot(
    model: &mut Gpt2,
    params: &str,
) -> std::result::Result<Vec<(String, Tensor)>, String> {
    let groups = crate::model::ParamGroups::parse(params).map_err(|e| e.to_string())?;
    let names = model.set_trainable(&groups)?;
    names
        .into_iter()
        .filter_map(|n| model.get(&n).map(|t| (n, t)))
        .map(|(n, t)| Ok((n, t.copy().map_err(|e| e.to_string())?)))
        .collect()
}

/// The rounding of `model`'s parameters named in `start` (their values before the run) when
/// saved as `storage`.
pub fn measure(model: &Gpt2, start: &[(String, Tensor)], storage: DType) -> Result<Rounding> {
    let (mut update, mut rounding) = (0f64, 0f64);
    for (name, before) in start {
        let Some(end) = model.get(name) else {
            continue;
        };
        let end = end.to_dtype(DType::F64)?;
        let saved = end.to_dtype(storage)?.to_dtype(DType::F64)?;
        update += sum_sq(&(&end - before.to_dtype(DType::F64)?)?)?;
        rounding += sum_sq(&(&end - saved)?)?;
    }
    let (update, rounding) = (update.sqrt(), rounding.sqrt());
    Ok(Rounding {
        storage_dtype: crate::model::save::dtype_name(storage).to_string(),
        update_norm: update,
        rounding_norm: rounding,
        lost: if update > 0.0 { rounding / update } else { 0.0 },
    })
}

fn sum_sq(t: &Tensor) -> Result<f64> {
    t.sqr()?.sum_all()?.to_scalar::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Gpt2Config;

    /// A random 1-layer model whose `wte` is stored in bfloat16 (as a shipped bfloat16 model's
    /// is), and that `wte` before adding `step` to every entry.
    fn moved(step: f64) -> (Gpt2, Vec<(String, Tensor)>) {
        let cfg = Gpt2Config::new(64, 16, 32, 1, 2);
        let model = crate::model::init::random_model(&cfg, 3, DType::F32).unwrap();
        let name = "transformer.wte.weight".to_string();
        let before = model.get(&name).unwrap();
        let before = before
            .to_dtype(DType::BF16)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        model.set_param(&name, &(&before + step).unwrap()).unwrap();
        (model, vec![(name, before)])
    }

    #[test]
    fn float32_keeps_everything_and_bfloat16_loses_a_small_step() {
        let (model, start) = moved(1e-5);
        let kept = measure(&model, &start, DType::F32).unwrap();
        assert_eq!((kept.rounding_norm, kept.lost), (0.0, 0.0));
        assert_eq!(kept.storage_dtype, "float32");
        let expected = (64.0 * 32.0f64).sqrt() * 1e-5;
        assert!(
            (kept.update_norm - expected).abs() < 1e-2 * expected,
            "{kept:?}"
        );
        // Initial weights of spread 0.02 have bfloat16 spacings of 2^-7 of their size (about
        // 1.2e-4 near 0.02): a step of 1e-5 is below half the spacing of most of them and is
        // rounded back to where it started.
        let bf16 = measure(&model, &start, DType::BF16).unwrap();
        assert!(bf16.lost > 0.5, "{bf16:?}");
        // A step of 0.05, larger than the weights, keeps all but the rounding of the result
        // (at most half a spacing, 2^-9 of it, per entry).
        let (model, start) = moved(0.05);
        let bf16 = measure(&model, &start, DType::BF16).unwrap();
        assert!(bf16.lost < 0.01, "{bf16:?}");
        assert_eq!(bf16.storage_dtype, "bfloat16");
    }
}
