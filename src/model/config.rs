//! The GPT-2 hyper-parameters read from a Hugging Face `config.json`. This module owns parsing
//! and checking that file; it does not read weights (`load`) or build tensors (`gpt2`).

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
    #[serde(skip)]
    pub raw: serde_json::Map<String, serde_json::Value>,
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
}

/// The `model_type` values lethe reads.
pub const SUPPORTED_MODEL_TYPES: [&str; 1] = ["gpt2"];

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
        let mut cfg: Gpt2Config = serde_json::from_value(serde_json::Value::Object(raw.clone()))
            .map_err(|e| ConfigError::Field(e.to_string()))?;
        cfg.raw = raw;
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), ConfigError> {
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("n_positions", self.n_positions),
            ("n_embd", self.n_embd),
            ("n_layer", self.n_layer),
            ("n_head", self.n_head),
        ] {
            if v == 0 {
                return Err(ConfigError::NotPositive(name));
            }
        }
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

    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
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
            raw: serde_json::Map::new(),
        };
        cfg.raw = cfg.to_raw();
        cfg
    }

    /// The JSON object to save: the original file's fields, with lethe's values written over
    /// the fields it knows.
    pub fn to_raw(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut out = self.raw.clone();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The GPT-2 oracle's file, as transformers 5.24 wrote it (tests/oracles/tiny-gpt2).
    const GPT2: &str = include_str!("../../tests/oracles/tiny-gpt2/config.json");

    #[test]
    fn another_familys_config_is_refused_by_its_type_not_by_a_missing_field() {
        // The head of a Llama config as transformers writes it: none of GPT-2's fields.
        let llama = r#"{"architectures": ["LlamaForCausalLM"], "hidden_size": 64,
            "model_type": "llama", "num_hidden_layers": 2, "vocab_size": 320}"#;
        let err = Gpt2Config::from_json(llama).unwrap_err();
        assert_eq!(err, ConfigError::ModelType("llama".into()));
        assert_eq!(
            err.to_string(),
            r#"model_type is "llama"; lethe reads these model types: gpt2"#
        );
        let odd = Gpt2Config::from_json(&GPT2.replace(r#""gpt2""#, "7")).unwrap_err();
        assert_eq!(odd, ConfigError::ModelType("7".into()));
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
