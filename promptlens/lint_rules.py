"""lint's rules and findings: plain data, imported by the linter and by its renderers alike (so a
renderer needs nothing of the model side of lint)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SEVERITIES", "FAIL_ON", "FORMATS", "Rule", "RULES", "Finding"]

SEVERITIES = ("error", "warning", "note")  # most severe first
FAIL_ON = (*SEVERITIES, "never")
FORMATS = ("text", "json", "sarif", "junit", "github", "gitlab")


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
         "Removing the segment raises the score: its pooled attribution interval is entirely below zero, "
         "and stays so after correcting for the number of segments tested.", True),
    Rule("PL104", "dead-segment", "note",
         "The segment has no measurable effect on the score; it only costs tokens.", True),
    Rule("PL105", "fragile-segment", "warning",
         "A meaning-preserving perturbation of the segment (a typo, a casing change) drops the score.", True),
    Rule("PL106", "doubtful-example-label", "warning",
         "Given the rest of the prompt, the model prefers another label to a few-shot example's own answer.", True),
)}


@dataclass(frozen=True)
class Finding:
    """One problem at a span of a template file. Lines and columns are 1-based; ``end_col`` is
    exclusive (the column after the last character), as in SARIF regions."""

    rule_id: str
    severity: str
    message: str
    path: str  # the template file, relative to the working directory when possible
    start_line: int
    start_col: int
    end_line: int
    end_col: int
    hint: str
    suppressed: str | None = None  # why it is suppressed ("inline marker on line 3", "promptlens.yaml:9")
