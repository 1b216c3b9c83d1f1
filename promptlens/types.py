"""Plain, frozen data types shared by every stage of the pipeline.

"score" always means higher is better, in nats (natural-log units).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:
    import pandas as pd


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
    # True when an approximate mode estimated this effect instead of measuring it by
    # leave-one-out on the model: an estimate gets no verdict (its interval is the estimate's).
    estimated: bool = False
    n_cases: int = 0
    confidence: float = 0.95
    interval: str = "skew-t"  # how ci_low/ci_high were made (promptlens.stats.METHODS)
    p_value: float = 1.0  # two-sided, for "the mean effect is 0"
    p_adjusted: float = 1.0  # after ``correction`` across the prompt's segments
    correction: str = "bh"  # "bh" (Benjamini-Hochberg), "holm", or "none"
    raw_verdict: str = "unclear"  # "harmful", "helpful", "unclear", "too few cases" or "estimate"
    verdict: str = "unclear"

    @property
    def harmful(self) -> bool:
        return not self.estimated and self.verdict == "harmful"

    @property
    def helpful(self) -> bool:
        return not self.estimated and self.verdict == "helpful"


@dataclass(frozen=True)
class Approximation:
    """How an approximate attribution mode got its numbers, and how well they held up.

    After the mode has estimated every segment, the ``verified`` segments (its k most harmful)
    are measured exactly by leave-one-out on the target model; ``approx_means`` and
    ``exact_means`` are their pooled effects before and after, and the agreement figures
    compare the two. Those segments then carry the exact numbers.
    """

    mode: str  # "hierarchical", "surrogate", "proxy" or "knockout"
    variants: int  # prompt variants scored on the target model (each for every case)
    forward_passes: int  # model forward calls on the target model (bins of the prefix trie)
    tokens_computed: int  # token positions run through the target model
    verified: tuple[int, ...]  # feature positions measured exactly at the end
    approx_means: tuple[float, ...]  # the mode's estimate for each verified feature
    exact_means: tuple[float, ...]  # leave-one-out for each verified feature
    max_abs_diff: float  # max |estimate - exact| over the verified, nats
    sign_agreement: float  # fraction of the verified whose estimate has the exact sign
    rank_agreement: float | None  # Spearman between estimate and exact over the verified (k >= 3)
    exact_features: int  # features whose final number is leave-one-out on the target model
    settings: Mapping[str, object] = field(default_factory=dict)  # budget, k, proxy choice, timings

    def summary(self) -> str:
        """One line for every report: what was approximated and the check against exact."""
        k = len(self.verified)
        rho = "n/a" if self.rank_agreement is None else f"{self.rank_agreement:+.2f}"
        return (f"approximate ({self.mode}): {self.variants} variants, {self.forward_passes} forward passes; "
                f"top {k} verified by exact leave-one-out: max |diff| {self.max_abs_diff:.3f} nats, "
                f"signs agree {self.sign_agreement:.0%}, rank correlation {rho}; "
                f"{self.exact_features} segment(s) exact, the rest estimated (marked ~, no verdict)")


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
    mode: str = "exact"  # "exact", or an approximate mode (see ``approximation``)
    approximation: Approximation | None = None
    confidence: float = 0.95  # of every segment's interval
    interval: str = "skew-t"  # the interval method (promptlens.stats.METHODS)
    correction: str = "bh"  # the multiplicity correction across segments (promptlens.stats.CORRECTIONS)

    @property
    def has_verdicts(self) -> bool:
        """False below promptlens.stats.MIN_CASES cases: effects without harmful/helpful calls."""
        from .stats import MIN_CASES

        return self.n_cases >= MIN_CASES

    def interval_text(self) -> str:
        """"95% skew-adjusted t-interval over 8 cases": what every renderer says about the intervals."""
        from .stats import describe

        return describe(self.n_cases, self.confidence, self.interval)

    def segmented_by(self) -> str:
        """How the segments were cut, in words (``unit`` is by sentence on a plain text template)."""
        from .templates import is_messages

        if self.segmentation != "unit":
            return self.segmentation
        return "unit (few-shot examples whole, the rest by sentence)" if is_messages(self.text) else "sentence"

    def correction_text(self) -> str:
        from .stats import CORRECTION_NAMES

        return CORRECTION_NAMES.get(self.correction, self.correction)

    def ranked(self) -> list[SegmentAttribution]:
        """Most harmful first (ascending mean)."""
        return sorted(self.features, key=lambda f: f.mean)

    def to_dataframe(self, per_case: bool = False) -> pd.DataFrame:
        """A pandas DataFrame, one row per feature segment in text order (``segment`` is its index
        among all segments; effects in nats, positive = the segment helps): text, kind, start, end,
        mean, ci_low, ci_high, harmful, helpful, and how they were decided (n_cases, confidence,
        interval, p_value, p_adjusted, correction, raw_verdict, verdict). ``per_case=True``: one row per case x segment
        (``case`` is the case's position, ``effect`` its effect on that case)."""
        import pandas as pd

        def about(f: SegmentAttribution) -> dict[str, Any]:
            return {"segment": f.index, "text": f.segment.text, "kind": f.segment.kind,
                    "start": f.segment.start, "end": f.segment.end}

        if per_case:
            rows = [{"case": c, **about(f), "effect": v} for f in self.features for c, v in enumerate(f.per_case)]
            return pd.DataFrame(rows, columns=["case", "segment", "text", "kind", "start", "end", "effect"]) \
                .sort_values(["case", "segment"], kind="stable").reset_index(drop=True)
        stat = ["n_cases", "confidence", "interval", "p_value", "p_adjusted", "correction", "raw_verdict", "verdict"]
        rows = [{**about(f), "mean": f.mean, "ci_low": f.ci_low, "ci_high": f.ci_high, "harmful": f.harmful,
                 "helpful": f.helpful, **{k: getattr(f, k) for k in stat}} for f in self.features]
        return pd.DataFrame(rows, columns=["segment", "text", "kind", "start", "end", "mean", "ci_low", "ci_high",
                                           "harmful", "helpful", *stat])

    def _repr_html_(self) -> str:
        """Jupyter: the HTML attribution report."""
        from .html import attribution_html, notebook_html

        return notebook_html(attribution_html(self))

@dataclass(frozen=True)
class Summary:
    """A template's scores on a set of cases (means over cases; nats). ``per_case`` holds each
    case's objective, in the order of ``case_ids``."""

    n_cases: int
    objective: float  # the mean of what the search maximises
    logprob: float
    accuracy: float | None  # choice cases only
    margin: float | None
    case_ids: tuple[str, ...] = ()
    per_case: tuple[float, ...] = ()


@dataclass(frozen=True)
class Rewrite:
    """New text for ``segments[segment_index]``; ``text`` includes the segment's whitespace.

    ``similarity`` is the whole rewritten template's similarity to the original template;
    ``segment_similarity`` the new segment's similarity to the old one (None for deletion and
    for the original itself).
    """

    segment_index: int
    text: str
    kind: str
    similarity: float
    segment_similarity: float | None = None
