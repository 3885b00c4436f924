//! Vetting a `tokenizer.json` from a possibly hostile party before the `tokenizers` crate builds
//! it. This module owns two refusals; it does not tokenize (`tokenize`).
//!
//! **Regexes.** `tokenizers` compiles every `"pattern": {"Regex": …}` (Split pre-tokenizers,
//! Replace normalizers and decoders) with fancy-regex, which falls back to backtracking for
//! look-around and backreferences; its backtracking limit does not bound look-behind, so
//! `(?<=(x|xx)*)(a|a)*c` takes minutes on a 1 MiB record. A pattern is accepted when
//! `regex-syntax` parses it: that is the syntax of the `regex` crate, which has no look-around
//! and no backreferences and which fancy-regex hands such patterns to, so it runs in time
//! linear in the text. We vet the syntax instead of bounding run time because a time limit would
//! make tokenization depend on the machine, and ids must be reproducible. One exception is made
//! by exact string, not by shape: GPT-2's byte-level pre-tokenizer pattern (and its compact
//! spelling), whose only look-around is `\s+(?!\S)`, a one-character look-ahead after a run of
//! whitespace that fails at most once per run. Tokenizers exported from GPT-2 spell it out in a
//! Split pre-tokenizer, so it must keep loading; a general rule for "harmless" look-around would
//! be a second regex engine's worth of analysis.
//!
//! **Expansion.** A Replace normalizer that turns `a` into 10,000 `a`s makes a 1 MiB record a
//! 10 GB string. Each Replace's growth factor is its content length over the shortest text its
//! pattern matches (a pattern that can match the empty string inserts at every position); the
//! product over the whole file must stay within [`MAX_EXPANSION`]. Unicode normalization forms
//! grow text by a bounded factor and are not counted.

use super::jsonl::DataError;
use serde_json::Value;
use std::path::Path;

/// The largest growth of text by all Replace steps of a tokenizer together. Llama-style
/// tokenizers replace a space (1 byte) by `▁` (3 bytes); nothing legitimate needs more.
pub const MAX_EXPANSION: f64 = 4.0;

/// Patterns with look-around that are accepted anyway (module doc): GPT-2's pre-tokenizer
/// regex as `tokenizers` writes it, and the compact spelling of its contractions.
const ALLOWED_LOOKAROUND: [&str; 2] = [
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+",
    r"'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+",
];

/// Refuses regexes that need backtracking and Replace steps that grow text too much.
pub fn vet_tokenizer_json(path: &Path, json: &Value) -> Result<(), DataError> {
    let mut expansion = 1.0;
    visit(path, json, &mut expansion)?;
    if expansion > MAX_EXPANSION {
        return Err(DataError::Expansion {
            path: path.to_path_buf(),
            factor: expansion,
            limit: MAX_EXPANSION,
        });
    }
    Ok(())
}

fn visit(path: &Path, v: &Value, expansion: &mut f64) -> Result<(), DataError> {
    match v {
        Value::Array(items) => items.iter().try_for_each(|x| visit(path, x, expansion)),
        Value::Object(obj) => {
            let regex = obj
                .get("pattern")
                .and_then(|p| p.get("Regex"))
                .and_then(Value::as_str);
            if let Some(p) = regex {
                check_regex(path, p)?;
            }
            if obj.get("type").and_then(Value::as_str) == Some("Replace") {
                *expansion *= replace_factor(path, obj)?;
            }
            obj.values().try_for_each(|x| visit(path, x, expansion))
        }
        _ => Ok(()),
    }
}

fn check_regex(path: &Path, pattern: &str) -> Result<(), DataError> {
    if ALLOWED_LOOKAROUND.contains(&pattern) {
        return Ok(());
    }
    regex_syntax::parse(pattern)
        .map(drop)
        .map_err(|e| DataError::UnsafeRegex {
            path: path.to_path_buf(),
            pattern: pattern.to_string(),
            reason: what_is_wrong(&e.to_string()),
        })
}

/// regex-syntax's errors draw the pattern with a caret below; the last line says what is wrong.
fn what_is_wrong(msg: &str) -> String {
    msg.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(msg)
        .trim()
        .trim_start_matches("error: ")
        .to_string()
}

/// How much one Replace step can grow a text (at least 1: shrinking is not credited).
fn replace_factor(path: &Path, obj: &serde_json::Map<String, Value>) -> Result<f64, DataError> {
    let content = obj.get("content").and_then(Value::as_str).unwrap_or("");
    let pattern = obj.get("pattern");
    let shortest = if let Some(s) = pattern
        .and_then(|p| p.get("String"))
        .and_then(Value::as_str)
    {
        Some(s.len())
    } else if let Some(r) = pattern.and_then(|p| p.get("Regex")).and_then(Value::as_str) {
        if ALLOWED_LOOKAROUND.contains(&r) {
            Some(1)
        } else {
            let hir = regex_syntax::parse(r).map_err(|e| DataError::UnsafeRegex {
                path: path.to_path_buf(),
                pattern: r.to_string(),
                reason: what_is_wrong(&e.to_string()),
            })?;
            hir.properties().minimum_len()
        }
    } else {
        None // tokenizers refuses a Replace without a pattern
    };
    let c = content.len() as f64;
    Ok(match shortest {
        None => 1.0,
        Some(0) => 1.0 + c,
        Some(n) => (c / n as f64).max(1.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vet(v: Value) -> Result<(), DataError> {
        vet_tokenizer_json(Path::new("tokenizer.json"), &v)
    }

    fn split(p: &str) -> Value {
        serde_json::json!({"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": p}, "behavior": "Isolated", "invert": false}]}})
    }

    fn replace(pattern: Value, content: &str) -> Value {
        serde_json::json!({"normalizer":
            {"type": "Replace", "pattern": pattern, "content": content}})
    }

    #[test]
    fn linear_regexes_and_gpt2s_pattern_pass_backtracking_ones_do_not() {
        for p in ALLOWED_LOOKAROUND
            .into_iter()
            .chain([r"\p{L}+|\s+", r"(?i:'s|'t)"])
        {
            assert!(vet(split(p)).is_ok(), "{p}");
        }
        for p in [
            r"(?<=(x|xx)*)(a|a)*c",
            r"(a)\1",
            r"\s+(?=\S)",
            r"\s+(?!\S) ",
        ] {
            let e = vet(split(p)).unwrap_err();
            assert!(matches!(e, DataError::UnsafeRegex { .. }), "{p}: {e}");
            assert!(e.to_string().contains(p), "{e}");
        }
    }

    #[test]
    fn replace_growth_is_bounded_over_the_whole_file() {
        let space = replace(serde_json::json!({"String": " "}), "\u{2581}");
        assert!(vet(space).is_ok());
        let a = replace(serde_json::json!({"String": "a"}), &"a".repeat(10_000));
        assert!(matches!(vet(a), Err(DataError::Expansion { .. })));
        let empty = replace(serde_json::json!({"Regex": "x*"}), "yyyy");
        assert!(matches!(vet(empty), Err(DataError::Expansion { .. })));
        let r = replace(serde_json::json!({"Regex": "ab+"}), "abcdefgh");
        assert!(vet(r).is_ok());
        let two = serde_json::json!({"normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Replace", "pattern": {"String": "a"}, "content": "aaa"},
            {"type": "Replace", "pattern": {"String": "a"}, "content": "aaa"}]}});
        assert!(matches!(vet(two), Err(DataError::Expansion { .. })));
    }
}
