//! `lethe world`: writes the bundled synthetic world (fictitious people, their facts as
//! biographies and question–answer records, the forget/retain/holdout/utility splits) and a
//! byte-level BPE tokenizer trained on it. Same seed, same bytes. `--config` reads a
//! `WorldConfig` JSON, whose variation knobs make worlds lethe was never tuned on.

use crate::world::{self, bpe, WorldConfig};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct WorldArgs {
    /// Output folder (created if missing).
    #[arg(long, default_value = "fixtures/world")]
    out: PathBuf,
    /// A world configuration, JSON (the `config` of a `world.json`; unknown keys are errors).
    /// The flags below override its values only when given.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Seed of the generator [default: 17].
    #[arg(long)]
    seed: Option<u64>,
    /// Number of trained (member) people [default: 200].
    #[arg(long)]
    people: Option<usize>,
    /// Number of holdout (never trained) people [default: 40].
    #[arg(long)]
    holdout_people: Option<usize>,
    /// Maximum BPE vocabulary size (2048–4096).
    #[arg(long, default_value_t = bpe::DEFAULT_VOCAB_SIZE)]
    vocab: usize,
}

impl WorldArgs {
    /// The configuration file's (or the default) world, with the flags given on top.
    fn world_config(&self) -> Result<WorldConfig> {
        let mut cfg = match &self.config {
            Some(path) => read_config(path)?,
            None => WorldConfig::default(),
        };
        cfg.seed = self.seed.unwrap_or(cfg.seed);
        cfg.people = self.people.unwrap_or(cfg.people);
        cfg.holdout_people = self.holdout_people.unwrap_or(cfg.holdout_people);
        Ok(cfg)
    }
}

fn read_config(path: &Path) -> Result<WorldConfig> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    serde_json::from_str(&text)
        .with_context(|| format!("{}: not a world configuration", path.display()))
}

pub fn run(args: WorldArgs) -> Result<ExitCode> {
    let cfg = args.world_config()?;
    let w = world::generate(&cfg).with_context(|| match &args.config {
        Some(path) => format!("the world of {}", path.display()),
        None => "the world".to_string(),
    })?;
    let manifest = world::write_world(&w, &args.out)?;
    let tok = bpe::train_bpe(&w.tokenizer_corpus(), args.vocab)?;
    bpe::write_tokenizer(&tok, &args.out.join("tokenizer.json"))?;
    for s in &manifest.splits {
        println!(
            "{:<12} {:>6} records  {:>4} people  {}",
            s.name, s.records, s.subjects, s.file
        );
    }
    println!(
        "tokenizer    {} ids  {}",
        tok.get_vocab_size(true),
        args.out.join("tokenizer.json").display()
    );
    Ok(ExitCode::SUCCESS)
}
