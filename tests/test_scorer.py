"""The prefix-trie scorer equals a plain one-at-a-time teacher-forced forward."""

from __future__ import annotations

import pytest
import torch

from promptlens.prefix import TrieScorer, naive_token_logprobs
from promptlens.scoring import score_prompts
from promptlens.types import Case
from tests.rule_backend import RuleBackend

SENTENCES = [
    "You are a careful assistant. ",
    "Decide whether the statement is plausible. ",
    "Most statements are false. ",
    "Think step by step. ",
    "Answer with one word.",
]


def _variants() -> list[str]:
    full = "".join(SENTENCES)
    drop = ["".join(s for j, s in enumerate(SENTENCES) if j != i) for i in range(len(SENTENCES))]
    pairs = ["".join(s for j, s in enumerate(SENTENCES) if j not in (i, i + 2)) for i in range(len(SENTENCES) - 2)]
    return [full, *drop, *pairs, full]  # a duplicate on purpose


@pytest.fixture(scope="module")
def reference(backend):
    """Token sequences (variants x targets) and their plain one-at-a-time log-probs."""
    targets = ["plausible", "Yes, it is plausible because cats sit on mats."]
    seqs, n_target = [], []
    for v in _variants():
        for t in targets:
            p, tt = backend.encode_prompt(v), backend.encode_target(t)
            seqs.append(p + tt)
            n_target.append(len(tt))
    return seqs, n_target, [naive_token_logprobs(backend.model, s, n) for s, n in zip(seqs, n_target)]


@pytest.mark.model
@pytest.mark.parametrize(("max_batch_tokens", "tree_attention"), [(16, True), (100, False), (4096, True), (4096, False)],
                         ids=["16-tree", "100-dense", "4096-tree", "4096-dense"])
def test_trie_scorer_equals_naive_forward(backend, reference, max_batch_tokens, tree_attention):
    seqs, n_target, refs = reference
    scorer = TrieScorer(backend.model, max_batch_tokens=max_batch_tokens, tree_attention=tree_attention)
    assert scorer.tree_attention == tree_attention
    got = scorer.score(seqs, n_target)
    worst = 0.0
    for n, row, ref in zip(n_target, got, refs):
        assert len(row) == n
        worst = max(worst, max(abs(a - b) for a, b in zip(row, ref)))
    assert worst < 1e-4
    # Every trie token runs through the body once: fewer than the naive total.
    assert scorer.tokens_computed < sum(len(s) for s in seqs) / 2


@pytest.mark.model
def test_choice_scores_on_real_model(backend):
    case = Case({}, "plausible", ("plausible", "implausible"))
    [[score]] = score_prompts(backend, [["Is 'the cat sat on the mat' plausible or implausible? Answer:"]], [case])
    lp = {c: backend.token_logprobs(["Is 'the cat sat on the mat' plausible or implausible? Answer:"], [[c]])[0][0] for c in case.choices}
    assert score.choice_logprobs == pytest.approx([sum(lp["plausible"]), sum(lp["implausible"])], abs=1e-4)
    assert score.margin == pytest.approx(sum(lp["plausible"]) - sum(lp["implausible"]), abs=1e-4)
    assert score.correct == (score.margin > 0)


def test_choice_scoring_on_fake_backend():
    fake = RuleBackend(bonus={("cats", "plausible"): 2.0, ("dogs", "maybe"): 5.0})
    cases = [
        Case({}, "plausible", ("plausible", "implausible", "maybe")),
        Case({}, "implausible", ("plausible", "implausible", "maybe")),
    ]
    scores = score_prompts(fake, [["cats", "cats"], ["dogs", "dogs"]], cases)
    first, second = scores[0]
    assert first.choice_logprobs == (1.0, -1.0, -1.0)
    assert first.correct and first.margin == 2.0
    assert not second.correct and second.margin == -2.0
    dogs = scores[1][0]
    assert dogs.choice_logprobs == (-1.0, -1.0, 4.0) and dogs.margin == -5.0 and not dogs.correct


@pytest.mark.model
def test_out_of_memory_bin_is_split_and_the_run_goes_on(backend, reference, monkeypatch):
    seqs, n_target, refs = reference
    scorer = TrieScorer(backend.model, max_batch_tokens=4096)
    real_run = scorer._run

    def picky(batch, out):  # pretend any bin of more than 3 chains does not fit in memory
        if len(batch) > 3:
            raise torch.OutOfMemoryError("simulated")
        real_run(batch, out)

    monkeypatch.setattr(scorer, "_run", picky)
    got = scorer.score(seqs, n_target)
    assert scorer.max_batch_tokens < 4096
    assert max(abs(a - b) for row, ref in zip(got, refs) for a, b in zip(row, ref)) < 1e-4


def test_network_is_never_touched(monkeypatch):
    """Attribution on the fake backend opens no socket (the real model: test_reliability.py)."""
    import socket

    from promptlens.attribution import attribute
    from tests.rule_backend import RuleBackend

    def refuse(self, address):
        raise AssertionError(f"network connection attempted: {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    attribute("Say yes. Say banana.", "yes", backend=RuleBackend(rules={"banana": -1.0}))


def test_tree_attention_only_for_plain_causal_attention():
    from transformers import Gemma2Config, LlamaConfig, MistralConfig

    from promptlens.prefix import tree_supported

    assert tree_supported(LlamaConfig())
    assert not tree_supported(MistralConfig(sliding_window=4096))
    assert tree_supported(MistralConfig(sliding_window=None))
    assert not tree_supported(Gemma2Config())  # logit soft-capping and a sliding window
