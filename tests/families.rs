//! The Llama family and GPT-NeoX (issue 19) against Hugging Face transformers. Every expected value is read
//! from the oracle's folder (made with torch 2.15 / transformers 5.24: its `expected.json` says
//! how): `tiny-llama` (grouped-query attention, llama3 rotary scaling, untied head),
//! `tiny-qwen2` (q/k/v biases, one key/value head, tied embeddings) and
//! `tiny-llama-bf16-sharded` (tiny-llama's weights in bfloat16, six shards and an index) and
//! `tiny-gpt-neox` (parallel residual, rotary on 25% of each head, untied head). Each
//! is compared on logits (f32 and f64), target log-probs and loss, every f64 gradient and exact
//! f64 HVPs on the input embedding and on all parameters, with `u·Hv = v·Hu`. Tolerances are
//! the oracle's own (`expected.json` → `tolerances`).

use crate::common::*;
use candle_core::{DType, Device, Tensor};
use lethe::data::Batch;
use lethe::model::grad::{dot, hvp, loss_and_grad};
use lethe::model::{load_model, Gpt2, ParamGroups};
use std::collections::HashMap;

const FAMILIES: [&str; 4] = [
    "tiny-llama",
    "tiny-qwen2",
    "tiny-llama-bf16-sharded",
    "tiny-gpt-neox",
];

struct Oracle {
    name: &'static str,
    ex: HashMap<String, Tensor>,
    json: serde_json::Value,
    batch: Batch,
}

impl Oracle {
    fn load(name: &'static str) -> Oracle {
        let dir = oracle(name);
        let ex =
            candle_core::safetensors::load(dir.join("expected.safetensors"), &Device::Cpu).unwrap();
        let json =
            serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
        let batch = batch_of(&ex);
        Oracle {
            name,
            ex,
            json,
            batch,
        }
    }

    fn model(&self, dtype: DType) -> Gpt2 {
        load_model(&oracle(self.name), dtype).unwrap().model
    }

    /// The oracle's name for a parameter: transformers 5 holds GPT-NeoX's output layer as
    /// `lm_head` in memory (the gradients' names) and saves it as `embed_out.weight`.
    fn key(&self, prefix: &str, name: &str) -> String {
        let name = if name == "embed_out.weight" {
            "lm_head.weight"
        } else {
            name
        };
        format!("{prefix}{name}")
    }

    fn tol(&self, key: &str) -> f64 {
        self.json["tolerances"][key].as_f64().unwrap()
    }

    /// Max |a − b| over the positions whose attention mask is 1.
    fn masked_max_abs(&self, a: &Tensor, b: &Tensor) -> f64 {
        let v = a.dim(2).unwrap();
        let (a, b) = (to_f64(a), to_f64(b));
        let mut worst = 0f64;
        for (p, &m) in self.batch.attention.iter().enumerate() {
            if m == 1 {
                for k in 0..v {
                    worst = worst.max((a[p * v + k] - b[p * v + k]).abs());
                }
            }
        }
        worst
    }
}

#[test]
fn logits_match_in_f32_and_f64() {
    for name in FAMILIES {
        let o = Oracle::load(name);
        for (dtype, key) in [(DType::F32, "logits_f32"), (DType::F64, "logits_f64")] {
            let m = o.model(dtype);
            let (ids, att) = m.batch_tensors(&o.batch).unwrap();
            let logits = m.forward(&ids, &att).unwrap();
            let err = o.masked_max_abs(&logits, &o.ex[key]);
            if dtype == DType::F32 {
                let tol = o.tol("logits_f32_abs");
                assert!(err <= tol, "{name}: f32 logits differ by {err:e}");
            } else {
                let scale = to_f64(&o.ex[key])
                    .iter()
                    .fold(0.0, |m: f64, x| m.max(x.abs()));
                let rel = err / scale;
                assert!(
                    rel <= o.tol("f64_rel"),
                    "{name}: f64 logits {rel:e} relative"
                );
            }
        }
    }
}

#[test]
fn target_logprobs_and_loss_match() {
    for name in FAMILIES {
        let o = Oracle::load(name);
        for (dtype, key, loss_key, tol) in [
            (
                DType::F32,
                "target_logprobs_f32",
                "loss_f32",
                o.tol("logits_f32_abs"),
            ),
            (
                DType::F64,
                "target_logprobs_f64",
                "loss_f64",
                o.tol("f64_rel"),
            ),
        ] {
            let m = o.model(dtype);
            let (a, b) = (
                to_f64(&m.token_logprobs(&o.batch).unwrap()),
                to_f64(&o.ex[key]),
            );
            for (i, w) in o.batch.target_weight.iter().enumerate() {
                if *w > 0.0 {
                    let err = (a[i] - b[i]).abs();
                    assert!(
                        err <= tol * b[i].abs().max(1.0),
                        "{name} {key}[{i}]: {err:e}"
                    );
                }
            }
            let (loss, _) = loss_and_grad(&m, &o.batch).unwrap();
            let want = o.json[loss_key].as_f64().unwrap();
            assert!(
                (loss - want).abs() <= tol * want,
                "{name} {loss_key}: {loss} vs {want}"
            );
        }
    }
}

#[test]
fn f64_gradients_of_every_parameter_within_1e_9() {
    for name in FAMILIES {
        let o = Oracle::load(name);
        let mut m = o.model(DType::F64);
        m.set_trainable(&ParamGroups::all()).unwrap();
        let (_, grads) = loss_and_grad(&m, &o.batch).unwrap();
        let want: Vec<&String> = o.ex.keys().filter(|k| k.starts_with("grad.")).collect();
        assert_eq!(
            grads.len(),
            want.len(),
            "{name}: one gradient per parameter"
        );
        for (n, g) in &grads {
            let err = rel_err(g, &o.ex[&o.key("grad.", n)]);
            assert!(err <= o.tol("f64_rel"), "{name}: gradient of {n} {err:e}");
        }
    }
}

#[test]
fn exact_hvps_match_and_are_symmetric() {
    for name in FAMILIES {
        let o = Oracle::load(name);
        let tol = o.tol("hvp_f64_rel");
        let mut m = o.model(DType::F64);
        // On the input embedding alone (a tied head is the same parameter).
        let names = m
            .set_trainable(&ParamGroups::parse("embedding").unwrap())
            .unwrap();
        let embedding = o.json["embedding_parameter"].as_str().unwrap();
        assert_eq!(names, [embedding], "{name}");
        let as_v = |t: &Tensor| vec![(names[0].clone(), t.clone())];
        let (v, u) = (as_v(&o.ex["hvp_embed.v"]), as_v(&o.ex["hvp_embed.u"]));
        let hv = hvp(&m, &o.batch, &v).unwrap();
        let err = rel_err(&hv[0].1, &o.ex["hvp_embed.Hv"]);
        assert!(err <= tol, "{name}: Hv on the embedding {err:e}");
        let hu = hvp(&m, &o.batch, &u).unwrap();
        let (u_hv, v_hu) = (dot(&u, &hv).unwrap(), dot(&v, &hu).unwrap());
        let scale = dot(&hv, &hv).unwrap().sqrt();
        let want = o.json["hvp_embed.uHv"].as_f64().unwrap();
        assert!(
            (u_hv - want).abs() <= tol * scale,
            "{name}: u·Hv {u_hv} vs {want}"
        );
        assert!(
            (u_hv - v_hu).abs() <= 1e-10 * scale,
            "{name}: u·Hv {u_hv}, v·Hu {v_hu}"
        );
        // Over every parameter jointly.
        m.set_trainable(&ParamGroups::all()).unwrap();
        let v: Vec<(String, Tensor)> = m
            .names()
            .iter()
            .map(|n| (n.clone(), o.ex[&o.key("hvp_all.v.", n)].clone()))
            .collect();
        for (n, h) in &hvp(&m, &o.batch, &v).unwrap() {
            let err = rel_err(h, &o.ex[&o.key("hvp_all.Hv.", n)]);
            assert!(err <= tol, "{name}: Hv of {n} {err:e}");
        }
    }
}

#[test]
fn the_bf16_shards_load_to_the_values_of_their_oracle() {
    let loaded = load_model(&oracle("tiny-llama-bf16-sharded"), DType::F32).unwrap();
    assert_eq!(loaded.storage_dtype, DType::BF16);
    // The index and all six shards are among the files a certificate binds the model by.
    let bound: Vec<&str> = loaded.files.iter().map(|f| f.name.as_str()).collect();
    assert!(bound.contains(&"model.safetensors.index.json"), "{bound:?}");
    assert_eq!(
        bound.iter().filter(|n| n.ends_with(".safetensors")).count(),
        6,
        "{bound:?}"
    );
}

#[test]
fn cached_decoding_gives_the_full_forwards_logits() {
    // Rotary positions and grouped-query heads in the cache: prompts of different lengths
    // (right-padded), then the oracle's own continuation fed one token per step; each step's
    // logits against the full forward pass over that row's tokens so far.
    for name in ["tiny-llama", "tiny-qwen2", "tiny-gpt-neox"] {
        let o = Oracle::load(name);
        let m = o.model(DType::F64);
        let cols = o.batch.cols;
        let seqs: Vec<&[u32]> = o.batch.ids.chunks(cols).collect();
        let lens = [5usize, 2, 9];
        let t = 9;
        let (mut ids, mut att) = (vec![0u32; 3 * t], vec![0u32; 3 * t]);
        for r in 0..3 {
            ids[r * t..r * t + lens[r]].copy_from_slice(&seqs[r][..lens[r]]);
            att[r * t..r * t + lens[r]].fill(1);
        }
        let dev = Device::Cpu;
        let ids = Tensor::from_vec(ids, (3, t), &dev).unwrap();
        let att = Tensor::from_vec(att, (3, t), &dev).unwrap();
        let last: Vec<usize> = lens.iter().map(|l| l - 1).collect();
        let (mut logits, mut cache) = m.prefill(&ids, &att, &last, 6).unwrap();
        let mut worst = 0f64;
        for step in 0..6 {
            for r in 0..3 {
                let n = lens[r] + step;
                let full = Tensor::from_slice(&seqs[r][..n], (1, n), &dev).unwrap();
                let ones = Tensor::ones((1, n), DType::U32, &dev).unwrap();
                let want = to_f64(
                    &m.forward(&full, &ones)
                        .unwrap()
                        .get(0)
                        .unwrap()
                        .get(n - 1)
                        .unwrap(),
                );
                let got = to_f64(&logits.get(r).unwrap());
                for (a, b) in got.iter().zip(&want) {
                    worst = worst.max((a - b).abs());
                }
            }
            let feed: Vec<u32> = (0..3).map(|r| seqs[r][lens[r] + step]).collect();
            logits = m.step(&mut cache, &feed).unwrap();
        }
        assert!(worst < 1e-12, "{name}: cached logits differ by {worst:e}");
    }
}
