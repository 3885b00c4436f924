//! Incremental decoding with a key/value cache, as the rest of lethe calls it: a prefill pass
//! over a right-padded batch of prompts that keeps every block's keys and values, then tokens
//! fed to each row (one per step, or several at once) attending to the cached keys and values
//! instead of re-running the prefix (the arithmetic is the hand-written pass's,
//! `pass::cache`). This module owns the interface in candle tensors and its checks: the
//! context, the cache's slots, row indices. Inference only. The decoding loop is `generate`;
//! continuations scored against one prefill are `continuation`'s.

use super::gpt2::Gpt2;
use super::pass::{check_tokens, in_model_float, token_rows, with_net, Cache, Real};
use candle_core::{bail, DType, Result, Tensor};

/// Every block's keys and values for the tokens seen so far, in the model's float.
pub enum KvCache {
    F32(Cache<f32>),
    F64(Cache<f64>),
}

/// The floats a cache is kept in, each with its variant.
trait Cached: Real {
    fn wrap(c: Cache<Self>) -> KvCache;
}

impl Cached for f32 {
    fn wrap(c: Cache<f32>) -> KvCache {
        KvCache::F32(c)
    }
}

impl Cached for f64 {
    fn wrap(c: Cache<f64>) -> KvCache {
        KvCache::F64(c)
    }
}

macro_rules! each {
    ($cache:expr, $c:ident => $e:expr) => {
        match $cache {
            KvCache::F32($c) => $e,
            KvCache::F64($c) => $e,
        }
    };
}

impl KvCache {
    /// Rows in the cache.
    pub fn rows(&self) -> usize {
        each!(self, c => c.rows())
    }

    /// Keeps only rows `rows` (indices into the current rows, in the order given, each at most
    /// once), so finished rows cost nothing in later steps.
    pub fn retain_rows(&mut self, rows: &[usize]) -> Result<()> {
        self.check_rows(rows, "retain_rows")?;
        let mut seen = vec![false; self.rows()];
        if rows.iter().any(|&r| std::mem::replace(&mut seen[r], true)) {
            bail!("retain_rows: a row named twice (select_rows copies repeated rows)");
        }
        each!(self, c => c.retain_rows(rows));
        Ok(())
    }

    /// A cache of its own holding copies of rows `rows` (indices into the current rows, in the
    /// order given, repeats allowed): one prefill continued several ways.
    pub fn select_rows(&self, rows: &[usize]) -> Result<KvCache> {
        self.check_rows(rows, "select_rows")?;
        Ok(match self {
            KvCache::F32(c) => KvCache::F32(c.select_rows(rows)),
            KvCache::F64(c) => KvCache::F64(c.select_rows(rows)),
        })
    }

    fn check_rows(&self, rows: &[usize], what: &str) -> Result<()> {
        if rows.iter().any(|&r| r >= self.rows()) {
            bail!("{what}: row outside a cache of {} rows", self.rows());
        }
        Ok(())
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
        let (flat, att, (b, t)) = token_rows(self, ids, attention)?;
        if last.len() != b || last.iter().any(|&p| p >= t) {
            bail!(
                "prefill: {} last positions for {b} rows of {t} tokens",
                last.len()
            );
        }
        fn run<T: Cached>(
            m: &Gpt2,
            (flat, att): (&[u32], &[u32]),
            shape: (usize, usize),
            last: &[usize],
            extra: usize,
        ) -> Result<(Tensor, KvCache)> {
            let (logits, c) = with_net::<T, _>(m, |n| n.prefill(flat, att, shape, last, extra))?;
            let v = m.config().vocab_size;
            Ok((
                Tensor::from_vec(logits, (shape.0, v), m.device())?,
                T::wrap(c),
            ))
        }
        let rows = (flat.as_slice(), att.as_slice());
        in_model_float!(self, "decoding", run(self, rows, (b, t), last, extra))
    }

    /// Feeds one token per cached row (`tokens[r]` at row r's next position) and returns the
    /// logits `[B, V]` of the token after it; the cache grows by one slot.
    pub fn step(&self, cache: &mut KvCache, tokens: &[u32]) -> Result<Tensor> {
        let feeds: Vec<Vec<u32>> = tokens.iter().map(|&t| vec![t]).collect();
        self.extend(cache, &feeds)
    }

    /// Feeds `feeds[r]` (any number of tokens, none included) to cached row r at its next
    /// positions, the tokens of a row attending causally to each other and to the row's cache,
    /// and returns the logits `[S, V]` after each fed token, row by row (`S` the tokens fed).
    /// The cache grows by the longest feed's length.
    pub fn extend(&self, cache: &mut KvCache, feeds: &[Vec<u32>]) -> Result<Tensor> {
        let cfg = self.config();
        let b = cache.rows();
        let ((slot, capacity), next) =
            each!(&*cache, c => (c.slots(), c.next_positions().to_vec()));
        let t = feeds.iter().map(Vec::len).max().unwrap_or(0);
        if feeds.len() != b || slot + t > capacity {
            bail!(
                "extend: {} feeds for {b} cached rows, {t} tokens from slot {slot} of {capacity}",
                feeds.len()
            );
        }
        if let Some((p, f)) = next
            .iter()
            .zip(feeds)
            .find(|(&p, f)| p + f.len() > cfg.n_positions)
        {
            bail!(
                "extend: {} tokens from position {p} run past the model's context ({})",
                f.len(),
                cfg.n_positions
            );
        }
        let lens: Vec<usize> = feeds.iter().map(Vec::len).collect();
        let mut tokens = vec![0u32; b * t];
        for (row, f) in tokens.chunks_mut(t.max(1)).zip(feeds) {
            row[..f.len()].copy_from_slice(f);
        }
        check_tokens(self, &tokens, 1)?;
        let (dev, shape) = (self.device(), (lens.iter().sum::<usize>(), cfg.vocab_size));
        if t == 0 {
            return Tensor::zeros(shape, self.dtype(), dev);
        }
        match cache {
            KvCache::F32(c) => Tensor::from_vec(
                with_net::<f32, _>(self, |n| n.extend(c, &tokens, &lens))?,
                shape,
                dev,
            ),
            KvCache::F64(c) => Tensor::from_vec(
                with_net::<f64, _>(self, |n| n.extend(c, &tokens, &lens))?,
                shape,
                dev,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{init::random_model, Gpt2Config};
    use candle_core::{DType, Device, D};

    /// Logits after each token of `seqs`' continuation, by the cache (prefill of the prompts of
    /// lengths `lens`, then one step per token) and by a full forward pass over each row alone
    /// (the reference: `Gpt2::forward`, no cache). Returns the largest absolute difference.
    fn cached_vs_full(dtype: DType) -> f64 {
        let cfg = Gpt2Config::new(97, 32, 16, 2, 4);
        let model = random_model(&cfg, 7, dtype).unwrap();
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

    #[test]
    fn a_copied_row_continues_as_its_original_and_rows_are_checked() {
        // Two prompts; row 1 copied twice (`select_rows`) and each copy fed its own token must
        // give what a copy of that row alone gives for that token (to float32 rounding: one
        // row and two are products of other shapes).
        let cfg = Gpt2Config::new(97, 32, 16, 2, 4);
        let model = random_model(&cfg, 5, DType::F32).unwrap();
        let dev = Device::Cpu;
        let ids = Tensor::from_vec(vec![3u32, 9, 4, 8, 1, 0], (2, 3), &dev).unwrap();
        let att = Tensor::from_vec(vec![1u32, 1, 1, 1, 1, 0], (2, 3), &dev).unwrap();
        let (_, mut cache) = model.prefill(&ids, &att, &[2, 1], 2).unwrap();
        let mut copies = cache.select_rows(&[1, 1]).unwrap();
        let both = model.step(&mut copies, &[5, 6]).unwrap();
        for (k, tok) in [5u32, 6].into_iter().enumerate() {
            let mut one = cache.select_rows(&[1]).unwrap();
            let alone = model.step(&mut one, &[tok]).unwrap();
            let (a, b) = (
                alone.get(0).unwrap().to_vec1::<f32>().unwrap(),
                both.get(k).unwrap().to_vec1::<f32>().unwrap(),
            );
            let worst = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-5, "copy {k}: {worst}");
        }
        // Rows outside the cache are refused; so is a row kept twice (its slots would be
        // written twice): only a copy may repeat a row.
        assert!(cache.select_rows(&[2]).is_err());
        assert!(cache.retain_rows(&[0, 0]).is_err());
        assert!(cache.retain_rows(&[1]).is_ok());
        assert_eq!(cache.rows(), 1);
    }
}
