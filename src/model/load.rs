//! Safe loading of a Hugging Face GPT-2 directory: `config.json` plus `model.safetensors`.
//! Pickle checkpoints are refused (unpickling runs code); every safetensors header is checked
//! before a tensor is built (size limit, JSON, offsets, truncation), and every tensor's name,
//! shape, dtype and finiteness against `config.json`. This module owns reading model files and
//! their digests; it never writes.

use super::config::Gpt2Config;
use super::gpt2::Gpt2;
use super::params::param_shapes;
pub use crate::digest::{digest, FileDigest};
use candle_core::{DType, Device, Tensor};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Headers larger than this are refused before parsing (safetensors' own limit is 100 MB;
/// a GPT-2 header is a few kB).
pub const MAX_HEADER_BYTES: u64 = 16 * 1024 * 1024;

const PICKLE_EXTENSIONS: [&str; 4] = ["bin", "pt", "pth", "ckpt"];

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "{0}: refusing to load a pickle checkpoint: unpickling executes code from the file. \
         Convert it to safetensors where you trust it, e.g. `python -c \"from transformers import \
         GPT2LMHeadModel as M; M.from_pretrained('DIR').save_pretrained('OUT', safe_serialization=True)\"`"
    )]
    Pickle(PathBuf),
    #[error("{path}: not found ({what})")]
    Missing { path: PathBuf, what: &'static str },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid config: {msg}")]
    Config { path: PathBuf, msg: String },
    #[error("{path}: safetensors header of {len} bytes exceeds the {limit}-byte limit")]
    HeaderTooLarge { path: PathBuf, len: u64, limit: u64 },
    #[error("{path}: truncated: {msg}")]
    Truncated { path: PathBuf, msg: String },
    #[error("{path}: malformed safetensors: {msg}")]
    Malformed { path: PathBuf, msg: String },
    #[error("{path}: tensor {name} is missing")]
    MissingTensor { path: PathBuf, name: String },
    #[error("{path}: unexpected tensor {name} (not a GPT-2 parameter of this config)")]
    UnexpectedTensor { path: PathBuf, name: String },
    #[error("{path}: tensor {name} has shape {found:?}, but config.json implies {expected:?}")]
    Shape {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("{path}: tensor {name} has dtype {found}, but {expected}")]
    Dtype {
        path: PathBuf,
        name: String,
        expected: String,
        found: String,
    },
    #[error("{path}: tensor {name} holds {count} NaN or infinite values; refusing to load it")]
    NonFinite {
        path: PathBuf,
        name: String,
        count: usize,
    },
    #[error("{path}: {msg}")]
    Tensor { path: PathBuf, msg: String },
}

/// What was loaded: the model, the dtype the weights were stored in, and the digests.
pub struct LoadedModel {
    pub model: Gpt2,
    pub storage_dtype: DType,
    pub files: Vec<FileDigest>,
    pub dir: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LoadError + '_ {
    move |source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn is_pickle(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| PICKLE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// The weights file of a model directory; refuses pickles before looking any further.
fn weights_path(dir: &Path) -> Result<PathBuf, LoadError> {
    if is_pickle(dir) {
        return Err(LoadError::Pickle(dir.to_path_buf()));
    }
    if !dir.is_dir() {
        return Err(LoadError::Missing {
            path: dir.to_path_buf(),
            what: "model directory",
        });
    }
    let st = dir.join("model.safetensors");
    if st.is_file() {
        return Ok(st);
    }
    for name in ["pytorch_model.bin", "model.pt", "model.pth", "model.ckpt"] {
        if dir.join(name).exists() {
            return Err(LoadError::Pickle(dir.join(name)));
        }
    }
    Err(LoadError::Missing {
        path: st,
        what: "safetensors weights",
    })
}

/// Reads and checks `config.json` of a model directory.
pub fn read_config(dir: &Path) -> Result<(Gpt2Config, FileDigest), LoadError> {
    let path = dir.join("config.json");
    if !path.is_file() {
        return Err(LoadError::Missing {
            path,
            what: "config.json",
        });
    }
    let bytes = std::fs::read(&path).map_err(io(&path))?;
    let text = String::from_utf8(bytes.clone()).map_err(|_| LoadError::Config {
        path: path.clone(),
        msg: "not UTF-8".into(),
    })?;
    let cfg = Gpt2Config::from_json(&text).map_err(|msg| LoadError::Config { path, msg })?;
    Ok((cfg, digest("config.json", &bytes)))
}

/// Loads a GPT-2 from a Hugging Face directory into `dtype` (F32 or F64).
pub fn load_model(dir: &Path, dtype: DType) -> Result<LoadedModel, LoadError> {
    let wpath = weights_path(dir)?;
    let (cfg, cfg_digest) = read_config(dir)?;
    let bytes = std::fs::read(&wpath).map_err(io(&wpath))?;
    let (tensors, storage_dtype) = parse_weights(&wpath, &bytes, &cfg)?;
    let mut files = vec![cfg_digest, digest("model.safetensors", &bytes)];
    let tok = dir.join("tokenizer.json");
    if tok.is_file() {
        let tb = std::fs::read(&tok).map_err(io(&tok))?;
        files.push(digest("tokenizer.json", &tb));
    }
    let model = Gpt2::from_tensors(cfg, tensors, dtype).map_err(|e| LoadError::Tensor {
        path: wpath.clone(),
        msg: e.to_string(),
    })?;
    Ok(LoadedModel {
        model,
        storage_dtype,
        files,
        dir: dir.to_path_buf(),
    })
}

/// Checks the 8-byte length prefix against the file before the header is parsed.
fn check_header_len(path: &Path, bytes: &[u8]) -> Result<(), LoadError> {
    let trunc = |msg: String| LoadError::Truncated {
        path: path.to_path_buf(),
        msg,
    };
    if bytes.len() < 8 {
        return Err(trunc(format!(
            "{} bytes, shorter than the 8-byte header length",
            bytes.len()
        )));
    }
    let mut len8 = [0u8; 8];
    len8.copy_from_slice(&bytes[..8]);
    let n = u64::from_le_bytes(len8);
    if n > MAX_HEADER_BYTES {
        return Err(LoadError::HeaderTooLarge {
            path: path.to_path_buf(),
            len: n,
            limit: MAX_HEADER_BYTES,
        });
    }
    if 8 + n > bytes.len() as u64 {
        return Err(trunc(format!(
            "header claims {n} bytes but the file has {}",
            bytes.len() - 8
        )));
    }
    Ok(())
}

/// Canonical name of a stored tensor: files saved without the `transformer.` prefix load too.
fn canonical(name: &str) -> String {
    if name.starts_with("transformer.") || name.starts_with("lm_head.") {
        name.to_string()
    } else {
        format!("transformer.{name}")
    }
}

/// Buffers older transformers versions stored beside the weights; they are not parameters.
fn is_buffer(name: &str) -> bool {
    name.ends_with(".attn.bias") || name.ends_with(".attn.masked_bias")
}

fn parse_weights(
    path: &Path,
    bytes: &[u8],
    cfg: &Gpt2Config,
) -> Result<(BTreeMap<String, Tensor>, DType), LoadError> {
    check_header_len(path, bytes)?;
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| {
        let msg = e.to_string();
        match e {
            safetensors::SafeTensorError::MetadataIncompleteBuffer => LoadError::Truncated {
                path: path.to_path_buf(),
                msg,
            },
            _ => LoadError::Malformed {
                path: path.to_path_buf(),
                msg,
            },
        }
    })?;
    let expected: BTreeMap<String, Vec<usize>> = param_shapes(cfg).into_iter().collect();
    let want_dtype = cfg
        .dtype
        .as_deref()
        .and_then(|s| Some((storage_dtype_of(s)?, s)));
    let mut out = BTreeMap::new();
    let mut seen_dtype = None;
    for (raw_name, view) in st.tensors() {
        let name = canonical(&raw_name);
        if is_buffer(&name) || name == "lm_head.weight" {
            continue; // tied to wte (checked by config), or a non-parameter buffer
        }
        let Some(shape) = expected.get(&name) else {
            return Err(LoadError::UnexpectedTensor {
                path: path.to_path_buf(),
                name: raw_name,
            });
        };
        let t = tensor_of(path, &raw_name, &view, shape, want_dtype)?;
        seen_dtype.get_or_insert(t.dtype());
        out.insert(name, t);
    }
    for name in expected.keys() {
        if !out.contains_key(name) {
            return Err(LoadError::MissingTensor {
                path: path.to_path_buf(),
                name: name.clone(),
            });
        }
    }
    Ok((out, seen_dtype.unwrap_or(DType::F32)))
}

fn storage_dtype_of(s: &str) -> Option<DType> {
    match s {
        "float32" => Some(DType::F32),
        "float64" => Some(DType::F64),
        "float16" => Some(DType::F16),
        "bfloat16" => Some(DType::BF16),
        _ => None,
    }
}

fn tensor_of(
    path: &Path,
    name: &str,
    view: &safetensors::tensor::TensorView<'_>,
    shape: &[usize],
    want: Option<(DType, &str)>,
) -> Result<Tensor, LoadError> {
    use safetensors::Dtype as S;
    let err_dtype = |expected: String| LoadError::Dtype {
        path: path.to_path_buf(),
        name: name.to_string(),
        expected,
        found: format!("{:?}", view.dtype()),
    };
    let dtype = match view.dtype() {
        S::F32 => DType::F32,
        S::F64 => DType::F64,
        S::F16 => DType::F16,
        S::BF16 => DType::BF16,
        _ => return Err(err_dtype("GPT-2 weights must be floating point".into())),
    };
    if let Some((w, named)) = want {
        if w != dtype {
            return Err(err_dtype(format!("config.json says {named:?}")));
        }
    }
    if view.shape() != shape {
        return Err(LoadError::Shape {
            path: path.to_path_buf(),
            name: name.to_string(),
            expected: shape.to_vec(),
            found: view.shape().to_vec(),
        });
    }
    let t = Tensor::from_raw_buffer(view.data(), dtype, shape, &Device::Cpu).map_err(|e| {
        LoadError::Tensor {
            path: path.to_path_buf(),
            msg: format!("{name}: {e}"),
        }
    })?;
    let count = count_non_finite(&t).map_err(|e| LoadError::Tensor {
        path: path.to_path_buf(),
        msg: format!("{name}: {e}"),
    })?;
    if count > 0 {
        return Err(LoadError::NonFinite {
            path: path.to_path_buf(),
            name: name.to_string(),
            count,
        });
    }
    Ok(t)
}

fn count_non_finite(t: &Tensor) -> candle_core::Result<usize> {
    let v = t.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    Ok(v.iter().filter(|x| !x.is_finite()).count())
}
