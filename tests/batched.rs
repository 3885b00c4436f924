//! The certifier's batched work against the one-at-a-time computations it replaced, on the
//! bundled world's full model (`fixtures/models/full`): greedy answers with the key/value cache
//! to every forget05 question, and per-example gradient norms of forget05 and the holdout.

use candle_core::{DType, Device, Tensor, D};
use lethe::data::{read_records, Encoded, TextTokenizer};
use lethe::evidence::answers::answer_stops;
use lethe::evidence::mia::{grad_norms, grad_norms_per_record};
use lethe::evidence::records::GREEDY_SLACK;
use lethe::evidence::scoring::{score, score_with_grad_norms};
use lethe::model::generate::{greedy_batch, greedy_batch_uncached};
use lethe::model::{load_model, ParamGroups};
use std::path::PathBuf;

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel)
}

#[test]
fn cached_greedy_answers_equal_the_uncached_ones_on_forget05() {
    // Reference: `greedy_batch_uncached`, the decoder the certifier used before the cache (it
    // re-runs every prefix at every step). Prompts and budgets as the certifier makes them
    // (prompt tokens; answer tokens + GREEDY_SLACK), every question of forget05.
    let m = load_model(&fixture("models/full"), DType::F32).unwrap();
    let tok = TextTokenizer::load(&fixture("models/full/tokenizer.json")).unwrap();
    let stop = answer_stops(&tok).unwrap();
    let ctx = m.model.config().n_positions;
    let records = read_records(&fixture("world/forget05.jsonl")).unwrap();
    let enc: Vec<Encoded> = records
        .iter()
        .filter(|r| r.answer.is_some())
        .map(|r| tok.encode(r, true, ctx).unwrap())
        .collect();
    // forget05.jsonl: 110 records, 90 of them questions (`"answer"`).
    assert_eq!(enc.len(), 90);
    let prompts: Vec<Vec<u32>> = enc.iter().map(|e| e.ids[..e.score_from].to_vec()).collect();
    let budget: Vec<usize> = enc
        .iter()
        .map(|e| e.ids.len() - e.score_from + GREEDY_SLACK)
        .collect();
    let cached = greedy_batch(&m.model, &prompts, &budget, &stop, tok.pad_id()).unwrap();
    let uncached = greedy_batch_uncached(&m.model, &prompts, &budget, &stop, tok.pad_id()).unwrap();
    assert_eq!(cached, uncached);
    // The full model knows forget05: most answers are several tokens long, so the cache is used.
    let long = cached.iter().filter(|a| a.len() >= 4).count();
    assert!(
        long * 2 > cached.len(),
        "{long} of {} answers",
        cached.len()
    );
}

#[test]
fn cached_logits_equal_the_uncached_forward_on_forget05() {
    // Float64: the same arithmetic, so equal to 1e-9 absolute. Float32: equal up to the order
    // of the sums inside the matrix products (a `[1, C]` row times a weight is not summed the
    // way a `[T, C]` block is), a few float32 ulps of the logits' scale; measured on this model:
    // 1.2e-5 absolute on logits of magnitude ~1e2 (1.5 ulp), so the bound is normwise relative.
    let (f64_abs, _) = cached_vs_uncached_logits(DType::F64);
    assert!(
        f64_abs <= 1e-9,
        "float64: largest |cached − full| {f64_abs}"
    );
    let (f32_abs, f32_scale) = cached_vs_uncached_logits(DType::F32);
    assert!(
        f32_abs <= 1e-6 * f32_scale,
        "float32: largest |cached − full| {f32_abs} on logits up to {f32_scale}"
    );
}

/// The largest absolute difference between cached and full-forward logits, and the largest
/// |logit|. Reference: `Gpt2::forward` over each row's whole sequence (prompt + answer tokens
/// so far), logits at its last position. The cache: one prefill of 16 right-padded prompts,
/// then the answer tokens teacher-forced one step at a time (rows leave as their answers end).
fn cached_vs_uncached_logits(dtype: DType) -> (f64, f64) {
    let m = load_model(&fixture("models/full"), dtype).unwrap();
    let tok = TextTokenizer::load(&fixture("models/full/tokenizer.json")).unwrap();
    let ctx = m.model.config().n_positions;
    let records = read_records(&fixture("world/forget05.jsonl")).unwrap();
    let enc: Vec<Encoded> = records
        .iter()
        .filter(|r| r.answer.is_some())
        .take(16)
        .map(|r| tok.encode(r, true, ctx).unwrap())
        .collect();
    let dev = Device::Cpu;
    let t = enc.iter().map(|e| e.score_from).max().unwrap();
    let (mut ids, mut att) = (vec![tok.pad_id(); 16 * t], vec![0u32; 16 * t]);
    for (r, e) in enc.iter().enumerate() {
        ids[r * t..r * t + e.score_from].copy_from_slice(&e.ids[..e.score_from]);
        att[r * t..r * t + e.score_from].fill(1);
    }
    let ids = Tensor::from_vec(ids, (16, t), &dev).unwrap();
    let att = Tensor::from_vec(att, (16, t), &dev).unwrap();
    let last: Vec<usize> = enc.iter().map(|e| e.score_from - 1).collect();
    let steps = enc
        .iter()
        .map(|e| e.ids.len() - e.score_from)
        .max()
        .unwrap();
    let (mut logits, mut cache) = m.model.prefill(&ids, &att, &last, steps).unwrap();
    let mut rows: Vec<usize> = (0..16).collect();
    let (mut worst, mut scale, mut compared) = (0f64, 0f64, 0);
    for step in 0.. {
        for (k, &r) in rows.iter().enumerate() {
            let n = enc[r].score_from + step;
            let full = Tensor::from_slice(&enc[r].ids[..n], (1, n), &dev).unwrap();
            let ones = Tensor::ones((1, n), DType::U32, &dev).unwrap();
            let want = m.model.forward(&full, &ones).unwrap();
            let want = want.get(0).unwrap().get(n - 1).unwrap();
            let biggest = want.abs().unwrap().max(D::Minus1).unwrap();
            let diff = (logits.get(k).unwrap() - want).unwrap().abs().unwrap();
            let as_f64 = |x: Tensor| x.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap();
            worst = worst.max(as_f64(diff.max(D::Minus1).unwrap()));
            scale = scale.max(as_f64(biggest));
            compared += 1;
        }
        let keep: Vec<usize> = (0..rows.len())
            .filter(|&k| enc[rows[k]].score_from + step + 1 < enc[rows[k]].ids.len())
            .collect();
        if keep.is_empty() {
            break;
        }
        cache.retain_rows(&keep).unwrap();
        rows = keep.iter().map(|&k| rows[k]).collect();
        let feed: Vec<u32> = rows
            .iter()
            .map(|&r| enc[r].ids[enc[r].score_from + step])
            .collect();
        logits = m.model.step(&mut cache, &feed).unwrap();
    }
    assert!(compared > 16 * 3, "{compared} positions compared");
    eprintln!("{dtype:?}: largest |cached − full| {worst:e}, largest |logit| {scale}");
    (worst, scale)
}

#[test]
fn batched_grad_norms_equal_one_backward_per_record_on_the_bundled_world() {
    // Reference: `grad_norms_per_record`, the certifier's computation before batching (one
    // backward pass per record). The records the grad_norm attack scores (forget05 members,
    // holdout non-members, encoded as the certifier encodes them), the default `embedding`
    // group with the tied output layer's gradient included. Float32 both ways: 1e-5 relative.
    let mut m = load_model(&fixture("models/full"), DType::F32).unwrap();
    let tok = TextTokenizer::load(&fixture("models/full/tokenizer.json")).unwrap();
    let ctx = m.model.config().n_positions;
    let mut enc = Vec::new();
    for split in ["forget05", "holdout"] {
        let records = read_records(&fixture(&format!("world/{split}.jsonl"))).unwrap();
        enc.extend(records.iter().map(|r| tok.encode(r, true, ctx).unwrap()));
    }
    let params = ParamGroups::parse("embedding").unwrap();
    let pad = tok.pad_id();
    let batched = grad_norms(&mut m.model, &enc, pad, &params, &mut |_| {}).unwrap();
    let reference = grad_norms_per_record(&mut m.model, &enc, pad, &params, &mut |_| {}).unwrap();
    assert_eq!(batched.len(), enc.len());
    let worst = batched
        .iter()
        .zip(&reference)
        .map(|(b, r)| (b - r).abs() / r)
        .fold(0f64, f64::max);
    assert!(worst <= 1e-5, "largest relative difference {worst}");
    assert!(
        m.model.trainable_vars().is_empty(),
        "the model is left frozen"
    );
}

#[test]
fn one_forward_serves_the_scores_and_the_grad_norms_on_the_bundled_world() {
    // What the certifier runs on the attacked splits (`score_with_grad_norms`: one forward pass
    // per batch, its tape shared with the norms' backward) against the two computations it
    // replaces: `score`'s scores, bit for bit (the same arithmetic), and the norms of one
    // backward pass per record, to 1e-5 relative (float32 both ways, as above). forget05's
    // records differ in length, so the length batches reorder them: the output must be in
    // input order.
    let mut m = load_model(&fixture("models/full"), DType::F32).unwrap();
    let tok = TextTokenizer::load(&fixture("models/full/tokenizer.json")).unwrap();
    let ctx = m.model.config().n_positions;
    let records = read_records(&fixture("world/forget05.jsonl")).unwrap();
    let enc: Vec<Encoded> = records
        .iter()
        .map(|r| tok.encode(r, true, ctx).unwrap())
        .collect();
    let (params, pad) = (ParamGroups::parse("embedding").unwrap(), tok.pad_id());
    m.model.set_trainable(&params).unwrap();
    let fused = score_with_grad_norms(&m.model, &enc, pad, &mut |_| {}).unwrap();
    let plain = score(&m.model, &enc, pad, &mut |_| {}).unwrap();
    assert_eq!(fused.scores, plain);
    assert!(fused.forward_seconds > 0.0);
    let reference = grad_norms_per_record(&mut m.model, &enc, pad, &params, &mut |_| {}).unwrap();
    assert_eq!(fused.grad_norms.len(), enc.len());
    let worst = fused
        .grad_norms
        .iter()
        .zip(&reference)
        .map(|(b, r)| (b - r).abs() / r)
        .fold(0f64, f64::max);
    assert!(worst <= 1e-5, "largest relative difference {worst}");
}
