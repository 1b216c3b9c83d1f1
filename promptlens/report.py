"""Renderers: terminal tables and heatmaps, JSON files (written atomically)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import InputError
from .stats import level, too_few_reason
from .templates import is_messages, shown
from .types import Attribution

# Blue = helps, orange = hurts: a pair that stays distinct for the common colour-vision deficiencies.
_HELP = (33, 39, 75, 111)  # xterm-256 blues, strong -> weak
_HURT = (202, 208, 214, 222)  # oranges, strong -> weak


def check_output(path: str | Path, what: str) -> None:
    """Raise ``InputError`` now, before any work, if ``path`` could not be written later."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a folder; give a file name for the {what}")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(f"{path}: {folder} is a file, not a folder; give another path for the {what}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{path}: cannot write in {folder} (permission denied); give another path for the {what}")


def write_atomic(path: str | Path, text: str) -> None:
    """Write via a temporary file in the same folder and rename: never a half-written file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        raise InputError(f"cannot write {path} ({exc.strerror or exc}); give a path in a folder you may write to") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def to_jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        out = {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        if hasattr(obj, "harmful"):
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
    out = []
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
        f"baseline={attr.baseline}, segments by {attr.segmentation}"
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
