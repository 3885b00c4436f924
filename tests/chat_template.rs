//! Chat templates (`data::chat`): prompts rendered as transformers' `apply_chat_template` renders
//! them (tests/oracles/chat-templates, made with transformers 5.24.0), the template files found
//! where transformers writes them, hostile templates refused with the file named, and the chain:
//! `lethe unlearn` carries the template to the model it writes, and `lethe certify` renders the
//! prompts through it, records it in the evidence and refuses models whose templates differ.

use crate::common::*;
use lethe::data::TextTokenizer;
use std::path::{Path, PathBuf};

fn repo(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A folder with the bundled world's tokenizer and `config` as `tokenizer_config.json`.
fn tokenizer_dir(name: &str, config: &serde_json::Value) -> PathBuf {
    let dir = scratch(name);
    std::fs::copy(
        repo("fixtures/world/tokenizer.json"),
        dir.join("tokenizer.json"),
    )
    .unwrap();
    std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).unwrap();
    dir
}

fn oracle_cases() -> Vec<serde_json::Value> {
    let text = std::fs::read(oracle("chat-templates/expected.json")).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&text).unwrap();
    v["cases"].as_array().unwrap().clone()
}

#[test]
fn prompts_render_and_tokenize_as_transformers_does() {
    let cases = oracle_cases();
    assert_eq!(cases.len(), 8);
    for (i, case) in cases.iter().enumerate() {
        // The special tokens as transformers writes them: one a string, one an object.
        let config = serde_json::json!({
            "chat_template": case["source"],
            "bos_token": "<|endoftext|>",
            "eos_token": {"content": "<|endoftext|>", "special": true},
        });
        let dir = tokenizer_dir(&format!("chat-{i}"), &config);
        let tok = TextTokenizer::load(&dir.join("tokenizer.json")).unwrap();
        let prompt = case["prompt"].as_str().unwrap();
        let template = tok.chat_template.as_ref().expect("the template is found");
        assert_eq!(
            template.render_prompt(prompt).unwrap(),
            case["text"].as_str().unwrap(),
            "{}",
            case["template"]
        );
        let want: Vec<u32> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(
            tok.encode_prompt(prompt).unwrap(),
            want,
            "{}",
            case["template"]
        );
    }
}

#[test]
fn the_template_file_wins_and_named_templates_give_the_default() {
    let named = serde_json::json!({"chat_template": [
        {"name": "tool_use", "template": "TOOLS {{ messages[0]['content'] }}"},
        {"name": "default", "template": "DEFAULT {{ messages[0]['content'] }}"},
    ]});
    let dir = tokenizer_dir("chat-named", &named);
    let tok = TextTokenizer::load(&dir.join("tokenizer.json")).unwrap();
    let t = tok.chat_template.as_ref().unwrap();
    assert_eq!(t.render_prompt("q").unwrap(), "DEFAULT q");
    // transformers 4.43 and later write the template to chat_template.jinja.
    std::fs::write(
        dir.join("chat_template.jinja"),
        "FILE {{ messages[0].content }}",
    )
    .unwrap();
    let tok = TextTokenizer::load(&dir.join("tokenizer.json")).unwrap();
    let t = tok.chat_template.as_ref().unwrap();
    assert_eq!(t.render_prompt("q").unwrap(), "FILE q");
    assert!(t.path.ends_with("chat_template.jinja"));
    // No template at all: prompts are tokenized as written.
    let none = tokenizer_dir("chat-none", &serde_json::json!({"bos_token": "<s>"}));
    let tok = TextTokenizer::load(&none.join("tokenizer.json")).unwrap();
    assert!(tok.chat_template.is_none());
    assert_eq!(
        tok.encode_prompt("q a").unwrap(),
        tok.encode_text("q a").unwrap()
    );
}

fn load_error(config: &serde_json::Value, name: &str) -> String {
    let dir = tokenizer_dir(name, config);
    let result = TextTokenizer::load(&dir.join("tokenizer.json")).and_then(|tok| {
        tok.chat_template
            .as_ref()
            .map(|t| t.render_prompt("q"))
            .transpose()
    });
    result.expect_err("refused").to_string()
}

#[test]
fn hostile_or_broken_templates_are_refused_with_the_file_named() {
    let cases = [
        // A loop of 10^8 steps: out of fuel, in well under a second.
        (
            "{% for i in range(10000) %}{% for j in range(10000) %}x{% endfor %}{% endfor %}",
            "steps of work",
        ),
        (
            "{{ raise_exception('only system turns') }}",
            "only system turns",
        ),
        ("{% for m in messages %}", "chat template"),
    ];
    for (i, (source, says)) in cases.iter().enumerate() {
        let started = std::time::Instant::now();
        let err = load_error(
            &serde_json::json!({ "chat_template": source }),
            &format!("chat-bad-{i}"),
        );
        assert!(err.contains("tokenizer_config.json"), "{err}");
        assert!(err.contains(says), "{err}");
        assert!(started.elapsed().as_secs_f64() < 5.0, "{err}");
    }
    for (i, config) in [
        serde_json::json!({"chat_template": 7}),
        serde_json::json!({"chat_template": [{"name": "tool_use", "template": "x"}]}),
    ]
    .iter()
    .enumerate()
    {
        let err = load_error(config, &format!("chat-field-{i}"));
        assert!(err.contains("field chat_template"), "{err}");
    }
}

/// A copy of the bundled GPT-2 full model with a ChatML template beside its tokenizer.
fn with_template(name: &str, template: &str) -> PathBuf {
    let dir = scratch(name);
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(repo("fixtures/models/full").join(f), dir.join(f)).unwrap();
    }
    let config = serde_json::json!({"chat_template": template, "eos_token": "<|endoftext|>"});
    std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).unwrap();
    dir
}

fn world(split: &str) -> String {
    repo(&format!("fixtures/world/{split}.jsonl"))
        .display()
        .to_string()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn unlearn_carries_the_template_and_certify_records_it() {
    let chatml = oracle_cases()[2]["source"].as_str().unwrap().to_string();
    let original = with_template("chat-original", &chatml);
    let out = scratch("chat-run");
    let unlearned = out.join("unlearned");
    let run = lethe(&[
        "unlearn",
        s(&original),
        "--forget",
        &world("forget05"),
        "--retain",
        &world("retain05"),
        "--holdout",
        &world("holdout_calibration"),
        "--max-steps",
        "2",
        "--out",
        s(&unlearned),
    ]);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        std::fs::read(unlearned.join("tokenizer_config.json")).unwrap(),
        std::fs::read(original.join("tokenizer_config.json")).unwrap()
    );
    let certify = |reference: &Path, cert: &str| {
        lethe(&[
            "certify",
            "--original",
            s(&original),
            "--unlearned",
            s(&unlearned),
            "--reference",
            s(reference),
            "--forget",
            &world("forget05"),
            "--retain",
            &world("retain05"),
            "--holdout",
            &world("holdout_audit"),
            "--no-influence",
            "--out",
            s(&out.join(cert)),
        ])
    };
    let run = certify(&original, "cert");
    // Certified or not (two steps of unlearning), it ran: exit 0 or 1.
    assert!(
        matches!(run.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let evidence: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("cert/evidence.json")).unwrap()).unwrap();
    let used = &evidence["chat_template"];
    assert_eq!(used["file"], "tokenizer_config.json");
    assert_eq!(
        used["source_sha256"].as_str().unwrap(),
        lethe::digest::sha256_hex(chatml.as_bytes())
    );
    // The template's file is one of the unlearned model's measured (and signed) files.
    let files = evidence["models"]["unlearned"]["files"].as_array().unwrap();
    assert!(
        files.iter().any(|f| f["name"] == "tokenizer_config.json"),
        "{files:?}"
    );

    // A reference without the template would see other prompts: refused, both folders named.
    let plain = repo("fixtures/models/full");
    let run = certify(&plain, "cert-mismatch");
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{err}");
    assert!(
        err.contains("different chat templates") && err.contains(s(&plain)),
        "{err}"
    );
}
