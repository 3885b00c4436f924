//! `lethe certify`: measure an unlearned model against the original (and a retrained reference
//! when given) on the forget, retain, holdout and utility splits, and write the evidence JSON;
//! with `--spec`, judge it and print the verdict table (exit 0 when every verdict passes, 1 when
//! any fails or is inconclusive). Arguments become a checked request and the inputs are
//! validated before any tensor work.

use super::progress::{Progress, ProgressMode};
use crate::evidence::oracle::ModelOracle;
use crate::evidence::{certify, load_inputs, Request};
use crate::judge::spec::Spec;
use crate::judge::verdict::{judge_spec, render_table, Status};
use crate::model::ParamGroups;
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct CertifyArgs {
    /// The model before unlearning (Hugging Face directory).
    #[arg(long)]
    original: PathBuf,
    /// The model to certify.
    #[arg(long)]
    unlearned: PathBuf,
    /// A model retrained without the forget set (for PrivLeak, forget quality, reference attack).
    #[arg(long)]
    reference: Option<PathBuf>,
    /// Records to be forgotten (the members of the membership attacks), JSONL.
    #[arg(long)]
    forget: PathBuf,
    /// Records the model should keep, JSONL.
    #[arg(long)]
    retain: PathBuf,
    /// Records never trained on (the non-members), JSONL.
    #[arg(long)]
    holdout: PathBuf,
    /// General records for model utility, JSONL.
    #[arg(long)]
    utility: Option<PathBuf>,
    /// Where to write the evidence JSON (atomically).
    #[arg(long)]
    out: PathBuf,
    /// Seed of every sampled choice (Hessian sample, influence records, random vectors).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Confidence of the bounds the evidence must support; decides the minimum split sizes.
    #[arg(long, default_value_t = 0.95)]
    confidence: f64,
    /// Parameter group of the influence analysis and the gradient-norm attack.
    #[arg(long, default_value = "embedding")]
    params: String,
    /// Retain records in the Hessian sample.
    #[arg(long, default_value_t = 16)]
    hessian_records: usize,
    /// Forget and holdout records (each) whose self-influence is computed.
    #[arg(long, default_value_t = 4)]
    influence_records: usize,
    /// Lanczos steps for the Hessian's extreme eigenvalues.
    #[arg(long, default_value_t = 12)]
    lanczos_steps: usize,
    /// Question–answer records per split (a seeded sample) that get greedy answers and truth
    /// ratios; loss, memorisation and the attacks always cover every record.
    #[arg(long, default_value_t = 200)]
    generated_records: usize,
    /// Damping λ of (H + λI)⁻¹ (default: chosen from the Lanczos spectrum).
    #[arg(long)]
    damping: Option<f64>,
    /// Skip the influence analysis (exact f64 Hessian work, most of the run time); the evidence
    /// records the omission and specs that name `influence.*` metrics cannot be evaluated.
    #[arg(long)]
    no_influence: bool,
    /// A specification (TOML) to judge the evidence against; prints the verdict table and sets
    /// the exit code (0 all pass, 1 any fail or inconclusive, 2 error).
    #[arg(long)]
    spec: Option<PathBuf>,
    /// Evidence JSON of a baseline run, for specs with thresholds relative to a baseline.
    #[arg(long, requires = "spec")]
    baseline: Option<PathBuf>,
}

pub fn run(args: CertifyArgs, progress: ProgressMode) -> Result<ExitCode> {
    let mut req = Request::new(
        args.original,
        args.unlearned,
        args.forget,
        args.retain,
        args.holdout,
    );
    req.reference = args.reference;
    req.utility = args.utility;
    req.seed = args.seed;
    req.confidence = args.confidence;
    req.params = ParamGroups::parse(&args.params).map_err(anyhow::Error::msg)?;
    req.hessian_records = args.hessian_records;
    req.influence_records = args.influence_records;
    req.lanczos_steps = args.lanczos_steps;
    req.generated_records = args.generated_records;
    req.influence = !args.no_influence;
    anyhow::ensure!(
        req.hessian_records > 0,
        "--hessian-records must be at least 1"
    );
    anyhow::ensure!(req.lanczos_steps > 0, "--lanczos-steps must be at least 1");
    if let Some(d) = args.damping {
        anyhow::ensure!(
            d.is_finite() && d >= 0.0,
            "--damping must be a finite non-negative number"
        );
        req.damping = Some(d);
    }
    // Read the spec (and baseline) before the long run, so a typo fails in a second.
    let spec = match &args.spec {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| p.display().to_string())?;
            Some(Spec::parse(&text, &p.display().to_string())?)
        }
        None => None,
    };
    let baseline: Option<serde_json::Value> = match &args.baseline {
        Some(p) => Some(
            serde_json::from_slice(&std::fs::read(p).with_context(|| p.display().to_string())?)
                .with_context(|| format!("{}: not JSON", p.display()))?,
        ),
        None => None,
    };
    let mut inputs = load_inputs(&req)?;
    let models = 2 + usize::from(inputs.reference.is_some());
    let records: usize = inputs.splits.values().map(|(d, _)| d.records).sum();
    let total =
        (models * records + 2 * 2 * req.influence_records * usize::from(req.influence)) as u64;
    let mut bar = Progress::new(progress, "certify", total);
    let (evidence, summary) = certify(&req, &mut inputs, &mut |stage, n| bar.inc(n, stage))?;
    bar.finish();
    evidence
        .write(&args.out)
        .with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!(
        "evaluated {} tokens in {:.2} s ({:.0} tokens/s, forward-only passes); evidence in {}",
        summary.eval_tokens,
        summary.eval_seconds,
        summary.eval_tokens as f64 / summary.eval_seconds.max(1e-9),
        args.out.display()
    );
    let Some(spec) = spec else {
        return Ok(ExitCode::SUCCESS);
    };
    let oracle =
        ModelOracle::new(&inputs.unlearned.model, &inputs.tokenizer).map_err(anyhow::Error::msg)?;
    let verdicts = judge_spec(
        &spec,
        &serde_json::to_value(&evidence)?,
        baseline.as_ref(),
        &|s| inputs.splits.get(s).map(|(_, r)| r.as_slice()),
        &oracle,
    )?;
    print!("{}", render_table(&verdicts));
    let all_pass = verdicts.iter().all(|v| v.status == Status::Pass);
    println!(
        "{} against {} {}",
        if all_pass { "PASS" } else { "NOT PASSED" },
        spec.id,
        spec.version
    );
    Ok(if all_pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
