//! `lethe inspect MODEL_DIR`: the configuration, parameter counts per group and file digests.

use crate::model::{load_model, params::block_of};
use anyhow::Result;
use candle_core::DType;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct InspectArgs {
    /// A Hugging Face GPT-2 directory (config.json, model.safetensors, tokenizer.json).
    model_dir: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: InspectArgs) -> Result<ExitCode> {
    let loaded = load_model(&args.model_dir, DType::F32)?;
    let m = &loaded.model;
    let cfg = m.config();
    let mut groups = vec![(
        "embedding".to_string(),
        m.count_params(|n| n == "transformer.wte.weight" || n == "transformer.wpe.weight"),
    )];
    for l in 0..cfg.n_layer {
        groups.push((
            format!("block:{l}"),
            m.count_params(|n| block_of(n) == Some(l)),
        ));
    }
    groups.push((
        "final_norm".into(),
        m.count_params(|n| n.starts_with("transformer.ln_f.")),
    ));
    groups.push(("all".into(), m.count_params(|_| true)));
    if args.json {
        let v = serde_json::json!({
            "dir": args.model_dir,
            "config": {"n_layer": cfg.n_layer, "n_head": cfg.n_head, "n_embd": cfg.n_embd,
                "vocab_size": cfg.vocab_size, "n_positions": cfg.n_positions,
                "layer_norm_epsilon": cfg.layer_norm_epsilon, "storage_dtype": format!("{:?}", loaded.storage_dtype)},
            "parameters": groups.iter().map(|(g, n)| serde_json::json!({"group": g, "count": n})).collect::<Vec<_>>(),
            "files": loaded.files,
        });
        println!("{v}");
        return Ok(ExitCode::SUCCESS);
    }
    println!("model      {}", args.model_dir.display());
    println!(
        "config     GPT-2, {} layers, {} heads, {} wide, vocab {}, context {}, eps {}, stored {:?}",
        cfg.n_layer,
        cfg.n_head,
        cfg.n_embd,
        cfg.vocab_size,
        cfg.n_positions,
        cfg.layer_norm_epsilon,
        loaded.storage_dtype
    );
    println!("\nparameters per group (wte is also the tied output layer)");
    for (g, n) in &groups {
        println!("  {g:<12} {n:>12}");
    }
    println!("\nfiles (sha256 of the bytes read)");
    for f in &loaded.files {
        println!("  {:<18} {:>10} bytes  {}", f.name, f.bytes, f.sha256);
    }
    Ok(ExitCode::SUCCESS)
}
