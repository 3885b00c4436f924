//! The `lethe` command line: clap definitions, turned into checked plans before any tensor work,
//! and the exit codes (0 success or certified, 1 checks ran and failed, 2 could not run). This is
//! the only module that uses `anyhow`; the library modules return typed errors.

pub mod bundled;
mod certify;
mod demo;
mod diff;
mod eval;
mod experiment;
mod inspect;
mod keygen;
pub mod progress;
mod recompute;
mod train;
mod unlearn;
mod verify;
mod world;

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
    /// Write the bundled synthetic world (JSONL splits) and train its BPE tokenizer.
    World(world::WorldArgs),
    /// Train a GPT-2 on JSONL records (from scratch, or fine-tuning --init), recording the
    /// first-epoch gradient ledger.
    Train(train::TrainArgs),
    /// Remove forget records from a model: profile matching to never-seen records (the
    /// default) or calibrated gradient ascent (ga, ledger, graddiff, npo, iterative) on chosen
    /// parameter groups, stopped at the holdout level.
    Unlearn(unlearn::UnlearnArgs),
    /// List the training records an erasure request matches fuzzily, with scores, for review.
    Match(unlearn::MatchArgs),
    /// Reproduce a paper's comparisons on the bundled world (`seed-paper`: Zagardo 2024).
    Experiment(experiment::ExperimentArgs),
    /// Measure an unlearned model against the original (and a retrained reference) and, with
    /// --spec, issue the report and (with --sign) the signed certificate into --out.
    Certify(Box<certify::CertifyArgs>),
    /// The whole chain on the bundled world: unlearn forget05, certify against
    /// specs/gdpr-art17.toml with the retrained model as reference, sign, verify.
    Demo(demo::DemoArgs),
    /// Make an Ed25519 signing key pair (PKCS#8 PEM private key, mode 0600; PEM public key).
    Keygen(keygen::KeygenArgs),
    /// Check a signed certificate: signature, payload type, report schema, artifact digests.
    Verify(verify::VerifyArgs),
    /// Compare two reports: metric deltas and verdict changes; exit 1 on a regression.
    Diff(diff::DiffArgs),
}

/// Runs the command line and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(a) => inspect::run(a),
        Command::Eval(a) => eval::run(a, cli.progress),
        Command::World(a) => world::run(a),
        Command::Train(a) => train::run(a, cli.progress),
        Command::Unlearn(a) => unlearn::run_unlearn(a, cli.progress),
        Command::Match(a) => unlearn::run_match(a),
        Command::Experiment(a) => experiment::run(a),
        Command::Certify(a) => certify::run(*a, cli.progress),
        Command::Demo(a) => demo::run(a),
        Command::Keygen(a) => keygen::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Diff(a) => diff::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Where an issued certificate's files are, and its outcome: what `certify` and `demo` print last.
fn print_issued(issued: &crate::issue::Issued) {
    let r = &issued.report;
    if let Some(cert) = &issued.certificate {
        println!("certificate {}", cert.display());
    }
    println!(
        "report      {} (and {}, {}, {})",
        issued.html.display(),
        issued.markdown.display(),
        issued.report_json.display(),
        issued.evidence.display()
    );
    println!(
        "result      {} against {} {} ({} of {} verdicts pass)",
        if r.certified() {
            "CERTIFIED"
        } else {
            "NOT CERTIFIED"
        },
        r.spec.id,
        r.spec.version,
        r.verdicts
            .iter()
            .filter(|v| v.status == crate::judge::verdict::Status::Pass)
            .count(),
        r.verdicts.len()
    );
}
