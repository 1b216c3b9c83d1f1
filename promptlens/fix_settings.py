"""``FixConfig`` and the train/validation split: what a recipe needs of ``fix``, without its imports.

They live apart from :mod:`promptlens.fix` (which re-exports them) because reading a recipe, e.g.
for a cached ``promptlens lint RECIPE``, must not import optuna, torch and captum.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from .cases import split_cases
from .types import Case


@dataclass(frozen=True)
class FixConfig:
    """Every knob of ``fix``, with its default; a recipe's keys are these names (``budget:
    {trials, seconds}`` in YAML). Example: ``fix(template, cases, FixConfig(trials=12, rounds=1))``."""

    strategy: str = "attribution"  # which segments to edit: attribution, random, all, tpe
    trials: int = 30  # trial budget over all rounds
    seconds: float | None = None  # time budget (None: none)
    # Budget in prompts scored (each one teacher-forced forward pass when run alone; None: none),
    # counted before the validation scores: the attribution fix makes, the train scores, the
    # trials. No trial starts once it is spent (a started one finishes). The fair unit for
    # comparing strategies: attribution pays for its own ablation.
    prompts: int | None = None
    threshold: float = 0.8  # minimum similarity of the fixed template to the original
    edit_floor: float = 0.5  # minimum similarity of an edited segment to the one it replaces
    top_k: int = 3  # segments edited per round
    rounds: int = 2
    seed: int = 0  # feeds the split, the sampler, rewrite sampling and attribution
    n_train: int | None = None  # train cases (else ``split`` of them); the rest validate
    split: float = 0.5
    n_validation: int | None = None  # use at most this many validation cases
    objective: str | None = None  # default: margin when every case has choices, else logprob
    rewrites: tuple[str, ...] | None = None  # kinds of rewrite to try (default: all)
    alternatives: Mapping[str, Sequence[str]] = field(default_factory=dict)  # segment text -> texts
    # unit: sentences of plain text; of a message template, each few-shot example whole and the
    # other messages by sentence (so a wrong example can be dropped, and no label is edited alone)
    segmentation: str = "unit"
    # Attribute on the first this many train cases (None: all): a cheap screen, (segments + 1) x
    # this many forward passes; the search still scores every candidate on every train case.
    attribution_cases: int | None = None
    # What the attribution ranks segments by (None: the fix's objective). "logprob" with the margin
    # objective: the right label's log-prob, the quantity the log-prob rule needs to rise.
    attribution_objective: str | None = None
    min_gain: float = 1e-3  # nats an edit must gain on average (and significantly) to be kept
    keep_logprob: bool = True  # margin objective: keep only significant rises of the right label's log-prob
    minibatch: int | None = None  # train cases a trial scores before the pruner may stop it
    storage: str | None = None  # Optuna storage URL (default: sqlite in ``out``, else in memory)
    out: str | Path | None = None  # folder of the default SQLite storage
    study_name: str | None = None  # default: derived from the template, cases, strategy and seed
    resume: bool = False  # continue the stored studies
    join: bool = False  # one of several workers on the same storage and study
    join_wait: float = 600.0  # seconds a worker waits for the one that set a round up
    progress: bool = False  # a progress bar on stderr
    max_regressions: int | None = None  # train cases the fix may turn from right to wrong (None: no limit)
    attribute_after: bool = True  # attribute the fixed template too (for the report)


def train_validation(cases: Sequence[Case], config: FixConfig) -> tuple[list[Case], list[Case]]:
    """The train and validation cases ``fix`` uses when it is given no validation cases."""
    train, valid = split_cases(cases, n_train=config.n_train, frac_train=config.split, seed=config.seed)
    return train, valid[: config.n_validation] if config.n_validation is not None else valid


__all__ = ["FixConfig", "train_validation"]
