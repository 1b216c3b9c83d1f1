"""benchmarks/suite_repair.py: the shared score cache and the paired tables (fast, no model)."""

from __future__ import annotations

import pandas as pd
import pytest

from benchmarks.suite_repair import SharedCache, tables
from promptlens import stats

from .rule_backend import RuleBackend


def test_shared_cache_scores_a_prompt_once_and_charges_every_caller():
    inner = RuleBackend(rules={"bad": -2.0})
    cache = SharedCache(inner)
    first = cache.token_logprobs(["a bad prompt", "a prompt"], [["x y"], ["x y"]])
    again = cache.token_logprobs(["a prompt", "a bad prompt"], [["x y"], ["x y"]])
    assert again == first[::-1] and inner.forward_passes == 1  # the second call never reached the model
    assert cache.forward_passes == 4  # but both callers are charged for the prompts they asked for


def test_tables_pair_attribution_with_each_strategy_and_drop_unfinished_pairs():
    rows = []
    for seed in range(3):
        for strategy, gain in (("attribution", 1.0 + seed), ("random", 0.5), ("all", 1.0), ("tpe", 0.0)):
            rows.append({"variant": "p/v", "kind": "k", "seed": seed, "strategy": strategy,
                         "test_logprob_gain": gain, "test_objective_gain": gain, "test_accuracy_gain": float("nan"),
                         "fault_edited": strategy == "attribution", "test_lost": 0, "prompts_scored": 10, "search_prompts": 8,
                         "seconds": 1.0})
    rows.append({**rows[0], "seed": 3})  # a pair the run did not finish: attribution only
    md = tables(pd.DataFrame(rows), ["attribution", "random", "all", "tpe"])
    assert "| test_logprob_gain | attribution - random | 1.500 |" in md  # (1+2+3)/3 - 0.5, over 3 pairs
    _, low, high = stats.mean_ci([0.0, 1.0, 2.0])  # the pairs' differences; a t-interval over 3 pairs
    assert f"| test_logprob_gain | attribution - all | 1.000 | {low:.3f} | {high:.3f} | 3 |" in md


def test_paired_interval_of_a_constant_difference_is_that_difference():
    import numpy as np

    assert stats.mean_ci(np.array([0.25, 0.25, 0.25, 0.25])) == pytest.approx((0.25, 0.25, 0.25))


def test_oracle_deletes_exactly_the_faults_unit_and_pairs_with_the_runs():
    from benchmarks.suite import MANIFEST, load_suite, units
    from benchmarks.suite_repair_oracle import compare, without_fault
    from promptlens.segments import segment

    if not MANIFEST.is_file():
        pytest.skip("the suite is not built yet (benchmarks/suite/build.py)")
    for variant in load_suite().variants():
        deleted = without_fault(variant, None)
        kept = [s.text for s in segment(deleted, "unit") if s.feature]
        every = [s.text for s in segment(variant.flat, "unit") if s.feature]
        assert len(kept) == len(every) - 1 == len(units(variant.messages)) - 1
        assert every[[u.label for u in units(variant.messages)].index(variant.fault.unit)] not in kept
    oracle = pd.DataFrame([{"variant": "p/v", "seed": s, "strategy": o, "test_logprob_gain": 2.0,
                            "test_objective_gain": 2.0, "test_accuracy_gain": None}
                           for s in range(3) for o in ("oracle_delete", "oracle_clean")])
    runs = pd.DataFrame([{"variant": "p/v", "seed": s, "strategy": "random", "test_logprob_gain": 0.5 * s,
                          "test_objective_gain": 0.5 * s, "test_accuracy_gain": None} for s in range(3)])
    _, low, high = stats.mean_ci([2.0, 1.5, 1.0])
    assert f"| free-form | test_logprob_gain | oracle_delete - random | +1.500 | [{low:+.3f}, {high:+.3f}] | 3 |" \
        in compare(oracle, runs)
