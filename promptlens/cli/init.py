"""``promptlens init TEMPLATE --cases FILE``: write a commented ``promptlens.yaml`` and a recipe.

Both name the shipped JSON Schema on their first line (``# yaml-language-server: $schema=...``),
and both are checked the way ``lint`` and ``fix`` will read them before ``init`` says it is done.
The template and cases are read first, so a mistake in them is reported here, not on the first
``lint``. Existing files are left alone unless ``--force``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path

from ..errors import InputError
from ..io import check_output, write_atomic
from .common import is_file_arg, read_template_arg

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help="write a commented promptlens.yaml and a recipe for a template and its cases")
    p.add_argument("template", metavar="TEMPLATE", help="the template file (text, or a .json/.yaml messages file)")
    p.add_argument("--cases", required=True, help="its cases file (JSONL/JSON/CSV/YAML)")
    p.add_argument("--task", help="with a dataset-schema cases file: only this task's records")
    p.add_argument("--config", default="promptlens.yaml", help="where to write the project config "
                   "(default: ./promptlens.yaml)")
    p.add_argument("--recipe", default="recipe.yaml", help="where to write the recipe (default: ./recipe.yaml)")
    p.add_argument("--force", action="store_true", help="overwrite the config or recipe if they exist")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(run=run, threads=None)


def _relative(path: Path, folder: Path) -> str:
    """``path`` as written in a file in ``folder``: relative, '/'-separated (absolute on another drive)."""
    try:
        return Path(os.path.relpath(path.resolve(), folder.resolve())).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def _q(value: str) -> str:
    """A YAML scalar for a path or name: plain when that is safe, else JSON-quoted (valid YAML)."""
    return value if re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_./-]*", value) else json.dumps(value)


def _lines(rows: list[tuple[str, str]], column: int = 34) -> str:
    """YAML lines with their comments lined up at ``column``."""
    return "".join(f"{text:<{column}}# {comment}\n" if comment else f"{text}\n" for text, comment in rows)


def config_text(template: Path, cases: Path, task: str | None, folder: Path) -> str:
    """The commented ``promptlens.yaml`` for one template, paths relative to ``folder``."""
    head = (
        f"# yaml-language-server: $schema={_relative(SCHEMAS / 'promptlens.schema.json', folder)}\n"
        "# promptlens' project config, written by `promptlens init`. `promptlens lint` (no arguments, in this\n"
        "# folder) checks every template listed here; `attribute`, `fix` and `bench` take it too when it\n"
        "# lists one template. Paths are relative to this file; the README's `promptlens lint` section has\n"
        "# every key and rule.\n"
    )
    return head + _lines([
        ("# model: path/to/local/model", "default: the embedded SmolLM2-135M-Instruct"),
        ("# method: ablation", "PL103/PL104's attribution: ablation, shapley, lime, kernelshap, ig"),
        ("templates:", ""),
        (f"  - path: {_q(_relative(template, folder))}", 'a file, or a glob such as "prompts/*.txt"'),
        (f"    cases: {_q(_relative(cases, folder))}", "JSONL, JSON, CSV or YAML"),
        (f"    task: {_q(task)}" if task else "    # task: NAME", "only this task's records of a dataset-schema file"),
        ("    segmentation: unit", "sentences, few-shot examples whole; or sentence, line, word, token, span, message, example"),
        ("    # thresholds: {accuracy: 0.5, margin: 0.0, max_cases: 32}", ""),
        ("    # severity: {PL104: note}", "per-rule level overrides"),
        ("    # suppress: [{rule: PL003}, {rule: PL104, line: 3}]", ""),
    ])


def recipe_text(template: Path, cases: Path, task: str | None, folder: Path) -> str:
    """The commented recipe for one template (fix's defaults written out), paths relative to ``folder``."""
    from ..fix_settings import FixConfig

    d = FixConfig()
    cases_line = (f"dataset: {{path: {_q(_relative(cases, folder))}, task: {_q(task)}}}" if task
                  else f"cases: {_q(_relative(cases, folder))}")
    head = (
        f"# yaml-language-server: $schema={_relative(SCHEMAS / 'recipe.schema.json', folder)}\n"
        "# A recipe, written by `promptlens init`: what `promptlens fix` repairs, on which cases, with what\n"
        "# budget (`promptlens fix THIS_FILE`); `bench`, `attribute` and `lint` take it too. Paths are\n"
        "# relative to this file; the values are fix's defaults.\n"
    )
    return head + _lines([
        (f"template_file: {_q(_relative(template, folder))}", ""),
        (cases_line, ""),
        (f"split: {d.split}", "share of the cases fix searches on, the rest validate (or n_train: N)"),
        ("# n_validation: 16", "use at most this many validation cases"),
        (f"budget: {{trials: {d.trials}}}", "add `seconds: 300` for a time budget"),
        (f"threshold: {d.threshold}", "minimum similarity of the repaired template to this one"),
        (f"seed: {d.seed}", ""),
        (f"strategy: {d.strategy}", "which segments to edit: attribution, random, all, tpe"),
        (f"segmentation: {d.segmentation}", "sentences, few-shot examples whole; or sentence, line; message, example for a messages template"),
        (f"top_k: {d.top_k}", "segments edited per round"),
        (f"rounds: {d.rounds}", ""),
        ("# rewrites: [delete, paraphrase, synonym, scaffold, alternative]", ""),
        ('# alternatives: {"<a sentence of it>": ["another way to say it"]}', ""),
        ("# max_regressions: 0", "no train case may turn from right to wrong (default: no limit)"),
    ])


def _check_sources(args: argparse.Namespace) -> None:
    """The template and cases load and fit each other, so the files written will work."""
    from ..cases import check_vars, load_cases
    from ..segments import template_fields

    if not is_file_arg(args.template):
        raise InputError(f"{args.template}: no such template file; check the path (init takes a template file)")
    template = read_template_arg(args.template, "template")
    cases = load_cases(args.cases, task=args.task)
    check_vars(cases, template_fields(template.text), source=args.cases)


def run(args: argparse.Namespace) -> int:
    from ..config import load_recipe
    from ..lint import load_config

    config, recipe = Path(args.config), Path(args.recipe)
    if config.resolve() == recipe.resolve():
        raise InputError(f"--config and --recipe are both {config}; give them different names")
    for path, what in ((config, "config"), (recipe, "recipe")):
        if path.exists() and not args.force:
            raise InputError(f"{path} exists; keep it, or add --force to overwrite it (or write the {what} "
                             f"elsewhere with --{what} FILE)")
        check_output(path, what)
    _check_sources(args)
    template, cases = Path(args.template), Path(args.cases)
    write_atomic(config, config_text(template, cases, args.task, config.parent))
    write_atomic(recipe, recipe_text(template, cases, args.task, recipe.parent))
    load_config(config)  # as lint and fix will read them: a broken file is reported now
    load_recipe(recipe)
    lint_command = "promptlens lint" + ("" if config == Path("promptlens.yaml") else f" --config {config}")
    print(f"wrote {config}: the project config; `{lint_command}` checks it")
    print(f"wrote {recipe}: the recipe; `promptlens fix {recipe}` repairs the template, `promptlens bench {recipe}` "
          "measures its robustness")
    print("both name their JSON Schema on the first line: editors with the YAML language server complete "
          "and check them")
    return 0
