//! Saving a model of any family in the Hugging Face layout lethe reads: `config.json` and
//! `model.safetensors` — or the shards and `model.safetensors.index.json` the original came in
//! ([`Storage`]) — with transformers' names (GPT-2: `transformer.` prefix, Conv1D weights
//! `[in, out]`; no separate output layer when it is tied to the token embedding), in the
//! storage dtype asked for, plus the tokenizer's files. The directory is built under
//! a temporary name beside its destination and renamed into place as a whole
//! ([`crate::atomic::StagedDir`]), so no half-written model ever carries the real name.
//! This module owns writing model files only.

use super::config::Gpt2Config;
use super::gpt2::Gpt2;
use crate::atomic::{write_atomic, StagedDir};
use candle_core::{DType, Tensor};
use std::collections::{BTreeMap, HashMap};
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

/// Writes `model` as the directory `dir`, with weights stored as `storage_dtype`, and the
/// tokenizer's files beside it (`tokenizer`: name and bytes, as `TextTokenizer::files` gives
/// them: `tokenizer.json` and a chat template's file). The folder is staged beside
/// `dir` and renamed into place whole, replacing whatever `dir` held: callers that must not
/// replace an existing output check first (`crate::output::check_output`). A caller that adds
/// its own records to the folder stages it itself and calls [`write_model_files`].
pub fn save_model(
    model: &Gpt2,
    storage: impl Into<Storage>,
    dir: &Path,
    tokenizer: &[(&str, &[u8])],
) -> Result<(), SaveError> {
    let staged = StagedDir::new(dir).map_err(io_error(dir))?;
    write_model_files(model, storage, staged.path(), tokenizer)?;
    staged.commit().map_err(io_error(dir))
}

/// Writes the model's files into the existing folder `dir` (normally a [`StagedDir`]'s).
pub fn write_model_files(
    model: &Gpt2,
    storage: impl Into<Storage>,
    dir: &Path,
    tokenizer: &[(&str, &[u8])],
) -> Result<(), SaveError> {
    let storage = storage.into();
    let tensors = model.tensors();
    let encode = |path: &Path, names: &[&String]| {
        safetensors_bytes(&tensors, names, storage.dtype).map_err(|msg| SaveError::Encode {
            path: path.display().to_string(),
            msg,
        })
    };
    match &storage.shards {
        None => {
            let weights = dir.join("model.safetensors");
            let bytes = encode(&weights, &tensors.keys().collect::<Vec<_>>())?;
            write_atomic(&weights, &bytes).map_err(io_error(&weights))?;
        }
        Some(shards) => write_shards(&tensors, shards, storage.dtype, dir, encode)?,
    }
    let mut cfg = model.config().clone();
    cfg.dtype = Some(dtype_name(storage.dtype).to_string());
    let cfg_path = dir.join("config.json");
    let text = serde_json::to_string_pretty(&cfg.to_raw()).map_err(|e| SaveError::Encode {
        path: cfg_path.display().to_string(),
        msg: e.to_string(),
    })?;
    write_atomic(&cfg_path, format!("{text}\n").as_bytes()).map_err(io_error(&cfg_path))?;
    for &(name, bytes) in tokenizer {
        let p = dir.join(name);
        // Plain names only, and never over the files written above.
        let plain = Path::new(name).file_name() == Some(std::ffi::OsStr::new(name));
        if !plain || ["config.json", "model.safetensors"].contains(&name) {
            return Err(SaveError::Encode {
                path: p.display().to_string(),
                msg: "not a tokenizer file name".into(),
            });
        }
        write_atomic(&p, bytes).map_err(io_error(&p))?;
    }
    Ok(())
}

fn io_error(p: &Path) -> impl FnOnce(std::io::Error) -> SaveError {
    let path = p.display().to_string();
    move |source| SaveError::Io { path, source }
}

/// How a model's weights are stored: the dtype, and the shards (file name and the parameters
/// it holds) or `None` for one `model.safetensors`. A bare dtype is one file.
#[derive(Debug, Clone, PartialEq)]
pub struct Storage {
    pub dtype: DType,
    pub shards: Option<super::load::Shards>,
}

impl From<DType> for Storage {
    fn from(dtype: DType) -> Self {
        Storage {
            dtype,
            shards: None,
        }
    }
}

/// Writes the parameters into the shards named (a parameter no shard names goes into the
/// last), and the index that maps each to its shard, as transformers writes it.
fn write_shards(
    tensors: &BTreeMap<String, Tensor>,
    shards: &[(String, Vec<String>)],
    dtype: DType,
    dir: &Path,
    encode: impl Fn(&Path, &[&String]) -> Result<Vec<u8>, SaveError>,
) -> Result<(), SaveError> {
    let mut map = serde_json::Map::new();
    let mut total = 0usize;
    for (i, (file, held)) in shards.iter().enumerate() {
        let last = i + 1 == shards.len();
        let names: Vec<&String> = tensors
            .keys()
            .filter(|n| held.contains(n) || (last && !shards.iter().any(|(_, h)| h.contains(n))))
            .collect();
        let path = dir.join(file);
        write_atomic(&path, &encode(&path, &names)?).map_err(io_error(&path))?;
        for n in names {
            map.insert(n.clone(), file.clone().into());
            total += tensors[n].elem_count() * dtype.size_in_bytes();
        }
    }
    let index = serde_json::json!({"metadata": {"total_size": total}, "weight_map": map});
    let path = dir.join(super::load::INDEX_FILE);
    let text = serde_json::to_string_pretty(&index).map_err(|e| SaveError::Encode {
        path: path.display().to_string(),
        msg: e.to_string(),
    })?;
    write_atomic(&path, format!("{text}\n").as_bytes()).map_err(io_error(&path))
}

/// The safetensors encoding of the parameters `names` of `tensors`, stored as `storage_dtype`.
fn safetensors_bytes(
    all: &BTreeMap<String, Tensor>,
    names: &[&String],
    storage_dtype: DType,
) -> Result<Vec<u8>, String> {
    let mut tensors = Vec::new();
    for &name in names {
        let t = all[name]
            .to_dtype(storage_dtype)
            .and_then(|t| t.contiguous())
            .map_err(|e| e.to_string())?;
        tensors.push((name.clone(), t));
    }
    let meta: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
    safetensors::serialize(tensors, Some(meta)).map_err(|e| e.to_string())
}

/// The storage dtype a `config.json` dtype name stands for (the inverse of [`dtype_name`]).
pub fn dtype_of_name(s: &str) -> Option<DType> {
    match s {
        "float32" => Some(DType::F32),
        "float64" => Some(DType::F64),
        "float16" => Some(DType::F16),
        "bfloat16" => Some(DType::BF16),
        _ => None,
    }
}

/// The dtype a model is saved in by default: the one its config names (float32 when it names
/// none or another).
pub fn storage_dtype(cfg: &Gpt2Config) -> DType {
    cfg.dtype
        .as_deref()
        .and_then(dtype_of_name)
        .unwrap_or(DType::F32)
}

/// The name `config.json` gives a storage dtype.
pub fn dtype_name(d: DType) -> &'static str {
    match d {
        DType::F64 => "float64",
        DType::F16 => "float16",
        DType::BF16 => "bfloat16",
        _ => "float32",
    }
}
