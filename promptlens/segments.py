"""Prompt or template text -> Segments that cover it exactly.

Template fields ``{name}`` are always segments of their own. The rest of the text is cut into
features (sentences, lines, words, tokens or user-marked spans) and fixed "gap" segments by one
whitespace rule, the same for every segmentation:

* a feature owns the spaces and tabs right after it, so deleting it never leaves a double space;
* a feature alone on its line owns the whole line, indentation and line break included, so
  deleting it deletes the line;
* all other whitespace (blank lines, the line break after a line holding several features or a
  field, whitespace at the start of the text or after a field) is a gap.

Message templates (see ``promptlens/templates.py``) arrive as their flat text: a role mark
before each message's content. Each message's content is segmented on its own by the rules
above, and each mark is a fixed ``role`` segment, so no feature crosses a message boundary and
joining the segments gives back the exact flat text, every message included. Two more
segmentations see whole messages:

* ``message``: each message (mark and content) is one feature;
* ``example``: each few-shot example (a user turn and the assistant turn that answers it, both
  marks included) is one feature, and every other message is one feature too.

In both, a message that holds a template field stays fixed (mark, text and field as fixed
segments) unless ``edit_fields``, so the case's input is never deleted. ``unit`` mixes the two:
each few-shot example is one feature, every other message (the user template included) is
segmented by sentence.

Only a feature that starts its line can own a line break (marked spans aside, which may hold
several lines), so deleting one never joins two lines. No segment splits a field or a literal
``{{``/``}}``, so deleting or replacing any feature leaves a valid template with the same fields.
"""

from __future__ import annotations

import re
from typing import Any, Iterator, Mapping, Sequence

from promptlens.errors import InputError
from promptlens.templates import MARK_RE, ROLE_OF, example_spans, messages_of, to_flat
from promptlens.types import Segment

SEGMENTATIONS: tuple[str, ...] = ("sentence", "line", "word", "token", "span", "message", "example", "unit")
TEXT_SEGMENTATIONS: tuple[str, ...] = ("sentence", "line", "word", "token", "span")

_Field = tuple[int, int, str]  # start, end, name
_Core = tuple[int, int, str, str | None]  # start, end, kind, label: a feature before whitespace
_Span = tuple[int, int, str | None, int]  # clean start, clean end, label, position of its `[[`

# `{{` and `}}` are literal braces, `{name}` is a field, any other brace is an error.
_BRACES = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}|[{}]")
_SHOWN = re.compile(r"\{[^{}\n]{0,30}\}")  # a bad field, to quote in the error
_ESCAPE = re.compile(r"\{\{|\}\}")  # a field-free chunk holds no other braces
_MARK = re.compile(r"\[\[|\]\]")
# A label needs the space after its colon, so `[[http://x]]` is not read as label "http".
_LABEL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*):[ \t]+")
# A sentence ends after . ! ? or … (then any closing quotes or brackets) when whitespace follows.
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]»]*(?=\s)")
_WORD = re.compile(r"\S+")
_INLINE_SPACE = re.compile(r"[^\S\n]*")  # whitespace short of a line break


def template_fields(template: str) -> list[str]:
    """Names of the ``{name}`` fields of ``template``, in order of first appearance."""
    return list(dict.fromkeys(name for _, _, name in _fields(template)))


def fill(template: str, values: Mapping[str, str]) -> str:
    """Substitute every field; ``{{`` and ``}}`` become ``{`` and ``}``. Extra values are ignored."""
    missing = [name for name in template_fields(template) if name not in values]
    if missing:
        names = ", ".join(f"{{{name}}}" for name in missing)
        keys = ", ".join(f"`{name}`" for name in missing)
        s, verb = ("s", "have") if len(missing) > 1 else ("", "has")
        raise InputError(f"template field{s} {names} {verb} no value; add {keys} to the case's vars")
    # After _fields succeeded every match is `{{`, `}}` or a field: `{{`[0] is the literal brace.
    return _BRACES.sub(lambda m: values[m.group(1)] if m.group(1) else m.group()[0], template)


def strip_marks(text: str) -> str:
    """``text`` without its ``[[...]]`` / ``[[name: ...]]`` span marks."""
    if MARK_RE.search(text):  # mark by mark, so a span never reaches into the next message
        return "".join(part[0] + _marks(part[1:])[0] for part in _message_parts(text))
    return _marks(text)[0]


def segment(
    text: str, by: str = "sentence", *, tokenizer: Any | None = None, edit_fields: bool = False
) -> list[Segment]:
    """Split ``text`` into contiguous Segments that join back to it (to ``strip_marks(text)`` for
    ``by="span"``). Fields are ``kind="field"`` segments, features only if ``edit_fields``."""
    if by not in SEGMENTATIONS:
        raise InputError(f"unknown segmentation {by!r}; use one of: {', '.join(SEGMENTATIONS)}")
    if by == "token" and tokenizer is None:
        raise InputError("segmentation 'token' needs a tokenizer; pass tokenizer=... or use by='word'")
    if by == "unit" and not MARK_RE.search(text):
        by = "sentence"  # a plain text template: its units are its sentences
    if MARK_RE.search(text) or by in ("message", "example"):
        return _segment_messages(text, by, tokenizer, edit_fields)
    return _segment_text(text, by, tokenizer, edit_fields)


def _segment_text(text: str, by: str, tokenizer: Any, edit_fields: bool) -> list[Segment]:
    if by == "span":
        _fields(text)  # report bad braces at their positions in the text the user wrote
        clean, spans = _marks(text)
        fields = _fields(clean)
        return _assemble(clean, fields, _span_cores(clean, text, spans, fields), edit_fields)
    fields = _fields(text)
    cores = [c for s, e in _between(fields, len(text)) for c in _cores(text, s, e, by, tokenizer)]
    return _assemble(text, fields, cores, edit_fields)


def join(segments: Sequence[Segment], replace: Mapping[int, str] | None = None) -> str:
    """The segments' text, with ``segments[i]`` replaced by ``replace[i]`` ("" deletes it)."""
    replace = replace or {}
    bad = [i for i in replace if not 0 <= i < len(segments)]
    if bad:
        raise IndexError(f"replace indices {bad} are out of range for {len(segments)} segments")
    return "".join(replace.get(i, seg.text) for i, seg in enumerate(segments))


def features(segments: Sequence[Segment]) -> list[int]:
    """Indices of the feature segments."""
    return [i for i, seg in enumerate(segments) if seg.feature]


# --- messages ------------------------------------------------------------------------------


def overlaps(seg: Segment, ranges: Sequence[tuple[int, int]]) -> bool:
    """Whether ``seg`` shares a character with any (start, end) range."""
    return any(seg.start < end and start < seg.end for start, end in ranges)


def _message_parts(flat: str) -> list[str]:
    """Each message's mark and content; a text without marks is one part without a mark."""
    starts = [m.start() for m in MARK_RE.finditer(flat)]
    if not starts:
        return [flat]
    return [flat[a:b] for a, b in zip(starts, starts[1:] + [len(flat)])]


def _shift(segs: Sequence[Segment], by: int, message: int | None) -> list[Segment]:
    return [Segment(s.start + by, s.end + by, s.text, s.kind, s.feature, s.name, message) for s in segs]


def _segment_messages(text: str, by: str, tokenizer: Any, edit_fields: bool) -> list[Segment]:
    """Segments of a flat message text (see the module docstring)."""
    parts = _message_parts(text)
    if by == "unit":
        return _units(parts, tokenizer, edit_fields)
    if by in ("message", "example"):
        return _whole_messages(parts, by, edit_fields)
    out: list[Segment] = []
    pos = 0
    for i, part in enumerate(parts):
        out.extend(_split_message(part, pos, i, by, tokenizer, edit_fields))
        pos += len(part)
    return out


def _split_message(part: str, pos: int, i: int, by: str, tokenizer: Any, edit_fields: bool) -> list[Segment]:
    """Message ``i`` (its mark and content, starting at ``pos``): the mark as a fixed ``role``
    segment, the content segmented ``by`` a text segmentation."""
    mark, content = (part[0], part[1:]) if part[:1] in ROLE_OF else ("", part)
    head = [Segment(pos, pos + 1, mark, "role", False, ROLE_OF[mark], i)] if mark else []
    try:
        inner = _segment_text(content, by, tokenizer, edit_fields)
    except InputError as exc:
        raise InputError(f"message {i + 1} ({ROLE_OF.get(mark, 'user')}): {exc}") from exc
    return head + _shift(inner, pos + len(mark), i)


def _whole_messages(parts: list[str], by: str, edit_fields: bool) -> list[Segment]:
    """``message`` / ``example`` segments: whole messages (marks included) as features."""
    plain = parts[0][:1] not in ROLE_OF  # a plain text template: one user turn without a mark
    messages = messages_of("".join(parts))
    pairs = dict(example_spans(messages)) if by == "example" else {}
    out: list[Segment] = []
    pos, i, n = 0, 0, 0
    while i < len(parts):
        last = pairs.get(i, i)
        piece = "".join(parts[i : last + 1])
        keep = (bool(_fields(piece)) and not edit_fields) or not "".join(parts[i : last + 1]).strip("\x11\x12\x13 \t\r\n")
        if keep:
            for j in range(i, last + 1):
                out.extend(_fixed_message(parts[j], pos, j, plain))
                pos += len(parts[j])
        else:
            kind, name = ("example", f"example {n + 1}") if last > i else ("message", messages[i].role)
            n += kind == "example"
            out.append(Segment(pos, pos + len(piece), piece, kind, True, name, None if plain else i))
            pos += len(piece)
        i = last + 1
    return out


def _units(parts: list[str], tokenizer: Any, edit_fields: bool) -> list[Segment]:
    """``unit`` segments: each few-shot example whole (as ``example``), every other message by
    sentence, the user template too (its fields fixed unless ``edit_fields``, as at ``sentence``).
    These are the units a prompt's faults live in: a rule is a sentence of the system prompt or
    of the user template, a wrong example is the whole user/assistant pair (deleting only its
    answer would leave a question without one). A plain text template is segmented by sentence."""
    in_examples = {j for pair in example_spans(messages_of("".join(parts))) for j in pair}
    starts = [sum(len(p) for p in parts[:j]) for j in range(len(parts))]
    out: list[Segment] = []
    split: set[int] = set()
    for seg in _whole_messages(parts, "example", edit_fields):
        j = seg.message
        if seg.kind == "example" or j is None or j in in_examples:
            out.append(seg)  # an example, whole (or fixed: one that holds a field)
        elif j not in split:  # a message, whole or fixed for its field: by sentence
            split.add(j)
            out.extend(_split_message(parts[j], starts[j], j, "sentence", tokenizer, edit_fields))
    return out


def _fixed_message(piece: str, pos: int, i: int, plain: bool) -> list[Segment]:
    """A message that stays as it is: its mark, then its fields and text as fixed segments."""
    if plain:
        return [Segment(s.start + pos, s.end + pos, s.text, s.kind, False, s.name) for s in _assemble(piece, _fields(piece), [], False)]
    head = [Segment(pos, pos + 1, piece[0], "role", False, ROLE_OF[piece[0]], i)]
    body = _assemble(piece[1:], _fields(piece[1:]), [], False)
    return head + _shift(body, pos + 1, i)


# --- parsing -------------------------------------------------------------------------------


def _where(text: str, pos: int) -> str:
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return f"line {line}, column {column}"


def _fields(text: str) -> list[_Field]:
    """Every ``{name}`` field; InputError at the first brace that is neither a field nor doubled."""
    found: list[_Field] = []
    for m in _BRACES.finditer(text):
        if m.group(1) is not None:
            found.append((m.start(), m.end(), m.group(1)))
        elif len(m.group()) == 1:
            shown = (_SHOWN.match(text, m.start()) or m).group()
            raise InputError(
                f"invalid brace {shown!r} in template at {_where(text, m.start())}: a field is `{{name}}` "
                "with name an identifier (letters, digits, _); for a literal brace, double it (`{{` or `}}`)"
            )
    return found


def _marks(text: str) -> tuple[str, list[_Span]]:
    """The text without span marks, and each span as (start, end, label, where its `[[` was)."""
    parts: list[str] = []
    spans: list[_Span] = []
    copied, size = 0, 0  # raw text copied so far; length of the clean text so far
    opened: tuple[int, int, str | None] | None = None  # raw position, clean start, label
    for m in _MARK.finditer(text):
        parts.append(text[copied : m.start()])
        size += m.start() - copied
        copied = m.end()
        if m.group() == "[[":
            if opened is not None:
                raise InputError(
                    f"span mark `[[` at {_where(text, m.start())} opens a span inside the one "
                    f"opened at {_where(text, opened[0])}; spans cannot nest: close it with `]]` first"
                )
            label = _LABEL.match(text, m.end())
            copied = label.end() if label else copied
            opened = (m.start(), size, label.group(1) if label else None)
        elif opened is None:
            raise InputError(
                f"span mark `]]` at {_where(text, m.start())} closes no span; "
                "add `[[` where the span starts or remove the `]]`"
            )
        else:
            spans.append((opened[1], size, opened[2], opened[0]))
            opened = None
    if opened is not None:
        where = _where(text, opened[0])
        raise InputError(f"span mark `[[` at {where} is never closed; add `]]` where the span ends")
    parts.append(text[copied:])
    return "".join(parts), spans


# --- features ------------------------------------------------------------------------------


def _between(fields: list[_Field], size: int) -> Iterator[tuple[int, int]]:
    """The (start, end) ranges of text outside the fields."""
    pos = 0
    for start, end, _ in fields:
        yield pos, start
        pos = end
    yield pos, size


def _stripped(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    """``text[start:end]`` without surrounding whitespace, if anything is left."""
    piece = text[start:end]
    core = piece.strip()
    if core:
        left = start + len(piece) - len(piece.lstrip())
        yield left, left + len(core)


def _lines(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    """The lines of ``text[start:end]``, without their line breaks."""
    while (newline := text.find("\n", start, end)) != -1:
        yield start, newline
        start = newline + 1
    yield start, end


def _cores(text: str, start: int, end: int, by: str, tokenizer: Any) -> Iterator[_Core]:
    """Features of the field-free ``text[start:end]``, trimmed of whitespace."""
    if by == "word":
        ranges: Iterator[tuple[int, int]] = ((m.start(), m.end()) for m in _WORD.finditer(text, start, end))
    elif by == "token":
        ranges = _tokens(text, start, end, tokenizer)
    elif by == "line":
        ranges = (r for line in _lines(text, start, end) for r in _stripped(text, *line))
    else:
        ranges = (r for line in _lines(text, start, end) for r in _sentences(text, *line))
    for s, e in ranges:
        yield s, e, by, None


def _sentences(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    cut = start
    for m in _SENTENCE_END.finditer(text, start, end):
        yield from _stripped(text, cut, m.end())
        cut = m.end()
    yield from _stripped(text, cut, end)


def _tokens(text: str, start: int, end: int, tokenizer: Any) -> Iterator[tuple[int, int]]:
    """One range per token. Token starts are used as cut points: tokens sharing characters (the
    byte pieces of 中) merge, and whitespace a tokenizer folds into a token goes to the gaps."""
    if start == end:
        return
    chunk = text[start:end]
    enc = tokenizer(chunk, add_special_tokens=False, return_offsets_mapping=True)
    # Never cut a literal `{{` or `}}` in two: deleting half of it would break the template.
    inside = {m.start() + 1 for m in _ESCAPE.finditer(chunk)}
    cuts = sorted(({0, len(chunk)} | {s for s, e in enc["offset_mapping"] if e > s}) - inside)
    for a, b in zip(cuts, cuts[1:]):
        yield from _stripped(text, start + a, start + b)


def _span_cores(text: str, marked: str, spans: list[_Span], fields: list[_Field]) -> list[_Core]:
    cores: list[_Core] = []
    for start, end, label, at in spans:
        inside = [name for s, e, name in fields if s < end and start < e]
        if inside:
            raise InputError(
                f"span marked at {_where(marked, at)} contains template field {{{inside[0]}}}; "
                "move the `[[`/`]]` marks so the field is outside the span"
            )
        core = list(_stripped(text, start, end))
        if not core:
            where = _where(marked, at)
            raise InputError(f"span marked at {where} is empty; put text inside it or remove the marks")
        cores.append((*core[0], "span", label))
    return cores


# --- whitespace rule -----------------------------------------------------------------------


def _owned(text: str, start: int, end: int) -> tuple[int, int]:
    """The extent a feature core ``text[start:end]`` owns under the module's whitespace rule."""
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    line_end = len(text) if line_end == -1 else line_end
    if not text[line_start:start].strip() and not text[end:line_end].strip():
        return line_start, min(line_end + 1, len(text))
    space = _INLINE_SPACE.match(text, end)  # always matches (``*``), if only the empty string
    return start, space.end() if space else end


def _assemble(text: str, fields: list[_Field], cores: list[_Core], edit_fields: bool) -> list[Segment]:
    """Fields and owned features in text order, with gap segments filling what is left."""
    pieces = [Segment(s, e, text[s:e], "field", edit_fields, name) for s, e, name in fields]
    for start, end, kind, label in cores:
        s, e = _owned(text, start, end)
        pieces.append(Segment(s, e, text[s:e], kind, True, label))
    pieces.sort(key=lambda seg: seg.start)
    segments: list[Segment] = []
    pos = 0
    for seg in [*pieces, Segment(len(text), len(text), "", "end")]:
        if seg.start > pos:
            segments.append(Segment(pos, seg.start, text[pos : seg.start], "gap", False))
        segments.append(seg)
        pos = seg.end
    return segments[:-1]
