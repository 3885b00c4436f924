//! The bundled world and models (fixtures/, made by fixtures/make.sh): the world regenerates
//! byte for byte; for each family (GPT-2's `models/full`, `models/retrain05`, and the Llama
//! family's `models/llama-*`) the full model has memorised forget05, the model retrained without
//! forget05 has not (no better than chance), and their forget05 answer losses differ by at least
//! 3×.

use crate::common::*;
use crate::unlearn::{exact_match, fixtures, world};
use candle_core::DType;
use lethe::data::read_records;
use lethe::judge::stats::clopper_pearson_lower;
use lethe::model::load_model;
use lethe::unlearn::objective::mean_loss;
use std::collections::HashMap;

#[test]
fn lethe_world_regenerates_the_bundled_world_byte_for_byte() {
    let (a, b) = (scratch("world-a"), scratch("world-b"));
    for dir in [&a, &b] {
        let out = lethe(&["world", "--out", dir.to_str().unwrap(), "--seed", "17"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for entry in std::fs::read_dir(fixtures("world")).unwrap() {
        let name = entry.unwrap().file_name();
        let bundled = std::fs::read(fixtures("world").join(&name)).unwrap();
        assert_eq!(
            std::fs::read(a.join(&name)).unwrap(),
            bundled,
            "{name:?} differs from the bundled file"
        );
        assert_eq!(
            std::fs::read(b.join(&name)).unwrap(),
            bundled,
            "{name:?} differs between runs"
        );
    }
}

/// The exact match a model gets by always answering the most common training answer of each
/// question type (the id suffix: `phone`, `birth_place`, ...): what chance gives.
fn chance_exact_match(forget: &[lethe::data::Record]) -> f64 {
    let train = read_records(&fixtures("world/retain05.jsonl")).unwrap();
    let kind = |id: &str| id.rsplit('-').next().unwrap_or("").to_string();
    let mut counts: HashMap<String, HashMap<String, usize>> = HashMap::new();
    for r in train.iter().filter(|r| r.answer.is_some()) {
        *counts
            .entry(kind(&r.id))
            .or_default()
            .entry(r.answer.clone().unwrap())
            .or_default() += 1;
    }
    let qa: Vec<_> = forget.iter().filter(|r| r.answer.is_some()).collect();
    let best = |k: &str| {
        let c = &counts[k];
        *c.values().max().unwrap() as f64 / c.values().sum::<usize>() as f64
    };
    qa.iter().map(|r| best(&kind(&r.id))).sum::<f64>() / qa.len() as f64
}

#[test]
fn full_model_memorised_forget05_and_the_retrained_model_did_not() {
    memorised("models/full", "models/retrain05");
}

/// The same bars for the Llama-family models trained on the same world.
#[test]
fn llama_full_model_memorised_forget05_and_the_retrained_model_did_not() {
    let full = load_model(&fixtures("models/llama-full"), DType::F32).unwrap();
    assert_eq!(full.model.config().model_type(), "llama");
    assert_eq!(full.storage_dtype, DType::BF16);
    memorised("models/llama-full", "models/llama-retrain05");
}

fn memorised(full: &str, retrain: &str) {
    let w = world();
    let full = load_model(&fixtures(full), DType::F32).unwrap().model;
    let retrain = load_model(&fixtures(retrain), DType::F32).unwrap().model;
    let (em_full, em_retrain) = (
        exact_match(&full, &w.tok, &w.forget),
        exact_match(&retrain, &w.tok, &w.forget),
    );
    let chance = chance_exact_match(&w.forget);
    let qa = w.forget.iter().filter(|r| r.answer.is_some()).count() as u64;
    let hits = (em_retrain * qa as f64).round() as u64;
    let lower = clopper_pearson_lower(hits, qa, 0.95).unwrap();
    eprintln!("forget05 greedy exact match: full {em_full:.3}, retrain {em_retrain:.3} (95% lower bound {lower:.3}), chance {chance:.3}");
    assert!(
        em_full >= 0.8,
        "full model exact match {em_full} (bar: at least 0.8)"
    );
    assert!(
        lower <= chance,
        "retrained model exact match {em_retrain} is above chance {chance}"
    );
    let refs: Vec<_> = w.enc[0].iter().collect();
    let (lf, _) = mean_loss(&full, &refs, w.tok.pad_id(), 64).unwrap();
    let (lr, _) = mean_loss(&retrain, &refs, w.tok.pad_id(), 64).unwrap();
    eprintln!(
        "forget05 mean answer loss: full {lf:.4}, retrain {lr:.4}, ratio {:.1}",
        lr / lf
    );
    assert!(
        lr >= 3.0 * lf,
        "answer loss full {lf} vs retrain {lr}: less than a factor of 3"
    );
}
