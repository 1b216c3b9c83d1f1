"""Does attribution make prompt repair better at the same budget? fix() with each strategy.

Per task: the prompt a user would write (the task's own instruction, the input, an answer cue;
the chat template is applied by the backend), seeded train and test splits, then
``fix(strategy=attribution|random|all)`` at the same trial budget over several seeds. Reported
per task and overall: test mean target log-prob gain, test accuracy gain (choice tasks), test
objective gain, similarity of the result to the original, forward passes and seconds. The paired
differences attribution - random and attribution - all (same task, same seed, same splits) get a
95% t-interval (promptlens.stats).

    python benchmarks/fix_quality.py [--data PATH] [--tasks ...] [--seeds 3] [--trials 24] [--quick]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd
import torch

from promptlens.backends.hf import load_backend
from promptlens.cases import dataset_path, load_cases
from promptlens import stats
from promptlens.fix import fix
from promptlens.similarity import Similarity
from promptlens.types import Case

TASKS = ("sports_understanding", "navigate", "disambiguation_qa", "implicatures")
STRATEGIES = ("attribution", "random", "all")


def user_template(instruction: str) -> str:
    """The failing prompt a user would write: instruction, input, answer cue."""
    instruction = instruction.strip().replace("{", "{{").replace("}", "}}")
    return f"{instruction}\n{{input}}\nAnswer:" if instruction else "{input}\nAnswer:"


def splits(task: str, data: Path, n_train: int, n_test: int, seed: int) -> tuple[str, list[Case], list[Case]]:
    raw = load_cases(data, task=task)
    if len(raw) < n_train + n_test:
        raise SystemExit(f"task {task} has {len(raw)} records; lower --train/--test")
    rng = random.Random(seed)
    rng.shuffle(raw)
    cases = [Case({"input": c.vars["input"]}, c.target, c.choices) for c in raw]
    return user_template(raw[0].vars.get("instruction", "")), cases[:n_train], cases[n_train : n_train + n_test]


def markdown(df: pd.DataFrame) -> str:
    df = df.reset_index()
    rows = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    rows += ["| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in r) + " |" for r in df.itertuples(index=False)]
    return "\n".join(rows)


def plot(summary: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pivot = summary["test_objective_gain"].unstack("strategy").reindex(columns=list(STRATEGIES))
    ax = pivot.plot.bar(figsize=(8, 4), color=["#1f77b4", "#ff7f0e", "#7f7f7f"], rot=15)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_ylabel("test objective gain (nats)")
    ax.set_title("promptlens fix: per-task test gain by strategy (mean over seeds)")
    plt.tight_layout()
    plt.savefig(path, dpi=120)
    plt.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(dataset_path()))
    ap.add_argument("--tasks", nargs="+", default=list(TASKS))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--train", type=int, default=24)
    ap.add_argument("--test", type=int, default=48)
    ap.add_argument("--trials", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--top-k", type=int, default=1,
                    help="segments edited per round; at or above a prompt's segment count every strategy edits all of them")
    ap.add_argument("--device", default="cpu", help="torch device of the model: cpu, cuda, cuda:1 (default cpu)")
    ap.add_argument("--dtype", default="float32", help="float32, bfloat16 or float16 (default float32)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--kinds", nargs="+", default=None, help="rewrite kinds (default: all that fix uses)")
    ap.add_argument("--quick", action="store_true", help="one task, one seed, 6 train / 6 test cases, 4 trials, no LLM paraphrases")
    args = ap.parse_args()
    if args.quick:
        args.tasks, args.seeds, args.train, args.test, args.trials, args.rounds = args.tasks[:1], 1, 6, 6, 4, 1
        args.kinds = args.kinds or ["delete", "synonym", "scaffold"]
    torch.set_num_threads(args.threads)
    backend, similarity = load_backend(device=args.device, dtype=args.dtype), Similarity()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for task in args.tasks:
        for seed in range(args.seeds):
            template, train, test = splits(task, Path(args.data), args.train, args.test, seed)
            for strategy in STRATEGIES:
                start = time.perf_counter()
                result = fix(template, train, validation=test, backend=backend, similarity=similarity,
                             strategy=strategy, budget_trials=args.trials, rounds=args.rounds, seed=seed, top_k=args.top_k,
                             kinds=args.kinds)
                before, after = result.validation_before, result.validation_after
                rows.append({
                    "task": task, "seed": seed, "strategy": strategy,
                    "test_logprob_gain": after.logprob - before.logprob,
                    "test_accuracy_gain": (after.accuracy - before.accuracy) if before.accuracy is not None else np.nan,
                    "test_objective_gain": after.objective - before.objective,
                    "train_objective_gain": result.train_after.objective - result.train_before.objective,
                    "similarity": result.similarity, "edits": len(result.edits),
                    "forward_passes": result.forward_passes, "seconds": time.perf_counter() - start,
                })
                pd.DataFrame(rows).to_csv(out / "fix_quality_runs.csv", index=False)  # nothing lost if stopped
                r = rows[-1]
                print(f"{task:22s} seed {seed} {strategy:11s} test gain {r['test_objective_gain']:+.3f} "
                      f"(logprob {r['test_logprob_gain']:+.3f}) sim {r['similarity']:.2f} {r['seconds']:.0f}s", flush=True)
    df = pd.DataFrame(rows)
    df.to_csv(out / "fix_quality_runs.csv", index=False)
    metrics = ["test_objective_gain", "test_logprob_gain", "test_accuracy_gain", "train_objective_gain",
               "similarity", "forward_passes", "seconds"]
    per_task = df.groupby(["task", "strategy"])[metrics].mean()
    overall = df.groupby("strategy")[metrics].mean()
    paired = []
    conf = stats.DEFAULT_CONFIDENCE
    wide = df.pivot_table(index=["task", "seed"], columns="strategy", values="test_objective_gain")
    for other in ("random", "all"):
        mean, low, high = stats.mean_ci((wide["attribution"] - wide[other]).to_numpy(), confidence=conf)
        paired.append({"comparison": f"attribution - {other}", "mean": mean, "ci_low": low, "ci_high": high, "pairs": len(wide)})
    paired_df = pd.DataFrame(paired).set_index("comparison")
    md = ["## Per task (mean over seeds)", "", markdown(per_task), "", "## Overall", "", markdown(overall), "",
          f"## Paired test objective gain difference ({stats.describe(len(wide), conf, stats.DEFAULT_METHOD)}: "
          "task x seed pairs)", "",
          markdown(paired_df), ""]
    (out / "fix_quality.md").write_text("\n".join(md))
    plot(per_task, out / "fix_quality.png")
    print("\n".join(md))


if __name__ == "__main__":
    main()
