"""The command line: exit codes, one-line errors, the JSON result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "promptlens" / "examples"


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "promptlens", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


@pytest.mark.parametrize(
    "args, message",
    [
        (["attribute", "missing.txt", "--target", "x"], "missing.txt: no such template file"),
        (["attribute", "Say hi.", "--target", "x", "--method", "magic"], "unknown method 'magic'; choose one of: ablation, shapley, lime, kernelshap, ig"),
        (["attribute", "Say hi.", "--target", "x", "--by", "chapter"], "unknown segmentation 'chapter'"),
        (["attribute", "Say hi.", "--target", "x", "--baseline", "zero"], "unknown baseline 'zero'"),
        (["attribute", "Say hi.", "--target", "x", "--objective", "acc"], "unknown objective 'acc'"),
        (["attribute", "Say hi. Be brief.", "--target", "x", "--baseline", "sibling"],
         "baseline 'sibling' replaces a few-shot example by another example of the prompt"),
        (["attribute", "Say hi. Be brief.", "--target", "x", "--baseline", "answer"],
         "baseline 'answer' replaces each few-shot example's answer by the model's own answer"),
        (["attribute", "Say hi.", "--cases", "nope.jsonl"], "nope.jsonl"),
        (["attribute", "Say hi.", "--target", "x", "--cases", "c.jsonl"], "either --target or --cases"),
        (["attribute", "Say hi.", "--target", "x", "--threads", "0"], "--threads 0 is out of range"),
        (["fix", str(ROOT / "recipes" / "plural_planted.yaml"), "--max-regressions", "-1"],
         "--max-regressions -1 is out of range"),
    ],
)
def test_user_errors_exit_2_with_one_line(args, message):
    result = run(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_non_utf8_prompt_file(tmp_path):
    bad = tmp_path / "p.txt"
    bad.write_bytes(b"hello\n\xff\xfe world")
    result = run("attribute", str(bad), "--target", "x")
    assert result.returncode == 2 and "p.txt:2: not UTF-8" in result.stderr and "save the file as UTF-8" in result.stderr


@pytest.mark.model
def test_attribute_example_prints_table_and_writes_json(tmp_path):
    out = tmp_path / "a.json"
    result = run("attribute", str(EXAMPLE / "sports.txt"), "--cases", str(EXAMPLE / "sports.jsonl"),
                 "--limit", "4", "--by", "line", "--json", str(out), "--threads", "2")
    assert result.returncode == 0, result.stderr
    assert "ablation attribution of margin over 4 case(s)" in result.stdout
    data = json.loads(out.read_text())
    assert data["n_cases"] == 4 and data["method"] == "ablation"
    assert [f["segment"]["kind"] for f in data["features"]] == ["line"] * 5
    assert all(f["ci_low"] <= f["mean"] <= f["ci_high"] for f in data["features"])


# The no-network test for every command is tests/test_network.py::test_no_network_connection_at_run_time.


@pytest.mark.model  # reads the embedded model's tokenizer
@pytest.mark.parametrize("args, message", [
    (["--method", "ig"], "--method ig needs gradients of a local model"),
    ([], "cannot get an answer from the scoring server at http://127.0.0.1:9 after 4 tries"),
    (["--server-format", "grpc"], "unknown server format 'grpc'; choose one of: auto, echo, vllm"),
])
def test_server_errors_exit_2_with_one_line(args, message):
    result = run("attribute", "Say hi. Be brief.", "--target", "Hi", "--server", "http://127.0.0.1:9", *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["--dtype", "float16"], "use --dtype bfloat16 or float32"),
    (["--device", "cuda:7"], "--device cuda:7"),
])
def test_device_errors_exit_2_before_loading(args, message):
    result = run("attribute", "Say hi.", "--target", "x", *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr
