"""The SVG charts of the HTML reports, built here as text (no plotting library): scales and
axes, the forest plot of segment effects, the optimisation history and parameter importance of a
fix's studies, the before/after slopes per case, the heatmap of the prompt and its legend, and
bench's bars. Each chart has a title and a text description for screen readers."""

from __future__ import annotations

import hashlib
import html
import json
import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Sequence

from ..templates import MARK_RE, ROLE_OF
from .page import _AFTER, _BEFORE, _DOWN, _SAME, _UP, _colors, _e, _ends, _nats, _quote, _tip, _verdict

if TYPE_CHECKING:
    import optuna

    from ..bench import BenchResult
    from ..fix import CaseScore
    from ..types import Attribution



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
    for tick in _ticks(0, max(n - 1, 1), 8):
        if float(tick).is_integer():
            body.append(f'<text x="{x(tick):.1f}" y="{bottom + 18}" text-anchor="middle">{int(tick)}</text>')
    for b in bounds:
        bx = x(b - 0.5)
        body.append(f'<line x1="{bx:.1f}" x2="{bx:.1f}" y1="{top}" y2="{bottom}" class="zero"/>'
                    f'<text x="{bx + 4:.1f}" y="{top + 12}">next round</text>')
    best = -math.inf
    path: list[str] = []
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
    import optuna  # only when a study is charted: optuna is slow to import

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
