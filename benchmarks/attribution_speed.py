"""Attribution speed: promptlens' FeatureAblation against stock Captum, same work, one process.

Stock = Captum ``LLMAttribution(FeatureAblation)`` with ``forward_in_tokens=False`` (its exact
path: one full forward per perturbation). Runs are interleaved (stock, ours, stock, ours, ...)
and the median of each is compared, because these machines are noisy. Prints the time ratio,
the max |difference| of the attributions, and promptlens' time against its floor: the FLOPs of
the tokens that must be recomputed (each variant from its first changed token on, plus the
original once) at the fp32 matrix-multiply peak measured in this run.

    python benchmarks/attribution_speed.py [--threads 2] [--repeats 3] [--quick]
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


def run(name: str, backend, text: str, cases: list[Case], repeats: int, peak: float) -> dict:
    stock_t, ours_t, ours, stock = [], [], None, None
    for _ in range(repeats):  # interleaved
        t = time.perf_counter(); stock = stock_captum(backend, text, cases); stock_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        ours = attribute(text, cases=cases, backend=backend, method="ablation", objective="logprob")
        ours_t.append(time.perf_counter() - t)
    per_case = np.array([f.per_case for f in ours.features]).T
    flops = 0.0
    for case in cases:
        tgt = backend.encode_target(case.target)
        original, variants = token_variants(backend, text, case, tgt)
        flops += floor_flops(backend, variants, original, len(tgt))
    floor_s = flops / (peak * 1e9)
    t_stock, t_ours = statistics.median(stock_t), statistics.median(ours_t)
    return {
        "workload": name, "segments": len(ours.features), "cases": len(cases),
        "stock_s": round(t_stock, 3), "promptlens_s": round(t_ours, 3),
        "speedup": round(t_stock / t_ours, 2),
        "max_abs_diff": float(np.abs(per_case - stock).max()),
        "floor_s": round(floor_s, 3), "vs_floor": round(t_ours / floor_s, 2),
        # The peak is a best-of-10; the fastest repeat is the like-for-like time to set against it.
        "promptlens_best_s": round(min(ours_t), 3), "best_vs_floor": round(min(ours_t) / floor_s, 2),
        "achieved_gflops": round(flops / t_ours / 1e9, 1),
        "tokens_computed": ours.tokens_computed, "forward_passes": ours.forward_passes,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="torch device of the model: cpu, cuda, cuda:1 (default cpu)")
    ap.add_argument("--dtype", default="float32", help="float32, bfloat16 or float16 (default float32)")
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
    backend = load_backend(device=args.device, dtype=args.dtype,
                           **({"max_batch_tokens": args.max_batch_tokens} if args.max_batch_tokens else {}))
    peak = matmul_peak(args.threads)
    raw = load_cases(dataset_path(), task="sports_understanding")[: args.cases]
    cases = [Case({"input": c.vars["input"]}, c.target, c.choices) for c in raw]
    results = [
        run("12-segment prompt", backend, PROMPT_12, [Case({}, TARGET_12)], args.repeats, peak),
        run(f"8-segment template x {len(cases)} cases", backend, TEMPLATE_8, cases, args.repeats, peak),
    ]
    # The peak drifts on a shared machine: measure it again at the end and keep the higher one
    # (a higher peak means a lower floor: the stricter comparison).
    peak_end = matmul_peak(args.threads)
    if peak_end > peak:
        scale = peak / peak_end
        for r in results:
            r["floor_s"] = round(r["floor_s"] * scale, 3)
            r["vs_floor"] = round(r["promptlens_s"] / r["floor_s"], 2)
            r["best_vs_floor"] = round(r["promptlens_best_s"] / r["floor_s"], 2)
        peak = peak_end
    print(f"threads={args.threads}  fp32 matmul peak={peak:.1f} GFLOP/s  repeats={args.repeats} (interleaved, median)")
    cols = ["workload", "stock_s", "promptlens_s", "speedup", "max_abs_diff", "floor_s", "vs_floor", "best_vs_floor",
            "achieved_gflops"]
    print(" | ".join(cols))
    for r in results:
        print(" | ".join(f"{r[c]:.2e}" if c == "max_abs_diff" else str(r[c]) for c in cols))
    if args.json:
        Path(args.json).write_text(json.dumps({"peak_gflops": peak, "results": results}, indent=2))


if __name__ == "__main__":
    main()
