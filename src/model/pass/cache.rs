//! Incremental decoding on the hand-written pass: a prefill over a right-padded batch of
//! prompts that keeps every block's keys and values, then tokens fed to each row (one per step
//! when decoding, several at once when scoring continuations) attending to the cached keys and
//! values instead of re-running the prefix. Row r's prompt fills slots `0..L_r` of its cache,
//! the padding slots up to the longest prompt are masked, and the tokens fed afterwards fill
//! the slots after it, each at its own position `L_r, L_r + 1, …` (so a row sees exactly the
//! keys and values a full forward pass over its own tokens would, in the same order, with
//! masked slots between). The blocks are `decoder`'s own, with the attention swapped for the
//! cached one, so decoding cannot drift from the pass that scores and trains. This module owns
//! the cache's buffers and the cached attention; the decoding loop is `model::generate`'s, and
//! the candle-facing interface `model::cache`'s.

use super::decoder::{pick_rows, Net};
use super::float::Float;
use super::rows::softmax_row;
use rayon::prelude::*;

/// Every block's keys and values `[P, H, capacity, D]` for the tokens seen so far, and which
/// slots hold a real token. The cache's rows are a selection of its `P` stored rows (a row
/// that leaves is dropped from the selection, not copied out).
pub struct Cache<T> {
    /// Keys and values per block, allocated to the capacity and filled in place.
    layers: Vec<(Vec<T>, Vec<T>)>,
    /// `keep[p·capacity + s]` is 1 where slot `s` of stored row `p` holds a real token.
    keep: Vec<u32>,
    capacity: usize,
    /// Slots used (the same for every row).
    used: usize,
    /// The stored row of each row.
    stored: Vec<usize>,
    /// Position id of each row's next token.
    next_pos: Vec<usize>,
}

impl<T: Float> Cache<T> {
    /// Rows in the cache.
    pub fn rows(&self) -> usize {
        self.next_pos.len()
    }

    /// Slots used so far, and the slots allocated.
    pub fn slots(&self) -> (usize, usize) {
        (self.used, self.capacity)
    }

    /// The position id each row's next token will get.
    pub fn next_positions(&self) -> &[usize] {
        &self.next_pos
    }

    /// Keeps only rows `rows` (indices into the current rows, in the order given, each at most
    /// once; the caller checks them), so finished rows cost nothing in later steps. Nothing is
    /// copied: the stored rows left behind are no longer read or written.
    pub fn retain_rows(&mut self, rows: &[usize]) {
        self.stored = rows.iter().map(|&r| self.stored[r]).collect();
        self.next_pos = rows.iter().map(|&r| self.next_pos[r]).collect();
    }

    /// A cache of its own holding copies of rows `rows` (indices into the current rows, in the
    /// order given, repeats allowed; the caller checks them), with the same slots.
    pub fn select_rows(&self, rows: &[usize]) -> Cache<T> {
        let picked: Vec<usize> = rows.iter().map(|&r| self.stored[r]).collect();
        let cap = self.capacity;
        // A stored row's keys (or values) in one block: `[Hkv, capacity, d]`.
        let width = |m: &[T]| m.len() / (self.keep.len() / cap.max(1)).max(1);
        Cache {
            layers: self
                .layers
                .iter()
                .map(|(k, v)| {
                    (
                        pick_rows(k, &picked, width(k)),
                        pick_rows(v, &picked, width(v)),
                    )
                })
                .collect(),
            keep: pick_rows(&self.keep, &picked, cap),
            capacity: self.capacity,
            used: self.used,
            stored: (0..rows.len()).collect(),
            next_pos: rows.iter().map(|&r| self.next_pos[r]).collect(),
        }
    }
}

impl<T: Float> Net<'_, T> {
    /// Runs the prompts `ids` (`rows × cols`, right-padded; `attention` 1 on real tokens) once,
    /// keeping every block's keys and values in a cache with room for `extra` more tokens per
    /// row. Returns the logits `[B, V]` of the token after position `last[r]` of row `r` (its
    /// last real token) and the cache. The caller checks the shapes against the context.
    pub fn prefill(
        &self,
        ids: &[u32],
        attention: &[u32],
        (rows, cols): (usize, usize),
        last: &[usize],
        extra: usize,
    ) -> (Vec<T>, Cache<T>) {
        let c = self.cfg.n_embd;
        let (hkv, d) = self.kv_shape();
        let capacity = cols + extra;
        let ids: Vec<usize> = ids.iter().map(|&i| i as usize).collect();
        let mut layers = Vec::with_capacity(self.cfg.n_layer);
        let (x, _, _) = self.trunk(&ids, attention, (rows, cols), false, |_, tape, _| {
            let mut kc = vec![T::ZERO; rows * hkv * capacity * d];
            let mut vc = kc.clone();
            let all: Vec<usize> = (0..rows).collect();
            self.store_kv((&mut kc, &mut vc), (capacity, &all), &tape.qkv, cols, 0);
            layers.push((kc, vc));
        });
        let at: Vec<usize> = last
            .iter()
            .enumerate()
            .map(|(r, &p)| r * cols + p)
            .collect();
        let (_, _, logits) = self.logits(&pick_rows(&x, &at, c));
        let mut keep = vec![0u32; rows * capacity];
        for r in 0..rows {
            keep[r * capacity..][..cols].copy_from_slice(&attention[r * cols..][..cols]);
        }
        let cache = Cache {
            layers,
            keep,
            capacity,
            used: cols,
            stored: (0..rows).collect(),
            next_pos: last.iter().map(|&p| p + 1).collect(),
        };
        (logits, cache)
    }

    /// Writes the keys and values of `qkv`'s rows (`per` consecutive rows for each cached row
    /// `b`) into slots `first..first + per` of stored row `stored[b]` of the caches
    /// `[P, Hkv, capacity, d]`, head by head.
    fn store_kv(
        &self,
        (kc, vc): (&mut [T], &mut [T]),
        (capacity, stored): (usize, &[usize]),
        qkv: &[T],
        per: usize,
        first: usize,
    ) {
        let (hkv, d) = self.kv_shape();
        let w = qkv.len() / (stored.len() * per).max(1);
        // The cached row each stored row holds, if any.
        let mut row_of = vec![None; kc.len() / (hkv * capacity * d).max(1)];
        for (b, &p) in stored.iter().enumerate() {
            row_of[p] = Some(b);
        }
        kc.par_chunks_mut(capacity * d)
            .zip(vc.par_chunks_mut(capacity * d))
            .enumerate()
            .for_each(|(pg, (k, v))| {
                let (p, g) = (pg / hkv, pg % hkv);
                let Some(b) = row_of[p] else {
                    return;
                };
                let [_, kcol, vcol] = self.kv_columns(g);
                for t in 0..per {
                    let row = &qkv[(b * per + t) * w..][..w];
                    let at = (first + t) * d;
                    k[at..at + d].copy_from_slice(&row[kcol..kcol + d]);
                    v[at..at + d].copy_from_slice(&row[vcol..vcol + d]);
                }
            });
    }

    /// The columns of key/value head `g`'s key and value in a `qkv` row (the first entry is
    /// that of the first query head reading it).
    fn kv_columns(&self, g: usize) -> [usize; 3] {
        let (hkv, _) = self.kv_shape();
        let rep = self.cfg.n_head / hkv;
        self.head_columns(g * rep)
    }

    /// Feeds `t = tokens.len() / B` tokens to each cached row (`tokens[r·t + j]`, right-padded:
    /// row r's first `lens[r]` are real, at its positions `next, next + 1, …`) and returns the
    /// logits `[S, V]` after each real token, row by row (`S = Σ lens`). The fed tokens attend
    /// to the cache and causally to each other; padding fills masked slots. The cache grows by
    /// `t` slots. The caller checks that the slots are free, the positions inside the context.
    pub fn extend(&self, cache: &mut Cache<T>, tokens: &[u32], lens: &[usize]) -> Vec<T> {
        let (hq, (hkv, d)) = (self.cfg.n_head, self.kv_shape());
        let rep = hq / hkv;
        let scale = T::of(1.0 / (d as f64).sqrt());
        let (slot, cap, b_rows) = (cache.used, cache.capacity, cache.rows());
        let t = tokens.len() / b_rows.max(1);
        let tokens: Vec<usize> = tokens.iter().map(|&t| t as usize).collect();
        // A padding token's position is any inside the context: nothing reads its output and
        // its key is masked.
        let last_pos = self.cfg.n_positions - 1;
        let next = &cache.next_pos;
        let pos = |i: usize| {
            let (r, j) = (i / t, i % t);
            if j < lens[r] {
                next[r] + j
            } else {
                next[r].min(last_pos)
            }
        };
        let mut x = self.embed(&tokens, pos);
        let rotary = self.rotary(tokens.len(), pos);
        let stored = &cache.stored;
        for (r, &len) in lens.iter().enumerate() {
            for j in 0..t {
                cache.keep[stored[r] * cap + slot + j] = u32::from(j < len);
            }
        }
        let keep = &cache.keep;
        for (l, (kc, vc)) in cache.layers.iter_mut().enumerate() {
            let (_, out) = self.block(l, x, &rotary, |qkv| {
                let w = qkv.len() / tokens.len().max(1);
                // The fed tokens' keys and values into each row's next slots.
                self.store_kv((kc, vc), (cap, stored), qkv, t, slot);
                let (kc, vc) = (&*kc, &*vc);
                let mut ctx = vec![T::ZERO; tokens.len() * hq * d];
                ctx.par_chunks_mut(d).enumerate().for_each(|(i, out)| {
                    // Query head h of fed token j of row b sees slots up to its own.
                    let (bj, h) = (i / hq, i % hq);
                    let (b, last) = (stored[bj / t], slot + bj % t);
                    let g = b * hkv + h / rep;
                    let (k, v) = (&kc[g * cap * d..][..cap * d], &vc[g * cap * d..][..cap * d]);
                    let q = &qkv[bj * w + h * d..][..d];
                    let mut s: Vec<T> = k[..(last + 1) * d]
                        .chunks(d)
                        .map(|k| q.iter().zip(k).map(|(&q, &k)| q * k).sum())
                        .collect();
                    softmax_row(&mut s, &keep[b * cap..][..last + 1], last, scale);
                    for (&p, v) in s.iter().zip(v.chunks(d)) {
                        if p != T::ZERO {
                            out.iter_mut().zip(v).for_each(|(o, &v)| *o += p * v);
                        }
                    }
                });
                (Vec::new(), ctx)
            });
            x = out;
        }
        cache.used = slot + t;
        cache
            .next_pos
            .iter_mut()
            .zip(lens)
            .for_each(|(p, &n)| *p += n);
        let at: Vec<usize> = lens
            .iter()
            .enumerate()
            .flat_map(|(r, &n)| (0..n).map(move |j| r * t + j))
            .collect();
        self.logits(&pick_rows(&x, &at, self.cfg.n_embd)).2
    }
}
