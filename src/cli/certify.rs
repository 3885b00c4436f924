//! `lethe certify`: measure an unlearned model against the original (and a retrained reference
//! when given) on the forget, retain, holdout and utility splits and, with `--spec`, issue the
//! certificate: `evidence.json`, `report.json`, `report.html`, `report.md` and, with `--sign`,
//! `certificate.dsse.json` in `--out`, through `issue::issue` (the same function `lethe demo`
//! calls). Without `--spec` it writes `evidence.json` only. Exit 0 when certified, 1 when a
//! verdict failed or is inconclusive (the outputs are written all the same), 2 when it could not
//! run. Arguments become a checked request before any tensor work.

use super::progress::{Progress, ProgressMode};
use crate::evidence::{certify, load_inputs, Request};
use crate::issue::{issue, IssueRequest, EVIDENCE_FILE};
use crate::judge::verdict::render_table;
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
    /// Output folder: evidence.json, and with --spec report.json, report.html, report.md and
    /// (with --sign) certificate.dsse.json. Refuses a folder holding another run's report or
    /// certificate unless --force.
    #[arg(long)]
    out: PathBuf,
    /// Replace another run's report or certificate in --out.
    #[arg(long)]
    force: bool,
    /// Sign the report with this Ed25519 private key (PKCS#8 PEM, `lethe keygen`) into
    /// certificate.dsse.json — CERTIFIED or NOT CERTIFIED alike.
    #[arg(long, requires = "spec")]
    sign: Option<PathBuf>,
    /// The unlearning record (`unlearn.json`) of the run that made --unlearned: bound into the
    /// report by digest, and checked to name --original and --unlearned.
    #[arg(long, requires = "spec")]
    unlearn_log: Option<PathBuf>,
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
    /// A specification (TOML) to judge the evidence against: issues the report (and, with
    /// --sign, the certificate), prints the verdict table and sets the exit code (0 certified,
    /// 1 not certified, 2 error).
    #[arg(long)]
    spec: Option<PathBuf>,
    /// Evidence or report of a baseline run, for specs with thresholds relative to a baseline.
    #[arg(long, requires = "spec")]
    baseline: Option<PathBuf>,
}

fn request(args: &CertifyArgs) -> Result<Request> {
    let mut req = Request::new(
        args.original.clone(),
        args.unlearned.clone(),
        args.forget.clone(),
        args.retain.clone(),
        args.holdout.clone(),
    );
    req.reference = args.reference.clone();
    req.utility = args.utility.clone();
    req.seed = args.seed;
    let s = &mut req.settings;
    s.confidence = args.confidence;
    s.params = args.params.clone();
    s.hessian_records = args.hessian_records;
    s.influence_records = args.influence_records;
    s.lanczos_steps = args.lanczos_steps;
    s.generated_records = args.generated_records;
    s.damping = args.damping;
    req.influence = !args.no_influence;
    req.params().map_err(anyhow::Error::new)?;
    Ok(req)
}

pub fn run(args: CertifyArgs, progress: ProgressMode) -> Result<ExitCode> {
    let req = request(&args)?;
    let mut bar = Progress::new(progress, "certify", 0);
    let Some(spec) = &args.spec else {
        // Measuring only: the evidence file, no verdicts.
        let mut inputs = load_inputs(&req)?;
        let (evidence, summary) = certify(&req, &mut inputs, &mut |stage, n| bar.inc(n, stage))?;
        bar.finish();
        std::fs::create_dir_all(&args.out).with_context(|| args.out.display().to_string())?;
        let path = args.out.join(EVIDENCE_FILE);
        evidence
            .write(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!(
            "evaluated {} tokens in {:.2} s ({:.0} tokens/s); evidence in {}",
            summary.eval_tokens,
            summary.eval_seconds,
            summary.eval_tokens as f64 / summary.eval_seconds.max(1e-9),
            path.display()
        );
        return Ok(ExitCode::SUCCESS);
    };
    let issued = issue(
        &IssueRequest {
            certify: req,
            spec: spec.clone(),
            baseline: args.baseline.clone(),
            unlearn_log: args.unlearn_log.clone(),
            signing_key: args.sign.clone(),
            out: args.out.clone(),
            force: args.force,
        },
        &mut |stage, n| bar.inc(n, stage),
    )?;
    bar.finish();
    for w in &issued.warnings {
        eprintln!("warning: {w}");
    }
    print!("{}", render_table(&issued.report.verdicts));
    super::print_issued(&issued);
    Ok(if issued.report.certified() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
