"""promptfoo suites: a ``promptfooconfig.yaml``'s prompts as templates, its tests as cases.

    promptfooconfig.yaml ──► prompts: text / file://x.txt / file://chat.json|yaml / chat JSON text
                         └─► tests (+ defaultTest): vars ──► Case.vars, an exact assertion ──► Case.target

Prompts are read in the double placeholder style (Nunjucks ``{{ var }}``, see
``promptlens.templates``), with file positions: an inline prompt's characters map to their line
and column in the config, a ``file://`` prompt's to its own file, so lint findings land where the
user wrote the text. ``.js``/``.py`` prompt functions are skipped (they are code, not text).

A test is scored when it has ``vars`` (unless the prompt has no fields) and exactly one assertion
that names the output:

* ``equals`` with a text or number value: the target;
* else one ``contains`` or ``icontains``: its value is taken as the whole expected answer
  (promptlens scores the log-prob of that exact text; ``icontains`` with the value as written).

Everything else (``llm-rubric``, ``javascript``, ``similar``, ``not-*``, several ``contains``,
list-valued vars that promptfoo expands, ``file://`` vars) is skipped, and ``PromptfooSuite.report``
says which tests and assertions were used and skipped, and why. A config with nothing to score
is one ``InputError`` naming what is missing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .cases import cases_from_records
from .errors import InputError
from .template_files import load_template
from .io import parse_yaml, read_text
from .templates import MESSAGE_SUFFIXES, MessageTemplate, convert_placeholders, from_messages
from .types import Case

TEXT_SUFFIXES = (".txt", ".md", ".prompt", ".j2", ".njk")
EXACT = ("equals",)
SUBSTRING = ("contains", "icontains")


@dataclass(frozen=True)
class PromptfooSuite:
    path: str
    prompts: tuple[MessageTemplate, ...]
    prompt_labels: tuple[str, ...]  # "prompt 1 (promptfooconfig.yaml:3)"
    cases: tuple[Case, ...]
    used: tuple[str, ...] = ()
    skipped: tuple[str, ...] = field(default=())

    def report(self) -> list[str]:
        """What was read: one line per prompt, the tests used and each skipped test or assertion."""
        lines = [f"promptfoo {self.path}: {len(self.prompts)} prompt(s): {', '.join(self.prompt_labels)}",
                 f"promptfoo {self.path}: {len(self.cases)} test(s) used as cases: " + "; ".join(self.used)]
        lines += [f"promptfoo {self.path}: skipped {s}" for s in self.skipped]
        return lines


def is_promptfoo_config(path: str | Path) -> bool:
    """A ``promptfooconfig.*`` file, or a YAML/JSON mapping with ``prompts`` and ``tests``."""
    path = Path(path)
    if path.name.lower().startswith("promptfooconfig"):
        return True
    if path.suffix.lower() not in (".yaml", ".yml") or not path.is_file():
        return False
    try:
        _, data = parse_yaml(read_text(path, "promptfoo config"), str(path))
    except InputError:
        return False
    return isinstance(data, dict) and "prompts" in data and "tests" in data


def load_suite(path: str | Path) -> PromptfooSuite:
    """Read a promptfoo config (module docstring); errors name ``file:line`` and the fix."""
    path = Path(path)
    name = str(path)
    text = read_text(path, "promptfoo config")
    root, data = parse_yaml(text, name)
    if not isinstance(data, dict) or "prompts" not in data:
        raise InputError(f"{name}: a promptfoo config is a mapping with `prompts:` and `tests:`; add them")
    skipped: list[str] = []
    prompts, labels = _prompts(data["prompts"], _value(root, "prompts"), path, text, skipped)
    if not prompts:
        raise InputError(f"{name}: no prompt promptlens can read ({'; '.join(skipped) or 'prompts is empty'}); "
                         "give a text prompt, a file://*.txt or a file:// chat JSON/YAML")
    fields = sorted({f for p in prompts for f in _fields(p)})
    tests, nodes, where = _tests(data, root, path)
    default = data.get("defaultTest") or {}
    if not isinstance(default, dict):
        default = {}
        skipped.append("defaultTest: it is not an inline mapping")
    cases, used = [], []
    for k, (test, node) in enumerate(zip(tests, nodes), 1):
        at = f"{where}:{node.start_mark.line + 1}" if node is not None else f"{where}: test {k}"
        case = _case(test, default, fields, at, k, skipped)
        if case is not None:
            cases.append(case)
            used.append(f"test {k} ({at.rsplit('/', 1)[-1]}): {case[1]}")
    if not cases:
        raise InputError(f"{name}: nothing promptlens can score: no test has vars and an `equals`, `contains` or "
                         "`icontains` assertion with a text value; add e.g. `assert: [{type: equals, value: ...}]`")
    # a var no prompt has a field for is left out (promptfoo passes it to the provider; it is not text of the prompt)
    records = [{**c, "vars": {k: v for k, v in c["vars"].items() if k in fields}} for c, _ in cases]
    return PromptfooSuite(name, tuple(prompts), tuple(labels), tuple(cases_from_records(records, source=name)),
                          tuple(used), tuple(skipped))


def _value(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        return next((v for k, v in node.value if getattr(k, "value", None) == key), None)
    return None


def _fields(template: MessageTemplate) -> list[str]:
    from .segments import template_fields

    return template_fields(template.text)


# --- prompts --------------------------------------------------------------------------------


def _prompts(raw: Any, node: yaml.Node | None, config: Path, text: str,
             skipped: list[str]) -> tuple[list[MessageTemplate], list[str]]:
    items = raw if isinstance(raw, list) else [raw]
    nodes = node.value if isinstance(node, yaml.SequenceNode) else [node]
    out, labels = [], []
    for k, (item, item_node) in enumerate(zip(items, nodes), 1):
        line = item_node.start_mark.line + 1 if item_node is not None else 1
        label = f"prompt {k} ({config.name}:{line})"
        if isinstance(item, dict):  # {id, label, raw}
            item_node = _value(item_node, "raw") or _value(item_node, "id")
            item = item.get("raw") or item.get("id")
        if not isinstance(item, str):
            skipped.append(f"{label}: not text or a file:// path")
            continue
        if item.startswith("file://"):
            template = _prompt_file(config.parent / item[len("file://"):], label, skipped)
        else:
            template = _inline_prompt(item, item_node, config, text)
        if template is not None:
            out.append(template)
            labels.append(label)
    return out, labels


def _prompt_file(file: Path, label: str, skipped: list[str]) -> MessageTemplate | None:
    suffix = file.suffix.lower()
    if suffix in MESSAGE_SUFFIXES:
        return load_template(file, placeholders="double")
    if suffix in TEXT_SUFFIXES or not suffix:
        template = load_template(file, placeholders="double")
        chat = _chat_json(template.messages[0].content)
        return from_messages(chat, where=str(file), placeholders="double") if chat else template
    skipped.append(f"{label}: {file.name} is a prompt function ({suffix}), code rather than text")
    return None


def _inline_prompt(item: str, node: yaml.Node | None, config: Path, text: str) -> MessageTemplate:
    from .template_files import _yaml_positions

    where = f"{config}"
    chat = _chat_json(item)
    line = node.start_mark.line + 1 if node is not None else 1
    if chat:  # chat JSON written inline: errors name the config line of the prompt
        return from_messages(chat, where=f"{where}:{line}", placeholders="double")
    positions = (_yaml_positions(text, node),) if isinstance(node, yaml.ScalarNode) else ()
    template = MessageTemplate(_one_turn(item), format="text", path=where, source=text if positions else None,
                               positions=positions)
    return convert_placeholders(template, "double", where)


def _one_turn(text: str) -> tuple:
    from .templates import Message

    return (Message("user", text),)


def _chat_json(text: str) -> list | None:
    """A prompt that is a JSON list of {role, content} messages (promptfoo's chat format)."""
    stripped = text.strip()
    if not stripped.startswith("["):
        return None
    try:
        data = json.loads(stripped)
    except ValueError:
        return None
    return data if isinstance(data, list) and all(isinstance(m, dict) and "role" in m for m in data) else None


# --- tests ----------------------------------------------------------------------------------


def _tests(data: dict, root: yaml.Node | None, config: Path) -> tuple[list, list, str]:
    """The test list, a node per test (for lines) and the file they are in."""
    raw = data.get("tests")
    if raw is None:
        raise InputError(f"{config}: the config has no `tests:`; add tests with `vars` and an `equals` assertion")
    if isinstance(raw, str) and raw.startswith("file://"):
        file = config.parent / raw[len("file://"):]
        if file.suffix.lower() not in (".yaml", ".yml", ".json"):
            raise InputError(f"{config}: tests file {file.name} is not YAML or JSON; promptlens reads tests from "
                             "YAML or JSON (convert it, or write the tests inline)")
        node, tests = parse_yaml(read_text(file, "tests"), str(file))  # JSON is YAML too
        return _test_list(tests, node, file)
    return _test_list(raw, _value(root, "tests"), config)


def _test_list(tests: Any, node: yaml.Node | None, file: Path) -> tuple[list, list, str]:
    if not isinstance(tests, list):
        raise InputError(f"{file}: `tests` must be a list of {{vars, assert}} test cases")
    nodes = node.value if isinstance(node, yaml.SequenceNode) else [None] * len(tests)
    return tests, nodes, str(file)


def _case(test: Any, default: dict, fields: list[str], at: str, k: int,
          skipped: list[str]) -> tuple[dict, str] | None:
    """(case record, what was used) for a test, or None with the reason in ``skipped``."""
    if not isinstance(test, dict):
        skipped.append(f"test {k} ({at}): not a mapping")
        return None
    vars_ = {**(default.get("vars") or {}), **(test.get("vars") or {})}
    if fields and not test.get("vars") and not default.get("vars"):
        names = ", ".join("{{ " + f + " }}" for f in fields)
        raise InputError(f"{at}: test {k} has no `vars`; give the values of {names} under `vars:`")
    bad = [key for key, v in vars_.items() if not isinstance(v, (str, int, float)) or isinstance(v, bool)
           or (isinstance(v, str) and v.startswith("file://"))]
    if bad:
        skipped.append(f"test {k} ({at}): var `{bad[0]}` is a list, a file:// or not text (promptfoo expands "
                       "or loads those; promptlens scores plain values)")
        return None
    asserts = list(default.get("assert") or []) + list(test.get("assert") or [])
    exact = [a for a in asserts if isinstance(a, dict) and a.get("type") in EXACT and _text(a.get("value"))]
    loose = [a for a in asserts if isinstance(a, dict) and a.get("type") in SUBSTRING and _text(a.get("value"))]
    for a in asserts:
        kind = a.get("type") if isinstance(a, dict) else None
        if a in exact or a in loose:
            continue
        if kind in EXACT + SUBSTRING:
            value = a.get("value")
            why = ("its value is a boolean (YAML reads yes/no/true/false unquoted as booleans): quote it"
                   if isinstance(value, bool) else "its value is not text")
            skipped.append(f"test {k} ({at}): assertion `{kind}`: {why}")
        else:
            skipped.append(f"test {k} ({at}): assertion `{kind}`: not an exact expected output")
    if exact:
        chosen, how = exact[0], "equals"
        skipped += [f"test {k} ({at}): assertion `{a['type']}`: an `equals` already gives the target"
                    for a in exact[1:] + loose]
    elif len(loose) == 1:
        chosen, how = loose[0], f"{loose[0]['type']} (as the whole expected answer)"
    else:
        why = "several contains assertions: no single expected answer" if loose else "no equals/contains assertion"
        skipped.append(f"test {k} ({at}): {why}, nothing to score")
        return None
    target = str(chosen["value"])
    record = {"vars": {key: str(v) for key, v in vars_.items()}, "target": target}
    if test.get("description"):
        record["id"] = str(test["description"])
    return record, f"{how} {target!r}"


def _text(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value).strip() != ""


__all__ = ["PromptfooSuite", "is_promptfoo_config", "load_suite"]
