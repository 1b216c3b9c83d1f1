"""How much could any repair gain on the repair benchmark's pairs? The test gains of two oracles.

For each planted variant and seed of ``benchmarks/suite_repair.py`` (the same bench cases, the
same seeded train/test split), the 12 (``--test``) test cases are scored with three templates:
the planted one, the planted one with exactly the fault's unit deleted (the best a delete-only
repair that finds the fault can do; what ``fix`` builds with ``segmentation: unit``), and the
clean twin (the best any rewrite of the fault can do). Reported per pair: the test log-prob,
objective (margin on choice tasks) and accuracy gains of each oracle over the planted template;
with ``--tables RUNS.csv ...`` also the paired differences oracle - strategy over the pairs the
runs cover (95% skew-adjusted t-interval, ``promptlens.stats``): if even the oracle's interval
against a strategy is not above 0, no repair that removes the fault can meet the goal there.

    python benchmarks/suite_repair_oracle.py --threads 1 [--seeds 3] [--test 12] [--variants ...]
    python benchmarks/suite_repair_oracle.py --oracle results/suite_repair_oracle_runs.csv --tables results/suite_repair_*_runs.csv
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd
import torch

from benchmarks.suite import MANIFEST, Variant, load_suite, units
from benchmarks.suite_repair import splits
from promptlens import stats
from promptlens.scoring import default_objective, score_prompts, summarize_scores
from promptlens.segments import fill, join, segment
from promptlens.templates import as_flat

METRICS = ("test_logprob_gain", "test_objective_gain", "test_accuracy_gain")


def without_fault(variant: Variant, tokenizer) -> str:
    """The planted template with the fault's unit deleted, as ``fix``'s delete rewrite makes it."""
    template = as_flat([dict(m) for m in variant.messages])
    segments = segment(template, "unit", tokenizer=tokenizer)
    features = [i for i, s in enumerate(segments) if s.feature]
    labels = [u.label for u in units(variant.messages)]
    if len(features) != len(labels):
        raise SystemExit(f"{variant.id}: {len(features)} unit segments for {len(labels)} suite units")
    return join(segments, {features[labels.index(variant.fault.unit)]: ""})


def oracle_rows(variant: Variant, seed: int, clean: str, backend, n_train: int, n_test: int, bench) -> list[dict]:
    planted = as_flat([dict(m) for m in variant.messages])
    deleted = without_fault(variant, getattr(backend, "tokenizer", None))
    _, test = splits(bench, n_train, n_test, seed)
    objective = default_objective(test)
    rows = score_prompts(backend, [[fill(t, c.vars) for c in test] for t in (planted, deleted, clean)], test)
    before, *after = (summarize_scores(r, test, objective) for r in rows)
    out = []
    for name, summary in zip(("oracle_delete", "oracle_clean"), after):
        out.append({"variant": variant.id, "seed": seed, "strategy": name,
                    "test_logprob_gain": summary.logprob - before.logprob,
                    "test_objective_gain": summary.objective - before.objective,
                    "test_accuracy_gain": (summary.accuracy - before.accuracy) if before.accuracy is not None else None})
    return out


def compare(oracle: pd.DataFrame, runs: pd.DataFrame) -> str:
    df = pd.concat([oracle, runs[["variant", "seed", "strategy", *METRICS]]], ignore_index=True)
    choice = df.groupby("variant")["test_accuracy_gain"].transform(lambda x: x.notna().any())
    lines = ["| set | metric | comparison | mean | 95% interval | pairs |", "|---|---|---|---|---|---|"]
    for title, part in (("free-form", df[~choice]), ("choice", df[choice])):
        for metric in METRICS[:2]:
            wide = part.pivot_table(index=["variant", "seed"], columns="strategy", values=metric)
            for o in ("oracle_delete", "oracle_clean"):
                for other in [s for s in ("attribution", "random", "all", "tpe") if s in wide.columns]:
                    diff = (wide[o] - wide[other]).dropna().to_numpy()
                    if len(diff):
                        mean, low, high = stats.mean_ci(diff)
                        lines.append(f"| {title} | {metric} | {o} - {other} | {mean:+.3f} | [{low:+.3f}, {high:+.3f}] "
                                     f"| {len(diff)} |")
    per = oracle.groupby(["variant", "strategy"])[list(METRICS)].mean().reset_index()
    lines += ["", "| variant | oracle | test log-prob gain | test objective gain | test accuracy gain |",
              "|---|---|---|---|---|"]
    lines += [f"| {r.variant} | {r.strategy} | {r.test_logprob_gain:+.3f} | {r.test_objective_gain:+.3f} | "
              f"{'' if pd.isna(r.test_accuracy_gain) else f'{r.test_accuracy_gain:+.3f}'} |"
              for r in per.itertuples()]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", default=str(MANIFEST))
    ap.add_argument("--variants", nargs="+", help="variant ids (prompt/name); default: every planted variant")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--train", type=int, default=16)
    ap.add_argument("--test", type=int, default=12)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results/suite_repair_oracle_runs.csv")
    ap.add_argument("--oracle", help="an oracle runs file made before: only compare it with --tables")
    ap.add_argument("--tables", nargs="+", metavar="CSV", help="suite_repair runs files to compare the oracle with")
    args = ap.parse_args()
    if args.oracle:
        oracle = pd.read_csv(args.oracle)
    else:
        torch.set_num_threads(args.threads)
        from promptlens.backends.hf import load_backend

        suite, backend = load_suite(args.manifest), load_backend()
        variants = [v for v in suite.variants() if not args.variants or v.id in set(args.variants)]
        rows: list[dict] = []
        for seed in range(args.seeds):
            for v in variants:
                prompt = suite.prompt(v.prompt_id)
                rows += oracle_rows(v, seed, prompt.clean.flat, backend, args.train, args.test, prompt.cases("bench"))
                print(f"{v.id:40s} seed {seed} " + "  ".join(
                    f"{r['strategy']} logprob {r['test_logprob_gain']:+.3f} objective {r['test_objective_gain']:+.3f}"
                    for r in rows[-2:]), flush=True)
                oracle = pd.DataFrame(rows)
                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                oracle.to_csv(args.out, index=False)
        oracle = pd.DataFrame(rows)
    if args.tables:
        print(compare(oracle, pd.concat([pd.read_csv(f) for f in args.tables], ignore_index=True)))


if __name__ == "__main__":
    main()
