//! Bad input gives a clear error that names the file (and line), a non-zero exit, never a
//! panic or a partial result. One test per case of the foundation issue.

use crate::common::*;
use candle_core::DType;
use lethe::data::{read_records, DataError};
use lethe::model::{load_model, LoadError};
use std::path::{Path, PathBuf};

/// A copy of the oracle's tiny GPT-2 in a scratch folder, to be damaged.
fn model_copy(name: &str) -> PathBuf {
    let dir = scratch(name);
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(oracle("tiny-gpt2").join(f), dir.join(f)).unwrap();
    }
    dir
}

fn load_err(dir: &Path) -> LoadError {
    match load_model(dir, DType::F32) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e,
    }
}

fn assert_names(msg: &str, what: &str) {
    assert!(msg.contains(what), "error {msg:?} does not name {what:?}");
}

#[test]
fn pickle_weights_are_refused_with_how_to_convert() {
    for ext in ["bin", "pt", "pth", "ckpt"] {
        let dir = scratch(&format!("pickle-{ext}"));
        std::fs::copy(oracle("tiny-gpt2/config.json"), dir.join("config.json")).unwrap();
        let name = if ext == "bin" {
            "pytorch_model.bin".to_string()
        } else {
            format!("model.{ext}")
        };
        std::fs::write(dir.join(&name), b"\x80\x02}q\x00.").unwrap();
        let e = load_err(&dir);
        assert!(matches!(e, LoadError::Pickle(_)));
        let msg = e.to_string();
        assert_names(&msg, &name);
        assert_names(&msg, "executes code");
        assert_names(&msg, "safe_serialization=True");
        // Pointing at the pickle file itself is refused too, before it is opened.
        assert!(matches!(load_err(&dir.join(&name)), LoadError::Pickle(_)));
    }
}

#[test]
fn missing_files_are_named() {
    let dir = scratch("missing");
    assert_names(&load_err(&dir).to_string(), "model.safetensors");
    std::fs::copy(
        oracle("tiny-gpt2/model.safetensors"),
        dir.join("model.safetensors"),
    )
    .unwrap();
    assert_names(&load_err(&dir).to_string(), "config.json");
    assert_names(&load_err(&dir.join("nope")).to_string(), "nope");
}

#[test]
fn truncated_safetensors_body_is_refused() {
    let dir = model_copy("truncated");
    let p = dir.join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 100]).unwrap();
    let e = load_err(&dir);
    assert!(matches!(e, LoadError::Truncated { .. }), "{e}");
    assert_names(&e.to_string(), "model.safetensors");
}

#[test]
fn oversized_safetensors_header_is_refused_before_parsing() {
    let dir = model_copy("oversized");
    let p = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[..8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    std::fs::write(&p, &bytes).unwrap();
    let e = load_err(&dir);
    assert!(matches!(e, LoadError::HeaderTooLarge { .. }), "{e}");
    assert_names(&e.to_string(), "model.safetensors");
}

#[test]
fn malformed_safetensors_header_is_refused() {
    let dir = model_copy("malformed");
    let p = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[8] = b'['; // the header must be a JSON object
    std::fs::write(&p, &bytes).unwrap();
    let e = load_err(&dir);
    assert!(matches!(e, LoadError::Malformed { .. }), "{e}");
    assert_names(&e.to_string(), "model.safetensors");
}

/// Rewrites the model's config.json with `edit` applied.
fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("config.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
}

#[test]
fn tensor_shape_disagreeing_with_config_is_refused() {
    let dir = model_copy("shape");
    edit_config(&dir, |v| v["vocab_size"] = 500.into());
    let e = load_err(&dir);
    assert!(matches!(e, LoadError::Shape { .. }), "{e}");
    assert_names(&e.to_string(), "transformer.wte.weight");
}

#[test]
fn tensor_dtype_disagreeing_with_config_is_refused() {
    let dir = model_copy("dtype");
    edit_config(&dir, |v| v["dtype"] = "float16".into());
    let e = load_err(&dir);
    assert!(matches!(e, LoadError::Dtype { .. }), "{e}");
    assert_names(&e.to_string(), "float16");
}

/// Writes the oracle model's tensors to `dir`, changed by `edit`.
fn rewrite_weights(dir: &Path, edit: impl FnOnce(&mut Vec<(String, candle_core::Tensor)>)) {
    let map = candle_core::safetensors::load(
        oracle("tiny-gpt2/model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let mut tensors: Vec<_> = map.into_iter().collect();
    edit(&mut tensors);
    safetensors::serialize_to_file(tensors, None, &dir.join("model.safetensors")).unwrap();
}

#[test]
fn missing_tensor_is_named() {
    let dir = model_copy("missing-tensor");
    rewrite_weights(&dir, |t| {
        t.retain(|(n, _)| n != "transformer.h.1.mlp.c_fc.bias")
    });
    let e = load_err(&dir);
    assert!(matches!(e, LoadError::MissingTensor { .. }), "{e}");
    assert_names(&e.to_string(), "transformer.h.1.mlp.c_fc.bias");
}

#[test]
fn nan_or_inf_weights_are_refused_and_named() {
    let dir = model_copy("nan");
    rewrite_weights(&dir, |t| {
        for (n, x) in t.iter_mut() {
            if n == "transformer.ln_f.bias" {
                let mut v: Vec<f32> = x.to_vec1().unwrap();
                v[3] = f32::NAN;
                v[5] = f32::INFINITY;
                *x = candle_core::Tensor::new(v, &candle_core::Device::Cpu).unwrap();
            }
        }
    });
    let e = load_err(&dir);
    assert!(matches!(e, LoadError::NonFinite { count: 2, .. }), "{e}");
    assert_names(&e.to_string(), "transformer.ln_f.bias");
}

#[test]
fn weights_without_the_transformer_prefix_load() {
    let dir = model_copy("no-prefix");
    rewrite_weights(&dir, |t| {
        for (n, _) in t.iter_mut() {
            *n = n.trim_start_matches("transformer.").to_string();
        }
    });
    let a = load_model(&dir, DType::F32).unwrap().model;
    let b = load_model(&oracle("tiny-gpt2"), DType::F32).unwrap().model;
    for (name, t) in a.tensors() {
        assert_eq!(to_f64(&t), to_f64(&b.get(&name).unwrap()), "{name}");
    }
}

/// Writes `lines` as a JSONL file and returns the error reading it gives.
fn data_err(name: &str, content: &[u8]) -> (PathBuf, DataError) {
    let p = scratch(name).join("data.jsonl");
    std::fs::write(&p, content).unwrap();
    match read_records(&p) {
        Ok(r) => panic!("{name}: read {} records", r.len()),
        Err(e) => (p, e),
    }
}

fn assert_file_line(p: &Path, e: &DataError, line: usize) {
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!("{}:{line}:", p.display())),
        "{msg:?} should start with file:{line}:"
    );
}

#[test]
fn jsonl_invalid_json_names_file_and_line() {
    let (p, e) = data_err(
        "json",
        b"{\"id\":\"a\",\"text\":\"x\"}\n{\"id\": \"b\", \"text\": }\n",
    );
    assert!(matches!(e, DataError::Json { line: 2, .. }), "{e}");
    assert_file_line(&p, &e, 2);
}

#[test]
fn jsonl_invalid_utf8_names_file_and_line() {
    let (p, e) = data_err(
        "utf8",
        b"{\"id\":\"a\",\"text\":\"x\"}\n{\"id\":\"b\",\"text\":\"\xff\xfe\"}\n",
    );
    assert!(matches!(e, DataError::Utf8 { line: 2, .. }), "{e}");
    assert_file_line(&p, &e, 2);
}

#[test]
fn jsonl_missing_id_or_text_is_named() {
    for (field, line) in [("id", "{\"text\":\"x\"}"), ("text", "{\"id\":\"a\"}")] {
        let (p, e) = data_err(&format!("missing-{field}"), format!("{line}\n").as_bytes());
        assert!(matches!(e, DataError::Field { line: 1, .. }), "{e}");
        assert_file_line(&p, &e, 1);
        assert!(e.to_string().contains(&format!("`{field}`")), "{e}");
    }
}

#[test]
fn jsonl_duplicate_ids_name_both_lines() {
    let (p, e) = data_err("dup", b"{\"id\":\"a\",\"text\":\"x\"}\n{\"id\":\"b\",\"text\":\"y\"}\n{\"id\":\"a\",\"text\":\"z\"}\n");
    assert!(
        matches!(
            e,
            DataError::DuplicateId {
                line: 3,
                first: 1,
                ..
            }
        ),
        "{e}"
    );
    assert_file_line(&p, &e, 3);
}

#[test]
fn jsonl_empty_file_is_an_error() {
    let (p, e) = data_err("empty", b"");
    assert!(matches!(e, DataError::Empty { .. }), "{e}");
    assert!(e.to_string().contains(&p.display().to_string()));
    let (_, e) = data_err("blank", b"\n  \n");
    assert!(matches!(e, DataError::Empty { .. }), "{e}");
}

#[test]
fn jsonl_line_over_the_size_limit_is_refused() {
    let big = format!(
        "{{\"id\":\"a\",\"text\":\"{}\"}}\n",
        "x".repeat(lethe::data::jsonl::MAX_LINE_BYTES)
    );
    let (p, e) = data_err(
        "long",
        format!("{{\"id\":\"z\",\"text\":\"ok\"}}\n{big}").as_bytes(),
    );
    assert!(matches!(e, DataError::LineTooLong { line: 2, .. }), "{e}");
    assert_file_line(&p, &e, 2);
}

#[test]
fn jsonl_unknown_field_and_inconsistent_answer_are_refused() {
    let (p, e) = data_err("unknown", b"{\"id\":\"a\",\"text\":\"x\",\"txet\":\"y\"}\n");
    assert_file_line(&p, &e, 1);
    assert!(e.to_string().contains("txet"), "{e}");
    let (p, e) = data_err(
        "qa",
        b"{\"id\":\"a\",\"text\":\"Q: A\",\"prompt\":\"Q:\",\"answer\":\" B\"}\n",
    );
    assert_file_line(&p, &e, 1);
}

#[test]
fn cli_errors_exit_2_with_the_file_named_and_no_panic() {
    let dir = scratch("cli-err");
    std::fs::write(dir.join("pytorch_model.bin"), b"x").unwrap();
    let out = lethe(&["inspect", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pytorch_model.bin") && err.contains("pickle"),
        "{err}"
    );
    assert!(!err.contains("panicked"));
    let data = dir.join("d.jsonl");
    std::fs::write(&data, b"{\"id\":\"a\"}\n").unwrap();
    let model = oracle("tiny-gpt2");
    let out = lethe(&["eval", model.to_str().unwrap(), data.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("d.jsonl:1:") || err.contains("tokenizer.json"),
        "{err}"
    );
}
