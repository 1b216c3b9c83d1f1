"""``promptlens lint [TEMPLATE --cases FILE | --config promptlens.yaml]``: the CI linter's command.

Exit codes: 0 clean, 1 findings at or above ``--fail-on``, 2 usage or input error.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from ..backends.devices import resolve_dtype
from ..names import check_choice
from ..errors import InputError
from ..io import check_output, write_atomic
from ..lint import (DEFAULT_CACHE, DEFAULT_CONFIG, FAIL_ON, FORMATS, LintConfig, LintTarget, clear_cache, lint,
                    load_config)
from ..lint_report import render
from ..segments import SEGMENTATIONS
from .common import add_common_options, make_backend, use_color


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lint", help="check prompt templates in CI: static and model-based rules, SARIF/JUnit output")
    p.add_argument("template", nargs="?", help=f"template file (default: every template in ./{DEFAULT_CONFIG})")
    p.add_argument("--cases", help="cases file (JSONL/JSON/CSV/YAML) for TEMPLATE")
    p.add_argument("--task", help="with a dataset-schema cases file: only this task's records")
    p.add_argument("--config", help=f"project config (default: ./{DEFAULT_CONFIG} when there is no TEMPLATE)")
    p.add_argument("--format", default="text", help=f"one of: {', '.join(FORMATS)}")
    p.add_argument("--output", help="write the report to this file (atomically) instead of stdout")
    p.add_argument("--html", help="also write a self-contained HTML report to this file")
    p.add_argument("--fail-on", default="error", help=f"exit 1 on findings at or above: {', '.join(FAIL_ON)}")
    p.add_argument("--method", help="attribution method (default: the config's, else ablation)")
    p.add_argument("--segmentation", "--by", dest="segmentation", help=f"one of: {', '.join(SEGMENTATIONS)}")
    p.add_argument("--no-cache", action="store_true", help="recompute everything; write no cache")
    p.add_argument("--correction", default="bh", help="multiplicity correction of PL103 across a template's "
                   "segments: bh (Benjamini-Hochberg, the default), holm, none")
    p.add_argument("--cache-dir", default=str(DEFAULT_CACHE), help=f"cache folder (default: {DEFAULT_CACHE})")
    p.add_argument("--clear-cache", action="store_true", help="delete the cached results first (then lint, if "
                   "there is something to lint)")
    add_common_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    check_choice("format", args.format, FORMATS)
    check_choice("--fail-on level", args.fail_on, FAIL_ON)
    if args.segmentation is not None:
        check_choice("segmentation", args.segmentation, SEGMENTATIONS)
    settings: dict[str, str] = {}
    if args.clear_cache:
        removed = clear_cache(args.cache_dir)
        print(f"removed {removed} cached file{'s' if removed != 1 else ''} from {args.cache_dir}", file=sys.stderr)
        if not (args.template or args.config or Path(DEFAULT_CONFIG).is_file()):
            return 0
    from ..promptfoo import is_promptfoo_config, load_suite

    if args.template and is_promptfoo_config(args.template):  # a promptfoo suite: its prompts and tests
        if args.config or args.cases:
            raise InputError("a promptfoo config brings its own tests; leave out --cases and --config")
        suite = load_suite(args.template)
        for line in suite.report():
            print(line, file=sys.stderr)
        targets = [LintTarget(Path(t.path or args.template), Path(args.template), None, template=t,
                              inline_cases=suite.cases) for t in suite.prompts]
    elif args.template:
        if args.config:
            raise InputError("give either TEMPLATE --cases FILE or --config, not both")
        if not args.cases:
            raise InputError(f"TEMPLATE needs --cases FILE (or put it in {DEFAULT_CONFIG} and run without TEMPLATE)")
        targets = [LintTarget(Path(args.template), Path(args.cases), args.task)]
    else:
        config = args.config or (DEFAULT_CONFIG if Path(DEFAULT_CONFIG).is_file() else None)
        if config is None:
            raise InputError(f"nothing to lint: give TEMPLATE --cases FILE, or --config, or create ./{DEFAULT_CONFIG}")
        if args.cases or args.task:
            raise InputError("--cases and --task go with TEMPLATE; with a config, set them per template there")
        targets, settings = load_config(config)
    if args.segmentation:
        targets = [dataclasses.replace(t, segmentation=args.segmentation) for t in targets]
    for path, what in ((args.output, "report"), (args.html, "HTML report")):
        if path:
            check_output(path, what)
    # A remote server, or a local model on another device or dtype, is built here; the default
    # local model is left to lint(), which loads it only on a cache miss.
    args.dtype = resolve_dtype(args.dtype, args.device)  # `auto` that means float32 keeps the lazy load
    custom = args.server or args.device != "cpu" or args.dtype != "float32"
    if custom:
        args.model = args.model or settings.get("model")
    config = LintConfig(model=args.model or settings.get("model"), raw=args.raw,
                        method=args.method or settings.get("method", LintConfig.method),
                        cache_dir=None if args.no_cache else args.cache_dir, seed=args.seed,
                        correction=args.correction, progress=sys.stderr.isatty())
    result = lint(targets, config, backend=make_backend(args) if custom else None)
    color = args.format == "text" and not args.output and use_color(args, sys.stdout)
    text = render(result, args.format, fail_on=args.fail_on, color=color)
    if args.output:
        write_atomic(args.output, text)
    else:
        sys.stdout.write(text)
    if args.html:
        from ..html import lint_html

        write_atomic(args.html, lint_html(result, fail_on=args.fail_on))
    return 1 if result.failed(args.fail_on) else 0
