"""Fix-loop throughput: candidate-case evaluations per second, promptlens' scorer against
one-at-a-time forwards, and the achieved GFLOP/s against the matrix-multiply peak of this run.

The workload is what ``promptlens fix`` scores: trial templates (combinations of candidate
rewrites of the recipe's segments, as the Optuna study proposes them) over the train cases, each
trial scored the way a trial is (a minibatch of cases first, for the pruner, then the rest), every
label of every case. One-at-a-time = one plain teacher-forced forward per (template, case, label).
Four promptlens paths (``PATHS``): two calls with nothing kept between them (before issue 19),
two calls with each call's shared prefix kept (``keep_prefixes``, what ``fix`` runs), one call
per trial (the bound without the pruner's minibatch), and ``--batch`` trials per call (the bound
of a study that asks for trials in batches; ``fix`` does not). Runs are interleaved (naive, then each
promptlens path, naive, ...) and the medians compared.

Useful FLOPs are those of the distinct token prefixes (the prefix trie's nodes) with the output
layer only where a target token is predicted: the least work any exact scorer must do. Achieved
GFLOP/s = useful FLOPs / time, so the two paths are compared on the same work.

    python benchmarks/fix_throughput.py [--threads 2] [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from attribution_speed import flops_per_token, matmul_peak
from breakdown import breakdown
from profile_stages import print_stages, profile_detail
from promptlens.backends.hf import load_backend
from promptlens.cases import split_cases
from promptlens.config import load_recipe
from promptlens.prefix import naive_token_logprobs
from promptlens.rewrites import RewriteConfig, candidates
from promptlens.scoring import continuations, default_objective, objective_value, score_prompts, _score
from promptlens.study import Slot, TemplateScorer, template_for
from promptlens.segments import features, fill, segment
from promptlens.similarity import JaccardSimilarity

ROOT = Path(__file__).resolve().parents[1]


def trial_templates(backend, template: str, cases, n: int, seed: int) -> list[str]:
    """``n`` distinct templates a study could propose: random candidate choices per segment."""
    segs = segment(template, "sentence")
    config = RewriteConfig(threshold=0.0, kinds=("delete", "synonym", "scaffold"))
    slots = [Slot(i, tuple(candidates(segs, i, original=template, backend=backend, similarity=JaccardSimilarity(),
                                      cases=cases, config=config))) for i in features(segs)]
    rng, out = random.Random(seed), [template]
    for _ in range(50 * n):
        if len(out) == n:
            break
        choice = [rng.randrange(len(s.rewrites)) for s in slots]
        t = template_for(segs, slots, choice)
        if t not in out:
            out.append(t)
    return out


PATHS = {
    "two_calls": "a trial in two calls (minibatch, then the rest), nothing kept between calls",
    "kept": "a trial in two calls, each call's shared prefix kept for the later calls (what fix runs)",
    "one_call": "a trial in one call of all its cases (no minibatch: the pruner could save nothing)",
    "batch": "--batch trials in one call of all their cases (the bound of scoring TPE trials in batches, no pruner)",
}


def run_promptlens(backend, templates, cases, objective: str, minibatch: int, path: str, batch: int = 4) -> list[float]:
    if path == "batch":
        values = []
        for i in range(0, len(templates), batch):
            rows = score_prompts(backend, [[fill(t, c.vars) for c in cases] for t in templates[i:i + batch]], cases)
            values += [sum(objective_value(s, objective) for s in row) / len(row) for row in rows]
        return values
    scorer = TemplateScorer(backend, cases, objective)  # fresh memo: every repeat does the work
    keep = backend.keep_prefixes() if path == "kept" else contextlib.nullcontext()
    values = []
    with keep:  # a fresh block: nothing kept from an earlier repeat
        for t in templates:
            if path != "one_call":
                scorer.mean(t, minibatch)
            values.append(scorer.mean(t))
    return values


@torch.inference_mode()
def run_naive(backend, templates, cases, objective: str) -> list[float]:
    values = []
    for t in templates:
        total = 0.0
        for case in cases:
            prompt = backend.encode_prompt(fill(t, case.vars))
            per_token = []
            for c in continuations(case):
                tgt = backend.encode_target(c)
                per_token.append(naive_token_logprobs(backend.model, prompt + tgt, len(tgt)))
            total += objective_value(_score(case, per_token), objective)
        values.append(total / len(cases))
    return values


def sequences(backend, templates, cases) -> list[tuple[list[int], int]]:
    out = []
    for t in templates:
        for case in cases:
            prompt = backend.encode_prompt(fill(t, case.vars))
            for c in continuations(case):
                tgt = backend.encode_target(c)
                out.append((prompt + tgt, len(tgt)))
    return out


def useful_flops(model, seqs) -> float:
    """FLOPs of every distinct prefix once; the output layer only at target-predicting positions."""
    nodes: dict[tuple[int, ...], bool] = {}
    for seq, n_target in seqs:
        for pos in range(len(seq)):
            key = tuple(seq[: pos + 1])
            head = pos >= len(seq) - n_target - 1 and pos < len(seq) - 1
            nodes[key] = nodes.get(key, False) or head
    return sum(flops_per_token(model, len(k), lm_head=h) for k, h in nodes.items())


def naive_flops(model, seqs) -> float:
    """What one-at-a-time forwards compute: every token of every sequence, logits everywhere."""
    return sum(flops_per_token(model, pos + 1, lm_head=True) for seq, _ in seqs for pos in range(len(seq)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default=str(ROOT / "recipes" / "sports_understanding.yaml"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--templates", type=int, default=12, help="trial templates scored per run")
    ap.add_argument("--cases", type=int, default=16, help="train cases")
    ap.add_argument("--minibatch", type=int, default=4, help="cases scored first in a trial (the pruner's step)")
    ap.add_argument("--batch", type=int, default=4, help="trials per call on the batch path")
    ap.add_argument("--quick", action="store_true", help="one repeat, 4 templates x 4 cases (smoke test)")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--profile", action="store_true",
                    help="also run the kept path once under torch.profiler and print where its time goes "
                         "(the profiler slows the run about 2x: its rates are low; see --breakdown)")
    ap.add_argument("--breakdown", action="store_true",
                    help="also time the modules of the kept and batch paths without the profiler, and the "
                         "least time the stock matmul kernel needs for their linear calls (benchmarks/breakdown.py)")
    args = ap.parse_args()
    if args.quick:
        args.repeats, args.templates, args.cases = 1, 4, 4
    torch.set_num_threads(args.threads)
    backend = load_backend()
    recipe = load_recipe(args.recipe)
    train, _ = split_cases(recipe.cases, n_train=args.cases, seed=recipe.seed)
    objective = default_objective(train)
    templates = trial_templates(backend, recipe.template, train, args.templates, seed=0)
    seqs = sequences(backend, templates, train)
    uptime0 = _uptime()
    peak = matmul_peak(args.threads)
    naive_t: list[float] = []
    times: dict[str, list[float]] = {p: [] for p in PATHS}
    values: dict[str, list[float]] = {}
    passes: dict[str, int] = {}
    tokens: dict[str, int] = {}
    for _ in range(args.repeats):  # interleaved: naive, then each promptlens path
        t = time.perf_counter(); naive = run_naive(backend, templates, train, objective); naive_t.append(time.perf_counter() - t)
        for path in PATHS:
            p0, k0 = backend.forward_passes, backend.tokens_computed
            t = time.perf_counter()
            values[path] = run_promptlens(backend, templates, train, objective, args.minibatch, path, args.batch)
            times[path].append(time.perf_counter() - t)
            passes[path], tokens[path] = backend.forward_passes - p0, backend.tokens_computed - k0
    peak = max(peak, matmul_peak(args.threads))  # drifts on a shared machine: the higher is stricter
    evals = len(templates) * len(train)
    useful = useful_flops(backend.model, seqs)
    floor_s = useful / (peak * 1e9)
    t_naive = statistics.median(naive_t)
    distinct = len({tuple(seq[: i + 1]) for seq, _ in seqs for i in range(len(seq))})
    result = {
        "recipe": Path(args.recipe).name, "objective": objective, "templates": len(templates), "cases": len(train),
        "minibatch": args.minibatch, "batch": args.batch, "sequences": len(seqs), "evaluations": evals, "threads": args.threads,
        "uptime_before": uptime0, "uptime_after": _uptime(),
        "naive_s": round(t_naive, 3), "naive_evals_per_s": round(evals / t_naive, 1),
        "naive_achieved_gflops": round(useful / t_naive / 1e9, 1),
        "peak_gflops": round(peak, 1), "useful_gflop": round(useful / 1e9, 2), "distinct_prefix_tokens": distinct,
        "naive_executed_gflop": round(naive_flops(backend.model, seqs) / 1e9, 2), "paths": {},
    }
    print(f"threads={args.threads}  fp32 matmul peak={peak:.1f} GFLOP/s  repeats={args.repeats} (interleaved, median)")
    print(f"{result['templates']} trial templates x {result['cases']} cases ({objective}; {len(seqs)} scored sequences, "
          f"{distinct} distinct prefix tokens, {result['useful_gflop']} useful GFLOP = {floor_s:.2f} s at the peak)")
    print(f"one-at-a-time: {t_naive:.3f} s, {result['naive_evals_per_s']} evals/s, "
          f"{result['naive_achieved_gflops']} useful GFLOP/s")
    for path, what in PATHS.items():
        t_path = statistics.median(times[path])
        row = {
            "what": what, "s": round(t_path, 3), "times": [round(x, 3) for x in times[path]],
            "evals_per_s": round(evals / t_path, 1), "speedup": round(t_naive / t_path, 2),
            "max_abs_diff": max(abs(a - b) for a, b in zip(naive, values[path])),
            "forward_passes": passes[path], "tokens_computed": tokens[path],
            "achieved_gflops": round(useful / t_path / 1e9, 1), "vs_floor": round(t_path / floor_s, 2),
        }
        result["paths"][path] = row
        print(f"{path:>9}: {t_path:.3f} s, {row['evals_per_s']} evals/s, {row['achieved_gflops']} useful GFLOP/s, "
              f"{row['forward_passes']} passes, {row['tokens_computed']} tokens computed; speedup {row['speedup']}x, "
              f"{row['vs_floor']}x the floor; max |diff| {row['max_abs_diff']:.2e}  ({what})")
    if args.profile:
        detail = profile_detail(lambda: run_promptlens(backend, templates, train, objective, args.minibatch, "kept"),
                                peak)
        result["profile_kept"], result["profile_kept_detail"] = detail["stages"], detail
        print_stages(detail["stages"], f"kept path, {args.threads} threads, {_uptime()}", detail)
    if args.breakdown:
        result["breakdown"] = {path: breakdown(
            backend.model, lambda: run_promptlens(backend, templates, train, objective, args.minibatch, path, args.batch),
            f"{path} path, {args.threads} threads, {_uptime()}", floor_s) for path in ("kept", "batch")}
    kept, two = result["paths"]["kept"], result["paths"]["two_calls"]
    print(f"kept prefixes vs nothing kept: {two['s'] / kept['s']:.2f}x faster; {result['uptime_after']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


def _uptime() -> str:
    try:
        return "load average " + " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "load average unknown"


if __name__ == "__main__":
    main()
