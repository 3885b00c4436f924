//! The unlearning loop shared by every method: pick the step direction, take a calibrated step
//! on the selected parameter groups, measure forget and retain loss, keep or undo the step, and
//! stop at the holdout level (or when nothing is recognised, or the budget is spent). Records
//! every step for `unlearn.json`.

use super::calibrate::{recognition_threshold, Levels, StopReason, Verdict};
use super::method::{Method, UnlearnConfig};
use super::objective::{
    add_into, apply_step, direction_norm, loss_gradient, mean_loss, objective_gradient,
    profile_gap, profile_gradient, scored, sequence_logprob, token_losses, KeptSample, Scored,
};
use crate::data::{Batch, Encoded};
use crate::model::{Gpt2, ParamGroups};
use crate::train::ledger::{EntryGrad, WteRows};
use crate::train::Ledger;
use candle_core::{DType, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum UnlearnError {
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Compute(#[from] candle_core::Error),
    #[error("{0}")]
    Ledger(#[from] crate::train::ledger::LedgerError),
}

/// The data of one run, tokenized (question–answer records scored on their answers).
pub struct UnlearnInputs<'a> {
    pub forget: &'a [Encoded],
    pub retain: &'a [Encoded],
    pub holdout: &'a [Encoded],
    pub pad: u32,
    pub ledger: Option<&'a Ledger>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepLog {
    pub step: usize,
    pub round: usize,
    pub lr: f64,
    pub forget_loss: f64,
    pub retain_loss: f64,
    pub holdout_loss: f64,
    pub action: Verdict,
    /// Forget records whose loss is below the recognition threshold after the step.
    pub recognised: usize,
    /// Forget records still being unlearned (iterative), or all of them.
    pub active: usize,
    /// Profile matching: the mean squared gap between the forget records' token losses and
    /// their never-seen partners' after the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_gap: Option<f64>,
    /// Profile matching: retain repair steps kept after this step (see [`Stepper::repair`]).
    #[serde(default)]
    pub repairs: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnlearnOutcome {
    pub config: UnlearnConfig,
    pub updated_params: Vec<String>,
    pub levels: Levels,
    pub steps: Vec<StepLog>,
    pub stop_reason: StopReason,
    pub final_forget_loss: f64,
    pub final_retain_loss: f64,
    pub seconds: f64,
    pub peak_rss_bytes: Option<u64>,
    /// Profile matching: the embedding rows of tokens found only in the forget set, reset to
    /// look like rows the model never trained (see `reset_exclusive_rows`).
    #[serde(default)]
    pub reset_rows: usize,
}

/// A method's step directions on one request, with what they need: the retain sample the run
/// watches, NPO's reference log-likelihoods, the ledger's per-record directions, the allowed
/// embedding rows, and the per-record ceiling. [`unlearn`] drives it step by step; the
/// benchmarks time one step of each method with it.
pub struct Stepper<'a> {
    cfg: &'a UnlearnConfig,
    inputs: &'a UnlearnInputs<'a>,
    retain_eval: Vec<&'a Encoded>,
    holdout: Vec<&'a Encoded>,
    reference: BTreeMap<String, f64>,
    /// Method ledger: each forget record's recorded ascent direction, in forget-set order,
    /// `wte` kept as the rows its tokens touch (dense, 110 records would hold 110 copies of
    /// the vocabulary table).
    ledger_dirs: Option<Vec<EntryGrad>>,
    /// Each forget record's loss after the last kept step, in forget-set order.
    current: Vec<f64>,
    /// `[V, 1]` mask of the `wte` rows allowed to change (all when `None`).
    row_mask: Option<Tensor>,
    /// The per-record loss above which a forget record is no longer ascended.
    target: f64,
    /// Profile matching: each forget record's never-seen partner's token losses, ascending, in
    /// forget-set order.
    profiles: Vec<Vec<f64>>,
    rng: ChaCha8Rng,
    /// The retain sample's kept passes and what their trunk read (see
    /// [`Stepper::retain_check`]).
    retain_kept: Option<(KeptSample, TrunkReads)>,
}

/// Unlearns `inputs.forget` from `model` (whose trainable set is replaced by `cfg.params`).
pub fn unlearn(
    model: &mut Gpt2,
    inputs: &UnlearnInputs,
    cfg: &UnlearnConfig,
    mut on_step: impl FnMut(&StepLog),
) -> Result<UnlearnOutcome, UnlearnError> {
    let started = Instant::now();
    check_inputs(inputs, cfg)?;
    let groups = ParamGroups::parse(&cfg.params).map_err(|e| UnlearnError::Input(e.to_string()))?;
    let updated = model.set_trainable(&groups).map_err(UnlearnError::Input)?;
    let mut run = Stepper::new(model, inputs, cfg)?;
    let forget_all: Vec<&Encoded> = inputs.forget.iter().collect();
    let Losses {
        mean: forget_start,
        per_record: forget_per,
        ..
    } = run.losses(model)?;
    let retain_start = scored(model, &run.retain_eval, inputs.pad, cfg.batch_size, true)?;
    let (holdout, holdout_per) = mean_loss(model, &run.holdout, inputs.pad, cfg.batch_size)?;
    let threshold = recognition_threshold(&holdout_per, cfg.recognise_fpr);
    let guard = cfg.retain_guard();
    let levels = Levels {
        forget_start,
        retain_start: retain_start.mean,
        retain_reproduced: retain_start.reproduced.iter().filter(|&&h| h).count(),
        holdout,
        target: holdout * cfg.target_ratio,
        recognition: threshold,
    };
    run.calibrate(levels.target, forget_per);
    let mut reset = Vec::new();
    if cfg.method == Method::Profile {
        // The reset is a step like any other: kept only if the retain loss stays within the
        // tolerance (the rows' tokens never occur in the retain records, but a tied output
        // layer scores them at every position).
        let snapshot = trainable_copy(model)?;
        reset = reset_exclusive_rows(model, inputs, cfg.seed)?;
        let (retain, lost) = run.retain_check(model, &retain_start.reproduced)?;
        if !reset.is_empty() && !levels.retain_kept(retain, lost, guard) {
            restore(model, &snapshot)?;
            reset.clear();
        }
    }
    let (losses, mut ready) = run.measure(model)?;
    run.current = losses.per_record;
    let mut gap = run.gap(&losses.tokens);
    let (mut lr, mut backoffs, mut round) = (cfg.lr, 0, 0);
    let mut first_norm: Option<f64> = None;
    let mut active = forget_all.clone();
    let mut steps = Vec::new();
    let mut stop = StopReason::StepCap;
    let mut last = (forget_start, retain_start.mean);
    for step in 0..cfg.max_steps {
        let snapshot = trainable_copy(model)?;
        let direction = match ready.take() {
            Some(d) => d,
            None => run.direction(model, &active, step)?,
        };
        let length = if cfg.method == Method::Profile {
            // Gradient descent proper: the step shrinks with the gradient as the match closes
            // (measured against the first step's gradient, which gets length `lr`).
            let norm = direction_norm(&direction)?;
            lr * norm / *first_norm.get_or_insert(norm)
        } else {
            lr
        };
        apply_step(model, &direction, length)?;
        hold_lengths(model, &reset)?;
        let (mut retain, mut lost) = run.retain_check(model, &retain_start.reproduced)?;
        let mut repairs = 0;
        if cfg.method == Method::Profile {
            (retain, lost, repairs) = run.repair(
                model,
                &retain_start.reproduced,
                &levels,
                &reset,
                length,
                (retain, lost),
            )?;
        }
        let (losses, next) = run.measure(model)?;
        let (forget, per) = (losses.mean, losses.per_record);
        let new_gap = run.gap(&losses.tokens);
        let mut action = levels.judge(forget, retain, lost, guard, cfg.overshoot);
        if let (Verdict::Keep, Some(before), Some(after)) = (action, gap, new_gap) {
            if after.is_nan() || after >= before {
                action = Verdict::UndoNoGain;
            }
        }
        let log = StepLog {
            step,
            round,
            lr,
            forget_loss: forget,
            retain_loss: retain,
            holdout_loss: holdout,
            action,
            recognised: levels.recognised(&per),
            active: active.len(),
            profile_gap: new_gap,
            repairs,
        };
        on_step(&log);
        steps.push(log);
        if action != Verdict::Keep {
            restore(model, &snapshot)?;
            // Profile matching's direction depends on the parameters alone: the shorter step
            // retries the one just undone.
            if cfg.method == Method::Profile {
                ready = Some(direction);
            }
            lr /= 2.0;
            backoffs += 1;
            let spent = if cfg.method == Method::Profile {
                lr < cfg.lr / f64::powi(2.0, cfg.max_backoffs as i32)
            } else {
                backoffs > cfg.max_backoffs
            };
            if spent {
                stop = if cfg.method == Method::Profile {
                    StopReason::Converged
                } else {
                    StopReason::BackoffsExhausted
                };
                break;
            }
            continue;
        }
        last = (forget, retain);
        gap = new_gap;
        ready = next;
        if cfg.method == Method::Profile {
            // A kept step earns a longer next one (the "bold driver" rule): the step length
            // follows what the objective allows instead of a tuned constant.
            lr = (lr * 1.5).min(cfg.lr * 16.0);
        }
        run.current = per.clone();
        if cfg.method == Method::Iterative {
            if (step + 1) % cfg.round_steps.max(1) == 0 {
                round += 1;
                let still: Vec<&Encoded> = forget_all
                    .iter()
                    .zip(&per)
                    .filter(|(_, l)| **l < threshold)
                    .map(|(e, _)| *e)
                    .collect();
                if still.is_empty() {
                    stop = StopReason::NoneRecognised;
                    break;
                }
                active = still;
            }
        } else if cfg.method != Method::Profile && levels.reached(&per, cfg.recognise_fpr) {
            stop = StopReason::ReachedHoldoutLevel;
            break;
        }
    }
    Ok(UnlearnOutcome {
        config: cfg.clone(),
        updated_params: updated,
        levels,
        steps,
        stop_reason: stop,
        final_forget_loss: last.0,
        final_retain_loss: last.1,
        seconds: started.elapsed().as_secs_f64(),
        peak_rss_bytes: crate::machine::peak_rss_bytes(),
        reset_rows: reset.len(),
    })
}

fn check_inputs(inputs: &UnlearnInputs, cfg: &UnlearnConfig) -> Result<(), UnlearnError> {
    let bad = |m: &str| Err(UnlearnError::Input(m.to_string()));
    if inputs.forget.is_empty() {
        return bad("the forget set is empty: there is nothing to unlearn");
    }
    if inputs.holdout.is_empty() {
        return bad("the holdout set is empty: calibration needs records the model never saw");
    }
    if inputs.retain.is_empty() {
        return bad("the retain set is empty: the retain loss cannot be watched");
    }
    if cfg.method == Method::Ledger && inputs.ledger.is_none() {
        return bad("method ledger needs --ledger");
    }
    if !(cfg.lr > 0.0
        && cfg.target_ratio > 0.0
        && cfg.overshoot >= 1.0
        && cfg.retain_tolerance >= 0.0
        && (0.0..=1.0).contains(&cfg.retain_answers))
    {
        return bad("lr and target ratio must be positive, overshoot at least 1, retain tolerance not negative, retain answers a share in [0, 1]");
    }
    Ok(())
}

impl<'a> Stepper<'a> {
    pub fn new(
        model: &Gpt2,
        inputs: &'a UnlearnInputs<'a>,
        cfg: &'a UnlearnConfig,
    ) -> Result<Self, UnlearnError> {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let mut retain_eval: Vec<&Encoded> = inputs.retain.iter().collect();
        retain_eval.shuffle(&mut rng);
        retain_eval.truncate(cfg.retain_eval.max(1));
        let holdout: Vec<&Encoded> = inputs.holdout.iter().collect();
        let row_mask = if cfg.specific_rows {
            Some(specific_rows(model, inputs, cfg.row_ratio)?)
        } else {
            None
        };
        let mut run = Stepper {
            cfg,
            inputs,
            retain_eval,
            holdout,
            reference: BTreeMap::new(),
            ledger_dirs: None,
            current: Vec::new(),
            row_mask,
            target: f64::INFINITY,
            profiles: Vec::new(),
            rng,
            retain_kept: None,
        };
        match cfg.method {
            Method::Npo => run.reference = reference_logprobs(model, inputs, cfg.batch_size)?,
            Method::Ledger => run.ledger_dirs = Some(ledger_directions(model, inputs, cfg)?),
            Method::Profile => run.profiles = pair_profiles(model, inputs, cfg)?,
            _ => {}
        }
        Ok(run)
    }

    /// Sets the per-record loss above which a forget record is no longer ascended, and each
    /// forget record's current loss (in forget-set order).
    pub fn calibrate(&mut self, target: f64, current: Vec<f64>) {
        self.target = target;
        self.current = current;
    }

    /// Profile matching: the gap between the forget records' token losses (in forget-set order)
    /// and their partners'; `None` for the other methods.
    pub fn gap(&self, tokens: &[Vec<f64>]) -> Option<f64> {
        if self.profiles.is_empty() {
            return None;
        }
        let p: Vec<&[f64]> = self.profiles.iter().map(Vec::as_slice).collect();
        Some(profile_gap(tokens, &p))
    }

    /// The fixed, seeded retain sample whose loss the run watches.
    pub fn retain_eval(&self) -> &[&'a Encoded] {
        &self.retain_eval
    }

    /// The retain sample's mean loss now, and how many of the records the original reproduced
    /// (`reproduced_before`, in sample order) are no longer reproduced.
    pub fn retain_check(
        &mut self,
        model: &Gpt2,
        reproduced_before: &[bool],
    ) -> Result<(f64, usize), UnlearnError> {
        let s = self.retain_scores(model)?;
        let lost = reproduced_before
            .iter()
            .zip(&s.reproduced)
            .filter(|(&before, &now)| before && !now)
            .count();
        Ok((s.mean, lost))
    }

    /// The retain sample scored, bit for bit as [`scored`] scores it. The sample's passes are
    /// kept with a copy of what their trunk reads of the trainable parameters
    /// ([`TrunkReads`]); while that is unchanged (an embedding-only run whose changed rows the
    /// sample never reads, as profile matching's rows specific to the forget set), only the
    /// output layer runs again. A run writes trainable parameters only (`apply_step`,
    /// `restore`, `hold_lengths`, the reset), so nothing else the trunk reads can change.
    fn retain_scores(&mut self, model: &Gpt2) -> Result<Scored, UnlearnError> {
        if let Some((kept, reads)) = self.retain_kept.as_mut() {
            if reads.unchanged(model)? {
                return Ok(kept.rescore(model)?);
            }
        }
        let (pad, size) = (self.inputs.pad, self.cfg.batch_size);
        // The kept trunk outputs, one row of the model's width per token (padding aside).
        let tokens: usize = self.retain_eval.iter().map(|e| e.ids.len()).sum();
        let bytes = tokens * model.config().n_embd * model.dtype().size_in_bytes();
        let reads = if bytes <= KEPT_BYTES {
            TrunkReads::of(model, &self.retain_eval, pad)?
        } else {
            None
        };
        let Some(reads) = reads else {
            return Ok(scored(model, &self.retain_eval, pad, size, true)?);
        };
        let (kept, s) = KeptSample::new(model, &self.retain_eval, pad, size)?;
        self.retain_kept = Some((kept, reads));
        Ok(s)
    }

    /// Profile matching's repair of a step that cost the retain records too much: up to
    /// `repair_steps` descent steps on the retain loss, each on a seeded batch of retain
    /// records *outside* the watched sample (so the guard still judges records the repair did
    /// not fit), kept only when they lower the watched retain loss, and halved when they do
    /// not. The forget step and its repair are then judged together. This is the alternation
    /// of SCRUB (Kurmanji et al., 2023): a step away from the forget records, a step back
    /// towards the retain records. On a memorised retain set the retain loss sits at a minimum,
    /// where its gradient is zero and a first-order projection of the forget step (A-GEM)
    /// removes nothing; only a step taken after the damage sees it. Returns the watched retain
    /// loss, the answers lost, and the repair steps kept; `now` is the watched retain loss and
    /// the answers lost as the step left them (nothing is tried when they are within the guard).
    pub fn repair(
        &mut self,
        model: &Gpt2,
        reproduced_before: &[bool],
        levels: &Levels,
        reset: &[(usize, f32)],
        length: f64,
        now: (f64, usize),
    ) -> Result<(f64, usize, usize), UnlearnError> {
        let guard = self.cfg.retain_guard();
        let ((mut retain, mut lost), mut len, mut kept) = (now, length, 0);
        for _ in 0..self.cfg.repair_steps {
            if levels.retain_kept(retain, lost, guard) {
                break;
            }
            let before = trainable_copy(model)?;
            let direction = self.repair_direction(model)?;
            apply_step(model, &direction, len)?;
            hold_lengths(model, reset)?;
            let (r, l) = self.retain_check(model, reproduced_before)?;
            if r < retain {
                (retain, lost, kept) = (r, l, kept + 1);
            } else {
                restore(model, &before)?;
                len /= 2.0;
            }
        }
        Ok((retain, lost, kept))
    }

    /// The descent direction of the retain loss on a seeded batch of retain records outside the
    /// watched sample (from all retain records when the sample holds every one).
    fn repair_direction(&mut self, model: &Gpt2) -> Result<Direction, UnlearnError> {
        let watched: std::collections::BTreeSet<&str> =
            self.retain_eval.iter().map(|e| e.id.as_str()).collect();
        let mut pool: Vec<&Encoded> = self
            .inputs
            .retain
            .iter()
            .filter(|e| !watched.contains(e.id.as_str()))
            .collect();
        if pool.is_empty() {
            pool = self.inputs.retain.iter().collect();
        }
        pool.shuffle(&mut self.rng);
        pool.truncate(self.cfg.batch_size.max(1) * 4);
        let g = loss_gradient(model, &Batch::new(&pool, self.inputs.pad))?;
        self.restrict(model, g)
    }

    /// The descent direction of step `step` over the `active` forget records, restricted to
    /// the allowed embedding rows.
    pub fn direction(
        &mut self,
        model: &Gpt2,
        active: &[&Encoded],
        step: usize,
    ) -> Result<Direction, UnlearnError> {
        let d = self.raw_direction(model, active, step)?;
        let d = self.restrict(model, d)?;
        if self.ledger_dirs.is_none() {
            return Ok(d);
        }
        // The recorded gradients were taken at the first epoch's parameters, not at these: a
        // step along them can raise the retain loss to first order. Remove that component
        // (project onto the half-space where the retain loss does not rise, as A-GEM does).
        let mut pool: Vec<&Encoded> = self.inputs.retain.iter().collect();
        pool.shuffle(&mut self.rng);
        pool.truncate(self.cfg.batch_size.max(1) * 2);
        let g = loss_gradient(model, &Batch::new(&pool, self.inputs.pad))?;
        let g = self.restrict(model, g)?;
        project_out_rise(d, &g)
    }

    /// Restricts a direction to the allowed embedding rows (and drops the shared positions).
    fn restrict(&self, model: &Gpt2, mut d: Direction) -> Result<Direction, UnlearnError> {
        if let Some(mask) = &self.row_mask {
            if let Some(w) = d.get_mut(model.token_embedding()) {
                *w = w.broadcast_mul(&mask.to_dtype(w.dtype())?)?;
            }
            // Positions are shared by every record: with row selection they stay.
            if let Some(wpe) = model.position_embedding() {
                d.remove(wpe);
            }
        }
        Ok(d)
    }

    fn raw_direction(
        &mut self,
        model: &Gpt2,
        active: &[&Encoded],
        step: usize,
    ) -> Result<Direction, UnlearnError> {
        if let Some(dirs) = &self.ledger_dirs {
            // The recorded directions of the records still below the target, summed: a record
            // already at the holdout level is not pushed further (as in `capped_ascent`).
            let mut sum: Direction = BTreeMap::new();
            let mut wte = Vec::new();
            for (d, _) in dirs
                .iter()
                .zip(&self.current)
                .filter(|(_, &l)| l < self.target)
            {
                for (name, g) in &d.dense {
                    add_into(&mut sum, name, g)?;
                }
                wte.extend(d.wte_rows.clone());
            }
            if let Some(all) = WteRows::concat(&wte)? {
                sum.insert(model.token_embedding().to_string(), all.scatter(model)?);
            }
            return Ok(sum);
        }
        if self.cfg.method == Method::Profile {
            return Ok(self.profile_measure(model)?.1);
        }
        let n = active.len().div_ceil(self.cfg.batch_size.max(1));
        let chunk: Vec<&Encoded> = active
            .chunks(self.cfg.batch_size.max(1))
            .nth(step % n)
            .unwrap_or(active)
            .to_vec();
        let forget = Batch::new(&chunk, self.inputs.pad);
        let retain = if self.cfg.method == Method::Graddiff {
            let mut pool: Vec<&Encoded> = self.inputs.retain.iter().collect();
            pool.shuffle(&mut self.rng);
            pool.truncate(chunk.len());
            Some(Batch::new(&pool, self.inputs.pad))
        } else {
            None
        };
        let reference: Vec<f64> = chunk
            .iter()
            .map(|e| self.reference.get(&e.id).copied().unwrap_or(0.0))
            .collect();
        Ok(objective_gradient(
            model,
            self.cfg.method,
            &forget,
            retain.as_ref(),
            &reference,
            self.cfg.npo_beta,
            self.target,
        )?)
    }
}

impl Stepper<'_> {
    /// The forget set at the current parameters, measured: the mean token loss, each record's
    /// mean and token losses (in forget-set order) and, under profile matching, the next
    /// step's direction from here (restricted), taken by the same forward passes. A kept
    /// step's measure is thus the next step's direction, and an undone step's direction is the
    /// one to retry at a shorter length: a step costs one forward and backward over the forget
    /// set instead of a forward for its losses and another for the direction.
    pub fn measure(&self, model: &Gpt2) -> Result<(Losses, Option<Direction>), UnlearnError> {
        if self.cfg.method != Method::Profile {
            return Ok((self.losses(model)?, None));
        }
        let (tokens, direction) = self.profile_measure(model)?;
        Ok((Losses::new(tokens), Some(self.restrict(model, direction)?)))
    }

    /// The forget set's losses at the current parameters, by forward passes alone.
    pub fn losses(&self, model: &Gpt2) -> Result<Losses, UnlearnError> {
        let forget: Vec<&Encoded> = self.inputs.forget.iter().collect();
        let tokens = token_losses(model, &forget, self.inputs.pad, self.cfg.batch_size)?;
        Ok(Losses::new(tokens))
    }

    /// Each forget record's token losses (in forget-set order) and the gradient of the profile
    /// gap over the whole forget set, accumulated over length-sorted batches.
    fn profile_measure(&self, model: &Gpt2) -> candle_core::Result<(Vec<Vec<f64>>, Direction)> {
        let forget = self.inputs.forget;
        let lens: Vec<usize> = forget.iter().map(|e| e.ids.len()).collect();
        let total: usize = forget.iter().map(Encoded::scored_tokens).sum();
        let mut sum = BTreeMap::new();
        let mut tokens = vec![Vec::new(); forget.len()];
        for group in
            crate::data::batch::length_groups(&lens, self.cfg.batch_size.max(1), usize::MAX)
        {
            let chunk: Vec<&Encoded> = group.iter().map(|&i| &forget[i]).collect();
            let profiles: Vec<&[f64]> =
                group.iter().map(|&i| self.profiles[i].as_slice()).collect();
            let batch = Batch::new(&chunk, self.inputs.pad);
            let (losses, grads) = profile_gradient(model, &batch, &profiles, total)?;
            for (&i, l) in group.iter().zip(losses) {
                tokens[i] = l;
            }
            for (name, g) in grads {
                add_into(&mut sum, &name, &g)?;
            }
        }
        Ok((tokens, sum))
    }
}

/// Most bytes of trunk outputs a run keeps to score its retain sample again (256 records of 128
/// tokens at GPT-2 small's width hold 100 MB; a sample of longer records is scored afresh).
const KEPT_BYTES: usize = 512 << 20;

/// What a sample's trunk (everything before the final norm) reads of a model's trainable
/// parameters, copied when its passes were kept: the position embedding and the token
/// embedding's rows of the sample's tokens. Only a model whose trainable parameters are those
/// two embeddings has one: a trainable block is read by every record, and copying it would cost
/// what a pass saves. The final norm and the output layer (a tied one included) are run again
/// by every rescoring, so a change there needs nothing.
pub struct TrunkReads {
    /// The sample's distinct tokens, ascending.
    rows: Tensor,
    /// Each read parameter's name and its read part, exactly (in float64, which holds a
    /// float32 or float64 value as it is).
    parts: Vec<(String, Vec<f64>)>,
}

impl TrunkReads {
    /// What `records`' trunk reads of `model`'s trainable parameters now; `None` when a
    /// trainable parameter other than the embeddings is read.
    pub fn of(
        model: &Gpt2,
        records: &[&Encoded],
        pad: u32,
    ) -> Result<Option<TrunkReads>, UnlearnError> {
        let (wte, wpe) = (model.token_embedding(), model.position_embedding());
        if model
            .trainable_vars()
            .iter()
            .any(|(n, _)| *n != wte && Some(*n) != wpe)
        {
            return Ok(None);
        }
        // The padding token's row too: padded positions are never scored, but what is read
        // is what is copied.
        let ids: std::collections::BTreeSet<u32> = records
            .iter()
            .flat_map(|e| e.ids.iter().copied())
            .chain([pad])
            .collect();
        let ids: Vec<u32> = ids.into_iter().collect();
        let n = ids.len();
        let mut reads = TrunkReads {
            rows: Tensor::from_vec(ids, n, model.device())?,
            parts: Vec::new(),
        };
        reads.parts = reads.read(model)?;
        Ok(Some(reads))
    }

    fn read(&self, model: &Gpt2) -> Result<Vec<(String, Vec<f64>)>, UnlearnError> {
        let mut out = Vec::new();
        for (name, var) in model.trainable_vars() {
            let t = var.as_tensor();
            let part = if name == model.token_embedding() {
                t.index_select(&self.rows, 0)?
            } else {
                t.clone()
            };
            let values = part
                .flatten_all()?
                .to_dtype(candle_core::DType::F64)?
                .to_vec1::<f64>()?;
            out.push((name.to_string(), values));
        }
        Ok(out)
    }

    /// Whether every value the trunk read is, bit for bit, what it was.
    pub fn unchanged(&self, model: &Gpt2) -> Result<bool, UnlearnError> {
        let now = self.read(model)?;
        Ok(now.len() == self.parts.len()
            && now.iter().zip(&self.parts).all(|((n, a), (m, b))| {
                n == m
                    && a.len() == b.len()
                    && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
            }))
    }
}

/// A step direction over the trainable parameters, by name.
pub type Direction = BTreeMap<String, Tensor>;

/// The forget set's token losses at some parameters, and what the run reads of them.
pub struct Losses {
    /// The mean over every scored token.
    pub mean: f64,
    /// Each record's mean, in forget-set order.
    pub per_record: Vec<f64>,
    /// Each record's token losses, in position order.
    pub tokens: Vec<Vec<f64>>,
}

impl Losses {
    fn new(tokens: Vec<Vec<f64>>) -> Losses {
        let per_record = tokens
            .iter()
            .map(|t| t.iter().sum::<f64>() / t.len().max(1) as f64)
            .collect();
        let (sum, n) = tokens.iter().fold((0.0, 0usize), |(s, n), t| {
            (s + t.iter().sum::<f64>(), n + t.len())
        });
        Losses {
            mean: sum / n.max(1) as f64,
            per_record,
            tokens,
        }
    }
}

/// Profile matching's partners: each forget record is paired with the holdout record of the same
/// rank by scored length (ties broken by a seeded shuffle), and receives that record's token
/// losses under the original model, ascending. Pairing by length keeps a short answer's profile
/// for a short answer and a biography's for a biography, without knowing what the records are.
fn pair_profiles(
    model: &Gpt2,
    inputs: &UnlearnInputs,
    cfg: &UnlearnConfig,
) -> Result<Vec<Vec<f64>>, UnlearnError> {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x9e37_79b9_7f4a_7c15);
    let ranked = |records: &[Encoded], rng: &mut ChaCha8Rng| {
        let mut idx: Vec<usize> = (0..records.len()).collect();
        idx.shuffle(rng);
        idx.sort_by_key(|&i| records[i].scored_tokens());
        idx
    };
    let holdout_rank = ranked(inputs.holdout, &mut rng);
    let forget_rank = ranked(inputs.forget, &mut rng);
    let holdout: Vec<&Encoded> = inputs.holdout.iter().collect();
    let mut losses = token_losses(model, &holdout, inputs.pad, cfg.batch_size)?;
    for l in &mut losses {
        l.sort_by(f64::total_cmp);
    }
    // A partner with no scored token would ask for nothing; only scored records are partners.
    let holdout_rank: Vec<usize> = holdout_rank
        .into_iter()
        .filter(|&j| !losses[j].is_empty())
        .collect();
    if holdout_rank.is_empty() {
        return Err(UnlearnError::Input(
            "no holdout record has a scored token: profile matching has no never-seen partner"
                .into(),
        ));
    }
    let (f, h) = (forget_rank.len(), holdout_rank.len());
    let mut out = vec![Vec::new(); f];
    for (k, &i) in forget_rank.iter().enumerate() {
        let j = holdout_rank[(((k as f64 + 0.5) * h as f64 / f as f64) as usize).min(h - 1)];
        out[i] = losses[j].clone();
    }
    Ok(out)
}

/// Resets the `wte` rows of tokens that occur in the forget records and in no retain or holdout
/// record to rows like those of tokens the model never trained on: the mean of the rows of
/// tokens found only in the holdout records (never-seen people's own tokens), plus seeded noise
/// with those rows' spread per dimension. A retrained model never updates the rows of tokens
/// only the forget records hold; ascent instead leaves them long and pointed away from their
/// content, which the gradient-norm attack sees through the layer norm (a short row passes a
/// larger gradient). Nothing is reset when the embedding is not trainable, or when fewer than
/// eight holdout-only tokens exist to say what an untrained row looks like. Returns the number
/// the rows reset, each with its new length (which later steps keep: [`hold_lengths`]).
fn reset_exclusive_rows(
    model: &Gpt2,
    inputs: &UnlearnInputs,
    seed: u64,
) -> Result<Vec<(usize, f32)>, UnlearnError> {
    let name = model.token_embedding();
    if !model.trainable_vars().iter().any(|(n, _)| *n == name) {
        return Ok(Vec::new());
    }
    let Some(wte) = model.get(name) else {
        return Ok(Vec::new());
    };
    let v = model.config().vocab_size;
    let present = |recs: &[Encoded]| {
        let mut c = vec![false; v];
        for e in recs {
            for &t in &e.ids {
                c[t as usize] = true;
            }
        }
        c
    };
    let (f, r, h) = (
        present(inputs.forget),
        present(inputs.retain),
        present(inputs.holdout),
    );
    let forget_only: Vec<usize> = (0..v).filter(|&t| f[t] && !r[t] && !h[t]).collect();
    let holdout_only: Vec<usize> = (0..v).filter(|&t| h[t] && !r[t] && !f[t]).collect();
    if forget_only.is_empty() || holdout_only.len() < 8 {
        return Ok(Vec::new());
    }
    let mut rows = wte.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    let d = rows[0].len();
    let n = holdout_only.len() as f64;
    let mut mean = vec![0f64; d];
    for &t in &holdout_only {
        for (m, x) in mean.iter_mut().zip(&rows[t]) {
            *m += *x as f64 / n;
        }
    }
    let mut sd = vec![0f64; d];
    for &t in &holdout_only {
        for ((s, x), m) in sd.iter_mut().zip(&rows[t]).zip(&mean) {
            *s += (*x as f64 - m).powi(2) / (n - 1.0);
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x05ee_d0f0_e5e7);
    for &t in &forget_only {
        for ((x, m), s) in rows[t].iter_mut().zip(&mean).zip(&sd) {
            *x = (m + s.sqrt() * standard_normal(&mut rng)) as f32;
        }
    }
    let lengths = forget_only
        .iter()
        .map(|&t| (t, rows[t].iter().map(|x| x * x).sum::<f32>().sqrt()))
        .collect();
    let flat: Vec<f32> = rows.into_iter().flatten().collect();
    let t = Tensor::from_vec(flat, (v, d), model.device())?.to_dtype(wte.dtype())?;
    model.set_param(name, &t)?;
    Ok(lengths)
}

/// Rescales each reset row back to the length it was given: matching may turn an untrained-
/// looking row, but not lengthen it (a longer row than any untrained one is what the
/// gradient-norm attack notices).
fn hold_lengths(model: &Gpt2, rows: &[(usize, f32)]) -> candle_core::Result<()> {
    let name = model.token_embedding();
    let Some(wte) = model.get(name).filter(|_| !rows.is_empty()) else {
        return Ok(());
    };
    let mut all = wte.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    for &(t, len) in rows {
        let now = all[t].iter().map(|x| x * x).sum::<f32>().sqrt();
        if now > 0.0 {
            all[t].iter_mut().for_each(|x| *x *= len / now);
        }
    }
    let (v, d) = (all.len(), all[0].len());
    let flat: Vec<f32> = all.into_iter().flatten().collect();
    model.set_param(name, &Tensor::from_vec(flat, (v, d), model.device())?)
}

/// One standard normal draw (Box–Muller). The crate's `rand` 0.8 has no normal distribution and
/// the `rand_distr` in the tree is built for `rand` 0.9; two lines do not earn a dependency.
fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    use rand::Rng;
    let (u, v): (f64, f64) = (1.0 - rng.gen::<f64>(), rng.gen::<f64>());
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// The `wte` rows whose tokens are at least `ratio` times more frequent (relatively) in the
/// forget records than in the retain records, as a `[V, 1]` 0/1 mask.
fn specific_rows(model: &Gpt2, inputs: &UnlearnInputs, ratio: f64) -> Result<Tensor, UnlearnError> {
    let v = model.config().vocab_size;
    let count = |recs: &[Encoded]| {
        let mut c = vec![0f64; v];
        for e in recs {
            for &t in &e.ids {
                c[t as usize] += 1.0;
            }
        }
        let total: f64 = c.iter().sum();
        c.into_iter()
            .map(|x| x / total.max(1.0))
            .collect::<Vec<_>>()
    };
    let (f, r) = (count(inputs.forget), count(inputs.retain));
    let mask: Vec<f32> = f
        .iter()
        .zip(&r)
        .map(|(&f, &r)| if f > 0.0 && f >= ratio * r { 1.0 } else { 0.0 })
        .collect();
    if mask.iter().all(|&m| m == 0.0) {
        return Err(UnlearnError::Input(
            "no token is specific to the forget set; use --all-rows".into(),
        ));
    }
    Ok(Tensor::from_vec(mask, (v, 1), model.device())?)
}

/// NPO's reference: each forget record's sequence log-likelihood under the original model.
fn reference_logprobs(
    model: &Gpt2,
    inputs: &UnlearnInputs,
    size: usize,
) -> Result<BTreeMap<String, f64>, UnlearnError> {
    let mut out = BTreeMap::new();
    let all: Vec<&Encoded> = inputs.forget.iter().collect();
    for chunk in all.chunks(size.max(1)) {
        let s = sequence_logprob(model, &Batch::new(chunk, inputs.pad))?
            .to_dtype(DType::F64)?
            .to_vec1::<f64>()?;
        for (e, v) in chunk.iter().zip(s) {
            out.insert(e.id.clone(), v);
        }
    }
    Ok(out)
}

/// The ledger's directions: for each forget record, minus the sum of its recorded gradients
/// (ascent), restricted to the trainable parameters.
fn ledger_directions(
    model: &Gpt2,
    inputs: &UnlearnInputs,
    cfg: &UnlearnConfig,
) -> Result<Vec<EntryGrad>, UnlearnError> {
    let ledger = inputs
        .ledger
        .ok_or_else(|| UnlearnError::Input("method ledger needs --ledger".into()))?;
    let trainable: Vec<String> = model
        .trainable_vars()
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    let mut out = Vec::with_capacity(inputs.forget.len());
    let mut missing = Vec::new();
    for e in inputs.forget {
        let entries: Vec<_> = ledger
            .entries_of(&e.id)
            .into_iter()
            .filter(|x| cfg.ledger_epochs == crate::train::LedgerEpochs::All || x.epoch == 0)
            .collect();
        if entries.is_empty() {
            missing.push(e.id.clone());
        }
        let mut sum: Direction = BTreeMap::new();
        let mut wte = Vec::new();
        for entry in entries {
            let g = ledger.compact(entry, model)?;
            for (name, t) in &g.dense {
                if trainable.contains(name) {
                    add_into(&mut sum, name, t)?;
                }
            }
            wte.extend(
                g.wte_rows
                    .filter(|_| trainable.iter().any(|n| n == model.token_embedding())),
            );
        }
        // Ascent: minus the recorded gradients.
        for g in sum.values_mut() {
            *g = g.neg()?;
        }
        let wte_rows = match WteRows::concat(&wte)? {
            Some(w) => Some(WteRows {
                rows: w.rows.neg()?,
                ..w
            }),
            None => None,
        };
        out.push(EntryGrad {
            wte_rows,
            dense: sum,
        });
    }
    if !missing.is_empty() {
        return Err(UnlearnError::Input(format!(
            "the ledger has no entry for {} forget record(s), e.g. {:?}: it was not recorded for them",
            missing.len(),
            &missing[..missing.len().min(3)]
        )));
    }
    if out
        .iter()
        .all(|g| g.dense.is_empty() && g.wte_rows.is_none())
    {
        return Err(UnlearnError::Input(format!(
            "the ledger records groups {:?}, none of which is in --params {:?}",
            ledger.index.groups, cfg.params
        )));
    }
    Ok(out)
}

/// `d` without its component along `−g` when a step `θ − lr·d` would raise the loss whose
/// gradient is `g` (that is, when `d·g < 0`).
fn project_out_rise(mut d: Direction, g: &Direction) -> Result<Direction, UnlearnError> {
    let dot = |a: &Direction, b: &Direction| -> candle_core::Result<f64> {
        let mut s = 0.0;
        for (k, x) in a {
            if let Some(y) = b.get(k) {
                s += (x * y)?
                    .sum_all()?
                    .to_dtype(DType::F64)?
                    .to_scalar::<f64>()?;
            }
        }
        Ok(s)
    };
    let (dg, gg) = (dot(&d, g)?, dot(g, g)?);
    if dg < 0.0 && gg > 0.0 {
        for (k, x) in d.iter_mut() {
            if let Some(y) = g.get(k) {
                *x = (&*x - (y * (dg / gg))?)?;
            }
        }
    }
    Ok(d)
}

fn trainable_copy(model: &Gpt2) -> candle_core::Result<Vec<(String, Tensor)>> {
    model
        .trainable_vars()
        .iter()
        .map(|(n, v)| Ok((n.to_string(), v.as_tensor().copy()?)))
        .collect()
}

fn restore(model: &Gpt2, snapshot: &[(String, Tensor)]) -> candle_core::Result<()> {
    for (name, t) in snapshot {
        model.set_param(name, t)?;
    }
    Ok(())
}
