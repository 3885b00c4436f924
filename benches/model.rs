//! Speed of lethe's GPT-2 on CPU (f32, 2 threads, random weights): log-prob evaluation in
//! tokens/s and one gradient-ascent step (forward, backward, SGD update of the trainable
//! parameters) for a small model (4 × 128, vocab 2048) at batch 8×128 and GPT-2 small's shape
//! (12 × 768, vocab 50257) at batch 1×128, training `all` parameters or `embedding` only — by
//! the hand-written pass (`model::pass`), and the same for a Llama-family model of GPT-2 small's
//! size (`llama-small`: grouped-query attention, SwiGLU, untied head); one f64 gradient and one
//! exact Hessian-vector product w.r.t. `embedding` on the small model (the pass in float64 and
//! in dual numbers). Then the certifier's repeated
//! work, each with the computation it replaced beside it: greedy decoding with the key/value
//! cache and without it, and the grad_norm attack's per-record gradient norms a batch per
//! backward pass and one record per pass. `benches/pytorch.py` times the first rows in PyTorch
//! at the same shapes (benches/README.md has both sides' figures).

use candle_core::{DType, Tensor};
use criterion::{BenchmarkId, Criterion, Throughput};
use lethe::data::{read_records, Batch, Encoded, TextTokenizer};
use lethe::evidence::answers::answer_stops;
use lethe::evidence::mia::{grad_norms, grad_norms_per_record};
use lethe::evidence::records::GREEDY_SLACK;
use lethe::model::generate::{greedy_batch, greedy_batch_uncached};
use lethe::model::gpt2::add_scaled;
use lethe::model::grad::{hvp, loss_and_grad, Linearized};
use lethe::model::init::random_model;
use lethe::model::{load_model, Gpt2, Gpt2Config, ParamGroups};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cell::RefCell;
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

/// A full batch of random tokens: every position real and scored.
fn random_batch(rows: usize, cols: usize, vocab: usize, seed: u64) -> Batch {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Batch {
        ids: (0..rows * cols)
            .map(|_| rng.gen_range(0..vocab as u32))
            .collect(),
        attention: vec![1; rows * cols],
        target_weight: vec![1.0; rows * (cols - 1)],
        rows,
        cols,
        record_ids: (0..rows).map(|r| r.to_string()).collect(),
    }
}

/// One gradient-ascent step on the batch loss: `θ ← θ + lr·∇L` for every trainable parameter.
fn ascent_step(model: &Gpt2, batch: &Batch, lr: f64) {
    let (_, grads) = loss_and_grad(model, batch).unwrap();
    for ((_, var), (_, g)) in model.trainable_vars().into_iter().zip(grads) {
        add_scaled(var, &g, lr).unwrap();
    }
}

struct Shape {
    name: &'static str,
    cfg: Gpt2Config,
    rows: usize,
    cols: usize,
}

fn shapes() -> [Shape; 3] {
    [
        Shape {
            name: "small-4x128",
            cfg: Gpt2Config::new(2048, 128, 128, 4, 4),
            rows: 8,
            cols: 128,
        },
        Shape {
            name: "gpt2-small",
            cfg: Gpt2Config::new(50257, 1024, 768, 12, 12),
            rows: 1,
            cols: 128,
        },
        // A Llama-family model near GPT-2 small's size: 12 blocks of width 768, 12 query heads
        // sharing 4 key/value heads, SwiGLU of width 2048, untied head, Llama 3's vocabulary
        // cut to GPT-2's.
        Shape {
            name: "llama-small",
            cfg: Gpt2Config::new_llama(50257, 1024, 768, 12, 12, 4, 2048).unwrap(),
            rows: 1,
            cols: 128,
        },
    ]
}

fn eval_and_step(c: &mut Criterion) {
    for shape in shapes() {
        // Built on first use, so that a filter naming one shape builds only that shape's
        // random model (about 13 s each on a slow machine; a profile needs the setup gone).
        let slot: RefCell<Option<Gpt2>> = RefCell::new(None);
        let with_model = |params: Option<&str>, run: &mut dyn FnMut(&Gpt2)| {
            let mut slot = slot.borrow_mut();
            let model =
                slot.get_or_insert_with(|| random_model(&shape.cfg, 1, DType::F32).unwrap());
            if let Some(params) = params {
                model
                    .set_trainable(&ParamGroups::parse(params).unwrap())
                    .unwrap();
            }
            run(model)
        };
        let batch = random_batch(shape.rows, shape.cols, shape.cfg.vocab_size, 2);
        let mut group = c.benchmark_group(shape.name);
        group.sample_size(10).warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(4));
        group.throughput(Throughput::Elements((shape.rows * shape.cols) as u64));
        group.bench_function("eval-logprobs", |b| {
            with_model(None, &mut |model| {
                b.iter(|| model.token_logprobs(&batch).unwrap())
            })
        });
        for params in ["all", "embedding"] {
            group.bench_function(BenchmarkId::new("ga-step", params), |b| {
                with_model(Some(params), &mut |model| {
                    b.iter(|| ascent_step(model, &batch, 1e-4))
                })
            });
        }
        group.finish();
    }
}

fn gradient_and_hvp(c: &mut Criterion) {
    let shape = &shapes()[0];
    let mut model = random_model(&shape.cfg, 1, DType::F64).unwrap();
    model
        .set_trainable(&ParamGroups::parse("embedding").unwrap())
        .unwrap();
    let batch = random_batch(shape.rows, shape.cols, shape.cfg.vocab_size, 2);
    let v: Vec<(String, Tensor)> = model
        .trainable_vars()
        .into_iter()
        .map(|(n, var)| (n.to_string(), var.as_tensor().randn_like(0.0, 1.0).unwrap()))
        .collect();
    let mut group = c.benchmark_group("small-4x128-f64-embedding");
    group.sample_size(10).warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    group.bench_function("gradient", |b| {
        b.iter(|| loss_and_grad(&model, &batch).unwrap())
    });
    group.bench_function("hvp", |b| b.iter(|| hvp(&model, &batch, &v).unwrap()));
    // Products at one point after the first (conjugate gradients' and Lanczos' case): the
    // value planes the first pass kept are read back.
    let mut lin = Linearized::new(&model, &[(&batch, 1.0)], usize::MAX).unwrap();
    lin.hvp(&v).unwrap();
    group.bench_function("hvp-linearized", |b| b.iter(|| lin.hvp(&v).unwrap()));
    group.finish();
}

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel)
}

/// Greedy answers: 8 random prompts of 16-30 tokens continued by 32 tokens each (no stop token)
/// on the random small model; the first 32 forget05 questions on the bundled full model, with
/// the certifier's stop tokens and budgets (answer tokens + GREEDY_SLACK). Cached and uncached
/// give the same tokens (tests/batched.rs).
fn greedy(c: &mut Criterion) {
    let cfg = &shapes()[0].cfg;
    let random = random_model(cfg, 1, DType::F32).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let prompts: Vec<Vec<u32>> = (0..8)
        .map(|i| (0..16 + 2 * i).map(|_| rng.gen_range(0..2048)).collect())
        .collect();
    let small = (random, prompts, vec![32; 8], HashSet::new(), 0);
    let full = load_model(&fixture("models/full"), DType::F32)
        .unwrap()
        .model;
    let tok = TextTokenizer::load(&fixture("models/full/tokenizer.json")).unwrap();
    let records = read_records(&fixture("world/forget05.jsonl")).unwrap();
    let enc: Vec<Encoded> = records
        .iter()
        .filter(|r| r.answer.is_some())
        .take(32)
        .map(|r| tok.encode(r, true, 128).unwrap())
        .collect();
    let prompts = enc.iter().map(|e| e.ids[..e.score_from].to_vec()).collect();
    let budget = enc
        .iter()
        .map(|e| e.ids.len() - e.score_from + GREEDY_SLACK)
        .collect();
    let full = (
        full,
        prompts,
        budget,
        answer_stops(&tok).unwrap(),
        tok.pad_id(),
    );
    let mut group = c.benchmark_group("greedy");
    group.sample_size(10).warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    for (name, (model, prompts, budget, stop, pad)) in
        [("small-4x128", small), ("full-forget05", full)]
    {
        group.bench_function(BenchmarkId::new("cached", name), |b| {
            b.iter(|| greedy_batch(&model, &prompts, &budget, &stop, pad).unwrap())
        });
        group.bench_function(BenchmarkId::new("uncached", name), |b| {
            b.iter(|| greedy_batch_uncached(&model, &prompts, &budget, &stop, pad).unwrap())
        });
    }
    group.finish();
}

/// The grad_norm attack's gradient norms w.r.t. `embedding` (the certifier's default group):
/// 16 random records of 128 tokens on the random small model; forget05's first 64 records
/// (answer-only scoring, as the certifier encodes them) on the bundled full model.
fn gradient_norms(c: &mut Criterion) {
    let cfg = &shapes()[0].cfg;
    let random = random_model(cfg, 1, DType::F32).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let small: Vec<Encoded> = (0..16)
        .map(|r| Encoded {
            id: r.to_string(),
            ids: (0..128).map(|_| rng.gen_range(0..2048)).collect(),
            score_from: 0,
        })
        .collect();
    let full = load_model(&fixture("models/full"), DType::F32)
        .unwrap()
        .model;
    let tok = TextTokenizer::load(&fixture("models/full/tokenizer.json")).unwrap();
    let records = read_records(&fixture("world/forget05.jsonl")).unwrap();
    let forget: Vec<Encoded> = records
        .iter()
        .take(64)
        .map(|r| tok.encode(r, true, 128).unwrap())
        .collect();
    let params = ParamGroups::parse("embedding").unwrap();
    let mut group = c.benchmark_group("grad-norms");
    group.sample_size(10).warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    for (name, mut model, recs) in [
        ("small-4x128", random, small),
        ("full-forget05", full, forget),
    ] {
        group.throughput(Throughput::Elements(recs.len() as u64));
        group.bench_function(BenchmarkId::new("batched", name), |b| {
            b.iter(|| grad_norms(&mut model, &recs, 0, &params, &mut |_| {}).unwrap())
        });
        group.bench_function(BenchmarkId::new("per-record", name), |b| {
            b.iter(|| grad_norms_per_record(&mut model, &recs, 0, &params, &mut |_| {}).unwrap())
        });
    }
    group.finish();
}

fn main() {
    // Two threads, as PyTorch's figures in DESIGN.md; then the same process set-up as the
    // `lethe` binary (thread count, rayon's pool, allocator thresholds), and the rows run on
    // the pool as the binary's command does.
    std::env::set_var("RAYON_NUM_THREADS", "2");
    lethe::runtime::init();
    lethe::runtime::on_pool(|| {
        let mut c = Criterion::default().configure_from_args();
        eval_and_step(&mut c);
        gradient_and_hvp(&mut c);
        greedy(&mut c);
        gradient_norms(&mut c);
        c.final_summary();
    });
}
