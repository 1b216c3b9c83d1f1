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
from pathlib import Path
from typing import Any

import yaml

from .errors import InputError
from .io import parse_yaml, read_text
from .templates import (DOUBLE_SUFFIXES, Message, MessageTemplate, from_messages, line_col, looks_like_messages_file,
                        text_template)


@dataclass(frozen=True)
class _Item:
    """One message as found in the file: its line, and its content's start/end and positions."""

    line: int
    content_start: int = -1
    content_end: int = -1
    positions: tuple[int, ...] = ()
    style: str | None = None  # YAML scalar style; "json" for a JSON string


def load_template(path: str | Path, *, placeholders: str = "auto") -> MessageTemplate:
    """Read a template file; the format follows the file: ``.json`` / ``.yaml`` / ``.yml`` hold
    messages (a bare list of ``{role, content}`` or an object with a ``messages`` key), anything
    else is a plain text template (one user turn). ``placeholders``: "auto", "brace" or
    "double" (``.j2``/``.njk``/``.mustache``... files: double)."""
    path = Path(path)
    text = read_text(path, "template")
    if placeholders == "auto" and path.suffix.lower() in DOUBLE_SUFFIXES:
        placeholders = "double"
    if not looks_like_messages_file(path):
        return text_template(text, path=str(path), placeholders=placeholders)
    fmt = path.suffix.lower().lstrip(".").replace("yml", "yaml")
    return parse_messages_file(text, str(path), fmt, placeholders=placeholders)


def parse_messages_file(text: str, name: str, fmt: str, *, placeholders: str = "auto") -> MessageTemplate:
    """A MessageTemplate from a messages file's text (``fmt`` "json" or "yaml")."""
    if not text.strip():
        raise InputError(f"{name}: the file is empty; give a list of {{role, content}} messages")
    data, items, span = (_json(text, name) if fmt == "json" else _yaml(text, name))
    return from_messages(data, where=name, lines=[it.line for it in items], format=fmt, path=name,
                         source=text, positions=tuple(it.positions for it in items), placeholders=placeholders)


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
                key, pos = self.decoder.raw_decode(text, pos)  # a key: a JSON string from its quote
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
    root, data = parse_yaml(text, name)
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
    out: list[int] = []
    offset = first
    for piece, raw in zip(value.split("\n"), lines):
        out.extend(offset + indent + k for k in range(len(piece) + 1))  # the +1 is the line break
        offset += len(raw) + 1
    out = out[: len(value) + 1]
    while len(out) < len(value) + 1:
        out.append(end)
    return tuple(out)


__all__ = ["parse_messages_file"]


# --- writing back ---------------------------------------------------------------------------


def write_back(template: MessageTemplate, flat: str) -> str:
    """The file text of ``template`` holding the messages of ``flat`` (e.g. fix's best template),
    in the template's format and placeholder style, other keys and layout kept (module docstring).
    The result is parsed again and must give exactly those messages, else the file is written
    afresh from the data (keys kept, layout not)."""
    from .templates import messages_of, to_style

    new = [Message(m.role, to_style(m.content, template.placeholders)) for m in messages_of(flat)]
    if template.format == "text" or template.source is None:
        return "".join(m.content for m in new) if len(new) == 1 else _dump_json(None, new)
    name = template.path or "template"
    fmt = template.format
    try:
        text = _patch(template.source, name, fmt, new)
        if _reparsed(text, name, fmt) == [(m.role, m.content) for m in new]:
            return text
    except (InputError, ValueError, IndexError, yaml.YAMLError):
        pass  # the careful patch did not fit this file's layout: write it afresh below
    data = json.loads(template.source) if fmt == "json" else yaml.safe_load(template.source)
    return _dump_json(data, new) if fmt == "json" else _dump_yaml(data, new)


def _reparsed(text: str, name: str, fmt: str) -> list[tuple[str, str]]:
    data = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    items = data["messages"] if isinstance(data, dict) else data
    return [(m["role"], m["content"]) for m in items]


def _dump_json(data: Any, new: list[Message]) -> str:
    items = [{"role": m.role, "content": m.content} for m in new]
    if isinstance(data, dict):
        data = {**data, "messages": items}
    return json.dumps(data if isinstance(data, dict) else items, indent=2, ensure_ascii=False) + "\n"


def _dump_yaml(data: Any, new: list[Message]) -> str:
    items = [{"role": m.role, "content": m.content} for m in new]
    if isinstance(data, dict):
        data = {**data, "messages": items}
    return yaml.safe_dump(data if isinstance(data, dict) else items, sort_keys=False, allow_unicode=True)


def _patch(source: str, name: str, fmt: str, new: list[Message]) -> str:
    """Replace changed contents in place; rebuild the list from the old items' text when the
    messages were dropped or reordered."""
    if fmt == "json":
        data, items, (list_start, list_end) = _json(source, name)
        spans = _json_item_spans(source, list_start, list_end)
    else:
        data, items, (list_start, list_end) = _yaml(source, name)
        spans = _yaml_item_spans(source, items, list_start, list_end)
    old = [(m["role"], m["content"]) for m in data]
    if [r for r, _ in old] == [m.role for m in new]:  # same turns: patch the contents right to left
        out = source
        for item, (role, content), m in sorted(zip(items, old, new), key=lambda t: -t[0].content_start):
            if m.content != content:
                out = out[: item.content_start] + _scalar(m.content, item, source, fmt) + out[item.content_end :]
        return out
    used: set[int] = set()
    pieces = []
    for m in new:
        k = next((k for k, o in enumerate(old) if k not in used and o == (m.role, m.content)), None)
        if k is None:
            k = next((k for k, o in enumerate(old) if k not in used and o[0] == m.role), None)
        if k is None:
            raise ValueError("a message with no counterpart in the file")
        used.add(k)
        a, b = spans[k]
        piece = source[a:b]
        if old[k][1] != m.content:
            it = items[k]
            piece = piece[: it.content_start - a] + _scalar(m.content, it, source, fmt) + piece[it.content_end - a :]
        pieces.append(piece)
    if fmt == "json":
        first, last = spans[0][0], spans[-1][1]
        sep = source[spans[0][1] : spans[1][0]] if len(spans) > 1 else ",\n  "
        return source[:first] + sep.join(pieces) + source[last:]
    return source[: spans[0][0]] + "".join(pieces) + source[spans[-1][1] :]


def _json_item_spans(source: str, start: int, end: int) -> list[tuple[int, int]]:
    node = _JsonIndex(source).value(start)
    return [(c.start, c.end) for c in node.children]


def _yaml_item_spans(source: str, items: list[_Item], start: int, end: int) -> list[tuple[int, int]]:
    """A block sequence's items as whole lines: from each item's dash line to the next one's."""
    if source[start : start + 1] == "[":
        raise ValueError("a flow sequence")
    offsets = [0]
    for line in source.split("\n"):
        offsets.append(offsets[-1] + len(line) + 1)
    begin = [offsets[it.line - 1] for it in items]
    last = end if end == 0 or source[end - 1] == "\n" else min(len(source), source.find("\n", end) + 1 or len(source))
    return list(zip(begin, begin[1:] + [last]))


def _scalar(value: str, item: _Item, source: str, fmt: str) -> str:
    """``value`` written where the old content scalar was, in its style where the value allows."""
    if fmt == "json":
        return json.dumps(value, ensure_ascii=False)
    style = item.style
    if style == "|":
        line_start = source.rfind("\n", 0, item.content_start) + 1
        key_indent = item.content_start - line_start - len(source[line_start : item.content_start].lstrip(" "))
        body_start = source.find("\n", item.content_start) + 1
        body = source[body_start : item.content_end]
        indent = min((len(l) - len(l.lstrip(" ")) for l in body.split("\n") if l.strip()), default=key_indent + 2)
        chomp = "" if value.endswith("\n") and not value.endswith("\n\n") else "-" if not value.endswith("\n") else "+"
        lines = value[:-1].split("\n") if value.endswith("\n") and chomp == "" else value.split("\n")
        if chomp == "+":
            lines = value.split("\n")[:-1]
        text = "|" + chomp + "\n" + "\n".join((" " * indent + l) if l else "" for l in lines) + "\n"
        return text if source[item.content_end - 1 : item.content_end] == "\n" else text.rstrip("\n")
    if "\n" not in value and style == "'":
        return "'" + value.replace("'", "''") + "'"
    if "\n" not in value and style is None or style == "":
        try:
            if yaml.safe_load(value) == value and value == value.strip() and ": " not in value and " #" not in value:
                return value
        except yaml.YAMLError:
            pass
    return json.dumps(value, ensure_ascii=False)
