"""What every command shares: the job's input (one way to name it), the backend options, reading
a text argument, the colour decision, the report files."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, TextIO, TypeVar

from ..backends.base import Backend
from ..errors import InputError
from ..io import read_text

if TYPE_CHECKING:
    from ..config import Recipe
    from ..lint import LintTarget
    from ..templates import MessageTemplate
    from ..types import Case

_PROMPT_SUFFIXES = (".txt", ".md", ".prompt", ".tmpl", ".j2")
R = TypeVar("R")  # a job's result


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


def is_file_arg(value: str) -> bool:
    """``value`` names an existing file (rather than being inline text)."""
    return "\n" not in value and len(value) < 4096 and Path(value).is_file()


def add_attribution_options(p: argparse.ArgumentParser, verdicts: str) -> None:
    """The attribution options attribute and lint share (lint's PL103/PL104 run an attribution)."""
    from ..backends.base import GRADIENT_METHODS, SCORE_ONLY_METHODS
    from ..segments import SEGMENTATIONS

    p.add_argument("--method", help=f"attribution method, one of: {', '.join(SCORE_ONLY_METHODS + GRADIENT_METHODS)} "
                   "(default: a config's method, else ablation)")
    p.add_argument("--segmentation", "--by", dest="segmentation", help=f"one of: {', '.join(SEGMENTATIONS)} "
                   "(default: the recipe's or config's, else unit: sentences, and each few-shot example of a message template whole)")
    p.add_argument("--correction", default="bh", help=f"multiplicity correction of {verdicts} across a template's "
                   "segments: bh (Benjamini-Hochberg, the default), holm, none")


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


# --- the job's input: one way to name it for every command -----------------------------------
#
# Every command takes INPUT as one of: a recipe (fix's YAML: template, cases, budget), a project
# config (promptlens.yaml: templates and their cases, as lint reads it), a promptfoo config, or a
# template (inline text, a text file or a messages file) with --cases FILE. No INPUT: the
# --template flag, else ./promptlens.yaml. --template and --cases replace what a recipe or a
# one-template config names. The library never sees argparse: this resolves to LintTargets
# (one template each, with how to read it) and a Recipe where one was given.

INPUT_KINDS = ("recipe", "config", "promptfoo", "template")
NO_CASES = Path()  # a target's cases path when the template came without cases (attribute --target)


def add_input_options(p: argparse.ArgumentParser) -> None:
    """INPUT, --template, --cases, --task and --config: the same for attribute, fix, lint and bench."""
    from ..lint import DEFAULT_CONFIG

    p.add_argument("input", nargs="?", metavar="INPUT",
                   help=f"a recipe (.yaml), a project config ({DEFAULT_CONFIG}), a promptfoo config, or a template "
                   "(prompt text, a file holding it, or a .json/.yaml messages file) with --cases FILE "
                   f"(default: ./{DEFAULT_CONFIG}); `promptlens init` writes a recipe and a config")
    p.add_argument("--template", help="template text or file: stands for INPUT, or replaces the template a "
                   "recipe or a one-template config names")
    p.add_argument("--cases", help="cases file (JSONL/JSON/CSV/YAML) for the template (replaces a recipe's or "
                   "a one-template config's)")
    p.add_argument("--task", help="with a dataset-schema --cases file: only this task's records")
    p.add_argument("--config", help=f"project config (the same as giving it as INPUT; default: ./{DEFAULT_CONFIG} "
                   "when there is no INPUT)")


@dataclass(frozen=True)
class JobInput:
    """What a command runs on, however it was named: the templates (as lint's targets: the file,
    its cases, how to segment and judge it) and, for a recipe, the recipe itself."""

    kind: str  # one of INPUT_KINDS
    name: str  # the file (or text) the user gave, for messages
    targets: tuple[LintTarget, ...]
    recipe: Recipe | None = None
    settings: dict[str, str] = field(default_factory=dict)  # a config's model and method
    cases_flag: bool = False  # the cases came from --cases
    note: str | None = None  # said on stderr when a one-template job picks the first of several

    def one(self, job: str) -> LintTarget:
        """The single template ``job`` works on (a promptfoo suite: its first prompt)."""
        if len(self.targets) > 1 and self.kind != "promptfoo":
            names = ", ".join(_display_path(t.path) for t in self.targets[:5])
            raise InputError(f"{self.name} names {len(self.targets)} templates ({names}); {job} works on one: "
                             "give TEMPLATE --cases FILE or a recipe (lint checks them all)")
        if self.note:
            print(self.note, file=sys.stderr)
        return self.targets[0]


def input_kind(value: str) -> str:
    """Which of INPUT_KINDS ``value`` is, from the file's name and top-level keys (not its validity:
    the reader of that kind reports what is wrong, with the line). A YAML file that is neither a
    config nor a messages file (a ``messages:`` mapping, or a list of messages) is a recipe, so
    a broken or missing one is reported by the recipe reader."""
    from ..lint import DEFAULT_CONFIG
    from ..promptfoo import is_promptfoo_config

    if not is_file_arg(value):
        short = "\n" not in value and len(value) < 4096
        missing_yaml = short and Path(value).suffix.lower() in (".yaml", ".yml") and not Path(value).exists()
        return "recipe" if missing_yaml else "template"
    path = Path(value)
    yaml_file = path.suffix.lower() in (".yaml", ".yml")
    if is_promptfoo_config(path):
        return "promptfoo"
    if path.name == DEFAULT_CONFIG:
        return "config"
    if not yaml_file:
        return "template"
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return "recipe"  # its reader names the line of the problem
    if isinstance(data, dict):
        return "config" if "templates" in data else "template" if "messages" in data else "recipe"
    messages = isinstance(data, list) and data and all(isinstance(m, dict) for m in data)
    return "template" if messages else "recipe"


def resolve_input(args: argparse.Namespace, job: str, *, needs_cases: bool = True) -> JobInput:
    """The templates and cases ``args`` name (module section above); every mistake is one
    InputError naming the fix. ``needs_cases=False``: a template may come without cases
    (attribute: a --target, or the model's own output)."""
    from ..lint import DEFAULT_CONFIG

    if args.input is not None and args.config:
        raise InputError(f"give INPUT or --config {args.config}, not both")
    if args.task and not args.cases:
        raise InputError("--task selects records of a --cases file; give --cases too (in a recipe or config, "
                         "set the task there)")
    value = args.input if args.input is not None else args.config
    if value is None and args.template is None:
        if not Path(DEFAULT_CONFIG).is_file():
            raise InputError(f"nothing to {job}: give a recipe, TEMPLATE --cases FILE, or a {DEFAULT_CONFIG} "
                             f"(`promptlens init TEMPLATE --cases FILE` writes a recipe and a {DEFAULT_CONFIG})")
        value = DEFAULT_CONFIG
    kind = "config" if args.config else input_kind(value) if value is not None else "template"
    if kind == "template":
        got = _template_input(value if value is not None else args.template, args, job, needs_cases)
    elif kind == "promptfoo":
        got = _promptfoo_input(value, args)
    elif kind == "recipe":
        got = _recipe_input(value, args)
    else:
        got = _config_input(value, args)
    return got


def _template_input(value: str, args: argparse.Namespace, job: str, needs_cases: bool) -> JobInput:
    if args.input is not None and args.template:
        raise InputError(f"{args.input} is a template; give it as INPUT or as --template, not both")
    fields = [] if args.cases else _fields(value)
    if not args.cases and (needs_cases or fields):
        if is_file_arg(value):
            raise InputError(f"{_short_arg(value)}: a template needs its cases; add --cases FILE, or give a recipe "
                             f"or a promptlens.yaml (`promptlens init {_short_arg(value)} --cases FILE` writes both)")
        has = f"has fields {', '.join('{' + f + '}' for f in fields)}" if fields else "needs cases"
        raise InputError(f"the template {has}; give cases that fill them with --cases FILE, or give a recipe or "
                         "a promptlens.yaml")
    target = _template_target(value, Path(args.cases) if args.cases else NO_CASES, args.task)
    return JobInput("template", value, (target,), cases_flag=bool(args.cases))


def _fields(value: str) -> list[str]:
    from ..segments import template_fields

    return list(template_fields(read_template_arg(value, "template").text))


def _template_target(value: str, cases: Path, task: str | None) -> LintTarget:
    """A target for the template ``value``: a file is left for lint to read itself (its inline
    markers), inline text is read here."""
    from ..lint import LintTarget

    if is_file_arg(value):
        return LintTarget(Path(value), cases, task)
    return LintTarget(Path("<template>"), cases, task, template=read_template_arg(value, "template"))


def _promptfoo_input(value: str, args: argparse.Namespace) -> JobInput:
    from ..lint import LintTarget
    from ..promptfoo import load_suite

    if args.cases or args.template:
        raise InputError(f"{value} is a promptfoo config and brings its own prompts and tests; leave out "
                         "--cases and --template")
    suite = load_suite(value)
    for line in suite.report():
        print(line, file=sys.stderr)
    targets = tuple(LintTarget(Path(t.path or value), Path(value), None, template=t, inline_cases=suite.cases)
                    for t in suite.prompts)
    note = (f"promptfoo {suite.path}: using {suite.prompt_labels[0]}; `promptlens lint` checks every prompt"
            if len(suite.prompts) > 1 else None)
    return JobInput("promptfoo", value, targets, note=note)


def _recipe_input(value: str, args: argparse.Namespace) -> JobInput:
    """A recipe's template and cases as a target (lint reports at the template's file, or at the
    recipe for an inline template; its hint is `promptlens fix RECIPE`); --template and --cases
    replace them."""
    from ..cases import load_cases
    from ..config import load_recipe
    from ..lint import LintTarget

    recipe = load_recipe(value)
    # The cases travel with the target, as a promptfoo suite's do: `cases` names the file that holds them.
    cases = tuple(load_cases(args.cases, task=args.task)) if args.cases else recipe.cases
    if args.template:
        target = _template_target(args.template, Path(value), args.task)
    else:
        source = recipe.source
        path = Path(source.path) if source is not None and source.path else Path(value)
        target = LintTarget(path, Path(value), args.task, template=source)
    target = dataclasses.replace(target, inline_cases=cases, segmentation=recipe.config.segmentation)
    return JobInput("recipe", value, (target,), recipe=recipe, cases_flag=bool(args.cases))


def _config_input(value: str, args: argparse.Namespace) -> JobInput:
    from ..lint import load_config

    targets, settings = load_config(value)
    if (args.cases or args.template) and len(targets) > 1:
        raise InputError(f"{value} names {len(targets)} templates; --cases and --template replace those of a "
                         "one-template config only (set them per template there)")
    if args.template or args.cases:
        t = targets[0]
        cases = Path(args.cases) if args.cases else t.cases
        task = args.task if args.cases else t.task
        if args.template:  # the entry's settings (segmentation, thresholds, ...) stay
            new = _template_target(args.template, cases, task)
            t = dataclasses.replace(t, path=new.path, template=new.template)
        targets = [dataclasses.replace(t, cases=cases, task=task)]
    return JobInput("config", value, tuple(targets), settings=settings, cases_flag=bool(args.cases))


def read_input(target: LintTarget, *, limit: int | None = None) -> tuple[MessageTemplate, list[Case]]:
    """The template and cases of one target, as attribute, fix and bench use them (no cases file:
    no cases)."""
    from ..cases import load_cases

    template = target.template if target.template is not None else read_template_arg(str(target.path), "template")
    if target.inline_cases is not None:
        cases = list(target.inline_cases)
    elif target.cases != NO_CASES:
        cases = load_cases(target.cases, task=target.task)
    else:
        cases = []
    return template, cases[:limit]


def _display_path(path: Path) -> str:
    try:
        return Path(os.path.relpath(path)).as_posix()
    except ValueError:
        return path.as_posix()


def _short_arg(value: str) -> str:
    """A template argument as a message shows it: the file name, or the start of inline text."""
    one_line = " ".join(value.split())
    return one_line if len(one_line) <= 40 else one_line[:37] + "..."


def write_result_files(args: argparse.Namespace, result: R, html: Callable[[R], str]) -> None:
    """``--json FILE`` and ``--html FILE`` of a job's result, each written atomically and named."""
    from ..io import write_atomic
    from ..report import dumps

    if getattr(args, "json_out", None):
        write_atomic(args.json_out, dumps(result))
        print(f"wrote {args.json_out}")
    if getattr(args, "html", None):
        write_atomic(args.html, html(result))
        print(f"wrote {args.html}")


def check_result_files(args: argparse.Namespace) -> None:
    """``--json`` and ``--html`` can be written, checked before any model work."""
    from ..io import check_output

    for path, what in ((getattr(args, "json_out", None), "JSON result"), (getattr(args, "html", None), "HTML report")):
        if path:
            check_output(path, what)
