//! Utility and memorisation metrics, per record and per split, with the definitions of the
//! benchmarks they come from so that figures are comparable with theirs:
//!
//! - **loss**: mean next-token negative log-likelihood of the scored tokens (the answer of a
//!   question–answer record, every token of a text record), averaged over records; perplexity is
//!   `exp` of the token-weighted mean. Lower = the model predicts the split better.
//! - **exact memorisation** (OpenUnlearning `exact_memorization`): the fraction of answer tokens
//!   whose teacher-forced argmax equals the answer token.
//! - **extraction strength** (OpenUnlearning `extraction_strength`, by its written definition):
//!   `1 − k/n` for the smallest `k` in `0..=n` such that the teacher-forced argmax equals the
//!   answer from position `k` to the end; 0 when not even the last token matches. OpenUnlearning's
//!   loop stops at `k = n − 1` instead and gives such an answer `1/n` — a one-token answer the
//!   model gets wrong would score 1.0, "fully extractable". lethe does not copy that quirk: the
//!   figures differ from theirs only on answers whose last token is missed (theirs by `1/n`).
//! - **greedy exact match**: the greedy answer (cut at the first newline, trimmed) equals the
//!   trimmed answer.
//! - **ROUGE-L recall** of the greedy answer against the answer: longest common subsequence of
//!   words over the answer's word count; words as `rouge_score` makes them (lower-cased,
//!   non-alphanumerics as spaces), without its Porter stemmer.
//! - **truth ratio** (TOFU, Maini et al. 2024, eq. 1): `R = mean_j P(ã_j|q)^(1/|ã_j|) /
//!   P(a|q)^(1/|a|)` over the perturbed answers `ã_j`, with the correct answer `a` in place of
//!   TOFU's paraphrase (the world has none). This is the paper's arithmetic mean of per-token
//!   probabilities; TOFU's and OpenUnlearning's code average the log-probabilities instead (a
//!   geometric mean, ≤ ours by AM–GM). Aggregated as TOFU does (`judge::derive`): on the forget
//!   split `mean(min(R, 1/R))` (closer to 1 = the model no longer prefers the truth), elsewhere
//!   `mean(max(0, 1 − R))` (higher = the model still prefers the truth).
//!
//! This module is arithmetic on scores; it runs no model.

use flate2::write::ZlibEncoder;
use flate2::Compression;
use std::io::Write;

/// OpenUnlearning's exact memorisation of one answer.
pub fn exact_memorization(hits: &[bool]) -> f64 {
    hits.iter().filter(|&&h| h).count() as f64 / hits.len() as f64
}

/// Extraction strength of one answer: `1 − k/n` for the shortest correctly predicted suffix
/// `k..n` (see the module docs for how this differs from OpenUnlearning's loop). 0 for no tokens.
pub fn extraction_strength(hits: &[bool]) -> f64 {
    let n = hits.len();
    if n == 0 {
        return 0.0;
    }
    let k = (0..=n).find(|&k| hits[k..].iter().all(|&h| h)).unwrap_or(n);
    1.0 - k as f64 / n as f64
}

/// Words as `rouge_score`'s default tokenizer makes them, without stemming.
fn rouge_words(text: &str) -> Vec<String> {
    let clean: String = text
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { ' ' })
        .collect();
    clean.split_whitespace().map(str::to_string).collect()
}

/// ROUGE-L recall of `candidate` against `reference`; 0 when either has no words.
pub fn rouge_l_recall(candidate: &str, reference: &str) -> f64 {
    let (c, r) = (rouge_words(candidate), rouge_words(reference));
    if c.is_empty() || r.is_empty() {
        return 0.0;
    }
    let mut prev = vec![0usize; c.len() + 1];
    for rw in &r {
        let mut cur = vec![0usize; c.len() + 1];
        for (j, cw) in c.iter().enumerate() {
            cur[j + 1] = if rw == cw {
                prev[j] + 1
            } else {
                cur[j].max(prev[j + 1])
            };
        }
        prev = cur;
    }
    prev[c.len()] as f64 / r.len() as f64
}

/// TOFU's truth ratio from mean per-token losses of the correct and perturbed answers.
pub fn truth_ratio(correct_loss: f64, perturbed_losses: &[f64]) -> f64 {
    let mean_p =
        perturbed_losses.iter().map(|l| (-l).exp()).sum::<f64>() / perturbed_losses.len() as f64;
    mean_p / (-correct_loss).exp()
}

/// Mean of the lowest `max(1, ⌊k·n⌋)` values (OpenUnlearning's Min-K% selection).
pub fn mean_of_lowest(values: &[f64], k: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let m = ((values.len() as f64 * k).floor() as usize).clamp(1, values.len());
    v[..m].iter().sum::<f64>() / m as f64
}

/// Length in bytes of the zlib compression (level 6, Python's `zlib.compress` default) of
/// `text`, the denominator of the zlib-ratio attack. miniz_oxide may differ from C zlib by a
/// few bytes on the same level.
pub fn zlib_bytes(text: &str) -> usize {
    let mut enc = ZlibEncoder::new(Vec::new(), Compression::new(6));
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(text.as_bytes());
    enc.finish().map(|v| v.len()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extraction_strength_by_its_definition() {
        // Worked by hand from the definition 1 − k/n, smallest k with preds[k:] == labels[k:].
        let (t, f) = (true, false);
        assert_eq!(extraction_strength(&[t, t, t, t]), 1.0); // k = 0
        assert_eq!(extraction_strength(&[f, t, t, t]), 0.75); // k = 1
        assert_eq!(extraction_strength(&[t, f, t, t]), 0.5); // k = 2
        assert_eq!(extraction_strength(&[t, t, t, f]), 0.0); // only the empty suffix: k = n
        assert_eq!(extraction_strength(&[f]), 0.0); // OpenUnlearning's loop would say 1.0
        assert_eq!(extraction_strength(&[]), 0.0);
        assert_eq!(exact_memorization(&[t, f, t, t]), 0.75);
    }

    #[test]
    fn rouge_l_recall_by_hand() {
        // Reference words: [the, cat, sat, down]; candidate [the, dog, sat]: LCS = the, sat.
        assert_eq!(rouge_l_recall("The dog sat.", "the cat sat down"), 0.5);
        assert_eq!(rouge_l_recall("+372 60 292", "+372 60 292"), 1.0);
        assert_eq!(rouge_l_recall("", "x"), 0.0);
    }

    #[test]
    fn truth_ratio_by_hand() {
        // Correct loss ln 2 → P^(1/|a|) = 1/2; perturbed losses ln 4, ln 8 → 1/4, 1/8; mean 3/16.
        // R = (3/16) / (1/2) = 3/8.
        let r = truth_ratio(2f64.ln(), &[4f64.ln(), 8f64.ln()]);
        assert!((r - 0.375).abs() < 1e-15);
    }

    #[test]
    fn lowest_fraction() {
        // n = 10, k = 0.2 → the two lowest: (-9 + -8) / 2.
        let v: Vec<f64> = (0..10).map(|i| -(i as f64)).collect();
        assert_eq!(mean_of_lowest(&v, 0.2), -8.5);
        // n = 3, k = 0.2 → ⌊0.6⌋ = 0, at least one value.
        assert_eq!(mean_of_lowest(&[1.0, 2.0, 3.0], 0.2), 1.0);
    }

    #[test]
    fn zlib_of_repetitive_text_is_short() {
        let long = "ab".repeat(500);
        assert!(zlib_bytes(&long) < 40);
        assert!(zlib_bytes("x") > 0);
    }
}
