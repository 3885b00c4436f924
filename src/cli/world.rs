//! `lethe world`: writes the bundled synthetic world (fictitious people, their facts as
//! biographies and question–answer records, the forget/retain/holdout/utility splits) and a
//! byte-level BPE tokenizer trained on it. Same seed, same bytes.

use crate::world::{self, bpe};
use anyhow::Result;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct WorldArgs {
    /// Output folder (created if missing).
    #[arg(long, default_value = "fixtures/world")]
    out: PathBuf,
    /// Seed of the generator.
    #[arg(long, default_value_t = 17)]
    seed: u64,
    /// Number of trained (member) people.
    #[arg(long, default_value_t = 200)]
    people: usize,
    /// Number of holdout (never trained) people.
    #[arg(long, default_value_t = 40)]
    holdout_people: usize,
    /// Maximum BPE vocabulary size (2048–4096).
    #[arg(long, default_value_t = bpe::DEFAULT_VOCAB_SIZE)]
    vocab: usize,
}

pub fn run(args: WorldArgs) -> Result<ExitCode> {
    let cfg = world::WorldConfig {
        seed: args.seed,
        people: args.people,
        holdout_people: args.holdout_people,
        ..Default::default()
    };
    let w = world::generate(&cfg)?;
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
