"""Does attribution-guided repair beat blind search on the suite's planted prompts, at equal budget?

For each planted variant of the suite (``benchmarks/suite``, message-list prompts with one fault
of measured harm each) and each seed: the variant's bench cases (never the ones its harm was
measured on) are shuffled by the seed into train and test; then ``fix`` runs with every strategy
at the same budget of prompts scored (``FixConfig.prompts``: every prompt scored before the test
cases, attribution included), the same candidates' rules and the same splits:

* ``attribution``: the ``top_k`` most harmful units by an ablation that ``fix`` makes itself on
  the first ``--attribution-cases`` train cases (``FixConfig.attribution_cases``), its forward
  passes counted in its budget;
* ``random``: ``top_k`` random units;
* ``all``: every unit, each single edit scored first, then TPE;
* ``tpe``: every unit, Optuna's TPE from the first trial (no prior on where the fault is).

The budget is a hard limit for every strategy (``fix``: a scoring request the rest cannot pay for
is refused), the check of the best trial's edits after the search included: the search stops
while that check can still be paid, so ``search_prompts`` <= ``--prompts`` in every row.

Only ``attribution`` uses the attribution, so only its cost includes the attribution's: the
others are handed attribution's (``fix(attribution=...)``, for the report only, not counted).
Reported: test target log-prob gain, test objective gain (margin on choice tasks), test accuracy
gain, whether an edit touched the planted fault's unit, the cost in prompts scored and seconds;
then the paired differences attribution - other (same variant, same seed) with a 95%
skew-adjusted t-interval over the variant x seed pairs (promptlens.stats).

Cost is counted in prompts scored (one teacher-forced forward pass each): ``SharedCache``
answers a (prompt, targets) pair that another strategy already scored from memory, so the four
strategies cost little more than one on a shared machine, but every prompt a strategy asks for
counts against it as if it ran alone. Seconds are wall time with that cache, so only the first
strategy's include most of the model's work: compare strategies by prompts scored.

    python benchmarks/suite_repair.py [--seeds 3] [--train 16] [--test 12] [--prompts 160] [--variants ...]
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

from benchmarks.suite import MANIFEST, Variant, load_suite, units
from promptlens import stats
from promptlens.attribution import attribute
from promptlens.fix import FixResult, fix
from promptlens.templates import as_flat
from promptlens.types import Case

STRATEGIES = ("attribution", "random", "all", "tpe")


class SharedCache:
    """A backend wrapper: ``token_logprobs`` answers a (prompt, targets) pair scored before from
    memory (the model is deterministic, so the answer is the same); ``forward_passes`` counts
    every prompt asked for, cached or not: what the caller would have cost on its own."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.cache: dict[tuple[str, tuple[str, ...]], list[list[float]]] = {}
        self.forward_passes = 0
        self.tokens_computed = 0  # not tracked through the cache; see forward_passes

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def token_logprobs(self, prompts, targets):
        keys = [(p, tuple(t)) for p, t in zip(prompts, targets)]
        missing = [k for k in dict.fromkeys(keys) if k not in self.cache]
        if missing:
            got = self.inner.token_logprobs([k[0] for k in missing], [list(k[1]) for k in missing])
            self.cache.update(zip(missing, got))
        self.forward_passes += len(keys)
        return [self.cache[k] for k in keys]


def splits(cases: list[Case], n_train: int, n_test: int, seed: int) -> tuple[list[Case], list[Case]]:
    if len(cases) < n_train + n_test:
        raise SystemExit(f"{len(cases)} bench cases; lower --train/--test")
    cases = list(cases)
    random.Random(seed).shuffle(cases)
    return cases[:n_train], cases[n_train : n_train + n_test]


def fault_segment(attr, variant: Variant) -> int | None:
    """The segment index of the unit that holds the fault. With ``unit`` segmentation the
    attribution's features are the suite's units in order (system sentences, then examples);
    otherwise the segment that contains the planted text."""
    labels = [u.label for u in units(variant.messages)]
    if attr.segmentation == "unit" and len(labels) == len(attr.features) and variant.fault.unit in labels:
        return attr.features[labels.index(variant.fault.unit)].index
    text = variant.fault.text.strip()
    return next((f.index for f in attr.features if text and text in f.segment.text), None)


def touched_fault(result: FixResult, at: int | None) -> bool:
    """Whether a kept first-round edit rewrote or removed the unit that holds the planted fault."""
    return at is not None and any(e.round == 0 and e.segment_index == at for e in result.edits)


def fault_rank(attr, at: int | None) -> int | None:
    """1-based rank of the fault's unit among the attribution's units, most harmful first."""
    return next((n for n, f in enumerate(attr.ranked(), 1) if f.index == at), None)


def row(variant: Variant, seed: int, strategy: str, result: FixResult, seconds: float, at: int | None) -> dict:
    before, after = result.validation_before, result.validation_after
    return {
        "variant": variant.id, "kind": variant.fault.kind, "seed": seed, "strategy": strategy,
        "test_logprob_gain": after.logprob - before.logprob,
        "test_objective_gain": after.objective - before.objective,
        "test_accuracy_gain": (after.accuracy - before.accuracy) if before.accuracy is not None else np.nan,
        "train_objective_gain": result.train_after.objective - result.train_before.objective,
        "fault_edited": touched_fault(result, at), "edits": len(result.edits),
        "test_lost": len(result.validation_flips.lost), "similarity": result.similarity,
        # what the budget counts (attribution's own ablation included), then with the 2 x test
        # prompts of the before/after test scores, the same for every strategy
        "search_prompts": result.prompts_scored, "prompts_scored": result.prompts_scored + result.validation_prompts,
        "trials": result.trials, "seconds": seconds,
    }


def markdown(df: pd.DataFrame) -> str:
    df = df.reset_index()
    rows = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    rows += ["| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in r) + " |"
             for r in df.itertuples(index=False)]
    return "\n".join(rows)


def tables(df: pd.DataFrame, strategies: list[str]) -> str:
    metrics = ["test_logprob_gain", "test_objective_gain", "test_accuracy_gain", "fault_edited", "test_lost",
               "search_prompts", "prompts_scored", "seconds"]
    # a pair needs every strategy: drop a (variant, seed) that a stopped run left unfinished
    df = df[df["strategy"].isin(strategies)]
    complete = df.groupby(["variant", "seed"])["strategy"].transform("nunique") == len(strategies)
    df = df[complete]
    df = df.assign(fault_edited=df["fault_edited"].astype(float))
    overall = df.groupby("strategy")[metrics].mean().reindex(strategies)
    paired = []
    for metric in ("test_logprob_gain", "test_objective_gain"):
        wide = df.pivot_table(index=["variant", "seed"], columns="strategy", values=metric)
        for other in [s for s in strategies if s != "attribution" and "attribution" in wide.columns]:
            mean, low, high = stats.mean_ci((wide["attribution"] - wide[other]).to_numpy())
            paired.append({"metric": metric, "comparison": f"attribution - {other}", "mean": mean, "ci_low": low,
                           "ci_high": high, "pairs": len(wide)})
    choice = df[df["test_accuracy_gain"].notna()]
    if len(choice):
        wide = choice.pivot_table(index=["variant", "seed"], columns="strategy", values="test_objective_gain")
        for other in [s for s in strategies if s != "attribution" and "attribution" in wide.columns]:
            mean, low, high = stats.mean_ci((wide["attribution"] - wide[other]).to_numpy())
            paired.append({"metric": "test_objective_gain (choice tasks)", "comparison": f"attribution - {other}",
                           "mean": mean, "ci_low": low, "ci_high": high, "pairs": len(wide)})
    cost = df.pivot_table(index=["variant", "seed"], columns="strategy", values="prompts_scored")
    cheaper = (f"pairs where attribution scored no more prompts than all: {int((cost['attribution'] <= cost['all']).sum())}"
               f" of {len(cost)}" if {"attribution", "all"} <= set(cost.columns) else "")
    return "\n".join(["## Overall (mean over variant x seed)", "", markdown(overall), "", cheaper, "",
                      f"## Paired differences ({stats.level(stats.DEFAULT_CONFIDENCE)} {stats.METHOD_NAMES[stats.DEFAULT_METHOD]} over variant x seed pairs)", "",
                      markdown(pd.DataFrame(paired).set_index("metric")) if paired else "(one strategy: no pairs)", "",
                      "## Per variant (mean over seeds)", "",
                      markdown(df.groupby(["variant", "strategy"])[metrics[:5]].mean()), ""])


def report(df: pd.DataFrame) -> str:
    """The tables over every variant, the free-form and the choice ones apart; each for the
    strategies every pair ran, then (when some pairs ran more, e.g. ``tpe`` on some seeds only)
    for all strategies over the pairs that ran them all."""
    ran = [s for s in STRATEGIES if s in set(df["strategy"])]
    seeds = df.groupby("strategy")["seed"].nunique()
    core = [s for s in ran if seeds[s] == df["seed"].nunique()]  # ran on every seed
    choice = df.groupby("variant")["test_accuracy_gain"].transform(lambda x: x.notna().any())
    out = []
    for title, part in (("every variant", df), ("free-form variants", df[~choice]), ("choice variants", df[choice])):
        for strategies in ([core, ran] if ran != core else [core]):
            if len(part):
                out += [f"# {title}: {', '.join(strategies)}", "", tables(part, strategies)]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", default=str(MANIFEST))
    ap.add_argument("--variants", nargs="+", help="variant ids (prompt/name); default: every planted variant")
    ap.add_argument("--per-prompt", type=int, default=None, help="at most this many variants per prompt")
    ap.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1 (parallel runs)")
    ap.add_argument("--train", type=int, default=16)
    ap.add_argument("--test", type=int, default=16)
    ap.add_argument("--trials", type=int, default=50, help="trial cap; the budget is --passes")
    ap.add_argument("--prompts", type=int, default=160, help="budget of prompts scored per strategy (FixConfig.prompts)")
    ap.add_argument("--sweep", action="store_true",
                    help="instead of --prompts, a budget per variant of (units + 2) x --train prompts: `all` can score "
                         "every unit's single deletion on every train case (units + 1 evaluations) with one to spare")
    ap.add_argument("--attribution-cases", type=int, default=4, help="train cases attribution's ablation uses")
    ap.add_argument("--attribution-objective", choices=["logprob", "margin"],
                    help="what attribution ranks units by (FixConfig.attribution_objective; default: the objective)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--top-k", type=int, default=2)
    ap.add_argument("--segmentation", default="unit")
    ap.add_argument("--kinds", nargs="+", default=["delete"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--tables", nargs="+", metavar="CSV",
                    help="only write the tables of these runs files (merged; a run in several: the last file's)")
    args = ap.parse_args()
    if args.tables:
        df = pd.concat([pd.read_csv(f) for f in args.tables], ignore_index=True)
        # a (variant, seed, strategy) run again later (e.g. tpe at equal cost): the later file's row counts
        df = df.drop_duplicates(["variant", "seed", "strategy"], keep="last")
        md = report(df)
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "suite_repair.md").write_text(md)
        print(md)
        return
    torch.set_num_threads(args.threads)
    from promptlens.backends.hf import load_backend
    from promptlens.similarity import Similarity

    suite = load_suite(args.manifest)
    variants = [v for p in suite.prompts for v in p.variants[: args.per_prompt]]
    if args.variants:
        variants = [v for v in suite.variants() if v.id in set(args.variants)]
    backend, similarity = SharedCache(load_backend()), Similarity()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    started = time.perf_counter()
    for seed in range(args.first_seed, args.first_seed + args.seeds):  # seed-major: a run stopped early still covers every variant
        for variant in variants:
            template = as_flat([dict(m) for m in variant.messages])
            bench = suite.prompt(variant.prompt_id).cases("bench")
            train, test = splits(bench, args.train, args.test, seed)
            attr = None  # attribution's own (fix makes it, counted); the others get it for the report only
            strategies = sorted(args.strategies, key=lambda s: s != "attribution")
            if "attribution" not in strategies:  # nobody makes one: made here, on the same cases, not counted
                attr = attribute(template, cases=train[: args.attribution_cases], backend=backend,
                                 segmentation=args.segmentation, seed=seed)
            budget = (len(units(variant.messages)) + 2) * args.train if args.sweep else args.prompts
            for strategy in strategies:
                start = time.perf_counter()
                result = fix(template, train, validation=test, backend=backend, similarity=similarity,
                             strategy=strategy, trials=args.trials, prompts=budget, rounds=args.rounds,
                             seed=seed, top_k=args.top_k, rewrites=args.kinds, segmentation=args.segmentation,
                             attribution_cases=args.attribution_cases, attribution=attr, attribute_after=False,
                             attribution_objective=args.attribution_objective)
                attr = attr or result.attribution_before
                at = fault_segment(attr, variant)
                rows.append({**row(variant, seed, strategy, result, time.perf_counter() - start, at),
                             "fault_rank": fault_rank(attr, at), "units": len(attr.features), "budget": budget})
                pd.DataFrame(rows).to_csv(out / "suite_repair_runs.csv", index=False)  # nothing lost if stopped
                r = rows[-1]
                print(f"{variant.id:40s} seed {seed} {strategy:11s} test logprob {r['test_logprob_gain']:+.3f} "
                      f"objective {r['test_objective_gain']:+.3f} fault edited {r['fault_edited']!s:5s} "
                      f"prompts {r['prompts_scored']} {r['seconds']:.0f}s", flush=True)
    df = pd.DataFrame(rows)
    md = tables(df, list(args.strategies))
    md += f"\n{len(variants)} variant(s), {args.seeds} seed(s), {time.perf_counter() - started:.0f} s in all\n"
    (out / "suite_repair.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
