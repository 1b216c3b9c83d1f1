"""Fast start: `--help`, a usage error and a lint run served wholly from the cache import none of
the heavy libraries (checked in a fresh interpreter through sys.modules; never by timing)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from promptlens.lint import LintTarget, lint
from tests.rule_backend import RuleBackend

ROOT = Path(__file__).resolve().parents[1]
# scipy too: promptlens.stats imports it on first use only (it took 1.5 s of a 2.6 s `--help`)
HEAVY = ("torch", "captum", "transformers", "optuna", "matplotlib", "scipy")
PROBE = """
import json, sys
from promptlens.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "heavy": [m for m in %r if m in sys.modules]}), file=sys.stderr)
""" % (HEAVY,)


def probe(*args: str, cwd: Path = ROOT) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=300)
    return json.loads(out.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["lint", "--help"], ["fix", "--help"],
                                  ["attribute", "--help"], ["bench", "--help"]])
def test_help_imports_nothing_heavy(args):
    assert probe(*args) == {"code": 0, "heavy": []}


@pytest.mark.parametrize("args", [["lint", "--format", "xml", "t.txt", "--cases", "c.jsonl"],
                                  ["fix", "--strategy", "best", "r.yaml"], ["attribute", "Say hi.", "--top", "x"],
                                  ["nosuchcommand"], ["lint", "t.txt"]])
def test_usage_errors_import_nothing_heavy(args):
    assert probe(*args) == {"code": 2, "heavy": []}


def test_a_fully_cached_lint_imports_nothing_heavy(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.txt").write_text("Is it plausible or implausible?\nStatement: {input}\nAnswer with one word.\n")
    (tmp_path / "c.jsonl").write_text(
        '{"vars": {"input": "A scored"}, "target": "plausible", "choices": ["plausible", "implausible"]}\n')
    (tmp_path / "promptlens.yaml").write_text("templates:\n  - {path: t.txt, cases: c.jsonl}\n")
    lint([LintTarget(Path("t.txt"), Path("c.jsonl"))], cache_dir=".promptlens-cache/lint",
         backend=RuleBackend(bonus={("plausible", "implausible"): 2.0}, name="SmolLM2-135M-Instruct"))
    for args in (["lint", "--threads", "2"], ["lint", "--format", "sarif"], ["lint", "--format", "github"]):
        assert probe(*args, cwd=tmp_path) == {"code": 1, "heavy": []}, args  # PL101 fails the build


def test_lazy_names_are_the_objects_even_after_their_modules_load():
    import types

    import promptlens
    import promptlens.bench  # noqa: F401 (binds nothing over the public names)
    import promptlens.cli  # noqa: F401
    import promptlens.fix  # noqa: F401
    import promptlens.lint  # noqa: F401

    assert callable(promptlens.fix) and callable(promptlens.lint) and callable(promptlens.bench)
    assert not any(isinstance(getattr(promptlens, n), types.ModuleType) for n in promptlens.__all__)
    assert set(promptlens.__all__) <= set(dir(promptlens))


def test_a_cached_lint_of_a_recipe_imports_nothing_heavy(tmp_path, monkeypatch):
    """Reading a recipe needs FixConfig, not fix's optuna and torch (promptlens/fix_settings.py)."""
    import promptlens.backends.hf as hf
    from promptlens.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.jsonl").write_text(
        '{"vars": {"input": "A scored"}, "target": "plausible", "choices": ["plausible", "implausible"]}\n')
    (tmp_path / "r.yaml").write_text('template: "Is it plausible or implausible?\\nStatement: {input}\\n"\n'
                                     "cases: c.jsonl\n")
    monkeypatch.setattr(hf, "load_backend", lambda *a, **k: RuleBackend(bonus={("plausible", "implausible"): 2.0}))
    assert main(["lint", "r.yaml"]) == 1  # fills the cache (PL101 fails the build)
    assert probe("lint", "r.yaml", cwd=tmp_path) == {"code": 1, "heavy": []}
