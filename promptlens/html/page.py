"""The page every HTML report shares: the shell (metadata, inline CSS, a few lines of JS), the
colours, escaping and number formatting, the "In short" summary box, the words for one segment's
effect, and the iframe a notebook shows a page in.

Everything is inline, so the file opens offline and can be mailed or attached to a CI run. Blue
means "helps", orange "hurts" (a pair that stays distinct under the common colour-vision
deficiencies), and every colour comes with a text label.
"""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING, Any, Sequence

from ..stats import TOO_FEW, level as _level
from ..templates import shown

if TYPE_CHECKING:
    from ..types import Attribution, SegmentAttribution

_NEUTRAL = (247, 247, 247)
_HELP = (33, 102, 172)  # #2166ac
_HURT = (179, 88, 6)  # #b35806
_BEFORE, _AFTER = "#6b6b6b", "#2166ac"
_UP, _DOWN, _SAME = "#2166ac", "#b35806", "#8c8c8c"


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
    r, g, b = (round(n + (c - n) * t) for n, c in zip(_NEUTRAL, rgb))
    return r, g, b


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


def _unit(attr: Attribution, plural: bool = False) -> str:
    unit = {"span": "marked span", "token": "token", "unit": "segment"}.get(attr.segmentation, attr.segmentation)
    return unit + ("s" if plural else "")


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


def notebook_html(document: str, height: int = 640) -> str:
    """A report page for Jupyter's ``_repr_html_``: the same self-contained page, in an iframe
    (``srcdoc``) so its stylesheet and scripts cannot touch the notebook's own."""
    return (f'<iframe srcdoc="{html.escape(document, quote=True)}" title="promptlens report" '
            f'style="width: 100%; height: {height}px; border: 1px solid #ccc; resize: vertical" '
            'sandbox="allow-scripts"></iframe>')
