"""No code runs from user input: no deserializer that can run code, weights from safetensors or
GGUF only, YAML through the safe loader only. ruff's S rules (pyproject.toml; tests/test_tooling.py)
catch pickle, dill, shelve, eval, exec, yaml.load, os.system and subprocess; these are the
patterns they do not know."""

from __future__ import annotations

import re

import pytest

from .helpers import ROOT

PACKAGE = ROOT / "promptlens"


def _source_lines() -> list[tuple[str, int, str]]:
    return [(str(p.relative_to(ROOT)), n, line) for p in sorted(PACKAGE.rglob("*.py"))
            for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)]


@pytest.mark.parametrize("pattern", [r"\bjoblib\b", r"\bmarshal\b", r"(?<![.\w])compile\(", r"__import__",
                                     r"yaml\.(unsafe_load|full_load|Loader|UnsafeLoader|FullLoader)",
                                     r"torch\.load\(", r"trust_remote_code\s*=\s*True", r"import_module\("])
def test_no_code_runs_from_user_input(pattern):
    """No deserializer that can run code; configs are read with yaml.safe_load only."""
    hits = [f"{f}:{n}: {line.strip()}" for f, n, line in _source_lines() if re.search(pattern, line)]
    assert not hits, hits


def test_weights_load_from_safetensors_or_gguf_only():
    calls = [(f, n, line) for f, n, line in _source_lines() if re.search(r"\w+\.from_pretrained\(", line)]
    assert calls
    for f, n, line in calls:
        text = "\n".join(x for g, m, x in _source_lines() if g == f and n <= m < n + 3)  # the call's arguments
        assert "local_files_only=True" in text, (f, n)
        if "AutoModel" in line:
            assert "use_safetensors=True" in text or "gguf_file=" in text, (f, n)
    embedding = (PACKAGE / "similarity.py").read_text(encoding="utf-8")
    assert 'model_kwargs={"use_safetensors": True}' in embedding and "local_files_only=True" in embedding


def test_yaml_is_read_with_the_safe_loader_only():
    uses = [(f, n, line.strip()) for f, n, line in _source_lines() if re.search(r"yaml\.\w+\(", line)]
    assert uses and all(re.search(r"yaml\.(safe_load|compose\(.*Loader=yaml\.SafeLoader|safe_dump)\(?", line)
                        for _, _, line in uses), uses
