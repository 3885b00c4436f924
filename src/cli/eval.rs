//! `lethe eval MODEL_DIR DATA.jsonl`: per-record loss and perplexity, streamed in batches.

use super::progress::{Progress, ProgressMode};
use crate::data::{Batch, Encoded, JsonlReader, TextTokenizer};
use crate::model::load_model;
use anyhow::{Context, Result};
use candle_core::DType;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct EvalArgs {
    /// A Hugging Face GPT-2 directory (config.json, model.safetensors, tokenizer.json).
    model_dir: PathBuf,
    /// Records to score, JSONL: {"id": ..., "text": ...} per line.
    data: PathBuf,
    /// One JSON object per line (`id`, `tokens`, `loss`, `perplexity`) instead of a table.
    #[arg(long)]
    json: bool,
    /// Score only the answer tokens of question–answer records (default: the whole text, as
    /// transformers does for `labels = input_ids`).
    #[arg(long)]
    answer_only: bool,
    /// Records per forward pass.
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Tokenizer file (default: MODEL_DIR/tokenizer.json).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
}

pub fn run(args: EvalArgs, progress: ProgressMode) -> Result<ExitCode> {
    anyhow::ensure!(args.batch_size > 0, "--batch-size must be at least 1");
    let loaded = load_model(&args.model_dir, DType::F32)?;
    let tok_path = args
        .tokenizer
        .clone()
        .unwrap_or_else(|| args.model_dir.join("tokenizer.json"));
    let tok = TextTokenizer::load(&tok_path)?;
    tok.check_vocab(loaded.model.config().vocab_size)?;
    let ctx = loaded.model.config().n_positions;
    let mut bar = Progress::new(progress, "eval", 0);
    let mut out = std::io::stdout().lock();
    if !args.json {
        writeln!(
            out,
            "{:<32} {:>7} {:>10} {:>12}",
            "id", "tokens", "loss", "perplexity"
        )?;
    }
    let mut pending: Vec<Encoded> = Vec::new();
    let mut reader = JsonlReader::open(&args.data)?.peekable();
    while let Some(rec) = reader.next() {
        pending.push(tok.encode(&rec?, args.answer_only, ctx)?);
        if pending.len() == args.batch_size || reader.peek().is_none() {
            let refs: Vec<&Encoded> = pending.iter().collect();
            let batch = Batch::new(&refs, tok.pad_id());
            let losses = loaded
                .model
                .record_losses(&batch)
                .context("forward pass")?
                .to_vec1::<f32>()?;
            for (e, loss) in pending.iter().zip(losses) {
                print_row(&mut out, e, loss as f64, args.json)?;
            }
            bar.inc(pending.len() as u64, "records");
            pending.clear();
        }
    }
    bar.finish();
    Ok(ExitCode::SUCCESS)
}

fn print_row(out: &mut impl Write, e: &Encoded, loss: f64, json: bool) -> Result<()> {
    let ppl = loss.exp();
    if json {
        let v =
            serde_json::json!({"id": e.id, "tokens": e.ids.len(), "loss": loss, "perplexity": ppl});
        writeln!(out, "{v}")?;
    } else {
        writeln!(
            out,
            "{:<32} {:>7} {:>10.4} {:>12.3}",
            e.id,
            e.ids.len(),
            loss,
            ppl
        )?;
    }
    Ok(())
}
