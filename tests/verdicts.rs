//! The spec issue's bars on the bundled world (fixtures/, made by fixtures/make.sh), judged by
//! the same code as `lethe certify --spec` and the demo: the original (full) model fails
//! `specs/gdpr-art17.toml`, the model retrained without forget05 passes it, and a model destroyed
//! by unbounded gradient ascent fails its utility requirement. `specs/strict.toml` is judged on
//! the forget set it is sized for (forget10, 20 people) with the audit holdout: the original
//! fails it; the model retrained without forget10 (`models/retrain10`) passes every two-sided
//! attack requirement and the leak property, and fails only an extraction-strength threshold set
//! at the never-seen level (see its test). The property check finds and shrinks a verbatim-leak
//! counterexample on the original model and finds none on the retrains. Influence analysis is
//! left out (neither spec names an influence metric; it has its own tests).

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
    holdout: "holdout",
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
/// strict.toml on forget10 and holdout_audit. Measured at this commit (99% one-sided bounds,
/// person-clustered, 20 forget people vs 24 audit people): loss 0.514 [0.470, 0.558], zlib 0.501
/// [0.469, 0.534], min_k 0.499 [0.460, 0.537], min_k_pp 0.508 [0.459, 0.556], grad_norm 0.489
/// [0.456, 0.522] — every two-sided attack requirement passes inside [0.40, 0.60]. So does every
/// other requirement and the leak property, except `forget-extraction-strength`: the retrain
/// extracts 0.150 of the forget answers (99% upper bound 0.184) and 0.126 of the audit holdout's
/// (both never seen: predictable tails such as a date's year), against strict's threshold 0.15.
/// That threshold sits at the never-seen level, so no model that never saw the data can pass it
/// with a 99% bound; the spec, not the model, is what this test pins (issue 16: a bar a retrain
/// cannot meet is not a test of erasure). The threshold was left as written, not fitted to this
/// model.
#[test]
fn retrained_model_passes_strict_on_forget10_but_for_extraction_strength() {
    let (v, ev) = judged_in(&STRICT, &fixtures("models/retrain10"));
    for id in STRICT_ATTACKS {
        assert_eq!(status(&v, id).status, Status::Pass, "{id}");
        assert_eq!(status(&v, id).samples, 20, "{id}");
    }
    let not_passed: Vec<(&str, Status)> = v
        .iter()
        .filter(|v| v.status != Status::Pass)
        .map(|v| (v.requirement.as_str(), v.status))
        .collect();
    assert_eq!(
        not_passed,
        [("forget-extraction-strength", Status::Fail)],
        "{v:#?}"
    );
    assert!(status(&v, "no-verbatim-leak").counterexample.is_none());
    // The failing estimate is the never-seen level: the evidence's forget and audit-holdout
    // extraction strengths, both of records retrain10 never trained on, lie on either side of
    // strict's 0.15 (specs/strict.toml).
    let es = |split: &str| {
        ev["metrics"][split]["extraction_strength"]["value"]
            .as_f64()
            .unwrap()
    };
    assert!(
        es("forget") > 0.15 && es("holdout") < 0.15,
        "{} {}",
        es("forget"),
        es("holdout")
    );
}
