//! A model directory, tokenizer or data file from a hostile party gives a clear error naming the
//! file (and field, line or pattern), quickly: never an abort on allocation, a hang, a read of
//! gigabytes or minutes of regex backtracking. One test per item of issue 15's "untrusted model
//! directory / data" list. Every hostile file is built here, in a scratch folder; large ones
//! are sparse and cost no disk.

use crate::common::*;
use candle_core::DType;
use lethe::data::{read_records, read_records_hashed, DataError, TextTokenizer};
use lethe::model::{load_model, LoadError};
use lethe::untrusted::ReadError;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A copy of the oracle's tiny GPT-2 (vocab 512, 64 positions, width 64, 4 heads, 2 layers)
/// with the world's tokenizer beside it.
fn model_copy(name: &str) -> PathBuf {
    let dir = scratch(name);
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(oracle("tiny-gpt2").join(f), dir.join(f)).unwrap();
    }
    std::fs::copy(world_tokenizer(), dir.join("tokenizer.json")).unwrap();
    dir
}

fn world_tokenizer() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/world/tokenizer.json")
}

/// Runs `f` on another thread and fails the test if it takes longer than `secs` (a hang
/// would otherwise stall the whole test binary).
fn within<T: Send + 'static>(secs: u64, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .unwrap_or_else(|_| panic!("{what} did not return within {secs} s"))
}

fn load_err(dir: &Path) -> LoadError {
    let d = dir.to_path_buf();
    match within(20, "load_model", move || load_model(&d, DType::F32).err()) {
        None => panic!("{} loaded", dir.display()),
        Some(e) => e,
    }
}

fn assert_names(msg: &str, what: &str) {
    assert!(msg.contains(what), "error {msg:?} does not name {what:?}");
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(path, serde_json::to_vec(&v).unwrap()).unwrap();
}

#[test]
fn config_sizes_beyond_the_weights_are_refused_before_allocating() {
    let big = 1_000_000_000_000u64;
    for (field, value) in [
        ("n_layer", big),
        ("vocab_size", big),
        ("n_positions", big),
        ("n_embd", 4 * big), // a multiple of n_head, so only its size is wrong
    ] {
        let dir = model_copy(&format!("huge-{field}"));
        edit_json(&dir.join("config.json"), |v| v[field] = value.into());
        let e = load_err(&dir);
        assert!(
            matches!(&e, LoadError::ConfigExceedsWeights { field: f, .. } if *f == field),
            "{field}: {e}"
        );
        let msg = e.to_string();
        assert_names(&msg, "config.json");
        assert_names(&msg, "model.safetensors");
        assert_names(&msg, &format!("{field} is {value}"));
    }
}

#[test]
fn sparse_weights_file_is_refused_without_being_read() {
    // The oracle's header and tensors, followed by 20 GiB of holes.
    let dir = model_copy("sparse-tail");
    let p = dir.join("model.safetensors");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(20 << 30)
        .unwrap();
    let e = load_err(&dir);
    assert!(matches!(e, LoadError::Malformed { .. }), "{e}");
    assert_names(&e.to_string(), "model.safetensors");
    assert_names(&e.to_string(), "bytes follow");
}

/// Writes a safetensors file whose header declares the oracle's tensors but `wte` with
/// `vocab` rows, and whose length matches that header (the data is one sparse hole).
fn write_declared_weights(path: &Path, vocab: usize) -> u64 {
    let map = candle_core::safetensors::load(
        oracle("tiny-gpt2/model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let mut names: Vec<_> = map.keys().cloned().collect();
    names.sort();
    let (mut header, mut offset) = (serde_json::Map::new(), 0usize);
    for name in names {
        let mut shape = map[&name].dims().to_vec();
        if name == "transformer.wte.weight" {
            shape[0] = vocab;
        }
        let len = 4 * shape.iter().product::<usize>();
        header.insert(
            name,
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len]}),
        );
        offset += len;
    }
    let h = serde_json::to_vec(&header).unwrap();
    let mut bytes = (h.len() as u64).to_le_bytes().to_vec();
    bytes.extend(&h);
    std::fs::write(path, &bytes).unwrap();
    let total = (bytes.len() + offset) as u64;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_len(total).unwrap();
    total
}

#[test]
fn header_declaring_more_than_the_config_is_refused_before_reading_data() {
    let dir = model_copy("sparse-declared");
    // 80 Mi rows of 64 floats: a 20 GiB embedding, consistent with the file's length.
    let total = write_declared_weights(&dir.join("model.safetensors"), 80 << 20);
    assert!(total > 20 << 30);
    let e = load_err(&dir);
    assert!(matches!(e, LoadError::Shape { .. }), "{e}");
    assert_names(&e.to_string(), "transformer.wte.weight");
    // The same header with a config that believes it: the data is read only after the checks,
    // so a file shorter than its header is refused from its length, not after reading it.
    let dir = model_copy("short-declared");
    write_declared_weights(&dir.join("model.safetensors"), 80 << 20);
    let p = dir.join("model.safetensors");
    let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    f.set_len(1 << 20).unwrap();
    edit_json(&dir.join("config.json"), |v| {
        v["vocab_size"] = (80 << 20).into()
    });
    let e = load_err(&dir);
    assert!(matches!(e, LoadError::Truncated { .. }), "{e}");
    assert_names(&e.to_string(), "model.safetensors");
}

fn mkfifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    let ok = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mkfifo {}", path.display());
}

fn assert_not_regular(msg: &str, path: &Path, kind: &str) {
    assert_names(msg, &path.display().to_string());
    assert_names(msg, &format!("not a regular file (it is a {kind})"));
}

#[test]
fn fifo_or_directory_as_a_model_file_is_refused_without_hanging() {
    for name in ["config.json", "model.safetensors", "tokenizer.json"] {
        let dir = model_copy(&format!("fifo-{name}"));
        mkfifo(&dir.join(name));
        let e = load_err(&dir);
        assert!(
            matches!(e, LoadError::Read(ReadError::NotRegular { .. })),
            "{e}"
        );
        assert_not_regular(&e.to_string(), &dir.join(name), "FIFO");

        let dir = model_copy(&format!("dir-{name}"));
        std::fs::remove_file(dir.join(name)).unwrap();
        std::fs::create_dir(dir.join(name)).unwrap();
        let e = load_err(&dir);
        assert_not_regular(&e.to_string(), &dir.join(name), "directory");
    }
}

#[test]
fn fifo_device_or_directory_as_tokenizer_or_data_is_refused_without_hanging() {
    let dir = scratch("fifo-data");
    let fifo = dir.join("fifo");
    mkfifo(&fifo);
    let device = dir.join("zero.jsonl");
    std::os::unix::fs::symlink("/dev/zero", &device).unwrap();
    for (path, kind) in [
        (fifo, "FIFO"),
        (device, "device"),
        (dir.clone(), "directory"),
    ] {
        let p = path.clone();
        let e = within(20, "TextTokenizer::load", move || {
            TextTokenizer::load(&p).err().map(|e| e.to_string())
        });
        assert_not_regular(&e.expect("loaded a tokenizer"), &path, kind);
        let p = path.clone();
        let e = within(20, "read_records", move || read_records(&p).err());
        let e = e.expect("read records");
        assert!(
            matches!(e, DataError::Read(ReadError::NotRegular { .. })),
            "{e}"
        );
        assert_not_regular(&e.to_string(), &path, kind);
    }
}

/// The world's tokenizer with `edit` applied, saved in a scratch folder.
fn tokenizer_with(name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    let p = scratch(name).join("tokenizer.json");
    std::fs::copy(world_tokenizer(), &p).unwrap();
    edit_json(&p, edit);
    p
}

fn split(pattern: &str) -> serde_json::Value {
    serde_json::json!({"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false},
        {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}
    ]})
}

#[test]
fn backtracking_regexes_in_tokenizer_json_are_refused() {
    let bad = r"(?<=(x|xx)*)(a|a)*c";
    let p = tokenizer_with("regex-pre", |v| v["pre_tokenizer"] = split(bad));
    let e = TextTokenizer::load(&p)
        .err()
        .expect("loaded a backtracking regex");
    assert!(matches!(e, DataError::UnsafeRegex { .. }), "{e}");
    assert_names(&e.to_string(), &p.display().to_string());
    assert_names(&e.to_string(), bad);
    // In a normalizer too, and a backreference as well as look-around.
    let p = tokenizer_with(
        "regex-norm",
        |v| {
            v["normalizer"] = serde_json::json!({"type": "Replace", "pattern": {"Regex": r"(a)\1"}, "content": "b"})
        },
    );
    let e = TextTokenizer::load(&p)
        .err()
        .expect("loaded a backreference");
    assert_names(&e.to_string(), r"(a)\1");
}

#[test]
fn gpt2_pattern_spelled_out_as_a_split_still_loads_with_identical_ids() {
    let gpt2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
    let p = tokenizer_with("regex-gpt2", |v| v["pre_tokenizer"] = split(gpt2));
    let split = TextTokenizer::load(&p).unwrap();
    let builtin = TextTokenizer::load(&world_tokenizer()).unwrap();
    for text in [
        "Alice was born in 1987 in Paris.",
        "  two  spaces,\ttabs\nand newlines\n\n ",
        "it's what we'll do; they've 3,141 £s!",
    ] {
        assert_eq!(
            split.encode_text(text).unwrap(),
            builtin.encode_text(text).unwrap(),
            "{text:?}"
        );
    }
}

#[test]
fn expanding_replace_normalizer_is_refused_and_texts_are_capped() {
    let p = tokenizer_with("expand", |v| {
        v["normalizer"] = serde_json::json!(
            {"type": "Replace", "pattern": {"String": "a"}, "content": "a".repeat(10_000)})
    });
    let e = TextTokenizer::load(&p)
        .err()
        .expect("loaded a 10,000-fold normalizer");
    assert!(matches!(e, DataError::Expansion { .. }), "{e}");
    assert_names(&e.to_string(), &p.display().to_string());
    let tok = TextTokenizer::load(&world_tokenizer()).unwrap();
    let long = "a ".repeat(lethe::data::tokenize::MAX_TEXT_BYTES / 2 + 1);
    let e = tok.encode_text(&long).unwrap_err();
    assert_names(&e.to_string(), "limit");
}

#[test]
fn jsonl_repeated_key_names_file_line_and_key() {
    let p = scratch("dup-key").join("data.jsonl");
    std::fs::write(
        &p,
        b"{\"id\":\"z\",\"text\":\"ok\"}\n{\"id\":\"a\",\"id\":\"b\",\"text\":\"x\"}\n",
    )
    .unwrap();
    let e = read_records(&p).unwrap_err();
    assert!(
        matches!(&e, DataError::DuplicateKey { line: 2, key, .. } if key == "id"),
        "{e}"
    );
    assert!(
        e.to_string().starts_with(&format!("{}:2:", p.display())),
        "{e}"
    );
    assert_names(&e.to_string(), "\"id\"");
}

#[test]
fn inputs_and_their_digests_come_from_one_read() {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/world/forget01.jsonl");
    let (records, hash) = read_records_hashed(&p).unwrap();
    assert_eq!(records, read_records(&p).unwrap());
    let bytes = std::fs::read(&p).unwrap();
    assert_eq!(hash.bytes, bytes.len() as u64);
    assert_eq!(hash.sha256, lethe::model::load::digest("", &bytes).sha256);
    // The tokenizer digested while loading a model is handed over, to be built from.
    let dir = model_copy("tokenizer-once");
    let loaded = load_model(&dir, DType::F32).unwrap();
    let json = loaded.tokenizer_json.expect("tokenizer.json bytes");
    let sha = &loaded
        .files
        .iter()
        .find(|f| f.name == "tokenizer.json")
        .unwrap()
        .sha256;
    assert_eq!(&lethe::model::load::digest("", &json).sha256, sha);
    let tok = TextTokenizer::from_bytes(&dir.join("tokenizer.json"), json).unwrap();
    let world = TextTokenizer::load(&world_tokenizer()).unwrap();
    assert_eq!(tok.json(), world.json());
    assert_eq!(
        tok.encode_text("Alice was born").unwrap(),
        world.encode_text("Alice was born").unwrap()
    );
}
