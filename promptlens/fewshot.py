"""Few-shot examples in a message template: drop/reorder edits for the repair search, and the
check that finds an example whose own answer the model doubts.

    flat template ──► example segments (segments.segment(by="example"))
                        ├─► one "examples" block ──► candidates: drop one, reverse, rotate  (fix)
                        └─► each example's answer scored after the rest of the prompt       (lint, fix)

The search edits one segment per slot; reordering moves several examples at once, so a run of
adjacent examples becomes a single block segment whose candidates are whole arrangements of its
examples (the original first). Dropping an example is one of them, so drop and reorder compete
in the same Optuna slot, next to the rewrites of the other segments.

The label check never changes a label: it reports. For example i, the prompt is the system text,
the other examples and example i's question as the last user turn; the answer is scored against
the other labels (the cases' shared label set, else the distinct answers of the examples). An
example whose answer the model ranks below another label is reported with both log-probs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .scoring import Backend, score_prompts
from .segments import fill, join
from .similarity import SimilarityModel
from .templates import example_spans, is_messages, messages_of, to_flat
from .types import Case, Rewrite, Segment

EXAMPLE_KINDS = ("drop_example", "reorder_examples")


def merge_examples(segments: Sequence[Segment]) -> tuple[list[Segment], dict[int, int]]:
    """The segments with each run of adjacent example segments merged into one ``examples``
    block, and the map from old segment indices to new ones."""
    out: list[Segment] = []
    where: dict[int, int] = {}
    for i, seg in enumerate(segments):
        prev = out[-1] if out else None
        if seg.kind == "example" and prev is not None and prev.kind in ("example", "examples") and prev.end == seg.start:
            out[-1] = Segment(prev.start, seg.end, prev.text + seg.text, "examples", True, "examples", prev.message)
        else:
            out.append(seg)
        where[i] = len(out) - 1
    return out, where


def arrangements(examples: Sequence[str], kinds: Sequence[str]) -> list[tuple[str, str]]:
    """(kind, new block text) candidates for a block of example texts, in a fixed order."""
    items, n = list(examples), len(examples)
    out: list[tuple[str, str]] = []
    if "drop_example" in kinds:
        out += [("drop_example", "".join(items[:k] + items[k + 1 :])) for k in range(n)]
    if "reorder_examples" in kinds and n > 1:
        orders = [list(reversed(range(n))), list(range(1, n)) + [0], [n - 1] + list(range(n - 1))]
        for order in orders:
            if order != list(range(n)):
                out.append(("reorder_examples", "".join(examples[k] for k in order)))
    first: dict[str, str] = {}  # new block text -> the kind that made it first (a text is tried once)
    for kind, text in out:
        first.setdefault(text, kind)
    return [(kind, text) for text, kind in first.items()]


def block_candidates(segments: Sequence[Segment], index: int, *, original: str, similarity: SimilarityModel,
                     threshold: float, kinds: Sequence[str]) -> list[Rewrite]:
    """Rewrites of the ``examples`` block ``segments[index]``: the original first, then every
    arrangement whose whole template stays ``threshold`` similar to ``original``."""
    block = segments[index]
    turns = [to_flat([m]) for m in messages_of(block.text)]
    parts = ["".join(turns[k : k + 2]) for k in range(0, len(turns), 2)]  # a block is (user, assistant) pairs
    keep = Rewrite(index, block.text, "original", similarity.cosine(original, join(segments)), 1.0)
    proposals = arrangements(parts, kinds)
    templates = [join(segments, {index: t}) for _, t in proposals]
    scores = similarity.cosines(original, templates)
    return [keep] + [Rewrite(index, t, kind, s, None) for (kind, t), s in zip(proposals, scores) if s >= threshold]


@dataclass(frozen=True)
class ExampleCheck:
    """How likely the model finds example ``number``'s own answer given the rest of the prompt."""

    number: int  # 1-based, in template order
    message: int  # index of the example's assistant message
    answer: str
    logprob: float  # of the answer, nats
    best_other: str | None  # the most likely other label
    best_other_logprob: float | None

    @property
    def suspect(self) -> bool:
        """The model prefers another label to the example's own answer."""
        return self.best_other_logprob is not None and self.best_other_logprob > self.logprob

    def describe(self) -> str:
        text = f"example {self.number}'s answer {self.answer!r}: {self.logprob:+.2f} nats"
        if self.best_other is not None:
            text += f", {self.best_other!r} {self.best_other_logprob:+.2f} nats"
        return text


def answer_segments(flat: str, segments: Sequence[Segment]) -> set[int]:
    """Indices of the segments that lie in a few-shot example's answer (its assistant turn) without
    being the whole example: the labels, which ``fix`` never edits (it may drop or reorder whole
    examples)."""
    return _in_turns(flat, segments, questions=False)


def example_part_segments(flat: str, segments: Sequence[Segment]) -> set[int]:
    """Indices of the segments that lie in a few-shot example, question or answer, without being
    the whole example. ``fix`` leaves them as written: the answer is a label, and deleting the
    question leaves an answer to nothing (at segmentation ``unit`` or ``example`` the whole example
    is one segment, which ``fix`` may drop)."""
    return _in_turns(flat, segments, questions=True)


def _in_turns(flat: str, segments: Sequence[Segment], questions: bool) -> set[int]:
    if not is_messages(flat):
        return set()
    turns = {j for q, a in example_spans(messages_of(flat)) for j in ((q, a) if questions else (a,))}
    return {i for i, s in enumerate(segments)
            if s.feature and s.message in turns and s.kind not in ("example", "examples")}


def check_examples(backend: Backend, flat: str, cases: Sequence[Case] = ()) -> list[ExampleCheck]:
    """Score each example's answer after the rest of the prompt (module docstring)."""
    messages = messages_of(flat) if is_messages(flat) else []
    spans = example_spans(messages)
    if not spans:
        return []
    answers = [messages[a].content for _, a in spans]
    shared = {frozenset(c.choices) for c in cases if c.choices}
    if len(shared) == 1:
        labels = sorted(next(iter(shared)))
    elif len(set(answers)) < len(answers):  # the answers repeat: they are drawn from a label set
        labels = sorted(set(answers))
    else:  # free-form answers: another example's answer (to another input) is no alternative label
        labels = []
    last = len(messages) - 1 if messages[-1].role == "user" else None  # the turn the cases fill
    values = dict(cases[0].vars) if cases else {}
    prompts, checks = [], []
    for u, a in spans:
        context = [m for k, m in enumerate(messages) if k not in (u, a, last)] + [messages[u]]
        prompts.append(fill(to_flat(context), values))
        others = [label for label in labels if label != messages[a].content]
        checks.append(Case(vars={}, target=messages[a].content, choices=(messages[a].content, *others) if others else None))
    rows = [score_prompts(backend, [[p]], [c])[0][0] for p, c in zip(prompts, checks)]
    out = []
    for n, ((u, a), case, score) in enumerate(zip(spans, checks, rows), 1):
        other, other_lp = None, None
        if case.choices and score.choice_logprobs:
            pairs = [(lp, c) for c, lp in zip(case.choices, score.choice_logprobs) if c != case.target]
            other_lp, other = max(pairs)
        out.append(ExampleCheck(n, a, case.target, score.logprob, other, other_lp))
    return out


def check_notes(checks: Sequence[ExampleCheck]) -> list[str]:
    """One line per suspect example, for a report (labels are never changed)."""
    return [f"{c.describe()}: the model prefers {c.best_other!r} given the rest of the prompt; check this "
            "example's label (promptlens never changes a label)" for c in checks if c.suspect]


__all__ = ["EXAMPLE_KINDS", "merge_examples", "arrangements", "block_candidates", "ExampleCheck",
           "check_examples", "check_notes"]
