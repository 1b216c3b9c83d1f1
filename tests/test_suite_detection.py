"""benchmarks/suite_detection.py: the t-test calls with a multiplicity correction, and the tables."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

spec = importlib.util.spec_from_file_location("suite_detection", Path(__file__).resolve().parents[1] / "benchmarks" / "suite_detection.py")
det = importlib.util.module_from_spec(spec)
spec.loader.exec_module(det)


def test_t_harmful_calls_only_a_clear_negative_unit():
    rng = np.random.default_rng(0)
    values = rng.normal(0.0, 1.0, size=(12, 10))
    values[:, 3] = -2.0 + rng.normal(0.0, 0.1, size=12)  # clearly harmful
    values[:, 5] = 2.0 + rng.normal(0.0, 0.1, size=12)  # clearly helpful: never "harmful"
    values[:, 7] = 0.0  # no spread, no effect
    for correction in ("bh", "holm"):
        assert list(np.flatnonzero(det.t_harmful(values, correction))) == [3]


def test_holm_is_stricter_than_bh():
    # Ten units all a little negative: BH calls them (the false discovery rate is controlled by
    # their number), Holm (family-wise) calls fewer.
    rng = np.random.default_rng(1)
    values = -0.8 + rng.normal(0.0, 1.0, size=(12, 10))
    assert det.t_harmful(values, "holm").sum() <= det.t_harmful(values, "bh").sum()
    assert det.t_harmful(values, "bh").sum() > 0


def test_summarize_counts_hits_and_false_calls():
    clean = np.zeros((4, 3))
    clean[:, 1] = [-1.0, -1.1, -0.9, -1.0]  # a false harmful call on the clean twin
    planted = np.zeros((4, 3))
    planted[:, 2] = [-2.0, -2.1, -1.9, -2.0]
    rows = [
        {"prompt": "p", "variant": "clean", "kind": "clean", "method": "ablation", "units": 3, "cases": 4,
         "forward_passes": 2, "seconds": 1.0, "harmful_calls": 1, "per_case": json.dumps(clean.T.tolist()),
         "fault_feature": None},
        {"prompt": "p", "variant": "v", "kind": "wrong_format_example", "method": "ablation", "units": 3, "cases": 4,
         "forward_passes": 2, "seconds": 1.0, "harmful_calls": 1, "rank": 1, "hit1": True, "top3": True,
         "fault_called_harmful": True, "fault_mean": -2.0, "harm": -1.0,
         "per_case": json.dumps(planted.T.tolist()), "fault_feature": 2},
    ]
    s = det.summarize(pd.DataFrame(rows)).loc["ablation"]
    assert s.hit1 == 1.0 and s.chance_hit1 == pytest.approx(1 / 3)
    assert s.false_harmful_rate == pytest.approx(1 / 3)
    assert s.false_t_bh_rate == pytest.approx(1 / 3) and s.fault_called_t_bh == 1.0
    assert s.false_lint_rate == pytest.approx(1 / 3) and s.fault_called_lint == 1.0


def test_summarize_takes_the_later_files_row_of_the_same_attribution(tmp_path):
    row = {"prompt": "p", "variant": "v", "method": "ablation", "segmentation": "units", "baseline": "remove"}
    pd.DataFrame([{**row, "rank": 3}, {**row, "variant": "w", "rank": 1}]).to_csv(tmp_path / "a.csv", index=False)
    pd.DataFrame([{**row, "rank": 2}, {**row, "method": "lime", "rank": 5}]).to_csv(tmp_path / "b.csv", index=False)
    df = det.merged_runs([str(tmp_path / "a.csv"), str(tmp_path / "b.csv")])
    assert sorted(zip(df.variant, df.method, df["rank"])) == [("v", "ablation", 2), ("v", "lime", 5), ("w", "ablation", 1)]


def test_lint_rule_recomputed_from_per_case_effects_is_attributes_own_call():
    # The tables re-decide every stored run with RULES["lint"]; on a fresh attribution that must
    # give exactly the harmful calls attribute (and so lint's PL103) made.
    from promptlens.attribution import attribute
    from promptlens.types import Case
    from tests.rule_backend import RuleBackend

    fake = RuleBackend(rules={"banana": -1.0, "brief": 0.3}, bonus={("x1", "yes"): 0.4, ("x2", "yes"): -0.5})
    cases = [Case({"input": f"x{i % 3}"}, t) for i, t in enumerate(["yes", "no", "yes", "yes", "no", "yes"])]
    result = attribute("Say banana. Be brief. Reply now. Q {input}", cases=cases, backend=fake)
    per_case = np.array([f.per_case for f in result.features]).T
    assert list(det.rule_harmful(per_case, *det.RULES["lint"])) == [f.harmful for f in result.features]


def test_mode_takes_every_approximate_mode_of_attribute_knockout_included():
    from promptlens.approx import MODES

    assert det.parser().parse_args(["--mode", "knockout"]).mode == "knockout"
    assert det.parser().parse_args([]).mode == "exact"
    assert set(det.parser()._option_string_actions["--mode"].choices) == set(MODES)
