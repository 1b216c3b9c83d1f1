"""HTML reports: one self-contained page per result, readable by someone who is not an expert.

    Attribution / FixResult / LintResult ──► summary in words ──► heatmap, diff, SVG charts ──► page

Everything is inline (CSS, a few lines of JS, charts as SVG built here), so the file opens offline
and can be mailed or attached to a CI run. Blue means "helps", orange "hurts" (a pair that stays
distinct under the common colour-vision deficiencies), and every colour comes with a text label.
"""

from __future__ import annotations

import difflib
import hashlib
import html
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from .stats import TOO_FEW, describe_lower, level as _level, too_few_reason
from .templates import MARK_RE, ROLE_OF, shown

if TYPE_CHECKING:  # annotations only: the result types' _repr_html_ calls this module
    import optuna

    from .bench import BenchResult
    from .fix import CaseScore, FixResult
    from .lint import LintResult
    from .lint_rules import Finding
    from .types import Attribution, SegmentAttribution, Summary

__all__ = ["attribution_html", "fix_html", "lint_html", "bench_html", "notebook_html", "page"]

_NEUTRAL = (247, 247, 247)
_HELP = (33, 102, 172)  # #2166ac
_HURT = (179, 88, 6)  # #b35806
_BEFORE, _AFTER = "#6b6b6b", "#2166ac"
_UP, _DOWN, _SAME = "#2166ac", "#b35806", "#8c8c8c"


# --- formatting helpers --------------------------------------------------------------------------

def _e(text: Any) -> str:
    # A message template's role marks never reach the page: shown as `[role] ` labels.
    return html.escape(shown(str(text)), quote=True)


def _pct(p: float) -> str:
    if p >= 0.995:
        return f"{p:.1%}" if p < 0.9995 else "100%"
    if p >= 0.1:
        return f"{p:.0%}"
    if p >= 0.001:
        return f"{p:.1%}"
    return "under 0.1%"


def _quote(text: str, width: int = 70) -> str:
    text = " ".join(text.split())
    return "\u2018" + (text if len(text) <= width else text[: width - 1] + "\u2026") + "\u2019"


def _nats(v: float) -> str:
    return f"{v:+.2f}".replace("-", "\u2212")


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x > -700 else 0.0


def _mix(rgb: tuple[int, int, int], t: float) -> tuple[int, int, int]:
    t = max(0.0, min(1.0, t))
    return tuple(round(n + (c - n) * t) for n, c in zip(_NEUTRAL, rgb))  # type: ignore[return-value]


def _luminance(rgb: tuple[int, int, int]) -> float:
    def lin(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.04045 else ((s + 0.055) / 1.055) ** 2.4
    r, g, b = (lin(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _colors(value: float, scale: float) -> tuple[str, str]:
    """Background and the text colour (black or white, whichever contrasts more) for an effect."""
    rgb = _mix(_HELP if value > 0 else _HURT, abs(value) / scale if scale > 0 else 0.0)
    lum = _luminance(rgb)
    text = "#111111" if (lum + 0.05) / 0.0572 >= 1.05 / (lum + 0.05) else "#ffffff"
    return "#%02x%02x%02x" % rgb, text


def _verdict(f: SegmentAttribution) -> str:
    return "hurts" if f.harmful else "helps" if f.helpful else "unclear"


def _interval(f: SegmentAttribution) -> str:
    """"95% interval -0.50 to -0.10" from the level stored on the result; one case has none."""
    if not math.isfinite(f.ci_low):
        return "no interval (one case)"
    return f"{_level(f.confidence)} interval {_nats(f.ci_low)} to {_nats(f.ci_high)}"


def _tip(f: SegmentAttribution) -> str:
    said = "no verdict (too few cases)" if f.verdict == TOO_FEW else _verdict(f)
    raw = (f"; uncorrected: {f.raw_verdict} (p {f.p_value:.2g}, adjusted {f.p_adjusted:.2g})"
           if f.raw_verdict != f.verdict else "")
    return f"{said}: {_nats(f.mean)} nats, {_interval(f)}{raw}"


def _ends(f: SegmentAttribution) -> tuple[float, float]:
    """The interval's ends for drawing: the mean itself where there is no finite interval."""
    return (f.ci_low, f.ci_high) if math.isfinite(f.ci_low) and math.isfinite(f.ci_high) else (f.mean, f.mean)


# --- SVG charts ----------------------------------------------------------------------------------

def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        lo, hi = lo - 1, hi + 1
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    return f"{v:.3g}".replace("-", "\u2212")


@dataclass
class _Scale:
    lo: float
    hi: float
    a: float  # pixel of lo
    b: float  # pixel of hi

    @classmethod
    def fit(cls, values: Iterable[float], a: float, b: float, pad: float = 0.05) -> _Scale:
        vals = list(values) or [0.0]
        lo, hi = min(vals), max(vals)
        if hi - lo < 1e-12:
            lo, hi = lo - 1, hi + 1
        span = hi - lo
        return cls(lo - pad * span, hi + pad * span, a, b)

    def __call__(self, v: float) -> float:
        return self.a + (v - self.lo) / (self.hi - self.lo) * (self.b - self.a)


def _svg(width: int, height: int, title: str, desc: str, body: str, cls: str) -> str:
    uid = f"{cls}-{hashlib.sha1((title + desc).encode(), usedforsecurity=False).hexdigest()[:8]}"
    return (f'<svg class="chart {cls}" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
            f'aria-labelledby="{uid}-t {uid}-d" xmlns="http://www.w3.org/2000/svg">'
            f'<title id="{uid}-t">{_e(title)}</title><desc id="{uid}-d">{_e(desc)}</desc>{body}</svg>')


def _y_axis(y: _Scale, x0: float, x1: float, label: str) -> str:
    out = []
    for t in _ticks(y.lo, y.hi):
        py = y(t)
        out.append(f'<line x1="{x0}" x2="{x1}" y1="{py:.1f}" y2="{py:.1f}" class="grid"/>'
                   f'<text x="{x0 - 6}" y="{py + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
    mid = (y.a + y.b) / 2
    out.append(f'<text class="axis-label" transform="translate(14 {mid:.1f}) rotate(-90)" '
               f'text-anchor="middle">{_e(label)}</text>')
    return "".join(out)


def _forest(attr: Attribution) -> str:
    """Each feature's effect with its interval, most harmful first: a dot-and-whisker chart."""
    rows = attr.ranked()
    if not rows:
        return ""
    left, right, row_h, top = 330, 760, 26, 34
    height = top + row_h * len(rows) + 48
    x = _Scale.fit([0.0] + [e for f in rows for e in _ends(f)], left, right)
    body = []
    for t in _ticks(x.lo, x.hi, 6):
        px = x(t)
        body.append(f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{top - 8}" y2="{height - 30}" class="grid"/>'
                    f'<text x="{px:.1f}" y="{height - 16}" text-anchor="middle">{_fmt(t)}</text>')
    zero = x(0.0)
    body.append(f'<line x1="{zero:.1f}" x2="{zero:.1f}" y1="{top - 8}" y2="{height - 30}" class="zero"/>')
    body.append(f'<text x="{left}" y="16" class="axis-label">\u25c0 hurts</text>'
                f'<text x="{right}" y="16" class="axis-label" text-anchor="end">helps \u25b6</text>')
    for i, f in enumerate(rows):
        cy = top + row_h * i + row_h / 2
        color = {"helps": _UP, "hurts": _DOWN, "unclear": _SAME}[_verdict(f)]
        label = _e(_quote(f.segment.text, 44))
        px = x(f.mean)
        marker = {  # shape as well as colour: square helps, circle hurts, hollow diamond unclear
            "helps": f'<rect x="{px - 5:.1f}" y="{cy - 5:.1f}" width="10" height="10" fill="{color}"/>',
            "hurts": f'<circle cx="{px:.1f}" cy="{cy:.1f}" r="5.5" fill="{color}"/>',
            "unclear": f'<path d="M{px:.1f},{cy - 6:.1f}l6,6l-6,6l-6,-6z" fill="#fff" stroke="{color}" '
                       f'stroke-width="2"/>',
        }[_verdict(f)]
        body.append(
            f'<g><title>{_e(_tip(f))}</title>'
            f'<text x="{left - 10}" y="{cy + 4:.1f}" text-anchor="end">{label}</text>'
            f'<line x1="{x(_ends(f)[0]):.1f}" x2="{x(_ends(f)[1]):.1f}" y1="{cy:.1f}" y2="{cy:.1f}" '
            f'stroke="{color}" stroke-width="2"/>{marker}</g>')
    body.append(f'<text x="{(left + right) / 2}" y="{height - 1}" text-anchor="middle" class="axis-label">'
                f'effect on the {_e(attr.objective)} (nats)</text>')
    desc = "; ".join(f"{_quote(f.segment.text, 40)} {_nats(f.mean)} [{_nats(f.ci_low)}, {_nats(f.ci_high)}]"
                     for f in rows)
    return _svg(780, height, f"Effect of each segment with its {attr.interval_text()}", desc, "".join(body), "forest")


def _history(studies: Sequence[optuna.Study]) -> str:
    """Objective per completed trial (dots) and the running best (a step line), rounds one after another."""
    import optuna

    points: list[tuple[int, float]] = []
    bounds: list[int] = []
    n = 0
    for study in studies:
        if n:
            bounds.append(n)
        for t in study.trials:
            if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None:
                points.append((n + t.number, float(t.value)))
        n += len(study.trials)
    if not points:
        return ""
    left, right, top, bottom = 70, 760, 16, 250
    x = _Scale(-0.5, max(n - 0.5, 0.5), left, right)
    y = _Scale.fit([v for _, v in points], bottom, top)
    body = [_y_axis(y, left, right, "train objective (nats)")]
    for t in _ticks(0, max(n - 1, 1), 8):
        if float(t).is_integer():
            body.append(f'<text x="{x(t):.1f}" y="{bottom + 18}" text-anchor="middle">{int(t)}</text>')
    for b in bounds:
        bx = x(b - 0.5)
        body.append(f'<line x1="{bx:.1f}" x2="{bx:.1f}" y1="{top}" y2="{bottom}" class="zero"/>'
                    f'<text x="{bx + 4:.1f}" y="{top + 12}">next round</text>')
    best, path = -math.inf, []
    for k, v in points:
        if v > best:
            if path:
                path.append(f"H{x(k):.1f}")
            best = v
            path.append(f"{'L' if path else 'M'}{x(k):.1f},{y(best):.1f}")
    path.append(f"H{x(n - 0.5):.1f}")
    body.append(f'<path d="{"".join(path)}" fill="none" stroke="{_DOWN}" stroke-width="2.5"/>')
    for k, v in points:
        body.append(f'<circle cx="{x(k):.1f}" cy="{y(v):.1f}" r="4" fill="{_AFTER}" fill-opacity="0.75">'
                    f'<title>trial {k}: {_fmt(v)} nats</title></circle>')
    body.append(f'<text x="{(left + right) / 2}" y="{bottom + 36}" text-anchor="middle" class="axis-label">'
                f'trial (0 = the original template)</text>')
    body.append(f'<g class="key"><circle cx="{left + 10}" cy="{bottom + 52}" r="4" fill="{_AFTER}"/>'
                f'<text x="{left + 20}" y="{bottom + 56}">a trial\u2019s score</text>'
                f'<line x1="{left + 150}" x2="{left + 175}" y1="{bottom + 52}" y2="{bottom + 52}" stroke="{_DOWN}" '
                f'stroke-width="2.5"/><text x="{left + 182}" y="{bottom + 56}">best so far</text></g>')
    desc = (f"{len(points)} completed trials of {n}; the first scored {_fmt(points[0][1])} nats, "
            f"the best {_fmt(max(v for _, v in points))} nats")
    return _svg(780, bottom + 64, "Optimization history", desc, "".join(body), "history")


def _importance(studies: Sequence[optuna.Study]) -> tuple[str, str]:
    """Horizontal bars from ``optuna.importance.get_param_importances`` per round; (svg, why-not)."""
    import json

    import optuna

    rows: list[tuple[str, float]] = []
    why = ""
    for r, study in enumerate(studies):
        labels = {}
        for s in json.loads(study.user_attrs.get("slots", "[]")):
            first = s["rewrites"][0]["text"] if s["rewrites"] else ""
            labels[f"s{s['segment_index']}"] = _quote(first, 40)
        try:
            with warnings.catch_warnings():  # "importances will be equal" on few trials: the bars show it
                warnings.simplefilter("ignore")
                imp = optuna.importance.get_param_importances(study)
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:  # too few or too uniform trials
            why = f"round {r + 1}: {exc}"
            continue
        except ImportError as exc:  # fANOVA needs scikit-learn (declared, but an install can lack it)
            return "", f"parameter importance needs scikit-learn ({exc.name or exc}); pip install scikit-learn"
        prefix = f"round {r + 1}: " if len(studies) > 1 else ""
        rows += [(prefix + labels.get(k, k), float(v)) for k, v in imp.items()]
    if not rows:
        return "", why or "no round had enough completed trials"
    left, right, row_h, top = 330, 720, 26, 8
    height = top + row_h * len(rows) + 34
    x = _Scale(0.0, max(v for _, v in rows) or 1.0, left, right)
    body = []
    for i, (label, v) in enumerate(rows):
        cy = top + row_h * i
        body.append(f'<text x="{left - 10}" y="{cy + 17}" text-anchor="end">{_e(label)}</text>'
                    f'<rect x="{left}" y="{cy + 4}" width="{max(1.0, x(v) - left):.1f}" height="{row_h - 8}" '
                    f'fill="{_AFTER}"><title>{_e(label)}: {v:.2f}</title></rect>'
                    f'<text x="{x(v) + 6:.1f}" y="{cy + 17}">{v:.2f}</text>')
    body.append(f'<text x="{(left + right) / 2}" y="{height - 8}" text-anchor="middle" class="axis-label">'
                f'importance (Optuna\u2019s default evaluator; the bars sum to 1)</text>')
    desc = "; ".join(f"{label} {v:.2f}" for label, v in rows)
    return _svg(780, height, "Which edited segments mattered most", desc, "".join(body), "importance"), ""


def _slopes(scores: Sequence[CaseScore], objective: str) -> str:
    """Per case: the score before (left) and after (right), joined by a line; one panel per split."""
    splits = [s for s in ("train", "validation") if any(c.split == s for c in scores)]
    if not splits:
        return ""
    width, top, bottom, panel = 780, 30, 270, 340
    y = _Scale.fit([v for c in scores for v in (c.before, c.after)], bottom, top)
    body = [_y_axis(y, 70, 70 + panel * len(splits) - 40, f"{objective} (nats)")]
    for p, split in enumerate(splits):
        x0 = 120 + panel * p
        x1 = x0 + panel - 150
        rows = [c for c in scores if c.split == split]
        up = sum(c.after > c.before + 1e-9 for c in rows)
        down = sum(c.after < c.before - 1e-9 for c in rows)
        body.append(f'<text x="{(x0 + x1) / 2}" y="{top - 12}" text-anchor="middle" class="axis-label">'
                    f'{split} ({len(rows)} cases: {up} up, {down} down)</text>'
                    f'<text x="{x0}" y="{bottom + 20}" text-anchor="middle">before</text>'
                    f'<text x="{x1}" y="{bottom + 20}" text-anchor="middle">after</text>')
        groups: dict[tuple[float, float], list[CaseScore]] = {}
        for c in rows:
            groups.setdefault((round(c.before, 6), round(c.after, 6)), []).append(c)
        for same in groups.values():
            c, k = same[0], len(same)
            color, dash = ((_UP, "") if c.after > c.before + 1e-9 else
                           (_DOWN, ' stroke-dasharray="5 3"') if c.after < c.before - 1e-9 else (_SAME, ""))
            ids = ", ".join(s.id for s in same[:8]) + (", \u2026" if k > 8 else "")
            count = f'<text x="{x1 + 9}" y="{y(c.after) + 4:.1f}">\u00d7{k}</text>' if k > 1 else ""
            body.append(f'<g><title>{_e(ids)}: {_fmt(c.before)} \u2192 {_fmt(c.after)} nats</title>{count}'
                        f'<line x1="{x0}" x2="{x1}" y1="{y(c.before):.1f}" y2="{y(c.after):.1f}" stroke="{color}" '
                        f'stroke-width="{min(6.0, 1.8 + 0.6 * (k - 1)):.1f}"{dash}/>'
                        f'<circle cx="{x0}" cy="{y(c.before):.1f}" r="4" fill="{_BEFORE}"/>'
                        f'<circle cx="{x1}" cy="{y(c.after):.1f}" r="4" fill="{color}"/></g>')
    body.append(f'<g class="key"><line x1="80" x2="105" y1="{bottom + 42}" y2="{bottom + 42}" stroke="{_UP}" '
                f'stroke-width="2"/><text x="110" y="{bottom + 46}">went up</text>'
                f'<line x1="190" x2="215" y1="{bottom + 42}" y2="{bottom + 42}" stroke="{_DOWN}" stroke-width="2" '
                f'stroke-dasharray="5 3"/><text x="220" y="{bottom + 46}">went down (dashed)</text>'
                f'<line x1="370" x2="395" y1="{bottom + 42}" y2="{bottom + 42}" stroke="{_SAME}" stroke-width="2"/>'
                f'<text x="400" y="{bottom + 46}">unchanged</text>'
                f'<text x="500" y="{bottom + 46}">\u00d7n: n cases with the same scores</text></g>')
    desc = "; ".join(f"{c.split} {c.id}: {_fmt(c.before)} to {_fmt(c.after)}" for c in scores[:60])
    return _svg(width, bottom + 56, "Each case's score before and after the fix", desc, "".join(body), "slopes")


# --- page pieces ---------------------------------------------------------------------------------

def _heatmap(attr: Attribution) -> str:
    """The prompt with each feature segment shaded by its effect, a text badge and a tooltip."""
    by_index = {f.index: f for f in attr.features}
    scale = max((abs(f.mean) for f in attr.features), default=0.0)
    out = []
    for i, seg in enumerate(attr.segments):
        f = by_index.get(i)
        if seg.kind == "role":  # a message template: each message starts with its role
            out.append(f'{"" if i == 0 else chr(10)}<span class="role">{_e(seg.name)}</span>\n')
            continue
        if f is None or not seg.text.strip():
            cls = "field" if seg.kind == "field" else "fixed"
            out.append(f'<span class="{cls}">{_e(seg.text)}</span>' if seg.text.strip() else _e(seg.text))
            continue
        body = seg.text.rstrip()
        tail = seg.text[len(body):]
        lead = body[: len(body) - len(body.lstrip())]
        verdict = _verdict(f)
        # An effect whose interval includes zero is drawn paler: its sign is not established.
        bg, fg = _colors(f.mean if verdict != "unclear" else f.mean / 2, scale)
        sign = {"hurts": "\u25bc", "helps": "\u25b2", "unclear": "\u25cb"}[verdict]
        tip = f"{'estimated (approximate mode), ' if f.estimated else ''}{_tip(f)}"
        out.append(f'{_e(lead)}<mark class="seg {verdict}" style="background:{bg};color:{fg}" tabindex="0" '
                   f'data-tip="{_e(tip)}" aria-label="{_e(body.strip())} \u2014 {_e(tip)}">{_with_roles(body.lstrip())}'
                   f'<span class="badge" aria-hidden="true">{sign}\u00a0{_nats(f.mean)}</span></mark>{_e(tail)}')
    return f'<pre class="heatmap" id="heatmap">{"".join(out)}</pre>'


def _with_roles(text: str) -> str:
    """Escaped text in which each role mark of a message template is a role heading."""
    parts = MARK_RE.split(text)
    roles = [ROLE_OF[m] for m in MARK_RE.findall(text)]
    out = [html.escape(parts[0])]
    for k, (role, piece) in enumerate(zip(roles, parts[1:])):
        lead = "\n" if k or parts[0] else ""
        out.append(f'{lead}<span class="role">{html.escape(role)}</span>\n{html.escape(piece)}')
    return "".join(out)


def _legend(scale: float, attr: Attribution) -> str:
    stops = []
    for v in (-1.0, -0.5, -0.15, 0.15, 0.5, 1.0):
        bg, fg = _colors(v * scale, scale)
        stops.append(f'<span class="swatch" style="background:{bg};color:{fg}">{_nats(v * scale)}</span>')
    return (f'<p class="legend" id="legend"><span>\u25bc hurts</span> {"".join(stops)} <span>helps \u25b2</span>'
            f' <span class="muted">\u25bc hurts and \u25b2 helps: the {_e(attr.interval_text())} excludes zero '
            f'(corrected for the number of segments: {_e(attr.correction_text())}). \u25cb unclear: '
            f'it includes zero; such segments are drawn at half strength with a dotted underline. Numbers: '
            f'change in the score, in nats, that the segment causes. Hover or focus a segment for its interval.'
            f'</span></p>')


def _unit(attr: Attribution, plural: bool = False) -> str:
    unit = {"span": "marked span", "token": "token"}.get(attr.segmentation, attr.segmentation)
    return unit + ("s" if plural else "")


def _attribution_summary(attr: Attribution) -> list[str]:
    n_feat = len(attr.features)
    harmful = [f for f in attr.ranked() if f.harmful]
    helpful = sorted((f for f in attr.features if f.helpful), key=lambda f: -f.mean)
    cases = f"{attr.n_cases} case{'s' if attr.n_cases != 1 else ''}"
    if attr.objective == "logprob":
        now = (f"With the prompt as written, the model gives the right answer a probability of "
               f"{_pct(math.exp(attr.original_score))} (geometric mean over {cases}).")

        def without(f: SegmentAttribution) -> str:
            return (f"without it the probability of the right answer would be about "
                    f"{_pct(math.exp(attr.original_score - f.mean))} instead of {_pct(math.exp(attr.original_score))}")
    else:
        lead = "beats" if attr.original_score >= 0 else "trails"
        now = (f"With the prompt as written, the right answer {lead} the strongest wrong answer by "
               f"{abs(attr.original_score):.2f} nats on average over {cases}: it gets "
               f"{_pct(_sigmoid(attr.original_score))} of the probability the two share.")

        def without(f: SegmentAttribution) -> str:
            return (f"without it the right answer\u2019s share against the strongest wrong one would be about "
                    f"{_pct(_sigmoid(attr.original_score - f.mean))} instead of {_pct(_sigmoid(attr.original_score))}")
    out = [now]
    if attr.approximation is not None:
        out.append(f"These numbers are approximate ({_e(attr.approximation.mode)} mode): "
                   f"{_e(attr.approximation.summary())}.")
    if not attr.has_verdicts and attr.features:
        f = attr.ranked()[0]
        out.append(f"The most negative {_unit(attr)} is {_e(_quote(f.segment.text))} ({_nats(f.mean)} nats), but "
                   f"{_e(too_few_reason(attr.n_cases))}.")
        return out
    if harmful:
        f = harmful[0]
        out.append(f"The {_unit(attr)} that hurts most is {_e(_quote(f.segment.text))}: {without(f)}.")
    elif attr.features:
        f = attr.ranked()[0]
        out.append(f"No {_unit(attr)} clearly hurts. The most negative one, {_e(_quote(f.segment.text))}, "
                   f"has an interval that includes zero.")
    if helpful:
        out.append(f"The {_unit(attr)} that helps most is {_e(_quote(helpful[0].segment.text))} "
                   f"({_nats(helpful[0].mean)} nats).")
    out.append(f"Of {n_feat} {_unit(attr, n_feat != 1)}, {len(harmful)} clearly hurt, {len(helpful)} clearly help "
               f"and {n_feat - len(harmful) - len(helpful)} are unclear ({_e(attr.interval_text())}, "
               f"corrected for {n_feat} {_unit(attr, n_feat != 1)}: {_e(attr.correction_text())}).")
    changed = [f for f in attr.ranked() if f.raw_verdict != f.verdict]
    if changed:
        out.append("Without the correction, " + "; ".join(
            f"{_e(_quote(f.segment.text, 40))} would be {_e(f.raw_verdict)}" for f in changed) + ".")
    return out


def _attribution_section(attr: Attribution, heading: str, level: int = 2) -> str:
    scale = max((abs(f.mean) for f in attr.features), default=0.0)
    forest = _forest(attr)
    rows = "".join(
        f'<tr><td>{rank}</td><td>{"estimated" if f.estimated else _e(_verdict(f))}</td>'
        f'<td class="num">{"~" if f.estimated else ""}{_nats(f.mean)}</td>'
        f'<td class="num">{_e(_interval(f).split(" interval ")[-1])}</td><td>{_e(f.raw_verdict)}</td>'
        f'<td>{_e(_quote(f.segment.text, 90))}</td></tr>'
        for rank, f in enumerate(attr.ranked(), 1))
    h = f"h{level}"
    return (f'<section aria-labelledby="{heading.split()[0].lower()}-h"><{h} id="{heading.split()[0].lower()}-h">'
            f'{_e(heading)}</{h}>'
            f'{_legend(scale, attr)}{_heatmap(attr)}'
            f'<figure>{forest}<figcaption>Each {_e(_unit(attr))}\u2019s effect and its {_e(attr.interval_text())} (line): '
            f'orange circle = hurts, blue square = helps, hollow grey diamond = unclear. Left of zero: the '
            f'{_e(_unit(attr))} pushes the right answer down.</figcaption></figure>'
            f'<details><summary>Table of effects</summary><table><thead><tr><th>rank</th><th>verdict</th>'
            f'<th>effect (nats)</th><th>{_e(_level(attr.confidence))} interval</th><th>uncorrected</th>'
            f'<th>{_e(_unit(attr))}</th></tr></thead>'
            f'<tbody>{rows}</tbody></table></details></section>')


def _method_note(attr: Attribution) -> str:
    extra = (f", integrated-gradients convergence delta {attr.convergence_delta:.4f} nats"
             if attr.convergence_delta is not None else "")
    notes = "".join(f"<li>{_e(n)}</li>" for n in attr.notes)
    return (f'<p class="muted">Method: {_e(attr.method)}, mode {_e(attr.mode)}, baseline {_e(attr.baseline)}, objective '
            f'{_e(attr.objective)}, segments by {_e(attr.segmentation)}; cost {attr.forward_passes} forward passes, '
            f'{attr.tokens_computed} tokens, {attr.seconds:.1f} s{extra}.</p>' + (f"<ul>{notes}</ul>" if notes else ""))


_CSS = """
:root { color-scheme: light; --fg:#1a1a1a; --muted:#4d4d4d; --line:#c8c8c8; --help:#2166ac; --hurt:#b35806; }
* { box-sizing: border-box; }
body { font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--fg); background: #fff; margin: 0 auto; max-width: 62rem; padding: 1.5rem; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; } h2 { font-size: 1.25rem; margin-top: 2rem;
     border-bottom: 1px solid var(--line); padding-bottom: .2rem; } h3 { font-size: 1.05rem; }
.muted { color: var(--muted); font-size: .9rem; }
.summary { background: #eef4fa; border-left: 5px solid var(--help); padding: .75rem 1rem; border-radius: 4px; }
.summary.warn { background: #fdf1e6; border-left-color: var(--hurt); }
.summary h2 { border: 0; margin: 0 0 .3rem; font-size: 1rem; }
.summary p { margin: .35rem 0; } .summary p:first-child { font-size: 1.1rem; font-weight: 600; }
pre { font: 14.5px/1.9 ui-monospace, "Cascadia Mono", "DejaVu Sans Mono", Menlo, Consolas, monospace;
      white-space: pre-wrap; word-wrap: break-word; border: 1px solid var(--line); border-radius: 4px;
      padding: .75rem; background: #fcfcfc; }
mark.seg { position: relative; padding: .1rem .15rem; border-radius: 3px; cursor: help; }
mark.seg.hurts { border-bottom: 3px solid var(--hurt); } mark.seg.helps { border-bottom: 3px double var(--help); }
mark.seg.unclear { border-bottom: 2px dotted #777; }
.badge { font-size: .72em; font-weight: 700; margin-left: .35em; padding: 0 .25em; border-radius: 3px;
         background: rgba(255,255,255,.85); color: #111; vertical-align: .1em; }
mark.seg:hover::after, mark.seg:focus::after { content: attr(data-tip); position: absolute; left: 0; top: 100%;
  z-index: 2; margin-top: 4px; white-space: nowrap; background: #111; color: #fff; font-size: 13px; line-height: 1.4;
  padding: .25rem .5rem; border-radius: 4px; }
mark.seg:focus { outline: 3px solid #111; outline-offset: 1px; }
.field { font-style: italic; color: #5b2a86; } .fixed { color: var(--muted); }
.role { display: inline-block; font-weight: bold; font-size: 0.8em; text-transform: uppercase; letter-spacing: 0.05em; color: var(--muted); border-bottom: 1px solid var(--muted); margin-top: 0.4em; }
.legend { display: flex; flex-wrap: wrap; gap: .3rem; align-items: center; }
.swatch { display: inline-block; min-width: 3.2rem; text-align: center; font-size: .8rem; padding: .1rem .3rem;
          border-radius: 3px; border: 1px solid var(--line); }
figure { margin: 1rem 0; } figcaption { color: var(--muted); font-size: .9rem; }
svg.chart { max-width: 100%; height: auto; font: 12px system-ui, sans-serif; fill: #1a1a1a; }
svg .grid { stroke: #e3e3e3; } svg .zero { stroke: #555; stroke-dasharray: 3 3; }
svg .axis-label { font-weight: 600; }
table { border-collapse: collapse; width: 100%; font-size: .92rem; margin: .5rem 0; }
th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
del { background: #fbe3d0; color: #6b2f00; text-decoration: line-through 2px; }
ins { background: #d6e6f5; color: #0b3463; text-decoration: underline 2px; }
.edit { border: 1px solid var(--line); border-radius: 4px; padding: .5rem .75rem; margin: .6rem 0; }
.edit p { margin: .2rem 0; }
.finding { border-left: 5px solid var(--line); padding: .35rem .75rem; margin: .5rem 0; background: #fafafa; }
.finding.error, mark.error { border-color: #a50026; } .finding.warning, mark.warning { border-color: var(--hurt); }
.finding.note, mark.note { border-color: var(--help); }
mark.error { background: #f7d4d6; } mark.warning { background: #fde4c8; } mark.note { background: #d9e8f5; }
mark.span { color: inherit; border-bottom: 3px solid; }
mark.span.error { border-bottom-color: #a50026; } mark.span.warning { border-bottom-color: var(--hurt); }
mark.span.note { border-bottom-color: var(--help); }
.rule { font-size: .75em; font-weight: 700; margin-left: .6em; padding: 0 .3em; border: 1px solid; border-radius: 3px; }
.rule.error { color: #a50026; } .rule.warning { color: #8a4204; } .rule.note { color: var(--help); }
.sev { font-weight: 700; text-transform: uppercase; font-size: .8rem; letter-spacing: .03em; }
.lineno { color: #6b6b6b; user-select: none; display: inline-block; width: 3ch; text-align: right; margin-right: 1ch; }
button { font: inherit; padding: .25rem .75rem; border: 1px solid #555; border-radius: 4px; background: #fff;
         cursor: pointer; } button:focus { outline: 3px solid #111; }
#js-errors:empty { display: none; } #js-errors { color: #a50026; }
@media print {
  body { max-width: none; padding: 0; font-size: 11pt; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  button, mark.seg::after, #js-errors { display: none !important; }
  details { display: block; } details > * { display: block; }
  section, figure, .edit, .finding, pre { break-inside: avoid; }
  h2 { break-after: avoid; }
  a::after { content: " (" attr(href) ")"; }
}
"""

_HEAD_JS = """window.__errors = [];
window.onerror = function (msg, src, line) {
  window.__errors.push(msg + " (line " + line + ")");
  var el = document.getElementById("js-errors");
  if (el) { el.textContent = window.__errors.join("\\n"); }
};"""

_TAIL_JS = """(function () {
  var el = document.getElementById("js-errors");
  if (el && window.__errors.length) { el.textContent = window.__errors.join("\\n"); }
  document.querySelectorAll("button[data-copy]").forEach(function (b) {
    b.addEventListener("click", function () {
      var text = document.getElementById(b.getAttribute("data-copy")).textContent;
      if (navigator.clipboard) { navigator.clipboard.writeText(text); }
      b.textContent = "Copied";
    });
  });
  document.body.setAttribute("data-ready", "yes");
})();"""


def page(title: str, body: str, *, subtitle: str = "") -> str:
    """The page shell: metadata, the inline stylesheet, the error trap and the closing script."""
    sub = f'<p class="muted">{_e(subtitle)}</p>' if subtitle else ""
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f'<meta name="generator" content="promptlens">\n<title>{_e(title)}</title>\n'
            f'<style>{_CSS}</style>\n<script>{_HEAD_JS}</script>\n</head>\n<body>\n'
            f'<header><h1>{_e(title)}</h1>{sub}</header>\n<main>\n{body}\n</main>\n'
            f'<pre id="js-errors" role="alert"></pre>\n<script>{_TAIL_JS}</script>\n</body>\n</html>\n')


def _summary(paragraphs: Sequence[str], warn: bool = False) -> str:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return (f'<section id="summary" class="summary{" warn" if warn else ""}" aria-labelledby="summary-h">'
            f'<h2 id="summary-h">In short</h2>{body}</section>')


# --- attribution ---------------------------------------------------------------------------------

def attribution_html(attr: Attribution, *, title: str = "Which parts of the prompt help or hurt") -> str:
    body = (_summary(_attribution_summary(attr))
            + _attribution_section(attr, "Heatmap of the prompt")
            + _method_note(attr))
    return page(title, body, subtitle=f"promptlens attribute \u2014 {attr.method} over {attr.n_cases} case(s)"
                                    + ("" if attr.mode == "exact" else f", approximate: {attr.mode} mode"))


# --- fix -----------------------------------------------------------------------------------------

def _describe_edits(result: FixResult) -> str:
    unit = _unit(result.attribution_before)
    phrases = []
    for e in result.edits:
        if not e.new.strip():
            phrases.append(f"removing the {unit} {_e(_quote(e.old, 60))}")
        elif not e.old.strip():
            phrases.append(f"adding {_e(_quote(e.new, 60))}")
        else:
            phrases.append(f"rewriting {_e(_quote(e.old, 50))} as {_e(_quote(e.new, 50))}")
    if len(phrases) > 3:
        return f"{len(phrases)} edits (" + "; ".join(phrases[:3]) + "; \u2026)"
    text = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    return text[0].upper() + text[1:]


def _change(what: str, before: float, after: float) -> str:
    verb = "raised" if after > before + 5e-4 else "lowered" if after < before - 5e-4 else "left unchanged"
    if verb == "left unchanged" and before > 0 and after > 0 and abs(math.log(after / before)) > 0.1:
        # Both tiny: a percentage hides a many-fold change, so say it as a factor.
        factor = after / before
        verb = "raised" if factor > 1 else "lowered"
        return f"{verb} {what} {max(factor, 1 / factor):.1f}-fold (still {_pct(after)})"
    if verb == "left unchanged":
        return f"left {what} unchanged at {_pct(before)}"
    return f"{verb} {what} from {_pct(before)} to {_pct(after)}"


def _flips(result: FixResult) -> str:
    """Per split, the cases turned from right to wrong and back: no silent regressions."""
    blocks = []
    for split, flips in (("validation", result.validation_flips), ("train", result.train_flips)):
        if flips is None:
            continue
        items = "".join(f'<li class="lost">right \u2192 wrong: {_e(n)}</li>' for n in flips.lost)
        items += "".join(f'<li class="gained">wrong \u2192 right: {_e(n)}</li>' for n in flips.gained)
        blocks.append(f'<h3>{_e(split)}: {len(flips.lost)} right \u2192 wrong, {len(flips.gained)} wrong \u2192 right</h3>'
                      + (f'<ul class="flips">{items}</ul>' if items else '<p class="muted">No case changed.</p>'))
    if not blocks:
        return ""
    rule = ("right = the right label scores best" if (result.train_flips and result.train_flips.rule == "correct")
            else "free-form targets: right = every target token has probability above 1/2, so greedy decoding gives the target")
    limit = (f" The search allowed at most {result.max_regressions} train case(s) to turn wrong."
             if result.max_regressions is not None else "")
    return (f'<section id="flips" aria-labelledby="flips-h"><h2 id="flips-h">Cases that changed verdict</h2>'
            f'<p class="muted">{_e(rule)}.{_e(limit)}</p>{"".join(blocks)}</section>')


def _fix_summary(result: FixResult) -> tuple[list[str], bool]:
    """The headline (the same sentence the terminal report leads with), what the edits did, and
    ``result.verdict``, rendered."""
    verdict = result.verdict
    sentence = verdict.message[0].upper() + verdict.message[1:] + "."
    if verdict.kind == "no_edit":
        return ([_e(result.headline), _e(sentence), f"The search tried {result.trials} variant(s) that stayed at "
                 f"least {result.threshold:.0%} similar in meaning to the original."], True)
    v0, v1 = result.validation_before, result.validation_after
    before, after, where = (v0, v1, "validation") if v0 and v1 else (result.train_before, result.train_after, "train")
    cases = f"{before.n_cases} {where} case{'s' if before.n_cases != 1 else ''}"
    p0, p1 = math.exp(before.logprob), math.exp(after.logprob)
    lead = f"{_describe_edits(result)} {_change('the probability of the right answer', p0, p1)}"
    if before.accuracy is not None and after.accuracy is not None:
        lead += f" and {_change('accuracy', before.accuracy, after.accuracy)}"
    prefix = f"{verdict.level.capitalize()}: " if verdict.level in ("warning", "note") else ""
    return [_e(result.headline), lead + f" on {cases}.", _e(prefix + sentence)], verdict.warn


def _word_diff(a: str, b: str) -> str:
    """Word-level diff of two texts: deletions struck through, insertions highlighted."""
    ta, tb = re.findall(r"\s+|[^\s]+", a), re.findall(r"\s+|[^\s]+", b)
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=ta, b=tb, autojunk=False).get_opcodes():
        old, new = "".join(ta[i1:i2]), "".join(tb[j1:j2])
        if op == "equal":
            out.append(_e(old))
            continue
        if old:
            out.append(f'<del aria-label="deleted">{_e(old)}</del>')
        if new:
            out.append(f'<ins aria-label="inserted">{_e(new)}</ins>')
    return "".join(out)


def _summary_table(result: FixResult) -> str:
    def rows(name: str, b: Summary | None, a: Summary | None) -> str:
        if b is None or a is None:
            return ""
        cells = [("probability of the right answer", _pct(math.exp(b.logprob)), _pct(math.exp(a.logprob))),
                 (f"{result.objective} (nats, the objective)", f"{b.objective:.3f}", f"{a.objective:.3f}")]
        if b.accuracy is not None and a.accuracy is not None:
            cells.insert(1, ("accuracy", _pct(b.accuracy), _pct(a.accuracy)))
        head = f'<th scope="rowgroup" rowspan="{len(cells)}">{_e(name)} ({b.n_cases} cases)</th>'
        return "".join(f'<tr>{head if i == 0 else ""}<td>{_e(label)}</td><td class="num">{x}</td>'
                       f'<td class="num">{y}</td></tr>' for i, (label, x, y) in enumerate(cells))
    return ('<table id="scores"><thead><tr><th>cases</th><th>measure</th><th class="num">before</th>'
            '<th class="num">after</th></tr></thead>'
            f'<tbody>{rows("validation", result.validation_before, result.validation_after)}'
            f'{rows("train", result.train_before, result.train_after)}</tbody></table>')


def _edits(result: FixResult) -> str:
    if not result.edits:
        return "<p>No edit was kept.</p>"
    out = []
    for n, e in enumerate(result.edits, 1):
        seg = f", this segment alone {e.segment_similarity:.2f}" if e.segment_similarity is not None else ""
        out.append(f'<div class="edit"><h3>Edit {n} <span class="muted">(round {e.round + 1}, {_e(e.kind)})</span>'
                   f'</h3><p>{_word_diff(e.old, e.new)}</p>'
                   f'<p class="muted">similarity to the original prompt {e.similarity:.2f}{seg}; '
                   f'gain {_nats(e.gain)} nats on train (lost if this edit alone were undone; '
                   f'{_e(describe_lower(e.gain_low, e.n_cases, e.confidence))})</p></div>')
    return "".join(out)


def _load_studies(result: FixResult) -> tuple[list[optuna.Study], str]:
    if not result.storage:
        return [], "the study was kept in memory; run with an output folder or --storage to chart it"
    try:
        studies = result.studies()
    except Exception as exc:  # noqa: BLE001 - any storage failure only costs the charts, and says so
        return [], f"cannot open the study storage {result.storage} ({type(exc).__name__}: {exc})"
    return studies, "" if studies else f"no study named {result.study_name} in {result.storage}"


def fix_html(result: FixResult, *, cases: Sequence[CaseScore] | None = None,
             studies: Sequence[optuna.Study] | None = None, title: str = "Prompt repair report") -> str:
    """The fix report. ``cases``: per-case scores for the slope chart (default:
    ``result.case_scores()``); ``studies``: the Optuna studies, one per round (default: loaded
    from ``result.storage``). Renders only: the verdict and the cost line come from ``result``."""
    paragraphs, warn = _fix_summary(result)
    cases = result.case_scores() if cases is None else cases
    why = ""
    if studies is None:
        studies, why = _load_studies(result)
    history = _history(studies) if studies else ""
    importance, why_imp = _importance(studies) if studies else ("", why)
    parts = [_summary(paragraphs, warn=warn), '<section aria-labelledby="scores-h"><h2 id="scores-h">Before and after'
             f'</h2>{_summary_table(result)}</section>']
    if flips := _flips(result):
        parts.append(flips)
    parts.append('<section aria-labelledby="diff-h"><h2 id="diff-h">What changed</h2>'
                 '<p class="muted"><del>struck through</del> = removed, <ins>underlined</ins> = added.</p>'
                 f'<pre id="diff">{_word_diff(result.original, result.best)}</pre>{_edits(result)}'
                 '<h3>The fixed prompt</h3>'
                 '<p><button type="button" data-copy="fixed">Copy the fixed prompt</button></p>'
                 f'<pre id="fixed">{_e(shown(result.best, inline=False))}</pre></section>')
    charts = []
    if history:
        charts.append(f"<figure>{history}<figcaption>Every trial\u2019s score on the train cases and the best found so "
                      f"far. Trial 0 is always the original prompt, so the result is never worse on train. "
                      f"Trials stopped early ({result.pruned} pruned, {result.infeasible} infeasible: under the "
                      f"similarity threshold or the log-prob rule) have no score and are not drawn."
                      "</figcaption></figure>")
    else:
        charts.append(f'<p class="muted">No optimization history: {_e(why or "no trial completed")}.</p>')
    if importance:
        charts.append(f"<figure>{importance}<figcaption>How much of the variation in score each edited segment "
                      "explains (Optuna\u2019s parameter importance).</figcaption></figure>")
    else:
        charts.append(f'<p class="muted">No parameter importance: {_e(why_imp)}.</p>')
    if cases:
        charts.append(f"<figure>{_slopes(cases, result.objective)}<figcaption>Each case\u2019s {_e(result.objective)} "
                      "with the original prompt (left) and the fixed one (right).</figcaption></figure>")
    parts.append(f'<section id="charts" aria-labelledby="charts-h"><h2 id="charts-h">The search</h2>{"".join(charts)}'
                 '</section>')
    parts.append(_attribution_section(result.attribution_before, "Before: which parts helped or hurt"))
    if result.improved:
        parts.append(_attribution_section(result.attribution_after, "After: the fixed prompt"))
    notes = "".join(f"<li>{_e(n)}</li>" for n in result.notes)
    parts.append(f'<p class="muted">Cost: {_e(result.cost)}.</p>' + (f"<ul>{notes}</ul>" if notes else ""))
    return page(title, "\n".join(parts), subtitle="promptlens fix")


# --- lint ----------------------------------------------------------------------------------------

def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


_SEV_MARK = {"error": "\u2716", "warning": "\u25b2", "note": "\u25cf"}


def _highlight(text: str, findings: Sequence[Finding]) -> str:
    """The template with line numbers; each character takes the most severe finding covering it."""
    from .lint_rules import SEVERITIES

    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    out = []
    for ln, line in enumerate(lines, 1):
        marks: list[Finding | None] = [None] * max(len(line), 1)
        for f in sorted(findings, key=lambda f: -SEVERITIES.index(f.severity)):  # most severe last, so it wins
            if f.start_line <= ln <= f.end_line:
                a = f.start_col - 1 if ln == f.start_line else 0
                b = f.end_col - 1 if ln == f.end_line else len(line)
                for k in range(max(0, a), min(len(marks), max(b, a + 1))):
                    marks[k] = f
        cells, k = [], 0
        while k < len(line):
            j = k
            while j < len(line) and marks[j] is marks[k]:
                j += 1
            f = marks[k]
            chunk = _e(line[k:j])
            cells.append(f'<mark class="span {f.severity}" title="{_e(f.severity)} {_e(f.rule_id)}: '
                         f'{_e(f.message)}">{chunk}</mark>' if f else chunk)
            k = j
        if not line and marks[0] is not None:
            cells.append(f'<mark class="span {marks[0].severity}" title="{_e(marks[0].rule_id)}"> </mark>')
        ends = "".join(f'<span class="rule {f.severity}">{_SEV_MARK[f.severity]}\u00a0{_e(f.rule_id)}</span>'
                       for f in findings if f.end_line == ln or (f.end_line == ln + 1 and f.end_col == 1))
        out.append(f'<span class="lineno" aria-hidden="true">{ln}</span>{"".join(cells)}{ends}')
    return "\n".join(out)


def _span(f: Finding) -> str:
    if f.start_line == f.end_line:
        return f"line {f.start_line}, columns {f.start_col}\u2013{max(f.start_col, f.end_col - 1)}"
    return f"line {f.start_line}, column {f.start_col} to line {f.end_line}, column {max(1, f.end_col - 1)}"


def lint_html(report: LintResult, *, fail_on: str = "error", sources: Mapping[str, str] | None = None,
              title: str = "Prompt lint report") -> str:
    """Findings by severity with their spans, and each template with the spans highlighted.
    ``sources``: template text by reported path (default: read from the path)."""
    from .lint_rules import RULES, SEVERITIES

    active = report.findings
    counts = {s: sum(f.severity == s for f in active) for s in SEVERITIES}
    n = len(report.templates)
    failed = report.failed(fail_on)
    plural = {"error": "errors", "warning": "warnings", "note": "notes"}
    tally = ", ".join(f"{counts[s]} {s if counts[s] == 1 else plural[s]}" for s in SEVERITIES)
    paragraphs = [f"{n} template{'s' if n != 1 else ''} checked: {tally}"
                  + (f" ({len(report.suppressed)} suppressed)" if report.suppressed else "") + "."]
    if active:
        f = active[0]
        paragraphs.append(f"The most serious: {_e(f.message)} ({_e(f.path)}, line {f.start_line}). "
                          f"What to do: {_e(f.hint)}")
    else:
        paragraphs.append("No problem found.")
    paragraphs.append(f"Verdict: {'FAIL' if failed else 'pass'} "
                      f"(fails on findings at or above \u201c{_e(fail_on)}\u201d).")
    parts = [_summary(paragraphs, warn=failed)]
    for level in SEVERITIES:
        found = [f for f in active if f.severity == level]
        if not found:
            continue
        items = "".join(
            f'<div class="finding {level}"><p><span class="sev">{_SEV_MARK[level]} {level}</span> '
            f'<strong>{_e(f.rule_id)}</strong> '
            f'{_e(RULES[f.rule_id].name) if f.rule_id in RULES else ""} \u2014 {_e(f.message)}</p>'
            f'<p class="muted">{_e(f.path)}: {_e(_span(f))}</p><p>Hint: {_e(f.hint)}</p></div>' for f in found)
        parts.append(f'<section id="findings-{level}" aria-labelledby="{level}-h"><h2 id="{level}-h">'
                     f'{plural[level].capitalize()} ({len(found)})</h2>{items}</section>')
    for t in report.templates:
        text = (sources or {}).get(t.path)
        text = text if text is not None else _read(t.path)
        shown = [f for f in t.findings if not f.suppressed]
        body = (f'<pre class="template">{_highlight(text, shown)}</pre>' if text is not None
                else f'<p class="muted">The template file {_e(t.path)} could not be read to show the spans.</p>')
        skipped = "".join(f"<li>{_e(r)} not run: {_e(why)}</li>" for r, why in t.skipped.items())
        supp = "".join(f"<li>{_e(f.rule_id)} line {f.start_line}: {_e(f.message)} [{_e(f.suppressed)}]</li>"
                       for f in t.findings if f.suppressed)
        parts.append(f'<section class="template-section" aria-label="template {_e(t.path)}"><h2>{_e(t.path)}</h2>'
                     f'<p class="muted">cases {_e(t.cases)} ({t.n_cases} used by the model rules)'
                     f'{", from cache" if t.cached else ""}</p>'
                     + (f'<p class="muted">PL103/PL104: {_e(t.statistics["text"])}</p>' if t.statistics else "")
                     + "".join(f'<p class="muted">{_e(u)}</p>' for u in t.statistics.get("uncorrected", ()))
                     + f'{body}'
                     + (f"<details><summary>Suppressed</summary><ul>{supp}</ul></details>" if supp else "")
                     + (f"<details><summary>Rules not run</summary><ul>{skipped}</ul></details>" if skipped else "")
                     + "</section>")
    parts.append(f'<p class="muted">Model {_e(report.model)}, attribution method {_e(report.method)}.</p>')
    return page(title, "\n".join(parts), subtitle="promptlens lint")


# --- bench ---------------------------------------------------------------------------------------

def _pdr_bars(result: BenchResult) -> str:
    """Grouped bars: the headline PDR by level (and overall), one bar per prompt and placement."""
    levels = [*result.levels, "overall"]
    groups = [(p.name, placement) for p in result.prompts for placement in ("random", "guided")]
    by = {(r.prompt, r.placement, r.level): r for r in result.rows}
    values = [by[(n, pl, lv)].pdr for n, pl in groups for lv in levels if (n, pl, lv) in by]
    left, top, bottom, group_w = 70, 10, 230, 120
    width = left + group_w * len(levels) + 20
    y = _Scale.fit([0.0, *[v for v in values if v is not None]], bottom, top)
    body = [_y_axis(y, left, width - 20, f"PDR ({result.metric})"),
            f'<line x1="{left}" x2="{width - 20}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="#333"/>']
    bar = (group_w - 20) / max(1, len(groups))
    for i, level in enumerate(levels):
        x0 = left + group_w * i + 10
        body.append(f'<text x="{x0 + (group_w - 20) / 2:.1f}" y="{bottom + 18}" text-anchor="middle">{_e(level)}</text>')
        for g, (name, placement) in enumerate(groups):
            row = by.get((name, placement, level))
            if row is None or row.pdr is None:
                continue
            x, y0, y1 = x0 + g * bar, y(0), y(row.pdr)
            fill = _AFTER if placement == "guided" else _BEFORE
            body.append(f'<rect x="{x:.1f}" y="{min(y0, y1):.1f}" width="{bar - 2:.1f}" height="{max(1.0, abs(y1 - y0)):.1f}" '
                        f'fill="{fill}"><title>{_e(name)} ({placement}), {_e(level)}: PDR {row.pdr:.3f}</title></rect>')
    legend = " ".join(f"{n} {pl}" for n, pl in groups)
    body.append(f'<text x="{left}" y="{bottom + 40}">bars, left to right in each level: {_e(legend)} '
                '(light: random placement, dark: guided)</text>')
    desc = "; ".join(f"{r.prompt} {r.placement} {r.level}: {r.pdr:.3f}" for r in result.rows if r.pdr is not None)
    return _svg(width, bottom + 50, "Performance drop rate by level", desc, "".join(body), "pdr")


def bench_html(result: BenchResult, *, title: str = "Prompt robustness report") -> str:
    """The bench report: the headline, the PDR chart, the full table, guided vs random, the format
    spread and the worst perturbation of each prompt."""
    from .bench_report import _cells, _header, _legend, comparison_lines, format_lines

    overall = [r for r in result.rows if r.level == "overall"]
    paragraphs = [f"{len(result.prompts)} prompt(s) on {result.n_cases} cases, {result.budget} perturbed prompts per "
                  f"level and placement, similarity threshold {result.threshold}, seed {result.seed}."]
    paragraphs += [f"{_e(r.prompt)} ({_e(r.placement)} placement): PDR {r.pdr:.1%} over all levels"
                   + (f", worst single prompt {r.worst_pdr:.1%}" if r.worst_pdr is not None else "") + "."
                   for r in overall if r.pdr is not None]
    header = "".join(f"<th>{_e(h)}</th>" for h in _header(result))
    rows = "".join("<tr>" + "".join(f'<td{" class=num" if i > 2 else ""}>{_e(c)}</td>'
                                    for i, c in enumerate(_cells(result, r))) + "</tr>" for r in result.rows)
    comparison = "".join(f"<li>{_e(line.strip())}</li>" for line in comparison_lines(result)[1:])
    spread = "".join(f"<li>{_e(line.strip())}</li>" for line in format_lines(result)[1:])
    worst = []
    for p in result.prompts:
        w = min(p.perturbations, default=None,
                key=lambda v: (v.accuracy, v.margin) if v.accuracy is not None else (0.0, v.logprob))
        if w is not None:
            worst.append(f"<h3>{_e(p.name)}: the worst perturbation ({_e(w.level)}, {_e(w.placement)})</h3>"
                         f"<p class=muted>{_e('; '.join(w.edits))}</p><pre>{_e(w.text)}</pre>")
    parts = [_summary(paragraphs),
             f'<section aria-labelledby="pdr-h"><h2 id="pdr-h">Drop by level</h2><figure>{_pdr_bars(result)}'
             f"<figcaption>{_e(_legend(result))}</figcaption></figure></section>",
             f'<section aria-labelledby="table-h"><h2 id="table-h">Every row</h2><table id="bench"><thead><tr>{header}'
             f"</tr></thead><tbody>{rows}</tbody></table></section>",
             f'<section aria-labelledby="cmp-h"><h2 id="cmp-h">Guided vs random placement</h2><ul>{comparison}</ul>'
             f'<h3>Format spread</h3><ul>{spread}</ul></section>',
             f'<section aria-labelledby="worst-h"><h2 id="worst-h">Worst cases</h2>{"".join(worst)}</section>']
    notes = "".join(f"<li>{_e(n)}</li>" for n in result.notes)
    parts.append(f'<p class="muted">Cost: {result.forward_passes} forward passes, {result.seconds:.1f} s.</p>'
                 + (f"<ul>{notes}</ul>" if notes else ""))
    return page(title, "\n".join(parts), subtitle="promptlens bench")


def notebook_html(document: str, height: int = 640) -> str:
    """A report page for Jupyter's ``_repr_html_``: the same self-contained page, in an iframe
    (``srcdoc``) so its stylesheet and scripts cannot touch the notebook's own."""
    return (f'<iframe srcdoc="{html.escape(document, quote=True)}" title="promptlens report" '
            f'style="width: 100%; height: {height}px; border: 1px solid #ccc; resize: vertical" '
            'sandbox="allow-scripts"></iframe>')
