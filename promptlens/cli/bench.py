"""``promptlens bench RECIPE.yaml [--prompt FILE ...]``: arguments, the run, the files it writes.

The recipe (or ``--template``) gives the original prompt, named "original"; each ``--prompt``
adds one to compare side by side (a file is named by its stem: ``fixed-template``). With a
recipe, the prompts are scored on its validation cases, the ones ``promptlens fix`` never searched
on; ``--cases`` scores on every case of a file instead.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Only what the parser shows is imported here (cheap); the job's modules load in run().
from ..errors import InputError
from ..io import check_output, write_atomic
from ..names import LEVELS
from .common import add_common_options, is_file_arg, make_backend, read_template_arg, read_text_arg


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="robustness benchmark: performance drop under meaning-preserving perturbations")
    p.add_argument("recipe", nargs="?", help="recipe YAML (its template is the original prompt; its validation cases are scored)")
    p.add_argument("--template", help="the original prompt template, or a file holding it (overrides the recipe's)")
    p.add_argument("--prompt", action="append", default=[], metavar="FILE_OR_TEXT",
                   help="another template to compare side by side (repeatable), e.g. OUT/fixed-template.txt from fix")
    p.add_argument("--cases", help="cases file (JSONL/JSON/CSV/YAML): score on all of its cases")
    p.add_argument("--task", help="with a dataset-schema cases file: only this task's records")
    p.add_argument("--limit", type=int, help="use the first N cases only")
    p.add_argument("--levels", default=",".join(LEVELS), help=f"comma-separated, from: {', '.join(LEVELS)} (default: all)")
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


def run(args: argparse.Namespace) -> int:
    from ..bench import BenchConfig, bench, check_bench_args
    from ..bench_report import bench_csv, bench_markdown, bench_plot, bench_table
    from ..cases import load_cases
    from ..config import load_recipe
    from ..report import dumps

    levels = tuple(lv.strip() for lv in args.levels.split(",") if lv.strip())
    bad = [lv for lv in levels if lv not in LEVELS]
    if bad or not levels:
        raise InputError(f"unknown level {bad[0] if bad else args.levels!r}; give a comma-separated list from: "
                         f"{', '.join(LEVELS)}")
    if args.budget < 1:
        raise InputError(f"--budget {args.budget} is out of range; give 1 or more")
    if args.edits < 1:
        raise InputError(f"--edits {args.edits} is out of range; give 1 or more")
    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit {args.limit} is out of range; give 1 or more")
    recipe = load_recipe(args.recipe) if args.recipe else None
    if recipe is None and not (args.template and args.cases):
        raise InputError("give a recipe file, or both --template and --cases")
    # No recipe: --template and --cases are both given.
    template = read_template_arg(args.template, "template").text if recipe is None or args.template else recipe.template
    seed = args.seed if args.seed is not None else (recipe.seed if recipe else 0)
    threshold = args.threshold if args.threshold is not None else (recipe.threshold if recipe else BenchConfig.threshold)
    if recipe is None or args.cases:
        cases = load_cases(args.cases, task=args.task)
    elif args.task:
        raise InputError("--task selects records of a --cases file; give --cases too (or set the task in the recipe)")
    else:  # the recipe's validation cases: held out from fix, so original and repaired compare fairly
        _, cases = recipe.train_validation()
    cases = cases[: args.limit]
    prompts = {"original": template}
    for n, value in enumerate(args.prompt, 2):
        prompts[_name(value, set(prompts), n)] = read_template_arg(value, "prompt").text
    check_bench_args(prompts, cases, levels, args.budget, args.edits, threshold)  # before the model loads
    for path, what in ((args.json_out, "JSON result"), (args.html, "HTML report")):
        if path:
            check_output(path, what)
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
    if args.json_out:
        write_atomic(args.json_out, dumps(result))
        print(f"wrote {args.json_out}")
    if args.html:
        from ..html import bench_html

        write_atomic(args.html, bench_html(result))
        print(f"wrote {args.html}")
    return 0
