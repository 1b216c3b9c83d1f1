"""The same inputs and seed give the same JSON result, byte for byte apart from timings, in two
processes with different hash seeds: fix on the fake backend (fast), attribute and lint on the
real model."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from .helpers import EXAMPLE, NET_FILES, ROOT, fix_problem, write_files

def _without_run_details(text: str) -> object:
    """The JSON result less what may differ between two runs: timings and the output folder."""
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("seconds", "storage")}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(json.loads(text))


def test_fix_json_is_identical_across_two_runs(tmp_path):
    """Two processes (different hash seeds), same inputs and seed: the same JSON bytes apart from
    timings and the storage path (fake backend, tests/slow_fix.py with no delay)."""
    fix_problem(tmp_path)
    texts = []
    for run, hash_seed in (("a", "1"), ("b", "2")):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PROMPTLENS_TEST_TRIAL_DELAY": "0", "PYTHONHASHSEED": hash_seed}
        result = subprocess.run([sys.executable, "-m", "tests.slow_fix", "fix", "r.yaml", "--threads", "1", "--out",
                                 run, "--json", f"{run}.json", "--seed", "3"], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        texts.append((tmp_path / f"{run}.json").read_text(encoding="utf-8"))
    a, b = texts
    assert _without_run_details(a) == _without_run_details(b)
    pattern = r'\n\s*"(seconds|storage)": [^\n]*'  # the same bytes, line for line, once those are out
    assert re.sub(pattern, "", a) == re.sub(pattern, "", b)


DETERMINISM_RUNS = {  # command -> arguments that write its JSON result to OUT.json
    "attribute": [str(EXAMPLE / "sports.txt"), "--cases", str(EXAMPLE / "sports.jsonl"), "--limit", "3", "--by", "line",
                  "--method", "shapley", "--samples", "2", "--json", "OUT.json"],
    "lint": ["t.txt", "--cases", "c.jsonl", "--no-cache", "--format", "json", "--output", "OUT.json"],
}


@pytest.mark.model
@pytest.mark.parametrize("command", list(DETERMINISM_RUNS))
def test_model_json_is_identical_across_two_runs(command, tmp_path):
    """The real model in two processes with different hash seeds: the same JSON bytes, timings aside."""
    write_files(tmp_path, NET_FILES)
    pattern = r'\n\s*"seconds": [^\n]*'
    texts = []
    for run, hash_seed in (("a", "1"), ("b", "2")):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "PYTHONHASHSEED": hash_seed}
        args = [a.replace("OUT", run) for a in DETERMINISM_RUNS[command]]
        result = subprocess.run([sys.executable, "-m", "promptlens", command, *args, "--threads", "1"],
                                cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode in (0, 1), result.stderr[-2000:]
        texts.append(re.sub(pattern, "", (tmp_path / f"{run}.json").read_text(encoding="utf-8")))
    assert texts[0] == texts[1]
