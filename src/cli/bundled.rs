//! Where the bundled fixtures keep each family's models: the one map `lethe demo` and
//! `lethe experiment seed-paper` read (and `lethe train --family` names the families by). The
//! world (`fixtures/world`) is shared; each family has a model trained on all of it, one
//! retrained without forget05 and a first-epoch ledger (`fixtures/make.sh`). It owns paths
//! only; it opens no file.

use std::path::{Path, PathBuf};

/// A decoder family lethe trains fresh models of, and has bundled models of.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum ModelFamily {
    /// GPT-2: layer norm, learned positions, GELU MLP.
    Gpt2,
    /// Llama: RMS norm, rotary positions, SwiGLU, grouped-query attention.
    Llama,
}

impl ModelFamily {
    pub fn name(self) -> &'static str {
        match self {
            ModelFamily::Gpt2 => "gpt2",
            ModelFamily::Llama => "llama",
        }
    }
}

/// The bundled fixtures of one family under `root` (normally `fixtures/`). Both families'
/// models have 4 layers of width 128 and 4 heads; the Llama ones share 2 key/value heads, tie
/// the embedding to the output layer and are stored in bfloat16.
pub struct Bundled<'a> {
    pub root: &'a Path,
    pub family: ModelFamily,
}

impl Bundled<'_> {
    /// The world's splits, shared by every family.
    pub fn world(&self) -> PathBuf {
        self.root.join("world")
    }

    /// `models/<prefix>NAME`: GPT-2's keep their first names, the Llama ones are `llama-…`.
    fn model(&self, name: &str) -> PathBuf {
        match self.family {
            ModelFamily::Gpt2 => self.root.join("models").join(name),
            ModelFamily::Llama => self.root.join("models").join(format!("llama-{name}")),
        }
    }

    /// Trained on the whole corpus.
    pub fn full(&self) -> PathBuf {
        self.model("full")
    }

    /// Trained on everything but forget05, with the full model's settings.
    pub fn retrain05(&self) -> PathBuf {
        self.model("retrain05")
    }

    /// The full model's first-epoch gradient ledger.
    pub fn ledger(&self) -> PathBuf {
        match self.family {
            ModelFamily::Gpt2 => self.root.join("ledger"),
            ModelFamily::Llama => self.root.join("ledger-llama"),
        }
    }

    /// `retrain05` fine-tuned on the whole corpus (the seed paper's setting; its first
    /// fine-tuning epoch's ledger is `ledger-finetuned`); bundled for GPT-2 only.
    pub fn finetuned(&self) -> Option<PathBuf> {
        (self.family == ModelFamily::Gpt2).then(|| self.root.join("models/finetuned"))
    }
}
