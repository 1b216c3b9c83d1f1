"""The benchmark suite (benchmarks/suite/): its data keeps the invariants the benchmarks rely on."""

from __future__ import annotations

import json

import pytest

from benchmarks.suite import MANIFEST, ROOT, dev_records, load_suite, render, span_template, units
from benchmarks.suite.build import MIN_HARM, clean_messages, draw, plant
from benchmarks.suite.spec import SPECS
from promptlens import templates
from promptlens.attribution import attribute
from promptlens.segments import features, segment, strip_marks

pytestmark = pytest.mark.skipif(not MANIFEST.is_file(), reason="the suite is not built yet (benchmarks/suite/build.py)")


class ChatML:
    """A tokenizer stand-in with SmolLM2's chat template (ChatML): enough to render messages."""

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")


@pytest.fixture(scope="module")
def suite():
    return load_suite()


def test_suite_size_and_tasks(suite):
    assert len(suite.prompts) >= 10
    tasks = {p.task for p in suite.prompts}
    assert len(tasks) >= 6
    kinds = {bool(p.cases("harm")[0].choices) for p in suite.prompts}
    assert kinds == {True, False}  # free-form and choice tasks
    assert len(suite.variants()) >= len(suite.prompts)
    assert {p.id for p in suite.prompts} <= {s.id for s in SPECS}


def test_prompt_shape(suite):
    for p in suite.prompts:
        for v in p.all_variants:
            roles = [m["role"] for m in v.messages]
            assert roles[0] == "system" and roles[-1] == "user", v.id
            examples = (len(roles) - 2) // 2
            assert 3 <= examples <= 8, v.id
            assert "{input}" in v.messages[-1]["content"], v.id
            assert all("{input}" not in m["content"] for m in v.messages[:-1]), v.id
            assert 12 <= len(units(v.messages)) <= 40, v.id


def test_recorded_shape_matches_files(suite):
    data = json.loads(MANIFEST.read_text())
    for entry in data["prompts"]:
        for v in [entry["clean"], *entry["variants"]]:
            messages = json.loads((ROOT / v["file"]).read_text())
            assert v["units"] == len(units(messages))
            assert 300 <= v["tokens"] <= 1200, (entry["id"], v["name"], v["tokens"])


def test_fault_is_one_unit_of_its_variant(suite):
    for p in suite.prompts:
        clean_units = {u.label: u.text for u in units(p.clean.messages)}
        for v in p.variants:
            f = v.fault
            found = {u.label: u for u in units(v.messages)}
            assert f.unit in found, v.id
            assert f.message in found[f.unit].messages, v.id
            assert f.text in v.messages[f.message]["content"].replace("{{", "{").replace("}}", "}"), v.id
            changed = [i for i, (a, b) in enumerate(zip(p.clean.messages, v.messages)) if a != b]
            assert changed == [f.message], v.id
            if f.operation != "insert":  # an inserted sentence shifts the labels after it
                differing = [label for label, u in found.items() if clean_units.get(label) != u.text]
                assert differing == [f.unit], v.id


def test_harm_recorded_and_significant(suite):
    for p in suite.prompts:
        for v in p.variants:
            h = v.harm
            assert h.n >= 32 and h.n == p.harm_cases
            assert h.logprob.low <= h.logprob.mean <= h.logprob.high
            assert h.significant, v.id  # kept faults hurt: the whole interval below zero
            if p.cases("harm")[0].choices:
                assert h.margin is not None and h.accuracy_clean is not None
            assert h.logprob.mean <= -MIN_HARM, v.id
        for d in p.dropped:  # dropped for a reason: not significant, or too small to matter
            lp = d["harm"]["logprob"]
            assert lp["high"] >= 0 or lp["mean"] > -MIN_HARM, d["name"]


def test_cases_disjoint_from_examples_and_of_the_task(suite):
    records = dev_records()
    for p in suite.prompts:
        assert not set(p.example_records) & set(p.case_records)
        assert len(set(p.case_records)) == len(p.case_records) >= p.harm_cases >= 32
        assert len(p.cases("bench")) >= 24
        for i in (*p.example_records, *p.case_records):
            assert records[i]["task"] == p.task
        harm_ids = {c.id for c in p.cases("harm")}
        assert not harm_ids & {c.id for c in p.cases("bench")}
        # the few-shot examples are the recorded dev records, in order
        inputs = [p.clean.messages[1 + 2 * k]["content"] for k in range(len(p.example_records))]
        for content, i in zip(inputs, p.example_records):
            assert records[i]["input"].replace("{", "{{").replace("}", "}}") in content


def test_selection_is_reproducible_from_the_seed(suite):
    for p in suite.prompts:
        spec = next(s for s in SPECS if s.id == p.id)
        examples, cases = draw(spec, suite.seed)
        assert tuple(examples) == p.example_records and tuple(cases) == p.case_records
        clean = clean_messages(spec, examples)
        assert tuple(map(dict, p.clean.messages)) == tuple(clean)
        for v in p.variants:
            messages, fault = plant(spec, clean, examples, v.name, spec.faults[v.name])
            assert tuple(messages) == tuple(map(dict, v.messages))
            assert fault["unit"] == v.fault.unit


def test_span_template_marks_every_unit(suite):
    tok = ChatML()
    for p in suite.prompts:
        for v in p.all_variants:
            marked = span_template(v.messages, tok)
            assert strip_marks(marked) == render(v.messages, tok)
            # the suite's rendering is promptlens's own rendering of the flat message template
            assert render(v.messages, tok) == templates.render(tok, v.flat, raw=False)
            segs = segment(marked, "span")
            assert [segs[i].name for i in features(segs)] == [u.label for u in units(v.messages)]


class FaultBackend:
    """A fake whose log-prob of every target drops by 2 nats when the prompt holds one text."""

    name = "fault"

    def __init__(self, text: str) -> None:
        self.text = text

    def token_logprobs(self, prompts, targets):
        return [[[-1.0 - 2.0 * (self.text in p)] for _ in ts] for p, ts in zip(prompts, targets)]


def test_fault_found_through_span_template_on_a_fake(suite):
    # Ablation over the span template puts the fault's unit first with exactly the fake's effect,
    # and every other unit at 0: the marks, the rendering and the fault location agree.
    for v in suite.variants():
        p = suite.prompt(v.prompt_id)
        at = v.fault.message  # the planted message with the one before it: unique in the prompt
        marker = ChatML().apply_chat_template(v.messages[at - 1 : at + 1]) if at else v.fault.text
        assert render(v.messages, ChatML()).count(marker) == 1, v.id
        result = attribute(span_template(v.messages, ChatML()), cases=p.cases("bench")[:2],
                           backend=FaultBackend(marker),
                           segmentation="span", objective="logprob")
        assert result.ranked()[0].segment.name == v.fault.unit, v.id
        assert result.ranked()[0].mean == pytest.approx(-2.0), v.id
        assert all(f.mean == 0 for f in result.features if f.segment.name != v.fault.unit), v.id


@pytest.mark.model
def test_suite_tokens_and_rendering_on_the_real_tokenizer(suite, tokenizer):
    for p in suite.prompts:
        case = p.cases("harm")[0]
        for v in p.all_variants:
            text = render(v.messages, tokenizer).replace("{input}", case.vars["input"])
            n = len(tokenizer(text, add_special_tokens=True)["input_ids"])
            assert 300 <= n <= 1200, (v.id, n)
            assert strip_marks(span_template(v.messages, tokenizer)) == render(v.messages, tokenizer)
            assert render(v.messages, tokenizer) == templates.render(tokenizer, v.flat, raw=False)


@pytest.mark.model
def test_strongest_fault_hurts_on_the_real_model(suite, backend):
    # The fault with the largest measured harm, re-scored on 4 of its harm cases: planted below clean.
    from promptlens.backends.hf import HFBackend
    from promptlens.scoring import score_prompts
    from promptlens.segments import fill

    raw = HFBackend(backend.model, backend.tokenizer, name=backend.name, raw=True)
    v = min(suite.variants(), key=lambda v: v.harm.logprob.mean)
    p = suite.prompt(v.prompt_id)
    cases = p.cases("harm")[:4]
    texts = [render(m, raw.tokenizer) for m in (p.clean.messages, v.messages)]
    scores = score_prompts(raw, [[fill(t, c.vars) for c in cases] for t in texts], cases)
    diff = sum(b.logprob - a.logprob for a, b in zip(*scores)) / len(cases)
    assert diff < 0, (v.id, diff)
