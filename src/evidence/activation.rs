//! The seed paper's activation score: per layer (the embedding output, then each block's
//! output), the cosine similarity between the original and the unlearned model's hidden state at
//! each real token, averaged over a record's tokens. On forget inputs a real erasure should move
//! the activations (similarity below the retain baseline); on retain inputs they should stay put
//! (similarity near 1). This module reads both models; it never changes them.

use super::scoring::length_batches;
use crate::data::{Batch, Encoded};
use crate::model::Gpt2;
use candle_core::{DType, Result, D};

/// `[record][layer]` mean cosine similarity over the record's real tokens.
pub fn cosines(
    original: &Gpt2,
    unlearned: &Gpt2,
    records: &[Encoded],
    pad_id: u32,
) -> Result<Vec<Vec<f64>>> {
    let lens: Vec<usize> = records.iter().map(|r| r.ids.len()).collect();
    let mut out = vec![Vec::new(); records.len()];
    // Hidden states are [B, T, C]; budget them like logits of width C per layer.
    let width = original.config().n_embd * (original.config().n_layer + 1);
    for group in length_batches(&lens, width) {
        let refs: Vec<&Encoded> = group.iter().map(|&i| &records[i]).collect();
        let batch = Batch::new(&refs, pad_id);
        let (ids, att) = original.batch_tensors(&batch)?;
        let (a, b) = (
            original.hidden_states(&ids, &att)?,
            unlearned.hidden_states(&ids, &att)?,
        );
        for (ha, hb) in a.layers.iter().zip(&b.layers) {
            let (ha, hb) = (ha.to_dtype(DType::F64)?, hb.to_dtype(DType::F64)?);
            let num = (&ha * &hb)?.sum(D::Minus1)?;
            let den = (ha.sqr()?.sum(D::Minus1)?.sqrt()? * hb.sqr()?.sum(D::Minus1)?.sqrt()?)?;
            let cos = num
                .div(&den.clamp(1e-300, f64::INFINITY)?)?
                .to_vec2::<f64>()?;
            for (row, &i) in group.iter().enumerate() {
                let n = records[i].ids.len();
                out[i].push(cos[row][..n].iter().sum::<f64>() / n as f64);
            }
        }
    }
    Ok(out)
}
