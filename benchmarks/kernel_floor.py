"""How close to the FLOP floor can any exact scorer get with PyTorch's CPU kernels?

The speed benchmarks set promptlens' time against a floor: the FLOPs that must be computed at
the fp32 matrix-multiply peak (a 1536 x 1536 matmul). This script measures what the kernels a
forward is made of reach on this machine, with nothing of promptlens in the way:

- a plain forward of the model (transformers, SDPA attention, causal, no cache, no output layer)
  over N tokens, against that floor: the best an exact scorer built on these kernels can do for a
  sequence of N tokens;
- each of the model's matrix multiplies at N rows, alone, against the peak;
- SDPA's causal attention over N tokens (the kernel the forward uses), against the peak;
- the kernel bound: the floor's linear FLOPs at the matmul rate of the model's shapes plus its
  attention FLOPs at SDPA's rate (elementwise ops, norms and rotary taken as free).

    python benchmarks/kernel_floor.py [--threads 2] [--lengths 256,512,1024,2048] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.nn.functional as F

from attribution_speed import flops_per_token, matmul_peak
from promptlens.backends.devices import cpu_native_bf16
from promptlens.backends.hf import load_backend


def best_time(fn, repeats: int) -> float:
    fn()  # warm
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def head_dim(config) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def shapes(config) -> list[tuple[str, int, int]]:
    """(name, in, out) of each linear layer of one decoder layer."""
    d, inter = config.hidden_size, config.intermediate_size
    q, kv = config.num_attention_heads * head_dim(config), config.num_key_value_heads * head_dim(config)
    return [("q", d, q), ("k", d, kv), ("v", d, kv), ("o", q, d), ("gate", d, inter), ("up", d, inter), ("down", inter, d)]


def linear_rate(config, n: int, repeats: int) -> float:
    """GFLOP/s of one decoder layer's matrix multiplies at ``n`` rows, each timed alone (weights warm)."""
    flops = seconds = 0.0
    for _, k, m in shapes(config):
        x, w = torch.randn(n, k), torch.randn(m, k)
        seconds += best_time(lambda: F.linear(x, w), repeats)
        flops += 2 * n * k * m
    return flops / seconds / 1e9


def attention_rate(config, n: int, repeats: int) -> float:
    """GFLOP/s of SDPA's causal attention over ``n`` tokens (the useful half of QK^T and AV)."""
    heads, kv_heads, dim = config.num_attention_heads, config.num_key_value_heads, head_dim(config)
    q = torch.randn(1, heads, n, dim)
    k, v = torch.randn(1, kv_heads, n, dim), torch.randn(1, kv_heads, n, dim)
    seconds = best_time(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                                               enable_gqa=heads != kv_heads), repeats)
    return attention_flops(config, n) / config.num_hidden_layers / seconds / 1e9


def attention_flops(config, n: int) -> float:
    """The floor's attention FLOPs over ``n`` tokens (the rest of ``flops_per_token`` is linear)."""
    return 4 * config.num_hidden_layers * config.num_attention_heads * head_dim(config) * n * (n + 1) / 2


@torch.inference_mode()
def plain_forward(model, n: int, repeats: int) -> float:
    ids = torch.randint(100, model.config.vocab_size - 100, (1, n), generator=torch.Generator().manual_seed(n))
    return best_time(lambda: model.model(input_ids=ids), repeats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lengths", default="256,512,1024,2048", help="tokens per forward, comma-separated")
    ap.add_argument("--repeats", type=int, default=5, help="best of this many timings of each kernel")
    ap.add_argument("--quick", action="store_true", help="two short lengths, 1 repeat (smoke test)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    if args.quick:
        args.lengths, args.repeats = "64,128", 1
    torch.set_num_threads(args.threads)
    model = load_backend().model
    config = model.config
    peak = matmul_peak(args.threads)
    rows = []
    capability = torch.backends.cpu.get_cpu_capability()
    print(f"threads={args.threads}  {platform.machine()} {capability}  native bf16: {cpu_native_bf16()}  "
          f"fp32 matmul peak (1536^2): {peak:.1f} GFLOP/s")
    print("tokens | plain forward s | floor s | plain / floor | linear GFLOP/s (% peak) | SDPA causal GFLOP/s "
          "(% peak) | kernel bound / floor")
    for n in (int(x) for x in args.lengths.split(",")):
        total = sum(flops_per_token(model, pos + 1, lm_head=False) for pos in range(n))  # the benchmarks' floor
        att = attention_flops(config, n)
        lin = total - att
        floor = total / peak / 1e9
        plain = plain_forward(model, n, args.repeats)
        lin_rate, att_rate = linear_rate(config, n, args.repeats), attention_rate(config, n, args.repeats)
        bound = lin / lin_rate / 1e9 + att / att_rate / 1e9
        row = {"tokens": n, "plain_s": round(plain, 4), "floor_s": round(floor, 4), "plain_vs_floor": round(plain / floor, 3),
               "linear_gflops": round(lin_rate, 1), "attention_gflops": round(att_rate, 1),
               "attention_share_of_floor": round(att / (lin + att), 3), "kernel_bound_vs_floor": round(bound / floor, 3)}
        rows.append(row)
        print(f"{n} | {plain:.3f} | {floor:.3f} | {plain / floor:.2f} | {lin_rate:.0f} ({lin_rate / peak:.0%}) | "
              f"{att_rate:.0f} ({att_rate / peak:.0%}) | {bound / floor:.2f}", flush=True)
    result = {"threads": args.threads, "peak_gflops": round(peak, 1), "native_bf16": cpu_native_bf16(),
              "cpu_capability": capability, "rows": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
