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
        save_model(&loaded.model, loaded.storage_dtype, &out, &[]).unwrap();
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

/// A model shipped in bfloat16 is unlearned in float32 and saved in bfloat16 again, and
/// `unlearn.json` says how much of the update the rounding removed (issue 19, "weights as
/// shipped"). The bundled full model, stored here in bfloat16, unlearned for three steps with
/// the defaults: its saved weights are bfloat16, and the recorded rounding error is the
/// distance between the saved weights and the run's float32 result.
#[test]
fn a_bfloat16_model_is_saved_in_bfloat16_with_its_rounding_recorded() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = scratch("bf16-unlearn");
    let full = load_model(&root.join("fixtures/models/full"), DType::F32).unwrap();
    save_model(
        &full.model,
        DType::BF16,
        &dir.join("bf16"),
        &[("tokenizer.json", full.tokenizer_json.as_deref().unwrap())],
    )
    .unwrap();
    let world = |s: &str| root.join(format!("fixtures/world/{s}.jsonl"));
    let out = lethe(&[
        "unlearn",
        dir.join("bf16").to_str().unwrap(),
        "--forget",
        world("forget05").to_str().unwrap(),
        "--retain",
        world("retain05").to_str().unwrap(),
        "--holdout",
        world("holdout_calibration").to_str().unwrap(),
        "--max-steps",
        "3",
        "--out",
        dir.join("unlearned").to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}\n{out:?}");
    assert!(
        text.contains("saved       as bfloat16: rounding removed"),
        "{text}"
    );
    let saved = load_model(&dir.join("unlearned"), DType::F32).unwrap();
    assert_eq!(saved.storage_dtype, DType::BF16);
    let log: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("unlearned/unlearn.json")).unwrap())
            .unwrap();
    let r = &log["rounding"];
    assert_eq!(r["storage_dtype"], "bfloat16");
    let (update, rounding, lost) = (
        r["update_norm"].as_f64().unwrap(),
        r["rounding_norm"].as_f64().unwrap(),
        r["lost"].as_f64().unwrap(),
    );
    assert!(update > 0.0 && rounding > 0.0, "{r}");
    assert!((lost - rounding / update).abs() < 1e-12, "{r}");
    // A bfloat16 rounding error is at most half a spacing, 2^-9 of each weight: the error
    // cannot exceed 2^-9 of the saved embedding's length.
    let wte = saved.model.get("transformer.wte.weight").unwrap();
    let length = wte
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
        .sqrt() as f64;
    assert!(
        rounding <= length / 512.0 * 1.01,
        "{rounding} against {length}"
    );
}
