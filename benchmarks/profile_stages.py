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
    return profile_detail(fn, peak_gflops)["stages"]


def profile_detail(fn: Callable[[], object], peak_gflops: float, top: int = 6) -> dict:
    """``profile_stages``' rows (``stages``), plus each stage's costliest ops (``top_ops``) and the
    matmul shapes that took the most time (``matmul_shapes``), each re-timed alone outside the
    profiler: what the hardware gives at the shapes the scorer actually multiplies, against the
    square-matrix peak the floor is computed at (``matmul_alone_gflops``, time-weighted)."""
    with profile(activities=[ProfilerActivity.CPU], with_flops=True, record_shapes=True) as prof:
        t0 = time.perf_counter()
        fn()
        wall = time.perf_counter() - t0
    secs = dict.fromkeys(STAGES, 0.0)
    ops: dict[str, dict[str, float]] = {s: {} for s in STAGES}
    flops = 0.0
    for ev in prof.key_averages():
        if not ev.key.startswith("aten::"):
            continue
        stage = stage_of(ev.key)
        secs[stage] += ev.self_cpu_time_total / 1e6
        ops[stage][ev.key] = ev.self_cpu_time_total / 1e6
        if stage == "matmul":
            flops += ev.flops or 0
    secs["python/other"] = max(0.0, wall - sum(v for k, v in secs.items() if k != "python/other"))
    rows = [{"stage": s, "s": round(secs[s], 3), "share": round(secs[s] / wall, 3)} for s in STAGES]
    mm = rows[0]
    mm["gflops"] = round(flops / secs["matmul"] / 1e9, 1) if secs["matmul"] else 0.0
    mm["peak_gflops"] = round(peak_gflops, 1)
    rows.append({"stage": "total (wall, profiled)", "s": round(wall, 3), "share": 1.0})
    top_ops = {s: [(k, round(v, 3)) for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:top]] for s, d in ops.items()}
    shapes = matmul_shapes(prof, top)
    weight = sum(r["s"] for r in shapes)
    alone = sum(r["s"] * r["gflops_alone"] for r in shapes) / weight if weight else 0.0
    return {"stages": rows, "top_ops": top_ops, "matmul_shapes": shapes, "matmul_alone_gflops": round(alone, 1)}


def matmul_shapes(prof, top: int) -> list[dict]:
    """The ``top`` (op, input shapes) matmul groups by self time, with their GFLOP/s in the run and alone."""
    groups = [ev for ev in prof.key_averages(group_by_input_shape=True)
              if ev.key in _MATMULS and ev.flops and ev.input_shapes]
    groups.sort(key=lambda ev: -ev.self_cpu_time_total)
    rows = []
    for ev in groups[:top]:
        s = ev.self_cpu_time_total / 1e6
        rows.append({"op": ev.key, "shapes": [list(x) for x in ev.input_shapes if x], "calls": ev.count,
                     "s": round(s, 4), "gflops_in_run": round(ev.flops / s / 1e9, 1) if s else 0.0,
                     "gflops_alone": round(alone_gflops(ev.key, ev.input_shapes), 1)})
    return rows


_MATMULS = {"aten::mm": torch.mm, "aten::bmm": torch.bmm, "aten::addmm": torch.addmm}


def alone_gflops(op: str, shapes: list, repeats: int = 20) -> float:
    """Best GFLOP/s of one matmul op at these input shapes, run alone (the profiler's shapes)."""
    args = [torch.randn(*sh) for sh in shapes if sh]
    out = _MATMULS[op](*args)
    m_k, k_n = args[-2].shape, args[-1].shape
    batch = m_k[0] if op == "aten::bmm" else 1
    flop = 2 * batch * m_k[-2] * m_k[-1] * k_n[-1]
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        _MATMULS[op](*args, out=out)
        best = min(best, time.perf_counter() - t)
    return flop / best / 1e9


def print_stages(rows: list[dict], title: str, detail: dict | None = None) -> None:
    print(f"profile: {title}")
    print(f"{'stage':<24}{'s':>9}{'share':>8}  notes")
    for r in rows:
        note = f"{r['gflops']} GFLOP/s achieved vs {r['peak_gflops']} peak" if "gflops" in r else ""
        if detail and r["stage"] in detail["top_ops"] and r["stage"] != "matmul":
            note = ", ".join(f"{k.removeprefix('aten::')} {v:.2f}" for k, v in detail["top_ops"][r["stage"]][:4])
        print(f"{r['stage']:<24}{r['s']:>9.3f}{r['share']:>8.1%}  {note}")
    if detail:
        for m in detail["matmul_shapes"]:
            print(f"  {m['op'].removeprefix('aten::'):<6} {m['shapes']} x{m['calls']}: {m['s']:.3f} s, "
                  f"{m['gflops_in_run']} GFLOP/s in the run, {m['gflops_alone']} alone")
        print(f"  matmul at these shapes alone: {detail['matmul_alone_gflops']} GFLOP/s (time-weighted), "
              f"against the {rows[0]['peak_gflops']} GFLOP/s square peak the floor is computed at")
