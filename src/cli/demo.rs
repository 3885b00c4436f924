//! `lethe demo`: the whole chain on the bundled world in one command. Unlearn forget05 from the
//! full model with the default method (writing `unlearn.json` as `lethe unlearn` does), issue the
//! certificate through `issue::issue` — the same function `lethe certify --spec` calls —
//! against a spec (default `specs/gdpr-art17.toml`) with the retrained model as reference and a
//! demo key generated into the output folder, verify it as a third party would, and print the
//! verdicts and where everything is.

use super::bundled::{Bundled, ModelFamily};
use crate::data::{read_records_hashed, Encoded, TextTokenizer};
use crate::evidence::Request;
use crate::issue::{issue, IssueRequest};
use crate::judge::spec::Spec;
use crate::judge::verdict::render_table;
use crate::model::{load_model, save_model};
use crate::report::keys::{keygen, load_verifying_key, SIGNING_KEY_FILE, VERIFYING_KEY_FILE};
use crate::report::verify::{render_checks, verify, Options};
use crate::unlearn::log::{DataFile, ModelFiles};
use crate::unlearn::{unlearn, Method, UnlearnConfig, UnlearnInputs, UnlearnLog, UNLEARN_LOG_FILE};
use anyhow::{Context, Result};
use candle_core::DType;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Output folder: certificate.dsse.json, signer.pub.pem, report.json/.html/.md, the model.
    #[arg(long, default_value = "reports/demo")]
    out: PathBuf,
    /// The bundled fixtures (world, models, ledger).
    #[arg(long, default_value = "fixtures")]
    fixtures: PathBuf,
    /// Whose bundled models: GPT-2's, or the Llama-family ones trained on the same world.
    #[arg(long, value_enum, default_value_t = ModelFamily::Gpt2)]
    family: ModelFamily,
    /// The specification to certify against.
    #[arg(long, default_value = "specs/gdpr-art17.toml")]
    spec: PathBuf,
    /// The unlearning method. `ledger` replays the full model's first-epoch ledger
    /// (`fixtures/ledger`, `fixtures/ledger-llama`), recorded while it was trained from scratch; on that model it stops short of the forget set's holdout
    /// level (reports/seed-paper/table.md).
    #[arg(long, value_enum, default_value_t = Method::Profile)]
    method: Method,
    /// Step budget of the unlearning. The demo keeps it short (profile matching on the bundled
    /// world is within every attack's margin after 30 steps, and still improving slowly);
    /// `lethe unlearn` allows 80.
    #[arg(long, default_value_t = 30)]
    max_steps: usize,
}

impl DemoArgs {
    fn bundled(&self) -> Bundled<'_> {
        Bundled {
            root: &self.fixtures,
            family: self.family,
        }
    }
}

/// Unlearns forget05 from the full model into `model_out` and writes its `unlearn.json`.
fn unlearn_step(args: &DemoArgs, world: &Path, model_out: &Path) -> Result<PathBuf> {
    let full = args.bundled().full();
    let loaded = load_model(&full, DType::F32)?;
    let tok_path = full.join("tokenizer.json");
    let tok = TextTokenizer::load(&tok_path)?;
    let ctx = loaded.model.config().n_positions;
    let split = |s: &str| world.join(format!("{s}.jsonl"));
    let (forget, forget_hash) = read_records_hashed(&split("forget05"))?;
    let (retain, retain_hash) = read_records_hashed(&split("retain05"))?;
    let (holdout, holdout_hash) = read_records_hashed(&split("holdout_calibration"))?;
    let enc =
        |r: &[crate::data::Record]| -> Result<Vec<Encoded>> { Ok(tok.encode_all(r, true, ctx)?) };
    let (f, r, h) = (enc(&forget)?, enc(&retain)?, enc(&holdout)?);
    let ledger = match args.method {
        Method::Ledger => Some(crate::train::Ledger::load(&args.bundled().ledger())?),
        _ => None,
    };
    let inputs = UnlearnInputs {
        forget: &f,
        retain: &r,
        holdout: &h,
        pad: tok.pad_id(),
        ledger: ledger.as_ref(),
    };
    let cfg = UnlearnConfig {
        method: args.method,
        max_steps: args.max_steps,
        ..Default::default()
    };
    let storage = loaded.storage();
    let mut model = loaded.model;
    let start =
        crate::unlearn::rounding::snapshot(&mut model, &cfg.params).map_err(anyhow::Error::msg)?;
    let outcome = unlearn(&mut model, &inputs, &cfg, |_| {})?;
    let rounding = crate::unlearn::rounding::measure(&model, &start, loaded.storage_dtype)?;
    drop(start);
    save_model(&model, storage, model_out, &tok.files())?;
    println!(
        "unlearned   forget05 ({} records) with {:?} on {}: forget loss {:.3} -> {:.3} (holdout level {:.3}), retain {:.3} -> {:.3}, {} steps, {:.1} s; stopped: {}",
        f.len(), cfg.method, cfg.params, outcome.levels.forget_start, outcome.final_forget_loss,
        outcome.levels.holdout, outcome.levels.retain_start, outcome.final_retain_loss, outcome.steps.len(), outcome.seconds,
        outcome.stop_reason.describe()
    );
    let log = UnlearnLog {
        tool: "lethe".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        model: ModelFiles::new(&full, loaded.files),
        output: ModelFiles::of_dir(model_out)?,
        forget: DataFile::new(&split("forget05"), forget_hash.sha256, &forget),
        expanded: Vec::new(),
        retain: DataFile::new(&split("retain05"), retain_hash.sha256, &retain),
        holdout: DataFile::new(&split("holdout_calibration"), holdout_hash.sha256, &holdout),
        ledger: ledger
            .as_ref()
            .map(|_| args.bundled().ledger().display().to_string()),
        ledger_alignment: None,
        outcome,
        rounding: Some(rounding),
    };
    let path = model_out.join(UNLEARN_LOG_FILE);
    crate::atomic::write_atomic(&path, &log.to_bytes()?)
        .with_context(|| path.display().to_string())?;
    Ok(path)
}

pub fn run(args: DemoArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let world = args.bundled().world();
    let model_out = args.out.join("model");
    std::fs::create_dir_all(&args.out).with_context(|| args.out.display().to_string())?;
    // A public key without its private key cannot sign; say so before minutes of work.
    let (private, public) = (
        args.out.join(SIGNING_KEY_FILE),
        args.out.join(VERIFYING_KEY_FILE),
    );
    anyhow::ensure!(
        private.exists() || !public.exists(),
        "{} exists without {}: the demo would have to replace a public key (move it away or pick another --out)",
        public.display(),
        private.display()
    );
    if !private.exists() {
        keygen(&args.out)?;
        println!(
            "keygen      a demo signing key in {} (mode 0600; a demo key signs nothing anyone should trust)",
            private.display()
        );
    }
    let unlearn_log = unlearn_step(&args, &world, &model_out)?;
    // Certify: original = full, unlearned = ours, reference = retrained without forget05.
    let spec = Spec::load(&args.spec)?;
    let mut req = Request::new(
        args.bundled().full(),
        model_out.clone(),
        world.join("forget05.jsonl"),
        world.join("retain05.jsonl"),
        // The audit's non-members: holdout people the unlearning never calibrated on.
        world.join("holdout_audit.jsonl"),
    );
    req.reference = Some(args.bundled().retrain05());
    req.utility = Some(world.join("utility.jsonl"));
    req.seed = spec.seed;
    // The influence analysis (exact f64 Hessian work, minutes on 2 cores) only when a
    // requirement names an `influence.*` metric.
    req.influence = spec
        .requirements
        .iter()
        .any(|r| r.metric.starts_with("influence."));
    let certify_start = Instant::now();
    let issued = issue(
        &IssueRequest {
            certify: req,
            spec: args.spec.clone(),
            baseline: None,
            unlearn_log: Some(unlearn_log),
            signing_key: Some(private),
            out: args.out.clone(),
            // The demo's folder is its own: each run replaces the last.
            force: true,
        },
        &mut |_, _| {},
    )?;
    for w in &issued.warnings {
        eprintln!("warning: {w}");
    }
    println!(
        "certified   in {:.1} s: {} tokens scored at {:.0} tokens/s; influence analysis {}",
        certify_start.elapsed().as_secs_f64(),
        issued.summary.eval_tokens,
        issued.summary.eval_tokens as f64 / issued.summary.eval_seconds.max(1e-9),
        if issued.report.evidence.influence.is_some() {
            "included"
        } else {
            "skipped (the spec names no influence.* metric; `lethe certify` runs it)"
        }
    );
    let cert = issued
        .certificate
        .clone()
        .context("the demo signs its report, but no certificate was written")?;
    // Verify what was written, as a third party would.
    let check = verify(
        &std::fs::read(&cert)?,
        &load_verifying_key(&public)?,
        &Options {
            artifacts: Some(&model_out),
            recompute: None,
        },
    );
    print!("\n{}", render_table(&issued.report.verdicts));
    print!("\nverify\n{}", render_checks(&check.checks));
    println!();
    println!("public key  {}", public.display());
    println!("model       {}", model_out.display());
    super::print_issued(&issued);
    println!("time        {:.0} s", started.elapsed().as_secs_f64());
    Ok(if check.passed() && issued.report.certified() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
