//! A decoder's hyper-parameters read from a Hugging Face `config.json`: GPT-2 (`gpt2`), and the
//! Llama family (`llama`, `mistral`, `qwen2`: RMSNorm, rotary positions, grouped-query
//! attention, SwiGLU), each file read by its own field names into one description whose shared
//! fields carry GPT-2's names (`n_embd`, `n_layer`, `n_head`, `n_positions`) and whose
//! [`Arch`] says which parts the decoder is assembled from. This module owns parsing and
//! checking that file; it does not read weights (`load`) or compute anything (`pass`).

use serde::{Deserialize, Serialize};

/// The fields of `config.json` that decide GPT-2's shapes and numerics. Other fields of the
/// Hugging Face file (dropout rates, summary heads, ...) do not change inference or gradients
/// at evaluation time and are kept verbatim in [`Gpt2Config::raw`] so a saved model carries them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gpt2Config {
    pub vocab_size: usize,
    pub n_positions: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    #[serde(default)]
    pub n_inner: Option<usize>,
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    #[serde(default = "default_activation")]
    pub activation_function: String,
    #[serde(default)]
    pub eos_token_id: Option<u32>,
    #[serde(default = "default_true")]
    pub tie_word_embeddings: bool,
    #[serde(default = "default_true")]
    pub scale_attn_weights: bool,
    #[serde(default)]
    pub scale_attn_by_inverse_layer_idx: bool,
    #[serde(default)]
    pub reorder_and_upcast_attn: bool,
    /// Storage dtype named by the file (`dtype` in transformers 5, `torch_dtype` before).
    #[serde(default, alias = "torch_dtype")]
    pub dtype: Option<String>,
    /// The parts the decoder is assembled from (GPT-2's unless the file names another family).
    #[serde(skip)]
    pub arch: Arch,
    #[serde(skip)]
    pub raw: serde_json::Map<String, serde_json::Value>,
}

/// The decoder families lethe assembles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Family {
    /// Layer norms with biases, learned positions, one fused `[C, 3C]` Conv1D for q, k, v,
    /// `gelu_new`, output layer tied to the token embedding.
    #[default]
    Gpt2,
    /// `llama`, `mistral`, `qwen2`: RMSNorm, rotary positions, grouped-query attention with
    /// separate `[out, in]` projections (optional biases), SwiGLU, tied or untied head.
    Llama,
    /// `gpt_neox` (Pythia): layer norms with biases, rotary positions on part of each head,
    /// one fused projection with each head's q, k, v side by side, exact (erf) GELU, attention
    /// and MLP in parallel off the same input, untied head.
    NeoX,
}

/// Rotary position embedding: `θ_i = position · inv_freq_i` for each of the `head_dim / 2`
/// frequency pairs, as transformers' `rope_type` `default`, `linear` and `llama3` define them.
#[derive(Debug, Clone, PartialEq)]
pub struct Rope {
    pub theta: f64,
    pub scaling: RopeScaling,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    None,
    /// Positions divided by `factor` (every frequency divided by it).
    Linear {
        factor: f64,
    },
    /// Llama 3.1's frequency-dependent scaling.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
}

/// What differs between families, beyond the shared sizes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Arch {
    pub family: Family,
    /// Key/value heads (grouped-query attention); `n_head` for GPT-2.
    pub n_kv_head: usize,
    /// Width of one attention head; `n_embd / n_head` for GPT-2.
    pub head_dim: usize,
    pub rope: Option<Rope>,
    /// Dimensions of each head the rotary embedding turns (the first ones; `head_dim` unless
    /// the family rotates part of the head).
    pub rotary_dims: usize,
    /// Attention and MLP both read the block's input and add to it (GPT-NeoX), rather than the
    /// MLP reading the attention's output.
    pub parallel_residual: bool,
    /// Biases on the q, k, v projections; on the attention output; on the MLP's projections.
    pub qkv_bias: bool,
    pub out_bias: bool,
    pub mlp_bias: bool,
}

/// Why a `config.json` is refused: each names the offending field or value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("not UTF-8")]
    NotUtf8,
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error("key {0:?} appears more than once")]
    DuplicateKey(String),
    #[error("not a JSON object")]
    NotAnObject,
    /// A field serde refused (missing, or of the wrong type): serde's sentence.
    #[error("{0}")]
    Field(String),
    #[error("model_type is {0:?}; lethe reads these model types: {supported}", supported = SUPPORTED_MODEL_TYPES.join(", "))]
    ModelType(String),
    #[error("{0} must be positive")]
    NotPositive(&'static str),
    #[error("n_embd ({n_embd}) is not a multiple of n_head ({n_head})")]
    HeadSplit { n_embd: usize, n_head: usize },
    #[error("activation_function is {0:?}; lethe implements GPT-2's \"gelu_new\" only")]
    Activation(String),
    #[error("tie_word_embeddings is false; lethe needs lm_head tied to wte")]
    Untied,
    #[error("only GPT-2's standard 1/sqrt(head_dim) attention scaling is supported")]
    AttentionScaling,
    #[error("hidden_act is {0:?}; lethe implements the Llama family's \"silu\" only")]
    LlamaActivation(String),
    #[error("hidden_act is {0:?}; lethe implements GPT-NeoX's \"gelu\" (exact) only")]
    NeoXActivation(String),
    #[error("num_attention_heads ({heads}) is not a multiple of num_key_value_heads ({kv})")]
    KvHeads { heads: usize, kv: usize },
    #[error("head_dim ({0}) must be even for rotary position embeddings")]
    OddHeadDim(usize),
    #[error("{field}: {reason}")]
    Rope { field: &'static str, reason: String },
}

/// The `model_type` values lethe reads.
pub const SUPPORTED_MODEL_TYPES: [&str; 5] = ["gpt2", "llama", "mistral", "qwen2", "gpt_neox"];

/// The fields of a Llama-family `config.json` (`llama`, `mistral`, `qwen2`) that decide its
/// shapes and numerics; the rest is kept verbatim in [`Gpt2Config::raw`].
#[derive(Deserialize)]
struct LlamaFile {
    #[serde(flatten)]
    sizes: HfSizes,
    #[serde(default)]
    num_key_value_heads: Option<usize>,
    #[serde(default)]
    head_dim: Option<usize>,
    #[serde(default = "default_rms_eps")]
    rms_norm_eps: f64,
    #[serde(default = "default_silu")]
    hidden_act: String,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
    #[serde(default)]
    rope_theta: Option<f64>,
    #[serde(default)]
    rope_scaling: Option<serde_json::Value>,
    #[serde(default)]
    rope_parameters: Option<serde_json::Value>,
    #[serde(default)]
    sliding_window: Option<usize>,
    #[serde(default)]
    use_sliding_window: Option<bool>,
}

/// The sizes every family other than GPT-2 names alike in its `config.json`.
#[derive(Deserialize)]
struct HfSizes {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    max_position_embeddings: usize,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default, alias = "torch_dtype")]
    dtype: Option<String>,
}

impl HfSizes {
    /// Refuses a size of zero, naming the field.
    fn positive(&self) -> Result<(), ConfigError> {
        all_positive([
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("max_position_embeddings", self.max_position_embeddings),
        ])
    }

    /// The config of these sizes with the family's context, norm epsilon and activation, and
    /// parts.
    fn config(
        self,
        n_positions: usize,
        (eps, activation): (f64, String),
        arch: Arch,
        raw: serde_json::Map<String, serde_json::Value>,
    ) -> Gpt2Config {
        Gpt2Config {
            vocab_size: self.vocab_size,
            n_positions,
            n_embd: self.hidden_size,
            n_layer: self.num_hidden_layers,
            n_head: self.num_attention_heads,
            n_inner: Some(self.intermediate_size),
            layer_norm_epsilon: eps,
            activation_function: activation,
            eos_token_id: raw.get("eos_token_id").and_then(first_id),
            tie_word_embeddings: self.tie_word_embeddings,
            scale_attn_weights: true,
            scale_attn_by_inverse_layer_idx: false,
            reorder_and_upcast_attn: false,
            dtype: self.dtype,
            arch,
            raw,
        }
    }
}

/// The fields of a `gpt_neox` `config.json` that decide its shapes and numerics.
#[derive(Deserialize)]
struct NeoXFile {
    #[serde(flatten)]
    sizes: HfSizes,
    #[serde(default = "default_eps")]
    layer_norm_eps: f64,
    #[serde(default = "default_gelu")]
    hidden_act: String,
    #[serde(default = "default_true")]
    use_parallel_residual: bool,
    #[serde(default = "default_true")]
    attention_bias: bool,
    #[serde(default)]
    rotary_pct: Option<f64>,
    #[serde(default)]
    rotary_emb_base: Option<f64>,
    #[serde(default)]
    rope_theta: Option<f64>,
    #[serde(default)]
    rope_scaling: Option<serde_json::Value>,
    #[serde(default)]
    rope_parameters: Option<serde_json::Value>,
}

fn default_gelu() -> String {
    "gelu".to_string()
}

fn default_rms_eps() -> f64 {
    1e-6
}
fn default_silu() -> String {
    "silu".to_string()
}

fn default_eps() -> f64 {
    1e-5
}
fn default_activation() -> String {
    "gelu_new".to_string()
}
fn default_true() -> bool {
    true
}

impl Gpt2Config {
    /// Parses `config.json` text and checks that lethe computes exactly what transformers does
    /// for it. The error names the offending field.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let json = crate::untrusted::StrictJson::parse(text)
            .map_err(|e| ConfigError::Json(e.to_string()))?;
        if let Some(key) = json.duplicate_key {
            return Err(ConfigError::DuplicateKey(key));
        }
        let serde_json::Value::Object(raw) = json.value else {
            return Err(ConfigError::NotAnObject);
        };
        // Before the fields: another family's file lacks GPT-2's fields, and "missing field
        // `n_positions`" would hide the reason.
        if let Some(t) = raw.get("model_type") {
            let t = t.as_str().map_or_else(|| t.to_string(), str::to_string);
            if !SUPPORTED_MODEL_TYPES.contains(&t.as_str()) {
                return Err(ConfigError::ModelType(t));
            }
        }
        let model_type = raw.get("model_type").and_then(|t| t.as_str());
        if matches!(model_type, Some("llama" | "mistral" | "qwen2")) {
            return Self::llama_family(raw);
        }
        if model_type == Some("gpt_neox") {
            return Self::neox(raw);
        }
        let mut cfg: Gpt2Config = serde_json::from_value(serde_json::Value::Object(raw.clone()))
            .map_err(|e| ConfigError::Field(e.to_string()))?;
        cfg.raw = raw;
        cfg.check()?;
        cfg.arch = cfg.gpt2_arch();
        Ok(cfg)
    }

    /// GPT-2's parts for its sizes.
    fn gpt2_arch(&self) -> Arch {
        Arch {
            family: Family::Gpt2,
            n_kv_head: self.n_head,
            head_dim: self.n_embd / self.n_head.max(1),
            rope: None,
            rotary_dims: 0,
            parallel_residual: false,
            qkv_bias: true,
            out_bias: true,
            mlp_bias: true,
        }
    }

    /// A `llama`, `mistral` or `qwen2` file (`model_type` already read).
    fn llama_family(raw: serde_json::Map<String, serde_json::Value>) -> Result<Self, ConfigError> {
        let model_type = raw
            .get("model_type")
            .and_then(|t| t.as_str())
            .unwrap_or_default()
            .to_string();
        let f: LlamaFile = serde_json::from_value(serde_json::Value::Object(raw.clone()))
            .map_err(|e| ConfigError::Field(e.to_string()))?;
        f.sizes.positive()?;
        if f.hidden_act != "silu" {
            return Err(ConfigError::LlamaActivation(f.hidden_act));
        }
        if f.rms_norm_eps.is_nan() || f.rms_norm_eps <= 0.0 {
            return Err(ConfigError::NotPositive("rms_norm_eps"));
        }
        let kv = f.num_key_value_heads.unwrap_or(f.sizes.num_attention_heads);
        if kv == 0 || f.sizes.num_attention_heads % kv != 0 {
            return Err(ConfigError::KvHeads {
                heads: f.sizes.num_attention_heads,
                kv,
            });
        }
        let head_dim = match f.head_dim {
            Some(d) => d,
            None if f.sizes.hidden_size % f.sizes.num_attention_heads == 0 => {
                f.sizes.hidden_size / f.sizes.num_attention_heads
            }
            None => {
                return Err(ConfigError::HeadSplit {
                    n_embd: f.sizes.hidden_size,
                    n_head: f.sizes.num_attention_heads,
                })
            }
        };
        if head_dim == 0 || head_dim % 2 != 0 {
            return Err(ConfigError::OddHeadDim(head_dim));
        }
        let rope = rope_of(
            f.rope_parameters.as_ref(),
            f.rope_scaling.as_ref(),
            f.rope_theta,
        )?;
        // A sliding window only changes attention beyond it: lethe's context stops there, so
        // every sequence it accepts is computed exactly.
        let window = match (model_type.as_str(), f.use_sliding_window) {
            ("qwen2", Some(false) | None) => None,
            _ => f.sliding_window,
        };
        let n_positions = window.map_or(f.sizes.max_position_embeddings, |w| {
            w.min(f.sizes.max_position_embeddings)
        });
        let qwen2 = model_type == "qwen2";
        let arch = Arch {
            family: Family::Llama,
            n_kv_head: kv,
            head_dim,
            rope: Some(rope),
            rotary_dims: head_dim,
            parallel_residual: false,
            qkv_bias: qwen2 || f.attention_bias,
            out_bias: !qwen2 && f.attention_bias,
            mlp_bias: !qwen2 && f.mlp_bias,
        };
        let act = (f.rms_norm_eps, f.hidden_act);
        Ok(f.sizes.config(n_positions, act, arch, raw))
    }

    /// A `gpt_neox` file.
    fn neox(raw: serde_json::Map<String, serde_json::Value>) -> Result<Self, ConfigError> {
        let f: NeoXFile = serde_json::from_value(serde_json::Value::Object(raw.clone()))
            .map_err(|e| ConfigError::Field(e.to_string()))?;
        f.sizes.positive()?;
        if f.hidden_act != "gelu" {
            return Err(ConfigError::NeoXActivation(f.hidden_act));
        }
        if f.layer_norm_eps.is_nan() || f.layer_norm_eps <= 0.0 {
            return Err(ConfigError::NotPositive("layer_norm_eps"));
        }
        if f.sizes.hidden_size % f.sizes.num_attention_heads != 0 {
            return Err(ConfigError::HeadSplit {
                n_embd: f.sizes.hidden_size,
                n_head: f.sizes.num_attention_heads,
            });
        }
        let head_dim = f.sizes.hidden_size / f.sizes.num_attention_heads;
        let theta = f.rope_theta.or(f.rotary_emb_base);
        let rope = rope_of(f.rope_parameters.as_ref(), f.rope_scaling.as_ref(), theta)?;
        let fraction = f
            .rope_parameters
            .as_ref()
            .and_then(|p| p.get("partial_rotary_factor"))
            .and_then(|v| v.as_f64())
            .or(f.rotary_pct)
            .unwrap_or(0.25);
        if !(fraction > 0.0 && fraction <= 1.0) {
            return Err(ConfigError::Rope {
                field: "partial_rotary_factor",
                reason: format!("{fraction} is not in (0, 1]"),
            });
        }
        // transformers: `int(head_size * partial_rotary_factor)`.
        let rotary_dims = (head_dim as f64 * fraction) as usize;
        if rotary_dims == 0 || rotary_dims % 2 != 0 {
            return Err(ConfigError::OddHeadDim(rotary_dims));
        }
        let arch = Arch {
            family: Family::NeoX,
            n_kv_head: f.sizes.num_attention_heads,
            head_dim,
            rope: Some(rope),
            rotary_dims,
            parallel_residual: f.use_parallel_residual,
            qkv_bias: f.attention_bias,
            out_bias: f.attention_bias,
            mlp_bias: true,
        };
        let (n_positions, act) = (
            f.sizes.max_position_embeddings,
            (f.layer_norm_eps, f.hidden_act),
        );
        Ok(f.sizes.config(n_positions, act, arch, raw))
    }

    fn check(&self) -> Result<(), ConfigError> {
        all_positive([
            ("vocab_size", self.vocab_size),
            ("n_positions", self.n_positions),
            ("n_embd", self.n_embd),
            ("n_layer", self.n_layer),
            ("n_head", self.n_head),
        ])?;
        if self.n_embd % self.n_head != 0 {
            return Err(ConfigError::HeadSplit {
                n_embd: self.n_embd,
                n_head: self.n_head,
            });
        }
        if self.activation_function != "gelu_new" {
            return Err(ConfigError::Activation(self.activation_function.clone()));
        }
        if !self.tie_word_embeddings {
            return Err(ConfigError::Untied);
        }
        if !self.scale_attn_weights || self.scale_attn_by_inverse_layer_idx {
            return Err(ConfigError::AttentionScaling);
        }
        if self.layer_norm_epsilon.is_nan() || self.layer_norm_epsilon <= 0.0 {
            return Err(ConfigError::NotPositive("layer_norm_epsilon"));
        }
        Ok(())
    }

    /// The file's `model_type` (`gpt2` when it names none).
    pub fn model_type(&self) -> &str {
        self.raw
            .get("model_type")
            .and_then(|t| t.as_str())
            .unwrap_or("gpt2")
    }

    pub fn head_dim(&self) -> usize {
        self.arch.head_dim
    }

    /// Whether the output layer is the token embedding (GPT-2 always; the Llama family when
    /// `tie_word_embeddings` says so).
    pub fn tied(&self) -> bool {
        self.arch.family == Family::Gpt2 || self.tie_word_embeddings
    }

    pub fn inner_dim(&self) -> usize {
        self.n_inner.unwrap_or(4 * self.n_embd)
    }

    /// A config for a fresh GPT-2 of the given shape, with the fields transformers writes.
    pub fn new(vocab: usize, ctx: usize, embd: usize, layers: usize, heads: usize) -> Self {
        let mut cfg = Gpt2Config {
            vocab_size: vocab,
            n_positions: ctx,
            n_embd: embd,
            n_layer: layers,
            n_head: heads,
            n_inner: None,
            layer_norm_epsilon: 1e-5,
            activation_function: default_activation(),
            eos_token_id: None,
            tie_word_embeddings: true,
            scale_attn_weights: true,
            scale_attn_by_inverse_layer_idx: false,
            reorder_and_upcast_attn: false,
            dtype: Some("float32".into()),
            arch: Arch::default(),
            raw: serde_json::Map::new(),
        };
        cfg.arch = cfg.gpt2_arch();
        cfg.raw = cfg.to_raw();
        cfg
    }

    /// A config for a fresh Llama-family model (`model_type` `llama`, untied head, rotary
    /// base 10 000, no biases) of the given shape, with the fields transformers writes.
    #[allow(clippy::too_many_arguments)] // the shape is these numbers
    pub fn new_llama(
        vocab: usize,
        ctx: usize,
        embd: usize,
        layers: usize,
        heads: usize,
        kv_heads: usize,
        inner: usize,
    ) -> Result<Self, ConfigError> {
        let raw = serde_json::json!({
            "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "vocab_size": vocab, "max_position_embeddings": ctx, "hidden_size": embd,
            "num_hidden_layers": layers, "num_attention_heads": heads,
            "num_key_value_heads": kv_heads, "intermediate_size": inner,
            "hidden_act": "silu", "rms_norm_eps": 1e-5, "tie_word_embeddings": false,
            "attention_bias": false, "mlp_bias": false, "dtype": "float32",
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
        });
        Self::llama_family(
            serde_json::from_value(raw).map_err(|e| ConfigError::Json(e.to_string()))?,
        )
    }

    /// This config with `fields` written over its file's, read again as a whole (so every
    /// check applies): `cfg.with_fields(json!({"tie_word_embeddings": true}))`.
    pub fn with_fields(&self, fields: serde_json::Value) -> Result<Self, ConfigError> {
        let mut raw = self.to_raw();
        if let serde_json::Value::Object(fields) = fields {
            raw.extend(fields);
        }
        let text = serde_json::to_string(&raw).map_err(|e| ConfigError::Json(e.to_string()))?;
        Self::from_json(&text)
    }

    /// The JSON object to save: the original file's fields, with lethe's values written over
    /// the fields it knows.
    pub fn to_raw(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut out = self.raw.clone();
        if self.arch.family != Family::Gpt2 {
            // Read by the family's own names; lethe changes none of them but the storage dtype,
            // written under the name the file used (`dtype`, or the older `torch_dtype`).
            if let Some(d) = &self.dtype {
                let key = match out.contains_key("torch_dtype") && !out.contains_key("dtype") {
                    true => "torch_dtype",
                    false => "dtype",
                };
                out.insert(key.into(), d.clone().into());
            }
            return out;
        }
        if let Ok(serde_json::Value::Object(known)) = serde_json::to_value(self) {
            for (k, v) in known {
                if !v.is_null() || !out.contains_key(&k) {
                    out.insert(k, v);
                }
            }
        }
        out.entry("model_type").or_insert("gpt2".into());
        out.entry("architectures")
            .or_insert(serde_json::json!(["GPT2LMHeadModel"]));
        out
    }
}

/// Refuses the first size of zero, naming its field.
fn all_positive<const N: usize>(sizes: [(&'static str, usize); N]) -> Result<(), ConfigError> {
    match sizes.iter().find(|(_, v)| *v == 0) {
        Some((name, _)) => Err(ConfigError::NotPositive(name)),
        None => Ok(()),
    }
}

/// The first id of an `eos_token_id` that may be one id or a list of them.
fn first_id(v: &serde_json::Value) -> Option<u32> {
    match v {
        serde_json::Value::Array(ids) => ids.first().and_then(first_id),
        v => v.as_u64().and_then(|id| u32::try_from(id).ok()),
    }
}

/// The rotary embedding a Llama-family file describes: transformers 5's `rope_parameters`, or
/// the older `rope_theta` with `rope_scaling`. Types other than `default`, `linear` and
/// `llama3` are refused by name.
fn rope_of(
    params: Option<&serde_json::Value>,
    scaling: Option<&serde_json::Value>,
    theta: Option<f64>,
) -> Result<Rope, ConfigError> {
    let (field, p) = match (params, scaling) {
        (Some(p), _) if !p.is_null() => ("rope_parameters", Some(p)),
        (_, Some(s)) if !s.is_null() => ("rope_scaling", Some(s)),
        _ => ("rope_theta", None),
    };
    let bad = |reason: String| ConfigError::Rope { field, reason };
    let num = |key: &str| -> Result<f64, ConfigError> {
        let v = p
            .and_then(|p| p.get(key))
            .ok_or_else(|| bad(format!("no {key:?}")))?;
        let x = v
            .as_f64()
            .ok_or_else(|| bad(format!("{key:?} is not a number")))?;
        if x.is_finite() && x > 0.0 {
            Ok(x)
        } else {
            Err(bad(format!("{key:?} must be positive")))
        }
    };
    let theta = match p.and_then(|p| p.get("rope_theta")) {
        Some(_) => num("rope_theta")?,
        None => theta.unwrap_or(10_000.0),
    };
    if !(theta.is_finite() && theta > 1.0) {
        return Err(bad(format!("rope_theta {theta} must be above 1")));
    }
    let kind = p
        .and_then(|p| p.get("rope_type").or_else(|| p.get("type")))
        .map(|t| t.as_str().map_or_else(|| t.to_string(), str::to_string))
        .unwrap_or_else(|| "default".into());
    let scaling = match kind.as_str() {
        "default" => RopeScaling::None,
        "linear" => RopeScaling::Linear {
            factor: num("factor")?,
        },
        "llama3" => {
            let (low, high) = (num("low_freq_factor")?, num("high_freq_factor")?);
            if high <= low {
                return Err(bad("high_freq_factor must exceed low_freq_factor".into()));
            }
            RopeScaling::Llama3 {
                factor: num("factor")?,
                low_freq_factor: low,
                high_freq_factor: high,
                original_max_position_embeddings: num("original_max_position_embeddings")?,
            }
        }
        other => {
            return Err(bad(format!(
                "rope type {other:?}; lethe computes \"default\", \"linear\" and \"llama3\""
            )))
        }
    };
    Ok(Rope { theta, scaling })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The GPT-2 oracle's file, as transformers 5.24 wrote it (tests/oracles/tiny-gpt2).
    const GPT2: &str = include_str!("../../tests/oracles/tiny-gpt2/config.json");

    #[test]
    fn another_familys_config_is_refused_by_its_type_not_by_a_missing_field() {
        // The head of a Phi config as transformers writes it: none of GPT-2's fields.
        let phi = r#"{"architectures": ["PhiForCausalLM"], "hidden_size": 64,
            "model_type": "phi", "num_hidden_layers": 2, "vocab_size": 320}"#;
        let err = Gpt2Config::from_json(phi).unwrap_err();
        assert_eq!(err, ConfigError::ModelType("phi".into()));
        assert_eq!(
            err.to_string(),
            r#"model_type is "phi"; lethe reads these model types: gpt2, llama, mistral, qwen2, gpt_neox"#
        );
        let odd = Gpt2Config::from_json(&GPT2.replace(r#""gpt2""#, "7")).unwrap_err();
        assert_eq!(odd, ConfigError::ModelType("7".into()));
    }

    /// The Llama-family oracles' files (tests/oracles/tiny-llama, tiny-qwen2), as transformers
    /// 5.24 wrote them.
    const LLAMA: &str = include_str!("../../tests/oracles/tiny-llama/config.json");
    const QWEN2: &str = include_str!("../../tests/oracles/tiny-qwen2/config.json");
    const NEOX: &str = include_str!("../../tests/oracles/tiny-gpt-neox/config.json");

    #[test]
    fn llama_family_and_neox_configs_read_by_their_own_names() {
        let cfg = Gpt2Config::from_json(LLAMA).unwrap();
        assert_eq!(cfg.arch.family, Family::Llama);
        assert_eq!((cfg.n_embd, cfg.n_layer, cfg.n_head), (64, 2, 4));
        assert_eq!(
            (cfg.arch.n_kv_head, cfg.arch.head_dim, cfg.inner_dim()),
            (2, 16, 176)
        );
        assert_eq!((cfg.n_positions, cfg.vocab_size), (128, 320));
        assert!(!cfg.tied() && !cfg.arch.qkv_bias);
        let rope = cfg.arch.rope.clone().unwrap();
        assert_eq!(rope.theta, 500000.0);
        assert!(matches!(rope.scaling, RopeScaling::Llama3 { factor, .. } if factor == 8.0));
        // Saved back as it came: lethe writes none of GPT-2's names into it.
        assert_eq!(cfg.to_raw(), cfg.raw);

        let q = Gpt2Config::from_json(QWEN2).unwrap();
        assert!(q.tied() && q.arch.qkv_bias && !q.arch.out_bias);
        assert_eq!((q.arch.n_kv_head, q.arch.head_dim), (1, 16));
        assert_eq!(q.arch.rope.unwrap().scaling, RopeScaling::None);

        let yarn = LLAMA.replace(r#""rope_type": "llama3""#, r#""rope_type": "yarn""#);
        let err = Gpt2Config::from_json(&yarn).unwrap_err().to_string();
        assert!(
            err.starts_with("rope_parameters: rope type \"yarn\""),
            "{err}"
        );
        let gelu = LLAMA.replace(r#""silu""#, r#""gelu""#);
        assert_eq!(
            Gpt2Config::from_json(&gelu).unwrap_err(),
            ConfigError::LlamaActivation("gelu".into())
        );
        let neox = Gpt2Config::from_json(NEOX).unwrap();
        assert_eq!(neox.arch.family, Family::NeoX);
        assert_eq!((neox.arch.head_dim, neox.arch.rotary_dims), (16, 4));
        assert!(neox.arch.parallel_residual && !neox.tied());
        let kv = LLAMA.replace(r#""num_key_value_heads": 2"#, r#""num_key_value_heads": 3"#);
        assert_eq!(
            Gpt2Config::from_json(&kv).unwrap_err(),
            ConfigError::KvHeads { heads: 4, kv: 3 }
        );
    }

    #[test]
    fn the_oracles_gpt2_config_reads_with_and_without_its_type() {
        let cfg = Gpt2Config::from_json(GPT2).unwrap();
        assert_eq!((cfg.n_layer, cfg.n_embd, cfg.vocab_size), (2, 64, 512));
        let untyped = GPT2.replace(r#""model_type": "gpt2","#, "");
        assert!(!untyped.contains("model_type"));
        assert_eq!(Gpt2Config::from_json(&untyped).unwrap().n_head, 4);
        let untied = GPT2.replace(
            r#""tie_word_embeddings": true"#,
            r#""tie_word_embeddings": false"#,
        );
        assert_eq!(
            Gpt2Config::from_json(&untied).unwrap_err(),
            ConfigError::Untied
        );
    }
}
