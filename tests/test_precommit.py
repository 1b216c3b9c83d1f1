"""The pre-commit hook, run by pre-commit itself (`pre-commit try-repo` on this checkout): it uses
the installed `promptlens` (language: system, so no environment with a CUDA torch is built) and,
with the lint cache filled, answers without loading a model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from promptlens.lint import LintTarget, lint
from tests.rule_backend import RuleBackend

ROOT = Path(__file__).resolve().parents[1]
EMBEDDED = "SmolLM2-135M-Instruct"
CASES = [{"vars": {"input": "A scored a goal"}, "target": "plausible", "choices": ["plausible", "implausible"]},
         {"vars": {"input": "B hit a homerun"}, "target": "plausible", "choices": ["plausible", "implausible"]}]


def test_hook_is_language_system():
    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "promptlens-lint" and hook["language"] == "system"
    assert hook["entry"] == "promptlens lint" and hook["pass_filenames"] is False


def test_pre_commit_try_repo_runs_the_hook(tmp_path, monkeypatch):
    pytest.importorskip("pre_commit")
    repo = tmp_path / "project"
    repo.mkdir()
    (repo / "t.txt").write_text("Is it plausible or implausible?\nStatement: {input}\nAnswer with one word.\n")
    (repo / "cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in CASES))
    (repo / "promptlens.yaml").write_text("templates:\n  - path: t.txt\n    cases: cases.jsonl\n")
    # Fill the cache with a fake whose accuracy is 0 (PL101), under the embedded model's name,
    # so the hook's run finds it and never loads a model.
    monkeypatch.chdir(repo)
    lint([LintTarget(Path("t.txt"), Path("cases.jsonl"))], cache_dir=".promptlens-cache/lint",
         backend=RuleBackend(bonus={("plausible", "implausible"): 2.0}, name=EMBEDDED))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    for cmd in (["git", "init", "-q"], ["git", "add", "t.txt", "cases.jsonl", "promptlens.yaml"],
                ["git", "commit", "-qm", "prompts"]):
        subprocess.run(cmd, cwd=repo, env=env, check=True, capture_output=True)
    out = subprocess.run([sys.executable, "-m", "pre_commit", "try-repo", str(ROOT), "promptlens-lint",
                          "--all-files"], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "t.txt:1:1: error PL101" in out.stdout and "1 of 1 from cache" in out.stdout, out.stdout
