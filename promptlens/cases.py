"""Cases: the examples a prompt is scored on.

    file (.jsonl/.json/.csv/.yaml) ──► records (mapping + where it came from) ──► Case

Every reader only turns its format into ``(where, record)`` pairs, where ``where`` is the
``file:line`` (or ``file: case N``) prefix of any error about that record; one validator,
``_to_case``, turns records into ``Case`` objects, so the rules are the same for every format
and for inline cases given by a recipe or through the API.

A record takes one of three forms:

- promptlens: ``{"vars": {...}, "target": "...", "choices": [...], "id": ...}``
- short: ``{"input": "...", "target": "..."}``: every other top-level key is a var
- dataset (``promptlens/data/bigbench_dev.jsonl``):
  ``{"source", "task", "instruction", "input", "target", "choices"}``

``task`` and ``source`` are metadata in every form, never vars: ``task`` is what
``load_cases(..., task=...)`` filters on.
"""

from __future__ import annotations

import csv
import datetime
import difflib
import io
import json
import math
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from promptlens.errors import InputError
from promptlens.io import parse_yaml, read_text
from promptlens.types import Case

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "load_cases",
    "cases_from_records",
    "split_cases",
    "check_vars",
    "dataset_path",
    "dataset_tasks",
]

SUPPORTED_EXTENSIONS = (".jsonl", ".json", ".csv", ".yaml", ".yml")
_META_KEYS = ("task", "source")  # describe a record; never template vars
_CASE_KEYS = ("target", "choices", "id")
_CHOICE_SEP = "|"  # separates choices in a CSV cell

Record = tuple[str, Any]  # (where, the parsed record)


# --------------------------------------------------------------------------- public API


def load_cases(path: str | Path, *, task: str | None = None) -> list[Case]:
    """Read the cases in ``path``; the format follows the extension (see SUPPORTED_EXTENSIONS).

    With ``task``, keep only the records whose ``task`` field equals it.
    Any problem raises one ``InputError`` naming the file, the line and the fix.
    """
    path = Path(path)
    name = str(path)
    ext = path.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        shown = f"extension '{path.suffix}'" if path.suffix else "no extension"
        raise InputError(
            f"{name}: unsupported cases file ({shown}); "
            f"use one of {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    text = _read_text(path)
    if not text.strip():
        raise InputError(f"{name}: file is empty; {_FORMAT_HINT[ext]}")
    reader = _READERS[ext]
    records = list(reader(text, name))
    if task is not None:
        records = _filter_task(records, task, name)
    if not records:
        raise InputError(f"{name}: no cases found; {_FORMAT_HINT[ext]}")
    return [_to_case(record, where) for where, record in records]


def cases_from_records(records: Iterable[Mapping], *, source: str = "<inline>") -> list[Case]:
    """Validate cases given as mappings (a recipe's inline ``cases:``, the Python API).

    Errors name ``source`` and the 1-based position of the case.
    """
    if isinstance(records, (str, bytes, Mapping)) or not isinstance(records, Iterable):
        raise InputError(
            f"{source}: cases must be a list of case objects, not "
            f"{_a(records)}; give a list such as [{{'input': ..., 'target': ...}}]"
        )
    cases = [_to_case(record, f"{source}: case {i}") for i, record in enumerate(records, 1)]
    if not cases:
        raise InputError(f"{source}: no cases given; add at least one case with a target")
    return cases


def split_cases(
    cases: Sequence[Case],
    *,
    n_train: int | None = None,
    frac_train: float = 0.5,
    seed: int = 0,
) -> tuple[list[Case], list[Case]]:
    """Shuffle with ``random.Random(seed)`` and cut into (train, validation).

    ``n_train`` cases go to train when given, else ``round(frac_train * len(cases))``.
    The same cases and seed always give the same split; each case lands on exactly one side.
    """
    n = len(cases)
    if n < 2:
        raise InputError("need at least 2 cases to split; add cases or give a validation set")
    if n_train is None:
        if not 0.0 < frac_train < 1.0:
            raise InputError(
                f"frac_train must be between 0 and 1 (exclusive), got {frac_train}; "
                f"give a fraction such as 0.5"
            )
        n_train = round(frac_train * n)
        how = f"frac_train={frac_train} of {n} cases"
    else:
        how = f"n_train={n_train} of {n} cases"
    if not 0 < n_train < n:
        side = "train" if n_train <= 0 else "validation"
        raise InputError(
            f"{how} leaves the {side} set empty; choose a train size from 1 to {n - 1}"
        )
    order = list(cases)
    random.Random(seed).shuffle(order)
    return order[:n_train], order[n_train:]


def check_vars(cases: Sequence[Case], fields: Sequence[str], *, source: str) -> None:
    """Raise ``InputError`` unless every case fills exactly the template's ``fields``.

    A var whose value is empty is allowed without a field: it adds nothing to the prompt
    (the shipped dataset has ``instruction: ""`` for tasks that put it inside ``input``).
    """
    wanted = set(fields)
    for i, case in enumerate(cases, 1):
        label = f"case {i}" + (f" (id {case.id})" if case.id is not None else "")
        missing = [f for f in dict.fromkeys(fields) if f not in case.vars]
        if missing:
            names = ", ".join("{" + f + "}" for f in missing)
            plural = "s" if len(missing) > 1 else ""
            raise InputError(
                f"{label} in {source} has no value for template field{plural} {names}; "
                f"add {'them' if plural else 'it'} to vars"
            )
        extra = [k for k, v in case.vars.items() if k not in wanted and v != ""]
        if extra:
            raise InputError(
                f"{label} in {source} gives `{extra[0]}`, which the template has no field for; "
                f"add {{{extra[0]}}} to the template or remove it"
            )


def dataset_path() -> Path:
    """The shipped BIG-bench sample (see ``promptlens/data/NOTICE.md``)."""
    resource = resources.files("promptlens").joinpath("data").joinpath("bigbench_dev.jsonl")
    path = Path(str(resource))
    if not path.is_file():
        raise InputError(
            f"the shipped dataset is missing ({path}); reinstall promptlens"
        )
    return path


def dataset_tasks(path: str | Path | None = None) -> list[str]:
    """The sorted task names in a dataset-schema JSONL file (default: the shipped one)."""
    path = dataset_path() if path is None else Path(path)
    name = str(path)
    tasks = {
        record["task"]
        for _, record in _read_jsonl(_read_text(path), name)
        if isinstance(record, Mapping) and isinstance(record.get("task"), str)
    }
    return sorted(tasks)


# --------------------------------------------------------------------------- reading files


def _read_text(path: Path) -> str:
    return read_text(path, "cases")


def _read_jsonl(text: str, name: str) -> Iterator[Record]:
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        where = f"{name}:{lineno}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"{where}: invalid JSON ({exc.msg} at column {exc.colno}); "
                f"each line must be one JSON object"
            ) from exc
        except (ValueError, RecursionError) as exc:  # e.g. a 5000-digit number, deep nesting
            raise InputError(
                f"{where}: invalid JSON ({_short(exc)}); each line must be one JSON object"
            ) from exc
        yield where, record


def _read_json(text: str, name: str) -> Iterator[Record]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{name}:{exc.lineno}: invalid JSON ({exc.msg} at column {exc.colno}); "
            f"the file must be one JSON list of case objects"
        ) from exc
    except (ValueError, RecursionError) as exc:
        raise InputError(
            f"{name}: invalid JSON ({_short(exc)}); the file must be one JSON list of case objects"
        ) from exc
    if not isinstance(data, list):
        raise InputError(
            f"{name}: the file holds {_a(data)} (JSON); it must be a list of case objects, "
            f'e.g. [{{"input": "...", "target": "..."}}]'
        )
    yield from zip(_json_item_lines(text, name, len(data)), data)


def _json_item_lines(text: str, name: str, count: int) -> list[str]:
    """``file:line`` of each item of the (already valid) top-level JSON list."""
    decoder = json.JSONDecoder()
    wheres = []
    pos = text.index("[") + 1
    for _ in range(count):
        while text[pos] in " \t\r\n,":
            pos += 1
        wheres.append(f"{name}:{text.count(chr(10), 0, pos) + 1}")
        _, pos = decoder.raw_decode(text, pos)
    return wheres


def _read_csv(text: str, name: str) -> Iterator[Record]:
    # newline="" hands line endings (and newlines inside quoted cells) to the csv module.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        while header is not None and not header:  # leading blank lines
            header = next(reader, None)
        header_line = reader.line_num
        columns = _csv_header(header or [], f"{name}:{header_line}")
        start = reader.line_num + 1
        for row in reader:
            where = f"{name}:{start}"
            start = reader.line_num + 1
            if not row:
                continue
            if len(row) != len(columns):
                raise InputError(
                    f"{where}: the row has {len(row)} values but the header has "
                    f"{len(columns)} columns; give one value per column (quote values "
                    f'that contain commas: "a, b")'
                )
            record: dict[str, Any] = dict(zip(columns, row))
            choices = record.get("choices")
            if choices is not None:
                record["choices"] = choices.split(_CHOICE_SEP) if choices else None
            if record.get("id") == "":
                record["id"] = None
            yield where, record
    except csv.Error as exc:
        raise InputError(
            f"{name}:{reader.line_num}: malformed CSV ({exc}); quote values that contain "
            f'commas, quotes or newlines, doubling inner quotes: "say ""hi"""'
        ) from exc


def _csv_header(header: list[str], where: str) -> list[str]:
    columns = [c.strip() for c in header]
    for i, column in enumerate(columns, 1):
        if not column:
            raise InputError(
                f"{where}: header column {i} has no name; name every column "
                f"(or remove the trailing comma)"
            )
    seen: set[str] = set()
    for column in columns:
        if column in seen:
            raise InputError(f"{where}: the header names column '{column}' twice; rename one")
        seen.add(column)
    if "target" not in columns:
        raise InputError(
            f"{where}: the header has no 'target' column (columns: {', '.join(columns)}); "
            f"the first row must name the columns and include 'target'"
        )
    return columns


def _read_yaml(text: str, name: str) -> Iterator[Record]:
    root, data = parse_yaml(text, name)  # the node tree only to learn each item's line
    if isinstance(data, Mapping):
        if "cases" not in data:
            raise InputError(
                f"{name}: the YAML mapping has no `cases:` key (keys: "
                f"{', '.join(map(str, data)) or 'none'}); put the cases in a list under `cases:`"
            )
        data = data["cases"]
        root = _yaml_value_node(root, "cases")
        if data is None:
            return
    if data is None:
        return
    if not isinstance(data, list):
        raise InputError(
            f"{name}: the cases are {_a(data)} (YAML); write them as a list "
            f"(each case starting with '- ') or as a mapping with a `cases:` list"
        )
    items = root.value if isinstance(root, yaml.SequenceNode) else []
    for i, item in enumerate(data):
        if i < len(items):
            where = f"{name}:{items[i].start_mark.line + 1}"
        else:
            where = f"{name}: case {i + 1}"
        yield where, item


def _yaml_value_node(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
            return value_node
    return None


_READERS = {
    ".jsonl": _read_jsonl,
    ".json": _read_json,
    ".csv": _read_csv,
    ".yaml": _read_yaml,
    ".yml": _read_yaml,
}
_FORMAT_HINT = {
    ".jsonl": 'add cases, one JSON object a line: {"input": "...", "target": "..."}',
    ".json": 'add cases as a JSON list: [{"input": "...", "target": "..."}]',
    ".csv": "add a header row with a 'target' column and one row per case",
    ".yaml": "add cases as a list of mappings, each with a target",
    ".yml": "add cases as a list of mappings, each with a target",
}


def _filter_task(records: list[Record], task: str, name: str) -> list[Record]:
    for where, record in records:
        if not isinstance(record, Mapping):
            raise InputError(f"{where}: the case is {_a(record)}; {_OBJECT_FIX}")
    kept = [(w, r) for w, r in records if r.get("task") == task]
    if kept:
        return kept
    tasks = sorted({str(r["task"]) for _, r in records if r.get("task") is not None})
    if not tasks:
        raise InputError(
            f"{name}: no case has a `task` field, so task '{task}' cannot be selected; "
            f"drop the task option or add `task` to the cases"
        )
    close = difflib.get_close_matches(task, tasks, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise InputError(
        f"{name}: no case has task '{task}'{hint}; use one of: {', '.join(tasks)}"
    )


# --------------------------------------------------------------------------- validation

_OBJECT_FIX = 'each case must be an object such as {"input": "...", "target": "..."}'


def _to_case(record: Any, where: str) -> Case:
    if not isinstance(record, Mapping):
        raise InputError(f"{where}: the case is {_a(record)}; {_OBJECT_FIX}")
    for key in record:
        if not isinstance(key, str):
            raise InputError(f"{where}: key {key!r} is not text; quote it")
    if "vars" in record:
        unknown = [k for k in record if k not in ("vars", *_CASE_KEYS, *_META_KEYS)]
        if unknown:
            raise InputError(
                f"{where}: unknown key `{unknown[0]}` next to `vars`; move it into vars "
                f"or use only {', '.join(('vars', *_CASE_KEYS, *_META_KEYS))}"
            )
        raw_vars = record["vars"]
        if not isinstance(raw_vars, Mapping):
            raise InputError(
                f"{where}: vars is {_a(raw_vars)}; give an object of field names "
                f'to values, e.g. "vars": {{"input": "..."}}'
            )
        for key in raw_vars:
            if not isinstance(key, str):
                raise InputError(f"{where}: var name {key!r} is not text; quote it")
    else:
        raw_vars = {k: v for k, v in record.items() if k not in (*_CASE_KEYS, *_META_KEYS)}
    # repr when the name has line breaks or other control characters: the message stays one line
    vars_ = {k: _text(v, where, f"var `{k}`" if k.isprintable() else f"var {k!r}") for k, v in raw_vars.items()}
    target = _target(record, where)
    choices = _choices(record.get("choices"), target, where)
    case_id = _case_id(record.get("id"), where)
    return Case(vars=vars_, target=target, choices=choices, id=case_id)


def _target(record: Mapping, where: str) -> str:
    raw = record.get("target")
    if raw is None or raw == "":
        raise InputError(
            f"{where}: case has no target; add a value in the 'target' {_field(where)}"
        )
    target = _text(raw, where, "target")
    if not target.strip():
        raise InputError(
            f"{where}: the target is only whitespace; give the exact output the prompt "
            f"should produce"
        )
    return target


def _choices(raw: Any, target: str, where: str) -> tuple[str, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, (list, tuple)):
        raise InputError(
            f"{where}: choices is {_a(raw)}; give a list of the possible answers, "
            f'e.g. ["yes", "no"] (or leave choices out)'
        )
    if not raw:
        raise InputError(f"{where}: choices is empty; list the possible answers or leave it out")
    choices = tuple(_text(c, where, f"choice {i}") for i, c in enumerate(raw, 1))
    for i, choice in enumerate(choices, 1):
        if not choice:
            raise InputError(f"{where}: choice {i} is empty; remove it or give its text")
    seen: set[str] = set()
    for choice in choices:
        if choice in seen:
            raise InputError(f"{where}: choice {choice!r} is listed twice; list each answer once")
        seen.add(choice)
    if target not in seen:
        raise InputError(
            f"{where}: the target {target!r} is not among the choices "
            f"({', '.join(map(repr, choices))}); add it or correct the target"
        )
    return choices


def _case_id(raw: Any, where: str) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        return raw
    if isinstance(raw, int) and not isinstance(raw, bool):
        return _text(raw, where, "id")
    raise InputError(f"{where}: id is {_a(raw)}; give a string or a number")


def _text(value: Any, where: str, what: str) -> str:
    """A value as text: strings as they are, numbers via str(), anything else is an error."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise InputError(f"{where}: {what} is {value}, not a usable number; quote it as text")
        try:
            return str(value)
        except ValueError as exc:  # an int too long for str() (Python's digit limit)
            raise InputError(f"{where}: {what} is a number too long to use; quote it") from exc
    if isinstance(value, bool):
        fix = "quote it, e.g. \"yes\" (YAML reads yes/no/true/false unquoted as booleans)"
    else:
        fix = "give text (quote it)"
    raise InputError(f"{where}: {what} is {_a(value)}, not text; {fix}")


def _field(where: str) -> str:
    return "column" if ".csv:" in where.lower() else "field"


def _a(value: Any) -> str:
    """The kind of ``value`` with its article: "a list", "an object", "null"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, datetime.date):
        return "a date"
    return f"a {type(value).__name__}"


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."
