"""The bench report: the headline, the PDR chart, the full table (the same cells as the terminal
table, from ``bench_report``), guided vs random, the format spread and each prompt's worst
perturbation."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..bench_report import _cells, _header, _legend, comparison_lines, format_lines
from .charts import _pdr_bars
from .page import _e, _summary, page

if TYPE_CHECKING:
    from ..bench import BenchResult



def bench_html(result: BenchResult, *, title: str = "Prompt robustness report") -> str:
    """The bench report: the headline, the PDR chart, the full table, guided vs random, the format
    spread and the worst perturbation of each prompt."""
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
