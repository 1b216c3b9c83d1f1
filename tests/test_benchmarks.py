"""Every benchmark's --quick mode runs end to end (a smoke test, not a timing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def quick_json(script: str, tmp_path: Path, *extra: str) -> dict:
    """Run a benchmark's --quick mode and return the JSON it writes."""
    out = tmp_path / "result.json"
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--quick", "--json", str(out), *extra],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(out.read_text())


@pytest.mark.model
def test_attribution_speed_quick(tmp_path):
    data = quick_json("attribution_speed.py", tmp_path, "--bf16")
    assert [r["workload"] for r in data["results"]] == ["12-segment prompt", "8-segment template x 4 cases"]
    for r in data["results"]:
        assert r["max_abs_diff"] < 1e-3  # exact against stock Captum, whatever the speed
        assert r["segments"] >= 8
        assert r["floor_s"] > 0 and len(r["vs_floor_each"]) == 1
        # bfloat16 is reported beside fp32, with its own (larger, nonzero) difference
        assert r["low_dtype"] == "bfloat16" and 0 < r["low_max_abs_diff"] < 5


@pytest.mark.model
def test_fix_throughput_quick(tmp_path):
    data = quick_json("fix_throughput.py", tmp_path, "--profile", "--breakdown")
    stages = {r["stage"]: r for r in data["profile_kept"]}
    assert stages["matmul"]["s"] > 0 and stages["matmul"]["gflops"] > 0
    for path in ("kept", "batch"):  # the profiler-free breakdown: its rows add up to the wall time
        row = data["breakdown"][path]
        secs = row["seconds"]
        parts = sum(v for k, v in secs.items() if k not in ("wall", "sdpa"))  # SDPA is inside attention's rest
        assert all(v >= 0 for v in secs.values()) and abs(parts - secs["wall"]) < 0.01 * secs["wall"] + 0.005
        assert 0 < secs["sdpa"] < secs["attn_rest"]
        assert 0 < row["linear_bound_s"] < secs["wall"] and row["linear_bound_vs_floor"] > 0.5
        assert row["block_m"] and row["head_m"] and all(r > 0 for r in row["rates"].values())
    assert data["evaluations"] == data["templates"] * data["cases"] == 16
    paths = data["paths"]
    assert set(paths) == {"two_calls", "kept", "one_call", "batch"}
    for row in paths.values():
        assert row["max_abs_diff"] < 1e-4  # the same trial values as one-at-a-time forwards
        assert row["forward_passes"] < data["sequences"]
    # Kept prefixes: the rest of a trial does not compute its template's start again.
    assert paths["kept"]["tokens_computed"] < paths["two_calls"]["tokens_computed"]
    # 4 trials in one call: one pass for the whole workload, no more tokens than a call per trial
    assert paths["batch"]["forward_passes"] < paths["one_call"]["forward_passes"]
    assert paths["batch"]["tokens_computed"] <= paths["one_call"]["tokens_computed"]


@pytest.mark.model
def test_kernel_floor_quick(tmp_path):
    data = quick_json("kernel_floor.py", tmp_path)
    assert [r["tokens"] for r in data["rows"]] == [64, 128]
    assert data["peak_gflops"] > 0 and isinstance(data["native_bf16"], bool)
    for r in data["rows"]:
        assert r["floor_s"] > 0 and r["plain_s"] > 0
        # the kernel bound charges the floor's FLOPs at rates measured below the peak, so it is >= the floor
        assert r["kernel_bound_vs_floor"] > 0.5 and 0 < r["attention_share_of_floor"] < 1


def test_split_attention_quick(tmp_path):
    data = quick_json("split_attention.py", tmp_path)
    assert [(r["past"], r["n"]) for r in data["rows"]] == [(500, 500), (600, 400)]
    for r in data["rows"]:  # the split merges to the same attention output
        assert r["max_abs_diff"] < 1e-5 and r["current_ms"] > 0 and r["split_ms"] > 0


@pytest.mark.model
def test_linear_kernels_quick(tmp_path):
    data = quick_json("linear_kernels.py", tmp_path)
    assert [r["rows"] for r in data["rows"]] == [37, 200] and data["weights_mb"] > 100
    for r in data["rows"]:
        assert r["gflops"]["plain"] > 0 and r["vs_plain"]["plain"] == 1.0
        assert all(d < 1e-3 for d in r["max_abs_diff"].values()), r["max_abs_diff"]  # the same products


@pytest.mark.model
@pytest.mark.parametrize("script, outputs", [
    ("detection.py", ["detection.md", "detection_runs.csv", "faithfulness_runs.csv"]),
    ("fix_quality.py", ["fix_quality.md", "fix_quality_runs.csv", "fix_quality.png"]),
    ("suite_detection.py", ["suite_detection.md", "suite_detection_runs.csv", "suite_detection.json"]),
])
def test_quality_benchmarks_quick(tmp_path, script, outputs):
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--quick", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for name in outputs:
        assert (tmp_path / name).stat().st_size > 0, name


def test_long_workload_is_fixed_and_disjoint_from_its_cases():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from long_prompt import MANIFEST, long_workload
    from transformers import AutoTokenizer

    from promptlens.backends.hf import _embedded_safetensors
    from promptlens.segments import features, fill, segment
    from promptlens.templates import render

    text, cases, manifest = long_workload()
    assert (text, cases, manifest) == long_workload()  # same seed, same workload
    assert json.loads(MANIFEST.read_text()) == json.loads(json.dumps(manifest))  # the recorded manifest
    assert len(features(segment(text, "sentence"))) >= 40 and len(cases) == 8
    assert not set(manifest["extra_examples"]) & set(manifest["cases"])
    examples = {m["content"].removeprefix("Noun: ") for m in manifest["messages"][1:-1] if m["role"] == "user"}
    assert not examples & {c.vars["input"] for c in cases}
    assert sum(m["content"] == "READERS" for m in manifest["messages"]) == 1  # the planted fault, kept
    assert manifest["messages"][-4]["content"] == "READERS"  # still the second-to-last example
    tokenizer = AutoTokenizer.from_pretrained(_embedded_safetensors(), local_files_only=True)
    n = len(tokenizer(render(tokenizer, fill(text, cases[0].vars), raw=False), add_special_tokens=False)["input_ids"])
    assert 1000 <= n <= 2000


@pytest.mark.model
def test_long_prompt_quick_knockout(tmp_path):
    data = quick_json("long_prompt.py", tmp_path, "--stock-cases", "0", "--modes", "knockout", "--profile",
                      "--breakdown")
    exact, knock = data["rows"]
    stages = {r["stage"]: r for r in exact["profile"]["stages"]}
    assert stages["matmul"]["s"] > 0 and exact["profile"]["matmul_shapes"]  # where exact's time went
    secs = exact["breakdown"]["seconds"]  # and again without the profiler
    assert 0 < secs["sdpa"] < secs["attn_rest"] < secs["wall"] and exact["breakdown"]["linear_bound_s"] > 0
    assert exact["mode"] == "exact" and knock["mode"] == "knockout"
    assert knock["tokens"] < exact["tokens"] and knock["forward_passes"] > 0
    assert knock["settings"]["knocked_out"] > 0 and 0 <= knock["check_max_abs_diff"]
    assert exact["map_top"] == (None if exact["map"] is None else 1.0)  # None: nothing called harmful at 2 cases
    assert len(exact["means"]) == len(knock["means"]) == len(data["segments"])
