//! The `lethe` command line: clap definitions, turned into checked plans before any tensor work,
//! and the exit codes (0 success or certified, 1 checks ran and failed, 2 could not run). This is
//! the only module that uses `anyhow`; the library modules return typed errors.

mod certify;
mod eval;
mod inspect;
pub mod progress;

use clap::{Parser, Subcommand};
use progress::ProgressMode;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "lethe",
    version,
    about = "Make a GPT-2 model forget chosen training records, then certify the result.",
    long_about = "lethe removes the influence of chosen training records (for example after a GDPR \
Article 17 erasure request) from a GPT-2 model in Hugging Face layout, and measures the result \
against the original model and a model retrained without those records.\n\nModels are Hugging Face \
directories: config.json, model.safetensors (pickle files are refused) and tokenizer.json. Data \
are JSONL files, one record per line: {\"id\": ..., \"text\": ...}, optionally with \"prompt\"/\"answer\" \
and \"subject\"."
)]
pub struct Cli {
    /// Progress reporting on stderr: an interactive bar, JSON lines, or nothing.
    #[arg(long, value_enum, global = true, default_value_t = ProgressMode::Bar)]
    progress: ProgressMode,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show a model's configuration, its parameters per group and the sha256 of each file.
    Inspect(inspect::InspectArgs),
    /// Score records with a model: per-record loss (mean next-token negative log-likelihood)
    /// and perplexity.
    Eval(eval::EvalArgs),
    /// Measure an unlearned model against the original (and a retrained reference): metrics,
    /// membership-inference attacks with confidence intervals, influence; write evidence JSON.
    Certify(Box<certify::CertifyArgs>),
}

/// Runs the command line and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(a) => inspect::run(a),
        Command::Eval(a) => eval::run(a, cli.progress),
        Command::Certify(a) => certify::run(*a, cli.progress),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
