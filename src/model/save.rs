//! Saving a GPT-2 in the Hugging Face layout lethe reads: `config.json` and `model.safetensors`
//! with transformers' names (`transformer.` prefix, Conv1D weights `[in, out]`, no separate
//! `lm_head.weight` since it is tied to `wte`), plus the tokenizer. Every file is written to a
//! temporary name and renamed into place. This module owns writing model files only.

use super::gpt2::Gpt2;
use crate::atomic::write_atomic;
use candle_core::DType;
use std::collections::HashMap;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {msg}")]
    Encode { path: String, msg: String },
}

/// Writes `model` into `dir` (created if missing) with weights stored as `storage_dtype`;
/// `tokenizer_json`, when given, is written as `tokenizer.json`.
pub fn save_model(
    model: &Gpt2,
    storage_dtype: DType,
    dir: &Path,
    tokenizer_json: Option<&[u8]>,
) -> Result<(), SaveError> {
    let io = |p: &Path| {
        let path = p.display().to_string();
        move |source| SaveError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let weights = dir.join("model.safetensors");
    let bytes = safetensors_bytes(model, storage_dtype).map_err(|msg| SaveError::Encode {
        path: weights.display().to_string(),
        msg,
    })?;
    write_atomic(&weights, &bytes).map_err(io(&weights))?;
    let mut cfg = model.config().clone();
    cfg.dtype = Some(dtype_name(storage_dtype).to_string());
    let cfg_path = dir.join("config.json");
    let text = serde_json::to_string_pretty(&cfg.to_raw()).map_err(|e| SaveError::Encode {
        path: cfg_path.display().to_string(),
        msg: e.to_string(),
    })?;
    write_atomic(&cfg_path, format!("{text}\n").as_bytes()).map_err(io(&cfg_path))?;
    if let Some(tok) = tokenizer_json {
        let p = dir.join("tokenizer.json");
        write_atomic(&p, tok).map_err(io(&p))?;
    }
    Ok(())
}

/// The safetensors encoding of the model's parameters.
pub fn safetensors_bytes(model: &Gpt2, storage_dtype: DType) -> Result<Vec<u8>, String> {
    let mut tensors = Vec::new();
    for (name, t) in model.tensors() {
        let t = t
            .to_dtype(storage_dtype)
            .and_then(|t| t.contiguous())
            .map_err(|e| e.to_string())?;
        tensors.push((name, t));
    }
    let meta: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
    safetensors::serialize(tensors, Some(meta)).map_err(|e| e.to_string())
}

fn dtype_name(d: DType) -> &'static str {
    match d {
        DType::F64 => "float64",
        DType::F16 => "float16",
        DType::BF16 => "bfloat16",
        _ => "float32",
    }
}
