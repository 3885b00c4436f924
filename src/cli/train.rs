//! `lethe train`: trains a GPT-2 on a JSONL corpus — from scratch, or fine-tuning a model in
//! Hugging Face layout (`--init`), the seed paper's setting — with AdamW (or SGD with momentum,
//! `--optimizer sgd`), warm-up and cosine schedule and a fixed seed, checkpointing in Hugging Face layout after every epoch and
//! recording the first-epoch gradient ledger on the way.

use super::bundled::ModelFamily;
use super::progress::{Progress, ProgressMode};
use crate::data::{read_records, Encoded, TextTokenizer};
use crate::model::{init::random_model, load_model, Gpt2, Gpt2Config, ParamGroups};
use crate::output::check_output;
use crate::train::{
    ledger::LedgerEpochs, train, trainer::EpochLog, LedgerRecorder, OptimizerConfig, TrainConfig,
};
use anyhow::Result;
use candle_core::DType;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct TrainArgs {
    /// Training records, JSONL.
    #[arg(long)]
    data: PathBuf,
    /// The tokenizer.json to use (copied into the output).
    #[arg(long)]
    tokenizer: PathBuf,
    /// Output model folder (Hugging Face layout), replaced whole after every epoch. It may not be
    /// or hold any input.
    #[arg(long)]
    out: PathBuf,
    /// Replace the output folder (and the ledger folder) if they exist and are not empty.
    #[arg(long)]
    force: bool,
    /// Fine-tune this model (Hugging Face layout, safetensors) instead of starting from random
    /// weights; its family, shape and storage dtype replace the flags below.
    #[arg(long)]
    init: Option<PathBuf>,
    /// The family of a fresh model: GPT-2, or Llama (RMS norm, rotary positions, SwiGLU,
    /// grouped-query attention).
    #[arg(long, value_enum, default_value_t = ModelFamily::Gpt2)]
    family: ModelFamily,
    #[arg(long, default_value_t = 4)]
    layers: usize,
    #[arg(long, default_value_t = 128)]
    width: usize,
    #[arg(long, default_value_t = 4)]
    heads: usize,
    /// Key/value heads of a Llama model (grouped-query attention; must divide --heads)
    /// [default: --heads].
    #[arg(long)]
    kv_heads: Option<usize>,
    /// The MLP's inner width [default: GPT-2 4 × width; Llama 8/3 × width, rounded up to a
    /// multiple of 8].
    #[arg(long)]
    inner: Option<usize>,
    /// Give a Llama model its own output layer instead of tying it to the token embedding.
    #[arg(long)]
    untied: bool,
    /// Context length (position table size).
    #[arg(long, default_value_t = 128)]
    ctx: usize,
    /// The dtype a fresh model is saved in (training is in float32 in memory) [default:
    /// float32]. A fine-tuned model keeps its own.
    #[arg(long, value_enum, conflicts_with = "init")]
    dtype: Option<StorageArg>,
    #[arg(long, default_value_t = TrainConfig::default().epochs)]
    epochs: usize,
    #[arg(long, default_value_t = TrainConfig::default().batch_size)]
    batch_size: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = TrainConfig::default().lr)]
    lr: f64,
    #[arg(long, default_value_t = TrainConfig::default().warmup_steps)]
    warmup: usize,
    #[arg(long, default_value_t = TrainConfig::default().weight_decay)]
    weight_decay: f64,
    /// The optimiser: AdamW, or SGD with heavy-ball momentum.
    #[arg(long, value_enum, default_value_t = Optimizer::Adamw)]
    optimizer: Optimizer,
    /// SGD's momentum, in [0, 1) (0 = plain SGD) [default: 0.9]. Only with --optimizer sgd.
    #[arg(long)]
    momentum: Option<f64>,
    /// Seed of the initial weights and of the shuffle.
    #[arg(long, default_value_t = TrainConfig::default().seed)]
    seed: u64,
    /// Record the gradient ledger into this folder.
    #[arg(long)]
    ledger: Option<PathBuf>,
    /// Parameter groups the ledger records.
    #[arg(long, default_value = "embedding")]
    ledger_groups: String,
    /// Record the first epoch only, or every epoch (for the multi-epoch comparison).
    #[arg(long, value_enum, default_value_t = LedgerEpochs::First)]
    ledger_epochs: LedgerEpochs,
    /// Record ledger entries only for the ids in this JSONL file (default: every record).
    #[arg(long)]
    ledger_records: Option<PathBuf>,
}

/// The `--dtype` values, named as `config.json` names them.
#[derive(Clone, Copy, clap::ValueEnum)]
enum StorageArg {
    Float32,
    Bfloat16,
    Float16,
}

impl StorageArg {
    fn name(self) -> &'static str {
        match self {
            StorageArg::Float32 => "float32",
            StorageArg::Bfloat16 => "bfloat16",
            StorageArg::Float16 => "float16",
        }
    }
}

/// The `--optimizer` values.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Optimizer {
    Adamw,
    Sgd,
}

/// SGD's momentum when `--momentum` is not given.
const DEFAULT_MOMENTUM: f64 = 0.9;

impl TrainArgs {
    /// The training settings the flags give.
    fn train_config(&self) -> Result<TrainConfig> {
        Ok(TrainConfig {
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            warmup_steps: self.warmup,
            weight_decay: self.weight_decay,
            seed: self.seed,
            optimizer: self.optimizer()?,
            ..Default::default()
        })
    }

    /// `--optimizer` with its `--momentum`, which AdamW does not take.
    fn optimizer(&self) -> Result<OptimizerConfig> {
        let chosen = match (self.optimizer, self.momentum) {
            (Optimizer::Adamw, None) => OptimizerConfig::Adamw,
            (Optimizer::Adamw, Some(_)) => {
                anyhow::bail!("--momentum applies to --optimizer sgd only")
            }
            (Optimizer::Sgd, momentum) => OptimizerConfig::Sgd {
                momentum: momentum.unwrap_or(DEFAULT_MOMENTUM),
            },
        };
        chosen.check()?;
        Ok(chosen)
    }

    /// Every file or folder the command reads.
    fn inputs(&self) -> Vec<&Path> {
        let required = [&self.data, &self.tokenizer];
        let optional = [self.init.as_ref(), self.ledger_records.as_ref()];
        let all = required.into_iter().chain(optional.into_iter().flatten());
        all.map(PathBuf::as_path).collect()
    }
}

pub fn run(args: TrainArgs, progress: ProgressMode) -> Result<ExitCode> {
    let tcfg = args.train_config()?;
    let inputs = args.inputs();
    for out in std::iter::once(&args.out).chain(&args.ledger) {
        check_output(out, &inputs, args.force)?;
    }
    let groups: ParamGroups = args.ledger_groups.parse()?;
    let tok = TextTokenizer::load(&args.tokenizer)?;
    let mut model = initial_model(&args, &tok)?;
    let ctx = model.config().n_positions;
    let data: Vec<Encoded> = read_records(&args.data)?
        .iter()
        .map(|r| tok.encode(r, false, ctx))
        .collect::<Result<_, _>>()?;
    let only = match &args.ledger_records {
        Some(p) => Some(read_records(p)?.into_iter().map(|r| r.id).collect()),
        None => None,
    };
    let mut recorder = args
        .ledger
        .as_ref()
        .map(|_| LedgerRecorder::new(groups, args.ledger_epochs, only));
    let total = (data.len().div_ceil(tcfg.batch_size) * tcfg.epochs) as u64;
    let mut bar = Progress::new(progress, "train", total);
    let started = std::time::Instant::now();
    let logs = train(
        &mut model,
        &data,
        &tcfg,
        tok.pad_id(),
        &args.out,
        &tok.files(),
        recorder.as_mut(),
        |s| {
            bar.inc(
                1,
                &format!(
                    "epoch {} loss {:.4} {:.0} tok/s",
                    s.epoch + 1,
                    s.loss,
                    s.tokens_per_s
                ),
            )
        },
    )?;
    bar.finish();
    let seconds = started.elapsed().as_secs_f64();
    write_outcome(&args, &tcfg, &logs, data.len(), seconds, recorder)?;
    Ok(ExitCode::SUCCESS)
}

/// The model to train: `--init`'s, which must share the tokenizer's vocabulary, or a fresh
/// model of the given family and shape.
fn initial_model(args: &TrainArgs, tok: &TextTokenizer) -> Result<Gpt2> {
    Ok(match &args.init {
        Some(dir) => {
            let m = load_model(dir, DType::F32)?.model;
            if m.config().vocab_size != tok.vocab_size() {
                anyhow::bail!(
                    "{}: the model's vocabulary has {} entries, the tokenizer {} has {}",
                    dir.display(),
                    m.config().vocab_size,
                    args.tokenizer.display(),
                    tok.vocab_size()
                );
            }
            m
        }
        None => {
            let cfg = fresh_config(args, tok)?;
            random_model(&cfg, args.seed, DType::F32)?
        }
    })
}

/// The config of a fresh model from the shape flags, refusing those its family does not take.
fn fresh_config(args: &TrainArgs, tok: &TextTokenizer) -> Result<Gpt2Config> {
    let (v, ctx, w, l, h) = (
        tok.vocab_size(),
        args.ctx,
        args.width,
        args.layers,
        args.heads,
    );
    let base = match args.family {
        ModelFamily::Gpt2 => {
            if args.kv_heads.is_some() || args.untied {
                anyhow::bail!("--kv-heads and --untied apply to --family llama only");
            }
            let mut cfg = Gpt2Config::new(v, ctx, w, l, h);
            cfg.n_inner = args.inner;
            cfg
        }
        ModelFamily::Llama => {
            let inner = args.inner.unwrap_or((8 * w).div_ceil(3).div_ceil(8) * 8);
            let kv = args.kv_heads.unwrap_or(h);
            Gpt2Config::new_llama(v, ctx, w, l, h, kv, inner)?
                .with_fields(serde_json::json!({"tie_word_embeddings": !args.untied}))?
        }
    };
    Ok(base.with_fields(serde_json::json!({
        "eos_token_id": tok.eos_id, "dtype": args.dtype.unwrap_or(StorageArg::Float32).name(),
    }))?)
}

/// Writes `train.json` beside the model and the ledger when asked, and prints the summary.
fn write_outcome(
    args: &TrainArgs,
    tcfg: &TrainConfig,
    logs: &[EpochLog],
    records: usize,
    seconds: f64,
    recorder: Option<LedgerRecorder>,
) -> Result<()> {
    let model_bytes = std::fs::read(args.out.join("model.safetensors"))?;
    let model_sha = crate::digest::sha256_hex(&model_bytes);
    let log = serde_json::json!({
        "data": args.data, "init": args.init, "lethe_commit": env!("LETHE_COMMIT"), "config": tcfg, "seconds": seconds, "epochs": logs, "model_sha256": model_sha,
    });
    crate::atomic::write_atomic(
        &args.out.join("train.json"),
        serde_json::to_string_pretty(&log)?.as_bytes(),
    )?;
    if let (Some(dir), Some(rec)) = (&args.ledger, recorder) {
        let index = rec.save(dir, &model_sha)?;
        let bytes: usize = index.entries.iter().map(|e| e.bytes).sum();
        println!(
            "ledger      {} entries, {} bytes ({} per entry), {}",
            index.entries.len(),
            bytes,
            bytes / index.entries.len().max(1),
            dir.display()
        );
    }
    let last = logs.last().map(|l| l.mean_loss).unwrap_or(f64::NAN);
    println!(
        "trained     {} records, {} epochs, final mean loss {last:.4}, {seconds:.1} s",
        records, tcfg.epochs
    );
    println!(
        "model       {} (model.safetensors sha256 {model_sha})",
        args.out.display()
    );
    Ok(())
}
