"""The rules of ``promptlens lint`` and the severity levels: data only, so the linter, its
reports and the result's notebook view can all import them without importing each other."""

from __future__ import annotations

from dataclasses import dataclass

SEVERITIES = ("error", "warning", "note")  # most severe first


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    severity: str  # default level
    summary: str
    model: bool  # needs the model (else static; PL004 needs only the tokenizer)


RULES: dict[str, Rule] = {r.id: r for r in (
    Rule("PL001", "template-fields", "error",
         "A template field has no value in the cases, or a case var has no field in the template.", False),
    Rule("PL002", "empty-or-duplicate-segment", "warning",
         "A segment holds no words, or repeats an earlier segment.", False),
    Rule("PL003", "unmentioned-choice", "warning",
         "A label choice of the cases never appears in the instruction.", False),
    Rule("PL004", "context-overflow", "error",
         "Prompt plus target is longer than the model's context.", False),
    Rule("PL101", "failing-cases", "error",
         "Accuracy on choice cases is below the threshold, or too many free-form outputs miss the target.", True),
    Rule("PL102", "low-margin", "warning",
         "The mean margin of the target over the best wrong choice is below the threshold.", True),
    Rule("PL103", "harmful-segment", "warning",
         "Removing the segment raises the score: its pooled attribution interval is entirely below zero.", True),
    Rule("PL104", "dead-segment", "note",
         "The segment has no measurable effect on the score; it only costs tokens.", True),
    Rule("PL105", "fragile-segment", "warning",
         "A meaning-preserving perturbation of the segment (a typo, a casing change) drops the score.", True),
)}
