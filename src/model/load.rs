//! Safe loading of a Hugging Face GPT-2 directory: `config.json` plus `model.safetensors`, or
//! the shards a `model.safetensors.index.json` names.
//! Pickle checkpoints are refused (unpickling runs code). Every file is treated as hostile
//! (`crate::untrusted`): regular files only, each size capped. The safetensors header is read
//! alone first and checked before any tensor data is read or any config-sized buffer allocated:
//! size limit, JSON, offsets, the file's length, then the config's sizes against what the
//! header holds, then every tensor's name, shape and dtype. Only then are exactly the declared
//! bytes read and each tensor checked for finiteness. This module owns reading model files and
//! their digests; it never writes.

use super::config::{ConfigError, Family, Gpt2Config};
use super::gpt2::Gpt2;
use super::params::{block_of, param_shapes};
pub use crate::digest::{digest, FileDigest};
use crate::untrusted::{open_regular, read_regular_file_capped, ReadError};
use candle_core::{CpuStorage, DType, Device, Storage, Tensor, Var};
use safetensors::tensor::{Metadata, TensorInfo};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Headers larger than this are refused before parsing (safetensors' own limit is 100 MB;
/// a GPT-2 header is a few kB).
pub const MAX_HEADER_BYTES: u64 = 16 * 1024 * 1024;

/// `config.json` is a few hundred bytes of hyper-parameters; a megabyte leaves room for any
/// metadata a hub adds, and keeps a hostile file from filling memory.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The tokenizer beside a model is only digested here (GPT-2's is 1.4 MB); see
/// `crate::data::tokenize::MAX_TOKENIZER_BYTES`, which this must match.
pub const MAX_TOKENIZER_BYTES: u64 = crate::data::tokenize::MAX_TOKENIZER_BYTES;

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
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("{path}: invalid config: {reason}")]
    Config { path: PathBuf, reason: ConfigError },
    #[error(
        "{config}: {field} is {value}, but {weights} holds at most {holds} ({what}); \
         the config does not describe these weights"
    )]
    ConfigExceedsWeights {
        config: PathBuf,
        field: &'static str,
        value: usize,
        weights: PathBuf,
        holds: usize,
        what: String,
    },
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
    #[error("{path}: sharded checkpoint index {msg}")]
    Index { path: PathBuf, msg: String },
}

/// What was loaded: the model, the dtype the weights were stored in, and the digests.
pub struct LoadedModel {
    pub model: Gpt2,
    pub storage_dtype: DType,
    /// How the weights were split into files: `None` for one `model.safetensors`; for a sharded
    /// checkpoint, each shard's file name (in the index's order) and the parameters it holds.
    pub shards: Option<Shards>,
    pub files: Vec<FileDigest>,
    pub dir: PathBuf,
    /// The bytes of the directory's `tokenizer.json` whose digest is in `files`, if it has one:
    /// build the tokenizer from these (`TextTokenizer::from_bytes`) rather than reading the file
    /// again, so the tokenizer used is the one digested.
    pub tokenizer_json: Option<Vec<u8>>,
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

/// The name of a sharded checkpoint's index (transformers' `save_pretrained` above its shard
/// size): `{"metadata": …, "weight_map": {tensor: shard file}}`.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// An index names a few shards per gigabyte of weights; more than this is not an index.
const MAX_SHARDS: usize = 4096;

/// An index is a few hundred bytes per tensor (a 70B Llama's is about 60 kB).
const MAX_INDEX_BYTES: u64 = 16 << 20;

/// Where a model directory keeps its weights.
enum WeightFiles {
    /// `model.safetensors`.
    Single(PathBuf),
    /// `model.safetensors.index.json` and the shards it names.
    Sharded(PathBuf),
}

/// The weights of a model directory; refuses pickles before looking any further.
fn weights_path(dir: &Path) -> Result<WeightFiles, LoadError> {
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
    if st.exists() {
        return Ok(WeightFiles::Single(st)); // whether it is a regular file is checked when opened
    }
    if dir.join(INDEX_FILE).exists() {
        return Ok(WeightFiles::Sharded(dir.join(INDEX_FILE)));
    }
    for name in [
        "pytorch_model.bin",
        "pytorch_model.bin.index.json",
        "model.pt",
        "model.pth",
        "model.ckpt",
    ] {
        if dir.join(name).exists() {
            return Err(LoadError::Pickle(dir.join(name)));
        }
    }
    Err(LoadError::Missing {
        path: st,
        what: "safetensors weights",
    })
}

/// True for the name of a file that holds weights or says where they are (`model.safetensors`,
/// a shard, the index): the files an unlearning record binds a model by.
pub fn is_weights_file(name: &str) -> bool {
    name.ends_with(".safetensors") || name == INDEX_FILE
}

/// Reads and checks `config.json` of a model directory.
pub fn read_config(dir: &Path) -> Result<(Gpt2Config, FileDigest), LoadError> {
    let path = dir.join("config.json");
    if !path.exists() {
        return Err(LoadError::Missing {
            path,
            what: "config.json",
        });
    }
    let bytes = read_regular_file_capped(&path, MAX_CONFIG_BYTES, "config.json")?;
    let text = std::str::from_utf8(&bytes).map_err(|_| LoadError::Config {
        path: path.clone(),
        reason: ConfigError::NotUtf8,
    })?;
    let cfg = Gpt2Config::from_json(text).map_err(|reason| LoadError::Config { path, reason })?;
    Ok((cfg, digest("config.json", &bytes)))
}

/// Loads a decoder of any family [`Gpt2Config`] reads from a Hugging Face directory into
/// `dtype` (F32 or F64): `model.safetensors`, or the shards a `model.safetensors.index.json`
/// names.
pub fn load_model(dir: &Path, dtype: DType) -> Result<LoadedModel, LoadError> {
    let weights = weights_path(dir)?;
    let (cfg, cfg_digest) = read_config(dir)?;
    let mut files = vec![cfg_digest];
    let cfg_path = dir.join("config.json");
    let mut shards = None;
    let (wpath, tensors, storage_dtype) = match weights {
        WeightFiles::Single(wpath) => {
            let header = read_header(&wpath)?;
            let mut stored = BTreeMap::new();
            stored_of(&wpath, &header.meta, &cfg, &mut stored)?;
            check_header(&wpath, &cfg_path, &cfg, stored)?;
            let bytes = read_data(header)?;
            let (tensors, storage_dtype) = parse_weights(&wpath, &bytes, &cfg)?;
            files.push(digest("model.safetensors", &bytes));
            (wpath, tensors, storage_dtype)
        }
        WeightFiles::Sharded(index) => {
            let (tensors, storage_dtype, digests, held) =
                load_shards(dir, &index, &cfg_path, &cfg)?;
            files.extend(digests);
            shards = Some(held);
            (index, tensors, storage_dtype)
        }
    };
    let tok = dir.join("tokenizer.json");
    let tokenizer_json = if tok.exists() {
        let tb = read_regular_file_capped(&tok, MAX_TOKENIZER_BYTES, "tokenizer.json")?;
        files.push(digest("tokenizer.json", &tb));
        Some(tb)
    } else {
        None
    };
    // The chat template's files decide how prompts become tokens: digested with the rest.
    for name in [
        crate::data::chat::TOKENIZER_CONFIG_FILE,
        crate::data::chat::TEMPLATE_FILE,
    ] {
        let path = dir.join(name);
        if path.exists() {
            let max = crate::data::chat::MAX_TEMPLATE_FILE_BYTES;
            files.push(digest(name, &read_regular_file_capped(&path, max, name)?));
        }
    }
    let model = Gpt2::from_tensors(cfg, tensors, dtype).map_err(|e| LoadError::Tensor {
        path: wpath.clone(),
        msg: e.to_string(),
    })?;
    Ok(LoadedModel {
        model,
        storage_dtype,
        shards,
        files,
        dir: dir.to_path_buf(),
        tokenizer_json,
    })
}

/// Each shard's file name and the parameters it holds, in the index's order.
pub type Shards = Vec<(String, Vec<String>)>;

impl LoadedModel {
    /// How to save a model as this one was stored: its dtype and its shards.
    pub fn storage(&self) -> super::save::Storage {
        super::save::Storage {
            dtype: self.storage_dtype,
            shards: self.shards.clone(),
        }
    }
}

/// The tensors of a sharded checkpoint, their storage dtype, the digests of the index and of each
/// shard (in the index's order of first mention), and which parameters each shard holds. The index
/// is hostile data like the rest: each shard it names must be a plain `.safetensors` file name in
/// `dir` (no path), and index and shards must agree exactly — every tensor a shard holds is mapped
/// to that shard, every mapped tensor is in its shard, no tensor is in two. Every shard's header is
/// read and checked, and the union checked against the config, before any tensor data is read.
#[allow(clippy::type_complexity)]
fn load_shards(
    dir: &Path,
    index: &Path,
    cfg_path: &Path,
    cfg: &Gpt2Config,
) -> Result<(BTreeMap<String, Tensor>, DType, Vec<FileDigest>, Shards), LoadError> {
    let bad = |msg: String| LoadError::Index {
        path: index.to_path_buf(),
        msg,
    };
    let bytes = read_regular_file_capped(index, MAX_INDEX_BYTES, "safetensors index")?;
    let text = std::str::from_utf8(&bytes).map_err(|_| bad("not UTF-8".into()))?;
    let json = crate::untrusted::StrictJson::parse(text).map_err(|e| bad(e.to_string()))?;
    if let Some(key) = json.duplicate_key {
        return Err(bad(format!("key {key:?} appears more than once")));
    }
    let Some(map) = json.value.get("weight_map").and_then(|m| m.as_object()) else {
        return Err(bad("no \"weight_map\" object".into()));
    };
    let mut shards: Vec<String> = Vec::new();
    let mut wanted: BTreeMap<String, &str> = BTreeMap::new();
    for (tensor, file) in map {
        let Some(file) = file.as_str() else {
            return Err(bad(format!("weight_map[{tensor:?}] is not a file name")));
        };
        if !plain_shard_name(file) {
            return Err(bad(format!(
                "weight_map[{tensor:?}] names {file:?}: a shard must be a plain file name ending \
                 in .safetensors, in the model's directory"
            )));
        }
        if !shards.iter().any(|s| s == file) {
            shards.push(file.to_string());
        }
        wanted.insert(tensor.clone(), file);
    }
    if shards.is_empty() || shards.len() > MAX_SHARDS {
        return Err(bad(format!(
            "names {} shards (1 to {MAX_SHARDS} expected)",
            shards.len()
        )));
    }
    let mut headers = Vec::with_capacity(shards.len());
    for name in &shards {
        let path = dir.join(name);
        if !path.exists() {
            return Err(LoadError::Missing {
                path,
                what: "safetensors shard named by the index",
            });
        }
        let header = read_header(&path)?;
        for raw in header.meta.tensors().keys() {
            match wanted.get(raw.as_str()) {
                Some(&f) if f == name => {}
                Some(&f) => {
                    return Err(bad(format!("maps {raw} to {f}, but {name} holds it")));
                }
                None => return Err(bad(format!("does not map {raw}, which {name} holds"))),
            }
        }
        headers.push(header);
    }
    let held: BTreeSet<(&str, String)> = shards
        .iter()
        .zip(&headers)
        .flat_map(|(s, h)| h.meta.tensors().into_keys().map(move |t| (s.as_str(), t)))
        .collect();
    for (raw, file) in &wanted {
        if !held.contains(&(*file, raw.clone())) {
            return Err(bad(format!("maps {raw} to {file}, which does not hold it")));
        }
    }
    let mut stored = BTreeMap::new();
    for h in &headers {
        stored_of(&h.path, &h.meta, cfg, &mut stored)?;
    }
    check_header(index, cfg_path, cfg, stored)?;
    let mut digests = vec![digest(INDEX_FILE, &bytes)];
    let (mut tensors, mut storage_dtype, mut held) = (BTreeMap::new(), None, Vec::new());
    for (name, header) in shards.iter().zip(headers) {
        let path = header.path.clone();
        let data = read_data(header)?;
        let (part, dtype) = parse_weights(&path, &data, cfg)?;
        storage_dtype.get_or_insert(dtype);
        held.push((name.clone(), part.keys().cloned().collect()));
        tensors.extend(part);
        digests.push(digest(name, &data));
    }
    Ok((tensors, storage_dtype.unwrap_or(DType::F32), digests, held))
}

/// A shard name an index may use: a plain file name (no directory part, no `..`), ending in
/// `.safetensors`.
fn plain_shard_name(name: &str) -> bool {
    let mut parts = Path::new(name).components();
    matches!(
        (parts.next(), parts.next()),
        (Some(std::path::Component::Normal(_)), None)
    ) && name.ends_with(".safetensors")
        && name.len() > ".safetensors".len()
        && !name.contains(['/', '\\', '\0'])
}

/// A safetensors file opened and its header read and parsed, its data not yet read.
struct Header {
    path: PathBuf,
    file: std::io::Take<std::fs::File>,
    len: u64,
    /// The 8-byte length and the header, as read.
    bytes: Vec<u8>,
    meta: Metadata,
}

/// Reads a safetensors file's header alone, checked against the file's length. Its tensors are
/// checked against the config by the caller ([`check_header`]) before [`read_data`] reads
/// exactly the tensor bytes the header declares.
fn read_header(path: &Path) -> Result<Header, LoadError> {
    let (file, len) = open_regular(path, "safetensors weights")?;
    let mut file = file.take(len); // never more than the length checked below
    let mut bytes = vec![0u8; 8.min(len as usize)];
    file.read_exact(&mut bytes).map_err(io(path))?;
    let n = check_header_len(path, &bytes, len)?;
    bytes.resize(8 + n as usize, 0);
    file.read_exact(&mut bytes[8..]).map_err(io(path))?;
    let meta: Metadata = serde_json::from_slice(&bytes[8..]).map_err(|e| LoadError::Malformed {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })?;
    Ok(Header {
        path: path.to_path_buf(),
        file,
        len,
        bytes,
        meta,
    })
}

/// The whole file, header included, as read once: exactly the tensor bytes the header
/// declares after it, no more and no fewer.
fn read_data(header: Header) -> Result<Vec<u8>, LoadError> {
    let Header {
        path,
        mut file,
        len,
        mut bytes,
        meta,
    } = header;
    let trunc = |msg: String| LoadError::Truncated {
        path: path.clone(),
        msg,
    };
    let n = bytes.len() as u64 - 8;
    let data = meta.data_len() as u64;
    let declared = (8 + n).saturating_add(data);
    if declared > len {
        return Err(trunc(format!(
            "the header declares {data} bytes of tensor data but the file holds {} after it",
            len - 8 - n
        )));
    }
    if declared < len {
        return Err(LoadError::Malformed {
            path: path.clone(),
            msg: format!(
                "{} bytes follow the {data} bytes of tensor data the header declares",
                len - declared
            ),
        });
    }
    bytes.reserve_exact(data as usize);
    file.read_to_end(&mut bytes).map_err(io(&path))?;
    if bytes.len() as u64 != declared {
        return Err(trunc(format!(
            "the file shrank to {} bytes while it was read",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// Checks the 8-byte length prefix against the file's length before the header is read;
/// returns the header's length.
fn check_header_len(path: &Path, prefix: &[u8], file_len: u64) -> Result<u64, LoadError> {
    let trunc = |msg: String| LoadError::Truncated {
        path: path.to_path_buf(),
        msg,
    };
    let Ok(len8) = <[u8; 8]>::try_from(prefix) else {
        return Err(trunc(format!(
            "{file_len} bytes, shorter than the 8-byte header length"
        )));
    };
    let n = u64::from_le_bytes(len8);
    if n > MAX_HEADER_BYTES {
        return Err(LoadError::HeaderTooLarge {
            path: path.to_path_buf(),
            len: n,
            limit: MAX_HEADER_BYTES,
        });
    }
    if 8 + n > file_len {
        return Err(trunc(format!(
            "header claims {n} bytes but the file has {}",
            file_len - 8
        )));
    }
    Ok(n)
}

/// Canonical name of a stored tensor: GPT-2 files saved without the `transformer.` prefix load
/// too; other families' names are their own.
fn canonical(name: &str, cfg: &Gpt2Config) -> String {
    if cfg.arch.family != Family::Gpt2
        || name.starts_with("transformer.")
        || name.starts_with("lm_head.")
    {
        name.to_string()
    } else {
        format!("transformer.{name}")
    }
}

/// Buffers older transformers versions stored beside a family's weights (causal masks, rotary
/// frequencies); they are not parameters.
fn is_buffer(name: &str, family: Family) -> bool {
    match family {
        Family::Gpt2 => name.ends_with(".attn.bias") || name.ends_with(".attn.masked_bias"),
        Family::Llama => name.ends_with(".rotary_emb.inv_freq"),
        Family::NeoX => {
            name.ends_with(".attention.bias")
                || name.ends_with(".attention.masked_bias")
                || name.ends_with(".rotary_emb.inv_freq")
        }
    }
}

/// Checks a safetensors header against the config before anything the config sizes is
/// allocated: first that each size the config names (vocab_size, n_embd, n_positions, n_layer)
/// is at most what the header holds, so a `config.json` claiming 10^12 layers is refused here;
/// then every tensor's name, shape and dtype against the parameters the config implies.
fn check_header(
    path: &Path,
    cfg_path: &Path,
    cfg: &Gpt2Config,
    stored: BTreeMap<String, (String, &TensorInfo)>,
) -> Result<(), LoadError> {
    check_config_bounds(path, cfg_path, cfg, &stored)?;
    let expected: BTreeMap<String, Vec<usize>> = param_shapes(cfg).into_iter().collect();
    let want_dtype = cfg
        .dtype
        .as_deref()
        .and_then(|s| Some((super::save::dtype_of_name(s)?, s)));
    for (name, (raw, info)) in &stored {
        let Some(shape) = expected.get(name) else {
            return Err(LoadError::UnexpectedTensor {
                path: path.to_path_buf(),
                name: raw.clone(),
            });
        };
        check_tensor(path, raw, info, shape, want_dtype)?;
    }
    if let Some(name) = expected.keys().find(|n| !stored.contains_key(*n)) {
        return Err(LoadError::MissingTensor {
            path: path.to_path_buf(),
            name: name.clone(),
        });
    }
    Ok(())
}

/// Adds a header's parameters to `stored` by canonical name (with the stored name), buffers and
/// the tied output layer left out; a parameter stored twice (`h.0.…` beside
/// `transformer.h.0.…`, or in two shards) is refused rather than one copy silently chosen.
fn stored_of<'a>(
    path: &Path,
    meta: &'a Metadata,
    cfg: &Gpt2Config,
    stored: &mut BTreeMap<String, (String, &'a TensorInfo)>,
) -> Result<(), LoadError> {
    for (raw, info) in meta.tensors() {
        let name = canonical(&raw, cfg);
        let tied_head = name == "lm_head.weight" || name == "embed_out.weight";
        if is_buffer(&name, cfg.arch.family) || (cfg.tied() && tied_head) {
            continue;
        }
        if let Some((first, _)) = stored.get(&name) {
            return Err(LoadError::Malformed {
                path: path.to_path_buf(),
                msg: format!("{name} is stored twice (as {first} and as {raw})"),
            });
        }
        stored.insert(name, (raw, info));
    }
    Ok(())
}

/// The sizes `config.json` names, each bounded by the tensors the header holds.
fn check_config_bounds(
    path: &Path,
    cfg_path: &Path,
    cfg: &Gpt2Config,
    stored: &BTreeMap<String, (String, &TensorInfo)>,
) -> Result<(), LoadError> {
    let exceeds = |field, value, holds, what: String| LoadError::ConfigExceedsWeights {
        config: cfg_path.to_path_buf(),
        field,
        value,
        weights: path.to_path_buf(),
        holds,
        what,
    };
    let bounded: &[(&str, &'static str, usize)] = match cfg.arch.family {
        Family::Gpt2 => &[
            ("transformer.wte.weight", "vocab_size", cfg.vocab_size),
            ("transformer.wpe.weight", "n_positions", cfg.n_positions),
        ],
        Family::Llama => &[("model.embed_tokens.weight", "vocab_size", cfg.vocab_size)],
        Family::NeoX => &[("gpt_neox.embed_in.weight", "vocab_size", cfg.vocab_size)],
    };
    for &(name, rows_field, rows) in bounded {
        let Some((_, info)) = stored.get(name) else {
            return Err(LoadError::MissingTensor {
                path: path.to_path_buf(),
                name: name.to_string(),
            });
        };
        let &[held_rows, held_cols] = info.shape.as_slice() else {
            return Err(LoadError::Shape {
                path: path.to_path_buf(),
                name: name.to_string(),
                expected: vec![rows, cfg.n_embd],
                found: info.shape.clone(),
            });
        };
        if rows > held_rows {
            return Err(exceeds(
                rows_field,
                rows,
                held_rows,
                format!("rows of {name}"),
            ));
        }
        if cfg.n_embd > held_cols {
            return Err(exceeds(
                "n_embd",
                cfg.n_embd,
                held_cols,
                format!("columns of {name}"),
            ));
        }
    }
    let blocks: BTreeSet<usize> = stored.keys().filter_map(|n| block_of(n)).collect();
    if cfg.n_layer > blocks.len() {
        return Err(exceeds(
            "n_layer",
            cfg.n_layer,
            blocks.len(),
            match cfg.arch.family {
                Family::Gpt2 => "blocks transformer.h.N".into(),
                Family::Llama => "blocks model.layers.N".into(),
                Family::NeoX => "blocks gpt_neox.layers.N".into(),
            },
        ));
    }
    Ok(())
}

/// One stored tensor's dtype and shape against what the config implies.
fn check_tensor(
    path: &Path,
    name: &str,
    info: &TensorInfo,
    shape: &[usize],
    want: Option<(DType, &str)>,
) -> Result<(), LoadError> {
    let err_dtype = |expected: String| LoadError::Dtype {
        path: path.to_path_buf(),
        name: name.to_string(),
        expected,
        found: format!("{:?}", info.dtype),
    };
    let Some(dtype) = float_dtype(info.dtype) else {
        return Err(err_dtype("weights must be floating point".into()));
    };
    if let Some((w, named)) = want {
        if w != dtype {
            return Err(err_dtype(format!("config.json says {named:?}")));
        }
    }
    if info.shape != shape {
        return Err(LoadError::Shape {
            path: path.to_path_buf(),
            name: name.to_string(),
            expected: shape.to_vec(),
            found: info.shape.clone(),
        });
    }
    Ok(())
}

fn float_dtype(d: safetensors::Dtype) -> Option<DType> {
    use safetensors::Dtype as S;
    match d {
        S::F32 => Some(DType::F32),
        S::F64 => Some(DType::F64),
        S::F16 => Some(DType::F16),
        S::BF16 => Some(DType::BF16),
        _ => None,
    }
}

/// Builds the tensors of a file whose header [`check_header`] accepted, refusing non-finite
/// values.
fn parse_weights(
    path: &Path,
    bytes: &[u8],
    cfg: &Gpt2Config,
) -> Result<(BTreeMap<String, Tensor>, DType), LoadError> {
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| LoadError::Malformed {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })?;
    let expected: BTreeMap<String, Vec<usize>> = param_shapes(cfg).into_iter().collect();
    let mut out = BTreeMap::new();
    let mut seen_dtype = None;
    for (raw_name, view) in st.tensors() {
        let name = canonical(&raw_name, cfg);
        if !expected.contains_key(&name) {
            continue; // tied to wte (checked by config), or a non-parameter buffer
        }
        let t = tensor_of(path, &raw_name, &view)?;
        seen_dtype.get_or_insert(t.dtype());
        out.insert(name, t);
    }
    Ok((out, seen_dtype.unwrap_or(DType::F32)))
}

fn tensor_of(
    path: &Path,
    name: &str,
    view: &safetensors::tensor::TensorView<'_>,
) -> Result<Tensor, LoadError> {
    let tensor_err = |e: candle_core::Error| LoadError::Tensor {
        path: path.to_path_buf(),
        msg: format!("{name}: {e}"),
    };
    let Some(dtype) = float_dtype(view.dtype()) else {
        return Err(LoadError::Malformed {
            path: path.to_path_buf(),
            msg: format!("{name}: not a float dtype"),
        });
    };
    let t = Tensor::from_raw_buffer(view.data(), dtype, view.shape(), &Device::Cpu)
        .map_err(tensor_err)?;
    let count = count_non_finite(&t).map_err(tensor_err)?;
    if count > 0 {
        return Err(LoadError::NonFinite {
            path: path.to_path_buf(),
            name: name.to_string(),
            count,
        });
    }
    // The parameter's own storage, made here while only this tensor is a temporary:
    // `Gpt2::from_tensors` adopts a variable of the model's dtype as it is, so a model is not
    // held twice while it is built (a 124M model's load peaked at three copies of it).
    Ok(Var::from_tensor(&t).map_err(tensor_err)?.into_inner())
}

/// The NaN and infinite entries of a freshly read (contiguous) tensor, counted in place: a
/// float64 copy of GPT-2's token embedding alone would be 0.6 GB of temporaries.
fn count_non_finite(t: &Tensor) -> candle_core::Result<usize> {
    let (storage, layout) = t.storage_and_layout();
    let Some((a, b)) = layout.contiguous_offsets() else {
        candle_core::bail!("a freshly read tensor is contiguous");
    };
    let count = |finite: &dyn Fn(usize) -> bool| (a..b).filter(|&i| !finite(i)).count();
    Ok(match &*storage {
        Storage::Cpu(CpuStorage::F32(v)) => count(&|i| v[i].is_finite()),
        Storage::Cpu(CpuStorage::F64(v)) => count(&|i| v[i].is_finite()),
        Storage::Cpu(CpuStorage::BF16(v)) => count(&|i| v[i].is_finite()),
        Storage::Cpu(CpuStorage::F16(v)) => count(&|i| v[i].is_finite()),
        _ => candle_core::bail!("not a float tensor on the CPU: {:?}", t.dtype()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NaN and ±∞ are counted in every float dtype a checkpoint may store, within the tensor's
    /// own range of its storage (a narrowed view counts only its elements).
    #[test]
    fn non_finite_entries_are_counted_in_every_float_dtype() {
        let v = [
            1.0f64,
            f64::NAN,
            -2.5,
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.0,
        ];
        for dtype in [DType::F32, DType::F64, DType::BF16, DType::F16] {
            let t = Tensor::new(&v[..], &Device::Cpu)
                .and_then(|t| t.to_dtype(dtype))
                .expect("tensor");
            assert_eq!(count_non_finite(&t).expect("count"), 3, "{dtype:?}");
            let tail = t.narrow(0, 2, 4).expect("view");
            assert_eq!(count_non_finite(&tail).expect("count"), 2, "{dtype:?}");
        }
        let ints = Tensor::new(&[1u32, 2][..], &Device::Cpu).expect("tensor");
        assert!(count_non_finite(&ints).is_err());
    }
}
