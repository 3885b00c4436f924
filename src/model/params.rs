//! Each family's parameters by their Hugging Face names, and parameter groups: the named subsets
//! (`embedding`, `head`, `block:N`, `blocks:A-B`, `final_norm`, `all`) that training,
//! unlearning and influence analysis restrict themselves to. This module owns names, shapes,
//! their order (the order the hand-written pass reads them in) and group selection; it holds no
//! tensors.

use super::config::{Family, Gpt2Config};
use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// One tensor per trainable parameter, in state-dict order, paired with its name.
pub type ParamTensors = Vec<(String, candle_core::Tensor)>;

/// Name and shape of every parameter, in the order the hand-written pass reads them: the
/// embeddings, each block's parameters, the final norm, then an untied output layer.
pub fn param_shapes(cfg: &Gpt2Config) -> Vec<(String, Vec<usize>)> {
    match cfg.arch.family {
        Family::Gpt2 => gpt2_shapes(cfg),
        Family::Llama => llama_shapes(cfg),
        Family::NeoX => neox_shapes(cfg),
    }
}

/// GPT-NeoX's parameters: `[out, in]` linear weights, the fused `query_key_value` holding each
/// head's q, k and v side by side.
fn neox_shapes(cfg: &Gpt2Config) -> Vec<(String, Vec<usize>)> {
    let (c, i, v) = (cfg.n_embd, cfg.inner_dim(), cfg.vocab_size);
    let mut out = vec![("gpt_neox.embed_in.weight".to_string(), vec![v, c])];
    for l in 0..cfg.n_layer {
        let p = |s: &str| format!("gpt_neox.layers.{l}.{s}");
        out.extend([
            (p("input_layernorm.weight"), vec![c]),
            (p("input_layernorm.bias"), vec![c]),
            (p("attention.query_key_value.weight"), vec![3 * c, c]),
        ]);
        if cfg.arch.qkv_bias {
            out.push((p("attention.query_key_value.bias"), vec![3 * c]));
        }
        out.push((p("attention.dense.weight"), vec![c, c]));
        if cfg.arch.out_bias {
            out.push((p("attention.dense.bias"), vec![c]));
        }
        out.extend([
            (p("post_attention_layernorm.weight"), vec![c]),
            (p("post_attention_layernorm.bias"), vec![c]),
            (p("mlp.dense_h_to_4h.weight"), vec![i, c]),
            (p("mlp.dense_h_to_4h.bias"), vec![i]),
            (p("mlp.dense_4h_to_h.weight"), vec![c, i]),
            (p("mlp.dense_4h_to_h.bias"), vec![c]),
        ]);
    }
    out.push(("gpt_neox.final_layer_norm.weight".to_string(), vec![c]));
    out.push(("gpt_neox.final_layer_norm.bias".to_string(), vec![c]));
    if !cfg.tied() {
        out.push(("embed_out.weight".to_string(), vec![v, c]));
    }
    out
}

/// The parameters of one Llama-family block, in the pass's order (after `model.layers.N.`),
/// with their shapes: `[out, in]` linear weights, each followed by its bias where the family
/// has one.
pub fn llama_block(cfg: &Gpt2Config) -> Vec<(String, Vec<usize>)> {
    let a = &cfg.arch;
    let (c, i) = (cfg.n_embd, cfg.inner_dim());
    let (q, kv) = (cfg.n_head * a.head_dim, a.n_kv_head * a.head_dim);
    let norm = |n: &str| (format!("{n}.weight"), vec![c]);
    let mut out = vec![norm("input_layernorm")];
    let mut linear = |name: &str, rows: usize, cols: usize, bias: bool| {
        out.push((format!("{name}.weight"), vec![rows, cols]));
        if bias {
            out.push((format!("{name}.bias"), vec![rows]));
        }
    };
    linear("self_attn.q_proj", q, c, a.qkv_bias);
    linear("self_attn.k_proj", kv, c, a.qkv_bias);
    linear("self_attn.v_proj", kv, c, a.qkv_bias);
    linear("self_attn.o_proj", c, q, a.out_bias);
    out.push(norm("post_attention_layernorm"));
    let mut linear = |name: &str, rows: usize, cols: usize| {
        out.push((format!("{name}.weight"), vec![rows, cols]));
        if a.mlp_bias {
            out.push((format!("{name}.bias"), vec![rows]));
        }
    };
    linear("mlp.gate_proj", i, c);
    linear("mlp.up_proj", i, c);
    linear("mlp.down_proj", c, i);
    out
}

fn llama_shapes(cfg: &Gpt2Config) -> Vec<(String, Vec<usize>)> {
    let c = cfg.n_embd;
    let mut out = vec![(
        "model.embed_tokens.weight".to_string(),
        vec![cfg.vocab_size, c],
    )];
    let block = llama_block(cfg);
    for l in 0..cfg.n_layer {
        out.extend(
            block
                .iter()
                .map(|(n, s)| (format!("model.layers.{l}.{n}"), s.clone())),
        );
    }
    out.push(("model.norm.weight".to_string(), vec![c]));
    if !cfg.tied() {
        out.push(("lm_head.weight".to_string(), vec![cfg.vocab_size, c]));
    }
    out
}

/// GPT-2's parameters with the `transformer.` prefix, in Hugging Face's state-dict order.
/// Conv1D weights are `[in, out]`.
fn gpt2_shapes(cfg: &Gpt2Config) -> Vec<(String, Vec<usize>)> {
    let (c, i) = (cfg.n_embd, cfg.inner_dim());
    let mut out = vec![
        (
            "transformer.wte.weight".to_string(),
            vec![cfg.vocab_size, c],
        ),
        (
            "transformer.wpe.weight".to_string(),
            vec![cfg.n_positions, c],
        ),
    ];
    for l in 0..cfg.n_layer {
        let p = |s: &str| format!("transformer.h.{l}.{s}");
        out.extend([
            (p("ln_1.weight"), vec![c]),
            (p("ln_1.bias"), vec![c]),
            (p("attn.c_attn.weight"), vec![c, 3 * c]),
            (p("attn.c_attn.bias"), vec![3 * c]),
            (p("attn.c_proj.weight"), vec![c, c]),
            (p("attn.c_proj.bias"), vec![c]),
            (p("ln_2.weight"), vec![c]),
            (p("ln_2.bias"), vec![c]),
            (p("mlp.c_fc.weight"), vec![c, i]),
            (p("mlp.c_fc.bias"), vec![i]),
            (p("mlp.c_proj.weight"), vec![i, c]),
            (p("mlp.c_proj.bias"), vec![c]),
        ]);
    }
    out.push(("transformer.ln_f.weight".to_string(), vec![c]));
    out.push(("transformer.ln_f.bias".to_string(), vec![c]));
    out
}

/// One named part of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    /// The input embeddings: GPT-2's token and position embeddings (`wte`, `wpe`), the Llama
    /// family's `embed_tokens`, NeoX's `embed_in`; a tied output layer is the token embedding
    /// itself.
    Embedding,
    /// An untied output layer (`lm_head`, `embed_out`); nothing on a tied model.
    Head,
    /// Transformer blocks `A..=B`.
    Blocks(usize, usize),
    /// The final norm (`ln_f`; `model.norm`; `final_layer_norm`).
    FinalNorm,
    All,
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Group::Embedding => write!(f, "embedding"),
            Group::Head => write!(f, "head"),
            Group::Blocks(a, b) if a == b => write!(f, "block:{a}"),
            Group::Blocks(a, b) => write!(f, "blocks:{a}-{b}"),
            Group::FinalNorm => write!(f, "final_norm"),
            Group::All => write!(f, "all"),
        }
    }
}

/// A selection of parameters: a list of groups, as written on the command line
/// (`embedding,block:3`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamGroups(pub Vec<Group>);

impl ParamGroups {
    /// [`ParamGroups::from_str`] by name: `embedding`, `blocks:10-11,final_norm`, ...
    pub fn parse(spec: &str) -> Result<Self, GroupError> {
        spec.parse()
    }

    pub fn all() -> Self {
        ParamGroups(vec![Group::All])
    }

    /// The names of the selected parameters, in state-dict order. Errors when a block is out of
    /// range for this model.
    pub fn select(&self, cfg: &Gpt2Config) -> Result<BTreeSet<String>, String> {
        for g in &self.0 {
            if let Group::Blocks(_, b) = g {
                if *b >= cfg.n_layer {
                    return Err(format!(
                        "parameter group {g} names block {b}, but the model has blocks 0-{}",
                        cfg.n_layer - 1
                    ));
                }
            }
        }
        Ok(param_shapes(cfg)
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| self.0.iter().any(|g| group_contains(*g, n)))
            .collect())
    }
}

impl FromStr for ParamGroups {
    type Err = GroupError;

    /// Parses `embedding`, `block:N`, `blocks:A-B`, `final_norm`, `all`, comma-separated.
    /// Block numbers are checked against the model later, in [`ParamGroups::select`].
    fn from_str(spec: &str) -> Result<Self, GroupError> {
        let mut groups = Vec::new();
        for part in spec.split(',').map(str::trim) {
            let g = match part {
                "embedding" => Group::Embedding,
                "head" => Group::Head,
                "final_norm" => Group::FinalNorm,
                "all" => Group::All,
                _ => parse_blocks(part)?,
            };
            groups.push(g);
        }
        Ok(ParamGroups(groups))
    }
}

/// Why a parameter-group list is refused; each names the group as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error(
        "unknown parameter group {0:?}; expected embedding, head, block:N, blocks:A-B, final_norm or all"
    )]
    Unknown(String),
    #[error("parameter group {0:?}: range start is after its end")]
    Reversed(String),
}

impl fmt::Display for ParamGroups {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|g| g.to_string()).collect();
        write!(f, "{}", parts.join(","))
    }
}

fn parse_blocks(part: &str) -> Result<Group, GroupError> {
    let bad = || GroupError::Unknown(part.to_string());
    if let Some(n) = part.strip_prefix("block:") {
        let n: usize = n.parse().map_err(|_| bad())?;
        return Ok(Group::Blocks(n, n));
    }
    if let Some(r) = part.strip_prefix("blocks:") {
        let (a, b) = r.split_once('-').ok_or_else(bad)?;
        let (a, b): (usize, usize) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
        if a > b {
            return Err(GroupError::Reversed(part.to_string()));
        }
        return Ok(Group::Blocks(a, b));
    }
    Err(bad())
}

/// The block index of a block parameter's name (`transformer.h.N.…`, `model.layers.N.…`).
pub fn block_of(name: &str) -> Option<usize> {
    name.strip_prefix("transformer.h.")
        .or_else(|| name.strip_prefix("model.layers."))
        .or_else(|| name.strip_prefix("gpt_neox.layers."))?
        .split('.')
        .next()?
        .parse()
        .ok()
}

fn group_contains(g: Group, name: &str) -> bool {
    match g {
        Group::All => true,
        Group::Embedding => matches!(
            name,
            "transformer.wte.weight"
                | "transformer.wpe.weight"
                | "model.embed_tokens.weight"
                | "gpt_neox.embed_in.weight"
        ),
        Group::Head => name == "lm_head.weight" || name == "embed_out.weight",
        Group::FinalNorm => {
            name.starts_with("transformer.ln_f.")
                || name.starts_with("gpt_neox.final_layer_norm.")
                || name == "model.norm.weight"
        }
        Group::Blocks(a, b) => block_of(name).is_some_and(|n| a <= n && n <= b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_select_the_right_names() {
        let cfg = Gpt2Config::new(100, 16, 8, 4, 2);
        let sel = |s: &str| ParamGroups::parse(s).unwrap().select(&cfg).unwrap();
        assert_eq!(sel("embedding").len(), 2);
        assert_eq!(sel("block:1").len(), 12);
        assert_eq!(sel("blocks:2-3").len(), 24);
        assert_eq!(sel("final_norm").len(), 2);
        assert_eq!(sel("all").len(), 2 + 4 * 12 + 2);
        assert_eq!(sel("embedding,final_norm").len(), 4);
        assert_eq!(
            "embeding".parse::<ParamGroups>(),
            Err(GroupError::Unknown("embeding".into()))
        );
        assert_eq!(
            "blocks:3-1".parse::<ParamGroups>(),
            Err(GroupError::Reversed("blocks:3-1".into()))
        );
        assert!(ParamGroups::parse("block:4").unwrap().select(&cfg).is_err());
    }
}
