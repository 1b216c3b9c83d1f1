"""promptlens: find the parts of an LLM prompt that push the wanted output down, and repair them."""

from __future__ import annotations

from ._version import __version__
from .attribution import attribute
from .bench import BenchResult, bench
from .backends.base import Backend
from .backends.hf import load_backend
from .backends.remote import RemoteBackend, remote_backend
from .cases import load_cases, split_cases
from .fix import FixResult, fix
from .errors import BackendError, InputError, ModelNotInstalledError, PromptLensError
from .scoring import score_prompts
from .segments import segment
from .templates import Message, MessageTemplate, load_template
from .types import Attribution, Case, Score, Segment, SegmentAttribution

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
