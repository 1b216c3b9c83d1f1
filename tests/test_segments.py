"""Segmentation: exact expected segments for hand-written prompts, errors, and invariants."""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from promptlens.errors import InputError
from promptlens.segments import SEGMENTATIONS, TEXT_SEGMENTATIONS, features, fill, join, segment, strip_marks, template_fields
from promptlens.types import Segment

CHAT = "System: You are a helpful assistant. Answer in one word!\n\nUser: {input}\nAssistant:"
FEW_SHOT = (
    'Classify the sentiment.\n\nReview: "Great film!" -> positive\n'
    '  Review: "Dull." -> negative\n\nReview: {review} ->'
)
BRACES = 'Reply as JSON: {{"answer": "{answer}"}}. Dr. Smith said so… really?'
SMOL = Path("/tmp/smol_st")


def view(segments: list[Segment]) -> list[tuple[str, str]]:
    return [(s.kind, s.text) for s in segments]


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    # Stand-in until the model loader provides a shared fixture for the embedded model.
    if not SMOL.is_dir():
        pytest.skip(f"no tokenizer saved at {SMOL}")
    from transformers import AutoTokenizer

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        return AutoTokenizer.from_pretrained(str(SMOL), local_files_only=True)


# --- exact segmentations -------------------------------------------------------------------

EXPECTED = {
    (CHAT, "sentence"): [
        ("sentence", "System: You are a helpful assistant. "),
        ("sentence", "Answer in one word!"),
        ("gap", "\n\n"),
        ("sentence", "User: "),
        ("field", "{input}"),
        ("gap", "\n"),
        ("sentence", "Assistant:"),
    ],
    (CHAT, "line"): [
        ("line", "System: You are a helpful assistant. Answer in one word!\n"),
        ("gap", "\n"),
        ("line", "User: "),
        ("field", "{input}"),
        ("gap", "\n"),
        ("line", "Assistant:"),
    ],
    (CHAT, "word"): [
        *[("word", w) for w in ["System: ", "You ", "are ", "a ", "helpful ", "assistant. "]],
        *[("word", w) for w in ["Answer ", "in ", "one ", "word!"]],
        ("gap", "\n\n"),
        ("word", "User: "),
        ("field", "{input}"),
        ("gap", "\n"),
        ("word", "Assistant:"),
    ],
    (FEW_SHOT, "sentence"): [
        ("sentence", "Classify the sentiment.\n"),  # alone on its line: owns the line break
        ("gap", "\n"),
        ("sentence", 'Review: "Great film!" '),
        ("sentence", "-> positive"),
        ("gap", "\n  "),
        ("sentence", 'Review: "Dull." '),
        ("sentence", "-> negative"),
        ("gap", "\n\n"),
        ("sentence", "Review: "),
        ("field", "{review}"),
        ("gap", " "),
        ("sentence", "->"),
    ],
    (FEW_SHOT, "line"): [
        ("line", "Classify the sentiment.\n"),
        ("gap", "\n"),
        ("line", 'Review: "Great film!" -> positive\n'),
        ("line", '  Review: "Dull." -> negative\n'),  # a whole line owns its indentation
        ("gap", "\n"),
        ("line", "Review: "),
        ("field", "{review}"),
        ("gap", " "),
        ("line", "->"),
    ],
    (FEW_SHOT, "word"): [
        *[("word", w) for w in ["Classify ", "the ", "sentiment."]],
        ("gap", "\n\n"),
        *[("word", w) for w in ["Review: ", '"Great ', 'film!" ', "-> ", "positive"]],
        ("gap", "\n  "),
        *[("word", w) for w in ["Review: ", '"Dull." ', "-> ", "negative"]],
        ("gap", "\n\n"),
        ("word", "Review: "),
        ("field", "{review}"),
        ("gap", " "),
        ("word", "->"),
    ],
    (BRACES, "sentence"): [
        ("sentence", 'Reply as JSON: {{"answer": "'),
        ("field", "{answer}"),
        ("sentence", '"}}. '),
        ("sentence", "Dr. "),  # abbreviations split: consistent beats clever
        ("sentence", "Smith said so… "),
        ("sentence", "really?"),
    ],
    (BRACES, "line"): [
        ("line", 'Reply as JSON: {{"answer": "'),
        ("field", "{answer}"),
        ("line", '"}}. Dr. Smith said so… really?'),
    ],
    (BRACES, "word"): [
        *[("word", w) for w in ["Reply ", "as ", "JSON: ", '{{"answer": ', '"']],
        ("field", "{answer}"),
        *[("word", w) for w in ['"}}. ', "Dr. ", "Smith ", "said ", "so… ", "really?"]],
    ],
}


@pytest.mark.parametrize("text, by", list(EXPECTED), ids=[f"{by}-{i}" for i, (_, by) in enumerate(EXPECTED)])
def test_exact_segmentation(text: str, by: str) -> None:
    segments = segment(text, by)
    assert view(segments) == EXPECTED[text, by]
    assert join(segments) == text
    for s in segments:
        assert s.text == text[s.start : s.end]
        assert s.feature == (s.kind not in ("field", "gap"))
        assert s.name == (s.text[1:-1] if s.kind == "field" else None)


def test_sentence_ends_need_whitespace_and_take_closing_quotes() -> None:
    text = 'He said "stop!" Then (twice.) v3.14 is out?! Yes…no. End'
    expected = ['He said "stop!" ', "Then (twice.) ", "v3.14 is out?! ", "Yes…no. ", "End"]
    assert [s.text for s in segment(text)] == expected


def test_whitespace_at_start_after_fields_and_blank_lines_is_gap() -> None:
    assert view(segment("  A. B.")) == [("gap", "  "), ("sentence", "A. "), ("sentence", "B.")]
    expected = [("gap", "\n\n"), ("sentence", "  A.\n"), ("gap", "\n\n"), ("sentence", "B.  ")]
    assert view(segment("\n\n  A.\n\n\nB.  ")) == expected
    assert view(segment("{x}  y", "word")) == [("field", "{x}"), ("gap", "  "), ("word", "y")]
    assert view(segment(" \n\t", "word")) == [("gap", " \n\t")]
    assert segment("", "word") == []


def test_deleting_a_feature_never_joins_lines_or_doubles_spaces() -> None:
    segments = segment("A. B.\nC.\n  - one\n  - two\n")
    assert view(segments)[:3] == [("sentence", "A. "), ("sentence", "B."), ("gap", "\n")]
    assert join(segments, {1: ""}) == "A. \nC.\n  - one\n  - two\n"  # the line break stays
    assert join(segments, {0: ""}) == "B.\nC.\n  - one\n  - two\n"
    lines = segment("  - one\n  - two\n", "line")
    assert join(lines, {0: ""}) == "  - two\n"  # the whole line, indentation included, goes
    assert join(lines, {1: "  - 2\n"}) == "  - one\n  - 2\n"


def test_fields_are_segments_and_features_only_when_editable() -> None:
    fixed = segment("Q: {q}", "word")
    editable = segment("Q: {q}", "word", edit_fields=True)
    assert fixed[1] == Segment(3, 6, "{q}", "field", False, "q")
    assert editable[1] == Segment(3, 6, "{q}", "field", True, "q")
    assert features(fixed) == [0]
    assert features(editable) == [0, 1]


def test_marks_are_plain_text_outside_span_mode() -> None:
    assert [s.text for s in segment("[[a]] b", "word")] == ["[[a]] ", "b"]


def test_unknown_segmentation_lists_the_choices() -> None:
    with pytest.raises(InputError, match="use one of: sentence, line, word, token, span"):
        segment("hi", "paragraph")


# --- fields and fill -----------------------------------------------------------------------


def test_template_fields_in_order_of_first_appearance() -> None:
    assert template_fields("{b} {{a}} {a} {b} {_c1}") == ["b", "a", "_c1"]
    assert template_fields("no fields, {{just}} braces") == []


@pytest.mark.parametrize(
    "template, shown, where",
    [
        ("{0}", "'{0}'", "line 1, column 1"),
        ("say {a.b}", "'{a.b}'", "line 1, column 5"),
        ("x\n {x!r}", "'{x!r}'", "line 2, column 2"),
        ("{}", "'{}'", "line 1, column 1"),
        ("{x:}", "'{x:}'", "line 1, column 1"),
        ("open {", "'{'", "line 1, column 6"),
        ("{{x}", "'}'", "line 1, column 4"),
        ("a } b", "'}'", "line 1, column 3"),
    ],
)
def test_invalid_braces_name_the_position_and_the_fix(template: str, shown: str, where: str) -> None:
    with pytest.raises(InputError) as info:
        template_fields(template)
    message = str(info.value)
    assert shown in message and where in message and "double it (`{{` or `}}`)" in message


def test_fill() -> None:
    assert fill("{{x}} {x}, {y}{x}", {"x": "1", "y": "{y}", "unused": "?"}) == "{x} 1, {y}1"


def test_fill_lists_every_missing_value() -> None:
    with pytest.raises(InputError, match=r"template field \{x\} has no value; add `x` to the case's vars"):
        fill("{x}", {})
    with pytest.raises(InputError, match=r"fields \{a\}, \{b\} have no value; add `a`, `b`"):
        fill("{a} {b} {a} {c}", {"c": ""})


# --- marked spans --------------------------------------------------------------------------


def test_span_segments() -> None:
    text = "Intro. [[rule: Be brief.]] Then {x}.\n[[Use {{json}}.]]\nBye"
    assert strip_marks(text) == "Intro. Be brief. Then {x}.\nUse {{json}}.\nBye"
    segments = segment(text, "span")
    assert [(s.kind, s.text, s.name) for s in segments] == [
        ("gap", "Intro. ", None),
        ("span", "Be brief. ", "rule"),
        ("gap", "Then ", None),
        ("field", "{x}", "x"),
        ("gap", ".\n", None),
        ("span", "Use {{json}}.\n", None),
        ("gap", "Bye", None),
    ]
    assert features(segments) == [1, 5]
    assert join(segments, {1: "", 5: ""}) == "Intro. Then {x}.\nBye"


def test_a_label_needs_a_space_after_its_colon() -> None:
    assert [(s.text, s.name) for s in segment("[[see http://x]] [[a:b]]", "span")] == [
        ("see http://x ", None),
        ("a:b", None),
    ]


@pytest.mark.parametrize(
    "text, message",
    [
        ("[[a [[b]] c]]", "at line 1, column 5 opens a span inside the one opened at line 1, column 1"),
        ("a]] b", "`]]` at line 1, column 2 closes no span"),
        ("x\n[[a", "`[[` at line 2, column 1 is never closed; add `]]`"),
        ("[[ \n]]", "span marked at line 1, column 1 is empty"),
        ("[[n: ]]", "is empty"),
        ("ok [[use {x} here]]", "contains template field {x}"),
        ("{a[[b}]]", "invalid brace '{a[[b}' in template at line 1, column 1"),
    ],
)
def test_span_errors(text: str, message: str) -> None:
    with pytest.raises(InputError, match=re.escape(message)):
        segment(text, "span")


# --- tokens --------------------------------------------------------------------------------


def test_token_segmentation_needs_a_tokenizer() -> None:
    with pytest.raises(InputError, match="needs a tokenizer"):
        segment("hi", "token")


def test_token_segmentation(tokenizer: Any) -> None:
    text = 'Say "hi",  中é!\n{x} {{ok}}?'
    assert view(segment(text, "token", tokenizer=tokenizer)) == [
        ("token", "Say "),
        ("token", '"'),
        ("token", "hi"),
        ("token", '",  '),
        ("token", "中"),  # three byte-level tokens, one feature
        ("token", "é"),
        ("token", "!"),
        ("gap", "\n"),
        ("field", "{x}"),
        ("gap", " "),
        ("token", "{{"),  # never cut in half, though the tokenizer splits it
        ("token", "ok"),
        ("token", "}}"),
        ("token", "?"),
    ]


TOKEN_TEXT = st.lists(st.sampled_from(["{x}", "{{", "}}", "  ", "\n", "Hi", " you", ".", "中", "é", "!\t"]))


@settings(max_examples=100, deadline=None)
@given(text=TOKEN_TEXT.map("".join))
def test_token_invariants(tokenizer: Any, text: str) -> None:
    check_invariants(text, segment(text, "token", tokenizer=tokenizer), "token")


# --- properties ----------------------------------------------------------------------------

CHARS = "ab é中 \t\n.!?\"'”)[]x_"  # no ":": str.format reads `{x:}` as `{x}`, which we reject
PIECES = ["{x}", "{input}", "{{", "}}", "{", "}", "[[", "]]", "[[name: ", "Dr. ", "  ", "\n\n", " \n", "…"]
TEXT = st.lists(st.sampled_from(PIECES) | st.text(CHARS, max_size=4), max_size=12).map("".join)
PLAIN = [by for by in TEXT_SEGMENTATIONS if by != "token"]


def python_fields(text: str) -> list[str] | None:
    """The field names str.format sees, or None where a template must be rejected."""
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError:
        return None
    fields = [(name, spec, conversion) for _, name, spec, conversion in parsed if name is not None]
    for name, spec, conversion in fields:
        if spec or conversion or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            return None
    return [name for name, _, _ in fields]


def pairs_of_spaces(text: str) -> int:
    return sum(text[i : i + 2] == "  " for i in range(len(text) - 1))


def check_invariants(text: str, segments: list[Segment], by: str) -> None:
    clean = strip_marks(text) if by == "span" else text
    assert join(segments) == clean
    assert [s.start for s in segments[:1]] == [0] * bool(clean)
    assert all(a.end == b.start for a, b in zip(segments, segments[1:]))
    assert all(s.start < s.end and s.text == clean[s.start : s.end] for s in segments)
    assert [s.name for s in segments if s.kind == "field"] == (python_fields(clean) or [])
    for i in features(segments):
        s = segments[i]
        assert s.text.strip(), "a feature is never whitespace-only"
        if by != "span":  # only marked spans may hold a line break inside
            starts_line = s.start == 0 or clean[s.start - 1] == "\n"
            assert "\n" not in s.text[:-1] and (starts_line or "\n" not in s.text)
        deleted = join(segments, {i: ""})
        assert pairs_of_spaces(deleted) <= pairs_of_spaces(clean)
        assert template_fields(deleted) == template_fields(clean)  # never half a `{{` or field
    if by != "span":
        assert all(not s.text.strip() for s in segments if s.kind == "gap")


@settings(max_examples=200, deadline=None)
@given(text=TEXT, by=st.sampled_from(PLAIN))
def test_segments_cover_the_text(text: str, by: str) -> None:
    try:
        segments = segment(text, by)
    except InputError:
        assert python_fields(text) is None or by == "span"
        return
    assert python_fields(text) is not None
    check_invariants(text, segments, by)


@settings(max_examples=200, deadline=None)
@given(text=st.text("{}ab_1 .!é[]", max_size=16))
def test_fields_and_fill_agree_with_str_format(text: str) -> None:
    expected = python_fields(text)
    if expected is None:
        with pytest.raises(InputError):
            template_fields(text)
        return
    values = {name: f"<{name}>" for name in expected}
    assert template_fields(text) == list(dict.fromkeys(expected))
    assert fill(text, values) == text.format(**values)


def test_unit_segmentation_keeps_examples_whole_and_splits_other_messages_by_sentence():
    from promptlens.templates import as_flat

    flat = as_flat([{"role": "system", "content": "You are X. Answer in French."},
                    {"role": "user", "content": "Noun: cat"}, {"role": "assistant", "content": "cats"},
                    {"role": "user", "content": "Noun: {input}"}])
    segs = segment(flat, "unit")
    assert join(segs) == flat
    assert [(s.text, s.kind) for s in segs if s.feature] == [
        ("You are X. ", "sentence"), ("Answer in French.", "sentence"), ("\x12Noun: cat\x13cats", "example"),
        ("Noun: ", "sentence")]
    assert [s.text for s in segment("Say hi. Do it. {input}", "unit") if s.feature] == ["Say hi. ", "Do it. "]


def test_unit_segmentation_splits_the_user_template_by_sentence_and_keeps_its_field():
    """An instruction in the user template is a rule like one in the system prompt: at ``unit``
    it is a feature (before, the whole templated message was one fixed gap)."""
    from promptlens.templates import as_flat

    flat = as_flat([{"role": "system", "content": "Give the plural."},
                    {"role": "user", "content": "Noun: cat"}, {"role": "assistant", "content": "cats"},
                    {"role": "user", "content": "Think step by step. Reply with one word.\nNoun: {input}"}])
    segs = segment(flat, "unit")
    assert join(segs) == flat
    last = [s for s in segs if s.message == 3]
    assert [(s.text, s.kind, s.feature) for s in last] == [
        ("\x12", "role", False), ("Think step by step. ", "sentence", True), ("Reply with one word.", "sentence", True),
        ("\n", "gap", False), ("Noun: ", "sentence", True), ("{input}", "field", False)]
    assert [s.text for s in segment(flat, "unit", edit_fields=True) if s.kind == "field" and s.feature] == ["{input}"]
    # an example that holds a field stays fixed, as at ``example``
    odd = as_flat([{"role": "user", "content": "Noun: {input}"}, {"role": "assistant", "content": "x"},
                   {"role": "user", "content": "Noun: dog"}])
    assert not [s for s in segment(odd, "unit") if s.feature and s.message in (0, 1)]
