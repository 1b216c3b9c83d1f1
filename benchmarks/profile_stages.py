"""Where a scorer's time goes: one run under ``torch.profiler``, its ops grouped into stages.

Stages: matmuls (linear layers and the output layer), attention (scaled dot-product), norms,
elementwise (activations, adds, casts), gathers (embedding, index/cat/copy: the trie's bins and
kept-prefix gathers), and Python/other (wall time no torch op accounts for: trie build, bin
packing, the study's bookkeeping). The matmul stage's achieved GFLOP/s (the profiler's FLOP
count over its self time) is printed beside the peak measured in the same run.
"""

from __future__ import annotations

import time
from typing import Callable

import torch
from torch.profiler import ProfilerActivity, profile

STAGES = ("matmul", "attention", "norm", "elementwise", "gather", "python/other")


def stage_of(op: str) -> str:
    """The stage an aten op's self time is counted in."""
    name = op.removeprefix("aten::")
    if name in {"mm", "addmm", "bmm", "matmul", "linear", "baddbmm"}:
        return "matmul"
    if "attention" in name or name.startswith("_flash") or name.startswith("_efficient"):
        return "attention"
    if "norm" in name or name in {"rsqrt", "pow", "mean", "var"}:
        return "norm"
    if name in {"embedding", "index", "index_select", "gather", "cat", "copy_", "clone", "contiguous",
                "_to_copy", "stack", "narrow", "slice", "select", "as_strided", "expand", "view", "reshape",
                "_unsafe_view", "split", "unsqueeze", "transpose", "t", "empty", "zeros", "full", "to"}:
        return "gather"
    return "elementwise"


def profile_stages(fn: Callable[[], object], peak_gflops: float) -> list[dict]:
    """Run ``fn`` once under the profiler; rows of stage, seconds, share (and GFLOP/s for matmul)."""
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        t0 = time.perf_counter()
        fn()
        wall = time.perf_counter() - t0
    secs = dict.fromkeys(STAGES, 0.0)
    flops = 0.0
    for ev in prof.key_averages():
        if not ev.key.startswith("aten::"):
            continue
        stage = stage_of(ev.key)
        secs[stage] += ev.self_cpu_time_total / 1e6
        if stage == "matmul":
            flops += ev.flops or 0
    secs["python/other"] = max(0.0, wall - sum(v for k, v in secs.items() if k != "python/other"))
    rows = [{"stage": s, "s": round(secs[s], 3), "share": round(secs[s] / wall, 3)} for s in STAGES]
    mm = rows[0]
    mm["gflops"] = round(flops / secs["matmul"] / 1e9, 1) if secs["matmul"] else 0.0
    mm["peak_gflops"] = round(peak_gflops, 1)
    rows.append({"stage": "total (wall, profiled)", "s": round(wall, 3), "share": 1.0})
    return rows


def print_stages(rows: list[dict], title: str) -> None:
    print(f"profile: {title}")
    print(f"{'stage':<24}{'s':>9}{'share':>8}  notes")
    for r in rows:
        note = f"{r['gflops']} GFLOP/s achieved vs {r['peak_gflops']} peak" if "gflops" in r else ""
        print(f"{r['stage']:<24}{r['s']:>9.3f}{r['share']:>8.1%}  {note}")
