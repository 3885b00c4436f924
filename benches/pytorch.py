"""The PyTorch side of `cargo bench --bench model`'s rows: the same shapes, batches and steps in
PyTorch + transformers (eager attention, float32, two threads), printed as one line per row with
the median over repeated runs (criterion quotes its median too). Not part of lethe or its tests:
run it by hand beside the Rust benchmark to compare (benches/README.md).

    python benches/pytorch.py            # every row
    python benches/pytorch.py small      # rows whose name contains "small"
"""

import statistics
import sys
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

torch.set_num_threads(2)


def model(vocab, positions, embd, layers, heads, dtype=torch.float32):
    cfg = GPT2Config(
        vocab_size=vocab,
        n_positions=positions,
        n_embd=embd,
        n_layer=layers,
        n_head=heads,
        attn_implementation="eager",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    torch.manual_seed(1)
    return GPT2LMHeadModel(cfg).to(dtype).eval()


def llama(vocab, positions, embd, layers, heads, kv_heads, inner):
    """The bench's `llama-small`: `Gpt2Config::new_llama`'s fields (untied head, rotary base
    10 000, no biases, RMSNorm eps 1e-5)."""
    cfg = LlamaConfig(
        vocab_size=vocab,
        max_position_embeddings=positions,
        hidden_size=embd,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        intermediate_size=inner,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        rope_theta=10000.0,
        attn_implementation="eager",
    )
    torch.manual_seed(1)
    return LlamaForCausalLM(cfg).float().eval()


def batch(rows, cols, vocab):
    g = torch.Generator().manual_seed(2)
    return torch.randint(0, vocab, (rows, cols), generator=g)


def token_logprobs(m, ids):
    logits = m(input_ids=ids).logits[:, :-1]
    return torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None])[..., 0]


def loss(m, ids):
    return -token_logprobs(m, ids).mean()


def train_only(m, group):
    for name, p in m.named_parameters():
        embedding = ("transformer.wte.weight", "transformer.wpe.weight", "model.embed_tokens.weight")
        p.requires_grad_(group == "all" or name in embedding)


def ga_step(m, ids, lr=1e-4):
    m.zero_grad(set_to_none=True)
    loss(m, ids).backward()
    with torch.no_grad():
        for p in m.parameters():
            if p.grad is not None:
                p.add_(p.grad, alpha=lr)


def median_ms(f, seconds=4.0, warmup=1.0):
    end = time.perf_counter() + warmup
    while time.perf_counter() < end:
        f()
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 10:
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def rows():
    for name, make, shape, (r, c) in [
        ("small-4x128", model, (2048, 128, 128, 4, 4), (8, 128)),
        ("gpt2-small", model, (50257, 1024, 768, 12, 12), (1, 128)),
        ("llama-small", llama, (50257, 1024, 768, 12, 12, 4, 2048), (1, 128)),
    ]:
        m, ids = make(*shape), batch(r, c, shape[0])
        yield f"{name}/eval-logprobs", torch.no_grad()(lambda: token_logprobs(m, ids))
        for group in ["all", "embedding"]:
            train_only(m, group)
            yield f"{name}/ga-step/{group}", lambda: ga_step(m, ids)
    # Float64 gradient and exact Hessian-vector product (double backward) w.r.t. the embedding.
    m = model(2048, 128, 128, 4, 4, torch.float64)
    ids = batch(8, 128, 2048)
    train_only(m, "embedding")
    params = [m.transformer.wte.weight, m.transformer.wpe.weight]
    v = [torch.randn_like(p) for p in params]

    def gradient():
        return torch.autograd.grad(loss(m, ids), params)

    def hvp():
        g = torch.autograd.grad(loss(m, ids), params, create_graph=True)
        dot = sum((a * b).sum() for a, b in zip(g, v))
        return torch.autograd.grad(dot, params)

    # Products at one point after the first (the form conjugate gradients use): the first
    # backward's graph is kept and each product is a backward through it.
    kept = torch.autograd.grad(loss(m, ids), params, create_graph=True)

    def hvp_retained():
        dot = sum((a * b).sum() for a, b in zip(kept, v))
        return torch.autograd.grad(dot, params, retain_graph=True)

    yield "small-4x128-f64-embedding/gradient", gradient
    yield "small-4x128-f64-embedding/hvp", hvp
    yield "small-4x128-f64-embedding/hvp-linearized", hvp_retained


def main():
    want = sys.argv[1] if len(sys.argv) > 1 else ""
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name, f in rows():
        if want in name:
            print(f"{name:42} {median_ms(f):10.2f} ms", flush=True)


if __name__ == "__main__":
    main()
