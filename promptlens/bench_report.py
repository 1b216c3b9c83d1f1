"""Renderers for ``bench``: the terminal table, markdown, CSV and the PDR plot."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

from .stats import describe

if TYPE_CHECKING:  # annotations only: a renderer never runs the job
    from .bench import BenchResult, Row

COLUMNS = ("prompt", "level", "placement", "n", "clean_accuracy", "perturbed_accuracy", "pdr_accuracy",
           "clean_logprob", "perturbed_logprob", "logprob_drop", "pdr_probability", "clean_margin", "perturbed_margin",
           "margin_drop", "worst_pdr", "worst_edits")


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


def _num(v: float | None, sign: bool = False) -> str:
    return "-" if v is None else (f"{v:+.3f}" if sign else f"{v:.3f}")


def _header(result: BenchResult) -> list[str]:
    if result.metric == "accuracy":
        return ["prompt", "level", "placement", "n", "acc clean", "acc pert", "PDR", "worst PDR",
                "margin clean", "margin drop", "logp clean", "logp drop"]
    return ["prompt", "level", "placement", "n", "logp clean", "logp pert", "logp drop", "PDR(p)", "worst PDR(p)"]


def _cells(result: BenchResult, r: Row) -> list[str]:
    head = [r.prompt, r.level, r.placement, str(r.n)]
    if result.metric == "accuracy":
        return head + [_pct(r.clean_accuracy), _pct(r.perturbed_accuracy), _pct(r.pdr_accuracy), _pct(r.worst_pdr),
                       _num(r.clean_margin), _num(r.margin_drop, sign=True), _num(r.clean_logprob),
                       _num(r.logprob_drop, sign=True)]
    return head + [_num(r.clean_logprob), _num(r.perturbed_logprob), _num(r.logprob_drop, sign=True),
                   _pct(r.pdr_probability), _pct(r.worst_pdr)]


def _legend(result: BenchResult) -> str:
    if result.metric == "accuracy":
        return ("PDR = 1 - acc(perturbed) / acc(clean) (PromptBench). margin: target minus best wrong choice; "
                "logp: the target's log-prob; drop = clean - perturbed in nats (positive: worse). worst PDR: the "
                "single worst perturbed prompt. n: perturbed prompts per placement, each scored on every case.")
    return ("PDR(p) = 1 - exp(logp(perturbed) - logp(clean)): the drop rate of the geometric-mean target "
            "probability (a ratio of negative log-probs would read backwards). logp drop = clean - perturbed, "
            "nats (positive: worse). n: perturbed prompts per placement, each scored on every case.")


def comparison_lines(result: BenchResult) -> list[str]:
    """Does attribution-guided placement find larger drops than random at equal budget?"""
    comps = [c for c in result.comparisons() if c.level != "overall"]
    lines = []
    drop = "mean margin drop" if result.metric == "accuracy" else "mean logp drop"
    for what, key, unit in (("mean PDR", "pdr_gain", "points"), (drop, "drop_gain", "nats"),
                            ("worst-case PDR", "worst_gain", "points")):
        gains = [getattr(c, key) for c in comps if getattr(c, key) is not None]
        if not gains:
            continue
        larger = sum(g > 1e-9 for g in gains)
        smaller = sum(g < -1e-9 for g in gains)
        mean = sum(gains) / len(gains)
        shown = f"{100 * mean:+.1f} {unit}" if unit == "points" else f"{mean:+.3f} {unit}"
        lines.append(f"  {what}: guided larger in {larger} of {len(gains)} (prompt, level) pairs, "
                     f"equal in {len(gains) - larger - smaller}, smaller in {smaller}; mean guided - random {shown}")
    for c in result.comparisons():
        if c.level == "overall":
            # The headline PDR decides; when it ties (accuracy moves in coarse steps), the drop in nats.
            gain = c.pdr_gain if c.pdr_gain is not None and abs(c.pdr_gain) > 1e-9 else (c.drop_gain or 0.0)
            verdict = "larger" if gain > 1e-9 else "smaller" if gain < -1e-9 else "equal"
            pdr = "-" if c.pdr_gain is None else f"{100 * c.pdr_gain:+.1f} points"
            said = {"larger": "guided found a larger drop than random", "equal": "guided and random found the same drop",
                    "smaller": "guided found a smaller drop than random"}[verdict]
            lines.append(f"  {c.prompt}, all levels ({c.n} prompts per placement): {said} "
                         f"(PDR {pdr}, {drop.removeprefix('mean ')} {_num(c.drop_gain, sign=True)} nats)")
            if c.drop_gain_low is not None:
                lines.append(f"    guided - random drop over the cases: {_num(c.drop_gain, sign=True)} "
                             f"[{_num(c.drop_gain_low, sign=True)}, {_num(c.drop_gain_high, sign=True)}] nats "
                             f"({describe(c.n_cases, c.confidence, c.interval)}): {_said(c.verdict)}")
    return ["guided vs random placement (equal budget):", *lines]


def _said(verdict: str) -> str:
    return {"larger": "guided finds larger drops", "smaller": "guided finds smaller drops",
            "unclear": "no clear difference"}.get(verdict, f"no verdict ({verdict})")


def bench_table(result: BenchResult) -> str:
    """The PDR table, then guided vs random, format spread, the worst cases and notes."""
    header = _header(result)
    rows = [header] + [_cells(result, r) for r in result.rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    fmt = lambda row: "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
    lines = [f"robustness on {result.n_cases} cases: budget {result.budget} perturbed prompts per level and "
             f"placement, {result.edits} words per character/word edit, similarity threshold {result.threshold}, "
             f"seed {result.seed}", "", fmt(rows[0]), fmt(["-" * w for w in widths])]
    lines += [fmt(r) for r in rows[1:]]
    lines += ["", _legend(result), "", *comparison_lines(result), ""]
    lines += format_lines(result)
    lines.append("")
    for p in result.prompts:
        lines.append(f"{p.name}: most important words (attribution, nats): "
                     + ", ".join(f"{w!r} {v:+.2f}" for w, v in p.important))
        worst = min(p.perturbations, default=None, key=lambda v: (v.accuracy, v.margin)
                    if v.accuracy is not None else (0.0, v.logprob))
        if worst is not None:
            scores = (f"accuracy {_pct(worst.accuracy)}, margin {_num(worst.margin)}, "
                      if worst.accuracy is not None else "")
            lines.append(f"  worst perturbation ({worst.level}, {worst.placement}): {scores}logp {worst.logprob:.3f}: "
                         f"{'; '.join(worst.edits)}")
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in result.stage_seconds.items())
    lines.append(f"\ncost: {result.forward_passes} forward passes, {result.seconds:.1f} s ({stages})")
    lines += [f"note: {n}" for n in result.notes]
    return "\n".join(lines)


def format_lines(result: BenchResult) -> list[str]:
    unit = "accuracy" if result.metric == "accuracy" else "mean logp"
    nats = "" if result.metric == "accuracy" else ", nats"
    lines = [f"format spread (max - min {unit} over formatting variants{nats}):"]
    for p in result.prompts:
        value = _pct(p.format_spread) if result.metric == "accuracy" else f"{p.format_spread:.3f}"
        each = ", ".join(f"{v.edits[0]} {_pct(v.accuracy) if v.accuracy is not None else f'{v.logprob:.3f}'}"
                         for v in p.formats)
        lines.append(f"  {p.name}: {value} over {len(p.formats)} variants ({each})")
    return lines


def bench_markdown(result: BenchResult) -> str:
    header = _header(result)
    rows = [header, ["---"] * len(header)] + [_cells(result, r) for r in result.rows]
    lines = ["# promptlens bench", "", f"{result.n_cases} cases, budget {result.budget} per level and placement, "
             f"threshold {result.threshold}, seed {result.seed}.", ""]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += ["", _legend(result), "", *comparison_lines(result), "", *format_lines(result), ""]
    return "\n".join(lines)


def bench_csv(result: BenchResult) -> str:
    import pandas as pd

    frame = pd.DataFrame([{c: getattr(r, c) for c in COLUMNS} for r in result.rows], columns=list(COLUMNS))
    frame["worst_edits"] = frame["worst_edits"].map(lambda e: "; ".join(e))
    buf = io.StringIO()
    frame.to_csv(buf, index=False)
    return buf.getvalue()


def bench_plot(result: BenchResult, path: str | Path) -> None:
    """Grouped bars: PDR by level (and overall), one bar per prompt and placement."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = [*result.levels, "overall"]
    groups = [(p.name, placement) for p in result.prompts for placement in ("random", "guided")]
    by = {(r.prompt, r.placement, r.level): r for r in result.rows}
    width = 0.8 / len(groups)
    fig, ax = plt.subplots(figsize=(1.6 * len(levels) + 2, 4))
    colors = plt.get_cmap("tab10")
    for g, (name, placement) in enumerate(groups):
        values = [by[(name, placement, lv)].pdr for lv in levels]
        xs = [i + (g - (len(groups) - 1) / 2) * width for i in range(len(levels))]
        ax.bar(xs, [0.0 if v is None else v for v in values], width, label=f"{name} ({placement})",
               color=colors(g // 2), hatch="//" if placement == "guided" else None, edgecolor="black", linewidth=0.5)
    ax.set_xticks(range(len(levels)), levels)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_ylabel(f"PDR ({result.metric})")
    ax.set_title(f"Performance drop rate by level ({result.n_cases} cases, budget {result.budget})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(path).with_name(f".{Path(path).name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
