"""Message templates: the flat form, loaders, segmentation across messages, rendering."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from promptlens.errors import InputError
from promptlens.segments import SEGMENTATIONS, features, join, segment, strip_marks, template_fields
from promptlens.template_files import load_template
from promptlens.templates import (MARK_RE, Message, MessageTemplate, as_template, blank, chat_messages,
                                  content_offsets, example_spans, for_backend, message_at,
                                  messages_of, render, render_notes, shown, to_flat, transcript)

FEW_SHOT = [
    Message("system", "You classify sentences. Answer yes or no."),
    Message("user", "Is 2 even?"),
    Message("assistant", "yes"),
    Message("user", "Is 3 even?"),
    Message("assistant", "no"),
    Message("user", "Question: {input}\nAnswer:"),
]
FLAT = to_flat(FEW_SHOT)


def test_flat_form_round_trips() -> None:
    assert messages_of(FLAT) == FEW_SHOT
    assert messages_of("plain {x}") == [Message("user", "plain {x}")]
    assert MessageTemplate(tuple(FEW_SHOT), format="json").text == FLAT
    assert MessageTemplate((Message("user", "plain"),)).text == "plain"  # plain text: no marks at all
    assert template_fields(FLAT) == ["input"]


def test_examples_are_answered_user_turns_before_the_last() -> None:
    assert example_spans(FEW_SHOT) == [(1, 2), (3, 4)]
    assert example_spans([Message("user", "{x}"), Message("assistant", "prefill")]) == []


def test_segment_by_example_and_message() -> None:
    by_example = segment(FLAT, "example")
    assert join(by_example) == FLAT
    feats = [(by_example[i].kind, by_example[i].name, by_example[i].message) for i in features(by_example)]
    assert feats == [("message", "system", 0), ("example", "example 1", 1), ("example", "example 2", 3)]
    # dropping an example removes both of its turns, marks included; the rest is untouched
    dropped = join(by_example, {features(by_example)[1]: ""})
    assert messages_of(dropped) == [FEW_SHOT[0], *FEW_SHOT[3:]]
    by_message = segment(FLAT, "message")
    assert [by_message[i].text for i in features(by_message)] == [to_flat([m]) for m in FEW_SHOT[:5]]
    # the user template holds the field: fixed unless asked
    assert "{input}" not in "".join(by_message[i].text for i in features(by_message))
    editable = segment(FLAT, "message", edit_fields=True)
    assert any("{input}" in editable[i].text for i in features(editable))


def test_text_segmentations_stay_inside_messages() -> None:
    segs = segment(FLAT, "sentence")
    assert [s.text for s in segs if s.kind == "role"] == [to_flat([m])[0] for m in FEW_SHOT]
    assert [(s.text, s.message) for s in segs if s.feature][:3] == [
        ("You classify sentences. ", 0), ("Answer yes or no.", 0), ("Is 2 even?", 1)]
    for s in segs:
        assert s.kind == "role" or not MARK_RE.search(s.text)
        assert message_at(FLAT, s.start) == s.message


def test_spans_are_per_message() -> None:
    flat = to_flat([Message("system", "Be [[brief. ]]Thanks."), Message("user", "[[tone: Hi]] {x}")])
    segs = segment(flat, "span")
    assert join(segs) == strip_marks(flat) == to_flat([Message("system", "Be brief. Thanks."), Message("user", "Hi {x}")])
    assert [(s.text, s.name, s.message) for s in segs if s.feature] == [("brief. ", None, 0), ("Hi ", "tone", 1)]
    with pytest.raises(InputError, match=r"message 2 \(user\).*never closed"):
        segment(to_flat([Message("system", "ok"), Message("user", "[[open {x}")]), "span")


ROLE = st.sampled_from(["system", "user", "assistant"])
CONTENT = st.lists(st.sampled_from(["Hi. ", "Be brief.", "\n", "{x}", "{{", "}}", " ", "yes", "Q: a?\n"]), max_size=5).map("".join)


@settings(max_examples=150, deadline=None)
@given(msgs=st.lists(st.builds(Message, ROLE, CONTENT), min_size=1, max_size=6),
       by=st.sampled_from([b for b in SEGMENTATIONS if b not in ("token", "span")]))
def test_split_and_join_give_the_messages_back(msgs: list[Message], by: str) -> None:
    flat = to_flat(msgs)
    segs = segment(flat, by)
    assert join(segs) == flat and messages_of(join(segs)) == msgs
    assert all(a.end == b.start for a, b in zip(segs, segs[1:]))
    for i in features(segs):
        deleted = messages_of(join(segs, {i: ""})) if join(segs, {i: ""}) else []
        assert template_fields(join(segs, {i: ""})) == template_fields(flat)  # fields fixed
        if by in ("message", "example") or segs[i].kind == "example":  # whole messages go (unit: whole examples)
            assert all(m in msgs for m in deleted) and len(deleted) < len(msgs)
        else:  # the same turns, in the same order
            assert [m.role for m in deleted] == [m.role for m in msgs]
        replaced = join(segs, {i: blank(segs[i].text, "...")})
        assert len(messages_of(replaced)) == len(msgs) or not MARK_RE.search(segs[i].text)


def test_shown_and_transcript_hide_the_marks() -> None:
    assert shown(to_flat(FEW_SHOT[:2])) == "[system] You classify sentences. Answer yes or no.[user] Is 2 even?"
    assert shown(to_flat(FEW_SHOT[:2]), inline=False) == (
        "--- system ---\nYou classify sentences. Answer yes or no.\n--- user ---\nIs 2 even?")
    text = transcript(FLAT)
    assert not MARK_RE.search(text) and text.endswith("Answer:\n\nAssistant:")
    assert transcript("plain") == "plain"


class _Tok:
    """A tokenizer whose chat template has no system role (it raises, as Gemma's does)."""

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False, continue_final_message=False):
        if any(m["role"] == "system" for m in messages):
            raise ValueError("System role not supported")
        out = "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in messages)
        return out + ("<assistant>" if add_generation_prompt else "")


class _Backend:
    name, raw, renders_messages = "tok", False, True
    tokenizer = _Tok()


def test_system_fallback_is_documented_and_noted() -> None:
    flat = to_flat([Message("system", "Be brief."), Message("user", "Hi")])
    assert chat_messages(messages_of(flat), system_role=False) == [{"role": "user", "content": "Be brief.\n\nHi"}]
    assert render(_Tok(), flat, raw=False) == "<user>Be brief.\n\nHi</user><assistant>"
    (note,) = render_notes(_Backend(), flat)
    assert "no system role" in note and "first user turn" in note
    assert render_notes(_Backend(), "plain") == []
    rendered = render(_Tok(), flat, raw=False)
    assert [(rendered[r : r + n], flat[a : a + n]) for r, a, n in content_offsets(rendered, flat)] == [
        ("Be brief.", "Be brief."), ("Hi", "Hi")]


def test_backends_that_do_not_render_get_a_transcript() -> None:
    class Plain:
        name = "plain"

    assert for_backend(Plain(), FLAT) == transcript(FLAT)
    assert for_backend(_Backend(), FLAT) == FLAT
    assert for_backend(Plain(), "text") == "text"
    assert "transcript" in render_notes(Plain(), FLAT)[0]


def test_real_chat_template_has_the_system_role(tokenizer) -> None:
    out = render(tokenizer, FLAT.replace("{input}", "Is 4 even?"), raw=False)
    assert out.startswith("<|im_start|>system\nYou classify sentences.") and "SmolLM" not in out
    assert out.count("<|im_start|>user") == 3 and out.endswith("<|im_start|>assistant\n")
    assert render(tokenizer, "Hi", raw=False) == tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert not MARK_RE.search(out)


test_real_chat_template_has_the_system_role = pytest.mark.model(test_real_chat_template_has_the_system_role)


# --- loaders --------------------------------------------------------------------------------

MESSAGES_JSON = """{
  "model": "gpt-4o-mini",
  "messages": [
    {"role": "system", "content": "You classify.\\nAnswer yes or no."},
    {"role": "user", "content": "Is 2 even?"},
    {"role": "assistant", "content": "yes"},
    {"role": "user", "content": "Question: {input}"}
  ],
  "temperature": 0
}
"""
MESSAGES_YAML = """# a few-shot classifier
- role: system
  content: |
    You classify.
    Answer yes or no.
- role: user
  content: Is 2 even?
- role: assistant
  content: "yes"
- role: user
  content: 'Question: {input}'
"""


def test_load_json_and_yaml(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text(MESSAGES_JSON)
    (tmp_path / "p.yaml").write_text(MESSAGES_YAML)
    (tmp_path / "p.txt").write_text("Plain {input}")
    j, y, t = (load_template(tmp_path / f"p.{ext}") for ext in ("json", "yaml", "txt"))
    assert j.format == "json" and y.format == "yaml" and t.format == "text"
    assert [m.role for m in j.messages] == ["system", "user", "assistant", "user"]
    assert j.messages[0].content == "You classify.\nAnswer yes or no."
    assert y.messages[0].content == "You classify.\nAnswer yes or no.\n"
    assert t.text == "Plain {input}" and not t.is_chat
    # positions: line:col of a content character in the file the user wrote
    assert j.location(0, 0) == (4, 36) and j.location(0, 14) == (4, 51)  # after the \n escape
    assert y.location(0, 14) == (5, 5) and y.location(3, 0) == (11, 13)
    assert t.location(0, 6) == (1, 7)


@pytest.mark.parametrize("text, message", [
    ('[{"role": "bot", "content": "x"}]', r"p.json:1: unknown role 'bot'; use one of: system, user, assistant"),
    ('[{"role": "user"}]', r"p.json:1: the message has no `content`"),
    ('{"prompt": []}', r"p.json: the object has no `messages` key"),
    ('[]', r"p.json: the message list is empty"),
    ('[{"role": "user", "content": "a"}', r"p.json:1: invalid JSON"),
    ('[{"role": "user", "content": ["a"]}]', r"p.json:1: `content` is a list"),
    ('[{"role": "user", "content": "\\u0012"}]', r"control character U\+0012"),
    ('[{"role": "system", "content": "a"}]', r"only system messages"),
])
def test_bad_messages_files(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "p.json").write_text(text)
    with pytest.raises(InputError, match=message):
        load_template(tmp_path / "p.json")


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("- role: user\n  content: hi\n- role: robot\n  content: x\n")
    with pytest.raises(InputError, match=r"p.yaml:3: unknown role 'robot'"):
        load_template(tmp_path / "p.yaml")


def test_as_template_accepts_dict_lists() -> None:
    t = as_template([{"role": "system", "content": "S"}, {"role": "user", "content": "{x}"}])
    assert t.text == "\x11S\x12{x}"
    assert as_template("plain").text == "plain"
    assert as_template(t.text).messages == t.messages


# --- attribute on a message template -------------------------------------------------------


def test_attribute_by_example_with_a_fake_backend() -> None:
    from promptlens import attribute
    from promptlens.types import Case
    from tests.rule_backend import RuleBackend

    # the second example carries a wrong label ("banana" costs 2 nats); the fake sees a transcript
    template = [
        {"role": "system", "content": "Answer yes or no."},
        {"role": "user", "content": "Is 2 even?"}, {"role": "assistant", "content": "yes"},
        {"role": "user", "content": "Is 3 even?"}, {"role": "assistant", "content": "banana"},
        {"role": "user", "content": "Is {n} even?"},
    ]
    class Recording(RuleBackend):
        def token_logprobs(self, prompts, targets):
            seen.extend(prompts)
            return super().token_logprobs(prompts, targets)

    seen: list[str] = []
    backend = Recording(rules={"banana": -2.0, "yes": 0.5})
    cases = [Case(vars={"n": str(n)}, target="yes") for n in (4, 6)]
    result = attribute(template, cases=cases, backend=backend, segmentation="example")
    assert [(f.segment.name, f.mean) for f in result.features] == [("system", 0.0), ("example 1", 0.0), ("example 2", -2.0)]
    # "yes" is in the system text and in example 1: removing one alone keeps the bonus
    assert result.text == to_flat(messages_of(result.text)) and len(messages_of(result.text)) == 6
    assert any("transcript" in n for n in result.notes)
    assert seen and not any(MARK_RE.search(p) for p in seen)
    assert "User: Is 3 even?\n\nAssistant: banana\n\nUser: Is 4 even?\n\nAssistant:" in seen[0]


def test_cli_attribute_on_a_messages_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from promptlens.cli import main

    (tmp_path / "p.json").write_text('[{"role": "user", "content": "hi"}, {"role": "robot", "content": "x"}]')
    assert main(["attribute", str(tmp_path / "p.json"), "--target", "x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "p.json:1: unknown role 'robot'" in err


# --- placeholder styles ---------------------------------------------------------------------


@pytest.mark.parametrize("text, internal, style", [
    ("Hi {{ name }}!", "Hi {name}!", "double"),
    ("Hi {{name}} and {{{ raw }}}", "Hi {name} and {raw}", "double"),
    ('JSON: {"a": {{ v }}}', 'JSON: {{"a": {v}}}', "double"),
    ("{% raw %}{{ x }}{% endraw %} {{ y }}", "{{{{ x }}}} {y}", "double"),
    ("{{x}} and {y}", "{{x}} and {y}", "brace"),  # a {name} field: the old rules, `{{x}}` is literal
    ('{{"a": 1}} {x}', '{{"a": 1}} {x}', "brace"),
    ('no fields {{"a": 1}}', 'no fields {{"a": 1}}', "brace"),
])
def test_double_style_is_read_into_the_brace_style(text: str, internal: str, style: str) -> None:
    from promptlens.templates import to_internal

    assert to_internal(text) == (internal, style)


@pytest.mark.parametrize("text, message", [
    ("Hi {{ name", r"line 1, column 4: `\{\{` is never closed"),
    ("A\n{{ x | upper }}", r"line 2, column 1: placeholder '\{\{ x \| upper \}\}' is not a plain name"),
    ("{% if x %}y{% endif %}", r"template tag `\{%` is not a placeholder"),
])
def test_double_style_errors(text: str, message: str) -> None:
    from promptlens.templates import to_internal

    with pytest.raises(InputError, match=message):
        to_internal(text)


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(st.sampled_from(["{x}", "{name}", "{{", "}}", "a", " ", "%", "#", "\n", "-"]), max_size=10))
def test_double_style_round_trips(pieces: list[str]) -> None:
    from promptlens.templates import from_double, to_style

    internal = "".join(pieces)
    assert from_double(to_style(internal, "double")) == internal


def test_messages_file_in_double_style(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("- role: system\n  content: Be brief.\n- role: user\n  content: 'Q: {{ question }}'\n")
    t = load_template(tmp_path / "p.yaml")
    assert t.placeholders == "double" and t.messages[1].content == "Q: {question}"
    (tmp_path / "bad.json").write_text('[\n  {"role": "user", "content": "Q: {{ question"}\n]\n')
    with pytest.raises(InputError, match=r"bad.json:2:35: `\{\{` is never closed"):
        load_template(tmp_path / "bad.json")
    (tmp_path / "brace.json").write_text('[{"role": "user", "content": "Q: {question} }"}]')
    with pytest.raises(InputError, match=r"brace.json:1:45: invalid brace '\}'"):
        load_template(tmp_path / "brace.json")


# --- fix on a message template: drop and reorder examples ------------------------------------


class LastAnswerBackend:
    """-1 nat per target word, +2 when the answer of the last example before the question is
    the target: a model that copies the most recent label (order matters, so does each example)."""

    name = "last-answer"
    forward_passes = tokens_computed = 0

    def token_logprobs(self, prompts, targets):
        out = []
        for prompt in prompts:
            answers = [b.removeprefix("Assistant: ") for b in prompt.split("\n\n") if b.startswith("Assistant: ")]
            last = answers[-1] if answers and answers[-1] else None
            out.append([[-1.0 * len(t.split()) + (2.0 if t == last else 0.0)] for t in targets[len(out)]])
        return out

    def generate(self, prompt, max_new_tokens=32):
        return "yes"


def _few_shot(answers: list[str]) -> list[dict]:
    msgs = [{"role": "system", "content": "Answer the question with yes or no."}]
    for k, a in enumerate(answers):
        msgs += [{"role": "user", "content": f"Is number {k} fine?"}, {"role": "assistant", "content": a}]
    return msgs + [{"role": "user", "content": "Is {x} fine?"}]


def _fix(template, **kw):
    from promptlens.fix import fix
    from promptlens.similarity import JaccardSimilarity
    from promptlens.types import Case

    cases = [Case(vars={"x": f"item {i}"}, target="yes") for i in range(8)]
    args = dict(backend=LastAnswerBackend(), similarity=JaccardSimilarity(), budget_trials=8, rounds=1, seed=0,
                n_train=4, segmentation="example", threshold=0.5)
    return fix(template, cases, **{**args, **kw})


def test_fix_reorders_examples_when_dropping_one_changes_too_much() -> None:
    from promptlens.rewrites import RewriteConfig

    result = _fix(_few_shot(["yes", "no"]), threshold=0.99)  # Jaccard: a drop loses words, a reorder none
    answers = [m.content for m in messages_of(result.best) if m.role == "assistant"]
    assert answers == ["no", "yes"] and result.train_after.objective == pytest.approx(result.train_before.objective + 2)
    (edit,) = result.edits
    assert edit.kind == "reorder_examples" and edit.gain == pytest.approx(2.0)


def test_fix_drops_the_example_that_hurts() -> None:
    result = _fix(_few_shot(["yes", "no"]), kinds=["drop_example"])
    answers = [m.content for m in messages_of(result.best) if m.role == "assistant"]
    assert answers == ["yes"] and [e.kind for e in result.edits] == ["drop_example"]
    assert [m.role for m in messages_of(result.best)] == ["system", "user", "assistant", "user"]


class ParityBackend:
    """Knows that odd numbers are not fine: the answer to the last question costs 0 nats when
    right (even: yes, odd: no) and 3 when wrong, whatever the examples say."""

    name = "parity"

    def token_logprobs(self, prompts, targets):
        out = []
        for prompt, ts in zip(prompts, targets):
            question = [b for b in prompt.split("\n\n") if b.startswith("User: ")][-1]
            truth = "no" if int(question.split("number ")[1].split()[0]) % 2 else "yes"
            out.append([[0.0 if t == truth else -3.0] for t in ts])
        return out


def test_example_check_reports_a_doubtful_label() -> None:
    from promptlens.fewshot import check_examples, check_notes
    from promptlens.types import Case

    flat = as_template(_few_shot(["yes", "yes", "yes"])).text  # example 2 (number 1) is mislabelled
    checks = check_examples(ParityBackend(), flat, [Case(vars={"x": "a"}, target="yes", choices=("yes", "no"))])
    assert [(c.number, c.answer, c.suspect) for c in checks] == [(1, "yes", False), (2, "yes", True), (3, "yes", False)]
    assert (checks[1].logprob, checks[1].best_other, checks[1].best_other_logprob) == (-3.0, "no", 0.0)
    (note,) = check_notes(checks)
    assert note.startswith("example 2's answer 'yes': -3.00 nats, 'no' +0.00 nats: the model prefers 'no'")
    assert messages_of(flat)[4].content == "yes"  # reported, never changed


# --- the real embedded model ----------------------------------------------------------------


def _teacher_forced(backend, text: str, target: str) -> float:
    """log p(target | text) from one plain forward pass of the model (no trie, no Captum)."""
    import torch

    ids = backend.tokenizer(text, add_special_tokens=False)["input_ids"]
    tgt = backend.tokenizer(target, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        logits = backend.model(torch.tensor([ids + tgt])).logits[0, len(ids) - 1 : -1].float()
    return float(torch.log_softmax(logits, -1).gather(1, torch.tensor(tgt)[:, None]).sum())


@pytest.mark.model
@pytest.mark.parametrize("name", ["chat_prompt.json", "promptfooconfig.yaml"])
def test_real_scores_of_message_templates_match_a_plain_forward(backend, name: str) -> None:
    from promptlens.promptfoo import load_suite
    from promptlens.scoring import score_prompts
    from promptlens.segments import fill

    suite = load_suite(Path(__file__).parent.parent / "examples" / "promptfoo" / "promptfooconfig.yaml")
    template = next(p for p in suite.prompts if p.path.endswith(name))
    cases = list(suite.cases[:2])
    (row,) = score_prompts(backend, [[fill(template.text, c.vars) for c in cases]], cases)
    for case, score in zip(cases, row):
        rendered = backend.render(fill(template.text, case.vars))
        assert not MARK_RE.search(rendered) and case.vars["word"] in rendered
        assert score.logprob == pytest.approx(_teacher_forced(backend, rendered, case.target), abs=1e-3)
    if name.endswith(".json"):
        assert rendered.count("<|im_start|>") == 7 and "SmolLM" not in rendered  # its own system turn


@pytest.mark.model
def test_real_attribute_by_example_and_yaml_messages(backend, tmp_path: Path) -> None:
    from promptlens import attribute
    from promptlens.types import Case

    (tmp_path / "p.yaml").write_text(
        "- role: system\n  content: Give the plural of the word.\n- role: user\n  content: 'Word: cat'\n"
        "- role: assistant\n  content: cats\n- role: user\n  content: 'Word: {{ word }}'\n")
    template = load_template(tmp_path / "p.yaml")
    cases = [Case(vars={"word": w}, target=t) for w, t in (("dog", "dogs"), ("box", "boxes"))]
    result = attribute(template, cases=cases, backend=backend, segmentation="example")
    assert [(f.segment.kind, f.segment.name) for f in result.features] == [("message", "system"), ("example", "example 1")]
    # SmolLM2's template has a system role: no fallback note (2 cases: only the too-few-cases note)
    assert [n for n in result.notes if "too few" not in n] == []
    from promptlens.scoring import score_prompts
    from promptlens.segments import fill

    (full,) = score_prompts(backend, [[fill(result.text, c.vars) for c in cases]], cases)
    assert result.original_score == pytest.approx(sum(s.logprob for s in full) / 2, abs=1e-4)


def test_html_and_terminal_reports_show_roles_never_marks() -> None:
    from promptlens import attribute
    from promptlens.html import attribution_html
    from promptlens.report import attribution_table, dumps
    from promptlens.types import Case
    from tests.rule_backend import RuleBackend

    template = _few_shot(["yes", "no"])
    cases = [Case(vars={"x": f"item {i}"}, target="yes") for i in range(3)]
    for by in ("example", "sentence"):
        result = attribute(template, cases=cases, backend=RuleBackend(rules={"no": -1.0}), segmentation=by)
        page, table, data = attribution_html(result), attribution_table(result, color=True), dumps(result)
        for text in (page, table, data):
            assert not MARK_RE.search(text) and "\\u0011" not in text
        assert page.count('<span class="role">') == 6  # one heading per message
        assert "--- system ---" in table and "--- assistant ---" in table
        assert '"[system] Answer the question with yes or no.' in data


def test_example_check_compares_no_free_form_answers() -> None:
    """Free-form answers to other inputs are no alternative labels: nothing is suspect (the demo's
    word-sorting prompt used to flag every example against a shorter answer to another input)."""
    from promptlens.fewshot import check_examples, check_notes
    from promptlens.types import Case

    flat = as_template(_few_shot(["a b c", "d e", "f g h i"])).text
    checks = check_examples(ParityBackend(), flat, [Case(vars={"x": "a"}, target="x y")])
    assert [c.best_other for c in checks] == [None, None, None] and check_notes(checks) == []
