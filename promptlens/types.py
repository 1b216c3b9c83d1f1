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
    kind: str  # "field", "sentence", "line", "word", "token", "span", "gap"
    feature: bool = True
    name: str | None = None  # the field name for kind == "field", the label for a marked span


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
    """Pooled effect of one segment on the score (positive: the segment helps).

    ``ci_low``/``ci_high`` is a two-sided ``confidence`` interval of the mean over ``n_cases``
    cases made by ``interval`` (see ``promptlens.stats``). ``raw_verdict`` is this segment's own
    call; ``verdict`` is the call after the multiplicity ``correction`` across the prompt's
    segments, which is what ``harmful`` and ``helpful`` report."""

    segment: Segment
    index: int  # position among all segments
    mean: float
    ci_low: float
    ci_high: float
    per_case: tuple[float, ...] = ()
    n_cases: int = 0
    confidence: float = 0.95
    interval: str = "skew-t"  # how ci_low/ci_high were made (promptlens.stats.METHODS)
    p_value: float = 1.0  # two-sided, for "the mean effect is 0"
    p_adjusted: float = 1.0  # after ``correction`` across the prompt's segments
    correction: str = "bh"  # "bh" (Benjamini-Hochberg), "holm", or "none"
    raw_verdict: str = "unclear"  # "harmful", "helpful", "unclear" or "too few cases"
    verdict: str = "unclear"

    @property
    def harmful(self) -> bool:
        return self.verdict == "harmful"

    @property
    def helpful(self) -> bool:
        return self.verdict == "helpful"


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
    confidence: float = 0.95  # of every segment's interval
    interval: str = "skew-t"  # the interval method (promptlens.stats.METHODS)
    correction: str = "bh"  # the multiplicity correction across segments (promptlens.stats.CORRECTIONS)

    @property
    def has_verdicts(self) -> bool:
        """False below promptlens.stats.MIN_CASES cases: effects without harmful/helpful calls."""
        from .stats import MIN_CASES

        return self.n_cases >= MIN_CASES

    def interval_text(self) -> str:
        """"95% t-interval over 8 cases": what every renderer says about the intervals."""
        from .stats import describe

        return describe(self.n_cases, self.confidence, self.interval)

    def correction_text(self) -> str:
        from .stats import CORRECTION_NAMES

        return CORRECTION_NAMES.get(self.correction, self.correction)

    def ranked(self) -> list[SegmentAttribution]:
        """Most harmful first (ascending mean)."""
        return sorted(self.features, key=lambda f: f.mean)
