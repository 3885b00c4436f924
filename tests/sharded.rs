//! Sharded checkpoints (issue 19, "weights as shipped"): a directory with
//! `model.safetensors.index.json` and the shards it names, as transformers' `save_pretrained`
//! writes models above its shard size. The oracle's tiny GPT-2 is split into three shards here;
//! it must load to the oracle's logits (the f32 tolerance of `expected.json`) and to exactly the
//! single file's, with the index and every shard among the digests the evidence and an
//! unlearning record bind a model by. The index is as hostile as any other file: a shard name
//! with a directory part, a tensor the index places in another shard, a tensor it does not
//! map, a shard that is missing — each is refused, naming the file.

use crate::common::*;
use crate::oracle::oracle_batch;
use candle_core::DType;
use lethe::model::load::{is_weights_file, INDEX_FILE};
use lethe::model::{load_model, LoadError};
use std::path::{Path, PathBuf};

const SHARDS: usize = 3;

fn shard_name(k: usize) -> String {
    format!("model-{:05}-of-{SHARDS:05}.safetensors", k + 1)
}

/// The oracle's tiny GPT-2 in three shards (tensors dealt round-robin in name order) with the
/// index transformers writes: `{"metadata": {"total_size": …}, "weight_map": {…}}`.
fn sharded(name: &str) -> PathBuf {
    let dir = scratch(name);
    std::fs::copy(
        oracle("tiny-gpt2").join("config.json"),
        dir.join("config.json"),
    )
    .unwrap();
    let bytes = std::fs::read(oracle("tiny-gpt2").join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<&str> = st.names();
    names.sort_unstable();
    let mut map = serde_json::Map::new();
    let mut total = 0;
    for k in 0..SHARDS {
        let part: Vec<(&str, safetensors::tensor::TensorView)> = names
            .iter()
            .enumerate()
            .filter(|(i, _)| i % SHARDS == k)
            .map(|(_, n)| (*n, st.tensor(n).unwrap()))
            .collect();
        for (n, view) in &part {
            map.insert(n.to_string(), shard_name(k).into());
            total += view.data().len();
        }
        let out = safetensors::serialize(part, None).unwrap();
        std::fs::write(dir.join(shard_name(k)), out).unwrap();
    }
    let index = serde_json::json!({"metadata": {"total_size": total}, "weight_map": map});
    std::fs::write(dir.join(INDEX_FILE), index.to_string()).unwrap();
    dir
}

fn edit_index(dir: &Path, edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let path = dir.join(INDEX_FILE);
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(v["weight_map"].as_object_mut().unwrap());
    std::fs::write(path, v.to_string()).unwrap();
}

fn load_err(dir: &Path) -> String {
    match load_model(dir, DType::F32) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_sharded_checkpoint_loads_to_the_oracles_logits_and_binds_every_shard() {
    let dir = sharded("sharded-ok");
    let loaded = load_model(&dir, DType::F32).unwrap();
    let single = load_model(&oracle("tiny-gpt2"), DType::F32).unwrap();
    let batch = oracle_batch();
    let logits = |m: &lethe::model::Gpt2| {
        let (ids, att) = m.batch_tensors(&batch).unwrap();
        to_f64(&m.forward(&ids, &att).unwrap())
    };
    let (sharded_logits, single_logits) = (logits(&loaded.model), logits(&single.model));
    assert_eq!(
        sharded_logits, single_logits,
        "the same weights, bit for bit"
    );
    // Against the oracle itself, at its f32 tolerance (padding positions included: the
    // oracle's masked rows agree there too at this size).
    let expected = to_f64(&expected_tensors()["logits_f32"]);
    let (cols, v) = (batch.cols, expected.len() / batch.ids.len());
    let worst = batch
        .attention
        .iter()
        .enumerate()
        .filter(|(_, &m)| m == 1)
        .flat_map(|(p, _)| (0..v).map(move |k| p * v + k))
        .map(|i| (sharded_logits[i] - expected[i]).abs())
        .fold(0.0, f64::max);
    assert!(
        worst <= 1e-4,
        "f32 logits differ by {worst:e} ({cols} columns)"
    );
    let names: Vec<&str> = loaded.files.iter().map(|f| f.name.as_str()).collect();
    let mut want = vec!["config.json".to_string(), INDEX_FILE.to_string()];
    want.extend((0..SHARDS).map(shard_name));
    assert_eq!(names, want);
    for f in &loaded.files {
        let bytes = std::fs::read(dir.join(&f.name)).unwrap();
        assert_eq!(f.sha256, lethe::digest::sha256_hex(&bytes), "{}", f.name);
    }
    let weights: Vec<&str> = names.into_iter().filter(|n| is_weights_file(n)).collect();
    assert_eq!(
        weights.len(),
        SHARDS + 1,
        "index and shards bind the weights"
    );
}

#[test]
fn a_hostile_index_is_refused_naming_the_file() {
    // A shard outside the model's directory, or not a safetensors file.
    for bad in ["../model.safetensors", "sub/model.safetensors", "model.bin"] {
        let dir = sharded("sharded-path");
        edit_index(&dir, |m| {
            m.insert("transformer.wte.weight".into(), bad.into());
        });
        let msg = load_err(&dir);
        assert!(
            msg.contains(INDEX_FILE) && msg.contains("plain file name"),
            "{bad}: {msg}"
        );
    }
    // A tensor the index places in another shard than the one holding it.
    let dir = sharded("sharded-moved");
    let moved = {
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(INDEX_FILE)).unwrap()).unwrap();
        let (name, file) = index["weight_map"]
            .as_object()
            .unwrap()
            .iter()
            .find(|(_, f)| *f == &serde_json::Value::from(shard_name(0)))
            .map(|(n, f)| (n.clone(), f.as_str().unwrap().to_string()))
            .unwrap();
        edit_index(&dir, |m| {
            m.insert(name.clone(), shard_name(1).into());
        });
        (name, file)
    };
    let msg = load_err(&dir);
    assert!(
        msg.contains(&format!(
            "maps {} to {}, but {} holds it",
            moved.0,
            shard_name(1),
            moved.1
        )),
        "{msg}"
    );
    // A tensor a shard holds that the index does not map.
    let dir = sharded("sharded-unmapped");
    edit_index(&dir, |m| {
        m.remove("h.0.mlp.c_fc.weight")
            .or_else(|| m.remove("transformer.h.0.mlp.c_fc.weight"))
            .expect("the oracle holds block 0's c_fc");
    });
    let msg = load_err(&dir);
    assert!(
        msg.contains("does not map") && msg.contains(INDEX_FILE),
        "{msg}"
    );
    // One parameter stored twice, under GPT-2's two spellings, in two shards.
    let dir = sharded("sharded-twice");
    let bytes = std::fs::read(oracle("tiny-gpt2").join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let name = st
        .names()
        .into_iter()
        .find(|n| n.ends_with("wte.weight"))
        .unwrap()
        .to_string();
    let other = match name.strip_prefix("transformer.") {
        Some(bare) => bare.to_string(),
        None => format!("transformer.{name}"),
    };
    let extra = "model-extra.safetensors";
    let out = safetensors::serialize([(other.as_str(), st.tensor(&name).unwrap())], None).unwrap();
    std::fs::write(dir.join(extra), out).unwrap();
    edit_index(&dir, |m| {
        m.insert(other.clone(), extra.into());
    });
    let msg = load_err(&dir);
    assert!(
        msg.contains("transformer.wte.weight is stored twice"),
        "{msg}"
    );
    // A shard the index names that is not there.
    let dir = sharded("sharded-missing");
    std::fs::remove_file(dir.join(shard_name(2))).unwrap();
    let err = load_model(&dir, DType::F32)
        .err()
        .expect("loaded without a shard");
    assert!(
        matches!(&err, LoadError::Missing { path, .. } if path.ends_with(shard_name(2))),
        "{err}"
    );
}

/// Saving keeps the layout a model came in: the bfloat16, six-shard oracle saved as it was
/// loaded (`LoadedModel::storage`) gives the same shard files with the same index, every
/// parameter in the shard it came from, and loads back to exactly the same values and dtype.
#[test]
fn a_sharded_model_is_saved_in_its_shards() {
    let from = oracle("tiny-llama-bf16-sharded");
    let loaded = load_model(&from, DType::F32).unwrap();
    assert_eq!(loaded.storage_dtype, DType::BF16);
    let out = scratch("sharded-save").join("model");
    lethe::model::save_model(&loaded.model, loaded.storage(), &out, &[]).unwrap();
    let index = |dir: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.join(INDEX_FILE)).unwrap()).unwrap()
    };
    assert_eq!(index(&out)["weight_map"], index(&from)["weight_map"]);
    assert!(!out.join("model.safetensors").exists());
    for k in 1..=6 {
        let name = format!("model-{k:05}-of-00006.safetensors");
        assert_eq!(
            std::fs::read(out.join(&name)).unwrap().len(),
            std::fs::read(from.join(&name)).unwrap().len(),
            "{name}"
        );
    }
    let again = load_model(&out, DType::F32).unwrap();
    assert_eq!(again.storage_dtype, DType::BF16);
    assert_eq!(again.shards, loaded.shards);
    for (name, t) in loaded.model.tensors() {
        let back = again.model.get(&name).unwrap();
        let diff = (t - back).unwrap().abs().unwrap().max_all().unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0, "{name}");
    }
}
