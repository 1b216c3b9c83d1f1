"""Summarise `promptlens fix --join` runs: per study, the finished trials against the budget,
duplicated trials, the best value, and the wall time; then the speedup of the last run over the first.

    python benchmarks/distributed_report.py STORAGE BUDGET NAME=SECONDS [NAME=SECONDS ...]

A duplicated trial is a trial number that occurs twice, more finished trials than the budget, or
the original (the enqueued trial 0) evaluated more than once. Two trials that TPE proposed with
the same parameters are not duplicates (the sampler may do that on purpose); they are counted
apart as ``same_params``.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import optuna

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from promptlens.storage import storage_for  # noqa: E402

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def worker_spans(finished: list) -> dict:
    """Per worker: trials it finished, and its first trial start and last trial end in seconds
    after the round's first trial started (when each worker was searching)."""
    timed = [t for t in finished if t.datetime_start and t.datetime_complete]
    if not timed:
        return {}
    zero, spans = min(t.datetime_start for t in timed), {}
    for t in timed:
        w = spans.setdefault(t.user_attrs.get("worker", "?"), [0, float("inf"), 0.0])
        w[0] += 1
        w[1] = min(w[1], (t.datetime_start - zero).total_seconds())
        w[2] = max(w[2], (t.datetime_complete - zero).total_seconds())
    return {k: f"{n} trials, {a:.1f}-{b:.1f} s" for k, (n, a, b) in spans.items()}


def summary(storage: object, study: str, budget: int, seconds: float) -> dict:
    rows = {}
    names = [s.study_name for s in optuna.get_all_study_summaries(storage) if s.study_name.startswith(study + ":")]
    for name in sorted(names):
        trials = optuna.load_study(study_name=name, storage=storage).trials
        finished = [t for t in trials if t.state in FINISHED]
        numbers = Counter(t.number for t in trials)
        enqueued = [t for t in finished if t.system_attrs.get("fixed_params")]
        params = Counter(json.dumps(t.params, sort_keys=True) for t in finished)
        complete = [t.value for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        # The search phase alone (first trial start to last trial end): the part workers share;
        # the rest (loading models, attribution before and after, validation) each worker repeats.
        starts = [t.datetime_start for t in finished if t.datetime_start]
        ends = [t.datetime_complete for t in finished if t.datetime_complete]
        search_s = (max(ends) - min(starts)).total_seconds() if starts and ends else 0.0
        rows[name] = {
            "finished": len(finished), "complete": len(complete),
            "over_budget_asks": sum(1 for t in trials if t.user_attrs.get("over_budget")),
            "duplicated_numbers": sum(c - 1 for c in numbers.values()),
            "original_evaluated": len(enqueued),
            "same_params": sum(c - 1 for c in params.values()),
            "best": max(complete) if complete else None,
            "search_s": round(search_s, 1),
            "workers_by_trial": Counter(t.user_attrs.get("worker", "?") for t in finished),
            "worker_spans": worker_spans(finished),
        }
    total = sum(r["finished"] for r in rows.values())
    duplicates = sum(r["duplicated_numbers"] + max(0, r["original_evaluated"] - 1) for r in rows.values())
    duplicates += max(0, total - budget)
    best = max((r["best"] for r in rows.values() if r["best"] is not None), default=None)
    return {"study": study, "budget": budget, "finished": total, "duplicates": duplicates, "best": best,
            "seconds": seconds, "search_s": sum(r["search_s"] for r in rows.values()), "rounds": rows}


def main(argv: list[str]) -> int:
    storage, budget, runs = storage_for(argv[0]), int(argv[1]), [a.split("=") for a in argv[2:]]
    out = [summary(storage, name, budget, float(sec)) for name, sec in runs]
    for r in out:
        print(f"{r['study']:>12}: {r['finished']} finished trials (budget {r['budget']}), {r['duplicates']} duplicated, "
              f"best train objective {r['best']:.4f}, wall {r['seconds']:.1f} s, search phase {r['search_s']:.1f} s")
        for name, row in r["rounds"].items():
            print(f"{'':>14}{name}: " + ", ".join(f"{k} {v}" for k, v in row.items() if k != "best"))
    if len(out) > 1:
        print(f"speedup of {out[-1]['study']} over {out[0]['study']}: {out[0]['seconds'] / out[-1]['seconds']:.2f}x wall, "
              f"{out[0]['search_s'] / max(1e-9, out[-1]['search_s']):.2f}x search phase")
    print(json.dumps(out, default=str), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
