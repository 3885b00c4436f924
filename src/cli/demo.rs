//! `lethe demo`: the whole chain on the bundled world in one command. Unlearn forget05 from the
//! full model with the default method, certify the result against a spec (default
//! `specs/gdpr-art17.toml`) with the retrained model as reference, sign the report with a key
//! generated into the output folder, verify the certificate, and print the verdicts and where
//! everything is.

use crate::data::{read_records, Encoded, TextTokenizer};
use crate::evidence::certifier::{certify, load_inputs, Request};
use crate::evidence::oracle::ModelOracle;
use crate::judge::spec::Spec;
use crate::judge::verdict::{judge_spec, render_table};
use crate::model::{load_model, save_model};
use crate::report::certificate::write_certificate;
use crate::report::keys::{
    keygen, load_signing_key, load_verifying_key, SIGNING_KEY_FILE, VERIFYING_KEY_FILE,
};
use crate::report::schema::{rfc3339_utc, Artifact, Machine, Report, SpecRef, Tool};
use crate::report::verify::{render_checks, verify, Options};
use crate::report::{html, markdown};
use crate::unlearn::{unlearn, Method, UnlearnConfig, UnlearnInputs};
use anyhow::{Context, Result};
use candle_core::DType;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Instant, SystemTime};

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Output folder: certificate.dsse.json, signer.pub.pem, report.json/.html/.md, the model.
    #[arg(long, default_value = "reports/demo")]
    out: PathBuf,
    /// The bundled fixtures (world, models, ledger).
    #[arg(long, default_value = "fixtures")]
    fixtures: PathBuf,
    /// The specification to certify against.
    #[arg(long, default_value = "specs/gdpr-art17.toml")]
    spec: PathBuf,
    /// The unlearning method. `ledger` replays `fixtures/ledger`, recorded while the full model
    /// was trained from scratch; on that model it stops short of the forget set's holdout
    /// level (reports/seed-paper/table.md).
    #[arg(long, value_enum, default_value_t = Method::Ga)]
    method: Method,
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::atomic::write_atomic(path, bytes).with_context(|| path.display().to_string())
}

/// Unlearns forget05 from the full model into `out/model`; returns the unlearning record.
fn unlearn_step(args: &DemoArgs, world: &Path, model_out: &Path) -> Result<serde_json::Value> {
    let full = args.fixtures.join("models/full");
    let loaded = load_model(&full, DType::F32)?;
    let tok_path = full.join("tokenizer.json");
    let tok = TextTokenizer::load(&tok_path)?;
    let ctx = loaded.model.config().n_positions;
    let enc = |s: &str| -> Result<Vec<Encoded>> {
        Ok(tok.encode_all(&read_records(&world.join(format!("{s}.jsonl")))?, true, ctx)?)
    };
    let (f, r, h) = (enc("forget05")?, enc("retain05")?, enc("holdout")?);
    let ledger = match args.method {
        Method::Ledger => Some(crate::train::Ledger::load(&args.fixtures.join("ledger"))?),
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
        ..Default::default()
    };
    let mut model = loaded.model;
    let outcome = unlearn(&mut model, &inputs, &cfg, |_| {})?;
    save_model(
        &model,
        loaded.storage_dtype,
        model_out,
        Some(&std::fs::read(&tok_path)?),
    )?;
    let value = serde_json::to_value(&outcome)?;
    write(
        &model_out.join("unlearn.json"),
        serde_json::to_string_pretty(&value)?.as_bytes(),
    )?;
    println!(
        "unlearned   forget05 ({} records) with {:?} on {}: forget loss {:.3} -> {:.3} (holdout level {:.3}), retain {:.3} -> {:.3}, {} steps, {:.1} s",
        f.len(), cfg.method, cfg.params, outcome.levels.forget_start, outcome.final_forget_loss,
        outcome.levels.holdout, outcome.levels.retain_start, outcome.final_retain_loss, outcome.steps.len(), outcome.seconds
    );
    Ok(value)
}

pub fn run(args: DemoArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let world = args.fixtures.join("world");
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
    let trajectory = unlearn_step(&args, &world, &model_out)?;
    // Certify: original = full, unlearned = ours, reference = retrained without forget05.
    let spec_text = std::fs::read(&args.spec).with_context(|| args.spec.display().to_string())?;
    let spec = Spec::parse(
        &String::from_utf8_lossy(&spec_text),
        &args.spec.display().to_string(),
    )?;
    let mut req = Request::new(
        args.fixtures.join("models/full"),
        model_out.clone(),
        world.join("forget05.jsonl"),
        world.join("retain05.jsonl"),
        world.join("holdout.jsonl"),
    );
    req.reference = Some(args.fixtures.join("models/retrain05"));
    req.utility = Some(world.join("utility.jsonl"));
    req.seed = spec.seed;
    // Compute the evidence the spec needs: the influence analysis (exact f64 Hessian work, several
    // minutes on 2 cores) only when a requirement names an `influence.*` metric.
    req.influence = spec
        .requirements
        .iter()
        .any(|r| r.metric.starts_with("influence."));
    let certify_start = Instant::now();
    let mut inputs = load_inputs(&req)?;
    let (evidence, summary) = certify(&req, &mut inputs, &mut |_, _| {})?;
    evidence.write(&args.out.join("evidence.json"))?;
    println!(
        "certified   in {:.1} s: {} tokens scored at {:.0} tokens/s; influence analysis {}",
        certify_start.elapsed().as_secs_f64(),
        summary.eval_tokens,
        summary.eval_tokens as f64 / summary.eval_seconds.max(1e-9),
        if req.influence {
            "included"
        } else {
            "skipped (the spec names no influence.* metric; `lethe certify` runs it)"
        }
    );
    let evidence = serde_json::to_value(&evidence)?;
    let oracle =
        ModelOracle::new(&inputs.unlearned.model, &inputs.tokenizer).map_err(anyhow::Error::msg)?;
    let verdicts = judge_spec(
        &spec,
        &evidence,
        None,
        &|s| inputs.splits.get(s).map(|(_, r)| r.as_slice()),
        &oracle,
    )?;
    println!(
        "judged      {} verdicts in {:.1} s",
        verdicts.len(),
        certify_start.elapsed().as_secs_f64()
    );
    // The report, rendered and signed.
    let mut artifacts = Artifact::from_evidence(&evidence);
    artifacts.push(Artifact::of_file("spec", &args.spec)?);
    let seeds = BTreeMap::from([
        ("evidence".to_string(), req.seed),
        ("spec".to_string(), spec.seed),
        ("unlearn".to_string(), UnlearnConfig::default().seed),
    ]);
    let report = Report {
        schema_version: 1,
        tool: Tool::current(),
        created: rfc3339_utc(SystemTime::now()),
        machine: Machine::new(crate::machine::cpu_model(), crate::machine::threads()),
        artifacts,
        method: Some(trajectory["config"].clone()),
        seeds,
        spec: SpecRef::new(&spec, &spec_text),
        evidence,
        verdicts,
        trajectory: Some(trajectory),
    };
    write(&args.out.join("report.json"), &report.to_jcs()?)?;
    write(
        &args.out.join("report.html"),
        html::render(&report).as_bytes(),
    )?;
    write(
        &args.out.join("report.md"),
        markdown::render(&report).as_bytes(),
    )?;
    if !args.out.join(SIGNING_KEY_FILE).exists() {
        keygen(&args.out)?;
    }
    let key = load_signing_key(&args.out.join(SIGNING_KEY_FILE))?;
    let cert = write_certificate(&report, &key, &args.out)?;
    // Verify what was written, as a third party would.
    let public = load_verifying_key(&args.out.join(VERIFYING_KEY_FILE))?;
    let check = verify(
        &std::fs::read(&cert)?,
        &public,
        &Options {
            artifacts: Some(&model_out),
            recompute: None,
        },
    );
    print!("\n{}", render_table(&report.verdicts));
    print!("\nverify\n{}", render_checks(&check.checks));
    println!("\ncertificate {}", cert.display());
    println!(
        "public key  {}",
        args.out.join(VERIFYING_KEY_FILE).display()
    );
    println!(
        "report      {} (and report.md, report.json)",
        args.out.join("report.html").display()
    );
    println!("model       {}", model_out.display());
    println!(
        "result      {} against {} in {:.0} s",
        if report.certified() {
            "CERTIFIED"
        } else {
            "NOT CERTIFIED"
        },
        report.spec.id,
        started.elapsed().as_secs_f64()
    );
    Ok(if check.passed() && report.certified() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
