"""``promptlens bench INPUT [--prompt FILE ...]``: arguments, the run, the files it writes.

INPUT is named as for every command (``cli.common``). Its template is the original prompt, named
"original"; each ``--prompt`` adds one to compare side by side (a file is named by its stem:
``fixed-template``). With a recipe, the prompts are scored on its validation cases, the ones
``promptlens fix`` never searched on; a cases file (``--cases``, or a config's) is scored whole.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

# Only what the parser shows is imported here (cheap); the job's modules load in run().
from ..errors import InputError
from ..io import write_atomic
from ..names import LEVELS
from .common import (add_common_options, add_input_options, check_result_files, is_file_arg, make_backend, read_input,
                     read_template_arg, resolve_input, write_result_files)

if TYPE_CHECKING:
    from ..config import Recipe


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="robustness benchmark: performance drop under meaning-preserving perturbations")
    add_input_options(p)
    p.add_argument("--prompt", action="append", default=[], metavar="FILE_OR_TEXT",
                   help="another template to compare side by side (repeatable), e.g. OUT/fixed-template.txt from fix")
    p.add_argument("--limit", type=int, help="use the first N cases only")
    p.add_argument("--levels", nargs="+", default=[",".join(LEVELS)], metavar="LEVEL",
                   help=f"from: {', '.join(LEVELS)}, comma- or space-separated (default: all)")
    p.add_argument("--budget", type=int, default=4, help="perturbed prompts per level and placement (default 4)")
    p.add_argument("--edits", type=int, default=2, help="words changed per character- or word-level perturbation (2)")
    p.add_argument("--threshold", type=float, help="minimum similarity of a perturbed prompt to its original (0.8)")
    p.add_argument("--out", default="promptlens-bench", help="output folder: bench.csv, bench.md, bench.png")
    p.add_argument("--json", dest="json_out", help="write the full result to this JSON file")
    p.add_argument("--html", help="write a self-contained HTML report to this file")
    add_common_options(p)
    p.set_defaults(run=run, seed=None)  # None: the recipe's seed, else 0


def _name(value: str, taken: set[str], n: int) -> str:
    name = Path(value).stem if is_file_arg(value) else f"prompt {n}"
    while name in taken:
        name = f"{name} ({n})"
    return name


def _inputs(args: argparse.Namespace) -> tuple[str, list, Recipe | None]:
    """The original template, the cases to score (a recipe's validation cases; a cases file whole)
    and the recipe, if one was given."""
    job = resolve_input(args, "bench")
    source, cases = read_input(job.one("bench"))
    if job.recipe is not None and not job.cases_flag:  # held out from fix: original and repaired compare fairly
        _, cases = job.recipe.train_validation()
    return source.text, cases[: args.limit], job.recipe


def run(args: argparse.Namespace) -> int:
    from ..bench import BenchConfig, bench, check_bench_args
    from ..bench_report import bench_csv, bench_markdown, bench_plot, bench_table

    levels = tuple(lv.strip() for arg in args.levels for lv in arg.split(",") if lv.strip())
    bad = [lv for lv in levels if lv not in LEVELS]
    if bad or not levels:
        where = "; put the recipe or template before --levels" if bad and Path(bad[0]).exists() else ""
        raise InputError(f"unknown level {bad[0] if bad else ' '.join(args.levels)!r}; give levels from: "
                         f"{', '.join(LEVELS)}{where}")
    if args.budget < 1:
        raise InputError(f"--budget {args.budget} is out of range; give 1 or more")
    if args.edits < 1:
        raise InputError(f"--edits {args.edits} is out of range; give 1 or more")
    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit {args.limit} is out of range; give 1 or more")
    template, cases, recipe = _inputs(args)
    seed = args.seed if args.seed is not None else (recipe.seed if recipe else 0)
    threshold = args.threshold if args.threshold is not None else (recipe.threshold if recipe else BenchConfig.threshold)
    prompts = {"original": template}
    for n, value in enumerate(args.prompt, 2):
        prompts[_name(value, set(prompts), n)] = read_template_arg(value, "prompt").text
    check_bench_args(prompts, cases, levels, args.budget, args.edits, threshold)  # before the model loads
    check_result_files(args)
    backend = make_backend(args)
    config = BenchConfig(levels=levels, budget=args.budget, edits=args.edits, threshold=threshold, seed=seed,
                         progress=sys.stderr.isatty())
    result = bench(prompts, cases, config, backend=backend)
    print(bench_table(result))
    out = Path(args.out)
    write_atomic(out / "bench.csv", bench_csv(result))
    write_atomic(out / "bench.md", bench_markdown(result))
    bench_plot(result, out / "bench.png")
    print(f"\nwrote {out / 'bench.csv'}, {out / 'bench.md'}, {out / 'bench.png'}")
    from ..html import bench_html

    write_result_files(args, result, bench_html)
    return 0
