"""``promptlens lint [INPUT]``: the CI linter's command. INPUT is named as for every command
(``cli.common``): a recipe, a template with ``--cases``, a ``promptlens.yaml`` (the default), a
promptfoo config; lint checks every template a config or suite names.

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
from ..lint import DEFAULT_CACHE, DEFAULT_CONFIG, FAIL_ON, FORMATS, LintConfig, clear_cache, lint
from ..lint_report import render
from ..segments import SEGMENTATIONS
from .common import add_attribution_options, add_common_options, add_input_options, make_backend, resolve_input, use_color


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lint", help="check prompt templates in CI: static and model-based rules, SARIF/JUnit output")
    add_input_options(p)
    p.add_argument("--format", default="text", help=f"one of: {', '.join(FORMATS)}")
    p.add_argument("--output", help="write the report to this file (atomically) instead of stdout")
    p.add_argument("--html", help="also write a self-contained HTML report to this file")
    p.add_argument("--fail-on", default="error", help=f"exit 1 on findings at or above: {', '.join(FAIL_ON)}")
    add_attribution_options(p, "PL103")
    p.add_argument("--no-cache", action="store_true", help="recompute everything; write no cache")
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
    if args.clear_cache:
        removed = clear_cache(args.cache_dir)
        print(f"removed {removed} cached file{'s' if removed != 1 else ''} from {args.cache_dir}", file=sys.stderr)
        if not (args.input or args.template or args.config or Path(DEFAULT_CONFIG).is_file()):
            return 0
    job = resolve_input(args, "lint")
    targets, settings = list(job.targets), job.settings
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
