"""The fix verdict is decided once, on the result (``FixResult.verdict``); the terminal report,
the JSON and the HTML page render that one verdict. Each run here is a real ``fix`` on a fake
backend whose numbers are known, including one shaped like ``make demo``'s
(recipes/entailed_polarity_quick.yaml): the margin fell on validation while the right label's
log-prob rose, which the log-prob rule allows, so both reports must say so and neither may say
that the edits fit the train cases only."""

from __future__ import annotations

import dataclasses
import html
import json
import re
from typing import Sequence

import pytest

from promptlens.fix import fix
from promptlens.html import fix_html
from promptlens.report import dumps, fix_report
from promptlens.types import Case

from .fakes import JaccardSimilarity

TEMPLATE = "Answer the question with a yes or a no.\nRead the question slowly.\n{input}\nAnswer:"
TRAIN = [Case(vars={"input": f"train question {i}?"}, target="yes", choices=("yes", "no")) for i in range(8)]
VALID = [Case(vars={"input": f"held-out question {i}?"}, target="yes", choices=("yes", "no")) for i in range(8)]


class SlowlyBackend:
    """Every label costs 1 nat. Without the word "slowly" in the prompt every label gains
    ``lift`` nats (the right label's log-prob rises; the margin does not move), on train cases
    the wrong label "no" loses ``train_margin`` (the margin rises there), and on held-out cases it
    gains ``wrong_lift`` more (there the margin falls)."""

    name = "slowly"

    def __init__(self, lift: float, wrong_lift: float, train_margin: float = 0.0) -> None:
        self.lift, self.wrong_lift, self.train_margin = lift, wrong_lift, train_margin
        self.forward_passes = 0

    def token_logprobs(self, prompts: Sequence[str], targets: Sequence[Sequence[str]]) -> list[list[list[float]]]:
        self.forward_passes += 1
        out = []
        for prompt, ts in zip(prompts, targets):
            gone = "slowly" not in prompt
            held_out = "held-out" in prompt
            out.append([[-1.0 + (self.lift if gone else 0.0)
                         + (self.wrong_lift if gone and held_out and t == "no" else 0.0)
                         - (self.train_margin if gone and not held_out and t == "no" else 0.0)] for t in ts])
        return out

    def generate(self, prompt: str, max_new_tokens: int = 32) -> str:
        return prompt.strip().splitlines()[-1]


def _run(lift: float, wrong_lift: float, *, keep_logprob: bool = True, train_margin: float = 0.0):
    return fix(TEMPLATE, TRAIN, validation=VALID, backend=SlowlyBackend(lift, wrong_lift, train_margin),
               similarity=JaccardSimilarity(), kinds=["delete"], threshold=0.3, budget_trials=6, rounds=1,
               seed=0, keep_logprob=keep_logprob, segmentation="line")


def _page_text(doc: str) -> str:
    return html.unescape(" ".join(re.sub(r"<[^>]+>", " ", doc).split()))


def _flat(text: str) -> str:
    return " ".join(text.split())


VERDICT_WORDS = {
    "logprob_rule": "log-prob rose on validation",
    "validation_fell": "fit the train cases only",
    "no_edit": "no edit beat the original prompt",
}


def _assert_same_verdict(result) -> None:
    terminal = _flat(fix_report(result))
    page = _page_text(fix_html(result, studies=[]))
    assert _flat(result.verdict.message) in terminal.lower() or result.verdict.level == "info"
    assert _flat(result.verdict.message).lower() in page.lower()
    for kind, words in VERDICT_WORDS.items():
        assert (words in terminal.lower()) == (kind == result.verdict.kind), (kind, terminal)
        assert (words in page.lower()) == (kind == result.verdict.kind), (kind, page)
    assert json.loads(dumps(result))["verdict"]["kind"] == result.verdict.kind  # the JSON carries the verdict
    assert result.cost in terminal and result.cost in page


def test_a_demo_like_run_the_margin_fell_on_validation_while_the_logprob_rose():
    result = _run(lift=0.5, wrong_lift=0.8)
    assert result.improved and "slowly" not in result.best
    v0, v1 = result.validation_before, result.validation_after
    assert v1.logprob - v0.logprob == pytest.approx(0.5)
    assert v1.objective - v0.objective == pytest.approx(-0.8)
    assert result.logprob_rule and result.verdict.kind == "logprob_rule" and result.verdict.level == "note"
    _assert_same_verdict(result)


def test_the_objective_fell_on_validation_without_the_logprob_rule():
    result = _run(lift=0.5, wrong_lift=0.8, keep_logprob=False, train_margin=0.3)
    assert result.improved and not result.logprob_rule
    assert result.validation_after.objective - result.validation_before.objective == pytest.approx(-0.8)
    assert result.verdict.kind == "validation_fell" and result.verdict.warn
    _assert_same_verdict(result)


def test_the_margin_and_logprob_both_fell_on_validation_is_a_warning():
    result = _run(lift=0.5, wrong_lift=0.8)
    assert result.verdict.kind == "logprob_rule"
    # The same numbers, had the log-prob fallen on validation: a warning, not the rule's note.
    fell = type(result.validation_after)(**{**result.validation_after.__dict__,
                                            "logprob": result.validation_before.logprob - 0.1})
    warned = dataclasses.replace(result, validation_after=fell)
    assert warned.verdict.kind == "validation_fell" and warned.verdict.warn
    _assert_same_verdict(warned)


def test_a_gain_that_holds_on_validation():
    result = _run(lift=0.5, wrong_lift=0.0)
    assert result.improved and result.verdict.kind == "validation_held" and not result.verdict.warn
    _assert_same_verdict(result)


def test_no_edit_kept():
    result = _run(lift=-0.5, wrong_lift=0.0)
    assert not result.improved and result.verdict.kind == "no_edit"
    _assert_same_verdict(result)
