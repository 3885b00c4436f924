//! Incremental decoding with a key/value cache: a prefill pass over a right-padded batch of
//! prompts that keeps every block's keys and values, then one token per row per step attending
//! to the cached keys and values instead of re-running the prefix. Row r's prompt fills slots
//! `0..L_r` of its cache, the padding slots up to the longest prompt are masked, and the tokens
//! fed afterwards fill the slots after it, each at its own position `L_r, L_r + 1, …` (so a row
//! sees exactly the keys and values an uncached forward pass over its own tokens would, in the
//! same order, with masked slots between). Inference only: nothing here enters the autograd
//! graph. This module owns the cache and the cached forward; the decoding loop is `generate`.

use super::gpt2::Gpt2;
use super::ops;
use candle_core::{Result, Tensor};

/// Every block's keys and values `[B, H, capacity, D]` for the tokens seen so far, and which
/// slots hold a real token.
pub struct KvCache {
    /// Keys and values per block, preallocated to the capacity and filled in place.
    layers: Vec<(Tensor, Tensor)>,
    /// `keep[r][s]` is 1 where slot `s` of row `r` holds a real token.
    keep: Vec<Vec<u32>>,
    /// Slots used (the same for every row).
    used: usize,
    /// Position id of each row's next token.
    next_pos: Vec<usize>,
}

impl KvCache {
    /// Rows in the cache.
    pub fn rows(&self) -> usize {
        self.keep.len()
    }

    /// Keeps only rows `rows` (indices into the current rows, in the order given), so finished
    /// rows cost nothing in later steps.
    pub fn retain_rows(&mut self, rows: &[usize]) -> Result<()> {
        if rows.iter().any(|&r| r >= self.rows()) {
            candle_core::bail!("retain_rows: row outside a cache of {} rows", self.rows());
        }
        let dev = self.layers.first().map(|(k, _)| k.device().clone());
        if let Some(dev) = dev {
            let idx: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
            let idx = Tensor::from_vec(idx, rows.len(), &dev)?;
            for (k, v) in &mut self.layers {
                *k = k.index_select(&idx, 0)?;
                *v = v.index_select(&idx, 0)?;
            }
        }
        self.keep = rows.iter().map(|&r| self.keep[r].clone()).collect();
        self.next_pos = rows.iter().map(|&r| self.next_pos[r]).collect();
        Ok(())
    }

    /// The mask of the slots used so far, `[B, used]` (u32).
    fn mask(&self, dev: &candle_core::Device) -> Result<Tensor> {
        let flat: Vec<u32> = self
            .keep
            .iter()
            .flat_map(|k| k[..self.used].iter().copied())
            .collect();
        Tensor::from_vec(flat, (self.rows(), self.used), dev)
    }
}

impl Gpt2 {
    /// Runs the prompts `ids` `[B, T]` (right-padded, `attention` `[B, T]` 1 on real tokens)
    /// once, keeping every block's keys and values in a cache with room for `extra` more tokens
    /// per row. Returns the logits `[B, V]` of the next token after position `last[r]` of row
    /// `r` (its last real token) — the values [`Gpt2::next_logits`] gives — and the cache.
    pub fn prefill(
        &self,
        ids: &Tensor,
        attention: &Tensor,
        last: &[usize],
        extra: usize,
    ) -> Result<(Tensor, KvCache)> {
        let (b, t) = ids.dims2()?;
        let cfg = self.config();
        if t > cfg.n_positions || last.len() != b || last.iter().any(|&p| p >= t) {
            candle_core::bail!(
                "prefill: {} positions for {b} rows of {t} tokens (context {})",
                last.len(),
                cfg.n_positions
            );
        }
        let (heads, hd) = (cfg.n_head, cfg.head_dim());
        let capacity = t + extra;
        let mask = ops::attention_mask(attention, self.dtype())?;
        let mut h = self.embed(ids)?;
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for layer in 0..cfg.n_layer {
            let kc = Tensor::zeros((b, heads, capacity, hd), self.dtype(), self.device())?;
            let vc = kc.zeros_like()?;
            h = self.block_with(layer, &h, |q, k, v| {
                kc.slice_set(&k, 2, 0)?;
                vc.slice_set(&v, 2, 0)?;
                self.attend(&q, &k, &v, &mask)
            })?;
            layers.push((kc, vc));
        }
        let rows: Vec<u32> = last
            .iter()
            .enumerate()
            .map(|(r, &p)| (r * t + p) as u32)
            .collect();
        let idx = Tensor::from_vec(rows, b, self.device())?;
        let picked = h.reshape((b * t, cfg.n_embd))?.index_select(&idx, 0)?;
        let logits = self.head(&picked.reshape((1, b, cfg.n_embd))?)?;
        let mut keep = vec![vec![0u32; capacity]; b];
        for (r, row) in attention.to_vec2::<u32>()?.into_iter().enumerate() {
            keep[r][..t].copy_from_slice(&row);
        }
        let cache = KvCache {
            layers,
            keep,
            used: t,
            next_pos: last.iter().map(|&p| p + 1).collect(),
        };
        Ok((logits.reshape((b, cfg.vocab_size))?, cache))
    }

    /// Feeds one token per cached row (`tokens[r]` at row r's next position) and returns the
    /// logits `[B, V]` of the token after it; the cache grows by one slot.
    pub fn step(&self, cache: &mut KvCache, tokens: &[u32]) -> Result<Tensor> {
        let cfg = self.config();
        let b = cache.rows();
        let slot = cache.used;
        let capacity = cache.keep.first().map_or(0, Vec::len);
        if tokens.len() != b || slot >= capacity {
            candle_core::bail!(
                "step: {} tokens for {b} cached rows, slot {slot} of {capacity}",
                tokens.len()
            );
        }
        if let Some(&p) = cache.next_pos.iter().find(|&&p| p >= cfg.n_positions) {
            candle_core::bail!(
                "step: position {p} is past the model's context ({})",
                cfg.n_positions
            );
        }
        let dev = self.device();
        let ids = Tensor::from_slice(tokens, b, dev)?;
        let pos: Vec<u32> = cache.next_pos.iter().map(|&p| p as u32).collect();
        let pos = Tensor::from_vec(pos, b, dev)?;
        let tok = self.p(0).index_select(&ids, 0)?;
        let mut h = (tok + self.p(1).index_select(&pos, 0)?)?.reshape((b, 1, cfg.n_embd))?;
        for keep in &mut cache.keep {
            keep[slot] = 1;
        }
        cache.used = slot + 1;
        let mask = ops::cache_mask(&cache.mask(dev)?, 1, self.dtype())?;
        for (layer, (kc, vc)) in cache.layers.iter().enumerate() {
            h = self.block_with(layer, &h, |q, k, v| {
                kc.slice_set(&k, 2, slot)?;
                vc.slice_set(&v, 2, slot)?;
                let keys = kc.narrow(2, 0, slot + 1)?;
                let values = vc.narrow(2, 0, slot + 1)?;
                self.attend(&q, &keys, &values, &mask)
            })?;
        }
        for p in &mut cache.next_pos {
            *p += 1;
        }
        self.head(&h)?.reshape((b, cfg.vocab_size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{init::random_gpt2, Gpt2Config};
    use candle_core::{DType, Device, D};

    /// Logits after each token of `seqs`' continuation, by the cache (prefill of the prompts of
    /// lengths `lens`, then one step per token) and by a full forward pass over each row alone
    /// (the reference: `Gpt2::forward`, no cache). Returns the largest absolute difference.
    fn cached_vs_full(dtype: DType) -> f64 {
        let cfg = Gpt2Config::new(97, 32, 16, 2, 4);
        let model = random_gpt2(&cfg, 7, dtype).unwrap();
        let seqs: [Vec<u32>; 3] = [
            (0..14).map(|i| (i * 7 + 3) % 97).collect(),
            (0..11).map(|i| (i * 13 + 5) % 97).collect(),
            (0..16).map(|i| (i * 29 + 1) % 97).collect(),
        ];
        let lens = [5usize, 2, 9];
        let (t, dev) = (9, Device::Cpu);
        let mut ids = vec![0u32; 3 * t];
        let mut att = vec![0u32; 3 * t];
        for r in 0..3 {
            ids[r * t..r * t + lens[r]].copy_from_slice(&seqs[r][..lens[r]]);
            att[r * t..r * t + lens[r]].fill(1);
        }
        let ids = Tensor::from_vec(ids, (3, t), &dev).unwrap();
        let att = Tensor::from_vec(att, (3, t), &dev).unwrap();
        let last: Vec<usize> = lens.iter().map(|l| l - 1).collect();
        let (mut logits, mut cache) = model.prefill(&ids, &att, &last, 7).unwrap();
        let mut rows: Vec<usize> = vec![0, 1, 2];
        let mut worst = 0f64;
        for step in 0..7 {
            for (k, &r) in rows.iter().enumerate() {
                let n = lens[r] + step;
                let full = Tensor::from_slice(&seqs[r][..n], (1, n), &dev).unwrap();
                let ones = Tensor::ones((1, n), DType::U32, &dev).unwrap();
                let want = model.forward(&full, &ones).unwrap().get(0).unwrap();
                let want = want.get(n - 1).unwrap();
                let got = logits.get(k).unwrap();
                let diff = (got - want).unwrap().abs().unwrap().max(D::Minus1).unwrap();
                worst = worst.max(diff.to_dtype(DType::F64).unwrap().to_scalar().unwrap());
            }
            if step == 3 {
                // Row 1 finishes: the others continue without it.
                cache.retain_rows(&[0, 2]).unwrap();
                rows = vec![0, 2];
            }
            let feed: Vec<u32> = rows.iter().map(|&r| seqs[r][lens[r] + step]).collect();
            logits = model.step(&mut cache, &feed).unwrap();
        }
        worst
    }

    #[test]
    fn cached_logits_equal_the_full_forward() {
        // Same arithmetic up to summation order (masked slots add exact zeros): float32 to
        // rounding, float64 to rounding.
        let f32_err = cached_vs_full(DType::F32);
        assert!(f32_err < 1e-5, "float32: {f32_err}");
        let f64_err = cached_vs_full(DType::F64);
        assert!(f64_err < 1e-12, "float64: {f64_err}");
    }
}
