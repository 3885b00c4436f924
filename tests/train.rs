//! Training and the gradient ledger on a small slice of a generated world: the loss falls, and a
//! ledger entry equals the record's gradient recomputed from the saved parameters of that moment.

use crate::common::*;
use candle_core::DType;
use lethe::data::{Encoded, Record, TextTokenizer};
use lethe::model::{init::random_model, load_model, Gpt2Config, ParamGroups};
use lethe::train::{
    ledger::record_gradient, train, Ledger, LedgerEpochs, LedgerRecorder, TrainConfig,
};
use lethe::world::{self, bpe};
use std::path::Path;

/// A small world (50 people), its tokenizer, and the first `n` training records encoded.
fn slice(dir: &Path, n: usize) -> (TextTokenizer, Vec<u8>, Vec<Encoded>, Vec<Record>) {
    let w = world::generate(&world::WorldConfig {
        people: 50,
        holdout_people: 10,
        ..Default::default()
    })
    .unwrap();
    let tok = bpe::train_bpe(&w.tokenizer_corpus(), 2048).unwrap();
    let path = dir.join("tokenizer.json");
    bpe::write_tokenizer(&tok, &path).unwrap();
    let tok = TextTokenizer::load(&path).unwrap();
    let recs: Vec<Record> = w.train_full.into_iter().take(n).collect();
    let enc = recs
        .iter()
        .map(|r| tok.encode(r, false, 64).unwrap())
        .collect();
    (tok, std::fs::read(&path).unwrap(), enc, recs)
}

fn small_cfg(tok: &TextTokenizer) -> Gpt2Config {
    Gpt2Config::new(tok.vocab_size(), 64, 32, 2, 2)
}

#[test]
fn training_on_a_slice_lowers_the_loss_and_checkpoints() {
    let dir = scratch("train-loss");
    let (tok, tok_json, data, _) = slice(&dir, 24);
    let mut model = random_model(&small_cfg(&tok), 5, DType::F32).unwrap();
    let cfg = TrainConfig {
        epochs: 15,
        batch_size: 8,
        lr: 1e-2,
        warmup_steps: 3,
        seed: 5,
        ..Default::default()
    };
    let out = dir.join("model");
    let logs = train(
        &mut model,
        &data,
        &cfg,
        tok.pad_id(),
        &out,
        &[("tokenizer.json", tok_json.as_slice())],
        None,
        |_| {},
    )
    .unwrap();
    let (first, last) = (logs[0].mean_loss, logs.last().unwrap().mean_loss);
    assert!(last < 0.7 * first, "loss went from {first} to {last}");
    // The checkpoint on disk is the trained model.
    let saved = load_model(&out, DType::F32).unwrap().model;
    for (name, t) in model.tensors() {
        assert_eq!(to_f64(&t), to_f64(&saved.get(&name).unwrap()), "{name}");
    }
}

#[test]
fn ledger_entry_equals_the_gradient_recomputed_at_the_saved_parameters() {
    let dir = scratch("ledger");
    let (tok, tok_json, data, _) = slice(&dir, 12);
    let cfg = TrainConfig {
        epochs: 2,
        batch_size: 12,
        lr: 3e-3,
        warmup_steps: 10,
        seed: 9,
        ..Default::default()
    };
    // Run B: two epochs of one batch each, recording every epoch's gradients.
    let mut b = random_model(&small_cfg(&tok), 9, DType::F32).unwrap();
    let mut rec = LedgerRecorder::new(
        ParamGroups::parse("embedding").unwrap(),
        LedgerEpochs::All,
        None,
    );
    train(
        &mut b,
        &data,
        &cfg,
        tok.pad_id(),
        &dir.join("b"),
        &[("tokenizer.json", tok_json.as_slice())],
        Some(&mut rec),
        |_| {},
    )
    .unwrap();
    let index = rec.save(&dir.join("ledger"), "digest-of-b").unwrap();
    assert_eq!(index.entries.len(), 2 * data.len());
    // Run A: the same seed and data for one epoch; its checkpoint holds the parameters that run
    // B had when it recorded its epoch-1 gradients (the warm-up makes step 0's rate the same).
    let mut a = random_model(&small_cfg(&tok), 9, DType::F32).unwrap();
    train(
        &mut a,
        &data,
        &TrainConfig {
            epochs: 1,
            ..cfg.clone()
        },
        tok.pad_id(),
        &dir.join("a"),
        &[("tokenizer.json", tok_json.as_slice())],
        None,
        |_| {},
    )
    .unwrap();
    let mut at_saved = load_model(&dir.join("a"), DType::F32).unwrap().model;
    let ledger = Ledger::load(&dir.join("ledger")).unwrap();
    assert!(ledger.check_model("digest-of-b").is_ok());
    assert!(ledger
        .check_model("another")
        .unwrap_err()
        .to_string()
        .contains("another"));
    for e in data.iter().take(4) {
        let entry = ledger
            .entries_of(&e.id)
            .into_iter()
            .find(|x| x.epoch == 1)
            .unwrap();
        let stored = ledger.dense(entry, &at_saved).unwrap();
        let groups = ParamGroups::parse("embedding").unwrap();
        let (_, fresh) = record_gradient(&mut at_saved, e, tok.pad_id(), &groups).unwrap();
        assert_eq!(stored.len(), 2);
        for (name, g) in fresh {
            // f32 throughout; the only difference is summation order, far below 1e-5.
            let err = rel_err(&stored[&name], &g);
            assert!(err < 1e-5, "{}: {name} differs by {err:e}", e.id);
        }
        // wte's entry touches only the rows of the record's tokens (input side of the tied layer).
        assert!(entry.bytes < 4 * (e.ids.len() + e.ids.len()) * 32 + 4 * e.ids.len());
    }
    // Alignment: the epoch-1 entries were recorded at these parameters, so each points exactly
    // along the record's gradient now (cosine 1 up to f32 summation order); the epoch-0
    // entries were recorded one optimiser step earlier, so they point elsewhere, if not far.
    let now = ledger
        .alignment(&mut at_saved, &data, tok.pad_id(), 1)
        .unwrap();
    assert!(now.iter().all(|c| (c - 1.0).abs() < 1e-5), "{now:?}");
    let before = ledger
        .alignment(&mut at_saved, &data, tok.pad_id(), 0)
        .unwrap();
    assert!(
        before.iter().all(|&c| c < 1.0 - 1e-4 && c > 0.5),
        "{before:?}"
    );
    let err = ledger
        .alignment(&mut at_saved, &data, tok.pad_id(), 2)
        .unwrap_err();
    assert!(err.to_string().contains("no entry of epoch 2"), "{err}");
}

/// `fixtures/REL`.
fn fx(rel: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel)
}

/// forget05's first eight records, written to `DIR/data.jsonl`.
fn eight_records(dir: &Path) -> std::path::PathBuf {
    let data = dir.join("data.jsonl");
    let lines: Vec<String> = std::fs::read_to_string(fx("world/forget05.jsonl"))
        .unwrap()
        .lines()
        .take(8)
        .map(str::to_string)
        .collect();
    std::fs::write(&data, lines.join("\n") + "\n").unwrap();
    data
}

/// `lethe train --init` fine-tunes a given model: same shape, parameters moved, `train.json`
/// naming the model it started from; a tokenizer whose vocabulary does not fit is refused
/// before any work, naming both files.
#[test]
fn train_init_fine_tunes_the_given_model_and_refuses_a_mismatched_tokenizer() {
    let dir = scratch("train-init");
    let data = eight_records(&dir);
    let (init, tok) = (fx("models/retrain05"), fx("world/tokenizer.json"));
    let out = dir.join("tuned");
    let run = lethe(&[
        "train",
        "--init",
        init.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--tokenizer",
        tok.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--warmup",
        "1",
    ]);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let (before, after) = (
        load_model(&init, DType::F32).unwrap().model,
        load_model(&out, DType::F32).unwrap().model,
    );
    assert_eq!(before.config(), after.config());
    let moved = rel_err(
        &after.get("transformer.wte.weight").unwrap(),
        &before.get("transformer.wte.weight").unwrap(),
    );
    assert!(moved > 0.0 && moved < 0.1, "wte moved by {moved:e}");
    let log: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("train.json")).unwrap()).unwrap();
    assert_eq!(log["init"].as_str(), init.to_str());
    // The oracle's tiny GPT-2 has another vocabulary than the world's tokenizer.
    let tiny = oracle("tiny-gpt2");
    let run = lethe(&[
        "train",
        "--init",
        tiny.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--tokenizer",
        tok.to_str().unwrap(),
        "--out",
        dir.join("refused").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{err}");
    assert!(
        err.contains(tiny.to_str().unwrap()) && err.contains("tokenizer.json"),
        "{err}"
    );
    assert!(!dir.join("refused").exists());
}

/// `lethe train --family llama` makes a fresh Llama-family model of the shape asked for
/// (grouped-query heads, SwiGLU width 8/3 × width rounded up to 8, tied unless `--untied`),
/// stored in the dtype asked for, with the tokenizer's end-of-text id; `--kv-heads` on a GPT-2
/// and a head count the key/value heads do not divide are refused.
#[test]
fn train_family_llama_makes_the_shape_and_dtype_asked_for() {
    let dir = scratch("train-llama");
    let data = eight_records(&dir);
    let tok = fx("world/tokenizer.json");
    let train = |out: &str, extra: &[&str]| {
        let out = dir.join(out);
        let mut args = vec![
            "train",
            "--data",
            data.to_str().unwrap(),
            "--tokenizer",
            tok.to_str().unwrap(),
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--layers",
            "1",
            "--width",
            "32",
            "--heads",
            "4",
            "--ctx",
            "64",
            "--out",
        ];
        let out_s = out.to_str().unwrap().to_string();
        args.push(&out_s);
        args.extend(extra);
        (lethe(&args), out)
    };
    let (run, out) = train(
        "llama",
        &[
            "--family",
            "llama",
            "--kv-heads",
            "2",
            "--dtype",
            "bfloat16",
        ],
    );
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let loaded = load_model(&out, DType::F32).unwrap();
    let cfg = loaded.model.config();
    assert_eq!(cfg.model_type(), "llama");
    assert_eq!(
        (cfg.n_head, cfg.arch.n_kv_head, cfg.inner_dim()),
        (4, 2, 88)
    );
    assert!(cfg.tied());
    assert_eq!(cfg.eos_token_id, Some(0));
    assert_eq!(loaded.storage_dtype, DType::BF16);

    let (run, out) = train(
        "untied",
        &["--family", "llama", "--untied", "--inner", "40"],
    );
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let loaded = load_model(&out, DType::F32).unwrap();
    assert!(!loaded.model.config().tied());
    assert_eq!(loaded.model.config().inner_dim(), 40);
    assert_eq!(loaded.storage_dtype, DType::F32);

    for (name, extra, says) in [
        ("gpt2-kv", vec!["--kv-heads", "2"], "--family llama"),
        (
            "bad-kv",
            vec!["--family", "llama", "--kv-heads", "3"],
            "num_key_value_heads",
        ),
    ] {
        let (run, out) = train(name, &extra);
        let err = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{err}");
        assert!(err.contains(says), "{err}");
        assert!(!out.exists());
    }
}
