"""Scores of prompt variants x cases: target log-prob, and for labelled cases every choice's
log-prob, accuracy and margin. One backend call per batch of variants, so every shared prefix
(template text, system prompt, the prompt behind several choices) is computed once.
"""

from __future__ import annotations

import contextlib
from typing import ContextManager, Sequence

from .backends.base import Backend
from .segments import fill
from .templates import for_backend
from .types import Case, Score, Summary

OBJECTIVES = ("logprob", "margin")
__all__ = ["Backend", "OBJECTIVES", "continuations", "score_prompts", "objective_value", "default_objective",
           "summarize", "summarize_many", "summarize_scores"]


def continuations(case: Case) -> tuple[str, ...]:
    """What is scored after the prompt: the target, then the other choices (if any)."""
    if not case.choices:
        return (case.target,)
    return (case.target, *[c for c in case.choices if c != case.target])


def _score(case: Case, per_token: list[list[float]]) -> Score:
    totals = [sum(tokens) for tokens in per_token]
    if not case.choices:
        return Score(logprob=totals[0], token_logprobs=tuple(per_token[0]))
    by_choice = dict(zip(continuations(case), totals))
    best_wrong = max((v for c, v in by_choice.items() if c != case.target), default=float("-inf"))
    return Score(
        logprob=totals[0],
        token_logprobs=tuple(per_token[0]),
        choice_logprobs=tuple(by_choice[c] for c in case.choices),
        correct=totals[0] > best_wrong,
        margin=totals[0] - best_wrong,
    )


def score_prompts(backend: Backend, prompts: Sequence[Sequence[str]], cases: Sequence[Case]) -> list[list[Score]]:
    """``prompts[v][c]`` is variant v already filled for case c; returns ``scores[v][c]``."""
    flat_prompts = [for_backend(backend, p) for row in prompts for p in row]
    flat_targets = [continuations(case) for _ in prompts for case in cases]
    flat = iter(backend.token_logprobs(flat_prompts, flat_targets))
    return [[_score(case, next(flat)) for case in cases] for _ in prompts]


def objective_value(score: Score, objective: str) -> float:
    """The number that attribution explains and repair maximises (higher is better, nats)."""
    if objective == "margin":
        if score.margin is None:
            raise ValueError("the margin objective needs cases with choices")
        return score.margin
    return score.logprob


def default_objective(cases: Sequence[Case]) -> str:
    """Margin when every case has a label set (log-prob alone can rise for all labels at once)."""
    return "margin" if cases and all(c.choices and len(c.choices) > 1 for c in cases) else "logprob"


def summarize_scores(row: Sequence[Score], cases: Sequence[Case], objective: str = "logprob") -> Summary:
    """Means over one template's scores on ``cases``; accuracy and margin only when every case has choices."""
    n = len(row)
    values = tuple(objective_value(s, objective) for s in row)
    has_choices = all(s.margin is not None for s in row)
    return Summary(
        n_cases=n,
        objective=sum(values) / n,
        logprob=sum(s.logprob for s in row) / n,
        accuracy=sum(bool(s.correct) for s in row) / n if has_choices else None,
        margin=sum(s.margin or 0.0 for s in row) / n if has_choices else None,
        case_ids=tuple(c.id or f"case {i}" for i, c in enumerate(cases, 1)),
        per_case=values,
    )


def summarize_many(backend: Backend, templates: Sequence[str], cases: Sequence[Case],
                   objective: str = "logprob") -> list[Summary]:
    """Each template filled for every case and scored, in one backend call: one ``Summary`` per template."""
    rows = score_prompts(backend, [[fill(t, c.vars) for c in cases] for t in templates], cases)
    return [summarize_scores(row, cases, objective) for row in rows]


def summarize(backend: Backend, template: str, cases: Sequence[Case], objective: str = "logprob") -> Summary:
    """``template`` over ``cases``: mean objective, log-prob, accuracy and margin.

    Example: ``summarize(load_backend(), "Plural of {input}:", load_cases("cases.jsonl")).logprob``"""
    return summarize_many(backend, [template], cases, objective)[0]


def kept_prefixes(backend: Backend) -> ContextManager[None]:
    """The backend's ``keep_prefixes`` block where it has one (the embedded model: calls that
    share a start compute it once: a trial's minibatch and the rest of its cases, trials that
    share their template's start, an attribution's original prompt and the variants it scores
    later), else a block that changes nothing."""
    keep = getattr(backend, "keep_prefixes", None)
    return keep() if callable(keep) else contextlib.nullcontext()
