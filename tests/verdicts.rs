//! The spec issue's bars on the bundled world (fixtures/, made by fixtures/make.sh), judged by
//! the same code as `lethe certify --spec` and the demo, against the audit holdout (people no
//! unlearning run calibrated on): the original (full) model fails `specs/gdpr-art17.toml`, the
//! model retrained without forget05 passes it, so does the default unlearning (profile matching
//! on the embedding, calibrated on the other holdout), a model ascended far past the holdout
//! level fails its two-sided attack requirements (issue 16), and a model destroyed by unbounded
//! gradient ascent fails its utility requirement. The property check finds and
//! shrinks a verbatim-leak counterexample on the original model and finds none on the retrain.
//! Influence analysis is left out (the spec names no influence metric; it has its own tests).

use crate::common::scratch;
use crate::unlearn::{fixtures, world};
use candle_core::DType;
use lethe::evidence::oracle::ModelOracle;
use lethe::evidence::{certify, load_inputs, Request};
use lethe::judge::spec::Spec;
use lethe::judge::verdict::{judge_spec, Status, Verdict};
use lethe::model::{load_model, save_model};
use lethe::unlearn::{unlearn, Method, UnlearnConfig, UnlearnInputs};
use std::path::Path;

fn gdpr() -> Spec {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("specs/gdpr-art17.toml");
    Spec::parse(
        &std::fs::read_to_string(&path).unwrap(),
        &path.display().to_string(),
    )
    .unwrap()
}

/// Certifies `unlearned` as the demo does (original = full, reference = retrain05) and judges
/// the evidence against gdpr-art17.
fn judged(unlearned: &Path) -> Vec<Verdict> {
    let spec = gdpr();
    let w = fixtures("world");
    let mut req = Request::new(
        fixtures("models/full"),
        unlearned.to_path_buf(),
        w.join("forget05.jsonl"),
        w.join("retain05.jsonl"),
        w.join("holdout_audit.jsonl"),
    );
    req.reference = Some(fixtures("models/retrain05"));
    req.utility = Some(w.join("utility.jsonl"));
    req.seed = spec.seed;
    req.influence = false;
    let mut inputs = load_inputs(&req).unwrap();
    let (evidence, _) = certify(&req, &mut inputs, &mut |_, _| {}).unwrap();
    let oracle = ModelOracle::open(&inputs.unlearned.model, &inputs.tokenizer).unwrap();
    let verdicts = judge_spec(
        &spec,
        &serde_json::to_value(&evidence).unwrap(),
        None,
        &|s| inputs.splits.get(s).map(|(_, r)| r.as_slice()),
        &oracle,
    )
    .unwrap();
    for v in &verdicts {
        eprintln!(
            "{}: {:?} {:?} bound {:?} ({})",
            v.requirement, v.status, v.value, v.bound, v.reason
        );
    }
    verdicts
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
    assert!(status(&v, "no-verbatim-leak").counterexample.is_none());
}

#[test]
fn model_destroyed_by_unbounded_ascent_fails_utility() {
    // Gradient ascent on every parameter with calibration switched off: no holdout target, no
    // retain tolerance, no overshoot guard.
    let w = world();
    let full = load_model(&fixtures("models/full"), DType::F32).unwrap();
    let mut model = full.model;
    let inputs = UnlearnInputs {
        forget: &w.enc[0],
        retain: &w.enc[1],
        holdout: &w.enc[2],
        pad: w.tok.pad_id(),
        ledger: None,
    };
    let cfg = UnlearnConfig {
        method: Method::Ga,
        params: "all".into(),
        specific_rows: false,
        lr: 10.0,
        max_steps: 6,
        target_ratio: 1e6,
        retain_tolerance: 1e9,
        overshoot: 1e9,
        ..Default::default()
    };
    unlearn(&mut model, &inputs, &cfg, |_| {}).unwrap();
    let dir = scratch("destroyed-model");
    let tok = std::fs::read(fixtures("models/full/tokenizer.json")).unwrap();
    save_model(&model, full.storage_dtype, &dir, Some(&tok)).unwrap();
    let v = judged(&dir);
    assert_eq!(status(&v, "utility-loss-ratio").status, Status::Fail);
    assert_eq!(status(&v, "retain-loss-ratio").status, Status::Fail);
}

/// Unlearns forget05 from the full model with `cfg` (calibrating on the calibration holdout),
/// saves it and judges it.
fn unlearned_with(cfg: &UnlearnConfig, name: &str) -> Vec<Verdict> {
    let w = world();
    let full = load_model(&fixtures("models/full"), DType::F32).unwrap();
    let mut model = full.model;
    let inputs = UnlearnInputs {
        forget: &w.enc[0],
        retain: &w.enc[1],
        holdout: &w.enc[2],
        pad: w.tok.pad_id(),
        ledger: None,
    };
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
    save_model(&model, full.storage_dtype, &dir, Some(&tok)).unwrap();
    judged(&dir)
}

/// Issue 16's bar for the demo: the default method lands where a retrain lands, on both sides —
/// every attack's clustered 95% interval inside [0.35, 0.65] against people it never saw.
#[test]
fn default_unlearning_passes_gdpr_art17() {
    let v = unlearned_with(&UnlearnConfig::default(), "profile-matched");
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
    assert_eq!(status(&v, "retain-loss-ratio").status, Status::Pass);
}
