"""promptlens: find the parts of an LLM prompt that push the wanted output down, and repair them.

The names below are loaded on first use (PEP 562), so ``import promptlens`` and the command line's
``--help`` import no torch, captum, transformers or optuna: those cost seconds and only a job that
runs the model needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import BackendError, InputError, ModelNotInstalledError, PromptLensError

# public name -> the module that defines it
_LAZY = {
    "attribute": "attribution", "bench": "bench", "BenchResult": "bench", "Backend": "backends.base",
    "load_backend": "backends.hf", "RemoteBackend": "backends.remote", "remote_backend": "backends.remote",
    "load_cases": "cases", "split_cases": "cases", "fix": "fix", "FixResult": "fix",
    "score_prompts": "scoring", "segment": "segments", "load_template": "templates", "Message": "templates",
    "MessageTemplate": "templates", "Attribution": "types", "Case": "types", "Score": "types",
    "Segment": "types", "SegmentAttribution": "types",
}

if TYPE_CHECKING:  # what the lazy names are, for type checkers and editors
    from .attribution import attribute
    from .backends.base import Backend
    from .backends.hf import load_backend
    from .backends.remote import RemoteBackend, remote_backend
    from .bench import BenchResult, bench
    from .cases import load_cases, split_cases
    from .fix import FixResult, fix
    from .scoring import score_prompts
    from .segments import segment
    from .templates import Message, MessageTemplate, load_template
    from .types import Attribution, Case, Score, Segment, SegmentAttribution


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'promptlens' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "__version__",
    "attribute",
    "bench",
    "BenchResult",
    "fix",
    "FixResult",
    "load_backend",
    "remote_backend",
    "Backend",
    "RemoteBackend",
    "load_cases",
    "split_cases",
    "score_prompts",
    "segment",
    "load_template",
    "Message",
    "MessageTemplate",
    "Attribution",
    "Case",
    "Score",
    "Segment",
    "SegmentAttribution",
    "PromptLensError",
    "InputError",
    "ModelNotInstalledError",
    "BackendError",
]
