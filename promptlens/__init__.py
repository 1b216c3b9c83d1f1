"""promptlens: find the parts of an LLM prompt that push the wanted output down, and repair them.

The four jobs, each ``job(inputs, config, *, backend=None) -> Result`` (``backend=None``: the
embedded model, loaded on first use):

    attribute(prompt, target, cases=...)            -> Attribution
    fix(template, cases, FixConfig(...))            -> FixResult
    lint([LintTarget(path, cases)], LintConfig())   -> LintResult
    bench(prompts, cases, BenchConfig(...))         -> BenchResult

Example: ``promptlens.fix("Eat a banana. Plural of {input}:", promptlens.load_cases("cases.jsonl")).best``
"""

from __future__ import annotations

from ._version import __version__
from .attribution import attribute
from .backends.base import Backend
from .backends.hf import load_backend
from .backends.remote import RemoteBackend, remote_backend
from .bench import BenchConfig, BenchResult, bench
from .cases import load_cases, split_cases
from .config import Recipe, load_recipe
from .errors import BackendError, InputError, ModelNotInstalledError, PromptLensError, PromptLensWarning
from .fix import Edit, FixConfig, FixInterrupted, FixResult, Verdict, fix
from .lint import LintConfig, LintResult, LintTarget, Thresholds, lint, load_config
from .lint_rules import RULES, Finding
from .scoring import score_prompts, summarize
from .segments import segment
from .template_files import load_template
from .templates import Message, MessageTemplate
from .types import Attribution, Case, Score, Segment, SegmentAttribution, Summary

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
