//! `lethe inspect MODEL_DIR`: the configuration, parameter counts per group, the chat template
//! (if the model ships one) and file digests.

use crate::model::params::Group;
use crate::model::{load_model, ParamGroups};
use anyhow::Result;
use candle_core::DType;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct InspectArgs {
    /// A Hugging Face model directory (config.json, model.safetensors or shards, tokenizer.json).
    model_dir: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: InspectArgs) -> Result<ExitCode> {
    let loaded = load_model(&args.model_dir, DType::F32)?;
    let m = &loaded.model;
    let cfg = m.config();
    let mut parts = vec![Group::Embedding];
    if !cfg.tied() {
        parts.push(Group::Head);
    }
    parts.extend((0..cfg.n_layer).map(|l| Group::Blocks(l, l)));
    parts.extend([Group::FinalNorm, Group::All]);
    let mut groups = Vec::with_capacity(parts.len());
    for g in parts {
        let names = ParamGroups(vec![g])
            .select(cfg)
            .map_err(anyhow::Error::msg)?;
        groups.push((g.to_string(), m.count_params(|n| names.contains(n))));
    }
    // Where a chat template is, and the prompt it makes of a question (as lethe renders
    // question–answer prompts).
    let template = crate::data::chat::ChatTemplate::find(&args.model_dir)?;
    let example = template
        .as_ref()
        .map(|t| t.render_prompt("QUESTION"))
        .transpose()?;
    if args.json {
        let v = serde_json::json!({
            "dir": args.model_dir,
            "config": {"model_type": cfg.model_type(), "n_layer": cfg.n_layer, "n_kv_head": cfg.arch.n_kv_head, "n_head": cfg.n_head, "n_embd": cfg.n_embd,
                "vocab_size": cfg.vocab_size, "n_positions": cfg.n_positions,
                "layer_norm_epsilon": cfg.layer_norm_epsilon, "storage_dtype": format!("{:?}", loaded.storage_dtype)},
            "parameters": groups.iter().map(|(g, n)| serde_json::json!({"group": g, "count": n})).collect::<Vec<_>>(),
            "files": loaded.files,
            "chat_template": template.as_ref().map(|t| serde_json::json!({
                "file": t.path, "source_sha256": crate::digest::sha256_hex(t.source().as_bytes()),
                "prompt_of_QUESTION": example,
            })),
        });
        println!("{v}");
        return Ok(ExitCode::SUCCESS);
    }
    println!("model      {}", args.model_dir.display());
    println!(
        "config     {}, {} layers, {} heads ({} key/value), {} wide, vocab {}, context {}, eps {}, stored {:?}",
        cfg.model_type(),
        cfg.n_layer,
        cfg.n_head,
        cfg.arch.n_kv_head,
        cfg.n_embd,
        cfg.vocab_size,
        cfg.n_positions,
        cfg.layer_norm_epsilon,
        loaded.storage_dtype
    );
    if cfg.tied() {
        println!("\nparameters per group (the token embedding is also the tied output layer)");
    } else {
        println!("\nparameters per group");
    }
    for (g, n) in &groups {
        println!("  {g:<12} {n:>12}");
    }
    match (&template, &example) {
        (Some(t), Some(e)) => println!(
            "\nchat template {} (question–answer prompts are rendered through it): QUESTION becomes {e:?}",
            t.path.display()
        ),
        _ => println!("\nchat template none (prompts are tokenized as written)"),
    }
    println!("\nfiles (sha256 of the bytes read)");
    for f in &loaded.files {
        println!("  {:<32} {:>10} bytes  {}", f.name, f.bytes, f.sha256);
    }
    Ok(ExitCode::SUCCESS)
}
