//! Batches of tokenized records, right-padded, with the attention mask and the weight of every
//! next-token target (1 for a scored token, 0 for padding and for the prompt of a
//! question–answer record). Plain vectors: the model turns them into tensors.

use super::tokenize::Encoded;
use candle_core::{DType, Device, Result, Tensor};

/// Indices of records grouped for batching: sorted by length (so a batch pads little), each
/// group at most `max_rows` records and at most `max_tokens` padded tokens (`rows × longest`).
/// Every index appears once; within a group, shorter records first.
pub fn length_groups(lens: &[usize], max_rows: usize, max_tokens: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lens.len()).collect();
    order.sort_by_key(|&i| (lens[i], i));
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut cur: Vec<usize> = Vec::new();
    for i in order {
        let rows = cur.len() + 1;
        if !cur.is_empty() && (rows > max_rows.max(1) || rows * lens[i] > max_tokens) {
            out.push(std::mem::take(&mut cur));
        }
        cur.push(i);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[derive(Debug, Clone)]
pub struct Batch {
    /// Token ids, `rows × cols`, row-major, right-padded with `pad_id`.
    pub ids: Vec<u32>,
    /// 1 for a real token, 0 for padding, `rows × cols`.
    pub attention: Vec<u32>,
    /// Weight of the target `ids[r, c+1]` predicted at position `c`, `rows × (cols-1)`.
    pub target_weight: Vec<f32>,
    pub rows: usize,
    pub cols: usize,
    /// The record id of each row.
    pub record_ids: Vec<String>,
}

impl Batch {
    /// Pads `records` to the longest one. Each record must hold at least two tokens (checked
    /// when it was encoded).
    pub fn new(records: &[&Encoded], pad_id: u32) -> Batch {
        let rows = records.len();
        let cols = records
            .iter()
            .map(|r| r.ids.len())
            .max()
            .unwrap_or(0)
            .max(2);
        let mut ids = vec![pad_id; rows * cols];
        let mut attention = vec![0u32; rows * cols];
        let mut target_weight = vec![0f32; rows * (cols - 1)];
        for (r, rec) in records.iter().enumerate() {
            let n = rec.ids.len();
            ids[r * cols..r * cols + n].copy_from_slice(&rec.ids);
            attention[r * cols..r * cols + n].fill(1);
            // Target t+1 is scored when it is real and not part of the prompt.
            let first = rec.score_from.max(1);
            for t in first..n {
                target_weight[r * (cols - 1) + t - 1] = 1.0;
            }
        }
        let record_ids = records.iter().map(|r| r.id.clone()).collect();
        Batch {
            ids,
            attention,
            target_weight,
            rows,
            cols,
            record_ids,
        }
    }

    /// The target weights as a `[rows, cols-1]` tensor.
    pub fn weight_tensor(&self, dtype: DType, device: &Device) -> Result<Tensor> {
        Tensor::from_slice(&self.target_weight, (self.rows, self.cols - 1), device)?.to_dtype(dtype)
    }

    /// Number of scored target tokens.
    pub fn scored_tokens(&self) -> usize {
        self.target_weight.iter().filter(|&&w| w > 0.0).count()
    }

    /// Number of real (non-padding) tokens.
    pub fn real_tokens(&self) -> usize {
        self.attention.iter().filter(|&&a| a == 1).count()
    }
}
