"""``promptlens fix INPUT``: arguments, the run, and the files it writes.

INPUT is named as for every command (``cli.common``): a recipe (its budget and split too), a
template with ``--cases``, a ``promptlens.yaml`` with one template, a promptfoo config. Flags
override the recipe; without one, fix's defaults apply.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from typing import TYPE_CHECKING

# Only what the parser shows is imported here (cheap); the job's modules load when it runs.
from ..errors import InputError
from ..io import check_output, write_atomic
from ..names import STRATEGIES
from .common import (add_common_options, add_input_options, check_result_files, make_backend, read_input, resolve_input,
                     use_color, write_result_files)

if TYPE_CHECKING:
    from ..config import Recipe
    from ..templates import MessageTemplate


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fix", help="repair a prompt template: meaning-preserving edits that raise the score")
    add_input_options(p)
    p.add_argument("--strategy", choices=STRATEGIES, help="which segments to edit (default: attribution)")
    p.add_argument("--trials", type=int, help="trial budget over all rounds (default 30)")
    p.add_argument("--seconds", type=float, help="time budget in seconds (default: none)")
    p.add_argument("--prompts", type=int, metavar="N", help="budget of prompts scored, fix's own attribution included "
                   "(default: none)")
    p.add_argument("--attribution-cases", type=int, metavar="K", help="attribute on the first K train cases only, a "
                   "cheaper screen (default: all)")
    p.add_argument("--threshold", type=float, help="minimum similarity of the fixed template to the original (0.8)")
    p.add_argument("--out", default="promptlens-fix", help="output folder (fixed template, study database)")
    p.add_argument("--json", dest="json_out", help="write the full result to this JSON file")
    p.add_argument("--html", help="write a self-contained HTML report to this file")
    p.add_argument("--allow-logprob-drop", action="store_true",
                   help="margin objective: keep a template even if it does not raise the right label's own log-prob "
                   "significantly on train")
    p.add_argument("--max-regressions", type=int, metavar="N",
                   help="at most N train cases may turn from right to wrong (choice tasks: the right label no longer "
                   "scores best; free-form: greedy decoding no longer sure to give the target); a constraint of the search "
                   "(default: the recipe's, else no limit)")
    p.add_argument("--resume", action="store_true", help="continue the stored study instead of starting afresh")
    p.add_argument("--storage", help="Optuna storage: an RDB URL (sqlite:///..., postgresql://user@host/db) or "
                   "journal:PATH (a journal file) (default: sqlite:///OUT/promptlens-fix.db)")
    p.add_argument("--study", help="study name (default: derived from the template, cases, strategy and seed)")
    p.add_argument("--join", action="store_true", help="one of several workers on the same --storage and --study: "
                   "the first creates the study, the others join it; the --trials budget is shared")
    add_common_options(p)
    p.set_defaults(run=run, seed=None)  # None: the recipe's seed, else 0


def _recipe(args: argparse.Namespace) -> Recipe:
    """The input as a recipe, the flags applied over it (a template and cases: fix's defaults)."""
    from ..config import REPAIRABLE, Recipe
    from ..fix import FixConfig

    job = resolve_input(args, "fix")
    target = job.one("fix")
    source, cases = read_input(target)
    recipe = job.recipe
    if recipe is not None:
        config = recipe.config
    elif target.segmentation in REPAIRABLE:
        config = FixConfig(segmentation=target.segmentation)
    else:
        raise InputError(f"{job.name}: segmentation {target.segmentation!r} cannot be repaired; set one of "
                         f"{', '.join(REPAIRABLE)} there")
    flags = {"strategy": args.strategy, "trials": args.trials, "seconds": args.seconds, "threshold": args.threshold,
             "seed": args.seed, "max_regressions": args.max_regressions, "prompts": args.prompts,
             "attribution_cases": args.attribution_cases}
    config = replace(config, **{k: v for k, v in flags.items() if v is not None},
                     keep_logprob=config.keep_logprob and not args.allow_logprob_drop,
                     storage=args.storage, out=args.out, study_name=args.study, resume=args.resume, join=args.join,
                     progress=sys.stderr.isatty())
    return Recipe(template=source.text, cases=tuple(cases), config=config, path=recipe.path if recipe else None,
                  source=source)


def fixed_file_name(source: object, stem: str = "fixed-template") -> str:
    """``fixed-template.txt``, or ``.json`` / ``.yaml`` for a messages file: the format it came in."""
    suffix = {"json": ".json", "yaml": ".yaml"}.get(getattr(source, "format", "text"), ".txt")
    return stem + suffix


def written(source: object, flat: str) -> str:
    """A repaired flat template as the file the user gave: the same format, keys and style."""
    from ..template_files import write_back
    from ..templates import MessageTemplate, text_template

    if not isinstance(source, MessageTemplate) or not source.messages:
        source = text_template(flat)
    return write_back(source, flat)


def _check_outputs(args: argparse.Namespace, out: Path, fixed_name: Path) -> None:
    from ..storage import check_storage

    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder for the fixed template and the study database")
    check_output(fixed_name, "fixed template")
    check_result_files(args)
    if args.storage:
        check_storage(args.storage)


def run(args: argparse.Namespace) -> int:
    from ..fix import FixInterrupted, check_fix_config, fix
    from ..report import fix_report
    from ..signals import interrupts

    recipe = _recipe(args)
    check_fix_config(recipe.template, recipe.cases, recipe.config)
    out = Path(args.out)
    fixed_name = out / fixed_file_name(recipe.source)
    _check_outputs(args, out, fixed_name)
    train, valid = recipe.train_validation()
    backend = make_backend(args)
    try:
        with interrupts():
            # The validation cases are passed, not left to fix(): the default study name is made
            # from the train cases, as it always was, so --resume finds studies of earlier versions.
            result = fix(recipe.template, train, recipe.config, validation=valid, backend=backend)
    except FixInterrupted as stop:
        so_far = out / fixed_file_name(recipe.source, "best-so-far")
        write_atomic(so_far, written(recipe.source, stop.best))
        print(f"promptlens: interrupted; {stop.trials} finished trials are kept in {stop.storage} "
              f"(study {stop.study_name}) and the best template so far is in {so_far}; "
              "run the same command with --resume to continue", file=sys.stderr)
        return 130
    write_atomic(fixed_name, written(recipe.source, result.best))
    print(fix_report(result, color=use_color(args, sys.stdout)))
    print(f"\nwrote {fixed_name}")
    from ..html import fix_html

    write_result_files(args, result, fix_html)
    return 0
