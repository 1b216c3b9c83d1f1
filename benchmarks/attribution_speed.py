"""Attribution speed: promptlens' FeatureAblation against stock Captum, same work, one process.

Stock = Captum ``LLMAttribution(FeatureAblation)`` with ``forward_in_tokens=False`` (its exact
path: one full forward per perturbation). Runs are interleaved (stock, ours, stock, ours, ...)
and the median of each is compared, because these machines are noisy. Prints the time ratio,
the max |difference| of the attributions, and promptlens' time against its floor: the FLOPs of
the tokens that must be recomputed (each variant from its first changed token on, plus the
original once) at the fp32 matrix-multiply peak (best of 10 square 1536 x 1536 products),
measured right before and right after each promptlens repeat. ``--bf16`` adds a row for
promptlens on a bfloat16 copy of the model: its speed and its difference from fp32.

    python benchmarks/attribution_speed.py [--threads 2] [--repeats 3] [--bf16] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from promptlens.attribution import attribute
from promptlens.backends.hf import load_backend
from promptlens.cases import dataset_path, load_cases
from promptlens.segments import features, fill, join, segment
from promptlens.types import Case

PROMPT_12 = (
    "You are a helpful assistant for a sports trivia website. "
    "Your job is to judge short statements about athletes. "
    "Each statement names a real athlete and an action. "
    "Decide if the action fits the athlete's sport. "
    "For example, a soccer player can score a penalty kick. "
    "A basketball player cannot throw a touchdown pass. "
    "Ignore the athlete's nationality and age. "
    "Do not explain your reasoning. "
    "Statement: Lionel Messi scored a free kick in the final. "
    "Most statements on this site are implausible. "
    "Is the statement plausible or implausible? "
    "Answer with one word."
)
TARGET_12 = "plausible"
TEMPLATE_8 = (
    "You judge sports statements. "
    "Decide whether the statement is plausible. "
    "Think about which sport the athlete plays. "
    "Statement: {input} "
    "Consider the action described. "
    "Some statements mix sports. "
    "Answer plausible or implausible. "
    "Answer:"
)


def matmul_peak(threads: int, size: int = 1536, repeats: int = 10) -> float:
    """Best fp32 GFLOP/s of a square matrix multiply with this many threads."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def flops_per_token(model, context: int, lm_head: bool) -> float:
    """Forward FLOPs of one token at a given context length (linear layers + attention)."""
    cfg = model.config
    embed = model.get_input_embeddings().weight.numel()
    linear = sum(p.numel() for n, p in model.named_parameters() if p.dim() == 2) - embed
    if not cfg.tie_word_embeddings:
        linear -= model.get_output_embeddings().weight.numel()
    heads_dim = cfg.num_attention_heads * getattr(cfg, "head_dim", cfg.hidden_size // cfg.num_attention_heads)
    attention = 4 * cfg.num_hidden_layers * heads_dim * context  # QK^T and AV
    head = 2 * embed if lm_head else 0
    return 2 * linear + attention + head


def floor_flops(backend, variants: list[list[int]], original: list[int], n_target: int) -> float:
    """FLOPs of the original once plus, per variant, every token from its first changed one on."""
    model, total = backend.model, 0.0
    for seq in [original, *variants]:
        common = 0
        if seq is not original:
            while common < min(len(seq), len(original)) and seq[common] == original[common]:
                common += 1
        for pos in range(common, len(seq)):
            total += flops_per_token(model, pos + 1, lm_head=pos >= len(seq) - n_target - 1)
    return total


def token_variants(backend, text: str, case: Case, ids_target: list[int]) -> tuple[list[int], list[list[int]]]:
    segs = segment(text, "sentence")
    feats = features(segs)
    def ids(replace):
        return backend.encode_prompt(fill(join(segs, replace), case.vars)) + ids_target
    return ids({}), [ids({i: ""}) for i in feats]


def stock_captum(backend, text: str, cases: list[Case]) -> np.ndarray:
    from captum.attr import FeatureAblation, LLMAttribution, TextTemplateInput

    llm = LLMAttribution(FeatureAblation(backend.model), backend.tokenizer)
    rows = []
    for case in cases:
        segs = segment(text, "sentence")
        feats = features(segs)
        filled = [fill(s.text, case.vars) if s.kind == "field" else fill(s.text, {}) for s in segs]
        filled = [case.vars[s.name] if s.kind == "field" else f for s, f in zip(segs, filled)]
        prompt = "".join(filled)
        head, tail = backend.render(prompt).split(prompt)
        esc = lambda s: s.replace("{", "{{").replace("}", "}}")
        # Fixed pieces (fields, gaps) are baked into the template; features are its values.
        pieces, values = [esc(head)], []
        for i, (seg, txt) in enumerate(zip(segs, filled)):
            if i in feats:
                pieces.append("{}")
                values.append(txt)
            else:
                pieces.append(esc(txt))
        pieces.append(esc(tail))
        inp = TextTemplateInput("".join(pieces), values=values, baselines=[""] * len(values))
        with torch.no_grad():
            res = llm.attribute(inp, target=case.target, forward_in_tokens=False)
        rows.append(res.seq_attr.detach().numpy())
    return np.stack(rows)


def _ours(backend, text: str, cases: list[Case]):
    t = time.perf_counter()
    result = attribute(text, cases=cases, backend=backend, method="ablation", objective="logprob")
    return time.perf_counter() - t, result


def _per_case(result) -> np.ndarray:
    return np.array([f.per_case for f in result.features]).T


def run(name: str, backend, text: str, cases: list[Case], repeats: int, threads: int, low=None) -> dict:
    """Interleaved repeats of: stock Captum, matmul peak, promptlens, matmul peak (and promptlens
    in reduced precision when ``low`` is a second backend). Each promptlens repeat is set against
    the floor at the higher of the two peaks measured right around it, so a machine that slows
    down or speeds up between repeats moves the time and its floor together."""
    stock_t, ours_t, ratios, peaks, low_t = [], [], [], [], []
    flops = 0.0
    for case in cases:
        tgt = backend.encode_target(case.target)
        original, variants = token_variants(backend, text, case, tgt)
        flops += floor_flops(backend, variants, original, len(tgt))
    for _ in range(repeats):
        t = time.perf_counter(); stock = stock_captum(backend, text, cases); stock_t.append(time.perf_counter() - t)
        before = matmul_peak(threads)
        dt, ours = _ours(backend, text, cases)
        peak = max(before, matmul_peak(threads))
        ours_t.append(dt); peaks.append(peak); ratios.append(dt / (flops / (peak * 1e9)))
        if low is not None:
            dt, low_result = _ours(low, text, cases)
            low_t.append(dt)
    per_case = _per_case(ours)
    t_stock, t_ours, peak = statistics.median(stock_t), statistics.median(ours_t), statistics.median(peaks)
    row = {
        "workload": name, "segments": len(ours.features), "cases": len(cases),
        "stock_s": round(t_stock, 3), "promptlens_s": round(t_ours, 3),
        "speedup": round(t_stock / t_ours, 2),
        "max_abs_diff": float(np.abs(per_case - stock).max()),
        "peak_gflops": round(peak, 1), "floor_s": round(flops / (peak * 1e9), 3),
        # Median and best of the per-repeat ratios (each against the peak measured around it).
        "vs_floor": round(statistics.median(ratios), 2), "best_vs_floor": round(min(ratios), 2),
        "vs_floor_each": [round(r, 2) for r in ratios],
        "achieved_gflops": round(flops / t_ours / 1e9, 1),
        "tokens_computed": ours.tokens_computed, "forward_passes": ours.forward_passes,
    }
    if low is not None:
        t_low = statistics.median(low_t)
        row.update({"low_dtype": str(low.model.dtype).removeprefix("torch."), "low_s": round(t_low, 3),
                    "low_speedup": round(t_stock / t_low, 2), "low_vs_fp32": round(t_ours / t_low, 2),
                    "low_max_abs_diff": float(np.abs(_per_case(low_result) - per_case).max())})
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="torch device of the model: cpu, cuda, cuda:1 (default cpu)")
    ap.add_argument("--dtype", default="float32", help="float32, bfloat16 or float16 (default float32)")
    ap.add_argument("--bf16", action="store_true",
                    help="also time promptlens with a bfloat16 copy of the model, beside the main runs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cases", type=int, default=16)
    ap.add_argument("--quick", action="store_true", help="one repeat, 4 cases (smoke test)")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--max-batch-tokens", type=int, default=None, help="scorer bin size (default: the backend's)")
    args = ap.parse_args()
    if args.quick:
        args.repeats, args.cases = 1, 4
    torch.set_num_threads(args.threads)
    bins = {"max_batch_tokens": args.max_batch_tokens} if args.max_batch_tokens else {}
    backend = load_backend(device=args.device, dtype=args.dtype, **bins)
    low = load_backend(device=args.device, dtype="bfloat16", **bins) if args.bf16 else None
    raw = load_cases(dataset_path(), task="sports_understanding")[: args.cases]
    cases = [Case({"input": c.vars["input"]}, c.target, c.choices) for c in raw]
    results = [
        run("12-segment prompt", backend, PROMPT_12, [Case({}, TARGET_12)], args.repeats, args.threads, low),
        run(f"8-segment template x {len(cases)} cases", backend, TEMPLATE_8, cases, args.repeats, args.threads, low),
    ]
    print(f"threads={args.threads}  dtype={args.dtype}  repeats={args.repeats} (interleaved; times are medians; "
          "vs_floor = median of each repeat's time over its floor at the matmul peak measured around it)")
    cols = ["workload", "stock_s", "promptlens_s", "speedup", "max_abs_diff", "peak_gflops", "floor_s", "vs_floor",
            "best_vs_floor", "achieved_gflops"]
    print(" | ".join(cols))
    for r in results:
        print(" | ".join(f"{r[c]:.2e}" if c == "max_abs_diff" else str(r[c]) for c in cols))
    if low is not None:
        print("reduced precision, beside (never instead of) the runs above:")
        cols = ["workload", "low_dtype", "low_s", "low_speedup", "low_vs_fp32", "low_max_abs_diff"]
        print(" | ".join(cols))
        for r in results:
            print(" | ".join(f"{r[c]:.2e}" if c == "low_max_abs_diff" else str(r[c]) for c in cols))
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": args.threads, "dtype": args.dtype, "results": results},
                                              indent=2))


if __name__ == "__main__":
    main()
