"""Recipes: one YAML file that says what to repair, on which cases, with what budget.

    template: "Determine whether ... {input}"      # or template_file: prompt.txt (or messages.json/.yaml)
    # or a message list: template: [{role: system, content: ...}, {role: user, content: "{input}"}]
    cases: cases.jsonl                             # or an inline list, or
    dataset: {path: ..., task: sports_understanding}   # path defaults to the shipped dataset
    n_train: 16          # or split: 0.5
    n_validation: 16
    budget: {trials: 30, seconds: 300, prompts: 400}   # prompts: prompts scored, attribution included
    threshold: 0.8
    seed: 0
    strategy: attribution
    alternatives: {"<segment text>": ["alt 1", "alt 2"]}
    top_k: 3             # segments edited per round
    rounds: 2
    segmentation: unit   # the default: sentences, and a message template's few-shot examples whole; or sentence, line, message, example
    rewrites: [delete, paraphrase, synonym, scaffold, alternative]   # the default: all kinds
    keep_logprob: true   # margin objective: keep only edits that raise the right label's log-prob significantly
    max_regressions: 0   # no train case may turn from right to wrong (default: no limit)
    attribution_cases: 4 # attribute on the first 4 train cases only (a cheaper screen; default: all)

Relative paths resolve against the recipe's folder. Read with ``yaml.safe_load`` only; every
problem is one ``InputError`` that names ``file:line`` and the fix.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from .cases import cases_from_records, dataset_path, load_cases
from .errors import InputError
from .io import read_text, read_yaml_file
from .fix_settings import FixConfig, train_validation
from .names import STRATEGIES
from .rewrites import KINDS
from .segments import template_fields
from .template_files import load_template
from .templates import DOUBLE_SUFFIXES, MESSAGE_SUFFIXES, MessageTemplate, from_messages, text_template
from .types import Case

Where = Callable[[str], str]  # a recipe key -> where it is, for a message ("recipe.yaml:3")
KEYS = ("template", "template_file", "cases", "dataset", "n_train", "n_validation", "split", "budget",
        "threshold", "seed", "strategy", "alternatives", "top_k", "rounds", "segmentation", "rewrites",
        "keep_logprob", "max_regressions", "attribution_cases")


# Segmentations whose edits leave a valid template: "unit" and "example" delete or rewrite a whole
# few-shot example of a message template (its user and assistant turns together), "unit" the
# other messages' sentences.
REPAIRABLE = ("sentence", "line", "message", "example", "unit")


@dataclass(frozen=True)
class Recipe:
    """What to repair: a template, its cases, and the ``FixConfig`` to repair it with. A recipe's
    keys are ``FixConfig``'s names (``budget: {trials, seconds}`` nests two of them), so
    ``recipe.trials`` reads ``recipe.config.trials``."""

    template: str  # the flat text (a message template's marks included: promptlens.templates)
    cases: tuple[Case, ...]
    config: FixConfig = FixConfig()
    path: Path | None = None
    source: MessageTemplate | None = None  # the template as read (format, file), to write a repair back

    def __getattr__(self, name: str) -> Any:
        # Only called for names the recipe itself lacks: the config's knobs.
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.config, name)

    def train_validation(self) -> tuple[list[Case], list[Case]]:
        """(train, validation) as ``fix`` splits them."""
        return train_validation(self.cases, self.config)


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file."""
    path = Path(path)
    root, data = read_yaml_file(path, "recipe", "check the path")
    if not isinstance(data, dict):
        raise InputError(f"{path}: a recipe is a mapping of keys ({', '.join(KEYS)}); the file holds something else")
    lines = {k.value: k.start_mark.line + 1 for k, _ in root.value} if isinstance(root, yaml.MappingNode) else {}
    recipe = recipe_from_mapping(data, base=path.parent, source=str(path), lines=lines)
    node = next((v for k, v in root.value if k.value == "template"), None) if lines else None
    if isinstance(node, yaml.ScalarNode) and recipe.source is not None and recipe.source.format == "text":
        recipe = dataclasses.replace(recipe, source=_placed(recipe.source, path, node))
    return recipe


def _placed(template: MessageTemplate, path: Path, node: yaml.ScalarNode) -> MessageTemplate:
    """An inline ``template:`` with the recipe file's positions of its characters, so lint reports
    ``recipe.yaml:LINE:COL`` where the text stands in the recipe."""
    from .template_files import _yaml_positions  # the messages files' reader knows YAML scalars

    text = path.read_text(encoding="utf-8")  # read_yaml_file has just read it without error
    in_file = _yaml_positions(text, node)
    mine = text_template(node.value, path=str(path), placeholders=template.placeholders)
    return dataclasses.replace(mine, source=text, positions=(tuple(in_file[p] for p in mine.positions[0]),))


def recipe_from_mapping(data: Mapping[str, Any], *, base: Path = Path("."), source: str = "<recipe>",
                        lines: Mapping[str, int] | None = None) -> Recipe:
    lines = lines or {}

    def where(key: str) -> str:
        return f"{source}:{lines[key]}" if key in lines else source

    for key in data:
        if key not in KEYS:
            raise InputError(f"{where(key)}: unknown recipe key {key!r}; use one of: {', '.join(KEYS)}")
    source_template = _template(data, base, where)
    template = source_template.text
    cases = _cases(data, base, where, template)
    budget = data.get("budget") or {}
    if not isinstance(budget, Mapping) or set(budget) - {"trials", "seconds", "prompts"}:
        raise InputError(f"{where('budget')}: budget is a mapping with `trials`, `seconds` and/or `prompts`, e.g. "
                         "budget: {trials: 30, seconds: 300}")
    strategy = data.get("strategy", FixConfig.strategy)
    if strategy not in STRATEGIES:
        raise InputError(f"{where('strategy')}: unknown strategy {strategy!r}; choose one of: {', '.join(STRATEGIES)}")
    segmentation = data.get("segmentation", FixConfig.segmentation)
    if segmentation not in REPAIRABLE:
        raise InputError(f"{where('segmentation')}: segmentation {segmentation!r} cannot be repaired; "
                         f"use one of: {', '.join(REPAIRABLE)}")
    rewrites = data.get("rewrites")
    if rewrites is not None and (not isinstance(rewrites, list) or not rewrites
                                 or any(k not in KINDS[1:] for k in rewrites)):
        raise InputError(f"{where('rewrites')}: rewrites is a list of kinds from: {', '.join(KINDS[1:])}")
    alternatives = data.get("alternatives") or {}
    if not isinstance(alternatives, Mapping) or not all(
            isinstance(k, str) and isinstance(v, list) and all(isinstance(a, str) for a in v)
            for k, v in alternatives.items()):
        raise InputError(f"{where('alternatives')}: alternatives map a segment's text to a list of texts, "
                         'e.g. {"Answer yes or no.": ["Reply with yes or no."]}')
    d = FixConfig()  # the defaults live there only
    config = FixConfig(
        n_train=_number(data, "n_train", int, where, low=1),
        n_validation=_number(data, "n_validation", int, where, low=1),
        split=_number(data, "split", float, where, low=0.0, high=1.0, default=d.split),
        trials=_number(budget, "trials", int, lambda _: where("budget"), low=1, default=d.trials),
        seconds=_number(budget, "seconds", float, lambda _: where("budget"), low=1.0),
        prompts=_number(budget, "prompts", int, lambda _: where("budget"), low=1),
        threshold=_number(data, "threshold", float, where, low=0.0, high=1.0, default=d.threshold),
        seed=_number(data, "seed", int, where, default=d.seed),
        strategy=strategy,
        top_k=_number(data, "top_k", int, where, low=1, default=d.top_k),
        rounds=_number(data, "rounds", int, where, low=1, default=d.rounds),
        segmentation=segmentation,
        rewrites=tuple(rewrites) if rewrites else None,
        alternatives={k: list(v) for k, v in alternatives.items()},
        keep_logprob=_flag(data, "keep_logprob", where, default=d.keep_logprob),
        max_regressions=_number(data, "max_regressions", int, where, low=0),
        attribution_cases=_number(data, "attribution_cases", int, where, low=1),
    )
    return Recipe(template=template, cases=tuple(cases), config=config,
                  path=None if source == "<recipe>" else Path(source), source=source_template)


def _template(data: Mapping[str, Any], base: Path, where: Where) -> MessageTemplate:
    if ("template" in data) == ("template_file" in data):
        raise InputError(f"{where('template')}: give exactly one of `template:` (inline) or `template_file:` (a path)")
    if "template" in data:
        template = data["template"]
        if isinstance(template, list):  # a message list written in the recipe
            return from_messages(template, where=where("template"))
        if not isinstance(template, str) or not template.strip():
            raise InputError(f"{where('template')}: template must be non-empty text or a list of "
                             "{role, content} messages; quote it or use a `|` block")
        return text_template(template, path=None)
    file = base / str(data["template_file"])
    if file.suffix.lower() in MESSAGE_SUFFIXES + DOUBLE_SUFFIXES and file.is_file():
        return load_template(file)  # its errors name the file and line
    try:
        text = read_text(file, "template", hint="check the path (relative to the recipe's folder)")
    except InputError as exc:  # the recipe's line first: that is where the path is written
        raise InputError(f"{where('template_file')}: {exc}") from exc
    return text_template(text, path=str(file))


def _cases(data: Mapping[str, Any], base: Path, where: Where, template: str) -> list[Case]:
    if ("cases" in data) == ("dataset" in data):
        raise InputError(f"{where('cases')}: give exactly one of `cases:` (a list or a file) or "
                         "`dataset: {path: ..., task: ...}`")
    if "cases" in data:
        raw = data["cases"]
        if isinstance(raw, str):
            return load_cases(base / raw)
        return cases_from_records(raw, source=where("cases"))
    spec = data["dataset"]
    if not isinstance(spec, Mapping) or "task" not in spec or set(spec) - {"path", "task"}:
        raise InputError(f"{where('dataset')}: dataset is a mapping with `task` (and optionally `path`), "
                         "e.g. dataset: {task: sports_understanding}")
    file = base / str(spec["path"]) if spec.get("path") else dataset_path()
    # A dataset record carries the task's own instruction as a var; a recipe writes its instruction
    # into the template, so vars the template has no field for are dropped.
    fields = set(template_fields(template))
    return [dataclasses.replace(c, vars={k: v for k, v in c.vars.items() if k in fields})
            for c in load_cases(file, task=str(spec["task"]))]


def _flag(data: Mapping[str, Any], key: str, where: Where, *, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise InputError(f"{where(key)}: `{key}` is {value!r}; give true or false")
    return value


def _number(data: Mapping[str, Any], key: str, kind: type, where: Where, *, low: float | None = None,
            high: float | None = None, default: Any = None) -> Any:  # a ``kind`` (int or float), or ``default``
    if key not in data or data[key] is None:
        return default
    value = data[key]
    if kind is int and isinstance(value, float) and value.is_integer():
        value = int(value)  # `16.0` is 16 (JSON Schema's integer says so too)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (kind is float or isinstance(value, int))
    if not ok or (low is not None and value < low) or (high is not None and value > high):
        bounds = f" from {low}" if low is not None else ""
        bounds += f" to {high}" if high is not None else ""
        raise InputError(f"{where(key)}: `{key}` is {value!r}; give {'an integer' if kind is int else 'a number'}{bounds}")
    return kind(value)
