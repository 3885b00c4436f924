//! The training loop: AdamW (or SGD with heavy-ball momentum, `sgd`) with warm-up and cosine
//! decay, a seeded shuffle per epoch, padded
//! batches, a checkpoint in Hugging Face layout after every epoch (each file written to a
//! temporary name and renamed, so an interrupted run leaves the last checkpoint intact), and
//! the gradient ledger recorded on the way. Used to build the bundled fixture models and the
//! retrained-from-scratch reference.

use super::ledger::{LedgerError, LedgerRecorder};
use super::schedule::WarmupCosine;
use super::sgd::{MomentumSgd, ParamsSgd};
use crate::data::{Batch, Encoded};
use crate::model::grad::loss_and_grad;
use crate::model::{save_model, Gpt2, ParamGroups};
use candle_core::backprop::GradStore;
use candle_core::Var;
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    /// The cosine decays to `lr * floor_ratio`.
    pub floor_ratio: f64,
    pub warmup_steps: usize,
    pub weight_decay: f64,
    pub seed: u64,
    /// Absent from `train.json` files written before SGD was offered: those runs used AdamW.
    #[serde(default)]
    pub optimizer: OptimizerConfig,
}

/// The optimiser of a run. Both follow the same warm-up and cosine schedule and use
/// `weight_decay`: AdamW decoupled from the gradient, SGD added to it (PyTorch's conventions).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OptimizerConfig {
    /// candle_nn's AdamW with its default betas and epsilon.
    #[default]
    Adamw,
    /// SGD with heavy-ball momentum `momentum` in [0, 1) (`sgd::MomentumSgd`).
    Sgd { momentum: f64 },
}

impl OptimizerConfig {
    /// Refuses a momentum outside [0, 1) (at 1 or above the steps never die out).
    pub fn check(&self) -> Result<(), TrainError> {
        match *self {
            OptimizerConfig::Sgd { momentum } if !(0.0..1.0).contains(&momentum) => {
                Err(TrainError::Config(format!(
                    "the momentum is {momentum}; SGD needs one in [0, 1)"
                )))
            }
            _ => Ok(()),
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 40,
            batch_size: 16,
            lr: 2e-3,
            floor_ratio: 0.05,
            warmup_steps: 100,
            weight_decay: 0.0,
            seed: 17,
            optimizer: OptimizerConfig::Adamw,
        }
    }
}

/// What one epoch did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub mean_loss: f64,
    pub tokens: usize,
    pub seconds: f64,
}

/// Reported after every optimiser step.
pub struct StepInfo {
    pub step: usize,
    pub total: usize,
    pub epoch: usize,
    pub loss: f64,
    pub tokens_per_s: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{0}")]
    Compute(#[from] candle_core::Error),
    #[error("{0}")]
    Ledger(#[from] LedgerError),
    #[error("saving the checkpoint: {0}")]
    Save(#[from] crate::model::save::SaveError),
    #[error("{0}")]
    Config(String),
    #[error("the loss became {0} at step {1}; stopping (the last checkpoint is intact)")]
    NotFinite(f64, usize),
}

/// One epoch's batches: a seeded shuffle, then records of similar length grouped within pools
/// of 16 batches (less padding), then the batch order shuffled again.
fn epoch_batches(
    data: &[Encoded],
    size: usize,
    order: &mut [usize],
    rng: &mut ChaCha8Rng,
) -> Vec<Vec<usize>> {
    order.shuffle(rng);
    let mut batches = Vec::new();
    for pool in order.chunks(size * 16) {
        let mut pool = pool.to_vec();
        pool.sort_by_key(|&i| data[i].ids.len());
        batches.extend(pool.chunks(size).map(<[usize]>::to_vec));
    }
    batches.shuffle(rng);
    batches
}

/// The optimiser a run steps with.
enum Stepper {
    AdamW(AdamW),
    Sgd(MomentumSgd),
}

impl Stepper {
    /// One update from `grads` at learning rate `lr`.
    fn step(&mut self, grads: &GradStore, lr: f64) -> candle_core::Result<()> {
        match self {
            Stepper::AdamW(opt) => {
                opt.set_learning_rate(lr);
                opt.step(grads)
            }
            Stepper::Sgd(opt) => {
                opt.set_learning_rate(lr);
                opt.step(grads)
            }
        }
    }
}

/// `cfg`'s optimiser over all of `model`'s parameters, made trainable, at `cfg`'s rate and
/// decay.
fn optimiser(model: &mut Gpt2, cfg: &TrainConfig) -> Result<Stepper, TrainError> {
    model
        .set_trainable(&ParamGroups::all())
        .map_err(TrainError::Config)?;
    let vars: Vec<Var> = model
        .trainable_vars()
        .into_iter()
        .map(|(_, v)| v.clone())
        .collect();
    Ok(match cfg.optimizer {
        OptimizerConfig::Adamw => {
            let params = ParamsAdamW {
                lr: cfg.lr,
                weight_decay: cfg.weight_decay,
                ..Default::default()
            };
            Stepper::AdamW(AdamW::new(vars, params)?)
        }
        OptimizerConfig::Sgd { momentum } => {
            let params = ParamsSgd {
                lr: cfg.lr,
                momentum,
                weight_decay: cfg.weight_decay,
            };
            Stepper::Sgd(MomentumSgd::new(vars, params)?)
        }
    })
}

/// One optimiser step (number `step`, at rate `lr`) on `batch`: the batch's loss before it,
/// which must be finite.
fn descend(
    model: &Gpt2,
    opt: &mut Stepper,
    batch: &Batch,
    step: usize,
    lr: f64,
) -> Result<f64, TrainError> {
    let (value, grads) = loss_and_grad(model, batch)?;
    if !value.is_finite() {
        return Err(TrainError::NotFinite(value, step));
    }
    opt.step(&crate::model::grad::store(model, grads), lr)?;
    Ok(value)
}

/// What makes `cfg` untrainable on `records` records, if anything.
fn check(cfg: &TrainConfig, records: usize) -> Result<(), TrainError> {
    if records == 0 || cfg.batch_size == 0 || cfg.epochs == 0 {
        return Err(TrainError::Config(
            "need records, a batch size and epochs above zero".into(),
        ));
    }
    cfg.optimizer.check()
}

/// Trains `model` (all parameters) on `data`, checkpointing into `out` after every epoch.
#[allow(clippy::too_many_arguments)] // data, settings, outputs and two hooks: each used once
pub fn train(
    model: &mut Gpt2,
    data: &[Encoded],
    cfg: &TrainConfig,
    pad: u32,
    out: &Path,
    tokenizer: &[(&str, &[u8])],
    mut ledger: Option<&mut LedgerRecorder>,
    mut on_step: impl FnMut(&StepInfo),
) -> Result<Vec<EpochLog>, TrainError> {
    check(cfg, data.len())?;
    let mut opt = optimiser(model, cfg)?;
    let per_epoch = data.len().div_ceil(cfg.batch_size);
    let total = per_epoch * cfg.epochs;
    let sched = WarmupCosine {
        peak: cfg.lr,
        floor: cfg.lr * cfg.floor_ratio,
        warmup: cfg.warmup_steps,
        total,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut order: Vec<usize> = (0..data.len()).collect();
    let (mut step, mut logs) = (0, Vec::new());
    for epoch in 0..cfg.epochs {
        let batches = epoch_batches(data, cfg.batch_size, &mut order, &mut rng);
        let start = Instant::now();
        let (mut loss_sum, mut tokens) = (0.0, 0);
        for chunk in &batches {
            let recs: Vec<&Encoded> = chunk.iter().map(|&i| &data[i]).collect();
            if let Some(l) = ledger.as_deref_mut() {
                for r in &recs {
                    if l.wants(&r.id, epoch) {
                        l.record(model, r, pad, epoch, step)?;
                    }
                }
            }
            let batch = Batch::new(&recs, pad);
            let value = descend(model, &mut opt, &batch, step, sched.lr(step))?;
            step += 1;
            loss_sum += value * recs.len() as f64;
            tokens += batch.real_tokens();
            let tokens_per_s = tokens as f64 / start.elapsed().as_secs_f64().max(1e-9);
            on_step(&StepInfo {
                step,
                total,
                epoch,
                loss: value,
                tokens_per_s,
            });
        }
        // In the dtype the config names (a fine-tuned bfloat16 model stays bfloat16).
        let storage = crate::model::save::storage_dtype(model.config());
        save_model(model, storage, out, tokenizer)?;
        let seconds = start.elapsed().as_secs_f64();
        logs.push(EpochLog {
            epoch,
            mean_loss: loss_sum / data.len() as f64,
            tokens,
            seconds,
        });
    }
    Ok(logs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{init::random_model, Gpt2Config};
    use candle_core::DType;

    #[test]
    fn train_json_written_before_sgd_reads_as_adamw() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/models/full/train.json"
        );
        let log: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let cfg: TrainConfig = serde_json::from_value(log["config"].clone()).unwrap();
        assert_eq!(cfg.optimizer, OptimizerConfig::Adamw);
        let sgd = TrainConfig {
            optimizer: OptimizerConfig::Sgd { momentum: 0.5 },
            ..Default::default()
        };
        let json = serde_json::to_value(&sgd).unwrap();
        assert_eq!(
            json["optimizer"],
            serde_json::json!({"kind": "sgd", "momentum": 0.5})
        );
        assert_eq!(serde_json::from_value::<TrainConfig>(json).unwrap(), sgd);
    }

    #[test]
    fn training_with_sgd_and_momentum_lowers_the_loss() {
        let cfg = Gpt2Config::new(13, 16, 8, 1, 2);
        let mut model = random_model(&cfg, 4, DType::F32).unwrap();
        let data: Vec<Encoded> = (0..8)
            .map(|r| Encoded {
                id: r.to_string(),
                ids: (0..10).map(|i| ((i + r) % 12) as u32).collect(),
                score_from: 0,
            })
            .collect();
        let cfg = TrainConfig {
            epochs: 12,
            batch_size: 4,
            lr: 0.2,
            warmup_steps: 3,
            optimizer: OptimizerConfig::Sgd { momentum: 0.9 },
            ..Default::default()
        };
        let out = std::env::temp_dir().join(format!("lethe-sgd-{}", std::process::id()));
        let mut steps = 0;
        let logs = train(
            &mut model,
            &data,
            &cfg,
            12,
            &out,
            &[("tokenizer.json", b"{}")],
            None,
            |s| steps = s.step,
        )
        .unwrap();
        let (first, last) = (logs[0].mean_loss, logs[logs.len() - 1].mean_loss);
        assert!(last < 0.7 * first, "mean loss {first} → {last}");
        assert_eq!(steps, 24, "two batches an epoch");
        std::fs::remove_dir_all(out).unwrap();
    }

    #[test]
    fn a_momentum_outside_zero_to_one_is_refused() {
        for momentum in [-0.1, 1.0, f64::NAN] {
            let err = OptimizerConfig::Sgd { momentum }.check().unwrap_err();
            assert!(err.to_string().contains("[0, 1)"), "{err}");
        }
        assert!(OptimizerConfig::Sgd { momentum: 0.0 }.check().is_ok());
    }
}
