"""Split attention with a log-sum-exp merge against the attention exact mode runs, for one chain.

A chain of ``n`` new tokens after ``P`` kept past tokens (an ablation variant: the prompt's start,
then everything after the removed segment). promptlens' ``_tree_attention`` gathers the chain's
keys and values and runs SDPA with a mask (past visible, own tokens causal), or, when the past is
shorter than the chain, plain causal SDPA after ``P`` blank query rows (``_Group.lead``). The split
alternative reads the past as a view, with no gather and no mask (query heads folded onto their kv
head, GQA without copies), runs the chain's own tokens causally, and merges the two by their
log-sum-exp (``aten._scaled_dot_product_flash_attention_for_cpu`` returns it). SmolLM2's shapes:
9 query heads, 3 kv heads, head size 64. Interleaved, best of ``--repeats``.

    python benchmarks/split_attention.py [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

HEADS, KV_HEADS, DIM = 9, 3, 64
SHAPES = ((100, 900), (400, 600), (500, 500), (600, 400), (900, 150), (300, 60), (1000, 30))
_flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu


def current(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, past: int) -> torch.Tensor:
    """What ``_tree_attention`` does for a lone chain: q [n, H, D]; k, v [P + n, KV, D] -> [n, H, D]."""
    n = q.shape[0]
    index = torch.arange(past + n)
    qg = q.view(1, n, HEADS, DIM).transpose(1, 2)
    kg = k.index_select(0, index).view(1, past + n, KV_HEADS, DIM).transpose(1, 2)
    vg = v.index_select(0, index).view(1, past + n, KV_HEADS, DIM).transpose(1, 2)
    if past >= n:  # the masked kernel
        mask = torch.zeros(1, 1, n, past + n, dtype=torch.bool)
        mask[..., :past] = True
        mask[0, 0, :, past:] = torch.ones(n, n, dtype=torch.bool).tril()
        o = F.scaled_dot_product_attention(qg, kg, vg, attn_mask=mask, enable_gqa=True)
    else:  # causal after blank rows
        qg = torch.cat([qg.new_zeros(1, HEADS, past, DIM), qg], dim=2)
        o = F.scaled_dot_product_attention(qg, kg, vg, is_causal=True, enable_gqa=True)[:, :, past:]
    return o.transpose(1, 2).reshape(n, HEADS, DIM)


def split(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, past: int) -> torch.Tensor:
    """The past as a view (unmasked), the own tokens causal, merged by log-sum-exp."""
    n, group = q.shape[0], HEADS // KV_HEADS
    folded = q.view(n, KV_HEADS, group, DIM).permute(1, 2, 0, 3).reshape(1, KV_HEADS, group * n, DIM)
    o_past, lse_past = _flash(folded, k[:past].permute(1, 0, 2)[None], v[:past].permute(1, 0, 2)[None], 0.0, False)[:2]
    o_past, lse_past = o_past.reshape(HEADS, n, DIM), lse_past.reshape(HEADS, n)
    own_k = k[past:].permute(1, 0, 2).repeat_interleave(group, 0)[None]
    own_v = v[past:].permute(1, 0, 2).repeat_interleave(group, 0)[None]
    o_own, lse_own = _flash(q.transpose(0, 1)[None], own_k, own_v, 0.0, True)[:2]
    o_own, lse_own = o_own[0], lse_own[0]
    top = torch.maximum(lse_past, lse_own)
    w_past, w_own = torch.exp(lse_past - top)[..., None], torch.exp(lse_own - top)[..., None]
    return ((o_past * w_past + o_own * w_own) / (w_past + w_own)).transpose(0, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="two shapes, two repeats (smoke test)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    shapes = SHAPES[2:4] if args.quick else SHAPES
    repeats = 2 if args.quick else args.repeats
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    print(f"threads={args.threads}  {HEADS} heads, {KV_HEADS} kv heads, dim {DIM}; best of {repeats}, interleaved")
    for past, n in shapes:
        q, k, v = torch.randn(n, HEADS, DIM), torch.randn(past + n, KV_HEADS, DIM), torch.randn(past + n, KV_HEADS, DIM)
        diff = (current(q, k, v, past) - split(q, k, v, past)).abs().max().item()
        best = {"current": float("inf"), "split": float("inf")}
        for _ in range(repeats):
            for name, fn in (("current", current), ("split", split)):
                t = time.perf_counter()
                fn(q, k, v, past)
                best[name] = min(best[name], time.perf_counter() - t)
        row = {"past": past, "n": n, "current_ms": round(best["current"] * 1e3, 3),
               "split_ms": round(best["split"] * 1e3, 3), "split_speedup": round(best["current"] / best["split"], 3),
               "max_abs_diff": diff}
        rows.append(row)
        print(f"past {past:5d}  own {n:5d}  current {row['current_ms']:7.2f} ms  split {row['split_ms']:7.2f} ms  "
              f"split {row['split_speedup']:.2f}x  max |diff| {diff:.1e}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": args.threads, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
