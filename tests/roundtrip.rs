//! Saving: a model loaded and saved unchanged has byte-for-byte the same tensors; the CLI's
//! `inspect` reports the digests of the files it read.

use crate::common::*;
use candle_core::DType;
use lethe::model::{load_model, save_model};
use sha2::{Digest, Sha256};

/// name → (dtype, shape, raw bytes) of every tensor in a safetensors file.
fn raw_tensors(
    path: &std::path::Path,
) -> std::collections::BTreeMap<String, (String, Vec<usize>, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(n, v)| {
            (
                n,
                (
                    format!("{:?}", v.dtype()),
                    v.shape().to_vec(),
                    v.data().to_vec(),
                ),
            )
        })
        .collect()
}

#[test]
fn load_then_save_gives_the_same_tensor_bytes_in_f32_and_f64() {
    let src = oracle("tiny-gpt2");
    for dtype in [DType::F32, DType::F64] {
        let loaded = load_model(&src, dtype).unwrap();
        let out = scratch(&format!("save-{dtype:?}"));
        save_model(&loaded.model, loaded.storage_dtype, &out, None).unwrap();
        assert_eq!(
            raw_tensors(&src.join("model.safetensors")),
            raw_tensors(&out.join("model.safetensors"))
        );
        // The saved directory loads again with the same config.
        let again = load_model(&out, DType::F32).unwrap();
        assert_eq!(again.model.config().n_embd, 64);
        assert!(!out.read_dir().unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".tmp")));
    }
}

#[test]
fn inspect_prints_groups_and_file_digests() {
    let src = oracle("tiny-gpt2");
    let out = lethe(&["inspect", src.to_str().unwrap(), "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sha = hex::encode(Sha256::digest(
        std::fs::read(src.join("model.safetensors")).unwrap(),
    ));
    let files = v["files"].as_array().unwrap();
    assert!(files
        .iter()
        .any(|f| f["name"] == "model.safetensors" && f["sha256"] == sha.as_str()));
    let groups = v["parameters"].as_array().unwrap();
    // 512×64 wte + 64×64 wpe; all = the sum of the parameter tensors in the file.
    assert_eq!(groups[0]["count"], 512 * 64 + 64 * 64);
    let all: usize = raw_tensors(&src.join("model.safetensors"))
        .values()
        .map(|(_, s, _)| s.iter().product::<usize>())
        .sum();
    assert_eq!(groups.last().unwrap()["count"], all);
}
