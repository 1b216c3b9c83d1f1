"""Attention knockout (``--mode knockout``): the scorer against plain forwards, a model where the
knockout's effect equals removal exactly, the flags and the check against exact, one real-model run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from promptlens.approx import ApproxConfig
from promptlens.attribution import attribute
from promptlens.backends.hf import HFBackend
from promptlens.errors import InputError
from promptlens.prefix import TrieScorer, naive_token_logprobs
from promptlens.templates import from_messages
from promptlens.types import Case
from tests.rule_backend import RuleBackend


def _tiny(layers: int, vocab: int = 64, positions: bool = True, seed: int = 0) -> LlamaForCausalLM:
    """A random Llama; ``positions=False`` zeroes its rotary frequencies (attention ignores positions)."""
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    cfg._attn_implementation = "sdpa"
    model = LlamaForCausalLM(cfg).eval()
    if not positions:
        model.model.rotary_emb.inv_freq.zero_()
    return model


PREFIX = list(range(1, 30))
TAILS = [[40, 41, 42, 5, 6], [40, 41, 43, 7], [40, 41, 42, 5, 6], [40, 44, 9]]
N = [2, 1, 2, 1]


@pytest.mark.parametrize("tree", [True, False])
def test_nothing_hidden_equals_a_plain_forward(tree):
    model = _tiny(2)
    scorer = TrieScorer(model, max_batch_tokens=16, tree_attention=tree)  # small bins: tails span several
    out = scorer.score_hidden(PREFIX, TAILS, N, [[]] * len(TAILS))
    for row, tail, n in zip(out, TAILS, N):
        assert row == pytest.approx(naive_token_logprobs(model, PREFIX + tail, n), abs=1e-5)


@pytest.mark.parametrize("tree", [True, False])
def test_one_layer_without_positions_knockout_is_removal(tree):
    # One layer: the prefix's keys depend on its tokens alone, and with no rotary signal not on
    # positions: hiding positions is then exactly removing them.
    model = _tiny(1, positions=False)
    scorer = TrieScorer(model, max_batch_tokens=16, tree_attention=tree)
    hidden = [[(3, 8)], [(10, 12), (20, 21)], [(0, 29)], []]
    out = scorer.score_hidden(PREFIX, TAILS, N, hidden)
    for row, tail, n, ranges in zip(out, TAILS, N, hidden):
        kept = [t for p, t in enumerate(PREFIX) if not any(a <= p < b for a, b in ranges)]
        assert row == pytest.approx(naive_token_logprobs(model, kept + tail, n), abs=1e-5)


def test_two_layers_knockout_is_an_approximation():
    # With a second layer the prefix positions after the hidden range still carry it.
    model = _tiny(2)
    out = TrieScorer(model).score_hidden(PREFIX, TAILS[:1], N[:1], [[(3, 8)]])
    removed = naive_token_logprobs(model, PREFIX[:3] + PREFIX[8:] + TAILS[0], N[0])
    assert np.abs(np.array(out[0]) - np.array(removed)).max() > 1e-4


def test_score_hidden_rejects_bad_tails():
    scorer = TrieScorer(_tiny(1))
    with pytest.raises(ValueError, match="at least one prompt token"):
        scorer.score_hidden(PREFIX, [[5]], [1], [[]])
    with pytest.raises(ValueError, match="needs a prefix"):
        scorer.score_hidden([], [[5, 6]], [1], [[]])


# --- through attribute, on a tiny random model with the real tokenizer ------------------------

FLAT = from_messages([
    {"role": "system", "content": "Be brief. Answer with one word. Never explain."},
    {"role": "user", "content": "Word: cat"}, {"role": "assistant", "content": "cats"},
    {"role": "user", "content": "Word: dog"}, {"role": "assistant", "content": "dogs"},
    {"role": "user", "content": "Word: {input}"},
]).text
CASES = [Case({"input": w}, w + "s") for w in ("house", "tree", "lamp")]


@pytest.fixture(scope="module")
def tiny_backend(tokenizer):
    return HFBackend(_tiny(2, vocab=len(tokenizer), seed=1), tokenizer, name="tiny")


def test_knockout_flags_estimates_and_verifies_its_top_k(tiny_backend):
    exact = attribute(FLAT, cases=CASES, backend=tiny_backend)
    result = attribute(FLAT, cases=CASES, backend=tiny_backend, mode="knockout", approx=ApproxConfig(verify_k=2))
    a = result.approximation
    assert result.mode == "knockout" and a.mode == "knockout" and len(a.verified) == 2
    by_index = {f.index: f for f in exact.features}
    tail = [f for f in result.features if "Word: " in f.segment.text and f.segment.start > FLAT.rindex("Word: ") - 1]
    assert tail and all(not f.estimated for f in tail)  # the question's own text: exact leave-one-out
    assert a.settings["exact_in_tail"] == len(tail) and a.settings["knocked_out"] == len(exact.features) - len(tail)
    for f in result.features:
        if not f.estimated:  # verified or in the tail: exact's numbers
            assert f.mean == pytest.approx(by_index[f.index].mean, abs=1e-4)
            assert f.verdict != "estimate"
        else:
            assert f.verdict == "estimate"
    assert sum(f.estimated for f in result.features) == len(result.features) - len(tail) - 2
    assert a.forward_passes == result.forward_passes > 0 and a.tokens_computed == result.tokens_computed > 0
    assert a.settings["knockout_sequences"] == a.settings["knocked_out"] * len(CASES)
    assert a.exact_means == pytest.approx([by_index[result.features[j].index].mean for j in a.verified], abs=1e-4)


def test_knockout_needs_a_local_model_and_the_remove_baseline(tiny_backend):
    with pytest.raises(InputError, match="needs a local model"):
        attribute(FLAT, cases=CASES, backend=RuleBackend(), mode="knockout")
    with pytest.raises(InputError, match="use --baseline remove"):
        attribute(FLAT, cases=CASES, backend=tiny_backend, mode="knockout", baseline="filler")


def test_cli_knockout_with_another_baseline_exits_2(tmp_path, capsys):
    from promptlens import cli

    cases = tmp_path / "cases.jsonl"
    cases.write_text("".join(json.dumps({"vars": {"input": c.vars["input"]}, "target": c.target}) + "\n"
                             for c in CASES))
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("Be brief. Say {input}.")
    assert cli.main(["attribute", str(prompt), "--cases", str(cases), "--mode", "knockout",
                     "--baseline", "filler"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "use --baseline remove" in err and "Traceback" not in err


# --- the real embedded model ----------------------------------------------------------------


@pytest.mark.model
def test_knockout_on_the_real_model_verified_numbers_equal_exact(backend):
    flat = from_messages([
        {"role": "system", "content": "You give plurals. Reply with the plural only. Use lowercase."},
        {"role": "user", "content": "Noun: cat"}, {"role": "assistant", "content": "CATS"},
        {"role": "user", "content": "Noun: box"}, {"role": "assistant", "content": "boxes"},
        {"role": "user", "content": "Noun: {input}"},
    ]).text
    cases = [Case({"input": w}, w + "s") for w in ("house", "lamp")]
    exact = attribute(flat, cases=cases, backend=backend)
    result = attribute(flat, cases=cases, backend=backend, mode="knockout", approx=ApproxConfig(verify_k=3))
    a = result.approximation
    by_index = {f.index: f for f in exact.features}
    assert len(a.verified) == 3 and a.exact_features >= 3
    for j in a.verified:
        f = result.features[j]
        assert not f.estimated and f.mean == pytest.approx(by_index[f.index].mean, abs=1e-4)
    estimated = [f for f in result.features if f.estimated]
    assert estimated and all(f.verdict == "estimate" for f in estimated)
    # The estimate is measured, not assumed: the record holds its error on the verified segments.
    assert a.max_abs_diff == pytest.approx(np.abs(np.array(a.approx_means) - np.array(a.exact_means)).max())
