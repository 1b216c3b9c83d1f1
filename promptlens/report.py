"""Renderers: terminal tables and heatmaps, JSON text (files are written by ``io.write_atomic``)."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import TYPE_CHECKING, Any

from .stats import DEFAULT_CONFIDENCE, MIN_CASES, describe_lower, level, too_few_reason
from .templates import is_messages, shown
from .types import Attribution, SegmentAttribution

if TYPE_CHECKING:
    from .fix import FixResult, Flips, Summary

# Blue = helps, orange = hurts: a pair that stays distinct for the common colour-vision deficiencies.
_HELP = (33, 39, 75, 111)  # xterm-256 blues, strong -> weak
_HURT = (202, 208, 214, 222)  # oranges, strong -> weak


def to_jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        if isinstance(obj, SegmentAttribution):  # its verdicts are properties, not fields
            out["harmful"], out["helpful"] = obj.harmful, obj.helpful
        if isinstance(obj, Attribution):  # say how the intervals and verdicts were made, in words
            out["interval_text"], out["correction_text"] = obj.interval_text(), obj.correction_text()
            out["has_verdicts"] = obj.has_verdicts
        return out
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # one case has no interval: JSON has no Infinity

    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, str) and is_messages(obj):  # a message template's flat text: roles as labels
        return shown(obj)
    return obj


def dumps(obj: Any) -> str:
    return json.dumps(to_jsonable(obj), indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def _shade(value: float, scale: float) -> int:
    level = min(3, int(3 * (1 - min(1.0, abs(value) / scale)) + 0.5)) if scale > 0 else 3
    return (_HELP if value > 0 else _HURT)[level]


def heatmap(attr: Attribution, *, color: bool) -> str:
    """The prompt with each feature segment shaded by its pooled attribution."""
    by_index = {f.index: f for f in attr.features}
    scale = max((abs(f.mean) for f in attr.features), default=0.0)
    out: list[str] = []
    for i, seg in enumerate(attr.segments):
        f = by_index.get(i)
        # a message template: each role mark becomes a `--- role ---` header line
        text = shown(seg.text, inline=False) if is_messages(seg.text) else seg.text
        if seg.start > 0 and is_messages(seg.text[:1]) and not "".join(out).endswith("\n"):
            text = "\n" + text.lstrip("\n")
        if f is None or not color:
            out.append(text if color or f is None else f"[{text}]")
            continue
        body, tail = text.rstrip(), text[len(text.rstrip()):]
        out.append(f"\x1b[48;5;{_shade(f.mean, scale)}m\x1b[30m{body}\x1b[0m{tail}")
    return "".join(out)


def attribution_table(attr: Attribution, *, color: bool = False, top: int | None = None) -> str:
    """Ranked table, most harmful first, then the heatmap and any notes."""
    rows = attr.ranked()[:top] if top else attr.ranked()
    width = 48
    pct = level(attr.confidence)
    differ = any(f.raw_verdict != f.verdict for f in rows)
    lines = [
        f"{attr.method} attribution of {attr.objective} over {attr.n_cases} case(s), "
        f"baseline={attr.baseline}, segments by {attr.segmented_by()}"
        + ("" if attr.mode == "exact" else f", APPROXIMATE ({attr.mode} mode: see the check below)"),
        f"original {attr.objective}: {attr.original_score:.3f} nats (mean over cases)",
        f"intervals: {attr.interval_text()}; verdicts corrected for {len(attr.features)} segments: "
        f"{attr.correction_text()}" if attr.has_verdicts else
        f"intervals: {attr.interval_text()}; no verdicts: {too_few_reason(attr.n_cases)}",
        "",
        f"{'rank':>4}  {'effect':>8}  {f'{pct} interval':>19}  {'verdict':<13}  "
        + (f"{'uncorrected':<13}  " if differ else "") + "segment",
    ]
    for rank, f in enumerate(rows, 1):
        said = "estimate" if f.estimated else f.verdict
        text = " ".join(shown(f.segment.text).split())
        text = f"{f.segment.name}: {text}" if f.segment.kind == "example" else text
        text = text if len(text) <= width else text[: width - 1] + "…"
        ci = f"[{f.ci_low:>+7.3f}, {f.ci_high:>+7.3f}]" if math.isfinite(f.ci_low) else f"{'none (1 case)':>19}"
        raw = f"{f.raw_verdict:<13}  " if differ else ""
        lines.append(f"{rank:>4} {'~' if f.estimated else ' '}{f.mean:>+8.3f}  {ci}  {said:<13}  {raw}{text}")
    lines += ["", "effect: change in the objective (nats) that the segment causes; negative = pushes the target down", ""]
    lines.append(heatmap(attr, color=color))
    lines.append("")
    if color:
        lines.append("colours: \x1b[48;5;33m\x1b[30m helps \x1b[0m \x1b[48;5;202m\x1b[30m hurts \x1b[0m (darker = stronger)")
    lines.append(f"cost: {attr.forward_passes} forward passes, {attr.tokens_computed} tokens, {attr.seconds:.1f} s")
    if attr.convergence_delta is not None:
        lines.append(f"integrated-gradients convergence delta: {attr.convergence_delta:.4f} nats")
    lines += [f"note: {n}" for n in attr.notes]
    return "\n".join(lines)


# --- fix -----------------------------------------------------------------------------------

def _row(name: str, before: float | None, after: float | None, pct: bool = False) -> str:
    if before is None or after is None:
        return ""
    if pct:
        return f"{name:<22}{before:>9.1%}{after:>9.1%}{after - before:>+10.1%}"
    return f"{name:<22}{before:>9.3f}{after:>9.3f}{after - before:>+10.3f}"


def _table(title: str, before: Summary, after: Summary, objective: str) -> list[str]:
    rows = [f"{title} ({before.n_cases} cases){'':<6}{'before':>9}{'after':>9}{'change':>10}",
            _row(f"{objective} (objective)", before.objective, after.objective),
            _row("mean logprob", before.logprob, after.logprob),
            _row("accuracy", before.accuracy, after.accuracy, pct=True),
            _row("mean margin", before.margin, after.margin)]
    return [r for r in rows if r]


def flip_lines(split: str, flips: Flips | None, limit: int = 10) -> list[str]:
    """The cases the fix turned from right to wrong and back, on one split: no regression is silent."""
    if flips is None:
        return []
    what = ("right label scores best" if flips.rule == "correct"
            else "free-form target: right = every target token above probability 1/2, so greedy decoding gives it")
    lines = [f"{split} flips ({what}): {len(flips.lost)} right -> wrong, {len(flips.gained)} wrong -> right"]
    for sign, names in (("-", flips.lost), ("+", flips.gained)):
        lines += [f"  {sign} {n}" for n in names[:limit]]
        if len(names) > limit:
            lines.append(f"  {sign} ... and {len(names) - limit} more (all in the JSON result)")
    return lines


def fix_report(result: FixResult, *, color: bool = False) -> str:
    """The one-sentence result, before/after tables, the flips, the verdict, then each kept edit
    as a diff with its similarity and gain."""
    red, green, off = ("\x1b[31m", "\x1b[32m", "\x1b[0m") if color else ("", "", "")
    lines = [result.headline, ""]
    lines += _table("train", result.train_before, result.train_after, result.objective)
    if result.validation_before and result.validation_after:
        lines += [""] + _table("validation", result.validation_before, result.validation_after, result.objective)
    lines.append("")
    flips = flip_lines("train", result.train_flips) + flip_lines("validation", result.validation_flips)
    if flips:
        limit = f" (limit: {result.max_regressions} on train)" if result.max_regressions is not None else ""
        lines += [f"cases that changed verdict{limit}:"] + flips + [""]
    verdict = result.verdict
    if verdict.level in ("warning", "note"):
        lines += [f"{verdict.level}: {verdict.message}", ""]
    elif verdict.kind == "no_edit":
        lines.append(verdict.message)
    for n, e in enumerate(result.edits, 1):
        seg = f", segment similarity {e.segment_similarity:.2f}" if e.segment_similarity is not None else ""
        lp = f" ({e.logprob_gain:+.3f} log-prob)" if e.logprob_gain is not None else ""
        lines.append(f"edit {n} (round {e.round + 1}, {e.kind}): similarity {e.similarity:.2f}{seg}, "
                     f"gain {e.gain:+.3f} nats on train{lp}, {describe_lower(e.gain_low, e.n_cases, e.confidence)}")
        lines.append(f"  {red}- {' '.join(shown(e.old).split())}{off}")
        lines.append(f"  {green}+ {' '.join(shown(e.new).split()) or '(deleted)'}{off}")
    lines += ["", f"fixed template (similarity {result.similarity:.2f} to the original, threshold {result.threshold}):",
              shown(result.best, inline=False), "", f"cost: {result.cost}"]
    lines += [f"note: {n}" for n in result.notes]
    lines.append(f"note: an edit is kept only if its gain on train is significant (one-sided lower bound above 0 "
                 f"at {level(DEFAULT_CONFIDENCE)}), which needs at least {MIN_CASES} train cases")
    return "\n".join(lines)
