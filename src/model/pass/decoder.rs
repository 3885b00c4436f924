//! GPT-2's forward and backward passes written out by hand over plain buffers, generic over
//! the float: the forward keeps what the backward needs (a tape), the backward takes one
//! coefficient per scored target and returns the gradient of `Σ c·log p(target)` on the
//! trainable parameters only. Frozen weights get no gradient work, and the backward stops at
//! the lowest block anything trainable sits in. Matrix products go through `float::mm`; row
//! work through `rows`, split across rayon's threads. This module owns the order of GPT-2's
//! layers on this path; it knows nothing of candle tensors or of what the gradient is for.

use super::float::{mm, Float, View};
use super::rows::{
    gelu, gelu_slope, logprob_row, logprob_row_back, norm_row, norm_row_back, norm_row_params,
    softmax_row, softmax_row_back,
};
use crate::model::config::Gpt2Config;
use rayon::prelude::*;

/// Parameters per block, in state-dict order (`params::param_shapes`).
const PER_BLOCK: usize = 12;
/// Rows handed to one rayon task at least.
const MIN_ROWS: usize = 8;

/// The network's parameters as slices in state-dict order, the output layer's weight (`wte`
/// itself, or for a tangent pass with `output_grad` off a copy of it with no tangent), which
/// parameters are trainable, and whether the tied output layer passes gradient to `wte`.
pub struct Net<'a, T> {
    pub cfg: &'a Gpt2Config,
    pub p: Vec<&'a [T]>,
    pub head: &'a [T],
    pub trainable: &'a [bool],
    pub output_grad: bool,
}

/// A scored target: flat position `r·T + t` in the batch, the target token, and its weight.
#[derive(Clone, Copy)]
pub struct Target {
    pub pos: usize,
    pub token: usize,
    pub weight: f64,
}

/// What one block's forward keeps for its backward.
struct BlockTape<T> {
    /// The block's input `[N, C]`.
    x: Vec<T>,
    ln1: Vec<T>,
    ln1_stats: Vec<(T, T)>,
    qkv: Vec<T>,
    /// Attention probabilities `[B, H, T, T]`.
    probs: Vec<T>,
    /// Attention output, heads merged `[N, C]`.
    ctx: Vec<T>,
    /// The residual stream after attention `[N, C]`.
    mid: Vec<T>,
    ln2: Vec<T>,
    ln2_stats: Vec<(T, T)>,
    /// MLP pre-activation and activation `[N, F]`.
    pre: Vec<T>,
    act: Vec<T>,
}

/// A forward pass kept for its backward.
pub struct Tape<T> {
    rows: usize,
    pub(super) cols: usize,
    ids: Vec<usize>,
    blocks: Vec<BlockTape<T>>,
    /// The trunk's output `[N, C]` (before the final layer norm).
    top: Vec<T>,
    pub(super) targets: Vec<Target>,
    /// Final-norm output at the scored positions `[S, C]`, and its row statistics.
    hs: Vec<T>,
    hs_stats: Vec<(T, T)>,
    /// The output distribution at the scored positions `[S, V]` (the backward turns it into
    /// the logits' gradient), each position's most likely token, and the target log-probs.
    probs: Vec<T>,
    best: Vec<usize>,
    pub logprobs: Vec<T>,
}

/// Elements handed to one rayon task in element-wise work.
const ELEMS: usize = 1 << 14;

/// `dst += src`, element-wise.
fn add_into<T: Float>(dst: &mut [T], src: &[T]) {
    dst.par_chunks_mut(ELEMS)
        .zip(src.par_chunks(ELEMS))
        .for_each(|(d, s)| d.iter_mut().zip(s).for_each(|(d, &s)| *d += s));
}

impl<T: Float> Tape<T> {
    /// The trunk's output at the scored positions, `[S, C]` (the final norm's input).
    fn picked(&self, c: usize) -> Vec<T> {
        self.targets
            .iter()
            .flat_map(|t| self.top[t.pos * c..(t.pos + 1) * c].iter().copied())
            .collect()
    }

    /// Whether each scored target is its position's most likely next token (the first of
    /// equal maxima).
    pub fn hits(&self) -> Vec<bool> {
        self.best
            .iter()
            .zip(&self.targets)
            .map(|(&b, t)| b == t.token)
            .collect()
    }
}

/// `dst[r] += b` for every row of `dst` (`[rows, b.len()]`).
fn add_rows<T: Float>(dst: &mut [T], b: &[T]) {
    dst.par_chunks_mut(b.len())
        .with_min_len(MIN_ROWS)
        .for_each(|r| r.iter_mut().zip(b).for_each(|(x, &b)| *x += b));
}

/// `g += Σ_rows m` (a bias gradient).
fn add_colsum<T: Float>(g: &mut [T], m: &[T]) {
    for row in m.chunks(g.len()) {
        g.iter_mut().zip(row).for_each(|(g, &x)| *g += x);
    }
}

/// `x·w + b` for a Conv1D weight `w` `[in, out]`.
fn linear<T: Float>(x: &[T], rows: usize, w: &[T], b: &[T]) -> Vec<T> {
    let (out, inp) = (b.len(), w.len() / b.len());
    let mut y = vec![T::ZERO; rows * out];
    mm(
        &mut y,
        out,
        View::new(x, rows, inp),
        View::new(w, inp, out),
        false,
    );
    add_rows(&mut y, b);
    y
}

/// Layer norm of every `c`-wide row of `x`, with each row's statistics.
fn norm<T: Float>(x: &[T], w: &[T], b: &[T], eps: T) -> (Vec<T>, Vec<(T, T)>) {
    let c = w.len();
    let mut y = vec![T::ZERO; x.len()];
    let mut stats = vec![(T::ZERO, T::ZERO); x.len() / c];
    y.par_chunks_mut(c)
        .zip(x.par_chunks(c))
        .zip(stats.par_iter_mut())
        .with_min_len(MIN_ROWS)
        .for_each(|((y, x), s)| *s = norm_row(x, w, b, eps, y));
    (y, stats)
}

/// `dx += layer-norm backward of g` over every row, and the norm's weight and bias gradients
/// added where they are wanted.
fn norm_back<T: Float>(
    x: &[T],
    stats: &[(T, T)],
    w: &[T],
    g: &[T],
    dx: &mut [T],
    (dw, db): (Option<&mut [T]>, Option<&mut [T]>),
) {
    let c = w.len();
    dx.par_chunks_mut(c)
        .zip(x.par_chunks(c).zip(g.par_chunks(c)))
        .zip(stats.par_iter())
        .with_min_len(MIN_ROWS)
        .for_each(|((dx, (x, g)), &(m, r))| norm_row_back(x, m, r, w, g, dx, true));
    if dw.is_none() && db.is_none() {
        return;
    }
    let (mut sw, mut sb) = (vec![T::ZERO; c], vec![T::ZERO; c]);
    for ((x, g), &(m, r)) in x.chunks(c).zip(g.chunks(c)).zip(stats) {
        norm_row_params(x, m, r, g, &mut sw, &mut sb);
    }
    for (dst, src) in [(dw, sw), (db, sb)] {
        if let Some(dst) = dst {
            dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
        }
    }
}

impl<'a, T: Float> Net<'a, T> {
    fn block_param(&self, layer: usize, k: usize) -> usize {
        2 + layer * PER_BLOCK + k
    }

    fn trains(&self, i: usize) -> bool {
        self.trainable[i]
    }

    fn embedding_trains(&self) -> bool {
        self.trains(0) || self.trains(1)
    }

    /// The lowest block the backward must reach: 0 when the embedding trains, else the lowest
    /// block with a trainable parameter, else `n_layer` (only the final norm or nothing).
    fn lowest(&self) -> usize {
        if self.embedding_trains() {
            return 0;
        }
        (0..self.cfg.n_layer)
            .find(|&l| (0..PER_BLOCK).any(|k| self.trains(self.block_param(l, k))))
            .unwrap_or(self.cfg.n_layer)
    }

    /// The forward pass over a batch of `rows × cols` token ids (right-padded; `attention` 1 for
    /// real tokens), scoring `targets`; `keep` keeps each block's activations for a backward.
    pub fn forward(
        &self,
        ids: &[u32],
        attention: &[u32],
        (rows, cols): (usize, usize),
        targets: Vec<Target>,
        keep: bool,
    ) -> Tape<T> {
        let (c, n) = (self.cfg.n_embd, rows * cols);
        let ids: Vec<usize> = ids.iter().map(|&i| i as usize).collect();
        let mut x = vec![T::ZERO; n * c];
        x.par_chunks_mut(c)
            .enumerate()
            .with_min_len(MIN_ROWS)
            .for_each(|(r, x)| {
                let (tok, pos) = (
                    &self.p[0][ids[r] * c..][..c],
                    &self.p[1][(r % cols) * c..][..c],
                );
                x.iter_mut()
                    .zip(tok.iter().zip(pos))
                    .for_each(|(x, (&a, &b))| *x = a + b);
            });
        let mut blocks = Vec::with_capacity(self.cfg.n_layer);
        for l in 0..self.cfg.n_layer {
            let (tape, next) = self.block(l, x, attention, rows, cols);
            if keep {
                blocks.push(tape);
            }
            x = next;
        }
        let mut tape = Tape {
            rows,
            cols,
            ids,
            blocks,
            top: x,
            targets,
            hs: Vec::new(),
            hs_stats: Vec::new(),
            probs: Vec::new(),
            best: Vec::new(),
            logprobs: Vec::new(),
        };
        self.head(&mut tape);
        tape
    }

    /// Block `l` on `x`: its tape and its output.
    fn block(
        &self,
        l: usize,
        x: Vec<T>,
        attention: &[u32],
        rows: usize,
        cols: usize,
    ) -> (BlockTape<T>, Vec<T>) {
        let w = |k| self.p[self.block_param(l, k)];
        let n = rows * cols;
        let eps = T::of(self.cfg.layer_norm_epsilon);
        let (ln1, ln1_stats) = norm(&x, w(0), w(1), eps);
        let qkv = linear(&ln1, n, w(2), w(3));
        let (probs, ctx) = self.attend(&qkv, attention, rows, cols);
        let mut mid = linear(&ctx, n, w(4), w(5));
        add_into(&mut mid, &x);
        let (ln2, ln2_stats) = norm(&mid, w(6), w(7), eps);
        let pre = linear(&ln2, n, w(8), w(9));
        let mut act = vec![T::ZERO; pre.len()];
        act.par_chunks_mut(ELEMS)
            .zip(pre.par_chunks(ELEMS))
            .for_each(|(a, p)| a.iter_mut().zip(p).for_each(|(a, &p)| *a = gelu(p)));
        let mut out = linear(&act, n, w(10), w(11));
        add_into(&mut out, &mid);
        let tape = BlockTape {
            x,
            ln1,
            ln1_stats,
            qkv,
            probs,
            ctx,
            mid,
            ln2,
            ln2_stats,
            pre,
            act,
        };
        (tape, out)
    }

    /// Causal self-attention over `qkv` `[N, 3C]`: the probabilities `[B, H, T, T]` and the
    /// output with heads merged `[N, C]`.
    fn attend(&self, qkv: &[T], attention: &[u32], rows: usize, cols: usize) -> (Vec<T>, Vec<T>) {
        let (c, h) = (self.cfg.n_embd, self.cfg.n_head);
        let d = c / h;
        let scale = T::of(1.0 / (d as f64).sqrt());
        let mut probs = vec![T::ZERO; rows * h * cols * cols];
        let mut heads = vec![T::ZERO; rows * h * cols * d];
        probs
            .par_chunks_mut(cols * cols)
            .zip(heads.par_chunks_mut(cols * d))
            .enumerate()
            .for_each(|(bh, (p, out))| {
                let (b, hh) = (bh / h, bh % h);
                let part = |k: usize| head_view(qkv, 3 * c, k * c, (b, hh), cols, d);
                let keep = &attention[b * cols..(b + 1) * cols];
                mm(p, cols, part(0), part(1).tr(), false);
                for (i, row) in p.chunks_mut(cols).enumerate() {
                    softmax_row(row, keep, i, scale);
                }
                mm(out, d, View::new(p, cols, cols), part(2), false);
            });
        (probs, merge_heads(&heads, rows, h, cols, d))
    }

    /// The final norm and the output layer at the scored positions, and their log-probs.
    fn head(&self, tape: &mut Tape<T>) {
        let (c, v) = (self.cfg.n_embd, self.cfg.vocab_size);
        let last = self.p.len();
        let (w, b) = (self.p[last - 2], self.p[last - 1]);
        let s = tape.targets.len();
        let picked = tape.picked(c);
        let (hs, stats) = norm(&picked, w, b, T::of(self.cfg.layer_norm_epsilon));
        let mut logits = vec![T::ZERO; s * v];
        mm(
            &mut logits,
            v,
            View::new(&hs, s, c),
            View::new(self.head, v, c).tr(),
            false,
        );
        let (lp, best): (Vec<T>, Vec<usize>) = logits
            .par_chunks_mut(v)
            .zip(tape.targets.par_iter())
            .map(|(row, t)| logprob_row(row, t.token))
            .unzip();
        tape.hs = hs;
        tape.hs_stats = stats;
        tape.probs = logits;
        tape.best = best;
        tape.logprobs = lp;
        tape.hs.shrink_to_fit();
    }

    /// The gradient of `Σ_s coef[s]·logprob[s]` with respect to every trainable parameter
    /// (`None` for the frozen ones), in state-dict order.
    pub fn backward(&self, mut tape: Tape<T>, coef: &[T]) -> Vec<Option<Vec<T>>> {
        let (c, v) = (self.cfg.n_embd, self.cfg.vocab_size);
        let np = self.p.len();
        let mut grads: Vec<Option<Vec<T>>> = (0..np)
            .map(|i| self.trains(i).then(|| vec![T::ZERO; self.p[i].len()]))
            .collect();
        let s = tape.targets.len();
        self.logits_back(&mut tape, coef);
        if self.output_grad {
            if let Some(g) = grads[0].as_mut() {
                mm(
                    g,
                    c,
                    View::new(&tape.probs, s, v).tr(),
                    View::new(&tape.hs, s, c),
                    true,
                );
            }
        }
        let lowest = self.lowest();
        let final_trains = self.trains(np - 2) || self.trains(np - 1);
        if lowest == self.cfg.n_layer && !final_trains {
            return grads;
        }
        let dx = self.trunk_back(&mut tape, &mut grads);
        // The embedding: each token's row of wte and its position's row of wpe.
        if self.embedding_trains() {
            let cols = tape.cols;
            if let Some(g) = grads[0].as_mut() {
                for (r, d) in dx.chunks(c).enumerate() {
                    let row = &mut g[tape.ids[r] * c..][..c];
                    row.iter_mut().zip(d).for_each(|(g, &d)| *g += d);
                }
            }
            if let Some(g) = grads[1].as_mut() {
                for (r, d) in dx.chunks(c).enumerate() {
                    let row = &mut g[(r % cols) * c..][..c];
                    row.iter_mut().zip(d).for_each(|(g, &d)| *g += d);
                }
            }
        }
        grads
    }

    /// The backward as far as the embedding output, for per-record gradients of the embedding
    /// (`per_example`): the gradient of `Σ coef·logprob` at the embedding output `[N, C]`,
    /// the output layer's input at the scored positions `[S, C]` and its logits' gradient
    /// `[S, V]`. Rows of a batch never interact, so each row of the first holds its own
    /// record's part. No parameter gradient is formed.
    pub fn embedding_backward(&self, mut tape: Tape<T>, coef: &[T]) -> [Vec<T>; 3] {
        self.logits_back(&mut tape, coef);
        let mut none: Vec<Option<Vec<T>>> = vec![None; self.p.len()];
        let de = self.trunk_back(&mut tape, &mut none);
        [
            de,
            std::mem::take(&mut tape.hs),
            std::mem::take(&mut tape.probs),
        ]
    }

    /// The logits' gradient of `Σ_s coef[s]·logprob[s]`, in place of the probabilities.
    fn logits_back(&self, tape: &mut Tape<T>, coef: &[T]) {
        let v = self.cfg.vocab_size;
        tape.probs
            .par_chunks_mut(v)
            .zip(tape.targets.par_iter().zip(coef))
            .for_each(|(row, (t, &c))| logprob_row_back(row, t.token, c));
    }

    /// From the logits' gradient down through the final norm and the blocks (as far as the
    /// lowest one anything trainable needs, all of them when the embedding trains or when no
    /// parameter does): the gradient at that block's input, `[N, C]`; trainable parameters'
    /// gradients added to `grads`.
    fn trunk_back(&self, tape: &mut Tape<T>, grads: &mut [Option<Vec<T>>]) -> Vec<T> {
        let (c, v) = (self.cfg.n_embd, self.cfg.vocab_size);
        let (n, s, np) = (tape.rows * tape.cols, tape.targets.len(), self.p.len());
        let mut dhs = vec![T::ZERO; s * c];
        mm(
            &mut dhs,
            c,
            View::new(&tape.probs, s, v),
            View::new(self.head, v, c),
            false,
        );
        // The final norm, at the scored positions: into dx of the trunk's output.
        let mut dx = vec![T::ZERO; n * c];
        let picked = tape.picked(c);
        let mut dpicked = vec![T::ZERO; s * c];
        let (gw, gb) = two(grads, np - 2, np - 1);
        norm_back(
            &picked,
            &tape.hs_stats,
            self.p[np - 2],
            &dhs,
            &mut dpicked,
            (gw, gb),
        );
        for (t, d) in tape.targets.iter().zip(dpicked.chunks(c)) {
            dx[t.pos * c..(t.pos + 1) * c]
                .iter_mut()
                .zip(d)
                .for_each(|(x, &d)| *x += d);
        }
        let nothing_trains = !self.trainable.iter().any(|&t| t);
        let lowest = if nothing_trains { 0 } else { self.lowest() };
        for l in (lowest..self.cfg.n_layer).rev() {
            let bt = tape.blocks.pop().expect("one tape per block");
            let below = l > lowest || self.embedding_trains() || nothing_trains;
            dx = self.block_back(l, bt, dx, grads, tape, below);
        }
        dx
    }

    /// Block `l`'s backward: its parameters' gradients added to `grads`, and (when `below`)
    /// the gradient of its input from that of its output `dy`.
    fn block_back(
        &self,
        l: usize,
        bt: BlockTape<T>,
        dy: Vec<T>,
        grads: &mut [Option<Vec<T>>],
        tape: &Tape<T>,
        below: bool,
    ) -> Vec<T> {
        let i = |k| self.block_param(l, k);
        let w = |k| self.p[i(k)];
        let n = tape.rows * tape.cols;
        // MLP: out = gelu(ln2·W8 + b9)·W10 + b11.
        let mut dpre = self.linear_back(&bt.act, &dy, n, i(10), grads, true);
        dpre.par_chunks_mut(ELEMS)
            .zip(bt.pre.par_chunks(ELEMS))
            .for_each(|(d, p)| d.iter_mut().zip(p).for_each(|(d, &x)| *d *= gelu_slope(x)));
        let dln2 = self.linear_back(&bt.ln2, &dpre, n, i(8), grads, true);
        drop(dpre);
        let mut dmid = dy;
        let (g6, g7) = two(grads, i(6), i(7));
        norm_back(&bt.mid, &bt.ln2_stats, w(6), &dln2, &mut dmid, (g6, g7));
        // Attention: mid = x + attend(ln1·W2 + b3)·W4 + b5.
        let dctx = self.linear_back(&bt.ctx, &dmid, n, i(4), grads, true);
        let dqkv = self.attend_back(&bt.qkv, &bt.probs, &dctx, tape.rows, tape.cols);
        drop(dctx);
        let ln1_trains = self.trains(i(0)) || self.trains(i(1));
        let dln1 = self.linear_back(&bt.ln1, &dqkv, n, i(2), grads, below || ln1_trains);
        if !below && !ln1_trains {
            return dmid;
        }
        let (g0, g1) = two(grads, i(0), i(1));
        norm_back(&bt.x, &bt.ln1_stats, w(0), &dln1, &mut dmid, (g0, g1));
        dmid
    }

    /// The backward of [`linear`] with weight `p[wi]` `[in, out]` and bias `p[wi + 1]`, input
    /// `x` `[rows, in]` and output gradient `dy` `[rows, out]`: the weight's and bias's
    /// gradients added where they train, and (with `input`) the input's gradient `dy·Wᵀ`.
    fn linear_back(
        &self,
        x: &[T],
        dy: &[T],
        rows: usize,
        wi: usize,
        grads: &mut [Option<Vec<T>>],
        input: bool,
    ) -> Vec<T> {
        let (w, out) = (self.p[wi], self.p[wi + 1].len());
        let inp = w.len() / out;
        if let Some(g) = grads[wi + 1].as_mut() {
            add_colsum(g, dy);
        }
        if let Some(g) = grads[wi].as_mut() {
            let (x, dy) = (View::new(x, rows, inp), View::new(dy, rows, out));
            mm(g, out, x.tr(), dy, true);
        }
        if !input {
            return Vec::new();
        }
        let mut dx = vec![T::ZERO; rows * inp];
        let (dy, w) = (View::new(dy, rows, out), View::new(w, inp, out));
        mm(&mut dx, inp, dy, w.tr(), false);
        dx
    }

    /// The backward of [`Net::attend`]: the gradient of `qkv` `[N, 3C]` from that of the
    /// merged output `dctx` `[N, C]`.
    fn attend_back(&self, qkv: &[T], probs: &[T], dctx: &[T], rows: usize, cols: usize) -> Vec<T> {
        let (c, h) = (self.cfg.n_embd, self.cfg.n_head);
        let d = c / h;
        let scale = T::of(1.0 / (d as f64).sqrt());
        let tt = cols * d;
        let mut parts = vec![T::ZERO; 3 * rows * h * tt];
        parts
            .par_chunks_mut(3 * tt)
            .enumerate()
            .for_each(|(bh, out)| {
                let (b, hh) = (bh / h, bh % h);
                let part = |k: usize| head_view(qkv, 3 * c, k * c, (b, hh), cols, d);
                let dout = head_view(dctx, c, 0, (b, hh), cols, d);
                let p = &probs[bh * cols * cols..(bh + 1) * cols * cols];
                let (dq, rest) = out.split_at_mut(tt);
                let (dk, dv) = rest.split_at_mut(tt);
                let mut dp = vec![T::ZERO; cols * cols];
                mm(&mut dp, cols, dout, part(2).tr(), false);
                mm(dv, d, View::new(p, cols, cols).tr(), dout, false);
                for (dp, p) in dp.chunks_mut(cols).zip(p.chunks(cols)) {
                    softmax_row_back(p, dp, scale);
                }
                mm(dq, d, View::new(&dp, cols, cols), part(1), false);
                mm(dk, d, View::new(&dp, cols, cols).tr(), part(0), false);
            });
        // [B, H, 3, T, D] → [N, 3C].
        let mut dqkv = vec![T::ZERO; rows * cols * 3 * c];
        dqkv.par_chunks_mut(3 * c)
            .enumerate()
            .with_min_len(MIN_ROWS)
            .for_each(|(r, row)| {
                let (b, t) = (r / cols, r % cols);
                for k in 0..3 {
                    for hh in 0..h {
                        let src = &parts[((b * h + hh) * 3 + k) * tt + t * d..][..d];
                        row[k * c + hh * d..][..d].copy_from_slice(src);
                    }
                }
            });
        dqkv
    }
}

/// Head `hh` of batch row `b` in a `[B·T, width]` matrix whose heads start at column `offset`,
/// `d` columns each: a `[T, d]` view.
fn head_view<T: Float>(
    m: &[T],
    width: usize,
    offset: usize,
    (b, hh): (usize, usize),
    cols: usize,
    d: usize,
) -> View<'_, T> {
    View {
        data: &m[b * cols * width + offset + hh * d..],
        rows: cols,
        cols: d,
        stride: width,
        t: false,
    }
}

/// Heads `[B, H, T, D]` → `[B·T, H·D]`.
fn merge_heads<T: Float>(heads: &[T], rows: usize, h: usize, cols: usize, d: usize) -> Vec<T> {
    let mut y = vec![T::ZERO; rows * cols * h * d];
    y.par_chunks_mut(h * d)
        .enumerate()
        .with_min_len(MIN_ROWS)
        .for_each(|(r, row)| {
            let (b, t) = (r / cols, r % cols);
            for hh in 0..h {
                row[hh * d..][..d].copy_from_slice(&heads[((b * h + hh) * cols + t) * d..][..d]);
            }
        });
    y
}

/// Mutable access to two different entries' gradients.
fn two<T>(g: &mut [Option<Vec<T>>], a: usize, b: usize) -> (Option<&mut [T]>, Option<&mut [T]>) {
    debug_assert!(a < b);
    let (lo, hi) = g.split_at_mut(b);
    (lo[a].as_deref_mut(), hi[0].as_deref_mut())
}
