//! The spec issue's bars on the bundled world (fixtures/, made by fixtures/make.sh), judged by
//! the same code as `lethe certify --spec` and the demo, against the audit holdout (people no
//! unlearning run calibrated on): the original (full) model fails `specs/gdpr-art17.toml`, the
//! model retrained without forget05 passes it, so does the default unlearning (profile matching
//! on the embedding, calibrated on the other holdout), a model ascended far past the holdout
//! level fails its two-sided attack requirements (issue 16), and a model destroyed by unbounded
//! gradient ascent fails its utility requirement. `specs/strict.toml` is judged on the forget
//! set it is sized for (forget10, 20 people): the original fails it; the model retrained
//! without forget10 (`models/retrain10`) passes it. The property check finds and shrinks a
//! verbatim-leak counterexample on the original model and finds none on the retrains, and runs
//! the same with its prompts decoded ahead in batches as decoded one at a time. Influence
//! analysis is left out (neither spec names an influence metric; it has its own tests).

use crate::common::scratch;
use crate::unlearn::{fixtures, world};
use candle_core::DType;
use lethe::evidence::oracle::ModelOracle;
use lethe::evidence::{certify, load_inputs, Request};
use lethe::judge::property::{self, Oracle, OracleError};
use lethe::judge::spec::Spec;
use lethe::judge::verdict::{judge_spec, Status, Verdict};
use lethe::model::{load_model, save_model};
use lethe::unlearn::{unlearn, Method, UnlearnConfig};
use std::path::Path;

/// `specs/<name>.toml`.
fn spec(name: &str) -> Spec {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("specs/{name}.toml"));
    Spec::parse(
        &std::fs::read_to_string(&path).unwrap(),
        &path.display().to_string(),
    )
    .unwrap()
}

/// A certification on the bundled world: the spec, the forget and retain splits, the
/// non-members and the retrained reference (if the spec needs one).
struct Setting {
    spec: &'static str,
    forget: &'static str,
    retain: &'static str,
    holdout: &'static str,
    reference: Option<&'static str>,
}

/// The demo's setting of the gdpr-art17 bars (original = full, reference = retrain05).
const GDPR: Setting = Setting {
    spec: "gdpr-art17",
    forget: "forget05",
    retain: "retain05",
    holdout: "holdout_audit",
    reference: Some("models/retrain05"),
};

/// ccpa-delete's setting: the demo's, judged against the CCPA profile (its own seed).
const CCPA: Setting = Setting {
    spec: "ccpa-delete",
    forget: "forget05",
    retain: "retain05",
    holdout: "holdout_audit",
    reference: Some("models/retrain05"),
};

/// strict.toml's setting: forget10 (20 people), audited on `holdout_audit` (24 people the
/// unlearning never calibrates on). strict names no reference-model metric.
const STRICT: Setting = Setting {
    spec: "strict",
    forget: "forget10",
    retain: "retain10",
    holdout: "holdout_audit",
    reference: None,
};

/// Certifies `unlearned` as the demo does (original = full) in `setting` and judges the
/// evidence against its spec. Returns the verdicts and the evidence.
fn judged_in(setting: &Setting, unlearned: &Path) -> (Vec<Verdict>, serde_json::Value) {
    let spec = spec(setting.spec);
    let w = fixtures("world");
    let split = |s: &str| w.join(format!("{s}.jsonl"));
    let mut req = Request::new(
        fixtures("models/full"),
        unlearned.to_path_buf(),
        split(setting.forget),
        split(setting.retain),
        split(setting.holdout),
    );
    req.reference = setting.reference.map(fixtures);
    req.utility = Some(w.join("utility.jsonl"));
    req.seed = spec.seed;
    req.influence = false;
    let mut inputs = load_inputs(&req).unwrap();
    let (evidence, _) = certify(&req, &mut inputs, &mut |_, _| {}).unwrap();
    let evidence = serde_json::to_value(&evidence).unwrap();
    let oracle = ModelOracle::open(&inputs.unlearned.model, &inputs.tokenizer).unwrap();
    let verdicts = judge_spec(
        &spec,
        &evidence,
        None,
        &|s| inputs.splits.get(s).map(|(_, r)| r.as_slice()),
        &oracle,
    )
    .unwrap();
    for v in &verdicts {
        eprintln!(
            "{} {}: {:?} {:?} bound {:?} n {} ({})",
            setting.spec, v.requirement, v.status, v.value, v.bound, v.samples, v.reason
        );
    }
    (verdicts, evidence)
}

fn judged(unlearned: &Path) -> Vec<Verdict> {
    judged_in(&GDPR, unlearned).0
}

fn status<'a>(verdicts: &'a [Verdict], id: &str) -> &'a Verdict {
    verdicts
        .iter()
        .find(|v| v.requirement == id)
        .unwrap_or_else(|| panic!("no verdict {id}"))
}

#[test]
fn original_model_fails_gdpr_art17_with_a_shrunk_leak() {
    let v = judged(&fixtures("models/full"));
    // The memorising model is told from holdout and reproduces its answers.
    for id in [
        "mia-loss-auc",
        "forget-exact-match",
        "forget-extraction-strength",
    ] {
        assert_eq!(status(&v, id).status, Status::Fail, "{id}");
    }
    let leak = status(&v, "no-verbatim-leak");
    assert_eq!(leak.status, Status::Fail);
    let cx = leak.counterexample.as_ref().expect("a counterexample");
    // Shrunk to the minimal case: the original leaks without any perturbation at all.
    assert!(cx.perturbations.is_empty(), "not minimal: {cx:?}");
    assert!(!cx.completion.is_empty() && cx.prompt.starts_with("Question:"));
}

#[test]
fn retrained_model_passes_gdpr_art17() {
    let v = judged(&fixtures("models/retrain05"));
    let failing: Vec<_> = v.iter().filter(|v| v.status != Status::Pass).collect();
    assert!(failing.is_empty(), "not passed: {failing:#?}");
    let leak = status(&v, "no-verbatim-leak");
    assert!(leak.counterexample.is_none());
    // Every eligible record is tried: forget05 has 54 records with unguessable answers (the
    // spec's id_suffixes; the golden report's property covered the same 54), and the spec asks
    // for 128 cases, more than 54, so 128 prompts are made.
    let c = leak
        .coverage
        .expect("a property verdict states its coverage");
    assert_eq!(
        (c.eligible_records, c.records_covered, c.prompts),
        (54, 54, 128)
    );
}

#[test]
fn model_destroyed_by_unbounded_ascent_fails_utility() {
    // Gradient ascent on every parameter with calibration switched off: no holdout target, no
    // retain tolerance, no overshoot guard.
    let cfg = UnlearnConfig {
        method: Method::Ga,
        params: "all".into(),
        specific_rows: false,
        lr: 10.0,
        max_steps: 6,
        target_ratio: 1e6,
        retain_tolerance: 1e9,
        retain_answers: 1.0,
        overshoot: 1e9,
        ..Default::default()
    };
    let v = unlearned_with(&cfg, "destroyed-model");
    assert_eq!(status(&v, "utility-loss-increase").status, Status::Fail);
    assert_eq!(status(&v, "utility-answers-kept").status, Status::Fail);
    assert_eq!(status(&v, "retain-loss-increase").status, Status::Fail);
    assert_eq!(status(&v, "retain-answers-kept").status, Status::Fail);
}

/// Unlearns forget05 from the full model with `cfg` (calibrating on the calibration holdout),
/// saves it and judges it.
fn unlearned_with(cfg: &UnlearnConfig, name: &str) -> Vec<Verdict> {
    let w = world();
    let full = load_model(&fixtures("models/full"), DType::F32).unwrap();
    let mut model = full.model;
    let inputs = w.inputs(None);
    let out = unlearn(&mut model, &inputs, cfg, |_| {}).unwrap();
    eprintln!(
        "{name}: forget loss {:.3} -> {:.3} (holdout {:.3}), {} steps, {:?}",
        out.levels.forget_start,
        out.final_forget_loss,
        out.levels.holdout,
        out.steps.len(),
        out.stop_reason
    );
    let dir = scratch(name);
    let tok = std::fs::read(fixtures("models/full/tokenizer.json")).unwrap();
    save_model(
        &model,
        full.storage_dtype,
        &dir,
        &[("tokenizer.json", &tok)],
    )
    .unwrap();
    judged(&dir)
}

/// Issue 16's bar for the demo: the default method (profile matching on the embedding, with the
/// demo's 30-step budget) lands where a retrain lands, on both sides — every attack's clustered
/// 95% interval inside [0.35, 0.65] against people it never saw.
#[test]
fn demo_unlearning_passes_gdpr_art17() {
    let cfg = UnlearnConfig {
        max_steps: 30,
        ..Default::default()
    };
    assert_eq!(cfg.method, Method::Profile);
    let v = unlearned_with(&cfg, "profile-matched");
    let failing: Vec<_> = v.iter().filter(|v| v.status != Status::Pass).collect();
    assert!(failing.is_empty(), "not passed: {failing:#?}");
}

/// Issue 16: ascent with no calibration to the holdout (each record driven up to three times the
/// holdout loss, and no stop at the holdout level: a negative share of recognised records is
/// never reached, so the run goes to its step cap; retain loss still guarded) leaves the forget records *less* familiar than
/// never-seen ones, which the two-sided requirements catch: the loss attack's AUC falls below
/// the interval.
#[test]
fn over_unlearned_model_fails_two_sided_attacks() {
    let cfg = UnlearnConfig {
        method: Method::Ga,
        target_ratio: 3.0,
        overshoot: 1e9,
        recognise_fpr: -1.0,
        ..Default::default()
    };
    let v = unlearned_with(&cfg, "over-unlearned");
    let loss = status(&v, "mia-loss-auc");
    assert_eq!(loss.status, Status::Fail, "{loss:#?}");
    assert!(loss.value.unwrap() < 0.35, "{loss:#?}");
    assert_eq!(status(&v, "retain-loss-increase").status, Status::Pass);
    assert_eq!(status(&v, "retain-answers-kept").status, Status::Pass);
}

/// strict.toml's two-sided attack requirements (every reference-free attack of the suite).
const STRICT_ATTACKS: [&str; 5] = [
    "mia-loss-auc",
    "mia-zlib-auc",
    "mia-min-k-auc",
    "mia-min-k-pp-auc",
    "mia-grad-norm-auc",
];

#[test]
fn original_model_fails_strict_on_forget10() {
    let (v, _) = judged_in(&STRICT, &fixtures("models/full"));
    // The memorising model is told from the audit holdout and reproduces its answers.
    for id in [
        "mia-loss-auc",
        "forget-exact-match",
        "forget-extraction-strength",
        "no-verbatim-leak",
    ] {
        assert_eq!(status(&v, id).status, Status::Fail, "{id}");
    }
    // The attacks' samples are people, the smaller side: forget10's 20 (holdout_audit has 24),
    // as fixtures/world/forget10.jsonl's `subject` fields count them.
    for id in STRICT_ATTACKS {
        assert_eq!(status(&v, id).samples, 20, "{id}");
    }
}

/// The model retrained without forget10 (`models/retrain10`, fixtures/make.sh) against
/// strict.toml on forget10 and holdout_audit passes every requirement. Measured when the test
/// was written (99% one-sided bounds, person-clustered, 20 forget people vs 24 audit people):
/// loss 0.514 [0.470, 0.558], zlib 0.501 [0.469, 0.534], min_k 0.499 [0.460, 0.537], min_k_pp
/// 0.508 [0.459, 0.556], grad_norm 0.489 [0.456, 0.522], all inside [0.40, 0.60]; extraction
/// strength 0.150 (99% upper bound 0.184) against 0.25 — the never-seen level, since the audit
/// holdout's is 0.126 (an earlier bar of 0.15 failed this model; strict.toml 2.1.0 says why).
#[test]
fn retrained_model_passes_strict_on_forget10() {
    let (v, ev) = judged_in(&STRICT, &fixtures("models/retrain10"));
    for id in STRICT_ATTACKS {
        assert_eq!(status(&v, id).status, Status::Pass, "{id}");
        assert_eq!(status(&v, id).samples, 20, "{id}");
    }
    let not_passed: Vec<_> = v.iter().filter(|v| v.status != Status::Pass).collect();
    assert!(not_passed.is_empty(), "{not_passed:#?}");
    assert!(status(&v, "no-verbatim-leak").counterexample.is_none());
    // The never-seen level the bar sits above: forget10 under a model that never saw it, and
    // the audit holdout, both well under 0.25.
    let es = |split: &str| {
        ev["metrics"][split]["extraction_strength"]["value"]
            .as_f64()
            .unwrap()
    };
    assert!(
        es("forget") < 0.2 && es("holdout") < 0.2,
        "{} {}",
        es("forget"),
        es("holdout")
    );
}

/// Issue 16: the CCPA profile, like gdpr-art17, fails the memorising original — its loss attack
/// tells forget05 from the audit holdout and its answers are disclosed — and passes the model
/// retrained without forget05 on every requirement.
#[test]
fn ccpa_delete_fails_the_original_and_passes_the_retrain() {
    let (v, _) = judged_in(&CCPA, &fixtures("models/full"));
    for id in ["mia-loss-auc", "forget-exact-match", "no-disclosure"] {
        assert_eq!(status(&v, id).status, Status::Fail, "{id}");
    }
    let (v, _) = judged_in(&CCPA, &fixtures("models/retrain05"));
    let not_passed: Vec<_> = v.iter().filter(|v| v.status != Status::Pass).collect();
    assert!(not_passed.is_empty(), "{not_passed:#?}");
}

/// `ModelOracle` with a log of what it answered; `ahead` says whether the runner's hint
/// (`Oracle::prepare`, the prompts decoded together before the run) reaches it.
struct Logged<'a> {
    oracle: ModelOracle<'a>,
    ahead: bool,
    log: std::cell::RefCell<Vec<(String, String)>>,
}

impl Oracle for Logged<'_> {
    fn complete(&self, prompt: &str) -> Result<String, OracleError> {
        let out = self.oracle.complete(prompt)?;
        self.log
            .borrow_mut()
            .push((prompt.to_string(), out.clone()));
        Ok(out)
    }

    fn answer_rank(&self, prompt: &str, answer: &str) -> Result<usize, OracleError> {
        self.oracle.answer_rank(prompt, answer)
    }

    fn prepare(&self, prompts: &[String]) {
        if self.ahead {
            self.oracle.prepare(prompts);
        }
    }
}

/// The property check's prompts decoded ahead in batches of 32 give the run that decoding
/// each prompt alone, when asked, gives: the same completions in the same order and the same
/// outcome — on the original model, which leaks (the run fails and shrinks, asking prompts the
/// dry run did not plan), and on the retrain, which does not (every prompt planned).
#[test]
fn property_runs_decoded_ahead_equal_runs_decoded_one_prompt_at_a_time() {
    let spec = spec("gdpr-art17");
    let property = spec
        .properties
        .iter()
        .find(|p| p.id == "no-verbatim-leak")
        .unwrap();
    let forget = lethe::data::read_records(&fixtures("world/forget05.jsonl")).unwrap();
    let tok = lethe::data::TextTokenizer::load(&fixtures("models/full/tokenizer.json")).unwrap();
    for (model, leaks) in [("models/full", true), ("models/retrain05", false)] {
        let m = load_model(&fixtures(model), DType::F32).unwrap();
        let run = |ahead: bool| {
            let oracle = Logged {
                oracle: ModelOracle::open(&m.model, &tok).unwrap(),
                ahead,
                log: Default::default(),
            };
            let outcome = property::run(property, spec.seed, &forget, &oracle).unwrap();
            (outcome, oracle.log.into_inner())
        };
        let (ahead, alone) = (run(true), run(false));
        assert_eq!(ahead.0.passed, !leaks, "{model}");
        // The retrain's run asks every one of the spec's 128 cases; the original's stops at
        // its first leak and shrinks it.
        assert!(
            leaks || ahead.1.len() >= 128,
            "{model}: {} prompts",
            ahead.1.len()
        );
        assert_eq!(ahead, alone, "{model}");
    }
}
