"""Static checks that run with the tests: ruff's security (S) and error rules on the package,
configured in pyproject.toml (also run by `make test` before pytest). mypy, configured there too,
runs in `make test` and `make test-fast` only: a cold check of the package takes about a minute."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _ruff() -> list[str] | None:
    exe = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    return [exe] if Path(exe).is_file() else None


@pytest.mark.skipif(_ruff() is None, reason="ruff is not installed: pip install -e '.[test]'")
def test_ruff_is_clean_on_the_package():
    done = subprocess.run([*_ruff(), "check", "promptlens"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(_ruff() is None, reason="ruff is not installed: pip install -e '.[test]'")
def test_ruff_s_rules_catch_what_the_grep_test_no_longer_does(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import pickle\nimport subprocess\nimport yaml\neval('1')\nexec('1')\nyaml.load('a')\n",
                   encoding="utf-8")
    done = subprocess.run([*_ruff(), "check", "--config", str(ROOT / "pyproject.toml"), "--output-format", "json",
                           str(bad)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    codes = {finding["code"] for finding in json.loads(done.stdout)}
    assert {"S403", "S404", "S307", "S102", "S506"} <= codes, codes
