//! The first-epoch gradient ledger (the seed paper's central idea): while training, the first
//! time each record is seen, its own gradient on chosen parameter groups at the parameters of
//! that moment; optionally at every epoch. Unlearning later ascends along these gradients.
//!
//! Storage is compact. An embedding gradient from token lookups touches only the rows of the
//! tokens present, so `wte` is stored as (row ids, rows) and `wpe` as the rows of the positions
//! used. GPT-2's output layer is tied to `wte`, and its share of `wte`'s gradient is dense (every
//! vocabulary row, rank ≤ sequence length): the ledger records the **input-side** gradient of
//! `wte` only — computed with the tied output layer detached — and says so in its index
//! (`wte_part = "input"`). Other groups' parameters are stored dense. Tensors go into one
//! safetensors file; `ledger.json` indexes them by record id and binds them to the trained
//! model by the sha256 of its `model.safetensors` and of the tensor file.

use crate::atomic::write_atomic;
use crate::data::{Batch, Encoded};
use crate::model::{grad::loss_and_grad, Gpt2, ParamGroups};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

pub const INDEX_FILE: &str = "ledger.json";
pub const TENSOR_FILE: &str = "ledger.safetensors";

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("{path}: {msg}")]
    File { path: PathBuf, msg: String },
    #[error(
        "the ledger in {dir} belongs to the model with model.safetensors sha256 {expected}, \
         not to this one ({found}); it was recorded while training another model"
    )]
    WrongModel {
        dir: PathBuf,
        expected: String,
        found: String,
    },
    #[error("{0}")]
    Compute(#[from] candle_core::Error),
}

/// Which epochs the ledger records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LedgerEpochs {
    First,
    All,
}

/// One recorded gradient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub record: String,
    pub epoch: usize,
    /// Optimiser steps taken before this gradient was recorded.
    pub step: usize,
    pub loss: f64,
    pub tokens: usize,
    /// Prefix of this entry's tensors in the safetensors file.
    pub key: String,
    pub bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerIndex {
    pub schema_version: u32,
    pub groups: String,
    pub epochs: LedgerEpochs,
    /// `"input"`: wte's gradient without the tied output layer's share (see the module docs).
    pub wte_part: String,
    pub model_sha256: String,
    pub tensors_sha256: String,
    pub entries: Vec<Entry>,
}

/// An embedding gradient from token lookups: the row ids it touches and those rows.
#[derive(Debug, Clone)]
pub struct WteRows {
    /// `[n]` u32 row ids (a token repeated in the record appears once).
    pub ids: Tensor,
    /// `[n, n_embd]`.
    pub rows: Tensor,
}

impl WteRows {
    /// Several row gradients as one (ids may repeat: `scatter` adds them); `None` for none.
    pub fn concat(parts: &[WteRows]) -> candle_core::Result<Option<WteRows>> {
        if parts.is_empty() {
            return Ok(None);
        }
        let ids: Vec<Tensor> = parts.iter().map(|p| p.ids.clone()).collect();
        let rows: Vec<Tensor> = parts.iter().map(|p| p.rows.clone()).collect();
        Ok(Some(WteRows {
            ids: Tensor::cat(&ids, 0)?,
            rows: Tensor::cat(&rows, 0)?,
        }))
    }

    /// The dense `[vocab, n_embd]` gradient.
    pub fn scatter(&self, model: &Gpt2) -> candle_core::Result<Tensor> {
        let z = model
            .get(model.token_embedding())
            .ok_or_else(|| candle_core::Error::Msg("the model has no wte".into()))?
            .zeros_like()?;
        z.index_add(&self.ids, &self.rows, 0)
    }
}

/// One entry's gradient as stored: `wte` compact, the other parameters dense.
#[derive(Debug, Clone)]
pub struct EntryGrad {
    pub wte_rows: Option<WteRows>,
    pub dense: BTreeMap<String, Tensor>,
}

/// How well one epoch's recorded gradients still describe their records at a model
/// (`Ledger::alignment`, summarised).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alignment {
    pub epoch: usize,
    pub records: usize,
    pub mean_cosine: f64,
    pub median_cosine: f64,
}

/// A ledger being recorded during training.
pub struct LedgerRecorder {
    pub groups: ParamGroups,
    pub epochs: LedgerEpochs,
    /// Only these record ids are recorded (all when `None`).
    pub only: Option<std::collections::HashSet<String>>,
    entries: Vec<Entry>,
    tensors: Vec<(String, Tensor)>,
}

impl LedgerRecorder {
    pub fn new(
        groups: ParamGroups,
        epochs: LedgerEpochs,
        only: Option<std::collections::HashSet<String>>,
    ) -> Self {
        LedgerRecorder {
            groups,
            epochs,
            only,
            entries: Vec::new(),
            tensors: Vec::new(),
        }
    }

    pub fn wants(&self, record: &str, epoch: usize) -> bool {
        (epoch == 0 || self.epochs == LedgerEpochs::All)
            && self.only.as_ref().is_none_or(|s| s.contains(record))
    }

    /// Records `rec`'s own gradient at the model's current parameters. The model's trainable
    /// set and output-gradient flag are restored afterwards.
    pub fn record(
        &mut self,
        model: &mut Gpt2,
        rec: &Encoded,
        pad: u32,
        epoch: usize,
        step: usize,
    ) -> Result<(), LedgerError> {
        let (loss, grads) = record_gradient(model, rec, pad, &self.groups)?;
        let key = format!("e{}", self.entries.len());
        let mut bytes = 0;
        for (name, g) in compact(model, rec, grads)? {
            bytes += g.elem_count() * g.dtype().size_in_bytes();
            self.tensors.push((format!("{key}.{name}"), g));
        }
        let entry = Entry {
            record: rec.id.clone(),
            epoch,
            step,
            loss,
            tokens: rec.ids.len(),
            key,
            bytes,
        };
        self.entries.push(entry);
        Ok(())
    }

    /// Writes `ledger.safetensors` and `ledger.json` into `dir`, bound to the model whose
    /// `model.safetensors` has digest `model_sha256`.
    pub fn save(self, dir: &Path, model_sha256: &str) -> Result<LedgerIndex, LedgerError> {
        let file_err = |path: &Path, msg: String| LedgerError::File {
            path: path.to_path_buf(),
            msg,
        };
        std::fs::create_dir_all(dir).map_err(|e| file_err(dir, e.to_string()))?;
        let tpath = dir.join(TENSOR_FILE);
        let bytes = safetensors::serialize(self.tensors, None)
            .map_err(|e| file_err(&tpath, e.to_string()))?;
        write_atomic(&tpath, &bytes).map_err(|e| file_err(&tpath, e.to_string()))?;
        let index = LedgerIndex {
            schema_version: 1,
            groups: self.groups.to_string(),
            epochs: self.epochs,
            wte_part: "input".into(),
            model_sha256: model_sha256.to_string(),
            tensors_sha256: crate::digest::sha256_hex(&bytes),
            entries: self.entries,
        };
        let ipath = dir.join(INDEX_FILE);
        let text =
            serde_json::to_string_pretty(&index).map_err(|e| file_err(&ipath, e.to_string()))?;
        write_atomic(&ipath, text.as_bytes()).map_err(|e| file_err(&ipath, e.to_string()))?;
        Ok(index)
    }
}

/// The loss and the gradient of one record on `groups`, `wte` taken on the input side only.
pub fn record_gradient(
    model: &mut Gpt2,
    rec: &Encoded,
    pad: u32,
    groups: &ParamGroups,
) -> Result<(f64, Vec<(String, Tensor)>), LedgerError> {
    let before: Vec<String> = model
        .trainable_vars()
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    model
        .set_trainable(groups)
        .map_err(candle_core::Error::Msg)?;
    model.set_output_grad(false);
    let result = loss_and_grad(model, &Batch::new(&[rec], pad));
    model.set_output_grad(true);
    model.set_trainable_names(&before);
    Ok(result?)
}

/// Keeps only the rows a token lookup touches: the token embedding → (`wte.ids`, `wte.rows`),
/// GPT-2's `wpe` → the first `len` rows; other parameters unchanged.
fn compact(
    model: &Gpt2,
    rec: &Encoded,
    grads: Vec<(String, Tensor)>,
) -> candle_core::Result<Vec<(String, Tensor)>> {
    let mut out = Vec::new();
    for (name, g) in grads {
        if name == model.token_embedding() {
            let mut ids = rec.ids.clone();
            ids.sort_unstable();
            ids.dedup();
            let idx = Tensor::new(ids.as_slice(), g.device())?;
            out.push((
                "wte.rows".to_string(),
                g.index_select(&idx, 0)?.to_dtype(DType::F32)?,
            ));
            out.push(("wte.ids".to_string(), idx));
        } else if Some(name.as_str()) == model.position_embedding() {
            out.push((
                "wpe.rows".to_string(),
                g.narrow(0, 0, rec.ids.len())?.to_dtype(DType::F32)?,
            ));
        } else {
            out.push((name, g.to_dtype(DType::F32)?));
        }
    }
    Ok(out)
}

/// A recorded ledger, loaded for unlearning.
pub struct Ledger {
    pub index: LedgerIndex,
    pub dir: PathBuf,
    tensors: HashMap<String, Tensor>,
}

impl Ledger {
    pub fn load(dir: &Path) -> Result<Ledger, LedgerError> {
        let file_err = |path: &Path, msg: String| LedgerError::File {
            path: path.to_path_buf(),
            msg,
        };
        let ipath = dir.join(INDEX_FILE);
        let text = std::fs::read(&ipath).map_err(|e| file_err(&ipath, e.to_string()))?;
        let index: LedgerIndex =
            serde_json::from_slice(&text).map_err(|e| file_err(&ipath, e.to_string()))?;
        let tpath = dir.join(TENSOR_FILE);
        let bytes = std::fs::read(&tpath).map_err(|e| file_err(&tpath, e.to_string()))?;
        let digest = crate::digest::sha256_hex(&bytes);
        if digest != index.tensors_sha256 {
            return Err(file_err(
                &tpath,
                format!(
                    "sha256 {digest} differs from the {} in {INDEX_FILE}",
                    index.tensors_sha256
                ),
            ));
        }
        let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .map_err(|e| file_err(&tpath, e.to_string()))?;
        Ok(Ledger {
            index,
            dir: dir.to_path_buf(),
            tensors,
        })
    }

    /// Refuses a model other than the one the ledger was recorded for.
    pub fn check_model(&self, model_sha256: &str) -> Result<(), LedgerError> {
        if self.index.model_sha256 != model_sha256 {
            return Err(LedgerError::WrongModel {
                dir: self.dir.clone(),
                expected: self.index.model_sha256.clone(),
                found: model_sha256.to_string(),
            });
        }
        Ok(())
    }

    /// The entries of `record`, in the order recorded.
    pub fn entries_of(&self, record: &str) -> Vec<&Entry> {
        self.index
            .entries
            .iter()
            .filter(|e| e.record == record)
            .collect()
    }

    /// The gradient of an entry as dense tensors shaped like `model`'s parameters, by name.
    pub fn dense(
        &self,
        entry: &Entry,
        model: &Gpt2,
    ) -> Result<BTreeMap<String, Tensor>, LedgerError> {
        let mut g = self.compact(entry, model)?;
        if let Some(rows) = g.wte_rows {
            g.dense
                .insert(model.token_embedding().to_string(), rows.scatter(model)?);
        }
        Ok(g.dense)
    }

    /// The gradient of an entry as stored: `wte` as the rows its tokens touch (when recorded
    /// that way), every other parameter dense, shaped like `model`'s.
    pub fn compact(&self, entry: &Entry, model: &Gpt2) -> Result<EntryGrad, LedgerError> {
        let get = |k: &str| {
            self.tensors
                .get(&format!("{}.{k}", entry.key))
                .ok_or_else(|| LedgerError::File {
                    path: self.dir.join(TENSOR_FILE),
                    msg: format!("tensor {}.{k} is missing", entry.key),
                })
        };
        let mut out = EntryGrad {
            wte_rows: None,
            dense: BTreeMap::new(),
        };
        let has = |k: &str| self.tensors.contains_key(&format!("{}.{k}", entry.key));
        for name in model.names() {
            let dense = if name == model.token_embedding() && has("wte.ids") {
                out.wte_rows = Some(WteRows {
                    ids: get("wte.ids")?.clone(),
                    rows: get("wte.rows")?.to_dtype(model.dtype())?,
                });
                continue;
            } else if Some(name.as_str()) == model.position_embedding() && has("wpe.rows") {
                let z = model
                    .get(name)
                    .ok_or_else(|| candle_core::Error::Msg("no wpe".into()))?
                    .zeros_like()?;
                let rows = get("wpe.rows")?.to_dtype(z.dtype())?;
                z.slice_assign(&[0..rows.dim(0)?, 0..rows.dim(1)?], &rows)?
            } else {
                match self.tensors.get(&format!("{}.{name}", entry.key)) {
                    Some(t) => t.to_dtype(model.dtype())?,
                    None => continue,
                }
            };
            out.dense.insert(name.clone(), dense);
        }
        Ok(out)
    }

    /// How well the recorded gradients of `epoch` still describe the records at `model`'s
    /// parameters: for each of `records` (encoded as in training), the cosine between its
    /// recorded gradient and its gradient now, on the ledger's groups with `wte` on the input
    /// side as recorded. 1 for entries recorded at these parameters; near 0 when training has
    /// since moved the parameters so far that ascending along the record's recorded direction
    /// no longer raises its loss. A record without an entry of that epoch is an error.
    pub fn alignment(
        &self,
        model: &mut Gpt2,
        records: &[Encoded],
        pad: u32,
        epoch: usize,
    ) -> Result<Vec<f64>, LedgerError> {
        let groups: ParamGroups = self.index.groups.parse().map_err(|e| LedgerError::File {
            path: self.dir.join(INDEX_FILE),
            msg: format!("field groups: {e}"),
        })?;
        let mut out = Vec::with_capacity(records.len());
        for rec in records {
            let entry = self
                .entries_of(&rec.id)
                .into_iter()
                .find(|e| e.epoch == epoch)
                .ok_or_else(|| LedgerError::File {
                    path: self.dir.join(INDEX_FILE),
                    msg: format!("no entry of epoch {epoch} for record {:?}", rec.id),
                })?;
            let recorded = self.dense(entry, model)?;
            let (_, now) = record_gradient(model, rec, pad, &groups)?;
            let (mut dot, mut a, mut b) = (0.0, 0.0, 0.0);
            for (name, g) in &now {
                let (g, r) = (
                    g.to_dtype(DType::F64)?,
                    match recorded.get(name) {
                        Some(r) => r.to_dtype(DType::F64)?,
                        None => continue,
                    },
                );
                let sum = |t: Tensor| t.sum_all()?.to_scalar::<f64>();
                dot += sum((&g * &r)?)?;
                a += sum(g.sqr()?)?;
                b += sum(r.sqr()?)?;
            }
            out.push(dot / (a * b).sqrt());
        }
        Ok(out)
    }

    /// `alignment` summarised: how many records, the mean and the median cosine.
    pub fn alignment_summary(
        &self,
        model: &mut Gpt2,
        records: &[Encoded],
        pad: u32,
        epoch: usize,
    ) -> Result<Alignment, LedgerError> {
        let mut c = self.alignment(model, records, pad, epoch)?;
        c.sort_by(f64::total_cmp);
        Ok(Alignment {
            epoch,
            records: c.len(),
            mean_cosine: c.iter().sum::<f64>() / c.len().max(1) as f64,
            median_cosine: c.get(c.len() / 2).copied().unwrap_or(f64::NAN),
        })
    }

    /// Total bytes of stored gradients and the number of entries.
    pub fn size(&self) -> (usize, usize) {
        (
            self.index.entries.iter().map(|e| e.bytes).sum(),
            self.index.entries.len(),
        )
    }
}
