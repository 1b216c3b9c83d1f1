"""Command line: parse arguments, call the library, map errors to exit codes.

Exit codes: 0 success, 1 findings (lint), 2 usage/input error (one line on stderr, no traceback;
``--debug`` shows it).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NoReturn

from .errors import InputError, PromptLensError

if TYPE_CHECKING:
    from .approx import ApproxConfig

_PROMPT_SUFFIXES = (".txt", ".md", ".prompt", ".tmpl", ".j2")


def read_text_arg(value: str, what: str) -> str:
    """A prompt given inline, or the path of a UTF-8 file holding it."""
    path = Path(value)
    looks_like_file = path.suffix in _PROMPT_SUFFIXES and "\n" not in value
    if not looks_like_file and not (len(value) < 4096 and "\n" not in value and path.is_file()):
        return value
    if path.is_dir():
        raise InputError(f"{value} is a folder; give the {what} file inside it")
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise InputError(f"{value}: no such file; check the path of the {what}") from exc
    except OSError as exc:
        raise InputError(f"{value}: cannot read ({exc.strerror}); check its permissions") from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(f"{value}:{line}: not UTF-8 (byte {exc.start}); save the file as UTF-8") from exc


def read_template_arg(value: str, what: str = "prompt"):  # -> MessageTemplate
    """A template given inline, as a text file, or as a messages file (.json/.yaml/.yml, read by
    ``templates.load_template``); the format is detected from the file."""
    from .templates import DOUBLE_SUFFIXES, MESSAGE_SUFFIXES, load_template, text_template

    path = Path(value)
    if "\n" not in value and len(value) < 4096 and path.suffix.lower() in MESSAGE_SUFFIXES + DOUBLE_SUFFIXES:
        return load_template(path)
    text = read_text_arg(value, what)
    return text_template(text, path=value if text is not value else None)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="local causal LM folder (default: the embedded SmolLM2-135M-Instruct)")
    p.add_argument("--raw", action="store_true", help="plain completion: no chat template")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default="cpu", help="torch device of the local model: cpu, cuda, cuda:1, mps (default: cpu)")
    p.add_argument("--dtype", default="float32", help="local model dtype: float32, bfloat16, float16, or auto "
                   "(bfloat16 on a CPU with native bf16, else float32; default: float32)")
    p.add_argument("--server", metavar="URL", help="score on an OpenAI-compatible server (llama-cpp-python, vLLM) "
                   "instead of a local model, e.g. http://127.0.0.1:8000; --model then only names the tokenizer")
    p.add_argument("--server-model", metavar="NAME", help="the server's model name (the request's model field)")
    p.add_argument("--server-format", default="auto", help="auto, echo (OpenAI echo+logprobs) or vllm (prompt_logprobs)")
    p.add_argument("--server-concurrency", type=int, default=4, help="requests in flight at once (default 4)")
    p.add_argument("--api-key-env", metavar="VAR", help="send the API key held in this environment variable "
                   "(default: OPENAI_API_KEY when it is set); the key itself is never printed or stored")
    p.add_argument("--server-ca", metavar="FILE.pem", help="also trust these CA certificates for an https "
                   "--server (e.g. a self-signed one); SSL_CERT_FILE works too")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("--no-color", action="store_true", help="no ANSI colours (also: NO_COLOR env var)")


def make_backend(args: argparse.Namespace):  # -> Backend
    """The backend the common options ask for: a remote server (``--server``) or a local model."""
    if getattr(args, "server", None):
        from .backends.remote import FORMATS, remote_backend

        from .attribution import check_choice

        check_choice("server format", args.server_format, FORMATS)
        if args.server_concurrency < 1:
            raise InputError(f"--server-concurrency {args.server_concurrency} is out of range; give 1 or more")
        return remote_backend(args.server, model=args.server_model, tokenizer_from=args.model,
                              raw=True if args.raw else None, format=args.server_format,
                              concurrency=args.server_concurrency, api_key=api_key(args.api_key_env),
                              ca_file=args.server_ca)
    from .backends.hf import load_backend

    return load_backend(args.model, raw=True if args.raw else None, dtype=args.dtype, device=args.device)


def api_key(variable: str | None) -> str | None:
    """The API key for ``--server``: from the environment variable the user named, else from
    ``OPENAI_API_KEY`` when it is set. Only the variable's name ever appears in a message."""
    if variable is None:
        return os.environ.get("OPENAI_API_KEY") or None
    if not variable.strip() or "=" in variable:
        raise InputError(f"--api-key-env takes the name of an environment variable, such as OPENAI_API_KEY, "
                         "not the key itself")
    value = os.environ.get(variable)
    if not value:
        raise InputError(f"--api-key-env {variable}: that environment variable is not set; export {variable}=... "
                         "or drop --api-key-env")
    return value


def _add_attribute(sub: argparse._SubParsersAction) -> None:
    from .attribution import BASELINES, METHODS
    from .scoring import OBJECTIVES
    from .segments import SEGMENTATIONS

    p = sub.add_parser("attribute", help="rank a prompt's segments by their effect on the wanted output")
    p.add_argument("prompt", help="prompt or template text, a file holding it, or a messages file "
                   "(.json/.yaml: a list of {role, content}, or an object with a `messages` list)")
    p.add_argument("--target", help="the wanted output (single prompt, no fields)")
    p.add_argument("--cases", help="cases file (JSONL/JSON/CSV/YAML) that fills the template's fields")
    p.add_argument("--task", help="with a dataset-schema cases file: only this task's records")
    p.add_argument("--limit", type=int, help="use the first N cases only")
    p.add_argument("--method", default="ablation", help=f"one of: {', '.join(METHODS)}")
    p.add_argument("--mode", default="exact",
                   help="exact (leave-one-out), or an approximation of it for long prompts, checked against exact "
                        "on its most harmful segments: hierarchical, surrogate, proxy")
    p.add_argument("--verify-k", type=int, default=5, help="approximate modes: most harmful segments re-measured exactly")
    p.add_argument("--budget", type=int, default=32, help="--mode surrogate: random ablation masks to score")
    p.add_argument("--refine", type=float, default=0.25,
                   help="--mode hierarchical: split a unit whose interval reaches this share of the largest effect")
    p.add_argument("--proxy", default="auto",
                   help="--mode proxy: auto (the copy measured fastest here), bfloat16, int8")
    p.add_argument("--proxy-model", help="--mode proxy: a smaller model folder of the same family as the proxy")
    p.add_argument("--segmentation", "--by", dest="segmentation", default="sentence", help=f"one of: {', '.join(SEGMENTATIONS)}")
    p.add_argument("--baseline", default="remove", help=f"one of: {', '.join(BASELINES)}")
    p.add_argument("--objective", help=f"one of: {', '.join(OBJECTIVES)} (default: margin when cases have choices)")
    p.add_argument("--samples", type=int, help="Shapley permutations / LIME and KernelSHAP samples")
    p.add_argument("--ig-steps", type=int, default=32)
    p.add_argument("--edit-fields", action="store_true", help="treat template fields as segments too")
    p.add_argument("--json", dest="json_out", help="write the full result to this JSON file")
    p.add_argument("--top", type=int, help="show only the N most harmful segments")
    p.add_argument("--html", help="write a self-contained HTML report to this file")
    p.add_argument("--confidence", type=float, default=0.95, help="level of the intervals (default 0.95)")
    p.add_argument("--correction", default="bh", help="multiplicity correction of the harmful/helpful verdicts "
                   "across segments: bh (Benjamini-Hochberg, default), holm, none")
    _common(p)
    p.set_defaults(run=_run_attribute)


def _approx_config(args: argparse.Namespace) -> ApproxConfig:
    """The approximate mode's settings, checked before the model loads."""
    from .approx import MODES, ApproxConfig
    from .attribution import check_choice
    from .proxy import PROXIES

    check_choice("mode", args.mode, MODES)
    approx = ApproxConfig(verify_k=args.verify_k, refine=args.refine, budget=args.budget,
                          proxy=args.proxy_model or args.proxy)
    if args.mode != "exact":
        approx.check()
        if args.method != "ablation":
            raise InputError(f"--mode {args.mode} approximates leave-one-out ablation; use --method ablation (the default)")
    if args.proxy_model and not Path(args.proxy_model, "config.json").is_file():
        raise InputError(f"--proxy-model {args.proxy_model}: no config.json there; give a model folder saved with "
                         "save_pretrained")
    if args.proxy not in PROXIES:
        raise InputError(f"unknown proxy {args.proxy!r}; choose one of: {', '.join(PROXIES)} (or --proxy-model PATH)")
    return approx


def _run_attribute(args: argparse.Namespace) -> int:
    from .attribution import BASELINES, METHODS, attribute, check_choice, check_inputs
    from .backends.base import check_method
    from .scoring import OBJECTIVES
    from .segments import SEGMENTATIONS
    from .cases import load_cases
    from .report import attribution_table, check_output, dumps, write_atomic

    # Check the cheap things before the model loads.
    check_choice("method", args.method, METHODS)
    approx = _approx_config(args)
    check_choice("segmentation", args.segmentation, SEGMENTATIONS)
    check_choice("baseline", args.baseline, BASELINES)
    from .stats import check_confidence, check_correction

    check_correction(args.correction)
    check_confidence(args.confidence)
    if args.objective is not None:
        check_choice("objective", args.objective, OBJECTIVES)
    prompt = read_template_arg(args.prompt, "prompt").text
    cases = None
    if args.cases:
        if args.target is not None:
            raise InputError("give either --target or --cases, not both")
        cases = load_cases(args.cases, task=args.task)[: args.limit]
    if args.samples is not None and args.samples < 1:
        raise InputError(f"--samples {args.samples} is out of range; give a positive number")
    check_inputs(prompt, args.target, cases)
    for path, what in ((args.json_out, "JSON result"), (args.html, "HTML report")):
        if path:
            check_output(path, what)
    backend = make_backend(args)
    check_method(args.method, backend)
    result = attribute(
        prompt, args.target, cases=cases, backend=backend, method=args.method,
        segmentation=args.segmentation, baseline=args.baseline, objective=args.objective,
        n_samples=args.samples, seed=args.seed, edit_fields=args.edit_fields, ig_steps=args.ig_steps,
        mode=args.mode, approx=approx, confidence=args.confidence, correction=args.correction,
    )
    color = not args.no_color and "NO_COLOR" not in os.environ and sys.stdout.isatty()
    print(attribution_table(result, color=color, top=args.top))
    if args.json_out:
        write_atomic(args.json_out, dumps(result))
        print(f"wrote {args.json_out}")
    if args.html:
        from .html_report import attribution_html

        write_atomic(args.html, attribution_html(result))
        print(f"wrote {args.html}")
    return 0


COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (_add_attribute,)

from .fix_cli import add_fix_parser  # noqa: E402  (fix_cli imports cli lazily)

COMMANDS += (add_fix_parser,)

from .lint import add_lint_parser  # noqa: E402  (lint imports cli lazily)

COMMANDS += (add_lint_parser,)

from .bench_cli import add_bench_parser  # noqa: E402  (bench_cli imports cli lazily)

COMMANDS += (add_bench_parser,)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line like every other error (subcommands inherit it)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"promptlens: error: {message}; see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    from ._version import __version__

    parser = _Parser(prog="promptlens", description="Explain and repair LLM prompts.")
    parser.add_argument("--version", action="version", version=f"promptlens {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .backends.devices import show_warnings_on_one_line

    show_warnings_on_one_line()
    if args.threads is not None:
        if args.threads < 1:
            print(f"promptlens: error: --threads {args.threads} is out of range; give 1 or more", file=sys.stderr)
            return 2
        import torch

        torch.set_num_threads(args.threads)
    try:
        return args.run(args)
    except PromptLensError as exc:
        if args.debug:
            raise
        message = " ".join(line.strip() for line in str(exc).splitlines())  # one line, whatever it quotes
        print(f"promptlens: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("promptlens: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
