"""The benchmark suite: production-style message-list prompts with planted faults of measured harm.

    from benchmarks.suite import load_suite
    suite = load_suite()
    for prompt in suite.prompts:
        prompt.clean.messages          # the clean twin: [{"role", "content"}, ...], last user turn has {input}
        for v in prompt.variants:      # planted variants whose harm was significant
            v.fault.unit, v.fault.message, v.harm.logprob
        prompt.cases("harm")           # the cases the harm was measured on
        prompt.cases("bench")          # the other cases: for detection and repair benchmarks

Everything here is data read from ``manifest.json`` and ``prompts/`` (written by ``build.py``) and
the dev data shipped inside the package (``promptlens/data/bigbench_dev.jsonl``); loading needs no
model. Message contents are promptlens templates: ``{input}`` is the one field (in the last user
turn) and literal braces are doubled.

A prompt's units are what detection ranks and repair edits: each sentence of the system prompt
(``system_J``, J counting sentences from 0) and each few-shot example, its user and assistant turn
together (``example_K``). Every fault lies inside one unit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

from promptlens.cases import dataset_path
from promptlens.segments import features, segment
from promptlens.templates import as_flat
from promptlens.types import Case

ROOT = Path(__file__).resolve().parent
MANIFEST = ROOT / "manifest.json"
SPLITS = ("harm", "bench", "all")
Messages = tuple[Mapping[str, str], ...]

__all__ = ["Fault", "Harm", "Variant", "SuitePrompt", "Suite", "Unit", "load_suite", "units",
           "render", "span_template", "dev_records", "record_case", "SPLITS"]


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float


@dataclass(frozen=True)
class Harm:
    """Planted minus clean on the harm cases, paired per case; 95% t-intervals (n - 1 df)."""

    n: int
    logprob: Interval  # mean target log-prob difference, nats (negative: the fault hurts)
    p_value: float  # two-sided paired t-test on the log-prob differences
    margin: Interval | None = None  # choice tasks: target minus best wrong choice
    accuracy_clean: float | None = None
    accuracy_planted: float | None = None

    @property
    def significant(self) -> bool:
        return self.logprob.high < 0.0


@dataclass(frozen=True)
class Fault:
    kind: str  # wrong_answer_example, wrong_format_example, language_rule, format_rule, label_list, ...
    unit: str  # the unit that holds the fault: "system_J" or "example_K"
    message: int  # index of the message that holds it (an example's assistant turn)
    text: str  # the planted text (a system sentence, or an example's answer)
    operation: str  # "answer", "insert" or "replace": how it was planted into the clean prompt


@dataclass(frozen=True)
class Variant:
    id: str  # "<prompt id>/<variant name>", the clean twin is "<prompt id>/clean"
    prompt_id: str
    name: str
    messages: Messages
    fault: Fault | None = None  # None for the clean twin
    harm: Harm | None = None

    @property
    def flat(self) -> str:
        """The messages as promptlens's flat message template (``promptlens.templates``): give this
        to ``attribute``/``fix``/``lint`` with a chat-rendering backend."""
        return as_flat([dict(m) for m in self.messages])


@dataclass(frozen=True)
class SuitePrompt:
    id: str
    task: str
    clean: Variant
    variants: tuple[Variant, ...]  # the kept planted variants (significant harm)
    dropped: tuple[Mapping[str, Any], ...]  # candidate faults left out, with their measured harm
    example_records: tuple[int, ...]  # line numbers (0-based) of the few-shot examples in the dev data
    case_records: tuple[int, ...]  # line numbers of the cases, in the seeded order
    harm_cases: int  # the first harm_cases cases are the ones the harm was measured on

    def cases(self, split: str = "bench") -> list[Case]:
        """The prompt's cases: ``harm`` (what the faults were measured and selected on),
        ``bench`` (the rest: use these to benchmark detection and repair) or ``all``."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
        ids = {"harm": self.case_records[: self.harm_cases], "bench": self.case_records[self.harm_cases :],
               "all": self.case_records}[split]
        records = dev_records()
        return [record_case(records[i], i) for i in ids]

    @property
    def all_variants(self) -> tuple[Variant, ...]:
        return (self.clean, *self.variants)


@dataclass(frozen=True)
class Suite:
    prompts: tuple[SuitePrompt, ...]
    seed: int
    built: Mapping[str, Any]  # date, commit, model, harm cases: how the suite was made

    def prompt(self, prompt_id: str) -> SuitePrompt:
        for p in self.prompts:
            if p.id == prompt_id:
                return p
        raise KeyError(f"no suite prompt {prompt_id!r}; the suite has: {', '.join(p.id for p in self.prompts)}")

    def variants(self) -> list[Variant]:
        """Every planted variant of every prompt (clean twins left out)."""
        return [v for p in self.prompts for v in p.variants]


@lru_cache(maxsize=1)
def dev_records() -> tuple[Mapping[str, Any], ...]:
    """The shipped dev data, one record per line (a record's id is its 0-based line number)."""
    with open(dataset_path(), encoding="utf-8") as fh:
        return tuple(json.loads(line) for line in fh if line.strip())


def record_case(record: Mapping[str, Any], index: int) -> Case:
    choices = tuple(record["choices"]) if record.get("choices") else None
    return Case(vars={"input": record["input"]}, target=record["target"], choices=choices, id=f"dev:{index}")


def load_suite(manifest: str | Path = MANIFEST) -> Suite:
    """The suite as built by ``build.py``: prompts, kept variants, fault locations, cases."""
    manifest = Path(manifest)
    data = json.loads(manifest.read_text(encoding="utf-8"))
    prompts = tuple(_prompt(entry, manifest.parent) for entry in data["prompts"])
    return Suite(prompts=prompts, seed=int(data["seed"]), built=data["built"])


def _prompt(entry: Mapping[str, Any], root: Path) -> SuitePrompt:
    pid = entry["id"]

    def variant(v: Mapping[str, Any]) -> Variant:
        messages = tuple(json.loads((root / v["file"]).read_text(encoding="utf-8")))
        fault = Fault(**v["fault"]) if v.get("fault") else None
        return Variant(f"{pid}/{v['name']}", pid, v["name"], messages, fault, _harm(v.get("harm")))

    return SuitePrompt(
        id=pid, task=entry["task"], clean=variant(entry["clean"]),
        variants=tuple(variant(v) for v in entry["variants"]), dropped=tuple(entry.get("dropped", ())),
        example_records=tuple(entry["example_records"]), case_records=tuple(entry["case_records"]),
        harm_cases=int(entry["harm_cases"]),
    )


def _harm(h: Mapping[str, Any] | None) -> Harm | None:
    if not h:
        return None
    margin = Interval(**h["margin"]) if h.get("margin") else None
    return Harm(n=int(h["n"]), logprob=Interval(**h["logprob"]), p_value=float(h["p_value"]), margin=margin,
                accuracy_clean=h.get("accuracy_clean"), accuracy_planted=h.get("accuracy_planted"))


# --- units and rendering ---------------------------------------------------------------------


@dataclass(frozen=True)
class Unit:
    label: str  # "system_J", "example_K" or "user_J"
    messages: tuple[int, ...]  # the messages it lies in
    text: str  # a sentence (with its trailing whitespace), or the example's user and assistant text


def units(messages: Sequence[Mapping[str, str]]) -> list[Unit]:
    """The system prompt's sentences, then the few-shot examples (user + assistant pairs), then
    the user template's sentences (its ``{input}`` field aside): the features of promptlens'
    ``unit`` segmentation, in order."""
    _check_shape(messages)
    out = [Unit(f"system_{j}", (0,), messages[0]["content"][s.start : s.end])
           for j, s in enumerate(_sentences(messages[0]["content"]))]
    for k in range((len(messages) - 2) // 2):
        user, assistant = messages[1 + 2 * k], messages[2 + 2 * k]
        out.append(Unit(f"example_{k}", (1 + 2 * k, 2 + 2 * k), f"{user['content']}\n{assistant['content']}"))
    last = len(messages) - 1
    out += [Unit(f"user_{j}", (last,), messages[last]["content"][s.start : s.end])
            for j, s in enumerate(_sentences(messages[last]["content"]))]
    return out


def _sentences(content: str) -> list[Any]:
    segs = segment(content, "sentence")
    return [segs[i] for i in features(segs)]


def _check_shape(messages: Sequence[Mapping[str, str]]) -> None:
    roles = [m["role"] for m in messages]
    pairs = roles[1:-1]
    if (len(roles) < 2 or roles[0] != "system" or roles[-1] != "user" or len(pairs) % 2
            or any(r != ("user" if i % 2 == 0 else "assistant") for i, r in enumerate(pairs))):
        raise ValueError(f"a suite prompt is system, (user, assistant)*, user; got roles {roles}")


def render(messages: Sequence[Mapping[str, str]], tokenizer: Any) -> str:
    """The text the model sees, still a template (``{input}`` unfilled): the chat template
    applied with the generation prompt. Score it on a ``raw=True`` backend. It is the text
    ``promptlens.templates.render`` makes of ``Variant.flat`` (the suite's tests check this)."""
    return tokenizer.apply_chat_template([dict(m) for m in messages], tokenize=False, add_generation_prompt=True)


def span_template(messages: Sequence[Mapping[str, str]], tokenizer: Any) -> str:
    """``render(messages)`` with every unit marked as a ``[[label: ...]]`` span, for
    ``attribute(..., segmentation="span")`` on a raw backend: removing a unit removes the
    sentence, or the whole example turn pair with its chat markup.

    The chat template must render a message list as the concatenation of its messages (true of
    ChatML templates such as SmolLM2's); this is checked and a ValueError raised otherwise."""
    _check_shape(messages)
    msgs = [dict(m) for m in messages]
    full = render(msgs, tokenizer)

    def upto(k: int) -> str:
        return tokenizer.apply_chat_template(msgs[:k], tokenize=False, add_generation_prompt=False)

    head = upto(1)  # the system turn
    system = msgs[0]["content"]
    at = head.find(system)
    if at < 0 or not full.startswith(head):
        raise ValueError("the chat template does not render the system turn as a prefix; cannot mark units")
    marked = [head[:at]]
    pos = 0
    for j, s in enumerate(_sentences(system)):
        marked += [system[pos : s.start], f"[[system_{j}: ", system[s.start : s.end], "]]"]
        pos = s.end
    marked += [system[pos:], head[at + len(system):]]
    done = head
    for k in range((len(msgs) - 2) // 2):
        nxt = upto(3 + 2 * k)
        if not nxt.startswith(done):
            raise ValueError("the chat template is not prefix-stable over turns; cannot mark examples as units")
        marked.append(f"[[example_{k}: {nxt[len(done):]}]]")
        done = nxt
    if not full.startswith(done):
        raise ValueError("the chat template is not prefix-stable over turns; cannot mark examples as units")
    tail, user = full[len(done):], msgs[-1]["content"]
    at = tail.find(user)
    if at < 0:
        raise ValueError("the chat template does not render the user template's text; cannot mark its units")
    marked.append(tail[:at])
    pos = 0
    for j, s in enumerate(_sentences(user)):
        marked += [user[pos : s.start], f"[[user_{j}: ", user[s.start : s.end], "]]"]
        pos = s.end
    marked += [user[pos:], tail[at + len(user):]]
    return "".join(marked)
