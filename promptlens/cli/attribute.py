"""``promptlens attribute INPUT``: rank a prompt's segments by their effect on the wanted output.

INPUT is named as for every command (``cli.common``: a recipe, a template with ``--cases`` or
``--target``, a ``promptlens.yaml`` with one template, a promptfoo config)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from typing import TYPE_CHECKING

# Only what the parser shows is imported here (cheap); the job's modules load in run().
from .. import progress
from ..backends.base import GRADIENT_METHODS, SCORE_ONLY_METHODS
from ..errors import InputError
from ..names import BASELINES, check_choice
from ..scoring import OBJECTIVES
from ..segments import SEGMENTATIONS
from .common import (add_attribution_options, add_common_options, add_input_options, check_result_files, make_backend,
                     read_input, resolve_input, use_color, write_result_files)

if TYPE_CHECKING:
    from ..approx import ApproxConfig

METHODS = SCORE_ONLY_METHODS + GRADIENT_METHODS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("attribute", help="rank a prompt's segments by their effect on the wanted output")
    add_input_options(p)
    p.add_argument("--target", help="the wanted output (a template without fields, instead of cases)")
    p.add_argument("--limit", type=int, help="use the first N cases only")
    add_attribution_options(p, "the harmful/helpful verdicts")
    p.add_argument("--baseline", default="remove", help=f"one of: {', '.join(BASELINES)}")
    p.add_argument("--objective", help=f"one of: {', '.join(OBJECTIVES)} (default: margin when cases have choices)")
    p.add_argument("--mode", default="exact",
                   help="exact (leave-one-out), or an approximation of it for long prompts, checked against exact "
                        "on its most harmful segments: hierarchical, surrogate, proxy, knockout")
    p.add_argument("--verify-k", type=int, default=5, help="approximate modes: most harmful segments re-measured exactly")
    p.add_argument("--budget", type=int, default=32, help="--mode surrogate: random ablation masks to score")
    p.add_argument("--refine", type=float, default=0.25,
                   help="--mode hierarchical: split a unit whose interval reaches this share of the largest effect")
    p.add_argument("--proxy", default="auto",
                   help="--mode proxy: auto (measured here: the most faithful of the fastest copies), bf16-blocks, bfloat16, int8")
    p.add_argument("--proxy-model", help="--mode proxy: a smaller model folder of the same family as the proxy")
    p.add_argument("--window", type=int, default=0,
                   help="--mode knockout: messages before the last one rerun with it (measured exactly)")
    p.add_argument("--samples", type=int, help="Shapley permutations / LIME and KernelSHAP samples")
    p.add_argument("--ig-steps", type=int, default=32)
    p.add_argument("--edit-fields", action="store_true", help="treat template fields as segments too")
    p.add_argument("--json", dest="json_out", help="write the full result to this JSON file")
    p.add_argument("--top", type=int, help="show only the N most harmful segments")
    p.add_argument("--html", help="write a self-contained HTML report to this file")
    p.add_argument("--confidence", type=float, default=0.95, help="level of the intervals (default 0.95)")
    add_common_options(p)
    p.set_defaults(run=run)


def _approx_config(args: argparse.Namespace) -> ApproxConfig:
    """The approximate mode's settings, checked before the model loads."""
    from ..approx import KNOCKOUT_BASELINE, MODES, ApproxConfig
    from ..proxy import PROXIES

    check_choice("mode", args.mode, MODES)
    approx = ApproxConfig(verify_k=args.verify_k, refine=args.refine, budget=args.budget,
                          proxy=args.proxy_model or args.proxy, window=args.window)
    if args.mode != "exact":
        approx.check()
        if args.method != "ablation":
            raise InputError(f"--mode {args.mode} approximates leave-one-out ablation; use --method ablation (the default)")
    if args.mode == "knockout" and args.baseline != "remove":
        raise InputError(KNOCKOUT_BASELINE)
    if args.proxy_model and not Path(args.proxy_model, "config.json").is_file():
        raise InputError(f"--proxy-model {args.proxy_model}: no config.json there; give a model folder saved with "
                         "save_pretrained")
    if args.proxy not in PROXIES:
        raise InputError(f"unknown proxy {args.proxy!r}; choose one of: {', '.join(PROXIES)} (or --proxy-model PATH)")
    return approx


def _inputs(args: argparse.Namespace) -> tuple[str, list | None, str]:
    """The prompt, its cases (None: one --target, or the model's own output) and the segmentation."""
    if args.target is not None and args.cases:
        raise InputError("give either --target or --cases, not both")
    job = resolve_input(args, "attribute", needs_cases=False)
    target = job.one("attribute")
    template, cases = read_input(target, limit=args.limit)
    if args.target is not None and cases:
        raise InputError(f"{job.name} brings its cases; leave out --target (or give a template with --target)")
    return template.text, cases or None, args.segmentation or target.segmentation


def run(args: argparse.Namespace) -> int:
    from ..attribution import attribute, check_baseline, check_inputs
    from ..backends.base import check_method
    from ..report import attribution_table

    # Check the cheap things before the model loads.
    method = args.method or "ablation"
    check_choice("method", method, METHODS)
    if args.segmentation is not None:
        check_choice("segmentation", args.segmentation, SEGMENTATIONS)
    check_choice("baseline", args.baseline, BASELINES)
    from ..stats import check_confidence, check_correction

    check_correction(args.correction)
    check_confidence(args.confidence)
    if args.objective is not None:
        check_choice("objective", args.objective, OBJECTIVES)
    args.method = method  # _approx_config reads it
    approx = _approx_config(args)
    if args.samples is not None and args.samples < 1:
        raise InputError(f"--samples {args.samples} is out of range; give a positive number")
    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit {args.limit} is out of range; give 1 or more")
    prompt, cases, segmentation = _inputs(args)
    check_inputs(prompt, args.target, cases)
    check_baseline(prompt, args.baseline, segmentation, method, args.edit_fields)
    check_result_files(args)
    backend = make_backend(args)
    check_method(method, backend)
    with progress.bar("attribute", sys.stderr.isatty()):  # forward passes, as the scorer runs them
        result = attribute(
            prompt, args.target, cases=cases, backend=backend, method=method,
            segmentation=segmentation, baseline=args.baseline, objective=args.objective,
            n_samples=args.samples, seed=args.seed, edit_fields=args.edit_fields, ig_steps=args.ig_steps,
            mode=args.mode, approx=approx, confidence=args.confidence, correction=args.correction,
        )
    print(attribution_table(result, color=use_color(args, sys.stdout), top=args.top))
    from ..html import attribution_html

    write_result_files(args, result, attribution_html)
    return 0
