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
use crate::model::continuation::continuation_logprobs;
use crate::model::generate::greedy_batch;
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
        if plan.greedy && !qa.is_empty() {
            self.greedy(model, records, &enc, &qa, &mut out)?;
        }
        if plan.truth_ratio {
            self.truth_ratios(model, records, &qa, &mut out)?;
        }
        Ok(Evaluated {
            records: out,
            grad_norms,
            scoring_seconds,
        })
    }

    fn greedy(
        &self,
        model: &Gpt2,
        records: &[Record],
        enc: &[Encoded],
        qa: &[usize],
        out: &mut [RecordEval],
    ) -> Result<(), CertifyError> {
        let prompts: Vec<Vec<u32>> = qa
            .iter()
            .map(|&i| enc[i].ids[..enc[i].score_from].to_vec())
            .collect();
        let budget: Vec<usize> = qa
            .iter()
            .map(|&i| enc[i].ids.len() - enc[i].score_from + GREEDY_SLACK)
            .collect();
        let gen = greedy_batch(model, &prompts, &budget, self.stop, self.tok.pad_id())?;
        for (&i, ids) in qa.iter().zip(gen) {
            let answer =
                answer_text(self.tok, &ids).map_err(|e| CertifyError::Tokenizer(e.to_string()))?;
            let reference = records[i].answer.as_deref().unwrap_or_default();
            // Reproduced: the greedy tokens begin with the answer's own tokens (what the model
            // was trained to emit; the training texts end without an end-of-text token, so a
            // model that memorised a record runs on after the answer — "welding inspector0 81"
            // discloses the answer as surely as "welding inspector"), or the text does.
            let tokens = &enc[i].ids[enc[i].score_from..];
            let g = GreedyEval {
                exact_match: ids.starts_with(tokens)
                    || super::oracle::reproduces(&answer, reference),
                rouge_l: rouge_l_recall(&answer, reference),
                answer,
            };
            if let Some(q) = out[i].qa.as_mut() {
                q.greedy = Some(g);
            }
        }
        Ok(())
    }

    fn truth_ratios(
        &self,
        model: &Gpt2,
        records: &[Record],
        qa: &[usize],
        out: &mut [RecordEval],
    ) -> Result<(), CertifyError> {
        let mut owner = Vec::new();
        let mut variants = Vec::new();
        for &i in qa {
            let rec = &records[i];
            let (Some(prompt), Some(_)) = (&rec.prompt, &rec.answer) else {
                continue;
            };
            for (j, wrong) in rec.perturbed.iter().enumerate() {
                owner.push(i);
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
        if variants.is_empty() {
            return Ok(());
        }
        // Every wrong answer of a question shares its prompt's tokens (prompt and answer are
        // encoded apart), so each prompt runs once and its answers are scored against its
        // cache: the log-probs a full scoring pass gives, up to summation order.
        let enc = self.encode(&variants)?;
        let mut prompts: Vec<Vec<u32>> = Vec::new();
        let mut conts: Vec<Vec<Vec<u32>>> = Vec::new();
        let mut at = Vec::with_capacity(enc.len());
        for (e, &i) in enc.iter().zip(&owner) {
            let (prompt, cont) = e.ids.split_at(e.score_from.max(1));
            let same = at.last().is_some_and(|&(o, _)| o == i)
                && prompts.last().map(Vec::as_slice) == Some(prompt);
            if !same {
                prompts.push(prompt.to_vec());
                conts.push(Vec::new());
            }
            let p = prompts.len() - 1;
            at.push((i, p));
            conts[p].push(cont.to_vec());
        }
        let scores = continuation_logprobs(model, &prompts, &conts, self.tok.pad_id())?;
        let mut losses: Vec<Vec<f64>> = vec![Vec::new(); records.len()];
        let mut next = vec![0usize; prompts.len()];
        for (i, p) in at {
            let lp = &scores[p][next[p]];
            next[p] += 1;
            losses[i].push(mean_nll(lp));
        }
        for (i, l) in losses.iter().enumerate() {
            let correct = out[i].loss;
            if let (false, Some(q)) = (l.is_empty(), out[i].qa.as_mut()) {
                q.truth_ratio = Some(truth_ratio(correct, l));
            }
        }
        Ok(())
    }
}
