//! GPT-2 agreement with Hugging Face transformers. Every expected value is read from
//! tests/oracles/tiny-gpt2 (made with torch 2.15 / transformers 5.24: `expected.json` says
//! how): logits, target log-probs and loss in f32 and f64, the f64 gradient of every parameter,
//! exact HVPs by double backward restricted to `wte` and over all parameters.
//! Tolerances are the oracle's own (`expected.json` → `tolerances`).

use crate::common::*;
use candle_core::{DType, Tensor};
use lethe::data::Batch;
use lethe::model::grad::{dot, hvp, loss_and_grad};
use lethe::model::{load_model, Gpt2, ParamGroups};

fn model(dtype: DType) -> Gpt2 {
    load_model(&oracle("tiny-gpt2"), dtype).unwrap().model
}

/// The oracle's input batch: ids `[3,16]`, mask with the last 4 positions of row 2 padded.
pub fn oracle_batch() -> Batch {
    batch_of(&expected_tensors())
}

/// Max |a-b| over the positions whose attention mask is 1.
fn masked_max_abs(a: &Tensor, b: &Tensor, batch: &Batch) -> f64 {
    let v = a.dim(2).unwrap();
    let (a, b) = (to_f64(a), to_f64(b));
    let mut worst = 0f64;
    for (p, &m) in batch.attention.iter().enumerate() {
        if m == 1 {
            for k in 0..v {
                worst = worst.max((a[p * v + k] - b[p * v + k]).abs());
            }
        }
    }
    worst
}

#[test]
fn logits_f32_within_1e_4_absolute() {
    let (m, batch) = (model(DType::F32), oracle_batch());
    let (ids, att) = m.batch_tensors(&batch).unwrap();
    let logits = m.forward(&ids, &att).unwrap();
    let err = masked_max_abs(&logits, &expected_tensors()["logits_f32"], &batch);
    assert!(err <= 1e-4, "f32 logits differ by {err:e}");
}

#[test]
fn logits_f64_within_1e_9_relative() {
    let (m, batch) = (model(DType::F64), oracle_batch());
    let (ids, att) = m.batch_tensors(&batch).unwrap();
    let logits = m.forward(&ids, &att).unwrap();
    let ex = &expected_tensors()["logits_f64"];
    let scale = to_f64(ex).iter().map(|x| x.abs()).fold(0.0, f64::max);
    let err = masked_max_abs(&logits, ex, &batch) / scale;
    assert!(err <= 1e-9, "f64 logits differ by {err:e} relative");
}

#[test]
fn target_logprobs_and_loss_match() {
    let batch = oracle_batch();
    for (dtype, key, loss_key, tol) in [
        (DType::F32, "target_logprobs_f32", "loss_f32", 1e-4),
        (DType::F64, "target_logprobs_f64", "loss_f64", 1e-9),
    ] {
        let m = model(dtype);
        let lp = m.token_logprobs(&batch).unwrap();
        let ex = &expected_tensors()[key];
        // Compare only scored targets: padded targets depend on how padding is masked, and
        // lethe does not compute them (the output layer runs at scored positions only).
        let (a, b) = (to_f64(&lp), to_f64(ex));
        assert!(batch.target_weight.contains(&0.0));
        for (i, w) in batch.target_weight.iter().enumerate() {
            if *w > 0.0 {
                assert!(
                    (a[i] - b[i]).abs() <= tol * b[i].abs().max(1.0),
                    "{key}[{i}]: {} vs {}",
                    a[i],
                    b[i]
                );
            } else {
                assert_eq!(a[i], 0.0, "{key}[{i}] is not scored");
            }
        }
        let loss = m.loss(&batch).unwrap();
        let want = expected_json()[loss_key].as_f64().unwrap();
        assert!(
            (loss - want).abs() <= tol * want,
            "{loss_key}: {loss} vs {want}"
        );
    }
}

#[test]
fn f64_gradients_of_every_parameter_within_1e_9() {
    let (mut m, batch) = (model(DType::F64), oracle_batch());
    m.set_trainable(&ParamGroups::all()).unwrap();
    let (_, grads) = loss_and_grad(&m, &batch).unwrap();
    let ex = expected_tensors();
    assert_eq!(grads.len(), 2 + 2 * 12 + 2);
    let mut sq = 0.0;
    for (name, g) in &grads {
        let err = rel_err(g, &ex[&format!("grad.{name}")]);
        assert!(
            err <= 1e-9,
            "gradient of {name} differs by {err:e} relative"
        );
        sq += to_f64(g).iter().map(|x| x * x).sum::<f64>();
    }
    let want = expected_json()["grad_norm_f64"].as_f64().unwrap();
    assert!((sq.sqrt() - want).abs() <= 1e-9 * want);
}

#[test]
fn embedding_group_computes_only_embedding_gradients() {
    let (mut m, batch) = (model(DType::F64), oracle_batch());
    let names = m
        .set_trainable(&ParamGroups::parse("embedding").unwrap())
        .unwrap();
    assert_eq!(names, ["transformer.wte.weight", "transformer.wpe.weight"]);
    let (_, grads) = loss_and_grad(&m, &batch).unwrap();
    let ex = expected_tensors();
    for (name, g) in &grads {
        assert!(rel_err(g, &ex[&format!("grad.{name}")]) <= 1e-9);
    }
}

#[test]
fn exact_hvp_on_wte_matches_oracle_and_is_symmetric() {
    let (mut m, batch) = (model(DType::F64), oracle_batch());
    m.set_trainable(&ParamGroups::parse("embedding").unwrap())
        .unwrap();
    let ex = expected_tensors();
    let wpe_zero = Tensor::zeros((64, 64), DType::F64, &candle_core::Device::Cpu).unwrap();
    let as_v = |t: &Tensor| {
        vec![
            ("wte".to_string(), t.clone()),
            ("wpe".to_string(), wpe_zero.clone()),
        ]
    };
    let hv = hvp(&m, &batch, &as_v(&ex["hvp_wte.v"])).unwrap();
    let err = rel_err(&hv[0].1, &ex["hvp_wte.Hv"]);
    assert!(err <= 1e-8, "Hv on wte differs by {err:e} relative");
    let hu = hvp(&m, &batch, &as_v(&ex["hvp_wte.u"])).unwrap();
    let u_hv = dot(&as_v(&ex["hvp_wte.u"])[..1], &hv[..1]).unwrap();
    let v_hu = dot(&as_v(&ex["hvp_wte.v"])[..1], &hu[..1]).unwrap();
    let want = expected_json()["hvp_wte.uHv"].as_f64().unwrap();
    // Judged relative to |u||Hv| (u is a unit vector), as expected.json's "symmetry" says.
    let scale = dot(&hv[..1], &hv[..1]).unwrap().sqrt();
    assert!(
        (u_hv - want).abs() <= 1e-8 * scale,
        "u.Hv {u_hv} vs oracle {want}"
    );
    assert!(
        (u_hv - v_hu).abs() <= 1e-10 * scale,
        "u.Hv {u_hv} vs v.Hu {v_hu}"
    );
}

#[test]
fn exact_hvp_over_all_parameters_matches_oracle() {
    let (mut m, batch) = (model(DType::F64), oracle_batch());
    m.set_trainable(&ParamGroups::all()).unwrap();
    let ex = expected_tensors();
    let v: Vec<(String, Tensor)> = m
        .names()
        .iter()
        .map(|n| (n.clone(), ex[&format!("hvp_all.v.{n}")].clone()))
        .collect();
    let hv = hvp(&m, &batch, &v).unwrap();
    for (name, h) in &hv {
        let err = rel_err(h, &ex[&format!("hvp_all.Hv.{name}")]);
        assert!(err <= 1e-8, "Hv of {name} differs by {err:e} relative");
    }
}
