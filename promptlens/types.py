"""Plain, frozen data types shared by every stage of the pipeline.

"score" always means higher is better, in nats (natural-log units).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence


@dataclass(frozen=True)
class Segment:
    """A contiguous piece ``text[start:end]`` of a prompt or template.

    The segments of a text cover it exactly: ``"".join(s.text for s in segs) == text``.
    ``feature`` segments are what attribution scores and what repair may edit; the rest
    (template fields, whitespace/markup between features) stay fixed.
    """

    start: int
    end: int
    text: str
    kind: str  # "field", "sentence", "line", "word", "token", "span", "message", "example", "gap", "role"
    feature: bool = True
    name: str | None = None  # the field name for kind == "field", the label for a marked span
    # Message templates only: the index of the (first) message the segment lies in; the role of a
    # "role" mark segment is ``name``. None for a plain text template.
    message: int | None = None


@dataclass(frozen=True)
class Case:
    """One example: values for the template's fields, the wanted output, optional label set."""

    vars: Mapping[str, str]
    target: str
    choices: tuple[str, ...] | None = None
    id: str | None = None


@dataclass(frozen=True)
class Score:
    """log p(target | prompt) for one prompt variant on one case."""

    logprob: float  # total over the target's tokens, nats
    token_logprobs: tuple[float, ...]
    choice_logprobs: tuple[float, ...] | None = None  # one per choice, same order as Case.choices
    correct: bool | None = None  # target is the best-scoring choice
    margin: float | None = None  # target minus best wrong choice, nats


@dataclass(frozen=True)
class SegmentAttribution:
    """Pooled effect of one segment on the score (positive: the segment helps)."""

    segment: Segment
    index: int  # position among all segments
    mean: float
    ci_low: float
    ci_high: float
    per_case: tuple[float, ...] = ()

    @property
    def harmful(self) -> bool:
        return self.ci_high < 0.0

    @property
    def helpful(self) -> bool:
        return self.ci_low > 0.0


@dataclass(frozen=True)
class Attribution:
    """The result of ``promptlens.attribute``."""

    method: str
    baseline: str
    objective: str  # "logprob" or "margin"
    segmentation: str
    text: str  # the prompt or template that was segmented
    segments: tuple[Segment, ...]
    features: tuple[SegmentAttribution, ...]  # one per feature segment, in text order
    original_score: float  # mean objective over cases with every segment present
    n_cases: int
    forward_passes: int  # model forward calls
    tokens_computed: int  # token positions run through the model body
    seconds: float
    convergence_delta: float | None = None  # integrated gradients only
    notes: tuple[str, ...] = ()

    def ranked(self) -> list[SegmentAttribution]:
        """Most harmful first (ascending mean)."""
        return sorted(self.features, key=lambda f: f.mean)
