"""The linear layers' kernels at the row counts the scorer runs: stock ``F.linear`` against the
prepacked-weight kernels PyTorch ships for the CPU, on the model's own weights.

Every decoder linear of every layer runs in a row at M rows (the weights, ~425 MB in fp32, are
as cold in the cache as in a forward), interleaved, best of ``--repeats``:

* ``plain``: ``F.linear(x, W)``, what the model runs;
* ``mkl packed``: ``torch.ops.mkl._mkl_linear`` with weights packed for exactly M rows
  (``_mkl_reorder_linear_weight``); at any other M it falls back to the plain kernel, shown by
  ``mkl packed, other M`` (weights packed for 200 rows);
* ``onednn packed``: ``torch.ops.mkldnn._linear_pointwise`` on weights reordered by oneDNN;
* ``W^T contiguous``: ``x @ W.T.contiguous()``, the weight stored input-major.

    python benchmarks/linear_kernels.py [--threads 2] [--rows 32 64 128 200 256 512 1024]
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

import torch
import torch.nn as nn
import torch.nn.functional as F

from attribution_speed import matmul_peak
from promptlens.backends.hf import load_backend

OTHER_M = 200


@torch.inference_mode()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rows", type=int, nargs="+", default=[32, 64, 128, 200, 256, 512, 1024])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="two row counts, two repeats (smoke test)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    if args.quick:
        args.rows, args.repeats = [37, 200], 2
    torch.set_num_threads(args.threads)
    model = load_backend().model
    weights = [m.weight.detach() for layer in model.model.layers for m in layer.modules() if isinstance(m, nn.Linear)]
    mb = sum(w.numel() for w in weights) * 4 / 2**20
    has_mkl = torch._C.has_mkl
    other = [torch.ops.mkl._mkl_reorder_linear_weight(w, OTHER_M) for w in weights] if has_mkl else []
    onednn = [torch.ops.mkldnn._reorder_linear_weight(w, None) for w in weights]
    transposed = [w.t().contiguous() for w in weights]
    peak = matmul_peak(args.threads)
    print(f"threads={args.threads}  fp32 matmul peak={peak:.1f} GFLOP/s  {len(weights)} linears, {mb:.0f} MB of "
          f"weights  mkl={has_mkl}  best of {args.repeats}, interleaved")
    rows = []
    for m in args.rows:
        xs = {k: torch.randn(m, k) for k in {w.shape[1] for w in weights}}
        flops = sum(2 * m * w.shape[0] * w.shape[1] for w in weights)
        kernels = {"plain": lambda: [F.linear(xs[w.shape[1]], w) for w in weights],
                   "onednn packed": lambda: [torch.ops.mkldnn._linear_pointwise(xs[w.shape[1]], p, None, "none", [], "")
                                             for w, p in zip(weights, onednn)],
                   "W^T contiguous": lambda: [xs[t.shape[0]] @ t for t in transposed]}
        if has_mkl:
            packed = [torch.ops.mkl._mkl_reorder_linear_weight(w, m) for w in weights]
            kernels["mkl packed"] = lambda: [torch.ops.mkl._mkl_linear(xs[w.shape[1]], p, w, None, m)
                                             for w, p in zip(weights, packed)]
            if m != OTHER_M:
                kernels["mkl packed, other M"] = lambda: [torch.ops.mkl._mkl_linear(xs[w.shape[1]], p, w, None, OTHER_M)
                                                          for w, p in zip(weights, other)]
        ref = [F.linear(xs[w.shape[1]], w) for w in weights[:7]]
        best = dict.fromkeys(kernels, float("inf"))
        diff = {}
        for name, fn in kernels.items():
            out = fn()  # warm-up, and the values
            diff[name] = max((a - b).abs().max().item() for a, b in zip(out[:7], ref))
        for _ in range(args.repeats):
            for name, fn in kernels.items():
                t = time.perf_counter()
                fn()
                best[name] = min(best[name], time.perf_counter() - t)
        row = {"rows": m, "gflops": {k: round(flops / v / 1e9, 1) for k, v in best.items()},
               "vs_plain": {k: round(best["plain"] / v, 3) for k, v in best.items()},
               "max_abs_diff": {k: float(v) for k, v in diff.items()}}
        if has_mkl:
            row["mkl_packed_mb"] = round(sum(p.numel() * p.element_size() for p in packed) / 2**20)
        rows.append(row)
        print(f"M={m:5d}  " + "  ".join(f"{k} {g:6.1f} ({row['vs_plain'][k]:.2f}x)" for k, g in row["gflops"].items()),
              flush=True)
    if has_mkl:
        print(f"mkl packed weights: {rows[-1]['mkl_packed_mb']} MB per row count (the weights: {mb:.0f} MB)")
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": args.threads, "peak_gflops": round(peak, 1),
                                               "weights_mb": round(mb), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
