//! Calibration and stop rules. The target is the level of records the model never saw — not "as
//! high as possible": pushing past it ("overexposure", in the seed paper's words) makes the
//! forget records stand out again, now as *less* familiar than never-seen data, and damages the
//! rest of the model.
//!
//! - **Profile matching** (the default method) targets the never-seen *distribution*, token by
//!   token: each forget record gets a never-seen partner and its token losses are moved, up or
//!   down, to the partner's (`objective::profile_gap`); a step that does not lower the gap is
//!   undone and the run stops when no step, down to the smallest length, lowers it
//!   ([`StopReason::Converged`]) or the step budget is spent. On the bundled world the mean-level
//!   ascent below left every record's mean near the holdout's while single tokens were pushed
//!   far past it (Min-K% AUC 0.35 against never-seen people); matching the profile keeps every
//!   attack of the suite near chance.
//! - **The ascent methods** apply the holdout's mean level per record: a forget record is
//!   ascended only while its own loss is below the target (`objective::capped_ascent`), and a
//!   run stops when no larger share of the forget records is recognised (loss below the
//!   holdout's `fpr` quantile) than of the holdout records themselves. A mean-loss criterion
//!   alone is not enough: on the bundled world the mean forget loss reached 4.9 (holdout 5.5)
//!   while 11% of the answers were still reproduced verbatim.
//!
//! Profile matching first tries to repair a step that costs the retain records too much: a
//! few descent steps on retain records the guard does not watch (`Stepper::repair`), after
//! which the step and its repair are judged together. On the tuning world w5 (issue 17), where
//! the guard had stopped the run at forget loss 5.5 against a holdout level of 7.0 (loss-attack
//! AUC 0.595, inconclusive), the repaired run went on to 5.8 (AUC 0.574, certified).
//!
//! For every method, a step that costs the retain records too much ([`RetainGuard`]), or drives
//! the mean forget loss past the target by the overshoot factor, or produces a non-finite value,
//! is undone and the step length halved. The retain guard is absolute, not relative: a model
//! that memorised its retain set has a retain loss near zero (0.03 nats on a stranger's model,
//! issue 17), where any ratio is noise and a 7% tolerance undid every step; what a user sees —
//! retained answers still reproduced — and an average per-token likelihood loss in nats mean the
//! same at any loss scale.

use serde::{Deserialize, Serialize};

/// Why unlearning stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The forget records reached the holdout level: no more of them are recognised than of
    /// the holdout records.
    ReachedHoldoutLevel,
    /// Iterative: no forget record is recognised any more.
    NoneRecognised,
    /// The step length was halved `max_backoffs` times without an acceptable step.
    BackoffsExhausted,
    /// The hard cap on steps was reached first.
    StepCap,
    /// Profile matching: no step, down to the smallest step length, brings the forget records'
    /// token losses closer to their never-seen partners' (the matching has converged as far as
    /// the chosen parameters allow).
    Converged,
}

impl StopReason {
    /// Why the run stopped, in the words of someone reading the log.
    pub fn describe(&self) -> &'static str {
        match self {
            StopReason::ReachedHoldoutLevel => {
                "target reached: no more forget records are recognised than never-seen records"
            }
            StopReason::NoneRecognised => "target reached: no forget record is recognised any more",
            StopReason::BackoffsExhausted => {
                "stuck: every further step would have raised the retain loss beyond its tolerance or overshot the target"
            }
            StopReason::StepCap => {
                "step budget spent (profile matching: the match was still improving)"
            }
            StopReason::Converged => {
                "matched: no further step brings the forget records closer to never-seen records"
            }
        }
    }
}

/// What to do with a step that was just taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Keep,
    UndoRetain,
    UndoOvershoot,
    UndoNonFinite,
    /// Profile matching: the step did not bring the forget records closer to their never-seen
    /// partners.
    UndoNoGain,
}

/// What a step may cost the retain records: at most `loss_margin` nats per token of mean retain
/// loss over the starting value (a mean likelihood ratio of e^margin per token), and at most
/// `answers` of the retain answers the original reproduced (teacher-forced greedy: every
/// scored token the most likely one) in the watched sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetainGuard {
    pub loss_margin: f64,
    pub answers: f64,
}

impl RetainGuard {
    /// How many of `reproduced` answers a step may lose.
    pub fn answers_allowed(&self, reproduced: usize) -> usize {
        (self.answers * reproduced as f64 + 1e-9).floor() as usize
    }
}

/// The fixed reference levels of one run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Levels {
    /// Forget loss of the original model.
    pub forget_start: f64,
    /// Retain loss (on the evaluation sample) of the original model.
    pub retain_start: f64,
    /// Records of the retain evaluation sample whose scored tokens the original model
    /// reproduces (every one the most likely next token).
    #[serde(default)]
    pub retain_reproduced: usize,
    /// Holdout loss of the original model: the level of never-seen records.
    pub holdout: f64,
    /// `target_ratio × holdout`: the per-record loss above which a forget record is no longer
    /// ascended.
    pub target: f64,
    /// The recognition threshold: the `recognise_fpr` quantile of the holdout records' losses.
    /// A record with a loss below it is "recognised" (looks like training data).
    pub recognition: f64,
}

impl Levels {
    /// Judges a step from what was measured after it: the mean forget and retain losses and how
    /// many of the originally reproduced retain answers are no longer reproduced.
    pub fn judge(
        &self,
        forget: f64,
        retain: f64,
        answers_lost: usize,
        guard: RetainGuard,
        overshoot: f64,
    ) -> Verdict {
        if !(forget.is_finite() && retain.is_finite()) {
            Verdict::UndoNonFinite
        } else if !self.retain_kept(retain, answers_lost, guard) {
            Verdict::UndoRetain
        } else if forget > self.target * overshoot {
            Verdict::UndoOvershoot
        } else {
            Verdict::Keep
        }
    }

    /// Whether a retain loss and a count of retain answers lost are within `guard`.
    pub fn retain_kept(&self, retain: f64, answers_lost: usize, guard: RetainGuard) -> bool {
        retain <= self.retain_start + guard.loss_margin
            && answers_lost <= guard.answers_allowed(self.retain_reproduced)
    }

    /// Forget records (by per-record loss) that are still recognised.
    pub fn recognised(&self, per_record: &[f64]) -> usize {
        per_record.iter().filter(|&&l| l < self.recognition).count()
    }

    /// The holdout level is reached when no larger a share of the forget records is recognised
    /// than of the holdout records themselves (`fpr`, by construction of the threshold).
    pub fn reached(&self, per_record: &[f64], fpr: f64) -> bool {
        self.recognised(per_record) as f64 <= fpr * per_record.len() as f64
    }
}

/// The loss below which a record counts as recognised: the `fpr` quantile of the holdout
/// records' losses (a holdout record falls below it with probability `fpr`).
pub fn recognition_threshold(holdout_losses: &[f64], fpr: f64) -> f64 {
    let mut v: Vec<f64> = holdout_losses
        .iter()
        .copied()
        .filter(|x| x.is_finite())
        .collect();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NEG_INFINITY;
    }
    let i = ((v.len() as f64 * fpr).floor() as usize).min(v.len() - 1);
    v[i]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judge_undoes_bad_steps() {
        let l = Levels {
            forget_start: 0.1,
            retain_start: 1.0,
            retain_reproduced: 100,
            holdout: 3.0,
            target: 3.0,
            recognition: 2.0,
        };
        let g = RetainGuard {
            loss_margin: 0.05,
            answers: 0.02,
        };
        assert_eq!(l.judge(1.0, 1.04, 2, g, 1.5), Verdict::Keep);
        assert_eq!(l.judge(1.0, 1.06, 0, g, 1.5), Verdict::UndoRetain);
        assert_eq!(l.judge(1.0, 1.0, 3, g, 1.5), Verdict::UndoRetain);
        assert_eq!(l.judge(4.6, 1.0, 0, g, 1.5), Verdict::UndoOvershoot);
        assert_eq!(l.judge(f64::NAN, 1.0, 0, g, 1.5), Verdict::UndoNonFinite);
        let off = RetainGuard {
            loss_margin: f64::INFINITY,
            answers: 1.0,
        };
        assert_eq!(l.judge(1.0, 1e6, 100, off, 1.5), Verdict::Keep);
        // One of twenty below the threshold is the holdout's own 5%; two is too many.
        let mut per = vec![2.5; 20];
        per[0] = 1.0;
        assert!(l.reached(&per, 0.05));
        per[1] = 1.9;
        assert!(!l.reached(&per, 0.05));
    }

    #[test]
    fn the_retain_guard_means_the_same_at_any_loss_scale() {
        // A memorised retain set (loss 0.03): a relative 7% tolerance allowed 0.002 nats, which
        // any step exceeds (issue 17); the absolute margin allows the same 0.05 nats as at 3.0.
        let g = RetainGuard {
            loss_margin: 0.05,
            answers: 0.02,
        };
        for start in [0.03, 3.0] {
            let l = Levels {
                forget_start: 0.0,
                retain_start: start,
                retain_reproduced: 0,
                holdout: 6.0,
                target: 6.0,
                recognition: 5.0,
            };
            assert_eq!(l.judge(1.0, start + 0.04, 0, g, 1.5), Verdict::Keep);
            assert_eq!(l.judge(1.0, start + 0.06, 0, g, 1.5), Verdict::UndoRetain);
        }
        assert_eq!(g.answers_allowed(200), 4);
        assert_eq!(g.answers_allowed(49), 0);
    }

    #[test]
    fn threshold_is_the_holdout_quantile() {
        let h: Vec<f64> = (0..100).map(f64::from).collect();
        assert_eq!(recognition_threshold(&h, 0.05), 5.0);
        assert_eq!(recognition_threshold(&[], 0.05), f64::NEG_INFINITY);
    }
}
