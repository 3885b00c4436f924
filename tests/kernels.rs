//! The fused float32 kernels against the float64 operations (`ops` dispatches on dtype; f64 is
//! held to the Hugging Face oracle in `oracle.rs`): forward values and first-order gradients on random inputs, padded batches included,
//! and the whole f32 model's gradient against the f64 oracle. The reference is f64, so each
//! tolerance is float32 rounding of the operation's arithmetic, stated where it is checked.

use crate::common::*;
use candle_core::{DType, Device, Tensor, Var};
use lethe::data::Batch;
use lethe::model::grad::{hvp, loss_and_grad};
use lethe::model::{load_model, ops, ParamGroups};

/// A reproducible random tensor in f64 whose values are all exact in f32, so that both
/// precisions start from the same numbers. Roughly normal (a sum of four uniforms), scaled.
fn randn(shape: &[usize], seed: u64, std: f64) -> Tensor {
    let mut state = seed.wrapping_mul(6364136223846793005) ^ 0x9E37_79B9_7F4A_7C15;
    let mut uniform = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    let n: usize = shape.iter().product();
    let vals: Vec<f64> = (0..n)
        .map(|_| (0..4).map(|_| uniform()).sum::<f64>() * std * 1.7)
        .map(|x| x as f32 as f64)
        .collect();
    Tensor::from_vec(vals, shape, &Device::Cpu).unwrap()
}

/// Runs `f` on f64 and f32 copies of `inputs`, backpropagates `Σ out·r` for a random `r`,
/// and returns the normwise relative errors of the f32 output and of each input's gradient.
fn compare(inputs: &[Tensor], f: impl Fn(&[Tensor]) -> Tensor) -> (f64, Vec<f64>) {
    let run = |dtype: DType| {
        let vars: Vec<Var> = inputs
            .iter()
            .map(|t| Var::from_tensor(&t.to_dtype(dtype).unwrap()).unwrap())
            .collect();
        let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let out = f(&ts);
        let r = randn(out.dims(), 99, 1.0).to_dtype(dtype).unwrap();
        let grads = (&out * r).unwrap().sum_all().unwrap().backward().unwrap();
        let g: Vec<Tensor> = ts.iter().map(|t| grads.get(t).unwrap().clone()).collect();
        (out, g)
    };
    let ((o64, g64), (o32, g32)) = (run(DType::F64), run(DType::F32));
    let errs = g32.iter().zip(&g64).map(|(a, b)| rel_err(a, b)).collect();
    (rel_err(&o32, &o64), errs)
}

/// An attention mask `[4, T]`: full, right-padded, left-padded (its first queries see no
/// real key), and mostly padded.
fn padded_mask(t: usize) -> Tensor {
    let mut m = vec![1u32; 4 * t];
    m[t + t - 5..2 * t].fill(0);
    m[2 * t..2 * t + 3].fill(0);
    m[3 * t + 2..4 * t].fill(0);
    Tensor::from_vec(m, (4, t), &Device::Cpu).unwrap()
}

#[test]
fn layer_norm_matches_composed() {
    let x = randn(&[4, 7, 96], 1, 3.0);
    let w = randn(&[96], 2, 1.0);
    let b = randn(&[96], 3, 1.0);
    let x = (x + 5.0).unwrap(); // an offset mean, where a one-pass variance would lose digits
    let (out, grads) = compare(&[x, w, b], |t| {
        ops::layer_norm(&t[0], &t[1], &t[2], 1e-5).unwrap()
    });
    // Sums over 96 (and, for w and b, over 28 rows) in f32: measured ≤ 3.3e-7 relative.
    assert!(out <= 2e-6, "output {out:e}");
    for (name, e) in ["x", "w", "b"].iter().zip(grads) {
        assert!(e <= 2e-6, "gradient of {name}: {e:e}");
    }
}

#[test]
fn gelu_matches_composed() {
    let x = randn(&[3, 5, 1000], 4, 3.0);
    let (out, grads) = compare(&[x], |t| ops::gelu_new(&t[0]).unwrap());
    // One exp and a handful of flops per element: measured ~2e-7 relative.
    assert!(out <= 1e-6, "output {out:e}");
    assert!(grads[0] <= 1e-6, "gradient {:e}", grads[0]);
}

#[test]
fn masked_softmax_matches_composed_with_padding() {
    let t = 19;
    let s = randn(&[4, 3, t, t], 5, 4.0);
    let att = padded_mask(t);
    let (out, grads) = compare(&[s], |x| {
        let mask = ops::attention_mask(&att, x[0].dtype()).unwrap();
        ops::masked_softmax(&x[0], &mask, 0.3).unwrap()
    });
    // Probabilities from exp of scores up to ~12 and a sum of ≤ 19 terms.
    assert!(out <= 1e-6, "output {out:e}");
    assert!(grads[0] <= 2e-6, "gradient {:e}", grads[0]);
}

#[test]
fn target_logprobs_match_composed() {
    let (n, v) = (37, 3001);
    let logits = randn(&[n, v], 6, 5.0);
    let targets: Vec<u32> = (0..n as u32).map(|i| (i * 7919) % v as u32).collect();
    let targets = Tensor::new(targets, &Device::Cpu).unwrap();
    let (out, grads) = compare(&[logits], |x| {
        ops::target_logprobs(&x[0], &targets).unwrap()
    });
    // log Σ over 3001 exps (16 partial sums) in f32: measured ~1.5e-7 relative.
    assert!(out <= 1e-6, "output {out:e}");
    assert!(grads[0] <= 1e-6, "gradient {:e}", grads[0]);
}

#[test]
fn head_split_and_merge_match_composed() {
    let x = randn(&[2, 9, 24], 7, 1.0);
    let w = randn(&[24, 72], 8, 0.3);
    let b = randn(&[72], 9, 0.3);
    let (out, grads) = compare(&[x, w, b], |t| {
        let [q, k, v] = ops::qkv_heads(&t[0], &t[1], &t[2], 4).unwrap();
        let y = ((q * 2.0).unwrap() + (k * 3.0).unwrap() + v).unwrap();
        ops::merge_heads(&y).unwrap()
    });
    // Matmuls over 24 terms in f32; the head copies themselves are exact.
    assert!(out <= 1e-6, "output {out:e}");
    for (name, e) in ["x", "w", "b"].iter().zip(grads) {
        assert!(e <= 1e-6, "gradient of {name}: {e:e}");
    }
}

#[test]
fn f32_model_gradient_matches_f64_oracle() {
    let mut m = load_model(&oracle("tiny-gpt2"), DType::F32).unwrap().model;
    m.set_trainable(&ParamGroups::all()).unwrap();
    let (_, grads) = loss_and_grad(&m, &crate::oracle::oracle_batch()).unwrap();
    let ex = expected_tensors();
    assert_eq!(grads.len(), 2 + 2 * 12 + 2);
    for (name, g) in &grads {
        let err = rel_err(g, &ex[&format!("grad.{name}")]);
        // f32 through 2 blocks and a 64-wide vocabulary: ~1e-6 relative is f32 precision.
        assert!(
            err <= 1e-5,
            "gradient of {name} differs by {err:e} relative"
        );
    }
}

#[test]
fn f32_hvp_is_refused_not_silently_wrong() {
    let mut m = load_model(&oracle("tiny-gpt2"), DType::F32).unwrap().model;
    m.set_trainable(&ParamGroups::parse("embedding").unwrap())
        .unwrap();
    let v: Vec<(String, Tensor)> = m
        .trainable_vars()
        .into_iter()
        .map(|(n, var)| (n.to_string(), var.as_tensor().ones_like().unwrap()))
        .collect();
    let batch: Batch = crate::oracle::oracle_batch();
    // Exact second derivatives are float64's (model::dual); f32 kernels have none.
    let err = hvp(&m, &batch, &v).expect_err("an HVP of an f32 model");
    assert!(err.to_string().contains("float64"), "{err}");
}
