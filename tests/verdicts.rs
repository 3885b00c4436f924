//! The spec issue's bars on the bundled world (fixtures/, made by fixtures/make.sh), judged by
//! the same code as `lethe certify --spec` and the demo: the original (full) model fails
//! `specs/gdpr-art17.toml`, the model retrained without forget05 passes it, and a model destroyed
//! by unbounded gradient ascent fails its utility requirement. The property check finds and
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
        w.join("holdout.jsonl"),
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
