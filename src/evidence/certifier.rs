//! The certification run: load and check the inputs (parse, then validate, then run), evaluate
//! each model on each split once (for embedding parameters, the attacked records' gradient
//! norms from the same forward passes), take the influence analysis, and assemble the evidence
//! with the statistics `judge::derive` computes from those measurements (the same derivation
//! `verify` re-runs on the signed file). Validation refuses, before any tensor work, models
//! whose tokenizers differ, empty splits, and splits too small for the requested confidence
//! (saying how many records are needed). It reads models and data and never changes the files;
//! the parameters it moves for finite differences are an in-memory copy.

use super::activation::cosines;
use super::answers::answer_stops;
use super::influence::{check_hvp, self_influence, spectrum, Sample, Space, DISTANCE_ASSUMPTION};
use super::mia::grad_norms;
use super::records::{seeded_subset, EvalPlan, Evaluator, GREEDY_SLACK, MIN_K};
use super::scoring::SIGMA2_FLOOR;
use super::CertifyError;
use crate::data::chat::ChatTemplate;
use crate::data::{read_records_hashed, Encoded, Record, TextTokenizer};
use crate::judge::derive::{derive, distance_bound, layer_means, Measured};
use crate::judge::evidence::{
    ChatTemplateUse, DataInput, Evidence, InfluenceEvidence, ModelInput, Records, Settings,
    SCHEMA_VERSION,
};
use crate::judge::metric::Metric;
use crate::model::{load_model, per_example, Gpt2, LoadedModel, ParamGroups};
use candle_core::DType;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The smallest non-member sample for which a 1 % FPR allows a single false positive.
pub const MIN_NONMEMBERS_FOR_1PCT_FPR: usize = 100;
/// Rows per batch of the gradient and Hessian passes.
const GRAD_ROWS: usize = 16;

/// What to certify and how: the files, the seed, and the settings exactly as the evidence
/// records them (`judge::evidence::Settings` is the one description of them; `verify
/// --recompute` rebuilds a request from a signed evidence file with [`Request::from_evidence`]).
#[derive(Debug, Clone)]
pub struct Request {
    pub original: PathBuf,
    pub unlearned: PathBuf,
    pub reference: Option<PathBuf>,
    pub forget: PathBuf,
    pub retain: PathBuf,
    pub holdout: PathBuf,
    pub utility: Option<PathBuf>,
    pub seed: u64,
    pub settings: Settings,
    /// Run the influence analysis (Hessian checks, spectrum, self-influence, distance bound).
    /// It is the slowest stage by far (exact f64 second derivatives); without it the evidence
    /// says so under `omitted` and a spec naming an `influence.*` metric is an error.
    pub influence: bool,
}

impl Request {
    /// The defaults of `lethe certify` for the given inputs.
    pub fn new(
        original: PathBuf,
        unlearned: PathBuf,
        forget: PathBuf,
        retain: PathBuf,
        holdout: PathBuf,
    ) -> Request {
        Request {
            original,
            unlearned,
            reference: None,
            forget,
            retain,
            holdout,
            utility: None,
            seed: 0,
            settings: default_settings(),
            influence: true,
        }
    }

    /// The request a signed evidence file was measured from: its files (resolved by
    /// `resolve`, which decides where a recorded path may point), seed and settings.
    pub fn from_evidence(
        evidence: &Evidence,
        resolve: &dyn Fn(&str) -> Result<PathBuf, CertifyError>,
    ) -> Result<Request, CertifyError> {
        let model = |role: &str| {
            evidence
                .models
                .get(role)
                .map(|m| resolve(&m.dir))
                .transpose()
        };
        let data = |split: &str| {
            evidence
                .data
                .get(split)
                .map(|d| resolve(&d.path))
                .transpose()
        };
        let need = |p: Option<PathBuf>, what: &str| {
            p.ok_or_else(|| CertifyError::Setting(format!("the evidence names no {what}")))
        };
        Ok(Request {
            original: need(model("original")?, "original model")?,
            unlearned: need(model("unlearned")?, "unlearned model")?,
            reference: model("reference")?,
            forget: need(data("forget")?, "forget split")?,
            retain: need(data("retain")?, "retain split")?,
            holdout: need(data("holdout")?, "holdout split")?,
            utility: data("utility")?,
            seed: evidence.seed,
            settings: evidence.settings.clone(),
            influence: evidence.influence.is_some(),
        })
    }

    /// The parameter group of the influence analysis and the gradient-norm attack.
    pub fn params(&self) -> Result<ParamGroups, CertifyError> {
        ParamGroups::parse(&self.settings.params).map_err(|e| CertifyError::Setting(e.to_string()))
    }
}

/// The settings `lethe certify` uses unless told otherwise. Min-K's fraction, the Min-K%++
/// variance floor and the greedy slack are this build's constants, recorded so that a
/// recomputation can tell when it measures differently.
pub fn default_settings() -> Settings {
    Settings {
        confidence: 0.95,
        params: "embedding".into(),
        min_k: MIN_K,
        min_k_pp_sigma2_floor: SIGMA2_FLOOR,
        greedy_slack_tokens: GREEDY_SLACK,
        hessian_records: 16,
        influence_records: 4,
        lanczos_steps: 12,
        cg_tolerance: 1e-3,
        cg_max_iterations: 30,
        damping: None,
        generated_records: 200,
    }
}

/// Checks settings before any work: the confidence a bound can be taken at, positive counts,
/// a damping that is a number, and the constants this build measures with.
fn check_settings(s: &Settings) -> Result<(), CertifyError> {
    let bad = |msg: String| Err(CertifyError::Setting(msg));
    if !(0.5..1.0).contains(&s.confidence) {
        return bad(format!(
            "confidence must lie in [0.5, 1), got {}",
            s.confidence
        ));
    }
    if s.hessian_records == 0 || s.lanczos_steps == 0 || s.cg_max_iterations == 0 {
        return bad(
            "hessian_records, lanczos_steps and cg_max_iterations must be at least 1".into(),
        );
    }
    if !(s.cg_tolerance.is_finite() && s.cg_tolerance > 0.0) {
        return bad(format!(
            "cg_tolerance must be a positive number, got {}",
            s.cg_tolerance
        ));
    }
    if let Some(d) = s.damping {
        if !(d.is_finite() && d >= 0.0) {
            return bad(format!(
                "damping must be a finite non-negative number, got {d}"
            ));
        }
    }
    let build = default_settings();
    if (s.min_k, s.min_k_pp_sigma2_floor, s.greedy_slack_tokens)
        != (
            build.min_k,
            build.min_k_pp_sigma2_floor,
            build.greedy_slack_tokens,
        )
    {
        return bad(format!(
            "this lethe measures Min-K at {}, the Min-K%++ floor at {} and greedy slack at {} tokens; \
             the settings ask for {}, {} and {}",
            build.min_k, build.min_k_pp_sigma2_floor, build.greedy_slack_tokens,
            s.min_k, s.min_k_pp_sigma2_floor, s.greedy_slack_tokens
        ));
    }
    Ok(())
}

/// The fewest records for which a one-sided bound at `confidence` can tell a proportion from
/// one half at all: with n records and no successes the Clopper–Pearson upper bound is
/// 1 − (1 − c)^(1/n), below 1/2 only when n > log(1 − c) / log(1/2) (5 records at 95 %).
pub fn min_records(confidence: f64) -> usize {
    ((1.0 - confidence).ln() / 0.5f64.ln()).floor() as usize + 1
}

/// Loaded and checked inputs.
pub struct Inputs {
    pub original: LoadedModel,
    pub unlearned: LoadedModel,
    pub reference: Option<LoadedModel>,
    pub tokenizer: TextTokenizer,
    /// `forget`, `retain`, `holdout`, optionally `utility`: records and their digests.
    pub splits: BTreeMap<String, (DataInput, Vec<Record>)>,
}

fn read_split(path: &Path) -> Result<(DataInput, Vec<Record>), CertifyError> {
    // One read: the records and the sha256 of exactly the bytes they were parsed from.
    let (records, hash) = read_records_hashed(path)?;
    Ok((
        DataInput {
            path: path.display().to_string(),
            sha256: hash.sha256,
            bytes: hash.bytes,
            records: records.len(),
            question_answer_records: records.iter().filter(|r| r.answer.is_some()).count(),
        },
        records,
    ))
}

fn tokenizer_digest(m: &LoadedModel) -> Result<&str, CertifyError> {
    m.files
        .iter()
        .find(|f| f.name == "tokenizer.json")
        .map(|f| f.sha256.as_str())
        .ok_or_else(|| {
            CertifyError::Mismatch(format!(
                "{} has no tokenizer.json, so its tokens cannot be compared with the others'",
                m.dir.display()
            ))
        })
}

/// Loads the models and splits and checks that they can be certified together.
pub fn load_inputs(req: &Request) -> Result<Inputs, CertifyError> {
    check_settings(&req.settings)?;
    let load = |p: &PathBuf| load_model(p, DType::F32);
    let (original, unlearned) = (load(&req.original)?, load(&req.unlearned)?);
    let reference = req.reference.as_ref().map(load).transpose()?;
    let want = tokenizer_digest(&unlearned)?;
    for m in std::iter::once(&original).chain(reference.as_ref()) {
        let got = tokenizer_digest(m)?;
        if got != want {
            return Err(CertifyError::Mismatch(format!(
                "{}/tokenizer.json (sha256 {got}) differs from {}/tokenizer.json (sha256 {want}): \
                 the same text would be different tokens to each model",
                m.dir.display(),
                unlearned.dir.display()
            )));
        }
        let (a, b) = (m.model.config(), unlearned.model.config());
        if a.vocab_size != b.vocab_size {
            return Err(CertifyError::Mismatch(format!(
                "{} has a vocabulary of {} ids, {} of {}",
                m.dir.display(),
                a.vocab_size,
                unlearned.dir.display(),
                b.vocab_size
            )));
        }
    }
    let tokenizer = TextTokenizer::load(&unlearned.dir.join("tokenizer.json"))?;
    tokenizer.check_vocab(unlearned.model.config().vocab_size)?;
    // The same prompt must be the same tokens to every model: the same chat template, or none.
    let want = tokenizer.chat_template.as_ref().map(|t| t.rendering());
    for m in std::iter::once(&original).chain(reference.as_ref()) {
        let theirs = ChatTemplate::find(&m.dir)?;
        if theirs.as_ref().map(|t| t.rendering()) != want {
            return Err(CertifyError::Mismatch(format!(
                "{} and {} have different chat templates (or one has none): the same question \
                 would be a different prompt to each model",
                m.dir.display(),
                unlearned.dir.display()
            )));
        }
    }
    req.params()?
        .select(unlearned.model.config())
        .map_err(CertifyError::Setting)?;
    let mut splits = BTreeMap::new();
    for (name, path) in [
        ("forget", Some(&req.forget)),
        ("retain", Some(&req.retain)),
        ("holdout", Some(&req.holdout)),
        ("utility", req.utility.as_ref()),
    ] {
        if let Some(p) = path {
            splits.insert(name.to_string(), read_split(p)?);
        }
    }
    check_sizes(&splits, req.settings.confidence)?;
    Ok(Inputs {
        original,
        unlearned,
        reference,
        tokenizer,
        splits,
    })
}

fn check_sizes(
    splits: &BTreeMap<String, (DataInput, Vec<Record>)>,
    confidence: f64,
) -> Result<(), CertifyError> {
    let n = min_records(confidence);
    let count = |s: &str| splits.get(s).map_or(0, |(d, _)| d.records);
    let needs = [
        (
            "forget",
            n.max(2),
            format!("a one-sided {confidence} bound on a membership attack's TPR"),
        ),
        (
            "holdout",
            n.max(MIN_NONMEMBERS_FOR_1PCT_FPR),
            "the TPR at 1 % FPR (one false positive in 100 non-members)".to_string(),
        ),
        ("retain", 2, "the retain loss and its Hessian".to_string()),
    ];
    for (split, need, what) in needs {
        let got = count(split);
        if got < need {
            return Err(CertifyError::TooSmall {
                split,
                got,
                need,
                more: need - got,
                what,
            });
        }
    }
    Ok(())
}

/// What a run measured besides the evidence: evaluation throughput, for the closing note.
#[derive(Debug, Clone, Copy)]
pub struct RunSummary {
    pub eval_tokens: u64,
    pub eval_seconds: f64,
}

struct Run<'a> {
    req: &'a Request,
    inputs: &'a Inputs,
    eval: Evaluator<'a>,
    progress: &'a mut dyn FnMut(&str, u64),
    eval_tokens: u64,
    eval_seconds: f64,
}

/// Runs the whole certification; `progress(stage, units)` reports work done (records scored).
pub fn certify(
    req: &Request,
    inputs: &mut Inputs,
    progress: &mut dyn FnMut(&str, u64),
) -> Result<(Evidence, RunSummary), CertifyError> {
    let stop = answer_stops(&inputs.tokenizer)?;
    let ctx = inputs.unlearned.model.config().n_positions;
    let params = req.params()?;
    let mut handles = Handles::new(inputs, &params)?;
    // Embedding parameters (the default): each record's gradient norm comes from the forward
    // pass that scores it. Anything else: one backward pass per record, afterwards.
    let fused = handles.models().all(per_example::supported);
    let inputs: &Inputs = inputs;
    let mut run = Run {
        req,
        inputs,
        eval: Evaluator {
            tok: &inputs.tokenizer,
            stop: &stop,
            ctx,
            generated: req.settings.generated_records,
            seed: req.seed,
        },
        progress,
        eval_tokens: 0,
        eval_seconds: 0.0,
    };
    let (evals, fused_norms) = run.evaluate_all(&handles, fused)?;
    let member_enc = run.eval.encode(&inputs.splits["forget"].1)?;
    let nonmember_enc = run.eval.encode(&inputs.splits["holdout"].1)?;
    let grad_norms = if fused {
        fused_norms
    } else {
        let both: Vec<Encoded> = member_enc.iter().chain(&nonmember_enc).cloned().collect();
        let norms = handles.grad_norms(&both, inputs.tokenizer.pad_id(), &params)?;
        (run.progress)("gradient norms", 2 * both.len() as u64);
        norms
    };
    drop(handles);
    let influence = if req.influence {
        Some(run.influence(&member_enc, &nonmember_enc)?)
    } else {
        None
    };
    let data: BTreeMap<String, DataInput> = inputs
        .splits
        .iter()
        .map(|(k, (d, _))| (k.clone(), d.clone()))
        .collect();
    let derived = derive(&Measured {
        seed: req.seed,
        data: &data,
        records: &evals,
        grad_norms,
        influence: influence.as_ref(),
    })?;
    let summary = RunSummary {
        eval_tokens: run.eval_tokens,
        eval_seconds: run.eval_seconds,
    };
    let evidence = Evidence {
        schema_version: SCHEMA_VERSION,
        tool: format!("lethe {}", env!("CARGO_PKG_VERSION")),
        seed: req.seed,
        settings: req.settings.clone(),
        models: model_inputs(inputs),
        data,
        sample_sizes: derived.sample_sizes,
        metrics: derived.metrics,
        omitted: derived.omitted,
        records: evals,
        mia: derived.mia,
        influence,
        chat_template: inputs
            .tokenizer
            .chat_template
            .as_ref()
            .map(|t| ChatTemplateUse {
                file: t.file_name().to_string(),
                source_sha256: crate::digest::sha256_hex(t.source().as_bytes()),
                applied_to: "question-answer prompts: scored answers, greedy answers, truth ratios and property checks".into(),
            }),
    };
    Ok((evidence, summary))
}

fn model_inputs(inputs: &Inputs) -> BTreeMap<String, ModelInput> {
    let mut out = BTreeMap::new();
    for (role, m) in [
        ("original", Some(&inputs.original)),
        ("unlearned", Some(&inputs.unlearned)),
        ("reference", inputs.reference.as_ref()),
    ] {
        if let Some(m) = m {
            out.insert(
                role.to_string(),
                ModelInput {
                    dir: m.dir.display().to_string(),
                    files: m.files.clone(),
                },
            );
        }
    }
    out
}

type Evals = Records;

/// Each role's model as the certifier runs it: a handle of its own on the role's weights
/// (shared, not copied: nothing here changes them) whose trainable flags are the settings'
/// parameter group, what the gradient norms differentiate.
struct Handles {
    unlearned: Gpt2,
    original: Gpt2,
    reference: Option<Gpt2>,
}

impl Handles {
    fn new(inputs: &Inputs, params: &ParamGroups) -> Result<Handles, CertifyError> {
        let handle = |m: &LoadedModel| -> Result<Gpt2, CertifyError> {
            let mut h = m.model.sharing();
            h.set_trainable(params).map_err(CertifyError::Setting)?;
            Ok(h)
        };
        Ok(Handles {
            unlearned: handle(&inputs.unlearned)?,
            original: handle(&inputs.original)?,
            reference: inputs.reference.as_ref().map(handle).transpose()?,
        })
    }

    /// Every role's model.
    fn models(&self) -> impl Iterator<Item = &Gpt2> {
        [&self.unlearned, &self.original]
            .into_iter()
            .chain(self.reference.as_ref())
    }

    /// Each role's gradient norms on `records` by one backward pass per record (what a
    /// parameter group beyond the embedding needs). The unlearned and original models' are
    /// independent, small-batch work that leaves a core idle: they run on two threads (the
    /// same values as one after the other).
    fn grad_norms(
        &mut self,
        records: &[Encoded],
        pad: u32,
        params: &ParamGroups,
    ) -> Result<BTreeMap<String, Vec<f64>>, CertifyError> {
        let (unlearned, original) = (&mut self.unlearned, &mut self.original);
        let (norms_u, norms_o) = std::thread::scope(|scope| {
            let other =
                scope.spawn(move || grad_norms(original, records, pad, params, &mut |_| {}));
            let mine = grad_norms(unlearned, records, pad, params, &mut |_| {});
            let theirs = other.join().unwrap_or_else(|_| {
                Err(candle_core::Error::Msg(
                    "gradient-norm thread panicked".into(),
                ))
            });
            (mine, theirs)
        });
        let mut out = BTreeMap::new();
        out.insert("unlearned".to_string(), norms_u?);
        out.insert("original".to_string(), norms_o?);
        // The retrained reference faces the same attacks on the same records: the level a
        // model that never saw the forget set reaches (`reference.mia.*`, what
        // `within_reference` bounds the unlearned model's distance to).
        if let Some(m) = self.reference.as_mut() {
            out.insert(
                "reference".to_string(),
                grad_norms(m, records, pad, params, &mut |_| {})?,
            );
        }
        Ok(out)
    }
}

impl Run<'_> {
    /// Every role's evaluation of every split, and with `norms` each role's gradient norms on
    /// the forget records, then the holdout records (from the forward passes that score them).
    fn evaluate_all(
        &mut self,
        models: &Handles,
        norms: bool,
    ) -> Result<(Evals, BTreeMap<String, Vec<f64>>), CertifyError> {
        let inputs = self.inputs;
        let full = EvalPlan {
            greedy: true,
            truth_ratio: true,
            grad_norms: false,
        };
        let mut jobs: Vec<(&str, &Gpt2, &str, EvalPlan)> = Vec::new();
        for split in inputs.splits.keys() {
            let attacked = split == "forget" || split == "holdout";
            let with_norms = |plan: EvalPlan| EvalPlan {
                grad_norms: norms && attacked,
                ..plan
            };
            jobs.push(("unlearned", &models.unlearned, split, with_norms(full)));
            // The original's greedy answers on retain and utility are what `exact_match_drop`
            // compares with (truth ratios are not needed there).
            let orig_plan = if attacked {
                full
            } else {
                EvalPlan {
                    truth_ratio: false,
                    ..full
                }
            };
            jobs.push(("original", &models.original, split, with_norms(orig_plan)));
            if let Some(r) = &models.reference {
                if attacked {
                    let plan = EvalPlan {
                        greedy: false,
                        truth_ratio: split == "forget",
                        grad_norms: false,
                    };
                    jobs.push(("reference", r, split, with_norms(plan)));
                }
            }
        }
        let mut out: Evals = BTreeMap::new();
        let mut grad_norms: BTreeMap<String, BTreeMap<String, Vec<f64>>> = BTreeMap::new();
        for (role, model, split, plan) in jobs {
            let records = &inputs.splits[split].1;
            let stage = format!("{role} on {split}");
            let p = &mut *self.progress;
            let got = self
                .eval
                .evaluate_timed(model, records, plan, &mut |n| p(&stage, n))?;
            self.eval_seconds += got.scoring_seconds;
            self.eval_tokens += got.records.iter().map(|e| e.tokens as u64).sum::<u64>();
            if plan.grad_norms {
                grad_norms
                    .entry(role.to_string())
                    .or_default()
                    .insert(split.to_string(), got.grad_norms);
            }
            out.entry(role.to_string())
                .or_default()
                .insert(split.to_string(), got.records);
        }
        // Members first, as the attacks read them.
        let grad_norms = grad_norms
            .into_iter()
            .map(|(role, mut by_split)| {
                let mut n = by_split.remove("forget").unwrap_or_default();
                n.extend(by_split.remove("holdout").unwrap_or_default());
                (role, n)
            })
            .collect();
        Ok((out, grad_norms))
    }

    fn influence(
        &mut self,
        forget: &[Encoded],
        holdout: &[Encoded],
    ) -> Result<InfluenceEvidence, CertifyError> {
        let (req, inputs) = (self.req, self.inputs);
        let params = req.params()?;
        let pad = inputs.tokenizer.pad_id();
        let mut model = inputs.unlearned.model.to_dtype(DType::F64)?;
        model
            .set_trainable(&params)
            .map_err(CertifyError::Setting)?;
        let space = Space::new(&model);
        let retain = self.eval.encode(&inputs.splits["retain"].1)?;
        let pick = |enc: &[Encoded], k: usize, stream: u64| -> Vec<Encoded> {
            seeded_subset(enc.len(), k, req.seed, stream)
                .into_iter()
                .map(|i| enc[i].clone())
                .collect()
        };
        let hess_records = pick(&retain, req.settings.hessian_records, 1);
        let hessian = Sample::new(&hess_records.iter().collect::<Vec<_>>(), pad, GRAD_ROWS);
        (self.progress)("Hessian checks", 0);
        let mut h = space.hessian(&hessian)?;
        let hvp_check = check_hvp(&mut h, req.seed)?;
        let spec = spectrum(&mut h, req.settings.lanczos_steps, req.seed)?;
        let (damping, damping_rule) = match req.settings.damping {
            Some(d) => (d, "given (--damping)".to_string()),
            None => (
                (0.01 * spec.lambda_max.max(0.0) + (-spec.lambda_min).max(0.0)).max(1e-6),
                "0.01·max(λ_max, 0) + max(−λ_min, 0), at least 1e-6 (λ from Lanczos)".to_string(),
            ),
        };
        let mut si = Vec::new();
        for (stream, enc) in [(2, forget), (3, holdout)] {
            let chosen = pick(enc, req.settings.influence_records, stream);
            let p = &mut *self.progress;
            si.push(self_influence(
                &mut h,
                &chosen.iter().collect::<Vec<_>>(),
                pad,
                damping,
                req.settings.cg_tolerance,
                req.settings.cg_max_iterations,
                &mut |n| p("self-influence", n),
            )?);
        }
        let (si_h, si_f) = (si.pop().unwrap_or_default(), si.pop().unwrap_or_default());
        drop(h);
        let full = Sample::new(&retain.iter().collect::<Vec<_>>(), pad, GRAD_ROWS);
        (self.progress)("retain gradient", 0);
        let (retain_loss, g) = space.loss_grad(&full)?;
        let gnorm = super::lanczos::norm(&g);
        let distance_bound = distance_bound(gnorm, spec.lambda_min, damping);
        drop(space);
        drop(model);
        let retain_pick = pick(&retain, forget.len(), 4);
        let orig = &inputs.original.model;
        let unl = &inputs.unlearned.model;
        let act_f = cosines(orig, unl, forget, pad)?;
        let act_r = cosines(orig, unl, &retain_pick, pad)?;
        let layers = act_f.first().map_or(0, Vec::len);
        let means = |a: &[Vec<f64>]| -> Vec<f64> {
            layer_means(a, layers).iter().map(Metric::value).collect()
        };
        let (mean_f, mean_r) = (means(&act_f), means(&act_r));
        Ok(InfluenceEvidence {
            params: req.settings.params.clone(),
            parameters: inputs.unlearned.model.count_params(|n| {
                params
                    .select(inputs.unlearned.model.config())
                    .is_ok_and(|s| s.contains(n))
            }),
            hessian_records: hessian.records,
            hessian_tokens: hessian.tokens,
            hvp_check,
            spectrum: spec,
            damping,
            damping_rule,
            self_influence_forget: si_f,
            self_influence_holdout: si_h,
            retain_records: retain.len(),
            retain_loss,
            retain_gradient_norm: gnorm,
            distance_bound,
            distance_bound_assumption: DISTANCE_ASSUMPTION.to_string(),
            activation_forget: mean_f,
            activation_retain: mean_r,
            activation_forget_records: act_f,
            activation_retain_ids: retain_pick.iter().map(|e| e.id.clone()).collect(),
            activation_retain_records: act_r,
        })
    }
}
