"""The attribution report: a summary in words, the heatmap, the forest plot and the table of
effects (the section the fix report shows before and after), and the method note."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ..stats import level as _level, too_few_reason
from .charts import _forest, _heatmap, _legend
from .page import _e, _interval, _nats, _pct, _quote, _sigmoid, _summary, _unit, _verdict, page

if TYPE_CHECKING:
    from ..types import Attribution, SegmentAttribution



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
            f'{_e(attr.objective)}, segments by {_e(attr.segmented_by())}; cost {attr.forward_passes} forward passes, '
            f'{attr.tokens_computed} tokens, {attr.seconds:.1f} s{extra}.</p>' + (f"<ul>{notes}</ul>" if notes else ""))


def attribution_html(attr: Attribution, *, title: str = "Which parts of the prompt help or hurt") -> str:
    body = (_summary(_attribution_summary(attr))
            + _attribution_section(attr, "Heatmap of the prompt")
            + _method_note(attr))
    return page(title, body, subtitle=f"promptlens attribute \u2014 {attr.method} over {attr.n_cases} case(s)"
                                    + ("" if attr.mode == "exact" else f", approximate: {attr.mode} mode"))
