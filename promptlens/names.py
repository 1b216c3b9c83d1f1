"""Names the command line and lint's cache need before any model work: option values and the
embedded model's name. Importing this module imports nothing heavy (no torch, captum, optuna),
so ``promptlens --help``, a usage error and a lint run served from the cache stay fast; the
modules that do the work import these from here."""

from __future__ import annotations

from typing import Sequence

from .errors import InputError

STRATEGIES = ("attribution", "random", "all", "tpe")  # fix: which segments get candidates
# attribute: what replaces an absent segment ("sibling": a few-shot example is replaced by another
# example of the same prompt; "answer": a few-shot example's answer is replaced by the model's own
# answer to its question; with both, every other segment is removed; see attribution._sibling_replacements
# and attribution._answer_replacements)
BASELINES = ("remove", "filler", "sampled", "sibling", "answer")
# fix: the kinds of rewrite ("original" is candidate 0, the template as it is)
KINDS = ("original", "delete", "paraphrase", "synonym", "scaffold", "alternative", "drop_example", "reorder_examples")
LEVELS = ("character", "word", "sentence", "semantic")  # bench: PromptBench's perturbation levels
EMBEDDED_MODEL = "SmolLM2-135M-Instruct"


def check_choice(what: str, value: str, valid: Sequence[str]) -> None:
    if value not in valid:
        raise InputError(f"unknown {what} {value!r}; choose one of: {', '.join(valid)}")
