//! A decoder's forward and backward passes written out by hand over plain buffers, generic over
//! the float, assembled from parts: the norm (layer norm with bias, or RMS norm), the position
//! encoding (learned positions, or rotary), the attention's input projections (GPT-2's fused
//! Conv1D, or separate q, k, v projections with grouped-query heads), the MLP (`gelu_new`, or
//! SwiGLU's gate and up), and the output layer (tied to the token embedding, or its own). Each
//! family is a [`Layout`] of those parts over its parameters; the order of the layers is
//! written once, here, for every family and every float. The forward keeps what the backward
//! needs (a tape); the backward takes one coefficient per scored target and returns the
//! gradient of `Σ c·log p(target)` on the trainable parameters only. Frozen weights get no
//! gradient work, and the backward stops at the lowest block anything trainable sits in.
//! Matrix products go through `float::mm`, each named by its place in the pass (`primal::Site`,
//! so that a dual pass at one point can keep their value planes); row work through `rows`,
//! split across rayon's threads. This module owns the order of the layers on this path; it
//! knows nothing of candle tensors or of what the gradient is for.

use super::float::{mm, Float, View};
use super::primal::{Primal, Site};
use super::rows::{
    gelu, gelu_erf, gelu_erf_slope, gelu_slope, logprob_row, logprob_row_back, norm_row,
    norm_row_back, norm_row_params, score_row, silu, silu_slope, softmax_row, softmax_row_back,
    target_logprob,
};
use crate::model::config::{Family, Gpt2Config, RopeScaling};
use crate::model::params::param_shapes;
use rayon::prelude::*;
use std::collections::HashMap;

/// Rows handed to one rayon task at least.
const MIN_ROWS: usize = 8;
/// Elements handed to one rayon task in element-wise work.
const ELEMS: usize = 1 << 14;

/// One linear layer `y = x·W (+ b)`: its parameters' indices, its sizes, and whether `W` is
/// stored `[out, in]` (`torch.nn.Linear`) rather than `[in, out]` (GPT-2's Conv1D).
#[derive(Clone, Copy, Debug)]
pub(super) struct Lin {
    w: usize,
    b: Option<usize>,
    inp: usize,
    out: usize,
    out_in: bool,
}

/// A norm's weight and (for a layer norm) bias.
#[derive(Clone, Copy, Debug)]
pub(super) struct Norm {
    w: usize,
    b: Option<usize>,
}

/// The MLP's activation.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Activation {
    /// GPT-2's `gelu_new` (tanh form).
    GeluTanh,
    /// The exact (erf) GELU.
    GeluErf,
    /// `silu(gate)·up`, the input projections' output being `[gate | up]`.
    SwiGlu,
}

/// One block's parameters, by index.
struct BlockParams {
    /// Every parameter of the block (they are contiguous in the pass's order).
    range: std::ops::Range<usize>,
    norm1: Norm,
    /// The attention's input projections, written side by side into `[N, (Hq + 2·Hkv)·d]`:
    /// queries, then keys, then values.
    qkv: Vec<Lin>,
    proj: Lin,
    norm2: Norm,
    /// The MLP's input projections side by side: `[N, F]`, or SwiGLU's gate and up `[N, 2F]`.
    up: Vec<Lin>,
    down: Lin,
}

/// Which parameter plays which part in a family's decoder, and the constants of its parts.
pub struct Layout {
    embed: usize,
    /// Learned position embeddings (GPT-2).
    pos: Option<usize>,
    blocks: Vec<BlockParams>,
    final_norm: Norm,
    /// An untied output layer; the token embedding serves when there is none.
    head: Option<usize>,
    /// The rotary embedding's frequency per pair of the `rotary_dims` dimensions it turns
    /// (empty without one).
    inv_freq: Vec<f64>,
    rotary_dims: usize,
    /// The fused projection's output holds each head's q, k, v side by side (GPT-NeoX), not
    /// all queries, then all keys, then all values.
    interleaved: bool,
    parallel_residual: bool,
    /// Layer norm (centred) or RMS norm.
    centered: bool,
    activation: Activation,
    eps: f64,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl Layout {
    /// The parts of `cfg`'s family over its parameters in the pass's order (`param_shapes`).
    pub fn new(cfg: &Gpt2Config) -> Layout {
        let names: HashMap<String, usize> = param_shapes(cfg)
            .into_iter()
            .enumerate()
            .map(|(i, (n, _))| (n, i))
            .collect();
        let at = |n: &str| names[n];
        let (c, f) = (cfg.n_embd, cfg.inner_dim());
        let (hq, hkv, d) = (cfg.n_head, cfg.arch.n_kv_head, cfg.arch.head_dim);
        let lin = |name: &str, inp: usize, out: usize, out_in: bool| Lin {
            w: at(&format!("{name}.weight")),
            b: names.get(&format!("{name}.bias")).copied(),
            inp,
            out,
            out_in,
        };
        let norm = |name: &str| Norm {
            w: at(&format!("{name}.weight")),
            b: names.get(&format!("{name}.bias")).copied(),
        };
        let range = |prefix: &str| {
            let mut idx: Vec<usize> = names
                .iter()
                .filter(|(n, _)| n.starts_with(prefix))
                .map(|(_, &i)| i)
                .collect();
            idx.sort_unstable();
            idx[0]..idx[idx.len() - 1] + 1
        };
        let family = cfg.arch.family;
        let blocks = (0..cfg.n_layer)
            .map(|l| match family {
                Family::Gpt2 => {
                    let p = format!("transformer.h.{l}.");
                    BlockParams {
                        range: range(&p),
                        norm1: norm(&format!("{p}ln_1")),
                        qkv: vec![lin(&format!("{p}attn.c_attn"), c, 3 * c, false)],
                        proj: lin(&format!("{p}attn.c_proj"), c, c, false),
                        norm2: norm(&format!("{p}ln_2")),
                        up: vec![lin(&format!("{p}mlp.c_fc"), c, f, false)],
                        down: lin(&format!("{p}mlp.c_proj"), f, c, false),
                    }
                }
                Family::Llama => {
                    let p = format!("model.layers.{l}.");
                    let a = |n: &str| format!("{p}self_attn.{n}");
                    let m = |n: &str| format!("{p}mlp.{n}");
                    BlockParams {
                        range: range(&p),
                        norm1: norm(&format!("{p}input_layernorm")),
                        qkv: vec![
                            lin(&a("q_proj"), c, hq * d, true),
                            lin(&a("k_proj"), c, hkv * d, true),
                            lin(&a("v_proj"), c, hkv * d, true),
                        ],
                        proj: lin(&a("o_proj"), hq * d, c, true),
                        norm2: norm(&format!("{p}post_attention_layernorm")),
                        up: vec![
                            lin(&m("gate_proj"), c, f, true),
                            lin(&m("up_proj"), c, f, true),
                        ],
                        down: lin(&m("down_proj"), f, c, true),
                    }
                }
                Family::NeoX => {
                    let p = format!("gpt_neox.layers.{l}.");
                    BlockParams {
                        range: range(&p),
                        norm1: norm(&format!("{p}input_layernorm")),
                        qkv: vec![lin(
                            &format!("{p}attention.query_key_value"),
                            c,
                            3 * c,
                            true,
                        )],
                        proj: lin(&format!("{p}attention.dense"), c, c, true),
                        norm2: norm(&format!("{p}post_attention_layernorm")),
                        up: vec![lin(&format!("{p}mlp.dense_h_to_4h"), c, f, true)],
                        down: lin(&format!("{p}mlp.dense_4h_to_h"), f, c, true),
                    }
                }
            })
            .collect();
        let (embed, pos, final_norm, head) = match family {
            Family::Gpt2 => (
                at("transformer.wte.weight"),
                Some(at("transformer.wpe.weight")),
                norm("transformer.ln_f"),
                None,
            ),
            Family::Llama => (
                at("model.embed_tokens.weight"),
                None,
                norm("model.norm"),
                names.get("lm_head.weight").copied(),
            ),
            Family::NeoX => (
                at("gpt_neox.embed_in.weight"),
                None,
                norm("gpt_neox.final_layer_norm"),
                names.get("embed_out.weight").copied(),
            ),
        };
        let rotary_dims = cfg.arch.rotary_dims;
        Layout {
            embed,
            pos,
            blocks,
            final_norm,
            head,
            inv_freq: cfg.arch.rope.as_ref().map_or_else(Vec::new, |r| {
                inverse_frequencies(r.theta, &r.scaling, rotary_dims)
            }),
            rotary_dims,
            interleaved: family == Family::NeoX,
            parallel_residual: cfg.arch.parallel_residual,
            centered: family != Family::Llama,
            activation: match family {
                Family::Gpt2 => Activation::GeluTanh,
                Family::Llama => Activation::SwiGlu,
                Family::NeoX => Activation::GeluErf,
            },
            eps: cfg.layer_norm_epsilon,
            heads: hq,
            kv_heads: hkv,
            head_dim: d,
        }
    }

    /// The parameter the output layer reads: the untied head, or the token embedding.
    pub fn head_param(&self) -> usize {
        self.head.unwrap_or(self.embed)
    }

    /// Columns of the attention's `qkv` rows: `(Hq + 2·Hkv)·d`.
    fn qkv_width(&self) -> usize {
        (self.heads + 2 * self.kv_heads) * self.head_dim
    }
}

/// The rotary embedding's inverse frequencies for `d` rotated dimensions, as transformers
/// computes them for `rope_type` `default`, `linear` and `llama3` (here in float64).
fn inverse_frequencies(theta: f64, scaling: &RopeScaling, d: usize) -> Vec<f64> {
    let base: Vec<f64> = (0..d / 2)
        .map(|i| 1.0 / theta.powf((2 * i) as f64 / d as f64))
        .collect();
    match *scaling {
        RopeScaling::None => base,
        RopeScaling::Linear { factor } => base.iter().map(|f| f / factor).collect(),
        RopeScaling::Llama3 {
            factor,
            low_freq_factor: low,
            high_freq_factor: high,
            original_max_position_embeddings: old,
        } => base
            .iter()
            .map(|&f| {
                let wavelen = 2.0 * std::f64::consts::PI / f;
                if wavelen < old / high {
                    f
                } else if wavelen > old / low {
                    f / factor
                } else {
                    let smooth = (old / wavelen - low) / (high - low);
                    (1.0 - smooth) * f / factor + smooth * f
                }
            })
            .collect(),
    }
}

/// The network's parameters as slices in the pass's order, the output layer's weight (the head
/// parameter itself, or for a tangent pass with `output_grad` off a copy of the tied embedding
/// with no tangent), which parameters are trainable, and whether a tied output layer passes
/// gradient to the token embedding.
pub struct Net<'a, T> {
    pub cfg: &'a Gpt2Config,
    pub layout: Layout,
    pub p: Vec<&'a [T]>,
    pub head: &'a [T],
    pub trainable: &'a [bool],
    pub output_grad: bool,
    /// Where a dual pass keeps its products' value planes across passes at one point.
    primal: Option<&'a Primal>,
}

/// A scored target: flat position `r·T + t` in the batch, the target token, and its weight.
#[derive(Clone, Copy)]
pub struct Target {
    pub pos: usize,
    pub token: usize,
    pub weight: f64,
}

/// Cosines and sines of the rotary angles, `[N, d/2]` each (empty without rotary positions).
pub(super) struct Rotary<T> {
    cos: Vec<T>,
    sin: Vec<T>,
}

/// What a forward pass keeps past its output layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Every block's activations and the output distribution, for a backward.
    Backward,
    /// [`Keep::Backward`]'s tape and [`Keep::Moments`]' scores (the same values, bit for bit):
    /// a scoring pass whose forward a backward then shares (per-record gradient norms).
    ScoredBackward,
    /// The scored targets' log-probs and most likely tokens, and the moments of each scored
    /// position's log-probs (the certifier's scoring: Min-K%++ reads them).
    Moments,
    /// The scored targets' log-probs and most likely tokens alone.
    LogProbs,
}

impl Keep {
    /// Whether the pass keeps the activations a backward needs.
    pub fn tapes(self) -> bool {
        matches!(self, Keep::Backward | Keep::ScoredBackward)
    }
}

/// What one block's forward keeps for its backward.
pub(super) struct BlockTape<T> {
    /// The block's input `[N, C]`.
    pub(super) x: Vec<T>,
    ln1: Vec<T>,
    ln1_stats: Vec<(T, T)>,
    /// Queries, keys, values `[N, (Hq + 2·Hkv)·d]` as attention reads them (rotated).
    pub(super) qkv: Vec<T>,
    /// Attention probabilities `[B, Hq, T, T]`.
    probs: Vec<T>,
    /// Attention output, heads merged `[N, Hq·d]`.
    ctx: Vec<T>,
    /// The residual stream after attention `[N, C]`.
    mid: Vec<T>,
    ln2: Vec<T>,
    ln2_stats: Vec<(T, T)>,
    /// MLP pre-activation (`[N, F]`, or gate and up `[N, 2F]`) and activation `[N, F]`.
    pre: Vec<T>,
    act: Vec<T>,
}

/// A forward pass kept for its backward.
pub struct Tape<T> {
    pub(super) rows: usize,
    pub(super) cols: usize,
    ids: Vec<usize>,
    rotary: Rotary<T>,
    blocks: Vec<BlockTape<T>>,
    /// The trunk's output `[N, C]` (before the final norm).
    pub(super) top: Vec<T>,
    pub(super) targets: Vec<Target>,
    /// Final-norm output at the scored positions `[S, C]`, and its row statistics.
    hs: Vec<T>,
    hs_stats: Vec<(T, T)>,
    /// The output distribution at the scored positions `[S, V]` (the backward turns it into
    /// the logits' gradient), each position's most likely token, and the target log-probs.
    probs: Vec<T>,
    best: Vec<usize>,
    pub logprobs: Vec<T>,
    /// A scoring pass's mean and variance of `log p(·)` at each scored position (empty unless
    /// the pass kept [`Keep::Moments`] or [`Keep::ScoredBackward`]).
    pub moments: Vec<(f64, f64)>,
}

/// `dst += src`, element-wise.
fn add_into<T: Float>(dst: &mut [T], src: &[T]) {
    dst.par_chunks_mut(ELEMS)
        .zip(src.par_chunks(ELEMS))
        .for_each(|(d, s)| d.iter_mut().zip(s).for_each(|(d, &s)| *d += s));
}

impl<T: Float> Tape<T> {
    /// The trunk's output at the scored positions, `[S, C]` (the final norm's input).
    fn picked(&self, c: usize) -> Vec<T> {
        let at: Vec<usize> = self.targets.iter().map(|t| t.pos).collect();
        pick_rows(&self.top, &at, c)
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

/// `f(x)` for every element of `x` (`f` inlined into the loop, which then vectorises).
fn map_elems<T: Float>(x: &[T], f: impl Fn(T) -> T + Sync) -> Vec<T> {
    let mut y = vec![T::ZERO; x.len()];
    y.par_chunks_mut(ELEMS)
        .zip(x.par_chunks(ELEMS))
        .for_each(|(y, x)| y.iter_mut().zip(x).for_each(|(y, &x)| *y = f(x)));
    y
}

/// `d·f'(x)` element-wise: an element-wise layer's backward from its slope `f'`.
fn scale_elems<T: Float>(d: &[T], x: &[T], slope: impl Fn(T) -> T + Sync) -> Vec<T> {
    let mut out = d.to_vec();
    out.par_chunks_mut(ELEMS)
        .zip(x.par_chunks(ELEMS))
        .for_each(|(d, x)| d.iter_mut().zip(x).for_each(|(d, &x)| *d *= slope(x)));
    out
}

/// `dst[r][off..off + b.len()] += b` for every `width`-wide row of `dst`.
fn add_rows<T: Float>(dst: &mut [T], width: usize, off: usize, b: &[T]) {
    dst.par_chunks_mut(width)
        .with_min_len(MIN_ROWS)
        .for_each(|r| {
            r[off..off + b.len()]
                .iter_mut()
                .zip(b)
                .for_each(|(x, &b)| *x += b)
        });
}

/// `g += Σ_rows m[r][off..off + g.len()]` over the `width`-wide rows of `m` (a bias gradient).
fn add_colsum<T: Float>(g: &mut [T], m: &[T], width: usize, off: usize) {
    for row in m.chunks(width) {
        g.iter_mut().zip(&row[off..]).for_each(|(g, &x)| *g += x);
    }
}

impl<'a, T: Float> Net<'a, T> {
    /// The network over parameters `p` (the pass's order), the output layer reading `head`
    /// when given (else its own parameter).
    pub fn new(
        cfg: &'a Gpt2Config,
        p: Vec<&'a [T]>,
        head: Option<&'a [T]>,
        trainable: &'a [bool],
        output_grad: bool,
    ) -> Self {
        let layout = Layout::new(cfg);
        let head = head.unwrap_or(p[layout.head_param()]);
        Net {
            cfg,
            layout,
            p,
            head,
            trainable,
            output_grad,
            primal: None,
        }
    }

    /// The same network, its products' value planes kept in (and read back from) `primal`:
    /// every pass through it must run at these parameters on one batch.
    pub fn keeping(self, primal: &'a Primal) -> Self {
        Net {
            primal: Some(primal),
            ..self
        }
    }

    /// `dst (+)= a·b`, the product at `site` of this pass.
    #[allow(clippy::too_many_arguments)] // `mm`'s arguments and the product's name
    fn product(
        &self,
        site: Site,
        dst: &mut [T],
        ds: usize,
        a: View<'_, T>,
        b: View<'_, T>,
        add: bool,
    ) {
        match self.primal {
            Some(primal) => T::mm_at(primal, site, dst, ds, a, b, add),
            None => mm(dst, ds, a, b, add),
        }
    }

    fn trains(&self, i: usize) -> bool {
        self.trainable[i]
    }

    fn norm_trains(&self, n: Norm) -> bool {
        self.trains(n.w) || n.b.is_some_and(|b| self.trains(b))
    }

    fn embedding_trains(&self) -> bool {
        self.trains(self.layout.embed) || self.layout.pos.is_some_and(|p| self.trains(p))
    }

    /// The lowest block the backward must reach: 0 when the embedding trains, else the lowest
    /// block with a trainable parameter, else `n_layer` (only the final norm, the head or
    /// nothing).
    fn lowest(&self) -> usize {
        if self.embedding_trains() {
            return 0;
        }
        self.layout
            .blocks
            .iter()
            .position(|b| b.range.clone().any(|i| self.trains(i)))
            .unwrap_or(self.cfg.n_layer)
    }

    /// The forward pass over a batch of `rows × cols` token ids (right-padded; `attention` 1 for
    /// real tokens), scoring `targets`; `keep` says what the tape keeps.
    pub fn forward(
        &self,
        ids: &[u32],
        attention: &[u32],
        (rows, cols): (usize, usize),
        targets: Vec<Target>,
        keep: Keep,
    ) -> Tape<T> {
        let ids: Vec<usize> = ids.iter().map(|&i| i as usize).collect();
        let backward = keep.tapes();
        let (x, blocks, rotary) = self.trunk(&ids, attention, (rows, cols), backward, |_, _, _| {});
        let mut tape = Tape {
            rows,
            cols,
            ids,
            rotary,
            blocks,
            top: x,
            targets,
            hs: Vec::new(),
            hs_stats: Vec::new(),
            probs: Vec::new(),
            best: Vec::new(),
            logprobs: Vec::new(),
            moments: Vec::new(),
        };
        self.head(&mut tape, keep);
        tape
    }

    /// The embedding and every block over a batch of `rows × cols` token ids (right-padded;
    /// `attention` 1 for real tokens): the trunk's output `[N, C]` (before the final norm),
    /// with `keep` each block's tape, and the rotary angles used. `each(l, tape, out)` sees
    /// block `l`'s tape (its input among it) and its output as they are made.
    #[allow(clippy::type_complexity)]
    pub(super) fn trunk(
        &self,
        ids: &[usize],
        attention: &[u32],
        (rows, cols): (usize, usize),
        keep: bool,
        mut each: impl FnMut(usize, &BlockTape<T>, &[T]),
    ) -> (Vec<T>, Vec<BlockTape<T>>, Rotary<T>) {
        let mut x = self.embed(ids, |r| r % cols);
        let rotary = self.rotary(ids.len(), |r| r % cols);
        let mut blocks = Vec::with_capacity(if keep { self.cfg.n_layer } else { 0 });
        for l in 0..self.cfg.n_layer {
            let (tape, next) = self.block(l, x, &rotary, |qkv| {
                let (probs, ctx) = self.attend(l, qkv, attention, rows, cols);
                (if keep { probs } else { Vec::new() }, ctx)
            });
            each(l, &tape, &next);
            if keep {
                blocks.push(tape);
            }
            x = next;
        }
        (x, blocks, rotary)
    }

    /// The logits `[S, V]` at the flat positions `at` (`r·T + t`, checked by the caller) of a
    /// batch of `rows × cols` token ids: the trunk runs over the whole batch, the output layer
    /// only at those positions.
    pub fn logits_at(
        &self,
        ids: &[u32],
        attention: &[u32],
        shape: (usize, usize),
        at: &[usize],
    ) -> Vec<T> {
        let ids: Vec<usize> = ids.iter().map(|&i| i as usize).collect();
        let (x, _, _) = self.trunk(&ids, attention, shape, false, |_, _, _| {});
        self.logits(&pick_rows(&x, at, self.cfg.n_embd)).2
    }

    /// Every layer's hidden states `[N, C]` (the embedding output, then each block's output)
    /// over a batch of `rows × cols` token ids.
    pub fn hidden_states(
        &self,
        ids: &[u32],
        attention: &[u32],
        shape: (usize, usize),
    ) -> Vec<Vec<T>> {
        let ids: Vec<usize> = ids.iter().map(|&i| i as usize).collect();
        let mut layers = Vec::with_capacity(self.cfg.n_layer + 1);
        self.trunk(&ids, attention, shape, false, |l, tape, out| {
            if l == 0 {
                layers.push(tape.x.clone());
            }
            layers.push(out.to_vec());
        });
        layers
    }

    /// The input embedding of each token `tokens[r]` at position `pos(r)` (the position
    /// embedding added where the family learns one), `[N, C]`.
    pub(super) fn embed(&self, tokens: &[usize], pos: impl Fn(usize) -> usize + Sync) -> Vec<T> {
        let c = self.cfg.n_embd;
        let (wte, wpe) = (
            self.p[self.layout.embed],
            self.layout.pos.map(|i| self.p[i]),
        );
        let mut x = vec![T::ZERO; tokens.len() * c];
        x.par_chunks_mut(c)
            .enumerate()
            .with_min_len(MIN_ROWS)
            .for_each(|(r, x)| {
                x.copy_from_slice(&wte[tokens[r] * c..][..c]);
                if let Some(wpe) = wpe {
                    let at = &wpe[pos(r) * c..][..c];
                    x.iter_mut().zip(at).for_each(|(x, &b)| *x += b);
                }
            });
        x
    }

    /// The rotary angles' cosines and sines for `n` rows at positions `pos(r)`: each angle
    /// `position · inv_freq` is formed in `T` (float32 as transformers does, float64 exactly),
    /// its cosine and sine rounded to `T`.
    pub(super) fn rotary(&self, n: usize, pos: impl Fn(usize) -> usize) -> Rotary<T> {
        let freqs = &self.layout.inv_freq;
        let (mut cos, mut sin) = (Vec::new(), Vec::new());
        if freqs.is_empty() {
            return Rotary { cos, sin };
        }
        let inv: Vec<T> = freqs.iter().map(|&f| T::of(f)).collect();
        cos.reserve(n * inv.len());
        sin.reserve(n * inv.len());
        for r in 0..n {
            let p = T::of(pos(r) as f64);
            for &f in &inv {
                let angle = (p * f).f64();
                cos.push(T::of(angle.cos()));
                sin.push(T::of(angle.sin()));
            }
        }
        Rotary { cos, sin }
    }

    /// Rotates the query and key heads of each `qkv` row by its angles (`back`: by their
    /// negatives, the backward of the rotation); nothing without rotary positions.
    fn rotate(&self, qkv: &mut [T], rotary: &Rotary<T>, back: bool) {
        let half = self.layout.rotary_dims / 2;
        if rotary.cos.is_empty() || half == 0 {
            return;
        }
        let (d, heads) = (
            self.layout.head_dim,
            self.layout.heads + self.layout.kv_heads,
        );
        qkv.par_chunks_mut(self.layout.qkv_width())
            .zip(rotary.cos.par_chunks(half))
            .zip(rotary.sin.par_chunks(half))
            .with_min_len(MIN_ROWS)
            .for_each(|((row, cos), sin)| {
                for head in row[..heads * d].chunks_mut(d) {
                    let (a, b) = head[..2 * half].split_at_mut(half);
                    for i in 0..half {
                        let (x1, x2, c, s) = (a[i], b[i], cos[i], sin[i]);
                        if back {
                            a[i] = x1 * c + x2 * s;
                            b[i] = x2 * c - x1 * s;
                        } else {
                            a[i] = x1 * c - x2 * s;
                            b[i] = x2 * c + x1 * s;
                        }
                    }
                }
            });
    }

    /// GPT-NeoX's fused projection output, each head's `[q | k | v]` side by side, reordered
    /// in place to all queries, all keys, all values (`back`: the reverse); nothing for other
    /// families.
    fn deinterleave(&self, qkv: &mut [T], back: bool) {
        if !self.layout.interleaved {
            return;
        }
        let (h, d, width) = (
            self.layout.heads,
            self.layout.head_dim,
            self.layout.qkv_width(),
        );
        qkv.par_chunks_mut(width)
            .with_min_len(MIN_ROWS)
            .for_each_init(Vec::new, |tmp: &mut Vec<T>, row| {
                tmp.clear();
                tmp.extend_from_slice(row);
                for hh in 0..h {
                    for k in 0..3 {
                        let (fused, split) = ((hh * 3 + k) * d, (k * h + hh) * d);
                        let (dst, src) = if back { (fused, split) } else { (split, fused) };
                        row[dst..dst + d].copy_from_slice(&tmp[src..src + d]);
                    }
                }
            });
    }

    /// Block `l` on the rows `x` `[N, C]` with rotary angles `rotary`, `attend` turning the
    /// rows' `qkv` into the attention probabilities (kept for the backward; empty where none
    /// is wanted) and the attention output with heads merged `[N, Hq·d]`: the block's tape
    /// and its output.
    pub(super) fn block(
        &self,
        l: usize,
        x: Vec<T>,
        rotary: &Rotary<T>,
        attend: impl FnOnce(&[T]) -> (Vec<T>, Vec<T>),
    ) -> (BlockTape<T>, Vec<T>) {
        let bp = &self.layout.blocks[l];
        let n = x.len() / self.cfg.n_embd;
        let (ln1, ln1_stats) = self.norm(&x, bp.norm1);
        let mut qkv = self.linear(&ln1, n, &bp.qkv);
        self.deinterleave(&mut qkv, false);
        self.rotate(&mut qkv, rotary, false);
        let (probs, ctx) = attend(&qkv);
        let mut mid = self.linear(&ctx, n, &[bp.proj]);
        add_into(&mut mid, &x);
        // The MLP reads the attention's output, or (parallel residual) the block's input.
        let mlp_in = if self.layout.parallel_residual {
            &x
        } else {
            &mid
        };
        let (ln2, ln2_stats) = self.norm(mlp_in, bp.norm2);
        let pre = self.linear(&ln2, n, &bp.up);
        let act = self.activate(&pre, n);
        let mut out = self.linear(&act, n, &[bp.down]);
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

    /// A weight as the `[in, out]` matrix of `y = x·W`.
    fn weight(&self, lin: &Lin) -> View<'_, T> {
        let w = self.p[lin.w];
        if lin.out_in {
            View::new(w, lin.out, lin.inp).tr()
        } else {
            View::new(w, lin.inp, lin.out)
        }
    }

    /// The linear layers `lins` (one input width) on `x` `[rows, in]`, their outputs side by
    /// side `[rows, Σ out]`.
    fn linear(&self, x: &[T], rows: usize, lins: &[Lin]) -> Vec<T> {
        let width: usize = lins.iter().map(|l| l.out).sum();
        let mut y = vec![T::ZERO; rows * width];
        if rows == 0 {
            return y;
        }
        let mut off = 0;
        for lin in lins {
            let x = View::new(x, rows, lin.inp);
            self.product(
                Site::Linear(lin.w),
                &mut y[off..],
                width,
                x,
                self.weight(lin),
                false,
            );
            if let Some(b) = lin.b {
                add_rows(&mut y, width, off, self.p[b]);
            }
            off += lin.out;
        }
        y
    }

    /// The backward of [`Net::linear`] with input `x` `[rows, in]` and output gradient `dy`
    /// `[rows, Σ out]`: the weights' gradients written and the biases' added where they train, and (with
    /// `input`) the input's gradient `Σ dy_k·W_kᵀ`.
    fn linear_back(
        &self,
        x: &[T],
        dy: &[T],
        rows: usize,
        lins: &[Lin],
        grads: &mut [Option<Vec<T>>],
        input: bool,
    ) -> Vec<T> {
        let width: usize = lins.iter().map(|l| l.out).sum();
        let inp = lins[0].inp;
        let mut dx = if input {
            vec![T::ZERO; rows * inp]
        } else {
            Vec::new()
        };
        let mut off = 0;
        for (k, lin) in lins.iter().enumerate() {
            let dyv = View {
                data: &dy[off..],
                rows,
                cols: lin.out,
                stride: width,
                t: false,
            };
            if let Some(g) = lin.b.and_then(|b| grads[b].as_mut()) {
                add_colsum(g, dy, width, off);
            }
            if let Some(g) = grads[lin.w].as_mut() {
                // Each weight has one `Lin` and one backward per pass, and `backward` hands
                // out fresh zeroed buffers: replace (see the head's gradient in `backward`).
                let x = View::new(x, rows, inp);
                if lin.out_in {
                    self.product(Site::LinearWeight(lin.w), g, inp, dyv.tr(), x, false);
                } else {
                    self.product(Site::LinearWeight(lin.w), g, lin.out, x.tr(), dyv, false);
                }
            }
            if input {
                let w = self.weight(lin).tr();
                self.product(Site::LinearInput(lin.w), &mut dx, inp, dyv, w, k > 0);
            }
            off += lin.out;
        }
        dx
    }

    /// The MLP's activation: `gelu_new(pre)`, the exact GELU, or SwiGLU's `silu(gate)·up` from
    /// `[gate | up]`.
    fn activate(&self, pre: &[T], rows: usize) -> Vec<T> {
        match self.layout.activation {
            Activation::GeluTanh => map_elems(pre, gelu),
            Activation::GeluErf => map_elems(pre, gelu_erf),
            Activation::SwiGlu => {
                let f = pre.len() / rows.max(1) / 2;
                let mut act = vec![T::ZERO; rows * f];
                act.par_chunks_mut(f)
                    .zip(pre.par_chunks(2 * f))
                    .with_min_len(MIN_ROWS)
                    .for_each(|(a, p)| {
                        let (gate, up) = p.split_at(f);
                        for ((a, &g), &u) in a.iter_mut().zip(gate).zip(up) {
                            *a = silu(g) * u;
                        }
                    });
                act
            }
        }
    }

    /// The backward of [`Net::activate`]: the pre-activation's gradient from the activation's.
    fn activate_back(&self, pre: &[T], dact: &[T]) -> Vec<T> {
        match self.layout.activation {
            Activation::GeluTanh => scale_elems(dact, pre, gelu_slope),
            Activation::GeluErf => scale_elems(dact, pre, gelu_erf_slope),
            Activation::SwiGlu => {
                let f = self.cfg.inner_dim();
                let mut dpre = vec![T::ZERO; pre.len()];
                dpre.par_chunks_mut(2 * f)
                    .zip(pre.par_chunks(2 * f).zip(dact.par_chunks(f)))
                    .with_min_len(MIN_ROWS)
                    .for_each(|(d, (p, da))| {
                        let (dg, du) = d.split_at_mut(f);
                        let (gate, up) = p.split_at(f);
                        for i in 0..f {
                            dg[i] = da[i] * up[i] * silu_slope(gate[i]);
                            du[i] = da[i] * silu(gate[i]);
                        }
                    });
                dpre
            }
        }
    }

    /// The norm `nm` of every `C`-wide row of `x`, with each row's statistics.
    fn norm(&self, x: &[T], nm: Norm) -> (Vec<T>, Vec<(T, T)>) {
        let (w, b) = (self.p[nm.w], nm.b.map(|b| self.p[b]));
        let (c, eps, centered) = (w.len(), T::of(self.layout.eps), self.layout.centered);
        let mut y = vec![T::ZERO; x.len()];
        let mut stats = vec![(T::ZERO, T::ZERO); x.len() / c];
        y.par_chunks_mut(c)
            .zip(x.par_chunks(c))
            .zip(stats.par_iter_mut())
            .with_min_len(MIN_ROWS)
            .for_each(|((y, x), s)| *s = norm_row(x, w, b, eps, centered, y));
        (y, stats)
    }

    /// `dx += the norm's backward of g` over every row, and the norm's weight and bias
    /// gradients added where they train.
    fn norm_back(
        &self,
        x: &[T],
        stats: &[(T, T)],
        nm: Norm,
        g: &[T],
        dx: &mut [T],
        grads: &mut [Option<Vec<T>>],
    ) {
        let (w, centered) = (self.p[nm.w], self.layout.centered);
        let c = w.len();
        dx.par_chunks_mut(c)
            .zip(x.par_chunks(c).zip(g.par_chunks(c)))
            .zip(stats.par_iter())
            .with_min_len(MIN_ROWS)
            .for_each(|((dx, (x, g)), &s)| norm_row_back(x, s, centered, w, g, dx, true));
        let (gw, gb) = pair(grads, nm.w, nm.b);
        if gw.is_none() && gb.is_none() {
            return;
        }
        let (mut sw, mut sb) = (vec![T::ZERO; c], vec![T::ZERO; c]);
        for ((x, g), &s) in x.chunks(c).zip(g.chunks(c)).zip(stats) {
            norm_row_params(x, s, g, &mut sw, Some(&mut sb));
        }
        for (dst, src) in [(gw, sw), (gb, sb)] {
            if let Some(dst) = dst {
                dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
            }
        }
    }

    /// Causal self-attention over `qkv` `[N, (Hq + 2·Hkv)·d]`, query head `h` reading key and
    /// value head `h / (Hq/Hkv)`: the probabilities `[B, Hq, T, T]` and the output with heads
    /// merged `[N, Hq·d]`.
    pub(super) fn attend(
        &self,
        l: usize,
        qkv: &[T],
        attention: &[u32],
        rows: usize,
        cols: usize,
    ) -> (Vec<T>, Vec<T>) {
        let (hq, d, width) = (
            self.layout.heads,
            self.layout.head_dim,
            self.layout.qkv_width(),
        );
        let scale = T::of(1.0 / (d as f64).sqrt());
        let mut probs = vec![T::ZERO; rows * hq * cols * cols];
        let mut heads = vec![T::ZERO; rows * hq * cols * d];
        probs
            .par_chunks_mut(cols * cols)
            .zip(heads.par_chunks_mut(cols * d))
            .enumerate()
            .for_each(|(bh, (p, out))| {
                let (b, h) = (bh / hq, bh % hq);
                let [q, k, v] = self.head_columns(h);
                let part = |col: usize| head_view(qkv, width, col, b, cols, d);
                let keep = &attention[b * cols..(b + 1) * cols];
                let at = |part| Site::Attention { l, bh, part };
                self.product(at(0), p, cols, part(q), part(k).tr(), false);
                for (i, row) in p.chunks_mut(cols).enumerate() {
                    softmax_row(row, keep, i, scale);
                }
                self.product(at(1), out, d, View::new(p, cols, cols), part(v), false);
            });
        (probs, merge_heads(&heads, rows, hq, cols, d))
    }

    /// The first columns of query head `h`'s query, key and value in a `qkv` row.
    pub(super) fn head_columns(&self, h: usize) -> [usize; 3] {
        let (hq, hkv, d) = (
            self.layout.heads,
            self.layout.kv_heads,
            self.layout.head_dim,
        );
        let g = h / (hq / hkv);
        [h * d, (hq + g) * d, (hq + hkv + g) * d]
    }

    /// Key/value heads and the width of one head.
    pub(super) fn kv_shape(&self) -> (usize, usize) {
        (self.layout.kv_heads, self.layout.head_dim)
    }

    /// A [`Keep::LogProbs`] tape's targets scored again from its trunk output under this net's
    /// final norm and output layer (the trunk is not run).
    pub fn rescore(&self, tape: &mut Tape<T>) {
        self.head(tape, Keep::LogProbs);
    }

    /// The final norm and the output layer at the scored positions, and their log-probs. For a
    /// backward the output distribution is kept; a scoring pass keeps the moments of each
    /// position's log-probs, if asked (a scored backward both).
    fn head(&self, tape: &mut Tape<T>, keep: Keep) {
        let (hs, stats, mut logits) = self.logits(&tape.picked(self.cfg.n_embd));
        let v = self.cfg.vocab_size;
        if keep == Keep::LogProbs {
            (tape.logprobs, tape.best) = logits
                .par_chunks(v)
                .zip(tape.targets.par_iter())
                .map(|(row, t)| target_logprob(row, t.token))
                .unzip();
            return;
        }
        if keep.tapes() {
            // A scored backward reads the row's scores (`score_row`, what a scoring pass
            // keeps) before the row becomes its probabilities.
            let scored = keep == Keep::ScoredBackward;
            let rows: Vec<(T, usize, (f64, f64))> = logits
                .par_chunks_mut(v)
                .zip(tape.targets.par_iter())
                .map(|(row, t)| {
                    let score = scored.then(|| score_row(row, t.token));
                    let (lp, best) = logprob_row(row, t.token);
                    score.map_or((lp, best, (0.0, 0.0)), |s| (s.0, s.1, (s.2, s.3)))
                })
                .collect();
            tape.hs = hs;
            tape.hs_stats = stats;
            tape.probs = logits;
            tape.logprobs = rows.iter().map(|r| r.0).collect();
            tape.best = rows.iter().map(|r| r.1).collect();
            if scored {
                tape.moments = rows.iter().map(|r| r.2).collect();
            }
            return;
        }
        let scores: Vec<(T, usize, f64, f64)> = logits
            .par_chunks(v)
            .zip(tape.targets.par_iter())
            .map(|(row, t)| score_row(row, t.token))
            .collect();
        tape.logprobs = scores.iter().map(|s| s.0).collect();
        tape.best = scores.iter().map(|s| s.1).collect();
        tape.moments = scores.iter().map(|s| (s.2, s.3)).collect();
    }

    /// The final norm and the output layer on the trunk's output rows `h` `[S, C]`: the
    /// norm's output, its row statistics, and the logits `[S, V]`.
    pub(super) fn logits(&self, h: &[T]) -> (Vec<T>, Vec<(T, T)>, Vec<T>) {
        let (c, v) = (self.cfg.n_embd, self.cfg.vocab_size);
        let s = h.len() / c;
        let (hs, stats) = self.norm(h, self.layout.final_norm);
        let mut logits = vec![T::ZERO; s * v];
        self.product(
            Site::Logits,
            &mut logits,
            v,
            View::new(&hs, s, c),
            View::new(self.head, v, c).tr(),
            false,
        );
        (hs, stats, logits)
    }

    /// The gradient of `Σ_s coef[s]·logprob[s]` with respect to every trainable parameter
    /// (`None` for the frozen ones), in the pass's order.
    pub fn backward(&self, mut tape: Tape<T>, coef: &[T]) -> Vec<Option<Vec<T>>> {
        let (c, v) = (self.cfg.n_embd, self.cfg.vocab_size);
        let np = self.p.len();
        let mut grads: Vec<Option<Vec<T>>> = (0..np)
            .map(|i| self.trains(i).then(|| vec![T::ZERO; self.p[i].len()]))
            .collect();
        let s = tape.targets.len();
        self.logits_back(&mut tape, coef);
        // The output layer's weight: an untied head's own gradient, or the tied embedding's
        // output part (unless `output_grad` is off).
        if self.layout.head.is_some() || self.output_grad {
            if let Some(g) = grads[self.layout.head_param()].as_mut() {
                // The first write into a fresh buffer: replace, not add. Adding reads the
                // calloc'd pages first (the kernel maps its shared zero page), and each write
                // then faults again to copy it, flushing every thread's TLB: 25% of a
                // Llama-shaped all-parameter step (vocabulary × width: 154 MB) was that.
                self.product(
                    Site::HeadWeight,
                    g,
                    c,
                    View::new(&tape.probs, s, v).tr(),
                    View::new(&tape.hs, s, c),
                    false,
                );
            }
        }
        let lowest = self.lowest();
        if lowest == self.cfg.n_layer && !self.norm_trains(self.layout.final_norm) {
            return grads;
        }
        let dx = self.trunk_back(&mut tape, &mut grads);
        // The embedding: each token's row of the token embedding, each position's row of a
        // learned position embedding.
        if self.embedding_trains() {
            let cols = tape.cols;
            if let Some(g) = grads[self.layout.embed].as_mut() {
                for (r, d) in dx.chunks(c).enumerate() {
                    let row = &mut g[tape.ids[r] * c..][..c];
                    row.iter_mut().zip(d).for_each(|(g, &d)| *g += d);
                }
            }
            if let Some(g) = self.layout.pos.and_then(|p| grads[p].as_mut()) {
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
        let (n, s) = (tape.rows * tape.cols, tape.targets.len());
        let mut dhs = vec![T::ZERO; s * c];
        self.product(
            Site::HeadInput,
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
        let fin = self.layout.final_norm;
        self.norm_back(&picked, &tape.hs_stats, fin, &dhs, &mut dpicked, grads);
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
        let bp = &self.layout.blocks[l];
        let n = tape.rows * tape.cols;
        let parallel = self.layout.parallel_residual;
        // MLP: out = mid + act(norm2(mid or x)·Up)·Down.
        let dact = self.linear_back(&bt.act, &dy, n, &[bp.down], grads, true);
        let dpre = self.activate_back(&bt.pre, &dact);
        drop(dact);
        let dln2 = self.linear_back(&bt.ln2, &dpre, n, &bp.up, grads, true);
        drop(dpre);
        let mut dmid = dy;
        // With a parallel residual the MLP's norm reads x: its gradient joins x's below,
        // after the attention has taken mid's (= out's) gradient.
        let mut dx_mlp = Vec::new();
        if parallel {
            dx_mlp = vec![T::ZERO; dmid.len()];
            self.norm_back(&bt.x, &bt.ln2_stats, bp.norm2, &dln2, &mut dx_mlp, grads);
        } else {
            self.norm_back(&bt.mid, &bt.ln2_stats, bp.norm2, &dln2, &mut dmid, grads);
        }
        // Attention: mid = x + attend(rotate(ln1·Wqkv))·Wo.
        let dctx = self.linear_back(&bt.ctx, &dmid, n, &[bp.proj], grads, true);
        let mut dqkv = self.attend_back(l, &bt.qkv, &bt.probs, &dctx, (tape.rows, tape.cols));
        drop(dctx);
        self.rotate(&mut dqkv, &tape.rotary, true);
        self.deinterleave(&mut dqkv, true);
        let ln1_trains = self.norm_trains(bp.norm1);
        let dln1 = self.linear_back(&bt.ln1, &dqkv, n, &bp.qkv, grads, below || ln1_trains);
        if parallel {
            add_into(&mut dmid, &dx_mlp);
        }
        if !below && !ln1_trains {
            return dmid;
        }
        self.norm_back(&bt.x, &bt.ln1_stats, bp.norm1, &dln1, &mut dmid, grads);
        dmid
    }

    /// The backward of [`Net::attend`]: the gradient of `qkv` from that of the merged output
    /// `dctx` `[N, Hq·d]`; a key/value head's gradient sums over the query heads reading it.
    fn attend_back(
        &self,
        l: usize,
        qkv: &[T],
        probs: &[T],
        dctx: &[T],
        (rows, cols): (usize, usize),
    ) -> Vec<T> {
        let (hq, hkv, d) = (
            self.layout.heads,
            self.layout.kv_heads,
            self.layout.head_dim,
        );
        let width = self.layout.qkv_width();
        let scale = T::of(1.0 / (d as f64).sqrt());
        let tt = cols * d;
        let mut parts = vec![T::ZERO; 3 * rows * hq * tt];
        parts
            .par_chunks_mut(3 * tt)
            .enumerate()
            .for_each(|(bh, out)| {
                let (b, h) = (bh / hq, bh % hq);
                let [q, k, v] = self.head_columns(h);
                let part = |col: usize| head_view(qkv, width, col, b, cols, d);
                let dout = head_view(dctx, hq * d, h * d, b, cols, d);
                let p = &probs[bh * cols * cols..(bh + 1) * cols * cols];
                let (dq, rest) = out.split_at_mut(tt);
                let (dk, dv) = rest.split_at_mut(tt);
                let mut dp = vec![T::ZERO; cols * cols];
                let at = |part| Site::Attention { l, bh, part };
                self.product(at(2), &mut dp, cols, dout, part(v).tr(), false);
                self.product(at(3), dv, d, View::new(p, cols, cols).tr(), dout, false);
                for (dp, p) in dp.chunks_mut(cols).zip(p.chunks(cols)) {
                    softmax_row_back(p, dp, scale);
                }
                self.product(at(4), dq, d, View::new(&dp, cols, cols), part(k), false);
                self.product(
                    at(5),
                    dk,
                    d,
                    View::new(&dp, cols, cols).tr(),
                    part(q),
                    false,
                );
            });
        // [B, Hq, 3, T, D] → [N, (Hq + 2·Hkv)·d], keys and values summed over their group.
        let rep = hq / hkv;
        let mut dqkv = vec![T::ZERO; rows * cols * width];
        dqkv.par_chunks_mut(width)
            .enumerate()
            .with_min_len(MIN_ROWS)
            .for_each(|(r, row)| {
                let (b, t) = (r / cols, r % cols);
                for h in 0..hq {
                    let cols_of = self.head_columns(h);
                    for (k, &col) in cols_of.iter().enumerate() {
                        let src = &parts[((b * hq + h) * 3 + k) * tt + t * d..][..d];
                        let dst = &mut row[col..col + d];
                        if k == 0 || rep == 1 {
                            dst.copy_from_slice(src);
                        } else {
                            dst.iter_mut().zip(src).for_each(|(x, &s)| *x += s);
                        }
                    }
                }
            });
        dqkv
    }
}

/// Head columns `col..col + d` of batch row `b` in a `[B·T, width]` matrix: a `[T, d]` view.
pub(super) fn head_view<T: Float>(
    m: &[T],
    width: usize,
    col: usize,
    b: usize,
    cols: usize,
    d: usize,
) -> View<'_, T> {
    View {
        data: &m[b * cols * width + col..],
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

/// Rows `at` of a matrix of `c`-wide rows, in that order.
pub(super) fn pick_rows<T: Copy>(m: &[T], at: &[usize], c: usize) -> Vec<T> {
    at.iter()
        .flat_map(|&r| m[r * c..(r + 1) * c].iter().copied())
        .collect()
}

/// Mutable access to a weight's and an optional bias's gradients (different entries).
fn pair<T>(
    g: &mut [Option<Vec<T>>],
    a: usize,
    b: Option<usize>,
) -> (Option<&mut [T]>, Option<&mut [T]>) {
    let Some(b) = b else {
        return (g[a].as_deref_mut(), None);
    };
    if a < b {
        let (lo, hi) = g.split_at_mut(b);
        (lo[a].as_deref_mut(), hi[0].as_deref_mut())
    } else {
        let (lo, hi) = g.split_at_mut(a);
        (hi[0].as_deref_mut(), lo[b].as_deref_mut())
    }
}
