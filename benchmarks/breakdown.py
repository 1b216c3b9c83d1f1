"""Where a scoring run's time goes, without torch.profiler, and the least time the stock matmul
kernel needs for the linear layers it ran.

torch.profiler doubled the fix loop's wall time (10.2 s profiled against 5.1 s) and so depressed
every rate it reported. Here each decoder layer's modules are wrapped with ``perf_counter`` (a
few hundred nanoseconds per call) and every ``nn.Linear`` call records its row count M:

* ``module_times``: seconds in the attention and MLP linears, the rest of attention (rotary,
  SDPA, the kept keys and values; the SDPA kernel's own share beside it), the rest of the MLP (SiLU, product), the norms, the residual
  adds, the output layer, and everything outside the model (gathers, log-softmax, Python);
* ``linear_bound``: the same linear calls charged at the rate the stock kernel gives at their
  M, timed on the model's own weights, all layers in a row (as cold in the cache as in a forward:
  the weights are far larger than the cache). Elementwise work and attention count as free, so
  the bound is below anything the scorer could reach with these kernels.
"""

from __future__ import annotations

import collections
import contextlib
import time
from typing import Callable, Iterator

import torch
import torch.nn as nn

ROWS = (
    ("attention linears", "attn_lin"),
    ("attention rest (rotary, SDPA, kept keys/values)", "attn_rest"),
    ("  of which the SDPA kernel", "sdpa"),
    ("MLP linears", "mlp_lin"),
    ("MLP rest (SiLU, product)", "mlp_rest"),
    ("norms", "norm"),
    ("residual adds", "layer_rest"),
    ("output layer (lm_head)", "lm_head"),
    ("outside the model (gathers, log-softmax, Python)", "outside"),
)


@contextlib.contextmanager
def _wrapped(model) -> Iterator[tuple[dict[str, float], list[tuple[int, int, int, str]]]]:
    """Time the modules of a transformers causal LM while the block runs; record each linear call."""
    secs: dict[str, float] = collections.defaultdict(float)
    calls: list[tuple[int, int, int, str]] = []  # (M, in, out, "block" | "head")
    saved: list[tuple[nn.Module, object]] = []

    def wrap(mod: nn.Module, key: str, linear: str | None = None) -> None:
        inner = mod.forward

        def forward(*args, **kwargs):
            t = time.perf_counter()
            out = inner(*args, **kwargs)
            secs[key] += time.perf_counter() - t
            if linear is not None:
                x = args[0]
                calls.append((x.numel() // x.shape[-1], mod.in_features, mod.out_features, linear))
            return out

        saved.append((mod, mod.__dict__.get("forward")))
        mod.forward = forward

    sdpa = torch.nn.functional.scaled_dot_product_attention

    def timed_sdpa(*args, **kwargs):
        t = time.perf_counter()
        out = sdpa(*args, **kwargs)
        secs["sdpa"] += time.perf_counter() - t
        return out

    torch.nn.functional.scaled_dot_product_attention = timed_sdpa
    layers = model.model.layers
    for layer in layers:
        wrap(layer, "layer"), wrap(layer.self_attn, "attn"), wrap(layer.mlp, "mlp")
        wrap(layer.input_layernorm, "norm"), wrap(layer.post_attention_layernorm, "norm")
        for name, mod in layer.named_modules():
            if isinstance(mod, nn.Linear):
                wrap(mod, "attn_lin" if name.startswith("self_attn") else "mlp_lin", "block")
    wrap(model.model.norm, "final_norm"), wrap(model.model, "model"), wrap(model.lm_head, "lm_head", "head")
    try:
        yield secs, calls
    finally:
        torch.nn.functional.scaled_dot_product_attention = sdpa
        for mod, old in reversed(saved):
            if old is None:
                del mod.forward
            else:
                mod.forward = old


def module_times(model, fn: Callable[[], object]) -> tuple[dict[str, float], list[tuple[int, int, int, str]]]:
    """Run ``fn`` once with the modules timed: (seconds per ``ROWS`` key plus "wall", linear calls)."""
    with _wrapped(model) as (secs, calls):
        t0 = time.perf_counter()
        fn()
        wall = time.perf_counter() - t0
    s = dict(secs)
    out = {
        "attn_lin": s["attn_lin"], "attn_rest": s["attn"] - s["attn_lin"], "mlp_lin": s["mlp_lin"],
        "mlp_rest": s["mlp"] - s["mlp_lin"], "norm": s["norm"] + s["final_norm"],
        "layer_rest": s["layer"] - s["attn"] - s["mlp"] - s["norm"],
        "lm_head": s["lm_head"], "outside": wall - s["model"] - s["lm_head"], "wall": wall, "sdpa": s["sdpa"],
    }
    return out, list(calls)


@torch.inference_mode()
def linear_rate(model, m: int, which: str, repeats: int = 3) -> float:
    """Best GFLOP/s of the stock kernel at ``m`` rows: every block linear of every layer in a row
    (``which="block"``), or the output layer alone (``"head"``), on the model's own weights."""
    weights = ([mod.weight for layer in model.model.layers for mod in layer.modules() if isinstance(mod, nn.Linear)]
               if which == "block" else [model.lm_head.weight])
    xs = {w.shape[1]: torch.randn(m, w.shape[1], dtype=w.dtype) for w in weights}
    flops = sum(2 * m * w.shape[0] * w.shape[1] for w in weights)
    best = float("inf")
    for _ in range(repeats + 1):  # the first is a warm-up
        t = time.perf_counter()
        for w in weights:
            torch.nn.functional.linear(xs[w.shape[1]], w)
        best = min(best, time.perf_counter() - t)
    return flops / best / 1e9


def linear_bound(model, calls: list[tuple[int, int, int, str]], repeats: int = 3) -> dict:
    """Seconds the recorded linear calls need at the stock kernel's rate for their M (see the module
    docstring), with the time-weighted rate and the M range."""
    rates: dict[tuple[int, str], float] = {}
    seconds = flops = 0.0
    for m, k, n, which in calls:
        if (m, which) not in rates:
            rates[(m, which)] = linear_rate(model, m, which, repeats)
        f = 2 * m * k * n
        seconds += f / (rates[(m, which)] * 1e9)
        flops += f
    block = sorted({m for m, _, _, w in calls if w == "block"})
    head = sorted({m for m, _, _, w in calls if w == "head"})
    return {"s": seconds, "gflops": flops / seconds / 1e9 if seconds else 0.0, "linear_gflop": flops / 1e9,
            "block_m": [block[0], block[-1]] if block else [], "head_m": head,
            "rates": {f"{w} M={m}": round(r, 1) for (m, w), r in sorted(rates.items(), key=lambda kv: (kv[0][1], kv[0][0]))}}


def print_breakdown(label: str, times: dict[str, float], calls, bound: dict, floor_s: float) -> None:
    wall = times["wall"]
    lin = times["attn_lin"] + times["mlp_lin"] + times["lm_head"]
    lin_flops = sum(2 * m * k * n for m, k, n, _ in calls)
    print(f"breakdown: {label}, wall {wall:.3f} s ({wall / floor_s:.2f}x the floor), no profiler")
    for name, key in ROWS:
        print(f"  {name:50s} {times[key]:7.3f} s {times[key] / wall:6.1%}")
    print(f"  linears in the run: {lin:.3f} s, {lin_flops / lin / 1e9:.1f} GFLOP/s over block M {bound['block_m']}, "
          f"output-layer M {bound['head_m']}")
    print(f"  the same linear calls at the stock kernel's rate for their M: {bound['s']:.3f} s "
          f"({bound['gflops']:.1f} GFLOP/s) = {bound['s'] / floor_s:.2f}x the floor with everything else free")


def breakdown(model, fn: Callable[[], object], label: str, floor_s: float, repeats: int = 3) -> dict:
    """``module_times`` and ``linear_bound`` of one run of ``fn``, printed; the record for a JSON."""
    times, calls = module_times(model, fn)
    bound = linear_bound(model, calls, repeats)
    print_breakdown(label, times, calls, bound, floor_s)
    return {"seconds": {k: round(v, 3) for k, v in times.items()}, "linear_bound_s": round(bound["s"], 3),
            "linear_bound_vs_floor": round(bound["s"] / floor_s, 2), "linear_bound_gflops": round(bound["gflops"], 1),
            "block_m": bound["block_m"], "head_m": bound["head_m"], "rates": bound["rates"]}
