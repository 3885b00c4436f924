//! Unlearning forget05 from the bundled full model (fixtures/, made by the commands in
//! fixtures/make.sh), and for the first-epoch ledger from the bundled fine-tuned model, the
//! seed paper's setting. The bar of the unlearning issue: every method brings greedy exact match
//! on the forget questions from the model's level to at most 10% while the retain loss rises
//! by at most 10%. Also the bad inputs the issue names.

use candle_core::DType;
use lethe::data::{read_records, Encoded, Record, TextTokenizer};
use lethe::evidence::oracle::{exact_match_rate, ModelOracle};
use lethe::model::{load_model, Gpt2};
use lethe::train::Ledger;
use lethe::unlearn::objective::mean_loss;
use lethe::unlearn::{unlearn, Method, UnlearnConfig, UnlearnInputs};
use std::path::PathBuf;

pub fn fixtures(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel)
}

pub struct World {
    pub tok: TextTokenizer,
    pub forget: Vec<Record>,
    pub enc: [Vec<Encoded>; 3],
}

/// forget05, retain05 and the calibration holdout of the bundled world (the non-members the
/// unlearning may look at; the audit holdout is kept for the certifier), encoded answer-only.
pub fn world() -> World {
    let tok = TextTokenizer::load(&fixtures("world/tokenizer.json")).unwrap();
    let read = |s: &str| read_records(&fixtures(&format!("world/{s}.jsonl"))).unwrap();
    let enc = |r: &[Record]| tok.encode_all(r, true, 128).unwrap();
    let forget = read("forget05");
    let e = [
        enc(&forget),
        enc(&read("retain05")),
        enc(&read("holdout_calibration")),
    ];
    World {
        tok,
        forget,
        enc: e,
    }
}

impl World {
    /// The unlearning inputs of this world: forget05, retain05, the calibration holdout.
    pub fn inputs<'a>(&'a self, ledger: Option<&'a Ledger>) -> UnlearnInputs<'a> {
        UnlearnInputs {
            forget: &self.enc[0],
            retain: &self.enc[1],
            holdout: &self.enc[2],
            pad: self.tok.pad_id(),
            ledger,
        }
    }
}

/// Fraction of question–answer records whose greedy continuation reproduces the answer.
pub fn exact_match(model: &Gpt2, tok: &TextTokenizer, records: &[Record]) -> f64 {
    exact_match_rate(&ModelOracle::open(model, tok).unwrap(), records).unwrap()
}

/// Mean answer loss on a fixed sample of 500 retain records (not the sample the engine watches).
fn retain_loss(model: &Gpt2, w: &World) -> f64 {
    let sample: Vec<&Encoded> = w.enc[1].iter().rev().step_by(4).take(500).collect();
    mean_loss(model, &sample, w.tok.pad_id(), 64).unwrap().0
}

/// Unlearns forget05 from the bundled model in `dir` (replaying `ledger` for the ledger method):
/// exact match and retain loss before and after.
fn run(method: Method, params: &str, dir: &str, ledger: &str) -> (f64, f64, f64, f64) {
    let w = world();
    let full = load_model(&fixtures(dir), DType::F32).unwrap();
    let ledger = Ledger::load(&fixtures(ledger)).unwrap();
    let em0 = exact_match(&full.model, &w.tok, &w.forget);
    let r0 = retain_loss(&full.model, &w);
    let mut model = full.model;
    let inputs = w.inputs(Some(&ledger));
    let cfg = UnlearnConfig {
        method,
        params: params.into(),
        ..Default::default()
    };
    let out = unlearn(&mut model, &inputs, &cfg, |_| {}).unwrap();
    let em1 = exact_match(&model, &w.tok, &w.forget);
    let r1 = retain_loss(&model, &w);
    eprintln!("{method:?} on {params} of {dir}: exact match {em0:.3} -> {em1:.3}, retain loss {r0:.4} -> {r1:.4}, {} steps, stop {:?}", out.steps.len(), out.stop_reason);
    (em0, em1, r0, r1)
}

fn assert_bar(method: Method) {
    assert_bar_on(method, "models/full", "ledger");
}

fn assert_bar_on(method: Method, model: &str, ledger: &str) {
    let (em0, em1, r0, r1) = run(method, "embedding", model, ledger);
    assert!(
        em0 >= 0.8,
        "{model} should have memorised forget05 (exact match {em0})"
    );
    assert!(
        em1 <= 0.10,
        "{method:?}: exact match {em1} after unlearning (bar: at most 10%)"
    );
    assert!(
        r1 <= 1.10 * r0,
        "{method:?}: retain loss rose from {r0} to {r1} (bar: at most 10%)"
    );
}

#[test]
fn profile_matching_meets_the_bar() {
    assert_bar(Method::Profile);
}

#[test]
fn gradient_ascent_meets_the_bar() {
    assert_bar(Method::Ga);
}

/// The seed paper's setting: the records are learned by fine-tuning a model that already knows
/// the language (`models/finetuned`: `models/retrain05` fine-tuned on the full corpus), and the
/// ledger holds their gradients from the first fine-tuning epoch (`ledger-finetuned`; both made
/// by fixtures/make.sh). On the model trained from scratch, `models/full`, the first epoch's
/// gradients were taken near random initialisation and are almost orthogonal to the records'
/// gradients at the finished model (mean cosine 0.015, against 0.205 here; `Ledger::alignment`):
/// replaying them there stops at exact match 0.21 (reports/seed-paper/table.md).
#[test]
fn first_epoch_ledger_meets_the_bar() {
    assert_bar_on(Method::Ledger, "models/finetuned", "ledger-finetuned");
}

#[test]
fn gradient_difference_meets_the_bar() {
    assert_bar(Method::Graddiff);
}

#[test]
fn npo_meets_the_bar() {
    assert_bar(Method::Npo);
}

#[test]
fn iterative_meets_the_bar() {
    assert_bar(Method::Iterative);
}

/// The retain guard's "answer reproduced" flag (issue 17) is teacher-forced greedy: every scored
/// answer token is the most likely next token. Checked against the full logits of the same
/// records, and against greedy decoding itself: a record whose flag is set is reproduced by
/// `reproduces` (greedy can only differ after the answer, which is not judged).
#[test]
fn reproduced_flags_are_teacher_forced_greedy() {
    use lethe::data::Batch;
    use lethe::unlearn::objective::scored;
    let w = world();
    let model = load_model(&fixtures("models/full"), DType::F32)
        .unwrap()
        .model;
    let pad = w.tok.pad_id();
    let recs: Vec<&Encoded> = w.enc[1].iter().take(48).collect();
    let s = scored(&model, &recs, pad, 16, true).unwrap();
    assert_eq!(s.reproduced.len(), recs.len());
    let (mean, _) = mean_loss(&model, &recs, pad, 16).unwrap();
    assert!((s.mean - mean).abs() < 1e-12);
    let mut by_hand = Vec::new();
    for e in &recs {
        let batch = Batch::new(&[*e], pad);
        let (ids, att) = model.batch_tensors(&batch).unwrap();
        let best = model
            .forward(&ids, &att)
            .unwrap()
            .argmax(candle_core::D::Minus1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<u32>()
            .unwrap();
        let width = batch.cols - 1;
        by_hand.push(
            (0..width)
                .filter(|&p| batch.target_weight[p] != 0.0)
                .all(|p| best[p] == batch.ids[p + 1]),
        );
    }
    assert_eq!(s.reproduced, by_hand);
    assert!(by_hand.iter().any(|&h| h) && by_hand.iter().any(|&h| !h));
    let retain = read_records(&fixtures("world/retain05.jsonl")).unwrap();
    let oracle = ModelOracle::open(&model, &w.tok).unwrap();
    for (rec, hit) in retain.iter().take(48).zip(&s.reproduced) {
        if let (true, Some(p), Some(a)) = (*hit, &rec.prompt, &rec.answer) {
            use lethe::judge::property::Oracle;
            let greedy = oracle.complete(p).unwrap();
            assert!(
                greedy.trim_start().starts_with(a.trim()),
                "{}: {greedy:?}",
                rec.id
            );
        }
    }
}

/// The bundled full model, its embedding trainable (what the unlearning defaults change).
fn full_model_on_embedding() -> Gpt2 {
    let mut model = load_model(&fixtures("models/full"), DType::F32)
        .unwrap()
        .model;
    model
        .set_trainable(&lethe::model::ParamGroups::parse("embedding").unwrap())
        .unwrap();
    model
}

/// Multiplies the bundled GPT-2 model's token-embedding rows `rows` by `factor`.
fn scale_wte_rows(model: &Gpt2, rows: impl IntoIterator<Item = usize>, factor: f32) {
    let wte = model.get("transformer.wte.weight").unwrap();
    let mut m = wte.to_vec2::<f32>().unwrap();
    for r in rows {
        m[r].iter_mut().for_each(|x| *x *= factor);
    }
    let (v, d) = (m.len(), m[0].len());
    let flat: Vec<f32> = m.into_iter().flatten().collect();
    model
        .set_param(
            "transformer.wte.weight",
            &candle_core::Tensor::from_vec(flat, (v, d), model.device()).unwrap(),
        )
        .unwrap();
}

/// Profile matching's repair (issue 17): after a step that raised the watched retain loss past
/// the guard, descent steps on *other* retain records bring it back under the guard. The damage
/// here is made by hand: the embedding rows the run may change (the forget people's own tokens)
/// lengthened threefold, which through the tied output layer raises their logits at every retain
/// position. With `repair_steps: 0` nothing is tried and the damage stays.
#[test]
fn a_step_that_costs_the_retain_records_is_repaired_on_other_retain_records() {
    use lethe::unlearn::calibrate::{Levels, Verdict};
    use lethe::unlearn::Stepper;
    let w = world();
    let inputs = w.inputs(None);
    for repair_steps in [0, 3] {
        let model = full_model_on_embedding();
        let cfg = UnlearnConfig {
            repair_steps,
            ..Default::default()
        };
        let mut stepper = Stepper::new(&model, &inputs, &cfg).unwrap();
        let sample: Vec<&Encoded> = stepper.retain_eval().to_vec();
        let start =
            lethe::unlearn::objective::scored(&model, &sample, inputs.pad, 32, true).unwrap();
        let levels = Levels {
            forget_start: 0.0,
            retain_start: start.mean,
            retain_reproduced: start.reproduced.iter().filter(|&&h| h).count(),
            holdout: 5.0,
            target: 5.0,
            recognition: 1.0,
        };
        // Lengthen the rows of tokens found in forget05 and in no retain record.
        let in_retain: std::collections::BTreeSet<u32> = w.enc[1]
            .iter()
            .flat_map(|e| e.ids.iter().copied())
            .collect();
        let own: std::collections::BTreeSet<u32> = w.enc[0]
            .iter()
            .flat_map(|e| e.ids.iter().copied())
            .filter(|t| !in_retain.contains(t))
            .collect();
        assert!(own.len() >= 10, "{} forget-only tokens", own.len());
        scale_wte_rows(&model, own.iter().map(|&t| t as usize), 3.0);
        let (damaged, lost) = stepper.retain_check(&model, &start.reproduced).unwrap();
        let guard = cfg.retain_guard();
        assert_eq!(
            levels.judge(0.0, damaged, lost, guard, f64::INFINITY),
            Verdict::UndoRetain,
            "the damage must trip the guard: retain loss {} -> {damaged}",
            start.mean
        );
        let (after, lost_after, kept) = stepper
            .repair(
                &model,
                &start.reproduced,
                &levels,
                &[],
                1.0,
                (damaged, lost),
            )
            .unwrap();
        eprintln!(
            "repair_steps {repair_steps}: retain loss {:.4} -> damaged {damaged:.4} ({lost} answers lost) -> {after:.4} ({lost_after} lost), {kept} kept",
            start.mean
        );
        if repair_steps == 0 {
            assert_eq!((after, kept), (damaged, 0));
        } else {
            assert!(kept >= 1, "no repair step was kept");
            assert!(
                after < damaged - 0.5 * (damaged - start.mean),
                "repair recovered less than half the damage: {} -> {damaged} -> {after}",
                start.mean
            );
        }
    }
}

/// Profile matching measures the forget set and takes the next step's direction by the same
/// forward passes (`Stepper::measure`): its losses are the forward-only losses bit for bit (a
/// scored backward reads a scoring pass's log-probs), and its direction is the one
/// `Stepper::direction` takes at those parameters, bit for bit, so a kept step's measure can
/// serve as the next step's direction. Gradient ascent's measure takes no direction (its
/// direction depends on the step, not only on the parameters).
#[test]
fn profile_matching_measures_the_losses_and_the_next_direction_in_one_pass() {
    use lethe::unlearn::Stepper;
    let w = world();
    let inputs = w.inputs(None);
    let model = full_model_on_embedding();
    let cfg = UnlearnConfig::default();
    assert_eq!(cfg.method, Method::Profile);
    let mut stepper = Stepper::new(&model, &inputs, &cfg).unwrap();
    let (measured, direction) = stepper.measure(&model).unwrap();
    let alone = stepper.losses(&model).unwrap();
    assert_eq!(measured.tokens.len(), w.enc[0].len());
    assert_eq!(measured.tokens, alone.tokens);
    assert_eq!(measured.per_record, alone.per_record);
    assert_eq!(measured.mean.to_bits(), alone.mean.to_bits());
    let direction = direction.expect("profile matching's measure takes the next direction");
    let fresh = stepper.direction(&model, &[], 0).unwrap();
    assert_eq!(
        direction.keys().collect::<Vec<_>>(),
        fresh.keys().collect::<Vec<_>>()
    );
    let flat = |t: &candle_core::Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for (name, d) in &fresh {
        let got = flat(&direction[name]);
        assert!(got.iter().any(|&x| x != 0.0), "{name}: an empty direction");
        assert_eq!(got, flat(d), "{name}");
    }
    let ga = UnlearnConfig {
        method: Method::Ga,
        ..Default::default()
    };
    let (losses, none) = Stepper::new(&model, &inputs, &ga)
        .unwrap()
        .measure(&model)
        .unwrap();
    assert!(none.is_none());
    assert_eq!(losses.tokens, alone.tokens);
}

/// The retain sample a run watches is scored again by the output layer alone while nothing its
/// trunk reads has changed (`KeptSample`, `TrunkReads`, what `Stepper::retain_check` does after
/// every step): after a change to embedding rows the sample never reads (which the tied output
/// layer still reads at every position), the rescoring is a fresh pass's scores bit for bit; a
/// change to a row it reads is seen, and a trainable block leaves nothing to keep.
#[test]
fn a_kept_sample_is_scored_again_by_the_output_layer_alone_bit_for_bit() {
    use lethe::model::ParamGroups;
    use lethe::unlearn::objective::{scored, KeptSample, Scored};
    use lethe::unlearn::TrunkReads;
    let w = world();
    let pad = w.tok.pad_id();
    let mut model = full_model_on_embedding();
    let sample: Vec<&Encoded> = w.enc[1].iter().take(96).collect();
    let same = |a: &Scored, b: &Scored| {
        assert_eq!(a.mean.to_bits(), b.mean.to_bits());
        assert_eq!(a.per_record, b.per_record);
        assert_eq!(a.reproduced, b.reproduced);
    };
    let (mut kept, first) = KeptSample::new(&model, &sample, pad, 32).unwrap();
    same(&first, &scored(&model, &sample, pad, 32, true).unwrap());
    let reads = TrunkReads::of(&model, &sample, pad).unwrap().unwrap();
    let read: std::collections::BTreeSet<u32> = sample
        .iter()
        .flat_map(|e| e.ids.iter().copied())
        .chain([pad])
        .collect();
    // Rows of the forget set's tokens the sample never reads.
    let unread: Vec<usize> = w.enc[0]
        .iter()
        .flat_map(|e| e.ids.iter().copied())
        .filter(|t| !read.contains(t))
        .map(|t| t as usize)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(unread.len() >= 10, "{} unread rows", unread.len());
    scale_wte_rows(&model, unread, 1.5);
    assert!(reads.unchanged(&model).unwrap());
    let again = kept.rescore(&model).unwrap();
    let fresh = scored(&model, &sample, pad, 32, true).unwrap();
    same(&again, &fresh);
    assert_ne!(
        fresh.mean, first.mean,
        "the tied output layer reads the changed rows at every position"
    );
    // A row the sample reads.
    scale_wte_rows(&model, [*read.iter().next_back().unwrap() as usize], 1.5);
    assert!(!reads.unchanged(&model).unwrap());
    // A trainable block: every record's trunk reads it.
    model
        .set_trainable(&ParamGroups::parse("all").unwrap())
        .unwrap();
    assert!(TrunkReads::of(&model, &sample, pad).unwrap().is_none());
}

#[test]
fn bad_unlearning_inputs_are_refused_clearly() {
    let w = world();
    let full = load_model(&fixtures("models/full"), DType::F32).unwrap();
    let mut model = full.model;
    let empty: Vec<Encoded> = Vec::new();
    let inputs = UnlearnInputs {
        forget: &empty,
        retain: &w.enc[1],
        holdout: &w.enc[2],
        pad: 0,
        ledger: None,
    };
    let err = unlearn(&mut model, &inputs, &UnlearnConfig::default(), |_| {}).unwrap_err();
    assert!(err.to_string().contains("forget set is empty"), "{err}");
    let inputs = UnlearnInputs {
        forget: &w.enc[0],
        retain: &w.enc[1],
        holdout: &w.enc[2],
        pad: 0,
        ledger: None,
    };
    let cfg = UnlearnConfig {
        params: "embeding".into(),
        ..Default::default()
    };
    let err = unlearn(&mut model, &inputs, &cfg, |_| {}).unwrap_err();
    assert!(
        err.to_string()
            .contains("unknown parameter group \"embeding\""),
        "{err}"
    );
    // A ledger recorded for another model is refused by digest.
    let ledger = Ledger::load(&fixtures("ledger")).unwrap();
    let err = ledger.check_model(&"0".repeat(64)).unwrap_err();
    assert!(err.to_string().contains("belongs to the model"), "{err}");
    // A forget record longer than the model's context is an error naming it.
    let long = Record {
        id: "too-long".into(),
        text: "word ".repeat(400),
        prompt: None,
        answer: None,
        subject: None,
        perturbed: vec![],
    };
    let err = w.tok.encode(&long, true, 128).unwrap_err();
    assert!(
        err.to_string().contains("too-long") && err.to_string().contains("context"),
        "{err}"
    );
}

/// `lethe unlearn --method ledger` measures, before it starts, how well the ledger's
/// first-epoch directions still describe the forget records (`Ledger::alignment`), records it
/// in unlearn.json and warns when they no longer do. Expected values: the from-scratch ledger
/// at the full model and the fine-tuning ledger at the fine-tuned model, as measured by
/// `lethe experiment seed-paper` (0.015 and 0.205; reports/seed-paper/table.md).
#[test]
fn unlearn_reports_the_ledgers_alignment_and_warns_when_it_is_lost() {
    for (model, ledger, want, warns) in [
        ("models/full", "ledger", 0.015, true),
        ("models/finetuned", "ledger-finetuned", 0.205, false),
    ] {
        let out = crate::common::scratch(&format!("unlearn-alignment-{warns}"));
        let path = |rel: &str| fixtures(rel).to_str().unwrap().to_string();
        let run = crate::common::lethe(&[
            "unlearn",
            &path(model),
            "--forget",
            &path("world/forget05.jsonl"),
            "--retain",
            &path("world/retain05.jsonl"),
            "--holdout",
            &path("world/holdout.jsonl"),
            "--method",
            "ledger",
            "--ledger",
            &path(ledger),
            "--max-steps",
            "1",
            "--out",
            out.to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(0), "{err}");
        let record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("unlearn.json")).unwrap()).unwrap();
        let a = &record["ledger_alignment"];
        assert_eq!(a["records"], 110);
        let got = a["mean_cosine"].as_f64().unwrap();
        assert!((got - want).abs() < 0.005, "{model}: mean cosine {got}");
        assert_eq!(err.contains("nearly orthogonal"), warns, "{err}");
    }
}
