//! One model's per-record evaluation of one split: the scores every metric and attack is
//! aggregated from, computed once per (model, split) and kept in the evidence. Question–answer
//! records are scored on their answer tokens (as OpenUnlearning's collators label them), text
//! records on every token. This module reads models and records; it never changes them.

use super::answers::answer_text;
use super::metrics::{
    exact_memorization, extraction_strength, mean_of_lowest, rouge_l_recall, truth_ratio,
    zlib_bytes,
};
use super::scoring::{mean_nll, score, score_with_grad_norms};
use super::CertifyError;
use crate::data::{Encoded, Record, TextTokenizer};
use crate::judge::evidence::{GreedyEval, QaEval, RecordEval};
use crate::model::prefilled::{prefilled, Asks};
use crate::model::Gpt2;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashSet;

/// Min-K% and Min-K%++ take the lowest 20 % of the tokens (issue 5; Zhang et al. 2024).
pub const MIN_K: f64 = 0.2;
/// Greedy answers may run this many tokens past the reference answer's length.
pub const GREEDY_SLACK: usize = 8;

/// What to compute besides the forward-pass scores.
#[derive(Debug, Clone, Copy)]
pub struct EvalPlan {
    /// Greedy answers (exact match, ROUGE-L) of question–answer records.
    pub greedy: bool,
    /// TOFU's truth ratio of question–answer records with perturbed answers.
    pub truth_ratio: bool,
    /// Each record's gradient norm on the model's trainable parameters, from the scoring's own
    /// forward pass (which must then be embedding parameters only:
    /// `per_example::supported`).
    pub grad_norms: bool,
}

/// One model's evaluation of one split.
pub struct Evaluated {
    /// Every record's evaluation, in input order.
    pub records: Vec<RecordEval>,
    /// Every record's gradient norm, in input order (empty unless the plan asked for them).
    pub grad_norms: Vec<f64>,
    /// Seconds the scoring's forward passes took (greedy answers, truth ratios and the
    /// gradient norms' backward excluded): what the certifier's evaluation throughput is
    /// measured on.
    pub scoring_seconds: f64,
}

/// Tools shared by every evaluation with one tokenizer.
pub struct Evaluator<'a> {
    pub tok: &'a TextTokenizer,
    pub stop: &'a HashSet<u32>,
    pub ctx: usize,
    /// At most this many question–answer records per split get greedy answers and truth ratios
    /// (a seeded sample, the same for every model); the forward-pass scores cover every record.
    pub generated: usize,
    pub seed: u64,
}

/// A seeded sample of `k` of `0..n` in ascending order (all of them when k ≥ n); `stream`
/// separates independent choices made from one seed.
pub fn seeded_subset(n: usize, k: usize, seed: u64, stream: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut rng);
    idx.truncate(k.min(n));
    idx.sort_unstable();
    idx
}

impl Evaluator<'_> {
    pub fn encode(&self, records: &[Record]) -> Result<Vec<Encoded>, CertifyError> {
        records
            .iter()
            .map(|r| {
                self.tok
                    .encode(r, true, self.ctx)
                    .map_err(CertifyError::from)
            })
            .collect()
    }

    /// Evaluates `model` on `records`; `progress` gets the records done after each batch.
    pub fn evaluate(
        &self,
        model: &Gpt2,
        records: &[Record],
        plan: EvalPlan,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Vec<RecordEval>, CertifyError> {
        Ok(self.evaluate_timed(model, records, plan, progress)?.records)
    }

    /// [`Evaluator::evaluate`], the gradient norms if the plan asks for them, and the seconds
    /// the scoring took.
    pub fn evaluate_timed(
        &self,
        model: &Gpt2,
        records: &[Record],
        plan: EvalPlan,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Evaluated, CertifyError> {
        let enc = self.encode(records)?;
        let pad = self.tok.pad_id();
        let (scores, grad_norms, scoring_seconds) = if plan.grad_norms {
            let got = score_with_grad_norms(model, &enc, pad, progress)?;
            (got.scores, got.grad_norms, got.forward_seconds)
        } else {
            let started = std::time::Instant::now();
            let scores = score(model, &enc, pad, progress)?;
            (scores, Vec::new(), started.elapsed().as_secs_f64())
        };
        let mut out: Vec<RecordEval> = records
            .iter()
            .zip(&scores)
            .map(|(rec, s)| RecordEval {
                id: rec.id.clone(),
                subject: rec.subject.clone(),
                tokens: s.logprobs.len(),
                loss: s.loss(),
                min_k: mean_of_lowest(&s.logprobs, MIN_K),
                min_k_pp: mean_of_lowest(&s.z, MIN_K),
                zlib_bytes: zlib_bytes(rec.answer.as_deref().unwrap_or(&rec.text)),
                qa: rec.answer.as_ref().map(|_| QaEval {
                    exact_memorization: exact_memorization(&s.hits),
                    extraction_strength: extraction_strength(&s.hits),
                    greedy: None,
                    truth_ratio: None,
                }),
            })
            .collect();
        let qa_all: Vec<usize> = (0..records.len())
            .filter(|&i| records[i].answer.is_some())
            .collect();
        let qa: Vec<usize> = seeded_subset(qa_all.len(), self.generated, self.seed, 0)
            .into_iter()
            .map(|k| qa_all[k])
            .collect();
        if plan.greedy || plan.truth_ratio {
            self.answers(model, records, &enc, &qa, plan, &mut out)?;
        }
        Ok(Evaluated {
            records: out,
            grad_norms,
            scoring_seconds,
        })
    }

    /// The greedy answers and truth ratios `plan` asks for, on the sampled questions `qa`: each
    /// question's prompt is run once for both (`model::prefilled`).
    fn answers(
        &self,
        model: &Gpt2,
        records: &[Record],
        enc: &[Encoded],
        qa: &[usize],
        plan: EvalPlan,
        out: &mut [RecordEval],
    ) -> Result<(), CertifyError> {
        // One prompt entry per question (its greedy budget, if asked), in `qa`'s order.
        let mut prompts: Vec<Vec<u32>> = Vec::new();
        let mut max_new = Vec::new();
        for &i in qa {
            let e = &enc[i];
            prompts.push(e.ids[..e.score_from].to_vec());
            max_new.push(if plan.greedy {
                e.ids.len() - e.score_from + GREEDY_SLACK
            } else {
                0
            });
        }
        let mut conts: Vec<Vec<Vec<u32>>> = vec![Vec::new(); qa.len()];
        // Each wrong answer: its question's record, and its (prompt entry, continuation).
        let mut wrong: Vec<(usize, (usize, usize))> = Vec::new();
        if plan.truth_ratio {
            let (owner, variants) = perturbed(records, qa);
            // Every wrong answer of a question shares its prompt's tokens (prompt and answer
            // are encoded apart), so its prompt runs once, with the greedy answer's: the
            // log-probs a full scoring pass gives, up to summation order. A prompt that
            // encodes otherwise gets an entry of its own.
            for (e, &(q, i)) in self.encode(&variants)?.iter().zip(&owner) {
                let (prompt, cont) = e.ids.split_at(e.score_from.max(1));
                let last = prompts.len() - 1;
                let entry = if prompts[q] == prompt {
                    q
                } else if last >= qa.len() && prompts[last] == prompt {
                    last
                } else {
                    prompts.push(prompt.to_vec());
                    max_new.push(0);
                    conts.push(Vec::new());
                    last + 1
                };
                conts[entry].push(cont.to_vec());
                wrong.push((i, (entry, conts[entry].len() - 1)));
            }
        }
        let asks = Asks {
            prompts: &prompts,
            max_new: &max_new,
            stop: self.stop,
            continuations: &conts,
        };
        let got = prefilled(model, &asks, self.tok.pad_id())?;
        if plan.greedy {
            for (&i, ids) in qa.iter().zip(got.greedy) {
                let g = self.greedy_eval(&records[i], &enc[i], ids)?;
                if let Some(q) = out[i].qa.as_mut() {
                    q.greedy = Some(g);
                }
            }
        }
        let mut losses: Vec<Vec<f64>> = vec![Vec::new(); records.len()];
        for (i, (entry, k)) in wrong {
            losses[i].push(mean_nll(&got.logprobs[entry][k]));
        }
        for (i, l) in losses.iter().enumerate() {
            let correct = out[i].loss;
            if let (false, Some(q)) = (l.is_empty(), out[i].qa.as_mut()) {
                q.truth_ratio = Some(truth_ratio(correct, l));
            }
        }
        Ok(())
    }

    /// A greedy answer `ids` to question `rec` (encoded `e`), judged against its answer.
    fn greedy_eval(
        &self,
        rec: &Record,
        e: &Encoded,
        ids: Vec<u32>,
    ) -> Result<GreedyEval, CertifyError> {
        let answer =
            answer_text(self.tok, &ids).map_err(|e| CertifyError::Tokenizer(e.to_string()))?;
        let reference = rec.answer.as_deref().unwrap_or_default();
        // Reproduced: the greedy tokens begin with the answer's own tokens (what the model
        // was trained to emit; the training texts end without an end-of-text token, so a
        // model that memorised a record runs on after the answer — "welding inspector0 81"
        // discloses the answer as surely as "welding inspector"), or the text does.
        let tokens = &e.ids[e.score_from..];
        Ok(GreedyEval {
            exact_match: ids.starts_with(tokens) || super::oracle::reproduces(&answer, reference),
            rouge_l: rouge_l_recall(&answer, reference),
            answer,
        })
    }
}

/// The wrong answers of the questions `qa` (indices into `records`) as records of their own,
/// each with its question's position in `qa` and index in `records`.
fn perturbed(records: &[Record], qa: &[usize]) -> (Vec<(usize, usize)>, Vec<Record>) {
    let mut owner = Vec::new();
    let mut variants = Vec::new();
    for (q, &i) in qa.iter().enumerate() {
        let rec = &records[i];
        let (Some(prompt), Some(_)) = (&rec.prompt, &rec.answer) else {
            continue;
        };
        for (j, wrong) in rec.perturbed.iter().enumerate() {
            owner.push((q, i));
            variants.push(Record {
                id: format!("{}#perturbed{j}", rec.id),
                text: format!("{prompt}{wrong}"),
                prompt: Some(prompt.clone()),
                answer: Some(wrong.clone()),
                subject: None,
                perturbed: Vec::new(),
            });
        }
    }
    (owner, variants)
}
