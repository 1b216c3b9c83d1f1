"""The fix report: the verdict and headline from the result, the before/after table, the cases
that changed verdict, the word diff and the edits, the charts of the search, and the attribution
before and after. Renders only: nothing here scores; the studies are read from the result's
storage."""

from __future__ import annotations

import difflib
import math
import re
from typing import TYPE_CHECKING, Sequence

from ..stats import describe_lower
from ..templates import shown
from .attribution import _attribution_section
from .charts import _history, _importance, _slopes
from .page import _e, _nats, _pct, _quote, _summary, _unit, page

if TYPE_CHECKING:
    import optuna

    from ..fix import CaseScore, FixResult
    from ..types import Summary



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
