"""What every command shares: the backend options, reading a text argument, the colour decision."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from ..backends.base import Backend
from ..errors import InputError
from ..io import read_text

if TYPE_CHECKING:
    from ..promptfoo import PromptfooSuite
    from ..templates import MessageTemplate

_PROMPT_SUFFIXES = (".txt", ".md", ".prompt", ".tmpl", ".j2")


def read_text_arg(value: str, what: str) -> str:
    """A prompt given inline, or the path of a UTF-8 file holding it."""
    path = Path(value)
    looks_like_file = path.suffix in _PROMPT_SUFFIXES and "\n" not in value
    if not looks_like_file and not (len(value) < 4096 and "\n" not in value and path.is_file()):
        return value
    return read_text(path, what, name=value)


def read_template_arg(value: str, what: str = "prompt") -> MessageTemplate:
    """A template given inline, as a text file, or as a messages file (.json/.yaml/.yml, read by
    ``template_files.load_template``); the format is detected from the file."""
    from ..template_files import load_template
    from ..templates import DOUBLE_SUFFIXES, MESSAGE_SUFFIXES, text_template

    path = Path(value)
    if "\n" not in value and len(value) < 4096 and path.suffix.lower() in MESSAGE_SUFFIXES + DOUBLE_SUFFIXES:
        return load_template(path)
    text = read_text_arg(value, what)
    return text_template(text, path=value if text is not value else None)


def promptfoo_suite(value: str | None) -> PromptfooSuite | None:
    """The promptfoo suite ``value`` names, its report printed to stderr; None for anything else.
    A suite with several prompts is used by its first one, and the report says so."""
    from ..promptfoo import is_promptfoo_config, load_suite

    if not value or "\n" in value or len(value) > 4096 or not is_promptfoo_config(value):
        return None
    suite = load_suite(value)
    for line in suite.report():
        print(line, file=sys.stderr)
    if len(suite.prompts) > 1:
        print(f"promptfoo {suite.path}: using {suite.prompt_labels[0]}; `promptlens lint` checks every prompt",
              file=sys.stderr)
    return suite


def is_file_arg(value: str) -> bool:
    """``value`` names an existing file (rather than being inline text)."""
    return "\n" not in value and len(value) < 4096 and Path(value).is_file()


def add_common_options(p: argparse.ArgumentParser) -> None:
    """The model, device and output options every command takes."""
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
    p.add_argument("--no-color", action="store_true", help="no ANSI colours (also: NO_COLOR env var; FORCE_COLOR forces them)")


def make_backend(args: argparse.Namespace) -> Backend:
    """The backend the common options ask for: a remote server (``--server``) or a local model."""
    if getattr(args, "server", None):
        from ..names import check_choice
        from ..backends.remote import FORMATS, remote_backend

        check_choice("server format", args.server_format, FORMATS)
        if args.server_concurrency < 1:
            raise InputError(f"--server-concurrency {args.server_concurrency} is out of range; give 1 or more")
        return remote_backend(args.server, model=args.server_model, tokenizer_from=args.model,
                              raw=True if args.raw else None, format=args.server_format,
                              concurrency=args.server_concurrency, api_key=api_key(args.api_key_env),
                              ca_file=args.server_ca)
    from ..backends.hf import load_backend

    return load_backend(args.model, raw=True if args.raw else None, dtype=args.dtype, device=args.device)


def api_key(variable: str | None) -> str | None:
    """The API key for ``--server``: from the environment variable the user named, else from
    ``OPENAI_API_KEY`` when it is set. Only the variable's name ever appears in a message."""
    if variable is None:
        return os.environ.get("OPENAI_API_KEY") or None
    if not variable.strip() or "=" in variable:
        raise InputError("--api-key-env takes the name of an environment variable, such as OPENAI_API_KEY, "
                         "not the key itself")
    value = os.environ.get(variable)
    if not value:
        raise InputError(f"--api-key-env {variable}: that environment variable is not set; export {variable}=... "
                         "or drop --api-key-env")
    return value


def use_color(args: argparse.Namespace, stream: TextIO) -> bool:
    """ANSI colours on ``stream``? ``--no-color`` or ``NO_COLOR`` (set at all, https://no-color.org)
    turn them off; else ``FORCE_COLOR`` (set, not "0") turns them on; else only on a terminal."""
    if getattr(args, "no_color", False) or "NO_COLOR" in os.environ:
        return False
    if os.environ.get("FORCE_COLOR", "") not in ("", "0"):
        return True
    return stream.isatty()
