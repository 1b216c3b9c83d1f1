"""Message templates: a system prompt, few-shot turns and a user template, as one editable text.

    file (.txt / messages .json / .yaml) ──► MessageTemplate ──► flat text ──► segments, fill,
                                                                  │           scoring, search
                           model's chat template ◄── render ◄────┘

**Design: one canonical flat text.** Every stage after loading (segmentation, ``fill``,
attribution masks, rewrites, fix candidates, the Optuna search, the prefix trie) works on text.
A message template is handed to them as its *flat form*: each message is one role mark followed
by its content, ``"\\x11system text\\x12user text\\x13assistant text..."``. The marks are the
control characters U+0011 (system), U+0012 (user) and U+0013 (assistant); they cannot occur in
a template (a loader refuses them, YAML cannot even hold them), they are not whitespace for
``str.split``/``strip``/``\\s`` and not word characters, and segmentation never puts one inside
an editable segment except a whole few-shot example (``by="example"``), which carries its
marks with it, so deleting or reordering examples leaves a well-formed flat text. Keeping the
pipeline text-based means one code path for prompts and message lists: a segment mask, a
rewrite or a trial is a string edit, and every variant of a template shares its prefix with the
original in the trie. Only four places turn the flat form back into messages, and marks never
go further than them:

* ``render`` (``ChatPrompts.render`` in ``backends/base.py``): the model's own chat template,
  for the local and the remote backend alike;
* ``for_backend``: a backend that does not render messages itself (a fake, a third-party
  ``Backend``) gets a plain ``System: ... / User: ...`` transcript instead;
* ``shown`` / ``messages_of``: reports show each message with its role;
* writing back (``write_template``): a messages file comes back as a messages file.

A plain text template has no marks at all: its flat form is the text itself, one user turn,
exactly as before message templates existed.

**System role.** Where the model's chat template renders a system message, it gets one. Where
it has none (it raises, or drops the text), the one fallback is: the system text goes at the
start of the first user turn, followed by a blank line, and ``render_notes`` says so in every
report. Without a chat template (``--raw``) messages are sent as a transcript, with a note.

**Placeholders and escaping.** Two styles, one internal form. Inside the pipeline every
template is in the *brace* style (the rules of ``segments.fill``): ``{name}`` is a field filled
from a case's vars, ``{{`` and ``}}`` are a literal ``{`` and ``}``, any other brace is an error
naming its line and column. A loader also reads the *double* style (Nunjucks, Jinja, mustache,
promptfoo) and converts it:

* ``{{ name }}`` / ``{{name}}`` (and mustache's unescaped ``{{{ name }}}``) is the field ``name``;
  a name is an identifier (letters, digits, ``_``); filters and expressions (``{{ x | upper }}``,
  ``{{ a.b }}``) are refused with a one-line error, since their output is not a plain value;
* a single ``{`` or ``}`` is literal text;
* a literal ``{{`` or ``}}`` is written inside ``{% raw %}...{% endraw %}`` (Jinja, Nunjucks);
  everything between the raw tags is literal;
* any other ``{%``/``{#`` tag, and a ``{{`` never closed, is an error naming its line and column.

Which style a template uses: ``placeholders="double"`` or ``"brace"`` when given; ``"auto"``
(the default) reads the double style when the text has something that starts like a double-style
placeholder (``{{`` then a name, e.g. ``{{ name }}``, or an unclosed ``{{ name``) or a ``{%`` tag,
and no single-brace ``{name}`` field outside one; else the brace style (so ``{{`` keeps meaning a literal brace in
a template that has ``{name}`` fields). promptfoo prompts are always the double style. A template
keeps its style: fix writes a repaired one back in the style it was read in (``to_style``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from .errors import InputError

if TYPE_CHECKING:  # backends.base renders through this module
    from .backends.base import Backend

ROLES: tuple[str, ...] = ("system", "user", "assistant")
MARKS: dict[str, str] = {"system": "\x11", "user": "\x12", "assistant": "\x13"}
ROLE_OF: dict[str, str] = {mark: role for role, mark in MARKS.items()}
MARK_RE = re.compile("[\x11\x12\x13]")
FORMATS: tuple[str, ...] = ("text", "json", "yaml")
MESSAGE_SUFFIXES = (".json", ".yaml", ".yml")
FALLBACK_SEPARATOR = "\n\n"  # system text + this + first user turn, for templates without a system role
_PROBE = "promptlens system probe 7f3a"


PLACEHOLDER_STYLES = ("auto", "brace", "double")
# brace style: `{{` `}}` literal, `{name}` a field, any other brace an error
BRACES = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}|[{}]")
# double style: raw blocks, tags, `{{{ name }}}` / `{{ name }}` placeholders
_DOUBLE = re.compile(r"\{%-?\s*raw\s*-?%\}(?P<raw>.*?)\{%-?\s*endraw\s*-?%\}|\{\{\{\s*(?P<triple>[^{}]*?)\s*\}\}\}"
                     r"|\{\{-?\s*(?P<expr>[^{}]*?)\s*-?\}\}|(?P<tag>\{[%#])|(?P<open>\{\{)", re.S)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_DOUBLE_FIELD = re.compile(r"\{\{\{?\s*[A-Za-z_][A-Za-z0-9_]*\s*\}?\}\}")
_DOUBLE_HINT = re.compile(r"\{\{-?\s*[A-Za-z_]|\{%")  # how a double-style placeholder or tag starts


@dataclass(frozen=True)
class Message:
    """One chat turn. ``content`` is template text: ``{name}`` fields, ``{{``/``}}`` literal braces."""

    role: str
    content: str


@dataclass(frozen=True)
class MessageTemplate:
    """A template made of messages, with where it came from (for errors, positions, writing back).

    ``positions[i][k]`` is the 0-based offset in ``source`` of character k of message i's content
    (one entry more for its end); empty when the template was not read from a file.
    """

    messages: tuple[Message, ...]
    format: str = "text"  # "text" (plain, one user turn), "json" or "yaml" (a messages file), "promptfoo"
    placeholders: str = "brace"  # the style the file was written in: "brace" or "double"
    path: str | None = None
    source: str | None = None  # the file's text
    positions: tuple[tuple[int, ...], ...] = field(default=(), repr=False, compare=False)

    @property
    def text(self) -> str:
        """The flat form every pipeline stage works on (see the module docstring)."""
        if self.format == "text" and len(self.messages) == 1 and self.messages[0].role == "user":
            return self.messages[0].content
        return to_flat(self.messages)

    @property
    def is_chat(self) -> bool:
        return MARK_RE.search(self.text) is not None

    def flat_positions(self) -> list[int] | None:
        """For each character of ``text`` (and its end), its offset in ``source``; a role mark
        maps to its message's first character. None without file positions."""
        if self.source is None or len(self.positions) != len(self.messages):
            return None
        out: list[int] = []
        marked = is_messages(self.text)
        for pos in self.positions:
            out.extend(([pos[0]] if marked else []) + list(pos[:-1]))
        out.append(self.positions[-1][-1] if self.positions[-1] else len(self.source))
        return out

    def with_text(self, flat: str) -> MessageTemplate:
        """The same template (file, format) holding the messages of another flat text."""
        return replace(self, messages=tuple(messages_of(flat)), positions=())

    def location(self, message: int, offset: int) -> tuple[int, int]:
        """1-based (line, column) in the file of character ``offset`` of message ``message``'s
        content; (1, 1) when the template has no file positions."""
        if self.source is None or message >= len(self.positions):
            return 1, 1
        pos = self.positions[message][min(offset, len(self.positions[message]) - 1)]
        return line_col(self.source, pos)


# --- the flat form -------------------------------------------------------------------------


def is_messages(text: str) -> bool:
    """Whether a text (a flat template or a piece of one) holds role marks."""
    return MARK_RE.search(text) is not None


def to_flat(messages: Iterable[Message]) -> str:
    return "".join(MARKS[m.role] + m.content for m in messages)


def messages_of(flat: str) -> list[Message]:
    """The messages of a flat text; a text without marks is one user message."""
    if not MARK_RE.search(flat):
        return [Message("user", flat)]
    if flat and flat[0] not in ROLE_OF:
        raise ValueError("a flat message text starts with a role mark")
    return [Message(ROLE_OF[part[0]], part[1:]) for part in _parts(flat)]


def _parts(flat: str) -> list[str]:
    starts = [m.start() for m in MARK_RE.finditer(flat)]
    return [flat[a:b] for a, b in zip(starts, starts[1:] + [len(flat)])]


def message_spans(flat: str) -> list[tuple[int, int, str]]:
    """(content start, content end, role) of each message in a flat text (mark excluded)."""
    if not MARK_RE.search(flat):
        return [(0, len(flat), "user")]
    spans, pos = [], 0
    for part in _parts(flat):
        spans.append((pos + 1, pos + len(part), ROLE_OF[part[0]]))
        pos += len(part)
    return spans


def message_at(flat: str, offset: int) -> int:
    """Index of the message that holds character ``offset`` of the flat text."""
    return max(0, sum(1 for m in MARK_RE.finditer(flat) if m.start() <= offset) - 1)


def example_spans(messages: Sequence[Message]) -> list[tuple[int, int]]:
    """(first, last) message indices of each few-shot example: a user turn answered by the
    assistant turn right after it, when more turns follow (the last user turn is the template
    the case fills, and its answer is what the model is asked for)."""
    out = []
    for i in range(len(messages) - 2):
        if messages[i].role == "user" and messages[i + 1].role == "assistant":
            out.append((i, i + 1))
    return out


def blank(text: str, filler: str) -> str:
    """A baseline for a segment that holds whole messages: each message keeps its role mark
    and its content becomes ``filler``, so the flat text stays well-formed."""
    if not MARK_RE.search(text):
        return filler
    return "".join(part[0] + filler for part in _parts(text))


def shown(text: str, *, inline: bool = True) -> str:
    """A flat text (or a piece of one) for people: each mark becomes its role as a label,
    ``[user] `` inline or a ``--- user ---`` header line otherwise."""
    def label(m: re.Match[str]) -> str:
        role = ROLE_OF[m.group()]
        if inline:
            return f"[{role}] "
        return ("\n" if m.start() > 0 else "") + f"--- {role} ---\n"

    return MARK_RE.sub(label, text)


# --- placeholder styles ---------------------------------------------------------------------


def detect_style(text: str) -> str:
    """``"double"`` when ``text`` has a ``{{ name``-like placeholder start (or a ``{%`` tag) and no
    ``{name}`` field outside a double-brace placeholder."""
    if not _DOUBLE_HINT.search(text):
        return "brace"
    rest = _DOUBLE_FIELD.sub("", text)
    return "brace" if any(m.group(1) for m in BRACES.finditer(rest)) else "double"


def from_double(text: str, at: Any = None) -> str:
    """Double-style template text in the internal brace style. ``at(offset)`` names the place
    of an error (default: ``line L, column C`` of ``text``)."""
    return from_double_mapped(text, at)[0]


def from_double_mapped(text: str, at: Any = None) -> tuple[str, list[int]]:
    """``from_double`` and, for each character of the result (and its end), its offset in ``text``."""
    def where(pos: int) -> str:
        if at is not None:
            return at(pos)
        line, col = line_col(text, pos)
        return f"line {line}, column {col}"

    out: list[str] = []
    index: list[int] = []

    def literal(start: int, end: int) -> None:
        for k in range(start, end):
            piece = text[k] * 2 if text[k] in "{}" else text[k]
            out.append(piece)
            index.extend([k] * len(piece))

    pos = 0
    for m in _DOUBLE.finditer(text):
        literal(pos, m.start())
        pos = m.end()
        if m.group("raw") is not None:
            literal(m.start("raw"), m.end("raw"))
            continue
        if m.group("tag"):
            raise InputError(f"{where(m.start())}: template tag `{text[m.start():m.start() + 2]}` is not a placeholder; "
                             "promptlens reads `{{ name }}` fields and `{% raw %}...{% endraw %}` only: remove the tag")
        if m.group("open"):
            raise InputError(f"{where(m.start())}: `{{{{` is never closed; close the placeholder with `}}}}`, "
                             "or write a literal brace pair as {% raw %}{{{% endraw %}")
        expr = m.group("triple") if m.group("triple") is not None else m.group("expr")
        if not _NAME.match(expr):
            raise InputError(f"{where(m.start())}: placeholder {m.group()!r} is not a plain name; promptlens fills "
                             "`{{ name }}` with a case's value: move filters and expressions out of the template")
        field_text = "{" + expr + "}"
        out.append(field_text)
        index.extend([m.start()] * len(field_text))
    literal(pos, len(text))
    index.append(len(text))
    return "".join(out), index


def _brace_literal(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def to_style(text: str, style: str) -> str:
    """Internal (brace-style) template text written in ``style`` ("brace" or "double"):
    ``from_double(to_style(t, "double")) == t`` for every valid ``t``."""
    if style != "double":
        return text
    pieces: list[tuple[str, str]] = []  # ("text", literal) or ("field", name)
    literal, pos = [], 0
    for m in BRACES.finditer(text):
        literal.append(text[pos : m.start()])
        pos = m.end()
        if m.group(1):
            pieces += [("text", "".join(literal)), ("field", m.group(1))]
            literal = []
        else:
            literal.append(m.group()[0])
    pieces.append(("text", "".join(literal) + text[pos:]))
    out = []
    for i, (kind, value) in enumerate(pieces):
        if kind == "field":
            out.append("{{ " + value + " }}")
            continue
        # a run of literal braces that would read as a placeholder or a tag goes in a raw block,
        # and so does one that touches a placeholder (`{` + `{{ x }}` would read as `{{{ x }}}`)
        def wrap(m: re.Match[str], n: int = len(value), i: int = i) -> str:
            run = m.group()
            touches = (m.end() == n and i + 1 < len(pieces) and run.endswith("{")) or (m.start() == 0 and i > 0 and run.startswith("}"))
            if touches or re.search(r"\{[{%#]|\}\}", run):
                return "{% raw %}" + run + "{% endraw %}"
            return run

        value = re.sub(r"[{}%#]+", wrap, value)
        out.append(value)
    return "".join(out)


def to_internal(text: str, style: str = "auto", at: Any = None) -> tuple[str, str]:
    """(brace-style text, the style it was read in) for template text in ``style``."""
    if style not in PLACEHOLDER_STYLES:
        raise InputError(f"unknown placeholder style {style!r}; use one of: {', '.join(PLACEHOLDER_STYLES)}")
    style = detect_style(text) if style == "auto" else style
    return (from_double(text, at) if style == "double" else text), style


# --- rendering ------------------------------------------------------------------------------


def has_system_role(tokenizer: Any) -> bool:
    """Whether the tokenizer's chat template renders a system message's text (measured once)."""
    cached = getattr(tokenizer, "_promptlens_system_role", None)
    if cached is not None:
        return bool(cached)
    try:
        out = tokenizer.apply_chat_template(
            [{"role": "system", "content": _PROBE}, {"role": "user", "content": "hi"}],
            tokenize=False, add_generation_prompt=True)
        ok = _PROBE in out
    except Exception:  # jinja2 TemplateError ("System role not supported") and friends
        ok = False
    try:
        tokenizer._promptlens_system_role = ok
    except AttributeError:  # a tokenizer that refuses attributes: measure again next time
        pass
    return ok


def chat_messages(messages: Sequence[Message], *, system_role: bool) -> list[dict[str, str]]:
    """The dicts for ``apply_chat_template``; without a system role, the documented fallback."""
    out = [{"role": m.role, "content": m.content} for m in messages]
    if system_role:
        return out
    system = [d["content"] for d in out if d["role"] == "system"]
    rest = [d for d in out if d["role"] != "system"]
    if not system:
        return rest
    lead = FALLBACK_SEPARATOR.join(system)
    if rest and rest[0]["role"] == "user":
        rest[0] = {"role": "user", "content": lead + FALLBACK_SEPARATOR + rest[0]["content"]}
    else:
        rest.insert(0, {"role": "user", "content": lead})
    return rest


def transcript(flat: str) -> str:
    """A flat text as plain completion text: ``Role: content`` blocks, ending with ``Assistant:``
    unless the last turn is the assistant's. A text without marks comes back unchanged."""
    if not MARK_RE.search(flat):
        return flat
    messages = messages_of(flat)
    blocks = [f"{m.role.capitalize()}: {m.content}" for m in messages]
    if messages[-1].role != "assistant":
        blocks.append("Assistant:")
    return "\n\n".join(blocks)


def render(tokenizer: Any, flat: str, *, raw: bool) -> str:
    """The exact text the model sees for a filled flat text."""
    if raw:
        return transcript(flat)
    messages = messages_of(flat)
    dicts = chat_messages(messages, system_role=has_system_role(tokenizer) if messages[0].role == "system" else True)
    if dicts and dicts[-1]["role"] == "assistant":  # a prefilled answer: the model continues it
        return tokenizer.apply_chat_template(dicts, tokenize=False, continue_final_message=True)
    return tokenizer.apply_chat_template(dicts, tokenize=False, add_generation_prompt=True)


def content_offsets(rendered: str, flat: str) -> list[tuple[int, int, int]]:
    """(offset in ``rendered``, offset in ``flat``, length) of each message's content, found in
    order in the rendered text (the chat template copies every content verbatim)."""
    out, cursor = [], 0
    for start, end, _ in message_spans(flat):
        at = rendered.find(flat[start:end], cursor) if end > start else -1
        if at >= 0:
            out.append((at, start, end - start))
            cursor = at + end - start
    return out


def for_backend(backend: Backend, prompt: str) -> str:
    """What a backend is given for a filled flat text: the flat text itself when the backend
    renders messages (``renders_messages``), else the plain transcript: marks never reach a
    model or a backend that would not know them."""
    if getattr(backend, "renders_messages", False) or not MARK_RE.search(prompt):
        return prompt
    return transcript(prompt)


def render_notes(backend: Backend, flat: str) -> list[str]:
    """What a report must say about how a message template reached the model."""
    if not MARK_RE.search(flat):
        return []
    name = getattr(backend, "name", type(backend).__name__)
    if getattr(backend, "raw", False) or not getattr(backend, "renders_messages", False):
        return [f"{name} is scored without a chat template: the messages are sent as a "
                "'System: / User: / Assistant:' transcript"]
    roles = {m.role for m in messages_of(flat)}
    tokenizer = getattr(backend, "tokenizer", None)
    if "system" in roles and tokenizer is not None and not has_system_role(tokenizer):
        return [f"the chat template of {name} has no system role: the system text is sent at the "
                "start of the first user turn, followed by a blank line"]
    return []


# --- loading --------------------------------------------------------------------------------


def as_template(value: str | MessageTemplate | Sequence[Mapping[str, Any]]) -> MessageTemplate:
    """A template from what the Python API accepts: text, a MessageTemplate, or a messages list."""
    if isinstance(value, MessageTemplate):
        return value
    if isinstance(value, str):  # already internal text (a flat form): no placeholder conversion
        if MARK_RE.search(value):
            return MessageTemplate(tuple(messages_of(value)), format="json")
        return MessageTemplate((Message("user", value),))
    if isinstance(value, Sequence):
        return from_messages(value)
    raise InputError(f"a template is text, a MessageTemplate or a list of {{role, content}} messages, not {type(value).__name__}")


def as_flat(value: str | MessageTemplate | Sequence[Mapping[str, Any]]) -> str:
    """The flat text of anything ``as_template`` accepts (text comes back unchanged)."""
    return value if isinstance(value, str) else as_template(value).text


def from_messages(items: Sequence[Any], *, where: str = "the messages", lines: Sequence[int] | None = None,
                  placeholders: str = "auto", **kwargs: Any) -> MessageTemplate:
    """Validate a list of ``{"role", "content"}`` mappings. ``lines[i]`` is item i's file line;
    ``kwargs`` are MessageTemplate fields (format, path, source, positions). Contents in the
    double placeholder style are converted to the internal brace style (module docstring)."""
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        raise InputError(f"{where}: the messages must be a list of {{role, content}} objects, not {_a(items)}")
    if not items:
        raise InputError(f"{where}: the message list is empty; add at least one {{role: user, content: ...}} message")
    out = []
    for i, item in enumerate(items):
        at = f"{where}:{lines[i]}" if lines and i < len(lines) else f"{where}: message {i + 1}"
        out.append(_message(item, at))
    if all(m.role == "system" for m in out):
        raise InputError(f"{where}: the template has only system messages; add the user turn the cases fill")
    template = MessageTemplate(tuple(out), **{"format": "json", **kwargs})
    return convert_placeholders(template, placeholders, where)


def convert_placeholders(template: MessageTemplate, placeholders: str, where: str) -> MessageTemplate:
    """The template in the internal brace style, its ``placeholders`` set to the style it was
    written in; every brace error names ``file:line:col`` where the template has positions."""
    if placeholders not in PLACEHOLDER_STYLES:
        raise InputError(f"unknown placeholder style {placeholders!r}; use one of: {', '.join(PLACEHOLDER_STYLES)}")
    style = placeholders
    if style == "auto":
        joined = "\n".join(m.content for m in template.messages)
        style = detect_style(joined)
    messages, positions = [], list(template.positions)
    for i, m in enumerate(template.messages):
        def at(k: int, i: int = i, content: str = m.content) -> str:
            if template.source is not None and i < len(template.positions):
                return "{}:{}:{}".format(where, *template.location(i, k))
            line, col = line_col(content, k)
            role = f"message {i + 1} ({m.role}), " if len(template.messages) > 1 or template.format != "text" else ""
            return f"{where}: {role}line {line}, column {col}"

        content = m.content
        if style == "double":
            content, index = from_double_mapped(m.content, at)
            if i < len(positions):  # file positions of the converted text, through the conversion
                positions[i] = tuple(positions[i][min(j, len(positions[i]) - 1)] for j in index)
        elif template.format != "text":  # a text template keeps segments' own message
            _check_braces(content, at)
        messages.append(Message(m.role, content))
    return replace(template, messages=tuple(messages), placeholders=style, positions=tuple(positions))


def _check_braces(content: str, at: Any) -> None:
    for m in BRACES.finditer(content):
        if m.group(1) is None and len(m.group()) == 1:
            raise InputError(f"{at(m.start())}: invalid brace {m.group()!r}: a field is `{{name}}` with name an "
                             "identifier; for a literal brace, double it (`{{` or `}}`), or write fields as `{{ name }}`")


def _message(item: Any, at: str) -> Message:
    if not isinstance(item, Mapping):
        raise InputError(f"{at}: a message is an object with `role` and `content`, not {_a(item)}")
    extra = [k for k in item if k not in ("role", "content", "name")]
    if "role" not in item or "content" not in item:
        missing = "role" if "role" not in item else "content"
        raise InputError(f"{at}: the message has no `{missing}`; give both `role` ({', '.join(ROLES)}) and `content`")
    role, content = item["role"], item["content"]
    if role not in ROLES:
        raise InputError(f"{at}: unknown role {role!r}; use one of: {', '.join(ROLES)}")
    if extra:
        raise InputError(f"{at}: the message has key `{extra[0]}`, which promptlens does not read; "
                         "keep only `role` and `content`")
    if not isinstance(content, str):
        raise InputError(f"{at}: `content` is {_a(content)}; give the message text as a string "
                         "(a list of content parts is not supported)")
    bad = MARK_RE.search(content)
    if bad:
        raise InputError(f"{at}: the content holds the control character U+{ord(bad.group()):04X}; remove it")
    return Message(role, content)


def looks_like_messages_file(path: Path) -> bool:
    return path.suffix.lower() in MESSAGE_SUFFIXES


DOUBLE_SUFFIXES = (".j2", ".jinja", ".jinja2", ".njk", ".mustache", ".hbs")


def text_template(text: str, *, path: str | None = None, placeholders: str = "auto") -> MessageTemplate:
    """A plain text template (one user turn), placeholders converted; errors name ``path:line:col``."""
    template = MessageTemplate((Message("user", text),), format="text", path=path, source=text if path else None,
                               positions=(tuple(range(len(text) + 1)),) if path else ())
    return convert_placeholders(template, placeholders, path or "the template")


def line_col(text: str, pos: int) -> tuple[int, int]:
    """1-based (line, column) of offset ``pos`` in ``text``."""
    return text.count("\n", 0, pos) + 1, pos - (text.rfind("\n", 0, pos) + 1) + 1


def _a(value: Any) -> str:
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
    return f"a {type(value).__name__}"


__all__ = [
    "ROLES", "MARKS", "Message", "MessageTemplate", "as_template", "as_flat",
    "from_messages", "to_flat", "messages_of", "message_spans", "message_at", "example_spans",
    "shown", "render", "render_notes", "for_backend", "transcript", "chat_messages", "has_system_role",
    "line_col", "blank", "is_messages", "content_offsets", "detect_style", "from_double", "to_style", "to_internal",
    "PLACEHOLDER_STYLES", "text_template", "convert_placeholders",
]
