//! Helpers shared by the test modules: oracle paths, scratch folders, comparisons.

use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::PathBuf;

/// `tests/oracles/...`: the reference values kept inside the repository (see its README.md).
pub fn oracle(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/oracles")
        .join(rel)
}

/// A fresh empty scratch folder under the system temp dir.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lethe-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The oracle's expected tensors (`expected.safetensors`).
pub fn expected_tensors() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(oracle("tiny-gpt2/expected.safetensors"), &Device::Cpu).unwrap()
}

/// An oracle's input batch from its `expected.safetensors`: `input_ids` and `attention_mask`
/// `[B, T]`, targets scored where the target's mask is 1 (labels -100 at padding), as every
/// oracle's `expected.json` defines its loss.
pub fn batch_of(ex: &HashMap<String, Tensor>) -> lethe::data::Batch {
    let ids: Vec<i64> = ex["input_ids"].flatten_all().unwrap().to_vec1().unwrap();
    let mask: Vec<i64> = ex["attention_mask"]
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let (rows, cols) = ex["input_ids"].dims2().unwrap();
    let mut target_weight = vec![0f32; rows * (cols - 1)];
    for r in 0..rows {
        for t in 0..cols - 1 {
            target_weight[r * (cols - 1) + t] = mask[r * cols + t + 1] as f32;
        }
    }
    lethe::data::Batch {
        ids: ids.iter().map(|&i| i as u32).collect(),
        attention: mask.iter().map(|&m| m as u32).collect(),
        target_weight,
        rows,
        cols,
        record_ids: (0..rows).map(|r| r.to_string()).collect(),
    }
}

pub fn expected_json() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(oracle("tiny-gpt2/expected.json")).unwrap()).unwrap()
}

pub fn to_f64(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// Normwise relative error `max|a-b| / max|b|`, the measure used for every "relative"
/// tolerance here (element-wise relative error is meaningless for entries near zero).
pub fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (to_f64(a), to_f64(b));
    assert_eq!(a.len(), b.len());
    let diff = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    let scale = b.iter().map(|y| y.abs()).fold(0.0, f64::max);
    diff / scale
}

/// Runs the lethe binary built for these tests.
pub fn lethe(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_lethe"))
        .args(args)
        .args(["--progress", "off"])
        .output()
        .unwrap()
}
