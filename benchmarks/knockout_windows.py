"""Diagnostic for --mode knockout on the long workload: exact leave-one-out beside the knockout's
raw estimates (verify_k=0) for several tail windows, one process; per-segment numbers to JSON.
The agreement "after verification" replaces the estimate's 5 most harmful with exact's numbers,
as verify does.

    python benchmarks/knockout_windows.py [--threads 1] [--windows 0,2,4,8] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import torch

from long_prompt import long_workload
from promptlens.approx import ApproxConfig, agreement
from promptlens.attribution import attribute
from promptlens.backends.hf import load_backend


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--windows", default="0,2,4,8")
    ap.add_argument("--verify-k", type=int, default=5)
    ap.add_argument("--json", default="knockout_windows.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    backend = load_backend()
    text, cases, _ = long_workload()
    t0 = time.perf_counter()
    exact = attribute(text, cases=cases, backend=backend, objective="logprob")
    t_exact = time.perf_counter() - t0
    ex = np.array([f.mean for f in exact.features])
    harmful = [j for j, f in enumerate(exact.features) if f.harmful]
    out = {"exact": {"seconds": round(t_exact, 1), "tokens": exact.tokens_computed, "means": ex.tolist(),
                     "harmful": harmful, "texts": [f.segment.text.strip()[:50] for f in exact.features]}, "windows": []}
    print(f"exact {t_exact:.1f} s, {exact.tokens_computed} tokens, {len(harmful)} harmful; load {os.getloadavg()[0]:.1f}",
          flush=True)
    for w in [int(v) for v in args.windows.split(",")]:
        t0 = time.perf_counter()
        res = attribute(text, cases=cases, backend=backend, objective="logprob", mode="knockout",
                        approx=ApproxConfig(verify_k=0, window=w))
        t = time.perf_counter() - t0
        raw = np.array([f.mean for f in res.features])
        est = np.array([f.estimated for f in res.features])
        ver = raw.copy()
        top = [j for j in np.argsort(raw, kind="stable")[: args.verify_k] if est[j]]
        ver[top] = ex[top]
        row = {"window": w, "seconds": round(t, 1), "tokens": res.tokens_computed,
               "forward_passes": res.forward_passes, "settings": dict(res.approximation.settings),
               "raw": agreement(raw, ex, harmful), "verified": agreement(ver, ex, harmful),
               "verify_tokens_extra": None, "means": raw.tolist(), "estimated": est.tolist()}
        out["windows"].append(row)
        print(f"window {w}: {t:.1f} s, {res.tokens_computed} tokens; raw {row['raw']}; after verify {row['verified']}; "
              f"{row['settings']}; load {os.getloadavg()[0]:.1f}", flush=True)
    Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
