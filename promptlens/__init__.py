"""promptlens: find the parts of an LLM prompt that push the wanted output down, and repair them.

The four jobs, each ``job(inputs, config, *, backend=None) -> Result`` (``backend=None``: the
embedded model, loaded on first use):

    attribute(prompt, target, cases=...)            -> Attribution
    fix(template, cases, FixConfig(...))            -> FixResult
    lint([LintTarget(path, cases)], LintConfig())   -> LintResult
    bench(prompts, cases, BenchConfig(...))         -> BenchResult

Example: ``promptlens.fix("Eat a banana. Plural of {input}:", promptlens.load_cases("cases.jsonl")).best``

The names are loaded on first use (PEP 562), so ``import promptlens`` and the command line's
``--help`` import no torch, captum, transformers, optuna or matplotlib: those cost seconds, and
only a job that runs the model needs them.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import BackendError, InputError, ModelNotInstalledError, PromptLensError, PromptLensWarning

# public name -> the module that defines it
_LAZY = {
    "attribute": "attribution",
    "Backend": "backends.base",
    "load_backend": "backends.hf",
    "RemoteBackend": "backends.remote", "remote_backend": "backends.remote",
    "BenchConfig": "bench", "BenchResult": "bench", "bench": "bench",
    "load_cases": "cases", "split_cases": "cases",
    "Recipe": "config", "load_recipe": "config",
    "Edit": "fix", "FixConfig": "fix", "FixInterrupted": "fix", "FixResult": "fix", "Verdict": "fix", "fix": "fix",
    "LintConfig": "lint", "LintResult": "lint", "LintTarget": "lint", "Thresholds": "lint", "lint": "lint",
    "load_config": "lint",
    "RULES": "lint_rules", "Finding": "lint_rules",
    "score_prompts": "scoring", "summarize": "scoring",
    "segment": "segments",
    "load_template": "template_files",
    "Message": "templates", "MessageTemplate": "templates",
    "Attribution": "types", "Case": "types", "Score": "types", "Segment": "types", "SegmentAttribution": "types",
    "Summary": "types",
}

if TYPE_CHECKING:  # what the lazy names are, for type checkers and editors
    from .attribution import attribute
    from .backends.base import Backend
    from .backends.hf import load_backend
    from .backends.remote import RemoteBackend, remote_backend
    from .bench import BenchConfig, BenchResult, bench
    from .cases import load_cases, split_cases
    from .config import Recipe, load_recipe
    from .fix import Edit, FixConfig, FixInterrupted, FixResult, Verdict, fix
    from .lint import LintConfig, LintResult, LintTarget, Thresholds, lint, load_config
    from .lint_rules import RULES, Finding
    from .scoring import score_prompts, summarize
    from .segments import segment
    from .template_files import load_template
    from .templates import Message, MessageTemplate
    from .types import Attribution, Case, Score, Segment, SegmentAttribution, Summary


def _module(where: str) -> ModuleType:
    """The submodule named in ``_LAZY`` (explicit imports: no outside name reaches an import)."""
    if where == "attribution":
        from .attribution import __name__ as full
    elif where == "backends.base":
        from .backends.base import __name__ as full
    elif where == "backends.hf":
        from .backends.hf import __name__ as full
    elif where == "backends.remote":
        from .backends.remote import __name__ as full
    elif where == "bench":
        from .bench import __name__ as full
    elif where == "cases":
        from .cases import __name__ as full
    elif where == "config":
        from .config import __name__ as full
    elif where == "fix":
        from .fix import __name__ as full
    elif where == "lint":
        from .lint import __name__ as full
    elif where == "lint_rules":
        from .lint_rules import __name__ as full
    elif where == "scoring":
        from .scoring import __name__ as full
    elif where == "segments":
        from .segments import __name__ as full
    elif where == "template_files":
        from .template_files import __name__ as full
    elif where == "templates":
        from .templates import __name__ as full
    elif where == "types":
        from .types import __name__ as full
    else:
        raise AttributeError(where)
    # `from .X import __name__` loads the submodule without looking `X` up on this package, where
    # `fix`, `lint` and `bench` name the functions, not the modules.
    return sys.modules[full]


def __getattr__(name: str) -> Any:
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module 'promptlens' has no attribute {name!r}")
    value = getattr(_module(where), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


class _Package(ModuleType):
    """Importing the submodule ``promptlens.fix`` binds ``fix`` on the package to the module; the
    public ``promptlens.fix`` (and ``lint``, ``bench``) is the function, so that binding is skipped
    (the submodule is still in ``sys.modules``)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, ModuleType) and name in _LAZY and _LAZY[name] == name:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "__version__",
    # the jobs, their configs and results
    "attribute", "Attribution", "SegmentAttribution",
    "fix", "FixConfig", "FixResult", "Edit", "Verdict", "FixInterrupted", "Recipe", "load_recipe",
    "lint", "LintConfig", "LintTarget", "Thresholds", "LintResult", "Finding", "RULES", "load_config",
    "bench", "BenchConfig", "BenchResult",
    # models
    "load_backend", "remote_backend", "Backend", "RemoteBackend",
    # inputs and scores
    "load_cases", "split_cases", "load_template", "Message", "MessageTemplate", "Case", "Segment", "segment",
    "Score", "Summary", "score_prompts", "summarize",
    # errors
    "PromptLensError", "InputError", "ModelNotInstalledError", "BackendError", "PromptLensWarning",
]
