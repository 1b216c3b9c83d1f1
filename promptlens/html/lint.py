"""The lint report: findings by severity, and each template with line numbers and its findings'
spans highlighted."""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

from ..errors import InputError
from ..io import read_text
from ..lint_rules import RULES, SEVERITIES
from .page import _e, _summary, page

if TYPE_CHECKING:
    from ..lint import LintResult
    from ..lint_rules import Finding



def _read(path: str) -> str | None:
    try:
        return read_text(path, "template")
    except InputError:  # the page says the spans cannot be shown
        return None


_SEV_MARK = {"error": "\u2716", "warning": "\u25b2", "note": "\u25cf"}


def _highlight(text: str, findings: Sequence[Finding]) -> str:
    """The template with line numbers; each character takes the most severe finding covering it."""
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
            mark = marks[k]
            chunk = _e(line[k:j])
            cells.append(f'<mark class="span {mark.severity}" title="{_e(mark.severity)} {_e(mark.rule_id)}: '
                         f'{_e(mark.message)}">{chunk}</mark>' if mark else chunk)
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
