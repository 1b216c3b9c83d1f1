"""Messages files (JSON, YAML): reading with file positions, and writing a repaired one back.

The positions are what lets lint report ``file:line:col`` in the file the user wrote: for each
message, the file offset of every character of its content. JSON strings are mapped exactly
(escapes included); YAML literal blocks (``|``) and single-line plain or quoted scalars exactly
too; a folded or multi-line flow scalar maps each character to its line's best guess (the line
is right, the column is the line's first). Writing back replaces only what changed: a message's
content where the list keeps its shape, the whole list where examples were dropped or reordered,
so the other keys, the comments (YAML) and the layout around the list stay as they were.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import yaml

from .errors import InputError
from .templates import Message, MessageTemplate, from_messages, line_col


@dataclass(frozen=True)
class _Item:
    """One message as found in the file: its line, and its content's start/end and positions."""

    line: int
    content_start: int = -1
    content_end: int = -1
    positions: tuple[int, ...] = ()
    style: str | None = None  # YAML scalar style; "json" for a JSON string


def parse_messages_file(text: str, name: str, fmt: str) -> MessageTemplate:
    """A MessageTemplate from a messages file's text (``fmt`` "json" or "yaml")."""
    if not text.strip():
        raise InputError(f"{name}: the file is empty; give a list of {{role, content}} messages")
    data, items, span = (_json(text, name) if fmt == "json" else _yaml(text, name))
    return from_messages(data, where=name, lines=[it.line for it in items], format=fmt, path=name,
                         source=text, positions=tuple(it.positions for it in items))


# --- JSON -----------------------------------------------------------------------------------


def _json(text: str, name: str) -> tuple[Any, list[_Item], tuple[int, int]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{name}:{exc.lineno}: invalid JSON ({exc.msg} at column {exc.colno}); "
                         "the file must be a list of {\"role\": ..., \"content\": ...} messages") from exc
    except (ValueError, RecursionError) as exc:
        raise InputError(f"{name}: invalid JSON ({exc}); the file must be a list of messages") from exc
    root = _JsonIndex(text).value(_skip(text, 0))
    data, node = _messages_value(data, root, name)
    items = []
    for i, child in enumerate(node.children if isinstance(node.children, list) else []):
        content = child.children.get("content") if isinstance(child.children, dict) else None
        line = line_col(text, child.start)[0]
        if content is not None and isinstance(content.value, str):
            items.append(_Item(line, content.start, content.end, _json_positions(text, content.start), "json"))
        else:
            items.append(_Item(line))
    return data, items, (node.start, node.end)


def _messages_value(data: Any, node: "_Node", name: str) -> tuple[Any, "_Node"]:
    """The messages list: the file itself, or its ``messages`` key."""
    if isinstance(data, dict):
        if "messages" not in data:
            keys = ", ".join(map(str, data)) or "none"
            raise InputError(f"{name}: the object has no `messages` key (keys: {keys}); put the "
                             "{role, content} list under `messages`, or make the file the list itself")
        return data["messages"], node.children["messages"]
    return data, node


@dataclass
class _Node:
    value: Any
    start: int
    end: int
    children: Any = None  # dict of key -> _Node, or list of _Node


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


class _JsonIndex:
    """Where each value of an already valid JSON text starts and ends."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.decoder = json.JSONDecoder()

    def value(self, pos: int) -> _Node:
        text = self.text
        if text[pos] == "{":
            children, pos = {}, _skip(text, pos + 1)
            start = pos - 1
            while text[pos] != "}":
                key, pos = json.decoder.scanstring(text, pos + 1)
                pos = _skip(text, _skip(text, pos) + 1)  # past the colon
                children[key] = child = self.value(pos)
                pos = _skip(text, child.end)
                pos = _skip(text, pos + 1) if text[pos] == "," else pos
            return _Node({k: c.value for k, c in children.items()}, start, pos + 1, children)
        if text[pos] == "[":
            items, start, pos = [], pos, _skip(text, pos + 1)
            while text[pos] != "]":
                child = self.value(pos)
                items.append(child)
                pos = _skip(text, child.end)
                pos = _skip(text, pos + 1) if text[pos] == "," else pos
            return _Node([c.value for c in items], start, pos + 1, items)
        value, end = self.decoder.raw_decode(text, pos)
        return _Node(value, pos, end)


def _json_positions(text: str, quote: int) -> tuple[int, ...]:
    """File offset of each decoded character of the JSON string whose `"` is at ``quote``."""
    out, pos = [], quote + 1
    while text[pos] != '"':
        if text[pos] == "\\":
            width = 6 if text[pos + 1] == "u" else 2
            code = int(text[pos + 2 : pos + 6], 16) if width == 6 else 0
            out.append(pos)
            if 0xD800 <= code < 0xDC00 and text[pos + 6 : pos + 8] == "\\u":  # a surrogate pair: one character
                width = 12
            pos += width
        else:
            out.append(pos)
            pos += 1
    out.append(pos)
    return tuple(out)


# --- YAML -----------------------------------------------------------------------------------


def _yaml(text: str, name: str) -> tuple[Any, list[_Item], tuple[int, int]]:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise InputError(f"{name}{line}: invalid YAML ({exc.problem}); check the indentation, and quote "
                         "content that holds ': ' or starts with a symbol (or use a `|` block)") from exc
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise InputError(f"{name}:{line}: invalid YAML (a control character); remove it") from exc
    except yaml.YAMLError as exc:
        raise InputError(f"{name}: invalid YAML ({' '.join(str(exc).split())}); check the indentation") from exc
    if isinstance(data, dict):
        if "messages" not in data:
            keys = ", ".join(map(str, data)) or "none"
            raise InputError(f"{name}: the mapping has no `messages` key (keys: {keys}); put the "
                             "{role, content} list under `messages:`, or make the file the list itself")
        data = data["messages"]
        root = next(v for k, v in root.value if k.value == "messages")
    items = []
    for child in root.value if isinstance(root, yaml.SequenceNode) else []:
        line = child.start_mark.line + 1
        content = None
        if isinstance(child, yaml.MappingNode):
            content = next((v for k, v in child.value if getattr(k, "value", None) == "content"), None)
        if isinstance(content, yaml.ScalarNode):
            items.append(_Item(line, content.start_mark.index, content.end_mark.index,
                               _yaml_positions(text, content), content.style))
        else:
            items.append(_Item(line))
    span = (root.start_mark.index, root.end_mark.index) if root is not None else (0, 0)
    return data, items, span


def _yaml_positions(text: str, node: yaml.ScalarNode) -> tuple[int, ...]:
    """File offset of each character of a YAML scalar's value (see the module docstring)."""
    value, start, end = node.value, node.start_mark.index, node.end_mark.index
    if node.style == "|":
        return _block_positions(text, value, start, end)
    if node.style in ("'", '"'):
        start += 1
    if "\n" not in text[start:end] and node.style != '"':
        # plain and single-quoted on one line: the text is the value (a '' in '...' shifts by one)
        return tuple(min(start + k, end) for k in range(len(value) + 1))
    out, line_start = [], start
    for k, ch in enumerate(value):  # best guess: each character on the line its text is on
        out.append(line_start)
        if ch == "\n":
            nxt = text.find("\n", line_start, end)
            line_start = nxt + 1 if nxt != -1 else line_start
    out.append(end)
    return tuple(out)


def _block_positions(text: str, value: str, start: int, end: int) -> tuple[int, ...]:
    """A literal block: its lines are the file's lines after the `|` line, minus the indent."""
    first = text.find("\n", start) + 1
    lines = text[first:end].split("\n")
    indent = min((len(l) - len(l.lstrip(" ")) for l in lines if l.strip()), default=0)
    out, offset = [], first
    for piece, raw in zip(value.split("\n"), lines):
        out.extend(offset + indent + k for k in range(len(piece) + 1))  # the +1 is the line break
        offset += len(raw) + 1
    out = out[: len(value) + 1]
    while len(out) < len(value) + 1:
        out.append(end)
    return tuple(out)


__all__ = ["parse_messages_file"]
