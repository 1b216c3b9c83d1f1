"""No function or method in the package is longer than 80 lines (decorators and docstrings included):
a longer one is several steps that want names of their own."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "promptlens"
LIMIT = 80


def long_functions(limit: int = LIMIT) -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                length = node.end_lineno - start + 1
                if length > limit:
                    found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}: {length} lines")
    return found


def test_no_function_is_longer_than_80_lines():
    assert long_functions() == []


def test_the_check_measures_whole_functions(tmp_path):
    assert long_functions(limit=1)  # every function is longer than one line
