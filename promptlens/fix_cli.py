"""``promptlens fix RECIPE.yaml``: arguments, the run, and the terminal report.

Flags override the recipe; without a recipe, ``--template`` and ``--cases`` are required.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Iterator

from .errors import InputError
from .fix import STRATEGIES, FixInterrupted, FixResult, Flips, Summary
from .stats import DEFAULT_CONFIDENCE, MIN_CASES, describe_lower, level
from .templates import shown


def add_fix_parser(sub: argparse._SubParsersAction) -> None:
    from .cli import _common

    p = sub.add_parser("fix", help="repair a prompt template: meaning-preserving edits that raise the score")
    p.add_argument("recipe", nargs="?", help="recipe YAML (template, cases, budget, ...); flags override it")
    p.add_argument("--template", help="template text, or a file holding it (overrides the recipe's)")
    p.add_argument("--cases", help="cases file (JSONL/JSON/CSV/YAML) (overrides the recipe's)")
    p.add_argument("--task", help="with a dataset-schema cases file: only this task's records")
    p.add_argument("--strategy", choices=STRATEGIES, help="which segments to edit (default: attribution)")
    p.add_argument("--trials", type=int, help="trial budget over all rounds (default 30)")
    p.add_argument("--seconds", type=float, help="time budget in seconds (default: none)")
    p.add_argument("--threshold", type=float, help="minimum similarity of the fixed template to the original (0.8)")
    p.add_argument("--out", default="promptlens-fix", help="output folder (fixed template, study database)")
    p.add_argument("--json", dest="json_out", help="write the full result to this JSON file")
    p.add_argument("--html", help="write a self-contained HTML report to this file (scores each case once more)")
    p.add_argument("--allow-logprob-drop", action="store_true",
                   help="margin objective: keep a template even if it does not raise the right label's own log-prob "
                   "significantly on train")
    p.add_argument("--max-regressions", type=int, metavar="N",
                   help="at most N train cases may turn from right to wrong (choice tasks: the right label no longer "
                   "scores best; free-form: the target less than half as likely); a constraint of the search "
                   "(default: the recipe's, else no limit)")
    p.add_argument("--resume", action="store_true", help="continue the stored study instead of starting afresh")
    p.add_argument("--storage", help="Optuna storage: an RDB URL (sqlite:///..., postgresql://user@host/db) or "
                   "journal:PATH (a journal file) (default: sqlite:///OUT/promptlens-fix.db)")
    p.add_argument("--study", help="study name (default: derived from the template, cases, strategy and seed)")
    p.add_argument("--join", action="store_true", help="one of several workers on the same --storage and --study: "
                   "the first creates the study, the others join it; the --trials budget is shared")
    _common(p)
    p.set_defaults(run=run_fix, seed=None)  # None: the recipe's seed, else 0


def run_fix(args: argparse.Namespace) -> int:
    from .cases import load_cases, split_cases
    from .cli import make_backend, read_template_arg
    from .config import Recipe, load_recipe
    from .fix import check_fix_args, fix
    from .search import check_storage
    from .report import check_output, dumps, write_atomic

    if args.recipe:
        recipe = load_recipe(args.recipe)
    elif args.template and args.cases:
        recipe = None
    else:
        raise InputError("give a recipe file, or both --template and --cases")
    if args.template:
        source = read_template_arg(args.template, "template")
        template = source.text
    else:
        source, template = recipe.source, recipe.template
    if args.cases:
        cases = load_cases(args.cases, task=args.task)
    elif args.task:
        raise InputError("--task selects records of a --cases file; give --cases too (or set the task in the recipe)")
    else:
        cases = list(recipe.cases)
    recipe = recipe or Recipe(template=template, cases=tuple(cases))
    recipe = replace(
        recipe, template=template, cases=tuple(cases),
        strategy=args.strategy or recipe.strategy,
        trials=args.trials if args.trials is not None else recipe.trials,
        seconds=args.seconds if args.seconds is not None else recipe.seconds,
        threshold=args.threshold if args.threshold is not None else recipe.threshold,
        seed=args.seed if args.seed is not None else recipe.seed,
        max_regressions=args.max_regressions if args.max_regressions is not None else recipe.max_regressions,
    )
    check_fix_args(recipe.template, recipe.cases, strategy=recipe.strategy, threshold=recipe.threshold,
                   budget_trials=recipe.trials, budget_seconds=recipe.seconds, max_regressions=recipe.max_regressions)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder for the fixed template and the study database")
    fixed_name = out / fixed_file_name(source)
    check_output(fixed_name, "fixed template")
    for path, what in ((args.json_out, "JSON result"), (args.html, "HTML report")):
        if path:
            check_output(path, what)
    if args.storage:
        check_storage(args.storage)
    train, valid = split_cases(recipe.cases, n_train=recipe.n_train, frac_train=recipe.split, seed=recipe.seed)
    if recipe.n_validation is not None:
        valid = valid[: recipe.n_validation]
    backend = make_backend(args)
    try:
        with _sigterm_as_interrupt():
            result = fix(
                recipe.template, train, validation=valid, backend=backend, strategy=recipe.strategy,
                budget_trials=recipe.trials, budget_seconds=recipe.seconds, threshold=recipe.threshold,
                top_k=recipe.top_k, rounds=recipe.rounds, segmentation=recipe.segmentation,
                kinds=recipe.rewrites, seed=recipe.seed, alternatives=dict(recipe.alternatives),
                keep_logprob=recipe.keep_logprob and not args.allow_logprob_drop,
                storage=args.storage, out=args.out, study_name=args.study, resume=args.resume, join=args.join,
                progress=sys.stderr.isatty(), max_regressions=recipe.max_regressions,
            )
    except FixInterrupted as stop:
        so_far = out / fixed_file_name(source, "best-so-far")
        write_atomic(so_far, written(source, stop.best))
        print(f"promptlens: interrupted; {stop.trials} finished trials are kept in {stop.storage} "
              f"(study {stop.study_name}) and the best template so far is in {so_far}; "
              "run the same command with --resume to continue", file=sys.stderr)
        return 130
    write_atomic(fixed_name, written(source, result.best))
    color = not args.no_color and "NO_COLOR" not in os.environ and sys.stdout.isatty()
    print(fix_report(result, color=color))
    print(f"\nwrote {fixed_name}")
    if args.json_out:
        write_atomic(args.json_out, dumps(result))
        print(f"wrote {args.json_out}")
    if args.html:
        from .html_report import case_scores, fix_html

        write_atomic(args.html, fix_html(result, cases=case_scores(backend, result, train, valid)))
        print(f"wrote {args.html}")
    return 0


def fixed_file_name(source: object, stem: str = "fixed-template") -> str:
    """``fixed-template.txt``, or ``.json`` / ``.yaml`` for a messages file: the format it came in."""
    suffix = {"json": ".json", "yaml": ".yaml"}.get(getattr(source, "format", "text"), ".txt")
    return stem + suffix


def written(source: object, flat: str) -> str:
    """A repaired flat template as the file the user gave: the same format, keys and style."""
    from .template_files import write_back
    from .templates import MessageTemplate, text_template

    if not isinstance(source, MessageTemplate) or not source.messages:
        source = text_template(flat)
    return write_back(source, flat)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """A `kill` (SIGTERM) stops the run like Ctrl-C: finished trials kept, best so far written."""
    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
            else "free-form target: wrong = less than half as likely as before, right = more than twice")
    lines = [f"{split} flips ({what}): {len(flips.lost)} right -> wrong, {len(flips.gained)} wrong -> right"]
    for sign, names in (("-", flips.lost), ("+", flips.gained)):
        lines += [f"  {sign} {n}" for n in names[:limit]]
        if len(names) > limit:
            lines.append(f"  {sign} ... and {len(names) - limit} more (all in the JSON result)")
    return lines


def fix_report(result: FixResult, *, color: bool = False) -> str:
    """The one-sentence result, before/after tables, the flips, then each kept edit as a diff
    with its similarity and gain."""
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
    v0, v1 = result.validation_before, result.validation_after
    if v0 and v1 and result.edits and v1.objective < v0.objective and result.logprob_rule and v1.logprob > v0.logprob:
        lines += [f"note: the right label's log-prob rose on validation ({v1.logprob - v0.logprob:+.3f} nats) and the "
                  f"margin fell ({v1.objective - v0.objective:+.3f}): the edits were chosen for a significant log-prob "
                  "gain on train with the margin allowed to move by a non-significant amount; check the accuracy", ""]
    elif v0 and v1 and result.edits and v1.objective < v0.objective:
        lines += [f"warning: the {result.objective} fell on validation ({v1.objective - v0.objective:+.3f} nats): "
                  "the edits fit the train cases only; give more train cases or keep the original", ""]
    if not result.edits:
        lines.append("no edit beat the original template on train; it is kept as it is")
    for n, e in enumerate(result.edits, 1):
        seg = f", segment similarity {e.segment_similarity:.2f}" if e.segment_similarity is not None else ""
        lp = f" ({e.logprob_gain:+.3f} log-prob)" if e.logprob_gain is not None else ""
        lines.append(f"edit {n} (round {e.round + 1}, {e.kind}): similarity {e.similarity:.2f}{seg}, "
                     f"gain {e.gain:+.3f} nats on train{lp}, {describe_lower(e.gain_low, e.n_cases, e.confidence)}")
        lines.append(f"  {red}- {' '.join(shown(e.old).split())}{off}")
        lines.append(f"  {green}+ {' '.join(shown(e.new).split()) or '(deleted)'}{off}")
    lines += ["", f"fixed template (similarity {result.similarity:.2f} to the original, threshold {result.threshold}):",
              shown(result.best, inline=False), "",
              f"cost: {result.trials} trials ({result.trials_total} in the study, {result.pruned} pruned, "
              f"{result.infeasible} infeasible: under the similarity threshold or the log-prob rule), {result.forward_passes} forward passes, "
              f"{result.seconds:.1f} s; study {result.study_name}" + (f" in {result.storage}" if result.storage else "")]
    lines += [f"note: {n}" for n in result.notes]
    lines.append(f"note: an edit is kept only if its gain on train is significant (one-sided t lower bound above 0 "
                 f"at {level(DEFAULT_CONFIDENCE)}), which needs at least {MIN_CASES} train cases")
    return "\n".join(lines)
