"""The package's import graph, read from the source with ``ast`` (function-local imports included;
``if TYPE_CHECKING:`` imports, which never run, left out): no library module imports the command
line, and no promptlens modules import each other in a circle."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "promptlens"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _resolve(module: str, is_pkg: bool, node: ast.ImportFrom, files: set[str]) -> list[str]:
    """The promptlens modules an ``from X import a, b`` names: X.a when a is a module, X itself
    when some name is not (then X's own code runs for it)."""
    if node.level:
        base = module.split(".") if is_pkg else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    submodules = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in files]
    return submodules + ([target] if len(submodules) < len(node.names) else [])


def _type_checking_only(tree: ast.Module) -> set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:``: never run, so no edge of the graph."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for child in node.body for n in ast.walk(child)}
    return skip


def import_graph() -> dict[str, set[str]]:
    """Module -> the promptlens modules it imports anywhere (top level or inside a function)."""
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        deps: set[str] = set()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _type_checking_only(tree)
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                deps.update(_resolve(name, _is_package(path), node, set(files)))
        graph[name] = {d for d in deps if d in files and d != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle, as a path that ends where it starts; None when there is none."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def _is_cli(name: str) -> bool:
    return name == "promptlens.cli" or name.startswith("promptlens.cli.")


def test_the_graph_sees_function_local_and_relative_imports():
    graph = import_graph()
    assert "promptlens.approx" in graph["promptlens.attribution"]  # from . import approx
    assert "promptlens" not in graph["promptlens.attribution"]
    assert "promptlens.cli.common" in graph["promptlens.cli.fix"]
    assert "promptlens.backends.hf" in graph["promptlens.cli.common"]  # imported inside make_backend
    assert "promptlens.backends.base" in graph["promptlens.scoring"]


def test_no_library_module_imports_the_command_line():
    offenders = {name: sorted(d for d in deps if _is_cli(d))
                 for name, deps in import_graph().items() if not _is_cli(name) and name != "promptlens.__main__"}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_import_circle():
    assert _cycle(import_graph()) is None


def test_the_cycle_finder_finds_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for dep in graph[todo.pop()] - seen:
            seen.add(dep)
            todo.append(dep)
    return seen


def test_the_html_renderers_reach_no_backend_and_no_scorer():
    # Renderers only render: a report that scored cases itself could disagree with the result's
    # own numbers (it once wrote its own verdict). Nothing they import, directly or not, scores.
    graph = import_graph()
    renderers = [m for m in graph if m == "promptlens.html" or m.startswith("promptlens.html.")]
    assert len(renderers) >= 6
    scoring = ("promptlens.backends", "promptlens.scoring", "promptlens.prefix", "promptlens.attribution",
               "promptlens.study", "promptlens.fix", "promptlens.lint", "promptlens.bench")
    reached = {m: sorted(d for d in _reachable(graph, m) if d in scoring or d.startswith(scoring[0] + "."))
               for m in renderers}
    assert {m: d for m, d in reached.items() if d} == {}
