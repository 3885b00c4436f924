//! `lethe experiment seed-paper`: the comparisons of Zagardo 2024 on the bundled world, as a
//! table, for each bundled family (GPT-2, and the Llama-family models trained on the same world:
//! is the seed paper's finding — the embedding carries the unlearning — true beyond GPT-2?).
//! Each configuration unlearns forget05 from the family's full model in a child process (so its
//! peak memory is its own), its stop rule calibrated on `holdout_calibration`, and is then
//! measured here against `holdout_audit` (people the unlearning never saw): greedy exact match on
//! the forget questions, forget loss over audit-holdout loss, retain loss ratio, and — from
//! evidence taken by the certifier (`evidence::certify`) and judged by the certifier's own code
//! (`judge::verdict::evaluate`) — the run's verdict on gdpr-art17's two-sided attack requirements,
//! the LOSS attack's AUC and the attack AUC farthest from chance, each with its person-clustered
//! bounds; with the run's time and peak memory. A second
//! table takes the seed paper's own setting — the records learned by fine-tuning a trained
//! model — by repeating the bundled fine-tune (`models/finetuned`, with the hyperparameters its
//! `train.json` recorded) with a ledger of every epoch, and replays its first epoch and every
//! epoch (GPT-2 only: the fine-tuned model is bundled for GPT-2).

use super::bundled::{Bundled, ModelFamily};
use crate::data::{read_records, Encoded, Record, TextTokenizer};
use crate::evidence::oracle::{exact_match_rate, ModelOracle};
use crate::evidence::{certify, load_inputs, Evidence, Metric, Request};
use crate::judge::metric::Side;
use crate::judge::spec::Spec;
use crate::judge::verdict::{evaluate, farthest_from_chance, overall, Status, Verdict};
use crate::model::{load_model, Gpt2};
use crate::train::{Ledger, OptimizerConfig, TrainConfig};
use crate::unlearn::objective::mean_loss;
use anyhow::{Context, Result};
use candle_core::DType;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

#[derive(clap::Args)]
pub struct ExperimentArgs {
    /// The experiment to run.
    #[arg(value_parser = ["seed-paper"])]
    name: String,
    /// The bundled fixtures (world, models, ledger).
    #[arg(long, default_value = "fixtures")]
    fixtures: PathBuf,
    /// The families whose bundled models are compared (repeat the flag, or list them with
    /// commas).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [ModelFamily::Gpt2, ModelFamily::Llama])]
    family: Vec<ModelFamily>,
    /// Where the table and the runs go.
    #[arg(long, default_value = "reports/seed-paper")]
    out: PathBuf,
    /// A ledger of every training epoch (`lethe train --ledger-epochs all`, otherwise the
    /// command of `fixtures/make.sh`): adds the first-epoch vs all-epoch comparison, both
    /// replayed from this one ledger on the model it belongs to. Not bundled: it is 40 times
    /// the size of the first-epoch ledger.
    #[arg(long)]
    ledger_all: Option<PathBuf>,
    /// The model the `--ledger-all` ledger was recorded for (default: the bundled GPT-2 full
    /// model).
    #[arg(long, requires = "ledger_all")]
    ledger_model: Option<PathBuf>,
}

/// The spec whose two-sided attack requirements each run is judged on.
const SPEC: &str = "gdpr-art17";

#[derive(Serialize)]
struct Row {
    config: String,
    method: String,
    params: String,
    forget_records: usize,
    exact_match: f64,
    forget_over_holdout: f64,
    retain_loss_ratio: f64,
    /// The LOSS attack's AUC (forget05 vs holdout_audit).
    loss_auc: Auc,
    /// The verdict on the spec's two-sided attack requirements, all together
    /// (`judge::verdict::overall`), and each of them.
    attack_verdict: Status,
    attack_verdicts: Vec<Verdict>,
    /// The attack with a 0.5 null whose AUC lies farthest from 0.5, either side.
    worst_attack: String,
    worst_auc: Auc,
    steps: usize,
    stop: String,
    seconds: f64,
    peak_rss_mib: f64,
}

/// An AUC with its person-clustered one-sided bounds at the spec's confidence: the bounds the
/// spec's two-sided requirements are judged on.
#[derive(Serialize)]
struct Auc {
    value: f64,
    low: f64,
    high: f64,
}

impl Auc {
    fn of(m: &Metric, confidence: f64) -> Result<Auc> {
        Ok(Auc {
            value: m.value(),
            low: m.bound(confidence, Side::Lower)?,
            high: m.bound(confidence, Side::Upper)?,
        })
    }
}

/// (label, method, params, extra arguments)
type Config = (&'static str, &'static str, &'static str, Vec<&'static str>);

fn configs() -> Vec<Config> {
    vec![
        (
            "first-epoch ledger, embedding",
            "ledger",
            "embedding",
            vec!["--ledger", "LEDGER"],
        ),
        (
            "profile matching, embedding (default)",
            "profile",
            "embedding",
            vec![],
        ),
        ("gradient ascent, embedding", "ga", "embedding", vec![]),
        ("gradient ascent, all", "ga", "all", vec![]),
        (
            "gradient ascent, last two blocks",
            "ga",
            "blocks:2-3",
            vec![],
        ),
        ("gradient ascent, final norm", "ga", "final_norm", vec![]),
        (
            "fuzzy-expanded request, embedding",
            "ga",
            "embedding",
            vec!["--expand", "fuzzy", "--corpus", "CORPUS"],
        ),
        ("iterative, embedding", "iterative", "embedding", vec![]),
        (
            "gradient difference, embedding",
            "graddiff",
            "embedding",
            vec![],
        ),
        ("NPO, embedding", "npo", "embedding", vec![]),
    ]
}

/// The ledger replayed twice on the embedding: its first epoch only, then every epoch.
fn ledger_epochs(first: &'static str, every: &'static str) -> Vec<Config> {
    let run = |label, epochs| {
        (
            label,
            "ledger",
            "embedding",
            vec!["--ledger", "LEDGER", "--ledger-epochs", epochs],
        )
    };
    vec![run(first, "first"), run(every, "all")]
}

/// An erasure request naming each forget05 person with one letter of the surname changed.
fn fuzzy_request(forget: &[Record], path: &Path) -> Result<()> {
    let mut names: Vec<String> = forget.iter().filter_map(|r| r.subject.clone()).collect();
    names.dedup();
    let mut lines = String::new();
    for (i, n) in names.iter().enumerate() {
        let mut chars: Vec<char> = n.chars().collect();
        let k = chars.len() - 2;
        chars.swap(k, k + 1);
        let misspelt: String = chars.into_iter().collect();
        let rec = Record {
            id: format!("request-{i}"),
            text: format!("Please erase everything about {misspelt}."),
            prompt: None,
            answer: None,
            subject: Some(misspelt),
            perturbed: vec![],
        };
        lines.push_str(&serde_json::to_string(&rec)?);
        lines.push('\n');
    }
    crate::atomic::write_atomic(path, lines.as_bytes())?;
    Ok(())
}

fn exact_match(model: &Gpt2, tok: &TextTokenizer, records: &[Record]) -> Result<f64> {
    let oracle = ModelOracle::open(model, tok)?;
    Ok(exact_match_rate(&oracle, records)?)
}

/// What every configuration of a comparison shares: the world, its tokenizer and encodings, and
/// the spec's two-sided attack requirements.
struct Bench {
    /// Where the runs go (`OUT/runs/…`).
    out: PathBuf,
    world: PathBuf,
    tok: TextTokenizer,
    forget: Vec<Record>,
    /// forget05, every fourth retain05 record, holdout_audit — encoded answer-only.
    enc: [Vec<Encoded>; 3],
    request: PathBuf,
    attacks: Spec,
}

pub fn run(args: ExperimentArgs) -> Result<ExitCode> {
    anyhow::ensure!(
        !args.family.is_empty(),
        "--family: name at least one family"
    );
    let bundled = |family| Bundled {
        root: &args.fixtures,
        family,
    };
    let world = bundled(ModelFamily::Gpt2).world();
    let tok = TextTokenizer::load(&world.join("tokenizer.json"))?;
    let read = |s: &str| read_records(&world.join(format!("{s}.jsonl")));
    // The unlearning calibrates on holdout_calibration; every measurement here is against
    // holdout_audit, people it never saw (DESIGN.md, "Honesty of a certificate", rule 4).
    let (forget, retain, holdout) = (read("forget05")?, read("retain05")?, read("holdout_audit")?);
    let enc = |r: &[Record]| tok.encode_all(r, true, 128);
    let (fe, he) = (enc(&forget)?, enc(&holdout)?);
    let re: Vec<Encoded> = enc(&retain)?.into_iter().step_by(4).collect();
    std::fs::create_dir_all(&args.out)?;
    let request = args.out.join("request.jsonl");
    fuzzy_request(&forget, &request)?;
    let attacks = Spec::bundled(SPEC)
        .with_context(|| format!("no bundled spec {SPEC}"))??
        .two_sided_attacks();
    let bench = Bench {
        out: args.out.clone(),
        world,
        tok,
        forget,
        enc: [fe, re, he],
        request,
        attacks,
    };
    let mut families = Vec::new();
    let mut aligned = Vec::new();
    for &family in &args.family {
        let b = bundled(family);
        let (full, ledger) = (b.full(), b.ledger());
        let rows = bench.compare(
            &format!("{}-full", family.name()),
            &full,
            "full model (no unlearning)",
            configs(),
            &ledger,
        )?;
        aligned.push(bench.alignment(
            &format!(
                "{}, from scratch (`{}`, `{}`)",
                family.name(),
                ledger.display(),
                full.display()
            ),
            &ledger,
            &full,
        )?);
        families.push(FamilyRows {
            family: family.name(),
            model: full.display().to_string(),
            rows,
        });
    }
    let mut finetuned = Vec::new();
    let gpt2 = bundled(ModelFamily::Gpt2);
    let wants_gpt2 = args.family.contains(&ModelFamily::Gpt2);
    if let Some(bundled_tune) = gpt2.finetuned().filter(|_| wants_gpt2) {
        let (tuned, tuned_ledger) = finetune_with_every_epoch(&gpt2, &bundled_tune, &args.out)?;
        finetuned = bench.compare(
            "gpt2-finetuned",
            &tuned,
            "fine-tuned model (no unlearning)",
            [
                ledger_epochs(
                    "first-epoch ledger, embedding",
                    "every-epoch ledger, embedding",
                ),
                vec![("gradient ascent, embedding", "ga", "embedding", vec![])],
            ]
            .concat(),
            &tuned_ledger,
        )?;
        aligned.push(bench.alignment("gpt2, fine-tuned (this run's)", &tuned_ledger, &tuned)?);
    }
    let epochs = match &args.ledger_all {
        Some(all) => {
            let model = args.ledger_model.clone().unwrap_or(gpt2.full());
            bench.compare(
                "ledger-all",
                &model,
                "that model (no unlearning)",
                ledger_epochs(
                    "its ledger's first epoch, embedding",
                    "its ledger's every epoch, embedding",
                ),
                all,
            )?
        }
        None => Vec::new(),
    };
    write_tables(
        &args.out,
        &Tables {
            families: &families,
            finetuned: &finetuned,
            alignment: &aligned,
            ledger_epochs: &epochs,
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

/// One family's comparison on its full model.
#[derive(Serialize)]
struct FamilyRows {
    family: &'static str,
    model: String,
    rows: Vec<Row>,
}

/// How well a ledger's first-epoch directions still point where each forget record's loss
/// rises at the model it belongs to.
#[derive(Serialize)]
struct Alignment {
    ledger: String,
    #[serde(flatten)]
    summary: crate::train::ledger::Alignment,
}

/// Repeats the bundled fine-tune `tuned` — `retrain05` trained further on the full corpus, with
/// the hyperparameters its `train.json` recorded — in a child process, recording a ledger of
/// every epoch for the forget05 records (not bundled: 12 times the first-epoch ledger's size).
/// Returns the model's and the ledger's folders under `OUT/runs/`.
fn finetune_with_every_epoch(
    bundled: &Bundled,
    tuned: &Path,
    out: &Path,
) -> Result<(PathBuf, PathBuf)> {
    let recorded = tuned.join("train.json");
    let log: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&recorded).with_context(|| recorded.display().to_string())?,
    )
    .with_context(|| recorded.display().to_string())?;
    let cfg: TrainConfig = serde_json::from_value(log["config"].clone())
        .with_context(|| format!("{}: field config", recorded.display()))?;
    let dir = out.join("runs").join("finetuned");
    let (model, ledger) = (dir.join("model"), dir.join("ledger-every-epoch"));
    let world = bundled.world();
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["--progress", "off", "train", "--init"])
        .arg(bundled.retrain05())
        .arg("--data")
        .arg(world.join("train_full.jsonl"))
        .arg("--tokenizer")
        .arg(world.join("tokenizer.json"))
        .arg("--out")
        .arg(&model)
        .arg("--ledger")
        .arg(&ledger)
        .args(["--ledger-epochs", "all", "--ledger-records"])
        .arg(world.join("forget05.jsonl"));
    for (flag, value) in [
        ("--epochs", cfg.epochs.to_string()),
        ("--batch-size", cfg.batch_size.to_string()),
        ("--lr", cfg.lr.to_string()),
        ("--warmup", cfg.warmup_steps.to_string()),
        ("--weight-decay", cfg.weight_decay.to_string()),
        ("--seed", cfg.seed.to_string()),
    ] {
        cmd.args([flag, &value]);
    }
    if let OptimizerConfig::Sgd { momentum } = cfg.optimizer {
        cmd.args(["--optimizer", "sgd", "--momentum", &momentum.to_string()]);
    }
    eprintln!("running: fine-tune with a ledger of every epoch");
    let status = cmd.status().context("running lethe train")?;
    anyhow::ensure!(status.success(), "the fine-tune failed");
    Ok((model, ledger))
}

impl Bench {
    /// The alignment of `ledger`'s first-epoch entries at `model_dir`, over forget05 encoded
    /// as in training (question and answer).
    fn alignment(&self, label: &str, ledger: &Path, model_dir: &Path) -> Result<Alignment> {
        let mut model = load_model(model_dir, DType::F32)?.model;
        let ledger = Ledger::load(ledger)?;
        let enc = self
            .forget
            .iter()
            .map(|r| self.tok.encode(r, false, 128))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Alignment {
            ledger: label.into(),
            summary: ledger.alignment_summary(&mut model, &enc, self.tok.pad_id(), 0)?,
        })
    }

    /// Measures `model_dir` as is, then unlearns forget05 from it with each configuration in a
    /// child process (its output under `OUT/runs/SECTION/`) and measures the result. `ledger`
    /// replaces the `LEDGER` placeholder.
    fn compare(
        &self,
        section: &str,
        model_dir: &Path,
        baseline: &str,
        configs: Vec<Config>,
        ledger: &Path,
    ) -> Result<Vec<Row>> {
        let world = &self.world;
        let original = load_model(model_dir, DType::F32)?.model;
        let start = Start {
            dir: model_dir,
            retain_loss: mean_loss(&original, &refs(&self.enc[1]), self.tok.pad_id(), 64)?.0,
        };
        drop(original);
        let mut rows = vec![self.measure(&start, baseline, "-", "-", model_dir, None)?];
        for (label, method, params, extra) in configs {
            let dir = self
                .out
                .join("runs")
                .join(section)
                .join(label.replace([',', ' ', '\''], "-"));
            let forget_arg = if extra.contains(&"fuzzy") {
                self.request.clone()
            } else {
                world.join("forget05.jsonl")
            };
            let mut cmd = Command::new(std::env::current_exe()?);
            cmd.args(["--progress", "off", "unlearn"])
                .arg(model_dir)
                .arg("--forget")
                .arg(&forget_arg);
            cmd.arg("--retain")
                .arg(world.join("retain05.jsonl"))
                .arg("--holdout")
                .arg(world.join("holdout_calibration.jsonl"));
            cmd.args(["--method", method, "--params", params])
                .arg("--out")
                .arg(&dir);
            for a in &extra {
                match *a {
                    "LEDGER" => cmd.arg(ledger),
                    "CORPUS" => cmd.arg(world.join("train_full.jsonl")),
                    _ => cmd.arg(a),
                };
            }
            eprintln!("running: {label}");
            let status = cmd.status().with_context(|| format!("running {label}"))?;
            anyhow::ensure!(status.success(), "{label}: lethe unlearn failed");
            let run: serde_json::Value =
                serde_json::from_slice(&std::fs::read(dir.join("unlearn.json"))?)?;
            rows.push(self.measure(&start, label, method, params, &dir, Some(&run))?);
        }
        Ok(rows)
    }

    /// Certifies `model_dir` against `original` as `lethe certify --no-influence
    /// --generated-records 0` would (forget05, retain05, holdout_audit as the non-members, the
    /// spec's seed) and judges the
    /// evidence on the spec's two-sided attack requirements. Returns the model as loaded, the
    /// evidence and the verdicts.
    fn audit(&self, original: &Path, model_dir: &Path) -> Result<(Gpt2, Evidence, Vec<Verdict>)> {
        let split = |s: &str| self.world.join(format!("{s}.jsonl"));
        let mut req = Request::new(
            original.to_path_buf(),
            model_dir.to_path_buf(),
            split("forget05"),
            split("retain05"),
            split("holdout_audit"),
        );
        req.seed = self.attacks.seed;
        req.influence = false;
        // The attacks score every record by loss, Min-K and gradient norm; greedy answers and
        // truth ratios (a seeded sample of each split, most of a certification's time) add
        // nothing to them, and exact match is measured below on every forget question.
        req.settings.generated_records = 0;
        let mut inputs = load_inputs(&req)?;
        let (evidence, _) = certify(&req, &mut inputs, &mut |_, _| {})?;
        let verdicts = evaluate(&self.attacks, &serde_json::to_value(&evidence)?, None)?;
        Ok((inputs.unlearned.model, evidence, verdicts))
    }

    /// Measures the model in `model_dir`, unlearned from `start` by `run` (`None`: `start`
    /// itself).
    fn measure(
        &self,
        start: &Start,
        label: &str,
        method: &str,
        params: &str,
        model_dir: &Path,
        run: Option<&serde_json::Value>,
    ) -> Result<Row> {
        eprintln!("auditing: {label}");
        let (model, evidence, verdicts) = self.audit(start.dir, model_dir)?;
        let model = &model;
        let (tok, forget, enc) = (&self.tok, &self.forget, &self.enc);
        let pad = tok.pad_id();
        let (f, _) = mean_loss(model, &refs(&enc[0]), pad, 64)?;
        let (r, _) = mean_loss(model, &refs(&enc[1]), pad, 64)?;
        let (h, _) = mean_loss(model, &refs(&enc[2]), pad, 64)?;
        let confidence = self.attacks.default_confidence;
        let loss = evidence
            .metrics
            .get("mia.loss.auc")
            .context("the evidence has no mia.loss.auc")?;
        let (worst_attack, worst) = farthest_from_chance(&evidence.metrics, "")
            .context("the evidence has no attack AUC with a 0.5 null")?;
        let outcome = run.map(|v| &v["outcome"]);
        let get = |k: &str| outcome.and_then(|o| o[k].as_f64()).unwrap_or(0.0);
        Ok(Row {
            config: label.into(),
            method: method.into(),
            params: params.into(),
            forget_records: run
                .and_then(|v| v["forget"]["records"].as_u64())
                .unwrap_or(enc[0].len() as u64) as usize,
            exact_match: exact_match(model, tok, forget)?,
            forget_over_holdout: f / h,
            retain_loss_ratio: r / start.retain_loss,
            loss_auc: Auc::of(loss, confidence)?,
            attack_verdict: overall(&verdicts),
            attack_verdicts: verdicts,
            worst_attack: worst_attack.into(),
            worst_auc: Auc::of(worst, confidence)?,
            steps: outcome
                .and_then(|o| o["steps"].as_array().map(Vec::len))
                .unwrap_or(0),
            stop: outcome
                .and_then(|o| o["stop_reason"].as_str().map(str::to_string))
                .unwrap_or_else(|| "-".into()),
            seconds: get("seconds"),
            peak_rss_mib: get("peak_rss_bytes") / (1024.0 * 1024.0),
        })
    }
}

/// The model a comparison unlearns from: its folder and its mean loss on the retain sample.
struct Start<'a> {
    dir: &'a Path,
    retain_loss: f64,
}

fn refs(v: &[Encoded]) -> Vec<&Encoded> {
    v.iter().collect()
}

const TABLE_HEAD: &str = "| configuration | records | exact match | forget/holdout | retain ratio | LOSS AUC [95% bounds] | two-sided attacks | worst attack AUC [95% bounds] | steps | stop | time (s) | peak RSS (MiB) |\n\
     |---|---:|---:|---:|---:|---|---|---|---:|---|---:|---:|\n";

fn table_rows(md: &mut String, rows: &[Row]) {
    let auc = |a: &Auc| format!("{:.3} [{:.3}, {:.3}]", a.value, a.low, a.high);
    for r in rows {
        md.push_str(&format!(
            "| {} | {} | {:.3} | {:.3} | {:.3} | {} | {} | {} {} | {} | {} | {:.1} | {:.0} |\n",
            r.config,
            r.forget_records,
            r.exact_match,
            r.forget_over_holdout,
            r.retain_loss_ratio,
            auc(&r.loss_auc),
            r.attack_verdict.as_str().to_lowercase(),
            r.worst_attack,
            auc(&r.worst_auc),
            r.steps,
            r.stop,
            r.seconds,
            r.peak_rss_mib
        ));
    }
}

#[derive(Serialize)]
struct Tables<'a> {
    /// Each family's comparison on its full model.
    families: &'a [FamilyRows],
    /// The seed paper's setting: unlearning forget05 from a fine-tuned model.
    finetuned: &'a [Row],
    /// Each first-epoch ledger's alignment with the forget records' gradients now.
    alignment: &'a [Alignment],
    /// First-epoch vs all-epoch replay of an optional `--ledger-all` ledger of a model trained
    /// from scratch.
    ledger_epochs: &'a [Row],
}

/// The families side by side, one row per configuration every family ran (the parameter-group
/// comparison: the seed paper's finding is that the embedding carries the effect).
fn side_by_side(md: &mut String, families: &[FamilyRows]) {
    md.push_str("| configuration |");
    let mut rule = String::from("|---|");
    for f in families {
        md.push_str(&format!(
            " {0}: exact match | {0}: forget/holdout | {0}: retain ratio | {0}: worst attack AUC [95% bounds] | {0}: two-sided attacks |",
            f.family
        ));
        rule.push_str("---:|---:|---:|---|---|");
    }
    md.push_str(&format!("\n{rule}\n"));
    let Some(first) = families.first() else {
        return;
    };
    for row in &first.rows {
        let cells: Option<Vec<String>> = families
            .iter()
            .map(|f| {
                let r = f.rows.iter().find(|r| r.config == row.config)?;
                Some(format!(
                    " {:.3} | {:.3} | {:.3} | {} {:.3} [{:.3}, {:.3}] | {} |",
                    r.exact_match,
                    r.forget_over_holdout,
                    r.retain_loss_ratio,
                    r.worst_attack,
                    r.worst_auc.value,
                    r.worst_auc.low,
                    r.worst_auc.high,
                    r.attack_verdict.as_str().to_lowercase()
                ))
            })
            .collect();
        if let Some(cells) = cells {
            md.push_str(&format!("| {} |{}\n", row.config, cells.concat()));
        }
    }
}

fn write_tables(out: &Path, t: &Tables) -> Result<()> {
    let mut md = String::from(
        "# Seed-paper comparisons on the bundled world (forget05 from the full model)\n\n\
         Made by `lethe experiment seed-paper`. Every unlearning run calibrates its stop rule on \
         `holdout_calibration`; every figure here is measured against `holdout_audit`, people the run \
         never saw. Exact match: greedy answers equal to the true answer on forget05's questions. \
         Forget/holdout: mean answer loss of the forget records over that of the audit holdout's \
         (1.0 = looks never seen). Retain ratio: retain answer loss after / before. The attack columns \
         come from the certifier's evidence (`lethe certify --no-influence --generated-records 0`, original = the row's \
         starting model, seed of gdpr-art17) and are judged by the certifier's code. LOSS AUC: the \
         LOSS membership attack, forget vs audit holdout. Two-sided attacks: the verdict on \
         gdpr-art17's two-sided attack requirements together (`specs/gdpr-art17.toml`: each attack's AUC \
         with both one-sided 95% bounds inside its requirement's interval around 0.5; fail if any fails, \
         inconclusive if any is, pass if all pass; each requirement's verdict is in `table.json`). Worst \
         attack AUC: of the attacks whose null is 0.5 (all but the reference attacks), the one farthest \
         from 0.5 on either side. \
         Every AUC carries its person-clustered (Obuchowski) one-sided 95% bounds, the bounds \
         gdpr-art17 judges on (together a 90% two-sided interval); 0.5 = indistinguishable. \
         Time and peak memory are the `lethe unlearn` child process's.\n\n\
         Each family's full model was trained from random weights on the whole world \
         (`fixtures/make.sh`; GPT-2: `models/full`, Llama: `models/llama-full`, 4 layers × 128, 4 heads, \
         the Llama one with 2 key/value heads, RMS norm, rotary positions, SwiGLU, a tied embedding, \
         stored in bfloat16), so its first-epoch ledger holds gradients taken near initialisation.\n\n\
         ## The families side by side\n\n",
    );
    side_by_side(&mut md, t.families);
    for f in t.families {
        md.push_str(&format!("\n## {} (`{}`)\n\n", f.family, f.model));
        md.push_str(TABLE_HEAD);
        table_rows(&mut md, &f.rows);
    }
    if !t.finetuned.is_empty() {
        md.push_str("\n## The seed paper's setting: the records learned by fine-tuning (GPT-2)\n\n\
        `models/retrain05` (trained on everything but forget05) fine-tuned on the full corpus, as \
        `fixtures/models/finetuned` was (the hyperparameters its `train.json` recorded), here with a ledger \
        of every fine-tuning epoch for the forget05 records; the first-epoch row replays only its epoch-0 \
        entries, which were taken when the model met those records for the first time.\n\n");
        md.push_str(TABLE_HEAD);
        table_rows(&mut md, t.finetuned);
    }
    md.push_str("\nWhy first-epoch ledgers differ: the cosine between each forget record's recorded \
        first-epoch gradient and its gradient at the finished model (`Ledger::alignment`; embedding, \
        input side of the token embedding, the question and answer as trained).\n\n\
        | first-epoch ledger | records | mean cosine | median cosine |\n|---|---:|---:|---:|\n");
    for a in t.alignment {
        md.push_str(&format!(
            "| {} | {} | {:.3} | {:.3} |\n",
            a.ledger, a.summary.records, a.summary.mean_cosine, a.summary.median_cosine
        ));
    }
    if t.ledger_epochs.is_empty() {
        md.push_str("\nNot run: the first-epoch vs all-epoch comparison on the model trained from scratch. An all-epoch ledger of it is 40 times the bundled one's size; record one with `fixtures/make.sh`'s training command plus `--ledger-epochs all` and pass it with `--ledger-all` (and `--ledger-model`).\n");
    } else {
        md.push_str("\n## First-epoch vs all-epoch ledger, trained from scratch\n\n\
            Both replayed from one ledger of every epoch (`--ledger-all`), recorded while training the model it \
            belongs to (`--ledger-model`) with `fixtures/make.sh`'s command plus `--ledger-epochs all`; the first-epoch \
            row uses only that ledger's epoch-0 entries. That ledger is not bundled (40 times the first-epoch \
            ledger's size).\n\n");
        md.push_str(TABLE_HEAD);
        table_rows(&mut md, t.ledger_epochs);
    }
    crate::atomic::write_atomic(&out.join("table.md"), md.as_bytes())?;
    crate::atomic::write_atomic(
        &out.join("table.json"),
        serde_json::to_string_pretty(t)?.as_bytes(),
    )?;
    print!("{md}");
    Ok(())
}
