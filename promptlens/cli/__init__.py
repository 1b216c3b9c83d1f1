"""Command line: parse arguments, call the library, map errors to exit codes.

It sits on top of the library and nothing in the library imports it. One module per command
(``attribute``, ``fix``, ``lint``, ``bench``, ``init``); ``common`` holds what they share, among it
the one way every job names its input.

Exit codes: 0 success, 1 findings (lint), 2 usage/input error (one line on stderr, no traceback;
``--debug`` shows it), 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, NoReturn

from ..errors import PromptLensError
from . import attribute, bench, fix, init, lint

COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    attribute.add_parser, fix.add_parser, lint.add_parser, bench.add_parser, init.add_parser,
)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line like every other error (subcommands inherit it)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"promptlens: error: {message}; see `{self.prog} --help`\n")


def set_threads(n: int) -> None:
    """torch's CPU threads, without importing torch for a run that may never need it (a cached
    lint): torch reads ``OMP_NUM_THREADS`` when it loads; once loaded, it is told directly."""
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    else:
        os.environ["OMP_NUM_THREADS"] = str(n)


def build_parser() -> argparse.ArgumentParser:
    from .._version import __version__

    parser = _Parser(prog="promptlens", description="Explain and repair LLM prompts.")
    parser.add_argument("--version", action="version", version=f"promptlens {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``promptlens ARGV``; returns the exit code. Example: ``main(["lint", "--help"])``."""
    args = build_parser().parse_args(argv)
    from ..backends.devices import show_warnings_on_one_line

    show_warnings_on_one_line()
    if args.threads is not None:
        if args.threads < 1:
            print(f"promptlens: error: --threads {args.threads} is out of range; give 1 or more", file=sys.stderr)
            return 2
        set_threads(args.threads)
    try:
        return int(args.run(args))
    except PromptLensError as exc:
        if args.debug:
            raise
        message = " ".join(line.strip() for line in str(exc).splitlines())  # one line, whatever it quotes
        print(f"promptlens: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("promptlens: interrupted", file=sys.stderr)
        return 130


__all__ = ["main", "build_parser", "COMMANDS"]
