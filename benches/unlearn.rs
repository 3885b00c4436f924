//! Time per unlearning step, per method and parameter group, on the bundled world (the full
//! model, forget05, retain05, holdout, the first-epoch ledger; `fixtures/`). A step is what
//! `lethe unlearn` does each kept iteration: the method's direction (forward and backward on a
//! forget batch of 32 — plus a retain batch for graddiff, the retain projection for ledger),
//! the normalised update of the selected parameters, and the evaluation that judges it (the
//! 256 watched retain records' loss and reproduced answers, `Stepper::retain_check`: by the
//! output layer alone while the step changed nothing their trunk reads, as an embedding step
//! restricted to the forget set's own rows; and the losses of all 110 forget records,
//! `Stepper::measure`). Profile matching's direction is the gradient over the whole forget set,
//! and its measure takes the next step's direction by the same passes, so its step is one
//! forward and backward over the forget set and the retain sample's check. The evaluation by
//! full passes (mean losses of the forget set and the retain sample) is also timed alone.
//! `iterative` steps exactly as `ga` does (its rounds only change which records are active),
//! so it has no row of its own.
//! Small learning rate, per-record ceiling at infinity: the model stays near the full model
//! over the samples and every record contributes to every step.

use candle_core::DType;
use criterion::{BenchmarkId, Criterion};
use lethe::data::{read_records, Encoded, TextTokenizer};
use lethe::model::{load_model, ParamGroups};
use lethe::train::Ledger;
use lethe::unlearn::objective::{apply_step, mean_loss, scored};
use lethe::unlearn::{Method, Stepper, UnlearnConfig, UnlearnInputs};
use std::path::PathBuf;
use std::time::Duration;

fn fixtures(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel)
}

fn main() {
    // The `lethe` binary's process set-up, and the steps run on rayon's pool as its commands do.
    std::env::set_var("RAYON_NUM_THREADS", "2");
    lethe::runtime::init();
    lethe::runtime::on_pool(steps);
}

fn steps() {
    let tok = TextTokenizer::load(&fixtures("world/tokenizer.json")).unwrap();
    let enc = |s: &str| -> Vec<Encoded> {
        let recs = read_records(&fixtures(&format!("world/{s}.jsonl"))).unwrap();
        tok.encode_all(&recs, true, 128).unwrap()
    };
    let (forget, retain, holdout) = (enc("forget05"), enc("retain05"), enc("holdout"));
    let ledger = Ledger::load(&fixtures("ledger")).unwrap();
    let inputs = UnlearnInputs {
        forget: &forget,
        retain: &retain,
        holdout: &holdout,
        pad: tok.pad_id(),
        ledger: Some(&ledger),
    };
    let forget_all: Vec<&Encoded> = forget.iter().collect();
    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("unlearn-step");
    group.sample_size(10).warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(8));
    let cases = [
        (Method::Profile, "embedding"),
        (Method::Ga, "embedding"),
        (Method::Ga, "all"),
        (Method::Ga, "blocks:2-3"),
        (Method::Ga, "final_norm"),
        (Method::Graddiff, "embedding"),
        (Method::Npo, "embedding"),
        (Method::Ledger, "embedding"),
    ];
    for (method, params) in cases {
        let mut model = load_model(&fixtures("models/full"), DType::F32)
            .unwrap()
            .model;
        model
            .set_trainable(&ParamGroups::parse(params).unwrap())
            .unwrap();
        let cfg = UnlearnConfig {
            method,
            params: params.into(),
            ..Default::default()
        };
        let mut stepper = Stepper::new(&model, &inputs, &cfg).unwrap();
        let (_, per) = mean_loss(&model, &forget_all, inputs.pad, cfg.batch_size).unwrap();
        stepper.calibrate(f64::INFINITY, per);
        let retain_eval: Vec<&Encoded> = stepper.retain_eval().to_vec();
        let before = scored(&model, &retain_eval, inputs.pad, cfg.batch_size, true).unwrap();
        let (mut step, mut ready) = (0, None);
        let name = format!("{method:?}").to_lowercase();
        group.bench_function(BenchmarkId::new(name, params), |b| {
            b.iter(|| {
                let d = match ready.take() {
                    Some(d) => d,
                    None => stepper.direction(&model, &forget_all, step).unwrap(),
                };
                apply_step(&model, &d, 1e-3).unwrap();
                stepper.retain_check(&model, &before.reproduced).unwrap();
                ready = stepper.measure(&model).unwrap().1;
                step += 1;
            })
        });
        if method == Method::Ga && params == "embedding" {
            group.bench_function("evaluation-only", |b| {
                b.iter(|| {
                    mean_loss(&model, &forget_all, inputs.pad, cfg.batch_size).unwrap();
                    mean_loss(&model, &retain_eval, inputs.pad, cfg.batch_size).unwrap();
                })
            });
        }
    }
    group.finish();
    c.final_summary();
}
